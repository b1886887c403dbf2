"""Bad input to the library found by an audit: each is a typed error at the call (or the
constructor), not an internal OverflowError / AttributeError / UnicodeEncodeError from
deep inside, and nothing bad is stored (``put``'s chunks poisoned a key's every stream)."""

from __future__ import annotations

from typing import Any

import pytest

import deja
from deja.errors import ControlError, InvalidRequestError
from deja.testing import FakeOpenAIServer
from tests.helpers import chat_request, chat_response

HUGE = 10**400  # past a float's range


def test_put_refuses_chunks_that_are_no_events_and_stores_nothing() -> None:
    cache = deja.Cache()
    request = chat_request()
    for chunks in ([5], 5, "abc", [{"ok": 1}, None]):
        with pytest.raises(TypeError, match="chunks"):
            cache.put(request, chat_response(), chunks=chunks)  # type: ignore[arg-type]
    assert cache.get(request).response is None
    # a stream of the key still works (it failed on every call when [5] was stored)
    assert cache.put(request, chat_response(), chunks=None)


def test_put_many_refuses_an_item_that_is_no_pair_and_stores_none_of_the_batch() -> None:
    cache = deja.Cache()
    good = (chat_request(), chat_response())
    with pytest.raises(TypeError, match="put_many"):
        cache.put_many([good, (chat_request(content="other"), None)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="pairs"):
        cache.put_many([good, 5])  # type: ignore[list-item]
    assert cache.get(good[0]).response is None


def test_key_takes_its_control_as_a_dict_as_get_does() -> None:
    cache = deja.Cache()
    request = chat_request()
    assert cache.key(request, {"namespace": "x"}) == cache.key(
        request, deja.controls.parse_controls({"namespace": "x"})
    )
    assert cache.key(request, {"namespace": "x"}) != cache.key(request)


@pytest.mark.parametrize("option", ["ttl", "s-maxage"])
def test_a_number_past_a_floats_range_is_a_control_error(option: str) -> None:
    with pytest.raises(ControlError, match=option):
        deja.Cache().get(chat_request(), control={option: HUGE})


def test_timeouts_past_a_floats_range_are_refused_at_construction() -> None:
    from deja.stores.redis import RedisStore
    from deja.stores.s3 import S3Store

    with pytest.raises(ValueError, match="timeout"):
        deja.Client(api_key="k", timeout=HUGE)
    with pytest.raises(ValueError, match="op_timeout"):
        RedisStore(url="redis://127.0.0.1:1/0", op_timeout=HUGE)
    with pytest.raises(ValueError, match="read_timeout"):
        S3Store(bucket="b", read_timeout=HUGE)


def test_a_malformed_ipv6_api_base_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError, match="api_base"):
        deja.Request.chat(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], api_base="http://[::1"
        )


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"x-team": "café"}, "not ASCII"),
        ({"x-team": "a\nb"}, "control character"),
        ({"x-team\n": "v"}, "not an HTTP header name"),
        ({"": "v"}, "not an HTTP header name"),
    ],
)
def test_client_headers_an_http_request_cannot_carry_are_refused_at_construction(
    headers: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        deja.Client(api_key="k", headers=headers)


def test_a_calls_own_api_key_of_another_type_is_an_invalid_request() -> None:
    with FakeOpenAIServer() as server:
        client = deja.Client(api_base=server.base_url, api_key="k")
        messages: list[Any] = [{"role": "user", "content": "x"}]
        with pytest.raises(InvalidRequestError, match="api_key"):
            client.completion(model="gpt-4o", messages=messages, api_key=5)  # type: ignore[arg-type]
        assert server.count() == 0


@pytest.mark.parametrize("timeout", ["x", -1, float("nan"), HUGE, True])
def test_a_fetch_or_stream_timeout_that_is_no_positive_number_is_refused(timeout: Any) -> None:
    cache = deja.Cache()
    with pytest.raises((TypeError, ValueError), match="timeout"):
        cache.fetch(chat_request(), chat_response, timeout=timeout)
    with pytest.raises((TypeError, ValueError), match="timeout"):
        cache.stream(chat_request(), lambda: iter(()), timeout=timeout)
    with pytest.raises((TypeError, ValueError), match="first_timeout"):
        cache.stream(chat_request(), lambda: iter(()), first_timeout=timeout)


@pytest.mark.parametrize(
    ("argument", "value"),
    [("verifier", "bogus"), ("guards", 5), ("embedder", 5), ("index", 5)],
)
def test_a_semantic_part_of_the_wrong_kind_is_a_type_error_naming_it(
    argument: str, value: Any
) -> None:
    pytest.importorskip("numpy")
    from deja.semantic import SemanticCache

    with pytest.raises(TypeError, match=argument):
        SemanticCache(**{argument: value})


@pytest.mark.parametrize(
    "arguments",
    [
        {"breaker_threshold": "5"},
        {"breaker_threshold": 1.5},
        {"breaker_reset": float("nan")},
        {"breaker_reset": float("inf")},
        {"lock_ttl": float("nan")},
        {"lock_ttl": float("inf")},
        {"lock_wait": float("nan")},
        {"lock_wait": "30"},
    ],
)
def test_cache_breaker_and_lock_settings_are_finite_numbers(arguments: dict[str, Any]) -> None:
    # (NaN was taken: a breaker that never closed again, a lock wait that never ended)
    with pytest.raises(ValueError):
        deja.Cache(**arguments)


def test_a_key_builder_that_is_no_function_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match="key_builder"):
        deja.Cache(key_builder=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("top_k", 1.5),
        ("max_strikes", 1.5),
        ("strike_penalty", float("nan")),
        ("threshold", True),
        ("threshold", "0.9"),
    ],
)
def test_semantic_numbers_of_the_wrong_kind_are_refused(argument: str, value: Any) -> None:
    pytest.importorskip("numpy")
    from deja.semantic import SemanticCache

    with pytest.raises(ValueError, match=argument):
        SemanticCache(**{argument: value})


def test_store_constructors_refuse_what_no_store_can_use() -> None:
    from deja.stores.disk import DiskStore
    from deja.stores.redis import RedisStore
    from deja.stores.s3 import S3Store

    for directory in ("", "a\x00b"):  # (every use a miss, with a warning, before)
        with pytest.raises(ValueError, match="directory"):
            DiskStore(directory)
    for db in ("x", -1, True):
        with pytest.raises(ValueError, match="db"):
            RedisStore(host="127.0.0.1", port=1, db=db)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="endpoint_url"):
        S3Store(bucket="b", endpoint_url="not a url")
    # an empty list was taken for none: a standalone server on this machine
    for nodes in ("startup_nodes", "sentinels"):
        with pytest.raises(ValueError, match=rf"{nodes} is empty"):
            RedisStore(**{nodes: []}, service_name="m")


def test_explain_semantic_of_no_request_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"deja\.Request"):
        deja.Cache().explain_semantic(None)  # type: ignore[arg-type]
