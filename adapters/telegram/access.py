"""Who may use the bot: allowlists of Telegram user ids and chat ids."""

from __future__ import annotations

from dataclasses import dataclass

from bot.adapter import ConfigurationError

__all__ = ["AccessPolicy", "AccessConfigError", "REFUSAL"]

REFUSAL = "Sorry, this bot is private. Ask its operator to add your user id ({user_id}) to the allowlist."


class AccessConfigError(ConfigurationError):
    """Both allowlists are empty and allowing everyone was not chosen explicitly."""


@dataclass(frozen=True)
class AccessPolicy:
    users: frozenset[str]
    chats: frozenset[str]
    everyone: bool

    @classmethod
    def create(cls, users: tuple[str, ...], chats: tuple[str, ...], everyone: bool) -> AccessPolicy:
        if not users and not chats and not everyone:
            raise AccessConfigError(
                "Telegram: TELEGRAM_ALLOWED_USERS and TELEGRAM_ALLOWED_CHATS are both empty. "
                "List the user or chat ids that may use the bot, or set TELEGRAM_ALLOW_EVERYONE=true "
                "to let anyone who finds it use it."
            )
        return cls(frozenset(users), frozenset(chats), everyone)

    def allows(self, user_id: int | str, chat_id: int | str) -> bool:
        """A user listed anywhere, or anyone in a listed chat."""
        return self.everyone or str(user_id) in self.users or str(chat_id) in self.chats
