"""Memory-aware admission: a request joins the batch only when its memory fits beside the others'.

Each request's bytes are estimated before it is admitted, from what is known once it is prepared:

- KV: (prompt tokens + max_new_tokens) x layers x 2 (keys and values) x KV heads x head dim x the
  cache's element size. This is what the request's cache holds at its longest (the cache tensors'
  bytes; tests/engine/test_admission.py checks it against the caches the decoding loop really built).
- Activations: the vision tower runs on every patch of a picture at once, costing patches x
  (8 x vision hidden + 2 x vision MLP width) x element size at its peak (one block's input, q/k/v,
  output and MLP intermediate, the residual, rotary tables, the merger); the largest picture counts,
  since pictures are encoded one at a time. The factor was fitted to the peak the CPU allocator
  reports (torch.profiler, profile_memory) and is checked in tests/engine/test_admission.py. Plus
  one prefill chunk of the language model: chunk tokens x (4 x hidden + 2 x MLP width) x element
  size (logits are kept for the last position only).

The ledger keeps the sum of the admitted requests' estimates under the budget; a request that does
not fit waits in the queue, keeping its position, and nothing behind it overtakes it (a large
picture is not starved by a stream of small questions). A request larger than the whole budget
runs alone rather than never: the loop's out-of-memory retry at half resolution still applies.
The budget: `VLMBOT_ADMISSION_BYTES` when set; otherwise on CUDA `VLMBOT_GPU_MEMORY_FRACTION` of
the device minus the weights and the KV store of idle sessions; on the CPU no limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from engine.prompt import Prompt

__all__ = ["AdmissionLedger", "MemoryShape", "cuda_budgets", "kv_bytes", "prompt_bytes", "request_bytes", "vision_bytes"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryShape:
    """The model's sizes that set a request's memory."""

    layers: int
    kv_heads: int
    head_dim: int
    element_bytes: int  # of the KV cache and the activations (the compute dtype)
    vision_hidden: int
    vision_mlp: int
    hidden: int = 0
    mlp: int = 0

    @property
    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.element_bytes

    @classmethod
    def of(cls, config: Any, dtype: torch.dtype) -> MemoryShape:
        text = getattr(config, "text_config", config)
        vision = config.vision_config
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        return cls(
            layers=text.num_hidden_layers,
            kv_heads=getattr(text, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            element_bytes=torch.empty((), dtype=dtype).element_size(),
            vision_hidden=vision.hidden_size,
            vision_mlp=getattr(vision, "intermediate_size", 4 * vision.hidden_size),
            hidden=text.hidden_size,
            mlp=text.intermediate_size,
        )


def kv_bytes(shape: MemoryShape, prompt_tokens: int, max_new_tokens: int) -> int:
    return (prompt_tokens + max_new_tokens) * shape.kv_bytes_per_token


def vision_bytes(shape: MemoryShape, patches: int) -> int:
    """Peak activations of the vision tower on one picture of `patches` patches."""
    return patches * (8 * shape.vision_hidden + 2 * shape.vision_mlp) * shape.element_bytes


def request_bytes(
    shape: MemoryShape, prompt_tokens: int, max_new_tokens: int, patches: list[int], chunk_tokens: int = 512
) -> int:
    """Estimated bytes of one request: its KV at full length plus its largest activations."""
    chunk = min(prompt_tokens, chunk_tokens) * (4 * shape.hidden + 2 * shape.mlp) * shape.element_bytes
    return kv_bytes(shape, prompt_tokens, max_new_tokens) + vision_bytes(shape, max(patches, default=0)) + chunk


def prompt_bytes(shape: MemoryShape, prompt: Prompt, max_new_tokens: int, chunk_tokens: int = 512) -> int:
    patches = [t * h * w for t, h, w in (slot.grid for slot in prompt.images)]
    return request_bytes(shape, len(prompt.ids), max_new_tokens, patches, chunk_tokens)


class AdmissionLedger:
    """The admitted requests' estimated bytes against a budget. Used on the event loop only."""

    def __init__(self, shape: MemoryShape, budget: int | None, chunk_tokens: int = 512) -> None:
        self.shape = shape
        self.budget = budget  # None: no limit
        self.chunk_tokens = chunk_tokens
        self._held: dict[str, int] = {}

    @property
    def reserved(self) -> int:
        return sum(self._held.values())

    def estimate(self, prompt: Prompt, max_new_tokens: int) -> int:
        return prompt_bytes(self.shape, prompt, max_new_tokens, self.chunk_tokens)

    def fits(self, need: int) -> bool:
        """True when `need` more bytes fit; always when nothing is admitted (it then runs alone)."""
        return self.budget is None or not self._held or self.reserved + need <= self.budget

    def admit(self, request_id: str, need: int) -> None:
        if self.budget is not None and need > self.budget:
            log.warning(
                "request %s: estimated %d MiB exceeds the admission budget of %d MiB; running it alone",
                request_id, need >> 20, self.budget >> 20,
            )
        self._held[request_id] = need

    def release(self, request_id: str) -> None:
        self._held.pop(request_id, None)


def cuda_budgets(
    total: int, fraction: float, weights: int, kv_store: int | None
) -> tuple[int, int]:
    """(KV store bytes, admission bytes) on a GPU of `total` bytes holding `weights`.

    What `fraction` of the device leaves beside the weights is split: the KV store of idle sessions
    gets `kv_store` when the operator set it, else half; running requests get the rest."""
    free = max(0, int(total * fraction) - weights)
    store = min(kv_store, free) if kv_store is not None else free // 2
    return store, free - store
