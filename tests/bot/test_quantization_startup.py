"""VLMBOT_QUANTIZATION, and a checkpoint that cannot load here, end start-up with one clear line."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import Settings, load_settings
from tests.bot.test_cli import VLMBOT, clean_env
from tests.conftest import picture_bytes


def test_quantization_is_read_and_defaults_to_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLMBOT_QUANTIZATION", raising=False)
    assert load_settings().quantization == "none"
    monkeypatch.setenv("VLMBOT_QUANTIZATION", " NF4 ")
    assert load_settings().quantization == "nf4"
    monkeypatch.setenv("VLMBOT_QUANTIZATION", "int4")
    with pytest.raises(ValidationError, match="'none', 'int8' or 'nf4'"):
        Settings()


def test_an_invalid_quantization_ends_start_up_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [VLMBOT, "run"], check=False, input="", capture_output=True, text=True, cwd=tmp_path,
        env=clean_env(VLMBOT_QUANTIZATION="int4", VLMBOT_DATA_DIR=str(tmp_path / "data")), timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "VLMBOT_QUANTIZATION" in line or "quantization" in line]
    assert lines == ["vlmbot: VLMBOT_QUANTIZATION='int4': Input should be 'none', 'int8' or 'nf4'"]


def test_an_awq_checkpoint_without_its_package_ends_start_up_in_one_line(tmp_path: Path, tiny_qwen25_dir: Path) -> None:
    if importlib.util.find_spec("gptqmodel") is not None:
        pytest.skip("gptqmodel is installed here")
    model = tmp_path / "awq-model"
    shutil.copytree(tiny_qwen25_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}
    (model / "config.json").write_text(json.dumps(config))
    for command in (["run"], ["engine", "serve", "--port", "0"]):
        result = subprocess.run(
            [VLMBOT, *command], check=False, input="", capture_output=True, text=True, cwd=tmp_path,
            env=clean_env(VLMBOT_MODEL=str(model), VLMBOT_DATA_DIR=str(tmp_path / "data")), timeout=300,
        )
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
        said = [line for line in result.stderr.splitlines() if "AWQ" in line]
        assert len(said) == 1 and "needs gptqmodel" in said[0] and "pip install" in said[0], result.stderr


def test_memory_settings_are_read_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("VLMBOT_GPU_MEMORY_FRACTION", "VLMBOT_ADMISSION_BYTES", "VLMBOT_KV_CACHE_BYTES"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.gpu_memory_fraction, settings.admission_bytes, settings.kv_cache_bytes) == (0.9, None, None)
    monkeypatch.setenv("VLMBOT_ADMISSION_BYTES", "1000000")
    assert load_settings().admission_bytes == 1_000_000
    monkeypatch.setenv("VLMBOT_GPU_MEMORY_FRACTION", "1.5")
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        Settings()


def test_a_quantized_chat_answers_and_the_start_up_log_says_so(tmp_path: Path, tiny_qwen25_dir: Path) -> None:
    pytest.importorskip("bitsandbytes")
    (tmp_path / "a.png").write_bytes(picture_bytes())
    result = subprocess.run(
        [VLMBOT, "chat", "--thread", "q"], check=False, input="/image a.png\nWhat is this?\n/status\n",
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env=clean_env(
            VLMBOT_DATA_DIR=str(tmp_path / "data"), VLMBOT_MODEL=str(tiny_qwen25_dir),
            VLMBOT_MAX_NEW_TOKENS="8", VLMBOT_QUANTIZATION="nf4",
        ),
    )
    assert result.returncode == 0, result.stderr
    assert "bot> " in result.stdout and "quantization nf4 (bitsandbytes" in result.stdout  # /status
    ready = [line for line in result.stderr.splitlines() if "engine ready" in line]
    assert len(ready) == 1 and "quantization nf4 (bitsandbytes; vision tower and lm_head unquantized)" in ready[0]
    assert "inputs will be cast" not in result.stderr


def test_a_checkpoint_saved_in_nf4_loads_as_it_is(tmp_path: Path, tiny_qwen25_dir: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from engine.loader import load_model

    saved = tmp_path / "nf4-checkpoint"
    quantized = load_model(tiny_qwen25_dir, device_setting="cpu", quantization="nf4")
    quantized.model.save_pretrained(saved)
    quantized.processor.save_pretrained(saved)
    assert json.loads((saved / "config.json").read_text())["quantization_config"]["quant_method"] == "bitsandbytes"
    again = load_model(saved, device_setting="cpu")
    assert again.quantization.prequantized and again.quantization.description == "bitsandbytes (pre-quantized checkpoint)"
    assert "Linear4bit" in {type(m).__name__ for m in again.model.modules()}
