"""`deja serve` as a real process, driven over HTTP by the official openai SDK."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from deja.testing import FakeOpenAIServer, Reply
from tests.helpers import free_port

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def write_config(tmp_path: Path, upstream: FakeOpenAIServer, rest: str) -> Path:
    """A proxy config with one model (``gpt-4o``) on ``upstream``, then ``rest``."""
    config = tmp_path / "config.yaml"
    model = f'{{model: openai/gpt-4o, api_base: "{upstream.base_url}", api_key: sk-up}}'
    config.write_text(
        f"model_list:\n  - model_name: gpt-4o\n    litellm_params: {model}\n{rest.strip()}\n"
    )
    return config


@contextlib.contextmanager
def serve(
    config: Path,
    *options: str,
    metrics_dir: Path | None = None,
    tmp: Path | None = None,
    new_session: bool = False,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``deja serve --config config *options`` on a free port, once it answers /health
    (``metrics_dir``: where the workers keep their metrics, as an operator would set it;
    ``tmp``: the server's TMPDIR; ``new_session``: in a process group of its own, with its
    workers, as a service manager starts it)."""
    port = free_port()
    address = ("--host", "127.0.0.1", "--port", str(port))
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    process = subprocess.Popen(
        [sys.executable, "-m", "deja.cli", "serve", "--config", str(config), *address, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=new_session,
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
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                out = process.stdout.read().decode() if process.stdout else ""
                pytest.fail(f"deja serve did not start:\n{out}")
            time.sleep(0.1)
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, FakeOpenAIServer, subprocess.Popen[bytes]]]:
    with FakeOpenAIServer() as upstream:
        config = write_config(
            tmp_path,
            upstream,
            """
caching: {type: memory, ttl: 600}
general_settings:
  master_key: sk-master
  virtual_keys: [{key: sk-team, tenant: team}]
""",
        )
        with serve(config) as (base, process):
            yield base, upstream, process


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
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    with FakeOpenAIServer() as upstream:
        config = write_config(
            tmp_path, upstream, "caching: {type: memory}\ngeneral_settings: {master_key: sk-master}"
        )
        with serve(config, "--workers", "2", "--log-level", "warning", tmp=temporary) as (
            base,
            process,
        ):
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
                assert 'deja_cache_entries{store="memory"}' in text  # the answering worker's
            made = sorted(p.name[:12] for p in temporary.iterdir())
            assert made == ["deja-config-", "deja-metrics"]  # the config's copy, the metrics
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    # the directory deja made for the workers' metrics goes with them (one per start before)
    assert list(temporary.iterdir()) == []


def test_workers_started_again_build_from_the_configuration_read_at_start(
    tmp_path: Path,
) -> None:
    """A worker uvicorn starts again (SIGHUP: all of them) read the file as it was then:
    an edit served beside the old configuration, and a broken file left a worker dying
    and restarting for ever."""
    with FakeOpenAIServer() as upstream:
        config = write_config(
            tmp_path, upstream, "caching: {type: memory}\ngeneral_settings: {master_key: sk-old}"
        )
        with serve(config, "--workers", "2", "--log-level", "warning") as (base, process):
            config.write_text("cachng: {type: memory}\n")  # an edit, and a broken one
            process.send_signal(signal.SIGHUP)  # uvicorn starts every worker again
            time.sleep(3)
            headers = {"authorization": "Bearer sk-old"}
            for _ in range(10):
                assert httpx2.get(f"{base}/v1/models", headers=headers).status_code == 200
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
            out = process.stdout.read().decode() if process.stdout else ""
    assert "Traceback" not in out and "ConfigError" not in out


def test_workers_share_an_in_process_semantic_index_through_their_saves(
    tmp_path: Path,
) -> None:
    with FakeOpenAIServer() as upstream:
        config = write_config(
            tmp_path,
            upstream,
            """
caching:
  type: semantic
  store: {type: disk, directory: cache}
  params: {semantic_save_interval: 0.3}
general_settings: {master_key: sk-master}
""",
        )
        headers = {"authorization": "Bearer sk-master"}

        def ask(text: str) -> str:  # a new connection each time: either worker answers
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
            reply = httpx2.post(f"{base}/v1/chat/completions", json=body, headers=headers)
            assert reply.status_code == 200, reply.text
            return reply.headers["x-deja-cache"]

        metrics = tmp_path / "metrics"
        with serve(config, "--workers", "2", "--log-level", "warning", metrics_dir=metrics) as (
            base,
            _,
        ):
            assert ask("How can I track my card delivery?") == "miss"
            # other traffic for a while: each worker saves and takes in the other's saves
            for i in range(24):
                ask(f"Question number {i} about something else entirely, topic {i * 7}")
                time.sleep(0.15)
            before = upstream.count("/v1/chat/completions")
            statuses: list[str] = []
            # whichever worker stored the first prompt, both now answer its rewording: ask
            # until each worker has served it (the kernel picks the worker per connection)
            while len(statuses) < 40 and min(_semantic_hits_by_worker(metrics)) == 0:
                statuses.append(ask("how do i track the delivery of my card"))
            assert statuses == ["semantic_hit"] * len(statuses), statuses
            assert min(_semantic_hits_by_worker(metrics)) > 0, statuses
            assert upstream.count("/v1/chat/completions") == before


def _semantic_hits_by_worker(metrics: Path) -> list[float]:
    """Semantic hits each worker counted, from its own metrics file (two workers)."""
    import shutil
    import tempfile

    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    hits: list[float] = []
    files = sorted(metrics.glob("counter_*.db"))
    for file in files:
        with tempfile.TemporaryDirectory() as alone:  # the collector reads a whole directory
            shutil.copy(file, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            value = registry.get_sample_value(
                "deja_cache_requests_total", {"tier": "semantic", "result": "semantic_hit"}
            )
            hits.append(value or 0.0)
    return hits + [0.0] * (2 - len(hits))


def test_workers_are_warned_of_what_they_do_not_share(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from deja.config import parse_config
    from deja.server.run import _warn_about

    disk = {"type": "disk", "directory": str(tmp_path / "disk")}
    for caching, warning in (
        ({"type": "memory"}, "each worker has its own cache"),
        ({"type": "semantic"}, "its own semantic index"),  # over a memory store, as entries
        ({"type": "semantic", "store": disk}, "the others stored only after its next save"),
        ({"type": "qdrant-semantic"}, "each worker keeps an index of its own"),
    ):
        settings = parse_config({"caching": caching}, base_dir=tmp_path)
        caplog.clear()
        with caplog.at_level("WARNING", logger="deja"):
            _warn_about(settings, 1)
            assert warning not in caplog.text
            _warn_about(settings, 4)
        assert warning in caplog.text
    server = {"type": "qdrant-semantic", "qdrant_api_base": "http://qdrant.invalid:6333"}
    caplog.clear()
    with caplog.at_level("WARNING", logger="deja"):
        _warn_about(parse_config({"caching": server}, base_dir=tmp_path), 4)
    assert "index of its own" not in caplog.text  # a server index is one for all workers


@pytest.mark.parametrize(
    ("blocked", "text", "says"),
    [
        (
            "redis",
            "model_list: [{model_name: m, litellm_params: {model: openai/m, api_key: k,"
            ' api_base: "http://127.0.0.1:9/v1"}}]\n'
            'caching: {type: redis, url: "redis://127.0.0.1:6399/0"}\n',
            "redis is not installed; run: pip install 'deja-llm[redis]'",
        ),
        (
            "botocore",
            "model_list: [{model_name: claude, litellm_params: {model: bedrock/anthropic.claude-v2,"
            " aws_region_name: us-east-1, aws_access_key_id: AKIDX, aws_secret_access_key: s}}]\n",
            "botocore is not installed; run: pip install 'deja-llm[bedrock]'",
        ),
    ],
)
def test_several_workers_refuse_what_one_worker_refuses(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    blocked: str,
    text: str,
    says: str,
) -> None:
    """What a worker builds is built (and closed) once before the workers start: a store
    or provider whose extra is missing is one error and exit code 2, as with one worker,
    not workers that die and are started again without end."""

    from deja.cli import main
    from deja.server import run
    from tests.helpers import without_packages

    config = tmp_path / "config.yaml"
    config.write_text(text)
    monkeypatch.setenv(run.CONFIG_ENV, "")  # serve() sets these; restored afterwards
    monkeypatch.setenv(run.LOG_LEVEL_ENV, "")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # serve() sets it: restored after
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    started: list[dict[str, object]] = []
    monkeypatch.setattr(
        run,
        "_supervise",
        lambda options, *, workers: started.append({**options, "workers": workers}),
    )
    without_packages(monkeypatch, blocked)
    assert (
        main(["serve", "--config", str(config), "--workers", "2", "--port", str(free_port())]) == 2
    )
    err = capsys.readouterr().err
    assert f"deja: error: {says}" in err and "Traceback" not in err
    assert started == []  # no worker was started
    with pytest.raises(Exception, match=re.escape(says)):  # what one worker says
        monkeypatch.setenv(run.CONFIG_ENV, str(config))
        run.app_from_env()


def test_several_workers_start_once_the_app_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:

    from deja.server import run

    with FakeOpenAIServer() as upstream:
        config = write_config(tmp_path, upstream, "caching: {type: disk, directory: cache}")
    monkeypatch.setenv(run.CONFIG_ENV, "")
    monkeypatch.setenv(run.LOG_LEVEL_ENV, "")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # serve() sets it: restored after
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    started: list[dict[str, object]] = []
    monkeypatch.setattr(
        run,
        "_supervise",
        lambda options, *, workers: started.append({**options, "workers": workers}),
    )
    with caplog.at_level("WARNING", logger="deja"):
        run.serve(config, workers=2, port=free_port())
    assert [kwargs["workers"] for kwargs in started] == [2]
    # the workers say it, each: the parent's check does not add one more
    assert "authentication is OFF" not in caplog.text


def test_an_operators_metrics_directory_loses_old_figures_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deja.server.run import _share_metrics

    directory = tmp_path / "metrics"
    (directory / "other-service").mkdir(parents=True)
    (directory / "counter_99999.db").write_bytes(b"an earlier run's counts")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    assert _share_metrics() is None  # the operator's: used, and left in place at exit
    assert [p.name for p in directory.iterdir()] == ["other-service"]


def test_gauges_of_dead_workers_leave_the_exposition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn replaces a dead worker without telling anyone: the scrape notices."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    script = (
        "from deja.metrics import PrometheusMetrics\n"
        "PrometheusMetrics().breaker_state('redis', True)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)  # a worker that died
    from deja.server.workers import aggregated_exposition

    assert list(tmp_path.glob("gauge_livemax_*.db"))
    text = aggregated_exposition().decode()
    assert 'deja_cache_breaker_open{store="redis"} 1.0' not in text
    assert not list(tmp_path.glob("gauge_livemax_*.db"))


def test_spawned_workers_log_at_the_level_deja_was_given(tmp_path: Path) -> None:
    """Workers are new interpreters: ``deja -v serve --workers 2`` must not lose its logs."""
    with FakeOpenAIServer() as upstream:
        config = write_config(tmp_path, upstream, "caching: {type: memory}")
    worker = (
        "import logging\n"
        "from deja.server.run import app_from_env\n"
        "app_from_env()\n"
        "print(logging.getLevelName(logging.getLogger().level))\n"
    )
    env = {**os.environ, "DEJA_CONFIG": str(config), "DEJA_LOG_LEVEL": "DEBUG"}
    out = subprocess.run(
        [sys.executable, "-c", worker],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "DEBUG"


def test_a_call_outliving_the_drain_time_gets_an_api_error(tmp_path: Path) -> None:
    import threading

    with FakeOpenAIServer() as upstream:
        config = write_config(tmp_path, upstream, "proxy: {graceful_shutdown_seconds: 1}")
        upstream.delay_next(15)
        with serve(config, "--log-level", "warning") as (base, process):
            answers: list[httpx2.Response] = []
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "a long one"}]}
            caller = threading.Thread(
                target=lambda: answers.append(
                    httpx2.post(f"{base}/v1/chat/completions", json=body, timeout=30)
                )
            )
            caller.start()
            while upstream.count("/v1/chat/completions") == 0:
                time.sleep(0.05)
            stopped = time.monotonic()
            process.send_signal(signal.SIGTERM)
            caller.join(timeout=30)
            assert time.monotonic() - stopped < 10  # the drain time, not the call's
    (answer,) = answers
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["code"] == "shutting_down"


def test_several_workers_in_memory_store_figures_add_up_and_never_go_down(
    tmp_path: Path,
) -> None:
    """Each worker has its own in-memory store: /metrics adds their entries and evictions
    up (a scrape used to read only the answering worker's, so the counter went down)."""
    with FakeOpenAIServer() as upstream:
        config = write_config(tmp_path, upstream, "caching: {type: memory, max_entries: 5}")
        with serve(config, "--workers", "2", "--log-level", "warning") as (base, _):
            for i in range(40):  # a new connection each: both workers take some
                body = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"q{i}"}]}
                reply = httpx2.post(f"{base}/v1/chat/completions", json=body)
                assert reply.status_code == 200, reply.text

            def figures() -> tuple[float, float]:
                text = httpx2.get(f"{base}/metrics").text
                assert text.count("# TYPE deja_cache_evictions_total counter") == 1
                entries = evictions = 0.0
                for line in text.splitlines():
                    if line.startswith('deja_cache_entries{store="memory"}'):
                        entries = float(line.split()[-1])
                    elif line.startswith('deja_cache_evictions_total{store="memory"}'):
                        evictions = float(line.split()[-1])
                return entries, evictions

            # a worker writes its figures when it answers a scrape and every 5 s: the
            # scrapes may all reach the other one, so the sum may lag for up to 5 s
            seen = [figures() for _ in range(12)]
            deadline = time.monotonic() + 15
            while sum(seen[-1]) != 40 and time.monotonic() < deadline:
                time.sleep(0.5)
                seen.append(figures())
            evictions = [e for _, e in seen]
            assert evictions == sorted(evictions), evictions  # a counter: never down
            # both workers' figures: 40 answers stored, 5 kept by each that took some
            entries, total = seen[-1]
            assert 5 <= entries <= 10 and entries + total == 40, seen[-1]
