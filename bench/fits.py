"""What fits on which card: weights + KV of a 16k-token conversation + one picture's activations.

    .venv/bin/python -m bench.fits

COMPUTED, not measured: parameter counts from the published configs' sizes (written out below),
bytes per parameter of each precision (bitsandbytes int8: 1 byte and a float32 scale per row; nf4:
half a byte and a float32 absmax per block of 64), only the language model's linear layers
quantized (as `VLMBOT_QUANTIZATION` does; embeddings, lm_head and the vision tower in bf16), the KV
cache in bf16, and the activations as `engine.admission` estimates them for one picture at the
default pixel budget and one 512-token prefill chunk. A card "fits" when the total is within
`VLMBOT_GPU_MEMORY_FRACTION` (0.9) of its memory; the CUDA context (~0.3-0.5 GiB) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import table
from engine.admission import MemoryShape, kv_bytes, request_bytes
from engine.arch import DEFAULT_MAX_PIXELS

GIB = 1024**3
CARDS = (8, 12, 16, 24)
CONTEXT = 16384
FRACTION = 0.9


@dataclass(frozen=True)
class Config:
    """The sizes of a published config.json (text_config and vision_config)."""

    name: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    tied: bool
    v_depth: int
    v_hidden: int
    v_ffn: int
    patch: int
    gated_vision_mlp: bool  # Qwen2.5-VL's vision MLP is gated (3 matrices), Qwen3-VL's is not (2)
    deepstack: int = 0  # Qwen3-VL's extra mergers
    head_dim: int = 128

    def text_linear(self) -> int:
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        return self.layers * (attention + 3 * self.hidden * self.ffn)

    def text_rows(self) -> int:  # output features of the quantized linears (one scale each for int8)
        return self.layers * (self.head_dim * (2 * self.kv_heads + self.heads) + self.hidden + 2 * self.ffn + self.hidden)

    def other(self) -> int:
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        mlp = (3 if self.gated_vision_mlp else 2) * self.v_hidden * self.v_ffn
        vision = self.v_depth * (4 * self.v_hidden**2 + mlp) + 3 * 2 * self.patch**2 * self.v_hidden
        merger = 16 * self.v_hidden**2 + 4 * self.v_hidden * self.hidden
        return embed + vision + merger * (1 + self.deepstack)

    def shape(self) -> MemoryShape:
        return MemoryShape(self.layers, self.kv_heads, self.head_dim, 2, self.v_hidden, self.v_ffn, self.hidden, self.ffn)


CONFIGS = (
    Config("Qwen2.5-VL-3B", 151936, 2048, 36, 16, 2, 11008, True, 32, 1280, 3420, 14, True),
    Config("Qwen2.5-VL-7B", 152064, 3584, 28, 28, 4, 18944, False, 32, 1280, 3420, 14, True),
    Config("Qwen3-VL-4B", 151936, 2560, 36, 32, 8, 9728, True, 24, 1024, 4096, 16, False, deepstack=3),
    Config("Qwen3-VL-8B", 151936, 4096, 36, 32, 8, 12288, False, 27, 1152, 4304, 16, False, deepstack=3),
)


def weight_bytes(config: Config, precision: str) -> int:
    linear = config.text_linear()
    if precision == "bf16":
        quantized = 2 * linear
    elif precision == "int8":
        quantized = linear + 4 * config.text_rows()
    else:  # nf4
        quantized = linear // 2 + 4 * (linear // 64)
    return quantized + 2 * config.other()


def main() -> None:
    rows = []
    for config in CONFIGS:
        patches = DEFAULT_MAX_PIXELS // config.patch**2
        running = request_bytes(config.shape(), CONTEXT, 0, [patches])
        for precision in ("bf16", "int8", "nf4"):
            weights = weight_bytes(config, precision)
            total = weights + running
            fits = ["yes" if total <= FRACTION * card * GIB else "no" for card in CARDS]
            params = (config.text_linear() + config.other()) / 1e9
            rows.append([config.name, f"{params:.2f} B", precision, weights / GIB,
                         kv_bytes(config.shape(), CONTEXT, 0) / GIB, total / GIB, *fits])
    print(table(["model", "params", "weights", "weights GiB", "KV 16k GiB", "total GiB",
                 *(f"{card} GB" for card in CARDS)], rows))


if __name__ == "__main__":
    main()
