"""The model architecture, known in one place: read from the checkpoint, advertised by this project's
server, learnt by the remote engine (else VLMBOT_ENGINE_ARCH, else the model's name), and asked by
everything that resizes pictures or reads /find boxes. Qwen3-VL under a name that does not say so
must still get pictures in multiples of 32 and boxes read as 0-1000 coordinates (issue 13)."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from bot.messages import Answer, Attachment, IncomingMessage, Picture, Reply, Text
from engine.arch import (
    ARCHS,
    DEFAULT_MAX_PIXELS,
    QWEN2_5_VL,
    QWEN3_VL,
    ArchName,
    Coordinates,
    arch_for_checkpoint,
    arch_from_advertised,
    arch_from_name,
    visual_tokens_bound,
)
from engine.interface import GenerationRequest
from engine.local import LocalEngine, LocalEngineOptions
from engine.server import EngineServerOptions, RunningServer, running_engine_server
from tests.bot.test_presets import square_picture
from tests.engine.openai_standin import OpenAIStandIn
from tests.engine.support import running
from tests.engine.test_remote_service import UNAVAILABLE, EngineHost
from tests.hooks import ForcedAnswer

SMALL = 64 * 28 * 28  # the tests' budget (tests/conftest.py make_settings)
# A perfect Qwen3-VL answer for square_picture(): the square spans x 25-50 %, y 25-75 %.
RELATIVE_ANSWER = '[{"bbox_2d": [250, 250, 500, 750], "label": "square"}]'
FOUND = "1. square: box (140, 70) - (280, 210)"


# --- the rules -----------------------------------------------------------------------------------


def test_each_architectures_rules() -> None:
    assert (QWEN2_5_VL.patch_factor, QWEN3_VL.patch_factor) == (28, 32)
    assert (QWEN2_5_VL.visual_tokens(DEFAULT_MAX_PIXELS), QWEN3_VL.visual_tokens(DEFAULT_MAX_PIXELS)) == (1280, 980)
    assert QWEN2_5_VL.coordinates is Coordinates.RESIZED_PIXELS and QWEN3_VL.coordinates is Coordinates.RELATIVE_1000
    assert set(ARCHS) == set(ArchName)
    # Unknown yet (a remote server not reached): the prompt budget counts the costliest picture.
    assert visual_tokens_bound(DEFAULT_MAX_PIXELS, None) == 1280
    assert visual_tokens_bound(DEFAULT_MAX_PIXELS, QWEN3_VL) == 980


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("Qwen/Qwen3-VL-8B-Instruct", QWEN3_VL),
        ("qwen3_vl_30b_a3b", QWEN3_VL),
        ("Qwen-3-VL", QWEN3_VL),
        ("Qwen/Qwen2.5-VL-7B-Instruct", QWEN2_5_VL),
        ("helpdesk-model", QWEN2_5_VL),
    ],
)
def test_name_fallback(name: str, arch: Any) -> None:
    assert arch_from_name(name) == arch


def test_checkpoint_config() -> None:
    assert arch_for_checkpoint("qwen3_vl", 16, 2) == QWEN3_VL
    assert arch_for_checkpoint("qwen2_5_vl", [14, 14], None) == QWEN2_5_VL  # a pair: the family's default
    assert arch_for_checkpoint("qwen3_vl", 14, 2).patch_factor == 28  # the config's own patch size wins
    with pytest.raises(ValueError, match="unsupported model architecture 'llava'"):
        arch_for_checkpoint("llava")


def test_advertisement_round_trip_and_garbage() -> None:
    for arch in ARCHS.values():
        assert arch_from_advertised(arch.advertised()) == arch
    garbage: list[Any] = [None, "qwen3_vl", [], {}, {"arch": None}, {"arch": "llava"}, {"arch": 3}]
    for said in garbage:
        assert arch_from_advertised(said) is None, said
    # Nonsense sizes fall back to the family's own.
    assert arch_from_advertised({"arch": "qwen3_vl", "patch_size": True, "merge_size": -1}) == QWEN3_VL
    assert arch_from_advertised({"arch": "qwen3_vl", "patch_size": 16, "merge_size": 10**9}) == QWEN3_VL


# --- Qwen3-VL under another name -----------------------------------------------------------------


@pytest.fixture
def renamed_qwen3(tiny_qwen3_dir: Path, tmp_path: Path) -> Path:
    """The Qwen3-VL checkpoint in a folder whose name says nothing about it."""
    return Path(shutil.copytree(tiny_qwen3_dir, tmp_path / "helpdesk-model"))


@pytest.fixture
async def qwen3_engine(renamed_qwen3: Path) -> AsyncIterator[LocalEngine]:
    engine = LocalEngine(LocalEngineOptions(model_path=renamed_qwen3, max_pixels=SMALL, queue_size=4))
    assert engine.arch is None  # not loaded yet
    async with running(engine):
        yield engine


@pytest.fixture
async def qwen3_server(qwen3_engine: LocalEngine) -> AsyncIterator[RunningServer]:
    options = EngineServerOptions(port=0, served_model_names=("support-bot",), shutdown_timeout_s=1)
    async with running_engine_server(qwen3_engine, options) as running:
        yield running


def recorded_requests(engine: LocalEngine) -> list[GenerationRequest]:
    """Every request the server hands `engine`: its pictures are the bytes the bot sent."""
    requests: list[GenerationRequest] = []
    generate = engine.generate

    def recording(request: GenerationRequest) -> Any:
        requests.append(request)
        return generate(request)

    engine.generate = recording  # type: ignore[method-assign]
    return requests


async def ask(service: Any, text: str, *pictures: bytes) -> list[Reply]:
    attachments = tuple(Attachment(data, f"p{i}.png", "image/png") for i, data in enumerate(pictures))
    message = IncomingMessage("telegram", "chat:1", "u1", text, attachments, "Ann")
    return [reply async for reply in service.conversations.handle(message)]


def found(replies: list[Reply]) -> str:
    answer = next(r for r in replies if isinstance(r, Answer))
    return answer.text


async def test_local_engine_reads_the_checkpoint(qwen3_engine: LocalEngine) -> None:
    assert qwen3_engine.model_name == "helpdesk-model"
    assert qwen3_engine.arch == QWEN3_VL and await qwen3_engine.model_arch() == QWEN3_VL


async def test_server_advertises_the_architecture_to_openai_clients(qwen3_server: RunningServer) -> None:
    async with openai.AsyncOpenAI(base_url=qwen3_server.url, api_key="unused") as client:
        models = (await client.models.list()).data
    assert [m.id for m in models] == ["helpdesk-model", "support-bot"]
    for model in models:
        assert model.model_extra is not None
        assert model.model_extra["vlmbot"] == {
            "arch": "qwen3_vl", "patch_size": 16, "merge_size": 2, "coordinates": "relative_1000",
            "max_tokens": EngineServerOptions().max_new_tokens, "quantization": "none",  # the server's cap, beside the architecture
        }


@pytest.mark.parametrize("setting", ["auto", "qwen2_5_vl"])
async def test_find_through_this_projects_server_under_another_name(
    service_factory, qwen3_engine: LocalEngine, qwen3_server: RunningServer, setting: str
) -> None:
    """Neither "helpdesk-model" nor "support-bot" says Qwen3: the server's own word decides, even over
    a VLMBOT_ENGINE_ARCH that contradicts it."""
    requests = recorded_requests(qwen3_engine)
    calls: list[dict[str, Any]] = []
    qwen3_engine.generate_hook = ForcedAnswer(qwen3_engine.loaded.processor.tokenizer, RELATIVE_ANSWER, calls)
    async with service_factory(
        engine_url=qwen3_server.url, engine_model="support-bot", engine_arch=setting, max_new_tokens=256
    ) as service:
        replies = await ask(service, "/find square", square_picture())
        assert service.engine.arch == QWEN3_VL
    assert FOUND in found(replies) and any(isinstance(r, Picture) for r in replies)
    [request] = requests
    assert "0 to 1000" in request.turns[-1].text  # asked in Qwen3-VL's own terms
    [picture] = [image for turn in request.turns for image in turn.images]
    sent = Image.open(io.BytesIO(picture.data))
    assert sent.width % 32 == 0 and sent.height % 32 == 0, sent.size  # as it came off the wire
    assert sent.size == (288, 128)
    assert calls[-1]["image_grid_thw"].tolist() == [[1, 8, 18]]  # the model saw exactly that picture


@pytest.mark.parametrize(
    ("model", "setting", "models_status", "factor", "located"),
    [
        ("helpdesk-model", "qwen3_vl", 200, 32, True),  # VLMBOT_ENGINE_ARCH decides
        ("helpdesk-model", "qwen3_vl", 404, 32, True),  # a server without /v1/models
        ("Qwen3-VL-8B-Instruct", "auto", 200, 32, True),  # auto: the name says Qwen3
        ("helpdesk-model", "auto", 200, 28, False),  # auto, and the name says nothing: taken as Qwen2.5-VL
    ],
)
async def test_find_through_a_server_that_says_nothing(
    service_factory, model: str, setting: str, models_status: int, factor: int, located: bool
) -> None:
    async with OpenAIStandIn(model=model, pieces=(RELATIVE_ANSWER,), models_status=models_status) as standin:
        async with service_factory(
            engine_url=standin.url, engine_model=model, engine_arch=setting, max_new_tokens=256
        ) as service:
            replies = await ask(service, "/find square", square_picture())
    [body] = [received.body for received in standin.received]
    parts = body["messages"][-1]["content"]
    [url] = [part["image_url"]["url"] for part in parts if part["type"] == "image_url"]
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.width % factor == 0 and sent.height % factor == 0, sent.size
    text = found(replies)
    if located:
        assert FOUND in text and "0 to 1000" in parts[-1]["text"]
    else:  # the same numbers read as pixels of a 308x140 picture lie outside it
        assert sent.size == (308, 140) and text.startswith('Nothing was located for "square"')


async def test_architecture_learnt_when_the_server_comes_up_after_the_bot(
    service_factory, qwen3_engine: LocalEngine
) -> None:
    host = EngineHost(qwen3_engine, max_new_tokens=256)
    qwen3_engine.generate_hook = ForcedAnswer(qwen3_engine.loaded.processor.tokenizer, RELATIVE_ANSWER)
    async with service_factory(engine_url=host.url, max_new_tokens=256) as service:
        assert service.engine.arch is None  # the server was not there at start
        assert await ask(service, "/find square", square_picture()) == [Text(UNAVAILABLE, kind="error")]
        await host.start()
        try:
            replies = await ask(service, "/find square")  # the picture sent before was kept
        finally:
            await host.stop()
        assert service.engine.arch == QWEN3_VL
    assert FOUND in found(replies)
