"""The one interface the bot core uses to talk to a model engine.

Two implementations exist: the in-process transformers engine (`engine.local`) and a remote
OpenAI-compatible engine (`engine.remote`). Everything that crosses this boundary is a frozen
dataclass of plain values; no torch or transformers type leaves the engine package.

Requests carry a `tenant` (the API key a request came with, on the engine server): whatever an
engine keeps between requests (a conversation's KV cache, picture features) is kept per tenant, so
one tenant can neither reuse, probe nor release another's. A request the engine cannot serve as
sent (a picture it refuses, a prompt longer than the model's context) fails with `EngineRejected`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from engine.arch import ModelArch

__all__ = [
    "Engine",
    "EngineBusy",
    "EngineError",
    "EngineHealth",
    "EngineRejected",
    "EngineTimeout",
    "EngineUnavailable",
    "GenerationLimits",
    "GenerationRequest",
    "GenerationStats",
    "ModelArch",
    "PromptImage",
    "PromptTurn",
    "PromptVideo",
    "Queued",
    "Started",
    "StreamEvent",
    "TextPiece",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class PromptImage:
    """A picture in the prompt: its content hash (cache key) and its original bytes."""

    sha256: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class PromptVideo:
    """A screen recording or animated GIF in the prompt: its content hash (cache key) and its original bytes.

    The engine samples its frames itself (`engine.videos`), so every engine sees the same clip."""

    sha256: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class PromptTurn:
    """One message of the conversation as the model will see it: videos, then images, then text."""

    role: Role
    text: str
    images: tuple[PromptImage, ...] = ()
    videos: tuple[PromptVideo, ...] = ()


@dataclass(frozen=True)
class GenerationLimits:
    """How one answer is chosen and when it ends (OpenAI's and vLLM's sampling fields, checked by the caller)."""

    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 means greedy decoding; the engine decodes greedily below a tiny floor
    top_p: float = 1.0
    timeout_s: float | None = None  # whole request, queue wait included
    stop: tuple[str, ...] = ()  # the answer ends before the first of these; the stop text is never sent
    seed: int | None = None  # sampling with its own generator: same seed, same request, same answer
    presence_penalty: float = 0.0  # OpenAI's: minus this from the score of every token already generated
    frequency_penalty: float = 0.0  # OpenAI's: minus this times how often the token was generated
    min_tokens: int = 0  # vLLM's: no end of answer (end token or stop text) before this many tokens
    ignore_eos: bool = False  # vLLM's: the end-of-answer token does not end it; max_new_tokens does


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    session_id: str
    turns: tuple[PromptTurn, ...]
    limits: GenerationLimits = GenerationLimits()
    tenant: str = ""  # the caches' namespace: requests of different tenants share nothing

    @property
    def session_key(self) -> tuple[str, str]:
        """The conversation as the engine's caches and queue know it."""
        return (self.tenant, self.session_id)


@dataclass(frozen=True)
class Queued:
    """The request waits; `position` 1 means it is next."""

    position: int


@dataclass(frozen=True)
class Started:
    """The request left the queue: the engine is reading its prompt and pictures. Text follows."""


@dataclass(frozen=True)
class TextPiece:
    text: str


@dataclass(frozen=True)
class GenerationStats:
    """The final record of a request; always the last event of a successful stream."""

    queue_wait_s: float
    time_to_first_token_s: float | None
    total_s: float
    prompt_tokens: int
    output_tokens: int
    finish_reason: Literal["stop", "length", "cancelled"]
    model: str
    note: str | None = None  # e.g. "retried at half resolution after running out of GPU memory"


StreamEvent = Queued | Started | TextPiece | GenerationStats


@dataclass(frozen=True)
class EngineHealth:
    model: str
    device: str
    dtype: str
    attention: str
    attention_reason: str
    queue_depth: int
    running: int
    ok: bool = True
    detail: str = ""
    quantization: str = "none"  # e.g. "nf4 (bitsandbytes; ...)", "awq (pre-quantized checkpoint)"; "-" when remote


class EngineError(Exception):
    """A request failed; `user_message` is one short sentence fit to show the user."""

    def __init__(self, user_message: str, *, detail: str | None = None) -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message


class EngineBusy(EngineError):
    def __init__(self) -> None:
        super().__init__("The bot is busy right now; please try again in a moment.")


class EngineTimeout(EngineError):
    def __init__(self) -> None:
        super().__init__("That took too long and was stopped; please try again or ask something shorter.")


class EngineRejected(EngineError):
    """The request cannot be served as sent; retrying it unchanged fails the same way.

    `code` names the reason for API clients (`invalid_image`, `image_too_large`,
    `context_length_exceeded`); `image_index` is the 0-based place of the picture at fault among
    all the request's pictures, when a picture is."""

    def __init__(
        self, user_message: str, *, code: str, image_index: int | None = None, detail: str | None = None
    ) -> None:
        super().__init__(user_message, detail=detail)
        self.code = code
        self.image_index = image_index


class EngineUnavailable(EngineError):
    def __init__(self, detail: str | None = None) -> None:
        super().__init__("The model server is unavailable; please try again shortly.", detail=detail)


@runtime_checkable
class Engine(Protocol):
    """What the bot core needs from a model engine."""

    @property
    def model_name(self) -> str: ...

    @property
    def arch(self) -> ModelArch | None:
        """The served model's architecture (patch factor, grounding coordinates) once known: after
        `start` in process; for a remote server once it has been reached. None before that."""
        ...

    async def model_arch(self) -> ModelArch:
        """The architecture, finding it out if it is not known yet (a remote engine asks its server).

        Raises `EngineError` (`EngineUnavailable` for a server that cannot be reached) when it
        cannot be known now.
        """
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[StreamEvent, None]:
        """Stream `Queued` updates, then `Started` (when the engine begins reading the prompt; a remote
        server may not say), then `TextPiece`s, then one `GenerationStats`.

        Raises `EngineError` (or a subclass) for failures. Closing the iterator early cancels the
        request and frees its place.
        """
        ...

    async def cancel(self, request_id: str) -> bool:
        """Cancel a queued or running request; True if it was found."""
        ...

    def queue_position(self, request_id: str) -> int | None:
        """1-based position of a waiting request, 0 while running, None when unknown."""
        ...

    async def release_session(self, session_id: str, tenant: str = "") -> None:
        """Forget anything held for this tenant's session (caches); called on /clear and expiry."""
        ...

    def health(self) -> EngineHealth: ...

    async def count_prompt_tokens(self, turns: Sequence[PromptTurn]) -> int:
        """The prompt's length in tokens as the model counts it, pictures and chat template included.

        An engine that cannot count exactly (a remote server) returns an upper bound, never less.
        """
        ...
