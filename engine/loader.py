"""Loading a Qwen2.5-VL / Qwen3-VL checkpoint from a local directory with the best attention available."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from transformers.utils import logging as hf_logging

from engine.arch import ModelArch, arch_for_checkpoint
from engine.quantization import (
    NO_QUANTIZATION,
    QuantizationError,
    QuantizationPlan,
    bitsandbytes_config,
    plan_quantization,
)

# Weight-loading progress bars are noise in an operator's log.
hf_logging.disable_progress_bar()

__all__ = ["LoadedModel", "choose_attention", "load_model", "resolve_device"]

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    arch: ModelArch
    name: str
    device: torch.device
    dtype: torch.dtype
    attention: str
    attention_reason: str
    quantization: QuantizationPlan = NO_QUANTIZATION

    @property
    def patch_factor(self) -> int:
        return self.arch.patch_factor


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def choose_attention(preference: str, device: torch.device) -> tuple[str, str]:
    """The attention implementation to ask transformers for first, and why."""
    if preference != "auto":
        return preference, f"{preference} configured by VLMBOT_ATTENTION"
    if device.type != "cuda":
        return "sdpa", "no CUDA device, so flash_attention_2 is not used"
    if importlib.util.find_spec("flash_attn") is None:
        return "sdpa", "flash-attn is not installed (pip install 'vlmbot[gpu]')"
    return "flash_attention_2", "CUDA and flash-attn present"


def load_model(
    path: Path, *, device_setting: str = "auto", attention: str = "auto", quantization: str = "none"
) -> LoadedModel:
    """Blocking: call from a worker thread. Falls back to sdpa when flash_attention_2 cannot load.

    `quantization` is `VLMBOT_QUANTIZATION`; a checkpoint already quantized loads as it is
    (`engine.quantization`), and `QuantizationError` says in one line why one cannot load here."""
    config = AutoConfig.from_pretrained(path)
    vision = getattr(config, "vision_config", None)
    try:
        arch = arch_for_checkpoint(
            config.model_type, getattr(vision, "patch_size", None), getattr(vision, "spatial_merge_size", None)
        )
    except ValueError:
        raise ValueError(f"{path} is a {config.model_type!r} checkpoint; vlmbot serves Qwen2.5-VL and Qwen3-VL") from None
    device = resolve_device(device_setting)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    implementation, reason = choose_attention(attention, device)
    plan = plan_quantization(
        quantization,
        getattr(config, "quantization_config", None),
        cuda_capability=torch.cuda.get_device_capability(device) if device.type == "cuda" else None,
    )
    extra: dict[str, Any] = {}
    bnb = bitsandbytes_config(plan, dtype)
    if bnb is not None:
        extra["quantization_config"] = bnb
    if plan.active:
        # Quantized weights are placed while loading; `.to(device)` refuses them afterwards.
        extra["device_map"] = str(device)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=dtype, attn_implementation=implementation, **extra
        )
    except (ImportError, ValueError, RuntimeError) as exc:
        if plan.active and implementation == "sdpa":
            # What `plan_quantization` could not foresee (a kernel, a driver): still one line.
            raise QuantizationError(f"{plan.description}: {str(exc).splitlines()[0][:300]}") from exc
        if implementation == "sdpa":
            raise
        # transformers raises instead of falling back when flash-attn (or CUDA) is missing.
        log.warning("attention %s unavailable (%s); falling back to sdpa", implementation, exc)
        reason = f"{implementation} unavailable: {str(exc).splitlines()[0][:200]}"
        implementation = "sdpa"
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, attn_implementation="sdpa", **extra)
    if not plan.active:
        model.to(device)  # type: ignore[arg-type]  # transformers' stubs type `to` as a decorator's wrapper
    model.eval()
    processor = AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "left"  # batched generation needs left padding
    log.info(
        "loaded %s (%s, picture sides in multiples of %d) on %s, %s, attention %s (%s), quantization %s",
        path, arch.name, arch.patch_factor, device, dtype, implementation, reason, plan.description,
    )
    return LoadedModel(
        model=model,
        processor=processor,
        arch=arch,
        name=path.name,
        device=device,
        dtype=dtype,
        attention=implementation,
        attention_reason=reason,
        quantization=plan,
    )
