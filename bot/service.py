"""Building the long-lived parts (database, engine, conversation service) and shutting them down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.adapter import ConfigurationError
from bot.config import Settings
from bot.conversations import ConversationLimits, Conversations
from bot.filemodes import prepare_data_dir
from bot.i18n import N_
from bot.inbox import Inbox
from bot.instructions import Instructions
from bot.pictures import PictureFiles
from bot.retention import prune_daily
from bot.store import Store, open_store
from bot.videos import video_budget, video_limits
from engine.interface import Engine
from engine.quantization import QuantizationError

__all__ = ["DEMO_WARNING", "Service", "build_engine", "ensure_demo_model", "running_service"]

log = logging.getLogger(__name__)

# Platforms redeliver for at most a day (Telegram keeps unconfirmed updates 24 h; Slack retries for
# minutes): a week of claimed delivery ids keeps every handling exactly-once.
DELIVERY_MEMORY_S = 7 * 24 * 3600

DEMO_WARNING = N_(
    "No VLMBOT_MODEL is set, so this runs a tiny random-weight demo model: its answers are random text "
    "until VLMBOT_MODEL points at real Qwen2.5-VL or Qwen3-VL weights."
)


@dataclass(frozen=True)
class Service:
    settings: Settings
    store: Store
    engine: Engine
    conversations: Conversations
    inbox: Inbox  # what adapters submit messages to
    demo_model: bool


async def ensure_demo_model(directory: Path) -> Path:
    """The tiny demo checkpoint under the data dir, written on first use."""
    if not (directory / "config.json").exists():
        from engine.tiny import write_tiny_checkpoint

        log.info("writing the tiny demo model to %s", directory)
        await asyncio.to_thread(write_tiny_checkpoint, directory, "qwen2_5_vl", "tiny")
    return directory


async def build_engine(settings: Settings) -> tuple[Engine, bool]:
    """The engine the settings ask for, not yet started; and whether it is the demo model."""
    if settings.engine_url:
        from engine.remote import RemoteEngine, RemoteEngineOptions

        return RemoteEngine(
            RemoteEngineOptions(
                base_url=settings.engine_url,
                api_key=settings.engine_api_key,
                model=settings.engine_model,
                arch=settings.engine_arch,
                min_pixels=settings.min_pixels,
                max_pixels=settings.max_pixels,
                queue_size=settings.queue_size,
                concurrency=settings.batch_size,
                video=video_budget(settings),
                video_url=settings.engine_video_url,
            )
        ), False
    from engine.local import LocalEngine, LocalEngineOptions

    demo = settings.model is None
    path = await ensure_demo_model(settings.demo_model_dir) if demo else settings.model
    assert path is not None
    return LocalEngine(
        LocalEngineOptions(
            model_path=path,
            device=settings.device,
            attention=settings.attention,
            quantization=settings.quantization,
            min_pixels=settings.min_pixels,
            max_pixels=settings.max_pixels,
            jpeg_draft=settings.jpeg_draft,
            queue_size=settings.queue_size,
            batch_size=settings.batch_size,
            prefix_cache=settings.prefix_cache,
            kv_cache_bytes=settings.kv_cache_bytes,
            gpu_memory_fraction=settings.gpu_memory_fraction,
            admission_bytes=settings.admission_bytes,
            kv_idle_s=settings.kv_idle_s,
            feature_cache_bytes=settings.feature_cache_bytes,
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_source_pixels,
            prepare_workers=settings.prepare_workers,
            prefill_chunk_tokens=settings.prefill_chunk_tokens,
            video=video_budget(settings),
            read_in_pieces=settings.read_in_pieces,
        )
    ), demo



def conversation_limits(settings: Settings) -> ConversationLimits:
    return ConversationLimits(
        max_image_bytes=settings.max_image_bytes,
        max_image_source_pixels=settings.max_image_source_pixels,
        max_images_per_turn=settings.max_images_per_turn,
        max_pdf_pages=settings.max_pdf_pages,
        max_tiles=settings.max_tiles,
        pdf_timeout_s=settings.pdf_timeout_s,
        max_new_tokens=settings.max_new_tokens,
        request_timeout_s=settings.request_timeout_s,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        context_tokens=settings.context_tokens,
        video=video_limits(settings),
        video_tokens=video_budget(settings).max_tokens,
    )


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Service]:
    """Database, engine and conversations; on exit drains answers in flight and closes everything."""
    prepare_data_dir(settings.data_dir, settings.resolved_database_url())
    async with open_store(settings.resolved_database_url(), instance_id=settings.instance_id) as store:
        # Any turn pending longer than a request may take has lost its replica, whichever it was.
        stale_after = settings.request_timeout_s + settings.shutdown_grace_s + 60
        interrupted = await store.mark_interrupted(stale_after_s=stale_after)
        await store.prune_deliveries(older_than_s=DELIVERY_MEMORY_S)
        if interrupted:
            log.warning("%d answer(s) were interrupted by the last shutdown; /retry regenerates them", interrupted)
        engine, demo = await build_engine(settings)
        if demo:
            log.warning(DEMO_WARNING)
        try:
            await engine.start()
        except QuantizationError as exc:  # the checkpoint or VLMBOT_QUANTIZATION cannot load here
            await engine.close()
            raise ConfigurationError(str(exc)) from None
        try:
            health = engine.health()
            log.info(
                "engine ready: model %s on %s (%s), attention %s (%s), quantization %s",
                health.model,
                health.device,
                health.dtype,
                health.attention,
                health.attention_reason,
                health.quantization,
            )
            instructions = Instructions(
                settings.instructions_file,
                settings.instructions_dir,
                engine.count_prompt_tokens,
                # Half the budget at most, so that a question and some history always fit beside them.
                limit=settings.context_tokens // 2,
            )
            await instructions.check()
            conversations = Conversations(
                store,
                engine,
                PictureFiles(settings.images_dir),
                conversation_limits(settings),
                instructions,
                exports_dir=settings.exports_dir,
            )
            inbox = Inbox(conversations, settings)
            pruning = asyncio.create_task(
                prune_daily(conversations.removal, settings.retention_days, engine), name="vlmbot-prune"
            )
            try:
                yield Service(settings, store, engine, conversations, inbox, demo)
            finally:
                pruning.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruning
                await conversations.drain(settings.shutdown_grace_s)
                await inbox.close(grace_s=settings.shutdown_grace_s)  # replies still being written
        finally:
            await engine.close()
