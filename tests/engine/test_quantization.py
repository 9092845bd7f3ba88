"""Weights quantized while loading (bitsandbytes int8 and nf4) answer through the real decode loop.

Tolerances, stated: on the tiny checkpoints (first-token logits up to ~0.6 in magnitude) an int8
model's first-token logits stay within 0.01 of the full-precision model's (seen: at most 0.004), and
an nf4 model's within 0.1 (seen: at most 0.052; nf4 rounds each weight to one of 16 levels). Within one quantized model, a request decoded in a batch
gets the logits it gets alone to 1e-3 (bitsandbytes quantizes activations per row).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest

from engine.interface import PromptTurn
from engine.loader import load_model
from engine.local import LocalEngine
from engine.quantization import QuantizationError, plan_quantization
from engine.server import EngineServerOptions, running_engine_server
from tests.engine.support import SYSTEM, HeldAt, Recorder, answer, ask, noisy_picture, started_engine

pytest.importorskip("bitsandbytes")

SMALL = 64 * 28 * 28
TOLERANCE = {"int8": 0.01, "nf4": 0.1}
BATCH_ATOL = 1e-3


def questions(prefix: str) -> list:
    big, tall = noisy_picture((96, 64), seed=11), noisy_picture((56, 168), seed=12)
    return [
        ask(f"{prefix}-big", f"{prefix}-s1", [SYSTEM, PromptTurn("user", "What is in the picture?", (big,))], 6),
        ask(f"{prefix}-tall", f"{prefix}-s2", [SYSTEM, PromptTurn("user", "Read the text in it.", (tall,))], 6),
        ask(f"{prefix}-text", f"{prefix}-s3", [SYSTEM, PromptTurn("user", "Where is the power button?")], 6),
    ]


def started(path: Path, quantization: str) -> AbstractAsyncContextManager[LocalEngine]:
    return started_engine(path, max_pixels=SMALL, feature_cache_bytes=0, quantization=quantization)


@pytest.fixture(params=["int8", "nf4"])
async def quantized(request: pytest.FixtureRequest, tiny_model_dir: Path) -> AsyncIterator[tuple[str, LocalEngine]]:
    async with started(tiny_model_dir, request.param) as engine:
        yield request.param, engine


def layer_kinds(engine: LocalEngine) -> dict[str, set[str]]:
    model = engine.loaded.model
    kinds: dict[str, set[str]] = {"language": set(), "vision": set()}
    for name, module in model.named_modules():
        part = "vision" if ".visual" in name else "language" if "language_model" in name else None
        if part is not None:
            kinds[part].add(type(module).__name__)
    kinds["head"] = {type(model.lm_head).__name__}
    return kinds


async def test_only_the_language_model_is_quantized(quantized: tuple[str, LocalEngine]) -> None:
    mode, engine = quantized
    kinds = layer_kinds(engine)
    quantized_linear = "Linear8bitLt" if mode == "int8" else "Linear4bit"
    assert quantized_linear in kinds["language"]
    assert kinds["vision"].isdisjoint({"Linear8bitLt", "Linear4bit"}) and "Linear" in kinds["vision"]
    assert kinds["head"] == {"Linear"}
    health = engine.health()
    assert health.quantization.startswith(f"{mode} (bitsandbytes")


async def test_first_token_logits_stay_near_the_full_precision_model(
    quantized: tuple[str, LocalEngine], tiny_model_dir: Path
) -> None:
    mode, engine = quantized
    async with started(tiny_model_dir, "none") as full:
        full_hook, quant_hook = Recorder(), Recorder()
        full.generate_hook, engine.generate_hook = full_hook, quant_hook
        for request in questions("q"):
            await answer(full, request)
            await answer(engine, request)
    for request in questions("q"):
        rid = request.request_id
        diff = float((full_hook.logits[rid][0] - quant_hook.logits[rid][0]).abs().max())
        assert diff < TOLERANCE[mode], (rid, diff)
        assert diff > 0  # the weights really are different ones


async def test_batched_and_followed_up_through_the_decode_loop(quantized: tuple[str, LocalEngine]) -> None:
    _, engine = quantized
    solo = Recorder()
    engine.generate_hook = solo
    alone = {r.request_id.removeprefix("solo-"): await answer(engine, r) for r in questions("solo")}
    together = HeldAt(1)
    engine.generate_hook = together
    requests = questions("batch")
    tasks = [asyncio.create_task(answer(engine, r)) for r in requests]
    await asyncio.to_thread(together.reached.wait, 30)  # one is decoding, held until all are prepared
    while not all((job := engine._jobs.get(r.request_id)) and job.ready() for r in requests):
        await asyncio.sleep(0.005)
    together.release.set()
    results = await asyncio.gather(*tasks)
    assert max(together.batch_sizes) == 3
    for request, (_text, stats) in zip(requests, results, strict=True):
        name = request.request_id.removeprefix("batch-")
        assert stats.output_tokens == request.limits.max_new_tokens == alone[name][1].output_tokens
        for step in range(request.limits.max_new_tokens):
            diff = float((solo.logits[f"solo-{name}"][step] - together.logits[request.request_id][step]).abs().max())
            assert diff < BATCH_ATOL, (name, step, diff)
    # The follow-up reuses the KV cache its session's batched row left behind.
    first = requests[0]
    turns = [*first.turns, PromptTurn("assistant", results[0][0]), PromptTurn("user", "And?")]
    _text, stats = await answer(engine, ask("follow", first.session_id, turns))
    assert stats.output_tokens > 0
    assert together.prefill["follow"]["cached_tokens"] >= len(together.prefill[first.request_id]["input_ids"][0])


def test_an_unknown_quantization_is_refused_in_one_line() -> None:
    with pytest.raises(QuantizationError, match=r"^VLMBOT_QUANTIZATION='int4': must be one of none, int8, nf4$"):
        plan_quantization("int4", None, cuda_capability=None)


def claiming(tiny_qwen25_dir: Path, tmp_path: Path, quantization_config: dict) -> Path:
    copy = tmp_path / "claims-quantized"
    shutil.copytree(tiny_qwen25_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["quantization_config"] = quantization_config
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"},
         r"^the checkpoint is AWQ-quantized and needs gptqmodel.*, which is not installed \(pip install "),
        ({"quant_method": "fp8", "weight_block_size": [128, 128]},
         r"^the checkpoint is FP8-quantized and needs a CUDA GPU; none is available$"),
        ({"quant_method": "hqq"}, r"^the checkpoint is quantized with 'hqq', which vlmbot does not load$"),
    ],
)
def test_a_prequantized_checkpoint_that_cannot_load_here_says_why(
    tiny_qwen25_dir: Path, tmp_path: Path, claim: dict, message: str
) -> None:
    if claim["quant_method"] == "fp8":
        pytest.importorskip("accelerate", reason="without accelerate the line names accelerate, not the GPU")
    if claim["quant_method"] == "awq" and importlib.util.find_spec("gptqmodel") is not None:
        pytest.skip("gptqmodel is installed here")
    with pytest.raises(QuantizationError, match=message):
        load_model(claiming(tiny_qwen25_dir, tmp_path, claim), device_setting="cpu")


def test_a_prequantized_checkpoint_is_not_quantized_again(tiny_qwen25_dir: Path, tmp_path: Path) -> None:
    path = claiming(tiny_qwen25_dir, tmp_path, {"quant_method": "awq", "bits": 4})
    with pytest.raises(QuantizationError, match=r"already quantized \(awq\); unset VLMBOT_QUANTIZATION=nf4"):
        load_model(path, device_setting="cpu", quantization="nf4")


def test_a_prequantized_plan_checks_packages_and_gpu() -> None:
    def everything(name: str) -> bool:
        return True

    plan = plan_quantization("none", {"quant_method": "fp8"}, cuda_capability=(9, 0), has_module=everything)
    assert plan.prequantized and plan.description == "fp8 (pre-quantized checkpoint)"
    with pytest.raises(QuantizationError, match=r"compute capability 8.9 or newer \(this one is 8.0\)$"):
        plan_quantization("none", {"quant_method": "fp8"}, cuda_capability=(8, 0), has_module=everything)
    with pytest.raises(QuantizationError, match=r"needs compressed_tensors, which is not installed"):
        plan_quantization("none", {"quant_method": "compressed-tensors"}, cuda_capability=None, has_module=lambda n: False)


async def test_the_engine_server_shows_the_quantization(quantized: tuple[str, LocalEngine]) -> None:
    mode, engine = quantized
    options = EngineServerOptions(port=0, max_images=2, max_new_tokens=4, shutdown_timeout_s=1)
    async with running_engine_server(engine, options) as server, aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/health") as response:
            health = await response.json()
        async with http.get(f"{server.url}/models") as response:
            models = await response.json()
    assert health["quantization"].startswith(f"{mode} (bitsandbytes")
    assert models["data"][0]["vlmbot"]["quantization"] == health["quantization"]


def test_a_remote_servers_word_on_quantization_is_made_safe_to_show() -> None:
    from engine.remote import advertised_quantization

    assert advertised_quantization({"vlmbot": {"quantization": "nf4 (bitsandbytes)"}}) == "nf4 (bitsandbytes)"
    assert advertised_quantization({"vlmbot": {"quantization": "<b>\x1b[31mx\n" + "y" * 500}}) == "<b>[31mx" + "y" * 92
    assert advertised_quantization({"vlmbot": {"quantization": 4}}) == "-"
    assert advertised_quantization({"id": "other-server"}) == advertised_quantization(None) == "-"
