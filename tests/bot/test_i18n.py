"""The bot's own words: every text marked for translation has a Chinese one, the compiled catalog is
the committed .po's, and the texts users see go through gettext."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path
from typing import Any, cast

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot import wording
from bot.config import Settings
from bot.i18n import LOCALE_DIR, _, speaking, translate
from bot.inbox import Inbox
from bot.incoming import Sender
from bot.language import Language, choose, from_accept_language, from_tag
from bot.presets import ANSWER_LANGUAGE, preset_named
from engine.arch import ARCHS
from engine.batch import HALF_BUDGET_NOTE, INTERNAL_MESSAGE, OOM_MESSAGE
from engine.interface import EngineBusy, EngineTimeout, EngineUnavailable
from engine.remote import LOST_MID_ANSWER, REJECTED

ROOT = Path(__file__).resolve().parents[2]
PO = LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "vlmbot.po"
MO = PO.with_suffix(".mo")
_FIELD = re.compile(r"\{([a-z_]*)(?::[^}]*)?\}")


def extracted() -> dict[str, tuple[str, str]]:
    """Every marked text in the source as Babel extracts it now (babel.cfg), msgid -> (file, line)."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: dict[str, tuple[str, str]] = {}
    for filename, line, message, _comments, _context in extract_from_dir(ROOT, method_map, options_map):
        singular = message[0] if isinstance(message, tuple) else message
        found.setdefault(singular, (filename, str(line)))
    return found


def committed_catalog():
    with PO.open("rb") as handle:
        return read_po(handle)


def test_every_marked_text_has_a_chinese_translation() -> None:
    """Fails for a new _() / N_() text until `make messages`, a translation in the .po and `make catalogs`."""
    catalog = committed_catalog()
    problems = []
    for msgid, (filename, line) in sorted(extracted().items()):
        entry = catalog.get(msgid)
        strings = [] if entry is None else list(entry.string) if isinstance(entry.string, tuple) else [entry.string]
        if entry is None:
            problems.append(f"{filename}:{line}: not in {PO.name}: {msgid!r}")
        elif entry.fuzzy or not all(s.strip() for s in strings):
            problems.append(f"{filename}:{line}: untranslated or fuzzy: {msgid!r}")
    assert not problems, "\n".join(problems)
    assert len(extracted()) > 100  # the extraction really read the source


def test_translations_keep_every_placeholder() -> None:
    """A translation that drops or renames a {field} would raise KeyError (or say less) when formatted."""
    for entry in committed_catalog():
        if not entry.id:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        wanted = set().union(*(set(_FIELD.findall(i)) for i in ids))
        for string in strings:
            assert set(_FIELD.findall(string)) <= wanted, (entry.id, string)
            assert set(_FIELD.findall(string)) >= set(_FIELD.findall(ids[-1])), (entry.id, string)


def test_the_committed_mo_is_the_compiled_po() -> None:
    """The bot loads the .mo: it must be what `make catalogs` makes of the .po now."""
    compiled = io.BytesIO()
    write_mo(compiled, committed_catalog(), use_fuzzy=False)
    assert MO.read_bytes() == compiled.getvalue(), "bot/locale is stale: run `make catalogs` and commit the .mo"


def test_the_catalog_is_loaded_and_english_is_the_source() -> None:
    with speaking(Language.ZH):
        assert _(wording.CLEARED) == "已清空。下一条消息将开始新的对话。"
        assert wording.queued(3) == "⏳ 正在排队：你前面还有 2 个问题。"
        assert _("") == ""  # not the catalog's header
    assert _(wording.CLEARED) == wording.CLEARED
    assert wording.queued(2) == "⏳ Waiting in the queue: 1 question ahead of yours."
    assert translate(wording.CLEARED, Language.ZH) != wording.CLEARED


def test_the_engines_sentences_are_translated() -> None:
    """engine/ words its errors in English; the core says each in the user's language (wording.engine_sentence)."""
    sentences = [
        EngineBusy().user_message,
        EngineTimeout().user_message,
        EngineUnavailable().user_message,
        OOM_MESSAGE,
        INTERNAL_MESSAGE,
        HALF_BUDGET_NOTE,
        LOST_MID_ANSWER,
        REJECTED,
    ]
    for sentence in sentences:
        assert sentence in wording.ENGINE_SENTENCES
        assert translate(sentence, Language.ZH) != sentence
    with speaking(Language.ZH):
        assert wording.engine_sentence("remote says no") == "remote says no"


# --- user-facing literals that bypass gettext ------------------------------------------------------

_GETTEXT = {"_", "N_", "ngettext"}


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _inside_gettext(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _GETTEXT:
            ids.update(id(child) for child in ast.walk(node))
    return ids


def test_every_text_in_wording_goes_through_gettext() -> None:
    """bot/wording.py holds only words for users: each string in it is marked (N_) or said (_, ngettext),
    or merely glues translated parts ("", ", ")."""
    source = (ROOT / "bot" / "wording.py").read_text()
    tree = ast.parse(source)
    allowed = _docstring_nodes(tree) | _inside_gettext(tree)
    exports = next(n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "__all__")
    allowed |= {id(child) for child in ast.walk(exports)}
    bare = [
        f"bot/wording.py:{node.lineno}: {ast.get_source_segment(source, node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant | ast.JoinedStr)
        and id(node) not in allowed
        and (isinstance(node, ast.JoinedStr) or (isinstance(node.value, str) and re.search(r"[A-Za-z]{2}", node.value)))
    ]
    assert not bare, "\n".join(bare)


_REPLY_VALUES = {"Text", "Notice", "FetchFailed", "PictureRejected"}


def test_no_reply_is_built_from_an_untranslated_literal() -> None:
    """A Text, Notice, FetchFailed or PictureRejected, or a file's caption, gets its words from gettext
    (or from a value that did), never from a string literal or f-string written in place."""
    problems = []
    for path in sorted([*(ROOT / "bot").glob("*.py"), *(ROOT / "adapters").rglob("*.py")]):
        source = path.read_text()
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            texts = [node.args[0]] if name in _REPLY_VALUES and node.args else []
            texts += [k.value for k in node.keywords if k.arg in ("caption", "text") and name in (*_REPLY_VALUES, "Document", "Picture")]
            for text in texts:
                if isinstance(text, ast.JoinedStr) or (isinstance(text, ast.Constant) and isinstance(text.value, str)):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.get_source_segment(source, node)}")
    assert not problems, "\n".join(problems)


# --- which language ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("zh", Language.ZH),
        ("zh-hans", Language.ZH),  # Telegram's form
        ("zh-CN", Language.ZH),  # Slack's
        ("zh_CN.UTF-8", Language.ZH),  # LANG
        ("zh-Hans-SG", Language.ZH),
        ("zh-SG", Language.ZH),
        ("zh-TW", Language.ZH),  # Traditional: Simplified, the only Chinese there is (bot/language.py)
        ("zh-hant", Language.ZH),
        ("zh-HK", Language.ZH),
        ("en", Language.EN),
        ("en-GB", Language.EN),
        ("EN_us", Language.EN),
        ("fr", None),
        ("ja-JP", None),
        ("C.UTF-8", None),
        ("POSIX", None),
        ("", None),
        (None, None),
        ("zhx", None),
    ],
)
def test_language_tags(tag: str | None, language: Language | None) -> None:
    assert from_tag(tag) is language


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-CN,zh;q=0.9", Language.ZH),
        ("zh-CN,zh;q=0.9,en;q=0.8", Language.ZH),
        ("en-US,en;q=0.9,zh-CN;q=0.8", Language.EN),
        ("en;q=0.5, zh;q=0.8", Language.ZH),  # weighed, not first-listed
        ("fr-FR, de;q=0.9, zh-TW;q=0.3", Language.ZH),  # the best the bot speaks
        ("fr-FR, de;q=0.9", None),
        ("zh;q=0, en;q=0.1", Language.EN),  # q=0: "not Chinese"
        ("*", None),
        ("zh;q=abc, en", Language.EN),  # a malformed q-value: that range is skipped
        ("zh;q=2", None),  # out of range
        (" ZH-cn ; Q=0.7 ", Language.ZH),
        ("", None),
        (None, None),
        (";;,,;q=", None),
    ],
)
def test_accept_language(header: str | None, language: Language | None) -> None:
    assert from_accept_language(header) is language


def test_the_setting_forces_a_language_or_follows_the_user() -> None:
    assert choose("auto", Language.ZH) is Language.ZH
    assert choose("auto", None) is Language.EN
    assert choose("en", Language.ZH) is Language.EN
    assert choose("zh", None) is Language.ZH
    assert choose("zh", Language.EN) is Language.ZH


# --- presets ----------------------------------------------------------------------------------------


def test_presets_ask_for_the_users_language() -> None:
    for name in ("ocr", "describe", "table", "code", "find"):
        preset = preset_named(name)
        assert preset is not None
        for arch in ARCHS.values():
            english = preset.prompt(arch, "the label")
            chinese = preset.prompt(arch, "the label", language=Language.ZH)
            assert "中文" not in english and translate(ANSWER_LANGUAGE, Language.ZH) in chinese
            assert chinese.startswith(english)
            several = preset.prompt(arch, "the label", pictures=2, language=Language.ZH)
            assert several.endswith(translate(ANSWER_LANGUAGE, Language.ZH))
    assert "请用简体中文回答" in translate(ANSWER_LANGUAGE, Language.ZH)


def test_no_function_hides_gettext_behind_a_throwaway_underscore() -> None:
    """In a module that imports `_`, `a, _, b = ...` makes `_` local to the whole function, and a `_()`
    call in it then raises UnboundLocalError at run time."""
    problems = []
    for path in sorted([*(ROOT / "bot").glob("*.py"), *(ROOT / "adapters").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        if not any(isinstance(n, ast.ImportFrom) and any(a.name == "_" for a in n.names) for n in tree.body):
            continue
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(function):
                    if isinstance(node, ast.Name) and node.id == "_" and isinstance(node.ctx, ast.Store):
                        problems.append(f"{path.relative_to(ROOT)}:{node.lineno} in {function.name}()")
    assert not problems, "\n".join(problems)


async def test_the_inbox_decides_the_language_once_and_a_broken_lookup_costs_only_the_language() -> None:
    class Broken:
        async def language(self, sender: Sender) -> Language | None:
            raise RuntimeError("the lookup broke")

    class Chinese:
        async def language(self, sender: Sender) -> Language | None:
            return Language.ZH

    auto = Inbox(cast(Any, None), Settings.model_construct())
    assert await auto.language_of(Sender("u")) is Language.EN
    assert await auto.language_of(Sender("u"), Broken()) is Language.EN
    assert await auto.language_of(Sender("u"), Chinese()) is Language.ZH
    assert await auto.language_of(Sender("u", language=Language.EN), Chinese()) is Language.EN  # the event's word wins
    forced = Inbox(cast(Any, None), Settings.model_construct().model_copy(update={"language": "en"}))
    assert await forced.language_of(Sender("u", language=Language.ZH), Chinese()) is Language.EN


def test_help_and_status_speak_of_pdfs_videos_and_quantization_in_words() -> None:
    from bot.commands import help_text
    from engine.interface import EngineHealth

    health = EngineHealth("tiny", "cpu", "float32", "sdpa", "", 0, 0)
    assert "PDF" in help_text() and "screen recording" in help_text()
    assert "quantization none" in wording.status_text(None, health)
    with speaking(Language.ZH):
        assert "PDF" in help_text() and "录屏" in help_text()
        assert "（float32，sdpa，未量化）" in wording.status_text(None, health)
        assert "（float32，sdpa，量化 nf4）" in wording.status_text(None, EngineHealth("t", "cpu", "float32", "sdpa", "", 0, 0, quantization="nf4"))
