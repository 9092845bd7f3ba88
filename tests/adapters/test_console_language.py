"""The terminal chat speaks the terminal's language (LANG) unless VLMBOT_LANGUAGE says otherwise."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleAdapter
from bot.config import Settings
from bot.language import from_tag


def test_lang_is_read_as_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    monkeypatch.setenv("VLMBOT_LANGUAGE", "zh")
    settings = Settings(_env_file=None)
    assert settings.system_locale == "zh_CN.UTF-8" and settings.language == "zh"
    monkeypatch.setenv("VLMBOT_LANGUAGE", "fr")
    with pytest.raises(ValueError, match="VLMBOT_LANGUAGE"):
        Settings(_env_file=None)


async def chat(service: Any, tmp_path: Path, lang: str, *lines: str) -> str:
    out = io.StringIO()
    adapter = ConsoleAdapter(
        service.inbox, files_dir=tmp_path / "exports", stdin=io.StringIO(""), stdout=out,
        language=from_tag(lang), greeting="No VLMBOT_MODEL is set, so this runs a tiny random-weight demo model: its "
        "answers are random text until VLMBOT_MODEL points at real Qwen2.5-VL or Qwen3-VL weights.",
    )
    await adapter.start()
    await adapter.finished.wait()
    for line in lines:
        await adapter.process_line(line)
    await adapter.stop()
    return out.getvalue()


async def test_a_chinese_terminal(service_factory: Any, tmp_path: Path) -> None:
    async with service_factory() as service:
        text = await chat(service, tmp_path, "zh_CN.UTF-8", "/undo", f"/image {tmp_path / 'nope.png'}")
    lines = text.splitlines()
    assert lines[0].startswith("vlmbot 终端聊天") and lines[1].startswith("注意：未设置 VLMBOT_MODEL")
    assert "没有可撤销的内容。" in lines and any(line.startswith("无法读取 ") for line in lines)


async def test_an_english_terminal_and_a_forced_language(service_factory: Any, tmp_path: Path) -> None:
    async with service_factory() as service:
        text = await chat(service, tmp_path, "C.UTF-8", "/undo")
    assert text.startswith("vlmbot console chat") and "Nothing to undo." in text
    async with service_factory(language="en") as service:
        text = await chat(service, tmp_path, "zh_CN.UTF-8", "/undo")
    assert text.startswith("vlmbot console chat") and "Nothing to undo." in text
