"""Browser identities the server issued, and the server secret that signs them.

An identity cookie is `<random>.<HMAC-SHA256(secret, random)>`. Only a value with a valid signature
is an identity: a value chosen by someone else (another site on the same host can set cookies for
it, whatever its port) is ignored and replaced, so nobody can pick the identity a victim will use.
The sessions' owner id is a hash of the random part, so the database does not reveal the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

__all__ = ["SECRET_FILE", "Identities", "load_secret"]

log = logging.getLogger(__name__)

SECRET_FILE = "web-secret"
_SECRET_BYTES = 32
_NONCE_CHARS = 32  # secrets.token_urlsafe(24)


def load_secret(data_dir: Path) -> bytes:
    """`<data dir>/web-secret`: 32 random bytes, mode 0600, created on first start (atomically, so
    replicas sharing the data dir agree). Raises ValueError when the file is damaged."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    if not path.exists():
        tmp = data_dir / f".{SECRET_FILE}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(_SECRET_BYTES))
            try:
                os.link(tmp, path)  # fails if another process created it first; theirs wins
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); making it private (0600)", path, mode)
        path.chmod(0o600)
    secret = path.read_bytes()
    if len(secret) < _SECRET_BYTES:
        raise ValueError(
            f"{path} is damaged ({len(secret)} bytes); delete it to make a new one (every browser then gets a new identity)"
        )
    return secret


class Identities:
    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"vlmbot-web-identity", hashlib.sha256).digest()

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        """A new identity cookie value."""
        nonce = secrets.token_urlsafe(24)
        return f"{nonce}.{self._sign(nonce)}"

    def user_id(self, cookie: str | None) -> str | None:
        """The owner id of a cookie this server issued; None for anything else."""
        if not cookie or len(cookie) != _NONCE_CHARS + 1 + 64 or not cookie.isascii():
            return None
        nonce, _, signature = cookie.partition(".")
        if len(nonce) != _NONCE_CHARS or not hmac.compare_digest(signature.encode(), self._sign(nonce).encode()):
            return None
        return "b-" + hashlib.sha256(nonce.encode()).hexdigest()[:24]
