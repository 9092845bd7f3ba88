"""The operator's instructions: general and per place, extended or replaced, read again when a file
changes, bounded by the context budget; end to end through the Telegram adapter to a model server."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.events import parse_message
from adapters.telegram.updates import thread_key
from bot.adapter import ConfigurationError
from bot.instructions import MAX_FILE_BYTES, Instructions, place_of
from bot.prompt import SYSTEM_PROMPT
from engine.interface import PromptTurn
from engine.prompt_bound import prompt_token_bound
from tests.adapters.telegram.botapi_standin import BotApiStandIn
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    GROUP,
    OTHER_USER,
    running_adapter,
    settle,
)
from tests.engine.openai_standin import OpenAIStandIn

VLMBOT = str(Path(sys.executable).with_name("vlmbot"))


async def count(turns: Sequence[PromptTurn]) -> int:
    return prompt_token_bound(turns, 0)  # what a bot on a model server counts


def touch(path: Path, text: str) -> None:
    """Write and move the modification time on, as an editor saving a minute later would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 60 * 10**9, before + 60 * 10**9))


# --- places ---------------------------------------------------------------------------------------


def test_places_follow_the_adapters_thread_keys() -> None:
    assert place_of("telegram", thread_key(-1001234567890, None)) == "telegram_-1001234567890"
    assert place_of("telegram", thread_key(-1001234567890, 42)) == "telegram_-1001234567890"  # a forum topic
    assert place_of("telegram", thread_key(111, None)) == "telegram_111"
    channel = parse_message(
        {"type": "message", "channel": "C0123ABCD", "user": "U1", "ts": "1.1", "thread_ts": "1.0", "text": "hi"},
        bot_user_id="UBOT", team="T1",
    )
    dm = parse_message({"type": "message", "channel": "D0456", "channel_type": "im", "user": "U1", "ts": "2.0"},
                       bot_user_id="UBOT", team="T1")
    assert channel is not None and dm is not None
    assert place_of("slack", channel.thread_key) == "slack_C0123ABCD" and place_of("slack", dm.thread_key) == "slack_D0456"
    assert place_of("web", "b3f1/thread-1") == "web" and place_of("console", "main") == "console"
    assert place_of("telegram", "../../etc/passwd") is None and place_of("slack", "../x") is None


# --- the files ------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    general = tmp_path / "instructions.md"
    general.write_text("Our VPN client is WireGuard. Tickets go to the IT queue.\n", encoding="utf-8")
    places = tmp_path / "places"
    places.mkdir()
    (places / "telegram_-100200.md").write_text("This group is the finance team: invoices are in SAP.", encoding="utf-8")
    (places / "slack_C0PRINT.replace.md").write_text("Only answer questions about the printer fleet.", encoding="utf-8")
    return general, places


async def test_general_extended_and_replaced(files: tuple[Path, Path]) -> None:
    general, places = files
    instructions = Instructions(general, places, count, limit=4000)
    await instructions.check()
    plain = await instructions.system_prompt("telegram", "chat:111")
    assert plain == SYSTEM_PROMPT + "\n\nOur VPN client is WireGuard. Tickets go to the IT queue."
    finance = await instructions.system_prompt("telegram", "chat:-100200/topic:3")
    assert finance.startswith(plain) and finance.endswith("This group is the finance team: invoices are in SAP.")
    printers = await instructions.system_prompt("slack", "C0PRINT/1700000000.1")
    assert printers == SYSTEM_PROMPT + "\n\nOnly answer questions about the printer fleet."
    assert await Instructions(None, None, count, limit=10).system_prompt("web", "u/t") == SYSTEM_PROMPT


async def test_files_are_read_again_when_they_change(files: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    general, places = files
    instructions = Instructions(general, places, count, limit=600)
    await instructions.check()
    touch(general, "Our VPN client is now OpenVPN.")
    assert (await instructions.system_prompt("web", "u/t")).endswith("Our VPN client is now OpenVPN.")
    touch(places / "web.md", "Web users are visitors: never mention internal hosts.")  # a new place file
    assert (await instructions.system_prompt("web", "u/t")).endswith("never mention internal hosts.")
    good = await instructions.system_prompt("telegram", "chat:-100200")
    with caplog.at_level(logging.ERROR, logger="bot.instructions"):
        touch(places / "telegram_-100200.md", "Very long instructions. " * 200)
        for _ in range(3):
            assert await instructions.system_prompt("telegram", "chat:-100200") == good  # the last good ones stay
    assert len(caplog.records) == 1 and "telegram_-100200" in caplog.records[0].getMessage()
    assert "more than the 600 allowed" in caplog.records[0].getMessage()
    (places / "telegram_-100200.md").unlink()
    assert await instructions.system_prompt("telegram", "chat:-100200") == SYSTEM_PROMPT + "\n\nOur VPN client is now OpenVPN."


@pytest.mark.parametrize(
    "problem",
    ["too long", "too big", "not utf-8", "missing", "two files"],
)
async def test_a_bad_file_stops_the_start_with_one_line(files: tuple[Path, Path], problem: str) -> None:
    general, places = files
    culprit = places / "telegram_-100200.md"
    if problem == "too long":
        culprit.write_text("Ask for the asset tag first. " * 40, encoding="utf-8")
    elif problem == "too big":
        culprit.write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    elif problem == "not utf-8":
        culprit.write_bytes("Rechnungen in SAP prüfen".encode("latin-1"))
    elif problem == "missing":
        culprit = general
        general.unlink()
    else:
        (places / "telegram_-100200.replace.txt").write_text("Other instructions.", encoding="utf-8")
    with pytest.raises(ConfigurationError) as raised:
        await Instructions(general, places, count, limit=600).check()
    message = str(raised.value)
    assert "\n" not in message and str(culprit) in message, message


async def test_misnamed_files_are_named_in_the_log(files: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    _, places = files
    (places / "telegram_general.md").write_text("?", encoding="utf-8")
    (places / "notes.docx").write_bytes(b"PK")
    beside = places / "general.md"  # the general instructions may live in the same folder
    beside.write_text("Tickets go to the IT queue.", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bot.instructions"):
        await Instructions(beside, places, count, limit=4000).check()
    assert "telegram_general.md" in caplog.text and "notes.docx" in caplog.text
    assert "general.md," not in caplog.text and not caplog.text.rstrip().endswith(" general.md")


def test_vlmbot_refuses_to_start_with_instructions_too_long(tmp_path: Path) -> None:
    (tmp_path / "rules.md").write_text("Always answer in full sentences. " * 100, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLMBOT_", "TELEGRAM_", "SLACK_"))}
    env.update(
        VLMBOT_DATA_DIR=str(tmp_path / "data"),
        VLMBOT_ENGINE_URL="http://127.0.0.1:9/v1",  # counted without the server: none is needed
        VLMBOT_INSTRUCTIONS_FILE=str(tmp_path / "rules.md"),
        VLMBOT_CONTEXT_TOKENS="4096",
        VLMBOT_WEB="false",
    )
    result = subprocess.run([VLMBOT, "chat"], input="", capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and str(tmp_path / "rules.md") in errors[0] and "VLMBOT_CONTEXT_TOKENS" in errors[0]
    assert "Traceback" not in result.stderr


# --- end to end: Telegram in, a model server out ----------------------------------------------------


def system_sent(server: OpenAIStandIn) -> str:
    messages: list[dict[str, Any]] = server.received[-1].body["messages"]
    assert messages[0]["role"] == "system"
    return str(messages[0]["content"])


async def test_instructions_reach_the_model(service_factory, files: tuple[Path, Path]) -> None:
    general, places = files
    (places / "telegram_-100200.md").unlink()
    (places / "telegram_-100200.replace.md").write_text("财务组：发票在 SAP 里。", encoding="utf-8")
    server = OpenAIStandIn(model="Qwen2.5-VL-7B-Instruct")
    await server.start()
    try:
        async with (
            service_factory(engine_url=server.url, instructions_file=general, instructions_dir=places) as service,
            BotApiStandIn() as telegram,
            running_adapter(telegram, service) as (adapter, _),
        ):
            await telegram.inject(telegram.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="VPN?"))
            await settle(telegram, adapter)
            assert system_sent(server) == SYSTEM_PROMPT + "\n\nOur VPN client is WireGuard. Tickets go to the IT queue."

            group = {"chat_id": GROUP, "user_id": OTHER_USER, "chat_type": "supergroup"}
            await telegram.inject(telegram.message(**group, text="@vlm_test_bot 发票在哪里？"))
            await settle(telegram, adapter)
            assert system_sent(server) == SYSTEM_PROMPT + "\n\n财务组：发票在 SAP 里。"

            touch(general, "Our VPN client is now OpenVPN; the old WireGuard profiles stop working on Friday.")
            await telegram.inject(telegram.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="And now?"))
            await settle(telegram, adapter)
            assert system_sent(server).endswith("the old WireGuard profiles stop working on Friday.")
            assert len(server.received) == 3
            assert all(text.startswith("The printer") for text in telegram.texts(ALLOWED_USER))  # answered
    finally:
        await server.stop()
        await asyncio.sleep(0)
