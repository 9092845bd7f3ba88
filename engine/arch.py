"""The model architecture's rules, known in one place (torch-free: the bot core reads it too).

What differs between the supported families, and only that:

- Picture sides: Qwen2.5-VL cuts a picture into 14x14 patches and merges 2x2 of them into one
  visual token, so sides are multiples of 28 and P pixels cost P / 784 tokens; Qwen3-VL uses
  16x16 patches: multiples of 32, P / 1024 tokens.
- Grounding answers: Qwen2.5-VL gives boxes in pixels of the picture AFTER the resize (the input it
  saw); Qwen3-VL in relative coordinates from 0 to 1000.

The in-process engine reads the architecture from the checkpoint's config (`model_type`, and the
vision tower's patch and merge sizes); `vlmbot engine serve` advertises it on `/v1/models` under a
`vlmbot` key of each model object (OpenAI clients ignore unknown keys); the remote engine reads that,
else `VLMBOT_ENGINE_ARCH`, else (`auto`) the model's name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal, TypeGuard

__all__ = [
    "ADVERTISED_KEY",
    "ARCHS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_PIXELS",
    "MAX_TOKENS_KEY",
    "QWEN2_5_VL",
    "QWEN3_VL",
    "ArchName",
    "ArchSetting",
    "Coordinates",
    "ModelArch",
    "arch_for_checkpoint",
    "arch_from_advertised",
    "arch_from_name",
    "arch_named",
    "max_tokens_from_advertised",
    "visual_tokens_bound",
]


class ArchName(StrEnum):
    QWEN2_5_VL = "qwen2_5_vl"
    QWEN3_VL = "qwen3_vl"


class Coordinates(StrEnum):
    """The space a grounding answer's numbers live in."""

    RESIZED_PIXELS = "resized_pixels"  # pixels of the picture as resized for the model
    RELATIVE_1000 = "relative_1000"  # 0..1000 on both axes of the whole picture


# `VLMBOT_ENGINE_ARCH`: what a remote server that does not advertise its architecture serves.
ArchSetting = Literal["auto", "qwen2_5_vl", "qwen3_vl"]

# The project's default pixel budget per picture: 1280 visual tokens of Qwen2.5-VL (about
# 1000x1000, 980 tokens on Qwen3-VL), which leaves room for several pictures and a long
# conversation on a 24 GB card with a 7-8 B model in bf16; and at least 4 of its tokens.
DEFAULT_MAX_PIXELS = 1280 * 28 * 28
DEFAULT_MIN_PIXELS = 4 * 28 * 28

ADVERTISED_KEY = "vlmbot"  # the extra key of a model object on this project's /v1/models
MAX_TOKENS_KEY = "max_tokens"  # in it, beside the architecture: the server's cap on a request's max_tokens


@dataclass(frozen=True)
class ModelArch:
    name: ArchName
    patch_size: int  # side of one vision patch in pixels
    merge_size: int  # patches merged per side into one visual token
    coordinates: Coordinates

    @property
    def patch_factor(self) -> int:
        """Picture sides are multiples of this: the side of one visual token in pixels."""
        return self.patch_size * self.merge_size

    def visual_tokens(self, pixels: int) -> int:
        """Visual tokens of a picture of `pixels` pixels after the resize (an upper bound for a budget)."""
        return pixels // (self.patch_factor * self.patch_factor)

    def advertised(self) -> dict[str, Any]:
        """The value of the `vlmbot` key of a model object on /v1/models."""
        return {
            "arch": str(self.name),
            "patch_size": self.patch_size,
            "merge_size": self.merge_size,
            "coordinates": str(self.coordinates),
        }


QWEN2_5_VL = ModelArch(ArchName.QWEN2_5_VL, patch_size=14, merge_size=2, coordinates=Coordinates.RESIZED_PIXELS)
QWEN3_VL = ModelArch(ArchName.QWEN3_VL, patch_size=16, merge_size=2, coordinates=Coordinates.RELATIVE_1000)
ARCHS: dict[ArchName, ModelArch] = {arch.name: arch for arch in (QWEN2_5_VL, QWEN3_VL)}


def arch_named(name: str) -> ModelArch:
    """The architecture called `name` ("qwen2_5_vl", "qwen3_vl"); ValueError for any other."""
    try:
        return ARCHS[ArchName(name)]
    except ValueError:
        supported = ", ".join(ARCHS)
        raise ValueError(f"unsupported model architecture {name!r} (supported: {supported})") from None


def arch_for_checkpoint(model_type: str, patch_size: Any = None, merge_size: Any = None) -> ModelArch:
    """The architecture of a checkpoint from its config: `model_type`, and the vision tower's patch
    and merge sizes when the config names them. ValueError for a model type vlmbot does not serve."""
    arch = arch_named(model_type)
    if _size(patch_size):
        arch = replace(arch, patch_size=patch_size)
    if _size(merge_size):
        arch = replace(arch, merge_size=merge_size)
    return arch


def max_tokens_from_advertised(value: Any) -> int | None:
    """The server's cap on max_tokens a model object's `vlmbot` key gives; None when it says nothing usable."""
    cap = value.get(MAX_TOKENS_KEY) if isinstance(value, dict) else None
    return cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None


def arch_from_advertised(value: Any) -> ModelArch | None:
    """The architecture a model object's `vlmbot` key describes; None when it says nothing usable."""
    if not isinstance(value, dict):
        return None
    try:
        arch = arch_named(str(value.get("arch")))
    except ValueError:
        return None
    patch, merge = value.get("patch_size"), value.get("merge_size")
    if _size(patch) and _size(merge):
        return replace(arch, patch_size=patch, merge_size=merge)
    return arch


def _size(value: Any) -> TypeGuard[int]:
    """A usable patch or merge size (configs may also hold a (height, width) pair: then the default)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 64


def arch_from_name(model_name: str) -> ModelArch:
    """A guess from the served model's name, for servers that do not say: a name that says Qwen3
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl_30b_a3b") is Qwen3-VL, anything else Qwen2.5-VL."""
    normalised = model_name.lower().replace("-", "").replace("_", "").replace(".", "")
    return QWEN3_VL if "qwen3" in normalised else QWEN2_5_VL


def visual_tokens_bound(max_pixels: int, arch: ModelArch | None = None) -> int:
    """Tokens of one picture at the budget: the architecture's count, or the largest of all the
    supported ones while it is not known yet (a remote server not reached)."""
    if arch is not None:
        return arch.visual_tokens(max_pixels)
    return max(known.visual_tokens(max_pixels) for known in ARCHS.values())

