"""Who may use the bot: allowlists of workspace (team), channel and user ids."""

from __future__ import annotations

from dataclasses import dataclass

from bot.adapter import ConfigurationError
from bot.config import Settings

__all__ = ["REFUSAL", "AccessPolicy"]

REFUSAL = "Sorry, I'm not enabled for you here. Ask the bot's operator to add this channel or your user."


@dataclass(frozen=True)
class AccessPolicy:
    """A workspace outside `teams` is always refused. Within it, when channels or users are listed,
    a message is allowed from a listed channel (anyone there) or a listed user (anywhere)."""

    teams: frozenset[str]
    channels: frozenset[str]
    users: frozenset[str]
    everyone: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            frozenset(settings.slack_allowed_teams),
            frozenset(settings.slack_allowed_channels),
            frozenset(settings.slack_allowed_users),
            settings.slack_allow_everyone,
        )

    def check_configured(self) -> None:
        """Refuse an open bot unless the operator asked for one."""
        if not (self.teams or self.channels or self.users or self.everyone):
            raise ConfigurationError(
                "Slack: set SLACK_ALLOWED_TEAMS, SLACK_ALLOWED_CHANNELS or SLACK_ALLOWED_USERS, "
                "or SLACK_ALLOW_EVERYONE=true to let anyone in the workspace use the bot."
            )

    def allows(self, team: str | None, channel: str | None, user: str | None) -> bool:
        if self.teams and team not in self.teams:
            return False
        if self.channels or self.users:
            return channel in self.channels or user in self.users
        return bool(self.teams) or self.everyone
