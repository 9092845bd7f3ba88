"""Choosing one row's next token: OpenAI's penalties, vLLM's `min_tokens`, then greedy or sampled.

Per row, on that row's logits alone, so a request's fields never change a neighbour's choice. A
seeded request samples with its own generator (`generator_for`), so a neighbour in the batch, which
draws from the global generator or its own, cannot change its answer.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import torch

from engine.interface import GenerationLimits

__all__ = ["MIN_TEMPERATURE", "BadScores", "generator_for", "penalize", "pick", "usable"]

MIN_TEMPERATURE = 1e-4  # below this, sampling is greedy decoding in all but name


class BadScores(ValueError):
    """The row's scores cannot give a token (NaN, +inf, nothing above -inf, or no usable probabilities)."""


def generator_for(limits: GenerationLimits, device: torch.device) -> torch.Generator | None:
    """The request's own random generator when it has a seed; None draws from torch's global one."""
    if limits.seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(limits.seed % 2**64)  # OpenAI's seeds are signed 64-bit; torch takes 0..2**64-1
    return generator


def penalize(
    logits: torch.Tensor,
    generated: Sequence[int],
    limits: GenerationLimits,
    end_ids: Collection[int],
) -> torch.Tensor:
    """The row's logits (1-D) after OpenAI's presence/frequency penalties over the tokens generated so far
    (`logit -= count * frequency + (count > 0) * presence`) and, under `min_tokens`, with the end tokens
    ruled out. A new tensor when anything applies; `logits` itself otherwise."""
    penalties = limits.presence_penalty != 0 or limits.frequency_penalty != 0
    hold_end = len(generated) < limits.min_tokens and end_ids
    if not (penalties and generated) and not hold_end:
        return logits
    logits = logits.clone()
    if penalties and generated:
        ids = torch.tensor(list(generated), device=logits.device)
        counts = torch.bincount(ids, minlength=logits.shape[-1])[: logits.shape[-1]].to(logits.dtype)
        logits -= counts * limits.frequency_penalty + (counts > 0).to(logits.dtype) * limits.presence_penalty
    if hold_end:
        ends = [i for i in end_ids if 0 <= i < logits.shape[-1]]
        logits[ends] = -math.inf
    return logits


def usable(logits: torch.Tensor) -> torch.Tensor:
    """Per row (the last dimension is the vocabulary): no NaN, no +inf, and some token above -inf."""
    return ~(logits.isnan() | (logits == math.inf)).any(-1) & (logits > -math.inf).any(-1)


def pick(
    logits: torch.Tensor, greedy: int, limits: GenerationLimits, generator: torch.Generator | None = None
) -> int:
    """Greedy (`greedy`, the argmax of `logits`) below `MIN_TEMPERATURE` or for a temperature that is
    not a finite number, else sampled (with `generator` when given). `logits` are usable (see `usable`)."""
    temperature = limits.temperature
    if not math.isfinite(temperature) or temperature < MIN_TEMPERATURE:
        return greedy
    top_p = limits.top_p if 0 < limits.top_p < 1 else 1.0  # NaN compares false: no cut
    probs = torch.softmax(logits / temperature, dim=-1)
    if not bool(probs.isfinite().all()) or not float(probs.sum()) > 0:
        raise BadScores(f"sampling at temperature {temperature:g} gave no usable probabilities")
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # keep the smallest set reaching top_p
        sorted_probs[outside] = 0
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))
