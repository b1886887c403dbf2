"""The key contract (DESIGN.md): what leaves a key unchanged, and what changes it."""

from __future__ import annotations

import copy
import enum
import hashlib
import re
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deja.errors import InvalidRequestError, KeyBuilderError
from deja.keys import (
    SCHEMA_PATHS,
    VOLATILE_PARAMS,
    default_digest,
    explain,
    key_payload,
    make_key,
    scope_hash,
    scope_prefix,
)
from deja.request import Request, normalize_api_base, resolve_model, upstream_base

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
# each within what the API takes (n from 1, top_p from 0 to 1, and, OpenAI's own, max_tokens
# from 1 and temperature from 0: deja.request refuses the rest)
params_st = st.fixed_dictionaries(
    {},
    optional={
        "temperature": numbers.map(abs),
        "top_p": st.floats(min_value=0, max_value=1),
        "frequency_penalty": numbers,
        "max_tokens": st.integers(min_value=1, max_value=2**40),
        "seed": st.integers(min_value=0, max_value=2**40),
        "n": st.integers(min_value=1, max_value=2**40),
    },
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
    # (seed and the penalties take any number; max_tokens and temperature, OpenAI's own
    # API's, from 1 and from 0)
    for name, number in (
        ("seed", value),
        ("frequency_penalty", value),
        ("max_tokens", abs(value) + 1),
        ("temperature", abs(value)),
    ):
        assert key(chat(messages=messages, **{name: number})) == key(
            chat(messages=messages, **{name: float(number)})
        )


@given(messages_st)
def test_string_content_equals_single_text_part(messages: list[dict[str, str]]) -> None:
    parts = [
        {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in messages
    ]
    assert key(chat(messages=messages)) == key(chat(messages=parts))


# the volatile fields whose values must be strings (a 400 otherwise)
STRING_PARAMS = frozenset(
    {"user", "safety_identifier", "service_tier", "prompt_cache_key", "prompt_cache_retention"}
)


@given(
    messages_st,
    st.sampled_from(sorted(VOLATILE_PARAMS - {"api_base"})),
    st.one_of(text, st.booleans(), st.integers()),
)
def test_volatile_fields_do_not_change_the_key(
    messages: list[dict[str, str]], name: str, value: Any
) -> None:
    # typed fields take their type, or are a 400 (stream_options: with stream only)
    assume(name not in ("stream", "store") or isinstance(value, bool))
    assume(name not in STRING_PARAMS or isinstance(value, str))
    assume(name not in ("metadata", "stream_options"))  # (objects: not drawn here)
    assert key(chat(messages=messages)) == key(chat(messages=messages, **{name: value}))


def test_volatile_objects_do_not_change_the_key() -> None:
    messages = [{"role": "user", "content": "hi"}]
    plain = key(chat(messages=messages, stream=True))
    assert key(chat(messages=messages, stream=True, metadata={"run": "a"})) == plain
    assert key(chat(messages=messages, stream=True, stream_options={"include_usage": 1})) == plain


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
    # LiteLLM's guide's flag on OpenAI messages and parts: never sent upstream, nor keyed
    flagged = chat(
        messages=[
            {
                "role": "system",
                "content": [{"type": "text", "text": "long system prompt", "cached": True}],
            },
            {"role": "user", "content": "hi", "cached": True},
        ],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}, "cached": True}],
    )
    assert key(plain) == key(flagged)


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


@pytest.mark.parametrize("bad", ["", "has space", "x" * 513, 42, None, "tab\t", "user-1:lock"])
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


def test_explain_lists_the_prompt_cache_markers_the_key_leaves_out() -> None:
    """README says explain lists them; it listed none (a marked request's key is the plain
    one's, and nothing said why)."""
    marker = {"type": "ephemeral"}
    marked = [
        {"role": "system", "content": [{"type": "text", "text": "rules", "cache_control": marker}]},
        {"role": "user", "content": "hi", "cache_control": marker},
    ]
    tools = [{"type": "function", "function": {"name": "f"}, "cache_control": marker}]
    request = Request.chat(model="claude-sonnet-4-5", messages=marked, tools=tools, user="u")
    plain = Request.chat(
        model="claude-sonnet-4-5",
        messages=[{"role": "system", "content": "rules"}, {"role": "user", "content": "hi"}],
        tools=[{"type": "function", "function": {"name": "f"}}],
    )
    info = explain(request)
    assert info["key"] == key(plain)
    assert info["ignored"] == [
        "user",
        "messages[0].content[0].cache_control",
        "messages[1].cache_control",
        "tools[0].cache_control",
    ]
    assert explain(plain)["ignored"] == []


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


def test_a_pydantic_class_as_response_format_is_a_typed_error() -> None:
    # getattr(cls, "model_dump") is the unbound method: calling it was a bare TypeError
    from pydantic import BaseModel

    class CalendarEvent(BaseModel):
        name: str

    with pytest.raises(InvalidRequestError, match=r"response_format is a class \(CalendarEvent\)"):
        key(chat(response_format=CalendarEvent))


@pytest.mark.parametrize(("kind", "field"), [("completion", "prompt"), ("embedding", "input")])
def test_a_messages_field_beside_a_prompt_or_input_is_keyed(kind: Any, field: str) -> None:
    # it is sent upstream with the rest of the body; it was left out of the key
    def body_key(text: str) -> str:
        body = {"model": "gpt-4o", field: "hello", "messages": [{"role": "user", "content": text}]}
        return key(Request.from_body(body, kind=kind))

    assert body_key("A") != body_key("B")


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


# -- JSON schemas keep their key order (Structured Outputs generate in it) -----------------


def _props(order: list[str]) -> dict[str, Any]:
    props = {"reasoning": {"type": "string"}, "answer": {"type": "string"}}
    return {"type": "object", "properties": {k: props[k] for k in order}}


def _schema_requests(order: list[str]) -> dict[str, dict[str, Any]]:
    schema = _props(order)
    return {
        "response_format.json_schema.schema": {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "strict": True, "schema": schema},
            }
        },
        "response_format.schema": {"response_format": {"type": "json_object", "schema": schema}},
        "tools[].function.parameters": {
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]
        },
        "tools[].parameters": {"tools": [{"type": "function", "name": "f", "parameters": schema}]},
        "functions[].parameters": {"functions": [{"name": "f", "parameters": schema}]},
        "guided_json": {"guided_json": schema},
        "structured_outputs.json": {"structured_outputs": {"json": schema}},
        # the providers' own shapes, sent as written by their adapters
        "tools[].input_schema": {"tools": [{"name": "f", "strict": True, "input_schema": schema}]},
        "output_config.format.schema": {
            "output_config": {"format": {"type": "json_schema", "schema": schema}}
        },
        "tools[].toolSpec.inputSchema.json": {
            "tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": schema}}}]
        },
        "tools[].functionDeclarations[].parameters": {
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}]
        },
        "tools[].functionDeclarations[].parametersJsonSchema": {
            "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": schema}]}]
        },
        "tools[].functionDeclarations[].parameters_json_schema": {  # proto3 JSON's snake case
            "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": schema}]}]
        },
        "generationConfig.responseJsonSchema": {"generationConfig": {"responseJsonSchema": schema}},
        "generationConfig.response_json_schema": {
            "generation_config": {"response_json_schema": schema}
        },
    }


@pytest.mark.parametrize("path", sorted(_schema_requests([])))
def test_schema_key_order_changes_the_key(path: str) -> None:
    first = chat(**_schema_requests(["reasoning", "answer"])[path])
    second = chat(**_schema_requests(["answer", "reasoning"])[path])
    assert key(first) != key(second)
    assert path in SCHEMA_PATHS
    ordered = key_payload(first)["ordered_schemas"]
    assert list(ordered) == [path]
    schema = orjson.loads(ordered[path])
    if "[]" in path:  # one per item of the list
        (schema,) = schema
    assert list(schema["properties"]) == ["reasoning", "answer"]


def test_every_schema_path_is_tested() -> None:
    assert sorted(_schema_requests([])) == sorted(SCHEMA_PATHS)


def _reversed(value: Any) -> Any:
    """``value`` with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reversed(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


@pytest.mark.parametrize("path", sorted(_schema_requests([])))
def test_key_order_outside_schemas_does_not_change_the_key(path: str) -> None:
    body = {**_schema_requests(["reasoning", "answer"])[path], "temperature": 0, "seed": 1}
    schema = _props(["reasoning", "answer"])
    shuffled = _reversed(body)  # the wrappers reversed (and, below, the schema put back)
    text = orjson.dumps(shuffled).decode()
    text = text.replace(orjson.dumps(_reversed(schema)).decode(), orjson.dumps(schema).decode())
    assert text != orjson.dumps(body).decode()
    assert key(chat(**body)) == key(chat(**orjson.loads(text)))


def test_requests_without_a_schema_keep_their_keys() -> None:
    # the digests of the release before schema order was keyed: KEY_VERSION stays v1
    golden = {
        "cd8df3ad7cece516ffbf70d4b66ed0615e4409923c062477c4f93255228c3077": chat(temperature=0.2),
        "1f18e3968f74db3606569878e354c01adc064e4637bdeeb33dada28d84ced99f": chat(
            messages=[
                {"role": "system", "content": "s"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    ],
                },
            ],
            tool_choice="auto",
            response_format={"type": "json_object"},
            max_tokens=5,
        ),
        "efb7e1bc76b1ce120dff6d21d11079aac7ed64b839b187b03c20bb1fc57de5f3": chat(
            tools=[{"type": "function", "function": {"name": "f"}}]
        ),
    }
    for digest, request in golden.items():
        assert "ordered_schemas" not in key_payload(request)
        assert default_digest(request) == digest


def test_explain_shows_the_ordered_schema() -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "f", "parameters": _props(["answer", "reasoning"])},
        },
        {"type": "function", "function": {"name": "g"}},
    ]
    info = explain(chat(tools=tools))
    assert info["fields"]["ordered_schemas"] == {
        "tools[].function.parameters": '[{"type":"object","properties":{"answer":{"type":"string"},'
        '"reasoning":{"type":"string"}}},null]'
    }
    payload = orjson.dumps(info["fields"], option=orjson.OPT_SORT_KEYS)
    assert info["digest"] == hashlib.sha256(payload).hexdigest()


# -- str subclasses are strings ----------------------------------------------------------


class _Role(str, enum.Enum):  # noqa: UP042 -- as LlamaIndex's MessageRole: str() is "_Role.USER"
    USER = "user"
    ASSISTANT = "assistant"


class _Text(str):
    pass


def test_str_subclasses_in_messages_are_plain_strings() -> None:
    plain = chat(messages=[{"role": "user", "content": "hi"}])
    for message in (
        {"role": _Role.USER, "content": "hi"},
        {"role": "user", "content": _Text("hi")},
        {"role": _Role.USER, "content": [{"type": "text", "text": _Text("hi")}]},
        {"role": enum.StrEnum("R", {"USER": "user"}).USER, "content": "hi"},  # type: ignore[attr-defined]
    ):
        request = chat(messages=[message])
        assert key(request) == key(plain)
        assert all(type(v) is str for v in request.messages[0].values() if isinstance(v, str))
        assert orjson.dumps(list(request.messages)) in (
            b'[{"role":"user","content":"hi"}]',
            b'[{"role":"user","content":[{"type":"text","text":"hi"}]}]',
        )


def test_str_subclasses_deeper_in_the_request_are_keyed_as_strings() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    odd = {
        "id": _Text("c1"),
        "type": "function",
        "function": {"name": "f", "arguments": _Text("{}")},
    }
    first = [
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
    ]
    second = [
        {"role": _Role.ASSISTANT, "tool_calls": [odd]},
        {"role": "tool", "tool_call_id": _Text("c1"), "content": "1"},
    ]
    assert key(chat(messages=first)) == key(chat(messages=second))
    assert key(chat(reasoning_effort="high")) == key(chat(reasoning_effort=_Text("high")))
    assert key(chat(logit_bias={"50256": -100})) == key(chat(logit_bias={_Text("50256"): -100}))
    assert key(chat(model=_Text("gpt-4o"))) == key(chat(model="gpt-4o"))


# -- provider prefixes --------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        "cohere/command-r-plus",
        "huggingface/meta-llama/Llama-3-8B",
        "azure_ai/mistral-large",
        "sagemaker/jumpstart-llama",
        "watsonx/ibm/granite-13b-chat-v2",
        "databricks/dbrx-instruct",
        "text-completion-openai/gpt-3.5-turbo-instruct",
    ],
)
def test_a_litellm_provider_deja_does_not_call_is_refused(model: str) -> None:
    with pytest.raises(InvalidRequestError, match="does not support the provider") as info:
        resolve_model(model, strict=True)  # a caller about to send it to OpenAI's endpoint
    message = str(info.value)
    assert "supported: anthropic, azure, bedrock," in message and "ollama_chat" in message
    assert f"'openai/{model}'" in message  # how to send the name as it is
    # to an endpoint the caller names (NVIDIA NIM's meta/..., OpenRouter's cohere/...) the
    # whole name goes as it is, and a cache keys it so
    assert resolve_model(model) == ("openai", model)
    assert chat(model=model, api_base="http://localhost:8000/v1").model == model


def test_unknown_prefixes_stay_part_of_the_model_name() -> None:
    assert resolve_model("meta-llama/Llama-3-8B") == ("openai", "meta-llama/Llama-3-8B")
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct") == ("openai", "Qwen/Qwen2.5-7B-Instruct")
    assert resolve_model("openai/databricks/dbrx-instruct") == (
        "openai",
        "databricks/dbrx-instruct",
    )
    assert resolve_model("hosted_vllm/cohere/x") == ("hosted_vllm", "cohere/x")
    request = chat(model="meta-llama/Llama-3-8B", api_base="http://localhost:8000/v1")
    assert request.upstream == "openai/meta-llama/Llama-3-8B"


def test_ollama_chat_is_ollama() -> None:
    assert resolve_model("ollama_chat/llama3") == ("ollama", "llama3")
    base = "http://ollama.internal:11434"
    assert key(chat(model="ollama_chat/llama3", api_base=base)) == key(
        chat(model="ollama/llama3", api_base=base)
    )


def test_an_ollama_base_without_a_path_is_its_v1_api() -> None:
    assert normalize_api_base("http://h:11434", "ollama") == "http://h:11434/v1"
    assert normalize_api_base("http://h:11434/", "ollama") == "http://h:11434/v1"
    assert normalize_api_base("http://h:11434/v1", "ollama") == "http://h:11434/v1"
    assert normalize_api_base("https://gw/ollama", "ollama") == "https://gw/ollama"
    assert normalize_api_base("http://h:11434", "openai") == "http://h:11434"
    assert key(chat(model="ollama/llama3", api_base="http://h:11434")) == key(
        chat(model="ollama/llama3", api_base="http://h:11434/v1/")
    )
    # the URL a client calls: the path added, nothing else touched (not even credentials)
    assert upstream_base("ollama", "http://h:11434") == "http://h:11434/v1"
    assert upstream_base("ollama", "http://u:p@h:11434/?a=1") == "http://u:p@h:11434/v1?a=1"
    assert upstream_base("ollama", "http://h:11434/v1/") == "http://h:11434/v1"
    assert upstream_base("ollama", "https://gw/ollama/") == "https://gw/ollama"
    assert upstream_base("openai", "http://h:8000/") == "http://h:8000"
