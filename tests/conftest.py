"""Shared fixtures: offline guard, tiny checkpoints (built once per run), a service factory, pictures."""

from __future__ import annotations

import io
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from PIL import Image  # noqa: E402

from bot.config import Settings  # noqa: E402

# --- no network: every test that reaches past loopback fails ---------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family == socket.AF_UNIX:
        return
    host = address[0] if isinstance(address, tuple) else address
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    raise RuntimeError(f"test tried to reach the network: {address!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _socket_guard() -> Any:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


# --- tiny checkpoints ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_qwen25_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-qwen2_5_vl", "qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-qwen3_vl", "qwen3_vl")


@pytest.fixture(params=["qwen2_5_vl", "qwen3_vl"])
def tiny_model_dir(request: pytest.FixtureRequest) -> Path:
    """Each test using it runs once per architecture."""
    name = "tiny_qwen25_dir" if request.param == "qwen2_5_vl" else "tiny_qwen3_dir"
    return request.getfixturevalue(name)


# --- settings and the service ----------------------------------------------------------------


def make_settings(data_dir: Path, model: Path | None, **overrides: Any) -> Settings:
    """Settings for tests: nothing from the environment or a .env file leaks in."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "model": model,
        "max_new_tokens": 12,
        "max_pixels": 64 * 28 * 28,
        "request_timeout_s": 60.0,
        "shutdown_grace_s": 5.0,
        "web_enabled": False,
    }
    values.update(overrides)
    base = Settings.model_construct()  # defaults only, no environment
    return base.model_copy(update=values)


@pytest.fixture
def service_factory(tmp_path: Path, tiny_qwen25_dir: Path) -> Callable[..., Any]:
    """`async with service_factory(**overrides) as service:`; the same data dir on every call."""
    from bot.service import running_service

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Any]:
        overrides.setdefault("model", tiny_qwen25_dir)
        settings = make_settings(tmp_path / "data", **overrides)
        async with running_service(settings) as service:
            yield service

    return factory


# --- pictures --------------------------------------------------------------------------------


def picture_bytes(
    size: tuple[int, int] = (96, 64), color: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG", mode: str = "RGB"
) -> bytes:
    image = Image.new(mode, size, color if mode == "RGB" else None)
    if mode != "RGB":
        image = Image.new("RGB", size, color).convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def red_png() -> bytes:
    return picture_bytes(color=(220, 20, 20))


@pytest.fixture
def blue_jpeg() -> bytes:
    return picture_bytes(size=(120, 90), color=(20, 20, 220), fmt="JPEG")
