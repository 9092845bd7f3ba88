"""Prometheus metrics of the engine server (`GET /metrics`), in a registry of its own per server.

Queue depth, running requests and GPU memory are read when scraped; latencies and throughput are
recorded from each request's final `GenerationStats`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.interface import EngineHealth, GenerationStats

__all__ = ["CONTENT_TYPE", "EngineMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
_SPEED_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 400)


class _LiveState(Collector):
    """Values read at scrape time: the queue, and GPU memory when the model runs on CUDA."""

    def __init__(self, health: Callable[[], EngineHealth]) -> None:
        self._health = health

    def collect(self) -> Iterator[GaugeMetricFamily]:
        health = self._health()
        yield GaugeMetricFamily("vlmbot_engine_queue_depth", "Requests waiting for the model.", value=health.queue_depth)
        yield GaugeMetricFamily("vlmbot_engine_running_requests", "Requests being generated.", value=health.running)
        yield GaugeMetricFamily("vlmbot_engine_up", "1 when the model is loaded and its worker runs.", value=int(health.ok))
        if health.device.startswith("cuda"):
            import torch

            index = torch.device(health.device).index or 0
            allocated = GaugeMetricFamily(
                "vlmbot_engine_gpu_memory_allocated_bytes", "GPU memory held by tensors.", labels=["device"]
            )
            allocated.add_metric([str(index)], torch.cuda.memory_allocated(index))
            reserved = GaugeMetricFamily(
                "vlmbot_engine_gpu_memory_reserved_bytes", "GPU memory reserved by the caching allocator.", labels=["device"]
            )
            reserved.add_metric([str(index)], torch.cuda.memory_reserved(index))
            free, total = torch.cuda.mem_get_info(index)
            total_family = GaugeMetricFamily("vlmbot_engine_gpu_memory_total_bytes", "GPU memory size.", labels=["device"])
            total_family.add_metric([str(index)], total)
            free_family = GaugeMetricFamily("vlmbot_engine_gpu_memory_free_bytes", "GPU memory free.", labels=["device"])
            free_family.add_metric([str(index)], free)
            yield from (allocated, reserved, total_family, free_family)


class EngineMetrics:
    def __init__(self, health: Callable[[], EngineHealth]) -> None:
        disable_created_metrics()  # the *_created series only add noise to every counter (process-wide switch)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_LiveState(health))
        self.requests = Counter(
            "vlmbot_engine_requests", "Finished chat requests by outcome.", ["outcome"], registry=self.registry
        )
        self.errors = Counter(
            "vlmbot_engine_errors", "Requests that failed, by error code.", ["code"], registry=self.registry
        )
        self.queue_wait = Histogram(
            "vlmbot_engine_queue_wait_seconds", "Time from arrival to the start of generation.",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.ttft = Histogram(
            "vlmbot_engine_time_to_first_token_seconds", "Time from arrival to the first answer token.",
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "vlmbot_engine_tokens_per_second", "Decoding speed of a request after its first token.",
            buckets=_SPEED_BUCKETS, registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "vlmbot_engine_prompt_tokens", "Prompt tokens processed.", registry=self.registry
        )
        self.output_tokens = Counter(
            "vlmbot_engine_output_tokens", "Answer tokens generated.", registry=self.registry
        )

    def finished(self, stats: GenerationStats) -> None:
        self.requests.labels(stats.finish_reason).inc()
        self.queue_wait.observe(stats.queue_wait_s)
        self.prompt_tokens.inc(stats.prompt_tokens)
        self.output_tokens.inc(stats.output_tokens)
        if stats.time_to_first_token_s is not None:
            self.ttft.observe(stats.time_to_first_token_s)
            decoding = stats.total_s - stats.time_to_first_token_s
            if stats.output_tokens > 1 and decoding > 0:
                self.tokens_per_second.observe((stats.output_tokens - 1) / decoding)

    def failed(self, code: str) -> None:
        self.requests.labels("error").inc()
        self.errors.labels(code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
