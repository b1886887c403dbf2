"""The proxy as an internet-facing service (audit 20, security): one tenant's request must
not hold up another's, and a restricted key learns nothing of the models it may not use."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

from deja.config import parse_config
from deja.server.app import ProxyApp
from deja.testing import FakeOpenAIServer, Reply
from tests.helpers import free_port
from tests.server.conftest import TEAM_A, TEAM_B, proxy_config

CHAT = "/v1/chat/completions"


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@contextlib.contextmanager
def _served(app: ProxyApp, **options: Any) -> Iterator[str]:
    """``app`` behind a real uvicorn (as ``deja serve`` runs it: httptools, flow control)
    in a thread, on a loopback socket with small send buffers (a client that stops reading
    fills them at once); yields its URL."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # (accepted: the same)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="critical", lifespan="on", access_log=False, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def _stalled_stream(url: str, content: str) -> socket.socket:
    """A streamed chat request from a client that reads the status line, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    body = orjson.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": content}], "stream": True}
    )
    head = (
        f"POST {CHAT} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {TEAM_A}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    assert sock.recv(15) == b"HTTP/1.1 200 OK"
    return sock


def _said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _drained(sock: socket.socket, seconds: float) -> bytes:
    """What ``sock`` receives until the server closes it (TimeoutError if it keeps it open
    longer than ``seconds``)."""
    sock.settimeout(seconds)
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(1 << 16):
            received += chunk
    return bytes(received)


def test_a_client_that_stops_reading_a_stream_frees_its_upstream_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Streams whose clients stop reading held every upstream connection for as long as
    their sockets stayed open: another tenant's call to that upstream waited for a free one
    and got a 504. A client that takes no data for the deployment's stream_timeout has left."""
    long_answer = " ".join(f"word{i}" for i in range(3000))  # ~0.6 MB of events
    with FakeOpenAIServer() as upstream:
        upstream.reply_with(
            lambda body: Reply(long_answer) if "stall" in str(body.get("messages")) else None
        )
        config = proxy_config(upstream, proxy={"max_upstream_connections": 2})
        config["model_list"][0]["litellm_params"].update(timeout=6, stream_timeout=1.5)
        app = ProxyApp(parse_config(config, base_dir=tmp_path))
        with _served(app) as url:
            stalled = [_stalled_stream(url, f"stall {i}") for i in range(2)]
            try:
                started = time.monotonic()
                answer = httpx2.post(
                    url + CHAT,
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                    headers=_auth(TEAM_B),
                    timeout=30,
                )
                waited = time.monotonic() - started
                assert answer.status_code == 200, answer.text  # (a 504 after 6 s before)
                assert answer.headers["x-deja-cache"] == "miss"
                assert waited < 5
                deadline = time.monotonic() + 10
                while len(_said(caplog, "client took no data for 1.5 s")) < 2:
                    assert time.monotonic() < deadline, caplog.text
                    time.sleep(0.05)
                for sock in stalled:
                    # its stream was ended: the connection closed, the answer unfinished
                    received = _drained(sock, 10)
                    assert b"word1" in received
                    assert b"[DONE]" not in received
            finally:
                for sock in stalled:
                    sock.close()
            assert upstream.count("/chat/completions") == 3


async def test_a_key_is_told_a_model_it_may_not_use_does_not_exist(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """A restricted key got 403 "may not use" for a model the proxy serves and 404 for
    one it does not: it could list the other tenants' models, which /models hides."""
    config = proxy_config(upstream)
    config["model_list"].append(
        {
            "model_name": "acme-internal-finetune",
            "litellm_params": {"model": "openai/gpt-4o", "api_base": upstream.base_url},
        }
    )
    config["model_list"].append(
        {
            "model_name": "acme/*",
            "litellm_params": {"model": "openai/*", "api_base": upstream.base_url},
        }
    )
    answers: list[dict[str, Any]] = []
    async with make_proxy(config, key=TEAM_B) as proxy:  # team-b: gpt-4o only
        for model in ("acme-internal-finetune", "no-such-model", "acme/x/../y", "other/../y"):
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            responses = [await proxy.post(CHAT, json=body)]
            if ".." not in model:  # (a URL's path would lose them)
                responses.append(await proxy.get(f"/v1/models/{model}"))
            for response in responses:
                assert response.status_code == 404, (model, response.text)
                error = response.json()["error"]
                answers.append({**error, "message": error["message"].replace(model, "M")})
        assert (await proxy.post(CHAT, json={**body, "model": "gpt-4o"})).status_code == 200
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0]["code"] == "model_not_found"
    assert upstream.count("/chat/completions") == 1


def _exchange(url: str, request: bytes, *, pieces: int = 1) -> bytes:
    """Send ``request`` (in ``pieces``) on a new connection; what comes back until the
    server closes it (or 5 s pass)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        size = -(-len(request) // pieces)
        with contextlib.suppress(OSError):  # (refused before all of it was sent)
            for start in range(0, len(request), size):
                sock.sendall(request[start : start + size])
        return _drained(sock, 5)


def test_request_heads_are_bounded_without_a_key(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """httptools, the parser uvicorn runs the proxy with, keeps a header of any size: one
    unauthenticated connection with an endless header held hundreds of MiB. ``deja serve``
    runs uvicorn with a protocol that refuses a head past MAX_HEAD_BYTES with a 431."""
    from deja.server import run

    app = ProxyApp(parse_config(proxy_config(upstream), base_dir=tmp_path))
    with _served(app, http=run.HTTP_PROTOCOL) as url:
        endless = b"GET /v1/models HTTP/1.1\r\nhost: proxy\r\nx-junk: " + b"a" * (1 << 20)
        answer = _exchange(url, endless, pieces=64)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        error = orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]
        assert error["code"] == "request_headers_too_large"
        assert str(run.MAX_HEAD_BYTES) in error["message"]
        # a whole head just past the bound, in one read or in two (the read that crossed
        # the bound also ended the head: up to twice the bound went through, and was run),
        # then a request on the same connection that is never run
        for pieces in (1, 2):
            whole = (
                f"GET /v1/models HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {TEAM_A}\r\n"
                f"x-note: {'n' * (run.MAX_HEAD_BYTES - 50)}\r\n\r\n"
                f"GET /v1/models HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {TEAM_A}\r\n\r\n"
            ).encode()
            answer = _exchange(url, whole, pieces=pieces)
            assert answer.startswith(b"HTTP/1.1 431 "), (pieces, answer[:200])
            assert answer.count(b"HTTP/1.1 ") == 1, answer[:400]
        # trailers are kept as headers are: bounded too (the connection closed at once,
        # not held until the body's timeout)
        trailer = (
            f"POST {CHAT} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {TEAM_A}\r\n"
            "transfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n"
            "2\r\n{}\r\n0\r\nx-junk: "
        ).encode() + b"a" * (4 << 20)
        assert _exchange(url, trailer, pieces=64) == b""  # closed, nothing answered

        # a head under the bound, and a chunked body in small chunks (its framing is no
        # head), on one connection: both answered
        body = orjson.dumps(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 300_000}]}
        )
        chunked = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
            for i in range(0, len(body), 1000)
        )
        big_head = (
            f"GET /v1/models HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {TEAM_A}\r\n"
            f"x-note: {'n' * 40_000}\r\n\r\n"
        ).encode()
        post = (
            (
                f"POST {CHAT} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {TEAM_A}\r\n"
                "transfer-encoding: chunked\r\ncontent-type: application/json\r\n"
                "connection: close\r\n\r\n"
            ).encode()
            + chunked
            + b"0\r\n\r\n"
        )
        answers = _exchange(url, big_head + post, pieces=40)
        assert answers.count(b"HTTP/1.1 200 OK") == 2, answers[:300]


def test_deja_serve_runs_uvicorn_with_bounded_heads(
    upstream: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deja.server import run

    config = tmp_path / "config.yaml"
    config.write_text(orjson.dumps(proxy_config(upstream)).decode())  # (JSON is YAML)
    for name in (run.CONFIG_ENV, run.LOG_LEVEL_ENV, "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.setenv(name, "")  # serve() sets them: restored afterwards
        monkeypatch.delenv(name)
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(
        run,
        "_supervise",
        lambda options, *, workers: started.append({**options, "workers": workers}),
    )
    run.serve(config, workers=2, port=free_port())
    [options] = started
    assert options["http"] == run.HTTP_PROTOCOL
    from uvicorn.importer import import_from_string  # (as uvicorn loads it)

    loaded = import_from_string(options["http"])
    assert loaded.__name__ == "BoundedHttpToolsProtocol"


def _wide_body(containers: int, *, pad: int = 0, url: str | None = None) -> bytes:
    """A chat body of many tiny JSON nodes: ``containers`` empty lists in a parameter,
    ``pad`` bytes of prompt, and an image part at ``url`` if given."""
    content: Any = "x" * pad
    if url is not None:
        content = [{"type": "text", "text": content}, {"type": "image_url", "image_url": url}]
    head = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]})
    return head[:-1] + b',"foo":[' + b"[]," * (containers - 1) + b"[]]}"


async def test_a_body_of_too_many_json_nodes_is_refused_unparsed(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """10 MiB of "[]," parsed, scanned and keyed on the event loop held every tenant's
    requests for 3.5 s; parsing alone (orjson holds the GIL, in a thread too) for 1 s."""
    from deja.server.app import _MAX_CONTAINERS

    raw = _wide_body(_MAX_CONTAINERS + 1)
    async with make_proxy(proxy_config(upstream)) as proxy:
        refused = await proxy.post(CHAT, content=raw, headers={"content-type": "application/json"})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "request_too_complex"
        assert f"more than {_MAX_CONTAINERS} JSON objects and arrays" in error["message"]
        # under the bound: served (a prompt's own brackets count, so the bound is generous)
        fine = _wide_body(_MAX_CONTAINERS - 10, pad=1 << 20)
        answer = await proxy.post(CHAT, content=fine, headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text
    assert upstream.count("/chat/completions") == 1


async def test_a_large_bodys_work_leaves_the_event_loop_free(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """Other requests wait while one runs Python on the event loop: a large body's scan for
    storage URLs, its normalizing and its key are done in a thread, its key before the
    cache is asked (a hit of it too). The event loop goes on meanwhile (before, a hit of
    this body let it turn not once until it was answered)."""
    import asyncio

    from deja.keys import make_key
    from deja.request import Request

    raw = _wide_body(190_000, pad=4 << 20)
    turns = 0

    async def ticking(stop: asyncio.Event) -> None:
        nonlocal turns
        while not stop.is_set():
            await asyncio.sleep(0.001)
            turns += 1

    async with make_proxy(proxy_config(upstream)) as proxy:
        for status in ("miss", "hit"):
            stop = asyncio.Event()
            ticker = asyncio.ensure_future(ticking(stop))
            await asyncio.sleep(0.01)
            turns = 0
            answer = await proxy.post(
                CHAT, content=raw, headers={"content-type": "application/json"}
            )
            during = turns
            stop.set()
            await ticker
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-deja-cache"] == status
            if status == "hit":  # (a miss lets it turn while the upstream answers)
                # the work takes ~0.2 s: a turn every few ms meanwhile, the GIL shared
                assert during >= 5, during
        # the key found ahead is the one the request has
        request = Request.from_body(
            {**orjson.loads(raw), "model": "openai/gpt-4o"},
            api_base=upstream.base_url,
            tenant="team-a",
        )
        assert answer.headers["x-deja-cache-key"] == make_key(request)


async def test_a_large_bodys_semantic_scope_is_computed_off_the_event_loop(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a semantic tier, a large body's scope (the whole request normalized and
    encoded again, beside its key) was computed on the event loop by the lookup and again
    by the store: a 10 MiB body of tiny nodes stalled every other caller as the key had.
    It is computed in the thread that keys the body, and the lookup and store reuse it."""
    import threading

    from deja.semantic import scope

    loop_thread = threading.get_ident()
    normalized_on: list[bool] = []
    real = scope.key_payload

    def recording(request: Any) -> Any:
        normalized_on.append(threading.get_ident() == loop_thread)
        return real(request)

    monkeypatch.setattr(scope, "key_payload", recording)
    raw = _wide_body(150_000, pad=40)  # (a prompt of 40 x's: the tier applies)
    assert len(raw) > 256 * 1024
    caching = {"type": "semantic", "ttl": 600}
    async with make_proxy(proxy_config(upstream, caching=caching)) as proxy:
        headers = {"content-type": "application/json"}
        answer = await proxy.post(CHAT, content=raw, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-deja-cache"] == "miss"
    assert normalized_on == [False]  # once, in the thread; not by the lookup nor the store
    assert upstream.count("/chat/completions") == 1


async def test_a_large_body_with_a_storage_url_is_still_refused(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    raw = _wide_body(1000, pad=1 << 20, url="s3://bucket/secret.png")
    assert len(raw) > 256 * 1024  # (scanned in a thread)
    async with make_proxy(proxy_config(upstream)) as proxy:
        refused = await proxy.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert "allow_storage_urls" in refused.json()["error"]["message"]
    assert upstream.count("/chat/completions") == 0


def test_a_remembered_digest_is_the_default_one_until_the_request_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    import deja.keys
    from deja.keys import default_digest, explain, make_key, remember_digest
    from deja.request import Request

    request = Request.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    fresh = default_digest(request)
    key = make_key(request)
    assert remember_digest(request) == fresh
    assert make_key(request) == key and explain(request)["digest"] == fresh
    # the remembered digest is what keys it now: the payload is not built again
    with monkeypatch.context() as patched:

        def built_again(_request: Request) -> object:
            raise AssertionError("the request's payload was built again")

        patched.setattr(deja.keys, "key_payload", built_again)
        assert make_key(request) == key and default_digest(request) == fresh
    changed = dataclasses.replace(request, messages=({"role": "user", "content": "bye"},))
    assert default_digest(changed) != fresh  # (a copy is keyed afresh)


def _true_containers(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_true_containers(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_true_containers(v) for v in value)
    return 0


_JSON_TEXT = st.text(alphabet=st.sampled_from('ab"\\{}[]:, \n\t\u00e9'), max_size=12)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | _JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_JSON_TEXT, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(
    value=_JSON_VALUES,
    indent=st.sampled_from([None, 2]),
    ascii=st.booleans(),
    chunk=st.integers(1, 40),
)
def test_the_structural_count_skips_brackets_inside_strings(
    value: Any, indent: int | None, ascii: bool, chunk: int
) -> None:
    """Strings full of quotes, backslashes and brackets (escaped as JSON escapes them)
    change nothing, wherever the chunks it is counted in end: the count is the objects
    and arrays a parse builds."""
    from unittest import mock

    from deja.server import app

    raw = json.dumps(value, indent=indent, ensure_ascii=ascii).encode()
    with mock.patch.object(app, "_SCAN_CHUNK", chunk):
        assert app._structural_containers(raw) == _true_containers(value)


async def test_a_prompt_of_pasted_json_is_not_too_complex(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    """The brackets of a prompt's pasted JSON or code are not the body's: a 4 MiB prompt
    holding 600,000 of them (and escaped quotes and backslashes) was refused as too
    complex. A body whose own objects and arrays pass the bound still is."""
    from deja.server.app import _MAX_CONTAINERS

    pasted = orjson.dumps([{"k": ['\\"[{', [1, {}]]} for _ in range(100_000)]).decode()
    assert pasted.count("{") + pasted.count("[") > 3 * _MAX_CONTAINERS
    raw = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": pasted}]})
    async with make_proxy(proxy_config(upstream)) as proxy:
        headers = {"content-type": "application/json"}
        answer = await proxy.post(CHAT, content=raw, headers=headers)
        assert answer.status_code == 200, answer.text
        # a body of too many containers of its own still is not parsed
        refused = await proxy.post(
            CHAT, content=_wide_body(_MAX_CONTAINERS + 1, pad=1 << 20), headers=headers
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "request_too_complex"
    assert upstream.count("/chat/completions") == 1
