"""Inline keyboards as the Bot API checks them: the `reply_markup` shape, button fields and their limits.

Followed: https://core.telegram.org/bots/api#inlinekeyboardmarkup and #inlinekeyboardbutton
("callback_data ... 1-64 bytes"; exactly one optional action field per button). The error texts are the
ones Telegram answers with, as quoted in bug reports of client libraries (e.g. jehy/telegram-test-api#62
for BUTTON_DATA_INVALID, yagop/node-telegram-bot-api#706, telepot#293).
"""

from __future__ import annotations

from typing import Any

from telegram.constants import InlineKeyboardButtonLimit

__all__ = ["MarkupError", "callback_buttons", "check_inline_keyboard", "check_reply_markup"]

# The fields of which an inline button must carry exactly one (Bot API: InlineKeyboardButton).
_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query", "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat", "copy_text", "callback_game", "pay",
)


class MarkupError(ValueError):
    """A `reply_markup` Telegram refuses; the message is the Bot API's description."""


def check_inline_keyboard(markup: Any) -> dict[str, Any]:
    """Return the markup if it is a valid InlineKeyboardMarkup, else raise MarkupError."""
    if not isinstance(markup, dict) or "inline_keyboard" not in markup:
        raise MarkupError("Bad Request: object expected as reply markup")
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list):
        raise MarkupError('Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array')
    for row in rows:
        if not isinstance(row, list):
            raise MarkupError(
                'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        for button in row:
            _check_button(button)
    return markup


def check_reply_markup(markup: Any) -> dict[str, Any] | None:
    """Any of the four markups sendMessage takes; only an inline keyboard is checked field by field."""
    if markup is None:
        return None
    if isinstance(markup, str):  # a form value that was not JSON at all
        raise MarkupError("Bad Request: can't parse reply keyboard markup JSON object")
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        return check_inline_keyboard(markup)
    if isinstance(markup, dict) and ({"keyboard", "remove_keyboard", "force_reply"} & markup.keys()):
        return markup
    raise MarkupError("Bad Request: can't parse reply keyboard markup JSON object")


def _check_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise MarkupError('Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String')
    actions = [name for name in _ACTIONS if name in button]
    if not actions:
        raise MarkupError(
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        size = len(data.encode("utf-8")) if isinstance(data, str) else -1
        # "callback_data: Data to be sent in a callback query to the bot when the button is pressed, 1-64 bytes"
        if not InlineKeyboardButtonLimit.MIN_CALLBACK_DATA <= size <= InlineKeyboardButtonLimit.MAX_CALLBACK_DATA:
            raise MarkupError("Bad Request: BUTTON_DATA_INVALID")


def callback_buttons(markup: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The buttons of an inline keyboard that send a callback query when pressed."""
    if not markup or "inline_keyboard" not in markup:
        return []
    return [b for row in markup["inline_keyboard"] for b in row if "callback_data" in b]
