"""The Gemini adapter: OpenAI requests → generateContent, answers → OpenAI, context-cache plans."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from deja.errors import (
    BadRequestError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitError,
    ServerError,
)
from deja.providers.gemini import (
    CachedContent,
    GeminiEndpoint,
    GeminiProvider,
    cached_content_gone,
    convert_schema,
    finish_reason,
    format_ttl,
    minimum_cache_tokens,
    normalize_gemini,
    parse_cached_content,
)
from deja.streaming import SSEDecoder, StreamAssembler, replay_chunks

provider = GeminiProvider()
CREATED = 1_700_000_000
FLASH = "gemini/gemini-2.5-flash"
PNG = "iVBORw0KGgoAAAANSUhEUg=="


def build(body: dict[str, Any], **kwargs: Any) -> Any:
    return provider.build_request(body, **kwargs)


def chat(*messages: dict[str, Any], model: str = FLASH, **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": list(messages), **params}


def user(content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


# -- endpoints, URLs and headers ---------------------------------------------------------------


def test_google_ai_url_and_key_header() -> None:
    wire = build(chat(user("hi")), api_key="AIza-secret")
    assert wire.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert wire.headers == {"content-type": "application/json", "x-goog-api-key": "AIza-secret"}
    assert "AIza-secret" not in wire.url
    assert wire.provider == "gemini" and wire.model == "gemini-2.5-flash" and not wire.stream


def test_stream_url_uses_sse() -> None:
    for wire in (build(chat(user("hi")), stream=True), build(chat(user("hi"), stream=True))):
        assert wire.url.endswith("/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
        assert wire.stream
        assert "stream" not in wire.json


@pytest.mark.parametrize(
    ("api_base", "url"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1beta/models/m:generateContent"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1beta/models/m:generateContent"),
        ("https://proxy.example/v1", "https://proxy.example/v1/models/m:generateContent"),
        ("https://proxy.example/v1alpha", "https://proxy.example/v1alpha/models/m:generateContent"),
    ],
)
def test_google_ai_api_base(api_base: str, url: str) -> None:
    assert build(chat(user("hi"), model="gemini/m"), api_base=api_base).url == url


def test_bare_and_models_prefixed_names_are_google_ai() -> None:
    assert build(chat(user("x"), model="gemini-2.0-flash")).url.endswith(
        "/v1beta/models/gemini-2.0-flash:generateContent"
    )
    assert build(chat(user("x"), model="models/gemini-2.0-flash")).model == "gemini-2.0-flash"


def test_vertex_regional_url_and_bearer() -> None:
    wire = build(
        chat(user("hi"), model="vertex_ai/gemini-2.5-pro"),
        access_token="ya29.token",
        vertex_project="my-proj",
        vertex_location="europe-west4",
        extra_headers={"x-goog-user-project": "billing"},
    )
    assert wire.url == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-proj/locations/"
        "europe-west4/publishers/google/models/gemini-2.5-pro:generateContent"
    )
    assert wire.headers == {
        "content-type": "application/json",
        "authorization": "Bearer ya29.token",
        "x-goog-user-project": "billing",
    }
    assert wire.provider == "vertex_ai"


def test_vertex_global_location_and_defaults() -> None:
    glob = build(chat(user("x"), model="vertex_ai/m"), vertex_project="p", vertex_location="global")
    assert glob.url == (
        "https://aiplatform.googleapis.com/v1/projects/p/locations/global/publishers/google/"
        "models/m:generateContent"
    )
    default = build(chat(user("x"), model="vertex_ai/m"), vertex_project="p", stream=True)
    assert default.url == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/"
        "publishers/google/models/m:streamGenerateContent?alt=sse"
    )
    custom = build(chat(user("x"), model="vertex_ai/m"), vertex_project="p", api_base="http://h:1")
    assert custom.url.startswith("http://h:1/v1/projects/p/locations/us-central1/")
    # A project without the vertex_ai/ prefix also means Vertex.
    assert build(chat(user("x"), model="m"), vertex_project="p").endpoint.kind == "vertex"


def test_vertex_needs_a_project() -> None:
    with pytest.raises(InvalidRequestError, match="vertex_project"):
        build(chat(user("x"), model="vertex_ai/gemini-2.5-flash"))
    with pytest.raises(InvalidRequestError, match="project id"):
        GeminiEndpoint.vertex("a/b")


def test_endpoint_cached_content_urls() -> None:
    google = GeminiEndpoint.google_ai()
    assert google.cached_contents_url() == (
        "https://generativelanguage.googleapis.com/v1beta/cachedContents"
    )
    assert google.cached_content_url("abc") == (
        "https://generativelanguage.googleapis.com/v1beta/cachedContents/abc"
    )
    assert google.cached_content_url("cachedContents/abc") == google.cached_content_url("abc")
    assert google.ttl_update("abc", 600) == (
        "https://generativelanguage.googleapis.com/v1beta/cachedContents/abc?updateMask=ttl",
        {"ttl": "600s"},
    )
    vertex = GeminiEndpoint.vertex("p", "us-east5")
    base = "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5"
    assert vertex.cached_contents_url() == f"{base}/cachedContents"
    assert vertex.cached_content_url("123") == f"{base}/cachedContents/123"
    full = "projects/p/locations/us-east5/cachedContents/123"
    assert vertex.cached_content_name(full) == full
    assert vertex.cached_content_name("cachedContents/123") == full
    with pytest.raises(InvalidRequestError, match="only visible"):
        vertex.cached_content_name("projects/other/locations/us-east5/cachedContents/1")
    with pytest.raises(InvalidRequestError, match="Vertex resource"):
        google.cached_content_name(full)
    with pytest.raises(InvalidRequestError):
        google.cached_content_name("a/b")


def test_format_ttl() -> None:
    assert format_ttl(3600) == "3600s"
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError):
            format_ttl(bad)  # type: ignore[arg-type]


# -- request translation ----------------------------------------------------------------------


def test_every_mapped_field_on_the_wire() -> None:
    body = chat(
        {"role": "system", "content": "Be brief."},
        user(
            [
                {"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                {"type": "image_url", "image_url": {"url": "gs://b/doc.pdf"}},
                {"type": "image_url", "image_url": {"url": "gs://b/blob", "format": "video/mp4"}},
                {
                    "type": "file",
                    "file": {"file_id": "https://g.test/files/f1", "format": "text/plain"},
                },
                {"type": "input_audio", "input_audio": {"data": "UklG", "format": "mp3"}},
            ]
        ),
        {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
        {
            "role": "assistant",
            "content": "Checking.",
            "extra_content": {"google": {"thought_signature": "sig-text"}},
            "reasoning_content": "internal thoughts are not sent back",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    "extra_content": {"google": {"thought_signature": "sig-call"}},
                },
                {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        user("Thanks. And tomorrow?"),
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                },
            },
            {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}},
            {"googleSearch": {}},
        ],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        max_completion_tokens=256,
        stop="END",
        n=2,
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        response_format={"type": "json_object"},
        reasoning_effort="medium",
        safety_settings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        labels={"team": "a"},
    )
    wire = build(body)
    assert wire.json == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Look:"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/cat.jpg"}},
                    {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/doc.pdf"}},
                    {"fileData": {"mimeType": "video/mp4", "fileUri": "gs://b/blob"}},
                    {"fileData": {"mimeType": "text/plain", "fileUri": "https://g.test/files/f1"}},
                    {"inlineData": {"mimeType": "audio/mp3", "data": "UklG"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking.", "thoughtSignature": "sig-text"},
                    {
                        "functionCall": {"name": "weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "sig-call",
                    },
                    {"functionCall": {"name": "time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "time", "response": {"content": "noon"}}},
                    {"text": "Thanks. And tomorrow?"},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    },
                    {"name": "time"},
                ]
            },
            {"googleSearch": {}},
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
        },
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.9,
            "topK": 40,
            "seed": 7,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "maxOutputTokens": 256,
            "stopSequences": ["END"],
            "candidateCount": 2,
            "responseMimeType": "application/json",
            "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "labels": {"team": "a"},
    }
    assert wire.candidate_count == 2
    assert wire.context_cache is None
    assert wire.warnings == ()


def test_unknown_media_type_is_sent_as_jpeg_with_a_warning() -> None:
    wire = build(chat(user([{"type": "image_url", "image_url": "https://x.test/pic"}])))
    assert wire.json["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/pic"}}
    ]
    assert any("media type" in w for w in wire.warnings)


def test_file_data_and_native_parts() -> None:
    wire = build(
        chat(
            user(
                [
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
                    {"inlineData": {"mimeType": "image/webp", "data": "UklG"}},
                    {"text": "native text part", "cache_control": {"type": "ephemeral"}},
                ]
            ),
        )
    )
    assert wire.json["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
        {"inlineData": {"mimeType": "image/webp", "data": "UklG"}},
        {"text": "native text part"},
    ]


def test_consecutive_turns_merge_and_empty_assistant_text_is_dropped() -> None:
    wire = build(
        chat(
            user("a"),
            user([{"type": "text", "text": "b"}]),
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "assistant", "content": None},
            {"role": "tool", "tool_call_id": "t", "content": [{"type": "text", "text": "[1, 2]"}]},
        )
    )
    assert wire.json["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "f", "response": {"content": [1, 2]}}}],
        },
    ]


def test_tool_message_name_fallback_and_missing_call() -> None:
    named = build(
        chat(user("x"), {"role": "tool", "tool_call_id": "zz", "name": "f", "content": "1"})
    )
    assert named.json["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "x"},
                {"functionResponse": {"name": "f", "response": {"content": 1}}},
            ],
        }
    ]
    with pytest.raises(InvalidRequestError, match="zz"):
        build(chat(user("x"), {"role": "tool", "tool_call_id": "zz", "content": "1"}))


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        (
            {"functionCallingConfig": {"mode": "VALIDATED"}},
            {"functionCallingConfig": {"mode": "VALIDATED"}},
        ),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    assert build(chat(user("x"), tool_choice=choice)).json["toolConfig"] == config


def test_response_format_json_schema_is_converted() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": ["number", "null"]}},
        "required": ["answer", "score"],
        "additionalProperties": False,
    }
    rf = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}
    wire = build(chat(user("x"), response_format=rf))
    assert wire.json["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "object",
            "properties": {
                "answer": {"type": "string"},
                "score": {"type": "number", "nullable": True},
            },
            "required": ["answer", "score"],
        },
    }
    assert wire.warnings == (
        "response_format: JSON-schema keywords Gemini does not accept were dropped or rewritten: "
        "additionalProperties",
    )
    raw = GeminiProvider(schema_mode="json_schema").build_request(
        chat(user("x"), response_format=rf)
    )
    assert raw.json["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    text = build(chat(user("x"), response_format={"type": "text"}))
    assert "generationConfig" not in text.json


def test_json_schema_mode_sends_parameters_unchanged() -> None:
    parameters = {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {"A": {}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}
    wire = GeminiProvider(schema_mode="json_schema").build_request(chat(user("x"), tools=[tool]))
    assert wire.json["tools"] == [
        {"functionDeclarations": [{"name": "f", "parametersJsonSchema": parameters}]}
    ]
    with pytest.raises(ValueError):
        GeminiProvider(schema_mode="yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "effort", "config", "warned"),
    [
        ("gemini-2.5-flash", "minimal", {"thinkingBudget": 128, "includeThoughts": True}, False),
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}, False),
        ("gemini-2.5-flash", "high", {"thinkingBudget": 4096, "includeThoughts": True}, False),
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}, False),
        ("gemini-2.5-pro", "none", None, True),
        ("gemini-3-pro-preview", "low", {"thinkingLevel": "low", "includeThoughts": True}, False),
        (
            "gemini-3-pro-preview",
            "medium",
            {"thinkingLevel": "high", "includeThoughts": True},
            False,
        ),
        ("gemini-3-flash-preview", "none", {"thinkingLevel": "minimal"}, True),
    ],
)
def test_reasoning_effort(model: str, effort: str, config: Any, warned: bool) -> None:
    wire = build(chat(user("x"), model=f"gemini/{model}", reasoning_effort=effort))
    assert wire.json.get("generationConfig", {}).get("thinkingConfig") == config
    assert bool(wire.warnings) == warned


def test_thinking_param_and_native_generation_config_win() -> None:
    wire = build(
        chat(
            user("x"),
            thinking={"type": "enabled", "budget_tokens": 5000},
            temperature=1,
            generationConfig={"temperature": 0, "responseModalities": ["TEXT"]},
        )
    )
    assert wire.json["generationConfig"] == {
        "temperature": 0,
        "thinkingConfig": {"thinkingBudget": 5000, "includeThoughts": True},
        "responseModalities": ["TEXT"],
    }
    off = build(chat(user("x"), thinking={"type": "disabled"}))
    assert off.json["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 0}}


def test_openai_only_parameters_are_not_sent_with_a_warning_each() -> None:
    wire = build(
        chat(
            user("x"),
            logit_bias={"1": 2},
            user="u-1",
            metadata={"a": "b"},
            store=True,
            service_tier="flex",
            parallel_tool_calls=False,
            logprobs_disabled_is_fine=None,
            stream_options={"include_usage": True},
        )
    )
    sent = set(wire.json)
    assert sent == {"contents", "logprobs_disabled_is_fine"}
    assert sorted(wire.warnings) == sorted(
        [
            "logit_bias has no Gemini equivalent: not sent",
            "user has no Gemini equivalent: not sent",
            "metadata has no Gemini equivalent: not sent",
            "store has no Gemini equivalent: not sent",
            "service_tier has no Gemini equivalent: not sent",
            "parallel_tool_calls: false has no Gemini equivalent: not sent",
        ]
    )
    quiet = build(chat(user("x"), store=False, logprobs=None))
    assert quiet.warnings == ()


def test_tool_warnings_strict_and_dropped_keywords() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "strict": True,
            "parameters": {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"a": {"type": "string", "format": "uri"}},
                "additionalProperties": False,
            },
        },
    }
    wire = build(chat(user("x"), tools=[tool]))
    assert wire.json["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "f",
                    "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
                }
            ]
        }
    ]
    assert wire.warnings == (
        "tools[0] (f): JSON-schema keywords Gemini does not accept were dropped or rewritten: "
        "$schema, properties.a.format, additionalProperties",
        "tools[0].function.strict has no Gemini equivalent: not sent",
    )


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (chat(user("x"), functions=[{"name": "f"}]), "functions"),
        (chat({"role": "function", "name": "f", "content": "x"}), "function"),
        (chat({"role": "robot", "content": "x"}), "unknown role"),
        (chat({"role": "system", "content": "only a system prompt"}), "at least one"),
        (chat(user([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}])), "media URL"),
        (chat(user([{"type": "video", "video": {}}])), "not supported"),
        (chat(user("x"), tools=[{"type": "web_search"}]), "web_search"),
        (chat(user("x"), tools=[{"type": "function", "function": {}}]), "name"),
        (chat(user("x"), tool_choice="sometimes"), "tool_choice"),
        (chat(user("x"), response_format={"type": "xml"}), "response_format"),
        (chat(user("x"), n=0), "positive"),
        (chat(user("x"), reasoning_effort="extreme"), "extreme"),
        (
            chat(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "f", "arguments": "{"}}
                    ],
                }
            ),
            "not JSON",
        ),
        (
            chat(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "f", "arguments": "[]"}}
                    ],
                }
            ),
            "JSON object",
        ),
        ({"model": FLASH, "messages": "hi"}, "messages"),
        ({"messages": [user("x")]}, "model"),
    ],
)
def test_requests_gemini_cannot_express(body: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        build(body)


# -- explicit cached content ------------------------------------------------------------------


def test_context_cache_id_becomes_cached_content() -> None:
    for value in ("abc123", "cachedContents/abc123"):
        wire = build(chat(user("x"), context_cache_id=value))
        assert wire.json["cachedContent"] == "cachedContents/abc123"
        assert wire.context_cache is None
    also = build(chat(user("x"), cached_content="abc123"))
    assert also.json["cachedContent"] == "cachedContents/abc123"
    vertex = build(
        chat(user("x"), model="vertex_ai/gemini-2.5-flash", context_cache_id="987"),
        vertex_project="p",
        vertex_location="us-east1",
    )
    assert vertex.json["cachedContent"] == "projects/p/locations/us-east1/cachedContents/987"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"messages": [{"role": "system", "content": "s"}, user("x")]}, "system messages"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_context_cache_id_conflicts_are_named(extra: dict[str, Any], named: str) -> None:
    body = {**chat(user("x"), context_cache_id="c1"), **extra}
    with pytest.raises(InvalidRequestError, match=named) as info:
        build(body)
    assert "400" in str(info.value)


def test_context_cache_id_ignores_markers_with_a_warning() -> None:
    wire = build(
        chat(user("x", cache_control={"type": "ephemeral"}), context_cache_id="c1"),
        injection_points=[{"location": "message", "index": -1}],
    )
    assert wire.context_cache is None
    assert wire.warnings == ("cache_control markers ignored: the request names its cached content",)
    assert "cache_control" not in json.dumps(wire.json)


# -- context-cache plans ----------------------------------------------------------------------

LONG = "All the rules of the house. " * 400  # ~2,800 tokens, estimated


def cached_chat(model: str = FLASH, **params: Any) -> dict[str, Any]:
    return chat(
        {"role": "system", "content": LONG, "cache_control": {"type": "ephemeral"}},
        user("Question one?"),
        {"role": "assistant", "content": "Answer one."},
        user("Question two?"),
        model=model,
        **params,
    )


def test_no_markers_no_plan() -> None:
    assert build(chat(user("x"))).context_cache is None


def test_system_breakpoint_caches_the_system_instruction() -> None:
    wire = build(cached_chat(), api_key="k")
    plan = wire.context_cache
    assert plan is not None
    assert plan.contents == []
    assert plan.request_contents == wire.json["contents"]
    assert plan.system_instruction == {"parts": [{"text": LONG}]}
    assert plan.tools is None and plan.tool_config is None
    assert plan.model == "models/gemini-2.5-flash"
    assert plan.create_url == "https://generativelanguage.googleapis.com/v1beta/cachedContents"
    assert plan.prefix_tokens == (len(LONG) + 3) // 4
    assert plan.minimum_tokens == 1024 and not plan.below_minimum
    assert plan.ttl_seconds == 300
    assert plan.create_body(900) == {
        "model": "models/gemini-2.5-flash",
        "displayName": f"deja-{plan.digest[:16]}",
        "systemInstruction": {"parts": [{"text": LONG}]},
        "ttl": "900s",
    }
    # The wire body itself carries no markers: they are deja's, not Gemini's.
    assert "cache_control" not in json.dumps(wire.json)
    assert wire.warnings == ()


def test_digest_is_sha256_of_the_canonical_prefix() -> None:
    plan = build(cached_chat()).context_cache
    assert plan is not None
    payload = {
        "v": 1,
        "model": "models/gemini-2.5-flash",
        "endpoint": {
            "kind": "google_ai",
            "base": "https://generativelanguage.googleapis.com/v1beta",
        },
        "systemInstruction": {"parts": [{"text": LONG}]},
        "contents": [],
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert plan.digest == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_chosen_breakpoint_keeps_its_lifetime_behind_a_five_minute_marker() -> None:
    # An agent's setup: the caller's 5m marker on a tool, the system point asking for 1h,
    # and one on the latest message. The system breakpoint is chosen; Anthropic's "longer
    # lifetimes first" (a 1h breakpoint after a 5m one is shortened) is not Gemini's rule,
    # and a cache made for 5 minutes is remade about every 4.
    tool = {
        "type": "function",
        "cache_control": {"type": "ephemeral"},
        "function": {"name": "lookup", "description": "look up a policy"},
    }
    body = chat({"role": "system", "content": LONG}, user("How many days?"), tools=[tool])
    points = [
        {"location": "message", "role": "system", "ttl": "1h"},
        {"location": "message", "index": -1},
    ]
    plan = build(body, injection_points=points).context_cache
    assert plan is not None
    assert plan.system_instruction == {"parts": [{"text": LONG}]}
    assert plan.ttl_seconds == 3600
    # and a chosen 5m breakpoint after a 1h one stays 5m
    tool["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    five = build(body, injection_points=[{"location": "message", "role": "system"}])
    assert five.context_cache is not None
    assert five.context_cache.ttl_seconds == 300


def test_with_cached_content_strips_what_the_cache_holds() -> None:
    tools = [{"type": "function", "function": {"name": "f", "description": "d"}}]
    body = chat(
        {"role": "system", "content": LONG},
        user(
            [
                {"type": "text", "text": "Doc. " * 50},
                {"type": "text", "text": "Q?", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            ]
        ),
        {"role": "assistant", "content": "A."},
        user("Follow-up"),
        tools=tools,
        tool_choice="auto",
        temperature=0.5,
    )
    wire = build(body)
    plan = wire.context_cache
    assert plan is not None
    assert plan.contents == [{"role": "user", "parts": [{"text": "Doc. " * 50}, {"text": "Q?"}]}]
    assert plan.tools == [{"functionDeclarations": [{"name": "f", "description": "d"}]}]
    assert plan.tool_config == {"functionCallingConfig": {"mode": "AUTO"}}
    assert plan.ttl_seconds == 3600
    used = wire.with_cached_content("xyz")
    assert used.json == {
        "contents": [
            {"role": "model", "parts": [{"text": "A."}]},
            {"role": "user", "parts": [{"text": "Follow-up"}]},
        ],
        "generationConfig": {"temperature": 0.5},
        "cachedContent": "cachedContents/xyz",
    }
    assert used.context_cache is None
    assert used.url == wire.url and used.headers == wire.headers
    # The original is untouched, so it can be sent whole if the cache cannot be made.
    assert wire.json["systemInstruction"] == {"parts": [{"text": LONG}]}
    with pytest.raises(ValueError):
        used.with_cached_content("again")


def test_part_breakpoint_splits_its_message() -> None:
    body = chat(
        user(
            [
                {"type": "text", "text": "Doc. " * 3000, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "What does it say?"},
            ]
        )
    )
    wire = build(body)
    plan = wire.context_cache
    assert plan is not None
    assert plan.contents == [{"role": "user", "parts": [{"text": "Doc. " * 3000}]}]
    assert plan.request_contents == [{"role": "user", "parts": [{"text": "What does it say?"}]}]
    # Sent whole (no cache yet), the message stays one turn.
    assert wire.json["contents"] == [
        {"role": "user", "parts": [{"text": "Doc. " * 3000}, {"text": "What does it say?"}]}
    ]


def test_breakpoint_on_the_last_message_leaves_that_turn_in_the_request() -> None:
    body = chat(
        user("Doc. " * 3000),
        {"role": "assistant", "content": "Read it."},
        user("Summarize.", cache_control={"type": "ephemeral"}),
    )
    plan = build(body).context_cache
    assert plan is not None
    assert plan.contents == [
        {"role": "user", "parts": [{"text": "Doc. " * 3000}]},
        {"role": "model", "parts": [{"text": "Read it."}]},
    ]
    assert plan.request_contents == [{"role": "user", "parts": [{"text": "Summarize."}]}]
    assert any("last turn" in w for w in build(body).warnings)


def test_injection_points_and_automatic_cache_control_pick_the_stable_breakpoint() -> None:
    """One context cache holds one prefix: of several breakpoints the one ending in the
    system prompt or the tools (the same every turn; a breakpoint on the latest message
    moves every turn, and a cache per turn is used once), else the last."""
    body = chat(
        {"role": "system", "content": LONG},
        user("One"),
        {"role": "assistant", "content": "Two"},
        user("Three"),
    )
    by_point = build(body, injection_points=[{"location": "message", "index": -2}])
    by_system = build(body, injection_points=[{"location": "message", "role": "system"}])
    automatic = build({**body, "cache_control": {"type": "ephemeral"}})
    in_body = build(
        {**body, "cache_control_injection_points": [{"location": "message", "index": 1}]}
    )
    assert [
        len(p.contents)
        for p in (
            by_point.context_cache,
            by_system.context_cache,
            automatic.context_cache,
            in_body.context_cache,
        )
    ] == [2, 0, 2, 1]  # type: ignore[union-attr]
    both = build(
        body,
        injection_points=[
            {"location": "message", "role": "system"},
            {"location": "message", "index": 1},
        ],
    )
    # the system prompt, not the moving breakpoint on message 1 (an agent's "index: -1")
    assert both.context_cache is not None and len(both.context_cache.contents) == 0
    two_messages = build(
        body,
        injection_points=[{"location": "message", "index": 1}, {"location": "message", "index": 2}],
    )
    assert two_messages.context_cache is not None
    assert len(two_messages.context_cache.contents) == 2  # no stable one: the last
    nothing = build(body, injection_points=[{"location": "tool"}])
    assert nothing.context_cache is None
    assert any("matched nothing" in w for w in nothing.warnings)


def test_tool_breakpoint_caches_tools_and_system() -> None:
    tools = [
        {"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}
    ]
    wire = build(chat({"role": "system", "content": LONG}, user("x"), tools=tools))
    plan = wire.context_cache
    assert plan is not None
    assert plan.contents == [] and plan.tools == [{"functionDeclarations": [{"name": "f"}]}]
    assert plan.system_instruction == {"parts": [{"text": LONG}]}


def test_below_minimum_is_flagged_with_a_warning() -> None:
    wire = build(
        chat(
            {"role": "system", "content": "Short.", "cache_control": {"type": "ephemeral"}},
            user("x"),
        )
    )
    plan = wire.context_cache
    assert plan is not None and plan.below_minimum
    assert plan.prefix_tokens == 2 and plan.minimum_tokens == 1024
    assert wire.warnings == (
        "no context cache: the prefix (~2 tokens, estimated) is below gemini-2.5-flash's minimum "
        "of 1024 cached tokens",
    )
    tiny = GeminiProvider(minimum_tokens=lambda model: 1).build_request(
        chat(
            {"role": "system", "content": "Short.", "cache_control": {"type": "ephemeral"}},
            user("x"),
        )
    )
    assert tiny.context_cache is not None and not tiny.context_cache.below_minimum


def test_empty_prefix_makes_no_plan() -> None:
    body = chat(user("only", cache_control={"type": "ephemeral"}))
    wire = build(body)
    assert wire.context_cache is None
    assert any("prefix is empty" in w for w in wire.warnings)


def test_media_counts_as_image_tokens() -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    wire = build(chat(user([image], cache_control={"type": "ephemeral"}), user("describe")))
    plan = wire.context_cache
    assert plan is not None and plan.prefix_tokens == 1600


def digest(body: dict[str, Any], **kwargs: Any) -> str:
    plan = build(body, **kwargs).context_cache
    assert plan is not None
    return plan.digest


def test_digest_is_stable_across_equivalent_requests() -> None:
    base = digest(cached_chat(temperature=0.2), api_key="one")
    # What follows the prefix, sampling, credentials, marker lifetimes and key order: no change.
    assert digest(cached_chat(temperature=1.0, max_tokens=5), api_key="two") == base
    later = cached_chat()
    later["messages"] = [*later["messages"], {"role": "assistant", "content": "more"}, user("?")]
    assert digest(later) == base
    one_hour = cached_chat()
    one_hour["messages"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    assert digest(one_hour) == base
    reordered = cached_chat()
    reordered["messages"][0] = dict(reversed(list(reordered["messages"][0].items())))
    assert digest(reordered) == base
    as_part = cached_chat()
    as_part["messages"][0] = {
        "role": "system",
        "content": [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}],
    }
    assert digest(as_part) == base


def test_digest_changes_with_prefix_model_endpoint_and_project() -> None:
    base = digest(cached_chat())
    changed_prefix = cached_chat()
    changed_prefix["messages"][0]["content"] = LONG + "!"
    vertex = {"model": "vertex_ai/gemini-2.5-flash"}
    digests = {
        base,
        digest(changed_prefix),
        digest(cached_chat(model="gemini/gemini-2.5-pro")),
        digest(cached_chat(), api_base="https://proxy.example"),
        digest({**cached_chat(), **vertex}, vertex_project="p1"),
        digest({**cached_chat(), **vertex}, vertex_project="p2"),
        digest({**cached_chat(), **vertex}, vertex_project="p1", vertex_location="europe-west1"),
        digest(cached_chat(tools=[{"type": "function", "function": {"name": "f"}}])),
    }
    assert len(digests) == 8


def test_vertex_plan() -> None:
    wire = build(
        {**cached_chat(), "model": "vertex_ai/gemini-2.5-flash"},
        vertex_project="p",
        vertex_location="asia-northeast1",
        access_token="tok",
    )
    plan = wire.context_cache
    assert plan is not None
    assert (
        plan.model
        == "projects/p/locations/asia-northeast1/publishers/google/models/gemini-2.5-flash"
    )
    assert plan.create_url == (
        "https://asia-northeast1-aiplatform.googleapis.com/v1/projects/p/locations/"
        "asia-northeast1/cachedContents"
    )
    used = wire.with_cached_content("42")
    assert used.json["cachedContent"] == "projects/p/locations/asia-northeast1/cachedContents/42"


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("gemini-2.5-flash", 1024),
        ("gemini/gemini-2.5-flash-001", 1024),
        ("vertex_ai/gemini-2.5-flash-preview-05-20", 1024),
        ("gemini-2.5-flash-lite", 2048),
        ("gemini-2.5-pro", 4096),
        ("models/gemini-2.0-flash-001", 4096),
        ("gemini-1.5-pro-002", 32768),
        ("gemini-3-flash-preview", 1024),
        ("gemini-3-pro-preview", 4096),
        ("gemini-2.5-flashy", 4096),
        ("some-new-model", 4096),
    ],
)
def test_minimum_cache_tokens(model: str, tokens: int) -> None:
    assert minimum_cache_tokens(model) == tokens


# -- cached-content answers --------------------------------------------------------------------


def test_parse_cached_content() -> None:
    parsed = parse_cached_content(
        {
            "name": "cachedContents/abc",
            "model": "models/gemini-2.5-flash",
            "displayName": "deja-1",
            "createTime": "2024-06-30T09:23:56.474432Z",
            "updateTime": "2024-06-30T09:23:56.474432Z",
            "expireTime": "2024-06-30T10:23:56.123456789Z",
            "usageMetadata": {"totalTokenCount": 12345},
        }
    )
    assert parsed == CachedContent(
        name="cachedContents/abc",
        model="models/gemini-2.5-flash",
        expire_time=pytest.approx(1_719_743_036.123456),
        total_token_count=12345,
        display_name="deja-1",
    )
    offset = parse_cached_content({"name": "n", "expireTime": "2024-06-30T12:23:56+02:00"})
    assert offset.expire_time == 1_719_743_036.0
    assert offset.model is None and offset.total_token_count is None
    assert parse_cached_content({"name": "n", "expireTime": "soon"}).expire_time is None
    with pytest.raises(ProviderError):
        parse_cached_content({"error": {"code": 404}})


def test_cached_content_gone() -> None:
    google = {"error": {"code": 403, "message": "CachedContent not found (or permission denied)"}}
    assert cached_content_gone(403, google)
    assert cached_content_gone(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
    assert not cached_content_gone(403, {"error": {"message": "Permission denied on project"}})
    assert not cached_content_gone(400, google)
    assert not cached_content_gone(None, None)


# -- schema conversion ------------------------------------------------------------------------


def test_convert_schema_inlines_refs_and_keeps_sibling_description() -> None:
    schema = {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "Where they live"},
            "work": {"$ref": "#/definitions/Address"},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
        },
        "$defs": {
            "Address": {
                "type": "object",
                "description": "A postal address",
                "properties": {"city": {"type": "string"}, "zip": {"$ref": "#/$defs/Zip"}},
                "required": ["city"],
            },
            "Zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            "Tag": {"type": "string", "enum": ["a", "b"]},
        },
        "definitions": {"Address": {"$ref": "#/$defs/Address"}},
    }
    dropped: list[str] = []
    address = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
        },
        "required": ["city"],
    }
    assert convert_schema(schema, dropped=dropped) == {
        "type": "object",
        "properties": {
            "home": {**address, "description": "Where they live"},
            "work": {**address, "description": "A postal address"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        },
    }
    assert dropped == ["$defs", "definitions"]


def test_convert_schema_refuses_recursive_and_unknown_refs() -> None:
    recursive = {
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
    }
    with pytest.raises(InvalidRequestError, match="recursive"):
        convert_schema(recursive)
    with pytest.raises(InvalidRequestError, match="does not name"):
        convert_schema({"$ref": "https://example.com/schema.json"})


@pytest.mark.parametrize(
    ("schema", "converted"),
    [
        ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
        ({"type": ["string", "integer"]}, {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        (
            {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "description": "n"},
            {"type": "integer", "minimum": 1, "description": "n", "nullable": True},
        ),
        (
            {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            {"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": True},
        ),
        ({"type": "null"}, {"nullable": True}),
        ({"const": "fixed"}, {"type": "string", "enum": ["fixed"]}),
        (
            {"type": "integer", "enum": [1, 2, None]},
            {"type": "string", "enum": ["1", "2"], "nullable": True},
        ),
        ({"enum": [True, 1.5, {"a": 1}]}, {"type": "string", "enum": ["true", "1.5", '{"a":1}']}),
        ({"type": "string", "format": "date-time"}, {"type": "string", "format": "date-time"}),
        ({"type": "string", "format": "email"}, {"type": "string"}),
        ({"type": "integer", "format": "int64"}, {"type": "integer", "format": "int64"}),
        ({"type": "number", "format": "double"}, {"type": "number", "format": "double"}),
        (
            {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "integer"}}},
                ]
            },
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                "required": ["a"],
            },
        ),
        ({"allOf": [{"type": "string", "maxLength": 3}]}, {"type": "string", "maxLength": 3}),
        (
            {
                "allOf": [
                    {"required": ["a"], "properties": {"a": {}}},
                    {"required": ["a", "b"], "properties": {"b": {}}},
                ]
            },
            {"type": "object", "properties": {"a": {}, "b": {}}, "required": ["a", "b"]},
        ),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, {}),
        (
            {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
            {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        ),
        (
            {"type": "object", "properties": {"a": {}}, "required": ["a", "ghost"]},
            {"type": "object", "properties": {"a": {}}, "required": ["a"]},
        ),
        (
            {
                "type": "object",
                "title": "T",
                "description": "D",
                "properties": {"x": {"type": "number", "minimum": 0, "maximum": 9, "default": 1}},
                "minProperties": 1,
                "maxProperties": 3,
                "propertyOrdering": ["x"],
                "example": {"x": 1},
            },
            {
                "type": "object",
                "title": "T",
                "description": "D",
                "properties": {"x": {"type": "number", "minimum": 0, "maximum": 9, "default": 1}},
                "minProperties": 1,
                "maxProperties": 3,
                "propertyOrdering": ["x"],
                "example": {"x": 1},
            },
        ),
    ],
)
def test_convert_schema_cases(schema: dict[str, Any], converted: dict[str, Any]) -> None:
    assert convert_schema(schema) == converted


def test_convert_schema_lists_every_dropped_keyword() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "x",
        "type": "object",
        "additionalProperties": False,
        "patternProperties": {"^a": {}},
        "examples": [{}],
        "properties": {
            "n": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 2},
            "l": {
                "type": "array",
                "uniqueItems": True,
                "contains": {},
                "items": {"type": "string"},
            },
            "o": {"type": "string", "const": "k", "readOnly": True, "deprecated": True},
            "c": {"if": {}, "then": {}, "else": {}, "not": {}, "type": "string"},
        },
        "dependentRequired": {},
        "unevaluatedProperties": False,
        "strict": True,
    }
    original = copy.deepcopy(schema)
    dropped: list[str] = []
    out = convert_schema(schema, dropped=dropped, path="parameters")
    assert out == {
        "type": "object",
        "properties": {
            "n": {"type": "number"},
            "l": {"type": "array", "items": {"type": "string"}},
            "o": {"type": "string", "enum": ["k"]},
            "c": {"type": "string"},
        },
    }
    assert sorted(dropped) == sorted(
        [
            "parameters.$schema",
            "parameters.$id",
            "parameters.additionalProperties",
            "parameters.patternProperties",
            "parameters.examples",
            "parameters.properties.n.exclusiveMinimum",
            "parameters.properties.n.multipleOf",
            "parameters.properties.l.uniqueItems",
            "parameters.properties.l.contains",
            "parameters.properties.o.const",
            "parameters.properties.o.readOnly",
            "parameters.properties.o.deprecated",
            "parameters.properties.c.if",
            "parameters.properties.c.then",
            "parameters.properties.c.else",
            "parameters.properties.c.not",
            "parameters.dependentRequired",
            "parameters.unevaluatedProperties",
            "parameters.strict",
        ]
    )
    assert schema == original  # not changed in place


def test_convert_schema_refuses_non_objects() -> None:
    with pytest.raises(InvalidRequestError):
        convert_schema([])  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        convert_schema({"type": "object", "properties": {"a": 3}})


# -- usage ------------------------------------------------------------------------------------

GEMINI_USAGE = {
    "promptTokenCount": 11500,
    "candidatesTokenCount": 1000,
    "cachedContentTokenCount": 10000,
    "thoughtsTokenCount": 10000,
    "toolUsePromptTokenCount": 40,
    "totalTokenCount": 22540,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 11500}],
    "trafficType": "ON_DEMAND",
}


def test_normalize_gemini() -> None:
    usage = normalize_gemini(GEMINI_USAGE)
    assert usage == {
        "prompt_tokens": 11540,
        "completion_tokens": 11000,
        "total_tokens": 22540,
        "prompt_tokens_details": {"cached_tokens": 10000, "tool_use_prompt_tokens": 40},
        "completion_tokens_details": {"reasoning_tokens": 10000},
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 11500}],
        "trafficType": "ON_DEMAND",
        "cache_read_input_tokens": 10000,
        "cache_creation_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    }
    # Gemini's own total is the same sum.
    assert usage["total_tokens"] == GEMINI_USAGE["totalTokenCount"]
    assert normalize_gemini(usage) == usage  # idempotent


def test_tool_use_prompt_tokens_are_not_inside_prompt_token_count() -> None:
    # A Gemini 3 answer with Google Search (github.com/QuantumNous/new-api/issues/2935): the
    # total is the sum of all four counts, so tool-use tokens come on top of the prompt's.
    usage = normalize_gemini(
        {
            "promptTokenCount": 151,
            "candidatesTokenCount": 1089,
            "totalTokenCount": 20689,
            "toolUsePromptTokenCount": 18329,
            "thoughtsTokenCount": 1120,
        }
    )
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (151 + 18329, 1089 + 1120)
    assert usage["total_tokens"] == 20689


def test_normalize_gemini_odd_input() -> None:
    empty = normalize_gemini(None)
    assert empty["prompt_tokens"] == 0 and empty["total_tokens"] == 0
    assert normalize_gemini("nope") == empty
    odd = normalize_gemini(
        {"promptTokenCount": -3, "candidatesTokenCount": "7", "thoughtsTokenCount": True}
    )
    assert (odd["prompt_tokens"], odd["completion_tokens"]) == (0, 0)
    capped = normalize_gemini({"promptTokenCount": 10, "cachedContentTokenCount": 99})
    assert capped["prompt_tokens_details"]["cached_tokens"] == 10


# -- responses --------------------------------------------------------------------------------


def response(*candidates: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "candidates": list(candidates),
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
        **extra,
    }


def test_parse_text_and_thoughts() -> None:
    data = response(
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "Thinking about ", "thought": True},
                    {"text": "it.", "thought": True},
                    {"text": "Hello"},
                    {"text": " world", "thoughtSignature": "sig"},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    )
    assert provider.parse_response(data, created=CREATED) == {
        "id": "resp-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": "gemini-2.5-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello world",
                    "reasoning_content": "Thinking about it.",
                    "extra_content": {"google": {"thought_signature": "sig"}},
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": normalize_gemini(data["usageMetadata"]),
    }


def test_parse_function_calls_get_deterministic_ids() -> None:
    data = response(
        {
            "content": {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "s1"},
                    {"functionCall": {"name": "b", "args": {}}},
                    {"functionCall": {"name": "c", "id": "given-id"}},
                ],
            },
            "finishReason": "STOP",
        }
    )
    parsed = provider.parse_response(data, created=CREATED)
    message = parsed["choices"][0]["message"]
    assert parsed["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    calls = message["tool_calls"]
    assert [c["function"] for c in calls] == [
        {"name": "a", "arguments": '{"x": 1}'},
        {"name": "b", "arguments": "{}"},
        {"name": "c", "arguments": "{}"},
    ]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "s1"}}
    assert calls[2]["id"] == "given-id"
    assert calls[0]["id"].startswith("call_") and len(calls[0]["id"]) == 29
    assert calls[0]["id"] != calls[1]["id"]
    assert provider.parse_response(data)["choices"][0]["message"]["tool_calls"] == calls
    other = copy.deepcopy(data)
    other["responseId"] = "resp-2"
    assert (
        provider.parse_response(other)["choices"][0]["message"]["tool_calls"][0]["id"]
        != calls[0]["id"]
    )


def test_deja_returned_tool_calls_round_trip_to_the_wire() -> None:
    data = response(
        {
            "content": {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "s1"}
                ],
            },
            "finishReason": "STOP",
        }
    )
    message = provider.parse_response(data)["choices"][0]["message"]
    call_id = message["tool_calls"][0]["id"]
    wire = build(
        chat(user("go"), message, {"role": "tool", "tool_call_id": call_id, "content": "ok"})
    )
    assert wire.json["contents"][1:] == [
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": "s1"}],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "a", "response": {"content": "ok"}}}],
        },
    ]


def test_parse_several_candidates_by_index() -> None:
    data = response(
        {"content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1},
        {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP"},
    )
    choices = provider.parse_response(data)["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]


@pytest.mark.parametrize(
    ("reason", "mapped"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),  # (kept as native_finish_reason, not stored)
        ("OTHER", "stop"),
        (None, None),
    ],
)
def test_finish_reasons(reason: str | None, mapped: str | None) -> None:
    assert finish_reason(reason) == mapped


def test_safety_finish_without_content() -> None:
    data = response(
        {"finishReason": "SAFETY", "safetyRatings": [{"category": "X", "probability": "HIGH"}]}
    )
    choice = provider.parse_response(data)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ""}
    assert choice["finish_reason"] == "content_filter"


BLOCKED = {
    "promptFeedback": {
        "blockReason": "SAFETY",
        "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH"}],
    },
    "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "blocked-1",
}


def test_blocked_prompt_is_a_content_filter_answer() -> None:
    parsed = provider.parse_response(BLOCKED, created=CREATED)
    assert parsed["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert parsed["prompt_feedback"] == BLOCKED["promptFeedback"]
    assert parsed["usage"]["prompt_tokens"] == 8


def test_error_bodies_raise_typed_errors() -> None:
    with pytest.raises(BadRequestError):
        provider.parse_response(
            {"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}
        )
    with pytest.raises(RateLimitError):
        provider.parse_response({"error": {"message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
    with pytest.raises(ProviderError, match="no candidates"):
        provider.parse_response({"usageMetadata": {}})
    with pytest.raises(ProviderError):
        provider.parse_response({"candidates": []})


def test_model_falls_back_to_the_requested_one() -> None:
    data = response({"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"})
    del data["modelVersion"]
    assert provider.parse_response(data, model="gemini-2.5-flash")["model"] == "gemini-2.5-flash"


# -- streams ----------------------------------------------------------------------------------

STREAM_USAGE = {
    "promptTokenCount": 2100,
    "cachedContentTokenCount": 2048,
    "candidatesTokenCount": 31,
    "thoughtsTokenCount": 12,
    "totalTokenCount": 2143,
}
HEAD = {"modelVersion": "gemini-2.5-flash", "responseId": "stream-1"}


def event(parts: list[dict[str, Any]], usage: dict[str, Any], **candidate: Any) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0, **candidate}],
        "usageMetadata": usage,
        **HEAD,
    }


RUNNING = {"promptTokenCount": 2100, "totalTokenCount": 2100}
RECORDED_EVENTS = [
    event([{"text": "The user wants ", "thought": True}], RUNNING),
    event([{"text": "the weather.", "thought": True}], RUNNING),
    event([{"text": "Let me check "}], RUNNING),
    event([{"text": "the weather.", "thoughtSignature": "sig-a"}], RUNNING),
    event(
        [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "sig-b",
            },
            {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
        ],
        STREAM_USAGE,
        finishReason="STOP",
    ),
]
RECORDED_SSE = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in RECORDED_EVENTS)
RECORDED_RESPONSE = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "The user wants the weather.", "thought": True},
                    {"text": "Let me check the weather.", "thoughtSignature": "sig-a"},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "sig-b",
                    },
                    {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": STREAM_USAGE,
    **HEAD,
}


def translate(raw: bytes, *, split: int | None = None, candidates: int = 1) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    translator = provider.stream_translator(created=CREATED, candidates=candidates)
    pieces = [raw] if split is None else [raw[i : i + split] for i in range(0, len(raw), split)]
    events = [e for piece in pieces for e in decoder.feed(piece)] + decoder.flush()
    chunks: list[dict[str, Any]] = []
    for item in events:
        assert isinstance(item, dict)
        chunks.extend(translator.feed(item))
    assert translator.finished
    chunks.extend(translator.finish())
    return chunks


def assemble(chunks: list[dict[str, Any]]) -> StreamAssembler:
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    return assembler


def test_recorded_stream_becomes_openai_chunks() -> None:
    chunks = translate(RECORDED_SSE)
    parsed = provider.parse_response(RECORDED_RESPONSE, created=CREATED)
    calls = parsed["choices"][0]["message"]["tool_calls"]
    head = {
        "id": "stream-1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gemini-2.5-flash",
    }
    for chunk in chunks:
        assert {k: chunk[k] for k in head} == head
    deltas = [c["choices"][0]["delta"] if c["choices"] else ("usage", c["usage"]) for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "The user wants "},
        {"reasoning_content": "the weather."},
        {"content": "Let me check "},
        {"content": "the weather."},
        {"extra_content": {"google": {"thought_signature": "sig-a"}}},
        {"tool_calls": [{"index": 0, **calls[0]}]},
        {"tool_calls": [{"index": 1, **calls[1]}]},
        {},
        ("usage", normalize_gemini(STREAM_USAGE)),
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 8 + ["tool_calls"]
    assert all(c["usage"] is None for c in chunks[:-1])


@pytest.mark.parametrize("split", [None, 1, 9, 100])
def test_stream_assembles_into_the_non_stream_translation(split: int | None) -> None:
    assembler = assemble(translate(RECORDED_SSE, split=split))
    assert assembler.complete
    assert assembler.response() == provider.parse_response(RECORDED_RESPONSE, created=CREATED)


def test_a_cache_hit_replays_what_the_stream_said() -> None:
    assembler = assemble(translate(RECORDED_SSE))
    replayed = replay_chunks(assembler.response(), assembler.chunks(), include_usage=True)
    assert assemble(replayed).response() == assembler.response()


def test_blocked_prompt_stream_matches_the_non_stream_answer() -> None:
    raw = b"data: " + json.dumps(BLOCKED).encode() + b"\r\n\r\n"
    response_ = assemble(translate(raw)).response()
    assert response_ == provider.parse_response(BLOCKED, created=CREATED)
    assert response_["prompt_feedback"]["blockReason"] == "SAFETY"


def test_usage_that_comes_after_the_finish_reason_is_the_one_reported() -> None:
    """Gemini repeats cumulative usage; the finishReason event may carry a partial one and
    a last event (no candidates) the whole: the usage chunk reports the last."""
    events = [
        event([{"text": "Ninety days"}], RUNNING),
        event([{"text": " of notice."}], RUNNING, finishReason="STOP"),
        {"usageMetadata": STREAM_USAGE, **HEAD},
    ]
    translator = provider.stream_translator(created=CREATED)
    chunks: list[dict[str, Any]] = []
    for item in events:
        chunks += translator.feed(item)
    chunks += translator.finish()
    usages = [c["usage"] for c in chunks if c.get("usage")]
    assert usages == [normalize_gemini(STREAM_USAGE)]
    assert usages[0]["completion_tokens"] > 0


def test_two_candidate_stream() -> None:
    events = [
        {
            "candidates": [
                {"content": {"parts": [{"text": "A1"}]}, "index": 0},
                {"content": {"parts": [{"text": "B1"}]}, "index": 1},
            ],
            **HEAD,
        },
        {
            "candidates": [
                {"content": {"parts": [{"text": "A2"}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": RUNNING,
            **HEAD,
        },
        {
            "candidates": [
                {"content": {"parts": [{"text": "B2"}]}, "finishReason": "MAX_TOKENS", "index": 1}
            ],
            "usageMetadata": STREAM_USAGE,
            **HEAD,
        },
    ]
    translator = provider.stream_translator(created=CREATED, candidates=2)
    chunks: list[dict[str, Any]] = []
    for item in events[:2]:
        chunks += translator.feed(item)
    # One candidate finished, the other has not: no usage chunk yet.
    assert not translator.finished and all(c["choices"] for c in chunks)
    chunks += translator.feed(events[2])
    # Both finished; the usage chunk waits for the end of the stream (a later event may
    # still carry newer usage)
    assert translator.finished and all(c["choices"] for c in chunks)
    chunks += translator.finish()
    assert chunks[-1]["choices"] == []
    assert translator.finish() == []
    whole = {
        "candidates": [
            {"content": {"parts": [{"text": "A1A2"}]}, "finishReason": "STOP", "index": 0},
            {"content": {"parts": [{"text": "B1B2"}]}, "finishReason": "MAX_TOKENS", "index": 1},
        ],
        "usageMetadata": STREAM_USAGE,
        **HEAD,
    }
    assert assemble(chunks).response() == provider.parse_response(whole, created=CREATED)


def test_stream_error_event_raises() -> None:
    translator = provider.stream_translator()
    translator.feed(event([{"text": "partial"}], RUNNING))
    with pytest.raises(ServerError, match="overloaded"):
        translator.feed(
            {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
        )
    with pytest.raises(NotFoundError):
        provider.stream_translator().feed(
            {"error": {"code": 404, "message": "gone", "status": "NOT_FOUND"}}
        )


def test_unfinished_stream_is_not_complete_and_finish_still_reports_usage() -> None:
    translator = provider.stream_translator(created=CREATED)
    chunks = translator.feed(event([{"text": "cut"}], RUNNING))
    assert not translator.finished
    chunks += translator.finish()
    assembler = assemble(chunks)
    assert not assembler.complete
    assert assembler.response()["usage"]["prompt_tokens"] == 2100
