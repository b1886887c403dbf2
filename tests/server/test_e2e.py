"""`deja serve` as a real process, driven over HTTP by the official openai SDK."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from deja.testing import FakeOpenAIServer, Reply

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, FakeOpenAIServer, subprocess.Popen[bytes]]]:
    with FakeOpenAIServer() as upstream:
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(
            f"""
model_list:
  - model_name: gpt-4o
    litellm_params: {{model: openai/gpt-4o, api_base: "{upstream.base_url}", api_key: sk-up}}
caching: {{type: memory, ttl: 600}}
general_settings:
  master_key: sk-master
  virtual_keys: [{{key: sk-team, tenant: team}}]
"""
        )
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deja.cli",
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx2.get(f"{base}/health", timeout=0.5).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                out = process.stdout.read().decode() if process.stdout else ""
                process.kill()
                pytest.fail(f"deja serve did not start:\n{out}")
            time.sleep(0.1)
        try:
            yield base, upstream, process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_openai_sdk_through_the_proxy(
    served: tuple[str, FakeOpenAIServer, subprocess.Popen[bytes]],
) -> None:
    base, upstream, process = served
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-team", max_retries=0)
    first = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    second = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert first.headers["x-deja-cache"] == "miss" and second.headers["x-deja-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    upstream.queue_reply(Reply("streamed answer in several small pieces"))
    streamed = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "stream it"}],
        stream=True,  # type: ignore[list-item]
    )
    live = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    replay = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "stream it"}],
        stream=True,  # type: ignore[list-item]
    )
    assert "".join(c.choices[0].delta.content or "" for c in replay if c.choices) == live
    assert live == "streamed answer in several small pieces"
    assert upstream.count("/v1/chat/completions") == 2
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{base}/v1", api_key="sk-wrong", max_retries=0
        ).chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,  # type: ignore[arg-type]
        )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    # graceful shutdown on SIGTERM: uvicorn drains, runs the lifespan shutdown (which closes
    # the store and the upstream client), then re-raises the signal for process managers
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) in (0, -signal.SIGTERM)
    log = process.stdout.read().decode() if process.stdout else ""
    assert "Application shutdown complete" in log


def test_bad_config_exits_non_zero(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("cachng:\n  type: memory\n")
    out = subprocess.run(
        [sys.executable, "-m", "deja.cli", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode != 0
    assert "cachng" in out.stderr and "did you mean 'caching'" in out.stderr
    config.write_text("caching:\n  type: memory\n  ttl: abc\n")
    out = subprocess.run(
        [sys.executable, "-m", "deja.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode != 0 and "caching.ttl" in out.stderr
    assert os.environ.get("DEJA_CONFIG") is None


def test_two_workers_share_metrics_and_stats(tmp_path: Path) -> None:
    with FakeOpenAIServer() as upstream:
        port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(
            f"""
model_list:
  - model_name: gpt-4o
    litellm_params: {{model: openai/gpt-4o, api_base: "{upstream.base_url}", api_key: sk-up}}
caching: {{type: memory}}
general_settings: {{master_key: sk-master}}
"""
        )
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deja.cli",
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
                "--log-level",
                "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx2.get(f"{base}/health", timeout=0.5).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.1)
            headers = {"authorization": "Bearer sk-master"}
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(20):  # a new connection each time: the workers share the load
                assert (
                    httpx2.post(
                        f"{base}/v1/chat/completions", json=body, headers=headers
                    ).status_code
                    == 200
                )
            calls = upstream.count("/v1/chat/completions")  # one miss per worker that served
            for _ in range(6):  # whichever worker answers, it reports all of them
                stats = httpx2.get(f"{base}/cache/stats", headers=headers).json()
                assert stats["exact"]["hits"] + stats["exact"]["misses"] == 20, stats
                assert stats["exact"]["misses"] == calls, stats
                text = httpx2.get(f"{base}/metrics").text
                served = [
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("deja_cache_requests_total{")
                ]
                assert sum(served) == 20, text
        finally:
            process.terminate()
            process.wait(timeout=20)


def test_workers_are_warned_of_what_they_do_not_share(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from deja.config import parse_config
    from deja.server.run import _warn_about

    for cache_type, warning in (
        ("memory", "each worker has its own cache"),
        ("semantic", "matches the prompts the others stored only after its next save"),
    ):
        settings = parse_config({"caching": {"type": cache_type}}, base_dir=tmp_path)
        caplog.clear()
        with caplog.at_level("WARNING", logger="deja"):
            _warn_about(settings, 1)
            assert warning not in caplog.text
            _warn_about(settings, 4)
        assert warning in caplog.text
