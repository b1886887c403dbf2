"""Tenants share nothing the semantic tier works out of a prompt's text (session 21).

1. What deciding needs of a text (the guards' signature, the verifier's text features, the
   substitution guard's word vectors) was cached per text for every tenant: tenant B's
   check of a prompt another tenant had just sent was decided ~0.4 ms sooner, a timing
   oracle on what others ask. Each is now kept per tenant scope; shown here by the
   objects each tenant's decision is given (and the embedder calls for words), not timed.
2. A remote embedder's vectors of a tenant's prompts were kept as the anonymous tenant's
   entries (namespace ``semantic/<scope>``): flushing the tenant left them. They are now
   that tenant's entries, in the request's namespace.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import deja
import deja.semantic.decision as decision
import deja.semantic.guards as guards
from deja.config import build_cache, parse_config
from deja.semantic import OpenAIEmbedder, SemanticCache
from deja.semantic.embedders import takes_scope, takes_tenant
from deja.semantic.scope import DEFAULT_PARTITION, tenant_scope
from deja.stores import MemoryStore
from deja.testing import FakeOpenAIServer
from tests.semantic.scripted import canned_answer, remote_semantic_config

STORED = "How do I install nginx on Ubuntu 22.04?"
ASKED = "How can I install nginx on Ubuntu 22.04?"


def chat(text: str, *, tenant: str | None, model: str = "gpt-4o-mini") -> deja.Request:
    return deja.Request.chat(
        model=model, messages=[{"role": "user", "content": text}], tenant=tenant
    )


class Seen:
    """What decide() was given per check: the guards' signatures (stored, asked) and the
    verifier's text features (stored, asked), as the objects themselves."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.signatures: list[tuple[Any, Any]] = []
        self.features: list[tuple[Any, Any]] = []
        check_guards, pair_features = decision.check_guards, decision.pair_features

        def seen_guards(stored: Any, asked: Any, settings: Any = None) -> Any:
            self.signatures.append((stored, asked))
            return check_guards(stored, asked, settings)

        def seen_features(similarity: float, a: str, b: str, **kw: Any) -> list[float]:
            from deja.semantic.verifier import text_features

            # (the features it was given, else those it would have looked up)
            given_a, given_b = kw.get("features_a"), kw.get("features_b")
            self.features.append(
                (
                    given_a if given_a is not None else text_features(a),
                    given_b if given_b is not None else text_features(b),
                )
            )
            return pair_features(similarity, a, b, **kw)

        monkeypatch.setattr(decision, "check_guards", seen_guards)
        monkeypatch.setattr(decision, "pair_features", seen_features)


def test_what_deciding_needs_of_a_text_is_worked_out_per_tenant(
    embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tier = SemanticCache(embedder=embedder)
    seen = Seen(monkeypatch)
    for tenant in ("team-a", "team-b"):
        assert tier.store(chat(STORED, tenant=tenant), f"key-{tenant}")
    assert tier.check(chat(ASKED, tenant="team-a")) is not None  # A's own entry: a hit
    assert tier.check(chat(ASKED, tenant="team-b")) is not None
    # B's check found nothing A's check had left: it worked out its own
    (a_sigs, b_sigs), (a_features, b_features) = seen.signatures, seen.features
    assert a_sigs[0] is not b_sigs[0] and a_sigs[1] is not b_sigs[1]  # stored, asked
    assert a_features[0] is not b_features[0] and a_features[1] is not b_features[1]
    assert a_sigs[1] == b_sigs[1]  # (the same anchors, worked out twice)
    # kept per tenant scope
    a = tenant_scope("team-a", None, DEFAULT_PARTITION)
    b = tenant_scope("team-b", None, DEFAULT_PARTITION)
    assert set(tier._texts) == {(a, STORED), (a, ASKED), (b, STORED), (b, ASKED)}
    assert tier._texts[a, ASKED].signature is a_sigs[1]
    assert tier._texts[b, ASKED].signature is b_sigs[1]
    # within one tenant they are worked out once: A's next check is decided on A's objects
    tier.store(chat(STORED, tenant="team-a", model="gpt-4o"), "key-a-4o")
    assert tier.check(chat(ASKED, tenant="team-a", model="gpt-4o")) is not None
    assert seen.signatures[-1][1] is a_sigs[1]


class Words:
    """The embedded model, recording the texts of each call (the substitution guard embeds
    each word it weighs alone)."""

    def __init__(self, inner: Any) -> None:
        self.id, self.dim = inner.id, inner.dim
        self.inner = inner
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> Any:
        self.texts.extend(texts)
        return self.inner.embed(texts)

    async def aembed(self, texts: Sequence[str]) -> Any:
        return self.embed(texts)


def test_the_words_a_substitution_weighs_are_embedded_per_tenant(embedder: Any) -> None:
    words = Words(embedder)
    tier = SemanticCache(embedder=words)
    stored, asked = "how to install nginx on ubuntu", "how to configure nginx on ubuntu"
    for tenant in ("team-a", "team-b"):
        tier.store(chat(stored, tenant=tenant), f"key-{tenant}")
    words.texts.clear()
    lookup = tier.inspect(chat(asked, tenant="team-a"))
    assert lookup.match is None and lookup.candidates[0][1].detail is not None  # weighed
    assert sorted(words.texts) == sorted([asked, "install", "configure"])
    words.texts.clear()
    tier.inspect(chat(asked, tenant="team-a"))
    assert words.texts == []  # A's own words: remembered
    tier.inspect(chat(asked, tenant="team-b"))
    assert sorted(words.texts) == sorted([asked, "install", "configure"])  # never A's


# the caches of a function of something else than a prompt, and why each may stay
NOT_PROMPTS = {
    "deja.semantic.guards.tokenizer._stem": "one word: sub-microsecond, common words",
    "deja.semantic.verifier._shipped": "the name of a file shipped with deja",
}


def test_no_guard_or_verifier_function_caches_prompts() -> None:
    """A cache of texts shared by every tenant (an ``lru_cache`` on a function of a prompt)
    is the timing oracle of finding 1: only caches of constant tables and those of
    :data:`NOT_PROMPTS` remain."""
    modules = [importlib.import_module(f"deja.semantic.{n}") for n in ("decision", "verifier")]
    modules += [
        importlib.import_module(f"deja.semantic.guards.{m.name}")
        for m in pkgutil.iter_modules(guards.__path__)
    ]
    cached = {  # (by where each is defined: a module imports some of another's)
        f"{fn.__module__}.{fn.__qualname__}": fn
        for module in modules
        for fn in vars(module).values()
        if isinstance(fn, functools._lru_cache_wrapper)
    }
    assert cached  # (the tables' caches: the scan sees lru caches)
    of_texts = {
        name
        for name, fn in cached.items()
        if inspect.signature(fn.__wrapped__).parameters and name not in NOT_PROMPTS
    }
    assert of_texts == set()


def test_clearing_a_tenant_forgets_what_the_tier_kept_of_its_prompts(embedder: Any) -> None:
    tier = SemanticCache(embedder=embedder)
    for tenant in ("team-a", "team-b"):
        tier.store(chat(STORED, tenant=tenant), f"key-{tenant}")
        assert not tier.inspect(chat(STORED, tenant=tenant)).embedded  # remembered
    assert tier.forget_scope(tenant="team-a") == 1
    assert tier.inspect(chat(STORED, tenant="team-a")).embedded  # its vector: forgotten too
    assert not tier.inspect(chat(STORED, tenant="team-b")).embedded
    b = tenant_scope("team-b", None, DEFAULT_PARTITION)
    assert {scope for scope, _ in tier._texts} == {b}  # (A's lookup since: no candidate)
    tier.clear()
    assert tier.inspect(chat(STORED, tenant="team-b")).embedded
    assert not tier._texts


# -- 2: a remote embedder's vectors are the asking tenant's entries ----------------------


class OwnerRecording:
    """Embeds with ``inner`` and records each call's scope, tenant and namespace."""

    def __init__(self, inner: Any) -> None:
        self.id, self.dim = inner.id, inner.dim
        self.batch_size = 64
        self.inner = inner
        self.calls: list[tuple[str | None, str | None, str | None, list[str]]] = []

    def embed(
        self,
        texts: Sequence[str],
        *,
        scope: str | None = None,
        tenant: str | None = None,
        namespace: str | None = None,
    ) -> Any:
        self.calls.append((scope, tenant, namespace, list(texts)))
        return self.inner.embed(texts)

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        scope: str | None = None,
        tenant: str | None = None,
        namespace: str | None = None,
    ) -> Any:
        return self.embed(texts, scope=scope, tenant=tenant, namespace=namespace)


async def test_the_tier_tells_an_embedder_whose_prompt_it_embeds(embedder: Any) -> None:
    recording = OwnerRecording(embedder)
    assert takes_tenant(recording) and takes_tenant(OpenAIEmbedder())
    assert not takes_tenant(embedder)
    tier = SemanticCache(embedder=recording)
    tier.inspect(chat(STORED, tenant="team-a"), namespace="hr")
    await tier.ainspect(chat(STORED, tenant="team-b"))
    tier.store(chat(ASKED, tenant=None), "key")
    assert recording.calls == [
        (tenant_scope("team-a", "hr", DEFAULT_PARTITION), "team-a", "hr", [STORED]),
        (tenant_scope("team-b", None, DEFAULT_PARTITION), "team-b", None, [STORED]),
        (tenant_scope(None, None, DEFAULT_PARTITION), None, None, [ASKED]),
    ]


class ScopeOnly:
    """Embeds with ``inner``, recording each call's scope (it takes no tenant)."""

    def __init__(self, inner: Any) -> None:
        self.id, self.dim = inner.id, inner.dim
        self.inner = inner
        self.calls: list[tuple[str | None, list[str]]] = []

    def embed(self, texts: Sequence[str], *, scope: str | None = None) -> Any:
        self.calls.append((scope, list(texts)))
        return self.inner.embed(texts)

    async def aembed(self, texts: Sequence[str], *, scope: str | None = None) -> Any:
        return self.embed(texts, scope=scope)


def test_an_embedder_that_takes_only_a_scope_is_told_only_the_scope(embedder: Any) -> None:
    only = ScopeOnly(embedder)
    assert takes_scope(only) and not takes_tenant(only)
    SemanticCache(embedder=only).inspect(chat(STORED, tenant="team-a"), namespace="hr")
    assert only.calls == [(tenant_scope("team-a", "hr", DEFAULT_PARTITION), [STORED])]


def test_a_remote_embedders_vectors_are_entries_of_the_asking_tenant() -> None:
    with FakeOpenAIServer(embedding_dim=16) as emb:
        cache = deja.Cache(store=MemoryStore())
        client = deja.Client(cache=cache, max_retries=0)
        remote = OpenAIEmbedder(api_base=emb.base_url, api_key="sk", dimensions=16, client=client)
        for tenant in ("team-a", "team-b"):
            remote.embed([STORED], scope="s", tenant=tenant, namespace="hr")
        assert emb.count("/v1/embeddings") == 2  # one each: never another tenant's
        remote.embed([STORED], scope="s", tenant="team-a", namespace="hr")
        assert emb.count("/v1/embeddings") == 2  # A's own: stored
        assert cache.clear(tenant="team-a", namespace="hr") == 1  # A's vector: A's entry
        remote.embed([STORED], scope="s", tenant="team-a", namespace="hr")
        assert emb.count("/v1/embeddings") == 3
        remote.embed([STORED], scope="s", tenant="team-b", namespace="hr")
        assert emb.count("/v1/embeddings") == 3  # B's stayed
        assert cache.clear(tenant="team-b", namespace="hr") == 1


async def test_a_remote_embedders_vectors_are_entries_of_the_asking_tenant_async() -> None:
    with FakeOpenAIServer(embedding_dim=16) as emb:
        cache = deja.AsyncCache(store=MemoryStore())
        remote = OpenAIEmbedder(
            api_base=emb.base_url,
            api_key="sk",
            dimensions=16,
            aclient=deja.AsyncClient(cache=cache, max_retries=0),
        )
        for tenant in ("team-a", "team-b"):
            await remote.aembed([STORED], scope="s", tenant=tenant, namespace=None)
        assert emb.count("/v1/embeddings") == 2
        assert await cache.clear(tenant="team-a", namespace=None) == 1
        assert await cache.clear(tenant="team-b", namespace=None) == 1
        # an unscoped call (not the tier's) names no tenant: the anonymous one's entry
        await remote.aembed([STORED])
        assert await cache.clear(tenant=None, namespace=None) == 1


def _asked(system: str, tenant: str) -> deja.Request:
    # another system prompt each time: the exact tier misses, the tier embeds the prompt
    return deja.Request.chat(
        model="openai/gpt-4o",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": STORED}],
        tenant=tenant,
    )


@pytest.mark.parametrize("namespace", [None, "prod"])
async def test_flushing_a_tenant_deletes_its_remote_embedders_vectors(
    tmp_path: Path, namespace: str | None
) -> None:
    """The admin route's flush of one tenant (``cache.clear(namespace=cache.namespace,
    tenant=...)``) deletes the vectors the configured remote embedder kept for it."""
    with FakeOpenAIServer(embedding_dim=16) as emb:
        config = remote_semantic_config(tmp_path / "entries", emb.base_url)
        config["caching"]["namespace"] = namespace

        async def ask(system: str, tenant: str) -> None:
            # a fresh cache each time, as after a restart: only the store remembers
            cache = build_cache(parse_config(config, base_dir=tmp_path), asynchronous=True)
            await cache.fetch(_asked(system, tenant), canned_answer)
            await cache.aclose()

        await ask("Be brief.", "team-a")
        await ask("Be curt.", "team-b")
        assert emb.count("/v1/embeddings") == 2
        cache = build_cache(parse_config(config, base_dir=tmp_path), asynchronous=True)
        assert cache.namespace == namespace
        assert await cache.clear(namespace=cache.namespace, tenant="team-a") == 2  # answer, vector
        await cache.aclose()
        await ask("Be kind.", "team-b")
        assert emb.count("/v1/embeddings") == 2  # B's vector stayed
        await ask("Be kind.", "team-a")
        assert emb.count("/v1/embeddings") == 3  # A's went with A's entries


def test_flushing_a_tenant_deletes_its_remote_embedders_vectors_sync(tmp_path: Path) -> None:
    with FakeOpenAIServer(embedding_dim=16) as emb:
        config = remote_semantic_config(tmp_path / "entries", emb.base_url)

        def answer() -> dict[str, Any]:
            import asyncio

            return asyncio.run(canned_answer())

        def ask(system: str, tenant: str) -> None:
            cache = build_cache(parse_config(config, base_dir=tmp_path))
            cache.fetch(_asked(system, tenant), answer)
            cache.close()

        ask("Be brief.", "team-a")
        ask("Be curt.", "team-b")
        cache = build_cache(parse_config(config, base_dir=tmp_path))
        assert cache.clear(namespace=cache.namespace, tenant="team-a") == 2
        cache.close()
        ask("Be kind.", "team-b")
        assert emb.count("/v1/embeddings") == 2
        ask("Be kind.", "team-a")
        assert emb.count("/v1/embeddings") == 3
