"""The allowlists, one rule for every platform: workspaces first, then listed users or chats."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.access import AccessConfigError, AccessPolicy, policy_for
from bot.config import Settings
from bot.incoming import Sender


def test_workspaces_then_users_or_chats() -> None:
    team_only = AccessPolicy(teams=frozenset({"T1"}))
    assert team_only.allows(Sender("U9", "C9", "T1")) and not team_only.allows(Sender("U9", "C9", "T2"))
    listed = AccessPolicy(users=frozenset({"U1"}), chats=frozenset({"C1"}), teams=frozenset({"T1"}))
    assert listed.allows(Sender("U9", "C1", "T1")) and listed.allows(Sender("U1", "D5", "T1"))
    assert not listed.allows(Sender("U2", "C2", "T1")) and not listed.allows(Sender("U1", "C1", "T2"))
    assert AccessPolicy(everyone=True).allows(Sender("anyone"))
    # Lists, once given, are the rule: "everyone" only opens a bot with none.
    assert not AccessPolicy(users=frozenset({"U1"}), everyone=True).allows(Sender("U2", "C2"))
    assert not AccessPolicy().allows(Sender("U1"))


def test_policies_come_from_the_settings(tmp_path: Path) -> None:
    settings = Settings.model_construct().model_copy(update={
        "data_dir": tmp_path, "telegram_allowed_chats": ("-100",), "slack_allowed_teams": ("T1",)})
    assert policy_for(settings, "telegram").allows(Sender("5", "-100"))
    assert not policy_for(settings, "telegram").allows(Sender("5", "-200"))
    assert policy_for(settings, "slack").allows(Sender("U1", "C1", "T1"))
    assert policy_for(settings, "web").allows(Sender("browser-1")) and policy_for(settings, "console").allows(Sender("me"))
    empty = Settings.model_construct().model_copy(update={"data_dir": tmp_path})
    for platform, setting in (("telegram", "TELEGRAM_ALLOW_EVERYONE"), ("slack", "SLACK_ALLOW_EVERYONE")):
        with pytest.raises(AccessConfigError, match=setting):
            policy_for(empty, platform)
