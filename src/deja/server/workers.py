"""Figures across the proxy's worker processes (Prometheus multiprocess mode).

With several workers, ``deja serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before the workers start; prometheus_client then keeps every worker's counters and
histograms in files there, and any worker answering ``/metrics`` or ``/cache/stats`` reads all
of them. The per-store figures (entries, evictions) of a shared store are read by the
answering worker at the scrape (every worker reads the same); those of an in-memory store,
one per worker, are written by each worker into the files and added up. Gauges count the
live workers only: files of workers that died (and were replaced) are marked dead at each
scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deja.errors import ConfigError
from deja.metrics import MULTIPROC_ENV, multiprocess

logger = logging.getLogger("deja.server")

__all__ = [
    "MULTIPROC_ENV",
    "aggregated_exposition",
    "aggregated_stats",
    "clear_directory",
    "multiprocess",
]


def _registry(*extra: Any) -> Any:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    _forget_dead_workers()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    for collector in extra:
        registry.register(collector)
    return registry


def _forget_dead_workers() -> None:
    """Remove the live-mode gauge files of workers that are gone (uvicorn replaces a dead
    worker and calls no hook: the pid in the file name tells)."""
    from prometheus_client.multiprocess import mark_process_dead

    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = _writer(path)
        if pid is not None and not _alive(pid):
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _writer(path: Path) -> int | None:
    """The pid of the process that writes the metrics file ``path`` (its name's last
    part: ``counter_1234.db``), if it has one."""
    pid = path.stem.rpartition("_")[2]
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process: alive
        return True
    return True


def clear_directory(directory: str) -> None:
    """Empty an operator-given metrics directory of prometheus_client's files (only those:
    it may hold other things), as its docs require before the workers start: those of
    processes that are gone. A running process's (another proxy given the same directory,
    the old one of a restart on the same host) are left: deleted, its workers went on
    counting into files nobody reads, and its /metrics fell to nothing. Warned of: the
    two proxies' figures are summed until it stops."""
    path = Path(directory)
    live: set[int] = set()
    try:
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            pid = _writer(stale)
            if pid is not None and _alive(pid):
                live.add(pid)
                continue
            stale.unlink(missing_ok=True)
    except OSError as exc:  # a start-up problem: one line, as for the configuration's
        raise ConfigError(
            f"{MULTIPROC_ENV}={directory} cannot hold the workers' metrics: {exc.strerror or exc}"
        ) from exc
    if live:
        logger.warning(
            "%s=%s holds the metrics of running processes (pids %s): left in place, and"
            " summed into this proxy's /metrics until they stop; give each proxy a"
            " directory of its own",
            MULTIPROC_ENV,
            directory,
            ", ".join(map(str, sorted(live))),
        )


def aggregated_exposition(*extra: Any) -> bytes:
    """The text exposition of every worker's metrics, summed, and of ``extra`` collectors
    of this process (the store figures)."""
    from prometheus_client import generate_latest

    exposition: bytes = generate_latest(_registry(*extra))
    return exposition


def _samples() -> Iterable[Any]:
    for family in _registry().collect():
        yield from family.samples


def aggregated_stats() -> dict[str, Any]:
    """Hits, misses and savings of every worker, from the shared counters."""
    results: dict[str, float] = {}
    totals = {"saved_tokens": 0.0, "saved_usd": 0.0, "store_errors": 0.0, "coalesced": 0.0}
    names = {
        "deja_cache_saved_tokens_total": "saved_tokens",
        "deja_cache_saved_usd_total": "saved_usd",
        "deja_cache_errors_total": "store_errors",
        "deja_singleflight_coalesced_total": "coalesced",
    }
    for sample in _samples():
        if sample.name == "deja_cache_requests_total":
            result = sample.labels.get("result", "")
            results[result] = results.get(result, 0.0) + sample.value
        elif sample.name in names:
            totals[names[sample.name]] += sample.value
    hits, semantic = results.get("hit", 0.0), results.get("semantic_hit", 0.0)
    misses = results.get("miss", 0.0)
    served = hits + semantic
    return {
        "exact": {
            "hits": int(hits),
            "misses": int(misses),
            "bypasses": int(results.get("bypass", 0.0)),
            "coalesced": int(totals["coalesced"]),
        },
        "semantic": {"hits": int(semantic)},
        "hit_ratio": served / (served + misses) if served + misses else 0.0,
        "store_errors": int(totals["store_errors"]),
        "saved_tokens": int(totals["saved_tokens"]),
        "saved_usd": totals["saved_usd"],
        "workers": "all",
    }
