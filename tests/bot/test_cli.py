"""The `vlmbot` command as an operator runs it: scripted console chat, demo model, a killed process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.adapters.test_console import Chat
from tests.bot.test_feedback_report import make_feedback
from tests.conftest import picture_bytes

VLMBOT = str(Path(sys.executable).with_name("vlmbot"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLMBOT_", "TELEGRAM_", "SLACK_"))}
    env["VLMBOT_METRICS_LISTEN"] = "127.0.0.1:0"  # the default port may be taken by another bot on this machine
    env.update(extra)
    return env


def test_scripted_chat_prints_the_answer(tmp_path: Path, tiny_qwen25_dir: Path) -> None:
    (tmp_path / "a.png").write_bytes(picture_bytes())
    result = subprocess.run(
        [VLMBOT, "chat", "--thread", "scripted"],
        input="/image a.png\nWhat is this?\n/export\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(VLMBOT_DATA_DIR=str(tmp_path / "data"), VLMBOT_MODEL=str(tiny_qwen25_dir), VLMBOT_MAX_NEW_TOKENS="8"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "bot> " in result.stdout
    assert "Saved to" in result.stdout
    assert "random" not in result.stdout  # a real model directory: no demo warning
    assert "attention sdpa" in result.stderr and "adapters running: console" in result.stderr


def test_run_without_model_uses_demo_and_says_so_once(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(picture_bytes())
    result = subprocess.run(
        [VLMBOT, "run"],
        input="/image a.png\nWhat colour is this?\nAnd now?\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(
            VLMBOT_DATA_DIR=str(tmp_path / "data"), VLMBOT_MAX_NEW_TOKENS="8", VLMBOT_WEB_LISTEN="127.0.0.1:0"
        ),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("answers are random") == 1
    assert result.stdout.count("bot> ") == 2
    assert (tmp_path / "data" / "tiny-model" / "config.json").exists()
    assert (tmp_path / "data" / "vlmbot.db").exists()
    assert "adapters running: console, web" in result.stderr


def test_unsafe_configuration_is_one_line_not_a_traceback(tmp_path: Path, tiny_qwen25_dir: Path) -> None:
    result = subprocess.run(
        [VLMBOT, "run"],
        input="",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(
            VLMBOT_DATA_DIR=str(tmp_path / "data"),
            VLMBOT_MODEL=str(tiny_qwen25_dir),
            TELEGRAM_BOT_TOKEN="123:abc",  # no allowlist and no TELEGRAM_ALLOW_EVERYONE
        ),
        timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "TELEGRAM_ALLOW_EVERYONE" in result.stderr


KILLED_WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from bot.messages import IncomingMessage
    from bot.service import running_service
    from engine.hooks import DecodeHook
    from tests.conftest import make_settings

    class Stuck(DecodeHook):
        def on_step(self, request_ids):
            print("GENERATING", flush=True)
            time.sleep(600)

    async def main():
        settings = make_settings(Path(sys.argv[1]), Path(sys.argv[2]), max_new_tokens=400)
        async with running_service(settings) as service:
            service.engine.generate_hook = Stuck()
            async for _ in service.conversations.handle(IncomingMessage("console", "main", "u", "Will I be lost?")):
                pass

    asyncio.run(main())
    """
)


async def test_killed_process_leaves_interrupted_turn_that_retry_completes(
    tmp_path: Path, tiny_qwen25_dir: Path, service_factory
) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, str(data), str(tiny_qwen25_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
        env=clean_env(),
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "GENERATING", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    async with service_factory() as service:
        chat = Chat(service, tmp_path)
        session = await service.store.active_session("console", "main")
        assert [t.status for t in await service.store.turns(session.id)] == ["interrupted"]
        out = await chat.send("/retry")
        assert "bot> " in out
        turns = await service.store.turns(session.id)
        assert [(t.user_text, t.status) for t in turns] == [("Will I be lost?", "interrupted"), ("Will I be lost?", "done")]


def test_model_tiny_command_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoProcessor

    from bot.cli import main

    assert main(["model", "tiny", "--arch", "qwen3_vl", "--out", str(tmp_path / "m")]) == 0
    config = AutoConfig.from_pretrained(tmp_path / "m")
    processor = AutoProcessor.from_pretrained(tmp_path / "m")
    assert config.model_type == "qwen3_vl"
    assert processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert "<|im_start|>assistant" in processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], add_generation_prompt=True, tokenize=False
    )


def test_a_malformed_setting_is_named_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [VLMBOT, "run"], input="", capture_output=True, text=True, cwd=tmp_path,
        env=clean_env(VLMBOT_BATCH_SIZE="eight", VLMBOT_DATA_DIR=str(tmp_path / "data")), timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "VLMBOT_BATCH_SIZE='eight'" in result.stderr and "integer" in result.stderr


# --- vlmbot feedback --------------------------------------------------------------------------


def vlmbot(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(VLMBOT_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run([VLMBOT, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


async def test_feedback_command_reports_votes_on_real_answers(tmp_path: Path, service_factory) -> None:
    async with service_factory() as service:
        turns = await make_feedback(service)
        answers = {name: (await service.store.get_turn(turn_id)).answer for name, turn_id in turns.items()}

    result = vlmbot(tmp_path, "feedback", "--since", "1h", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["up"], report["down"]) == (2, 2)
    assert report["platforms"] == {"slack": {"up": 0, "down": 1}, "telegram": {"up": 2, "down": 1}}
    follow_up, hostile = report["down_votes"]
    assert (follow_up["turn"], follow_up["platform"], follow_up["user"]) == (turns["follow_up"], "telegram", "7")
    assert follow_up["question"] == "And how do I fix it?" and follow_up["answer"] == answers["follow_up"]
    assert len(follow_up["image_hashes"]) == 1 and len(hostile["image_hashes"]) == 1
    assert hostile["question"] == "Read this \x1b]0;pwned\x07\x1b[2J please"
    assert result.stdout.isascii()  # the user's control characters arrive escaped

    text = vlmbot(tmp_path, "feedback")  # the last 7 days
    assert text.returncode == 0, text.stderr
    assert "2 up, 2 down" in text.stdout and "slack: 0 up, 1 down" in text.stdout
    assert follow_up["image_hashes"][0] in text.stdout and "\x1b" not in text.stdout

    future = vlmbot(tmp_path, "feedback", "--since", "2999-01-01", "--json")
    assert json.loads(future.stdout)["down_votes"] == []


def test_feedback_command_refuses_bad_input_and_missing_databases(tmp_path: Path) -> None:
    bad = vlmbot(tmp_path, "feedback", "--since", "yesterday")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "argument --since: 'yesterday' is neither a period" in bad.stderr

    missing = vlmbot(tmp_path, "feedback")
    assert missing.returncode == 1 and "there is no database at" in missing.stderr
    assert not (tmp_path / "data" / "vlmbot.db").exists()  # a report does not create one

    assert vlmbot(tmp_path, "db", "upgrade", "0003").returncode == 0
    old = vlmbot(tmp_path, "feedback")
    assert old.returncode == 1 and "run `vlmbot db upgrade`" in old.stderr and "Traceback" not in old.stderr
