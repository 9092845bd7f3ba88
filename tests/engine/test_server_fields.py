"""Every request field of the README's table behaves as the table says, through the official `openai` client.

Honoured: stop, seed, max_completion_tokens, the penalties, vLLM's ignore_eos and min_tokens.
Refused with a 400 naming the field: what the server cannot honour. GET /v1/models/{id}. And the
server's max_tokens cap, advertised, does not break the bot's remote engine.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from openai.resources.chat.completions import AsyncCompletions

from engine import server_api
from engine.hooks import DecodeHook
from engine.interface import GenerationLimits, GenerationRequest, PromptTurn, TextPiece
from engine.local import LocalEngine
from engine.server import EngineServerOptions, RunningServer, running_engine_server
from tests.engine.support import SYSTEM, Recorder, answer, started_engine, started_remote

SMALL = 64 * 28 * 28
CAP = 16
MESSAGES: list[Any] = [
    {"role": "system", "content": "You are a helpdesk assistant."},
    {"role": "user", "content": "Where is the power button?"},
]
TURNS = (SYSTEM, PromptTurn("user", "Where is the power button?"))


@pytest.fixture
async def engine(tiny_qwen25_dir: Path) -> AsyncIterator[LocalEngine]:
    async with started_engine(tiny_qwen25_dir, max_pixels=SMALL, queue_size=8) as eng:
        yield eng


@pytest.fixture
async def server(engine: LocalEngine) -> AsyncIterator[RunningServer]:
    options = EngineServerOptions(port=0, max_new_tokens=CAP, shutdown_timeout_s=1)
    async with running_engine_server(engine, options) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0) as client:
        yield client


async def ask(client: openai.AsyncOpenAI, **fields: Any) -> tuple[str, str, int]:
    """Not streamed: (content, finish_reason, completion tokens)."""
    extra = {name: fields.pop(name) for name in ("ignore_eos", "min_tokens") if name in fields}
    extra.update(fields.pop("extra_body", {}))
    create: Any = client.chat.completions.create  # fields the client's types do not know, on purpose
    reply = await create(model="", messages=MESSAGES, extra_body=extra, **fields)
    assert reply.usage is not None
    return reply.choices[0].message.content or "", reply.choices[0].finish_reason, reply.usage.completion_tokens


async def ask_streamed(client: openai.AsyncOpenAI, **fields: Any) -> tuple[list[str], str]:
    """Streamed: (the content pieces, finish_reason)."""
    extra = {name: fields.pop(name) for name in ("ignore_eos", "min_tokens") if name in fields}
    create: Any = client.chat.completions.create
    stream = await create(model="", messages=MESSAGES, stream=True, extra_body=extra, **fields)
    pieces, finish = [], ""
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return pieces, finish


# --- stop ----------------------------------------------------------------------------------------


async def test_a_stop_string_is_never_emitted_streamed_or_not(client: openai.AsyncOpenAI) -> None:
    pieces, _ = await ask_streamed(client, max_tokens=CAP, ignore_eos=True)
    full = "".join(pieces)
    # A stop string that spans two streamed pieces: the end of one and the start of the next.
    k = next(k for k in range(len(pieces) // 2, len(pieces) - 1) if pieces[k] and pieces[k + 1])
    stop = pieces[k][-1] + pieces[k + 1][0]
    expected = full[: full.find(stop)]
    streamed, finish = await ask_streamed(client, max_tokens=CAP, ignore_eos=True, stop=stop)
    assert "".join(streamed) == expected and finish == "stop"
    assert all(stop not in piece for piece in streamed) and stop not in "".join(streamed)
    text, finish, _ = await ask(client, max_tokens=CAP, ignore_eos=True, stop=["never-in-it", stop])
    assert text == expected and finish == "stop"
    text, finish, tokens = await ask(client, max_tokens=CAP, ignore_eos=True, stop="never-in-it")
    assert text == full and finish == "length" and tokens == CAP  # a stop that never comes holds nothing back


# --- seed ----------------------------------------------------------------------------------------


async def test_the_same_seed_gives_the_same_answer_and_another_seed_another(client: openai.AsyncOpenAI) -> None:
    fields = {"max_tokens": CAP, "ignore_eos": True, "temperature": 1.0}
    runs = [await ask(client, seed=1234, **fields) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    streamed, _ = await ask_streamed(client, seed=1234, **fields)
    assert "".join(streamed) == runs[0][0]
    other, _, _ = await ask(client, seed=4321, **fields)
    assert other != runs[0][0]


# --- lengths: max_completion_tokens, ignore_eos, min_tokens --------------------------------------


class EndAtOnce(DecodeHook):
    """Makes the end-of-answer token the model's first choice at every step."""

    def __init__(self, end_ids: Sequence[int]) -> None:
        self.end_ids = list(end_ids)

    def on_logits(self, request_ids: Sequence[str], logits: torch.Tensor) -> None:
        logits[:, self.end_ids] = 1e4


async def test_ignore_eos_and_min_tokens_generate_the_requested_length(
    client: openai.AsyncOpenAI, engine: LocalEngine
) -> None:
    end = engine.loaded.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    engine.generate_hook = EndAtOnce([end])
    assert (await ask(client, max_tokens=CAP))[1:] == ("stop", 1)  # the model wants to stop at once
    _, finish, tokens = await ask(client, max_tokens=CAP, ignore_eos=True)
    assert (finish, tokens) == ("length", CAP)
    _, finish, tokens = await ask(client, max_tokens=CAP, min_tokens=5)
    assert finish == "stop" and tokens == 6  # five tokens, then the end token
    _, finish, tokens = await ask(client, max_tokens=CAP, max_completion_tokens=4, ignore_eos=True)
    assert (finish, tokens) == ("length", 4)  # max_completion_tokens wins over max_tokens


async def test_penalties_change_the_answer(client: openai.AsyncOpenAI) -> None:
    plain = await ask(client, max_tokens=CAP, ignore_eos=True)
    assert await ask(client, max_tokens=CAP, ignore_eos=True, presence_penalty=0.0, frequency_penalty=0.0) == plain
    penalized = await ask(client, max_tokens=CAP, ignore_eos=True, frequency_penalty=2.0, presence_penalty=2.0)
    assert penalized[0] != plain[0]


# --- refused -------------------------------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [TOOL]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [TOOL["function"]]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"n": 2}, "n"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream=true
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": ""}, "stop"),
        ({"stop": ["a", 5]}, "stop[1]"),
        ({"seed": "42"}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"max_tokens": CAP + 1}, "max_tokens"),
        ({"max_completion_tokens": CAP + 1, "max_tokens": 4}, "max_completion_tokens"),
        ({"extra_body": {"min_tokens": CAP + 1}}, "min_tokens"),
        ({"extra_body": {"ignore_eos": "yes"}}, "ignore_eos"),
        ({"moderation": {"enabled": True}}, "moderation"),
        ({"extra_body": {"top_k": 5}}, "top_k"),
        ({"extra_body": {"repetition_penalty": 1.2}}, "repetition_penalty"),
        ({"extra_body": {"guided_json": {"type": "object"}}}, "guided_json"),
        ({"extra_body": {"use_beam_search": True}}, "use_beam_search"),
    ],
)
async def test_what_cannot_be_honoured_is_refused_naming_the_field(
    client: openai.AsyncOpenAI, fields: dict[str, Any], param: str
) -> None:
    create: Any = client.chat.completions.create
    with pytest.raises(openai.BadRequestError) as refused:
        await create(model="", messages=MESSAGES, **fields)
    assert refused.value.status_code == 400 and refused.value.param == param
    assert isinstance(refused.value.body, dict) and refused.value.body["message"]


async def test_a_wrongly_typed_stream_options_is_refused_when_streaming(client: openai.AsyncOpenAI) -> None:
    create: Any = client.chat.completions.create
    for options in ("yes", {"include_usage": "yes"}):
        with pytest.raises(openai.BadRequestError) as refused:
            await create(model="", messages=MESSAGES, stream=True, stream_options=options)
        assert refused.value.param in ("stream_options", "stream_options.include_usage")


async def test_what_is_harmless_is_accepted(client: openai.AsyncOpenAI) -> None:
    _, finish, _ = await ask(
        client, max_tokens=3, response_format={"type": "text"}, logprobs=False, n=1, logit_bias={},
        modalities=["text"], user="someone", metadata={"k": "v"}, store=False, parallel_tool_calls=False,
        tool_choice="none", tools=[], service_tier="auto", reasoning_effort="low", verbosity="low", prompt_cache_key="k", safety_identifier="s",
        extra_body={"top_k": -1, "repetition_penalty": 1.0, "stop_token_ids": []},
    )
    assert finish in ("stop", "length")


def test_the_readme_table_lists_every_field_of_the_official_client_and_of_the_server() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("#### Every field of a chat completions request", 1)[1].split("\n###", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    listed = {name for cell in rows for name in re.findall(r"`([a-z_]+)`", cell)}
    client_fields = set(inspect.signature(AsyncCompletions.create).parameters) - {
        "self", "extra_headers", "extra_query", "extra_body", "timeout",
    }
    assert client_fields <= listed, client_fields - listed
    server_fields = {*server_api._REFUSED, *server_api._REFUSED_UNLESS_NEUTRAL, "ignore_eos", "min_tokens"}
    assert server_fields <= listed, server_fields - listed


# --- models --------------------------------------------------------------------------------------


async def test_a_model_is_retrieved_by_id_and_an_unknown_id_is_404(
    client: openai.AsyncOpenAI, tiny_qwen25_dir: Path
) -> None:
    model = await client.models.retrieve(tiny_qwen25_dir.name)
    assert model.id == tiny_qwen25_dir.name and model.object == "model"
    advertised = (model.model_extra or {})["vlmbot"]
    assert advertised["arch"] == "qwen2_5_vl" and advertised["max_tokens"] == CAP
    listed = [m async for m in client.models.list()]
    assert (listed[0].model_extra or {})["vlmbot"]["max_tokens"] == CAP
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("no-such-model")
    assert missing.value.status_code == 404 and missing.value.param == "model"
    assert isinstance(missing.value.body, dict) and missing.value.body["code"] == "model_not_found"


# --- the bot's remote engine and the cap --------------------------------------------------------


async def test_the_remote_engine_asks_for_no_more_than_the_server_gives(server: RunningServer) -> None:
    async with started_remote(server.url) as remote:
        request = GenerationRequest("r1", "s1", TURNS, GenerationLimits(max_new_tokens=CAP * 10, timeout_s=60))
        events = [event async for event in remote.generate(request)]
    stats = events[-1]
    assert type(stats).__name__ == "GenerationStats"
    assert stats.finish_reason in ("stop", "length") and 1 <= stats.output_tokens <= CAP  # type: ignore[union-attr]


async def test_the_remote_engine_passes_stop_and_vllm_fields_on(server: RunningServer) -> None:
    async def text_of(rid: str, **limits: Any) -> str:
        request = GenerationRequest(rid, rid, TURNS, GenerationLimits(max_new_tokens=CAP, timeout_s=60, **limits))
        return "".join([event.text async for event in remote.generate(request) if isinstance(event, TextPiece)])

    async with started_remote(server.url) as remote:
        full = await text_of("full", ignore_eos=True)
        stop = full[len(full) // 2 : len(full) // 2 + 2]
        cut = await text_of("cut", ignore_eos=True, stop=(stop,))
    assert len(full) > 4 and cut == full[: full.find(stop)]


# --- a neighbour in the batch -------------------------------------------------------------------


async def test_a_request_with_stop_seed_and_penalties_leaves_its_neighbour_unchanged(engine: LocalEngine) -> None:
    plain = GenerationRequest("plain", "s-plain", TURNS, GenerationLimits(max_new_tokens=12, timeout_s=60))
    engine.generate_hook = Recorder()
    alone_text, _ = await answer(engine, plain)
    fancy = GenerationRequest(
        "fancy", "s-fancy", TURNS,
        GenerationLimits(
            max_new_tokens=12, timeout_s=60, temperature=1.0, seed=99, stop=("e",),
            presence_penalty=1.5, frequency_penalty=-1.0, min_tokens=3,
        ),
    )
    hook = Recorder(delay=0.01)
    engine.generate_hook = hook
    plain2 = GenerationRequest("plain2", "s-plain2", TURNS, plain.limits)
    (text, stats), (fancy_text, _) = await asyncio.gather(answer(engine, plain2), answer(engine, fancy))
    assert max(hook.batch_sizes) == 2  # they decoded side by side
    assert text == alone_text and stats.output_tokens == 12
    assert "e" not in fancy_text
