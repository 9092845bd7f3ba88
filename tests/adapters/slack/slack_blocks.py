"""Block Kit as Slack checks it when a message is posted, updated or a stream is stopped.

Only the limits this project can meet are checked, each from its reference page:
- a message holds at most 50 blocks (https://docs.slack.dev/reference/block-kit/blocks);
- `context_actions`: 1-5 elements, each `feedback_buttons` or `icon_button`
  (https://docs.slack.dev/reference/block-kit/blocks/context-actions-block);
- `feedback_buttons`: `positive_button` and `negative_button`, each a plain_text `text` of at most 75
  characters and a `value` of at most 2000 (https://docs.slack.dev/reference/block-kit/block-elements/feedback-buttons-element);
- `block_id` and `action_id` at most 255 characters; Slack generates the ones left out;
- `section` text at most 3000 characters, `markdown` text at most 12,000.
Errors come back as Slack words argument errors: `invalid_blocks` with `errors` and
`response_metadata.messages` ("[ERROR] ... [json-pointer:/blocks/0/...]").
"""

from __future__ import annotations

import itertools
import json
from typing import Any

__all__ = ["BlocksError", "check_blocks", "feedback_elements"]

MAX_BLOCKS = 50
_KNOWN = {
    "actions", "context", "context_actions", "divider", "file", "header", "image", "input", "markdown",
    "rich_text", "section", "table", "video",
}
_ids = itertools.count(1)


class BlocksError(ValueError):
    """Blocks Slack refuses: `error` is the API error code, `messages` the argument errors."""

    def __init__(self, error: str, messages: list[str]) -> None:
        super().__init__(f"{error}: {messages}")
        self.error = error
        self.messages = messages

    def body(self) -> dict[str, Any]:
        return {
            "ok": False, "error": self.error, "errors": self.messages,
            "response_metadata": {"messages": [f"[ERROR] {m}" for m in self.messages]},
        }


def check_blocks(raw: Any) -> list[dict[str, Any]]:
    """Decode (a form value is a JSON string), check and complete the blocks; raise BlocksError."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BlocksError("invalid_blocks_format", ["must be a JSON array [json-pointer:/blocks]"]) from None
    if not isinstance(raw, list):
        raise BlocksError("invalid_blocks_format", ["must be a JSON array [json-pointer:/blocks]"])
    problems: list[str] = []
    if len(raw) > MAX_BLOCKS:
        problems.append(f"must provide at most {MAX_BLOCKS} items [json-pointer:/blocks]")
    blocks = [dict(b) if isinstance(b, dict) else b for b in raw]
    for i, block in enumerate(blocks):
        problems += _check_block(block, f"/blocks/{i}")
    if problems:
        raise BlocksError("invalid_blocks", problems)
    return blocks


def _check_block(block: Any, at: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"must provide an object [json-pointer:{at}]"]
    kind = block.get("type")
    if kind not in _KNOWN:
        return [f"unsupported type: {kind} [json-pointer:{at}/type]"]
    problems = _too_long(block.get("block_id"), 255, f"{at}/block_id")
    block.setdefault("block_id", f"b{next(_ids):04d}")
    if kind == "context_actions":
        problems += _check_context_actions(block, at)
    elif kind == "section":
        text = block.get("text")
        if text is None and not block.get("fields"):
            problems.append(f"must provide either text or fields [json-pointer:{at}]")
        if isinstance(text, dict):
            problems += _too_long(text.get("text"), 3000, f"{at}/text/text")
    elif kind == "markdown":
        problems += _too_long(block.get("text"), 12_000, f"{at}/text", required=True)
    return problems


def _check_context_actions(block: dict[str, Any], at: str) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= 5:
        return [f"must provide between 1 and 5 items [json-pointer:{at}/elements]"]
    problems: list[str] = []
    block["elements"] = elements = [dict(e) if isinstance(e, dict) else e for e in elements]
    for j, element in enumerate(elements):
        here = f"{at}/elements/{j}"
        kind = element.get("type") if isinstance(element, dict) else None
        if kind not in ("feedback_buttons", "icon_button"):
            problems.append(f"must be one of feedback_buttons, icon_button [json-pointer:{here}/type]")
            continue
        problems += _too_long(element.get("action_id"), 255, f"{here}/action_id")
        element.setdefault("action_id", f"a{next(_ids):04d}")
        if kind == "feedback_buttons":
            for side in ("positive_button", "negative_button"):
                problems += _check_feedback_button(element.get(side), f"{here}/{side}")
    return problems


def _check_feedback_button(button: Any, at: str) -> list[str]:
    if not isinstance(button, dict):
        return [f"must provide an object [json-pointer:{at}]"]
    text = button.get("text")
    if not isinstance(text, dict) or text.get("type") != "plain_text":
        return [f"must be a plain_text text object [json-pointer:{at}/text]"]
    return _too_long(text.get("text"), 75, f"{at}/text/text", required=True) + _too_long(
        button.get("value"), 2000, f"{at}/value", required=True
    )


def _too_long(value: Any, limit: int, at: str, *, required: bool = False) -> list[str]:
    if value is None:
        return [f"missing required field [json-pointer:{at}]"] if required else []
    if not isinstance(value, str) or not value:
        return [f"must be a non-empty string [json-pointer:{at}]"]
    if len(value) > limit:
        return [f"must be less than {limit + 1} characters [json-pointer:{at}]"]
    return []


def feedback_elements(blocks: list[dict[str, Any]] | None) -> list[tuple[str, dict[str, Any]]]:
    """(block_id, element) of every feedback_buttons element a message shows."""
    return [
        (block["block_id"], element)
        for block in blocks or []
        if block.get("type") == "context_actions"
        for element in block.get("elements", [])
        if element.get("type") == "feedback_buttons"
    ]
