"""``deja_upstream_errors_total{provider,error}``: every failed upstream call (each
attempt) counted by the client, so a library user sees an outage as the proxy's operator
does. Before, an upstream answering 500 or 429 for minutes showed in no metric at all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import deja
from deja.testing import FakeOpenAIServer

ASK = [{"role": "user", "content": "Hi"}]


def _errors(metrics: deja.PrometheusMetrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["provider"], s.labels["error"]): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == "deja_upstream_errors_total"
    }


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def test_each_failed_attempt_is_counted_by_status_or_kind(upstream: FakeOpenAIServer) -> None:
    metrics = deja.PrometheusMetrics()
    client = deja.Client(
        api_base=upstream.base_url, api_key="sk-test", metrics=metrics, max_retries=2, backoff=0
    )
    upstream.fail_next(503, times=2)  # retried twice, then answered
    assert client.completion(model="gpt-4o", messages=ASK).choices[0].message.content
    upstream.fail_next(429, times=3, headers={"retry-after": "0"})
    with pytest.raises(deja.RateLimitError):
        client.completion(model="gpt-4o", messages=ASK)
    upstream.fail_next(400)  # not retried
    with pytest.raises(deja.BadRequestError):
        client.completion(model="gpt-4o", messages=ASK)
    upstream.drop_next(times=3)
    with pytest.raises(deja.UpstreamConnectionError):
        client.completion(model="gpt-4o", messages=ASK)
    once = deja.Client(
        api_base=upstream.base_url, api_key="sk-test", metrics=metrics, max_retries=0
    )
    upstream.delay_next(1.0)
    with pytest.raises(deja.UpstreamTimeoutError):
        once.completion(model="gpt-4o", messages=ASK, timeout=0.2)
    assert _errors(metrics) == {
        ("openai", "503"): 2,
        ("openai", "429"): 3,
        ("openai", "400"): 1,
        ("openai", "connection"): 3,
        ("openai", "timeout"): 1,
    }


async def test_the_async_client_counts_a_stream_failure_once(upstream: FakeOpenAIServer) -> None:
    metrics = deja.PrometheusMetrics()
    async with deja.AsyncClient(
        api_base=upstream.base_url, api_key="sk-test", metrics=metrics, max_retries=0
    ) as client:
        upstream.fail_next(500)
        with pytest.raises(deja.ServerError):
            await client.acompletion(model="gpt-4o", messages=ASK, stream=True)
        upstream.drop_next()
        with pytest.raises(deja.UpstreamConnectionError):
            await client.acompletion(model="gpt-4o", messages=ASK, stream=True)
        assert await client.acompletion(model="gpt-4o", messages=ASK)
    assert _errors(metrics) == {("openai", "500"): 1, ("openai", "connection"): 1}


@pytest.mark.parametrize(
    ("model", "body"),
    [
        ("gpt-4o", b"oops!"),  # not JSON
        # JSON, but not a message: the adapter cannot read it (it was raised, not counted)
        ("anthropic/claude-haiku-4-5", b'{"id": "msg_1", "type": "message"}'),
    ],
)
def test_a_success_the_client_cannot_use_is_a_bad_answer(model: str, body: bytes) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        metrics = deja.PrometheusMetrics()
        client = deja.Client(
            api_base=f"http://127.0.0.1:{server.server_port}/v1",
            api_key="sk-test",
            metrics=metrics,
            max_retries=0,
        )
        with pytest.raises(deja.ProviderError):
            client.completion(model=model, messages=ASK)
    finally:
        server.shutdown()
        server.server_close()
    provider = model.split("/", maxsplit=1)[0] if "/" in model else "openai"
    assert _errors(metrics) == {(provider, "bad_answer"): 1}


def test_null_metrics_take_the_call() -> None:
    assert deja.NullMetrics().upstream_error("openai", "500") is None
    assert isinstance(deja.NullMetrics(), deja.Metrics)
