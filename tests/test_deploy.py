"""The deployment files (Docker cannot run here): docker-compose.yml, Dockerfile, .env.example and
the README refer to files, settings and `vlmbot` commands that exist, and every container
command of the project's image really runs: the engine server and a bot against it, with their
health checks, as subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import _parser
from bot.config import Settings

ROOT = Path(__file__).resolve().parents[1]
VLMBOT = str(Path(sys.executable).with_name("vlmbot"))
IMAGE = "vlmbot:latest"
# The container commands the suite runs for real (below, and `db upgrade` in tests/bot/test_postgres.py).
EXERCISED = {("run",), ("health",), ("engine", "serve"), ("engine", "health"), ("db", "upgrade")}
DASHBOARD = ROOT / "deploy" / "grafana" / "vlmbot.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def setting_names() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(getattr(alias, "choices", None) or [alias])
    return {n for n in names if isinstance(n, str)}


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M))


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def entrypoint() -> list[str]:
    import json

    line = re.search(r"^ENTRYPOINT (.+)$", dockerfile(), re.M)
    assert line is not None
    return json.loads(line.group(1))


def subcommand(argv: list[str]) -> tuple[str, ...]:
    """Parse `vlmbot ARGS` with the real CLI parser; the (command, action) it selects."""
    assert argv[0] == "vlmbot", argv
    args = _parser().parse_args(argv[1:])
    return tuple(x for x in (args.command, getattr(args, "action", None)) if x)


def our_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image") == IMAGE}


# --- static checks -------------------------------------------------------------------------------


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"engine", "bot", "vllm", "postgres"}
    assert "profiles" not in services["engine"] and "profiles" not in services["bot"]
    assert services["vllm"]["profiles"] == ["vllm"] and services["postgres"]["profiles"] == ["postgres"]
    for name in ("engine", "vllm"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
        model_mount = [v for v in services[name]["volumes"] if ":/models" in v]
        assert model_mount and all(v.endswith(":ro") for v in model_mount)
    bot = services["bot"]
    assert bot["environment"]["VLMBOT_ENGINE_URL"].endswith("http://engine:8000/v1}")
    assert bot["environment"]["VLMBOT_CONSOLE"] == "off"
    assert any(v.endswith(":/data") for v in bot["volumes"])
    assert bot["depends_on"]["engine"]["condition"] == "service_healthy"
    assert bot["healthcheck"]["test"] == ["CMD", "vlmbot", "health"]  # the bot's own /health
    assert bot["environment"]["VLMBOT_METRICS_LISTEN"].startswith("0.0.0.0:")  # scraped on the compose network
    assert not any(":9464" in str(port) for port in bot.get("ports", []))  # ... and not published
    for name, service in services.items():
        assert "healthcheck" in service, name
    assert set(compose["volumes"]) >= {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(("$", ".", "/"))}


def test_the_image_data_dir_is_private() -> None:
    # A new volume copies the image's /data: 0700, so vlmbot does not warn about it at every start.
    assert re.search(r"^\s*&& mkdir -p -m 700 /data \\$", dockerfile(), re.M)
    assert "chown vlmbot:vlmbot /data" in dockerfile()


def test_secrets_come_from_the_env_file(compose: dict[str, Any]) -> None:
    assert (ROOT / ".env.example").exists()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
    for name in ("engine", "bot", "postgres"):
        assert compose["services"][name]["env_file"] == ".env"
    secret = re.compile(r"TOKEN\b|TOKEN_|SECRET|PASSWORD|API_KEY")
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secret.search(key):
                assert str(value).startswith("${"), f"{name}: {key} must come from .env"
    assert not re.search(r"^(ENV|ARG) .*(TOKEN\b|SECRET|PASSWORD|API_KEY)", dockerfile(), re.M)
    assert all(not value for name, value in _env_pairs() if secret.search(name))  # the example holds no secret


def _env_pairs() -> list[tuple[str, str]]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return [tuple(line.split("=", 1)) for line in lines if re.match(r"^[A-Z][A-Z0-9_]*=", line)]  # type: ignore[misc]


def test_every_variable_exists() -> None:
    """Each `${VAR}` of the compose file is in .env.example; each VLMBOT_/TELEGRAM_/SLACK_ name anywhere is a setting."""
    compose_text = (ROOT / "docker-compose.yml").read_text()
    compose_vars = set(re.findall(r"\$\{([A-Z0-9_]+)", compose_text))
    assert compose_vars <= env_example_names(), compose_vars - env_example_names()
    settings = setting_names()
    texts = {
        "docker-compose.yml": compose_text,
        ".env.example": (ROOT / ".env.example").read_text(),
        "README.md": (ROOT / "README.md").read_text(),
        "Dockerfile": dockerfile(),
    }
    for name, text in texts.items():
        used = set(re.findall(r"\b((?:VLMBOT|TELEGRAM|SLACK)_[A-Z0-9_]+)", text))
        used -= {"VLMBOT_TEST_POSTGRES_URL"}  # the test suite's, see tests/bot/conftest.py
        assert used <= settings, f"{name} names unknown settings: {sorted(used - settings)}"


def test_every_setting_is_in_the_configuration_table() -> None:
    """README's configuration table lists each setting of bot/config.py once, and nothing else."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Configuration\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|", section, re.M)
    assert len(rows) == len(set(rows)) and set(rows) == setting_names()


def test_dockerfile_copies_files_that_exist(compose: dict[str, Any]) -> None:
    for service in our_services(compose).values():
        build = service.get("build")
        if build is not None:
            assert (ROOT / build / "Dockerfile").exists()
    for line in re.findall(r"^COPY (.+)$", dockerfile(), re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    assert entrypoint() == ["vlmbot"]


def test_container_commands_are_exercised_vlmbot_subcommands(compose: dict[str, Any]) -> None:
    commands = []
    for name, service in our_services(compose).items():
        commands.append(entrypoint() + service["command"])
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        commands.append(test[1:])
    cmd = re.search(r"^CMD (.+)$", dockerfile(), re.M)
    assert cmd is not None
    commands.append(entrypoint() + yaml.safe_load(cmd.group(1)))
    assert {"engine", "bot"} <= set(our_services(compose))
    for argv in commands:
        assert subcommand(argv) in EXERCISED, argv


def test_docs_commands_exist(compose: dict[str, Any]) -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S)
    assert blocks
    seen = set()
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            words = shlex.split(command)
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                assert words[0].split("=")[0] in setting_names() | {"SGLANG_IMAGE_MAX_PIXELS"}
                words.pop(0)
            if not words:
                continue
            if words[0] == "vlmbot":
                seen.add(subcommand(words))
            elif words[:2] == ["docker", "compose"]:
                profiles = [words[i + 1] for i, w in enumerate(words) if w == "--profile"]
                assert set(profiles) <= {"vllm", "postgres"}
                if "run" in words:  # docker compose run --rm SERVICE ARGS: ARGS go to the entrypoint
                    rest = words[words.index("run") + 1:]
                    rest = [w for w in rest if not w.startswith("--")]
                    assert rest[0] in compose["services"]
                    seen.add(subcommand(entrypoint() + rest[1:]))
                for word in words[2:]:
                    if word in ("vllm", "bot", "engine", "postgres"):
                        assert word in compose["services"]
    assert seen <= EXERCISED and {("engine", "serve"), ("engine", "health"), ("run",), ("db", "upgrade")} <= seen


# --- the container commands, for real ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLMBOT_", "TELEGRAM_", "SLACK_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLMBOT_LOG_LEVEL="INFO", **extra)
    return env


def _health(url: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [VLMBOT, "engine", "health"] + (["--url", url] if url else [])
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def _wait_healthy(url: str, env: dict[str, str], cwd: Path, process: subprocess.Popen[str], within: float) -> None:
    begin = time.monotonic()
    while time.monotonic() - begin < within:
        assert process.poll() is None, process.communicate()[1]
        if _health(url, env, cwd).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"{url} did not become healthy within {within} s")


def _wait_for(argv: list[str], code: int, env: dict[str, str], cwd: Path, process: subprocess.Popen[str], within: float) -> None:
    """Run a health check command until it exits with `code`."""
    assert argv[0] == "vlmbot"
    begin = time.monotonic()
    while True:
        assert process.poll() is None, process.communicate()[1]
        checked = subprocess.run([VLMBOT, *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
        if checked.returncode == code:
            return
        assert time.monotonic() - begin < within, f"{argv} still exits {checked.returncode}: {checked.stdout}"
        time.sleep(0.5)


def _scrape(url: str) -> set[str]:
    """The sample names of a /metrics page, as Prometheus parses it."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def _dashboard_metrics() -> list[tuple[str, str]]:
    import json

    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            names = re.findall(r"\b(vlmbot_[a-z0-9_]+)", target["expr"])
            assert names, target["expr"]
            found += [(panel["title"], name) for name in names]
    return found


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return process.returncode, err


def test_engine_and_bot_containers_run(compose: dict[str, Any], tmp_path: Path, tiny_qwen25_dir: Path) -> None:
    """The compose commands with 127.0.0.1 and free ports for 0.0.0.0:8000: engine, its health check, a bot on it."""
    services = compose["services"]
    port = _free_port()
    engine_argv = [VLMBOT, *services["engine"]["command"]]
    engine_argv[engine_argv.index("--host") + 1] = "127.0.0.1"
    engine_argv[engine_argv.index("--port") + 1] = str(port)
    engine_env = _env(tmp_path, VLMBOT_MODEL=str(tiny_qwen25_dir), VLMBOT_DATA_DIR=str(tmp_path / "engine-data"),
                      VLMBOT_SERVER_API_KEYS="k1")
    engine = subprocess.Popen(engine_argv, env=engine_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bot = None
    stopped: tuple[int, str] | None = None
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, engine_env, tmp_path, engine, within=120)
        bot_env = _env(
            tmp_path,
            VLMBOT_ENGINE_URL=f"{url}/v1",
            VLMBOT_ENGINE_API_KEY="k1",
            VLMBOT_CONSOLE=services["bot"]["environment"]["VLMBOT_CONSOLE"],
            VLMBOT_DATA_DIR=str(tmp_path / "bot-data"),
            VLMBOT_WEB_LISTEN=f"127.0.0.1:{_free_port()}",
            VLMBOT_METRICS_LISTEN=f"127.0.0.1:{_free_port()}",
        )
        bot = subprocess.Popen([VLMBOT, *services["bot"]["command"]], env=bot_env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        bot_check = services["bot"]["healthcheck"]["test"][1:]  # its own /health: adapters run, engine answers
        _wait_for(bot_check, 0, bot_env, tmp_path, bot, within=60)
        scraped = _scrape(f"http://{bot_env['VLMBOT_METRICS_LISTEN']}/metrics")
        for panel, metric in _dashboard_metrics():
            assert metric in scraped, f"dashboard panel {panel!r} queries {metric}, which the bot does not export"
        stopped = _stop(engine)
        _wait_for(bot_check, 1, bot_env, tmp_path, bot, within=30)  # and it notices the engine is gone
    finally:
        if bot is not None:
            bot_code, bot_err = _stop(bot)
            assert bot_code == 0, bot_err
        if stopped is None:
            stopped = _stop(engine)
    code, err = stopped
    assert code == 0, err
    assert "listening on http://127.0.0.1" in err
    assert _health(url, engine_env, tmp_path).returncode == 1  # and the health check notices it is gone
