"""The `vlmbot` command: run, chat, db, model."""

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings()
    _setup_logging(settings)
    if args.command == "run":
        return asyncio.run(serve(settings))
    if args.command == "chat":
        return asyncio.run(serve(settings, console_only=True, thread=args.thread))
    if args.command == "db":
        return asyncio.run(_db(settings, args.action, args.revision))
    if args.command == "model" and args.action == "tiny":
        from engine.tiny import write_tiny_checkpoint

        out = write_tiny_checkpoint(args.out, args.arch, args.size)
        print(f"wrote a random-weight {args.arch} checkpoint ({args.size}) to {out}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
