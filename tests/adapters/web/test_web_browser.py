"""The web chat end to end in real headless Chromium (Debian's package) driven by Playwright, on the tiny model.

Chromium comes from the system (tests/adapters/web/ensure_chromium.sh installs it); Playwright's own
browser download cannot work offline. Outside CI the test skips when Chromium or Playwright is
missing; in CI (CI=true) it fails instead, so a green run always includes the browser.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.adapters.web.conftest import running_web
from tests.conftest import picture_bytes

CHROMIUM = Path(os.environ.get("VLMBOT_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[3] / "test-output"
ANSWER_TIMEOUT_MS = 90_000
STEP_TIMEOUT_MS = 30_000  # the 2-core machine is shared: Playwright's 5 s default is too tight under load


def _missing(what: str) -> None:
    message = f"{what}; run tests/adapters/web/ensure_chromium.sh and install the test extras"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs the browser test: {message}")
    pytest.skip(message)


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is not installed")
    return CHROMIUM


async def _drop_picture(page: Any, data: bytes, name: str, event: str) -> None:
    """A picture dropped on the page ("drop") or pasted into it ("paste"), as the browser delivers it."""
    await page.evaluate(
        """([bytes, name, event]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, { type: "image/png" }));
            const init = { bubbles: true, cancelable: true };
            const e = event === "drop"
                ? new DragEvent("drop", { ...init, dataTransfer: transfer })
                : new ClipboardEvent("paste", { ...init, clipboardData: transfer });
            (event === "drop" ? window : document.getElementById("text")).dispatchEvent(e);
        }""",
        [list(data), name, event],
    )


async def test_chat_in_a_real_browser(service_factory: Any, chromium: Path) -> None:
    from playwright.async_api import async_playwright, expect

    red = picture_bytes(size=(160, 120), color=(220, 30, 30))
    blue = picture_bytes(size=(120, 90), color=(30, 30, 220))
    OUTPUT.mkdir(exist_ok=True)
    async with service_factory(max_new_tokens=16) as service, running_web(service) as web:
        store = service.store
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
            try:
                expect.set_options(timeout=STEP_TIMEOUT_MS)
                context = await browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
                context.set_default_timeout(STEP_TIMEOUT_MS)
                await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web.url.rstrip("/"))
                page = await context.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))

                await page.goto(web.url)
                await expect(page.locator("#app")).to_be_visible()
                await expect(page.locator(".preset")).to_have_count(5)
                turns = page.locator(".turn[data-turn]")
                answered = page.locator('.turn[data-turn] .msg.bot[data-state="done"]')

                # Upload with the file picker and ask.
                await page.set_input_files("#file", files=[{"name": "red.png", "mimeType": "image/png", "buffer": red}])
                await expect(page.locator("#tray .tray-item")).to_have_count(1)
                await page.fill("#text", "What colour is this square?")
                await page.press("#text", "Enter")
                await expect(answered).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
                await expect(page.locator("#tray .tray-item")).to_have_count(0)
                await expect(page.locator(".session.selected .label")).to_have_text("What colour is this square?")

                # Follow-up: no new picture, the first one is still in the conversation.
                await page.fill("#text", "And what shape is it?")
                await page.click("#send")
                await expect(answered).to_have_count(2, timeout=ANSWER_TIMEOUT_MS)

                # Drag-and-drop and paste attach pictures; the tray's x removes one.
                await _drop_picture(page, blue, "blue.png", "drop")
                await _drop_picture(page, blue, "pasted.png", "paste")
                await expect(page.locator("#tray .tray-item")).to_have_count(2)
                await page.locator("#tray .tray-item button").first.click()
                await page.locator("#tray .tray-item button").first.click()
                await expect(page.locator("#tray .tray-item")).to_have_count(0)

                # Clicking a past turn's picture attaches it again; a preset fills in its command.
                await turns.first.locator("img.thumb").click()
                await expect(page.locator("#tray .tray-item")).to_have_count(1)
                await page.click('.preset[data-preset="describe"]')
                await expect(page.locator("#text")).to_have_value("/describe")
                await page.press("#text", "Enter")
                await expect(answered).to_have_count(3, timeout=ANSWER_TIMEOUT_MS)

                session = (await store.list_sessions(platform="web", limit=1))[0]
                stored = await store.turns(session.id)
                assert [t.status for t in stored] == ["done", "done", "done"]
                assert stored[2].image_hashes == stored[0].image_hashes  # the same picture, attached again

                # Rename.
                await page.click("#rename")
                await page.fill("#rename-input", "Red square")
                await page.press("#rename-input", "Enter")
                await expect(page.locator("#title")).to_have_text("Red square")
                await expect(page.locator(".session.selected .label")).to_have_text("Red square")

                # Remove the second turn.
                second = turns.nth(1)
                await second.hover()
                await second.locator(".remove").click()
                await expect(turns).to_have_count(2)
                assert [t.in_context for t in await store.turns(session.id)] == [True, False, True]

                # Thumbs down on the first answer: pressed at once, in the store, and in the export.
                down = turns.first.locator('button.vote[data-vote="down"]')
                await down.click()
                await expect(down).to_have_attribute("aria-pressed", "true")
                await expect(turns.first.locator('button.vote[data-vote="up"]')).to_have_attribute("aria-pressed", "false")
                await expect(page.locator("#toast")).to_contain_text("not helpful")

                # Export as JSON.
                async with page.expect_download() as download_info:
                    await page.click("#export")
                download = await download_info.value
                exported = json.loads(Path(await download.path()).read_text())
                assert exported["name"] == "Red square"
                assert [f["vote"] for f in exported["turns"][0]["feedback"]] == ["down"]
                assert exported["turns"][0]["feedback"][0]["user"] == session.owner_id
                assert [t["in_context"] for t in exported["turns"]] == [True, False, True]
                assert exported["turns"][0]["image_hashes"] == list(stored[0].image_hashes)

                # Code in an answer is highlighted and has a copy button (the tiny model writes no code).
                code_turn = await store.add_turn(session.id, user_id=session.owner_id, text="HTML please", image_hashes=())
                await store.finish_turn(
                    code_turn.id,
                    status="done",
                    answer='Here it is:\n\n```html\n<div class="box">Red</div>\n```\n\n| colour | shape |\n|---|---|\n| red | square |',
                )
                await page.reload()
                await expect(turns).to_have_count(3)
                # The page shows the vote it reloads with.
                await expect(down).to_have_attribute("aria-pressed", "true")
                code = page.locator(".code").last
                await expect(code.locator(".tok-a")).to_have_text("class")
                await expect(page.locator(".body table td").first).to_have_text("red")
                await code.locator(".copy").click()
                await expect(code.locator(".copy")).to_have_text("Copied")
                assert await page.evaluate("navigator.clipboard.readText()") == '<div class="box">Red</div>'

                await page.screenshot(path=str(OUTPUT / "web-chat.png"))

                # Clear: the conversation starts afresh, the old session stays listed as cleared.
                await page.click("#clear")
                await expect(turns).to_have_count(0)
                await expect(page.locator(".session .meta", has_text="cleared")).to_have_count(1)
                archived = await store.get_session(session.id)
                assert archived is not None and archived.status == "archived"

                # The cleared session still opens, read-only.
                await page.locator(".session", has_text="Red square").click()
                await expect(page.locator("#banner")).to_be_visible()
                await expect(turns).to_have_count(3)
                await expect(page.locator("#text")).to_be_disabled()

                assert problems == []
            finally:
                await browser.close()


async def test_token_sign_in_and_operator_view_in_a_real_browser(service_factory: Any, chromium: Path) -> None:
    from playwright.async_api import async_playwright, expect

    from bot.messages import Attachment, IncomingMessage
    from bot.votes import Vote

    OUTPUT.mkdir(exist_ok=True)
    async with service_factory() as service:
        telegram = IncomingMessage(
            platform="telegram", thread_key="chat:42", user_id="7", text="What is on this invoice?",
            attachments=(Attachment(picture_bytes(color=(20, 160, 60)), "invoice.png"),),
        )
        replies = [reply async for reply in service.conversations.handle(telegram)]
        await service.conversations.record_vote("telegram", "chat:42", "7", replies[-1].turn_id, Vote.DOWN)
        async with running_web(service, web_token="user-token-abcdef", web_admin_token="admin-token-123456") as web:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
                try:
                    expect.set_options(timeout=STEP_TIMEOUT_MS)
                    page = await browser.new_page(viewport={"width": 1280, "height": 800})
                    page.set_default_timeout(STEP_TIMEOUT_MS)
                    problems: list[str] = []
                    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

                    # The access token is asked for first; a wrong one is refused in words.
                    await page.goto(web.url)
                    await expect(page.locator("#login")).to_be_visible()
                    await page.fill("#login-token", "wrong")
                    await page.press("#login-token", "Enter")
                    await expect(page.locator("#login-error")).to_contain_text("not right")
                    await page.fill("#login-token", "user-token-abcdef")
                    await page.press("#login-token", "Enter")
                    await expect(page.locator("#app")).to_be_visible()
                    await page.fill("#text", "Hello?")
                    await page.press("#text", "Enter")
                    await expect(page.locator('.msg.bot[data-state="done"]')).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
                    await expect(page.locator("#tabs")).to_be_hidden()

                    # The operator signs in with the admin token and browses every platform read-only.
                    await page.click("#operator")
                    await page.fill("#login-token", "admin-token-123456")
                    await page.press("#login-token", "Enter")
                    await expect(page.locator("#tabs")).to_be_visible()
                    await page.click("#tab-all")
                    await expect(page.locator(".session")).to_have_count(2)
                    await page.fill("#admin-search", "invoice")
                    await expect(page.locator(".session")).to_have_count(1)
                    await expect(page.locator(".session .meta")).to_contain_text("telegram")
                    await page.locator(".session").click()
                    await expect(page.locator("#banner")).to_contain_text("telegram session chat:42")
                    await expect(page.locator(".msg.bot .meta")).to_contain_text("👍 0 👎 1")
                    thumb = page.locator("img.thumb").first
                    await expect(thumb).to_be_visible()
                    assert await thumb.evaluate("img => img.complete && img.naturalWidth") > 0
                    assert "/api/admin/sessions/" in (await page.get_attribute("#export", "href") or "")
                    await expect(page.locator("#text")).to_be_disabled()
                    await expect(page.locator("#clear")).to_be_disabled()
                    await expect(page.locator(".remove")).to_have_count(0)
                    await page.select_option("#admin-platform", "web")
                    await page.fill("#admin-search", "")
                    await expect(page.locator(".session")).to_have_count(1)
                    await expect(page.locator(".session .label")).to_have_text("Hello?")
                    await page.screenshot(path=str(OUTPUT / "web-operator.png"))

                    # Back to the operator's own chats: the composer works again.
                    await page.click("#tab-mine")
                    await expect(page.locator("#text")).to_be_enabled()
                    assert problems == []
                finally:
                    await browser.close()


# A page.html a prompt-injected screenshot can make the model write: it reads the user's sessions.
STEALER = """<!DOCTYPE html>
<html><head><title>Login form</title></head><body>
<div class="row">Row 1: the login form field</div>
<script>
fetch(self.origin + "/api/sessions").then((r) => r.text()).then((t) => { document.title = "STOLEN " + t; });
</script>
<img src="x" onerror="document.title = 'HANDLER RAN'">
</body></html>"""
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><script>document.title = "SVG RAN"</script></svg>'


async def test_model_written_html_never_runs_as_the_chat(service_factory: Any, chromium: Path) -> None:
    """Issue 11, finding 4, replayed: the /code preset's page.html with a script that reads /api/sessions,
    opened from the chat; an SVG picture; inline script in the chat page itself."""
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright, expect

    from tests.hooks import forced_answer

    async with service_factory(max_new_tokens=2048) as service, running_web(service) as web:
        service.engine.generate_hook = forced_answer(service, f"```html\n{STEALER}\n```", piece=64)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
            try:
                expect.set_options(timeout=STEP_TIMEOUT_MS)
                context = await browser.new_context(accept_downloads=True)
                context.set_default_timeout(STEP_TIMEOUT_MS)
                reads: list[str] = []  # every request for the session list, from any tab or document
                context.on("request", lambda r: "/api/sessions" in r.url and reads.append(r.frame.url))
                page = await context.new_page()

                # The page's own policy: present, and it stops inline script and inline handlers.
                response = await page.goto(web.url)
                assert response is not None
                policy = response.headers["content-security-policy"]
                for directive in ("script-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
                    assert directive in policy, policy
                await expect(page.locator("#app")).to_be_visible()
                blocked = await page.evaluate(
                    """() => new Promise((resolve) => {
                        const seen = [];
                        document.addEventListener("securitypolicyviolation", (e) => {
                            seen.push(e.effectiveDirective);
                            if (seen.length === 2) resolve({ seen, inline: window.inlineRan, handler: window.handlerRan });
                        });
                        const script = document.createElement("script");
                        script.textContent = "window.inlineRan = true";
                        document.body.append(script);
                        const img = document.createElement("img");
                        img.setAttribute("onerror", "window.handlerRan = true");
                        img.src = "/no-such-picture";
                        document.body.append(img);
                    })"""
                )
                assert sorted(blocked["seen"]) == ["script-src-attr", "script-src-elem"], blocked
                assert blocked.get("inline") is None and blocked.get("handler") is None

                # An SVG is refused before it becomes a blob of this origin (and by the server, see the API tests).
                await page.set_input_files("#file", files=[{"name": "logo.svg", "mimeType": "image/svg+xml", "buffer": SVG}])
                await expect(page.locator("#toast")).to_contain_text("SVG")
                await expect(page.locator("#tray .tray-item")).to_have_count(0)

                # /code on a screenshot: the model writes the stealer.
                shot = picture_bytes(size=(160, 120), color=(240, 240, 240))
                await page.set_input_files("#file", files=[{"name": "form.png", "mimeType": "image/png", "buffer": shot}])
                await page.click('.preset[data-preset="code"]')
                # The chat reloads its session list once the answer has ended: only reads after that count.
                async with page.expect_response(
                    lambda r: urlparse(r.url).path == "/api/sessions" and r.frame == page.main_frame,
                    timeout=ANSWER_TIMEOUT_MS,
                ):
                    await page.press("#text", "Enter")
                    link = page.locator("a.download", has_text="page.html")
                    await expect(link).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
                reads.clear()

                # Clicking it downloads the file, unchanged.
                async with page.expect_download() as download_info:
                    await link.click()
                download = await download_info.value
                assert Path(await download.path()).read_text() == STEALER + "\n"

                # Opening it in a tab, as the attack did, downloads it too: it never becomes a page of this origin.
                href = await link.get_attribute("href")
                assert href is not None and href.startswith("blob:")
                tab = await context.new_page()
                async with tab.expect_download() as opened:
                    with pytest.raises(PlaywrightError, match="Download is starting"):
                        await tab.goto(href)
                assert (await opened.value).suggested_filename
                assert tab.url in ("about:blank", "") and "STOLEN" not in await tab.title()
                assert reads == [], reads

                # The control: the same HTML as the text/html blob the page used to make does read the
                # sessions in this browser, so the assertions above can fail.
                old = await page.evaluate("(h) => URL.createObjectURL(new Blob([h], { type: 'text/html' }))", STEALER)
                control = await context.new_page()
                await control.goto(old)
                await expect(control).to_have_title(re.compile("^STOLEN"))
                assert reads == [old]
            finally:
                await browser.close()


async def test_the_page_in_chinese_in_a_real_browser(service_factory: Any, chromium: Path) -> None:
    """A browser set to Chinese (Accept-Language zh-CN) gets the page's words and the bot's in Chinese."""
    from playwright.async_api import async_playwright, expect

    async with service_factory() as service, running_web(service) as web:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
            try:
                expect.set_options(timeout=STEP_TIMEOUT_MS)
                context = await browser.new_context(locale="zh-CN")
                context.set_default_timeout(STEP_TIMEOUT_MS)
                page = await context.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                await page.goto(web.url)
                await expect(page.locator("#app")).to_be_visible()
                await expect(page.locator("html")).to_have_attribute("lang", "zh")
                await expect(page.locator("#send")).to_have_text("发送")
                await expect(page.locator("#new-chat")).to_have_text("+ 新聊天")
                await expect(page.locator("#text")).to_have_attribute("placeholder", re.compile("^拖入或粘贴截图"))
                await expect(page.locator("label.attach")).to_have_attribute("title", "附加图片、PDF 或录屏")
                await expect(page.locator("#file")).to_have_count(1)  # the label's text changed, its input stayed
                await expect(page.locator('.preset[data-preset="ocr"]')).to_have_text("读取文字")
                await page.fill("#text", "/undo")
                await page.press("#text", "Enter")
                await expect(page.get_by_text("没有可撤销的内容。")).to_be_visible()
                assert not problems, problems
            finally:
                await browser.close()


async def _open_chat(browser: Any) -> tuple[Any, list[str]]:
    """A page of the chat with every page error, console error and CSP violation collected."""
    from playwright.async_api import expect

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
    return page, problems


async def test_a_notice_shows_above_its_answer(service_factory: Any, chromium: Path) -> None:
    """Review finding 1 replayed: a PDF longer than VLMBOT_MAX_PDF_PAGES answers with a notice ("I read
    pages 1-2"); the page shows it above the answer, live and in every later view, after a reload too (it is
    stored with the turn), with no error toast."""
    from playwright.async_api import async_playwright, expect

    from tests.pdfs import coloured_pdf

    async with service_factory(max_new_tokens=8, max_pdf_pages=2) as service, running_web(service) as web:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
            try:
                page, problems = await _open_chat(browser)
                await page.goto(web.url)
                await expect(page.locator("#app")).to_be_visible()
                await page.set_input_files(
                    "#file", files=[{"name": "guide.pdf", "mimeType": "application/pdf", "buffer": coloured_pdf(4)}]
                )
                await page.fill("#text", "What do these pages say?")
                await page.press("#text", "Enter")
                answered = page.locator('.turn[data-turn] .msg.bot[data-state="done"]')
                await expect(answered).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
                # The view the page draws once the answer has ended (from the stored turn and what the stream showed).
                notice = answered.locator("p.notice")
                await expect(notice).to_have_count(1)
                await expect(notice).to_contain_text("'guide.pdf' has 4 pages; I read pages 1-2.")
                order = await answered.evaluate("bot => Array.from(bot.children, (c) => c.className)")
                assert order[:2] == ["notice", "body"], order
                assert (await answered.locator(".body").inner_text()).strip()
                # A follow-up redraws the conversation again: the first answer keeps its notice.
                await page.fill("#text", "And the second page?")
                await page.press("#text", "Enter")
                await expect(answered).to_have_count(2, timeout=ANSWER_TIMEOUT_MS)
                await expect(answered.first.locator("p.notice")).to_contain_text("I read pages 1-2.")
                # A reload draws from the stored turns alone: the notice is still there, above its answer.
                await page.reload()
                await expect(answered).to_have_count(2)
                await expect(answered.first.locator("p.notice")).to_have_count(1)
                await expect(answered.first.locator("p.notice")).to_contain_text("'guide.pdf' has 4 pages; I read pages 1-2.")
                order = await answered.first.evaluate("bot => Array.from(bot.children, (c) => c.className)")
                assert order[:2] == ["notice", "body"], order
                await expect(answered.nth(1).locator("p.notice")).to_have_count(0)
                await expect(page.locator("#toast")).to_be_hidden()
                assert problems == [], problems
            finally:
                await browser.close()


async def test_a_recording_shows_as_a_video(service_factory: Any, chromium: Path) -> None:
    """Review finding 7 replayed: a WebM clip previews in the tray, shows as a muted <video> with controls
    in the sent message and after a reload, served with its own type; the page's policy allows nothing else."""
    from playwright.async_api import async_playwright, expect

    from tests.engine.videos import clip

    async with service_factory(max_new_tokens=8) as service, running_web(service) as web:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
            try:
                page, problems = await _open_chat(browser)
                response = await page.goto(web.url)
                assert response is not None
                assert "media-src 'self' blob:;" in response.headers["content-security-policy"]
                await expect(page.locator("#app")).to_be_visible()
                await page.set_input_files(
                    "#file", files=[{"name": "screen.webm", "mimeType": "video/webm", "buffer": clip(2.0, container="webm")}]
                )
                preview = page.locator("#tray .tray-item video")
                await expect(preview).to_have_count(1)
                # The preview loads under the page's policy (a blocked blob: never gets its metadata).
                await page.wait_for_function("() => document.querySelector('#tray video').readyState >= 1")
                await page.fill("#text", "What happens here?")
                await page.press("#text", "Enter")
                await expect(page.locator(".turn.live .msg.user video.thumb")).to_have_count(1)
                answered = page.locator('.turn[data-turn] .msg.bot[data-state="done"]')
                await expect(answered).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)

                await page.reload()
                video = page.locator(".turn[data-turn] .msg.user video.thumb")
                await expect(video).to_have_count(1)
                await expect(page.locator(".turn[data-turn] .msg.user img")).to_have_count(0)
                assert await video.evaluate("v => v.controls && v.muted") is True
                await page.wait_for_function(
                    "() => { const v = document.querySelector('.turn[data-turn] video'); return v && v.readyState >= 1; }"
                )
                src = await video.get_attribute("src")
                assert src is not None
                served = await page.request.get(web.url.rstrip("/") + src)
                assert served.headers["content-type"] == "video/webm"
                assert served.headers["x-content-type-options"] == "nosniff"
                assert problems == [], problems
            finally:
                await browser.close()
