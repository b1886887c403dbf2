"""Tool results on Gemini: the functionCall id Gemini gives goes back with its response, and
media a tool returns reach the model as a multimodal function response (or are refused
where Gemini cannot take them), both in translation and through deja.Client against the
local Gemini server."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx2
import pytest

import deja
from deja.errors import InvalidRequestError
from deja.providers.gemini import GeminiProvider, _estimate
from deja.providers.planner import IMAGE_TOKENS, estimate_tokens
from deja.streaming import StreamAssembler
from deja.testing import FakeGeminiServer, GeminiReply
from tests.providers.gemini.shared import KEY, MODEL

provider = GeminiProvider()
GEMINI_3 = "gemini/gemini-3-flash-preview"
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PNG_URL = f"data:image/png;base64,{PNG}"
PDF_URL = "data:application/pdf;base64,JVBERi0xLjQK"
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}
SCREENSHOT = {"type": "function", "function": {"name": "screenshot"}}


def wire(*messages: dict[str, Any], model: str = GEMINI_3) -> dict[str, Any]:
    payload, _, _ = provider.translate_request({"model": model, "messages": list(messages)})
    return payload


def warnings_of(*messages: dict[str, Any], model: str = GEMINI_3) -> list[str]:
    return provider.translate_request({"model": model, "messages": list(messages)})[2]


def gemini_answer(*calls: dict[str, Any], response_id: str = "resp-1") -> dict[str, Any]:
    parts = [{"functionCall": dict(c)} for c in calls]
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "responseId": response_id,
        "modelVersion": "gemini-3-flash-preview",
    }


def assistant(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


def call(call_id: str, name: str = "lookup", **extra: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": "{}"},
        **extra,
    }


def tool(call_id: str, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


ASK = {"role": "user", "content": "look x up"}


# -- functionCall.id round trip: translation ----------------------------------------------------


def test_a_gemini_call_id_is_the_tool_call_id_and_is_marked() -> None:
    answer = gemini_answer(
        {"name": "lookup", "args": {"q": "x"}, "id": "fc-1"},
        {"name": "lookup", "args": {"q": "y"}, "id": "fc-2"},
    )
    calls = provider.parse_response(answer)["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["fc-1", "fc-2"]
    assert [c["extra_content"] for c in calls] == [
        {"google": {"function_call_id": "fc-1"}},
        {"google": {"function_call_id": "fc-2"}},
    ]


def test_the_mark_sits_next_to_the_thought_signature() -> None:
    answer = gemini_answer({"name": "lookup", "args": {}, "id": "fc-1"})
    answer["candidates"][0]["content"]["parts"][0]["thoughtSignature"] = "sig"
    (only,) = provider.parse_response(answer)["choices"][0]["message"]["tool_calls"]
    assert only["extra_content"] == {
        "google": {"thought_signature": "sig", "function_call_id": "fc-1"}
    }


def test_a_stream_marks_the_same_ids_as_its_non_stream_twin() -> None:
    answer = gemini_answer(
        {"name": "lookup", "args": {"q": "x"}, "id": "fc-1"},
        {"name": "lookup", "args": {"q": "y"}},
    )
    translator = provider.stream_translator(created=1)
    assembler = StreamAssembler()
    for chunk in translator.feed(answer) + translator.finish():
        assembler.add(chunk)
    streamed = assembler.response()["choices"][0]["message"]
    whole = provider.parse_response(answer, created=1)["choices"][0]["message"]
    assert streamed["tool_calls"] == whole["tool_calls"]
    assert whole["tool_calls"][0]["id"] == "fc-1"
    assert "extra_content" not in whole["tool_calls"][1]  # deja's own id: no mark


def test_gemini_ids_go_back_on_the_call_and_its_response() -> None:
    message = provider.parse_response(
        gemini_answer(
            {"name": "lookup", "args": {"q": "x"}, "id": "fc-1"},
            {"name": "lookup", "args": {"q": "y"}, "id": "fc-2"},
        )
    )["choices"][0]["message"]
    contents = wire(ASK, message, tool("fc-2", '{"answer": 2}'), tool("fc-1", "one"))["contents"]
    assert contents[1:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "lookup", "args": {"q": "x"}, "id": "fc-1"}},
                {"functionCall": {"name": "lookup", "args": {"q": "y"}, "id": "fc-2"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "lookup", "response": {"answer": 2}, "id": "fc-2"}},
                {
                    "functionResponse": {
                        "name": "lookup",
                        "response": {"content": "one"},
                        "id": "fc-1",
                    }
                },
            ],
        },
    ]


def test_deja_made_ids_and_foreign_ids_are_not_sent() -> None:
    # an id-less Gemini call gets deja's deterministic id, which Gemini never made
    message = provider.parse_response(gemini_answer({"name": "lookup", "args": {}}))["choices"][0][
        "message"
    ]
    made = message["tool_calls"][0]["id"]
    assert made.startswith("call_")
    contents = wire(ASK, message, tool(made, "ok"))["contents"]
    assert contents[1]["parts"] == [{"functionCall": {"name": "lookup", "args": {}}}]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "lookup", "response": {"content": "ok"}}}
    ]
    # ids from another provider (or the caller) carry no mark either
    contents = wire(ASK, assistant(call("toolu_01AbC")), tool("toolu_01AbC", "ok"))["contents"]
    assert "id" not in contents[1]["parts"][0]["functionCall"]
    assert "id" not in contents[2]["parts"][0]["functionResponse"]


def test_the_marked_id_goes_back_even_when_the_caller_renamed_the_call() -> None:
    renamed = call("my-own-id", extra_content={"google": {"function_call_id": "fc-9"}})
    contents = wire(ASK, assistant(renamed), tool("my-own-id", "ok"))["contents"]
    assert contents[1]["parts"][0]["functionCall"]["id"] == "fc-9"
    assert contents[2]["parts"][0]["functionResponse"]["id"] == "fc-9"


def test_a_response_named_by_hand_gets_no_id() -> None:
    named = {"role": "tool", "tool_call_id": "gone", "name": "lookup", "content": "1"}
    (part,) = wire(ASK, named)["contents"][0]["parts"][1:]
    assert part == {"functionResponse": {"name": "lookup", "response": {"content": 1}}}


# -- media in tool results: translation ---------------------------------------------------------


def screenshot_turns(*content: Any) -> tuple[dict[str, Any], ...]:
    return (
        {"role": "user", "content": "Take a screenshot and tell me what you see."},
        assistant(call("call_1", "screenshot")),
        tool("call_1", list(content)),
    )


def test_an_image_goes_in_the_function_response_parts() -> None:
    turns = screenshot_turns(
        {"type": "text", "text": "screenshot taken"},
        {"type": "image_url", "image_url": {"url": PNG_URL}},
        {"type": "text", "text": " at noon"},
    )
    assert wire(*turns)["contents"][-1] == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "name": "screenshot",
                    "response": {"content": "screenshot taken at noon"},
                    "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}],
                }
            }
        ],
    }
    assert warnings_of(*turns) == []


def test_media_keep_their_order_and_json_text_stays_the_response() -> None:
    turns = screenshot_turns(
        {"type": "text", "text": '{"pages": 2}'},
        {"type": "file", "file": {"file_data": PDF_URL, "filename": "a.pdf"}},
        {"inlineData": {"mimeType": "image/webp", "data": "UklG"}},  # Gemini's own shape
    )
    (part,) = wire(*turns)["contents"][-1]["parts"]
    assert part["functionResponse"]["response"] == {"pages": 2}
    assert part["functionResponse"]["parts"] == [
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0xLjQK"}},
        {"inlineData": {"mimeType": "image/webp", "data": "UklG"}},
    ]


def test_a_media_only_result_still_has_a_response_object() -> None:
    turns = screenshot_turns({"type": "image_url", "image_url": {"url": PNG_URL}})
    (part,) = wire(*turns)["contents"][-1]["parts"]
    assert part["functionResponse"]["response"] == {"content": ""}
    assert len(part["functionResponse"]["parts"]) == 1


def test_a_media_type_gemini_does_not_document_is_sent_with_a_warning() -> None:
    turns = screenshot_turns({"type": "input_audio", "input_audio": {"data": "UklG"}})
    (part,) = wire(*turns)["contents"][-1]["parts"]
    assert part["functionResponse"]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}}
    ]
    (warning,) = warnings_of(*turns)
    assert "audio/wav" in warning and "messages[2].content[0]" in warning


def test_a_file_uri_is_refused_on_google_ai_and_sent_on_vertex() -> None:
    turns = screenshot_turns({"type": "image_url", "image_url": {"url": "gs://b/shot.png"}})
    with pytest.raises(InvalidRequestError, match=r"messages\[2\]\.content\[0\].*Vertex AI only"):
        wire(*turns)
    (part,) = wire(*turns, model="vertex_ai/gemini-3-flash-preview")["contents"][-1]["parts"]
    assert part["functionResponse"]["parts"] == [
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/shot.png"}}
    ]
    # the endpoint decides, not the prefix: a bare model with a Vertex project is Vertex
    request = provider.build_request(
        {"model": "gemini-3-flash-preview", "messages": list(turns)},
        vertex_project="p",
        access_token="t",
    )
    assert "fileData" in request.json["contents"][-1]["parts"][0]["functionResponse"]["parts"][0]


@pytest.mark.parametrize(
    "model",
    [
        "gemini/gemini-2.5-flash",
        "vertex_ai/gemini-2.0-flash-001",
        "gemini/gemini-1.5-pro",
        "gemini-2.5-pro-preview-05-06",
    ],
)
def test_models_before_gemini_3_refuse_media_in_a_tool_result(model: str) -> None:
    turns = screenshot_turns(
        {"type": "text", "text": "screenshot taken"},
        {"type": "image_url", "image_url": {"url": PNG_URL}},
    )
    with pytest.raises(InvalidRequestError, match=r"image/png.*Gemini 3") as caught:
        wire(*turns, model=model)
    assert "messages[2]" in str(caught.value)
    # text alone, in parts, still goes as before
    text_only = screenshot_turns({"type": "text", "text": "screenshot taken"})
    (part,) = wire(*text_only, model=model)["contents"][-1]["parts"]
    assert part == {
        "functionResponse": {"name": "screenshot", "response": {"content": "screenshot taken"}}
    }


@pytest.mark.parametrize("model", ["gemini/gemini-3-pro-preview", "gemini/gemini-flash-latest"])
def test_gemini_3_and_names_deja_cannot_place_send_media(model: str) -> None:
    turns = screenshot_turns({"type": "image_url", "image_url": {"url": PNG_URL}})
    (part,) = wire(*turns, model=model)["contents"][-1]["parts"]
    assert "parts" in part["functionResponse"]


def test_parts_a_tool_result_cannot_hold_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match=r"content\[0\].*functionCall"):
        wire(*screenshot_turns({"functionCall": {"name": "x", "args": {}}}))
    with pytest.raises(InvalidRequestError, match=r"content\[1\].*'video'"):
        wire(*screenshot_turns({"type": "text", "text": "a"}, {"type": "video", "video": {}}))


def test_media_in_a_function_response_are_estimated_as_media() -> None:
    big = "A" * 400_000  # base64 of a large screenshot
    contents = [
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "screenshot",
                        "response": {"content": "ok"},
                        "parts": [{"inlineData": {"mimeType": "image/png", "data": big}}],
                    }
                }
            ],
        }
    ]
    estimated = _estimate(None, None, None, contents, estimate_tokens)
    assert IMAGE_TOKENS <= estimated < IMAGE_TOKENS + 100


# -- through deja.Client and the local Gemini server --------------------------------------------


def client(server: FakeGeminiServer) -> deja.Client:
    return deja.Client(api_base=server.url, api_key=KEY, max_retries=0, cache=deja.Cache())


def generate_bodies(server: FakeGeminiServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if "generatecontent" in r.path.lower()]


def follow_up(first: Any, answer: str = '{"answer": 42}') -> list[dict[str, Any]]:
    message = first.choices[0].message
    return [
        ASK,
        message.model_dump(exclude_none=True),
        *(tool(c.id, answer) for c in message.tool_calls),
    ]


def test_client_echoes_gemini_ids_and_the_server_accepts(server: FakeGeminiServer) -> None:
    c = client(server)
    server.queue_reply(
        GeminiReply(
            function_calls=[
                {"name": "lookup", "args": {"q": "x"}, "id": "fc-123"},
                {"name": "lookup", "args": {"q": "y"}, "id": "fc-456"},
            ]
        )
    )
    first = c.completion(model=GEMINI_3, messages=[ASK], tools=[LOOKUP])
    assert [t.id for t in first.choices[0].message.tool_calls] == ["fc-123", "fc-456"]
    second = c.completion(model=GEMINI_3, messages=follow_up(first), tools=[LOOKUP])
    assert second.choices[0].message.content
    sent = generate_bodies(server)[-1]["contents"]
    assert [p["functionCall"]["id"] for p in sent[1]["parts"]] == ["fc-123", "fc-456"]
    assert [p["functionResponse"]["id"] for p in sent[2]["parts"]] == ["fc-123", "fc-456"]


def test_a_cached_answer_replayed_later_keeps_the_round_trip(server: FakeGeminiServer) -> None:
    c = client(server)
    server.queue_reply(GeminiReply(function_calls=[{"name": "lookup", "args": {}, "id": "fc-7"}]))
    streamed = list(c.completion(model=GEMINI_3, messages=[ASK], tools=[LOOKUP], stream=True))
    assert any(ch.choices and ch.choices[0].delta.tool_calls for ch in streamed)
    # later: the same question is answered from deja's cache (the stream, as a whole answer)
    replayed = c.completion(model=GEMINI_3, messages=[ASK], tools=[LOOKUP])
    assert replayed.cache.status == "hit"
    (only,) = replayed.choices[0].message.tool_calls
    assert only.id == "fc-7"
    c.completion(model=GEMINI_3, messages=follow_up(replayed), tools=[LOOKUP])
    sent = generate_bodies(server)[-1]["contents"]
    assert sent[1]["parts"][0]["functionCall"]["id"] == "fc-7"
    assert sent[2]["parts"][0]["functionResponse"]["id"] == "fc-7"


def test_id_less_calls_go_back_without_ids_from_cache_too(server: FakeGeminiServer) -> None:
    c = client(server)
    server.queue_reply(GeminiReply(function_calls=[{"name": "lookup", "args": {"q": "x"}}]))
    first = c.completion(model=MODEL, messages=[ASK], tools=[LOOKUP])
    again = c.completion(model=MODEL, messages=[ASK], tools=[LOOKUP])
    assert again.cache.status == "hit"
    made = first.choices[0].message.tool_calls[0].id
    assert again.choices[0].message.tool_calls[0].id == made and made.startswith("call_")
    answered = c.completion(model=MODEL, messages=follow_up(again), tools=[LOOKUP])
    assert answered.choices[0].message.content
    sent = generate_bodies(server)[-1]["contents"]
    assert "id" not in sent[1]["parts"][0]["functionCall"]
    assert "id" not in sent[2]["parts"][0]["functionResponse"]
    # and the follow-up itself is a cache hit the second time
    assert c.completion(model=MODEL, messages=follow_up(again), tools=[LOOKUP]).cache.status == (
        "hit"
    )


def test_the_server_accepts_deja_s_echo_and_refuses_a_missing_one(
    server: FakeGeminiServer,
) -> None:
    message = provider.parse_response(gemini_answer({"name": "lookup", "args": {}, "id": "fc-1"}))[
        "choices"
    ][0]["message"]
    body = {"model": GEMINI_3, "messages": [ASK, message, tool("fc-1", "ok")]}
    request = provider.build_request(body, api_base=server.url, api_key=KEY)
    assert httpx2.post(request.url, json=request.json, headers=request.headers).status_code == 200
    del request.json["contents"][2]["parts"][0]["functionResponse"]["id"]  # not echoed
    refused = httpx2.post(request.url, json=request.json, headers=request.headers)
    assert refused.status_code == 400
    assert "each function response must carry the id" in refused.json()["error"]["message"]


def raw_generate(server: FakeGeminiServer, body: dict[str, Any], *, model: str) -> httpx2.Response:
    url = f"{server.url}/v1beta/models/{model}:generateContent"
    return httpx2.post(url, json=body, headers={"x-goog-api-key": KEY})


def call_turns(call_id: str | None, response_id: str | None) -> dict[str, Any]:
    function_call: dict[str, Any] = {"name": "lookup", "args": {}}
    if call_id is not None:
        function_call["id"] = call_id
    response: dict[str, Any] = {"name": "lookup", "response": {"content": "ok"}}
    if response_id is not None:
        response["id"] = response_id
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "look x up"}]},
            {"role": "model", "parts": [{"functionCall": function_call}]},
            {"role": "user", "parts": [{"functionResponse": response}]},
        ]
    }


@pytest.mark.parametrize(
    ("call_id", "response_id", "status"),
    [
        ("fc-1", "fc-1", 200),
        (None, None, 200),
        ("fc-1", "fc-2", 400),  # matches no call
        (None, "call_0123456789abcdef01234567", 400),  # an id Gemini never gave
        ("fc-1", None, 400),  # not echoed
    ],
)
def test_the_server_checks_function_response_ids(
    server: FakeGeminiServer, call_id: str | None, response_id: str | None, status: int
) -> None:
    answer = raw_generate(server, call_turns(call_id, response_id), model="gemini-3-flash-preview")
    assert answer.status_code == status
    if status == 400:
        error = answer.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT"
        assert "contents[2].parts[0].function_response.id" in error["message"]


def test_the_server_checks_ids_across_a_cached_prefix(server: FakeGeminiServer) -> None:
    turns = call_turns("fc-1", "fc-1")["contents"]
    made = httpx2.post(
        f"{server.url}/v1beta/cachedContents",
        json={"model": "models/gemini-3-flash-preview", "contents": turns[:2] * 400},
        headers={"x-goog-api-key": KEY},
    )
    assert made.status_code == 200, made.text
    name = made.json()["name"]
    good = raw_generate(
        server, {"cachedContent": name, "contents": turns[2:]}, model="gemini-3-flash-preview"
    )
    assert good.status_code == 200, good.text
    bad = copy.deepcopy(turns[2:])
    bad[0]["parts"][0]["functionResponse"]["id"] = "fc-2"
    refused = raw_generate(
        server, {"cachedContent": name, "contents": bad}, model="gemini-3-flash-preview"
    )
    assert refused.status_code == 400


def test_client_sends_a_screenshot_to_gemini_3(server: FakeGeminiServer) -> None:
    c = client(server)
    messages = list(
        screenshot_turns(
            {"type": "text", "text": "screenshot taken"},
            {"type": "image_url", "image_url": {"url": PNG_URL}},
        )
    )
    answer = c.completion(model=GEMINI_3, messages=messages, tools=[SCREENSHOT])
    assert answer.choices[0].message.content
    (part,) = generate_bodies(server)[-1]["contents"][-1]["parts"]
    assert part["functionResponse"]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}}
    ]
    # the image is counted as an image, not as its base64 text
    assert answer.usage.prompt_tokens >= IMAGE_TOKENS


def test_client_refuses_a_screenshot_for_gemini_2_5_before_sending(
    server: FakeGeminiServer,
) -> None:
    c = client(server)
    messages = list(screenshot_turns({"type": "image_url", "image_url": {"url": PNG_URL}}))
    with pytest.raises(InvalidRequestError, match=r"gemini-2\.5-flash cannot take media"):
        c.completion(model=MODEL, messages=messages, tools=[SCREENSHOT])
    assert generate_bodies(server) == []


def media_turns(media: dict[str, Any]) -> dict[str, Any]:
    response = {"name": "screenshot", "response": {"content": "ok"}, "parts": [media]}
    return {
        "contents": [
            {"role": "user", "parts": [{"text": "shoot"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "screenshot", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": response}]},
        ]
    }


def test_the_server_takes_media_in_function_responses_as_gemini_does(
    server: FakeGeminiServer,
) -> None:
    inline = media_turns({"inlineData": {"mimeType": "image/png", "data": PNG}})
    assert raw_generate(server, inline, model="gemini-3-flash-preview").status_code == 200
    old = raw_generate(server, inline, model="gemini-2.5-flash")
    assert old.status_code == 400
    assert old.json()["error"]["message"] == (
        "Multimodal function responses are not supported for this model."
    )
    uri = media_turns({"fileData": {"mimeType": "image/png", "fileUri": "gs://b/a.png"}})
    refused = raw_generate(server, uri, model="gemini-3-flash-preview")
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        'Invalid JSON payload received. Unknown name "fileData" at '
        "'contents[2].parts[0].function_response.parts[0]': Cannot find field."
    )
    token = server.issue_token()
    vertex = httpx2.post(
        f"{server.url}/v1/projects/p/locations/us-east4/publishers/google/models/"
        "gemini-3-flash-preview:generateContent",
        json=uri,
        headers={"authorization": f"Bearer {token}"},
    )
    assert vertex.status_code == 200, vertex.text
    broken = media_turns({"inlineData": {"mimeType": "image/png"}})
    assert raw_generate(server, broken, model="gemini-3-flash-preview").status_code == 400


def test_the_audit_repro_now_says_why(server: FakeGeminiServer) -> None:
    # /tmp/audit/f/gemini_tool_result_image.py, on the model it used: refused, not dropped
    body = {
        "model": "gemini/gemini-2.5-flash",
        "messages": list(
            screenshot_turns(
                {"type": "text", "text": "screenshot taken"},
                {"type": "image_url", "image_url": {"url": PNG_URL}},
            )
        ),
        "tools": [SCREENSHOT],
    }
    with pytest.raises(InvalidRequestError):
        provider.translate_request(body)
    body["model"] = GEMINI_3
    payload, _, warnings = provider.translate_request(body)
    assert PNG in json.dumps(payload) and warnings == []
