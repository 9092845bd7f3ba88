"""The one-line notes a turn's answer came with, kept with the turn so a front end that shows history
(the web chat after a reload) shows them again: the notices (`bot.messages.Notice`: "only the top part
of the long screenshot was read", "older exchanges were left out") and the files of the message that
were refused while the rest was answered. The text is stored as the user read it, already translated.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["NoteKind", "TurnNote"]


class NoteKind(StrEnum):
    NOTICE = "notice"  # a `Notice` the reply carried
    REFUSED = "refused"  # a file of the message that could not be read (said as an error line)


@dataclass(frozen=True)
class TurnNote:
    kind: NoteKind
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "text": self.text}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> TurnNote:
        return cls(NoteKind(value["kind"]), str(value["text"]))
