"""Which weights are quantized, and how: the `VLMBOT_QUANTIZATION` setting or the checkpoint's own config.

Two sources, never both. `int8` and `nf4` quantize a full-precision checkpoint with bitsandbytes
while it loads: the language model's linear layers only. The vision tower and the output head stay
in full precision, because reading small text in a screenshot is what suffers first. A checkpoint
whose config.json carries a `quantization_config` (AWQ, GPTQ, FP8, compressed-tensors, bitsandbytes)
is already quantized and loads as it is; a package or GPU it needs that is missing is reported in
one line before transformers is asked to load it.

Import-light on purpose (torch and transformers are imported inside `bitsandbytes_config`), so that
`bot.config` and `bot.service` can name the choices and the error.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = [
    "NO_QUANTIZATION",
    "QUANTIZATIONS",
    "SKIPPED_MODULES",
    "QuantizationError",
    "QuantizationPlan",
    "QuantizationSetting",
    "bitsandbytes_config",
    "plan_quantization",
]

log = logging.getLogger(__name__)

QuantizationSetting = Literal["none", "int8", "nf4"]
QUANTIZATIONS: tuple[str, ...] = get_args(QuantizationSetting)

# Module names kept in full precision. transformers 5 names the vision tower `model.visual` (older
# checkpoints' `visual` is converted on load); bitsandbytes matches these as name prefixes/parts.
SKIPPED_MODULES: tuple[str, ...] = ("model.visual", "visual", "lm_head")

# quant_method of a pre-quantized checkpoint -> (what it is called, modules it needs, pip hint).
_PREQUANTIZED: dict[str, tuple[str, tuple[str, ...], str]] = {
    "awq": ("AWQ", ("gptqmodel", "accelerate"), "pip install gptqmodel accelerate"),
    "gptq": ("GPTQ", ("optimum", "gptqmodel"), "pip install optimum gptqmodel"),
    "fp8": ("FP8", ("accelerate",), "pip install accelerate"),
    "compressed-tensors": ("compressed-tensors", ("compressed_tensors",), "pip install compressed-tensors"),
    "bitsandbytes": ("bitsandbytes", ("bitsandbytes",), "pip install 'vlmbot[quant]'"),
}
# FP8 matrix multiplies need Ada (8.9) or newer.
_FP8_CAPABILITY = (8, 9)


class QuantizationError(ValueError):
    """The model cannot be loaded as configured; the message is one line for the operator."""


@dataclass(frozen=True)
class QuantizationPlan:
    """What the loader passes to transformers, and how the running model describes itself."""

    mode: str  # "none", "int8", "nf4", or the pre-quantized method ("awq", "gptq", "fp8", ...)
    description: str  # shown in the start-up log, /status, /health and /v1/models
    prequantized: bool = False

    @property
    def active(self) -> bool:
        return self.mode != "none"


NO_QUANTIZATION = QuantizationPlan(mode="none", description="none")


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def plan_quantization(
    setting: str,
    checkpoint_quantization: Mapping[str, Any] | None,
    *,
    cuda_capability: tuple[int, int] | None,
    has_module: Callable[[str], bool] = _has_module,
) -> QuantizationPlan:
    """Decide before loading; `QuantizationError` (one line) when it cannot work here.

    `checkpoint_quantization` is the config's `quantization_config`; `cuda_capability` is None
    without a CUDA device."""
    if setting not in QUANTIZATIONS:
        raise QuantizationError(f"VLMBOT_QUANTIZATION={setting!r}: must be one of {', '.join(QUANTIZATIONS)}")
    if checkpoint_quantization:
        method = str(checkpoint_quantization.get("quant_method", "unknown")).lower()
        if setting != "none":
            raise QuantizationError(
                f"the checkpoint is already quantized ({method}); unset VLMBOT_QUANTIZATION={setting} to load it as it is"
            )
        name, modules, hint = _PREQUANTIZED.get(method, (method, (), ""))
        if method not in _PREQUANTIZED:
            raise QuantizationError(f"the checkpoint is quantized with {method!r}, which vlmbot does not load")
        missing = [module for module in modules if not has_module(module)]
        if missing:
            raise QuantizationError(
                f"the checkpoint is {name}-quantized and needs {', '.join(missing)}, which is not installed ({hint})"
            )
        if method in ("awq", "gptq", "fp8") and cuda_capability is None:
            raise QuantizationError(f"the checkpoint is {name}-quantized and needs a CUDA GPU; none is available")
        if method == "fp8" and cuda_capability is not None and cuda_capability < _FP8_CAPABILITY:
            raise QuantizationError(
                f"the checkpoint is FP8-quantized and needs a GPU of compute capability 8.9 or newer "
                f"(this one is {cuda_capability[0]}.{cuda_capability[1]})"
            )
        return QuantizationPlan(mode=method, description=f"{method} (pre-quantized checkpoint)", prequantized=True)
    if setting == "none":
        return NO_QUANTIZATION
    if not has_module("bitsandbytes"):
        raise QuantizationError(
            f"VLMBOT_QUANTIZATION={setting} needs bitsandbytes, which is not installed (pip install 'vlmbot[quant]')"
        )
    return QuantizationPlan(
        mode=setting, description=f"{setting} (bitsandbytes; vision tower and lm_head unquantized)"
    )


def bitsandbytes_config(plan: QuantizationPlan, compute_dtype: Any) -> Any:
    """The `quantization_config` for `from_pretrained`, or None when nothing is quantized while loading."""
    if plan.prequantized or plan.mode == "none":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    skipped = list(SKIPPED_MODULES)
    if plan.mode == "int8":
        # bitsandbytes warns on every int8 forward whose inputs are not fp16 ("inputs will be cast
        # from torch.float32 to float16"): on the CPU that is every step. Said once here instead.
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        if compute_dtype != torch.float16:
            log.info("int8: bitsandbytes computes the quantized layers in float16 (inputs are cast)")
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skipped)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=skipped,
    )
