"""Benchmark 6: serving over HTTP, `vlmbot engine serve` side by side with `transformers serve`.

    .venv/bin/python -m bench.serving [--model DIR] [--guidellm PATH] [--requests 8] [--conversations 4] [--turns 5]

Both servers run on the same checkpoint (without --model, the bench size of `vlmbot model tiny`) and
machine, each as its own process with one thread (OMP_NUM_THREADS=1), one after the other. That
checkpoint never ends an answer early, so every answer is exactly the length asked on both servers
without `ignore_eos` (which `transformers serve` refuses with a 422). Against each server:

1. Single requests, with guidellm when it is installed (it pins its own click, datasets and torch,
   so it lives in its own venv: `python3 -m venv ~/.cache/vlmbot-bench/guidellm-venv &&
   ~/.cache/vlmbot-bench/guidellm-venv/bin/pip install guidellm`; found there or on PATH, or give
   --guidellm), else with the openai client: synthetic text prompts of --prompt-tokens, --answer-tokens
   each, one at a time (guidellm's synchronous profile), then --concurrency at a time.
2. Multi-turn picture conversations with the openai client, as the bot sends them: --conversations
   at once, each --turns turns, a different 640x480 JPEG in each conversation's turn 1, every turn
   re-sending the whole history with `user` set to the conversation.
3. New pictures (issue 14): --picture-requests requests, --picture-users at a time, each with a
   picture no request sent before (a distinct 1024x768 JPEG); then --single-pictures requests one at
   a time, each with a new picture ("one user, one new picture").

--workloads picks some of them (single, conversations, pictures, picture).

For each: requests/s and output tokens/s over the wall time, time to first token p50 and p95, and
for the conversations the turn-N/turn-1 ratio of the median TTFT; then vlmbot / transformers serve.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from bench.common import (
    CACHE_DIR,
    machine,
    model_parser,
    photo_jpeg,
    resolve_model,
    table,
)

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("vlmbot", "transformers")
TITLES = {"vlmbot": "vlmbot engine serve", "transformers": "transformers serve"}
QUESTIONS = [
    "What does this error dialog say, and what should I do?",
    "Where is the serial number printed?",
    "Which button should I press next?",
    "Read the text at the bottom left.",
    "Is anything in the picture broken?",
    "Summarise everything in two sentences.",
]
WORDS = ["printer", "toner", "invoice", "dialog", "network", "update", "screen", "cable", "server", "button", "label", "error", "driver"]


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it."""

    ttft_s: float
    output_tokens: int
    text: str


@dataclass(frozen=True)
class Figures:
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    turn_ratio: float | None = None  # median TTFT of the last turn / of turn 1
    tool: str = "openai client"


# --- the servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(kind: str, model: Path, device: str, logs: Path, settings: Sequence[str] = ()) -> Iterator[str]:
    """Start one server process with one thread; yields its base URL once /health answers.
    `settings` (KEY=VALUE) go to vlmbot's environment."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLMBOT_")}
    if kind == "vlmbot":
        env.update(setting.split("=", 1) for setting in settings)
    env.update(
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    bin_dir = Path(sys.executable).parent
    if kind == "vlmbot":
        env.update(VLMBOT_MODEL=str(model), VLMBOT_DATA_DIR=str(logs / "vlmbot-data"), VLMBOT_DEVICE=device)
        argv = [str(bin_dir / "vlmbot"), "engine", "serve", "--port", str(port)]
    else:
        argv = [str(bin_dir / "transformers"), "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
                "--device", "cpu" if device == "auto" else device]
    log_path = logs / f"{kind}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=logs)
        try:
            deadline = time.monotonic() + 300
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{kind} exited: {log_path.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


# --- the openai client load -----------------------------------------------------------------------


async def one_request(
    client: openai.AsyncOpenAI, model: str, messages: list[dict[str, Any]], tokens: int, user: str | None = None
) -> Sample:
    extra: dict[str, Any] = {"user": user} if user else {}
    started = time.perf_counter()
    first: float | None = None
    text: list[str] = []
    usage = None
    stream = await client.chat.completions.create(  # type: ignore[call-overload]  # plain dicts as messages
        model=model, messages=messages, max_tokens=tokens, temperature=0, stream=True,
        stream_options={"include_usage": True}, **extra,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first if first is not None else time.perf_counter()
            text.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    if first is None:
        raise RuntimeError(f"{model}: an answer without text")
    return Sample(first - started, usage.completion_tokens if usage else len(text), "".join(text))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, as load generators report it."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def figures(samples: Sequence[Sample], wall_s: float, turn_ratio: float | None = None) -> Figures:
    ttfts = [s.ttft_s for s in samples]
    return Figures(
        requests_per_s=len(samples) / wall_s,
        output_tokens_per_s=sum(s.output_tokens for s in samples) / wall_s,
        ttft_p50_s=statistics.median(ttfts),
        ttft_p95_s=percentile(ttfts, 95),
        turn_ratio=turn_ratio,
    )


def text_prompt(index: int, words: int) -> list[dict[str, Any]]:
    body = " ".join(WORDS[(index * 7 + i * 3) % len(WORDS)] for i in range(words))
    return [{"role": "user", "content": f"Request {index}: {body}. What is wrong?"}]


async def single_requests(client: openai.AsyncOpenAI, model: str, args: argparse.Namespace, concurrency: int) -> Figures:
    gate = asyncio.Semaphore(concurrency)

    async def run(index: int) -> Sample:
        async with gate:
            return await one_request(client, model, text_prompt(index, args.prompt_tokens), args.answer_tokens)

    started = time.perf_counter()
    samples = await asyncio.gather(*(run(i) for i in range(args.requests)))
    return figures(samples, time.perf_counter() - started)


def picture_uri(seed: int) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(photo_jpeg((640, 480), seed=seed, noise=0.05)).decode()


def new_picture_prompt(seed: int, size: tuple[int, int]) -> list[dict[str, Any]]:
    data = photo_jpeg(size, seed=seed, noise=0.05)
    return [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(data).decode()}},
        {"type": "text", "text": QUESTIONS[seed % len(QUESTIONS)]},
    ]}]


async def new_pictures(client: openai.AsyncOpenAI, model: str, args: argparse.Namespace, count: int, users: int,
                       seed: int) -> Figures:
    """`count` requests, `users` at a time, each with a picture never sent before (each user its own session)."""
    gate = asyncio.Semaphore(users)
    prompts = [new_picture_prompt(seed + i, (args.picture_width, args.picture_height)) for i in range(count)]

    async def run(index: int) -> Sample:
        async with gate:
            return await one_request(client, model, prompts[index], args.answer_tokens, user=f"bench-picture-{seed + index}")

    started = time.perf_counter()
    samples = await asyncio.gather(*(run(i) for i in range(count)))
    return figures(samples, time.perf_counter() - started)


async def conversations(client: openai.AsyncOpenAI, model: str, args: argparse.Namespace) -> Figures:
    """Conversations at once, each re-sending its whole history every turn, as the bot does."""

    async def conversation(number: int) -> list[Sample]:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a helpdesk assistant."},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": picture_uri(100 + number)}},
                {"type": "text", "text": QUESTIONS[0]},
            ]},
        ]
        samples = []
        for turn in range(args.turns):
            sample = await one_request(client, model, messages, args.answer_tokens, user=f"bench-conversation-{number}")
            samples.append(sample)
            messages.append({"role": "assistant", "content": sample.text})
            messages.append({"role": "user", "content": QUESTIONS[(turn + 1) % len(QUESTIONS)]})
        return samples

    started = time.perf_counter()
    runs = await asyncio.gather(*(conversation(n) for n in range(args.conversations)))
    wall = time.perf_counter() - started
    first = statistics.median(run[0].ttft_s for run in runs)
    last = statistics.median(run[-1].ttft_s for run in runs)
    return figures([s for run in runs for s in run], wall, turn_ratio=last / first)


# --- guidellm -------------------------------------------------------------------------------------


def find_guidellm(given: str | None) -> Path | None:
    for candidate in (given, shutil.which("guidellm"), CACHE_DIR / "guidellm-venv" / "bin" / "guidellm"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def guidellm_run(tool: Path, url: str, model_id: str, checkpoint: Path, args: argparse.Namespace,
                 concurrency: int, out: Path) -> Figures:
    """guidellm's synchronous (one at a time) or concurrent profile; figures from its JSON report.

    The answer length goes in `max_tokens` of the backend, not in the data: with `output_tokens`
    guidellm also sends `ignore_eos`, which `transformers serve` refuses (HTTP 422)."""
    profile = "kind=synchronous" if concurrency == 1 else f"kind=concurrent,streams={concurrency}"
    argv = [
        str(tool), "run",
        "--backend", f"kind=openai_http,target={url.removesuffix('/v1')},model={model_id},max_tokens={args.answer_tokens}",
        "--profile", profile,
        "--data", f"kind=synthetic_text,prompt_tokens={args.prompt_tokens}",
        "--tokenizer", f"kind=hf_auto,model={checkpoint}",
        "--constraint", f"kind=max_requests,count={args.requests}",
        "--output", f"kind=json,path={out}",
        "--disable-console",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"guidellm failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    [benchmark] = json.loads(out.read_text())["benchmarks"]
    metrics = benchmark["metrics"]
    totals = metrics["request_totals"]
    if totals["errored"] or not totals["successful"]:  # (the concurrent profile may stop one short of the count)
        raise RuntimeError(f"guidellm: {totals} against {url}")
    ttft = metrics["time_to_first_token_ms"]["successful"]["percentiles"]
    wall = benchmark["duration"]
    return Figures(
        requests_per_s=totals["successful"] / wall,
        output_tokens_per_s=metrics["output_token_count"]["successful"]["total_sum"] / wall,
        ttft_p50_s=ttft["p50"] / 1000,
        ttft_p95_s=ttft["p95"] / 1000,
        tool=f"guidellm {guidellm_version(tool)}",
    )


def guidellm_version(tool: Path) -> str:
    done = subprocess.run([str(tool), "--version"], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip().split()[-1] if done.stdout.strip() else "?"


# --- one server, every workload --------------------------------------------------------------------


async def measure(url: str, checkpoint: Path, args: argparse.Namespace, tool: Path | None, work: Path) -> dict[str, Figures]:
    async with openai.AsyncOpenAI(base_url=url, api_key="unused", timeout=1800, max_retries=0) as client:
        model = (await client.models.list()).data[0].id
        # Lazy initialisation (first forward, first picture) is not billed to the first workload.
        await one_request(client, model, text_prompt(999, 8), 4)
        await one_request(client, model, [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": picture_uri(999)}}, {"type": "text", "text": "Hi"}]}], 4)
        results: dict[str, Figures] = {}
        chosen = set(args.workloads.split(","))
        for concurrency in (1, args.concurrency) if "single" in chosen else ():
            name = f"single requests, {concurrency} at a time"
            if tool is not None:
                out = work / f"guidellm-{concurrency}-{url.rsplit(':', 1)[-1].split('/')[0]}.json"
                results[name] = await asyncio.to_thread(guidellm_run, tool, url, model, checkpoint, args, concurrency, out)
            else:
                results[name] = await single_requests(client, model, args, concurrency)
        if "conversations" in chosen:
            results[f"{args.conversations} picture conversations x {args.turns} turns"] = await conversations(client, model, args)
        size = f"{args.picture_width}x{args.picture_height}"
        if "pictures" in chosen:
            name = f"{args.picture_requests} requests each with a new {size} picture, {args.picture_users} at a time"
            results[name] = await new_pictures(client, model, args, args.picture_requests, args.picture_users, 1000)
        if "picture" in chosen:
            name = f"one user, one new {size} picture at a time ({args.single_pictures} requests)"
            results[name] = await new_pictures(client, model, args, args.single_pictures, 1, 2000)
    return results


def report(results: dict[str, dict[str, Figures]]) -> str:
    out = []
    a, b = SERVERS
    for workload in results[a]:
        x, y = results[a][workload], results[b][workload]
        rows: list[list[Any]] = [
            ["requests/s", x.requests_per_s, y.requests_per_s, x.requests_per_s / y.requests_per_s],
            ["output tokens/s", x.output_tokens_per_s, y.output_tokens_per_s, x.output_tokens_per_s / y.output_tokens_per_s],
            ["TTFT p50 s", x.ttft_p50_s, y.ttft_p50_s, x.ttft_p50_s / y.ttft_p50_s],
            ["TTFT p95 s", x.ttft_p95_s, y.ttft_p95_s, x.ttft_p95_s / y.ttft_p95_s],
        ]
        if x.turn_ratio is not None and y.turn_ratio is not None:
            rows.append(["TTFT last turn / turn 1", x.turn_ratio, y.turn_ratio, x.turn_ratio / y.turn_ratio])
        out.append(f"{workload} ({x.tool}):\n\n" + table(["", TITLES[a], TITLES[b], "vlmbot / transformers"], rows))
    return "\n\n".join(out)


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--guidellm", help="the guidellm command (default: on PATH, or in the bench cache's venv)")
    parser.add_argument("--no-guidellm", action="store_true", help="single requests from the openai client")
    parser.add_argument("--requests", type=int, default=8, help="single requests per profile")
    parser.add_argument("--concurrency", type=int, default=4, help="the second profile of single requests")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--picture-requests", type=int, default=16)
    parser.add_argument("--picture-users", type=int, default=8)
    parser.add_argument("--single-pictures", type=int, default=4)
    parser.add_argument("--picture-width", type=int, default=1024)
    parser.add_argument("--picture-height", type=int, default=768)
    parser.add_argument("--workloads", default="single,conversations,pictures,picture",
                        help="comma-separated: single, conversations, pictures, picture")
    parser.add_argument("--vlmbot-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for vlmbot engine serve, e.g. VLMBOT_READ_IN_PIECES=false (repeatable)")
    parser.add_argument("--first", choices=SERVERS, default=SERVERS[0], help="the server measured first")
    args = parser.parse_args()
    checkpoint = resolve_model(args)
    tool = None if args.no_guidellm or "single" not in args.workloads.split(",") else find_guidellm(args.guidellm)
    print(machine().replace(", torch threads", ", this process's torch threads") + "; servers: OMP_NUM_THREADS=1")
    if args.vlmbot_setting:
        print("vlmbot settings: " + " ".join(args.vlmbot_setting))
    print(f"checkpoint {checkpoint}; single requests: {args.requests} x {args.prompt_tokens} prompt tokens (about), "
          f"{args.answer_tokens}-token answers; guidellm: {tool or 'not found, openai client instead'}")
    started = time.perf_counter()
    results: dict[str, dict[str, Figures]] = {}
    with tempfile.TemporaryDirectory(prefix="vlmbot-serving-") as tmp:
        work = Path(tmp)
        for kind in sorted(SERVERS, key=lambda name: name != args.first):
            with server(kind, checkpoint, args.device, work, args.vlmbot_setting) as url:
                print(f"measuring {TITLES[kind]} ...", flush=True)
                results[kind] = asyncio.run(measure(url, checkpoint, args, tool, work))
    print()
    print(report(results))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
