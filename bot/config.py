"""Every setting of vlmbot, read from the environment (and an optional `.env` file) in one place.

Nothing else in the project reads `os.environ` for configuration: components receive the values
they need from a `Settings` instance. The README's configuration table mirrors this module.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.language import LanguageSetting
from engine.arch import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, ArchSetting
from engine.quantization import QuantizationSetting

__all__ = ["SECRET_SETTINGS", "Settings", "load_settings"]


def _env(name: str, default, description: str, **kw):
    return Field(
        default, validation_alias=AliasChoices(name), description=description, **kw
    )


IdList = Annotated[tuple[str, ...], NoDecode]

# Settings whose values never appear in a log (bot/logsafe.py); the database URL's password neither.
SECRET_SETTINGS = (
    "telegram_token",
    "telegram_webhook_secret",
    "slack_bot_token",
    "slack_app_token",
    "slack_signing_secret",
    "engine_api_key",
    "engine_api_keys",
    "web_token",
    "web_admin_token",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=False,
    )

    # --- storage ---------------------------------------------------------------------------
    data_dir: Path = _env(
        "VLMBOT_DATA_DIR",
        Path("data"),
        "Database, pictures and the demo model live here.",
    )
    database_url: str | None = _env(
        "VLMBOT_DATABASE_URL",
        None,
        "SQLAlchemy async URL; default sqlite+aiosqlite in the data dir.",
    )

    # --- model engine ----------------------------------------------------------------------
    model: Path | None = _env(
        "VLMBOT_MODEL",
        None,
        "Local Qwen2.5-VL / Qwen3-VL checkpoint directory; unset = tiny random demo model.",
    )
    device: str = _env("VLMBOT_DEVICE", "auto", "auto, cpu, cuda or cuda:N.")
    attention: Literal["auto", "flash_attention_2", "sdpa", "eager"] = _env(
        "VLMBOT_ATTENTION",
        "auto",
        "auto = flash_attention_2 on CUDA with flash-attn installed, else sdpa.",
    )
    quantization: QuantizationSetting = _env(
        "VLMBOT_QUANTIZATION",
        "none",
        "Weights quantized while loading with bitsandbytes (pip install 'vlmbot[quant]'): none, int8 or nf4; "
        "the vision tower and lm_head stay unquantized. A pre-quantized checkpoint (AWQ, GPTQ, FP8) loads as it is.",
    )
    max_pixels: int = _env(
        "VLMBOT_MAX_PIXELS",
        DEFAULT_MAX_PIXELS,
        "Pixel budget per picture after resizing (1280 visual tokens on Qwen2.5-VL).",
    )
    min_pixels: int = _env(
        "VLMBOT_MIN_PIXELS", DEFAULT_MIN_PIXELS, "Smallest picture size after resizing."
    )
    max_new_tokens: int = _env(
        "VLMBOT_MAX_NEW_TOKENS",
        1024,
        "Upper bound on the length of one answer in tokens.",
    )
    context_tokens: int = _env(
        "VLMBOT_CONTEXT_TOKENS",
        16384,
        "Most tokens a prompt may have as the model counts them (pictures and instructions included); "
        "older turns are left out beyond it. A remote engine's count is a safe over-estimate.",
        gt=0,
    )
    queue_size: int = _env("VLMBOT_QUEUE_SIZE", 32, "Requests waiting or running at once; more are refused as busy.")
    request_timeout_s: float = _env("VLMBOT_REQUEST_TIMEOUT", 300.0, "Seconds a request may take, waiting included.")
    batch_size: int = _env("VLMBOT_BATCH_SIZE", 8, "Requests decoded together (1 disables batching).")
    prefix_cache: bool = _env("VLMBOT_PREFIX_CACHE", True, "Reuse a session's KV cache across turns.")
    kv_cache_bytes: int | None = _env(
        "VLMBOT_KV_CACHE_BYTES",
        None,
        "Byte budget of the per-session KV store; unset = on CUDA half of what the weights leave of "
        "VLMBOT_GPU_MEMORY_FRACTION, on the CPU 4 GiB.",
        ge=0,
    )
    gpu_memory_fraction: float = _env(
        "VLMBOT_GPU_MEMORY_FRACTION",
        0.9,
        "Share of the GPU's memory the engine plans for: weights, the KV store and running requests.",
        gt=0,
        le=1,
    )
    admission_bytes: int | None = _env(
        "VLMBOT_ADMISSION_BYTES",
        None,
        "Byte budget of the running requests' estimated KV and activations; more wait in the queue. "
        "Unset = what VLMBOT_GPU_MEMORY_FRACTION leaves beside the weights and KV store; no limit on the CPU.",
        gt=0,
    )
    kv_idle_s: float = _env(
        "VLMBOT_KV_IDLE_S",
        1800.0,
        "Seconds a session's KV cache is kept unused before it is released.",
    )
    feature_cache_bytes: int = _env(
        "VLMBOT_FEATURE_CACHE_BYTES",
        1024**3,
        "Byte budget of the vision-feature cache.",
    )
    prefill_chunk_tokens: int = _env(
        "VLMBOT_PREFILL_CHUNK_TOKENS",
        2048,
        "Most prompt tokens read per turn of the engine's loop; while answers are running the engine "
        "reads fewer, sized by time so they keep streaming.",
        gt=0,
    )
    read_in_pieces: bool = _env(
        "VLMBOT_READ_IN_PIECES",
        True,
        "While answers stream, read a lone newcomer's pictures and prompt in pieces of under a decode "
        "step (smooth streams; the newcomer waits longer); off: in chunks of about four steps. Several "
        "newcomers are read whole, one after another, either way.",
    )
    prepare_workers: int = _env(
        "VLMBOT_PREPARE_WORKERS",
        2,
        "Threads decoding and resizing pictures and tokenizing prompts before a request is queued.",
        gt=0,
    )
    jpeg_draft: bool = _env(
        "VLMBOT_JPEG_DRAFT",
        True,
        "Decode large JPEGs at reduced scale before resizing.",
    )
    engine_url: str | None = _env(
        "VLMBOT_ENGINE_URL",
        None,
        "OpenAI-compatible server (this project's, vLLM, SGLang) instead of a local model.",
    )
    engine_api_key: str | None = _env(
        "VLMBOT_ENGINE_API_KEY", None, "Bearer key for VLMBOT_ENGINE_URL."
    )
    engine_model: str | None = _env(
        "VLMBOT_ENGINE_MODEL",
        None,
        "Model name to request from the remote server (default: its first model).",
    )
    engine_arch: ArchSetting = _env(
        "VLMBOT_ENGINE_ARCH",
        "auto",
        "Architecture of the remote model when its server does not say (this project's server does): "
        "qwen2_5_vl, qwen3_vl, or auto = judged by the model's name.",
    )
    engine_video_url: bool = _env(
        "VLMBOT_ENGINE_VIDEO_URL",
        False,
        "Send videos to the remote server as `video_url` parts (vLLM and `vlmbot engine serve` accept them); "
        "off: as sampled frames, one picture each.",
    )
    engine_api_keys: IdList = _env(
        "VLMBOT_SERVER_API_KEYS",
        (),
        "Keys `vlmbot engine serve` accepts (comma separated); empty = no auth.",
    )

    # --- the operator's instructions --------------------------------------------------------
    instructions_file: Path | None = _env(
        "VLMBOT_INSTRUCTIONS_FILE",
        None,
        "Text or Markdown added to the system prompt of every conversation.",
    )
    instructions_dir: Path | None = _env(
        "VLMBOT_INSTRUCTIONS_DIR",
        None,
        "Per-place instructions: telegram_<chat id>.md, slack_<channel id>.md, web.md, console.md "
        "(extend the general ones; <place>.replace.md replaces them).",
    )

    # --- retention -------------------------------------------------------------------------
    retention_days: int = _env(
        "VLMBOT_RETENTION_DAYS",
        0,
        "Days sessions, turns, pictures and exports are kept (deleted daily and by `vlmbot data prune`); "
        "0 keeps them forever.",
        ge=0,
    )

    # --- input limits ----------------------------------------------------------------------
    max_image_bytes: int = _env(
        "VLMBOT_MAX_IMAGE_BYTES", 20 * 1024**2, "Largest picture file accepted."
    )
    max_image_source_pixels: int = _env(
        "VLMBOT_MAX_IMAGE_SOURCE_PIXELS",
        64_000_000,
        "Largest picture (width x height) decoded: guards decompression bombs.",
    )
    max_images_per_turn: int = _env(
        "VLMBOT_MAX_IMAGES_PER_TURN", 8, "Pictures in one question."
    )
    max_video_seconds: float = _env(
        "VLMBOT_MAX_VIDEO_SECONDS", 60.0, "Longest screen recording or GIF accepted, in seconds.", gt=0
    )
    max_video_bytes: int = _env(
        "VLMBOT_MAX_VIDEO_BYTES", 50 * 1024**2, "Largest video file accepted.", gt=0
    )
    video_max_frames: int = _env(
        "VLMBOT_VIDEO_MAX_FRAMES",
        32,
        "Frames sampled from one video at most (about 2 per second, fewer for long clips).",
        ge=2,
    )
    video_max_tokens: int = _env(
        "VLMBOT_VIDEO_MAX_TOKENS",
        2560,
        "Visual tokens one video may cost (at most half of VLMBOT_CONTEXT_TOKENS): the frames are sized to fit.",
        ge=16,
    )
    video_timeout_s: float = _env(
        "VLMBOT_VIDEO_TIMEOUT",
        20.0,
        "Seconds a video may take to decode (its first frame for counting, its sampled frames for reading); "
        "a slower one is left out with a reply.",
        gt=0,
    )
    max_pdf_pages: int = _env(
        "VLMBOT_MAX_PDF_PAGES",
        8,
        "Pages of a PDF read as pictures (the first ones, or those the question names: \"pages 3-5\"); "
        "the PDFs, long screenshots and videos of one message share the larger of this and VLMBOT_MAX_TILES.",
        ge=1,
    )
    max_tiles: int = _env(
        "VLMBOT_MAX_TILES",
        10,
        "Tiles a long screenshot is cut into at most (10 read a 1080x8000 one whole at full size); "
        "the rest of a longer one is left out and the reply says so.",
        ge=1,
    )
    pdf_timeout_s: float = _env(
        "VLMBOT_PDF_TIMEOUT",
        30.0,
        "Seconds a PDF's pages may take to render; a slower PDF is skipped with a reply.",
        gt=0,
    )

    # --- service ---------------------------------------------------------------------------
    shutdown_grace_s: float = _env(
        "VLMBOT_SHUTDOWN_GRACE",
        20.0,
        "Seconds in-flight answers may finish at shutdown.",
    )
    instance_id: str = _env(
        "VLMBOT_INSTANCE_ID",
        socket.gethostname(),
        "This bot replica's name (default: the host name); a restart interrupts only its own pending answers.",
    )
    log_level: str = _env("VLMBOT_LOG_LEVEL", "INFO", "Python logging level.")
    metrics_listen: str = _env(
        "VLMBOT_METRICS_LISTEN",
        "127.0.0.1:9464",
        "host:port where `vlmbot run` serves /metrics (Prometheus) and /health; empty = not served.",
    )
    console: Literal["auto", "on", "off"] = _env(
        "VLMBOT_CONSOLE",
        "auto",
        "Console chat in `vlmbot run`: auto = only when no other adapter is configured.",
    )

    # --- replies ---------------------------------------------------------------------------
    language: LanguageSetting = _env(
        "VLMBOT_LANGUAGE",
        "auto",
        "The bot's own words: auto = each user's (Telegram, Slack, browser; LANG for the terminal chat), en, zh.",
    )
    system_locale: str | None = _env(
        "LANG",
        None,
        "The terminal chat's language when VLMBOT_LANGUAGE is auto (zh_CN.UTF-8 = Chinese, else English).",
    )
    code_file_chars: int = _env(
        "VLMBOT_CODE_FILE_CHARS", 1500, "Code blocks of an answer this long (characters) are also sent as a file."
    )
    queue_notice_delay_s: float = _env(
        "VLMBOT_QUEUE_NOTICE_DELAY", 1.0, "Seconds a question next in line waits before the bot says it is next."
    )

    # --- Telegram --------------------------------------------------------------------------
    telegram_token: str | None = _env(
        "TELEGRAM_BOT_TOKEN", None, "Enables the Telegram adapter."
    )
    telegram_api_url: str = _env(
        "TELEGRAM_API_URL", "https://api.telegram.org", "Bot API server base URL."
    )
    telegram_webhook_url: str | None = _env(
        "TELEGRAM_WEBHOOK_URL", None, "Public URL; set = webhook mode."
    )
    telegram_webhook_listen: str = _env(
        "TELEGRAM_WEBHOOK_LISTEN", "0.0.0.0:8443", "host:port of the webhook server."
    )
    telegram_webhook_secret: str | None = _env(
        "TELEGRAM_WEBHOOK_SECRET", None, "Secret token checked on every webhook."
    )
    telegram_allowed_users: IdList = _env(
        "TELEGRAM_ALLOWED_USERS", (), "User ids allowed (comma separated)."
    )
    telegram_allowed_chats: IdList = _env(
        "TELEGRAM_ALLOWED_CHATS", (), "Chat ids allowed (comma separated)."
    )
    telegram_allow_everyone: bool = _env(
        "TELEGRAM_ALLOW_EVERYONE",
        False,
        "Must be true to run with both allowlists empty.",
    )

    # --- Slack -----------------------------------------------------------------------------
    slack_bot_token: str | None = _env(
        "SLACK_BOT_TOKEN", None, "Enables the Slack adapter (xoxb-...)."
    )
    slack_app_token: str | None = _env(
        "SLACK_APP_TOKEN", None, "Socket Mode token (xapp-...); the default mode."
    )
    slack_signing_secret: str | None = _env(
        "SLACK_SIGNING_SECRET", None, "HTTP Events API mode when no app token."
    )
    slack_api_url: str = _env(
        "SLACK_API_URL", "https://slack.com/api/", "Web API base URL."
    )
    slack_http_listen: str = _env(
        "SLACK_HTTP_LISTEN", "0.0.0.0:3000", "host:port of the Events API server."
    )
    slack_slash_command: str = _env(
        "SLACK_SLASH_COMMAND", "/vlmbot", "Slash command name."
    )
    slack_allowed_teams: IdList = _env(
        "SLACK_ALLOWED_TEAMS", (), "Workspace ids allowed (comma separated)."
    )
    slack_allowed_channels: IdList = _env(
        "SLACK_ALLOWED_CHANNELS", (), "Channel ids allowed (comma separated)."
    )
    slack_allowed_users: IdList = _env(
        "SLACK_ALLOWED_USERS", (), "User ids allowed (comma separated)."
    )
    slack_allow_everyone: bool = _env(
        "SLACK_ALLOW_EVERYONE", False, "Must be true to run with all allowlists empty."
    )

    # --- web chat --------------------------------------------------------------------------
    web_enabled: bool = _env("VLMBOT_WEB", True, "Serve the web chat in `vlmbot run`.")
    web_listen: str = _env(
        "VLMBOT_WEB_LISTEN", "127.0.0.1:8080", "host:port of the web chat."
    )
    web_token: str | None = _env(
        "VLMBOT_WEB_TOKEN", None, "Access token; required when not bound to loopback."
    )
    web_admin_token: str | None = _env(
        "VLMBOT_WEB_ADMIN_TOKEN",
        None,
        "Operator token: read-only view of all sessions.",
    )
    web_login_ttl_s: float = _env(
        "VLMBOT_WEB_LOGIN_TTL",
        7 * 24 * 3600.0,
        "Seconds a web sign-in lasts before the token is asked for again.",
    )
    web_tls_proxy: bool = _env(
        "VLMBOT_WEB_TLS_PROXY",
        False,
        "true when a TLS reverse proxy serves the web chat as https: cookies become Secure and __Host-, "
        "and login throttling counts by the proxy's X-Forwarded-For address.",
    )
    web_picture_decodes: int = _env(
        "VLMBOT_WEB_PICTURE_DECODES",
        2,
        "Uploaded pictures the web chat decodes at once (a 64-megapixel one takes ~250 MB).",
    )

    @field_validator(
        "engine_api_keys",
        "telegram_allowed_users",
        "telegram_allowed_chats",
        "slack_allowed_teams",
        "slack_allowed_channels",
        "slack_allowed_users",
        mode="before",
    )
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def secret_values(self) -> list[tuple[str, str]]:
        """(variable name, value) of every configured secret, for redaction from the logs."""
        found: list[tuple[str, str]] = []
        for name in SECRET_SETTINGS:
            value = getattr(self, name)
            alias = type(self).model_fields[name].validation_alias
            label = alias.choices[0] if isinstance(alias, AliasChoices) else name
            for item in value if isinstance(value, tuple) else (value,):
                if item:
                    found.append((str(label), str(item)))
        password = urlsplit(self.database_url).password if self.database_url else None
        if password:
            found += [
                ("VLMBOT_DATABASE_URL password", password),
                ("VLMBOT_DATABASE_URL password", unquote(password)),
            ]
        return found

    @field_validator("quantization", mode="before")
    @classmethod
    def _quantization_lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("metrics_listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, sep, port = value.strip().rpartition(":")
        if value.strip() and (not sep or not port.isdigit() or int(port) > 65535):
            raise ValueError(
                "must be host:port (e.g. 127.0.0.1:9464), or empty to serve no metrics"
            )
        return value.strip()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'vlmbot.db').resolve()}"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def exports_dir(self) -> Path:
        """Where the terminal chat saves exports and files."""
        return self.data_dir / "exports"

    @property
    def demo_model_dir(self) -> Path:
        return self.data_dir / "tiny-model"


def load_settings(**overrides: object) -> Settings:
    """Read the environment; keyword overrides (by field name) win, for tests and the CLI."""
    base = Settings()
    return base.model_copy(update=overrides) if overrides else base
