"""SemanticCache with the embedded model: check / store / forget / feedback / TTL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from deja.request import Request
from deja.semantic.cache import Feedback, SemanticCache
from deja.semantic.decision import DEFAULT_THRESHOLD
from deja.semantic.index import InProcessIndex, Neighbor
from deja.semantic.verifier import Verifier
from deja.testing import FakeClock
from tests.semantic.scripted import Scripted, bad_request, too_long


def chat(text: str, **kw: Any) -> Request:
    return Request.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **kw)


@pytest.fixture
def cache(embedder: Any, clock: FakeClock) -> SemanticCache:
    return SemanticCache(embedder=embedder, clock=clock)


def test_a_rewording_hits_and_a_different_number_does_not(cache: SemanticCache) -> None:
    assert cache.store(chat("convert 5 km to miles"), "key-5km", ttl=60)
    match = cache.check(chat("how many miles is 5 km?"))
    assert match is not None and match.key == "key-5km"
    assert match.similarity >= DEFAULT_THRESHOLD
    assert cache.check(chat("convert 8 km to miles")) is None
    assert cache.check(chat("what is the capital of France?")) is None


def test_a_prompt_longer_than_the_model_reads_is_left_to_the_exact_tier(
    cache: SemanticCache, embedder: Any
) -> None:
    # the embedded model keeps 256 tokens: two prompts sharing a long context have the same
    # vector whatever they ask at the end, so they must not match by meaning
    context = "The account holder agrees to the terms of the deposit agreement. " * 30
    first = chat(context + "Summarize the text above in one sentence.")
    second = chat(context + "List every fee the text above mentions.")
    a, b = embedder.embed([context + "Summarize it.", context + "List the fees."])
    assert float(a @ b) > 0.999
    assert cache.store(first, "k-long") is False
    assert len(cache) == 0
    assert cache.query(second) is None
    lookup = cache.inspect(second)
    assert lookup.match is None and not lookup.applicable
    # a prompt the model reads whole still matches
    assert cache.store(chat("Summarize the deposit agreement in one sentence."), "k-short")
    assert cache.check(chat("summarize the deposit agreement in one sentence")) is not None


def test_the_shipped_verifier_vetoes_a_trusted_near_duplicate_it_is_sure_of(
    cache: SemanticCache,
) -> None:
    # cosine >= 0.85 and every guard passes, but the verifier scores it below its floor
    # ("using urllib" alone would be a one-word substitution: the guards' to refuse)
    cache.store(chat("make an http get request in python using requests"), "k1")
    lookup = cache.inspect(chat("make an http get request in python using the urllib module"))
    assert lookup.match is None
    _, vetoed = lookup.candidates[0]
    assert vetoed.similarity >= 0.85 and vetoed.reason == "verifier"
    assert vetoed.probability is not None and vetoed.probability < 0.7
    # the same words in another case and punctuation: served whatever the model says
    assert cache.check(chat("Make an HTTP GET request in Python using requests!")) is not None


def test_scopes_never_cross(cache: SemanticCache) -> None:
    cache.store(chat("what is the capital of France?"), "k1")
    assert cache.check(chat("what is the capital of France?", temperature=0.9)) is None
    assert cache.check(chat("what is the capital of France?", tenant="other")) is None
    assert cache.check(chat("what is the capital of France?"), namespace="ns") is None
    assert cache.check(chat("What's the capital of France?")) is not None


def test_ttl(cache: SemanticCache, clock: FakeClock) -> None:
    cache.store(chat("what is the capital of France?"), "k1", ttl=10)
    clock.advance(11)
    assert cache.check(chat("what is the capital of France?")) is None


def test_forget_and_forget_scope(cache: SemanticCache) -> None:
    cache.store(chat("what is the capital of France?"), "k1")
    cache.store(chat("what is the capital of France?", tenant="t"), "k2")
    cache.store(chat("what is the capital of France?"), "k3", namespace="ns")
    assert len(cache) == 3
    assert cache.forget("k1") is True
    assert cache.check(chat("what is the capital of France?")) is None
    assert cache.forget_scope(tenant="t") == 1
    assert cache.check(chat("what is the capital of France?", tenant="t")) is None
    assert cache.check(chat("what is the capital of France?"), namespace="ns") is not None
    assert cache.clear() == 1


def test_feedback_raises_the_entry_threshold_then_forgets_it(embedder: Any) -> None:
    # no verifier, so an explicit threshold (the default is tuned for the verifier)
    cache = SemanticCache(
        embedder=embedder, verifier=None, threshold=0.70, strike_penalty=0.2, max_strikes=2
    )
    cache.store(chat("how do I reset my password?"), "k1")
    reworded = chat("steps to reset a password")  # cosine 0.88
    assert cache.check(reworded) is not None
    assert cache.feedback("k1", correct=False) == Feedback("k1", 1, forgotten=False)
    assert cache.check(reworded) is None  # 0.88 < threshold 0.70 + 0.20
    assert cache.check(chat("how do I reset my password?")) is not None
    assert cache.feedback("k1", correct=True) == Feedback("k1", 0, forgotten=False)
    assert cache.check(reworded) is not None
    cache.feedback("k1", correct=False)
    assert cache.feedback("k1", correct=False) == Feedback("k1", 2, forgotten=True)
    assert len(cache) == 0
    assert cache.feedback("k1", correct=False) is None  # nothing left to report on


def test_strikes_are_shared_by_caches_on_one_index(embedder: Any) -> None:
    # two processes on one shared index (Redis, Qdrant) see each other's reports; here two
    # caches share one in-process index (the Redis case: test_cache_integration.py)
    index = InProcessIndex(dim=embedder.dim)
    first, second = (
        SemanticCache(
            embedder=embedder, index=index, verifier=None, threshold=0.70, strike_penalty=0.2
        )
        for _ in range(2)
    )
    first.store(chat("how do I reset my password?"), "k1")
    reworded = chat("steps to reset a password")  # cosine 0.88
    assert second.check(reworded) is not None
    first.feedback("k1", correct=False)
    first.feedback("k1", correct=True)
    first.feedback("k1", correct=False)
    assert second.inspect(reworded).candidates[0][1].reason == "threshold"
    assert second.feedback("k1", correct=False) == Feedback("k1", 2, forgotten=True)
    assert first.check(reworded) is None and len(index) == 0


async def test_async_feedback(embedder: Any) -> None:
    cache = SemanticCache(embedder=embedder)
    await cache.astore(chat("what is the capital of France?"), "k1")
    assert await cache.afeedback("k1", correct=False) == Feedback("k1", 1, forgotten=False)
    assert await cache.afeedback("nope", correct=False) is None


def test_threshold_override(cache: SemanticCache) -> None:
    cache.store(chat("what is the capital of France?"), "k1")
    assert cache.check(chat("which city is the capital of France?"), threshold=0.999) is None


def test_inspect_explains_a_near_miss(cache: SemanticCache) -> None:
    cache.store(chat("convert 5 km to miles"), "k1")
    lookup = cache.inspect(chat("convert 8 km to miles"))
    assert lookup.match is None
    assert lookup.candidates[0][1].reason.startswith("guards:")
    assert lookup.best_similarity is not None and lookup.best_similarity > 0.8
    assert not cache.inspect(
        Request.chat(model="x", messages=[{"role": "system", "content": "s"}])
    ).applicable


def test_the_store_after_a_miss_reuses_the_checked_vector(embedder: Any) -> None:
    calls: list[int] = []

    class Counting:
        id, dim = embedder.id, embedder.dim

        def embed(self, texts: Any) -> Any:
            calls.append(len(texts))
            return embedder.embed(texts)

        async def aembed(self, texts: Any) -> Any:
            return self.embed(texts)

    cache = SemanticCache(embedder=Counting())
    assert cache.check(chat("hello there")) is None
    cache.store(chat("hello there"), "k")
    assert calls == [1]


async def test_async_twins(embedder: Any) -> None:
    cache = SemanticCache(embedder=embedder)
    assert await cache.astore(chat("what is the capital of France?"), "k1", ttl=None)
    match, miss = await asyncio.gather(
        cache.acheck(chat("What's the capital of France?")),
        cache.acheck(chat("what is the capital of Spain?")),
    )
    assert match is not None and match.key == "k1"
    assert miss is None


def test_save_and_load(embedder: Any, tmp_path: Path) -> None:
    cache = SemanticCache(embedder=embedder)
    cache.store(chat("what is the capital of France?"), "k1")
    cache.feedback("k1", correct=False)
    cache.save(tmp_path / "sem")
    again = SemanticCache(embedder=embedder)
    again.load(tmp_path / "sem")
    assert again.check(chat("What's the capital of France?"), threshold=0.7) is not None
    assert again.feedback("k1", correct=False) == Feedback("k1", 2, forgotten=True)


def test_strikes_saved_beside_the_index_by_older_versions_are_carried_in(
    embedder: Any, tmp_path: Path
) -> None:
    cache = SemanticCache(embedder=embedder)
    cache.store(chat("what is the capital of France?"), "k1")
    cache.save(tmp_path / "sem")
    (tmp_path / "sem" / "feedback.json").write_text('{"k1": 1, "gone": 3}')
    again = SemanticCache(embedder=embedder)
    again.load(tmp_path / "sem")
    assert not (tmp_path / "sem" / "feedback.json").exists()
    assert again.feedback("k1", correct=False) == Feedback("k1", 2, forgotten=True)
    assert again.feedback("gone", correct=False) is None


def test_index_and_embedder_must_agree(embedder: Any) -> None:
    from deja.errors import ConfigError

    with pytest.raises(ConfigError):
        SemanticCache(embedder=embedder, index=InProcessIndex(dim=16))


class _SpyIndex(InProcessIndex):
    def __init__(self) -> None:
        super().__init__(dim=384)
        self.asked: list[bool] = []

    def search(
        self, vector: Any, *, scope: str, k: int = 4, with_vectors: bool = False
    ) -> list[Neighbor]:
        self.asked.append(with_vectors)
        return super().search(vector, scope=scope, k=k, with_vectors=with_vectors)


def test_the_candidates_vectors_come_back_with_the_search(embedder: Any) -> None:
    index = _SpyIndex()
    cache = SemanticCache(embedder=embedder, index=index)
    assert cache.verifier is Verifier.default_for(embedder.id) and cache.verifier.uses_vectors
    cache.store(chat("How can I track my card delivery?"), "k1")
    lookup = cache.inspect(chat("how do i track the delivery of my card"))
    assert lookup.match is not None and lookup.match.probability is not None
    assert index.asked == [True]
    text_only = SemanticCache(embedder=embedder, index=_SpyIndex(), verifier=None)
    text_only.store(chat("How can I track my card delivery?"), "k1")
    text_only.check(chat("how do i track the delivery of my card"))
    assert text_only.index.asked == [False]  # type: ignore[attr-defined]


def test_another_embedder_gets_the_text_only_verifier(embedder: Any) -> None:
    from deja.errors import ConfigError

    class Other:
        id, dim = "other:model:384", 384

        def embed(self, texts: Any) -> Any:
            return embedder.embed(texts)

        async def aembed(self, texts: Any) -> Any:
            return self.embed(texts)

    cache = SemanticCache(embedder=Other())
    assert cache.verifier is not None and not cache.verifier.uses_vectors
    cache.store(chat("How can I track my card delivery?"), "k1")
    assert cache.check(chat("how do i track the delivery of my card")) is not None
    # vector weights learned on one model's dimensions are refused for another's
    with pytest.raises(ConfigError, match="vectors"):
        SemanticCache(embedder=Other(), verifier=Verifier.default_for(embedder.id))


def test_without_a_verifier_the_default_threshold_is_the_bare_one(embedder: Any) -> None:
    from deja.semantic.decision import BARE_THRESHOLD, DEFAULT_THRESHOLD

    assert SemanticCache(embedder=embedder).threshold == DEFAULT_THRESHOLD
    assert SemanticCache(embedder=embedder, verifier=None).threshold == BARE_THRESHOLD
    assert SemanticCache(embedder=embedder, verifier=None, threshold=0.9).threshold == 0.9


class _FixedEmbedder:
    """Vectors chosen by the test, so that the candidates' order is known."""

    id, dim = "fixed:test:3", 3

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        import numpy as np

        self.vectors = {
            t: np.array(v, dtype=np.float32) / np.linalg.norm(v) for t, v in vectors.items()
        }

    def embed(self, texts: Any) -> Any:
        import numpy as np

        return np.stack([self.vectors[t] for t in texts])

    async def aembed(self, texts: Any) -> Any:
        return self.embed(texts)


def _overlap_verifier() -> Verifier:
    # accepts a pair on shared words alone: p = sigmoid(10 * word_jaccard - 3), cut 0.5
    from deja.semantic.verifier import FEATURE_NAMES

    weights = [0.0] * len(FEATURE_NAMES)
    weights[FEATURE_NAMES.index("word_jaccard")] = 10.0
    n = len(FEATURE_NAMES)
    return Verifier(FEATURE_NAMES, (0.0,) * n, (1.0,) * n, tuple(weights), -3.0, cut=0.5)


def _two_candidates(
    query: str, nearest: tuple[str, str], farther: tuple[str, str]
) -> SemanticCache:
    """A cache holding two entries (text, key), the first nearer to ``query`` (cosine 0.95
    vs 0.90), judged by :func:`_overlap_verifier` from a threshold of 0.5."""
    embedder = _FixedEmbedder(
        {query: [1.0, 0.0, 0.0], nearest[0]: [0.95, 0.31, 0.0], farther[0]: [0.9, 0.0, 0.44]}
    )
    cache = SemanticCache(embedder=embedder, verifier=_overlap_verifier(), threshold=0.5)
    for text, key in (nearest, farther):
        cache.store(chat(text), key)
    return cache


def test_the_check_stops_at_the_first_candidate_the_verifier_rejects() -> None:
    query, nearest, farther = "parcel tracking status", "lost luggage desk", "parcel tracking page"
    cache = _two_candidates(query, (nearest, "nearest"), (farther, "farther"))
    lookup = cache.inspect(chat(query))
    # the nearest meaningful candidate was judged different: a farther one is not served
    assert lookup.match is None
    assert [(key, d.reason) for key, d in lookup.candidates] == [("nearest", "verifier")]
    # evaluate_all still decides every candidate (calibration, metrics)
    everything = cache.inspect(chat(query), evaluate_all=True)
    assert [key for key, _ in everything.candidates] == ["nearest", "farther"]
    assert everything.match is not None and everything.match.key == "farther"
    # alone, the farther candidate is served
    cache.forget("nearest")
    assert cache.check(chat(query)) is not None


def test_a_guard_rejection_moves_on_to_the_next_candidate() -> None:
    query, other_number, same_number = (
        "convert 5 km to miles",
        "convert 8 km to miles",
        "convert 5 km into miles",
    )
    cache = _two_candidates(query, (other_number, "8km"), (same_number, "5km"))
    lookup = cache.inspect(chat(query))
    assert lookup.match is not None and lookup.match.key == "5km"
    assert lookup.candidates[0][0] == "8km"
    assert lookup.candidates[0][1].reason.startswith("guards:")


async def test_a_burst_of_one_new_prompt_embeds_it_once(embedder: Any) -> None:
    """Fifty callers of one new prompt at once made fifty (paid) embedding calls before
    the answer's single-flight made one upstream call."""
    slow = Scripted(embedder, delay=0.05)
    cache = SemanticCache(embedder=slow)
    await asyncio.gather(*(cache.acheck(chat("a brand new question")) for _ in range(50)))
    assert slow.calls == [1]


def test_a_child_forked_while_a_text_is_embedded_embeds_it_itself(embedder: Any) -> None:
    """The child inherited the parent's call in flight, whose thread it does not have: an
    embedding of that text in the child waited for ever."""
    from tests.helpers import finishes_in_a_fork_during

    tier = SemanticCache(embedder=Scripted(embedder, delay=0.5))
    text = "what is the refund policy"
    assert finishes_in_a_fork_during(lambda: tier._embed(text), lambda: tier._embed(text))


def test_an_embedder_s_unusable_vector_is_refused_not_indexed(embedder: Any) -> None:
    """Any embedder's (a custom one's too): a NaN or all-zero vector was indexed, where it
    never matches and spoils a graph's searches."""
    import numpy as np

    from deja.errors import ProviderError

    class Broken:
        id, dim = "custom:broken:384", embedder.dim

        def embed(self, texts: Any) -> Any:
            return np.zeros((len(texts), self.dim), dtype=np.float32)

        async def aembed(self, texts: Any) -> Any:
            return self.embed(texts)

    tier = SemanticCache(embedder=Broken(), verifier=None)
    with pytest.raises(ProviderError, match="unusable"):
        tier.store(chat("what is the refund policy"), "k")
    assert len(tier) == 0


async def test_prompts_embedded_at_once_share_calls_with_an_embedder_that_batches(
    embedder: Any,
) -> None:
    """Fifty different new prompts at once made fifty calls of a remote embedder (each a
    request against its rate limit); now a few calls carry them, each prompt its vector."""
    import numpy as np

    slow = Scripted(embedder, delay=0.05, batch_size=64)
    tier = SemanticCache(embedder=slow)
    texts = [f"what is the fee for transfer number {i}" for i in range(50)]
    got = await asyncio.gather(*(tier._aembed(text) for text in texts))
    assert sum(slow.calls) == 50 and len(slow.calls) <= 5  # 4 alone, the rest together
    assert all(asked for _, asked in got)
    alone = embedder.embed(texts)
    assert all(float(np.dot(v, alone[i])) > 0.999 for i, (v, _) in enumerate(got))
    assert tier._aembedding.in_flight() == 0


def test_threads_embedding_at_once_share_calls_with_an_embedder_that_batches(
    embedder: Any,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    slow = Scripted(embedder, delay=0.05, batch_size=64)
    tier = SemanticCache(embedder=slow)
    texts = [f"how do I close account {i}" for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        got = list(pool.map(tier._embed, texts))
    assert sum(slow.calls) == 24 and len(slow.calls) < 24
    assert [tier._memo_get(text) is not None for text in texts] == [True] * 24
    assert all(asked for _, asked in got)


def test_an_embedder_that_takes_one_text_at_a_time_is_asked_for_each_in_parallel(
    embedder: Any,
) -> None:
    """The local model is no faster per text in a batch: prompts are not queued behind
    each other's calls (eight calls meet inside the embedder, or the barrier breaks)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    meet = threading.Barrier(8, timeout=10)

    class Meeting(Scripted):
        def embed(self, texts: Any) -> Any:
            meet.wait()
            return super().embed(texts)

    slow = Meeting(embedder)
    tier = SemanticCache(embedder=slow)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(tier._embed, [f"question {i}" for i in range(8)]))
    assert slow.calls == [1] * 8


async def test_one_input_an_endpoint_refuses_fails_only_its_own_lookup(embedder: Any) -> None:
    """An endpoint refuses a whole request for one input too long (400): batched with it,
    every other prompt's lookup failed too (and its answer went unindexed). The call is
    split until the refused input is alone."""
    from deja.errors import BadRequestError, ServerError

    picky = Scripted(embedder, delay=0.05, refuse=too_long(bad_request), batch_size=64)
    tier = SemanticCache(embedder=picky)
    texts = [f"how do I order card number {i}" for i in range(12)]
    texts[7] = "tell me everything " * 40
    got = await asyncio.gather(*(tier._aembed(text) for text in texts), return_exceptions=True)
    assert [isinstance(g, BadRequestError) for g in got] == [i == 7 for i in range(12)]
    assert sum(1 for n in picky.calls if n == 1) <= 8  # halves, not one call per prompt
    # a failure of the endpoint itself (not of an input) fails the call: no splitting
    server_down = ServerError("upstream down", status_code=500)
    down = Scripted(embedder, delay=0.05, fail=lambda n: server_down, batch_size=64)
    tier = SemanticCache(embedder=down)
    got = await asyncio.gather(*(tier._aembed(f"q {i}") for i in range(12)), return_exceptions=True)
    assert all(isinstance(g, ServerError) for g in got)
    assert len(down.calls) <= 5


def test_a_refused_input_is_found_by_halves_in_a_sync_call(embedder: Any) -> None:
    from deja._outcomes import Failed

    picky = Scripted(embedder, refuse=too_long(bad_request), batch_size=64)
    tier = SemanticCache(embedder=picky)
    texts = [f"question {i}" for i in range(8)]
    texts[2] = "x " * 300
    out = tier._embed_texts(texts)
    assert [isinstance(v, Failed) for v in out] == [i == 2 for i in range(8)]
    assert picky.calls == [8, 4, 4, 2, 2, 1, 1]  # all, its halves, the refused half's, ...


def test_a_refusal_of_every_input_is_not_split_down_to_single_texts(embedder: Any) -> None:
    """A setting the endpoint refuses whatever it is sent (dimensions for a model without
    them: 400 on every call) was split down to single texts: 2n-1 calls for n prompts.
    Both halves refused: the refusal is no single input's, and the halving stops."""
    from deja._outcomes import Failed
    from deja.errors import BadRequestError

    refusal = BadRequestError("this model does not support 'dimensions'", status_code=400)
    refusing = Scripted(embedder, refuse=lambda texts: refusal, batch_size=64)
    tier = SemanticCache(embedder=refusing)
    out = tier._embed_texts([f"question {i}" for i in range(64)])
    assert all(isinstance(v, Failed) for v in out)
    assert refusing.calls == [64, 32, 32]


def test_a_custom_embedder_s_own_400_splits_the_call_too(embedder: Any) -> None:
    """A custom embedder on the openai SDK raises the SDK's BadRequestError (a
    status_code of 400), not deja's: it was not split."""
    from deja._outcomes import Failed

    class SdkError(Exception):
        status_code = 400

    tier = SemanticCache(embedder=Scripted(embedder, refuse=too_long(SdkError), batch_size=64))
    texts = [f"question {i}" for i in range(4)]
    texts[0] = "y " * 300
    out = tier._embed_texts(texts)
    assert [isinstance(v, Failed) for v in out] == [True, False, False, False]
