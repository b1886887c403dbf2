"""`deja serve` in front of simulated Anthropic, Bedrock and Gemini upstreams, under a planned
mixed load, in OpenAI's format on both sides of the proxy.

Deployments: Claude on Anthropic and on Bedrock (SigV4), Gemini on Google AI; with and
without ``cache_control_injection_points`` (provider prompt caching, Gemini context caches).
Requests: a long system prompt, images, a tool round trip in the history, tool-calling
answers, ``n=2`` on Gemini. Beyond the invariants of every run, a hit has the usage, finish
reasons and tool calls of its miss, and usage adds up. Faults: 503s, 429s, Anthropic's 529,
slow upstreams, Bedrock streams cut or ended by an exception event.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from tests.chaos.checks import Checker, Ledger, Oracle
from tests.chaos.providers_world import Upstreams, draw_chat, draw_fault, model_list, providers
from tests.chaos.proxy import Load, ProxyDriver, Scenario, plan, proxy_config, serve
from tests.stores.redis_servers import ValkeyServer

pytest.importorskip("botocore")


SCENARIOS = [Scenario("tiered", 2), Scenario("memory", 1, semantic=True)]
LOAD_WEIGHTS = {"chat": 35, "stream": 27, "leave": 10, "burst": 16, "admin": 6, "fault": 6}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_proxy_keeps_every_invariant_in_front_of_native_providers(
    scenario: Scenario, ledger: Ledger, valkey: ValkeyServer, tmp_path: Path
) -> None:
    rng = random.Random(f"{ledger.seed}:{ledger.run}")
    started = time.monotonic()
    with Oracle(embedding_dim=8) as oracle, providers(chunk_delay=0.003) as servers:
        load = Load(
            chat=lambda r: draw_chat(r, oracle),
            fault=draw_fault,
            weights=LOAD_WEIGHTS,
            include_usage=0.6,
        )
        batches = plan(rng, ledger.ops, load)
        upstreams = Upstreams(*servers, oracle)
        config = proxy_config(model_list(*servers), scenario.caching(tmp_path, valkey))
        with serve(config, tmp_path, workers=scenario.workers, ledger=ledger) as base:
            asyncio.run(ProxyDriver(base, upstreams, Checker(ledger)).run(batches))
    print(ledger.summary(time.monotonic() - started))
    ledger.verdict()
