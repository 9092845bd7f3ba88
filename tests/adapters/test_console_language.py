"""The terminal chat speaks the terminal's language (LANG) unless VLMBOT_LANGUAGE says otherwise."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ConsoleAdapter, ConsoleTransport
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
    assert "没有可撤销的内容。" in lines and any(line.startswith("文件 ") and "不存在" in line for line in lines)


async def test_an_english_terminal_and_a_forced_language(service_factory: Any, tmp_path: Path) -> None:
    async with service_factory() as service:
        text = await chat(service, tmp_path, "C.UTF-8", "/undo")
    assert text.startswith("vlmbot console chat") and "Nothing to undo." in text
    async with service_factory(language="en") as service:
        text = await chat(service, tmp_path, "zh_CN.UTF-8", "/undo")
    assert text.startswith("vlmbot console chat") and "Nothing to undo." in text


async def test_chinese_console_lines_have_no_english_left(service_factory: Any, tmp_path: Path) -> None:
    from bot.i18n import speaking
    from bot.language import Language
    from bot.transport import TextKind

    (tmp_path / "folder").mkdir()
    async with service_factory() as service:
        text = await chat(service, tmp_path, "zh_CN.UTF-8", f"/image {tmp_path / 'nope.png'}", f"/image {tmp_path / 'folder'}")
    assert f"文件 {tmp_path / 'nope.png'} 不存在。请检查路径后重试。" in text.splitlines()
    assert f"{tmp_path / 'folder'} 是一个文件夹；请给出其中某个文件的路径。" in text.splitlines()
    assert "No such file" not in text and "directory" not in text  # not the OS's English
    out = io.StringIO()
    transport = ConsoleTransport(out, tmp_path)
    with speaking(Language.ZH):
        await transport.post("请稍后重试。", TextKind.ERROR)
        await transport.post("只读取了前 8 页。", TextKind.NOTICE)
    assert out.getvalue() == "错误：请稍后重试。\n注意：只读取了前 8 页。\n"
