"""Body shapes no API deja calls takes are refused where a request is built (deja.request),
for the proxy and the library alike: an InvalidRequestError naming the field, never a
request forwarded to an upstream lenient enough to answer it (and deja to cache that), nor
one that fails inside a provider's translation. Every shape some provider takes stays
taken: the native tools deja sends as written, llama.cpp's logit_bias pairs, LM Studio's
``max_tokens: -1``..."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import pytest

import deja
from deja.config import parse_config
from deja.errors import ConfigError, InvalidRequestError
from deja.keys import default_digest
from deja.request import Request
from deja.testing import FakeOpenAIServer, Reply

USER = {"role": "user", "content": "What is the capital of France?"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
FUNCTION_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.fixture(autouse=True)
def no_ambient_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # "gpt-4o" with no api_base is OpenAI's own API: the environment must not move it
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [USER], **extra}


def refused(request_body: dict[str, Any], **kwargs: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        Request.from_body(request_body, **kwargs)
    return caught.value


# ----------------------------------------------------------------------------- fields

WRONG_EVERYWHERE = [
    ({"tools": 5}, "tools", r"tools must be a list of tool objects, got 5"),
    ({"tools": "get_weather"}, "tools", r"tools must be a list of tool objects"),
    ({"tools": FUNCTION_TOOL}, "tools", r"tools must be a list of tool objects"),
    ({"tools": [5]}, "tools[0]", r"tools\[0\] must be an object, got 5"),
    ({"tools": [FUNCTION_TOOL, "f"]}, "tools[1]", r"tools\[1\] must be an object"),
    ({"tools": [{"type": "function"}]}, "tools[0].function", r"tools\[0\] is a function tool"),
    (
        {"tools": [{"type": "function", "function": {"parameters": {}}}]},
        "tools[0].function",
        r"its 'function' must be an object with a string 'name'",
    ),
    (
        {"tools": [{"type": "function", "function": "f"}]},
        "tools[0].function",
        r"'function' must be an object",
    ),
    ({"tool_choice": 5}, "tool_choice", r"tool_choice must be a string or an object, got 5"),
    ({"tool_choice": ["auto"]}, "tool_choice", r"tool_choice must be a string or an object"),
    ({"response_format": 5}, "response_format", r"response_format must be an object"),
    ({"response_format": "json_object"}, "response_format", r"response_format must be an"),
    ({"response_format": {}}, "response_format.type", r"with a string 'type'"),
    ({"response_format": {"type": 5}}, "response_format.type", r"with a string 'type'"),
    ({"logit_bias": "x"}, "logit_bias", r"logit_bias must be an object of token ids to numbers"),
    ({"logit_bias": 5}, "logit_bias", r"logit_bias must be an object"),
    ({"logit_bias": {"1": "x"}}, "logit_bias", r"logit_bias must map tokens to numbers"),
    ({"logit_bias": {"1": True}}, "logit_bias", r"logit_bias must map tokens to numbers"),
    ({"logit_bias": [[1, "x"]]}, "logit_bias", r"logit_bias must be an object"),
    ({"functions": 5}, "functions", r"functions must be a list of function objects"),
    ({"functions": [{"parameters": {}}]}, "functions[0]", r"with a string 'name'"),
    ({"function_call": 5}, "function_call", r"function_call must be a string or an object"),
    ({"n": 0}, "n", r"n must be an integer >= 1, got 0"),
    ({"n": -3}, "n", r"n must be an integer >= 1, got -3"),
    ({"top_p": 7}, "top_p", r"top_p must be a number from 0 to 1, got 7"),
    ({"top_p": -0.1}, "top_p", r"top_p must be a number from 0 to 1, got -0.1"),
]


@pytest.mark.parametrize(("extra", "param", "message"), WRONG_EVERYWHERE)
def test_a_shape_no_api_takes_is_refused_naming_the_field(
    extra: dict[str, Any], param: str, message: str
) -> None:
    # whatever the endpoint: OpenAI's own, and an OpenAI-compatible server of any kind
    for api_base in (None, "http://localhost:8000/v1"):
        error = refused(body(**extra), api_base=api_base)
        assert error.param == param
        assert str(error).startswith(re.split(r"[\[.]", param, maxsplit=1)[0])
        with pytest.raises(InvalidRequestError, match=message):
            Request.chat(model="gpt-4o", messages=[USER], api_base=api_base, **extra)


def test_the_library_refuses_them_before_any_call() -> None:
    with FakeOpenAIServer() as server:
        with deja.Client(api_key="sk-test", api_base=server.base_url, max_retries=0) as client:
            with pytest.raises(InvalidRequestError, match=r"tools must be a list") as caught:
                client.completion(model="gpt-4o", messages=[USER], tools=5)
            with pytest.raises(InvalidRequestError, match=r"messages\[0\]\.content is required"):
                client.completion(model="gpt-4o", messages=[{"role": "user"}])
        assert server.requests == []
    assert caught.value.param == "tools"


def test_the_legacy_completions_share_the_checks_that_apply_to_them() -> None:
    prompt = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}
    for extra, param in (({"n": 0}, "n"), ({"logit_bias": "x"}, "logit_bias")):
        assert refused({**prompt, **extra}, kind="completion").param == param
    # its max_tokens may be 0 (the prompt echoed alone), not below
    Request.from_body({**prompt, "max_tokens": 0, "echo": True}, kind="completion")
    assert refused({**prompt, "max_tokens": -1}, kind="completion").param == "max_tokens"


def test_an_embeddings_dimensions_is_an_integer_of_at_least_one() -> None:
    embedding = {"model": "text-embedding-3-small", "input": "hello"}
    Request.from_body({**embedding, "dimensions": 256}, kind="embedding")
    for wrong in (0, -1, "256", True, 2.5):
        error = refused({**embedding, "dimensions": wrong}, kind="embedding")
        assert error.param == "dimensions"
        assert str(error).startswith("dimensions must be an integer >= 1")


# ------------------------------------------------------------- bounds some APIs hold

BOUNDED = [
    ({"max_tokens": -1}, "max_tokens", r"max_tokens must be an integer >= 1, got -1"),
    ({"max_tokens": 0}, "max_tokens", r"max_tokens must be an integer >= 1, got 0"),
    ({"max_completion_tokens": 0}, "max_completion_tokens", r"must be an integer >= 1, got 0"),
    ({"temperature": -1}, "temperature", r"temperature must be a number >= 0, got -1"),
    ({"top_logprobs": -1, "logprobs": True}, "top_logprobs", r"must be an integer >= 0, got -1"),
]
KNOWN_APIS = [
    ("gpt-4o", None),  # OpenAI's own
    ("openai/gpt-4o", "https://API.openai.com/v1/"),
    ("azure/my-gpt-4o", "https://acme.openai.azure.com"),
    ("anthropic/claude-sonnet-4-5", None),
    ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", "https://bedrock.example"),
    ("gemini/gemini-2.5-flash", None),
    ("vertex_ai/gemini-2.5-flash", "https://vertex.example"),
]


@pytest.mark.parametrize(("model", "api_base"), KNOWN_APIS)
@pytest.mark.parametrize(("extra", "param", "message"), BOUNDED)
def test_a_value_below_a_known_apis_floor_is_refused(
    model: str, api_base: str | None, extra: dict[str, Any], param: str, message: str
) -> None:
    error = refused({**body(**extra), "model": model}, api_base=api_base)
    assert error.param == param
    with pytest.raises(InvalidRequestError, match=message):
        Request.chat(model=model, messages=[USER], api_base=api_base, **extra)


@pytest.mark.parametrize(
    ("model", "api_base"),
    [
        ("lm_studio/qwen3-8b", None),  # its own examples send max_tokens -1 (no limit)
        ("llamacpp/llama-3", "http://localhost:8080"),  # 0: the prompt only; -1: no limit
        ("hosted_vllm/meta-llama/Llama-3-8B", "http://gpu:8000/v1"),  # top_logprobs -1
        ("openai/local", "http://localhost:1234/v1"),
    ],
)
@pytest.mark.parametrize(("extra", "param", "message"), BOUNDED)
def test_other_openai_compatible_servers_judge_those_bounds_themselves(
    model: str, api_base: str | None, extra: dict[str, Any], param: str, message: str
) -> None:
    request = Request.from_body({**body(**extra), "model": model}, api_base=api_base)
    assert default_digest(request)  # keyed as it is sent
    assert {name: request.params[name] for name in extra} == extra, (param, message)
    Request.chat(model=model, messages=[USER], api_base=api_base, **extra)


def test_a_tool_message_naming_its_tool_is_a_local_servers_to_judge() -> None:
    """llama.cpp and Ollama read a tool message's tool_call_id as optional (their loops
    send the tool's name): refused only for the APIs whose rules deja knows."""
    messages = [USER, {"role": "tool", "name": "get_weather", "content": "12C"}]
    local = Request.chat(model="openai/llama3", messages=messages, api_base="http://127.0.0.1:8080")
    assert local.messages[1]["name"] == "get_weather"
    with pytest.raises(InvalidRequestError, match=r"tool_call_id is required"):
        Request.chat(model="gpt-4o", messages=messages)


def test_tool_calls_may_be_any_sequence_as_the_sdk_types_them() -> None:
    """A tuple of tool calls (the SDK's Iterable) was refused; it keys as the list does."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    reply = {"role": "tool", "tool_call_id": "call_1", "content": "42"}

    def conversation(calls: Any) -> Request:
        assistant = {"role": "assistant", "content": None, "tool_calls": calls}
        return Request.chat(model="gpt-4o", messages=[USER, assistant, reply])

    assert default_digest(conversation((call,))) == default_digest(conversation([call]))


# ------------------------------------------------------------------------- messages

WRONG_MESSAGES = [
    ([{"role": "user"}], "messages[0].content", r"messages\[0\]\.content is required in a user"),
    ([{"role": "user", "content": None}], "messages[0].content", r"is required in a user"),
    ([{"role": "user", "content": []}], "messages[0].content", r"must not be an empty list"),
    ([{"role": "system"}, USER], "messages[0].content", r"is required in a system message"),
    ([{"role": "developer"}, USER], "messages[0].content", r"is required in a developer"),
    (
        [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}, {"role": "tool"}],
        "messages[2].tool_call_id",
        r"messages\[2\]\.tool_call_id is required",
    ),
    (  # {role, content: str}: the messages' fast path
        [USER, {"role": "tool", "content": "42"}],
        "messages[1].tool_call_id",
        r"messages\[1\]\.tool_call_id is required: a tool message answers the tool call",
    ),
    (
        [USER, {"role": "tool", "tool_call_id": 5, "content": "42"}],
        "messages[1].tool_call_id",
        r"messages\[1\]\.tool_call_id must be a string, got 5",
    ),
    (
        [USER, {"role": "tool", "tool_call_id": "call_1"}],
        "messages[1].content",
        r"messages\[1\]\.content is required in a tool message",
    ),
    (
        [USER, {"role": "assistant"}, USER],
        "messages[1].content",
        r"messages\[1\] is an assistant message with nothing in it",
    ),
    (
        [USER, {"role": "assistant", "content": None, "tool_calls": []}, USER],
        "messages[1].content",
        r"is an assistant message with nothing in it",
    ),
    (
        [USER, {"role": "assistant", "content": None, "tool_calls": "f"}],
        "messages[1].tool_calls",
        r"messages\[1\]\.tool_calls must be a list of tool call objects",
    ),
    (
        [USER, {"role": "assistant", "content": None, "tool_calls": [5]}],
        "messages[1].tool_calls",
        r"messages\[1\]\.tool_calls must be a list of tool call objects",
    ),
]


@pytest.mark.parametrize(("messages", "param", "message"), WRONG_MESSAGES)
def test_a_message_no_api_takes_is_refused_naming_the_field(
    messages: list[dict[str, Any]], param: str, message: str
) -> None:
    error = refused(body(messages=messages))
    assert error.param == param
    with pytest.raises(InvalidRequestError, match=message):
        Request.chat(model="gpt-4o", messages=messages)


def test_an_empty_role_still_names_the_role() -> None:
    # (it took the fast path's own check before, with the same words)
    error = refused(body(messages=[{"role": "", "content": "x"}]))
    assert error.param == "messages[0].role"
    assert str(error) == "messages[0].role must be a non-empty string"


def test_a_pydantic_tool_message_is_checked_as_it_dumps() -> None:
    from pydantic import BaseModel

    class ToolMessage(BaseModel):
        role: str = "tool"
        content: str = "42"
        tool_call_id: str | None = None

    error = refused(body(messages=[USER, ToolMessage()]))
    assert error.param == "messages[1].tool_call_id"
    Request.from_body(body(messages=[USER, ToolMessage(tool_call_id="call_1")]))


# ------------------------------------------------------------ what stays accepted

ACCEPTED_FIELDS = [
    {"tools": [FUNCTION_TOOL], "tool_choice": "auto"},
    {"tools": (FUNCTION_TOOL,)},  # any sequence, as the SDK types it
    {"tools": []},  # (Anthropic and vLLM take none)
    {"tools": [{"type": "function", "name": "f", "parameters": {}}]},  # the flat form
    {"tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}]},
    {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]},
    {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}, {"cachePoint": {}}]},
    {"tools": [{"functionDeclarations": [{"name": "f", "parameters": {}}]}, {"googleSearch": {}}]},
    {"tool_choice": {"type": "function", "function": {"name": "f"}}, "tools": [FUNCTION_TOOL]},
    {"tool_choice": {"type": "tool", "name": "f"}},  # Anthropic's
    {"tool_choice": {"auto": {}}},  # Bedrock's
    {"tool_choice": "any"},
    {"functions": [{"name": "f", "parameters": {}}], "function_call": "auto"},  # deprecated
    {"functions": [{"name": "f"}], "function_call": {"name": "f"}},
    {"response_format": {"type": "json_object"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
    {"response_format": {"type": "json_object", "schema": {"type": "object"}}},  # Together's
    {"response_format": {"type": "grammar", "grammar": "root ::= 'a'"}},  # Fireworks'
    {"logit_bias": {"50256": -100, "1": 2.5}},
    {"logit_bias": {"Hello": -0.5, "15043": False}},  # llama.cpp: text, and false = never
    {"logit_bias": [[15043, 1.0], ["Hello", False]]},  # llama.cpp's own form
    {"logit_bias": {}},
    {"n": 2, "top_p": 0, "max_tokens": 1, "temperature": 0, "top_logprobs": 0, "logprobs": True},
    {"top_p": 1.0, "temperature": 2.5},  # (no upper bound every API holds)
]


@pytest.mark.parametrize("extra", ACCEPTED_FIELDS)
def test_every_shape_some_api_takes_stays_taken(extra: dict[str, Any]) -> None:
    # (guards: these passed before the checks too, and must still)
    for model in ("gpt-4o", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"):
        assert default_digest(Request.from_body({**body(**extra), "model": model}))
    Request.chat(model="gpt-4o", messages=[USER], **extra)


def test_int_keys_and_sdk_objects_are_taken_in_the_library() -> None:
    from pydantic import BaseModel

    class Function(BaseModel):
        name: str
        parameters: dict[str, Any]

    class Tool(BaseModel):
        type: str = "function"
        function: Function

    tool = Tool(function=Function(name="f", parameters={"type": "object"}))
    request = Request.chat(
        model="gpt-4o",
        messages=[USER],
        logit_bias={50256: -100},  # a Python caller's token ids
        tools=[tool, {"type": "function", "function": Function(name="g", parameters={})}],
        tool_choice="required",
    )
    assert default_digest(request)


ACCEPTED_MESSAGES = [
    [USER, {"role": "assistant", "content": None, "tool_calls": [CALL]}],
    [USER, {"role": "assistant", "tool_calls": [CALL]}],
    [USER, {"role": "assistant", "content": None, "refusal": "I can't."}, USER],
    [USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}],
    [USER, {"role": "assistant", "audio": {"id": "audio_1"}}, USER],  # OpenAI's audio turn
    [USER, {"role": "assistant", "reasoning_content": "Hmm."}, USER],  # deja's own answer
    [USER, {"role": "assistant", "content": ""}, USER],
    [USER, {"role": "assistant", "content": "", "tool_calls": [CALL]}],
    [
        USER,
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": ""},
    ],
    [
        USER,
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "4"}]},
    ],
    [{"role": "user", "content": ""}],
    [{"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Hi."}, USER],
    [{"role": "ipython", "content": "42"}, USER],  # a server's own role: its to judge
    [{"role": "function", "name": "f", "content": "42"}, USER],
]


@pytest.mark.parametrize("messages", ACCEPTED_MESSAGES)
def test_every_message_some_api_takes_stays_taken(messages: list[dict[str, Any]]) -> None:
    # (guards: these passed before the checks too, and must still)
    assert default_digest(Request.from_body(body(messages=messages)))
    Request.chat(model="gpt-4o", messages=messages)


# ----------------------------------------------------------- a pydantic response_format


def test_a_pydantic_class_as_response_format_is_left_to_the_key_and_the_wrapper() -> None:
    from pydantic import BaseModel

    class CalendarEvent(BaseModel):
        name: str

    # not a shape error: the key says what to pass instead (deja.keys)
    request = Request.chat(model="gpt-4o", messages=[USER], response_format=CalendarEvent)
    with pytest.raises(InvalidRequestError, match=r"response_format is a class \(CalendarEvent\)"):
        default_digest(request)
    # and the wrapped SDK's parse() sends its JSON schema, cached as create() with it
    openai = pytest.importorskip("openai")
    with FakeOpenAIServer() as server:
        server.queue_reply(Reply('{"name": "Lunch"}'))
        sdk = openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        wrapped = deja.wrap(sdk, cache=deja.Cache())
        for _ in range(2):
            answer = wrapped.chat.completions.parse(
                model="gpt-4o", messages=[USER], response_format=CalendarEvent
            )
            assert answer.choices[0].message.parsed == CalendarEvent(name="Lunch")
        assert len(server.requests) == 1
        assert server.requests[0].body["response_format"]["type"] == "json_schema"


# -------------------------------------------------------------------- the error


def test_the_error_keeps_its_param_across_processes() -> None:
    error = refused(body(tools=5))
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.param) == (str(error), "tools")
    assert InvalidRequestError("x").param is None


def test_a_deployment_default_of_a_shape_no_api_takes_is_a_config_error(tmp_path: Path) -> None:
    # every request of the model would have been refused for it, blaming the caller
    for default, said in (({"n": 0}, "n must be"), ({"tools": 5}, "tools must be")):
        config = {
            "model_list": [
                {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", **default}}
            ]
        }
        with pytest.raises(ConfigError, match=said):
            parse_config(config, base_dir=tmp_path)


def test_numbers_past_a_floats_range_numpy_numbers_and_whole_floats() -> None:
    """logit_bias 10**400 escaped as an OverflowError; numpy's int64 was refused; an
    embeddings dimensions of 256.0 was refused where max_tokens 256.0 is taken."""
    import numpy as np

    with pytest.raises(InvalidRequestError, match=r"logit_bias must map tokens to numbers"):
        Request.chat(model="gpt-4o", messages=[USER], logit_bias={"1": 10**400})
    Request.chat(model="gpt-4o", messages=[USER], logit_bias={"1": np.int64(-100)})
    embedding = {"model": "text-embedding-3-small", "input": "x", "dimensions": 256.0}
    Request.from_body(embedding, kind="embedding")
    with pytest.raises(InvalidRequestError, match=r"dimensions must be an integer >= 1"):
        Request.from_body({**embedding, "dimensions": 0.5}, kind="embedding")


@pytest.mark.parametrize("value", [5, None, [], [[]], ["a", 5], {"a": 1}, [1.5], [[1, "x"]], True])
def test_a_hand_built_embeddings_request_checks_its_input(value: Any) -> None:
    """Request.from_body(kind="embedding") took any input (the clients and the proxy check
    theirs), and keyed it."""
    with pytest.raises(InvalidRequestError, match=r"input must be a string") as info:
        Request.from_body({"model": "text-embedding-3-small", "input": value}, kind="embedding")
    assert info.value.param == "input"


@pytest.mark.parametrize("value", ["", "text", ["a", "b"], [1, 2], (1, 2), [[1], [2, 3]]])
def test_every_input_shape_openai_takes_is_taken(value: Any) -> None:
    Request.from_body({"model": "text-embedding-3-small", "input": value}, kind="embedding")


# ------------------------------------------------------------ a Request built by hand

PLAIN = {"provider": "openai", "model": "gpt-4o", "api_base": None, "messages": (USER,)}


@pytest.mark.parametrize(
    ("fields", "param", "said"),
    [
        ({"messages": (5,)}, "messages[0]", r"messages\[0\] must be an object"),
        ({"messages": "hi"}, "messages", r"messages must be a list"),
        ({"messages": ()}, "messages", r"at least one message"),
        ({"messages": ({"content": "hi"},)}, "messages[0].role", r"role must be a non-empty"),
        ({"params": 5}, "params", r"params must be an object of body fields"),
        ({"params": {1: 2}}, "params", r"params must be an object of body fields"),
        ({"params": {"temperature": "hot"}}, "temperature", r"temperature must be a number"),
        ({"params": {"tools": 5}}, "tools", r"tools must be a list"),
        ({"model": 5}, "model", r"model must be a non-empty string"),
        ({"model": " "}, "model", r"model must be a non-empty string"),
        ({"provider": "cohere"}, "provider", r"provider must be one deja calls"),
        ({"provider": None}, "provider", r"provider must be one deja calls"),
        ({"kind": "chat-completion"}, "kind", r"kind must be 'chat', 'completion'"),
        ({"api_base": "ftp://host"}, None, r"api_base must be an http\(s\) URL"),
        ({"api_base": 5}, None, r"api_base must be a non-empty URL"),
        ({"api_base": ""}, None, r"api_base must be a non-empty URL"),
        ({"tenant": ""}, None, r"tenant must be a non-empty string"),
        # a completion's prompt and an embedding's input are params; they have no messages
        ({"kind": "embedding"}, "messages", r"embedding requests have no messages"),
        ({"kind": "embedding", "messages": ()}, "input", r"'input' is required"),
        ({"kind": "completion", "messages": []}, "prompt", r"'prompt' is required"),
        (
            {"kind": "embedding", "messages": (), "params": {"input": [1, "a"]}},
            "input",
            r"input must be a string",
        ),
    ],
)
def test_a_request_built_with_the_constructor_is_checked_there(
    fields: dict[str, Any], param: str | None, said: str
) -> None:
    """Request(messages=(5,)) was taken, and failed deep in the key (AttributeError: 'int'
    object has no attribute 'items'); a wrong provider, model, kind or param type was
    keyed and cached."""
    with pytest.raises(InvalidRequestError, match=said) as caught:
        Request(**{**PLAIN, **fields})
    assert caught.value.param == param


def test_dataclasses_replace_checks_what_it_changes() -> None:
    import dataclasses

    request = Request.chat(model="gpt-4o", messages=[USER])
    with pytest.raises(InvalidRequestError, match=r"messages\[0\] must be an object"):
        dataclasses.replace(request, messages=(5,))
    with pytest.raises(InvalidRequestError, match=r"n must be an integer >= 1"):
        dataclasses.replace(request, params={"n": 0})
    changed = dataclasses.replace(request, params={"temperature": 0})
    assert changed.params == {"temperature": 0} and changed.plain_messages


def test_a_hand_built_request_is_normalized_and_keyed_as_the_same_request_built_for_it() -> None:
    """What the constructor takes it normalizes as chat and from_body do: the key of a
    hand-built request is that of the request they build."""

    class Role(str):
        pass

    built = Request.chat(
        model="ollama/llama3", messages=[USER], api_base="http://LOCALHOST:11434/", stop=("x",)
    )
    given = (dict(USER, role=Role("user")),)
    params = {"stop": ("x",)}
    hand = Request(
        provider="ollama_chat",
        model="llama3",
        api_base="http://localhost:11434",
        messages=given,  # type: ignore[arg-type]
        params=params,
    )
    assert (hand.provider, hand.api_base) == ("ollama", built.api_base)
    assert hand.params == {"stop": ["x"]}
    assert type(hand.messages[0]["role"]) is str and hand.messages[0] == USER
    assert params == {"stop": ("x",)}  # (the caller's dict is left as it was)
    assert default_digest(hand) == default_digest(built)
    embedding = Request(
        provider="openai",
        model="text-embedding-3-small",
        api_base="https://api.openai.com/v1",
        messages=(),
        params={"input": "x"},
        kind="embedding",
    )
    made = Request.from_body({"model": "text-embedding-3-small", "input": "x"}, kind="embedding")
    assert default_digest(embedding) == default_digest(made)


def test_from_body_refuses_a_kind_it_does_not_build() -> None:
    with pytest.raises(InvalidRequestError, match=r"kind must be") as caught:
        Request.from_body({"model": "gpt-4o", "input": "x"}, kind="embeddings")  # type: ignore[arg-type]
    assert caught.value.param == "kind"


@pytest.mark.parametrize("encoding", ["bogus", "", "Float", 5, ["float"]])
def test_a_hand_built_embeddings_request_checks_its_encoding_format(encoding: Any) -> None:
    """The clients and the proxy checked encoding_format, each its own way; a hand-built
    Request.from_body(kind="embedding") took any, and keyed it."""
    body = {"model": "text-embedding-3-small", "input": "x", "encoding_format": encoding}
    assert refused(body, kind="embedding").param == "encoding_format"
    with pytest.raises(InvalidRequestError, match=r"encoding_format must be 'float' or 'base64'"):
        deja.Client(api_key="sk-test").embedding(
            model="text-embedding-3-small", input="x", encoding_format=encoding
        )


@pytest.mark.parametrize("encoding", ["float", "base64", None])
def test_the_encoding_formats_openai_takes_are_taken(encoding: Any) -> None:
    body = {"model": "text-embedding-3-small", "input": "x", "encoding_format": encoding}
    Request.from_body(body, kind="embedding")


def test_a_hand_built_request_without_api_base_keys_as_chat_with_the_environments_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Request.chat reads OPENAI_BASE_URL when given no api_base; a hand-built Request with
    api_base=None kept None, so the two keyed apart and never hit each other's entries."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://LLM.internal:8000/v1/")
    built = Request.chat(model="gpt-4o", messages=[USER])
    hand = Request(provider="openai", model="gpt-4o", api_base=None, messages=(USER,))
    assert hand.api_base == built.api_base == "http://llm.internal:8000/v1"
    assert default_digest(hand) == default_digest(built)


def test_the_fast_constructor_sets_every_field() -> None:
    """Request._checked (what chat and from_body build with) assigns each field by hand: a
    field added to Request and forgotten there is unset (an AttributeError on reading it)."""
    import dataclasses

    built = Request.chat(model="gpt-4o", messages=[USER])
    for each in dataclasses.fields(Request):
        getattr(built, each.name)  # (raises for a slot never assigned)
    assert {each.name for each in dataclasses.fields(Request)} == set(Request.__slots__)
