"""deja.Client with `bedrock/` models, against the local Bedrock Converse server (SigV4 checked)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import deja
from deja.errors import ConfigError, RateLimitError, ServerError, UpstreamConnectionError
from deja.providers.bedrock import AwsCredentials
from deja.testing import BedrockReply, FakeBedrockServer
from tests.helpers import aws_chain_env

pytest.importorskip("botocore")

MODEL = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
OLD_MODEL = "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0"  # caches, but only for 5m
CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SYSTEM = "You answer questions about the ACME employee handbook. " * 300  # ~4k tokens


@pytest.fixture
def server() -> Iterator[FakeBedrockServer]:
    with FakeBedrockServer(credentials=CREDS, region="eu-west-1") as s:
        yield s


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, server: FakeBedrockServer) -> None:
    """The AWS chain as a deployment has it: keys, region and endpoint in the environment."""
    aws_chain_env(monkeypatch, CREDS, "eu-west-1", server.url)


def messages(question: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def test_a_signed_converse_call_is_cached(server: FakeBedrockServer, aws_env: None) -> None:
    c = deja.Client(cache=deja.Cache(), max_retries=0)
    first = c.completion(model=MODEL, messages=messages("Holidays?"), max_tokens=100)
    second = c.completion(model=MODEL, messages=messages("Holidays?"), max_tokens=100)
    assert first.cache.status == "miss" and second.cache.status == "hit"
    assert second.model_dump() == first.model_dump()
    assert first.object == "chat.completion" and first.choices[0].message.content
    assert first.choices[0].finish_reason == "stop"
    assert server.count("converse") == 1
    sent = server.requests[-1]
    assert sent.path == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert (
        sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
        and "/eu-west-1/bedrock/aws4_request" in sent.headers["authorization"]
    )
    assert sent.body["system"] == [{"text": SYSTEM}]
    assert sent.body["inferenceConfig"] == {"maxTokens": 100}
    assert first.id.startswith("chatcmpl-") and first.cache.cost_usd > 0


def test_keys_from_the_call_win_over_the_chain(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDWRONG")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    c = deja.Client(api_base=server.url, max_retries=0)
    reply = c.completion(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        aws_access_key_id=CREDS.access_key,
        aws_secret_access_key=CREDS.secret_key,
        aws_region_name="eu-west-1",
    )
    assert reply.choices[0].message.content
    assert "aws_access_key_id" not in server.requests[-1].raw.decode()


def test_a_wrong_secret_is_refused_by_the_signature_check(server: FakeBedrockServer) -> None:
    c = deja.Client(api_base=server.url, max_retries=0)
    with pytest.raises(deja.DejaError) as info:
        c.completion(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            aws_access_key_id=CREDS.access_key,
            aws_secret_access_key="not-the-secret",
            aws_region_name="eu-west-1",
        )
    assert getattr(info.value, "status_code", None) == 403
    assert "InvalidSignatureException" in str(info.value)


def test_no_region_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    c = deja.Client(api_base="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(ConfigError, match="region"):
        c.completion(
            model=MODEL,
            messages=[{"role": "user", "content": "Hi"}],
            aws_access_key_id="AKID",
            aws_secret_access_key="secret",
        )


def test_cache_points_from_injection_points_and_usage_in_one_schema(
    server: FakeBedrockServer, aws_env: None
) -> None:
    metrics = deja.PrometheusMetrics()
    c = deja.Client(
        max_retries=0,
        metrics=metrics,
        cache_control_injection_points=[{"location": "message", "role": "system"}],
    )
    first = c.completion(model=MODEL, messages=messages("one"), max_tokens=50)
    second = c.completion(model=MODEL, messages=messages("two"), max_tokens=50)
    assert server.requests[-1].body["system"] == [
        {"text": SYSTEM},
        {"cachePoint": {"type": "default"}},
    ]
    assert first.usage.cache_creation_input_tokens > 0
    assert (
        second.usage.prompt_tokens_details.cached_tokens == first.usage.cache_creation_input_tokens
    )
    assert second.usage.prompt_tokens > second.usage.prompt_tokens_details.cached_tokens
    text = metrics.render().decode()
    assert 'deja_provider_cached_tokens_total{kind="read",provider="bedrock"}' in text
    assert 'deja_provider_cache_saved_usd_total{provider="bedrock"}' in text
    assert 'deja_provider_cache_write_premium_usd_total{provider="bedrock"}' in text


def test_a_1h_lifetime_is_kept_or_downgraded_with_a_metric(
    server: FakeBedrockServer, aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = deja.PrometheusMetrics()
    c = deja.Client(
        max_retries=0,
        metrics=metrics,
        cache_control_injection_points=[{"location": "message", "role": "system", "ttl": "1h"}],
    )
    c.completion(model=MODEL, messages=messages("one"), max_tokens=50)
    assert server.requests[-1].body["system"][-1] == {
        "cachePoint": {"type": "default", "ttl": "1h"}
    }
    c.completion(model=OLD_MODEL, messages=messages("one"), max_tokens=50)
    assert server.requests[-1].body["system"][-1] == {"cachePoint": {"type": "default"}}
    assert 'deja_provider_cache_ttl_downgrades_total{provider="bedrock"} 1.0' in (
        metrics.render().decode()
    )
    assert any("1h" in r.getMessage() and "bedrock" in r.getMessage() for r in caplog.records)


def test_streams_are_decoded_translated_and_replayed(
    server: FakeBedrockServer, aws_env: None
) -> None:
    c = deja.Client(cache=deja.Cache(), max_retries=0)
    server.queue_reply(BedrockReply("Twenty-five days a year, plus public holidays."))
    live = list(c.completion(model=MODEL, messages=messages("Holidays?"), stream=True))
    assert server.count("converse-stream") == 1
    assert server.requests[-1].path.endswith("/converse-stream")
    text = "".join(chunk.choices[0].delta.content or "" for chunk in live if chunk.choices)
    assert text == "Twenty-five days a year, plus public holidays."
    finishes = [chunk.choices[0].finish_reason for chunk in live if chunk.choices]
    assert [f for f in finishes if f] == ["stop"]
    replay = list(c.completion(model=MODEL, messages=messages("Holidays?"), stream=True))
    assert server.count("converse-stream") == 1  # a hit
    assert [x.model_dump() for x in replay] == [x.model_dump() for x in live]
    whole = c.completion(model=MODEL, messages=messages("Holidays?"))
    assert whole.cache.status == "hit" and whole.choices[0].message.content == text


def test_stream_exceptions_are_typed_and_nothing_is_stored(
    server: FakeBedrockServer, aws_env: None
) -> None:
    c = deja.Client(cache=deja.Cache(), max_retries=0)
    server.queue_reply(
        BedrockReply("Some text", stream_exception="throttlingException", exception_after=3)
    )
    with pytest.raises(RateLimitError):
        list(c.completion(model=MODEL, messages=messages("a"), stream=True))
    server.queue_reply(BedrockReply("Some longer text here", abort_after_events=3))
    with pytest.raises(UpstreamConnectionError, match="broke off"):
        list(c.completion(model=MODEL, messages=messages("a"), stream=True))
    assert c.completion(model=MODEL, messages=messages("a")).cache.status == "miss"


def test_throttling_is_retried_then_typed(server: FakeBedrockServer, aws_env: None) -> None:
    c = deja.Client(max_retries=1, backoff=0.0)
    server.fail_next(429, times=1)
    assert c.completion(model=MODEL, messages=messages("x")).choices[0].message.content
    server.fail_next(500, times=2)
    with pytest.raises(ServerError):
        c.completion(model=MODEL, messages=messages("y"))


@pytest.mark.parametrize(
    ("exception", "after"),
    [
        # ConverseStream answers 200, then the exception as its first event: nothing was
        # passed on, so the stream is retried as a plain call's 429 is
        ("throttlingException", 0),
        # messageStart (a chunk with the role only: nothing of the answer), then the
        # throttle: the start counted as "the first chunk", and the 429 went to the caller
        ("throttlingException", 1),
        # modelStreamErrorException (424): "A streaming error occurred. Retry your request."
        ("modelStreamErrorException", 0),
    ],
)
def test_a_stream_failing_before_any_of_the_answer_is_retried(
    server: FakeBedrockServer, aws_env: None, exception: str, after: int
) -> None:
    c = deja.Client(cache=deja.Cache(), max_retries=1, backoff=0.0)
    server.queue_reply(BedrockReply("never", stream_exception=exception, exception_after=after))
    stream = c.completion(model=MODEL, messages=messages("a"), stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert stream.cache.status == "miss" and text and server.count() == 2


def test_a_streams_sends_and_first_event_share_max_retries(
    server: FakeBedrockServer, aws_env: None
) -> None:
    # a 429 answer, then a throttling event: two failures, and max_retries=1 allows one retry
    c = deja.Client(max_retries=1, backoff=0.0)
    server.fail_next(429)
    server.queue_reply(BedrockReply("never", stream_exception="throttlingException"), times=2)
    with pytest.raises(RateLimitError):
        c.completion(model=MODEL, messages=messages("a"), stream=True)
    assert server.count() == 2


def test_a_model_failure_is_one_error_class_streamed_or_not(
    server: FakeBedrockServer, aws_env: None
) -> None:
    # ModelErrorException (424) and ModelTimeoutException (408), plain and mid-stream
    c = deja.Client(max_retries=0)
    server.fail_next(424)
    with pytest.raises(ServerError):
        c.completion(model=MODEL, messages=messages("a"))
    server.queue_reply(
        BedrockReply("Some text", stream_exception="modelStreamErrorException", exception_after=1)
    )
    with pytest.raises(ServerError):
        list(c.completion(model=MODEL, messages=messages("a"), stream=True))
    server.fail_next(408)
    with pytest.raises(deja.UpstreamTimeoutError):
        c.completion(model=MODEL, messages=messages("a"))


async def test_async_client(server: FakeBedrockServer, aws_env: None) -> None:
    async with deja.AsyncClient(cache=deja.AsyncCache(), max_retries=0) as c:
        first = await c.acompletion(model=MODEL, messages=messages("Holidays?"))
        second = await c.acompletion(model=MODEL, messages=messages("Holidays?"))
        assert second.cache.status == "hit" and second.model_dump() == first.model_dump()
        stream = await c.acompletion(model=MODEL, messages=messages("Sick leave?"), stream=True)
        chunks = [chunk async for chunk in stream]
        assert chunks and server.count("converse-stream") == 1


def test_embeddings_are_refused_clearly(aws_env: None) -> None:
    with pytest.raises(deja.DejaError, match="chat completions only"):
        deja.Client().embedding(model="bedrock/amazon.titan-embed-text-v2:0", input=["x"])
