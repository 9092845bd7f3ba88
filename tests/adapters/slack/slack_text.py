"""What a Slack reader sees of a text the app sent, and which of Slack's tokens in it are live.

The rules, from Slack's docs (https://docs.slack.dev/messaging/formatting-message-text#escaping):
`&`, `<` and `>` are control characters in all of Slack's text; `<...>` is a token (`<@U...>` a
mention, `<!channel>` a broadcast, `<#C...>` a channel, `<url|label>` a link), and "only the specific
characters shown above will be decoded for display" (`&amp;`, `&lt;`, `&gt;`). The same holds in
`markdown_text` and `markdown` blocks (Slack parses its tokens there: PostHog/posthog#95054, measured on
a workspace), except in a Markdown link destination (`[label](url)`), where no entity is decoded.
Decoding never makes a token: `&lt;!channel&gt;` shows as `<!channel>` and pings no one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Shown", "shown"]

_TOKEN = re.compile(r"<([^<>]*)>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_CHARS = {"amp": "&", "lt": "<", "gt": ">"}
_DESTINATION = re.compile(r"\]\(([^)\s]*)")


@dataclass(frozen=True)
class Shown:
    text: str  # as displayed: tokens kept as written, the three entities decoded
    tokens: tuple[str, ...]  # every live token, e.g. "@U12345", "!channel", "https://x|label"

    @property
    def pings(self) -> tuple[str, ...]:
        """Mentions, broadcasts, channel and group links: tokens that notify someone or link a conversation."""
        return tuple(t for t in self.tokens if t[:1] in ("@", "!", "#"))


def _decode(text: str) -> str:
    return _ENTITY.sub(lambda m: _CHARS[m.group(1)], text)


def shown(text: str, *, markdown: bool) -> Shown:
    """`markdown`: the text of `markdown_text` or a `markdown` block; else mrkdwn (`text`, mrkdwn objects)."""
    tokens = tuple(m.group(1) for m in _TOKEN.finditer(text))
    if not markdown:
        return Shown(_decode(text), tokens)
    out, at = [], 0
    for m in _DESTINATION.finditer(text):  # destinations stay as written
        out += [_decode(text[at:m.start(1)]), m.group(1)]
        at = m.end(1)
    out.append(_decode(text[at:]))
    return Shown("".join(out), tokens)
