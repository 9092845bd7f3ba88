"""Every configured secret is redacted from log records: message, arguments, tracebacks, URL-encoded."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot import logsafe
from bot.config import SECRET_SETTINGS, Settings

SECRETS = {
    "telegram_token": "123456:AAH-telegram-token",
    "telegram_webhook_secret": "webhook-secret-value",
    "slack_bot_token": "xoxb-111-222-slackbot",
    "slack_app_token": "xapp-1-A111-slackapp",
    "slack_signing_secret": "0123456789abcdef0123456789abcdef",
    "engine_api_key": "sk-engine-client-key",
    "engine_api_keys": ("sk-server-key-one", "sk-server-key-two"),
    "web_token": "web-token-for-the-chat",
    "web_admin_token": "web-admin-token-value",
}


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("tests.logsafe")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        logsafe.uninstall()


def _settings() -> Settings:
    update = dict(SECRETS, database_url="postgresql+asyncpg://vlmbot:db%2Fpass@db/vlmbot")
    return Settings.model_construct().model_copy(update=update)


def test_every_secret_setting_is_listed() -> None:
    labels = {label for label, _ in _settings().secret_values()}
    assert set(SECRET_SETTINGS) == set(SECRETS)
    assert labels == {
        "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET",
        "VLMBOT_ENGINE_API_KEY", "VLMBOT_SERVER_API_KEYS", "VLMBOT_WEB_TOKEN", "VLMBOT_WEB_ADMIN_TOKEN",
        "VLMBOT_DATABASE_URL password",
    }


def test_secrets_are_redacted_everywhere_in_a_record(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    logsafe.install(_settings().secret_values())
    values = [v for value in SECRETS.values() for v in (value if isinstance(value, tuple) else (value,))]
    values += ["db/pass", "db%2Fpass"]
    for value in values:
        logger.debug("as an argument: %s", value)
        logger.info(f"in the message: https://api.example/bot{value}/getMe")
        logger.warning("as a mapping: %(v)s", {"v": value})
    logger.debug("URL-encoded: /file/bot123456%3AAAH-telegram-token/photo.jpg")
    try:
        raise RuntimeError("Client error for url 'https://api.telegram.org/bot123456:AAH-telegram-token/getMe'")
    except RuntimeError:
        logger.exception("the request failed")
    logger.error("a bad format string %s %s", "xoxb-111-222-slackbot")  # noqa: PLE1206 (on purpose)
    logger.debug("nothing secret here")
    text = out.getvalue()
    for value in values:
        assert value not in text
    assert "123456%3AAAH" not in text
    assert "[redacted SLACK_BOT_TOKEN]" in text and "[redacted VLMBOT_SERVER_API_KEYS]" in text
    assert "/file/bot[redacted TELEGRAM_BOT_TOKEN]/photo.jpg" in text
    assert "Client error for url 'https://api.telegram.org/bot[redacted TELEGRAM_BOT_TOKEN]/getMe'" in text
    assert "nothing secret here" in text


def test_a_secret_registered_later_is_redacted(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = logged
    logsafe.install([])
    logsafe.register("generated-at-start", "TELEGRAM_WEBHOOK_SECRET")
    logger.info("secret_token=%r", "generated-at-start")
    assert out.getvalue() == "secret_token='[redacted TELEGRAM_WEBHOOK_SECRET]'\n"
