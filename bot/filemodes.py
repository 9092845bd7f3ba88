"""The data on disk is the owner's alone: directories 0700, files 0600, a warning when they are wider.

Conversations, pictures and exports are private. `vlmbot` sets umask 077 at start (so whatever a
library creates, SQLite's -wal/-shm and the demo model included, is private), and the files it
creates itself are created with explicit modes, so the code is private even when imported without
the CLI. Existing paths are never chmod-ed: an operator may have widened them on purpose; they get
one warning line with the command that narrows them.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

__all__ = [
    "PRIVATE_UMASK", "make_private_dir", "open_paths", "prepare_data_dir", "private_umask", "sqlite_file",
    "write_private_file",
]

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
_OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO


def private_umask() -> int:
    """Make every file this process creates from now on private; returns the previous umask."""
    return os.umask(PRIVATE_UMASK)


def make_private_dir(path: Path) -> Path:
    """`mkdir -p` with mode 0700 for each directory it creates (`Path.mkdir(parents=True)` gives the
    parents the default mode)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # created meanwhile by another process or task
            pass
    return path


def write_private_file(path: Path, data: bytes) -> Path:
    """Write `data` to `path` with mode 0600 (an existing file is narrowed to 0600 too)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)
    return path


def sqlite_file(database_url: str) -> Path | None:
    """The database file of a `sqlite` URL; None for other databases, in-memory SQLite and `file:` URIs."""
    url = make_url(database_url)
    name = url.database
    if url.get_backend_name() != "sqlite" or not name or name == ":memory:" or url.query.get("uri"):
        return None
    return Path(name)


def _create_private_file(path: Path) -> None:
    """Create an empty file with mode 0600 unless it exists. SQLite gives its -wal and -shm files the
    database file's mode, so creating the database this way keeps all three private."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def open_paths(data_dir: Path, database: Path | None) -> list[tuple[Path, int]]:
    """Existing paths (the data dir, the SQLite database and its -wal/-shm) that group or others can
    use, with their modes."""
    candidates = [data_dir]
    if database is not None:
        candidates += [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]
    found = []
    for path in candidates:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & _OPEN_BITS:
            found.append((path, mode))
    return found


def _warn_if_open(data_dir: Path, database: Path | None) -> None:
    found = open_paths(data_dir, database)
    if not found:
        return
    listed = ", ".join(f"{path} ({mode:o})" for path, mode in found)
    targets = [data_dir.resolve()]
    if database is not None and not database.resolve().is_relative_to(targets[0]):
        targets += sorted({path.resolve() for path, _ in found if path != data_dir})
    command = "chmod -R go-rwx " + " ".join(shlex.quote(str(path)) for path in targets)
    log.warning("vlmbot's data is readable by other users of this machine: %s; run `%s`", listed, command)


def prepare_data_dir(data_dir: Path, database_url: str) -> None:
    """Create the data dir (0700) and the SQLite database file (0600) when missing; warn once when
    what exists is open to group or others."""
    database = sqlite_file(database_url)
    _warn_if_open(data_dir, database)
    make_private_dir(data_dir)
    if database is not None:
        make_private_dir(database.parent)
        _create_private_file(database)
