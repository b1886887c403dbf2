"""The library API audit's findings: wrap's parse(), a bumped key prefix with a semantic
tier, and arguments of the wrong kind refused where they are given, not deep inside."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest
from openai.lib._pydantic import to_strict_json_schema

import deja
from deja import api
from deja.errors import ConfigError, ControlError, InvalidRequestError
from deja.testing import FakeOpenAIServer, Reply
from tests.helpers import chat_request, chat_response

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Capital of France as JSON"}]


class City(pydantic.BaseModel):
    city: str


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


# -- deja.wrap: chat.completions.parse -----------------------------------------------------


def test_wrapped_parse_is_cached_and_sends_no_cache_options(server: FakeOpenAIServer) -> None:
    sdk = deja.wrap(openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0))
    statuses, parsed = [], []
    for _ in range(2):
        server.queue_reply(Reply('{"city":"Paris"}'))
        r = sdk.chat.completions.parse(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            response_format=City,
            extra_body={"cache": {"ttl": 600}},
        )
        info = deja.cache_info(r)
        assert info is not None
        statuses.append(info.status)
        parsed.append(r.choices[0].message.parsed)
    assert statuses == ["miss", "hit"]
    assert parsed == [City(city="Paris"), City(city="Paris")]
    assert server.count(CHAT) == 1
    assert all("cache" not in q.body for q in server.requests)
    # the schema the SDK sends for the class: one entry with create() given that schema
    schema = to_strict_json_schema(City)
    rf = {"type": "json_schema", "json_schema": {"name": "City", "schema": schema, "strict": True}}
    again = sdk.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        response_format=rf,  # type: ignore[arg-type]
    )
    assert deja.cache_info(again).status == "hit"  # type: ignore[union-attr]


def test_the_sdks_beta_parse_is_cached_too(server: FakeOpenAIServer) -> None:
    """beta.chat.completions is another instance of the resource: its parse() went upstream
    every time, with the cache options in the body."""
    sdk = deja.wrap(openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0))
    statuses = []
    for _ in range(2):
        server.queue_reply(Reply('{"city":"Paris"}'))
        r = sdk.beta.chat.completions.parse(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
            response_format=City,
            extra_body={"cache": {"ttl": 600}},
        )
        statuses.append(deja.cache_info(r).status)  # type: ignore[union-attr]
        assert r.choices[0].message.parsed == City(city="Paris")
    assert statuses == ["miss", "hit"]
    assert server.count(CHAT) == 1 and all("cache" not in q.body for q in server.requests)


def test_wrapped_parse_keeps_the_sdks_argument_check_and_raw_response(
    server: FakeOpenAIServer,
) -> None:
    sdk = deja.wrap(openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0))
    with pytest.raises(TypeError, match="stream"):
        sdk.chat.completions.parse(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[call-arg, arg-type]
    server.queue_reply(Reply('{"city":"Paris"}'))
    raw = sdk.chat.completions.with_raw_response.parse(
        model="gpt-4o",
        messages=MESSAGES,  # type: ignore[arg-type]
        response_format=City,
        extra_body={"cache": {"ttl": 600}},
    )
    assert raw.parse().choices[0].message.parsed == City(city="Paris")
    assert server.count(CHAT) == 1 and "cache" not in server.requests[0].body


def test_wrapped_async_parse_is_cached(server: FakeOpenAIServer) -> None:
    async def main() -> list[str]:
        sdk = deja.wrap(
            openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0),
            cache=deja.AsyncCache(),
        )
        statuses = []
        for _ in range(2):
            server.queue_reply(Reply('{"city":"Paris"}'))
            r = await sdk.chat.completions.parse(
                model="gpt-4o",
                messages=MESSAGES,  # type: ignore[arg-type]
                response_format=City,
                extra_body={"cache": {"ttl": 600}},
            )
            assert r.choices[0].message.parsed == City(city="Paris")
            statuses.append(deja.cache_info(r).status)  # type: ignore[union-attr]
        return statuses

    assert asyncio.run(main()) == ["miss", "hit"]
    assert server.count(CHAT) == 1
    assert all("cache" not in q.body for q in server.requests)


# -- a bumped key_prefix with a semantic tier -----------------------------------------------


class _SameVector:
    """Every text the same vector: any earlier prompt is a perfect match by meaning."""

    id, dim = "same:test:3", 3

    def embed(self, texts: Any) -> Any:
        import numpy as np

        return np.ones((len(texts), 3), dtype=np.float32) / np.sqrt(3)

    async def aembed(self, texts: Any) -> Any:
        return self.embed(texts)


@pytest.mark.skipif(
    importlib.util.find_spec("usearch") is None or importlib.util.find_spec("numpy") is None,
    reason="the semantic extra is not installed",
)
def test_bumped_key_prefix_reaches_no_earlier_semantic_entry() -> None:
    from deja.semantic import SemanticCache

    cache = deja.Cache(semantic=SemanticCache(embedder=_SameVector(), verifier=None))
    calls = 0

    def upstream() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return chat_response(f"answer {calls}")

    request = chat_request("How can I track my card delivery?")
    assert cache.fetch(request, upstream).info.status == "miss"
    reworded = chat_request("How do I track the delivery of my card?")
    assert cache.fetch(reworded, upstream).info.status == "semantic_hit"  # the tier works
    cache.key_prefix = "deja:prompt-v2:"
    after = cache.fetch(request, upstream)
    assert after.info.status == "miss" and after.info.key.startswith("deja:prompt-v2:v1:")
    assert calls == 2
    # the new prefix's entries are found by meaning again
    assert cache.fetch(reworded, upstream).info.status == "semantic_hit"
    with pytest.raises(ValueError, match="key_prefix"):
        cache.key_prefix = None  # type: ignore[assignment]
    assert cache.key_prefix == "deja:prompt-v2:"


# -- arguments checked where they are given --------------------------------------------------


@pytest.mark.parametrize("make", [deja.Client, deja.AsyncClient])
@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_connections": 0}, ValueError),
        ({"max_connections": -1}, ValueError),
        ({"max_connections": 2.5}, TypeError),
        ({"timeout": float("inf")}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"metrics": "prometheus"}, TypeError),
        ({"prices": "openai"}, TypeError),
        ({"clock": 1.7e9}, TypeError),
        ({"http_client": object()}, TypeError),
        ({"headers": {"x-n": 1}}, TypeError),
        ({"api_base": 8080}, TypeError),
    ],
)
def test_client_refuses_bad_options_at_construction(
    make: Callable[..., Any], options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        make(**options)


def test_clients_refuse_the_other_kinds_http_client() -> None:
    import httpx2

    with httpx2.Client() as sync_http, pytest.raises(TypeError, match="AsyncClient"):
        deja.AsyncClient(http_client=sync_http)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"httpx2\.Client"):
        deja.Client(http_client=httpx2.AsyncClient())  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{"prices": "openai"}, {"clock": 1.7e9}])
def test_cache_refuses_bad_options_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        deja.Cache(**options)
    with pytest.raises(TypeError):
        deja.AsyncCache(**options)


@pytest.mark.parametrize(
    "call",
    [
        {"api_base": 8080},
        {"stream": True, "stream_options": True},
        {"extra_body": "x"},
        {"extra_headers": "x"},
    ],
)
def test_bad_call_fields_are_refused_before_the_upstream(
    server: FakeOpenAIServer, call: dict[str, Any]
) -> None:
    client = deja.Client(cache=deja.Cache(), api_base=server.base_url, api_key="k")
    with pytest.raises(InvalidRequestError):
        client.completion(model="gpt-4o", messages=MESSAGES, **call)
    assert server.count(CHAT) == 0


def test_set_default_client_refuses_the_wrong_kind() -> None:
    saved = (api.DEFAULTS.client, api.DEFAULTS.async_client)
    try:
        with pytest.raises(TypeError, match="async_client="):
            deja.set_default_client(deja.AsyncClient())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="client="):
            deja.set_default_client(async_client=deja.Client())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            deja.set_default_client(openai.OpenAI(api_key="k"))  # type: ignore[arg-type]
        assert (api.DEFAULTS.client, api.DEFAULTS.async_client) == saved
    finally:
        api.DEFAULTS.replace(*saved)


@pytest.mark.parametrize("method", ["get", "explain", "delete_request"])
def test_cache_calls_taking_a_request_refuse_a_dict(method: str) -> None:
    with pytest.raises(TypeError, match="Request"):
        getattr(deja.Cache(), method)({"model": "gpt-4o", "messages": MESSAGES})


# -- management calls that would delete nothing ----------------------------------------------


@pytest.fixture
def tagged() -> tuple[deja.Cache, deja.Request]:
    cache = deja.Cache()
    request = chat_request()
    assert cache.put(request, chat_response(), control={"tags": ["doc:42"]})
    return cache, request


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.delete_tag(["doc:42"]), TypeError),
        (lambda c: c.delete_tag(("doc:42",)), TypeError),
        (lambda c: c.delete_tag("doc:42", tenant=42), InvalidRequestError),
        (lambda c: c.delete_tag("doc:42", namespace=""), ControlError),
        (lambda c: c.clear(namespace=5), ControlError),
        (lambda c: c.clear(namespace=""), ControlError),
        (lambda c: c.clear(namespace=["x"]), ControlError),
        (lambda c: c.clear(tenant=5), InvalidRequestError),
        (lambda c: c.delete(None), TypeError),
        (lambda c: c.delete(b"key"), TypeError),
        (
            lambda c: c.key_for(model="gpt-4o", messages=MESSAGES, namespace=""),
            ControlError,
        ),
    ],
)
def test_management_calls_refuse_what_no_entry_has(
    tagged: tuple[deja.Cache, deja.Request],
    call: Callable[[deja.Cache], Any],
    error: type[Exception],
) -> None:
    cache, request = tagged
    with pytest.raises(error):
        call(cache)
    assert cache.get(request).info.status == "hit"
    assert cache.delete_tag("doc:42") == 1  # the right call still works


# -- fetch and put given something other than an answer ------------------------------------


@pytest.mark.parametrize("answer", [None, "text", ["a"]])
def test_fetch_refuses_an_answer_that_is_not_a_mapping(answer: Any) -> None:
    cache = deja.Cache()
    with pytest.raises(TypeError, match="OpenAI-shaped dict"):
        cache.fetch(chat_request(), lambda: answer)
    with pytest.raises(TypeError, match="OpenAI-shaped dict"):
        cache.put(chat_request(), answer)


def test_sync_fetch_of_an_async_function_points_at_async_cache() -> None:
    async def call() -> dict[str, Any]:
        return chat_response()

    coroutine = call()
    with pytest.raises(TypeError, match="AsyncCache"):
        deja.Cache().fetch(chat_request(), lambda: coroutine)  # type: ignore[arg-type, return-value]
    assert coroutine.cr_frame is None  # closed, never left to warn "never awaited"


def test_async_fetch_of_a_sync_function_points_at_cache() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match=r"deja\.Cache"):
            await deja.AsyncCache().fetch(chat_request(), chat_response)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="OpenAI-shaped dict"):

            async def nothing() -> None:
                return None

            await deja.AsyncCache().fetch(chat_request(), nothing)  # type: ignore[arg-type]

    asyncio.run(main())


# -- settings changed on a live cache ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("ttl", "900", TypeError),
        ("ttl", -5, ValueError),
        ("admission", "x", TypeError),
        ("key_prefix", None, ValueError),
        ("namespace", "", ControlError),
        ("mode", "off", ValueError),
        ("max_entry_bytes", 0, ValueError),
    ],
)
def test_enable_cache_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, name: str, value: Any, error: type[Exception]
) -> None:
    monkeypatch.setattr(api, "DEFAULTS", api.Defaults())
    cache = deja.enable_cache()
    twin = api.DEFAULTS.async_client.cache
    assert twin is not None
    before = getattr(cache, name)
    with pytest.raises(error):
        setattr(cache, name, value)
    assert getattr(cache, name) == before and getattr(twin, name) == before
    plain = deja.Cache()
    with pytest.raises(error):
        setattr(plain, name, value)


def test_enable_cache_setting_reaches_the_async_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "DEFAULTS", api.Defaults())
    cache = deja.enable_cache()
    cache.ttl = 900
    cache.key_prefix = "v2:"
    twin = api.DEFAULTS.async_client.cache
    assert twin is not None and (twin.ttl, twin.key_prefix) == (900.0, "v2:")
    assert cache.key(chat_request()).startswith("v2:v1:")


# -- key prefixes and namespaces: one rule, the cache's, for the library and the config -------


@pytest.mark.parametrize("prefix", ["deja: ", " deja:", "deja:\n", "a\tb", None])
def test_a_key_prefix_with_whitespace_at_an_end_is_refused(prefix: Any) -> None:
    """ "deja: " was taken: its keys were another cache's than "deja:"'s, every entry a
    miss for a space nobody sees."""
    with pytest.raises(ValueError, match=r"key_prefix must be a printable string without"):
        deja.Cache(key_prefix=prefix)


def test_an_empty_key_prefix_is_none_and_the_key_version_stays() -> None:
    """DESIGN: <key_prefix>v1:<scope>:<digest>: the version is the key format's, no part of
    the prefix; a cache without a prefix clears its own keys only."""
    from deja.stores.memory import MemoryStore

    store = MemoryStore()
    bare = deja.Cache(store=store, key_prefix="")
    request = chat_request()
    assert bare.key(request).startswith("v1:") and bare.key(request).count(":") == 2
    bare.put(request, chat_response("a"))
    store.set("app:v1:theirs", b"x", None)
    assert bare.clear() == 1 and store.get("app:v1:theirs") == b"x"


@pytest.mark.parametrize(
    ("caching", "said"),
    [
        ({"key_prefix": "a\tb"}, r"caching\.key_prefix: key_prefix must be a printable string"),
        ({"key_prefix": "deja: "}, r"caching\.key_prefix: .* without whitespace at either end"),
        ({"namespace": "a\tb"}, r"caching\.namespace: must be a printable string of 1 to 256"),
        ({"namespace": "n" * 257}, r"caching\.namespace: must be a printable string"),
    ],
)
def test_the_config_checks_a_prefix_and_namespace_as_the_cache_does(
    tmp_path: Path, caching: dict[str, Any], said: str
) -> None:
    """The config took them, and the cache it built refused them: a ValueError, or a
    ControlError about a request's cache option, naming no YAML path."""
    from deja.config import parse_config

    with pytest.raises(ConfigError, match=said):
        parse_config({"caching": {"type": "memory", **caching}}, base_dir=tmp_path)
