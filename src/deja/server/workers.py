"""Figures across the proxy's worker processes (Prometheus multiprocess mode).

With several workers, ``deja serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before the workers start; prometheus_client then keeps every worker's counters and
histograms in files there, and any worker answering ``/metrics`` or ``/cache/stats`` reads all
of them. The per-store figures (entries, evictions) of a shared store are read by the
answering worker at the scrape (every worker reads the same); those of an in-memory store,
one per worker, are written by each worker into the files and added up. Gauges count the
live workers only: files of workers that died (and were replaced) are marked dead at each
scrape. Their counters and histograms are folded at the scrape into one archive file per
kind, in prometheus_client's format (see :func:`_fold`): the directory holds the files of
the live workers and two more, however many workers died before.

Whether a worker is gone is told by a lock, not by its pid (which another container
sharing the directory, or a process given the pid again, has too): each deja process
writing there holds a shared ``flock`` of its own ``deja-worker-<pid>.lock`` for its life
(:func:`deja.metrics.hold_writer_lock`), and ``deja serve`` one of ``deja-supervisor.lock``
in the directories it uses; whoever can lock such a file exclusive knows its holder gone.
Only files of a writer that holds no lock file (an earlier deja, another program) are
judged by their pid, as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from deja.errors import ConfigError
from deja.metrics import (
    MULTIPROC_ENV,
    WRITER_LOCK_PREFIX,
    WRITER_LOCK_SUFFIX,
    hold_lock,
    multiprocess,
)

logger = logging.getLogger("deja.server")

__all__ = [
    "MULTIPROC_ENV",
    "SUPERVISOR_LOCK",
    "aggregated_exposition",
    "aggregated_stats",
    "alive",
    "clear_directory",
    "held",
    "hold_lock",
    "multiprocess",
    "writers_alive",
]

# held (shared) by each ``deja serve`` in the directories it made or was given, for its life
SUPERVISOR_LOCK = "deja-supervisor.lock"
# How long a reader waits for the fold lock before it reads without it (see _fold_lock)
FOLD_LOCK_SECONDS = 2.0


def _registry(*extra: Any) -> Any:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        registry.register(_FoldingCollector(Path(directory)))
    else:  # (prometheus_client's own error: the variable is not set)
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    for collector in extra:
        registry.register(collector)
    return registry


# A dead worker's counters, histograms (and summaries: deja has none) are sums over the
# workers: folded into one archive file per kind, ``counter_dead-workers.db`` (the format
# of prometheus_client's own files, which its collector reads as any other: the name's
# last part is no pid, so the fold never takes it for a worker's). Gauges are not folded:
# deja's are all ``live*`` (livesum, livemax), whose files of the dead are dropped.
_FOLDED_KINDS = frozenset({"counter", "histogram", "summary"})
_ARCHIVE = "dead-workers"
# the fold's own files, none ending in ``.db`` (the collector reads ``*.db``):
# suffix of a dead worker's file taken for a fold, unique (a fold killed after taking
# counter_12.db, then another worker 12 dead before the next: two files taken, both kept):
# counter_12.db-folding-<hex>
_TAKEN = "-folding"
_NEW = "-new"  # suffix of an archive being written: counter_dead-workers.db-new
_JOURNAL = "deja-fold.journal"  # a fold committed: archives to put in place, files to delete


class _FoldingCollector:
    """prometheus_client's multiprocess collector over ``directory``, reading it under the
    fold's lock once the files of dead workers are folded (or their live gauges dropped).

    Every reader of deja's (each worker's ``/metrics`` and ``/cache/stats``) takes the lock,
    exclusive, for the fold and the read, so none sees a dead worker's counts both in its
    file and in the archive, or in neither. A fold killed midway is finished (or undone)
    by the next reader before it reads: see :func:`_fold`. Without the lock (no ``fcntl``,
    a file system without locks, or a holder that keeps it past :data:`FOLD_LOCK_SECONDS`:
    stopped, stuck in ``fsync``) nothing is folded, and what is read is chosen by the step
    a fold under way is at (see :func:`_unlocked_view`).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> list[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        if not self.directory.is_dir():  # (the collector's own error)
            MultiProcessCollector(None, path=str(self.directory))  # type: ignore[no-untyped-call]
        with _fold_lock(self.directory) as locked:
            if locked:
                _fold(self.directory)
                # (read to the end under the lock: merge returns a view of what it read)
                return _merge(list(self.directory.glob("*.db")))  # (dead gauges dropped)
        for _ in range(9):  # a fold going on meanwhile deleted a file that was chosen
            with contextlib.suppress(FileNotFoundError):
                return _merge(_without_dead_gauges(_unlocked_view(self.directory)))
        return _merge(_without_dead_gauges(_unlocked_view(self.directory)))


def _merge(files: list[Path]) -> list[Any]:
    from prometheus_client.multiprocess import MultiProcessCollector

    paths = [str(path) for path in files]
    return list(MultiProcessCollector.merge(paths, accumulate=True))  # type: ignore[no-untyped-call]


def _unlocked_view(directory: Path) -> list[Path]:
    """The files to read, without the fold lock, to count each dead worker once whatever
    step a fold holding the lock is at: the ``*.db`` files, and, before the fold's
    commit, the files it took (in no archive yet); after its commit and before its new
    archives are in place, those new archives instead of the old."""
    files = list(directory.glob("*.db"))
    try:
        journal = json.loads((directory / _JOURNAL).read_bytes())
    except FileNotFoundError:
        return [*files, *directory.glob(f"*.db{_TAKEN}*")]
    for kind in journal["archives"]:
        archive = directory / f"{kind}_{_ARCHIVE}.db"
        new = Path(f"{archive}{_NEW}")
        if new.exists():
            files = [path for path in files if path != archive] + [new]
    return files


def _without_dead_gauges(files: list[Path]) -> list[Path]:
    """``files`` but the live-mode gauges of writers that are gone (read, not deleted)."""
    gauges = [path for path in files if path.name.startswith("gauge_live")]
    if not gauges:
        return files
    with _dead_writers(gauges[0].parent, gauges) as (dead, _):
        gone = {path for path in gauges if _writer(path) in dead}
    return [path for path in files if path not in gone]


@contextlib.contextmanager
def _fold_lock(directory: Path) -> Iterator[bool]:
    """Hold ``directory``'s fold lock (a ``flock`` of the directory itself: no lock file),
    exclusive; yields whether it is held (not where the platform or the file system has no
    locks, nor when another process has held it for :data:`FOLD_LOCK_SECONDS`).

    The wait is bounded: a holder stopped (SIGSTOP) or stuck in ``fsync`` made every scrape
    and ``/cache/stats`` of every worker wait with it, each holding a thread of asyncio's
    default pool, and once they were all taken, what else runs there (semantic search,
    index loads) waited too.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield False
        return
    try:
        yield _lock_within(fd, directory, FOLD_LOCK_SECONDS)
    finally:
        os.close(fd)  # (the lock with it; and with the process, should it die holding it)


def _lock_within(fd: int, directory: Path, seconds: float) -> bool:
    """Lock ``fd`` exclusive within ``seconds`` (polled: ``flock`` itself waits for ever);
    whether it is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return False

    deadline, pause = time.monotonic() + seconds, 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                logger.warning(
                    "%s: its fold lock held for %.1f s by another process: read without"
                    " folding dead workers' metrics",
                    directory,
                    seconds,
                )
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        except OSError as exc:
            logger.warning("cannot lock %s (%s): dead workers' metrics not folded", directory, exc)
            return False
        else:
            return True


def held(path: Path) -> bool:
    """Whether a running process holds a lock of the lock file ``path`` (see
    :func:`deja.metrics.hold_lock`)."""
    fd = _claim(path)
    if fd is None:
        return path.exists()
    os.close(fd)
    return False


def _claim(path: Path) -> int | None:
    """A descriptor locking ``path`` exclusive, if nobody holds a lock of it (its holder is
    gone); ``None`` if somebody does, or ``path`` is missing. Where locks fail otherwise,
    ``path`` is taken for held: nothing of a process that may run is removed."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def _dead_writers(
    directory: Path, files: list[Path]
) -> Iterator[tuple[dict[int, Path | None], set[int]]]:
    """The writers of ``files`` and the holders of ``directory``'s writer locks, as
    ``(gone, running)``: ``gone`` maps a pid to its lock file (``None``: a writer that held
    none, judged by its pid). The lock files of ``gone`` are held exclusive until the block
    ends: a process that is given one of those pids again waits there, before it makes a
    file, until the files of the gone one are taken."""
    gone: dict[int, Path | None] = {}
    running: set[int] = set()
    claimed: list[int] = []
    try:
        for lock in directory.glob(f"{WRITER_LOCK_PREFIX}*{WRITER_LOCK_SUFFIX}"):
            number = lock.name.removeprefix(WRITER_LOCK_PREFIX).removesuffix(WRITER_LOCK_SUFFIX)
            if not number.isdigit():
                continue
            fd = _claim(lock)
            if fd is None:
                running.add(int(number))
            else:
                claimed.append(fd)
                gone[int(number)] = lock
        for path in files:
            pid = _writer(path)
            if pid is None or pid in running or pid in gone:
                continue
            if alive(pid):
                running.add(pid)
            else:
                gone[pid] = None
        yield gone, running
    finally:
        for fd in claimed:
            os.close(fd)


def _fold(directory: Path) -> None:
    """Fold the counter and histogram files of dead workers into the archive of their kind,
    and drop their live gauges (the fold lock held).

    A scrape read every file of every worker that ever ran: with 1,000 replaced workers
    (weeks of crashes and SIGHUP restarts), one took a second, and the files grew without
    end. The steps, each safe to be killed after:

    1. a fold that committed (its journal written) is finished: its new archives put in
       place, its taken files deleted; one that did not commit is undone: its new
       archives deleted, and the files it took folded now, with the newly dead;
    2. each dead worker's file is taken (renamed out of ``*.db``: a process that is given
       the pid again opens a file of its own);
    3. per kind, the archive's values plus the taken files' are written to a new archive;
    4. the journal, written whole under another name and renamed: the commit;
    5. the new archives renamed over the old, the taken files deleted, the journal too.

    A taken file is counted by the old archive's readers until the commit and by the new
    archive after it: never by both, never by neither. A worker is gone when its lock file
    can be locked exclusive (see :func:`_dead_writers`); it is held so while its files are
    taken, and deleted.
    """
    _finish_fold(directory)
    for stale in directory.glob(f"*.db{_NEW}"):  # written by a fold that did not commit
        os.unlink(stale)
    taken = list(directory.glob(f"*.db{_TAKEN}*"))  # ... taken by it: folded now
    files = list(directory.glob("*.db"))
    with _dead_writers(directory, files) as (gone, _):
        for path in files:
            if _writer(path) not in gone:
                continue
            if path.name.partition("_")[0] in _FOLDED_KINDS:
                name = f"{path.name}{_TAKEN}-{uuid.uuid4().hex[:16]}"
                os.replace(path, path.with_name(name))
                taken.append(path.with_name(name))
            elif path.name.startswith("gauge_live"):  # (as prometheus_client's mark_process_dead)
                os.unlink(path)
        for lock in gone.values():
            if lock is not None:
                os.unlink(lock)
    if not taken:
        return
    by_kind: dict[str, list[Path]] = {}
    for path in taken:
        by_kind.setdefault(path.name.partition("_")[0], []).append(path)
    for kind, paths in by_kind.items():
        archive = directory / f"{kind}_{_ARCHIVE}.db"
        _write_sums(Path(f"{archive}{_NEW}"), [archive, *paths] if archive.exists() else paths)
    journal = {"archives": sorted(by_kind), "taken": sorted(path.name for path in taken)}
    _write_whole(directory / _JOURNAL, json.dumps(journal).encode())
    _finish_fold(directory)


def _finish_fold(directory: Path) -> None:
    """Finish the fold whose journal is in ``directory``, if any (see :func:`_fold`)."""
    try:
        journal = json.loads((directory / _JOURNAL).read_bytes())
    except FileNotFoundError:
        return
    for kind in journal["archives"]:
        archive = directory / f"{kind}_{_ARCHIVE}.db"
        with contextlib.suppress(FileNotFoundError):  # (put in place before the kill)
            os.replace(f"{archive}{_NEW}", archive)
    for name in journal["taken"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)
    os.unlink(directory / _JOURNAL)


def _write_sums(target: Path, sources: list[Path]) -> None:
    """Write to ``target`` (a file of prometheus_client's format) the sum of each value
    of ``sources`` (counters, histogram buckets and sums: each worker's, not cumulative)."""
    from prometheus_client.mmap_dict import MmapedDict

    sums: dict[str, float] = {}
    for source in sources:
        if source.stat().st_size < 8:  # (a worker killed as it made the file: no values)
            continue
        values = MmapedDict.read_all_values_from_file(str(source))  # type: ignore[no-untyped-call]
        for key, value, _, _ in values:
            sums[key] = sums.get(key, 0.0) + value
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)
    written = MmapedDict(str(target))  # type: ignore[no-untyped-call]
    try:
        for key, value in sums.items():
            written.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
    finally:
        written.close()  # type: ignore[no-untyped-call]
    _sync(target)


def _write_whole(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` under another name, then rename it: ``target`` is
    whole or absent, whenever its writer dies."""
    partial = target.with_name(f"{target.name}{_NEW}")
    with open(partial, "wb") as out:
        out.write(data)
    _sync(partial)
    os.replace(partial, target)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fold_files(directory: Path) -> list[Path]:
    """The fold's own files in ``directory``: taken files, new archives, the journal."""
    journal = [directory / _JOURNAL, directory / f"{_JOURNAL}{_NEW}"]
    return [*directory.glob(f"*.db{_TAKEN}*"), *directory.glob(f"*.db{_NEW}"), *journal]


def _writer(path: Path) -> int | None:
    """The pid of the process that writes the metrics file ``path`` (its name's last
    part: ``counter_1234.db``), if it has one."""
    pid = path.stem.rpartition("_")[2]
    return int(pid) if pid.isdigit() else None


def writers_alive(directory: Path) -> bool:
    """Whether a running process uses the metrics directory ``directory``: a ``deja serve``
    or a worker holding its lock file there, or a writer holding none whose pid runs."""
    if held(directory / SUPERVISOR_LOCK):
        return True
    with _dead_writers(directory, list(directory.glob("*.db"))) as (_, running):
        return bool(running)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs: a zombie (ended, not yet reaped by its parent, or
    never, when its parent was killed and no init process reaps) writes nothing more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process: alive
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:  # (no /proc: taken for alive)
        return True
    return stat.rpartition(b")")[2].split()[:1] != [b"Z"]


def clear_directory(directory: str) -> None:
    """Empty an operator-given metrics directory of prometheus_client's files and of the
    fold's (only those: it may hold other things), as its docs require before the workers
    start. Not while a running process uses it (another proxy given the same directory,
    the old one of a restart on the same host: its ``deja-supervisor.lock`` or a worker's
    lock file is held, see the module's docstring): nothing is deleted then, as the files
    of its dead workers and the archive they were folded into are part of its sums
    (deleted, its counters went down); deleting its live files made its workers count on
    into files nobody reads, and its /metrics fall to nothing. Warned of: the proxies'
    figures are summed. Files whose writers are gone are cleared, whatever process has
    their pids now (after a reboot, any)."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with _fold_lock(path):
            files = list(path.glob("*.db"))
            proxy = held(path / SUPERVISOR_LOCK)
            with _dead_writers(path, files) as (gone, live):
                if not (live or proxy):
                    locks = [lock for lock in gone.values() if lock is not None]
                    for stale in [*files, *_fold_files(path), *locks]:
                        stale.unlink(missing_ok=True)
    except OSError as exc:  # a start-up problem: one line, as for the configuration's
        raise ConfigError(
            f"{MULTIPROC_ENV}={directory} cannot hold the workers' metrics: {exc.strerror or exc}"
        ) from exc
    if live or proxy:
        logger.warning(
            "%s=%s holds the metrics of running processes (%s): left in place with"
            " the counts of their dead workers, and summed into this proxy's /metrics;"
            " give each proxy a directory of its own",
            MULTIPROC_ENV,
            directory,
            f"pids {', '.join(map(str, sorted(live)))}" if live else "another deja serve",
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
