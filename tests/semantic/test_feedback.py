"""Feedback on semantic hits: Cache.feedback, shared strikes across processes, the proxy route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

import deja
from deja.config import parse_config
from deja.semantic import Feedback, SemanticCache
from deja.semantic.index import InProcessIndex
from deja.server.app import ProxyApp
from deja.testing import FakeOpenAIServer
from tests.helpers import chat_request, chat_response
from tests.server.conftest import MASTER, TEAM_A, TEAM_B, proxy_config

ASKED = "How can I track my card delivery?"
REWORDED = "how do i track the delivery of my card"


def test_wrong_answers_make_an_entry_exact_only(embedder: Any) -> None:
    metrics = deja.PrometheusMetrics()
    cache = deja.Cache(semantic=SemanticCache(embedder=embedder, max_strikes=2), metrics=metrics)
    stored = cache.fetch(chat_request(ASKED), lambda: chat_response("Track it in the app."))
    served = cache.get(chat_request(REWORDED))
    assert served.info.status == "semantic_hit" and served.info.key == stored.info.key
    key = served.info.key
    assert cache.feedback(key, correct=False) == Feedback(key, 1, forgotten=False)
    assert cache.feedback(key, correct=True) == Feedback(key, 0, forgotten=False)
    assert cache.feedback(key, correct=False) == Feedback(key, 1, forgotten=False)
    assert cache.get(chat_request(REWORDED)).info.status == "semantic_hit"  # 1 strike: +0.05
    assert cache.feedback(key, correct=False) == Feedback(key, 2, forgotten=True)
    assert cache.get(chat_request(REWORDED)).info.status == "miss"
    assert cache.get(chat_request(ASKED)).info.status == "hit"  # the answer itself stays
    assert cache.feedback(key, correct=False) is None
    text = metrics.render().decode()
    for verdict, count in (("wrong", 2), ("right", 1), ("forgotten", 1), ("unknown", 1)):
        assert f'deja_semantic_feedback_total{{verdict="{verdict}"}} {count}.0' in text


async def test_async_feedback_and_its_errors(embedder: Any) -> None:
    cache = deja.AsyncCache(semantic=SemanticCache(embedder=embedder))
    assert await cache.put(chat_request(ASKED), chat_response())
    key = cache.key(chat_request(ASKED))
    assert await cache.feedback(key, correct=False) == Feedback(key, 1, forgotten=False)
    with pytest.raises(deja.ConfigError, match="no semantic tier"):
        await deja.AsyncCache().feedback(key, correct=False)
    with pytest.raises(deja.InvalidRequestError, match="key"):
        await cache.feedback(42, correct=False)  # type: ignore[arg-type]
    with pytest.raises(deja.InvalidRequestError, match="correct"):
        await cache.feedback(key, correct="no")  # type: ignore[arg-type]

    class Down(SemanticCache):
        def feedback(self, key: str, *, correct: bool) -> Feedback | None:
            raise OSError("index down")

    with pytest.raises(deja.StoreError, match="index down"):
        await deja.AsyncCache(semantic=Down(embedder=embedder)).feedback("k", correct=False)


async def test_an_index_without_strikes_is_a_config_error_only_for_feedback(embedder: Any) -> None:
    class Strikeless(InProcessIndex):
        """An index written against the protocol before it had ``strike``."""

        def __getattribute__(self, name: str) -> Any:
            if name == "strike":
                raise AttributeError(name)
            return super().__getattribute__(name)

    index = Strikeless(dim=embedder.dim)
    cache = deja.AsyncCache(semantic=SemanticCache(embedder=embedder, index=index))
    stored = await cache.fetch(chat_request(ASKED), _answer)
    served = await cache.get(chat_request(REWORDED))  # everything else works
    assert served.info.status == "semantic_hit" and served.info.key == stored.info.key
    with pytest.raises(deja.ConfigError, match="Strikeless keeps no strikes"):
        await cache.feedback(stored.info.key, correct=False)
    assert (await cache.get(chat_request(REWORDED))).info.status == "semantic_hit"


async def _answer() -> Any:
    return chat_response("Track it in the app.")


def test_strikes_reach_every_process_on_a_shared_redis_index(embedder: Any) -> None:
    from deja.semantic.redis_index import RedisVectorIndex
    from deja.stores.redis import RedisStore
    from tests.semantic.conftest import redisearch_server

    server = redisearch_server()
    if server is None:
        pytest.skip("RediSearch module not available")
    name = f"feedback-{id(embedder)}"

    def process() -> deja.Cache:  # what a second worker or host builds from one config
        index = RedisVectorIndex(
            url=server.url, dim=embedder.dim, index_name=name, key_prefix=f"{name}:"
        )
        return deja.Cache(
            store=RedisStore(url=server.url),
            key_prefix=f"{name}/",
            semantic=SemanticCache(embedder=embedder, index=index),
        )

    first, second = process(), process()
    try:
        key = first.fetch(chat_request(ASKED), chat_response).info.key
        assert second.get(chat_request(REWORDED)).info.status == "semantic_hit"
        assert first.feedback(key, correct=False) == Feedback(key, 1, forgotten=False)
        assert second.feedback(key, correct=False) == Feedback(key, 2, forgotten=True)
        assert first.get(chat_request(REWORDED)).info.status == "miss"
        assert second.get(chat_request(ASKED)).info.status == "hit"
    finally:
        first.clear()
        first.close()
        second.close()


async def test_the_proxy_takes_feedback_from_the_entrys_own_tenant(tmp_path: Path) -> None:
    with FakeOpenAIServer() as upstream:
        config = proxy_config(upstream, caching={"type": "semantic"})
        app = ProxyApp(parse_config(config, base_dir=tmp_path))
        transport = httpx2.ASGITransport(app=app)

        def client(key: str) -> httpx2.AsyncClient:
            headers = {"authorization": f"Bearer {key}"}
            return httpx2.AsyncClient(transport=transport, base_url="http://p", headers=headers)

        async with client(TEAM_A) as team_a, client(TEAM_B) as team_b, client(MASTER) as admin:

            async def ask(who: httpx2.AsyncClient, text: str) -> httpx2.Response:
                body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
                return await who.post("/v1/chat/completions", json=body)

            await ask(team_a, ASKED)
            served = await ask(team_a, REWORDED)
            assert served.headers["x-deja-cache"] == "semantic_hit"
            key = served.headers["x-deja-cache-key"]

            # another tenant cannot tell the entry exists, let alone strike it
            other = await team_b.post("/cache/feedback", json={"key": key, "correct": False})
            assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
            # nor can the entry's tenant reach it under another namespace
            elsewhere = {"key": key, "correct": False, "namespace": "other"}
            assert (await team_a.post("/cache/feedback", json=elsewhere)).status_code == 404

            # the operator sees which earlier prompt answered it, and why
            request = {"model": "gpt-4o", "messages": [{"role": "user", "content": REWORDED}]}
            explained = (
                await admin.post("/cache/explain", json={"request": request, "tenant": "team-a"})
            ).json()["semantic"]
            assert explained["match"] == key
            assert explained["candidates"][0]["prompt"] == ASKED
            wrong = await team_a.post("/v1/cache/feedback", json={"key": key, "correct": False})
            assert wrong.status_code == 200
            assert wrong.json() == {"key": key, "strikes": 1, "forgotten": False}
            last = await admin.post("/cache/feedback", json={"key": key, "correct": False})
            assert last.json() == {"key": key, "strikes": 2, "forgotten": True}
            assert (await ask(team_a, REWORDED)).headers["x-deja-cache"] == "miss"
            assert (await ask(team_a, ASKED)).headers["x-deja-cache"] == "hit"
            gone = await team_a.post("/cache/feedback", json={"key": key, "correct": True})
            assert gone.status_code == 404

            for bad, param in (
                ({"correct": False}, "key"),
                ({"key": key}, "correct"),
                ({"key": key, "correct": "no"}, "correct"),
                ({"key": key, "correct": False, "namespace": 3}, "namespace"),
            ):
                answer = await team_a.post("/cache/feedback", json=bad)
                assert answer.status_code == 400 and answer.json()["error"]["param"] == param
            anonymous = await team_a.post(
                "/cache/feedback",
                json={"key": key, "correct": False},
                headers={"authorization": ""},
            )
            assert anonymous.status_code == 401
        await app.aclose()


async def test_a_proxy_without_a_semantic_tier_says_so(tmp_path: Path) -> None:
    with FakeOpenAIServer() as upstream:
        app = ProxyApp(parse_config(proxy_config(upstream), base_dir=tmp_path))
        headers = {"authorization": f"Bearer {TEAM_A}"}
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://p", headers=headers
        ) as client:
            answer = await client.post("/cache/feedback", json={"key": "k", "correct": False})
        await app.aclose()
    assert answer.status_code == 404 and "no semantic cache" in answer.json()["error"]["message"]
