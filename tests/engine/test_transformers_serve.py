"""The bot against a model server this project did not write: `transformers serve` on the tiny checkpoint.

Its streams end right after the chunk carrying `finish_reason` and `usage`, with no `data: [DONE]`;
the remote engine must take that as a complete answer (issue 13).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.messages import Answer, Text
from tests.conftest import picture_bytes
from tests.engine.test_remote_service import ask, free_port


@pytest.fixture(scope="module")
def transformers_serve(tiny_qwen25_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("transformers-serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cli = Path(sys.executable).with_name("transformers")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(cli), "serve", str(tiny_qwen25_dir), "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, f"transformers serve exited: {log_path.read_text()[-2000:]}"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"transformers serve did not start: {log_path.read_text()[-2000:]}"
                time.sleep(0.3)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


async def test_picture_conversation_through_transformers_serve(service_factory, transformers_serve: str) -> None:
    async with service_factory(engine_url=transformers_serve, max_new_tokens=5) as service:
        acknowledged = await ask(service, "", picture_bytes(color=(220, 0, 0)))
        assert isinstance(acknowledged[-1], Text) and acknowledged[-1].kind == "info"
        first = await ask(service, "What colour is it?")
        assert isinstance(first[-1], Answer), first[-1]
        follow_up = await ask(service, "And the shape?", picture_bytes(size=(64, 96), color=(0, 0, 220), fmt="JPEG"))
        assert isinstance(follow_up[-1], Answer), follow_up[-1]
        session = await service.store.active_session("telegram", "chat:1")
        turns = await service.store.turns(session.id)
        # Before the fix every answer was streamed, then reported lost and marked failed.
        assert [t.status for t in turns] == ["attached", "done", "done"]
        assert turns[1].output_tokens == 5 and turns[2].output_tokens == 5
