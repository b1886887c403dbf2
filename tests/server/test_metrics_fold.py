"""The counters and histograms of dead workers (Prometheus multiprocess mode) folded into
one archive file per kind, with real worker processes, real scrapers running at once, and
folds killed at each of their steps."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# (prometheus_client picks, once, as it is imported, where this process's own metrics keep
# their values: imported before the tests here set PROMETHEUS_MULTIPROC_DIR)
import prometheus_client  # noqa: F401
import pytest

from deja.server import workers
from deja.server.workers import aggregated_exposition

# A worker: a realistic mix of deja's counters and histograms, in the files prometheus_client
# writes (the directory is PROMETHEUS_MULTIPROC_DIR); `repeat` times each event
WORKER = """
import sys
from deja.metrics import PrometheusMetrics
m = PrometheusMetrics()
for _ in range(int(sys.argv[1])):
    m.request("exact", "hit")
    m.request("exact", "miss")
    m.request("semantic", "semantic_hit")
    for seconds in (0.00002, 0.0004, 0.003, 0.2):
        m.lookup_seconds("redis", seconds)
    m.upstream_seconds("openai", 0.8)
    m.store_error("redis", "get")
    m.similarity("near_miss", 0.81)
    m.saved(120, 0.0012)
m.breaker_state("redis", True)
"""
DEAD_PID = 2**22 + 1  # above Linux's PID_MAX_LIMIT: no process has it

KILL_AT_STEP = """
import os, signal, sys
step, calls = int(sys.argv[1]), [0]
def dying(real):
    def call(*args, **kwargs):
        if calls[0] == step:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        return real(*args, **kwargs)
    return call
os.replace, os.unlink = dying(os.replace), dying(os.unlink)
from deja.server.workers import aggregated_exposition
aggregated_exposition()
"""

SCRAPER = """
import sys
from pathlib import Path
from deja.server.workers import aggregated_exposition
stop = Path(sys.argv[1])
while True:
    last = stop.exists()
    text = aggregated_exposition().decode()
    print(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("deja_cache_requests_total{")), flush=True)
    if last:
        break
"""


def _run(script: str, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _figures(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter and histogram sample of an exposition (gauges count live workers)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.type in ("counter", "histogram")
        for sample in family.samples
    }


def _read_as_prometheus_client_does(directory: Path) -> dict[Any, float]:
    """The figures prometheus_client's own collector reads from ``directory``, untouched."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return _figures(generate_latest(registry).decode())


def _scaled(figures: dict[Any, float], times: int) -> dict[Any, float]:
    return {key: value * times for key, value in figures.items()}


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files of one worker that recorded WORKER once, and died."""
    directory = tmp_path_factory.mktemp("one-worker")
    assert _run(WORKER, directory, "1").returncode == 0
    return directory


def _dead_worker(directory: Path, template: Path, pid: int) -> None:
    """Give ``directory`` the files of a dead worker ``pid`` (``template``'s), each put
    in place whole, as a worker's file is never half there."""
    for path in template.glob("*.db"):
        kind = path.stem.rpartition("_")[0]  # (counter, gauge_livemax...)
        shutil.copy(path, directory / f"{kind}_{pid}.part")
        os.replace(directory / f"{kind}_{pid}.part", directory / f"{kind}_{pid}.db")


def test_dead_workers_are_folded_into_one_file_per_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every replaced worker left its files for ever, and every scrape read them all (a
    second with 1,000 dead workers). Now they become one archive per kind, which
    prometheus_client's own collector reads as any other file: the sums are unchanged."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for repeat in (1, 2, 3):  # real workers, each gone once it has counted
        assert _run(WORKER, tmp_path, str(repeat)).returncode == 0
    assert len(list(tmp_path.glob("counter_*.db"))) == 3
    before = _read_as_prometheus_client_does(tmp_path)
    assert before[("deja_cache_requests_total", (("result", "hit"), ("tier", "exact")))] == 6
    assert _figures(aggregated_exposition().decode()) == pytest.approx(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_dead-workers.db",
        "histogram_dead-workers.db",
    ]
    assert _read_as_prometheus_client_does(tmp_path) == pytest.approx(before)  # (its format)
    assert _run(WORKER, tmp_path, "4").returncode == 0  # one more worker dies
    after = _figures(aggregated_exposition().decode())
    assert after == pytest.approx({key: value * 10 / 6 for key, value in before.items()})
    assert len(list(tmp_path.iterdir())) == 2


def test_a_fold_killed_at_any_step_loses_or_doubles_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_worker: Path
) -> None:
    """A worker killed in the middle of a fold (at each step in turn: before its first
    rename or delete, then before each next one): the next scrape reads every dead
    worker's counts exactly once, and leaves nothing of the fold behind."""
    one = _read_as_prometheus_client_does(one_worker)
    step = 0
    while True:
        directory = tmp_path / f"step-{step}"
        directory.mkdir()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
        for i in range(2):  # an archive of two workers already...
            _dead_worker(directory, one_worker, DEAD_PID + i)
        aggregated_exposition()
        for i in range(2, 5):  # ... and three workers dead since
            _dead_worker(directory, one_worker, DEAD_PID + i)
        killed = _run(KILL_AT_STEP, directory, str(step)).returncode == -9
        assert _figures(aggregated_exposition().decode()) == pytest.approx(_scaled(one, 5)), step
        assert sorted(p.name for p in directory.iterdir()) == [
            "counter_dead-workers.db",
            "histogram_dead-workers.db",
        ], step
        if not killed:  # the fold ran to its end: every step was tried
            break
        step += 1
    assert step > 8  # (3 files taken, 2 archives, a journal, 3 deleted, at least)


def test_workers_scraping_at_once_count_each_worker_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_worker: Path
) -> None:
    """Three workers answer /metrics at once, again and again, while workers die: none
    fails on a file another's fold took, and none sees a dead worker's counts twice or
    not at all (its requests never go down, and end at the total)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    one = _read_as_prometheus_client_does(one_worker)
    per_worker = sum(v for (name, _), v in one.items() if name == "deja_cache_requests_total")
    stop = tmp_path.parent / f"{tmp_path.name}-stop"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    scrapers = [
        subprocess.Popen(
            [sys.executable, "-c", SCRAPER, str(stop)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for i in range(60):
            _dead_worker(tmp_path, one_worker, DEAD_PID + i)
        stop.touch()
        outputs = [scraper.communicate(timeout=120) for scraper in scrapers]
    finally:
        for scraper in scrapers:
            if scraper.poll() is None:
                scraper.kill()
                scraper.wait()
    for scraper, (out, err) in zip(scrapers, outputs, strict=True):
        assert scraper.returncode == 0, err
        seen = [float(line) for line in out.split()]
        assert seen == sorted(seen)  # never down
        assert all(value % per_worker == 0 for value in seen), seen  # whole workers
        assert seen[-1] == 60 * per_worker
    assert _figures(aggregated_exposition().decode()) == pytest.approx(_scaled(one, 60))


# Holds a shared lock of each file named (made if missing) until its input ends, as a
# running deja process holds its lock file
HOLDER = """
import fcntl, os, sys
for path in sys.argv[1:]:
    fcntl.flock(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600), fcntl.LOCK_SH)
print("held", flush=True)
sys.stdin.read()
"""
# The same, as deja's processes hold theirs (deja.metrics.hold_lock)
DEJA_HOLDER = """
import sys
from deja.metrics import hold_lock
assert all(hold_lock(path) is not None for path in sys.argv[1:])
print("held", flush=True)
sys.stdin.read()
"""
# Holds the fold lock of a directory (as a reader of deja's does) until its input ends
FOLD_LOCKER = """
import fcntl, os, sys
fcntl.flock(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY), fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""
# A fold that stops itself (SIGSTOP) before its rename or delete number `step`
STOP_AT_STEP = KILL_AT_STEP.replace("signal.SIGKILL", "signal.SIGSTOP")


@contextlib.contextmanager
def _holding(script: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A process running ``script`` (which prints ``held`` once it holds its locks),
    until the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait()


def _scrape() -> str:
    """A scrape, as a worker's /metrics makes it, in a thread: one that does not end
    (waiting on a lock for ever) fails the test, not hangs it."""
    answers: list[str] = []
    thread = threading.Thread(
        target=lambda: answers.append(aggregated_exposition().decode()), daemon=True
    )
    thread.start()
    thread.join(timeout=60)
    assert answers, "the scrape waited for the fold lock and did not end"
    return answers[0]


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in "Tt"


def test_a_scrape_does_not_wait_for_a_stopped_holder_of_the_fold_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_worker: Path
) -> None:
    """A reader holding the fold lock stopped (SIGSTOP, stuck in fsync): every scrape and
    /cache/stats of every worker waited for it, each holding a thread of asyncio's
    default pool. Now a scrape waits a bounded time, then reads without folding, the
    same figures."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(workers, "FOLD_LOCK_SECONDS", 0.05, raising=False)
    for i in range(3):
        _dead_worker(tmp_path, one_worker, DEAD_PID + i)
    one = _read_as_prometheus_client_does(one_worker)
    with _holding(FOLD_LOCKER, str(tmp_path)) as holder:
        holder.send_signal(signal.SIGSTOP)
        assert _figures(_scrape()) == pytest.approx(_scaled(one, 3))
        assert len(list(tmp_path.glob("counter_*.db"))) == 3  # (not folded meanwhile)
    assert _figures(_scrape()) == pytest.approx(_scaled(one, 3))
    assert len(list(tmp_path.glob("counter_*.db"))) == 1  # (folded once the lock is free)


def test_a_fold_stopped_at_any_step_is_read_right_without_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_worker: Path
) -> None:
    """A fold stopped at each of its steps in turn, holding the lock: a scrape that reads
    without it (see above) counts every dead worker once, whichever files the fold has
    taken or written by then; and once it is gone, the next scrape finishes it."""
    monkeypatch.setattr(workers, "FOLD_LOCK_SECONDS", 0.05, raising=False)
    one = _read_as_prometheus_client_does(one_worker)
    step = 0
    while True:
        directory = tmp_path / f"step-{step}"
        directory.mkdir()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
        for i in range(2):
            _dead_worker(directory, one_worker, DEAD_PID + i)
        aggregated_exposition()
        for i in range(2, 5):
            _dead_worker(directory, one_worker, DEAD_PID + i)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
        folder = subprocess.Popen([sys.executable, "-c", STOP_AT_STEP, str(step)], env=env)
        try:
            while folder.poll() is None and not _stopped(folder.pid):
                threading.Event().wait(0.01)
            finished = folder.poll() is not None
            assert _figures(_scrape()) == pytest.approx(_scaled(one, 5)), step
        finally:
            folder.kill()
            folder.wait()
        assert _figures(_scrape()) == pytest.approx(_scaled(one, 5)), step
        if finished:
            break
        step += 1
    assert step > 8


def test_a_live_writer_whose_pid_is_gone_here_keeps_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_worker: Path
) -> None:
    """A worker of another container sharing the directory (another pid namespace: no
    process here has its pid), or a new process given a dead worker's pid: by its pid it
    looked gone, and the fold took the file it writes in (its later counts went to a
    deleted file). A writer holding its lock file is alive, whatever its pid says."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _dead_worker(tmp_path, one_worker, DEAD_PID)
    one = _read_as_prometheus_client_does(one_worker)
    with _holding(HOLDER, str(tmp_path / f"deja-worker-{DEAD_PID}.lock")):
        assert _figures(_scrape()) == pytest.approx(one)
        assert (tmp_path / f"counter_{DEAD_PID}.db").exists()
        assert (tmp_path / f"gauge_livemax_{DEAD_PID}.db").exists()  # (its gauges too)
        assert not (tmp_path / "counter_dead-workers.db").exists()
    assert _figures(_scrape()) == pytest.approx(one)  # gone now: folded, lock file and all
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_dead-workers.db",
        "histogram_dead-workers.db",
    ]


def test_a_dead_workers_file_taken_by_a_killed_fold_and_a_new_one_of_its_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_worker: Path
) -> None:
    """A fold killed after taking worker P's counter file (``counter_P.db-folding``), then
    another worker given pid P dead before the next scrape: its file was renamed over the
    one taken before (those counts lost), and the name folded twice (these counted
    twice)."""
    two_workers = tmp_path / "two"  # (a worker that counted each event twice)
    two_workers.mkdir()
    assert _run(WORKER, two_workers, "2").returncode == 0
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    (counter,) = one_worker.glob("counter_*.db")
    shutil.copy(counter, directory / f"counter_{DEAD_PID}.db-folding")
    _dead_worker(directory, two_workers, DEAD_PID)
    expected = tmp_path / "expected"  # (the same files, under names of their own)
    expected.mkdir()
    shutil.copy(counter, expected / f"counter_{DEAD_PID + 1}.db")
    _dead_worker(expected, two_workers, DEAD_PID)
    both = _read_as_prometheus_client_does(expected)
    assert _figures(aggregated_exposition().decode()) == pytest.approx(both)
    assert _figures(aggregated_exposition().decode()) == pytest.approx(both)


def test_a_process_given_a_pid_again_waits_for_the_fold_of_the_dead_ones_files(
    tmp_path: Path,
) -> None:
    """A process starting with the pid of a dead worker whose files are being taken waits
    for the fold to end, then locks a lock file of its own (the fold deletes the dead
    one's): one it locked as the fold deleted it would say nothing to the next fold."""
    from deja.server.workers import _claim, held

    lock = tmp_path / "deja-worker-7.lock"
    lock.touch()
    fd = _claim(lock)  # (as a fold does: the dead worker's lock, held exclusive)
    assert fd is not None
    try:
        holder = subprocess.Popen(
            [sys.executable, "-c", DEJA_HOLDER, str(lock)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            pause = threading.Event()
            for _ in range(3000):  # until it waits for the lock (/proc/locks: "-> FLOCK")
                waiting = Path("/proc/locks").read_text().splitlines()
                if any("-> FLOCK" in line and f" {holder.pid} " in line for line in waiting):
                    break
                pause.wait(0.01)
            else:
                pytest.fail("the process never waited for the lock")
            lock.unlink()  # the fold's end: the dead worker's lock file deleted, released
        finally:
            os.close(fd)
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert held(lock)  # a file of its own, in the directory
        holder.kill()
        holder.wait()
        assert not held(lock)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_clearing_a_directory_goes_by_locks_not_pids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, one_worker: Path
) -> None:
    """At start, an operator's directory was kept whole while any process had the pid of
    a file there (after a reboot, an unrelated process: stale counts for ever), and
    emptied while another proxy ran whose workers had made no file yet (its dead
    workers' archive lost). Now: kept while a deja process holds a lock there."""
    from deja.server.workers import clear_directory

    _dead_worker(tmp_path, one_worker, 1)  # (pid 1 runs: init, not a worker of deja)
    (tmp_path / "deja-worker-1.lock").touch()  # (the worker's, released as it ended)
    clear_directory(str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    _dead_worker(tmp_path, one_worker, DEAD_PID)
    shutil.copy(next(one_worker.glob("counter_*.db")), tmp_path / "counter_dead-workers.db")
    before = sorted(tmp_path.iterdir())
    with _holding(HOLDER, str(tmp_path / "deja-supervisor.lock")):  # another deja serve
        with caplog.at_level("WARNING", logger="deja.server"):
            clear_directory(str(tmp_path))
        assert sorted(tmp_path.iterdir()) == sorted([*before, tmp_path / "deja-supervisor.lock"])
    assert "another deja serve" in caplog.text
    clear_directory(str(tmp_path))  # it stopped
    assert [p.name for p in tmp_path.iterdir()] == ["deja-supervisor.lock"]
