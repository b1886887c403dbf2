"""Proxy benchmark: requests/s and latency on cache hits under load, and miss overhead.

In one invocation, on loopback, with `wrk` (Debian package `wrk`) as the load generator at
64 connections for a fixed duration:
  1. the simulated upstream alone (deja.testing.FakeOpenAIServer: the ceiling of a miss);
  2. `deja serve` with the in-memory cache, workers = cores, serving hits;
  3. (if `--redis URL`) the same with `type: redis`;
  4. LiteLLM 1.108.7's proxy (`litellm[proxy]`, in .bench/litellm-venv) with
     `cache_params: {type: local}`, serving hits (skip with --no-litellm). One worker: with
     `--num_workers 2` its worker processes die at start on this machine; it takes ~40 s to
     start.
Then the miss overhead: p50 of unique-prompt requests through deja minus p50 of the same
requests sent straight to the upstream, interleaved call by call, on keep-alive connections;
repeated `--miss-runs` times, and reported as the median over runs (with the ratio of the
two p50s, which moves less with the machine's load than the difference does). The 1-minute
load average is printed before and after: other work on the machine moves every figure.

Targets (proxy issue): >= 4,000 requests/s on memory hits at 64 connections, p99 <= 25 ms;
miss overhead <= 1 ms p50. wrk and the servers share the machine's 2 cores.

    .venv/bin/python bench/proxy.py [--duration 10] [--miss-runs 5] [--no-litellm] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2

from deja.testing import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / ".bench" / "litellm-venv"
COMMAND = ".venv/bin/python bench/proxy.py"
BODY = '{"model":"gpt-4o","messages":[{"role":"user","content":"What are your opening hours?"}]}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"server exited:\n{out[-3000:]}")
        try:
            if httpx2.get(url, timeout=1).status_code < 500:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {timeout} s")


@contextmanager
def running(cmd: list[str], health: str, env: dict[str, str] | None = None) -> Iterator[None]:
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(health, process)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wrk(
    url: str, *, key: str, duration: int, connections: int = 64, threads: int = 2
) -> dict[str, float]:
    """Run wrk with the chat body; requests/s and latency percentiles in ms."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = '{BODY}'\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        )
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else float("nan"),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def deja_config(directory: Path, upstream: str, caching: str) -> Path:
    path = directory / "deja.yaml"
    path.write_text(
        f"""
model_list:
  - model_name: gpt-4o
    litellm_params: {{model: openai/gpt-4o, api_base: "{upstream}", api_key: sk-up}}
caching: {caching}
general_settings:
  master_key: sk-master
  virtual_keys: [{{key: sk-bench, tenant: bench}}]
"""
    )
    return path


def litellm_config(directory: Path, upstream: str) -> Path:
    path = directory / "litellm.yaml"
    path.write_text(
        f"""
model_list:
  - model_name: gpt-4o
    litellm_params: {{model: openai/gpt-4o, api_base: "{upstream}", api_key: sk-up}}
litellm_settings:
  cache: true
  cache_params: {{type: local}}
general_settings:
  master_key: sk-bench
"""
    )
    return path


def miss_overhead(proxy: str, upstream: str, calls: int, runs: int) -> dict[str, Any]:
    """Unique prompts through deja and straight to the upstream, interleaved; per-run p50s."""
    headers = {"authorization": "Bearer sk-bench"}
    rounds: list[tuple[float, float]] = []
    with httpx2.Client() as via, httpx2.Client() as raw:
        for run in range(runs + 1):  # run 0 warms both paths up and is not counted
            through, direct = [], []
            for i in range(calls if run else 20):
                body = {
                    "model": "gpt-4o",
                    "messages": [{"role": "user", "content": f"unique {run} {i} {time.time()}"}],
                }
                started = time.perf_counter()
                raw.post(
                    f"{upstream}/chat/completions",
                    json=body,
                    headers={"authorization": "Bearer sk-up"},
                ).raise_for_status()
                direct.append((time.perf_counter() - started) * 1e3)
                started = time.perf_counter()
                response = via.post(f"{proxy}/v1/chat/completions", json=body, headers=headers)
                through.append((time.perf_counter() - started) * 1e3)
                assert response.headers.get("x-deja-cache") == "miss", response.headers
            if run:
                rounds.append((statistics.median(direct), statistics.median(through)))
    overheads = [t - d for d, t in rounds]
    return {
        "upstream_p50_ms": statistics.median(d for d, _ in rounds),
        "through_deja_p50_ms": statistics.median(t for _, t in rounds),
        "miss_overhead_ms": statistics.median(overheads),
        "miss_ratio": statistics.median(t / d for d, t in rounds),
        "miss_overhead_runs_ms": [round(o, 3) for o in overheads],
        "miss_calls_per_run": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--redis", help="also bench `type: redis` against this URL")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--miss-calls", type=int, default=300, help="calls per miss run")
    parser.add_argument("--miss-runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    figures: dict[str, Any] = {
        "workers": args.workers,
        "connections": 64,
        "duration_s": args.duration,
        "load_average_start": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer() as upstream:
        directory = Path(tmp)
        figures["upstream_alone"] = wrk(
            f"{upstream.base_url}/chat/completions", key="sk-up", duration=args.duration
        )
        port = free_port()
        serve = [
            sys.executable,
            "-m",
            "deja.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ]
        config = deja_config(directory, upstream.base_url, "{type: memory}")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        with running([*serve, "--config", str(config)], f"http://127.0.0.1:{port}/health"):
            for _ in range(4 * args.workers):  # one miss per worker, then hits only
                httpx2.post(
                    url,
                    content=BODY,
                    headers={
                        "authorization": "Bearer sk-bench",
                        "content-type": "application/json",
                    },
                )
            figures["deja_memory_hits"] = wrk(url, key="sk-bench", duration=args.duration)
            figures |= miss_overhead(
                f"http://127.0.0.1:{port}", upstream.base_url, args.miss_calls, args.miss_runs
            )
        if args.redis:
            config = deja_config(
                directory, upstream.base_url, f'{{type: redis, url: "{args.redis}"}}'
            )
            with running([*serve, "--config", str(config)], f"http://127.0.0.1:{port}/health"):
                httpx2.post(
                    url,
                    content=BODY,
                    headers={
                        "authorization": "Bearer sk-bench",
                        "content-type": "application/json",
                    },
                )
                figures["deja_redis_hits"] = wrk(url, key="sk-bench", duration=args.duration)
        if not args.no_litellm:
            litellm = LITELLM_VENV / "bin" / "litellm"
            if not litellm.exists():
                sys.exit(
                    f"{litellm} missing: run bench/inprocess.py once (it creates the LiteLLM venv)"
                )
            lport = free_port()
            env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            cmd = [
                str(litellm),
                "--config",
                str(litellm_config(directory, upstream.base_url)),
                "--host",
                "127.0.0.1",
                "--port",
                str(lport),
                "--num_workers",
                "1",
            ]
            lurl = f"http://127.0.0.1:{lport}/v1/chat/completions"
            with running(cmd, f"http://127.0.0.1:{lport}/health/liveliness", env=env):
                for _ in range(4 * args.workers):
                    httpx2.post(
                        lurl,
                        content=BODY,
                        headers={
                            "authorization": "Bearer sk-bench",
                            "content-type": "application/json",
                        },
                        timeout=30,
                    )
                time.sleep(1)
                figures["litellm_local_hits"] = wrk(lurl, key="sk-bench", duration=args.duration)
    figures["load_average_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"deja proxy benchmark: wrk -t2 -c64 -d{args.duration}s on loopback, {args.workers} workers, 2 cores shared"
    )
    for name in ("upstream_alone", "deja_memory_hits", "deja_redis_hits", "litellm_local_hits"):
        if name in figures:
            f = figures[name]
            print(
                f"{name:20s} {f['rps']:9.0f} req/s   p50 {f['p50_ms']:7.2f} ms   p99 {f['p99_ms']:7.2f} ms   non-2xx {f['non_2xx']:.0f}"
            )
    runs = ", ".join(f"{o:.3f}" for o in figures["miss_overhead_runs_ms"])
    print(
        f"miss overhead p50: {figures['miss_overhead_ms']:.3f} ms, median of {args.miss_runs} runs "
        f"of {args.miss_calls} calls ({runs}); through deja {figures['through_deja_p50_ms']:.3f} ms "
        f"vs upstream direct {figures['upstream_p50_ms']:.3f} ms = x{figures['miss_ratio']:.2f} "
        "(target: overhead <= 1 ms)"
    )
    print(
        f"load average (1 min): {figures['load_average_start']} at start, "
        f"{figures['load_average_end']} at end"
    )
    print(f"reproduce: {' '.join([COMMAND, *sys.argv[1:]])}")


if __name__ == "__main__":
    main()
