"""In-process client benchmark: deja.Client hits vs LiteLLM's, and deja's miss overhead.

Targets (client issue), on a 2-core machine: sync hit p50 <= 20 us, async <= 40 us, stream
hit (a ~35-chunk answer, consumed whole) <= 1 ms; miss overhead over a raw keep-alive POST to
the same upstream <= 150 us p50.

Everything runs against one local simulated OpenAI-compatible server (deja.testing), so
nothing but the libraries differs. LiteLLM 1.108.7 runs in its own venv
(.bench/litellm-venv, created on first use) with `litellm.Cache()` in memory and the same
`api_base`; its figures are measured in the same invocation and reported as ratios.

Hits: median over rounds of the mean of a batch. Miss overhead: per-call latencies of a deja
miss (unique prompt, stored) and of a raw httpx2 POST of the same body on a keep-alive
connection, interleaved call by call; the figure is p50(deja) - p50(raw).

    .venv/bin/python bench/inprocess.py [--rounds 30] [--no-litellm] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import orjson

import deja
from deja.stores.memory import MemoryStore
from deja.testing import FakeOpenAIServer, Reply

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / ".bench" / "litellm-venv"
LITELLM_VERSION = "1.108.7"
COMMAND = ".venv/bin/python bench/inprocess.py"
MESSAGES = [
    {"role": "system", "content": "You are the customer-support assistant of a retail bank."},
    {"role": "user", "content": "I ordered a new card two weeks ago and it still has not arrived."},
]
STREAM_MESSAGES = [{"role": "user", "content": "Tell me a story in about thirty-five words."}]
STORY = " ".join(f"word{i}" for i in range(35))


def reply(body: dict[str, Any]) -> Reply | None:
    if body.get("messages") == STREAM_MESSAGES:
        return Reply(STORY, chunks=35)
    return None


def batch_seconds(fn: Any, batch: int) -> float:
    started = time.perf_counter()
    for _ in range(batch):
        fn()
    return (time.perf_counter() - started) / batch


def deja_hits(base_url: str, rounds: int, batch: int) -> dict[str, float]:
    store = MemoryStore()
    client = deja.Client(cache=deja.Cache(store=store), api_base=base_url, api_key="sk-bench")
    aclient = deja.AsyncClient(
        cache=deja.AsyncCache(store=store), api_base=base_url, api_key="sk-bench"
    )
    client.completion(model="gpt-4o", messages=MESSAGES)
    for _ in client.completion(model="gpt-4o", messages=STREAM_MESSAGES, stream=True):  # type: ignore[union-attr]
        pass
    assert client.completion(model="gpt-4o", messages=MESSAGES).cache.status == "hit"

    def stream_hit() -> None:
        stream = client.completion(model="gpt-4o", messages=STREAM_MESSAGES, stream=True)
        n = sum(1 for _ in stream)  # type: ignore[union-attr]
        assert n >= 35, n

    async def async_batch() -> float:
        started = time.perf_counter()
        for _ in range(batch):
            await aclient.acompletion(model="gpt-4o", messages=MESSAGES)
        return (time.perf_counter() - started) / batch

    loop = asyncio.new_event_loop()
    sync_s, async_s, stream_s = [], [], []
    for _ in range(rounds):
        sync_s.append(
            batch_seconds(lambda: client.completion(model="gpt-4o", messages=MESSAGES), batch)
        )
        async_s.append(loop.run_until_complete(async_batch()))
        stream_s.append(batch_seconds(stream_hit, max(1, batch // 10)))
    loop.run_until_complete(aclient.aclose())
    loop.close()
    client.close()
    return {
        "sync_hit_us": statistics.median(sync_s) * 1e6,
        "async_hit_us": statistics.median(async_s) * 1e6,
        "stream_hit_ms": statistics.median(stream_s) * 1e3,
    }


def miss_overhead(base_url: str, calls: int) -> dict[str, float]:
    client = deja.Client(cache=deja.Cache(), api_base=base_url, api_key="sk-bench", max_retries=0)
    raw = httpx2.Client(limits=httpx2.Limits(max_connections=1))
    headers = {"authorization": "Bearer sk-bench", "content-type": "application/json"}
    url = f"{base_url}/chat/completions"
    deja_ms, raw_ms = [], []
    for i in range(calls + 20):
        messages = [{"role": "user", "content": f"unique question number {i}"}]
        body = orjson.dumps({"model": "gpt-4o", "messages": messages})
        started = time.perf_counter()
        response = raw.post(url, content=body, headers=headers)
        orjson.loads(response.content)
        raw_t = time.perf_counter() - started
        started = time.perf_counter()
        result = client.completion(
            model="gpt-4o", messages=[{"role": "user", "content": f"deja question {i}"}]
        )
        deja_t = time.perf_counter() - started
        assert result.cache.status == "miss"
        if i >= 20:  # warm-up: connection set-up, first imports
            raw_ms.append(raw_t * 1e3)
            deja_ms.append(deja_t * 1e3)
    raw.close()
    client.close()
    return {
        "raw_post_p50_ms": statistics.median(raw_ms),
        "deja_miss_p50_ms": statistics.median(deja_ms),
        "miss_overhead_us": (statistics.median(deja_ms) - statistics.median(raw_ms)) * 1e3,
    }


def litellm_python() -> Path:
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {LITELLM_VENV} with litellm=={LITELLM_VERSION} (once)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
            check=True,
        )
    return python


def litellm_hits(base_url: str, rounds: int, batch: int) -> dict[str, Any]:
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run(
        [
            str(litellm_python()),
            str(ROOT / "bench" / "_litellm_inprocess.py"),
            base_url,
            str(rounds),
            str(batch),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=900,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--miss-calls", type=int, default=400)
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with FakeOpenAIServer() as server:
        server.reply_with(reply)
        figures: dict[str, Any] = deja_hits(server.base_url, args.rounds, args.batch)
        figures |= miss_overhead(server.base_url, args.miss_calls)
        if not args.no_litellm:
            figures |= litellm_hits(
                server.base_url, max(5, args.rounds // 3), max(20, args.batch // 10)
            )
            figures["sync_vs_litellm"] = figures["litellm_sync_hit_us"] / figures["sync_hit_us"]
            figures["async_vs_litellm"] = figures["litellm_async_hit_us"] / figures["async_hit_us"]
            figures["stream_vs_litellm"] = (
                figures["litellm_stream_hit_ms"] / figures["stream_hit_ms"]
            )
    figures["machine"] = (
        f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"deja in-process client benchmark ({figures['machine']}), simulated upstream on loopback"
    )
    print(f"sync hit   p50 {figures['sync_hit_us']:8.1f} us  (target <= 20)")
    print(f"async hit  p50 {figures['async_hit_us']:8.1f} us  (target <= 40)")
    print(
        f"stream hit p50 {figures['stream_hit_ms']:8.3f} ms  (35-chunk answer consumed; target <= 1)"
    )
    print(
        f"miss       p50 {figures['deja_miss_p50_ms']:.3f} ms vs raw keep-alive POST "
        f"{figures['raw_post_p50_ms']:.3f} ms: overhead {figures['miss_overhead_us']:.0f} us (target <= 150)"
    )
    if "litellm_sync_hit_us" in figures:
        print(
            f"LiteLLM {LITELLM_VERSION}: sync hit {figures['litellm_sync_hit_us']:.0f} us "
            f"(deja x{figures['sync_vs_litellm']:.0f} faster), async {figures['litellm_async_hit_us']:.0f} us "
            f"(x{figures['async_vs_litellm']:.0f}), stream hit {figures['litellm_stream_hit_ms']:.2f} ms "
            f"(x{figures['stream_vs_litellm']:.0f})"
        )
    print(f"reproduce: {COMMAND}")


if __name__ == "__main__":
    main()
