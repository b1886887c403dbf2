"""The semantic tier behind the exact tier in Cache, AsyncCache and the Client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import deja
from deja.semantic import Feedback, GuardSettings, SemanticCache
from deja.semantic.embedders import OpenAIEmbedder, WordSimilarity
from tests.helpers import FaultyStore, LoopTicks, chat_request, chat_response
from tests.semantic.scripted import Scripted, down


def make_cache(embedder: Any, **kw: Any) -> deja.Cache:
    return deja.Cache(semantic=SemanticCache(embedder=embedder), **kw)


def test_a_rewording_is_a_semantic_hit(embedder: Any) -> None:
    cache = make_cache(embedder)
    calls = 0

    def upstream() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return chat_response("You can track it in the app.")

    first = cache.fetch(chat_request("How can I track my card delivery?"), upstream)
    second = cache.fetch(chat_request("how do i track the delivery of my card"), upstream)
    assert first.info.status == "miss"
    assert second.info.status == "semantic_hit" and second.info.similarity is not None
    assert second.info.key == first.info.key  # the entry that answered
    assert second.response == first.response and calls == 1
    assert cache.stats().semantic_hits == 1 and cache.stats().hit_ratio == 0.5


def test_numbers_and_directions_never_hit(embedder: Any) -> None:
    cache = make_cache(embedder)
    cache.fetch(chat_request("convert 5 km to miles"), lambda: chat_response("3.1 miles"))
    for other in ("convert 8 km to miles", "convert 5 miles to km"):
        assert cache.fetch(chat_request(other), lambda: chat_response("x")).info.status == "miss"


def test_one_word_traded_for_another_thing_is_a_miss_and_for_a_synonym_a_hit(
    embedder: Any,
) -> None:
    from deja.semantic.decision import SUBSTITUTION_SIMILARITY

    semantic = SemanticCache(embedder=embedder)
    cache = deja.Cache(semantic=semantic)
    cache.fetch(chat_request("how to install nginx on ubuntu"), lambda: chat_response("apt"))
    cache.fetch(chat_request("largest country in Africa"), lambda: chat_response("Algeria"))
    configure = chat_request("how to configure nginx on ubuntu")
    lookup = semantic.inspect(configure)
    assert semantic._words is not None
    words_alike = semantic._words("install", "configure")
    # close enough to be served by similarity alone; the traded word decides
    assert lookup.candidates[0][1].similarity > 0.85
    assert lookup.match is None and lookup.candidates[0][1].reason == "guards:substitution"
    assert cache.get(configure).info.status == "miss"
    explained = cache.explain_semantic(configure)["candidates"][0]
    assert explained["decision"] == "guards:substitution"
    assert explained["detail"] == f"install / configure: {words_alike:.2f}"
    assert cache.get(chat_request("biggest country in Africa")).info.status == "semantic_hit"
    words = semantic._words
    assert words is not None
    assert words("install", "configure") < SUBSTITUTION_SIMILARITY < words("largest", "biggest")
    # off with the guard, and for an embedder whose word scale is not the embedded model's
    off = SemanticCache(embedder=embedder, guards=GuardSettings(substitution=False))
    off.store(chat_request("how to install nginx on ubuntu"), "k")
    assert off.inspect(configure).match is not None
    assert WordSimilarity.of(OpenAIEmbedder()) is None


def test_a_long_shared_context_with_another_question_is_a_miss(embedder: Any) -> None:
    cache = make_cache(embedder)
    context = "Quarterly report: revenue grew in every region except the north. " * 40
    summary = chat_request(context + "Summarize the report in one sentence.")
    risks = chat_request(context + "Which region shrank?")
    first = cache.fetch(summary, lambda: chat_response("Growth nearly everywhere."))
    answer = cache.fetch(risks, lambda: chat_response("The north."))
    assert first.info.status == answer.info.status == "miss"
    assert answer.response == chat_response("The north.")
    assert cache.get(summary).info.status == "hit"  # the exact tier still serves repeats


def test_semantic_false_and_deletion_and_namespaces(embedder: Any) -> None:
    cache = make_cache(embedder)
    first = cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
    reworded = chat_request("how do i track the delivery of my card")
    assert cache.get(reworded, control={"semantic": False}).info.status == "miss"
    assert cache.get(reworded, control={"namespace": "other"}).info.status == "miss"
    assert cache.get(reworded).info.status == "semantic_hit"
    cache.delete(first.info.key)
    assert cache.get(reworded).info.status == "miss"
    assert cache.semantic is not None and len(cache.semantic) == 0


def test_a_request_can_ask_for_closer_matches_not_looser_ones(embedder: Any) -> None:
    cache = make_cache(embedder)
    cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
    reworded = chat_request("how do i track the delivery of my card")
    similarity = cache.get(reworded).info.similarity
    assert similarity is not None and similarity < 0.99
    strict = cache.get(reworded, control={"similarity_threshold": 0.99})
    assert strict.info.status == "miss"
    just = cache.get(reworded, control={"similarity_threshold": similarity - 0.001})
    assert just.info.status == "semantic_hit"
    # below the tier's own threshold it changes nothing
    strict_tier = deja.Cache(semantic=SemanticCache(embedder=embedder, threshold=0.99))
    strict_tier.fetch(chat_request("How can I track my card delivery?"), chat_response)
    looser = strict_tier.get(reworded, control={"similarity_threshold": 0.5})
    assert looser.info.status == "miss"
    with pytest.raises(deja.ControlError, match="similarity_threshold"):
        cache.get(reworded, control={"similarity_threshold": 2})


def test_explain_semantic_names_the_prompt_that_would_answer_and_why(embedder: Any) -> None:
    cache = make_cache(embedder)
    asked = chat_request("How can I track my card delivery?")
    cache.fetch(asked, chat_response)
    cache.fetch(chat_request("convert 5 km to miles"), chat_response)
    before = cache.stats()
    hit = cache.explain_semantic(chat_request("how do i track the delivery of my card"))
    assert hit["applicable"] and hit["match"] == cache.key(asked)
    best = hit["candidates"][0]
    assert best["key"] == cache.key(asked) and best["decision"] == "hit"
    assert best["prompt"] == "How can I track my card delivery?" and best["similarity"] > 0.85
    miss = cache.explain_semantic(chat_request("convert 8 km to miles"))
    assert miss["match"] is None
    assert miss["candidates"][0]["prompt"] == "convert 5 km to miles"
    assert miss["candidates"][0]["decision"] == "guards:numbers"
    strict = cache.explain_semantic(
        chat_request("how do i track the delivery of my card"), {"similarity_threshold": 0.99}
    )
    assert strict["threshold"] == 0.99 and strict["match"] is None
    assert not cache.explain_semantic(chat_request("x " * 2000))["applicable"]
    assert cache.stats() == before  # explaining is not a lookup
    with pytest.raises(deja.ConfigError):
        deja.Cache().explain_semantic(asked)


def test_tenants_never_share_semantic_hits(embedder: Any) -> None:
    cache = make_cache(embedder)
    a = deja.Request.chat(
        model="gpt-4o",
        messages=[{"role": "user", "content": "How can I track my card delivery?"}],
        tenant="a",
    )
    b = deja.Request.chat(
        model="gpt-4o",
        messages=[{"role": "user", "content": "how do i track the delivery of my card"}],
        tenant="b",
    )
    cache.put(a, chat_response())
    assert cache.get(b).info.status == "miss"


def test_a_new_key_prefix_reaches_no_earlier_answer(embedder: Any) -> None:
    from deja.stores import MemoryStore

    store = MemoryStore()
    old = deja.Cache(store=store, semantic=SemanticCache(embedder=embedder))
    old.put(chat_request("How can I track my card delivery?"), chat_response("v1 answer"))
    # a shared index (as a Redis one is): the new prefix's tier sees the old vectors
    semantic = SemanticCache(embedder=embedder, index=old.semantic.index)  # type: ignore[union-attr]
    new = deja.Cache(store=store, key_prefix="deja:prompt-v2:", semantic=semantic)
    for text in ("How can I track my card delivery?", "how do i track the delivery of my card"):
        assert new.get(chat_request(text)).info.status == "miss"
    assert old.get(chat_request("how do i track the delivery of my card")).info.status == (
        "semantic_hit"
    )
    # and clearing one prefix leaves the other's vectors
    new.put(chat_request("What is the capital of Peru?"), chat_response("Lima"))
    new.clear()
    assert old.get(chat_request("how do i track the delivery of my card")).info.status == (
        "semantic_hit"
    )
    with pytest.raises(deja.ConfigError, match="of its own"):
        deja.Cache(key_prefix="other:", semantic=semantic)


def test_a_custom_key_builders_distinctions_hold_for_the_semantic_tier(embedder: Any) -> None:
    def by_user(request: deja.Request) -> str:
        from deja.keys import default_digest

        return f"{request.params.get('metadata', {}).get('user')}:{default_digest(request)}"

    cache = deja.Cache(semantic=SemanticCache(embedder=embedder), key_builder=by_user)
    alice = chat_request("How can I track my card delivery?", metadata={"user": "alice"})
    cache.put(alice, chat_response("Alice's card is on its way"))
    bob = chat_request("how do i track the delivery of my card", metadata={"user": "bob"})
    assert cache.get(bob).info.status == "miss"
    again = chat_request("how do i track the delivery of my card", metadata={"user": "alice"})
    assert cache.get(again).info.status == "semantic_hit"


def test_a_key_builder_failing_without_the_final_text_skips_the_tier_and_says_why(
    embedder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The builder is asked for the request without its final text (the scope of a lookup
    by meaning); one that fails there only skips the tier for such requests. It was
    counted as the tier failing, opened its breaker, and said "the semantic tier failed"."""
    from deja.keys import default_digest

    def by_first_word(request: deja.Request) -> str:
        first = request.messages[-1]["content"].split()[0].lower()  # IndexError on ""
        return f"{first}:{default_digest(request)}"

    cache = deja.Cache(semantic=SemanticCache(embedder=embedder), key_builder=by_first_word)
    with caplog.at_level("WARNING", logger="deja.cache"):
        for _ in range(7):  # past the breaker's threshold of 5
            cache.put(chat_request("How can I track my card delivery?"), chat_response())
            found = cache.get(chat_request("how do i track the delivery of my card"))
            assert found.info.status == "miss"
        assert cache.get(chat_request("How can I track my card delivery?")).info.status == "hit"
    assert cache.semantic_problem is None  # the tier is well: its breaker never opened
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "the key builder failed on a request without its final" in said[0]


def test_a_key_builder_sees_text_as_parts_and_as_a_string_alike(embedder: Any) -> None:
    """A plain string content equals a single text part (DESIGN.md): with a key builder
    (which is asked for the request without its final text) a rewording sent as parts
    still finds a question stored as a string, and the other way round."""
    from deja.keys import default_digest

    def wrapped(request: deja.Request) -> str:
        return default_digest(request)

    def as_parts(text: str) -> deja.Request:
        return deja.Request.chat(
            model="gpt-4o", messages=[{"role": "user", "content": [{"type": "text", "text": text}]}]
        )

    cache = deja.Cache(semantic=SemanticCache(embedder=embedder), key_builder=wrapped)
    cache.put(chat_request("How can I track my card delivery?"), chat_response())
    assert cache.get(as_parts("how do i track the delivery of my card")).info.status == (
        "semantic_hit"
    )
    cache.put(as_parts("What is the capital of Peru?"), chat_response("Lima"))
    assert cache.get(chat_request("what's the capital city of Peru")).info.status == (
        "semantic_hit"
    )


def test_a_stale_nearest_answer_gives_way_to_a_fresh_similar_one(embedder: Any) -> None:
    """``s-maxage`` takes only younger answers: the nearest candidate too old for it used
    to end the lookup (a paid call) while a fresh one was next in line; an entry gone from
    the store (evicted, deleted elsewhere) is forgotten and the next one tried too."""
    now = [1000.0]
    cache = deja.Cache(semantic=SemanticCache(embedder=embedder), clock=lambda: now[0])
    cache.put(chat_request("How can I track my card delivery?"), chat_response("older"))
    now[0] += 100
    cache.put(chat_request("how do i track the delivery of my card"), chat_response("newer"))
    now[0] += 50
    asked = chat_request("How can I track my card delivery")  # nearest: the older one
    found = cache.get(asked, control={"s-maxage": 60})
    assert found.info.status == "semantic_hit"
    assert found.response is not None
    assert found.response["choices"][0]["message"]["content"] == "newer"
    assert len(cache.semantic) == 2  # type: ignore[arg-type]  # a stale one is kept
    # the older entry leaves the store behind the index's back: forgotten, next one served
    cache.store.delete(cache.key(chat_request("How can I track my card delivery?")))
    again = cache.get(asked)
    assert again.info.status == "semantic_hit" and again.response is not None
    assert again.response["choices"][0]["message"]["content"] == "newer"
    assert len(cache.semantic) == 1  # type: ignore[arg-type]


def test_the_semantic_tier_rests_while_the_store_is_skipped(embedder: Any) -> None:
    """With the store's circuit open no match could be read from it: the lookup by meaning
    (an embedding, perhaps paid; a search, perhaps of a dead index) is not made."""
    from tests.helpers import FaultyStore

    embedded: list[str] = []

    class Counting:
        id, dim = embedder.id, embedder.dim

        def embed(self, texts: Any) -> Any:
            embedded.extend(texts)
            return embedder.embed(texts)

        async def aembed(self, texts: Any) -> Any:
            return self.embed(texts)

    store = FaultyStore()
    semantic = SemanticCache(embedder=Counting())
    cache = deja.Cache(store=store, semantic=semantic, breaker_threshold=2, breaker_reset=60)
    cache.put(chat_request("How can I track my card delivery?"), chat_response())
    embedded.clear()
    store.fail_ops = {"get"}
    statuses = [cache.get(chat_request(f"how do i track card {i}")).info.status for i in range(6)]
    assert statuses == ["miss", "miss", "bypass", "bypass", "bypass", "bypass"]
    assert len(embedded) == 2  # the two lookups that reached the store


def test_a_store_that_fails_for_a_moment_keeps_the_vector(embedder: Any) -> None:
    from tests.helpers import FaultyStore

    store = FaultyStore()
    semantic = SemanticCache(embedder=embedder)
    cache = deja.Cache(store=store, semantic=semantic)
    cache.put(chat_request("How can I track my card delivery?"), chat_response())
    reworded = chat_request("how do i track the delivery of my card")
    store.fail_ops = {"get"}
    assert cache.get(reworded).info.status == "miss"
    store.fail_ops = set()
    assert len(semantic) == 1 and cache.get(reworded).info.status == "semantic_hit"
    # nor does a request that takes only younger entries forget it
    assert cache.get(reworded, control={"s-maxage": 0}).info.status == "miss"
    assert len(semantic) == 1
    cache.delete(cache.key(chat_request("How can I track my card delivery?")))
    assert len(semantic) == 0


async def test_async_cache_and_stream_replay(embedder: Any) -> None:
    cache = deja.AsyncCache(semantic=SemanticCache(embedder=embedder))
    await cache.put(
        chat_request("How can I track my card delivery?"), chat_response("Track it in the app.")
    )

    async def never() -> Any:
        raise AssertionError("a semantic hit must not call the upstream")

    stream = await cache.stream(chat_request("how do i track the delivery of my card"), never)
    chunks = [c async for c in stream]
    assert stream.info.status == "semantic_hit"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Track it in the app."


async def test_deleting_vectors_of_a_remote_index_leaves_the_event_loop_free(
    embedder: Any,
) -> None:
    """A remote index takes its time to remove (a Redis index scans a namespace: seconds at
    20k vectors); the async cache's delete, delete_tag and clear must not hold the loop."""
    import time

    from deja.semantic.index import InProcessIndex

    class SlowToRemove(InProcessIndex):
        def remove(self, id: str) -> bool:
            time.sleep(0.2)
            return super().remove(id)

        def remove_scope(self, scope: str) -> int:
            time.sleep(0.2)
            return super().remove_scope(scope)

    index = SlowToRemove(dim=embedder.dim)
    cache = deja.AsyncCache(semantic=SemanticCache(embedder=embedder, index=index))
    block = chat_request("How do I block my card?")
    assert await cache.put(block, chat_response("In the app."))
    await cache.put(
        chat_request("Where is my refund?"), chat_response("Soon."), control={"tags": ["t"]}
    )
    async with LoopTicks() as ticks:
        assert await cache.delete(cache.key(block))
        assert await cache.delete_tag("t") == 1
        assert await cache.clear(namespace="other") == 0
        assert await cache.clear() == 0
    assert ticks.count >= 40  # ~0.8 s of removals, the loop ticking every 10 ms
    assert len(index) == 0


def test_a_failing_semantic_tier_is_a_miss(embedder: Any, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(SemanticCache):
        def inspect(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("index down")

    cache = deja.Cache(semantic=Broken(embedder=embedder))
    with caplog.at_level("WARNING", logger="deja"):
        assert cache.fetch(chat_request("x y z"), chat_response).info.status == "miss"
    said = [r.getMessage() for r in caplog.records]
    # the semantic tier is named, not the (healthy) store
    assert any("semantic tier failed" in m and "index down" in m for m in said), said
    assert not any("cache store memory failed" in m for m in said)


async def test_config_type_semantic_through_the_proxy(tmp_path: Any) -> None:
    import httpx2

    from deja.config import parse_config
    from deja.server.app import ProxyApp
    from deja.testing import FakeOpenAIServer

    with FakeOpenAIServer() as upstream:
        settings = parse_config(
            {
                "model_list": [
                    {
                        "model_name": "gpt-4o",
                        "litellm_params": {"model": "openai/gpt-4o", "api_base": upstream.base_url},
                    }
                ],
                "caching": {"type": "semantic", "params": {"embedding_model": "local"}},
            },
            base_dir=tmp_path,
        )
        app = ProxyApp(settings)
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://proxy") as proxy:
            ask = lambda text: proxy.post(  # noqa: E731
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]},
            )
            first = await ask("How can I track my card delivery?")
            second = await ask("how do i track the delivery of my card")
        await app.aclose()
        assert first.headers["x-deja-cache"] == "miss"
        assert second.headers["x-deja-cache"] == "semantic_hit"
        assert float(second.headers["x-deja-similarity"]) > 0.7
        assert second.content == first.content
        assert upstream.count("/v1/chat/completions") == 1


async def test_new_prompts_at_once_through_the_proxy_share_embedding_requests(
    tmp_path: Any,
) -> None:
    """Thirty different new questions at once: one request each to a paid embeddings
    endpoint before; now the ones that arrive while calls run go together."""
    import httpx2

    from deja.config import parse_config
    from deja.server.app import ProxyApp
    from deja.testing import FakeOpenAIServer

    with FakeOpenAIServer(embedding_dim=256) as upstream:
        params = {
            "embedding_model": "text-embedding-3-small",
            "dimensions": 256,
            "api_base": upstream.base_url,
            "api_key": "sk-test",
        }
        settings = parse_config(
            {
                "model_list": [
                    {
                        "model_name": "gpt-4o",
                        "litellm_params": {"model": "openai/gpt-4o", "api_base": upstream.base_url},
                    }
                ],
                "caching": {"type": "semantic", "params": params},
            },
            base_dir=tmp_path,
        )
        app = ProxyApp(settings)
        upstream.delay_next(0.2, times=4)  # the first calls take a while: others queue
        transport = httpx2.ASGITransport(app=app)
        questions = [f"What is the exchange rate for currency pair number {i}?" for i in range(30)]
        async with httpx2.AsyncClient(transport=transport, base_url="http://proxy") as proxy:
            answers = await asyncio.gather(
                *(
                    proxy.post(
                        "/v1/chat/completions",
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": q}]},
                    )
                    for q in questions
                )
            )
        await app.aclose()
        assert [a.headers["x-deja-cache"] for a in answers] == ["miss"] * 30
        assert upstream.count("/v1/chat/completions") == 30
        assert upstream.count("/v1/embeddings") <= 8  # 4 alone, then the rest together
        sent = [r.body["input"] for r in upstream.requests if r.path.endswith("/embeddings")]
        assert sorted(t for batch in sent for t in batch) == sorted(questions)


def test_deja_calibrate_cli(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys

    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"a": "calculate 55 * 30", "b": "what's 55 multiplied by 30?", "same": True},
        {"a": "calculate 55 * 30", "b": "calculate 55 * 31", "same": False},
        {
            "a": "How can I track my card delivery?",
            "b": "how do i track the delivery of my card",
            "same": True,
        },
        {"a": "convert 5 km to miles", "b": "convert 8 km to miles", "same": False},
    ]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "deja.cli",
            "calibrate",
            str(pairs),
            "--max-false-hit-rate",
            "0",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(out.stdout)
    assert report["chosen"] is None  # a handful of pairs cannot show a false-hit rate of 0
    assert report["lowest_within_target"]["false_hit_rate"] == 0


def test_similarity_metrics_for_hits_and_near_misses(embedder: Any) -> None:
    metrics = deja.PrometheusMetrics()
    cache = deja.Cache(semantic=SemanticCache(embedder=embedder), metrics=metrics)
    cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
    cache.fetch(chat_request("how do i track the delivery of my card"), chat_response)
    cache.fetch(chat_request("convert 5 km to miles"), chat_response)
    # close in meaning, refused for its number: rejected, not a near miss (never emitted)
    cache.fetch(chat_request("convert 8 km to miles"), chat_response)
    text = metrics.render().decode()
    assert 'deja_semantic_similarity_count{outcome="hit"} 1.0' in text
    assert 'deja_semantic_similarity_count{outcome="near_miss"} 1.0' in text
    assert 'deja_semantic_similarity_count{outcome="rejected"} 1.0' in text
    assert 'deja_cache_requests_total{result="semantic_hit",tier="semantic"} 1.0' in text


def test_embedder_calls_are_counted_and_the_memo_is_not(embedder: Any) -> None:
    metrics = deja.PrometheusMetrics()
    cache = deja.Cache(semantic=SemanticCache(embedder=embedder), metrics=metrics)
    cache.fetch(chat_request("How can I track my card delivery?"), chat_response)  # check+store
    cache.fetch(chat_request("how do i track the delivery of my card"), chat_response)
    text = metrics.render().decode()
    label = f'embedder="{embedder.id}"'
    # two texts embedded once each: the store after the first miss reused the memo
    assert f"deja_semantic_embeddings_total{{{label}}} 2.0" in text
    assert f"deja_semantic_embedding_seconds_count{{{label}}} 2.0" in text
    assert "deja_semantic_embedding_usd_total{" not in text  # the local model is free


def test_a_paid_embedder_reports_what_its_calls_cost() -> None:
    from deja.semantic.embedders import OpenAIEmbedder
    from deja.testing import FakeOpenAIServer

    metrics = deja.PrometheusMetrics()
    with FakeOpenAIServer() as server:
        client = deja.Client(api_base=server.base_url, api_key="sk-test", cache=deja.Cache())
        paid = OpenAIEmbedder(dimensions=16, client=client)
        cache = deja.Cache(semantic=SemanticCache(embedder=paid), metrics=metrics)
        cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
        uncached = deja.Client(api_base=server.base_url, api_key="sk-test")
        sent = ["How can I track my card delivery?"]
        answer = uncached.embedding(model="text-embedding-3-small", input=sent, dimensions=16)
        tokens = answer["usage"]["prompt_tokens"]
        # the same text again, in a new tier: the client's exact tier answers, for free
        again = deja.Cache(semantic=SemanticCache(embedder=paid), metrics=metrics)
        again.fetch(chat_request("How can I track my card delivery?"), chat_response)
    text = metrics.render().decode()
    label = f'embedder="{paid.id}"'
    assert f"deja_semantic_embeddings_total{{{label}}} 2.0" in text
    usd = float(text.split(f"deja_semantic_embedding_usd_total{{{label}}} ")[1].split()[0])
    assert tokens > 0 and usd == pytest.approx(tokens * 0.02 / 1_000_000)


def test_semantic_index_survives_a_restart_beside_the_disk_store(tmp_path: Any) -> None:
    from deja.config import build_cache, parse_config

    config = {"caching": {"type": "semantic", "store": {"type": "disk", "directory": "cache"}}}
    first = build_cache(parse_config(config, base_dir=tmp_path))
    first.fetch(chat_request("How can I track my card delivery?"), chat_response)
    first.close()
    assert (tmp_path / "cache" / "semantic-index").is_dir()
    again = build_cache(parse_config(config, base_dir=tmp_path))  # a new process, say
    result = again.get(chat_request("how do i track the delivery of my card"))
    assert result.info.status == "semantic_hit"
    again.close()


def test_workers_on_one_disk_store_keep_each_others_semantic_entries(tmp_path: Any) -> None:
    from deja.config import build_cache, parse_config

    config = {"caching": {"type": "semantic", "store": {"type": "disk", "directory": "cache"}}}
    settings = parse_config(config, base_dir=tmp_path)
    seed = build_cache(settings)
    seed.fetch(chat_request("How do I reset my online banking password?"), chat_response)
    seed.close()
    # two proxy workers start from the same saved index, each stores prompts of its own,
    # one forgets the seed's entry after wrong answers, and both shut down
    first, second = build_cache(settings), build_cache(settings)
    seed_key = first.key(chat_request("How do I reset my online banking password?"))
    first.fetch(chat_request("How can I track my card delivery?"), chat_response)
    second.fetch(chat_request("What is the exchange rate for euros to dollars?"), chat_response)
    assert first.feedback(seed_key, correct=False) == Feedback(seed_key, 1, forgotten=False)
    assert first.feedback(seed_key, correct=False) == Feedback(seed_key, 2, forgotten=True)
    first.close()
    second.close()  # before the merge, this save would have dropped the first's entry
    again = build_cache(settings)
    for reworded, status in (
        ("how do i track the delivery of my card", "semantic_hit"),
        ("what's the exchange rate from euros to dollars", "semantic_hit"),
        ("how can i reset the password for online banking", "miss"),  # stays forgotten
    ):
        assert again.get(chat_request(reworded)).info.status == status, reworded
    again.close()


def test_running_workers_see_each_others_entries_after_a_sync(tmp_path: Any, embedder: Any) -> None:
    from deja.stores.disk import DiskStore

    def worker() -> deja.Cache:  # the workers of one proxy share a disk store
        return deja.Cache(
            store=DiskStore(tmp_path / "cache"),
            semantic=SemanticCache(embedder=embedder),
            semantic_path=tmp_path / "cache" / "semantic-index",
            semantic_save_interval=None,
        )

    first, second = worker(), worker()
    first.fetch(chat_request("How can I track my card delivery?"), chat_response)
    reworded = chat_request("how do i track the delivery of my card")
    assert second.get(reworded).info.status == "miss"
    assert first.sync_semantic() is True
    assert first.sync_semantic() is False  # nothing changed since
    assert second.sync_semantic() is True  # takes the first's entry in
    assert second.get(reworded).info.status == "semantic_hit"
    with pytest.raises(deja.ConfigError, match="semantic_path"):
        make_cache(embedder).sync_semantic()
    first.close()
    second.close()


def test_wrong_answer_reports_to_two_workers_add_up(tmp_path: Any, embedder: Any) -> None:
    from deja.stores.disk import DiskStore

    def worker() -> deja.Cache:
        return deja.Cache(
            store=DiskStore(tmp_path / "cache"),
            semantic=SemanticCache(embedder=embedder, max_strikes=2),
            semantic_path=tmp_path / "cache" / "semantic-index",
            semantic_save_interval=None,
        )

    seed = worker()
    stored = seed.fetch(chat_request("How can I track my card delivery?"), chat_response)
    seed.close()
    first, second = worker(), worker()
    reworded = chat_request("how do i track the delivery of my card")
    for cache in (first, second):  # each worker is told once: below its max_strikes
        assert cache.get(reworded).info.status == "semantic_hit"
        report = cache.feedback(stored.info.key, correct=False)
        assert report == Feedback(stored.info.key, 1, forgotten=False)
    first.sync_semantic()
    second.sync_semantic()  # 2 strikes in all: no worker serves it any more
    first.sync_semantic()
    for cache in (first, second):
        assert cache.get(reworded).info.status == "miss"
        cache.close()


def test_index_saves_are_counted_in_the_metrics(
    tmp_path: Any, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = deja.PrometheusMetrics()
    cache = deja.Cache(
        semantic=SemanticCache(embedder=embedder),
        semantic_path=tmp_path / "index",
        semantic_save_interval=None,
        metrics=metrics,
    )
    cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
    assert cache.sync_semantic() is True
    assert cache.sync_semantic() is False  # nothing to save: not counted
    cache.fetch(chat_request("What is the exchange rate for euros?"), chat_response)
    assert cache.semantic is not None
    with monkeypatch.context() as patched:

        def full(path: Any) -> bool:
            raise OSError(28, "No space left on device")

        patched.setattr(cache.semantic, "sync", full)
        with pytest.raises(deja.StoreError, match="No space"):
            cache.sync_semantic()
    cache.close()  # saves: two entries now
    text = metrics.render().decode()
    assert 'deja_semantic_index_saves_total{result="saved"} 2.0' in text
    assert 'deja_semantic_index_saves_total{result="failed"} 1.0' in text
    assert "deja_semantic_index_entries 2.0" in text
    assert "deja_semantic_index_save_seconds_count 2.0" in text


def test_the_index_is_saved_in_the_background_every_interval(tmp_path: Any, embedder: Any) -> None:
    from deja.semantic.index import InProcessIndex

    cache = deja.Cache(
        semantic=SemanticCache(embedder=embedder),
        semantic_path=tmp_path / "index",
        semantic_save_interval=None,
    )
    cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
    assert cache._semantic_saver is None  # never without an interval
    cache.semantic_save_interval = 0.0  # due at every use from now on
    cache.get(chat_request("Where is my card?"))
    saver = cache._semantic_saver
    assert saver is not None
    saver.join(timeout=60)
    saved = InProcessIndex(dim=embedder.dim)
    saved.load(tmp_path / "index")  # written while the cache stays open
    assert len(saved) == 1
    cache.close()
    with pytest.raises(ValueError, match="semantic_save_interval"):
        deja.Cache(semantic=SemanticCache(embedder=embedder), semantic_save_interval=-1)


def test_a_child_forked_during_a_save_can_still_save(tmp_path: Any, embedder: Any) -> None:
    import os

    cache = deja.Cache(semantic=SemanticCache(embedder=embedder), semantic_path=tmp_path / "index")
    with cache._semantic_saving:  # a background save in flight in this process
        pid = os.fork()
        if pid == 0:  # the child: the thread saving is not here, its lock must not be
            os._exit(0 if not cache._semantic_saving.locked() else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    cache.close()


def test_caches_share_one_fork_hook_and_are_not_kept_alive_by_it(
    tmp_path: Any, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import os
    import weakref

    from deja import _forks

    hooks: list[Any] = []
    monkeypatch.setattr(os, "register_at_fork", lambda **kw: hooks.append(kw))
    caches = [
        deja.Cache(semantic=SemanticCache(embedder=embedder), semantic_path=tmp_path / f"i{n}")
        for n in range(5)
    ]
    assert hooks == []  # the module's one hook was registered at import
    assert set(caches) <= set(_forks._RENEWALS)
    refs = [weakref.ref(c) for c in caches]
    for cache in caches:
        cache.close()
    del caches, cache
    gc.collect()
    assert [r() for r in refs] == [None] * 5  # the hook's set holds them weakly


def test_config_sets_the_semantic_save_interval(tmp_path: Any) -> None:
    from deja.config import build_cache, parse_config

    def config(params: dict[str, Any]) -> dict[str, Any]:
        store = {"type": "disk", "directory": "cache"}
        return {"caching": {"type": "semantic", "store": store, "params": params}}

    cache = build_cache(parse_config(config({"semantic_save_interval": 5}), base_dir=tmp_path))
    assert cache.semantic_save_interval == 5
    cache.close()
    default = build_cache(parse_config(config({}), base_dir=tmp_path))
    assert default.semantic_save_interval == 60
    default.close()
    for bad in (0, -3, "soon"):
        with pytest.raises(deja.ConfigError, match="semantic_save_interval"):
            parse_config(config({"semantic_save_interval": bad}), base_dir=tmp_path)


def test_only_a_process_local_index_is_saved_beside_a_disk_store(tmp_path: Any) -> None:
    from deja.config import build_cache, parse_config

    store = {"type": "disk", "directory": "cache"}
    for caching, saved in (
        ({"type": "semantic"}, True),
        ({"type": "qdrant-semantic"}, True),  # qdrant-client's in-memory mode
        ({"type": "qdrant-semantic", "qdrant_api_base": "http://qdrant.invalid:6333"}, False),
    ):
        settings = parse_config({"caching": {**caching, "store": store}}, base_dir=tmp_path)
        cache = build_cache(settings)
        # a copy of a shared index loaded at the next start would replace what other
        # processes stored in it meanwhile
        assert (cache._semantic_path is not None) is saved, caching
        cache.close()


def test_an_in_memory_qdrant_index_is_saved_at_close_and_loaded_at_start(
    tmp_path: Any, embedder: Any
) -> None:
    from deja.semantic.qdrant_index import QdrantIndex

    def cache() -> deja.Cache:
        index = QdrantIndex(dim=embedder.dim)  # qdrant-client's in-memory mode
        semantic = SemanticCache(embedder=embedder, index=index)
        assert not semantic.syncs  # it saves in full, never by deltas
        return deja.Cache(semantic=semantic, semantic_path=tmp_path / "index")

    first = cache()
    first.fetch(chat_request("How can I track my card delivery?"), chat_response)
    first.close()
    second = cache()
    second.load_semantic()
    assert second.semantic is not None and len(second.semantic.index) == 1
    second.close()


def test_an_in_memory_qdrant_index_is_saved_in_the_background_too(
    tmp_path: Any, embedder: Any
) -> None:
    """It was saved at close only: a crash lost every entry since the start."""
    from deja.semantic.qdrant_index import QdrantIndex

    cache = deja.Cache(
        semantic=SemanticCache(embedder=embedder, index=QdrantIndex(dim=embedder.dim)),
        semantic_path=tmp_path / "index",
        semantic_save_interval=None,
    )
    cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
    cache.semantic_save_interval = 0.0  # due at every use from now on
    cache.get(chat_request("Where is my card?"))
    saver = cache._semantic_saver
    assert saver is not None
    saver.join(timeout=60)
    saved = QdrantIndex(dim=embedder.dim)
    saved.load(tmp_path / "index")  # written while the cache stays open
    assert len(saved) == 1
    cache.close()


def test_each_index_says_whether_its_entries_live_in_this_process(tmp_path: Any) -> None:
    from qdrant_client import QdrantClient

    from deja.semantic.index import InProcessIndex
    from deja.semantic.qdrant_index import QdrantIndex
    from deja.semantic.redis_index import RedisVectorIndex

    assert InProcessIndex(dim=4).process_local
    assert QdrantIndex(dim=4).process_local  # local mode in memory
    assert QdrantIndex(dim=4, client=QdrantClient(":memory:")).process_local
    assert not QdrantIndex(dim=4, path=str(tmp_path / "qdrant")).process_local
    assert not QdrantIndex(dim=4, client=QdrantClient(path=str(tmp_path / "q2"))).process_local
    assert not QdrantIndex(dim=4, url="http://qdrant.invalid:6333").process_local
    assert not RedisVectorIndex(url="redis://127.0.0.1:1/0", dim=4).process_local


def test_config_sets_the_feedback_settings(tmp_path: Any) -> None:
    from deja.config import build_cache, parse_config

    params = {"max_strikes": 1, "strike_penalty": 0.1}
    config = {"caching": {"type": "semantic", "params": params}}
    cache = build_cache(parse_config(config, base_dir=tmp_path))
    assert cache.semantic is not None
    assert (cache.semantic.max_strikes, cache.semantic.strike_penalty) == (1, 0.1)
    defaults = build_cache(parse_config({"caching": {"type": "semantic"}}, base_dir=tmp_path))
    assert defaults.semantic is not None and defaults.semantic.max_strikes == 2
    for bad, path in (
        ({"max_strikes": 0}, "caching.params.max_strikes"),
        ({"max_strikes": "two"}, "caching.params.max_strikes"),
        ({"strike_penalty": 2}, "caching.params.strike_penalty"),
    ):
        with pytest.raises(deja.ConfigError) as err:
            parse_config({"caching": {"type": "semantic", "params": bad}}, base_dir=tmp_path)
        assert err.value.path == path


def test_config_redis_semantic_and_qdrant_semantic(tmp_path: Any, embedder: Any) -> None:
    import pytest

    from deja.config import build_cache, parse_config
    from deja.semantic.qdrant_index import QdrantIndex
    from deja.semantic.redis_index import RedisVectorIndex
    from tests.semantic.conftest import redisearch_server

    server = redisearch_server()
    if server is None:
        pytest.skip("RediSearch module not available")
    for config, index_type in (
        (
            {"type": "redis-semantic", "url": server.url, "index_name": f"cfg-{id(tmp_path)}"},
            RedisVectorIndex,
        ),
        ({"type": "qdrant-semantic"}, QdrantIndex),
    ):
        cache = build_cache(
            parse_config(
                {"caching": {**config, "params": {"embedding_model": "local"}}}, base_dir=tmp_path
            )
        )
        assert cache.semantic is not None and isinstance(cache.semantic.index, index_type)
        cache.semantic.embedder = embedder  # the session's loaded model
        cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
        assert (
            cache.get(chat_request("how do i track the delivery of my card")).info.status
            == "semantic_hit"
        )
        cache.clear()
        cache.close()


def test_bench_gives_the_same_decisions_on_every_index(tmp_path: Any) -> None:
    import contextlib
    import io
    import json

    import pytest

    from deja.bench.semantic import main
    from tests.semantic.conftest import redisearch_server

    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {
            "a": "How can I track my card delivery?",
            "b": "how do i track the delivery of my card",
            "same": True,
        },
        {"a": "convert 5 km to miles", "b": "convert 8 km to miles", "same": False},
        {
            "a": "I want to cancel my transfer",
            "b": "how do i cancel a transfer I made",
            "same": True,
        },
        {
            "a": "What is the exchange rate for euros?",
            "b": "How long does a transfer take?",
            "same": False,
        },
    ]
    pairs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    server = redisearch_server()
    runs = {"memory": [], "qdrant": []}
    if server is not None:
        runs["redis"] = ["--redis-url", server.url]
    results = {}
    for index, extra in runs.items():
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            main(["--pairs", str(pairs), "--json", "--index", index, *extra])
        results[index] = json.loads(buf.getvalue())
    assert all(r == results["memory"] for r in results.values()), results
    if server is None:
        pytest.skip("RediSearch not available: memory and qdrant compared only")


def test_a_dead_vector_server_leaves_the_exact_tier_working(embedder: Any) -> None:
    from deja.semantic.qdrant_index import QdrantIndex
    from deja.semantic.redis_index import RedisVectorIndex

    for index in (
        RedisVectorIndex(url="redis://127.0.0.1:9/0", dim=embedder.dim),
        QdrantIndex(url="http://127.0.0.1:9", dim=embedder.dim, timeout=1),
    ):
        metrics = deja.PrometheusMetrics()
        cache = deja.Cache(semantic=SemanticCache(embedder=embedder, index=index), metrics=metrics)
        first = cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
        again = cache.fetch(chat_request("How can I track my card delivery?"), chat_response)
        reworded = cache.fetch(
            chat_request("how do i track the delivery of my card"), chat_response
        )
        assert (first.info.status, again.info.status, reworded.info.status) == (
            "miss",
            "hit",
            "miss",
        )
        # counted, never raised: as the semantic tier's failures, not the store's (an
        # alert on store errors fired for a healthy store)
        assert cache.stats().store_errors == 0
        exposition = metrics.render().decode()
        assert "deja_semantic_errors_total{error=" in exposition
        assert "deja_cache_errors_total{" not in exposition


async def test_the_proxy_says_at_start_and_when_ready_that_the_semantic_tier_cannot_work(
    embedder: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx2

    from deja.config import parse_config
    from deja.semantic.index import InProcessIndex
    from deja.server.app import ProxyApp

    class Unreachable(InProcessIndex):
        def search(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("vector server refused the connection")

    broken = deja.AsyncCache(semantic=SemanticCache(embedder=embedder, index=Unreachable()))
    app = ProxyApp(parse_config({"caching": {"type": "memory"}}, base_dir=tmp_path), cache=broken)
    with caplog.at_level("ERROR", logger="deja"):
        sent = await _start_and_stop(app)
    assert sent[0]["type"] == "lifespan.startup.complete"  # it starts: the exact tier works
    assert any("semantic tier cannot work" in r.getMessage() for r in caplog.records)

    healthy = deja.AsyncCache(semantic=SemanticCache(embedder=embedder))
    answers = {}
    for name, cache in (("broken", broken), ("healthy", healthy)):
        settings = parse_config({"caching": {"type": "memory"}}, base_dir=tmp_path)
        transport = httpx2.ASGITransport(app=ProxyApp(settings, cache=cache))
        async with httpx2.AsyncClient(transport=transport, base_url="http://proxy") as client:
            ready = await client.get("/health/ready")
        assert ready.status_code == 200  # ready either way: the exact tier answers
        answers[name] = ready.json()
    assert answers["broken"]["semantic"] == "unavailable"
    assert "refused the connection" in answers["broken"]["semantic_error"]
    assert answers["healthy"]["semantic"] == "ok" and "semantic_error" not in answers["healthy"]


async def test_the_proxy_says_the_semantic_tier_cannot_work_when_its_model_cannot_load(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Qdrant or numpy install without the rest of the semantic extra: the index
    answers, but the embedded model cannot load (onnxruntime missing)."""
    import httpx2

    from deja.config import parse_config
    from deja.semantic import LocalEmbedder
    from deja.server.app import ProxyApp
    from tests.helpers import without_packages

    without_packages(monkeypatch, "onnxruntime")
    cache = deja.AsyncCache(semantic=SemanticCache(embedder=LocalEmbedder()))
    app = ProxyApp(parse_config({"caching": {"type": "memory"}}, base_dir=tmp_path), cache=cache)
    with caplog.at_level("ERROR", logger="deja"):
        sent = await _start_and_stop(app)
    assert sent[0]["type"] == "lifespan.startup.complete"
    logged = [
        r.getMessage() for r in caplog.records if "semantic tier cannot work" in r.getMessage()
    ]
    assert len(logged) == 1 and "onnxruntime is not installed" in logged[0]

    settings = parse_config({"caching": {"type": "memory"}}, base_dir=tmp_path)
    cache = deja.AsyncCache(semantic=SemanticCache(embedder=LocalEmbedder()))
    transport = httpx2.ASGITransport(app=ProxyApp(settings, cache=cache))
    async with httpx2.AsyncClient(transport=transport, base_url="http://proxy") as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 200  # the exact tier answers
    assert ready.json()["semantic"] == "unavailable"
    error = ready.json()["semantic_error"]
    assert "onnxruntime is not installed" in error and "pip install 'deja-llm[semantic]'" in error


async def _start_and_stop(app: Any) -> list[dict[str, Any]]:
    """Run ``app``'s ASGI lifespan (start, then stop); the messages it sent."""
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    return sent


def test_a_failing_embedder_is_asked_again_only_after_a_while(embedder: Any) -> None:
    """Every miss used to ask a failing (or hanging) remote embedder again, twice (to look
    up, then to index the answer): 3 s per miss on 500s, 20 s on 429s in an audit. After
    ``breaker_threshold`` failures in a row the tier is skipped for ten reset times."""
    import time

    dead = Scripted(embedder, fail=down)
    calls = dead.calls
    metrics = deja.PrometheusMetrics()
    cache = deja.Cache(
        semantic=SemanticCache(embedder=dead),
        breaker_threshold=2,
        breaker_reset=0.02,
        metrics=metrics,
    )
    for i in range(6):
        result = cache.fetch(chat_request(f"question {i}"), chat_response)
        assert result.info.status == "miss"  # answered all the same
    # the first two misses' lookups (their answers are not embedded again to be indexed,
    # which cost each miss the embedder's timeout twice); then the tier rests
    assert len(calls) == 2
    assert cache.semantic_problem == "ConnectionError"  # its kind: the text may name an account
    text = metrics.render().decode()
    failed = f'deja_semantic_embedding_errors_total{{embedder="{dead.id}",error="ConnectionError"}}'
    assert f"{failed} 2.0" in text and "deja_semantic_breaker_open 1.0" in text
    time.sleep(0.25)
    cache.fetch(chat_request("question 7"), chat_response)
    assert len(calls) == 3  # one probe
    assert f"{failed} 3.0" in metrics.render().decode()
    dead.fail = None  # the embedder answers again: the next probe closes the breaker
    time.sleep(0.25)
    cache.fetch(chat_request("question 8"), chat_response)
    assert "deja_semantic_breaker_open 0.0" in metrics.render().decode()


def test_requests_that_ask_the_embedder_nothing_neither_reset_nor_close_its_breaker(
    embedder: Any,
) -> None:
    """A tool-result turn (no final user text) or a remembered vector never reaches the
    embedder: counted as a success, it kept a dead embedder's breaker from ever opening
    (an agent's tool turns between its user turns), and closed an open one as its probe."""
    import time

    dead = Scripted(embedder, fail=down)
    calls = dead.calls
    cache = deja.Cache(
        semantic=SemanticCache(embedder=dead), breaker_threshold=3, breaker_reset=0.02
    )
    tool_turn = deja.Request.chat(
        model="gpt-4o",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
             "function": {"name": "weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
    )  # fmt: skip
    for i in range(3):
        cache.fetch(chat_request(f"question {i}"), chat_response)
        cache.fetch(tool_turn, chat_response, control={"no-store": True})
    assert len(calls) == 3 and cache.semantic_problem == "ConnectionError"
    time.sleep(0.25)
    cache.fetch(tool_turn, chat_response, control={"no-store": True})  # asks nothing
    assert cache.semantic_problem is None  # due for a probe: no longer resting...
    cache.fetch(chat_request("question 9"), chat_response)
    assert len(calls) == 4  # ...and the next real lookup is that probe; it fails again
    assert cache.semantic_problem == "ConnectionError"


async def test_one_failed_embedding_shared_by_many_callers_counts_once(embedder: Any) -> None:
    flaky = Scripted(
        embedder, delay=0.05, fail=lambda n: ConnectionError("a moment's error") if n == 1 else None
    )
    calls = flaky.calls
    cache = deja.AsyncCache(semantic=SemanticCache(embedder=flaky), breaker_threshold=3)

    async def answer() -> Any:
        return chat_response()

    await asyncio.gather(*(cache.fetch(chat_request("a new one"), answer) for _ in range(5)))
    assert len(calls) == 1 and cache.semantic_problem is None  # one failure, not five
    await cache.fetch(chat_request("another new one"), answer)
    assert len(calls) == 2


def test_a_failed_lookup_skips_indexing_its_own_answer_only(embedder: Any) -> None:
    """A lookup that failed marks its key so that its answer is not embedded again; a mark
    left by a request whose upstream call then failed kept a later healthy request's answer
    out of the index."""
    flaky = Scripted(embedder, fail=lambda n: ConnectionError("blip") if n == 1 else None)
    cache = deja.Cache(semantic=SemanticCache(embedder=flaky), breaker_threshold=5)

    def broken() -> Any:
        raise RuntimeError("upstream down")

    asked = chat_request("How can I track my card delivery?")
    with pytest.raises(RuntimeError):
        cache.fetch(asked, broken)  # the lookup fails, then the upstream call
    assert cache.fetch(asked, chat_response).info.status == "miss"  # healthy now: indexed
    reworded = chat_request("how do i track the delivery of my card")
    assert cache.get(reworded).info.status == "semantic_hit"


def test_a_failed_lookup_whose_request_stores_nothing_leaves_no_mark(embedder: Any) -> None:
    """The failed lookup's key was marked until its next store, whenever that came: a
    refresh or put long after (the tier healthy again) stored the answer unindexed, and a
    rewording then missed."""
    flaky = Scripted(embedder, fail=lambda n: ConnectionError("blip") if n == 1 else None)
    cache = deja.Cache(semantic=SemanticCache(embedder=flaky), breaker_threshold=5)
    asked = chat_request("How can I track my card delivery?")
    assert cache.fetch(asked, chat_response, control={"no-store": True}).info.status == "miss"
    assert cache.put(asked, chat_response())  # later, the tier healthy
    reworded = chat_request("how do i track the delivery of my card")
    assert cache.get(reworded).info.status == "semantic_hit"


async def test_a_slow_embedder_does_not_outlast_the_caller_s_own_timeout(embedder: Any) -> None:
    """A call allowed 1 s took 5 s behind a hung remote embedder (its own timeout): the
    lookup by meaning is bounded by the caller's timeout, and the call is a miss."""
    import time

    slow = Scripted(embedder, delay=5.0)
    cache = deja.AsyncCache(semantic=SemanticCache(embedder=slow))

    async def answer() -> Any:
        return chat_response()

    started = time.monotonic()
    result = await cache.fetch(chat_request("a new question"), answer, timeout=0.3)
    assert result.info.status == "miss"
    assert time.monotonic() - started < 2.5  # not the embedder's 5 s
    assert slow.calls == [1]  # (not asked again to index the answer: it would wait again)


async def test_lookups_that_outlast_their_callers_open_the_semantic_breaker(
    embedder: Any,
) -> None:
    """Each lookup given up at its caller's timeout was no failure of the tier: a hung
    embedder never opened its breaker, and every call waited its whole timeout."""
    slow = Scripted(embedder, delay=5.0)
    cache = deja.AsyncCache(semantic=SemanticCache(embedder=slow), breaker_threshold=2)

    async def answer() -> Any:
        return chat_response()

    # a dozen callers late together: they waited for the same calls, one failure
    await asyncio.gather(
        *(cache.fetch(chat_request(f"burst {i}"), answer, timeout=0.2) for i in range(12))
    )
    assert cache.semantic_problem is None
    await asyncio.sleep(1.0)
    await cache.fetch(chat_request("new question"), answer, timeout=0.2)  # a second one
    assert cache.semantic_problem == "TimeoutError"
    asked = len(slow.calls)
    await cache.fetch(chat_request("one more"), answer, timeout=0.2)
    assert len(slow.calls) == asked  # the tier rests: not asked


@pytest.mark.parametrize("how", ["delete", "delete_tag", "clear", "clear_namespace"])
def test_a_deletion_before_the_index_is_loaded_forgets_the_vector(
    tmp_path: Any, embedder: Any, how: str
) -> None:
    """The saved index loads at the tier's first use: a deletion made first (an admin job,
    an app's first act after a restart) forgot nothing, and the vector came back with the
    load, named as the match, took feedback strikes, and stayed in the saved index."""
    from deja.stores.disk import DiskStore

    def worker() -> deja.Cache:
        return deja.Cache(
            store=DiskStore(tmp_path / "cache"),
            semantic=SemanticCache(embedder=embedder),
            semantic_path=tmp_path / "cache" / "semantic-index",
            semantic_save_interval=None,
        )

    seed = worker()
    stored = seed.fetch(
        chat_request("How do I change my PIN?"), chat_response, control={"tags": ["pin"]}
    )
    seed.close()
    after = worker()
    if how == "delete":
        assert after.delete(stored.info.key) is True
    elif how == "delete_tag":
        assert after.delete_tag("pin") == 1
    elif how == "clear":
        assert after.clear() == 1
    else:
        assert after.clear(namespace=None) == 1
    assert after.semantic is not None and len(after.semantic) == 0
    assert after.feedback(stored.info.key, correct=False) is None  # gone, as documented
    after.close()
    restarted = worker()
    restarted.load_semantic()
    assert restarted.semantic is not None and len(restarted.semantic) == 0
    restarted.close()


PRUNED_PROMPTS = [
    "How can I track my card delivery?",
    "What is the exchange rate for euros?",
    "Why was my transfer declined?",
]


def test_vectors_of_entries_the_store_no_longer_holds_are_dropped_round_by_round(
    embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A soak on a disk store of 130 entries grew its index to 1,455 vectors in 4 minutes
    (20 minutes on Redis: 13,538 vectors for 8,542 entries after a restart lost some):
    nothing dropped the vectors of the entries the store evicted, lost or let expire."""
    from deja._sync import cache as sync_cache

    monkeypatch.setattr(sync_cache, "_PRUNE_LEAST", 2)  # two keys a call, read one by one
    monkeypatch.setattr(sync_cache, "_PRUNE_BATCH", 1)
    store = FaultyStore()
    cache = deja.Cache(store=store, semantic=SemanticCache(embedder=embedder))
    keys = []
    for prompt in PRUNED_PROMPTS:
        keys.append(cache.fetch(chat_request(prompt), chat_response).info.key)
    index = cache.semantic.index  # type: ignore[union-attr]
    store.inner.delete(keys[0])  # evicted, expired, lost: gone from the store alone
    store.inner.delete(keys[2])
    store.fail_ops.add("get")  # a store that cannot answer keeps every vector
    with pytest.raises(ConnectionError):
        cache._prune_semantic()
    store.fail_ops.clear()
    assert len(index) == 3
    assert cache._prune_semantic() == 1  # the oldest two: the first one's entry is gone
    assert keys[0] not in index and keys[2] in index  # (those the failed read left, first)
    assert cache._prune_semantic() == 1  # the third; the round is over
    assert keys[1] in index and len(index) == 1
    assert cache._prune_semantic() == 0  # a new round: what is left is held
    # the check runs by itself, in the background, once due
    store.inner.delete(keys[1])
    cache._semantic_next_prune = 0.0
    cache.get(chat_request("Where is my card?"))
    for _ in range(200):
        if not cache._semantic_pruning.locked() and len(index) == 0:
            break
        time.sleep(0.05)
    assert len(index) == 0
    cache.close()
