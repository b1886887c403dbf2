"""Core benchmark: key build, exact hit through Cache + MemoryStore, MemoryStore memory.

Targets (issue FOUNDATION), for a ~1 KB chat request on a 2-core machine:
    key build p50 <= 5 us; Cache hit in MemoryStore p50 <= 10 us;
    MemoryStore with 100k entries of 1 KB values <= 1.3x the key + value bytes.

Method: each timing sample is the mean of a batch of 200 calls (timer overhead amortized);
a run takes 150 samples of every case, round-robin so that machine noise hits every case
alike, and reports their medians; the script does several runs and prints the median of
the run medians, next to baselines measured in the same runs:
    key baseline  = orjson.dumps(sort_keys) + sha256 of the raw request body (no
                    normalization: the least any canonical key can cost);
    hit baseline  = dict lookup + orjson.loads of the same stored bytes (the least a hit
                    that returns a fresh response object can cost).
Memory: tracemalloc of 100k entries (88-char keys, 1 KB values, TTL set) inserted into a
fresh MemoryStore, over the sum of len(key) + len(value).

    .venv/bin/python bench/core.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson

import deja
from deja.keys import make_key
from deja.stores.memory import MemoryStore

COMMAND = ".venv/bin/python bench/core.py"

MESSAGES = [
    {
        "role": "system",
        "content": "You are the customer-support assistant of a retail bank. Answer in two or "
        "three short, polite sentences. Never ask for card numbers or passwords. If the customer "
        "reports fraud, tell them to freeze the card in the app and contact support right away.",
    },
    {"role": "user", "content": "I ordered a new card two weeks ago and it still has not arrived."},
    {
        "role": "assistant",
        "content": "I'm sorry about the wait. Cards usually arrive within 5 business days; "
        "you can track delivery in the app under Card > Track delivery.",
    },
    {
        "role": "user",
        "content": "The tracking page says 'dispatched' since last Monday. Can you send a "
        "replacement, and will the old one be cancelled when it finally shows up? Thanks!",
    },
]
PARAMS = {"temperature": 0.2, "max_tokens": 256, "top_p": 1.0, "user": "customer-8841"}
RESPONSE = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "We can send a replacement today. " * 8},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 180, "completion_tokens": 70, "total_tokens": 250},
}


def batch_seconds(fn: Callable[[], object], batch: int) -> float:
    """Mean seconds per call over one batch of ``batch`` calls."""
    started = time.perf_counter()
    for _ in range(batch):
        fn()
    return (time.perf_counter() - started) / batch


def one_run(*, rounds: int = 150, batch: int = 200) -> dict[str, float]:
    """One run: every case measured round-robin, so machine noise hits all cases alike."""
    request = deja.Request.chat(model="gpt-4o", messages=MESSAGES, **PARAMS)
    body = {"model": "gpt-4o", "messages": MESSAGES, **PARAMS}
    cache = deja.Cache(store=MemoryStore(), ttl=3600)
    cache.put(request, RESPONSE)
    assert cache.get(request).info.status == "hit"
    response_bytes = cache.get(request).response_bytes
    acache = deja.AsyncCache(store=cache.store, ttl=3600)
    loop = asyncio.new_event_loop()

    async def async_batch() -> float:
        started = time.perf_counter()
        for _ in range(batch):
            await acache.get(request)
        return (time.perf_counter() - started) / batch

    cases: dict[str, Callable[[], float]] = {
        "key_us": lambda: batch_seconds(lambda: make_key(request), batch),
        "key_from_args_us": lambda: batch_seconds(
            lambda: make_key(deja.Request.chat(model="gpt-4o", messages=MESSAGES, **PARAMS)), batch
        ),
        "key_baseline_us": lambda: batch_seconds(
            lambda: hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest(),
            batch,
        ),
        "hit_us": lambda: batch_seconds(lambda: cache.get(request), batch),
        "hit_read_us": lambda: batch_seconds(lambda: cache.get(request).response, batch),
        "hit_fetch_us": lambda: batch_seconds(
            lambda: cache.fetch(request, lambda: RESPONSE), batch
        ),
        "hit_async_us": lambda: loop.run_until_complete(async_batch()),
        "hit_baseline_us": lambda: batch_seconds(lambda: orjson.loads(response_bytes), batch),  # type: ignore[arg-type]
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            samples[name].append(case())
    loop.close()
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


def memory_ratio(entries: int = 100_000, value_size: int = 1024) -> dict[str, float]:
    """tracemalloc bytes held by a MemoryStore over the bytes of its keys and values."""
    keys = [
        f"deja:v1:{i:016x}:{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(entries)
    ]
    values = [os.urandom(value_size) for _ in range(entries)]
    payload = sum(len(k) for k in keys) + sum(len(v) for v in values)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = MemoryStore(max_entries=entries, max_bytes=None)
    for k, v in zip(keys, values, strict=True):
        store.set(k, v, 3600)
    # the key and value objects were allocated before tracing began; count them explicitly,
    # as a store that copied them would have to
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    held = traced + sum(k.__sizeof__() for k in keys) + sum(v.__sizeof__() for v in values)
    assert len(store) == entries
    return {
        "memory_ratio": held / payload,
        "memory_mb": held / 2**20,
        "payload_mb": payload / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    figures: dict[str, Any] = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    figures |= memory_ratio()
    figures["key_vs_baseline"] = figures["key_us"] / figures["key_baseline_us"]
    figures["hit_vs_baseline"] = figures["hit_us"] / figures["hit_baseline_us"]
    figures["request_bytes"] = len(
        orjson.dumps({"model": "gpt-4o", "messages": MESSAGES, **PARAMS})
    )
    figures["machine"] = (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    figures["runs"] = args.runs
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"deja core benchmark: median of {args.runs} runs ({figures['machine']})")
    print(f"request body {figures['request_bytes']} bytes")
    print(
        f"key build            p50 {figures['key_us']:6.2f} us  (target <= 5)   baseline {figures['key_baseline_us']:.2f} us, x{figures['key_vs_baseline']:.2f}"
    )
    print(f"key from call args   p50 {figures['key_from_args_us']:6.2f} us  (Request.chat + key)")
    print(
        f"Cache.get hit        p50 {figures['hit_us']:6.2f} us  (target <= 10)  baseline {figures['hit_baseline_us']:.2f} us, x{figures['hit_vs_baseline']:.2f}"
    )
    print(
        f"Cache.get hit, read  p50 {figures['hit_read_us']:6.2f} us  (the same, and the response parsed into a dict)"
    )
    print(f"Cache.fetch hit      p50 {figures['hit_fetch_us']:6.2f} us")
    print(f"AsyncCache.get hit   p50 {figures['hit_async_us']:6.2f} us")
    print(
        f"MemoryStore 100k x 1 KB: {figures['memory_mb']:.1f} MiB for {figures['payload_mb']:.1f} MiB of keys+values = x{figures['memory_ratio']:.3f} (target <= 1.3)"
    )
    print(f"reproduce: {COMMAND}")


if __name__ == "__main__":
    main()
