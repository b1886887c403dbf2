"""Sync cache misses under a cross-process lock: DiskStore and RedisStore (a real valkey).

A miss on a store that offers a lock takes it, calls the upstream (here an instant local
function: deja's own cost is what is measured), stores, and releases; a lock keeper keeps
the lock while the upstream call runs. Prints the median (and p90) latency of one
`Cache.fetch` miss, each call on a new request, per store, as JSON.

    PYTHONPATH=src .venv/bin/python bench/locked_miss.py [--calls 2000] [--stores disk,redis]

To compare two trees, alternate runs with PYTHONPATH pointing at each tree's src.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test helpers that start the servers

import deja  # noqa: E402
from tests.helpers import chat_request, chat_response  # noqa: E402
from tests.stores.redis_servers import start_standalone  # noqa: E402

RESPONSE = chat_response("We can send a replacement today. " * 25)


def misses(store: Any, calls: int) -> dict[str, float]:
    cache = deja.Cache(store=store, ttl=3600)
    samples = []
    for i in range(calls + 50):
        request = chat_request(f"question {i} {time.time_ns()}")
        started = time.perf_counter()
        result = cache.fetch(request, lambda: RESPONSE)
        elapsed = time.perf_counter() - started
        assert result.info.status == "miss"
        if i >= 50:  # the first 50: warm-up
            samples.append(elapsed)
    samples.sort()
    return {
        "p50_us": statistics.median(samples) * 1e6,
        "p90_us": samples[int(len(samples) * 0.9) - 1] * 1e6,
        "threads_alive_after": threading.active_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--stores", default="disk,redis")
    args = parser.parse_args()
    figures: dict[str, Any] = {"deja": deja.__file__}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.stores.split(","):
            if name == "disk":
                store: Any = deja.DiskStore(Path(tmp) / "disk")
                figures["disk"] = misses(store, args.calls)
            elif name == "redis":
                server = start_standalone(Path(tmp) / "valkey")
                try:
                    store = deja.RedisStore(url=server.url)
                    figures["redis"] = misses(store, args.calls)
                    store.close()
                finally:
                    server.kill()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
