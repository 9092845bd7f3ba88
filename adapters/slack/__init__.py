"""Slack adapter (slack-bolt AsyncApp; Socket Mode or HTTP Events API)."""

from .adapter import SlackAdapter

__all__ = ["SlackAdapter"]
