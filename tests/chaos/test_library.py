"""`deja.Client` in threads and `deja.AsyncClient` in tasks, at once, on one store, in front
of a simulated OpenAI upstream, under a planned mixed load.

Calls: plain and streamed chat (streams read to the end, closed early, or, on the async
side, cancelled after a few milliseconds), embeddings, bursts of identical calls from both
sides, and ``delete_tag`` / ``clear(namespace=...)`` while the rest runs. Faults: 503s,
429s, slow answers, dropped connections and cut answers. An upstream error must reach the
caller as a ``deja.ProviderError``, and only while a fault is armed; nothing else may raise.
"""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

import deja
from deja.testing import FakeOpenAIServer
from tests.chaos.checks import (
    Answer,
    ChatCase,
    Checker,
    EmbeddingsCase,
    Ledger,
    Oracle,
    StreamAssembly,
    choices_of,
)
from tests.chaos.openai_world import (
    EMBEDDING_DIM,
    EMBEDDING_MODEL,
    Upstreams,
    draw_chat,
    draw_embeddings,
    draw_fault,
)
from tests.chaos.proxy import BATCH, NAMESPACES, TAGS
from tests.stores.redis_servers import ValkeyServer

THREADS = 16
CALL_TIMEOUT = 30.0  # the clients' own timeout
DEADLINE = 90.0  # a call unanswered for this long is a violation (a hang)
WEIGHTS = {
    "chat": 35,
    "stream": 25,
    "leave": 8,
    "cancel": 6,
    "embeddings": 14,
    "burst": 6,
    "admin": 4,
    "fault": 5,
}


@dataclass(frozen=True)
class ChatCall:
    """A chat call from a thread (``sync``) or a task (``async``). A caller may stop
    reading a stream after ``leave_after`` chunks (closing it), or have its task cancelled
    after ``cancel_after`` seconds (async only)."""

    side: str
    case: ChatCase
    stream: bool = False
    include_usage: bool = False
    leave_after: int | None = None
    cancel_after: float | None = None

    def kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.case.body)
        if self.stream:
            kwargs["stream"] = True
            if self.include_usage:
                kwargs["stream_options"] = {"include_usage": True}
        return kwargs


@dataclass(frozen=True)
class EmbeddingsCall:
    side: str
    case: EmbeddingsCase


@dataclass(frozen=True)
class AdminCall:
    side: str
    tag: str | None = None
    namespace: str | None = None


Call = ChatCall | EmbeddingsCall | AdminCall


@dataclass
class Round:
    """Calls made at once (each on its side), after arming the faults."""

    calls: list[Call] = field(default_factory=list)
    faults: list[Any] = field(default_factory=list)


def plan(rng: random.Random, ops: int, oracle: Oracle) -> list[Round]:
    """``ops`` operations in rounds of about :data:`BATCH` calls, each made on a side drawn
    at random (cancelling is for tasks only)."""
    kinds, shares = list(WEIGHTS), list(WEIGHTS.values())
    rounds, current = [], Round()

    def chat() -> ChatCase:
        return draw_chat(rng, oracle, routes=["gpt-4o"])

    for _ in range(ops):
        kind = rng.choices(kinds, shares)[0]
        side = rng.choice(["sync", "async"])
        if kind == "chat":
            current.calls.append(ChatCall(side, chat()))
        elif kind in ("stream", "leave"):
            leave = rng.randint(1, 3) if kind == "leave" else None
            current.calls.append(ChatCall(side, chat(), True, rng.random() < 0.5, leave))
        elif kind == "cancel":
            after = rng.choice([0.001, 0.005, 0.02, 0.05])
            current.calls.append(ChatCall("async", chat(), rng.random() < 0.7, cancel_after=after))
        elif kind == "embeddings":
            case = draw_embeddings(rng, oracle, routes=[EMBEDDING_MODEL])
            current.calls.append(EmbeddingsCall(side, case))
        elif kind == "burst":
            current.calls += _burst(rng, chat())
        elif kind == "admin":
            if rng.random() < 0.5:
                current.calls.append(AdminCall(side, tag=rng.choice(TAGS)))
            else:
                current.calls.append(AdminCall(side, namespace=rng.choice(NAMESPACES)))
        else:
            current.faults.append(draw_fault(rng, "a"))
        if len(current.calls) >= BATCH:
            rounds.append(current)
            current = Round()
    rounds.append(current)
    return rounds


def _burst(rng: random.Random, drawn: ChatCase) -> list[Call]:
    """3 to 6 identical calls (single-flight within each side), some of them left early."""
    body = {k: v for k, v in drawn.body.items() if k != "cache"}
    case = replace(drawn, body=body, namespace=None)
    burst: list[Call] = []
    for _ in range(rng.randint(3, 6)):
        side, stream = rng.choice(["sync", "async"]), rng.random() < 0.5
        leave = rng.randint(1, 3) if stream and rng.random() < 0.2 else None
        cancel = rng.choice([0.005, 0.02]) if side == "async" and rng.random() < 0.15 else None
        burst.append(ChatCall(side, case, stream, rng.random() < 0.5, leave, cancel))
    return burst


class Callers:
    """The two clients, and how each side makes a planned call and checks its answer."""

    def __init__(self, client: deja.Client, aclient: deja.AsyncClient, checker: Checker) -> None:
        self.client = client
        self.aclient = aclient
        self.checker = checker
        self.ledger = checker.ledger

    async def run(self, rounds: list[Round], upstreams: Upstreams) -> None:
        """Make each round's calls at once (threads and tasks), after arming its faults."""
        loop = asyncio.get_running_loop()
        async with self.aclient:
            with ThreadPoolExecutor(THREADS) as threads:
                for number, current in enumerate(rounds):
                    for fault in current.faults:
                        upstreams.arm(fault)
                        self.checker.fault_batches.add(number)
                        self.ledger.count("faults")
                    jobs = [
                        loop.run_in_executor(threads, self._sync, number, call)
                        if call.side == "sync"
                        else asyncio.ensure_future(self._async(number, call))
                        for call in current.calls
                    ]
                    await asyncio.gather(
                        *(
                            self._in_time(job, number, call)
                            for job, call in zip(jobs, current.calls, strict=True)
                        )
                    )
                    upstreams.disarm()

    async def _in_time(self, job: asyncio.Future[None], number: int, call: Call) -> None:
        try:
            async with asyncio.timeout(DEADLINE):
                await job
        except TimeoutError:
            self.ledger.violation("no_answer_in_time", seconds=DEADLINE, **_what(call, number))

    def _sync(self, number: int, call: Call) -> None:
        what = _what(call, number)
        try:
            if isinstance(call, AdminCall):
                self._admin(call)
                self.ledger.count("admin calls")
            elif isinstance(call, EmbeddingsCall):
                response = self.client.embedding(**call.case.body)
                self._embeddings(call, response.cache.status, response.to_dict(), what)
            elif not call.stream:
                response = self.client.completion(**call.kwargs())
                self._chat(call, _answer(response), what)
            else:
                assembly = StreamAssembly()
                with self.client.completion(**call.kwargs()) as stream:
                    for chunk in stream:
                        assembly.add(chunk.to_dict())
                        if call.leave_after is not None and assembly.events >= call.leave_after:
                            self.ledger.count("callers that left a stream")
                            return
                info = stream.cache
                self._chat(call, assembly.answer(cache=info.status, key=info.key, done=True), what)
        except deja.ProviderError as exc:
            self.checker.error(number, what, status=exc.status_code, body=repr(exc))
        except Exception as exc:
            self.ledger.violation("unexpected_exception", error=_traceback(exc), **what)

    async def _async(self, number: int, call: Call) -> None:
        what = _what(call, number)
        try:
            if isinstance(call, ChatCall) and call.cancel_after is not None:
                try:
                    async with asyncio.timeout(call.cancel_after):
                        await self._async_call(call, what)
                except TimeoutError:
                    self.ledger.count("callers cancelled")
            else:
                await self._async_call(call, what)
        except deja.ProviderError as exc:
            self.checker.error(number, what, status=exc.status_code, body=repr(exc))
        except Exception as exc:
            self.ledger.violation("unexpected_exception", error=_traceback(exc), **what)

    async def _async_call(self, call: Call, what: dict[str, Any]) -> None:
        if isinstance(call, AdminCall):
            await self._aadmin(call)
            self.ledger.count("admin calls")
        elif isinstance(call, EmbeddingsCall):
            response = await self.aclient.aembedding(**call.case.body)
            self._embeddings(call, response.cache.status, response.to_dict(), what)
        elif not call.stream:
            self._chat(call, _answer(await self.aclient.acompletion(**call.kwargs())), what)
        else:
            assembly = StreamAssembly()
            async with await self.aclient.acompletion(**call.kwargs()) as stream:
                async for chunk in stream:
                    assembly.add(chunk.to_dict())
                    if call.leave_after is not None and assembly.events >= call.leave_after:
                        self.ledger.count("callers that left a stream")
                        return
            info = stream.cache
            self._chat(call, assembly.answer(cache=info.status, key=info.key, done=True), what)

    def _chat(self, call: ChatCall, answer: Answer, what: dict[str, Any]) -> None:
        self.ledger.count(f"{call.side} {'stream' if call.stream else 'chat'} {answer.cache}")
        self.checker.chat(call.case, answer, tenant="", what=what)

    def _embeddings(
        self, call: EmbeddingsCall, status: str, data: dict[str, Any], what: dict[str, Any]
    ) -> None:
        self.ledger.count(f"{call.side} embeddings {status}")
        self.checker.embeddings(call.case, data, what=what)

    def _admin(self, call: AdminCall) -> None:
        assert self.client.cache is not None
        if call.tag is not None:
            self.client.cache.delete_tag(call.tag)
        else:
            self.client.cache.clear(namespace=call.namespace)

    async def _aadmin(self, call: AdminCall) -> None:
        assert self.aclient.cache is not None
        if call.tag is not None:
            await self.aclient.cache.delete_tag(call.tag)
        else:
            await self.aclient.cache.clear(namespace=call.namespace)


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc, limit=-6))


def _answer(response: Any) -> Answer:
    data = response.to_dict()
    info = response.cache
    return Answer(info.status, info.key, data.get("id"), choices_of(data), data.get("usage"))


def _what(call: Call, number: int) -> dict[str, Any]:
    """What a violation says about a call: its side, round, and arguments."""
    if isinstance(call, ChatCall):
        kind = f"{call.side} {'stream' if call.stream else 'chat'}"
        if call.leave_after is not None:
            kind += f" (caller leaves after {call.leave_after} chunks)"
        if call.cancel_after is not None:
            kind += f" (caller cancelled after {call.cancel_after} s)"
        return {"op": kind, "batch": number, "request": call.kwargs()}
    if isinstance(call, EmbeddingsCall):
        return {"op": f"{call.side} embeddings", "batch": number, "request": call.case.body}
    target = {"tag": call.tag} if call.tag is not None else {"namespace": call.namespace}
    return {"op": f"{call.side} admin", "batch": number, "request": target}


STORES: dict[str, Callable[[Path, ValkeyServer], Any]] = {
    "memory": lambda directory, valkey: deja.MemoryStore(),
    "disk": lambda directory, valkey: deja.DiskStore(directory / "disk"),
    "redis": lambda directory, valkey: deja.RedisStore(url=valkey.url),
}


@pytest.mark.parametrize("store", list(STORES))
def test_clients_keep_every_invariant_on_one_store(
    store: str, ledger: Ledger, valkey: ValkeyServer, tmp_path: Path
) -> None:
    rng = random.Random(f"{ledger.seed}:{ledger.run}")
    started = time.monotonic()
    valkey.flush()  # our own server
    shared = STORES[store](tmp_path, valkey)
    with (
        Oracle(embedding_dim=EMBEDDING_DIM) as oracle,
        FakeOpenAIServer(chunk_delay=0.002, embedding_dim=EMBEDDING_DIM) as upstream,
    ):
        rounds = plan(rng, ledger.ops, oracle)
        options: dict[str, Any] = {
            "api_key": "sk-up",
            "api_base": upstream.base_url,
            "max_retries": 1,
            "timeout": CALL_TIMEOUT,
        }
        aclient = deja.AsyncClient(cache=deja.AsyncCache(store=shared, ttl=600), **options)
        with deja.Client(cache=deja.Cache(store=shared, ttl=600), **options) as client:
            callers = Callers(client, aclient, Checker(ledger))
            asyncio.run(callers.run(rounds, Upstreams({"a": upstream}, oracle)))
    print(ledger.summary(time.monotonic() - started))
    ledger.verdict()
