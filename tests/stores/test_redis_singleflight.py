"""Cross-process single-flight on a RedisStore: real processes, a real server, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from deja.testing import FakeOpenAIServer

WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    import deja
    from deja.stores.redis import RedisStore

    redis_url, api_base = sys.argv[1], sys.argv[2]
    start_at, lock_ttl, kind = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    call = sys.argv[6]

    def make_store():
        if kind == "redis":
            return RedisStore(url=redis_url)
        from deja.stores.memory import MemoryStore
        from deja.stores.redis_bus import RedisInvalidationBus
        from deja.stores.tiered import TieredStore

        return TieredStore(
            l1=MemoryStore(), l2=RedisStore(url=redis_url), bus=RedisInvalidationBus(url=redis_url)
        )

    async def main():
        cache = deja.AsyncCache(store=make_store(), lock_ttl=lock_ttl, lock_wait=10)
        client = deja.AsyncClient(cache=cache, api_base=api_base, api_key="k", max_retries=0)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        started = time.monotonic()
        question = [{"role": "user", "content": "shared question"}]
        corpus = [f"document {i}" for i in range(50)]
        if call == "embedding":
            results = await asyncio.gather(
                *(client.aembedding(model="text-embedding-3-small", input=corpus) for _ in range(4))
            )
        else:
            results = await asyncio.gather(
                *(client.acompletion(model="gpt-4o", messages=question) for _ in range(4))
            )
        took = time.monotonic() - started  # (the calls' own time, not the start-up's)
        print(" ".join(r.cache.status for r in results), f"took={took:.3f}", flush=True)
        await client.aclose()

    asyncio.run(main())
    """
)


def read(outputs: list[tuple[str, str]]) -> tuple[list[str], list[float]]:
    """The workers' cache statuses, and how long each worker's calls took."""
    words = " ".join(out for out, _ in outputs).split()
    took = [float(w.removeprefix("took=")) for w in words if w.startswith("took=")]
    return [w for w in words if not w.startswith("took=")], took


def spawn(
    redis_url: str,
    api_base: str,
    start_at: float,
    lock_ttl: float = 30.0,
    kind: str = "redis",
    call: str = "completion",
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WORKER,
            redis_url,
            api_base,
            str(start_at),
            str(lock_ttl),
            kind,
            call,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("kind", "latency", "lock_ttl"),
    [
        ("redis", 0.3, 30.0),
        ("tiered", 0.3, 30.0),  # a two-tier store locks in its shared tier
        ("redis", 2.0, 0.5),  # a call outliving the lock's TTL keeps extending it
    ],
)
def test_four_processes_four_tasks_one_upstream_call(
    redis_server: Any, kind: str, latency: float, lock_ttl: float
) -> None:
    redis_server.flush()
    with FakeOpenAIServer(latency=latency) as upstream:
        start_at = time.time() + 2.0  # all four processes are up by then
        workers = [
            spawn(redis_server.url, upstream.base_url, start_at, lock_ttl, kind) for _ in range(4)
        ]
        outputs = [w.communicate(timeout=60) for w in workers]
        assert all(w.returncode == 0 for w in workers), [err for _, err in outputs]
        statuses, _ = read(outputs)
        assert upstream.count("/v1/chat/completions") == 1
        assert len(statuses) == 16 and statuses.count("miss") == 1


def test_four_processes_embedding_one_corpus_make_one_batch_call(redis_server: Any) -> None:
    """Workers re-embedding one corpus at once (a batch job on several workers): one
    upstream batch between the four processes and their four tasks each."""
    redis_server.flush()
    with FakeOpenAIServer(latency=0.5) as upstream:
        start_at = time.time() + 2.0
        workers = [
            spawn(redis_server.url, upstream.base_url, start_at, call="embedding") for _ in range(4)
        ]
        outputs = [w.communicate(timeout=60) for w in workers]
        assert all(w.returncode == 0 for w in workers), [err for _, err in outputs]
        statuses, _ = read(outputs)
        assert upstream.count("/v1/embeddings") == 1
        assert len(statuses) == 16 and statuses.count("miss") == 1


def test_killed_lock_holder_frees_the_others_within_lock_ttl_plus_wait(redis_server: Any) -> None:
    redis_server.flush()
    with FakeOpenAIServer(latency=0.3) as upstream:
        upstream.delay_next(30)  # the first upstream call hangs: its caller holds the lock
        holder = spawn(redis_server.url, upstream.base_url, time.time(), lock_ttl=1.0)
        deadline = time.monotonic() + 15
        while upstream.count("/v1/chat/completions") == 0:
            assert time.monotonic() < deadline, "the holder never called upstream"
            time.sleep(0.02)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        others = [
            spawn(redis_server.url, upstream.base_url, time.time(), lock_ttl=1.0) for _ in range(3)
        ]
        outputs = [w.communicate(timeout=60) for w in others]
        assert all(w.returncode == 0 for w in others), [err for _, err in outputs]
        statuses, took = read(outputs)
        assert statuses.count("miss") == 1 and len(statuses) == 12
        assert upstream.count("/v1/chat/completions") == 2  # the dead holder's, then one more
        # at most what is left of the lock's TTL (1 s) + the next upstream call (0.3 s): well
        # inside ttl + wait (11 s), which a waiter left behind a dead holder's lock would take
        # (each worker's own calls timed, not its start-up: 21.8 s on a loaded machine)
        assert len(took) == 3 and max(took) < 1.0 + 10, took
