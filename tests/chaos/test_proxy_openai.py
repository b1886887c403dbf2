"""`deja serve` in front of two simulated OpenAI upstreams, under a planned mixed load.

Routes: one deployment (``gpt-4o``), a weighted pair with a failover to another model
(``multi``), wildcards (``openai/*``, ``wild-*``), and embeddings on one deployment or two.
Faults: 503s, 429s, slow answers, dropped connections, and answers cut short (streams end
without ``[DONE]``, bodies halfway), which must never be stored.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from deja.testing import FakeOpenAIServer
from tests.chaos.checks import Checker, Ledger, Oracle
from tests.chaos.openai_world import (
    EMBEDDING_DIM,
    EMBEDDING_MODEL,
    Upstreams,
    draw_chat,
    draw_embeddings,
    draw_fault,
)
from tests.chaos.proxy import Load, ProxyDriver, Scenario, deployment, plan, proxy_config, serve
from tests.stores.redis_servers import ValkeyServer


def model_list(a: FakeOpenAIServer, b: FakeOpenAIServer) -> list[dict[str, Any]]:
    def on(server: FakeOpenAIServer, name: str, model: str, **extra: Any) -> dict[str, Any]:
        return deployment(name, model=model, api_base=server.base_url, api_key="sk-up", **extra)

    return [
        on(a, "gpt-4o", "openai/gpt-4o"),
        on(b, "gpt-4o-mini", "openai/gpt-4o-mini"),
        on(a, "multi", "openai/gpt-4o", order=1, weight=3),
        on(b, "multi", "openai/gpt-4o", order=1, weight=1),
        on(b, "multi", "openai/gpt-4o-mini", order=2),
        on(a, "openai/*", "openai/*"),
        on(a, "wild-*", "openai/*"),
        on(a, EMBEDDING_MODEL, f"openai/{EMBEDDING_MODEL}"),
        on(a, "emb-multi", f"openai/{EMBEDDING_MODEL}", weight=1),
        on(b, "emb-multi", f"openai/{EMBEDDING_MODEL}", weight=1),
    ]


SCENARIOS = [Scenario("memory", 1), Scenario("redis", 2), Scenario("disk", 2, semantic=True)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_proxy_keeps_every_invariant_under_mixed_load(
    scenario: Scenario, ledger: Ledger, valkey: ValkeyServer, tmp_path: Path
) -> None:
    rng = random.Random(f"{ledger.seed}:{ledger.run}")
    started = time.monotonic()
    with (
        Oracle(embedding_dim=EMBEDDING_DIM) as oracle,
        FakeOpenAIServer(chunk_delay=0.002, embedding_dim=EMBEDDING_DIM) as a,
        FakeOpenAIServer(chunk_delay=0.002, embedding_dim=EMBEDDING_DIM) as b,
    ):
        load = Load(
            chat=lambda r: draw_chat(r, oracle),
            fault=draw_fault,
            embeddings=lambda r: draw_embeddings(r, oracle),
        )
        batches = plan(rng, ledger.ops, load)
        upstreams = Upstreams({"a": a, "b": b}, oracle)
        config = proxy_config(model_list(a, b), scenario.caching(tmp_path, valkey))
        with serve(config, tmp_path, workers=scenario.workers, ledger=ledger) as base:
            asyncio.run(ProxyDriver(base, upstreams, Checker(ledger)).run(batches))
    print(ledger.summary(time.monotonic() - started))
    ledger.verdict()
