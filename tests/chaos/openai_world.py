"""The OpenAI world of the chaos runs: simulated OpenAI upstreams, their faults, and the
requests drawn for them (shared by the proxy's run and the library's)."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deja.testing import FakeOpenAIServer, Reply
from tests.chaos.checks import ChatCase, Choice, EmbeddingsCase, Oracle, identity
from tests.chaos.proxy import controls

PROMPTS = [
    "What is the capital of France?",
    "What is the capital of Spain?",
    "How can I track my card?",
    "how do i track my card",
    "How can I cancel my card?",
    "convert 5 km to miles",
    "convert 8 km to miles",
    "Explain the difference between TCP and UDP in simple terms please, alpha",
    "Explain the difference between TCP and UDP in simple terms please, beta",
    "Summarize the plot of Hamlet",
    "Summarize the plot of Macbeth",
    "Write a haiku about rust and ownership",
    "Is 17 a prime number?",
    "Is 21 a prime number?",
    "Translate 'good morning' to German",
    "Translate 'good night' to German",
    *(f"Random question number {i} about topic {i * 7 % 11}" for i in range(24)),
]
#: Prompts a semantic hit may answer for each other; every other pair differs by a number,
#: an entity, a quoted string or a verb, which the semantic tier's guards must tell apart.
SAME_MEANING = [
    {"How can I track my card?", "how do i track my card"},
    {PROMPTS[7], PROMPTS[8]},
]
EMBEDDED = [f"embed item {i}" for i in range(14)] + ["shared", "Shared", "shared "]
EMBEDDING_DIM = 8

# The same tool and JSON schema with their properties in either order: Structured Outputs
# follow schema order, so each order is keyed apart.
TOOLS = {
    order: [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {name: {"type": "string"} for name in order.split("-")},
                },
            },
        }
    ]
    for order in ("city-unit", "unit-city")
}
FORMATS = {
    order: {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {
                "type": "object",
                "properties": {name: {"type": "string"} for name in order.split("-")},
            },
        },
    }
    for order in ("a-b", "b-a")
}
#: Every route keys a request as gpt-4o on upstream A does (deployments of one model share
#: their entries).
ROUTES = ("gpt-4o", "multi", "openai/gpt-4o", "wild-gpt-4o")
EMBEDDING_MODEL = "text-embedding-3-small"
EMBEDDING_ROUTES = (EMBEDDING_MODEL, "emb-multi")  # every answer names the model


@dataclass(frozen=True)
class Fault:
    """A planned fault: ``fail`` (``value``: the status), ``delay`` (seconds), ``drop``
    (the connection, unanswered) or ``cut`` (``value``: after how many chunks each of the
    next answers ends)."""

    upstream: str  # the name of one of the Upstreams' servers
    kind: str
    value: Any = None


class Upstreams:
    """Simulated OpenAI servers by name; a ``cut`` fault makes their next answers end early
    (a reply function scripts them: the right text, cut after a few chunks)."""

    def __init__(self, servers: Mapping[str, FakeOpenAIServer], oracle: Oracle) -> None:
        self.servers = dict(servers)
        self.oracle = oracle
        self._cuts: dict[str, deque[int]] = {name: deque() for name in self.servers}
        self._lock = threading.Lock()
        self.disarm()

    def arm(self, fault: Fault) -> None:
        """Make the fault's upstream misbehave on its next requests."""
        server = self.servers[fault.upstream]
        if fault.kind == "fail":
            server.fail_next(fault.value, headers={"retry-after": "0"})
        elif fault.kind == "delay":
            server.delay_next(fault.value)
        elif fault.kind == "drop":
            server.drop_next()
        else:
            with self._lock:
                self._cuts[fault.upstream].extend(fault.value)

    def disarm(self) -> None:
        """Forget every fault not used yet (and the requests recorded)."""
        with self._lock:
            for name, server in self.servers.items():
                server.reset()
                server.reply_with(self._reply(name))
                self._cuts[name].clear()

    def _reply(self, name: str) -> Callable[[dict[str, Any]], Reply | None]:
        def reply(body: dict[str, Any]) -> Reply | None:
            if body.get("n", 1) != 1:
                return None
            with self._lock:
                if not self._cuts[name]:
                    return None
                after = self._cuts[name].popleft()
            question = [m for m in body["messages"] if m.get("role") == "user"][-1]["content"]
            return Reply(self.oracle.answers(question)[0], abort_after_chunks=after)

        return reply


def draw_fault(rng: random.Random, upstreams: str = "aab") -> Fault:
    """A fault of one of ``upstreams`` (a name twice as likely as a name once)."""
    upstream = rng.choice(upstreams)
    draw = rng.random()
    if draw < 0.3:
        return Fault(upstream, "fail", 503)
    if draw < 0.5:
        return Fault(upstream, "fail", 429)
    if draw < 0.75:
        return Fault(upstream, "delay", rng.choice([0.5, 1.5]))
    if draw < 0.85:
        return Fault(upstream, "drop")
    return Fault(upstream, "cut", [rng.randint(1, 4) for _ in range(rng.randint(1, 3))])


def draw_chat(rng: random.Random, oracle: Oracle, *, routes: Sequence[str] = ROUTES) -> ChatCase:
    """A chat request on one of ``routes``, with options that change its key (a system
    prompt, ``n``, tools, a JSON schema, a temperature) or not (cache options)."""
    question = rng.choice(PROMPTS)
    n = rng.choice([1, 1, 1, 2])
    body: dict[str, Any] = {
        "model": rng.choice(routes),
        "messages": [{"role": "user", "content": question}],
    }
    if rng.random() < 0.2:
        body["messages"].insert(0, {"role": "system", "content": "Be brief."})
    if n > 1:
        body["n"] = n
    if rng.random() < 0.25:
        body["tools"] = TOOLS[rng.choice(list(TOOLS))]
    if rng.random() < 0.25:
        body["response_format"] = FORMATS[rng.choice(list(FORMATS))]
    if rng.random() < 0.3:
        body["temperature"] = 0
    control, namespace = controls(rng)
    if control:
        body["cache"] = control
    meaning = next((group for group in SAME_MEANING if question in group), {question})
    answered_as = body.get("response_format")  # (the upstream answers its JSON modes in JSON)
    return ChatCase(
        body,
        question,
        identity(body, keyed_as="gpt-4o"),
        tuple(Choice(text, "stop") for text in oracle.answers(question, n, answered_as)),
        namespace,
        frozenset(text for q in meaning for text in oracle.answers(q, n, answered_as)),
    )


def draw_embeddings(
    rng: random.Random, oracle: Oracle, *, routes: Sequence[str] = EMBEDDING_ROUTES
) -> EmbeddingsCase:
    """An embeddings request: a few items (once in a while one of them twice), in either
    encoding, at times with fewer dimensions or in a namespace."""
    items = rng.sample(EMBEDDED, rng.randint(1, 5))
    if rng.random() < 0.2:
        items.append(items[0])  # the same item twice in one batch
    encoding = rng.choice(["float", "float", "base64", None])
    dimensions = rng.choice([None, None, 4])
    body: dict[str, Any] = {
        "model": rng.choice(routes),
        "input": items,
    }
    if encoding:
        body["encoding_format"] = encoding
    if dimensions:
        body["dimensions"] = dimensions
    if rng.random() < 0.1:
        body["cache"] = {"namespace": "ns1"}
    return EmbeddingsCase(body, tuple(oracle.vectors(items, dimensions)), EMBEDDING_MODEL)
