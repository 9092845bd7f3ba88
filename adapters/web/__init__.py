"""The local web chat: a page, a JSON API and streamed answers over the shared conversation service."""

from .adapter import WebAdapter, WebConfigError

__all__ = ["WebAdapter", "WebConfigError"]
