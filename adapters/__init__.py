"""Platform adapters. `configured_adapters` picks the ones whose settings are present."""

from __future__ import annotations

from collections.abc import Callable

from bot.adapter import Adapter
from bot.config import Settings
from bot.service import DEMO_WARNING, Service

__all__ = ["configured_adapters"]


def configured_adapters(
    settings: Settings, service: Service, *, on_console_eof: Callable[[], None] | None = None
) -> list[Adapter]:
    """Every adapter whose configuration is present; the console when asked for or when no chat platform is.

    The web chat (on by default, loopback only) runs beside the console rather than replacing it.
    """
    adapters: list[Adapter] = []
    if settings.telegram_token:
        from adapters.telegram import TelegramAdapter

        adapters.append(TelegramAdapter(settings, service.inbox))
    if settings.slack_bot_token:
        from adapters.slack import SlackAdapter

        adapters.append(SlackAdapter(settings, service.inbox))
    if settings.console == "on" or (settings.console == "auto" and not adapters):
        from adapters.console import ConsoleAdapter
        from bot.language import from_tag

        adapters.append(
            ConsoleAdapter(
                service.inbox,
                files_dir=settings.data_dir / "exports",
                on_eof=on_console_eof,
                greeting=DEMO_WARNING if service.demo_model else None,
                language=from_tag(settings.system_locale),
            )
        )
    if settings.web_enabled:
        from adapters.web import WebAdapter

        adapters.append(WebAdapter(settings, service.inbox))
    return adapters
