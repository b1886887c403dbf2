"""What a chaos run checks, whatever drives it: the ledger of violations, the upstream's own
answers (the oracle), and the invariants every answer must keep (:class:`Checker`)."""

from __future__ import annotations

import base64
import json
import struct
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx2
import orjson
import pytest

from deja.testing import FakeOpenAIServer

#: Error statuses an upstream fault may legitimately become (never a 500, never a 4xx other
#: than a relayed 429): failover exhausted or a cut upstream (502), a relayed 503 / 529
#: (Anthropic's "overloaded"), a timeout (504).
FAULT_STATUSES = frozenset({429, 502, 503, 504, 529})
#: A fault armed in batch ``b`` excuses errors in batches ``b`` to ``b + FAULT_REACH - 1``:
#: the upstream forgets unused faults at the end of each batch, but an upstream call that a
#: fault slowed down may still be shared with a caller of the next batch or two.
FAULT_REACH = 3
SHOWN = 8  # violations written out in full in the failure message


class Ledger:
    """The violations and figures of one run; :meth:`verdict` fails the test with them.

    Thread-safe: the library runs record from threads and from an event loop at once.
    """

    def __init__(self, *, run: str, seed: int, ops: int, directory: Path) -> None:
        self.run = run
        self.seed = seed
        self.ops = ops
        self.directory = directory
        self.violations: list[dict[str, Any]] = []
        self.figures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def violation(self, kind: str, **detail: Any) -> None:
        """Record one broken invariant, with what was asked and answered."""
        with self._lock:
            self.violations.append({"kind": kind, **detail})

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to one of the run's figures."""
        with self._lock:
            self.figures[name] += n

    @property
    def replay(self) -> str:
        """The command that runs this run again with the same plan."""
        return (
            f"DEJA_CHAOS_SEED={self.seed} DEJA_CHAOS_OPS={self.ops} "
            f".venv/bin/python -m pytest '{self.run}'"
        )

    def summary(self, seconds: float) -> str:
        """The seed, length, duration and figures of the run (printed after it)."""
        figures = ", ".join(f"{k} {v}" for k, v in sorted(self.figures.items()))
        return (
            f"\n  seed {self.seed}, {self.ops} operations, {seconds:.1f} s, "
            f"{len(self.violations)} violations\n  {figures}"
        )

    def verdict(self) -> None:
        """Fail the test, naming the seed and each offending request and answer, if any
        invariant broke; every violation is also written to ``violations.jsonl``."""
        if not self.violations:
            return
        path = self.directory / "violations.jsonl"
        with path.open("wb") as out:
            for v in self.violations:
                out.write(orjson.dumps(v, default=repr, option=orjson.OPT_NON_STR_KEYS) + b"\n")
        kinds = Counter(v["kind"] for v in self.violations)
        lines = [
            f"{len(self.violations)} invariant violations in {self.run} "
            f"(seed {self.seed}, {self.ops} operations): "
            + ", ".join(f"{k} x{n}" for k, n in kinds.most_common()),
            f"replay: {self.replay}",
            f"all of them: {path}",
        ]
        for i, v in enumerate(self.violations[:SHOWN], 1):
            detail = {k: val for k, val in v.items() if k != "kind"}
            lines.append(f"{i}. {v['kind']} (seed {self.seed}):")
            lines += [f"     {k}: {_short(val)}" for k, val in detail.items()]
        pytest.fail("\n".join(lines), pytrace=False)


def _short(value: Any, limit: int = 1200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


# -- the upstream's own answers ---------------------------------------------------------------


class Oracle:
    """The simulated upstream's answers, asked of a server of its own that no fault touches.

    Every simulated provider answers a prompt with the same deterministic text (a function of
    the last user message and the choice's index) and embeds an item as the same unit
    vector, so this is what the upstream behind deja answered, or should have.
    """

    def __init__(self, *, embedding_dim: int) -> None:
        self.embedding_dim = embedding_dim
        self._answers: dict[tuple[str, int, str], tuple[str, ...]] = {}
        self._vectors: dict[tuple[str, int], tuple[float, ...]] = {}
        self._server = FakeOpenAIServer(embedding_dim=embedding_dim)

    def __enter__(self) -> Oracle:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def answers(
        self, question: str, n: int = 1, response_format: Mapping[str, Any] | None = None
    ) -> tuple[str, ...]:
        """The texts of the ``n`` choices answering ``question`` (under ``response_format``:
        the simulated upstream answers OpenAI's JSON modes with JSON)."""
        asked = (question, n, json.dumps(response_format))  # (a schema's order counts)
        if asked not in self._answers:
            body: dict[str, Any] = {
                "model": "oracle",
                "messages": [{"role": "user", "content": question}],
                "n": n,
            }
            if response_format is not None:
                body["response_format"] = response_format
            data = self._post("/chat/completions", body)
            choices = sorted(data["choices"], key=lambda c: c["index"])
            self._answers[asked] = tuple(c["message"]["content"] for c in choices)
        return self._answers[asked]

    def vectors(self, items: Sequence[str], dimensions: int | None) -> list[tuple[float, ...]]:
        """The embeddings of ``items``, as floats."""
        dim = dimensions or self.embedding_dim
        missing = sorted({t for t in items if (t, dim) not in self._vectors})
        if missing:
            body: dict[str, Any] = {"model": "oracle", "input": missing, "dimensions": dim}
            for text, d in zip(missing, self._post("/embeddings", body)["data"], strict=True):
                self._vectors[text, dim] = tuple(d["embedding"])
        return [self._vectors[t, dim] for t in items]

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx2.post(self._server.base_url + path, json=body, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


# -- requests and answers ---------------------------------------------------------------------


class Choice(NamedTuple):
    """One choice of an answer: its text, finish reason and tool calls ``(name, arguments)``."""

    text: str | None
    finish: str | None
    calls: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class ChatCase:
    """One chat request of a plan, and what the upstream answers it.

    ``identity`` is what keys it (see :func:`identity`), ``want`` the choices the upstream
    answers, ``semantic`` the texts a semantic hit may serve instead (the answers to
    prompts of the same meaning, its own included).
    """

    body: dict[str, Any]
    question: str
    identity: str
    want: tuple[Choice, ...]
    namespace: str | None = None
    semantic: frozenset[str] = frozenset()
    usage_adds_up: bool = True  # prompt + completion == total (not so with Gemini's n > 1)

    @property
    def control(self) -> dict[str, Any]:
        control: dict[str, Any] = self.body.get("cache") or {}
        return control


@dataclass(frozen=True)
class EmbeddingsCase:
    """One embeddings request of a plan: the vectors the upstream answers (as floats), and
    the model the answer names."""

    body: dict[str, Any]
    want: tuple[tuple[float, ...], ...]
    model: str


@dataclass
class Answer:
    """An answer as a caller saw it (a proxy's HTTP response, or a client's result)."""

    cache: str  # hit, semantic_hit, miss, bypass
    key: str
    id: str | None
    choices: dict[int, Choice]
    usage: dict[str, Any] | None
    streamed: bool = False
    done: bool = True  # a stream ended with [DONE] (or its iterator ended)

    def shown(self) -> dict[str, Any]:
        """The answer as a violation shows it."""
        return {
            "x-deja-cache": self.cache,
            "x-deja-cache-key": self.key,
            "id": self.id,
            "choices": {i: c._asdict() for i, c in sorted(self.choices.items())},
            "usage": self.usage,
            **({"ended_with_done": self.done} if self.streamed else {}),
        }


def choices_of(data: Mapping[str, Any]) -> dict[int, Choice]:
    """The choices of an OpenAI chat completion (not streamed)."""
    choices = {}
    for c in data.get("choices") or ():
        message = c.get("message") or {}
        calls = tuple(
            (call["function"]["name"], _arguments(call["function"]["arguments"]))
            for call in message.get("tool_calls") or ()
        )
        choices[c["index"]] = Choice(message.get("content"), c.get("finish_reason"), calls)
    return choices


class StreamAssembly:
    """Chat completion chunks put back together, as a caller reads them."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.texts: dict[int, str] = defaultdict(str)
        self.finishes: dict[int, str] = {}
        self.calls: dict[int, dict[int, list[str]]] = defaultdict(dict)
        self.usage: dict[str, Any] | None = None
        self.error: Any = None
        self.events = 0

    def add(self, chunk: Mapping[str, Any]) -> None:
        """One chunk (an event of a stream), as received."""
        self.events += 1
        if "error" in chunk:
            self.error = chunk["error"]
            return
        self.id = self.id or chunk.get("id")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for c in chunk.get("choices") or ():
            index = c["index"]
            delta = c.get("delta") or {}
            self.texts[index] += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                name_args = self.calls[index].setdefault(call["index"], ["", ""])
                function = call.get("function") or {}
                name_args[0] += function.get("name") or ""
                name_args[1] += function.get("arguments") or ""
            if c.get("finish_reason"):
                self.finishes[index] = c["finish_reason"]

    def answer(self, *, cache: str, key: str, done: bool) -> Answer:
        """The answer the chunks read so far make."""
        indexes = set(self.texts) | set(self.finishes) | set(self.calls)
        choices = {
            i: Choice(
                self.texts.get(i) or None,
                self.finishes.get(i),
                tuple(
                    (name, _arguments(args)) for _, (name, args) in sorted(self.calls[i].items())
                ),
            )
            for i in indexes
        }
        return Answer(cache, key, self.id, choices, self.usage, streamed=True, done=done)


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return f"unparseable: {raw!r}"


def vectors_of(data: Mapping[str, Any]) -> list[tuple[int, str, tuple[float, ...]]]:
    """``(index, encoding, floats)`` of each item of an embeddings response."""
    out = []
    for d in data.get("data") or ():
        vector = d["embedding"]
        if isinstance(vector, str):
            raw = base64.b64decode(vector)
            out.append((d["index"], "base64", struct.unpack(f"<{len(raw) // 4}f", raw)))
        else:
            out.append((d["index"], "float", tuple(vector)))
    return out


# -- the invariants ---------------------------------------------------------------------------


@dataclass
class _Origin:
    """The miss that made an entry: the answer every hit of it replays."""

    key: str
    tenant: str
    usage: dict[str, Any] | None
    shape: dict[int, tuple[str | None, tuple[tuple[str, Any], ...]]]


@dataclass
class Checker:
    """Checks every answer of a run against the invariants, recording what breaks.

    Thread-safe (one lock around the bookkeeping). Tenants are ``""`` for the library.
    """

    ledger: Ledger
    fault_batches: set[int] = field(default_factory=set)
    _origins: dict[str, _Origin] = field(default_factory=dict)
    _key_tenants: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _scopes_of: dict[tuple[str, str | None], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )
    _owners_of: dict[str, set[tuple[str, str | None]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    _requests_of: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    _digests_of: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def excused(self, batch: int) -> bool:
        """Whether a fault armed recently may explain an error in ``batch``."""
        return any(b in self.fault_batches for b in range(batch - FAULT_REACH + 1, batch + 1))

    def error(self, batch: int, what: dict[str, Any], *, status: int | None, body: Any) -> None:
        """An error answer (``status`` ``None``: an error event ending a stream): only a
        fault may explain it, and only with a fault's status."""
        self.ledger.count("stream error events" if status is None else f"status {status}")
        if status is not None and status not in FAULT_STATUSES:
            self.ledger.violation("unexpected_status", status=status, answer=body, **what)
        elif not self.excused(batch):
            self.ledger.violation("error_without_fault", status=status, answer=body, **what)

    def chat(self, case: ChatCase, answer: Answer, *, tenant: str, what: dict[str, Any]) -> None:
        """A chat answer (plain, or a stream read to its end)."""
        problems = self._content(case, answer) + self._stream(answer, what)
        problems += self._usage(case, answer)
        if case.control.get("no-cache") and answer.cache == "hit":
            problems.append(("hit_despite_no_cache", {}))
        with self._lock:
            problems += self._key(case, answer, tenant, what.get("request"))
            problems += self._origin(answer, tenant)
        self.ledger.count("answers checked")
        self.ledger.count(f"chat {answer.cache}")
        for kind, detail in problems:
            self.ledger.violation(kind, **detail, **what, answer=answer.shown())

    def _content(self, case: ChatCase, answer: Answer) -> list[tuple[str, dict[str, Any]]]:
        if sorted(answer.choices) != list(range(len(case.want))):
            return [("wrong_choices", {"want": [w._asdict() for w in case.want]})]
        problems: list[tuple[str, dict[str, Any]]] = []
        for i, want in enumerate(case.want):
            got = answer.choices[i]
            if answer.cache == "semantic_hit":
                # another prompt's entry: only its meaning must be the same
                if got.text not in case.semantic:
                    problems.append(("semantic_hit_of_another_meaning", {"index": i}))
            elif got != want:
                problems.append(("wrong_answer", {"index": i, "want": want._asdict()}))
        return problems

    def _stream(self, answer: Answer, what: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if not answer.streamed:
            return []
        problems: list[tuple[str, dict[str, Any]]] = []
        if not answer.done:
            problems.append(("stream_without_done", {}))
        sent = what.get("request") or {}
        asked = bool((sent.get("stream_options") or {}).get("include_usage"))
        if asked != (answer.usage is not None):
            problems.append(("stream_usage_chunk", {"asked": asked}))
        return problems

    def _usage(self, case: ChatCase, answer: Answer) -> list[tuple[str, dict[str, Any]]]:
        usage = answer.usage
        if usage is None:
            return []
        prompt, completion, total = (
            usage.get(name) for name in ("prompt_tokens", "completion_tokens", "total_tokens")
        )
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        if not (isinstance(prompt, int) and isinstance(completion, int)):
            return [("usage_inconsistent", {})]
        if not isinstance(total, int) or (case.usage_adds_up and prompt + completion != total):
            return [("usage_inconsistent", {})]
        if cached > prompt:
            return [("cached_tokens_above_prompt_tokens", {})]
        return []

    def _key(
        self, case: ChatCase, answer: Answer, tenant: str, request: Any
    ) -> list[tuple[str, dict[str, Any]]]:
        """The key's scope and digest: one tenant per key, one scope per (tenant, namespace)
        and the other way round, one digest per request and the other way round."""
        if not answer.key:
            return [("no_cache_key", {})]
        problems: list[tuple[str, dict[str, Any]]] = []
        *_, scope, digest = answer.key.split(":")
        owner = (tenant, case.namespace)
        self._key_tenants[answer.key].add(tenant)
        self._scopes_of[owner].add(scope)
        self._owners_of[scope].add(owner)
        if len(self._key_tenants[answer.key]) > 1:
            problems.append(
                ("key_of_two_tenants", {"tenants": sorted(self._key_tenants[answer.key])})
            )
        if len(self._scopes_of[owner]) > 1:
            problems.append(("scope_not_stable", {"scopes": sorted(self._scopes_of[owner])}))
        if len(self._owners_of[scope]) > 1:
            problems.append(("scope_shared", {"owners": sorted(map(str, self._owners_of[scope]))}))
        if answer.cache == "semantic_hit":
            return problems  # the key is the matched entry's: another prompt's digest
        # the first request seen with each digest, and with each identity
        requests = self._requests_of[digest]
        digests = self._digests_of[case.identity]
        requests.setdefault(case.identity, request)
        digests.setdefault(digest, request)
        if len(requests) > 1:
            other = next(r for i, r in requests.items() if i != case.identity)
            problems.append(("digest_of_two_requests", {"other_request": other}))
        if len(digests) > 1:
            other = next(r for d, r in digests.items() if d != digest)
            problems.append(("digest_not_stable", {"other_request": other}))
        return problems

    def _origin(self, answer: Answer, tenant: str) -> list[tuple[str, dict[str, Any]]]:
        """A hit replays the miss that made its entry (matched by completion id): same key,
        same tenant, same usage, finish reasons and tool calls."""
        if answer.id is None:
            return []
        shape = {i: (c.finish, c.calls) for i, c in answer.choices.items()}
        if answer.cache == "miss":
            self._origins[answer.id] = _Origin(answer.key, tenant, answer.usage, shape)
            return []
        origin = self._origins.get(answer.id) if answer.cache == "hit" else None
        if origin is None:
            return []
        self.ledger.count("hits traced to their miss")
        problems: list[tuple[str, dict[str, Any]]] = []
        if origin.tenant != tenant:
            problems.append(("hit_from_another_tenant", {"origin_tenant": origin.tenant}))
        if origin.key != answer.key:
            problems.append(("hit_from_another_key", {"origin_key": origin.key}))
        if None not in (origin.usage, answer.usage) and origin.usage != answer.usage:
            problems.append(("hit_usage_differs", {"origin_usage": origin.usage}))
        if origin.shape != shape:
            problems.append(("hit_finish_or_tools_differ", {"origin": origin.shape}))
        return problems

    def embeddings(
        self, case: EmbeddingsCase, data: Mapping[str, Any], *, what: dict[str, Any]
    ) -> None:
        """An embeddings answer: one vector per item, in order, in the caller's encoding."""
        self.ledger.count("answers checked")
        got, want, model = vectors_of(data), case.want, case.model
        encoding = case.body.get("encoding_format") or "float"
        problems: list[tuple[str, dict[str, Any]]] = []
        if len(got) != len(want):
            problems.append(("embeddings_count", {"want": len(want), "got": len(got)}))
        if data.get("model") != model:
            problems.append(("embeddings_model", {"got": data.get("model")}))
        for j, ((index, enc, vector), expected) in enumerate(zip(got, want, strict=False)):
            if index != j:
                problems.append(("embeddings_order", {"position": j, "index": index}))
            if enc != encoding:
                problems.append(("embeddings_encoding", {"position": j, "got": enc}))
            if len(vector) != len(expected) or any(
                abs(a - b) > 1e-6 for a, b in zip(vector, expected, strict=False)
            ):
                problems.append(("embeddings_wrong_vector", {"position": j}))
        for kind, detail in problems:
            self.ledger.violation(kind, **detail, **what)


def identity(body: Mapping[str, Any], *, keyed_as: str) -> str:
    """JSON of what keys a request: the body without cache options and stream flags, with
    the model it is keyed as. Keys stay in their given order: the plans build every body in
    one order, and deja keys a JSON schema's properties in theirs (Structured Outputs follow
    it), so two orders are two requests."""
    left_out = {"cache", "stream", "stream_options", "model"}
    kept = {k: v for k, v in body.items() if k not in left_out}
    return orjson.dumps({"keyed_as": keyed_as, **kept}).decode()
