"""The bot's own Prometheus metrics (`vlmbot run` serves them at /metrics, see `bot.monitoring`).

Counted where the core decides: messages as `Conversations.handle` receives them, refusals where a
message is turned away (access, by the adapters, is the one the core cannot see), answers and their
times from each request's final `GenerationStats`. What the database knows (conversations active
lately, pictures stored) is read when scraped, so every replica reports the shared truth.

The picture store holds pictures, PDFs and videos: `vlmbot_pictures_stored` (and its bytes) stays the
total of all of them, as dashboards read it, and `vlmbot_files_stored{kind}` splits it by the recorded
mime type (`bot.stored_files`); a PDF's rendered pages and a long screenshot's tiles are pictures there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.schema import ImageRow, SessionRow
from bot.stored_files import FileKind, kind_of
from bot.votes import Vote, VoteOutcome, VoteResult
from engine.interface import GenerationStats

__all__ = [
    "ACTIVE_WINDOW",
    "CONTENT_TYPE",
    "BotMetrics",
    "MessageKind",
    "Outcome",
    "RefusalReason",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACTIVE_WINDOW = timedelta(minutes=15)

MessageKind = Literal["text", "picture", "command"]
RefusalReason = Literal["access", "picture", "busy", "too_long", "restarting"]
Outcome = Literal["done", "failed", "cancelled", "interrupted"]
PLATFORMS = ("telegram", "slack", "web", "console")

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class _Snapshot(Collector):
    """Values read when scraped: live state of this replica, and what `refresh` read from the database."""

    def __init__(self, in_progress: Callable[[], int]) -> None:
        self._in_progress = in_progress
        self.active = 0
        self.files = dict.fromkeys(FileKind, 0)
        self.file_bytes = dict.fromkeys(FileKind, 0)
        self.up = 0
        self.adapters: dict[str, bool] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "vlmbot_answers_in_progress", "Answers being generated or waiting for the model, on this replica.",
            value=self._in_progress(),
        )
        yield GaugeMetricFamily(
            "vlmbot_active_conversations",
            f"Conversations with a message in the last {int(ACTIVE_WINDOW.total_seconds() // 60)} minutes (all replicas).",
            value=self.active,
        )
        yield GaugeMetricFamily(
            "vlmbot_pictures_stored", "Files stored: pictures, PDFs and videos (all replicas; by kind: vlmbot_files_stored).",
            value=sum(self.files.values()),
        )
        yield GaugeMetricFamily(
            "vlmbot_picture_bytes_stored", "Bytes of the files stored (by kind: vlmbot_file_bytes_stored).",
            value=sum(self.file_bytes.values()),
        )
        files = GaugeMetricFamily("vlmbot_files_stored", "Files stored, by kind: picture, pdf, video (all replicas).", labels=["kind"])
        sizes = GaugeMetricFamily("vlmbot_file_bytes_stored", "Bytes of the files stored, by kind.", labels=["kind"])
        for kind in FileKind:
            files.add_metric([kind.value], self.files[kind])
            sizes.add_metric([kind.value], self.file_bytes[kind])
        yield files
        yield sizes
        yield GaugeMetricFamily("vlmbot_up", "1 while the adapters run and the engine answers (as /health).", value=self.up)
        adapters = GaugeMetricFamily("vlmbot_adapter_running", "1 while the adapter runs.", labels=["adapter"])
        for name, running in sorted(self.adapters.items()):
            adapters.add_metric([name], int(running))
        yield adapters


class BotMetrics:
    """One registry per service (tests run several in one process)."""

    def __init__(self, in_progress: Callable[[], int] = lambda: 0) -> None:
        disable_created_metrics()  # the *_created series only add noise to every counter (process-wide switch)
        self.registry = CollectorRegistry(auto_describe=True)
        self._snapshot = _Snapshot(in_progress)
        self.registry.register(self._snapshot)
        self.messages = Counter(
            "vlmbot_messages_received", "Messages received, by platform and kind.", ["platform", "kind"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "vlmbot_refusals", "Messages turned away, by reason.", ["reason"], registry=self.registry
        )
        self.answers = Counter("vlmbot_answers", "Answers by outcome.", ["outcome"], registry=self.registry)
        self.feedback = Counter(
            "vlmbot_feedback_votes", "Votes given or changed on answers, by vote.", ["vote"], registry=self.registry
        )
        self.queue_wait = Histogram(
            "vlmbot_queue_wait_seconds", "Time a question waited for the model.",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.ttft = Histogram(
            "vlmbot_time_to_first_token_seconds", "Time from the question to the first word of the answer.",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.answer_time = Histogram(
            "vlmbot_answer_seconds", "Time from the question to the complete answer, waiting included.",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        # Every series exists from the start, so dashboards and alerts see zeros, not gaps.
        for platform in PLATFORMS:
            for kind in get_args(MessageKind):
                self.messages.labels(platform, kind)
        for reason in get_args(RefusalReason):
            self.refusals.labels(reason)
        for outcome in get_args(Outcome):
            self.answers.labels(outcome)
        for vote in Vote:
            self.feedback.labels(vote.value)

    # --- recording ----------------------------------------------------------------------------

    def received(self, platform: str, kind: MessageKind) -> None:
        self.messages.labels(platform, kind).inc()

    def refused(self, reason: RefusalReason) -> None:
        self.refusals.labels(reason).inc()

    def answered(self, outcome: Outcome, stats: GenerationStats | None) -> None:
        self.answers.labels(outcome).inc()
        if stats is None:
            return
        self.queue_wait.observe(stats.queue_wait_s)
        if stats.time_to_first_token_s is not None:
            self.ttft.observe(stats.time_to_first_token_s)
        if outcome == "done":
            self.answer_time.observe(stats.total_s)

    def voted(self, result: VoteResult) -> None:
        """A vote that counts: a new one, or one changed from up to down or back."""
        if result.vote is not None and result.outcome in (VoteOutcome.RECORDED, VoteOutcome.CHANGED):
            self.feedback.labels(result.vote.value).inc()

    def set_health(self, up: bool, adapters: dict[str, bool]) -> None:
        self._snapshot.up = int(up)
        self._snapshot.adapters = dict(adapters)

    # --- scraping -----------------------------------------------------------------------------

    async def refresh(self, database: AsyncEngine) -> None:
        """Read the database's share of the metrics (a few aggregate queries)."""
        since = datetime.now(UTC) - ACTIVE_WINDOW
        async with database.connect() as db:
            active = await db.scalar(select(func.count()).select_from(SessionRow).where(SessionRow.updated_at >= since))
            by_type = await db.execute(
                select(ImageRow.mime_type, func.count(), func.coalesce(func.sum(ImageRow.size_bytes), 0)).group_by(ImageRow.mime_type)
            )
            files, sizes = dict.fromkeys(FileKind, 0), dict.fromkeys(FileKind, 0)
            for mime_type, count, size in by_type:
                files[kind_of(mime_type)] += int(count)
                sizes[kind_of(mime_type)] += int(size)
        self._snapshot.active = int(active or 0)
        self._snapshot.files, self._snapshot.file_bytes = files, sizes

    def render(self) -> bytes:
        return generate_latest(self.registry)
