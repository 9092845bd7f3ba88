"""The data on disk is the owner's alone (issue 11, finding 7): a real run leaves directories 0700 and
files 0600 whatever the umask it started with, and a data dir that is open to others is reported."""

from __future__ import annotations

import logging
import os
import queue
import re
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.filemodes import make_private_dir, open_paths, prepare_data_dir, sqlite_file, write_private_file
from bot.pictures import PictureFiles, check_picture
from tests.bot.test_cli import VLMBOT, clean_env
from tests.conftest import picture_bytes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _modes(root: Path) -> dict[str, int]:
    found = {".": _mode(root)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = _mode(path)
    return found


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask (022), under which files are world-readable unless created otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _lines(stream) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_a_real_chat_leaves_only_private_files(tmp_path: Path) -> None:
    """`vlmbot chat` started with umask 022: database, its WAL and shared memory (stat-ed while the
    process holds them open), pictures, the export, the demo model that transformers writes, and
    every directory are the owner's only."""
    (tmp_path / "a.png").write_bytes(picture_bytes())
    data = tmp_path / "data"
    process = subprocess.Popen(
        ["sh", "-c", 'umask 022 && exec "$0" chat', VLMBOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, cwd=tmp_path,
        env=clean_env(VLMBOT_DATA_DIR=str(data), VLMBOT_MAX_NEW_TOKENS="4"),
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        lines = _lines(process.stdout)
        process.stdin.write("/image a.png\nWhat is this?\n/export\n")
        process.stdin.flush()
        seen = []
        while not any("Saved to" in line for line in seen):
            line = lines.get(timeout=120)
            assert line, f"vlmbot chat ended early: {''.join(seen)}"
            seen.append(line)
        modes = _modes(data)  # while the process still runs
    finally:
        process.stdin.close()
        process.wait(60)
    assert process.returncode == 0
    assert {"vlmbot.db", "vlmbot.db-wal", "vlmbot.db-shm", "images", "exports", "tiny-model/config.json"} <= set(modes)
    assert any(name.startswith("images/") and len(Path(name).name) == 64 for name in modes)  # the picture
    assert any(name.startswith("exports/") and name.endswith(".json") for name in modes)
    wide = {name: f"{mode:o}" for name, mode in modes.items() if mode & 0o077}
    assert wide == {}


def test_an_open_data_dir_is_reported_with_the_command_that_closes_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "vlmbot.db").touch(mode=0o644)
    (data / "vlmbot.db").chmod(0o644)

    def upgrade() -> str:
        result = subprocess.run([VLMBOT, "db", "upgrade"], capture_output=True, text=True, cwd=tmp_path,
                                env=clean_env(VLMBOT_DATA_DIR=str(data)), timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        return result.stderr

    warnings = [line for line in upgrade().splitlines() if "readable by other users" in line]
    assert len(warnings) == 1
    assert f"{data} (755)" in warnings[0] and f"{data / 'vlmbot.db'} (644)" in warnings[0]
    assert _mode(data) == 0o755 and _mode(data / "vlmbot.db") == 0o644  # reported, not changed
    command = re.search(r"run `([^`]+)`", warnings[0])
    assert command and command.group(1) == f"chmod -R go-rwx {data}"
    subprocess.run(command.group(1), shell=True, check=True)
    assert "readable by other users" not in upgrade()


def test_a_private_data_dir_is_not_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="bot.filemodes"):
        prepare_data_dir(data, f"sqlite+aiosqlite:///{data / 'vlmbot.db'}")
        prepare_data_dir(data, f"sqlite+aiosqlite:///{data / 'vlmbot.db'}")
    assert caplog.records == []


def test_a_database_outside_the_data_dir_is_checked_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data, elsewhere = tmp_path / "data", tmp_path / "db"
    make_private_dir(data)
    elsewhere.mkdir()
    database = elsewhere / "bot.db"
    for path in (database, elsewhere / "bot.db-wal"):
        path.touch()
        path.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="bot.filemodes"):
        prepare_data_dir(data, f"sqlite:///{database}")
    (record,) = caplog.records
    assert record.getMessage().endswith(f"run `chmod -R go-rwx {data} {database} {elsewhere / 'bot.db-wal'}`")
    assert [path for path, _ in open_paths(data, database)] == [database, elsewhere / "bot.db-wal"]


async def test_files_are_created_private_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "data"
    prepare_data_dir(data, f"sqlite+aiosqlite:///{data / 'vlmbot.db'}")
    assert _mode(data) == 0o700 and _mode(data / "vlmbot.db") == 0o600
    picture = check_picture(picture_bytes(), max_bytes=10**6, max_pixels=10**6)
    files = PictureFiles(data / "images")
    await files.save(picture)
    path = files.path(picture.sha256)
    assert (_mode(data / "images"), _mode(path.parent), _mode(path)) == (0o700, 0o700, 0o600)
    export = make_private_dir(data / "exports" / "nested") / "session.json"
    assert _mode(data / "exports") == 0o700
    export.write_text("{}")  # an export left by an older version, world-readable
    assert _mode(export) == 0o644
    write_private_file(export, b'{"turns": []}')
    assert _mode(export) == 0o600 and export.read_bytes() == b'{"turns": []}'


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite+aiosqlite:////srv/vlmbot/vlmbot.db", Path("/srv/vlmbot/vlmbot.db")),
        ("sqlite:///relative.db", Path("relative.db")),
        ("sqlite+aiosqlite:///:memory:", None),
        ("sqlite://", None),
        ("sqlite+aiosqlite:///file:x.db?uri=true", None),
        ("postgresql+asyncpg://user:pw@db/vlmbot", None),
    ],
)
def test_sqlite_file_of_a_database_url(url: str, path: Path | None) -> None:
    assert sqlite_file(url) == path
