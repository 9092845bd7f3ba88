"""`/metrics` and `/health` of a running bot, on VLMBOT_METRICS_LISTEN (127.0.0.1:9464 by default).

`/health` answers 200 only while every adapter runs and the engine answers: for the in-process
engine its worker is alive, for a model server its own `/health` answers (asked each time, with a
short timeout). It answers 503 while the adapters start and once shutdown begins, so a container
orchestrator or load balancer stops sending work to a replica that is going away.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.adapter import ConfigurationError
from bot.http import json_errors
from bot.metrics import CONTENT_TYPE, BotMetrics
from engine.interface import Engine
from engine.remote import check_health

__all__ = ["Health", "Monitoring", "engine_probe", "parse_listen"]

log = logging.getLogger(__name__)

ENGINE_TIMEOUT_S = 3.0

Probe = Callable[[], Awaitable[tuple[bool, str]]]


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:9464', '[::1]:9464', '0.0.0.0:0' -> (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"VLMBOT_METRICS_LISTEN={value!r} is not host:port (e.g. 127.0.0.1:9464).")
    return host.strip("[]"), int(port)


def engine_probe(engine: Engine, engine_url: str | None) -> Probe:
    """Whether the engine answers: a model server's /health, or the in-process engine's state."""

    async def probe() -> tuple[bool, str]:
        if engine_url:
            return await check_health(engine_url, timeout_s=ENGINE_TIMEOUT_S)
        health = engine.health()
        return health.ok, "ready" if health.ok else (health.detail or "the engine's worker is not running")

    return probe


@dataclass(frozen=True)
class Health:
    ok: bool
    adapters: dict[str, bool]
    engine: str



class Monitoring:
    """The metrics and health server; the CLI tells it which adapters run."""

    def __init__(self, listen: str, metrics: BotMetrics, database: Any, probe: Probe) -> None:
        self._host, self._port = parse_listen(listen)
        self._metrics = metrics
        self._database = database  # an AsyncEngine: the database's share of the metrics
        self._probe = probe
        self._adapters: dict[str, bool] = {}
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # --- what runs ----------------------------------------------------------------------------

    def expect(self, names: list[str]) -> None:
        self._adapters = {name: False for name in names}

    def running(self, name: str) -> None:
        self._adapters[name] = True

    def stopping(self) -> None:
        self._stopping = True
        self._adapters = {name: False for name in self._adapters}

    async def health(self) -> Health:
        engine_ok, engine = await self._probe()
        adapters_ok = bool(self._adapters) and all(self._adapters.values()) and not self._stopping
        health = Health(engine_ok and adapters_ok, dict(self._adapters), engine)
        self._metrics.set_health(health.ok, health.adapters)
        return health

    # --- the server ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[json_errors])
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/health", self._serve_health)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host or None, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigurationError(
                f"The metrics server cannot listen on VLMBOT_METRICS_LISTEN={self._host}:{self._port}: "
                f"{exc.strerror or exc}."
            ) from exc
        self._runner = runner
        self.port = next((int(a[1]) for a in runner.addresses if isinstance(a, tuple)), self._port)
        log.info("metrics and health at http://%s:%d/metrics and /health", self._host or "0.0.0.0", self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        await self.health()
        await self._metrics.refresh(self._database)
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _serve_health(self, request: web.Request) -> web.Response:
        health = await self.health()
        body = {"status": "ok" if health.ok else "unavailable", "adapters": health.adapters, "engine": health.engine}
        return web.json_response(body, status=200 if health.ok else 503)
