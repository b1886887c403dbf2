"""The key contract (DESIGN.md): what leaves a key unchanged, and what changes it."""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deja.errors import InvalidRequestError, KeyBuilderError
from deja.keys import (
    VOLATILE_PARAMS,
    default_digest,
    explain,
    key_payload,
    make_key,
    scope_hash,
    scope_prefix,
)
from deja.request import Request, normalize_api_base, resolve_model

KEY_RE = re.compile(r"^deja:v1:[0-9a-f]{16}:[0-9a-f]{64}$")

text = st.text(min_size=0, max_size=40)
roles = st.sampled_from(["system", "user", "assistant"])
messages_st = st.lists(
    st.fixed_dictionaries({"role": roles, "content": text}), min_size=1, max_size=5
)
numbers = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
param_names = st.sampled_from(["temperature", "top_p", "frequency_penalty"])
count_names = st.sampled_from(["max_tokens", "seed", "n"])
params_st = st.builds(
    lambda floats, counts: {**floats, **counts},
    st.dictionaries(param_names, numbers, max_size=2),
    st.dictionaries(count_names, st.integers(min_value=0, max_value=2**40), max_size=2),
)


def chat(**kw: Any) -> Request:
    kw.setdefault("model", "gpt-4o")
    kw.setdefault("messages", [{"role": "user", "content": "hi"}])
    return Request.chat(**kw)


def key(request: Request, **kw: Any) -> str:
    return make_key(request, **kw)


def test_key_format() -> None:
    k = key(chat())
    assert KEY_RE.match(k), k
    assert k.startswith(scope_prefix("deja:", None, None))


def test_digest_is_sha256_of_canonical_json() -> None:
    request = chat(temperature=0.5)
    payload = orjson.dumps(key_payload(request), option=orjson.OPT_SORT_KEYS)
    assert default_digest(request) == hashlib.sha256(payload).hexdigest()
    assert b" " not in payload.replace(b'"hi"', b"")  # compact separators


@given(messages_st, params_st, st.randoms())
@settings(max_examples=200)
def test_dict_order_does_not_matter(
    messages: list[dict[str, str]], params: dict[str, Any], rnd: Any
) -> None:
    items = list(params.items())
    rnd.shuffle(items)
    shuffled_messages = [dict(reversed(list(m.items()))) for m in messages]
    assert key(chat(messages=messages, **params)) == key(
        chat(messages=shuffled_messages, **dict(items))
    )


@given(st.integers(min_value=-(2**52), max_value=2**52), messages_st)
def test_int_equals_float(value: int, messages: list[dict[str, str]]) -> None:
    assert key(chat(messages=messages, max_tokens=value)) == key(
        chat(messages=messages, max_tokens=float(value))
    )
    assert key(chat(messages=messages, temperature=value)) == key(
        chat(messages=messages, temperature=float(value))
    )


@given(messages_st)
def test_string_content_equals_single_text_part(messages: list[dict[str, str]]) -> None:
    parts = [
        {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in messages
    ]
    assert key(chat(messages=messages)) == key(chat(messages=parts))


@given(
    messages_st,
    st.sampled_from(sorted(VOLATILE_PARAMS - {"api_base"})),
    st.one_of(text, st.booleans(), st.integers()),
)
def test_volatile_fields_do_not_change_the_key(
    messages: list[dict[str, str]], name: str, value: Any
) -> None:
    assume(name not in ("stream", "store") or isinstance(value, bool))  # typed: a 400
    assert key(chat(messages=messages)) == key(chat(messages=messages, **{name: value}))


def test_cache_control_markers_do_not_change_the_key() -> None:
    plain = chat(
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "long system prompt"}]},
            {"role": "user", "content": "hi"},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
    )
    marked = chat(
        messages=[
            {
                "role": "system",
                "content": [
                    {
                        "type": "text",
                        "text": "long system prompt",
                        "cache_control": {"type": "ephemeral"},
                    }
                ],
            },
            {"role": "user", "content": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
        tools=[
            {
                "type": "function",
                "function": {"name": "f", "parameters": {}},
                "cache_control": {"type": "ephemeral"},
            }
        ],
    )
    assert key(plain) == key(marked)


def test_none_valued_fields_equal_absent_ones() -> None:
    assert key(chat(temperature=None)) == key(chat())
    a = chat(
        messages=[
            {"role": "assistant", "content": "x", "refusal": None},
            {"role": "user", "content": "y"},
        ]
    )
    b = chat(messages=[{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}])
    assert key(a) == key(b)


def test_model_spellings_resolve_to_one_upstream() -> None:
    assert key(chat(model="gpt-4o")) == key(chat(model="openai/gpt-4o"))
    assert key(chat(model="gpt-4o")) == key(
        chat(model="gpt-4o", api_base="https://API.openai.com:443/v1/")
    )


BASE = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o-mini"},
        {"model": "groq/gpt-4o"},
        {"api_base": "http://localhost:8000/v1"},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"messages": [{"role": "user", "content": "hi", "name": "bob"}]},
        {"messages": [{"role": "system", "content": "hi"}]},
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
            ]
        },
        {"temperature": 0.3},
        {"top_p": 0.9},
        {"max_tokens": 10},
        {"n": 2},
        {"stop": ["\n"]},
        {"seed": 1},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"logit_bias": {"50256": -100}},
        {"presence_penalty": 0.5},
        {"frequency_penalty": 0.5},
        {"reasoning_effort": "high"},
        {"top_k": 40},
    ],
    ids=lambda c: next(iter(c)),
)
def test_output_affecting_changes_change_the_key(change: dict[str, Any]) -> None:
    changed = {**copy.deepcopy(BASE), **change}
    assert key(Request.chat(**BASE)) != key(Request.chat(**changed))


@given(messages_st, st.integers(min_value=0, max_value=4), text)
def test_any_message_change_changes_the_key(
    messages: list[dict[str, str]], index: int, suffix: str
) -> None:
    i = index % len(messages)
    changed = copy.deepcopy(messages)
    changed[i]["content"] += suffix + "x"
    assert key(chat(messages=messages)) != key(chat(messages=changed))


def test_tool_calls_are_keyed() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    other = {**call, "function": {"name": "f", "arguments": '{"a": 2}'}}
    msgs = lambda c: [  # noqa: E731
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [c]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ]
    assert key(chat(messages=msgs(call))) != key(chat(messages=msgs(other)))


@given(
    st.one_of(st.none(), text),
    st.one_of(st.none(), text),
    st.one_of(st.none(), text),
    st.one_of(st.none(), text),
)
def test_tenant_and_namespace_change_only_the_scope(
    t1: str | None, n1: str | None, t2: str | None, n2: str | None
) -> None:
    t1, t2 = t1 or None, t2 or None
    k1 = key(chat(tenant=t1), namespace=n1)
    k2 = key(chat(tenant=t2), namespace=n2)
    assert k1.rsplit(":", 1)[1] == k2.rsplit(":", 1)[1]  # same digest
    assert (k1 == k2) == ((t1, n1) == (t2, n2))
    assert k1.split(":")[2] == scope_hash(t1, n1)


def test_key_prefix_is_kept_verbatim() -> None:
    assert key(chat(), key_prefix="app:prompt-v2:").startswith("app:prompt-v2:v1:")


def test_custom_builder_only_sets_the_digest() -> None:
    def builder(request: Request) -> str:
        return "fixed-digest"

    a = key(chat(tenant="a"), builder=builder)
    b = key(chat(tenant="b"), builder=builder)
    assert a.endswith(":fixed-digest") and b.endswith(":fixed-digest")
    assert a != b  # tenants never share an entry, whatever the builder returns


def test_custom_builder_can_wrap_the_default() -> None:
    from dataclasses import replace

    def ignore_seed(request: Request) -> str:
        params = {k: v for k, v in request.params.items() if k != "seed"}
        return default_digest(replace(request, params=params))

    assert key(chat(seed=1), builder=ignore_seed) == key(chat(seed=2), builder=ignore_seed)
    assert key(chat(seed=1), builder=ignore_seed) == key(chat())


@pytest.mark.parametrize("bad", ["", "has space", "x" * 513, 42, None, "tab\t"])
def test_bad_builder_output_is_a_typed_error(bad: Any) -> None:
    with pytest.raises(KeyBuilderError):
        key(chat(), builder=lambda r: bad)


def test_builder_exception_is_a_typed_error() -> None:
    def broken(request: Request) -> str:
        raise RuntimeError("boom")

    with pytest.raises(KeyBuilderError, match="boom"):
        key(chat(), builder=broken)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": ""},
        {"model": 5},
        {"messages": "hello"},
        {"messages": [{"content": "no role"}]},
        {"messages": [{"role": "user", "content": 5}]},
        {"messages": [{"role": "user", "content": [{"text": "no type"}]}]},
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"api_base": "ftp://example.com"},
        {"extra": object()},
    ],
)
def test_bad_requests_are_typed_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        key(chat(**kwargs))


def test_explain_lists_fields_and_ignored_params() -> None:
    request = chat(temperature=0.0, user="u-1", stream=True, metadata={"trace": "t"})
    info = explain(request, namespace="faq")
    assert info["key"] == key(request, namespace="faq")
    assert info["fields"]["params"] == {"temperature": 0}
    assert info["fields"]["model"] == "openai/gpt-4o"
    assert info["fields"]["api_base"] == "https://api.openai.com/v1"
    assert info["ignored"] == ["metadata", "stream", "user"]
    assert info["scope"] == {"hash": scope_hash(None, "faq"), "tenant": None, "namespace": "faq"}


def test_api_base_never_keeps_credentials() -> None:
    base = normalize_api_base("https://user:secret@Example.com:443/v1beta/?key=SECRET&alt=sse")
    assert base == "https://example.com/v1beta?alt=sse"
    payload = orjson.dumps(
        key_payload(chat(model="gemini/gemini-2.0-flash", api_base="https://x.dev/?key=SECRET"))
    )
    assert b"SECRET" not in payload


def test_resolve_model() -> None:
    assert resolve_model("gpt-4o") == ("openai", "gpt-4o")
    assert resolve_model("anthropic/claude-3-5-sonnet") == ("anthropic", "claude-3-5-sonnet")
    assert resolve_model("meta-llama/Llama-3-8B") == ("openai", "meta-llama/Llama-3-8B")


def test_sdk_message_objects_are_accepted() -> None:
    class Msg:
        def model_dump(self, exclude_none: bool = False) -> dict[str, Any]:
            return {"role": "assistant", "content": "x"}

    a = chat(messages=[Msg(), {"role": "user", "content": "y"}])
    b = chat(messages=[{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}])
    assert key(a) == key(b)


def test_from_body_matches_chat() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 1,
        "stream": True,
    }
    assert key(Request.from_body(body)) == key(chat(temperature=1.0))
    with pytest.raises(InvalidRequestError):
        Request.from_body({"messages": []})
    with pytest.raises(InvalidRequestError):
        Request.from_body({"model": "gpt-4o"})
    assert key(
        Request.from_body({"model": "text-embedding-3-small", "input": "x"}, kind="embedding")
    ) != key(
        Request.from_body({"model": "text-embedding-3-small", "prompt": "x"}, kind="completion")
    )


def test_replace_never_keeps_a_stale_fast_path() -> None:
    from dataclasses import replace

    plain = chat()
    assert plain.plain_messages
    marked = [
        {"role": "user", "content": "hi", "cache_control": {"type": "ephemeral"}, "name": None}
    ]
    derived = replace(plain, messages=tuple(marked))
    assert not derived.plain_messages
    assert key(derived) == key(plain)  # normalized the slow way, to the same key
