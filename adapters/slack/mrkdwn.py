"""Model Markdown -> Slack mrkdwn (the reply renderer has already cut long answers into messages).

Slack's `text` field is not Markdown: bold is `*x*`, italic `_x_`, strike `~x~`, links `<url|label>`,
no headings or tables, and `&`, `<`, `>` must be escaped everywhere (code included). Whatever the
model writes, the only `<` in the output opens a link this module made: `<!channel>`, `<@U...>` and
`<#C...>` written by the model arrive escaped and do not ping, and a link's URL cannot end the link early.
"""

from __future__ import annotations

import re

__all__ = ["escape", "escape_markdown", "to_mrkdwn", "unescape_slack"]

_FENCE = re.compile(r"^\s*```")
_INLINE_CODE = re.compile(r"(`[^`\n]+`)")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BOLD_ITALIC = re.compile(r"\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\*\w])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(?=\S)")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_BOLD_MARK = "\x00B\x00"  # placeholder so the italic pass does not touch converted bold


def escape(text: str) -> str:
    """Plain text -> mrkdwn that shows it as written (Slack's three escapes)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_markdown(text: str) -> str:
    """The model's Markdown for `markdown_text` (chat.*Stream) and `markdown` blocks, shown as written.

    Slack's escaping holds for all its text: "&, <, and > ... must be converted to HTML entities if
    they're not going to be used for their parsing purpose", and "only the specific characters shown
    above will be decoded for display" (https://docs.slack.dev/messaging/formatting-message-text#escaping);
    the markdown block reference (https://docs.slack.dev/reference/block-kit/blocks/markdown-block)
    makes no exception, and Slack does parse `<@U...>` and `<!channel>` inside a markdown block (measured
    on a workspace in PostHog/posthog#95054). So all three are escaped, in code too: `&lt;div&gt;` is
    shown as `<div>`, and a model's `&nbsp;` as `&nbsp;`. The one exception is a link destination
    (`[label](url)`), where Slack decodes no entity (the same measurement: `&amp;` would break every
    query string): there `&` stays and `<` `>` are percent-encoded, so no Slack token can start in a URL.

    Each character's escape depends only on the characters before it, so the escape of a prefix is a
    prefix of the escape: a stream sends the escape of its text piece by piece."""
    out: list[str] = []
    in_url = False
    previous = ""
    for char in text:
        if in_url and (char == ")" or char.isspace()):
            in_url = False
        if char == "&":
            out.append("&" if in_url else "&amp;")
        elif char == "<":
            out.append("%3C" if in_url else "&lt;")
        elif char == ">":
            out.append("%3E" if in_url else "&gt;")
        else:
            out.append(char)
        if previous == "]" and char == "(":
            in_url = True
        previous = char
    return "".join(out)


def _link(url: str, label: str) -> str:
    """`<url|label>`. Slack ends the URL at the first `|` or `>`, so `[docs](https://x/>y<!channel>)`
    would close the link and ping the channel: those characters (and `<`) are percent-encoded, which
    keeps the URL the same for a browser, and `&` is escaped as Slack asks."""
    url = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace("&", "&amp;")
    return f"<{url}|{escape(label)}>"


def unescape_slack(text: str) -> str:
    """Slack message text -> plain text for the model: links and entities resolved."""
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r"<(https?://[^>]+)>", r"\1", text)
    text = re.sub(r"<#C\w+\|([^>]+)>", r"#\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _inline(text: str) -> str:
    """Convert one line of prose (outside code) to mrkdwn."""
    parts = _INLINE_CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # inline code: escaped, kept verbatim
            out.append(escape(part))
            continue
        links: list[str] = []

        def keep_link(m: re.Match[str]) -> str:
            links.append(_link(m.group(2), m.group(1)))
            return f"\x00L{len(links) - 1}\x00"

        part = _LINK.sub(keep_link, part)
        part = escape(part)
        part = _BOLD_ITALIC.sub(lambda m: f"{_BOLD_MARK}_{m.group(1)}_{_BOLD_MARK}", part)
        part = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(2)}{_BOLD_MARK}", part)
        part = _ITALIC_STAR.sub(r"_\1_", part)
        part = _STRIKE.sub(r"~\1~", part)
        part = part.replace(_BOLD_MARK, "*")
        part = re.sub(r"\x00L(\d+)\x00", lambda m: links[int(m.group(1))], part)
        out.append(part)
    return "".join(out)


def to_mrkdwn(markdown: str) -> str:
    """Convert the model's Markdown to Slack mrkdwn (also safe on a partial, still-streaming text)."""
    # NUL never belongs in a message, and the conversion uses it for its placeholders.
    lines = markdown.replace("\x00", "").split("\n")
    out: list[str] = []
    in_code = False
    in_table = False
    for line in lines:
        if _FENCE.match(line):
            if in_table:
                out.append("```")
                in_table = False
            # Slack shows a language tag as the first code line: drop it.
            out.append("```")
            in_code = not in_code
            continue
        if in_code:
            out.append(escape(line))
            continue
        if _TABLE_ROW.match(line):
            # Slack has no tables: keep them aligned in a code block.
            if not in_table:
                out.append("```")
                in_table = True
            out.append(escape(line.strip()))
            continue
        if in_table:
            out.append("```")
            in_table = False
        heading = _HEADING.match(line)
        if heading:
            out.append(f"*{_inline(heading.group(1)).strip('*')}*")
            continue
        line = _BULLET.sub(r"\1• ", line)
        out.append(_inline(line))
    if in_table:
        out.append("```")
    return "\n".join(out)

