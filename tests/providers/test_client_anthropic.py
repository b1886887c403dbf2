"""deja.Client with `anthropic/` models, against the local Anthropic server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import deja
from deja.prices import PriceTable
from deja.testing import FakeAnthropicServer

MODEL = "anthropic/claude-sonnet-4-5"
SYSTEM = "You are a meticulous assistant. " * 400  # ~3,000 tokens: above every model's minimum


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(api_key="sk-ant-test") as s:
        yield s


def client(server: FakeAnthropicServer, **kw: Any) -> deja.Client:
    return deja.Client(
        cache=deja.Cache(), api_base=server.url, api_key="sk-ant-test", max_retries=0, **kw
    )


def messages(question: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def test_chat_through_the_adapter_is_cached(server: FakeAnthropicServer) -> None:
    c = client(server)
    first = c.completion(model=MODEL, messages=messages("Hi"), max_tokens=100)
    second = c.completion(model=MODEL, messages=messages("Hi"), max_tokens=100)
    assert first.cache.status == "miss" and second.cache.status == "hit"
    assert first.object == "chat.completion" and first.choices[0].message.content
    assert second.model_dump() == first.model_dump()
    assert server.count("/v1/messages") == 1
    sent = server.requests[-1]
    assert sent.headers["x-api-key"] == "sk-ant-test" and "anthropic-version" in sent.headers
    system = sent.body["system"]
    assert (system if isinstance(system, str) else system[0]["text"]) == SYSTEM
    assert first.cache.cost_usd > 0


def test_injection_points_place_breakpoints_and_usage_reports_the_provider_cache(
    server: FakeAnthropicServer,
) -> None:
    c = client(server, cache_control_injection_points=[{"location": "message", "role": "system"}])
    first = c.completion(model=MODEL, messages=messages("one"), max_tokens=50)
    second = c.completion(model=MODEL, messages=messages("two"), max_tokens=50)
    assert server.requests[-1].body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.prompt_tokens_details.cached_tokens > 0  # the provider's own cache
    assert second.usage.prompt_tokens >= second.usage.prompt_tokens_details.cached_tokens


def provider_cache_usd(metrics: deja.PrometheusMetrics) -> tuple[float, float]:
    """Anthropic's (saved, write premium) counters, 0.0 for a series not yet created."""
    values = [
        metrics.registry.get_sample_value(name, {"provider": "anthropic"})
        for name in (
            "deja_provider_cache_saved_usd_total",
            "deja_provider_cache_write_premium_usd_total",
        )
    ]
    return values[0] or 0.0, values[1] or 0.0


def list_rates() -> tuple[float, float]:
    """USD per token a cache read saves, and a 5m cache write costs, against plain input."""
    price = PriceTable.default().lookup(MODEL)
    assert price is not None and price.cached_input is not None and price.cache_write is not None
    return (price.input - price.cached_input) / 1e6, (price.cache_write - price.input) / 1e6


def test_a_write_then_a_read_count_the_write_premium_and_the_read_saving(
    server: FakeAnthropicServer,
) -> None:
    metrics = deja.PrometheusMetrics()
    c = client(
        server,
        metrics=metrics,
        cache_control_injection_points=[{"location": "message", "role": "system"}],
    )
    read_saving, write_premium = list_rates()

    first = c.completion(model=MODEL, messages=messages("one"), max_tokens=50)
    written = first.usage.cache_creation_input_tokens
    assert written > 0 and first.usage.prompt_tokens_details.cached_tokens == 0
    assert provider_cache_usd(metrics) == (0.0, pytest.approx(written * write_premium))

    second = c.completion(model=MODEL, messages=messages("two"), max_tokens=50)
    read = second.usage.prompt_tokens_details.cached_tokens
    assert read == written and not second.usage.cache_creation_input_tokens
    saved, premium = provider_cache_usd(metrics)
    assert saved == pytest.approx(read * read_saving)
    assert premium == pytest.approx(written * write_premium)  # the read added no premium
    # the net is what the price table says the provider cache saved on the two answers
    prices = PriceTable.default()
    net = [prices.provider_cache_savings(MODEL, a.usage.model_dump()) for a in (first, second)]
    assert saved - premium == pytest.approx(sum(n for n in net if n is not None))


def test_an_answer_that_reads_and_writes_feeds_both_counters(server: FakeAnthropicServer) -> None:
    metrics = deja.PrometheusMetrics()
    points = [{"location": "message", "role": "system"}, {"location": "message", "index": -1}]
    c = client(server, metrics=metrics, cache_control_injection_points=points)
    read_saving, write_premium = list_rates()

    first = c.completion(model=MODEL, messages=messages("one"), max_tokens=50)
    second = c.completion(model=MODEL, messages=messages("another question"), max_tokens=50)
    written = first.usage.cache_creation_input_tokens
    read = second.usage.prompt_tokens_details.cached_tokens
    rewritten = second.usage.cache_creation_input_tokens  # the new question, after the read
    assert written > 0 and read > 0 and rewritten > 0
    saved, premium = provider_cache_usd(metrics)
    assert saved == pytest.approx(read * read_saving)
    assert premium == pytest.approx((written + rewritten) * write_premium)


def test_streams_translate_and_replay(server: FakeAnthropicServer) -> None:
    c = client(server)
    live = [
        chunk.model_dump()
        for chunk in c.completion(
            model=MODEL, messages=messages("stream"), max_tokens=60, stream=True
        )
    ]
    replay = [
        chunk.model_dump()
        for chunk in c.completion(
            model=MODEL, messages=messages("stream"), max_tokens=60, stream=True
        )
    ]
    assert replay == live
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in live if ch["choices"])
    plain = c.completion(model=MODEL, messages=messages("stream"), max_tokens=60)
    assert plain.cache.status == "hit" and plain.choices[0].message.content == text
    assert server.count("/v1/messages") == 1
    assert "stream_options" not in server.requests[-1].body


def test_anthropic_errors_are_typed(server: FakeAnthropicServer) -> None:
    bad = deja.Client(cache=deja.Cache(), api_base=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(deja.AuthenticationError):
        bad.completion(model=MODEL, messages=messages("x"), max_tokens=10)


def test_what_the_adapter_cannot_do_is_logged_once(
    server: FakeAnthropicServer, caplog: pytest.LogCaptureFixture
) -> None:
    c = client(server)
    short = [{"role": "user", "content": "Hi"}]
    with caplog.at_level("WARNING", logger="deja"):
        for seed in (3, 4):  # two requests, one warning
            c.completion(model=MODEL, messages=short, max_tokens=10, seed=seed)
    said = [r.getMessage() for r in caplog.records if "seed" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("anthropic:")
