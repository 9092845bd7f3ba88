"""The bot token and the webhook secret never reach a log, at any level (issue 11, finding 10).

python-telegram-bot logs its base URLs (token included) and `setWebhook`'s parameters (secret
included) at DEBUG; httpx logs every request URL. The adapter runs for real against the stand-in with
every logger at DEBUG; the redaction must have happened (the replacement shows) and no secret be left.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import logsafe
from bot.config import Settings
from bot.messages import Answer
from tests.adapters.telegram.botapi_standin import BotApiStandIn
from tests.adapters.telegram.harness import (
    ALLOWED_USER,
    Scripted,
    SettingsOnly,
    free_port,
    photo_sizes,
    png,
    running_adapter,
    settle,
    shown_text,
)

CONFIGURED_SECRET = "hook-secret_1"  # what running_adapter configures in webhook mode


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Everything logged, by every logger (httpx and python-telegram-bot included), at DEBUG."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", "httpx", "httpcore", "telegram", "aiohttp")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logsafe.uninstall()


@pytest.mark.parametrize("configured", [True, False], ids=["configured-secret", "generated-secret"])
async def test_token_and_webhook_secret_are_redacted_at_debug(
    standin: BotApiStandIn, tmp_path: Path, debug_log: io.StringIO, configured: bool
) -> None:
    base = Settings.model_construct().model_copy(update={"data_dir": tmp_path})
    secret = CONFIGURED_SECRET if configured else None
    # What `vlmbot` does at start (bot/cli.py): every configured secret is registered.
    logsafe.install(
        base.model_copy(update={"telegram_token": standin.token, "telegram_webhook_secret": secret}).secret_values()
    )
    core = Scripted(Answer(text="It is red.", turn_id=1, latency_ms=1, output_tokens=3))
    async with running_adapter(
        standin, SettingsOnly(base), conversations=core, mode="webhook", settings={"telegram_webhook_secret": secret}
    ) as (adapter, _):
        await standin.inject(standin.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, caption="What is this?",
                                             photo=photo_sizes(standin, png())))
        await settle(standin, adapter)
    assert shown_text(standin, ALLOWED_USER) == ["It is red."]
    assert standin.webhook is not None
    used_secret = standin.webhook["secret_token"]
    assert (used_secret == CONFIGURED_SECRET) is configured
    log = debug_log.getvalue()
    # The stand-in saw the real values, and the log was written where they used to leak.
    assert "[redacted TELEGRAM_BOT_TOKEN]/getMe" in log  # httpx's request line
    assert "'secret_token': '[redacted TELEGRAM_WEBHOOK_SECRET]'" in log  # PTB's setWebhook parameters
    assert "file/bot[redacted TELEGRAM_BOT_TOKEN]/photos/" in log  # the URL-encoded token of a file download
    assert standin.token not in log and "TEST-token" not in log
    assert used_secret not in log


async def test_vlmbot_run_at_debug_logs_no_secret(standin: BotApiStandIn, tmp_path: Path, tiny_qwen25_dir: Path) -> None:
    """The whole program as an operator runs it: `vlmbot run` with VLMBOT_LOG_LEVEL=DEBUG, webhook mode."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLMBOT_", "TELEGRAM_", "SLACK_"))}
    env |= {
        "VLMBOT_DATA_DIR": str(tmp_path / "data"), "VLMBOT_MODEL": str(tiny_qwen25_dir), "VLMBOT_MAX_NEW_TOKENS": "4",
        "VLMBOT_LOG_LEVEL": "DEBUG", "VLMBOT_WEB": "false", "VLMBOT_CONSOLE": "off",
        "TELEGRAM_BOT_TOKEN": standin.token, "TELEGRAM_API_URL": standin.url,
        "TELEGRAM_ALLOWED_USERS": str(ALLOWED_USER), "TELEGRAM_WEBHOOK_URL": f"http://127.0.0.1:{port}/hook",
        "TELEGRAM_WEBHOOK_LISTEN": f"127.0.0.1:{port}", "TELEGRAM_WEBHOOK_SECRET": CONFIGURED_SECRET,
    }
    vlmbot = str(Path(sys.executable).with_name("vlmbot"))
    process = await asyncio.create_subprocess_exec(
        vlmbot, "run", cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await standin.wait_for(lambda: standin.webhook is not None, timeout=120)
        await standin.inject(standin.message(chat_id=ALLOWED_USER, user_id=ALLOWED_USER, text="hello"))
        await standin.wait_for(lambda: bool(standin.calls("sendMessage")), timeout=60)
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = stderr.decode()
    assert process.returncode == 0, log[-2000:]
    assert "Set Bot API URL" in log and "[redacted TELEGRAM_BOT_TOKEN]" in log
    assert "'secret_token': '[redacted TELEGRAM_WEBHOOK_SECRET]'" in log
    assert standin.token not in log and "TEST-token" not in log and CONFIGURED_SECRET not in log
