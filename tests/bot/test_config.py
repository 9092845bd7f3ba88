"""Settings come from the environment in one place, and the README documents every one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Settings, load_settings

README = Path(__file__).parents[2] / "README.md"


def env_names() -> list[str]:
    return [
        field.validation_alias.choices[0] for field in Settings.model_fields.values()
    ]


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("VLMBOT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("VLMBOT_MAX_PIXELS", "500000")
    monkeypatch.setenv("TELEGRAM_ALLOWED_USERS", " 1, 2 ,,3")
    monkeypatch.setenv("VLMBOT_PREFIX_CACHE", "false")
    settings = load_settings()
    assert settings.data_dir == tmp_path / "d"
    assert settings.max_pixels == 500000
    assert settings.telegram_allowed_users == ("1", "2", "3")
    assert settings.prefix_cache is False
    assert (
        settings.resolved_database_url()
        == f"sqlite+aiosqlite:///{(tmp_path / 'd' / 'vlmbot.db').resolve()}"
    )


def test_env_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLMBOT_QUEUE_SIZE", raising=False)
    (tmp_path / ".env").write_text("VLMBOT_QUEUE_SIZE=7\n")
    assert load_settings().queue_size == 7


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [name for name in env_names() if f"`{name}`" not in text]
    assert not missing, f"README configuration table lacks {missing}"


async def test_engine_settings_reach_the_local_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_qwen25_dir: Path
) -> None:
    from bot.service import build_engine
    from engine.local import LocalEngine

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VLMBOT_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("VLMBOT_MODEL", str(tiny_qwen25_dir))
    monkeypatch.setenv("VLMBOT_PREFILL_CHUNK_TOKENS", "96")
    monkeypatch.setenv("VLMBOT_PREPARE_WORKERS", "3")
    engine, demo = await build_engine(load_settings())
    assert isinstance(engine, LocalEngine) and not demo
    assert (
        engine._options.prefill_chunk_tokens == 96
        and engine._options.prepare_workers == 3
    )
    monkeypatch.setenv("VLMBOT_PREPARE_WORKERS", "0")
    with pytest.raises(ValueError, match="VLMBOT_PREPARE_WORKERS"):
        load_settings()
