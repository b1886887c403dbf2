"""What a /metrics scrape costs when many workers of a multi-worker proxy have died.

Each replaced worker (a crash, a SIGHUP restart) left its ``counter_<pid>.db`` and
``histogram_<pid>.db`` in ``PROMETHEUS_MULTIPROC_DIR``. One worker's real files are made
first (a process that records a realistic mix of deja's counters and histograms through
:class:`deja.metrics.PrometheusMetrics`), then copied under ``--dead`` pids that no process
can have (above Linux's PID_MAX_LIMIT, 2**22), and the workers' figures are read as the
proxy reads them (:func:`deja.server.workers.aggregated_exposition`): the first scrape, then
the median of ``--scrapes`` more. The sums read are checked against one worker's figures
times the number of files.

    .venv/bin/python bench/metrics_scrape.py [--dead 1000] [--scrapes 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_WORKER = """
from deja.metrics import PrometheusMetrics
m = PrometheusMetrics()
for tier, result in [("exact", "hit"), ("exact", "miss"), ("semantic", "semantic_hit")]:
    for _ in range(3):
        m.request(tier, result)
for store in ("memory", "redis"):
    for seconds in (0.00002, 0.0004, 0.003, 0.2):
        m.lookup_seconds(store, seconds)
    m.store_error(store, "get")
for provider in ("openai", "anthropic"):
    m.upstream_seconds(provider, 0.8)
    m.provider_cached_tokens(provider, "read", 100)
    m.upstream_error(provider, "429")
m.similarity("hit", 0.97)
m.similarity("near_miss", 0.81)
m.saved(120, 0.0012)
m.coalesced()
"""
FIRST_DEAD_PID = 2**22 + 1  # no Linux process has a pid above PID_MAX_LIMIT


def _requests_total(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("deja_cache_requests_total{")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deja-bench-metrics-") as name:
        directory = Path(name)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": name}
        subprocess.run([sys.executable, "-c", ONE_WORKER], check=True, env=env)
        made = sorted(directory.glob("*.db"))
        for i in range(args.dead):
            for path in made:
                kind = path.stem.rpartition("_")[0]  # (counter, gauge_livesum...)
                shutil.copy(path, directory / f"{kind}_{FIRST_DEAD_PID + i}.db")
        for path in made:
            path.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = name
        from deja.server.workers import aggregated_exposition

        files_before = len(list(directory.glob("*.db")))
        started = time.perf_counter()
        first = aggregated_exposition().decode()
        first_seconds = time.perf_counter() - started
        times = []
        for _ in range(args.scrapes):
            started = time.perf_counter()
            text = aggregated_exposition().decode()
            times.append(time.perf_counter() - started)
        files_after = len(list(directory.glob("*.db")))
        expected = 9.0 * args.dead
        assert _requests_total(first) == expected, (_requests_total(first), expected)
        assert _requests_total(text) == expected, (_requests_total(text), expected)
    print(f"dead workers: {args.dead}; metrics files: {files_before} before, {files_after} after")
    print(f"first scrape: {first_seconds * 1000:.1f} ms")
    print(f"next scrapes: median {statistics.median(times) * 1000:.2f} ms over {args.scrapes}")


if __name__ == "__main__":
    main()
