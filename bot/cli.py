"""The `vlmbot` command: run, chat, db, model, engine."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from bot.config import Settings, load_settings

__all__ = ["main"]

log = logging.getLogger("vlmbot")


def _setup_logging(settings: Settings) -> None:
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
    from bot.service import DEMO_WARNING, running_service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with running_service(settings) as service:
        if console_only:
            adapters = [
                ConsoleAdapter(
                    service.conversations,
                    thread=thread or "main",
                    files_dir=settings.data_dir / "exports",
                    on_eof=stop.set,
                    greeting=DEMO_WARNING if service.demo_model else None,
                )
            ]
        else:
            adapters = configured_adapters(settings, service, on_console_eof=stop.set)
        started = []
        try:
            for adapter in adapters:
                await adapter.start()
                started.append(adapter)
            log.info("adapters running: %s", ", ".join(a.name for a in started) or "none")
            await stop.wait()
            log.info("shutting down")
        finally:
            await service.conversations.drain(settings.shutdown_grace_s)
            for adapter in reversed(started):
                try:
                    await adapter.stop()
                except Exception:
                    log.exception("adapter %s did not stop cleanly", adapter.name)
    return 0


async def _db(settings: Settings, action: str, revision: str) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    from bot.migrate import downgrade_database, upgrade_database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
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
    model = sub.add_parser("model", help="model utilities")
    model_sub = model.add_subparsers(dest="action", required=True)
    tiny = model_sub.add_parser("tiny", help="write a tiny random-weight checkpoint of a real architecture")
    tiny.add_argument("--arch", choices=["qwen2_5_vl", "qwen3_vl"], default="qwen2_5_vl")
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
    return await serve_forever(engine, options)


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
