"""Audit 20, provider adapters: unfinished and abnormal stops, nulls, budgets, levels, logprobs.

* Anthropic's ``pause_turn`` (a server-tool loop paused: the turn is unfinished) came back
  as ``stop`` without its server-tool blocks and was cached. It is ``length`` now, with
  ``provider_specific_fields`` naming it and carrying the blocks to send back, and it is
  never stored.
* Gemini's and Bedrock's abnormal stops (``MALFORMED_FUNCTION_CALL``, ``OTHER``,
  ``malformed_model_output``…) came back as values outside OpenAI's enum and were cached;
  ``LANGUAGE`` is a content filter.
* A ``null`` temperature/top_p/top_k went to Anthropic, which refuses it.
* ``reasoning_effort`` with a caller's limit at or below the budget was a certain 400 on
  Anthropic and Bedrock; ``data:image/jpg`` was sent as ``image/jpg``.
* Gemini 3 got ``high`` for ``medium`` and ``low`` for ``minimal``, and nothing for ``none``.
* Gemini's ``responseLogprobs``/``logprobs`` were said not to exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import deja
from deja.errors import InvalidRequestError
from deja.policy import AdmissionPolicy
from deja.providers.anthropic import AnthropicProvider
from deja.providers.bedrock import AwsCredentials, BedrockProvider
from deja.providers.gemini import GeminiProvider
from deja.providers.gemini import StreamTranslator as GeminiStream
from deja.streaming import StreamAssembler
from deja.testing import (
    AnthropicReply,
    BedrockReply,
    FakeAnthropicServer,
    FakeBedrockServer,
    FakeGeminiServer,
    GeminiReply,
)
from tests.helpers import aws_chain_env

ANTHROPIC = "anthropic/claude-sonnet-4-5"
BEDROCK = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
GEMINI = "gemini/gemini-2.5-flash"
CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
PAUSED = [
    {"type": "text", "text": "Let me search for that."},
    {
        "type": "server_tool_use",
        "id": "srvtoolu_01",
        "name": "web_search",
        "input": {"query": "latest news"},
    },
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},
]


def ask(question: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": question}]


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key="k") as server:
        yield server


def anthropic_client(server: FakeAnthropicServer) -> deja.Client:
    return deja.Client(cache=deja.Cache(), api_base=server.url, api_key="k", max_retries=0)


# -- 1. pause_turn ----------------------------------------------------------------------------


def test_a_paused_turn_says_so_carries_its_blocks_and_is_not_stored(
    anthropic: FakeAnthropicServer,
) -> None:
    c = anthropic_client(anthropic)
    body = {"model": ANTHROPIC, "max_tokens": 200, "messages": ask("News?"), "tools": [SEARCH]}
    anthropic.queue_reply(AnthropicReply(content=PAUSED, stop_reason="pause_turn"))
    first = c.completion(**body)
    choice = first.choices[0]
    assert choice.finish_reason == "length"  # in OpenAI's enum: the answer is not whole
    assert choice.message.content == "Let me search for that."
    fields = first.model_dump()["choices"][0]["message"]["provider_specific_fields"]
    assert fields == {"native_finish_reason": "pause_turn", "content_blocks": PAUSED}
    assert first.cache.status == "miss"
    assert c.completion(**body).cache.status == "miss"  # not stored
    assert anthropic.count("/v1/messages") == 2


def test_sending_a_paused_turn_back_sends_its_blocks_in_order(
    anthropic: FakeAnthropicServer,
) -> None:
    c = anthropic_client(anthropic)
    body = {"model": ANTHROPIC, "max_tokens": 200, "messages": ask("News?"), "tools": [SEARCH]}
    anthropic.queue_reply(AnthropicReply(content=PAUSED, stop_reason="pause_turn"))
    paused = c.completion(**body).model_dump()["choices"][0]["message"]
    anthropic.queue_reply(AnthropicReply("Here is the news."))
    done = c.completion(**{**body, "messages": [*ask("News?"), paused]})
    assert done.choices[0].finish_reason == "stop"
    assert done.choices[0].message.provider_specific_fields is None
    sent = anthropic.requests[-1].body["messages"]
    assert sent[-1] == {"role": "assistant", "content": PAUSED}


def test_a_paused_stream_is_told_the_same_and_not_stored(
    anthropic: FakeAnthropicServer,
) -> None:
    c = anthropic_client(anthropic)
    body = {"model": ANTHROPIC, "max_tokens": 200, "messages": ask("News?"), "tools": [SEARCH]}
    anthropic.queue_reply(AnthropicReply(content=PAUSED, stop_reason="pause_turn"))
    chunks = [chunk.model_dump() for chunk in c.completion(stream=True, **body)]
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    streamed = assembler.response()["choices"][0]
    assert streamed["finish_reason"] == "length"
    assert streamed["message"]["provider_specific_fields"] == {
        "native_finish_reason": "pause_turn",
        "content_blocks": PAUSED,
    }
    anthropic.queue_reply(AnthropicReply(content=PAUSED, stop_reason="pause_turn"))
    assert c.completion(**body).cache.status == "miss"
    assert anthropic.count("/v1/messages") == 2


def test_a_stop_reason_newer_than_the_adapter_is_stop_and_kept() -> None:
    provider = AnthropicProvider()
    answer = {
        "id": "msg_1",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "something_new",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    response = provider.parse_response(answer, created=1)
    choice = response["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["provider_specific_fields"] == {
        "native_finish_reason": "something_new"
    }
    assert not AdmissionPolicy().admit(response).ok


# -- 2. abnormal Gemini and Bedrock stops -----------------------------------------------------


def first_choice(client: deja.Client, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """The first choice of ``client``'s answer to ``body``, streamed and assembled or not."""
    if not stream:
        return dict(client.completion(**body).model_dump()["choices"][0])
    assembler = StreamAssembler()
    for chunk in client.completion(stream=True, **body):
        assembler.add(chunk.model_dump())
    return dict(assembler.response()["choices"][0])


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("LANGUAGE", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("UNEXPECTED_TOOL_CALL", "stop"),
        ("TOO_MANY_TOOL_CALLS", "stop"),
        ("OTHER", "stop"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_abnormal_gemini_stops_map_to_openai_and_are_not_stored(
    reason: str, finish: str, stream: bool
) -> None:
    with FakeGeminiServer(api_key="AIza-test") as server:
        c = deja.Client(cache=deja.Cache(), api_base=server.url, api_key="AIza-test", max_retries=0)
        body = {"model": GEMINI, "messages": ask(reason)}
        for _ in range(2):
            server.queue_reply(GeminiReply("partial", finish_reason=reason))
            choice = first_choice(c, body, stream=stream)
            assert choice["finish_reason"] == finish
            fields = choice["message"]["provider_specific_fields"]
            assert fields == {"native_finish_reason": reason}
        assert server.count() == 2  # the second call went upstream too


def test_a_normal_gemini_stop_carries_no_provider_fields() -> None:
    response = GeminiProvider().parse_response(
        {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]},
        model="gemini-2.5-flash",
    )
    assert "provider_specific_fields" not in response["choices"][0]["message"]
    assert AdmissionPolicy().admit(response).ok


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrockServer]:
    pytest.importorskip("botocore")
    with FakeBedrockServer(credentials=CREDS, region="us-east-1") as server:
        aws_chain_env(monkeypatch, CREDS, "us-east-1", server.url)
        yield server


@pytest.mark.parametrize("reason", ["malformed_tool_use", "malformed_model_output"])
@pytest.mark.parametrize("stream", [False, True])
def test_abnormal_bedrock_stops_map_to_stop_and_are_not_stored(
    aws_env: FakeBedrockServer, reason: str, stream: bool
) -> None:
    c = deja.Client(cache=deja.Cache(), max_retries=0)
    body = {"model": BEDROCK, "messages": ask(reason)}
    for _ in range(2):
        aws_env.queue_reply(BedrockReply("partial", stop_reason=reason))
        choice = first_choice(c, body, stream=stream)
        assert choice["finish_reason"] == "stop"
        assert choice["message"]["provider_specific_fields"] == {"native_finish_reason": reason}
    assert len(aws_env.requests) == 2


@pytest.mark.parametrize(
    ("native", "stored"),
    [
        ("STOP", True),  # gateways that always report the native reason
        ("end_turn", True),
        ("MAX_TOKENS", True),
        ("pause_turn", False),
        ("MALFORMED_FUNCTION_CALL", False),
        ("malformed_model_output", False),
        ("OTHER", False),
    ],
)
def test_admission_reads_the_native_finish_reason(native: str, stored: bool) -> None:
    message = {
        "role": "assistant",
        "content": "partial",
        "provider_specific_fields": {"native_finish_reason": native},
    }
    response = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    verdict = AdmissionPolicy().admit(response)
    assert verdict.ok is stored
    if not stored:
        assert verdict.reason == "abnormal_stop"


# -- 3. null sampling parameters --------------------------------------------------------------


def test_null_sampling_parameters_are_not_sent_to_anthropic(
    anthropic: FakeAnthropicServer,
) -> None:
    c = anthropic_client(anthropic)
    answer = c.completion(
        model=ANTHROPIC,
        messages=ask("hi"),
        max_tokens=50,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    assert answer.choices[0].finish_reason == "stop"
    sent = anthropic.requests[-1].body
    assert not {"temperature", "top_p", "top_k"} & set(sent)
    assert None not in sent.values()


# -- 5. thinking budgets under the caller's limit; image/jpg ----------------------------------


@pytest.mark.parametrize(
    ("effort", "limit", "budget"),
    [("low", 1025, 1024), ("medium", 2000, 1999), ("high", 4096, 4095), ("high", 9000, 4096)],
)
def test_the_thinking_budget_fits_under_the_callers_limit(
    effort: str, limit: int, budget: int
) -> None:
    body, _, _ = AnthropicProvider().translate_request(
        {
            "model": ANTHROPIC,
            "messages": ask("hi"),
            "reasoning_effort": effort,
            "max_completion_tokens": limit,
        }
    )
    assert body["max_tokens"] == limit and body["thinking"]["budget_tokens"] == budget
    converse = (
        BedrockProvider()
        .translate_request(
            {
                "model": BEDROCK,
                "messages": ask("hi"),
                "reasoning_effort": effort,
                "max_tokens": limit,
            }
        )
        .json
    )
    assert converse["inferenceConfig"]["maxTokens"] == limit
    assert converse["additionalModelRequestFields"]["thinking"]["budget_tokens"] == budget


@pytest.mark.parametrize("limit", [500, 1024])
def test_a_limit_below_the_smallest_budget_is_refused_naming_both(limit: int) -> None:
    body = {"messages": ask("hi"), "reasoning_effort": "low", "max_tokens": limit}
    with pytest.raises(InvalidRequestError, match=rf"1024.*max_tokens is {limit}"):
        AnthropicProvider().translate_request({"model": ANTHROPIC, **body})
    with pytest.raises(InvalidRequestError, match=rf"1024.*max_tokens is {limit}"):
        BedrockProvider().translate_request({"model": BEDROCK, **body})


def test_reasoning_effort_on_a_non_claude_bedrock_model_is_still_only_warned() -> None:
    translation = BedrockProvider().translate_request(
        {
            "model": "bedrock/amazon.nova-pro-v1:0",
            "messages": ask("hi"),
            "reasoning_effort": "low",
            "max_tokens": 100,
        }
    )
    assert "thinking" not in translation.json.get("additionalModelRequestFields", {})
    assert any("reasoning_effort" in w for w in translation.warnings)


def test_a_jpg_data_url_is_sent_as_jpeg(anthropic: FakeAnthropicServer) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}}
    c = anthropic_client(anthropic)
    answer = c.completion(
        model=ANTHROPIC, messages=[{"role": "user", "content": [image]}], max_tokens=50
    )
    assert answer.choices[0].message.content
    block = anthropic.requests[-1].body["messages"][0]["content"][0]
    assert block["source"]["media_type"] == "image/jpeg"


# -- 4. Gemini 3 thinking levels --------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "effort", "level"),
    [
        ("gemini-3-flash-preview", "minimal", "minimal"),
        ("gemini-3-flash-preview", "low", "low"),
        ("gemini-3-flash-preview", "medium", "medium"),
        ("gemini-3-flash-preview", "high", "high"),
        ("gemini-3.1-flash-lite", "minimal", "minimal"),
        ("gemini-3.1-pro-preview", "minimal", "low"),
        ("gemini-3.1-pro-preview", "medium", "medium"),
        ("gemini-3-pro-preview", "minimal", "low"),
        ("gemini-3-pro-preview", "medium", "high"),
        ("gemini-3-pro-preview", "high", "high"),
    ],
)
def test_gemini_3_gets_the_documented_level(model: str, effort: str, level: str) -> None:
    body, _, warnings = GeminiProvider().translate_request(
        {"model": f"gemini/{model}", "messages": ask("hi"), "reasoning_effort": effort}
    )
    assert body["generationConfig"]["thinkingConfig"] == {
        "thinkingLevel": level,
        "includeThoughts": True,
    }
    assert warnings == []


def test_no_reasoning_on_gemini_3_flash_is_its_minimal_level() -> None:
    body, _, warnings = GeminiProvider().translate_request(
        {
            "model": "gemini/gemini-3-flash-preview",
            "messages": ask("hi"),
            "reasoning_effort": "none",
        }
    )
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "minimal"}
    assert warnings == [
        "reasoning_effort 'none': gemini-3-flash-preview cannot turn thinking off; "
        "sent as thinkingLevel minimal"
    ]


def test_no_reasoning_on_a_gemini_3_pro_is_still_not_sent() -> None:
    body, _, warnings = GeminiProvider().translate_request(
        {
            "model": "gemini/gemini-3.1-pro-preview",
            "messages": ask("hi"),
            "reasoning_effort": "none",
        }
    )
    assert "generationConfig" not in body
    assert warnings and "cannot turn thinking off" in warnings[0]


# -- 6. Gemini logprobs -----------------------------------------------------------------------

LOGPROBS_RESULT = {
    "topCandidates": [
        {
            "candidates": [
                {"token": "Hi", "tokenId": 1, "logProbability": -0.1},
                {"token": "Hello", "tokenId": 2, "logProbability": -2.5},
            ]
        },
        {"candidates": [{"token": "!", "tokenId": 3}]},
    ],
    "chosenCandidates": [
        {"token": "Hi", "tokenId": 1, "logProbability": -0.1},
        {"token": "!", "tokenId": 3},
    ],
}
OPENAI_LOGPROBS = {
    "content": [
        {
            "token": "Hi",
            "logprob": -0.1,
            "bytes": [72, 105],
            "top_logprobs": [
                {"token": "Hi", "logprob": -0.1, "bytes": [72, 105]},
                {"token": "Hello", "logprob": -2.5, "bytes": [72, 101, 108, 108, 111]},
            ],
        },
        {
            "token": "!",
            "logprob": 0.0,
            "bytes": [33],
            "top_logprobs": [{"token": "!", "logprob": 0.0, "bytes": [33]}],
        },
    ],
    "refusal": None,
}


def test_logprobs_are_sent_as_gemini_asks_for_them() -> None:
    body, _, warnings = GeminiProvider().translate_request(
        {"model": GEMINI, "messages": ask("hi"), "logprobs": True, "top_logprobs": 3}
    )
    assert body["generationConfig"] == {"responseLogprobs": True, "logprobs": 3}
    assert warnings == []
    body, _, _ = GeminiProvider().translate_request(
        {"model": GEMINI, "messages": ask("hi"), "logprobs": True, "top_logprobs": 0}
    )
    assert body["generationConfig"] == {"responseLogprobs": True}


def test_top_logprobs_without_logprobs_is_not_sent_with_a_warning() -> None:
    body, _, warnings = GeminiProvider().translate_request(
        {"model": GEMINI, "messages": ask("hi"), "top_logprobs": 3}
    )
    assert "generationConfig" not in body
    assert warnings == ["top_logprobs needs logprobs: true: not sent"]


def test_the_answers_logprobs_come_back_in_openai_shape_stream_or_not() -> None:
    candidate = {
        "content": {"role": "model", "parts": [{"text": "Hi!"}]},
        "finishReason": "STOP",
        "logprobsResult": LOGPROBS_RESULT,
    }
    whole = GeminiProvider().parse_response(
        {"responseId": "r1", "candidates": [candidate]}, model="gemini-2.5-flash", created=1
    )
    assert whole["choices"][0]["logprobs"] == OPENAI_LOGPROBS
    translator = GeminiStream(model="gemini-2.5-flash", created=1)
    assembler = StreamAssembler()
    for chunk in translator.feed({"responseId": "r1", "candidates": [candidate]}):
        assembler.add(chunk)
    for chunk in translator.finish():
        assembler.add(chunk)
    assert assembler.response()["choices"][0]["logprobs"] == OPENAI_LOGPROBS
