"""Proxy app benchmark: one cache hit through ``ProxyApp.__call__`` in process (no network,
no server): the proxy's own work per hit (body, auth, route, controls, key, lookup, headers).

A prepared chat request (system + user message, temperature 0) against the in-memory cache:
one miss against the simulated upstream, then ``--hits`` hits; prints the median of the
last 5/6 of them in microseconds. To compare two commits, run it alternately with each on
``PYTHONPATH`` (``git worktree add /tmp/base REV``; ``PYTHONPATH=/tmp/base/src``) and report
the medians of the pairs: the machine's noise moves single runs by several microseconds.

    .venv/bin/python bench/proxy_app.py [--hits 6000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

import orjson

from deja.config import parse_config
from deja.server.app import ProxyApp
from deja.testing import FakeOpenAIServer

COMMAND = ".venv/bin/python bench/proxy_app.py"


async def measure(hits: int) -> float:
    with FakeOpenAIServer() as upstream:
        litellm = {"model": "openai/gpt-4o", "api_base": upstream.base_url, "api_key": "k"}
        config = {
            "model_list": [{"model_name": "gpt-4o", "litellm_params": litellm}],
            "caching": {"type": "memory"},
            "general_settings": {"master_key": "sk-m"},
        }
        app = ProxyApp(parse_config(config, base_dir=tempfile.gettempdir()))
        body = orjson.dumps(
            {
                "model": "gpt-4o",
                "messages": [
                    {"role": "system", "content": "You are helpful."},
                    {"role": "user", "content": "What is the capital of France?"},
                ],
                "temperature": 0,
            }
        )
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [
                (b"authorization", b"Bearer sk-m"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "query_string": b"",
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)  # the miss
        times = []
        for _ in range(hits):
            sent.clear()
            started = time.perf_counter()
            await app(scope, receive, send)
            times.append(time.perf_counter() - started)
        if sent[0]["status"] != 200:
            raise SystemExit(f"the proxy answered {sent[0]['status']}")
        return statistics.median(times[hits // 6 :]) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=6000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    p50 = asyncio.run(measure(args.hits))
    if args.json:
        print(json.dumps({"hit_p50_us": p50, "hits": args.hits}))
    else:
        print(f"proxy app hit p50: {p50:.1f} us ({args.hits} hits)\n{COMMAND}")


if __name__ == "__main__":
    main()
