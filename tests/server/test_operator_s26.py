"""Operator-facing gaps of an audit (session 26): a cache store that cannot be reached
at start, hooks that never return, and pre-LLM hooks that make a valid request invalid."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

import deja
from deja.config import parse_config
from deja.server.app import ProxyApp
from deja.stores.memory import MemoryStore


def _closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_and_stop(app: ProxyApp) -> list[str]:
    """Run ``app``'s ASGI lifespan (start, then stop); the types of the messages it sent."""
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan"}, receive, send)  # type: ignore[arg-type]
    return sent


def _store_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "cannot be reached" in r.getMessage()]


# -- a store that cannot be reached at start -------------------------------------------


@pytest.mark.parametrize(
    "caching",
    [
        {"type": "redis", "url": "redis://:hunter2@127.0.0.1:{port}/0"},
        {
            "type": "s3",
            "s3_bucket_name": "answers",
            "s3_endpoint_url": "http://127.0.0.1:{port}",
            "s3_region_name": "us-east-1",
            "s3_aws_access_key_id": "AKIDEXAMPLE",
            "s3_aws_secret_access_key": "secret-example",
        },
        {"type": "tiered", "l2": {"type": "redis", "url": "redis://127.0.0.1:{port}/0"}},
    ],
    ids=["redis", "s3", "tiered"],
)
async def test_a_store_that_cannot_be_reached_is_said_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, caching: dict[str, Any]
) -> None:
    """Redis down, a dead S3 endpoint: the proxy started without a word (only
    /health/ready's 503, or the first requests' misses, told). It still starts (fail-open),
    with one ERROR line naming the store and why, and no password."""
    port = _closed_port()
    config = {"caching": _with_port(caching, port)}
    app = ProxyApp(parse_config(config, base_dir=tmp_path))
    with caplog.at_level("ERROR", logger="deja"):
        sent = await _start_and_stop(app)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    lines = _store_lines(caplog)
    assert len(lines) == 1 and lines[0].levelno == logging.ERROR
    said = lines[0].getMessage()
    assert said.startswith(f"the cache store ({caching['type']}) cannot be reached (")
    assert str(port) in said and "uncached" in said
    assert "hunter2" not in said


def _with_port(block: dict[str, Any], port: int) -> dict[str, Any]:
    return {
        name: _with_port(value, port)
        if isinstance(value, dict)
        else value.format(port=port)
        if isinstance(value, str)
        else value
        for name, value in block.items()
    }


async def test_a_store_that_never_answers_holds_the_start_a_bounded_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store of the operator's with no timeout of its own: the probe gives up."""

    class Hung(MemoryStore):
        async def aget(self, key: str) -> bytes | None:
            await asyncio.Event().wait()
            return None

    monkeypatch.setattr("deja.server.app._STORE_PROBE_SECONDS", 0.01)
    settings = parse_config({"caching": {"type": "memory"}}, base_dir=tmp_path)
    app = ProxyApp(settings, cache=deja.AsyncCache(store=Hung()))
    with caplog.at_level("ERROR", logger="deja"):
        sent = await _start_and_stop(app)
    assert sent[0] == "lifespan.startup.complete"
    [line] = _store_lines(caplog)
    assert "(no answer within 0.01 s)" in line.getMessage()


async def test_a_store_that_answers_is_not_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = ProxyApp(parse_config({"caching": {"type": "memory"}}, base_dir=tmp_path))
    with caplog.at_level("ERROR", logger="deja"):
        sent = await _start_and_stop(app)
    assert sent[0] == "lifespan.startup.complete"
    assert _store_lines(caplog) == []
