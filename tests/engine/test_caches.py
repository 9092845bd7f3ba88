"""The KV store and the feature cache stay within their budgets and free what they drop."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import DynamicCache

from engine.features import FeatureCache, ImageFeatures, ImageKey
from engine.interface import PromptTurn
from engine.kvstore import KVEntry, KVStore, cache_nbytes
from tests.engine.support import SYSTEM, Recorder, answer, ask, noisy_picture, started_engine

SMALL = 64 * 28 * 28


def entry(tokens: int, layers: int = 2, epoch: int = 0) -> KVEntry:
    pairs = [(torch.zeros(1, 2, tokens, 8), torch.zeros(1, 2, tokens, 8)) for _ in range(layers)]
    return KVEntry(ids=list(range(tokens)), cache=DynamicCache(ddp_cache_data=pairs), epoch=epoch)


PER_TOKEN = 2 * 2 * 2 * 8 * 4  # layers x (k, v) x heads x dim x float32


def test_kv_store_evicts_least_recently_used_within_budget() -> None:
    store = KVStore(budget_bytes=25 * PER_TOKEN)
    assert store.put("a", entry(10)) and store.put("b", entry(10))
    assert store.stats().bytes == 20 * PER_TOKEN
    assert store.take("a") is not None  # a is running: not counted, and b is now the oldest idle one
    assert store.put("a", entry(12))
    assert store.put("c", entry(10))  # 22 + 10 > 25: b, the least recently used, goes
    assert store.sessions() == ["a", "c"] and store.stats().evictions == 1
    assert store.put("d", entry(10))
    stats = store.stats()
    assert stats.bytes <= stats.budget and store.sessions() == ["c", "d"]
    assert stats.evictions == 2
    assert not store.put("huge", entry(30)) and store.stats().rejected == 1
    assert store.stats().bytes <= store.stats().budget


def test_kv_store_release_frees_and_blocks_a_running_put() -> None:
    store = KVStore(budget_bytes=100 * PER_TOKEN)
    store.put("a", entry(10))
    running = store.take("a")
    assert running is not None
    epoch = store.epoch("a")
    store.put("b", entry(5))
    assert store.release("b") and store.stats().bytes == 0
    store.release("a")  # /clear while a request of session a runs
    assert not store.put("a", entry(10, epoch=epoch))
    assert store.stats().entries == 0
    assert store.put("a", entry(10, epoch=store.epoch("a")))


def test_kv_store_expires_idle_sessions() -> None:
    now = [0.0]
    store = KVStore(budget_bytes=100 * PER_TOKEN, idle_s=60, clock=lambda: now[0])
    store.put("a", entry(5))
    now[0] = 30
    store.put("b", entry(5))
    now[0] = 70
    assert store.expire() == 1 and store.sessions() == ["b"]
    now[0] = 200
    assert store.take("b") is None and store.stats().bytes == 0


def test_cache_nbytes_counts_keys_and_values() -> None:
    assert cache_nbytes(entry(7).cache) == 7 * PER_TOKEN


def test_feature_cache_budget_and_lru() -> None:
    def key(name: str) -> ImageKey:
        return ImageKey(name, 28, 1, 2)

    def features(tokens: int) -> ImageFeatures:
        return ImageFeatures((1, 2, tokens * 2), torch.zeros(tokens, 16), (torch.zeros(tokens, 16),))

    size = features(10).nbytes
    cache = FeatureCache(budget_bytes=int(2.5 * size))
    cache.put(key("a"), features(10))
    cache.put(key("b"), features(10))
    assert cache.get(key("a")) is not None  # a is now the most recent
    cache.put(key("c"), features(10))
    assert cache.get(key("b")) is None and cache.get(key("a")) is not None
    stats = cache.stats()
    assert stats.bytes <= stats.budget and stats.evictions == 1 and stats.entries == 2
    assert cache.grid(key("b")) == (1, 2, 20)  # the grid outlives the features
    assert not FeatureCache(0).put(key("a"), features(1))
    assert FeatureCache(0).grid(key("a")) is None


async def test_engine_stores_stay_within_budget_and_release_frees(tiny_qwen25_dir: Path) -> None:
    budget = 100_000  # three of the tiny model's sessions (about 29 kB each)
    async with started_engine(tiny_qwen25_dir, max_pixels=SMALL, kv_cache_bytes=budget, feature_cache_bytes=4_000) as eng:
        eng.generate_hook = Recorder()
        sizes = []
        for i in range(6):
            picture = noisy_picture((96, 64), seed=20 + i)
            await answer(eng, ask(f"r{i}", f"s{i}", [SYSTEM, PromptTurn("user", "What is in the picture?", (picture,))]))
            stats = eng.cache_stats()
            assert stats.kv.bytes <= budget and stats.features.bytes <= 4_000
            sizes.append(stats.kv.bytes)
        stats = eng.cache_stats()
        assert stats.kv.evictions > 0 and stats.features.evictions > 0
        held = eng._kv.sessions()  # (tenant, session id)
        assert ("", "s0") not in held and ("", "s5") in held  # least recently used went first
        for tenant, session in held:
            await eng.release_session(session, tenant)
        assert eng.cache_stats().kv.bytes == 0 and eng.cache_stats().kv.entries == 0


async def test_idle_session_caches_expire_without_traffic(tiny_qwen25_dir: Path) -> None:
    import asyncio

    async with started_engine(tiny_qwen25_dir, max_pixels=SMALL, kv_idle_s=0.3) as eng:
        await answer(eng, ask("r", "s", [SYSTEM, PromptTurn("user", "Where is the power button?")]))
        assert eng.cache_stats().kv.entries == 1
        await asyncio.sleep(0.8)
        stats = eng.cache_stats().kv
        assert stats.entries == 0 and stats.bytes == 0 and stats.expirations == 1


async def test_prefix_cache_without_feature_cache_does_not_decode_cached_pictures(tiny_qwen25_dir: Path) -> None:
    async with started_engine(tiny_qwen25_dir, max_pixels=SMALL, feature_cache_bytes=0) as eng:
        hook = Recorder()
        eng.generate_hook = hook
        import engine.prompt as prompt_module

        prepared: list[str] = []
        original = prompt_module.prepare_picture

        def counting(loaded, image, budget, limits):  # type: ignore[no-untyped-def]
            prepared.append(image.sha256)
            return original(loaded, image, budget, limits)

        prompt_module.prepare_picture = counting
        try:
            turns = [SYSTEM, PromptTurn("user", "What is in the picture?", (noisy_picture((96, 64), seed=30),))]
            reply, _ = await answer(eng, ask("p1", "s", turns))
            await answer(eng, ask("p2", "s", [*turns, PromptTurn("assistant", reply), PromptTurn("user", "And?")]))
        finally:
            prompt_module.prepare_picture = original
        assert len(prepared) == 1  # the follow-up took the grid from the session's cache entry
        assert hook.prefill["p2"]["cached_tokens"] > 0
