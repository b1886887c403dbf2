"""``deja demo``: replay a labelled support-bot workload through the client and cache.

The workload (``deja/data/demo_workload.jsonl``, built by ``scripts/make_workload.py`` from
Banking77, CC BY 4.0, Casanueva et al. 2020) is the seed brief's scenario: 500 customer
queries, ~70% repeats or rewordings of 20 common questions, the rest unique. Each query goes
through :class:`deja.AsyncClient` with an exact cache, over real HTTP, to the **simulated**
OpenAI-compatible server of :mod:`deja.testing` (no network; latency drawn from a
log-normal distribution; usage sized like the brief's example: a ~500-token prompt and a
~150-token answer), with several users at once. Every figure printed is measured in the
run, and the demo checks that upstream calls equal misses. ``--live`` sends the same
workload to the real OpenAI API instead (``OPENAI_API_KEY`` needed; it costs money).

By default the cache has both tiers, as ``deja`` ships them: the exact tier in memory and
the semantic tier with the embedded offline model, so rewordings of a question can be served
too. A semantic hit whose stored answer belongs to another intent (by the workload's labels)
is counted as a false hit. ``--exact-only`` turns the semantic tier off. A missing extra
(``semantic`` for the semantic tier, ``server`` for ``--proxy``) stops the demo before it
starts, with the ``pip install`` to run: a tier that cannot work would leave every query to
the exact tier while the report claimed both.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import statistics
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx2

from deja._async.cache import AsyncCache
from deja._async.client import AsyncClient
from deja.errors import ConfigError, MissingDependencyError
from deja.request import Request
from deja.result import CacheInfo
from deja.stores.memory import MemoryStore
from deja.testing import FakeOpenAIServer, Reply

__all__ = ["DemoReport", "format_report", "load_workload", "run_demo"]

SYSTEM_PROMPT = (
    "You are the customer-support assistant of a retail bank. Answer in two or three short, "
    "polite sentences. Never ask for card numbers or passwords. If the customer reports fraud, "
    "tell them to freeze the card in the app and contact support."
)
MODEL = "gpt-4o"
SYSTEM_TOKENS = 480  # the brief's ~500-token prompt: a long system prompt plus the question


def load_workload() -> list[dict[str, Any]]:
    """The committed, labelled workload (500 requests)."""
    text = (files("deja") / "data" / "demo_workload.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def simulated_reply(median_latency: float, seed: int = 7) -> Any:
    """A reply function for the simulated server: realistic latency and token counts."""
    rng = random.Random(seed)

    def reply(body: dict[str, Any]) -> Reply:
        question = str(body["messages"][-1]["content"])
        digest = hashlib.sha256(question.encode()).hexdigest()
        words = 90 + int(digest[:4], 16) % 40
        return Reply(
            " ".join(f"w{digest[i % 60 : i % 60 + 4]}" for i in range(words)),
            prompt_tokens=SYSTEM_TOKENS + max(1, len(question) // 4),
            completion_tokens=120 + int(digest[4:8], 16) % 60,
            latency=median_latency * rng.lognormvariate(0, 0.35),
        )

    return reply


@dataclass(frozen=True, slots=True)
class DemoReport:
    """Figures of one demo run (all measured)."""

    requests: int
    upstream_calls: int | None
    """Calls the simulated provider received (``None`` live: not counted there)."""
    hits: int
    semantic_hits: int
    false_hits: int
    semantic_hits_by_kind: dict[str, int]
    misses: int
    coalesced: int
    hit_rate: float
    hits_by_kind: dict[str, int]
    requests_by_kind: dict[str, int]
    hit_p50_ms: float
    miss_p50_ms: float
    cost_without_cache_usd: float
    cost_with_cache_usd: float
    saved_usd: float
    invalidated_entries: int
    misses_after_invalidation: int
    seconds: float
    simulated: bool
    via_proxy: bool
    semantic: bool
    upstream: str = "simulated"
    """The upstream called: "simulated", or the live API's address (its host)."""

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able data."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


async def run_demo(
    *,
    concurrency: int = 16,
    median_latency: float = 0.5,
    live: bool = False,
    via_proxy: bool = False,
    semantic: bool = True,
) -> DemoReport:
    """Replay the workload with ``concurrency`` users and measure everything.

    ``via_proxy``: the users call the caching proxy (``deja serve``'s app, run in-process
    on a loopback port) over HTTP instead of using the library's client. Raises
    :class:`~deja.errors.MissingDependencyError` before anything starts when the extra
    that ``via_proxy`` (``server``) or ``semantic`` (``semantic``) needs is not installed.
    """
    workload = load_workload()
    server: FakeOpenAIServer | None = None
    if live and not os.environ.get("OPENAI_API_KEY"):
        raise ConfigError("deja demo --live needs OPENAI_API_KEY (it calls the real API)")
    if via_proxy:
        _require_server()
    if semantic:
        await asyncio.to_thread(_require_semantic)
    if live:
        api_base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        api_key = None
    else:
        server = FakeOpenAIServer().start()
        server.reply_with(simulated_reply(median_latency))
        api_base = server.base_url
        api_key = "simulated"
    proxy: _Proxy | None = None
    tenant: str | None = None
    if via_proxy:
        proxy = _Proxy(api_base, api_key, semantic=semantic)
        cache = proxy.cache
        tenant = "demo"
        ask = proxy.ask
    else:
        cache = AsyncCache(
            store=MemoryStore(), ttl=3600, semantic=_semantic_tier() if semantic else None
        )
        client = AsyncClient(cache=cache, api_base=api_base, api_key=api_key)

        async def ask(messages: list[dict[str, str]], tags: list[str]) -> CacheInfo:
            response = await client.acompletion(
                model=MODEL, messages=messages, temperature=0, cache={"tags": tags}
            )
            return response.cache

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for item in workload:
        queue.put_nowait(item)
    hit_ms: list[float] = []
    miss_ms: list[float] = []
    hits_by_kind: Counter[str] = Counter()
    semantic_by_kind: Counter[str] = Counter()
    answered_intent: dict[str, str] = {}  # entry key -> the intent whose answer it holds
    false_hits = 0
    cost_without = cost_with = 0.0

    def messages(text: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]

    async def user() -> None:
        nonlocal cost_without, cost_with, false_hits
        while not queue.empty():
            item = queue.get_nowait()
            started = time.perf_counter()
            info = await ask(messages(item["text"]), [f"intent:{item['intent']}"])
            elapsed = (time.perf_counter() - started) * 1000
            cost_with += info.cost_usd
            cost_without += info.cost_usd + info.saved_usd
            if info.hit:
                hit_ms.append(elapsed)
                hits_by_kind[item["kind"]] += 1
                if info.status == "semantic_hit":
                    semantic_by_kind[item["kind"]] += 1
                    if answered_intent.get(info.key, item["intent"]) != item["intent"]:
                        false_hits += 1
            else:
                miss_ms.append(elapsed)
                answered_intent[info.key] = item["intent"]

    started = time.perf_counter()
    try:
        await asyncio.gather(*(user() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        stats = cache.stats()
        upstream_calls = server.count("/v1/chat/completions") if server else None
        if upstream_calls is not None and upstream_calls != stats.misses:
            raise RuntimeError(f"upstream calls {upstream_calls} != misses {stats.misses}")
        # Invalidation: a policy change for the most asked question's topic
        top_intent = Counter(item["intent"] for item in workload).most_common(1)[0][0]
        invalidated = await cache.delete_tag(f"intent:{top_intent}", tenant=tenant)
        texts = {i["text"] for i in workload if i["intent"] == top_intent}
        again = [await cache.get(_request(MODEL, messages(t), api_base, tenant)) for t in texts]
    finally:
        if proxy is not None:
            await proxy.aclose()
        else:
            await client.aclose()
        if server is not None:
            server.stop()
    return DemoReport(
        requests=len(workload),
        upstream_calls=upstream_calls,
        hits=stats.hits + stats.semantic_hits,
        semantic_hits=stats.semantic_hits,
        false_hits=false_hits,
        semantic_hits_by_kind=dict(semantic_by_kind),
        misses=stats.misses,
        coalesced=stats.coalesced,
        hit_rate=(stats.hits + stats.semantic_hits) / len(workload),
        hits_by_kind=dict(hits_by_kind),
        requests_by_kind=dict(Counter(item["kind"] for item in workload)),
        hit_p50_ms=statistics.median(hit_ms) if hit_ms else 0.0,
        miss_p50_ms=statistics.median(miss_ms) if miss_ms else 0.0,
        cost_without_cache_usd=cost_without,
        cost_with_cache_usd=cost_with,
        saved_usd=stats.saved_usd,
        invalidated_entries=invalidated,
        misses_after_invalidation=sum(1 for r in again if r.response is None),
        seconds=seconds,
        simulated=not live,
        via_proxy=via_proxy,
        semantic=semantic,
        upstream="simulated" if server is not None else _host(api_base),
    )


def _host(url: str) -> str:
    """``url``'s host and port (``OPENAI_BASE_URL`` may name another server than
    OpenAI's, and may hold credentials)."""
    return urllib.parse.urlsplit(url).netloc.rpartition("@")[2] or url


def _semantic_tier() -> Any:
    from deja.semantic import LocalEmbedder, SemanticCache

    return SemanticCache(embedder=LocalEmbedder())


_EXACT_ONLY = "the semantic tier needs it; `deja demo --exact-only` runs without it"


def _require_semantic() -> None:
    """Raise :class:`~deja.errors.MissingDependencyError`, suggesting ``--exact-only``, when
    a package the semantic tier needs is not installed (numpy, onnxruntime, tokenizers,
    the model package...): checked without loading the model."""
    try:
        from deja.semantic.cache import SemanticCache  # noqa: F401  (numpy)
        from deja.semantic.embedders import LocalEmbedder

        LocalEmbedder().check()
    except MissingDependencyError as exc:
        raise MissingDependencyError(exc.package, exc.extra, detail=_EXACT_ONLY) from exc


def _require_server() -> None:
    """Raise :class:`~deja.errors.MissingDependencyError` without uvicorn (``--proxy``)."""
    try:
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("uvicorn", "server") from exc


class _Proxy:
    """The caching proxy's app served by uvicorn on a loopback port, in a thread."""

    def __init__(self, api_base: str, api_key: str | None, *, semantic: bool) -> None:
        import socket
        import threading

        import uvicorn

        from deja.config import parse_config
        from deja.server.app import ProxyApp

        deployment: dict[str, Any] = {"model": f"openai/{MODEL}", "api_base": api_base}
        if api_key:
            deployment["api_key"] = api_key
        settings = parse_config(
            {
                "model_list": [{"model_name": MODEL, "litellm_params": deployment}],
                "caching": {"type": "semantic" if semantic else "memory", "ttl": 3600},
                "general_settings": {
                    "master_key": "demo-master-key",
                    "virtual_keys": [{"key": "demo-key", "tenant": "demo"}],
                },
            },
            base_dir=Path.cwd(),
        )
        self.app = ProxyApp(settings)
        assert self.app.cache is not None  # the settings configure one
        self.cache = self.app.cache
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the demo proxy did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"
        self._http = httpx2.AsyncClient(
            headers={"authorization": "Bearer demo-key"}, limits=httpx2.Limits(max_connections=64)
        )

    async def ask(self, messages: list[dict[str, str]], tags: list[str]) -> CacheInfo:
        body = {"model": MODEL, "messages": messages, "temperature": 0, "cache": {"tags": tags}}
        response = await self._http.post(self.url, json=body)
        response.raise_for_status()
        headers = response.headers
        return CacheInfo(
            headers["x-deja-cache"],  # type: ignore[arg-type]
            headers["x-deja-cache-key"],
            cost_usd=float(headers["x-deja-cost-usd"]),
            saved_usd=float(headers.get("x-deja-saved-usd", 0)),
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        self._server.should_exit = True
        await asyncio.to_thread(self._thread.join, 10)
        await self.app.aclose()


def _request(
    model: str, messages: list[dict[str, str]], api_base: str, tenant: str | None
) -> Request:
    return Request.chat(
        model=model, messages=messages, api_base=api_base, temperature=0, tenant=tenant
    )


def format_report(report: DemoReport) -> str:
    """The human-readable summary printed by ``deja demo``."""
    kinds = ", ".join(
        f"{kind} {report.hits_by_kind.get(kind, 0)}/{n}"
        + (
            f" ({report.semantic_hits_by_kind[kind]} by meaning)"
            if report.semantic_hits_by_kind.get(kind)
            else ""
        )
        for kind, n in sorted(report.requests_by_kind.items())
    )
    saved_pct = (
        100 * report.saved_usd / report.cost_without_cache_usd
        if report.cost_without_cache_usd
        else 0.0
    )
    tiers = "exact + semantic cache" if report.semantic else "exact-match cache"
    where = "through the caching PROXY over HTTP, " if report.via_proxy else ""
    upstream = (
        "a SIMULATED provider (local HTTP server, no network)"
        if report.simulated
        else f"the LIVE API at {report.upstream}"
    )
    lines = [
        f"deja demo: {where}{tiers} in front of {upstream}",
        f"workload   {report.requests} support-bot queries from Banking77 (CC BY 4.0),"
        " ~70% repeats or rewordings of 20 common questions",
        f"requests   {report.requests}   "
        + (
            f"upstream calls {report.upstream_calls} (= misses {report.misses})"
            if report.upstream_calls is not None
            else f"misses {report.misses} (each an API call; not counted at the API)"
        ),
        f"hits       {report.hits} ({100 * report.hit_rate:.1f}%): exact"
        f" {report.hits - report.semantic_hits} (of which {report.coalesced} joined an identical"
        f" call in flight), semantic {report.semantic_hits}",
    ]
    if report.semantic:
        wrong = 100 * report.false_hits / report.semantic_hits if report.semantic_hits else 0.0
        lines.append(
            f"false hits {report.false_hits} semantic hits answered with another intent's answer"
            f" ({wrong:.1f}% of semantic hits, by the workload's labels)"
        )
    lines += [
        f"hits/kind  {kinds}",
        f"latency    hit p50 {report.hit_p50_ms:.3f} ms   miss p50 {report.miss_p50_ms:.0f} ms"
        + (" (simulated provider)" if report.simulated else " (the live API)"),
        f"cost       without cache ${report.cost_without_cache_usd:.4f}   with cache"
        f" ${report.cost_with_cache_usd:.4f}   saved ${report.saved_usd:.4f}"
        f" ({saved_pct:.1f}%) at {MODEL} list prices",
        f"invalidate delete_tag removed {report.invalidated_entries} entries of the top"
        f" question's topic; looking them up again: {report.misses_after_invalidation} misses",
        f"took       {report.seconds:.1f} s",
    ]
    return "\n".join(lines)
