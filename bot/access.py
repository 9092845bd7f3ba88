"""Who may use the bot: each platform's allowlists, built from the settings here and applied by the core.

Adapters only say who sent a message (`Sender`); the same rule judges every platform.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.adapter import ConfigurationError
from bot.config import Settings
from bot.incoming import Sender

__all__ = ["AccessConfigError", "AccessPolicy", "policy_for"]


class AccessConfigError(ConfigurationError):
    """Every allowlist of a platform is empty and allowing everyone was not chosen explicitly."""


@dataclass(frozen=True)
class AccessPolicy:
    """A workspace outside `teams` is always refused. Within it, when users or chats are listed, a
    listed user (anywhere) or anyone in a listed chat is allowed; with nothing listed, the listed
    workspaces are, or everyone when that was chosen explicitly."""

    users: frozenset[str] = frozenset()
    chats: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    everyone: bool = False

    def allows(self, sender: Sender) -> bool:
        if self.teams and sender.team_id not in self.teams:
            return False
        if self.users or self.chats:
            return sender.user_id in self.users or (sender.chat_id is not None and sender.chat_id in self.chats)
        return bool(self.teams) or self.everyone


OPEN = AccessPolicy(everyone=True)


def policy_for(settings: Settings, platform: str) -> AccessPolicy:
    """The platform's policy; raises AccessConfigError for a platform that would be open by accident.

    The web chat (its own access token) and the console (whoever runs it) have no allowlist."""
    if platform == "telegram":
        policy = AccessPolicy(
            users=frozenset(settings.telegram_allowed_users),
            chats=frozenset(settings.telegram_allowed_chats),
            everyone=settings.telegram_allow_everyone,
        )
        if not (policy.users or policy.chats or policy.everyone):
            raise AccessConfigError(
                "Telegram: TELEGRAM_ALLOWED_USERS and TELEGRAM_ALLOWED_CHATS are both empty. "
                "List the user or chat ids that may use the bot, or set TELEGRAM_ALLOW_EVERYONE=true "
                "to let anyone who finds it use it."
            )
        return policy
    if platform == "slack":
        policy = AccessPolicy(
            users=frozenset(settings.slack_allowed_users),
            chats=frozenset(settings.slack_allowed_channels),
            teams=frozenset(settings.slack_allowed_teams),
            everyone=settings.slack_allow_everyone,
        )
        if not (policy.users or policy.chats or policy.teams or policy.everyone):
            raise AccessConfigError(
                "Slack: set SLACK_ALLOWED_TEAMS, SLACK_ALLOWED_CHANNELS or SLACK_ALLOWED_USERS, "
                "or SLACK_ALLOW_EVERYONE=true to let anyone in the workspace use the bot."
            )
        return policy
    return OPEN
