"""The `vlmbot` command: run, chat, health, db, data, feedback, model, engine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot import logsafe
from bot.config import Settings, load_settings
from bot.filemodes import private_umask
from engine.arch import ArchName

__all__ = ["main"]

log = logging.getLogger("vlmbot")


def _setup_logging(settings: Settings) -> None:
    logsafe.install(settings.secret_values())
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Library chatter (HTTP requests per poll, weight-loading bars) drowns the operator's log.
    for noisy in ("httpx", "httpcore", "transformers", "urllib3", "alembic", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


async def serve(settings: Settings, *, console_only: bool = False, thread: str | None = None) -> int:
    """Run the service and its adapters until SIGINT/SIGTERM (or the console's input ends)."""
    from adapters import configured_adapters
    from adapters.console import ConsoleAdapter
    from bot.adapter import Adapter
    from bot.language import from_tag
    from bot.service import DEMO_WARNING, running_service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with running_service(settings) as service:
        if console_only:
            adapters: list[Adapter] = [
                ConsoleAdapter(
                    service.inbox,
                    thread=thread or "main",
                    files_dir=settings.data_dir / "exports",
                    on_eof=stop.set,
                    greeting=DEMO_WARNING if service.demo_model else None,
                    language=from_tag(settings.system_locale),
                )
            ]
        else:
            adapters = configured_adapters(settings, service, on_console_eof=stop.set)
        monitoring = None
        if not console_only and settings.metrics_listen:
            from bot.monitoring import Monitoring, engine_probe

            monitoring = Monitoring(
                settings.metrics_listen,
                service.conversations.metrics,
                service.store.engine,
                engine_probe(service.engine, settings.engine_url),
            )
            await monitoring.start()
        started = []
        try:
            if monitoring is not None:
                monitoring.expect([adapter.name for adapter in adapters])
            for adapter in adapters:
                await adapter.start()
                started.append(adapter)
                if monitoring is not None:
                    monitoring.running(adapter.name)
            log.info("adapters running: %s", ", ".join(a.name for a in started) or "none")
            await stop.wait()
            log.info("shutting down")
        finally:
            if monitoring is not None:
                monitoring.stopping()  # /health says so at once: no new work for a replica going away
            await service.conversations.drain(settings.shutdown_grace_s)
            for adapter in reversed(started):
                try:
                    await adapter.stop()
                except Exception:
                    log.exception("adapter %s did not stop cleanly", adapter.name)
            if monitoring is not None:
                await monitoring.stop()
    return 0


async def _db(settings: Settings, action: str, revision: str) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    from bot.filemodes import prepare_data_dir
    from bot.migrate import downgrade_database, upgrade_database

    prepare_data_dir(settings.data_dir, settings.resolved_database_url())
    engine = create_async_engine(settings.resolved_database_url())
    try:
        if action == "upgrade":
            await upgrade_database(engine, revision)
        else:
            await downgrade_database(engine, revision)
    finally:
        await engine.dispose()
    print(f"database {action}d to {revision}")
    return 0


async def _feedback(settings: Settings, since: datetime, now: datetime, as_json: bool) -> int:
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    from bot.feedback_report import feedback_report
    from bot.store import open_store

    url = settings.resolved_database_url()
    parsed = make_url(url)
    # Only read: a mistyped data dir must not leave an empty database behind.
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        print(f"vlmbot: there is no database at {parsed.database}; check VLMBOT_DATA_DIR", file=sys.stderr)
        return 1
    async with open_store(url, migrate=False) as store:
        async with store.engine.connect() as connection:
            ready = await connection.run_sync(lambda sync: inspect(sync).has_table("feedback"))
        if not ready:
            print("vlmbot: the database has no feedback table yet; run `vlmbot db upgrade`", file=sys.stderr)
            return 1
        report = await feedback_report(store, since, now=now)
    # ASCII-only JSON: users' text may hold control characters that a terminal would act on.
    print(json.dumps(report.to_json(), indent=2) if as_json else report.to_text())
    return 0


def _since(text: str) -> tuple[datetime, datetime]:
    """argparse type of --since: (since, now)."""
    from bot.feedback_report import parse_since

    now = datetime.now(UTC)
    try:
        return parse_since(text, now), now
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _data(settings: Settings, args: argparse.Namespace) -> int:
    """`vlmbot data prune` and `vlmbot data erase`: the same removal the running bot does."""
    from bot.erasure import DataRemoval
    from bot.pictures import PictureFiles
    from bot.store import open_store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with open_store(settings.resolved_database_url()) as store:
        removal = DataRemoval(store.engine, PictureFiles(settings.images_dir), settings.exports_dir)
        if args.action == "prune":
            removed = await removal.prune(settings.retention_days)
            days = settings.retention_days
            scope = f"older than {days} day(s)" if days else "none (VLMBOT_RETENTION_DAYS=0 keeps them)"
            print(f"pruned turns and exports {scope}; removed {removed.describe()}")
        else:
            removed = await removal.erase_user(args.platform, args.user)
            print(f"erased {args.platform} user {args.user}: {removed.describe()}")
    return 0


async def _health(settings: Settings, url: str | None) -> int:
    """The container health check of `vlmbot run`: its own /health, on the address it listens on."""
    from bot.monitoring import parse_listen
    from engine.remote import check_health

    if url is None:
        if not settings.metrics_listen:
            print("VLMBOT_METRICS_LISTEN is empty: this bot serves no /health", file=sys.stderr)
            return 1
        host, port = parse_listen(settings.metrics_listen)
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    healthy, seen = await check_health(url)
    print(seen)
    return 0 if healthy else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlmbot", description="Helpdesk bot for questions about pictures.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run every configured adapter (the console chat when none is configured)")
    chat = sub.add_parser("chat", help="chat in the terminal")
    chat.add_argument("--thread", default="main", help="conversation name (default: main)")
    db = sub.add_parser("db", help="database migrations")
    db_sub = db.add_subparsers(dest="action", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations")
    up.add_argument("revision", nargs="?", default="head")
    down = db_sub.add_parser("downgrade", help="revert migrations")
    down.add_argument("revision")
    feedback = sub.add_parser("feedback", help="votes on answers since a time, and every answer voted down")
    feedback.add_argument(
        "--since", type=_since, default="7d", help="30m, 12h, 7d, 2w, or an ISO date or time in UTC (default: 7d)"
    )
    feedback.add_argument("--json", action="store_true", help="print JSON for scripts")
    data = sub.add_parser("data", help="stored conversations and pictures: retention and erasure")
    data_sub = data.add_subparsers(dest="action", required=True)
    data_sub.add_parser("prune", help="delete what is older than VLMBOT_RETENTION_DAYS and pictures nothing uses")
    erase = data_sub.add_parser("erase", help="erase one user's messages, the answers and their pictures")
    erase.add_argument("--platform", required=True, choices=["telegram", "slack", "web", "console"])
    erase.add_argument("--user", required=True, help="the user's id on that platform")
    health = sub.add_parser("health", help="exit 0 when the bot's /health (VLMBOT_METRICS_LISTEN) says it is up")
    health.add_argument("--url", help="the bot's address (default: from VLMBOT_METRICS_LISTEN)")
    model = sub.add_parser("model", help="model utilities")
    model_sub = model.add_subparsers(dest="action", required=True)
    tiny = model_sub.add_parser("tiny", help="write a tiny random-weight checkpoint of a real architecture")
    tiny.add_argument("--arch", choices=[str(name) for name in ArchName], default=str(ArchName.QWEN2_5_VL))
    tiny.add_argument("--out", type=Path, required=True)
    tiny.add_argument("--size", choices=["tiny", "bench"], default="tiny", help="bench: ~60 M parameters")
    engine = sub.add_parser("engine", help="the model engine as an OpenAI-compatible HTTP service")
    engine_sub = engine.add_subparsers(dest="action", required=True)
    engine_serve = engine_sub.add_parser("serve", help="serve VLMBOT_MODEL at /v1/chat/completions, /health, /metrics")
    engine_serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    engine_serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    engine_serve.add_argument("--served-model-name", action="append", default=[], help="another name the model answers to")
    engine_serve.add_argument("--max-images", type=int, default=16, help="pictures per request (default: 16)")
    engine_health = engine_sub.add_parser("health", help="exit 0 when an engine server answers GET /health")
    engine_health.add_argument("--url", help="server URL (default: VLMBOT_ENGINE_URL, else http://127.0.0.1:8000)")
    return parser


async def _engine_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "health":
        from engine.remote import check_health

        healthy, seen = await check_health(args.url or settings.engine_url or "http://127.0.0.1:8000")
        print(seen)
        return 0 if healthy else 1
    from bot.service import DEMO_WARNING, build_engine
    from engine.quantization import QuantizationError
    from engine.server import EngineServerOptions, serve_forever

    # The same in-process engine the bot would build, whatever VLMBOT_ENGINE_URL says.
    engine, demo = await build_engine(settings.model_copy(update={"engine_url": None}))
    if demo:
        log.warning(DEMO_WARNING)
    options = EngineServerOptions(
        host=args.host,
        port=args.port,
        api_keys=settings.engine_api_keys,
        served_model_names=tuple(args.served_model_name),
        max_images=args.max_images,
        max_new_tokens=settings.max_new_tokens,
        request_timeout_s=settings.request_timeout_s,
        max_image_bytes=settings.max_image_bytes,
        max_image_pixels=settings.max_image_source_pixels,
    )
    try:
        return await serve_forever(engine, options)
    except QuantizationError as exc:  # one line, not a traceback, as for a bad setting
        log.error("%s", exc)
        return 2


def _settings_or_exit() -> Settings:
    """The settings, or one line per bad variable and exit code 2 (not a traceback)."""
    from pydantic import ValidationError

    try:
        return load_settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            print(f"vlmbot: {name}={error.get('input')!r}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "model" or (args.command == "engine" and args.action == "health"):
        # `model tiny` writes random weights where the operator asks, with the operator's umask.
        return _main(args)
    # Conversations, pictures, exports, the database: nothing vlmbot writes is for other users.
    previous = private_umask()
    try:
        return _main(args)
    finally:
        os.umask(previous)  # as it was, for a caller in the same process (tests)


def _main(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    _setup_logging(settings)
    if args.command in ("run", "chat"):
        from bot.adapter import ConfigurationError

        try:
            if args.command == "chat":
                return asyncio.run(serve(settings, console_only=True, thread=args.thread))
            return asyncio.run(serve(settings))
        except ConfigurationError as exc:
            log.error("%s", exc)
            return 2
    if args.command == "db":
        return asyncio.run(_db(settings, args.action, args.revision))
    if args.command == "feedback":
        since, now = args.since
        return asyncio.run(_feedback(settings, since, now, args.json))
    if args.command == "health":
        return asyncio.run(_health(settings, args.url))
    if args.command == "data":
        return asyncio.run(_data(settings, args))
    if args.command == "engine":
        return asyncio.run(_engine_command(settings, args))
    if args.command == "model" and args.action == "tiny":
        from engine.tiny import write_tiny_checkpoint

        out = write_tiny_checkpoint(args.out, args.arch, args.size)
        print(f"wrote a random-weight {args.arch} checkpoint ({args.size}) to {out}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
