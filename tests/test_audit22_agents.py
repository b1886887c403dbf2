"""Audit 22, agents with tools: keys, request building and replay.

JSON-schema nulls are keyed; an agent loop's messages (deja's response objects, the SDK's
tool-call models) are sent as they are keyed; ``stop`` may be any sequence of strings;
OpenAI's prompt-cache hints split no key; a streamed choice's provider fields reach the
assembled response; a wrapped call's body fields never become Request arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

import deja
from deja.keys import (
    SCHEMA_PATHS,
    VOLATILE_PARAMS,
    default_digest,
    key_payload,
    make_key,
    scope_prefix,
)
from deja.request import Request
from deja.response import OpenAIObject
from deja.streaming import StreamAssembler
from deja.testing import FakeOpenAIServer, Reply

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
BASE = "http://up.test/v1"


def chat(**kw: Any) -> Request:
    kw.setdefault("model", "gpt-4o")
    kw.setdefault("messages", USER)
    kw.setdefault("api_base", BASE)
    return Request.chat(**kw)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as s:
        yield s


def sdk(server: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


# -- 1. nulls inside JSON schemas are constraints ------------------------------------------


def _schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city"},
            "days": {
                "anyOf": [
                    {"type": "integer", "minimum": 1.0},
                    {"type": "array", "items": {"type": "string"}},
                ]
            },
            "unit": {"enum": ["c", "f"], "default": "c"},
        },
        "required": ["city"],
        "additionalProperties": False,
    }


def _schema_bodies(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A request body for each place a schema sits (SCHEMA_PATHS, and the other spellings
    the adapters read), with ``None`` fields around the schema, which equal absent ones."""
    return {
        "response_format.json_schema.schema": {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "r", "strict": True, "description": None, "schema": schema},
            }
        },
        "response_format.schema": {"response_format": {"type": "json_object", "schema": schema}},
        "tools[].function.parameters": {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "f", "strict": None, "parameters": schema},
                },
                {"type": "function", "function": {"name": "g"}},
            ],
            "tool_choice": "auto",
        },
        "tools[].parameters": {"tools": [{"type": "function", "name": "f", "parameters": schema}]},
        "functions[].parameters": {"functions": [{"name": "f", "parameters": schema}]},
        "guided_json": {"guided_json": schema},
        "structured_outputs.json": {"structured_outputs": {"json": schema}},
        "tools[].input_schema": {
            "tools": [{"name": "f", "input_schema": schema, "cache_control": {"type": "ephemeral"}}]
        },
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
        "tools[].function_declarations[].parameters_json_schema": {
            "tools": [{"function_declarations": [{"name": "f", "parameters_json_schema": schema}]}]
        },
        "generationConfig.responseJsonSchema": {
            "generationConfig": {"responseJsonSchema": schema, "temperature": 0.0}
        },
        "generation_config.response_json_schema": {
            "generation_config": {"response_json_schema": schema}
        },
    }


# The digests of these requests before schema nulls were keyed: a schema without a null
# keeps its key (the entries stored for it keep hitting).
SCHEMA_GOLDEN = {
    "response_format.json_schema.schema": (
        "239638d1b70457534a61c302d0fd01a4c5eb54cb2978e0bd4363c1f0a67a12d0"
    ),
    "response_format.schema": "e22df13aae3ea6606b1fa9c5fb01a9b064803c1865db5fbc665bedfdaaefe9be",
    "tools[].function.parameters": (
        "22a71c4a1627d269810cfa81816d197fc684a8f8b471e59bf2b797367f4861bb"
    ),
    "tools[].parameters": "69d56e5293e78e409b44b120233583276b2e122e92e249e91e588941cb6fc64b",
    "functions[].parameters": "8b47af7b6570098d01591af9d8caac3f4a1582e76086d19985105a2503a79890",
    "guided_json": "a4c39b186d9a85ff4dfb45a4b1874b2dcdeff68f0aa4c9f7e39e3663b45a9705",
    "structured_outputs.json": "aaf5d4b4b6e55964d8ad6de678a414b3e583e50e5fa228ab8247a4d6cf84cb63",
    "tools[].input_schema": "0c91673b3dcfba0a762666265141c67e2c50560ce91713b377d38fb330c2565a",
    "output_config.format.schema": (
        "7be9dcbaf47660e5011b60d457d845211b504279cc5e0fe468997f7f2a1f1cd5"
    ),
    "tools[].toolSpec.inputSchema.json": (
        "294f070b22f9d296cf6e79d1fe3f010cea57d76aa8de52f5f3930eb9aa4f8cc9"
    ),
    "tools[].functionDeclarations[].parameters": (
        "d17271572a709f5642c62ba40219e564b8bbd591df15d379c711219f7c83b128"
    ),
    "tools[].functionDeclarations[].parametersJsonSchema": (
        "88f4d14c22fe38b9f6db037768c2556a51d893b6ef8fa7e04676f3511cf4afa6"
    ),
    "tools[].function_declarations[].parameters_json_schema": (
        "e2dd1c8be47bcdb3d2038bbbc8cf78751d52252612a502a99c8619f7fd4d89aa"
    ),
    "generationConfig.responseJsonSchema": (
        "79bcf6e4c7389b3fa34323d9389cc5fead63ebcce1e076323a5ea470b0376f4a"
    ),
    "generation_config.response_json_schema": (
        "b05433cb34adb2186ee4288959ff80ef57c66d8a7e502b27c37457eae431cf52"
    ),
}


def test_the_schema_bodies_cover_every_schema_path() -> None:
    assert set(_schema_bodies(_schema())) == set(SCHEMA_GOLDEN)
    # those two are given here in their other spellings
    assert set(SCHEMA_PATHS) - set(SCHEMA_GOLDEN) == {
        "tools[].functionDeclarations[].parameters_json_schema",
        "generationConfig.response_json_schema",
    }


@pytest.mark.parametrize("path", sorted(SCHEMA_GOLDEN))
def test_schemas_without_nulls_keep_their_keys(path: str) -> None:
    request = chat(**_schema_bodies(_schema())[path])
    assert default_digest(request) == SCHEMA_GOLDEN[path]


def _with(extra: dict[str, Any], where: str = "unit") -> dict[str, Any]:
    schema = _schema()
    schema["properties"][where] = {**schema["properties"][where], **extra}
    return schema


@pytest.mark.parametrize("path", sorted(SCHEMA_GOLDEN))
@pytest.mark.parametrize(
    "nulled",
    [
        _with({"const": None}),
        _with({"default": None}, where="city"),
        _with({"examples": [None]}, where="city"),
        _with({"anyOf": [{"type": "string"}, {"const": None}]}, where="city"),
    ],
    ids=["const", "default", "list", "nested"],
)
def test_a_null_in_a_schema_changes_the_key(path: str, nulled: dict[str, Any]) -> None:
    plain = key_payload(chat(**_schema_bodies(_schema())[path]))
    request = chat(**_schema_bodies(nulled)[path])
    assert default_digest(request) != SCHEMA_GOLDEN[path]
    # the null is in the keyed schema itself, and in its ordered copy
    assert orjson.dumps(key_payload(request)) != orjson.dumps(plain)
    assert b"null" in orjson.dumps(key_payload(request)["params"])
    assert "null" in "".join(key_payload(request)["ordered_schemas"].values())


def test_two_schemas_apart_only_by_a_null_keyword_have_two_keys() -> None:
    # the audit's case: {"const": null} is a constraint, not an absent keyword
    def tool(extra: dict[str, Any]) -> list[dict[str, Any]]:
        code = {"type": ["string", "null"], **extra}
        parameters = {"type": "object", "properties": {"code": code}}
        return [{"type": "function", "function": {"name": "f", "parameters": parameters}}]

    assert make_key(chat(tools=tool({"const": None}))) != make_key(chat(tools=tool({})))
    assert make_key(chat(tools=tool({"default": None}))) != make_key(chat(tools=tool({})))
    rf = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"const": None}}}
    assert make_key(chat(response_format=rf)) != make_key(
        chat(response_format={**rf, "json_schema": {"name": "r", "schema": {}}})
    )


def test_nulls_around_a_schema_still_equal_absent_fields() -> None:
    schema = {"type": "object", "properties": {"a": {"const": None}}}
    bare = {"type": "function", "function": {"name": "f", "parameters": schema}}
    nulls = {
        "type": "function",
        "function": {"name": "f", "description": None, "strict": None, "parameters": schema},
        "cache_control": None,
    }
    assert make_key(chat(tools=[bare])) == make_key(chat(tools=[nulls]))
    assert make_key(chat(tools=[bare])) == make_key(chat(tools=[bare], tool_choice=None))
    rf = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    rf_nulls = {
        "type": "json_schema",
        "json_schema": {"name": "r", "strict": None, "schema": schema},
    }
    assert make_key(chat(response_format=rf)) == make_key(chat(response_format=rf_nulls))


def test_a_pydantic_tool_keeps_its_schema_nulls() -> None:
    from openai.types.shared import FunctionDefinition

    schema = {"type": "object", "properties": {"a": {"type": ["string", "null"], "default": None}}}
    as_model = FunctionDefinition(name="f", parameters=schema)
    as_dict = {"name": "f", "parameters": schema}
    assert make_key(chat(functions=[as_model])) == make_key(chat(functions=[as_dict]))
    without = {
        "name": "f",
        "parameters": {**schema, "properties": {"a": {"type": ["string", "null"]}}},
    }
    assert make_key(chat(functions=[as_model])) != make_key(chat(functions=[without]))


def test_structured_output_answers_follow_their_own_schema(server: FakeOpenAIServer) -> None:
    def schema(status: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "json_schema",
            "json_schema": {
                "name": "order",
                "schema": {"type": "object", "properties": {"status": status}},
            },
        }

    client = deja.wrap(sdk(server), cache=deja.Cache())
    free = schema({"type": ["string", "null"]})
    null = schema({"type": ["string", "null"], "const": None})
    a = client.chat.completions.create(model="gpt-4o", messages=USER, response_format=free)  # type: ignore[arg-type]
    b = client.chat.completions.create(model="gpt-4o", messages=USER, response_format=null)  # type: ignore[arg-type]
    assert (deja.cache_info(a).status, deja.cache_info(b).status) == ("miss", "miss")
    assert server.count(CHAT) == 2


# -- 2. an agent loop's messages are sent as they are keyed --------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
PLAIN_LOOP = [
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


def _loop(tool_calls: Any) -> list[dict[str, Any]]:
    return [
        PLAIN_LOOP[0],
        {"role": "assistant", "content": None, "tool_calls": tool_calls},
        PLAIN_LOOP[2],
    ]


SDK_CALL = ChatCompletionMessageFunctionToolCall.model_validate(CALL)
LOOPS = {
    "deja response objects": _loop([OpenAIObject(dict(CALL))]),
    "SDK tool-call models": _loop([SDK_CALL]),
    "a tuple of SDK models": _loop((SDK_CALL,)),
}


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_agent_loop_messages_are_plain_json(name: str) -> None:
    request = chat(messages=LOOPS[name], tools=TOOLS)
    assert make_key(request) == make_key(chat(messages=PLAIN_LOOP, tools=TOOLS))
    sent = orjson.loads(orjson.dumps(list(request.messages)))  # (raised before)
    assert sent[1]["tool_calls"] == [CALL]


def test_agent_loop_messages_key_as_before() -> None:
    # the digest of this conversation before messages were made plain JSON at building
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "refusal": None, "tool_calls": [OpenAIObject(CALL)]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny.", "tool_calls": (SDK_CALL,)},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and tomorrow?", "cache_control": {"type": "ephemeral"}}
            ],
        },
    ]
    digest = "e8570c5e6bb4d96eecacf77f012d1d6fec967acbb3c7872b7134b5a957faae90"
    assert default_digest(chat(messages=messages)) == digest


@pytest.mark.parametrize("stream", [False, True])
def test_client_sends_an_agent_loop_with_response_objects(
    server: FakeOpenAIServer, stream: bool
) -> None:
    server.reply_with(
        lambda body: (
            Reply(tool_calls=[{"function": {"name": "get_weather", "arguments": "{}"}}])
            if body["messages"][-1]["role"] == "user"
            else Reply("Sunny.")
        )
    )
    client = deja.Client(cache=deja.Cache(), api_key="sk", api_base=server.base_url)
    first = client.completion(model="gpt-4o", messages=PLAIN_LOOP[:1], tools=TOOLS)
    message = first.choices[0].message
    call = message.tool_calls[0]
    loop = [
        PLAIN_LOOP[0],
        # the usual agent loop: the answer's fields put back as they came
        {"role": "assistant", "content": message.content, "tool_calls": message.tool_calls},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    answer = client.completion(model="gpt-4o", messages=loop, tools=TOOLS, stream=stream)
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in answer if c.choices) == "Sunny."
    else:
        assert answer.choices[0].message.content == "Sunny."
    sent = server.requests[-1].body["messages"][1]
    assert sent == {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]}
    # the same conversation given as plain dicts is the same request
    plain = [loop[0], {**loop[1], "tool_calls": [call.model_dump()]}, loop[2]]
    again = client.completion(model="gpt-4o", messages=plain, tools=TOOLS)
    assert again.cache.status == "hit"
    models = [SDK_CALL.model_validate(call.model_dump())]  # the SDK's own tool-call objects
    sdk_loop = [loop[0], {**loop[1], "tool_calls": models}, loop[2]]
    refreshed = client.completion(
        model="gpt-4o", messages=sdk_loop, tools=TOOLS, cache={"no-cache": True}
    )
    assert refreshed.cache.key == again.cache.key
    assert server.requests[-1].body["messages"][1]["tool_calls"] == [call.model_dump()]


def test_a_message_nested_too_deeply_is_an_invalid_request() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(deja.InvalidRequestError, match="nested too deeply"):
        make_key(chat(messages=[{"role": "user", "content": "q", "extra": deep}]))


# -- 3. stop is any sequence of strings ----------------------------------------------------


def test_stop_may_be_a_tuple_and_is_keyed_as_the_list() -> None:
    request = chat(stop=("END", "STOP"))
    assert request.params["stop"] == ["END", "STOP"]
    assert type(request.params["stop"]) is list
    assert make_key(request) == make_key(chat(stop=["END", "STOP"]))
    body = {"model": "gpt-4o", "messages": USER, "stop": ("END",)}
    assert Request.from_body(body).params["stop"] == ["END"]
    with pytest.raises(deja.InvalidRequestError):
        chat(stop=("END", 1))
    with pytest.raises(deja.InvalidRequestError):
        chat(stop=b"END")


def test_wrap_and_client_take_a_stop_tuple(server: FakeOpenAIServer) -> None:
    wrapped = deja.wrap(sdk(server), cache=deja.Cache())
    a = wrapped.chat.completions.create(model="gpt-4o", messages=USER, stop=("END", "STOP"))  # type: ignore[arg-type]
    assert server.requests[-1].body["stop"] == ["END", "STOP"]
    b = wrapped.chat.completions.create(model="gpt-4o", messages=USER, stop=["END", "STOP"])  # type: ignore[arg-type]
    assert deja.cache_info(b).key == deja.cache_info(a).key
    assert deja.cache_info(b).status == "hit"
    client = deja.Client(cache=deja.Cache(), api_key="sk", api_base=server.base_url)
    client.completion(model="gpt-4o", messages=USER, stop=("END", "STOP"))
    assert server.requests[-1].body["stop"] == ["END", "STOP"]
    assert client.completion(model="gpt-4o", messages=USER, stop=["END", "STOP"]).cache.status == (
        "hit"
    )


# -- 4. OpenAI's prompt-cache hints --------------------------------------------------------


def test_prompt_cache_hints_split_no_key() -> None:
    assert "prompt_cache_options" in VOLATILE_PARAMS
    system = {"role": "system", "content": "long system prompt"}
    plain = make_key(chat(messages=[system, *USER]))
    options = {"mode": "explicit", "ttl": "30m"}
    assert make_key(chat(messages=[system, *USER], prompt_cache_options=options)) == plain
    part = {"type": "text", "text": "long system prompt"}
    marked = {**part, "prompt_cache_breakpoint": {"mode": "explicit", "ttl": "30m"}}
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    for parts, bare in (([marked], [part]), ([marked, image], [part, image])):
        request = chat(messages=[{"role": "system", "content": parts}, *USER])
        assert make_key(request) == make_key(
            chat(messages=[{"role": "system", "content": bare}, *USER])
        )
    assert make_key(chat(messages=[{"role": "system", "content": [marked]}, *USER])) == plain


def test_prompt_cache_hints_are_still_sent(server: FakeOpenAIServer) -> None:
    options = {"mode": "explicit", "ttl": "30m"}
    breakpoint_ = {"mode": "explicit"}
    part = {"type": "text", "text": "long system prompt", "prompt_cache_breakpoint": breakpoint_}
    messages = [{"role": "system", "content": [part]}, *USER]
    client = deja.Client(cache=deja.Cache(), api_key="sk", api_base=server.base_url)
    client.completion(model="gpt-4o", messages=messages, prompt_cache_options=options)
    body = server.requests[-1].body
    assert body["prompt_cache_options"] == options
    assert body["messages"][0]["content"][0]["prompt_cache_breakpoint"] == breakpoint_
    wrapped = deja.wrap(sdk(server), cache=deja.Cache())
    wrapped.chat.completions.create(
        model="gpt-4o",
        messages=messages,  # type: ignore[arg-type]
        prompt_cache_options=options,  # type: ignore[arg-type]
    )
    body = server.requests[-1].body
    assert body["prompt_cache_options"] == options
    assert body["messages"][0]["content"][0]["prompt_cache_breakpoint"] == breakpoint_
    assert server.count(CHAT) == 2


# -- 5. a streamed choice's provider fields ------------------------------------------------

_HEAD = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
_FILTER = {"hate": {"filtered": False, "severity": "safe"}}


def _azure_chunks() -> list[dict[str, Any]]:
    results = [{"prompt_index": 0, "content_filter_results": _FILTER}]
    return [
        {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "choices": [],
            "prompt_filter_results": results,
        },
        {
            **_HEAD,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "finish_reason": None,
                    "content_filter_results": {},
                    "stop_reason": None,
                }
            ],
        },
        {
            **_HEAD,
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": "Hi"},
                    "finish_reason": None,
                    "content_filter_results": _FILTER,
                    "stop_reason": None,
                }
            ],
        },
        {
            **_HEAD,
            "choices": [
                {
                    "index": 0,
                    "delta": {},
                    "finish_reason": "stop",
                    "content_filter_results": {},
                    "stop_reason": None,
                }
            ],
        },
    ]


def test_assembled_choices_keep_provider_fields() -> None:
    assembler = StreamAssembler()
    for chunk in _azure_chunks():
        assembler.add(chunk)
    choice = assembler.response()["choices"][0]
    assert choice["content_filter_results"] == _FILTER  # the one that said something
    assert "stop_reason" in choice and choice["stop_reason"] is None  # as non-stream has it
    assert choice["message"] == {"role": "assistant", "content": "Hi"}
    assert choice["finish_reason"] == "stop"
    choice["content_filter_results"]["hate"]["filtered"] = True  # a fresh copy each time
    assert assembler.response()["choices"][0]["content_filter_results"] == _FILTER


def test_a_provider_field_never_replaces_the_assembled_message() -> None:
    assembler = StreamAssembler()
    chunk = {**_HEAD, "choices": [{"index": 0, "delta": {"content": "Hi"}, "message": "junk"}]}
    assembler.add(chunk)
    assembler.add({**_HEAD, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert assembler.response()["choices"][0]["message"] == {"role": "assistant", "content": "Hi"}


def test_a_non_stream_hit_of_a_stream_has_the_choice_fields() -> None:
    cache = deja.Cache()
    request = chat()
    stream = cache.stream(request, lambda: iter(_azure_chunks()))
    assert [c["choices"] for c in stream][2][0]["content_filter_results"] == _FILTER
    hit = cache.get(request)
    assert hit.info.status == "hit" and hit.response is not None
    assert hit.response["choices"][0]["content_filter_results"] == _FILTER


# -- 6. a wrapped call's body fields are request fields ------------------------------------


def test_wrap_body_fields_named_like_request_arguments(server: FakeOpenAIServer) -> None:
    client = deja.wrap(sdk(server), cache=deja.Cache())

    def create(**extra_body: Any) -> Any:
        return client.chat.completions.create(model="gpt-4o", messages=USER, extra_body=extra_body)  # type: ignore[arg-type]

    plain = deja.cache_info(create())
    # (a TypeError before) a body field, volatile as in a proxy's body: the same key, and
    # sent upstream as written when the call goes there
    base = deja.cache_info(create(api_base="http://elsewhere.test/v1"))
    assert (base.status, base.key) == ("hit", plain.key)
    create(api_base="http://elsewhere.test/v1", cache={"no-cache": True})
    assert server.requests[-1].body["api_base"] == "http://elsewhere.test/v1"
    tenant = create(tenant="acme")
    assert server.requests[-1].body["tenant"] == "acme"
    info = deja.cache_info(tenant)
    assert info.status == "miss"  # a request field, keyed ...
    assert info.key.startswith(scope_prefix("deja:", None, None))  # ... never the cache scope
    assert plain.key.startswith(scope_prefix("deja:", None, None))
    assert deja.cache_info(create(tenant="")).status == "miss"  # a field, not a bad tenant
    assert deja.cache_info(create(tenant="acme")).status == "hit"
    assert server.count(CHAT) == 4


def test_client_body_fields_named_like_request_arguments(server: FakeOpenAIServer) -> None:
    """deja.Client reads its body as the proxy and wrap do: ``tenant`` and ``api_base``
    in ``extra_body`` are fields to send (a TypeError, and a cache scope, before)."""
    client = deja.Client(cache=deja.Cache(), api_key="sk", api_base=server.base_url)
    plain = client.completion(model="gpt-4o", messages=USER)
    elsewhere = client.completion(
        model="gpt-4o", messages=USER, extra_body={"api_base": "http://elsewhere.test/v1"}
    )
    assert (elsewhere.cache.status, elsewhere.cache.key) == ("hit", plain.cache.key)
    tenant = client.completion(model="gpt-4o", messages=USER, extra_body={"tenant": "acme"})
    assert server.requests[-1].body["tenant"] == "acme"
    assert tenant.cache.status == "miss"
    assert tenant.cache.key.startswith(scope_prefix("deja:", None, None))
    key = client.cache.key_for(
        model="gpt-4o", messages=USER, api_base=server.base_url, extra_body={"tenant": "acme"}
    )
    assert key == tenant.cache.key
