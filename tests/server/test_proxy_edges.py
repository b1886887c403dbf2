"""The proxy where a user's mistake or an upstream's misbehaviour meets it: LiteLLM's
``default_off`` mode, admin calls without a tenant or through hooks, upstreams that answer
2xx with something unusable, ill-typed request fields, and the headers of partial answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

import deja
from deja.config import build_cache, parse_config
from deja.testing import FakeOpenAIServer
from tests.server.conftest import MASTER, TEAM_A, TEAM_B, proxy_config

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Capital of Peru?"}]}
ADMIN = {"authorization": f"Bearer {MASTER}"}


def as_team(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _default_off(upstream: FakeOpenAIServer) -> dict[str, Any]:
    """A proxy caching in LiteLLM's ``default_off`` mode: only the requests that opt in."""
    config = proxy_config(upstream)
    del config["caching"]
    config["litellm_settings"] = {
        "cache": True,
        "cache_params": {"type": "local", "mode": "default_off"},
    }
    return config


async def test_default_off_caches_only_the_requests_that_opt_in(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    config = _default_off(upstream)
    async with make_proxy(config) as proxy:
        plain = [await proxy.post(CHAT, json=BODY) for _ in range(2)]
        assert [r.headers["x-deja-cache"] for r in plain] == ["bypass", "bypass"]
        opted = {**BODY, "cache": {"use-cache": True}}
        answers = [await proxy.post(CHAT, json=opted) for _ in range(2)]
        assert [r.headers["x-deja-cache"] for r in answers] == ["miss", "hit"]
        # and what a plain request fetched was not stored for the opted-in ones either
        assert upstream.count(CHAT) == 3


async def test_litellms_caching_switch_in_the_body_is_a_control_never_sent(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    # it went upstream (OpenAI refuses unknown fields), keyed, and switched nothing
    config = _default_off(upstream)
    async with make_proxy(config) as proxy:
        opted = [await proxy.post(CHAT, json={**BODY, "caching": True}) for _ in range(2)]
        assert [r.headers["x-deja-cache"] for r in opted] == ["miss", "hit"]
        assert all("caching" not in r.body for r in upstream.requests)
    async with make_proxy(proxy_config(upstream)) as proxy:
        off = [await proxy.post(CHAT, json={**BODY, "caching": False}) for _ in range(2)]
        assert [r.headers["x-deja-cache"] for r in off] == ["bypass", "bypass"]
        wrong = await proxy.post(CHAT, json={**BODY, "caching": "yes"})
        assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "caching"
        # the admin routes read a request body as the data routes do (review: keyed there)
        stored = await proxy.post(CHAT, json={**BODY, "caching": True})
        named = {"request": {**BODY, "caching": True}, "tenant": "team-a"}
        explained = await proxy.post("/cache/explain", json=named, headers=ADMIN)
        assert explained.json()["key"] == stored.headers["x-deja-cache-key"]
        deleted = await proxy.post("/cache/delete", json=named, headers=ADMIN)
        assert deleted.json()["deleted"] is True


def test_default_off_in_the_library() -> None:
    cache = deja.Cache(mode="default_off")
    request = deja.Request.chat(model="gpt-4o", messages=BODY["messages"])
    response = {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Lima."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    assert cache.put(request, response) is False
    assert cache.get(request).info.status == "bypass"
    assert cache.put(request, response, control={"use-cache": True}) is True
    assert cache.get(request, control={"use-cache": True}).info.status == "hit"
    with pytest.raises(ValueError, match="mode"):
        deja.Cache(mode="sometimes")  # type: ignore[arg-type]


async def test_tag_invalidation_reaches_every_namespace(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    plain = {**BODY, "cache": {"tags": ["doc:42"]}}
    spaced = {**BODY, "cache": {"tags": ["doc:42"], "namespace": "faq-v2"}}
    for body in (plain, spaced):
        assert (await proxy.post(CHAT, json=body)).headers["x-deja-cache"] == "miss"
    gone = await proxy.post("/cache/invalidate", json={"tag": "doc:42"}, headers=ADMIN)
    assert gone.json() == {"deleted": 2}
    for body in (plain, spaced):
        assert (await proxy.post(CHAT, json=body)).headers["x-deja-cache"] == "miss"
    one = await proxy.post(
        "/cache/invalidate", json={"tag": "doc:42", "namespace": "faq-v2"}, headers=ADMIN
    )
    assert one.json() == {"deleted": 1}


async def test_invalidation_without_a_tenant_reaches_every_tenant(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    tagged = {**BODY, "cache": {"tags": ["doc:42"]}}
    spaced = {**BODY, "cache": {"namespace": "faq-v2"}}
    for key in (TEAM_A, TEAM_B):
        for body in (tagged, spaced):
            assert (await proxy.post(CHAT, json=body, headers=as_team(key))).status_code == 200
    by_tag = await proxy.post("/cache/invalidate", json={"tag": "doc:42"}, headers=ADMIN)
    assert by_tag.json() == {"deleted": 2}
    by_space = await proxy.post("/cache/invalidate", json={"namespace": "faq-v2"}, headers=ADMIN)
    assert by_space.json() == {"deleted": 2}
    for key in (TEAM_A, TEAM_B):
        for body in (tagged, spaced):
            again = await proxy.post(CHAT, json=body, headers=as_team(key))
            assert again.headers["x-deja-cache"] == "miss"
    # one tenant named: that tenant's only
    one = await proxy.post(
        "/cache/invalidate", json={"tag": "doc:42", "tenant": "team-b"}, headers=ADMIN
    )
    assert one.json() == {"deleted": 1}
    kept = await proxy.post(CHAT, json=tagged, headers=as_team(TEAM_A))
    assert kept.headers["x-deja-cache"] == "hit"


async def test_delete_by_request_without_a_tenant_deletes_each_tenants_entry(
    proxy: httpx2.AsyncClient,
) -> None:
    keys = []
    for key in (TEAM_A, TEAM_B):
        keys.append(
            (await proxy.post(CHAT, json=BODY, headers=as_team(key))).headers["x-deja-cache-key"]
        )
    deleted = (await proxy.post("/cache/delete", json={"request": BODY}, headers=ADMIN)).json()
    assert deleted["deleted"] is True and sorted(deleted["keys"]) == sorted(keys)
    for key in (TEAM_A, TEAM_B):
        answer = await proxy.post(CHAT, json=BODY, headers=as_team(key))
        assert answer.headers["x-deja-cache"] == "miss"
    nothing = (
        await proxy.post("/cache/delete", json={"request": {**BODY, "seed": 7}}, headers=ADMIN)
    ).json()
    assert nothing["deleted"] is False and nothing["keys"] == []


async def test_admin_requests_go_through_the_pre_llm_hooks(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    (tmp_path / "brief.py").write_text(
        "def pre(request):\n"
        "    request['messages'] = [{'role': 'system', 'content': 'Be brief.'}]"
        " + request['messages']\n"
        "    return request\n"
    )
    config = proxy_config(upstream, hooks=[{"path": "brief.py", "async_pre_llm_hook": "pre"}])
    async with make_proxy(config) as proxy:
        key = (await proxy.post(CHAT, json=BODY)).headers["x-deja-cache-key"]
        explained = await proxy.post(
            "/cache/explain", json={"request": BODY, "tenant": "team-a"}, headers=ADMIN
        )
        assert explained.json()["key"] == key
        deleted = await proxy.post(
            "/cache/delete", json={"request": BODY, "tenant": "team-a"}, headers=ADMIN
        )
        assert deleted.json()["deleted"] is True and deleted.json()["key"] == key
        assert (await proxy.post(CHAT, json=BODY)).headers["x-deja-cache"] == "miss"


class _Misbehaving(BaseHTTPRequestHandler):
    """Answers every POST 200 with what ``server.answer`` says: ``html``; ``cut`` (an
    event stream that ends cleanly before any finish reason or ``[DONE]``); ``cut_n2``
    (two choices, the stream ending after the first finished); ``bad_first`` / ``bad_late``
    (a data line that is not JSON, first or after a chunk)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        kind = self.server.answer  # type: ignore[attr-defined]

        def event(index: int, content: str, finish: str | None = None) -> bytes:
            choice = {"index": index, "delta": {"content": content}, "finish_reason": finish}
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-4o",
                "choices": [choice],
            }
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        ctype = "text/event-stream"
        if kind == "html":
            body, ctype = b"<html><body>Gateway login</body></html>", "text/html"
        elif kind == "cut_n2":
            body = event(0, "Li") + event(1, "Pa") + event(0, "", "stop") + event(1, "ri")
        elif kind == "cut_prompts":  # completions of two prompts, cut after the first's end
            body = b"".join(
                b"data: "
                + orjson.dumps(
                    {
                        "id": "p1",
                        "object": "text_completion",
                        "created": 1,
                        "model": "gpt-4o",
                        "choices": [
                            {"index": 0, "text": text, "logprobs": None, "finish_reason": end}
                        ],
                    }
                )
                + b"\n\n"
                for text, end in (("Paris", None), ("", "stop"))
            )
        elif kind == "bad_first":
            body = b"data: {nope}\n\n"
        elif kind == "bad_late":  # (the bad line a moment after the first chunk)
            body = event(0, "Li") + b"data: {nope}\n\n"
        else:
            body = event(0, "Li")
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if kind == "bad_late":
            first = body.index(b"\n\n") + 2
            self.wfile.write(body[:first])
            self.wfile.flush()
            time.sleep(0.3)
            body = body[first:]
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def misbehaving() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _pointed_at(upstream: FakeOpenAIServer, server: ThreadingHTTPServer) -> dict[str, Any]:
    config = proxy_config(upstream)
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    config["model_list"][0]["litellm_params"]["api_base"] = base
    return config


async def test_a_2xx_that_is_not_an_answer_is_a_bad_gateway(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    misbehaving: ThreadingHTTPServer,
) -> None:
    misbehaving.answer = "html"  # type: ignore[attr-defined]
    async with make_proxy(_pointed_at(upstream, misbehaving)) as proxy:
        plain = await proxy.post(CHAT, json=BODY)
        assert plain.status_code == 502
        assert plain.json()["error"]["type"] == "server_error"
        streamed = await proxy.post(CHAT, json={**BODY, "stream": True})
        assert streamed.status_code == 502
        assert "without any event" in streamed.json()["error"]["message"]
        assert "text/html" in streamed.json()["error"]["message"]


async def test_a_stream_answered_with_json_reports_the_upstream_error(
    upstream: FakeOpenAIServer, proxy: httpx2.AsyncClient
) -> None:
    upstream.fail_next(200, body={"error": {"message": "quota exhausted", "type": "x"}})
    streamed = await proxy.post(CHAT, json={**BODY, "stream": True})
    assert streamed.status_code == 502
    assert "quota exhausted" in streamed.json()["error"]["message"]
    upstream.fail_next(200, body={"id": "x", "object": "chat.completion", "choices": []})
    streamed = await proxy.post(CHAT, json={**BODY, "stream": True})
    assert streamed.status_code == 502


async def test_a_stream_that_ends_before_its_last_chunk_ends_in_an_error_event(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    misbehaving: ThreadingHTTPServer,
) -> None:
    misbehaving.answer = "cut"  # type: ignore[attr-defined]
    async with make_proxy(_pointed_at(upstream, misbehaving)) as proxy:
        streamed = await proxy.post(CHAT, json={**BODY, "stream": True})
        assert streamed.status_code == 200  # the first chunk went out before the end
        events = [e for e in streamed.text.split("\n\n") if e]
        assert events[0].startswith("data: {") and '"Li"' in events[0]
        assert "ended before its last chunk" in events[-1] and events[-1] != "data: [DONE]"
        again = await proxy.post(CHAT, json={**BODY, "stream": True})
        assert again.headers["x-deja-cache"] == "miss"  # nothing was stored


async def test_a_stream_of_two_choices_cut_after_the_first_ends_in_an_error_event(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    misbehaving: ThreadingHTTPServer,
) -> None:
    """One choice's finish reason ended the whole stream: the second choice, cut in the
    middle, went out followed by [DONE] as if complete."""
    misbehaving.answer = "cut_n2"  # type: ignore[attr-defined]
    async with make_proxy(_pointed_at(upstream, misbehaving)) as proxy:
        streamed = await proxy.post(CHAT, json={**BODY, "stream": True, "n": 2})
        events = [e for e in streamed.text.split("\n\n") if e]
        assert "choice 1 without a finish reason" in events[-1]
        assert "data: [DONE]" not in events
        again = await proxy.post(CHAT, json={**BODY, "stream": True, "n": 2})
        assert again.headers["x-deja-cache"] == "miss"  # nothing was stored


async def test_a_completions_stream_of_two_prompts_cut_after_the_first_is_not_stored(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    misbehaving: ThreadingHTTPServer,
) -> None:
    """A list ``prompt`` asks for a choice per prompt: cut after the first's finish reason,
    the stream counted one choice asked for, went out whole and was stored, and every later
    caller got one answer for two prompts."""
    misbehaving.answer = "cut_prompts"  # type: ignore[attr-defined]
    body = {"model": "gpt-4o", "prompt": ["Capital of France?", "Capital of Spain?"]}
    async with make_proxy(_pointed_at(upstream, misbehaving)) as proxy:
        streamed = await proxy.post("/v1/completions", json={**body, "stream": True})
        events = [e for e in streamed.text.split("\n\n") if e]
        assert "choice 1 without a finish reason" in events[-1]
        assert "data: [DONE]" not in events
        again = await proxy.post("/v1/completions", json={**body, "stream": True})
        assert again.headers["x-deja-cache"] == "miss"  # nothing was stored


async def test_a_stream_that_is_not_well_formed_is_a_bad_gateway(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    misbehaving: ThreadingHTTPServer,
) -> None:
    """A data line that is not JSON was a 500 (before the first chunk) or an exception out
    of the ASGI app that cut the connection (after it)."""
    async with make_proxy(_pointed_at(upstream, misbehaving)) as proxy:
        misbehaving.answer = "bad_first"  # type: ignore[attr-defined]
        first = await proxy.post(CHAT, json={**BODY, "stream": True})
        assert first.status_code == 502
        assert "not well formed" in first.json()["error"]["message"]
        misbehaving.answer = "bad_late"  # type: ignore[attr-defined]
        late = await proxy.post(CHAT, json={**BODY, "stream": True})
        assert late.status_code == 200
        events = [e for e in late.text.split("\n\n") if e]
        assert '"Li"' in events[0] and "not well formed" in events[-1]


async def test_upstream_failures_tell_callers_no_address_or_credentials(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    misbehaving: ThreadingHTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = proxy_config(upstream)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    params = config["model_list"][0]["litellm_params"]
    params["api_base"] = f"http://svc:S3cr3t@127.0.0.1:{port}/v1?api_key=k3y"
    async with make_proxy(config) as proxy:
        for stream in (False, True):
            answer = await proxy.post(CHAT, json={**BODY, "stream": stream})
            assert answer.status_code == 502
            message = answer.json()["error"]["message"]
            assert message == "cannot reach the upstream"
    logged = caplog.text
    assert f"127.0.0.1:{port}" in logged and "S3cr3t" not in logged and "k3y" not in logged
    misbehaving.answer = "cut"  # type: ignore[attr-defined]
    params["api_base"] = f"http://svc:S3cr3t@127.0.0.1:{misbehaving.server_address[1]}/v1"
    async with make_proxy(config) as proxy:
        streamed = await proxy.post(CHAT, json={**BODY, "stream": True})
        last = [e for e in streamed.text.split("\n\n") if e][-1]
        assert "the upstream ended before its last chunk" in last.replace("stream from ", "")
        assert "S3cr3t" not in streamed.text and "127.0.0.1" not in streamed.text


async def test_an_upstream_refusing_the_deployments_key_is_a_bad_gateway(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    for status in (401, 403):
        upstream.fail_next(status)
        answer = await proxy.post(CHAT, json=BODY)
        # not the caller's key: an SDK would tell the caller to fix theirs
        assert answer.status_code == 502
        error = answer.json()["error"]
        assert error["code"] == "upstream_auth_failed" and "sk-" not in error["message"]
        # the same call meets it again: OpenAI's SDKs retry a 502 twice unless told
        assert answer.headers["x-should-retry"] == "false"


async def test_a_field_nested_too_deep_to_send_is_a_400(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    nested = '"x"'
    for _ in range(300):
        nested = '{"a":' + nested + "}"
    for field in ("metadata", "tools"):  # unkeyed, keyed
        raw = orjson.dumps(BODY)[:-1] + f',"{field}":{nested}}}'.encode()
        answer = await proxy.post(CHAT, content=raw, headers={"content-type": "application/json"})
        assert answer.status_code == 400, answer.text
    assert upstream.count(CHAT) == 0


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "s3://payroll/2025.png"}},
        {"type": "image_url", "image_url": "s3://payroll/2025.png"},  # the adapters take it
        {"type": "file", "file": {"file_data": "gs://payroll/2025.pdf"}},
        {"type": "file", "file": {"file_id": "GS://payroll/2025.pdf"}},
        {"image": {"format": "png", "source": {"s3Location": {"uri": "s3://payroll/a.png"}}}},
    ],
)
async def test_storage_urls_are_refused_unless_the_deployment_allows_them(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    part: dict[str, Any],
) -> None:
    # Bedrock and Vertex read s3:// and gs:// objects with the deployment's own identity
    body = {
        **BODY,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Sum"}, part]}],
    }
    config = proxy_config(upstream)
    async with make_proxy(config) as proxy:
        refused = await proxy.post(CHAT, json=body)
        assert refused.status_code == 400 and "allow_storage_urls" in refused.text
        assert upstream.count(CHAT) == 0
        text = {**BODY, "messages": [{"role": "user", "content": "what is s3://x/y?"}]}
        assert (await proxy.post(CHAT, json=text)).status_code == 200  # words are no file
    config["model_list"][0]["litellm_params"]["allow_storage_urls"] = True
    async with make_proxy(config) as proxy:
        allowed = await proxy.post(CHAT, json=body)
        assert "allow_storage_urls" not in allowed.text  # (a Converse block is no OpenAI part)
        assert allowed.status_code == (200 if "type" in part else 400)


@pytest.mark.parametrize(
    ("field", "value"),
    [  # the provider's own fields, which adapters pass through as they are
        ("systemInstruction", {"parts": [{"fileData": {"fileUri": "gs://payroll/2025.pdf"}}]}),
        ("contents", [{"role": "user", "parts": [{"file_data": {"file_uri": "gs://p/a.pdf"}}]}]),
        ("system", [{"type": "document", "source": {"type": "url", "url": "s3://p/a.pdf"}}]),
    ],
)
async def test_storage_urls_in_native_fields_are_refused_too(
    upstream: FakeOpenAIServer, proxy: httpx2.AsyncClient, field: str, value: Any
) -> None:
    # only the messages were searched: Vertex read a gs:// systemInstruction file with the
    # proxy's service account
    refused = await proxy.post(CHAT, json={**BODY, field: value})
    assert refused.status_code == 400 and "allow_storage_urls" in refused.text
    assert refused.json()["error"]["param"] == field
    assert upstream.count(CHAT) == 0


def test_library_errors_name_the_upstream_without_credentials() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = deja.Client(
        api_base=f"http://svc:S3cr3t@127.0.0.1:{port}/v1?token=t0k", api_key="x", max_retries=0
    )
    with pytest.raises(deja.UpstreamConnectionError) as caught:
        client.completion(model="gpt-4o", messages=BODY["messages"])
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in str(caught.value)
    assert "S3cr3t" not in str(caught.value) and "t0k" not in str(caught.value)
    assert caught.value.url == f"http://127.0.0.1:{port}/v1/chat/completions"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", "false"),
        ("temperature", "hot"),
        ("max_tokens", 1.5),
        ("n", True),
        ("stop", 5),
        ("messages", []),
    ],
)
async def test_ill_typed_fields_are_a_400(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer, field: str, value: Any
) -> None:
    answer = await proxy.post(CHAT, json={**BODY, field: value})
    assert answer.status_code == 400, answer.text
    assert field.rstrip("s") in answer.json()["error"]["message"]
    assert upstream.count(CHAT) == 0


async def test_the_completions_endpoints_logprobs_is_a_count(
    proxy: httpx2.AsyncClient, upstream: FakeOpenAIServer
) -> None:
    legacy = {"model": "gpt-4o", "prompt": "Say hi"}
    for count in (0, 2):
        answer = await proxy.post("/v1/completions", json={**legacy, "logprobs": count})
        assert answer.status_code == 200, answer.text
    assert upstream.requests[-1].body["logprobs"] == 2
    refused = await proxy.post("/v1/completions", json={**legacy, "logprobs": True})
    assert refused.status_code == 400 and "an integer" in refused.json()["error"]["message"]
    chat = await proxy.post(CHAT, json={**BODY, "logprobs": 2})
    assert chat.status_code == 400 and "a boolean" in chat.json()["error"]["message"]


def test_ill_typed_fields_are_a_typed_error_in_the_library() -> None:
    with pytest.raises(deja.InvalidRequestError, match="temperature"):
        deja.Request.chat(model="gpt-4o", messages=BODY["messages"], temperature="hot")
    assert deja.Request.chat(model="gpt-4o", messages=BODY["messages"], temperature=None)


async def test_a_streamed_miss_leaves_its_unknown_cost_out(proxy: httpx2.AsyncClient) -> None:
    first = await proxy.post(CHAT, json={**BODY, "stream": True})
    second = await proxy.post(CHAT, json={**BODY, "stream": True})
    assert first.headers["x-deja-cache"] == "miss" and "x-deja-cost-usd" not in first.headers
    assert second.headers["x-deja-cache"] == "hit" and second.headers["x-deja-cost-usd"] == (
        "0.00000000"
    )


async def test_embeddings_say_how_many_items_came_from_the_cache(
    proxy: httpx2.AsyncClient,
) -> None:
    body = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    first = await proxy.post("/v1/embeddings", json=body)
    assert first.headers["x-deja-cached-items"] == "0/2"
    more = await proxy.post("/v1/embeddings", json={**body, "input": ["a", "b", "c"]})
    assert more.headers["x-deja-cache"] == "miss" and more.headers["x-deja-cached-items"] == "2/3"


async def test_admin_changes_warn_when_they_reach_one_workers_memory(
    proxy: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from deja.server import workers

    monkeypatch.setenv(workers.MULTIPROC_ENV, str(tmp_path))
    flushed = (await proxy.post("/cache/flush", headers=ADMIN)).json()
    assert "only the worker that answered" in flushed["warning"]


def test_a_disk_directory_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    settings = parse_config(
        {"caching": {"type": "disk", "directory": str(blocker / "cache")}}, base_dir=tmp_path
    )
    with pytest.raises(deja.ConfigError, match="cannot create the disk cache directory"):
        build_cache(settings)


def test_key_for_keys_the_endpoint_a_client_calls(
    upstream: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-up")
    cache = deja.Cache()
    with deja.Client(cache=cache, max_retries=0) as client:
        client.completion(model="gpt-4o", messages=BODY["messages"], temperature=0)
        key = cache.key_for(model="gpt-4o", messages=BODY["messages"], temperature=0)
        assert cache.delete(key) is True
        again = client.completion(model="gpt-4o", messages=BODY["messages"], temperature=0)
        assert again.cache.status == "miss"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "hook",
    [
        "def post(response, request):\n    raise ValueError('post boom')\n",
        "def post(response, request):\n    return {'tagz': ['x']}\n",
        "def post(response, request):\n    return {'no-store': True}\n",
        # the key is chosen before the call: a hook cannot move the answer elsewhere
        "def post(response, request):\n    return {'namespace': 'elsewhere'}\n",
    ],
)
async def test_a_failing_post_cache_hook_serves_the_answer_and_stores_nothing(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    hook: str,
    stream: bool,
) -> None:
    (tmp_path / "bad_hook.py").write_text(hook)
    config = proxy_config(
        upstream, hooks=[{"path": "bad_hook.py", "async_post_cache_hook": "post"}]
    )
    body = {**BODY, "stream": True} if stream else BODY
    async with make_proxy(config) as proxy:
        with caplog.at_level("WARNING", logger="deja"):
            answers = [await proxy.post(CHAT, json=body) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]  # paid for: served
    assert [a.headers["x-deja-cache"] for a in answers] == ["miss", "miss"]  # not stored
    assert upstream.count("/v1/chat/completions") == 2
    if "no-store" not in hook:
        assert any("not stored" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "hook",
    [
        "def post(response, request):\n    response['seen'] = {1, 2}\n",
        "def post(response, request):\n"
        "    response['choices'][0]['message']['content'] = object()\n"
        "    raise ValueError('after the damage')\n",
    ],
    ids=["a set", "an object, then raises"],
)
async def test_a_post_cache_hook_that_leaves_the_answer_unwritable_serves_it_as_it_came(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    hook: str,
    stream: bool,
) -> None:
    """A hook that puts what JSON cannot write into the answer (a set, an object): the
    answer was paid for, so it is served as the upstream sent it (a plain call was a 500)
    and not stored; the log names the hook."""
    from deja.testing import Reply

    upstream.reply_with(lambda body: Reply("Lima."))
    (tmp_path / "unwritable.py").write_text(hook)
    config = proxy_config(
        upstream, hooks=[{"path": "unwritable.py", "async_post_cache_hook": "post"}]
    )
    body = {**BODY, "stream": True} if stream else BODY
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answers = [await proxy.post(CHAT, json=body) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-deja-cache"] for a in answers] == ["miss", "miss"]  # not stored
    assert upstream.count("/v1/chat/completions") == 2
    if not stream:
        for answer in answers:
            assert "seen" not in answer.json()
            assert answer.json()["choices"][0]["message"]["content"] == "Lima."
    said = [r.getMessage() for r in caplog.records]
    said = [m for m in said if m.startswith("post-cache hook post failed")]
    # (one that raised is undone as it fails: its exception is what is said)
    assert said and ("unwritable" in said[0]) == ("raise" not in hook)


async def test_post_cache_hooks_tag_streamed_answers_too(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    (tmp_path / "tagger.py").write_text(
        "def post(response, request):\n    return {'tags': ['model:' + response['model']]}\n"
    )
    config = proxy_config(upstream, hooks=[{"path": "tagger.py", "async_post_cache_hook": "post"}])
    async with make_proxy(config) as proxy:
        plain = await proxy.post(CHAT, json=BODY)
        streamed = await proxy.post(CHAT, json={**BODY, "temperature": 0.5, "stream": True})
        assert plain.headers["x-deja-cache"] == streamed.headers["x-deja-cache"] == "miss"
        model = plain.json()["model"]
        gone = await proxy.post("/cache/invalidate", json={"tag": f"model:{model}"}, headers=ADMIN)
        assert gone.json() == {"deleted": 2}  # the streamed answer was tagged as well
        again = await proxy.post(CHAT, json={**BODY, "temperature": 0.5, "stream": True})
        assert again.headers["x-deja-cache"] == "miss"


async def test_a_failing_pre_llm_hook_keeps_its_detail_in_the_log(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "bad_pre.py").write_text("def pre(request):\n    raise ValueError('secret')\n")
    config = proxy_config(upstream, hooks=[{"path": "bad_pre.py", "async_pre_llm_hook": "pre"}])
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 500 and "secret" not in answer.text
    assert any("secret" in (r.exc_text or "") for r in caplog.records)


def test_a_tiered_cache_without_a_shared_bus_refuses_several_workers(tmp_path: Path) -> None:
    from deja.errors import ConfigError
    from deja.server.run import _warn_about

    def settings(**tiered: Any) -> Any:
        caching = {"type": "tiered", "l1": {"type": "memory"}, **tiered}
        return parse_config({"caching": caching}, base_dir=tmp_path)

    on_disk = settings(l2={"type": "disk", "directory": str(tmp_path / "l2")})
    _warn_about(on_disk, 1)  # one worker: its own bus reaches every L1 there is
    with pytest.raises(ConfigError, match="invalidation_url"):
        _warn_about(on_disk, 2)
    shared = settings(
        l2={"type": "disk", "directory": str(tmp_path / "l2")},
        invalidation_url="redis://127.0.0.1:6379/0",
    )
    _warn_about(shared, 2)
    _warn_about(settings(l2={"type": "redis", "host": "127.0.0.1"}), 2)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:pw@h.example/v1/chat?api_key=k", "https://h.example/v1/chat"),
        (
            "https://fn.example/api/x?code=c0de&api-version=2024-10-21",
            "https://fn.example/api/x?code=***&api-version=2024-10-21",
        ),
        ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
        ("http://h:notaport/v1", "<an invalid URL>"),
    ],
)
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    from deja.request import redact_url

    assert redact_url(url) == shown


def test_urls_in_a_message_are_shown_without_credentials() -> None:
    from deja.request import redact_urls_in

    text = "Qdrant http://u:pw@h:6333/?api-key=k, then 'redis://:pw2@r:6379/0' (https://x/y)"
    assert redact_urls_in(text) == "Qdrant http://h:6333/, then 'redis://r:6379/0' (https://x/y)"
    assert redact_urls_in("no URL here") == "no URL here"
    # a password or key may hold what ends a URL in a sentence: none of it is left
    said = redact_urls_in("at http://u:Pa;S3CRET@h:1/?api-key=K3Y,T41L, then")
    assert said == "at http://h:1/, then"
    listed = "nodes http://a.example/x,http://u:pw@b.example/y;redis://:pw2@c:1|http://u:p@d/"
    assert redact_urls_in(listed) == (
        "nodes http://a.example/x,http://b.example/y;redis://c:1|http://d/"
    )


async def test_a_metrics_scrape_never_holds_up_requests(
    upstream: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store's usage() (S3 lists its whole prefix) runs off the event loop: requests are
    answered while a scrape waits for it."""
    import asyncio

    from deja.server.app import ProxyApp
    from deja.stores.memory import MemoryStore

    listing = threading.Event()
    served = threading.Event()
    real_usage = MemoryStore.usage

    def slow_usage(self: MemoryStore) -> Any:
        listing.set()
        served.wait(10)  # a listing that ends only once a request was answered meanwhile
        return real_usage(self)

    monkeypatch.setattr(MemoryStore, "usage", slow_usage)
    app = ProxyApp(parse_config(proxy_config(upstream), base_dir=tmp_path))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://proxy", headers={"authorization": f"Bearer {TEAM_A}"}
    ) as proxy:
        scrape = asyncio.ensure_future(proxy.get("/metrics"))
        assert await asyncio.to_thread(listing.wait, 10)
        answer = await asyncio.wait_for(proxy.post(CHAT, json=BODY), 5)
        served.set()
        assert answer.status_code == 200
        assert (await scrape).status_code == 200


def _deployment(name: str, model: str, server: FakeOpenAIServer, **params: Any) -> dict[str, Any]:
    litellm = {"model": model, "api_base": server.base_url, "api_key": "sk-up", **params}
    return {"model_name": name, "litellm_params": litellm}


async def test_wildcard_model_names_route_what_they_match(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    with FakeOpenAIServer() as exact:
        config = proxy_config(
            upstream,
            model_list=[
                _deployment("*", "openai/*", upstream),  # LiteLLM's catch-all
                _deployment("gpt-4o", "openai/gpt-4o", exact),  # a name of its own wins
            ],
        )
        config["general_settings"]["virtual_keys"].append(
            {"key": "sk-minis", "tenant": "minis", "models": ["gpt-4o-mini*"]}
        )
        async with make_proxy(config) as proxy:
            for model in ("gpt-4o-mini", "o3", "gpt-4o"):
                body = {**BODY, "model": model}
                assert (await proxy.post(CHAT, json=body)).status_code == 200
            assert [r.body["model"] for r in upstream.requests] == ["gpt-4o-mini", "o3"]
            assert [r.body["model"] for r in exact.requests] == ["gpt-4o"]
            info = await proxy.get("/v1/models/o1-pro")
            assert info.status_code == 200 and info.json()["id"] == "o1-pro"
            limited = {"authorization": "Bearer sk-minis"}
            mini = {**BODY, "model": "gpt-4o-mini-2024-07-18"}
            assert (await proxy.post(CHAT, json=mini, headers=limited)).status_code == 200
            denied = await proxy.post(CHAT, json={**BODY, "model": "o3"}, headers=limited)
            assert denied.status_code == 404  # not the key's: as if it did not exist
            # what the * matched goes into upstream URLs: no way out of the key's models
            calls = len(upstream.requests)
            for sneaky in ("gpt-4o-mini/../o3", "gpt-4o-mini?x=1", "gpt-4o-mini%2F..", ".."):
                refused = await proxy.post(CHAT, json={**BODY, "model": sneaky}, headers=limited)
                assert refused.status_code in (400, 404), sneaky
                assert refused.json()["error"]["param"] == "model"
            assert len(upstream.requests) == calls


async def test_a_wildcard_deployments_key_never_goes_to_a_provider_the_caller_names(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    # model "*" with an OpenAI key: "openrouter/..." or "ollama/..." sent it elsewhere
    with FakeOpenAIServer() as keyless:
        config = proxy_config(
            upstream,
            model_list=[
                _deployment("*", "*", upstream),
                {  # no key of its own: the provider's key from the environment
                    "model_name": "free/*",
                    "litellm_params": {"model": "*", "api_base": keyless.base_url},
                },
            ],
        )
        async with make_proxy(config) as proxy:
            assert (await proxy.post(CHAT, json={**BODY, "model": "o3"})).status_code == 200
            for named in ("openrouter/openai/gpt-4o", "anthropic/claude-3-5-sonnet", "ollama/x"):
                refused = await proxy.post(CHAT, json={**BODY, "model": named})
                assert refused.status_code == 400, named
                assert refused.json()["error"]["param"] == "model"
                assert "openai's" in refused.json()["error"]["message"]
            # a deployment with no key of its own routes on (each provider's key from the env)
            free = await proxy.post(CHAT, json={**BODY, "model": "free/gpt-4o"})
            assert free.status_code == 200, free.text
        assert upstream.count(CHAT) == 1 and keyless.count(CHAT) == 1


async def test_deployments_of_one_name_share_its_requests(
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b, FakeOpenAIServer() as backup:
        config = proxy_config(
            a,
            model_list=[
                _deployment("gpt-4o", "openai/gpt-4o", a, order=1),
                _deployment("gpt-4o", "openai/gpt-4o", b, order=1, weight=3),
                _deployment("gpt-4o", "openai/gpt-4o", backup, order=2),
            ],
        )
        async with make_proxy(config) as proxy:
            for i in range(80):
                question = {**BODY, "messages": [{"role": "user", "content": f"question {i}"}]}
                assert (await proxy.post(CHAT, json=question)).status_code == 200
            # simple-shuffle weighted 1:3 within the first order; the second only on failure
            assert 5 <= a.count(CHAT) <= 35 and a.count(CHAT) + b.count(CHAT) == 80
            assert backup.count(CHAT) == 0
            a.fail_next(503, times=10)
            b.fail_next(503, times=10)
            failing = {**BODY, "messages": [{"role": "user", "content": "both down"}]}
            answer = await proxy.post(CHAT, json=failing)
            assert answer.status_code == 200 and backup.count(CHAT) == 1


async def test_deployment_settings_litellm_configs_rely_on(
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    with FakeOpenAIServer() as up, FakeOpenAIServer() as azure:
        config = proxy_config(
            up,
            model_list=[
                _deployment(
                    "gpt-4o",
                    "openai/gpt-4o",
                    up,
                    temperature=0.2,
                    max_tokens=50,
                    organization="org-deja",
                    max_retries=2,
                    timeout=30,
                    stream_timeout=0.3,
                ),
                _deployment("azure-4o", "azure/my-4o", azure, api_version="2024-02-15-preview"),
            ],
        )
        async with make_proxy(config) as proxy:
            # default request parameters under the caller's own, and keyed as sent
            first = await proxy.post(CHAT, json=BODY)
            sent = up.requests[-1]
            assert sent.body["temperature"] == 0.2 and sent.body["max_tokens"] == 50
            assert sent.headers["openai-organization"] == "org-deja"
            explicit = await proxy.post(CHAT, json={**BODY, "temperature": 0.2})
            assert (first.headers["x-deja-cache"], explicit.headers["x-deja-cache"]) == (
                "miss",
                "hit",
            )
            await proxy.post(CHAT, json={**BODY, "temperature": 0.9})
            assert up.requests[-1].body["temperature"] == 0.9
            # max_retries: the same deployment again, before any failover
            up.fail_next(503, times=2)
            retried = {**BODY, "messages": [{"role": "user", "content": "flaky"}]}
            assert (await proxy.post(CHAT, json=retried)).status_code == 200
            assert up.count(CHAT) == 2 + 3
            # stream_timeout bounds streams (each of the 3 tries); timeout (30 s) the rest
            up.delay_next(1.0, times=3)
            slow = {**BODY, "messages": [{"role": "user", "content": "slow"}], "stream": True}
            assert (await proxy.post(CHAT, json=slow)).status_code == 504
            # an Azure deployment's api_version reaches the URL
            await proxy.post(CHAT, json={**BODY, "model": "azure-4o"})
            assert azure.requests[-1].query == "api-version=2024-02-15-preview"


async def test_a_hook_key_builder_of_one_argument_works(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    (tmp_path / "keys_hook.py").write_text(
        "import deja.keys\ndef build(request):\n    return deja.keys.default_digest(request)\n"
    )
    config = proxy_config(upstream, hooks=[{"path": "keys_hook.py", "key_builder": "build"}])
    async with make_proxy(config) as proxy:
        answers = [await proxy.post(CHAT, json=BODY) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-deja-cache"] for a in answers] == ["miss", "hit"]


async def test_post_cache_hooks_see_embeddings_too(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    (tmp_path / "tagger.py").write_text(
        "def post(response, request):\n    return {'tags': ['model:' + response['model']]}\n"
    )
    config = proxy_config(upstream, hooks=[{"path": "tagger.py", "async_post_cache_hook": "post"}])
    body = {"model": "text-embedding-3-small", "input": ["alpha", "beta"]}
    async with make_proxy(config) as proxy:
        first = await proxy.post("/v1/embeddings", json=body)
        assert first.headers["x-deja-cache"] == "miss"
        model = first.json()["model"]
        gone = await proxy.post("/cache/invalidate", json={"tag": f"model:{model}"}, headers=ADMIN)
        assert gone.json() == {"deleted": 2}  # each item's entry was tagged
        again = await proxy.post("/v1/embeddings", json=body)
        assert again.headers["x-deja-cache"] == "miss"


async def test_an_answer_is_keyed_as_the_deployment_kind_that_gave_it(
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        config = proxy_config(
            a,
            model_list=[
                _deployment("chat", "openai/gpt-4o", a),
                _deployment("chat", "openai/gpt-4o-mini", b),
                _deployment("gpt-4o", "openai/gpt-4o", a),
            ],
        )
        async with make_proxy(config) as proxy:
            questions = [
                {**BODY, "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(30)
            ]
            for question in questions:
                await proxy.post(CHAT, json={**question, "model": "chat"})
            by_a = a.count(CHAT)
            assert 0 < by_a < 30  # shared by the two kinds
            statuses = [
                (await proxy.post(CHAT, json={**question, "model": "gpt-4o"})).headers[
                    "x-deja-cache"
                ]
                for question in questions
            ]
            # only gpt-4o's own answers serve gpt-4o; gpt-4o-mini's never stand for them
            assert statuses.count("hit") == by_a


async def test_a_failover_to_another_kind_is_served_not_stored(
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        config = proxy_config(
            a,
            model_list=[
                _deployment("chat", "openai/gpt-4o", a, order=1),
                _deployment("chat", "openai/gpt-4o-mini", b, order=2),
                _deployment("gpt-4o", "openai/gpt-4o", a),
            ],
        )
        async with make_proxy(config) as proxy:
            a.fail_next(503)
            first = await proxy.post(CHAT, json={**BODY, "model": "chat"})
            assert first.status_code == 200 and b.count(CHAT) == 1
            again = await proxy.post(CHAT, json={**BODY, "model": "chat"})
            assert again.headers["x-deja-cache"] == "miss" and a.count(CHAT) == 2
            third = await proxy.post(CHAT, json={**BODY, "model": "chat"})
            assert third.headers["x-deja-cache"] == "hit"  # gpt-4o's own answer


async def test_kinds_of_deployments_in_admin_calls_costs_and_embeddings(
    make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        (tmp_path / "chat_hook.py").write_text(
            "def post(response, request):\n"
            "    if response['choices'][0]['finish_reason'] == 'length':\n"
            "        return {'no-store': True}\n"
        )
        config = proxy_config(
            a,
            model_list=[
                _deployment("chat", "openai/gpt-4o", a, order=1, temperature=0),
                _deployment("chat", "openai/gpt-4o-mini", b, order=2),
                _deployment("embed", "openai/text-embedding-3-small", a, order=1),
                _deployment("embed", "openai/text-embedding-3-large", b, order=2),
                _deployment("gpt-4o", "openai/gpt-4o", a),
            ],
            hooks=[{"path": "chat_hook.py", "async_post_cache_hook": "post"}],
        )
        async with make_proxy(config) as proxy:
            chat = {**BODY, "model": "chat"}
            # a failover to another model: priced as the model that answered
            a.fail_next(503)
            failed_over = await proxy.post(CHAT, json=chat)
            cost = float(failed_over.headers["x-deja-cost-usd"])
            assert b.count(CHAT) == 1 and 0 < cost < 2e-5  # gpt-4o-mini's price, not gpt-4o's
            # an entry keyed with the deployment's default temperature is found by admin calls
            stored = await proxy.post(CHAT, json=chat)
            key = stored.headers["x-deja-cache-key"]
            named = {"request": chat, "tenant": "team-a"}
            explained = await proxy.post("/cache/explain", json=named, headers=ADMIN)
            assert explained.json()["key"] == key
            deleted = await proxy.post("/cache/delete", json=named, headers=ADMIN)
            assert deleted.json()["deleted"] is True and key in deleted.json()["keys"]
            # embeddings: a chat hook does not stop them being cached; no other model's
            # vectors beside cached ones
            embed = {"model": "embed", "input": ["x"]}
            assert (await proxy.post("/v1/embeddings", json=embed)).status_code == 200
            again = await proxy.post("/v1/embeddings", json=embed)
            assert again.headers["x-deja-cache"] == "hit"
            a.fail_next(503)
            mixed = await proxy.post("/v1/embeddings", json={"model": "embed", "input": ["x", "y"]})
            assert mixed.status_code == 503 and b.count("/v1/embeddings") == 0


REDACT = (
    "import re\n"
    "def post(response, request):\n"
    "    for choice in response['choices']:\n"
    "        m = choice['message']\n"
    "        m['content'] = re.sub(r'\\S+@\\S+', '[email]', m['content'])\n"
)


async def test_a_redacting_hook_s_answer_is_what_every_later_caller_gets(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """A post-cache hook that changes a streamed answer: the stored entry is the changed
    one, whether replayed as a stream or served whole (the chunks as they came are not
    kept)."""
    from deja.testing import Reply

    upstream.reply_with(lambda body: Reply("Contact alice@example.com for help."))
    (tmp_path / "redact.py").write_text(REDACT)
    config = proxy_config(upstream, hooks=[{"path": "redact.py", "async_post_cache_hook": "post"}])
    body = {**BODY, "stream": True}
    async with make_proxy(config) as proxy:
        first = await proxy.post(CHAT, json=body)
        assert "alice@" in first.text  # streamed live, before the hook saw the whole
        replay = await proxy.post(CHAT, json=body)
        whole = await proxy.post(CHAT, json=BODY)
    assert replay.headers["x-deja-cache"] == whole.headers["x-deja-cache"] == "hit"
    assert "alice@" not in replay.text and "[email]" in replay.text
    assert whole.json()["choices"][0]["message"]["content"] == "Contact [email] for help."


async def test_pre_hooks_set_cache_options_route_and_refuse(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    (tmp_path / "pre.py").write_text(
        "class HTTPException(Exception):  # as Starlette's and FastAPI's\n"
        "    status_code = 403\n"
        "    detail = 'prompt refused by policy'\n"
        "def pre(body):\n"
        "    text = body['messages'][-1]['content']\n"
        "    if 'forbidden' in text:\n"
        "        raise HTTPException()\n"
        "    body['cache'] = {'tags': ['hooked'], 'ttl': 60}\n"
        "    if 'cheap' in text:\n"
        "        body['model'] = 'text-embedding-3-small'\n"
        "    return body\n"
    )
    config = proxy_config(upstream, hooks=[{"path": "pre.py", "async_pre_llm_hook": "pre"}])
    async with make_proxy(config, key=TEAM_B) as proxy:  # team-b may use gpt-4o only
        refused = await proxy.post(
            CHAT, json={**BODY, "messages": [{"role": "user", "content": "forbidden"}]}
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["message"] == "prompt refused by policy"
        rerouted = await proxy.post(
            CHAT, json={**BODY, "messages": [{"role": "user", "content": "cheap"}]}
        )
        assert rerouted.status_code == 404  # the hook's model must be the key's too
        answer = await proxy.post(CHAT, json=BODY)
        assert answer.status_code == 200
        assert "cache" not in upstream.requests[-1].body  # never forwarded
        gone = await proxy.post(
            "/cache/invalidate", json={"tag": "hooked", "tenant": "team-b"}, headers=ADMIN
        )
        assert gone.json() == {"deleted": 1}


async def test_every_post_hook_s_tags_are_kept_and_failovers_see_the_hooks(
    make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    (tmp_path / "tags.py").write_text(
        "def one(response, request):\n    return {'tags': ['one']}\n"
        "def two(response, request):\n    return {'tags': ['two']}\n"
    )
    (tmp_path / "redact.py").write_text(REDACT)
    with FakeOpenAIServer() as primary, FakeOpenAIServer() as backup:
        from deja.testing import Reply

        backup.reply_with(lambda body: Reply("Write to bob@example.com"))

        def deployment(server: FakeOpenAIServer, model: str, order: int) -> dict[str, Any]:
            params = {"model": model, "api_base": server.base_url, "api_key": "k", "order": order}
            return {"model_name": "gpt-4o", "litellm_params": params}

        hooks = [
            {"path": "tags.py", "async_post_cache_hook": "one"},
            {"path": "tags.py", "async_post_cache_hook": "two"},
            {"path": "redact.py", "async_post_cache_hook": "post"},
        ]
        config = proxy_config(
            primary,
            model_list=[
                deployment(primary, "openai/gpt-4o", 1),
                deployment(backup, "openai/gpt-4o-mini", 2),
            ],
            hooks=hooks,
        )
        async with make_proxy(config) as proxy:
            await proxy.post(CHAT, json=BODY)
            one = await proxy.post("/cache/invalidate", json={"tag": "one"}, headers=ADMIN)
            await proxy.post(CHAT, json=BODY)
            two = await proxy.post("/cache/invalidate", json={"tag": "two"}, headers=ADMIN)
            assert one.json() == two.json() == {"deleted": 1}
            primary.fail_next(503)
            failover = await proxy.post(CHAT, json={**BODY, "temperature": 0.3})
        assert failover.status_code == 200
        assert failover.json()["choices"][0]["message"]["content"] == "Write to [email]"


async def test_a_failing_key_builder_keeps_its_detail_in_the_log(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "kb.py").write_text(
        "def kb(request, tenant):\n    raise RuntimeError('vault token hvs.SECRET123 rejected')\n"
    )
    config = proxy_config(upstream, hooks=[{"path": "kb.py", "key_builder": "kb"}])
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 500 and "SECRET123" not in answer.text
    assert any("SECRET123" in (r.exc_text or "") for r in caplog.records)


def test_post_hooks_without_a_cache_are_said_to_be_inert(
    upstream: FakeOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from deja.server.app import ProxyApp

    (tmp_path / "redact.py").write_text(REDACT)
    config = proxy_config(upstream, hooks=[{"path": "redact.py", "async_post_cache_hook": "post"}])
    del config["caching"]
    with caplog.at_level("WARNING", logger="deja"):
        ProxyApp(parse_config(config, base_dir=tmp_path))
    assert any("never run" in r.getMessage() for r in caplog.records)


async def test_an_embeddings_request_holds_at_most_openai_s_2048_inputs(
    upstream: FakeOpenAIServer, proxy: httpx2.AsyncClient
) -> None:
    """One caller's 10,001 inputs flushed every other tenant out of a bounded memory store
    and held the proxy for a second: refused, as OpenAI's API does."""
    body = {"model": "text-embedding-3-small", "input": [f"x{i}" for i in range(2049)]}
    refused = await proxy.post("/v1/embeddings", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "input"
    assert upstream.count("/v1/embeddings") == 0
    tokens = {"model": "text-embedding-3-small", "input": list(range(3000))}  # one input
    assert (await proxy.post("/v1/embeddings", json=tokens)).status_code == 200


async def test_a_deployment_is_sent_its_misses_in_calls_of_its_provider_s_size(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """The proxy takes OpenAI's 2,048 inputs a request; a Mistral deployment takes 256 a
    call: 300 inputs went to it in one call, and it refused them."""
    upstream.max_embedding_inputs = 256
    mistral = {"model": "mistral/mistral-embed", "api_base": upstream.base_url, "api_key": "k"}
    config = proxy_config(upstream)
    config["model_list"].append({"model_name": "mistral-embed", "litellm_params": mistral})
    async with make_proxy(config) as proxy:
        body = {"model": "mistral-embed", "input": [f"x{i}" for i in range(300)]}
        answer = await proxy.post("/v1/embeddings", json=body)
        assert answer.status_code == 200 and len(answer.json()["data"]) == 300
        assert [len(r.body["input"]) for r in upstream.requests] == [256, 44]
        again = await proxy.post("/v1/embeddings", json=body)
        assert again.headers["x-deja-cache"] == "hit" and upstream.count("/v1/embeddings") == 2


async def test_an_embeddings_encoding_format_is_checked_by_deja_request_s_rule(
    upstream: FakeOpenAIServer, proxy: httpx2.AsyncClient
) -> None:
    body = {"model": "text-embedding-3-small", "input": "x", "encoding_format": "bogus"}
    refused = await proxy.post("/v1/embeddings", json=body)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "encoding_format" and "'bogus'" in error["message"]
    assert upstream.count("/v1/embeddings") == 0


async def test_a_caller_s_model_name_cannot_forge_a_log_line(
    make_proxy: Callable[..., httpx2.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    with FakeOpenAIServer() as first, FakeOpenAIServer() as second:

        def deployment(server: FakeOpenAIServer) -> dict[str, Any]:
            params = {"model": "openai/*", "api_base": server.base_url, "api_key": "k"}
            return {"model_name": "openai/*", "litellm_params": {**params, "order": 1}}

        config = proxy_config(first, model_list=[deployment(first), deployment(second)])
        config["model_list"][1]["litellm_params"]["order"] = 2
        first.fail_next(503)
        forged = "openai/x\nCRITICAL:deja.server:master key leaked"
        async with make_proxy(config, key=None) as proxy:
            with caplog.at_level("WARNING", logger="deja"):
                answer = await proxy.post(CHAT, json={**BODY, "model": forged}, headers=ADMIN)
    # (what a wildcard matched may not hold control characters: refused before any call)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "model"
    assert all("\n" not in r.getMessage() for r in caplog.records)


async def test_a_hook_s_own_failure_with_a_status_is_no_refusal(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
) -> None:
    """An SDK error raised by the hook's own call carries a status too (and may name the
    operator's key): a 500 with the detail in the log, not the SDK's message to the caller."""
    (tmp_path / "pre.py").write_text(
        "class AuthenticationError(Exception):\n"
        "    status_code = 401\n"
        "def pre(body):\n"
        "    raise AuthenticationError('Incorrect API key provided: sk-proj-SECRET')\n"
    )
    config = proxy_config(upstream, hooks=[{"path": "pre.py", "async_pre_llm_hook": "pre"}])
    async with make_proxy(config) as proxy:
        answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 500 and "SECRET" not in answer.text


async def test_a_flush_naming_a_tenant_keeps_to_that_tenant(
    upstream: FakeOpenAIServer, proxy: httpx2.AsyncClient
) -> None:
    """Without a configured namespace the body's tenant was ignored: every tenant's entries
    went (an answer of 200 that did not say so)."""
    for key in (TEAM_A, TEAM_B):
        await proxy.post(CHAT, json=BODY, headers={"authorization": f"Bearer {key}"})
    flushed = await proxy.post("/cache/flush", json={"tenant": "team-a"}, headers=ADMIN)
    assert flushed.json()["deleted"] == 1 and flushed.json()["tenant"] == "team-a"
    b = await proxy.post(CHAT, json=BODY, headers={"authorization": f"Bearer {TEAM_B}"})
    a = await proxy.post(CHAT, json=BODY, headers={"authorization": f"Bearer {TEAM_A}"})
    assert (a.headers["x-deja-cache"], b.headers["x-deja-cache"]) == ("miss", "hit")
    both = await proxy.post("/cache/flush", json={"tenant": "team-a", "all": True}, headers=ADMIN)
    assert both.status_code == 400 and both.json()["error"]["param"] == "all"
    for path in ("/cache/flush", "/cache/invalidate"):  # (an empty tenant was a bare 500)
        body = {"tenant": ""} if path == "/cache/flush" else {"tenant": "", "tag": "t"}
        empty = await proxy.post(path, json=body, headers=ADMIN)
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "tenant"


async def test_a_flush_keeps_to_the_proxy_s_namespace_and_litellm_s_names_work(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """Staging and prod sharing one store, told apart by LiteLLM's ``namespace``: a flush
    on staging deleted prod's entries too (the whole key prefix)."""
    disk = {"type": "disk", "directory": str(tmp_path / "shared"), "ttl": 600}
    staging = proxy_config(upstream, caching={**disk, "namespace": "litellm.staging"})
    prod = proxy_config(upstream, caching={**disk, "namespace": "litellm.prod"})
    async with make_proxy(staging) as a, make_proxy(prod) as b:
        for proxy in (a, b):
            for key in (TEAM_A, TEAM_B):
                await proxy.post(CHAT, json=BODY, headers={"authorization": f"Bearer {key}"})
        flushed = await a.post("/cache/flushall", headers=ADMIN)  # LiteLLM's name too
        assert flushed.json()["deleted"] == 2
        assert flushed.json()["namespace"] == "litellm.staging"
        again = await b.post(CHAT, json=BODY, headers={"authorization": f"Bearer {TEAM_A}"})
        assert again.headers["x-deja-cache"] == "hit"
        # a tag's invalidation keeps to the proxy's namespace too (it reached staging's)
        tagged = {**BODY, "messages": [{"role": "user", "content": "tagged"}]}
        for proxy in (a, b):
            await proxy.post(CHAT, json={**tagged, "cache": {"tags": ["doc:42"]}}, headers=ADMIN)
        invalidated = await b.post("/cache/invalidate", json={"tag": "doc:42"}, headers=ADMIN)
        assert invalidated.json()["deleted"] == 1
        kept = await a.post(CHAT, json=tagged, headers=ADMIN)
        assert kept.headers["x-deja-cache"] == "hit"
        await a.post("/cache/invalidate", json={"tag": "doc:42"}, headers=ADMIN)
        everything = await a.post("/cache/flush", json={"all": True}, headers=ADMIN)
        assert everything.json() == {"deleted": 2, "key_prefix": "deja:"}
        bad = await a.post("/cache/flush", json={"all": "yes"}, headers=ADMIN)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "all"
        # LiteLLM's /cache/delete body: a list of keys (asked of the proxy that flushed: an
        # answer asked for in the next 0.5 s is not stored by the other, see README)
        made = await a.post(CHAT, json=BODY, headers={"authorization": f"Bearer {TEAM_A}"})
        key = made.headers["x-deja-cache-key"]
        gone = await a.post("/cache/delete", json={"keys": [key, "nope"]}, headers=ADMIN)
        assert gone.json() == {"deleted": True, "keys": [key]}
        wrong = await b.post("/cache/delete", json={"keys": "k"}, headers=ADMIN)
        assert wrong.status_code == 400


async def test_litellm_s_switch_puts_metrics_behind_a_key(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """LiteLLM's require_auth_for_metrics_endpoint stopped the start (an unknown key)."""
    config = proxy_config(upstream, litellm_settings={"require_auth_for_metrics_endpoint": True})
    async with make_proxy(config, key=None) as proxy:
        assert (await proxy.get("/metrics")).status_code == 401
        wrong = await proxy.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await proxy.get("/metrics", headers={"authorization": f"Bearer {TEAM_A}"})
        assert ok.status_code == 200 and "deja_cache_requests_total" in ok.text
    async with make_proxy(proxy_config(upstream), key=None) as open_proxy:
        assert (await open_proxy.get("/metrics")).status_code == 200  # open by default


async def test_enable_prometheus_false_turns_metrics_off(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """The seed guide's ``enable_prometheus`` turns ``/metrics`` on; set false, deja still
    served it (unauthenticated) to anyone who asked."""
    config = proxy_config(upstream, litellm_settings={"enable_prometheus": False})
    async with make_proxy(config, key=None) as proxy:
        off = await proxy.get("/metrics")
        assert off.status_code == 404 and "enable_prometheus" in off.json()["error"]["message"]
    for on in ({"enable_prometheus": True}, {"callbacks": ["prometheus"]}):
        async with make_proxy(proxy_config(upstream, litellm_settings=on), key=None) as proxy:
            assert (await proxy.get("/metrics")).status_code == 200


async def test_a_proxy_without_a_model_list_says_so_at_start(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The seed guide's config snippets are a caching block alone: the proxy started
    without a word and answered every request with a 404."""
    with caplog.at_level("WARNING", logger="deja.server"):
        async with make_proxy({"caching": {"type": "memory"}}, key=None) as proxy:
            answer = await proxy.post(CHAT, json=BODY)
    assert answer.status_code == 404
    (warning,) = [r.getMessage() for r in caplog.records if "model_list" in r.getMessage()]
    assert warning.startswith("no model_list: the proxy serves no model")
    assert "model_name: '*' and model: 'openai/*'" in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="deja.server"):
        async with make_proxy(proxy_config(upstream), key=None):
            pass
    assert not [r for r in caplog.records if "model_list" in r.getMessage()]


async def test_a_compressed_body_is_a_415_and_an_early_refusal_closes_the_connection(
    proxy: httpx2.AsyncClient,
) -> None:
    """A gzip body was 'not valid JSON: str is not valid UTF-8'; a refusal sent before an
    ``Expect: 100-continue`` body was read left the connection open for the next request
    to be read as that body."""
    import gzip

    packed = gzip.compress(orjson.dumps(BODY))
    gzipped = {"content-encoding": "gzip", "content-type": "application/json"}
    answer = await proxy.post(CHAT, content=packed, headers=gzipped)
    assert answer.status_code == 415 and "content-encoding 'gzip'" in answer.text
    refused = await proxy.post(
        CHAT, json=BODY, headers={"authorization": "Bearer wrong", "expect": "100-continue"}
    )
    assert refused.status_code == 401 and refused.headers["connection"] == "close"
    plain = await proxy.post(CHAT, json=BODY, headers={"authorization": "Bearer wrong"})
    assert plain.status_code == 401 and "connection" not in plain.headers
