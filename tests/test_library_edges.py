"""The library where a user's mistake meets it: typed errors for arguments deja cannot
use, keys that match what the Client keys, and requests that repeat themselves."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import deja
from deja.keys import make_key
from deja.stores.memory import MemoryStore
from deja.testing import FakeOpenAIServer

MESSAGES = [{"role": "user", "content": "Capital of Peru?"}]


def chat(**kw: Any) -> deja.Request:
    messages = kw.pop("messages", MESSAGES)
    return deja.Request.chat(model="gpt-4o", messages=messages, **kw)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: deja.Cache(store="memory"), "store must be a deja store"),
        (lambda: deja.Client(cache=MemoryStore()), "cache must be a deja.Cache"),
        (lambda: deja.Client(cache=deja.AsyncCache()), "cache must be a deja.Cache"),
        (lambda: deja.AsyncClient(cache=deja.Cache()), "cache must be a deja.AsyncCache"),
        (lambda: deja.Client(timeout="5"), "timeout must be a number"),
        (lambda: deja.Client(max_retries=1.5), "max_retries must be an int"),
    ],
)
def test_arguments_deja_cannot_use_are_a_type_error(make: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()


@pytest.mark.parametrize(
    "request_of",
    [
        lambda: chat(seed=2**70),
        lambda: chat(messages=[{"role": "user", "content": "\ud800"}]),
        lambda: chat(messages=[{"role": "user", "content": "q", 1: "y"}]),
    ],
)
def test_what_json_cannot_carry_is_an_invalid_request(request_of: Any) -> None:
    with pytest.raises(deja.InvalidRequestError, match="cannot be keyed"):
        make_key(request_of())


def test_numpy_numbers_are_numbers() -> None:
    assert make_key(chat(temperature=np.float64(0.2))) == make_key(chat(temperature=0.2))


def test_openais_successor_of_user_is_volatile() -> None:
    assert make_key(chat(safety_identifier="u-1")) == make_key(chat())
    assert make_key(chat(num_retries=3)) == make_key(chat())


def test_a_request_keys_the_endpoint_the_client_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-up")
        cache = deja.Cache()
        with deja.Client(cache=cache, max_retries=0) as client:
            answer = client.completion(model="gpt-4o", messages=MESSAGES)
        assert cache.explain(chat())["key"] == answer.cache.key
        assert cache.get(chat()).info.status == "hit"


def test_an_item_given_twice_is_fetched_once() -> None:
    with FakeOpenAIServer() as server:
        cache = deja.Cache()
        with deja.Client(cache=cache, api_base=server.base_url, api_key="sk", max_retries=0) as c:
            c.embedding(model="text-embedding-3-small", input=["b", "d"])
            answer = c.embedding(model="text-embedding-3-small", input=["a", "b", "a", "c", "d"])
        assert server.requests[-1].body["input"] == ["a", "c"]
        vectors = [item.embedding for item in answer.data]
        assert len(vectors) == 5 and vectors[0] == vectors[2] != vectors[1]


def test_a_store_where_it_cannot_work_is_refused_when_made(tmp_path: Any) -> None:
    from deja.stores.disk import DiskStore
    from deja.stores.redis import RedisStore

    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        DiskStore(file)
    with pytest.raises(ValueError, match="redis://"):
        RedisStore(url="notaurl")
