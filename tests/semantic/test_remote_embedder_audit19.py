"""The semantic tier with a remote (OpenAI-compatible) embedder, against the fake server
(audit 19): an input the embedder refuses fails its own lookup only; a lookup waits for
its vector no longer than one call may take, queued time included; a call billed and then
refused is counted in the embedding cost; the proxy's configuration caches vectors in the
exact tier's store; a remote model without a threshold is warned of."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import deja
from deja._outcomes import Failed
from deja.config import build_cache, parse_config
from deja.metrics import NullMetrics
from deja.semantic import OpenAIEmbedder, SemanticCache
from deja.testing import FakeOpenAIServer
from tests.semantic.scripted import canned_answer, remote_semantic_config


def _request(text: str) -> deja.Request:
    return deja.Request.chat(model="openai/gpt-4o", messages=[{"role": "user", "content": text}])


class _Recorded(NullMetrics):
    """A metrics sink that keeps what the semantic tier reports."""

    def __init__(self) -> None:
        self.semantic_errors: list[str] = []
        self.embeddings: list[float] = []  # each reported call's cost
        self.embedding_errors: list[str] = []

    def semantic_error(self, error: str) -> None:
        self.semantic_errors.append(error)

    def embedding(self, embedder: str, seconds: float, usd: float) -> None:
        self.embeddings.append(usd)

    def embedding_failed(self, embedder: str, error: str) -> None:
        self.embedding_errors.append(error)


# -- finding 1: an input refused ---------------------------------------------------------


async def test_inputs_the_embedder_refuses_do_not_switch_the_tier_off() -> None:
    with FakeOpenAIServer() as emb:
        metrics = _Recorded()
        embedder = OpenAIEmbedder(api_base=emb.base_url, api_key="sk", dimensions=16)
        cache = deja.AsyncCache(semantic=SemanticCache(embedder=embedder), metrics=metrics)
        emb.fail_next(400, times=6)  # each prompt too long for the model, say
        for i in range(6):
            result = await cache.fetch(_request(f"long document {i}, summarise it"), canned_answer)
            assert result.info.status == "miss"
        assert metrics.semantic_errors == ["BadRequestError"] * 6  # counted, by kind
        assert cache.semantic_problem is None
        # the tier still asks the embedder: the next prompt is embedded (and indexed)
        before = emb.count("/v1/embeddings")
        await cache.fetch(_request("how do i track my card"), canned_answer)
        assert emb.count("/v1/embeddings") == before + 1
        assert cache.semantic is not None and len(cache.semantic) == 1


async def test_an_embedder_failing_every_call_still_opens_the_breaker() -> None:
    with FakeOpenAIServer() as emb:
        embedder = OpenAIEmbedder(api_base=emb.base_url, api_key="sk", dimensions=16)
        cache = deja.AsyncCache(semantic=SemanticCache(embedder=embedder))
        emb.fail_next(500, times=5)
        for i in range(5):
            await cache.fetch(_request(f"question {i}"), canned_answer)
        assert cache.semantic_problem is not None
        before = emb.count("/v1/embeddings")
        await cache.fetch(_request("one more question"), canned_answer)
        assert emb.count("/v1/embeddings") == before  # skipped while the breaker rests


def test_a_text_refused_within_a_batch_is_marked_as_its_own() -> None:
    with FakeOpenAIServer() as emb:
        embedder = OpenAIEmbedder(api_base=emb.base_url, api_key="sk", dimensions=16)
        tier = SemanticCache(embedder=embedder)
        emb.fail_next(400, times=2)  # the call of both, then the call of the first alone
        vectors = tier._embed_texts(["refused text", "embedded text"])
        failed = vectors[0]
        assert isinstance(failed, Failed)
        assert tier.refused(failed.error)
        assert not isinstance(vectors[1], Failed)


# -- finding 3: a hung embedder ----------------------------------------------------------


async def test_a_lookup_waits_for_its_vector_no_longer_than_one_call_queued_or_not() -> None:
    with FakeOpenAIServer() as emb:
        emb.delay_next(3.0, times=20)  # hung
        embedder = OpenAIEmbedder(api_base=emb.base_url, api_key="sk", dimensions=16, timeout=0.5)
        tier = SemanticCache(embedder=embedder)
        cache = deja.AsyncCache(semantic=tier)

        async def ask(i: int) -> float:
            started = time.monotonic()
            result = await cache.fetch(_request(f"new question number {i}"), canned_answer)
            assert result.info.status == "miss"
            return time.monotonic() - started

        waits = await asyncio.gather(*(ask(i) for i in range(12)))
        # 4 calls run, 8 texts queue behind them: they waited 0.5 s, then their own 0.5 s
        assert max(waits) < 0.8, waits


async def test_lookups_giving_up_together_each_get_their_own_error_counted_once() -> None:
    # one error object was raised to every lookup that gave up within a second: each raise
    # grew its traceback by that caller's frames, and kept their requests alive
    with FakeOpenAIServer() as emb:
        emb.delay_next(3.0, times=20)
        embedder = OpenAIEmbedder(api_base=emb.base_url, api_key="sk", dimensions=16, timeout=0.3)
        tier = SemanticCache(embedder=embedder)
        caught = await asyncio.gather(
            *(tier._aembed(f"new question number {i}") for i in range(6)),
            return_exceptions=True,
        )
        assert all(isinstance(error, deja.UpstreamTimeoutError) for error in caught)
        assert len({id(error) for error in caught}) == 6
        assert len({id(error.failure) for error in caught}) == 1  # type: ignore[union-attr]


def test_a_sync_lookup_waits_for_its_vector_no_longer_than_one_call() -> None:
    with FakeOpenAIServer() as emb:
        emb.delay_next(3.0, times=20)
        embedder = OpenAIEmbedder(api_base=emb.base_url, api_key="sk", dimensions=16, timeout=0.5)
        cache = deja.Cache(semantic=SemanticCache(embedder=embedder))
        waits: list[float] = []

        def ask(i: int) -> None:
            started = time.monotonic()
            cache.fetch(_request(f"new question number {i}"), lambda: asyncio.run(canned_answer()))
            waits.append(time.monotonic() - started)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(waits) == 12
        assert max(waits) < 0.8, waits


# -- finding 5: billed, then refused -----------------------------------------------------


def test_a_call_billed_then_refused_is_counted_in_the_cost() -> None:
    with FakeOpenAIServer(embedding_dim=8) as emb:  # ignores the size asked for: 8, not 1536
        metrics = _Recorded()
        embedder = OpenAIEmbedder(api_base=emb.base_url, api_key="sk")
        tier = SemanticCache(embedder=embedder, metrics=metrics)
        for i in range(3):
            lookup_failed = False
            try:
                tier.check(_request(f"a question about billing number {i}"))
            except deja.ConfigError:
                lookup_failed = True
            assert lookup_failed
        assert metrics.embedding_errors == ["ConfigError"] * 3
        assert len(metrics.embeddings) == 3
        assert all(cost > 0 for cost in metrics.embeddings)


# -- finding 4: the configuration's vector cache -----------------------------------------


async def test_a_configured_remote_embedder_keeps_its_vectors_in_the_store(
    tmp_path: Path,
) -> None:
    with FakeOpenAIServer(embedding_dim=16) as emb:
        config = remote_semantic_config(tmp_path / "entries", emb.base_url)
        for system in ("Be brief.", "Be kind."):  # the second as after a restart
            cache = build_cache(parse_config(config, base_dir=tmp_path), asynchronous=True)
            # another system prompt: an exact miss, the same final text to embed
            request = deja.Request.chat(
                model="openai/gpt-4o",
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": "how do i track my card"},
                ],
            )
            await cache.fetch(request, canned_answer)
            await cache.aclose()
        assert emb.count("/v1/embeddings") == 1


# -- finding 2: a remote model's threshold -----------------------------------------------


def test_a_remote_model_without_a_threshold_is_warned_of(tmp_path: Path) -> None:
    def warnings(**caching: Any) -> tuple[str, ...]:
        config = {"caching": {"type": "semantic", **caching}}
        environ = {"OPENAI_API_KEY": "sk-test"}  # (no key is a warning of its own)
        return parse_config(config, base_dir=tmp_path, environ=environ).warnings

    remote = {"embedding_model": "text-embedding-3-small"}
    (said,) = warnings(params=remote)
    assert "text-embedding-3-small" in said
    assert "deja calibrate" in said
    assert warnings(params=remote, similarity_threshold=0.9) == ()
    assert warnings() == ()  # the embedded model: its own threshold
