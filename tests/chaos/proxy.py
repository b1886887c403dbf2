"""`deja serve` as a real process, and a driver that puts a planned load through it.

A plan is a list of batches drawn from the seed before anything runs: every request (its
body, tenant, stream flags, when its client leaves), admin call and upstream fault. A batch
arms its faults, sends its requests at once and waits for every answer; then the upstreams
forget the faults nobody used, so an error answer is excused only by a fault armed in its
own batch or just before (:data:`tests.chaos.checks.FAULT_REACH`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx2
import orjson
import yaml

from tests.chaos.checks import (
    Answer,
    ChatCase,
    Checker,
    EmbeddingsCase,
    Ledger,
    StreamAssembly,
    choices_of,
)
from tests.stores.redis_servers import ValkeyServer, free_port

MASTER = "sk-master"
TENANTS = {"sk-team-a": "team-a", "sk-team-b": "team-b", "sk-team-c": "team-c"}
TAGS = ("tagA", "tagB", "tagC")
NAMESPACES = ("ns1", "ns2")

BATCH = 30  # requests sent at once
CONCURRENCY = 40
REQUEST_TIMEOUT = 60.0  # a request unanswered for this long is a violation (a hang)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Scenario:
    """One proxy run's cache: its store (memory, disk, redis, or tiered: memory over valkey,
    invalidated over its pub/sub), its worker count, with or without the semantic tier."""

    store: str
    workers: int
    semantic: bool = False

    @property
    def name(self) -> str:
        return f"{self.store}{'-semantic' if self.semantic else ''}-{self.workers}w"

    def caching(self, directory: Path, valkey: ValkeyServer) -> dict[str, Any]:
        store: dict[str, Any] = {"type": self.store}
        if self.store == "disk":
            store["directory"] = str(directory / "disk")
        elif self.store in ("redis", "tiered"):
            valkey.flush()  # our own server
            if self.store == "redis":
                store["url"] = valkey.url
            else:
                l2 = {"type": "redis", "url": valkey.url}
                store = {"type": "tiered", "l1": {"type": "memory"}, "l1_ttl": 60, "l2": l2}
        if not self.semantic:
            return {**store, "ttl": 600}
        caching: dict[str, Any] = {"type": "semantic", "store": store, "ttl": 600}
        # beside a disk store the index has its directory; a memory store's is each worker's
        if self.store not in ("disk", "memory"):
            caching["index_directory"] = str(directory / "index")
        return caching


def proxy_config(model_list: list[dict[str, Any]], caching: dict[str, Any]) -> dict[str, Any]:
    """A configuration with these deployments and cache, a master key and one virtual key
    per tenant of :data:`TENANTS`."""
    return {
        "model_list": model_list,
        "caching": caching,
        "general_settings": {
            "master_key": MASTER,
            "virtual_keys": [{"key": k, "tenant": t} for k, t in TENANTS.items()],
        },
    }


def deployment(name: str, **params: Any) -> dict[str, Any]:
    """A ``model_list`` entry: ``name`` served with these ``litellm_params``."""
    return {"model_name": name, "litellm_params": params}


@contextlib.contextmanager
def serve(
    config: dict[str, Any], directory: Path, *, workers: int, ledger: Ledger
) -> Iterator[str]:
    """``deja serve`` with ``config`` on a free port, yielding its base URL once it answers.

    Unlike tests/server/test_e2e.py's ``serve``, the log goes to ``directory/proxy.log``,
    not a pipe (thousands of requests would fill one and stall the proxy). On the way out
    the proxy must stop on SIGTERM within :data:`STOP_TIMEOUT` and its log must hold no
    traceback, or the ledger records it.
    """
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The host's metrics directory and cloud credentials stay out of the proxy's way.
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PROMETHEUS_MULTIPROC_DIR" and not k.startswith("AWS_")
    }
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    log = directory / "proxy.log"
    command = [sys.executable, "-m", "deja.cli", "serve", "--config", str(path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"deja serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            ledger.violation("proxy_did_not_stop", seconds=STOP_TIMEOUT, log=str(log))
        text = log.read_text(errors="replace")
        if "Traceback" in text:
            excerpt = text[text.index("Traceback") :][:3000]
            ledger.violation("traceback_in_proxy_log", log=str(log), excerpt=excerpt)


def _healthy(base: str) -> bool:
    try:
        return httpx2.get(f"{base}/health", timeout=0.5).status_code == 200
    except httpx2.TransportError:
        return False


# -- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatOp:
    """A chat request; a client that leaves a stream after ``leave_after`` events."""

    case: ChatCase
    api_key: str
    stream: bool = False
    include_usage: bool = False
    leave_after: int | None = None

    def body(self) -> dict[str, Any]:
        """The request's body as sent."""
        body = dict(self.case.body)
        if self.stream:
            body["stream"] = True
            if self.include_usage:
                body["stream_options"] = {"include_usage": True}
        return body


@dataclass(frozen=True)
class EmbeddingsOp:
    """An embeddings request, as one tenant."""

    case: EmbeddingsCase
    api_key: str


@dataclass(frozen=True)
class AdminOp:
    """A call of an admin route, with the master key."""

    path: str
    body: dict[str, Any]


Op = ChatOp | EmbeddingsOp | AdminOp


@dataclass
class Batch:
    """Requests sent at once, after arming the faults; then a pause."""

    ops: list[Op] = field(default_factory=list)
    faults: list[Any] = field(default_factory=list)
    pause: float = 0.0  # seconds before the next batch


@dataclass(frozen=True)
class Load:
    """How a world draws its load: chat cases, embeddings requests (if it has any), faults,
    and the weight of each kind of operation."""

    chat: Callable[[random.Random], ChatCase]
    fault: Callable[[random.Random], Any]
    embeddings: Callable[[random.Random], EmbeddingsCase] | None = None
    weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "chat": 35,
            "stream": 25,
            "leave": 8,
            "embeddings": 14,
            "burst": 8,
            "admin": 5,
            "fault": 5,
        }
    )
    include_usage: float = 0.5  # how often a stream asks for its usage


def plan(rng: random.Random, ops: int, load: Load) -> list[Batch]:
    """``ops`` operations in batches of about :data:`BATCH` requests.

    An operation is a chat request (plain, streamed, or streamed by a client that leaves),
    an embeddings request, a burst of 3 to 6 identical requests (single-flight: some from
    other tenants, some streamed, some left early), an admin call or an upstream fault.
    """
    weights = dict(load.weights)
    if load.embeddings is None:
        weights.pop("embeddings", None)
    kinds, shares = list(weights), list(weights.values())
    keys = list(TENANTS)
    batches, batch = [], Batch()
    for _ in range(ops):
        kind = rng.choices(kinds, shares)[0]
        key = rng.choice(keys)
        if kind == "chat":
            batch.ops.append(ChatOp(load.chat(rng), key))
        elif kind in ("stream", "leave"):
            leave = rng.randint(1, 4) if kind == "leave" else None
            usage = rng.random() < load.include_usage
            batch.ops.append(ChatOp(load.chat(rng), key, True, usage, leave))
        elif kind == "embeddings":
            assert load.embeddings is not None
            batch.ops.append(EmbeddingsOp(load.embeddings(rng), key))
        elif kind == "burst":
            batch.ops += _burst(rng, load, key)
        elif kind == "admin":
            batch.ops.append(_admin(rng, load))
        else:
            batch.faults.append(load.fault(rng))
        if len(batch.ops) >= BATCH:
            batch.pause = rng.choice([0, 0, 0.05])
            batches.append(batch)
            batch = Batch()
    batches.append(batch)
    return batches


def _burst(rng: random.Random, load: Load, key: str) -> list[Op]:
    """3 to 6 identical requests (no cache options: one key for each tenant among them)."""
    drawn = load.chat(rng)
    body = {k: v for k, v in drawn.body.items() if k != "cache"}
    case = replace(drawn, body=body, namespace=None)
    burst: list[Op] = []
    for _ in range(rng.randint(3, 6)):
        other = rng.choice(list(TENANTS)) if rng.random() < 0.3 else key
        stream = rng.random() < 0.5
        leave = rng.randint(1, 3) if stream and rng.random() < 0.3 else None
        usage = stream and rng.random() < load.include_usage
        burst.append(ChatOp(case, other, stream, usage, leave))
    return burst


def _admin(rng: random.Random, load: Load) -> AdminOp:
    """Invalidate a tag or a namespace, or delete a request's entry; for one tenant or all."""
    choice = rng.random()
    body: dict[str, Any]
    if choice < 0.4:
        path, body = "/cache/invalidate", {"tag": rng.choice(TAGS)}
    elif choice < 0.6:
        path, body = "/cache/invalidate", {"namespace": rng.choice(NAMESPACES)}
    else:
        request = {k: v for k, v in load.chat(rng).body.items() if k != "cache"}
        path, body = "/cache/delete", {"request": request}
    if rng.random() < 0.5:
        body["tenant"] = rng.choice(list(TENANTS.values()))
    return AdminOp(path, body)


def controls(rng: random.Random) -> tuple[dict[str, Any], str | None]:
    """Random per-request cache options (``{}`` most often) and the namespace among them."""
    control: dict[str, Any] = {}
    namespace = None
    if rng.random() < 0.15:
        namespace = control["namespace"] = rng.choice(NAMESPACES)
    if rng.random() < 0.2:
        control["tags"] = [rng.choice(TAGS)]
    draw = rng.random()
    if draw < 0.05:
        control["no-cache"] = True
    elif draw < 0.1:
        control["no-store"] = True
    elif draw < 0.15:
        control["ttl"] = rng.choice([1, 5, 60])
    return control, namespace


# -- the driver -------------------------------------------------------------------------------


class World(Protocol):
    """The upstreams behind the proxy: they arm a planned fault, and forget unused ones."""

    def arm(self, fault: Any) -> None: ...

    def disarm(self) -> None: ...


class ProxyDriver:
    """Sends a plan's batches to the proxy and checks every answer."""

    def __init__(
        self, base: str, world: World, checker: Checker, *, concurrency: int = CONCURRENCY
    ) -> None:
        self.base = base
        self.world = world
        self.checker = checker
        self.ledger = checker.ledger
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self, batches: Sequence[Batch]) -> None:
        limits = httpx2.Limits(max_connections=200, max_keepalive_connections=50)
        timeout = httpx2.Timeout(REQUEST_TIMEOUT)
        async with httpx2.AsyncClient(base_url=self.base, timeout=timeout, limits=limits) as http:
            for number, batch in enumerate(batches):
                for fault in batch.faults:
                    self.world.arm(fault)
                    self.checker.fault_batches.add(number)
                    self.ledger.count("faults")
                await asyncio.gather(*(self._one(http, number, op) for op in batch.ops))
                self.world.disarm()
                await asyncio.sleep(batch.pause)

    async def _one(self, http: httpx2.AsyncClient, number: int, op: Op) -> None:
        async with self._slots:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT + 30):
                    if isinstance(op, ChatOp):
                        await self._chat(http, number, op)
                    elif isinstance(op, EmbeddingsOp):
                        await self._embeddings(http, number, op)
                    else:
                        await self._admin(http, op)
            except (TimeoutError, httpx2.TimeoutException) as exc:
                self.ledger.violation("no_answer_in_time", error=repr(exc), **_what(op, number))
            except httpx2.TransportError as exc:
                self.ledger.violation("connection_failed", error=repr(exc), **_what(op, number))
            except ValueError as exc:  # a body, or a streamed event, that is not JSON
                self.ledger.violation("unreadable_answer", error=repr(exc), **_what(op, number))

    async def _chat(self, http: httpx2.AsyncClient, number: int, op: ChatOp) -> None:
        what = _what(op, number)
        headers = {"authorization": f"Bearer {op.api_key}"}
        tenant = TENANTS[op.api_key]
        if not op.stream:
            self.ledger.count("chat requests")
            response = await http.post(
                "/v1/chat/completions", json=what["request"], headers=headers
            )
            if response.status_code != 200:
                self.checker.error(number, what, status=response.status_code, body=response.text)
                return
            data = response.json()
            answer = Answer(
                response.headers.get("x-deja-cache", "?"),
                response.headers.get("x-deja-cache-key", ""),
                data.get("id"),
                choices_of(data),
                data.get("usage"),
            )
            self.checker.chat(op.case, answer, tenant=tenant, what=what)
            return
        self.ledger.count("streamed requests")
        async with http.stream(
            "POST", "/v1/chat/completions", json=what["request"], headers=headers
        ) as response:
            if response.status_code != 200:
                await response.aread()
                self.checker.error(number, what, status=response.status_code, body=response.text)
                return
            assembly, done = StreamAssembly(), False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    continue
                assembly.add(orjson.loads(line[6:]))
                if op.leave_after is not None and assembly.events >= op.leave_after:
                    self.ledger.count("clients that left a stream")
                    return
        if assembly.error is not None:
            self.checker.error(number, what, status=None, body=assembly.error)
            return
        answer = assembly.answer(
            cache=response.headers.get("x-deja-cache", "?"),
            key=response.headers.get("x-deja-cache-key", ""),
            done=done,
        )
        self.checker.chat(op.case, answer, tenant=tenant, what=what)

    async def _embeddings(self, http: httpx2.AsyncClient, number: int, op: EmbeddingsOp) -> None:
        what = _what(op, number)
        headers = {"authorization": f"Bearer {op.api_key}"}
        response = await http.post("/v1/embeddings", json=op.case.body, headers=headers)
        if response.status_code != 200:
            self.checker.error(number, what, status=response.status_code, body=response.text)
            return
        self.ledger.count(f"embeddings {response.headers.get('x-deja-cache', '?')}")
        what["cached_items"] = response.headers.get("x-deja-cached-items")
        self.checker.embeddings(op.case, response.json(), what=what)

    async def _admin(self, http: httpx2.AsyncClient, op: AdminOp) -> None:
        headers = {"authorization": f"Bearer {MASTER}"}
        response = await http.post(op.path, json=op.body, headers=headers)
        self.ledger.count(f"admin {op.path}")
        if response.status_code != 200:
            self.ledger.violation(
                "admin_call_failed",
                request={"path": op.path, **op.body},
                status=response.status_code,
                answer=response.text,
            )


def _what(op: Op, number: int) -> dict[str, Any]:
    """What a violation says about the operation: the request as sent, and by whom."""
    if isinstance(op, ChatOp):
        kind = "stream" if op.stream else "chat"
        if op.leave_after is not None:
            kind += f" (client leaves after {op.leave_after} events)"
        return {"op": kind, "batch": number, "tenant": TENANTS[op.api_key], "request": op.body()}
    if isinstance(op, EmbeddingsOp):
        return {
            "op": "embeddings",
            "batch": number,
            "tenant": TENANTS[op.api_key],
            "request": op.case.body,
        }
    return {"op": "admin", "batch": number, "request": {"path": op.path, **op.body}}
