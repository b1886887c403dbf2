"""Tenants never share the semantic tier's embeddings (audit 20; DESIGN.md, Tenants:
single-flight and semantic search never cross tenants).

The tier remembers the vectors of recent prompts and shares an embedding in flight among
identical prompts. Keyed by the text alone, both answered tenant B's prompt faster when
another tenant had just sent exactly that prompt: a timing oracle on what others ask. A
remote embedder's vectors, cached by text in the exact tier's store, did the same across
restarts. Counted here by embedder calls, not timed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import deja
from deja.config import build_cache, parse_config
from deja.semantic import OpenAIEmbedder, SemanticCache
from deja.semantic.cache import _flight_key
from deja.semantic.embedders import takes_scope
from deja.semantic.scope import DEFAULT_PARTITION, tenant_scope
from deja.testing import FakeOpenAIServer
from tests.semantic.scripted import Scripted, canned_answer, remote_semantic_config

PROMPT = "Draft the termination letter for employee number 7 in the Lyon office"


def chat(text: str, *, tenant: str | None, model: str = "gpt-4o-mini") -> deja.Request:
    return deja.Request.chat(
        model=model, messages=[{"role": "user", "content": text}], tenant=tenant
    )


class ScopeRecording:
    """Embeds with ``inner`` and records each call's ``scope`` and texts (a remote
    embedder's form: it takes batches, and keeps its vectors per scope)."""

    def __init__(self, inner: Any, *, delay: float = 0.0) -> None:
        self.id, self.dim = inner.id, inner.dim
        self.batch_size = 64
        self.inner = inner
        self.delay = delay
        self.calls: list[tuple[str | None, list[str]]] = []

    def embed(self, texts: Sequence[str], *, scope: str | None = None) -> Any:
        self.calls.append((scope, list(texts)))
        time.sleep(self.delay)
        return self.inner.embed(texts)

    async def aembed(self, texts: Sequence[str], *, scope: str | None = None) -> Any:
        self.calls.append((scope, list(texts)))
        await asyncio.sleep(self.delay)
        return self.inner.embed(texts)


def test_another_tenants_identical_prompt_is_embedded_for_it(embedder: Any) -> None:
    counted = Scripted(embedder)
    tier = SemanticCache(embedder=counted)
    assert tier.store(chat(PROMPT, tenant="team-a"), "key-a")
    assert counted.calls == [1]
    assert not tier.inspect(chat(PROMPT, tenant="team-a")).embedded  # A's own: remembered
    # B's identical prompt finds nothing of A's: its own embedding, and no match
    lookup = tier.inspect(chat(PROMPT, tenant="team-b"))
    assert lookup.embedded and lookup.match is None
    assert counted.calls == [1, 1]
    assert not tier.inspect(chat(PROMPT, tenant="team-b")).embedded
    # the anonymous tenant is one more, and so is another namespace of A's
    assert tier.inspect(chat(PROMPT, tenant=None)).embedded
    assert tier.inspect(chat(PROMPT, tenant="team-a"), namespace="hr").embedded
    # one tenant's prompt asked of another model needs no second vector
    assert not tier.inspect(chat(PROMPT, tenant="team-a", model="gpt-4o")).embedded
    assert counted.calls == [1, 1, 1, 1]


async def test_another_tenants_identical_prompt_is_embedded_for_it_async(
    embedder: Any,
) -> None:
    counted = Scripted(embedder)
    tier = SemanticCache(embedder=counted)
    assert await tier.astore(chat(PROMPT, tenant="team-a"), "key-a")
    assert not (await tier.ainspect(chat(PROMPT, tenant="team-a"))).embedded
    lookup = await tier.ainspect(chat(PROMPT, tenant="team-b"))
    assert lookup.embedded and lookup.match is None
    assert counted.calls == [1, 1]


async def test_an_embedding_in_flight_is_shared_within_one_tenant_only(
    embedder: Any,
) -> None:
    slow = Scripted(embedder, delay=0.2)  # one text per call: identical ones share it
    tier = SemanticCache(embedder=slow)
    both_a = await asyncio.gather(
        tier.ainspect(chat(PROMPT, tenant="team-a")), tier.ainspect(chat(PROMPT, tenant="team-a"))
    )
    assert slow.calls == [1] and all(lookup.embedded for lookup in both_a)
    other = PROMPT.replace("Lyon", "Oslo")
    a_and_b = await asyncio.gather(
        tier.ainspect(chat(other, tenant="team-a")), tier.ainspect(chat(other, tenant="team-b"))
    )
    assert slow.calls == [1, 1, 1] and all(lookup.embedded for lookup in a_and_b)


async def test_a_batching_embedder_embeds_each_tenants_prompt(embedder: Any) -> None:
    slow = Scripted(embedder, delay=0.1, batch_size=64)
    tier = SemanticCache(embedder=slow)
    tenants = ["team-a", "team-b", "team-a", "team-b", None, "team-a"]
    await asyncio.gather(*(tier.ainspect(chat(PROMPT, tenant=t)) for t in tenants))
    assert sum(slow.calls) == 3  # one text per tenant, whatever calls carried them


def test_threads_embed_each_tenants_prompt(embedder: Any) -> None:
    slow = Scripted(embedder, delay=0.1, batch_size=64)
    tier = SemanticCache(embedder=slow)
    tenants = ["team-a", "team-b"] * 6
    with ThreadPoolExecutor(len(tenants)) as pool:
        list(pool.map(lambda t: tier.inspect(chat(PROMPT, tenant=t)), tenants))
    assert sum(slow.calls) == 2


def test_an_embedder_that_takes_a_scope_is_called_once_per_tenant_scope(
    embedder: Any,
) -> None:
    recording = ScopeRecording(embedder)
    tier = SemanticCache(embedder=recording)
    a = tenant_scope("team-a", None, DEFAULT_PARTITION)
    b = tenant_scope("team-b", None, DEFAULT_PARTITION)
    # three prompts of two tenants asked at once: one call per tenant, each named
    keys = [_flight_key(a, "first"), _flight_key(b, "first"), _flight_key(a, "second")]
    vectors = tier._embed_texts(keys)
    assert recording.calls == [(a, ["first", "second"]), (b, ["first"])]
    assert float(vectors[0] @ vectors[1]) > 0.999  # the same text: the same vector
    # through the request path: the scope of the request's tenant
    tier.inspect(chat(PROMPT, tenant="team-b"))
    assert recording.calls[-1] == (b, [PROMPT])
    tier.inspect(chat(PROMPT, tenant=None))
    assert recording.calls[-1] == (tenant_scope(None, None, DEFAULT_PARTITION), [PROMPT])


async def test_an_embedder_that_takes_a_scope_is_called_once_per_tenant_scope_async(
    embedder: Any,
) -> None:
    recording = ScopeRecording(embedder, delay=0.05)
    tier = SemanticCache(embedder=recording)
    a = tenant_scope("team-a", None, DEFAULT_PARTITION)
    b = tenant_scope("team-b", None, DEFAULT_PARTITION)
    keys = [_flight_key(a, "first"), _flight_key(b, "first"), _flight_key(a, "second")]
    await tier._aembed_texts(keys)
    assert sorted(recording.calls) == sorted([(a, ["first", "second"]), (b, ["first"])])
    recording.calls.clear()
    tenants = ["team-a", "team-b", "team-a", "team-b"]
    await asyncio.gather(*(tier.ainspect(chat(PROMPT, tenant=t)) for t in tenants))
    assert sorted(recording.calls) == sorted([(a, [PROMPT]), (b, [PROMPT])])


def test_which_embedders_take_a_scope(embedder: Any) -> None:
    class EmbedOnly:
        def embed(self, texts: Sequence[str], *, scope: str | None = None) -> Any: ...

        async def aembed(self, texts: Sequence[str]) -> Any: ...

    assert takes_scope(OpenAIEmbedder())
    assert takes_scope(ScopeRecording(embedder))
    assert not takes_scope(embedder)  # the local model keeps nothing
    assert not takes_scope(Scripted(embedder))
    assert not takes_scope(EmbedOnly())  # both methods, or the tier passes none


async def test_a_configured_remote_embedder_keeps_each_tenants_vectors_apart(
    tmp_path: Path,
) -> None:
    with FakeOpenAIServer(embedding_dim=16) as emb:
        config = remote_semantic_config(tmp_path / "entries", emb.base_url)

        async def ask(system: str, tenant: str) -> None:
            # a fresh cache each time, as after a restart: the tier's memo is empty, only
            # the store remembers; another system prompt, so the exact tier misses
            cache = build_cache(parse_config(config, base_dir=tmp_path), asynchronous=True)
            request = deja.Request.chat(
                model="openai/gpt-4o",
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": PROMPT},
                ],
                tenant=tenant,
            )
            await cache.fetch(request, canned_answer)
            await cache.aclose()

        await ask("Be brief.", "team-a")
        await ask("Be kind.", "team-a")
        assert emb.count("/v1/embeddings") == 1  # A's repeat: A's stored vector
        await ask("Be curt.", "team-b")
        assert emb.count("/v1/embeddings") == 2  # B's: never A's vector
        await ask("Be warm.", "team-b")
        assert emb.count("/v1/embeddings") == 2
        sent = [r.body for r in emb.requests if r.path.endswith("/embeddings")]
        assert all("cache" not in body for body in sent)  # the scope never goes upstream
