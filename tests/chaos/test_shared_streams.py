"""Identical streams shared live while some of their readers leave: the load that found a
chunk lost from a shared stream (and the cut answer stored), and readers left hanging when
one left while the answer was being stored.

Each trial sends 4 identical streamed requests at once (single-flight: one upstream stream,
its chunks fanned out), 2 of whose clients leave after a few events; once they are done, a
plain identical request. Every reader that stays must get the whole answer and ``[DONE]``,
and the plain request the whole answer (a hit: the stored answer must be whole too). The
trials rotate over OpenAI, Anthropic, Bedrock and Gemini (``n=2`` on every other one).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deja.testing import FakeOpenAIServer
from tests.chaos.checks import ChatCase, Checker, Choice, Ledger, Oracle, identity
from tests.chaos.providers_world import model_list, providers
from tests.chaos.proxy import (
    TENANTS,
    Batch,
    ChatOp,
    Op,
    ProxyDriver,
    deployment,
    proxy_config,
    serve,
)
from tests.stores.redis_servers import ValkeyServer

pytest.importorskip("botocore")

MODELS = ("gpt-4o", "claude", "bedrock", "gemini")
TRIALS_AT_ONCE = 15


class Calm:
    """Upstreams without faults: the readers that leave are the only trouble here."""

    def arm(self, fault: Any) -> None:
        raise AssertionError("no faults in this run")

    def disarm(self) -> None:
        pass


def trial(rng: random.Random, number: int, oracle: Oracle, api_key: str) -> list[ChatOp]:
    """One trial's streams (two of them left early), then its plain request."""
    model = MODELS[number % len(MODELS)]
    n = 2 if model == "gemini" and number // len(MODELS) % 2 else 1
    question = f"Tell me something about topic number {number} please"
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": question}]}
    if n > 1:
        body["n"] = n
    want = tuple(Choice(text, "stop") for text in oracle.answers(question, n))
    case = ChatCase(body, question, identity(body, keyed_as=model), want)
    leave = rng.randint(2, 9)
    streams = [
        ChatOp(case, api_key, stream=True, include_usage=rng.random() < 0.5, leave_after=after)
        for after in (None, leave, None, leave + 1)
    ]
    return [*streams, ChatOp(case, api_key)]


def plan(rng: random.Random, trials: int, oracle: Oracle, api_key: str) -> list[Batch]:
    """Batches of :data:`TRIALS_AT_ONCE` trials' streams, each with the plain requests of
    the trials of the batch before."""
    batches: list[Batch] = []
    follow_ups: list[Op] = []
    for first in range(0, trials, TRIALS_AT_ONCE):
        batch = Batch(ops=follow_ups)
        follow_ups = []
        for number in range(first, min(first + TRIALS_AT_ONCE, trials)):
            *streams, plain = trial(rng, number, oracle, api_key)
            batch.ops += streams
            follow_ups.append(plain)
        batches.append(batch)
    batches.append(Batch(ops=follow_ups))
    return batches


@dataclass(frozen=True)
class Scenario:
    store: str  # memory (the lost chunk) or tiered (the hang, while the L2 write is awaited)
    workers: int

    @property
    def name(self) -> str:
        return f"{self.store}-{self.workers}w"

    def caching(self, valkey: ValkeyServer) -> dict[str, Any]:
        if self.store == "memory":
            return {"type": "memory", "ttl": 600}
        valkey.flush()  # our own server
        l2 = {"type": "redis", "url": valkey.url}
        return {"type": "tiered", "l1": {"type": "memory"}, "l1_ttl": 60, "l2": l2, "ttl": 600}


SCENARIOS = [Scenario("memory", 1), Scenario("tiered", 2)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_shared_streams_survive_readers_that_leave(
    scenario: Scenario, ledger: Ledger, valkey: ValkeyServer, tmp_path: Path
) -> None:
    rng = random.Random(f"{ledger.seed}:{ledger.run}")
    started = time.monotonic()
    trials = max(1, ledger.ops // 3)  # 5 requests each: about as long as the other runs
    with (
        Oracle(embedding_dim=8) as oracle,
        FakeOpenAIServer(chunk_delay=0.001) as openai,
        providers(chunk_delay=0.001) as servers,
    ):
        gpt = deployment("gpt-4o", model="openai/gpt-4o", api_base=openai.base_url, api_key="sk")
        config = proxy_config([gpt, *model_list(*servers)], scenario.caching(valkey))
        api_key = rng.choice(sorted(TENANTS))
        batches = plan(rng, trials, oracle, api_key)
        with serve(config, tmp_path, workers=scenario.workers, ledger=ledger) as base:
            driver = ProxyDriver(base, Calm(), Checker(ledger), concurrency=TRIALS_AT_ONCE * 5)
            asyncio.run(driver.run(batches))
    ledger.count("trials", trials)
    print(ledger.summary(time.monotonic() - started))
    ledger.verdict()
