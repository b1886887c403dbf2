"""LiteLLM's side of bench/inprocess.py; run by the separate LiteLLM venv, prints JSON.

python bench/_litellm_inprocess.py BASE_URL ROUNDS BATCH
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import litellm
from litellm.caching.caching import Cache

BASE_URL, ROUNDS, BATCH = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
MESSAGES = [
    {"role": "system", "content": "You are the customer-support assistant of a retail bank."},
    {"role": "user", "content": "I ordered a new card two weeks ago and it still has not arrived."},
]
STREAM_MESSAGES = [{"role": "user", "content": "Tell me a story in about thirty-five words."}]
KW = {"model": "openai/gpt-4o", "api_base": BASE_URL, "api_key": "sk-bench", "caching": True}

litellm.cache = Cache()  # in-memory, as `cache_params: {type: local}`


def timed(fn, batch: int) -> float:
    started = time.perf_counter()
    for _ in range(batch):
        fn()
    return (time.perf_counter() - started) / batch


def stream_hit() -> None:
    for _ in litellm.completion(messages=STREAM_MESSAGES, stream=True, **KW):
        pass


async def async_batch(batch: int) -> float:
    started = time.perf_counter()
    for _ in range(batch):
        await litellm.acompletion(messages=MESSAGES, **KW)
    return (time.perf_counter() - started) / batch


def main() -> None:
    litellm.completion(messages=MESSAGES, **KW)  # warm: the miss that fills the cache
    stream_hit()
    time.sleep(0.5)  # LiteLLM stores streamed answers in a background task
    sync_s, async_s, stream_s = [], [], []
    loop = asyncio.new_event_loop()
    loop.run_until_complete(litellm.acompletion(messages=MESSAGES, **KW))
    for _ in range(ROUNDS):
        sync_s.append(timed(lambda: litellm.completion(messages=MESSAGES, **KW), BATCH))
        async_s.append(loop.run_until_complete(async_batch(BATCH)))
        stream_s.append(timed(stream_hit, max(1, BATCH // 10)))
    print(
        json.dumps(
            {
                "litellm_sync_hit_us": statistics.median(sync_s) * 1e6,
                "litellm_async_hit_us": statistics.median(async_s) * 1e6,
                "litellm_stream_hit_ms": statistics.median(stream_s) * 1e3,
                "litellm_version": litellm.__version__
                if hasattr(litellm, "__version__")
                else "1.108.7",
            }
        )
    )


if __name__ == "__main__":
    main()
