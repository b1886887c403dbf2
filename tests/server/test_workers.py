"""`deja serve` workers under uvicorn's supervisor, as real processes: how they are started
again (SIGHUP) and replaced."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx2
import pytest

from deja.server.run import bind_problem
from deja.testing import FakeOpenAIServer, Reply
from tests.server.test_e2e import serve, write_config

# A hooks module that notes each worker's pid, and makes the workers started after the test
# creates ``slow`` beside it take longer to start than uvicorn's default readiness wait (5 s)
SLOW_START_HOOKS = """
import os, time
from pathlib import Path
from subprocess import Popen

here = Path(__file__).parent
if os.environ.get("DEJA_CONFIG"):  # a worker (the parent builds the app before setting it)
    (here / f"worker-{os.getpid()}").touch()
    if (here / "slow").exists():
        time.sleep(6)

async def pre(request, **kwargs):
    return request
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie that nobody has reaped yet included)."""
    if not _alive(pid):
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # (no /proc: a zombie is taken for alive)
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def _workers(directory: Path) -> set[int]:
    return {int(p.name.removeprefix("worker-")) for p in directory.glob("worker-*")}


def _restarted(process: Popen[bytes], directory: Path, old: int) -> int | None:
    """SIGHUP, then the new worker's pid once the old one is gone (``None``: the restart
    was given up)."""
    known = _workers(directory)
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = _workers(directory) - known
        if new and not all(_alive(pid) for pid in new):
            return None
        if new and not _alive(old):
            (pid,) = new
            return pid
        time.sleep(0.1)
    return None


def test_sighup_says_the_configuration_file_changed_since_the_start(tmp_path: Path) -> None:
    """Workers start again from the configuration read at start: an operator who edits
    the file and sends SIGHUP to apply it is told it was not (nothing was logged)."""
    (tmp_path / "hooks.py").write_text(SLOW_START_HOOKS)
    with FakeOpenAIServer() as upstream:
        config = write_config(
            tmp_path,
            upstream,
            "caching: {type: memory}\nhooks: [{path: hooks.py, async_pre_llm_hook: pre}]",
        )
        with serve(config, "--log-level", "info") as (base, process):
            (first,) = _workers(tmp_path)
            second = _restarted(process, tmp_path, first)  # the file as read: not said
            assert second is not None
            config.write_text(config.read_text() + "cachng: {type: memory}\n")  # broken
            third = _restarted(process, tmp_path, second)
            answer = httpx2.get(f"{base}/v1/models", timeout=30)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            log = process.stdout.read().decode() if process.stdout else ""
    assert third is not None and answer.status_code == 200  # the old configuration serves
    said = [line for line in log.splitlines() if "changed since the proxy started" in line]
    assert len(said) == 1, log
    assert str(config) in said[0] and "restart deja serve to apply" in said[0]


def test_sighup_waits_for_a_worker_slow_to_start(tmp_path: Path) -> None:
    """A worker that takes longer than 5 s to start (a large semantic index to load, the
    start-up probe of a slow vector server) replaces the old one on SIGHUP: uvicorn's
    default wait for a new worker (5 s) killed it, kept the old one and gave up the
    restart, with one ERROR line."""
    (tmp_path / "hooks.py").write_text(SLOW_START_HOOKS)
    with FakeOpenAIServer() as upstream:
        config = write_config(
            tmp_path,
            upstream,
            "caching: {type: memory}\nhooks: [{path: hooks.py, async_pre_llm_hook: pre}]",
        )
        with serve(config, "--log-level", "info") as (base, process):
            (old,) = _workers(tmp_path)
            (tmp_path / "slow").touch()
            process.send_signal(signal.SIGHUP)
            # until the old worker is gone (restarted) or the new one is (restart given up)
            deadline = time.monotonic() + 60
            new: set[int] = set()
            while time.monotonic() < deadline:
                new = _workers(tmp_path) - {old}
                if not _alive(old) or (new and not all(_alive(pid) for pid in new)):
                    break
                time.sleep(0.1)
            replaced = not _alive(old) and len(new) == 1 and all(_alive(pid) for pid in new)
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
            answer = httpx2.post(f"{base}/v1/chat/completions", json=body, timeout=30)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
            log = process.stdout.read().decode() if process.stdout else ""
    assert "not ready in time" not in log, log
    assert replaced, (old, new)
    assert answer.status_code == 200
    assert log.count("Application startup complete") == 2  # the first worker, and the new


def test_a_replaced_workers_counts_stay_in_the_sums(tmp_path: Path) -> None:
    """A worker killed and replaced by the supervisor: its counters stay in /metrics (its
    file is kept; only its live gauges go), so the sums never go back."""
    metrics = tmp_path / "metrics"
    with FakeOpenAIServer() as upstream:
        config = write_config(tmp_path, upstream, "caching: {type: memory}")
        with serve(config, "--workers", "2", "--log-level", "warning", metrics_dir=metrics) as (
            base,
            _,
        ):
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
            for _ in range(10):  # a new connection each time: both workers may serve
                assert httpx2.post(f"{base}/v1/chat/completions", json=body).status_code == 200
            counted = {int(p.stem.rsplit("_", 1)[1]) for p in metrics.glob("counter_*.db")}
            victim = next(pid for pid in counted if _alive(pid))
            live = {int(p.stem.rsplit("_", 1)[1]) for p in metrics.glob("gauge_livesum_*.db")}
            os.kill(victim, signal.SIGKILL)
            # until its replacement publishes its figures (a bound for a broken test: a loaded
            # machine took more than 30 s to start one)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                started = {int(p.stem.rsplit("_", 1)[1]) for p in metrics.glob("gauge_livesum_*")}
                if started - live - {victim}:
                    break
                time.sleep(0.1)
            totals = []
            for _ in range(4):  # whichever worker answers
                text = httpx2.get(f"{base}/metrics").text
                totals.append(
                    sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in text.splitlines()
                        if line.startswith("deja_cache_requests_total{")
                    )
                )
    assert started - live - {victim}, "no worker replaced the one killed"
    assert totals == [10.0] * 4
    assert not (metrics / f"gauge_livesum_{victim}.db").exists()  # its live gauge: gone


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path, workers: int) -> None:
    """``deja serve`` killed outright (SIGKILL: the OOM killer, a runner's timeout): its
    workers finish what is in flight and stop, freeing the port, and the private copy of
    the configuration goes with them. They went on serving, with nobody to stop them, and
    a ``deja serve`` started again failed with "address already in use"."""
    (tmp_path / "hooks.py").write_text(SLOW_START_HOOKS)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    answers: list[Any] = []
    with FakeOpenAIServer() as upstream:
        config = write_config(
            tmp_path,
            upstream,
            "caching: {type: memory}\nhooks: [{path: hooks.py, async_pre_llm_hook: pre}]",
        )
        with serve(config, "--workers", str(workers), "--log-level", "warning", tmp=tmp) as (
            base,
            process,
        ):
            deadline = time.monotonic() + 30  # (the hook notes a worker as it starts)
            while len(_workers(tmp_path)) < workers and time.monotonic() < deadline:
                time.sleep(0.1)
            pids = _workers(tmp_path)
            assert len(pids) == workers and list(tmp.glob("deja-config-*"))
            upstream.queue_reply(Reply("answered after the supervisor died", latency=2))
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "slow"}]}
            asking = threading.Thread(
                target=lambda: answers.append(
                    httpx2.post(f"{base}/v1/chat/completions", json=body, timeout=30)
                )
            )
            asking.start()
            while upstream.count("/v1/chat/completions") < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            process.kill()  # SIGKILL: the supervisor stops nothing
            process.wait()
            deadline = time.monotonic() + 30
            port = int(base.rpartition(":")[2])
            while time.monotonic() < deadline:
                if all(_gone(pid) for pid in pids) and bind_problem("127.0.0.1", port) is None:
                    break
                time.sleep(0.1)
            asking.join(timeout=30)
            left = {pid for pid in pids if not _gone(pid)}
            for pid in left:  # (not to leave them to the next tests)
                os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their supervisor"
    assert bind_problem("127.0.0.1", port) is None
    (answer,) = answers  # the request in flight was finished, as on SIGTERM
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == "answered after the supervisor died"
    assert not list(tmp.glob("deja-config-*"))  # (it holds the configuration's keys)


def test_a_proxy_killed_with_its_workers_leaves_nothing_after_the_next_start(
    tmp_path: Path,
) -> None:
    """``kill -9`` of the whole process group (a service manager, the OOM killer): nobody
    removed the workers' metrics directory, or the private copy of the configuration (its
    keys) that the workers remove when they outlive their supervisor. Both stayed in
    TMPDIR for ever, one of each per kill. The next start removes them; never a directory
    of a process still running."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    running = tmp / f"deja-metrics-{os.getpid()}-abcd1234"  # (this process runs)
    running.mkdir()
    with FakeOpenAIServer() as upstream:
        config = write_config(tmp_path, upstream, "caching: {type: memory}")
        options = ("--workers", "2", "--log-level", "warning")
        with serve(config, *options, tmp=tmp, new_session=True) as (base, process):
            assert httpx2.get(f"{base}/metrics").status_code == 200
            made = sorted(set(tmp.iterdir()) - {running})  # (the config's copy, the metrics)
            copy = next(tmp.glob("deja-config-*/config.yaml"))
            private = (copy.parent.stat().st_mode & 0o777, copy.stat().st_mode & 0o777)
            workers = {int(p.stem.rpartition("_")[2]) for p in made[1].glob("counter_*.db")}
            supervisor = f"-{process.pid}-"  # (each name says whose it is)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            deadline = time.monotonic() + 30
            while not all(_gone(pid) for pid in workers):
                assert time.monotonic() < deadline, "the workers outlived the kill"
                time.sleep(0.1)
        assert [p.name[:12] for p in made] == ["deja-config-", "deja-metrics"] and workers
        assert private == (0o700, 0o600)  # (only this user reads the keys meanwhile)
        assert all(path.exists() for path in made)  # left by the kill
        with serve(config, *options, tmp=tmp) as (base, _):
            assert httpx2.get(f"{base}/health").status_code == 200
            left = sorted(p.name for p in tmp.iterdir())
    assert not any(path.exists() for path in made)
    assert running.name in left and len(left) == 3  # (and the new start's two)
    assert [p.name.partition(supervisor)[0] for p in made] == ["deja-config", "deja-metrics"]


def test_the_sweep_leaves_what_may_still_be_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only directories of a supervisor that is gone are swept: not one of a running
    process, nor a metrics directory a live worker still writes in (its supervisor was
    killed, it finishes its requests), nor the one given to this start, nor one named by
    an earlier version (whose, it cannot tell), nor a symbolic link."""
    import tempfile

    from deja.server.run import _sweep_leftovers

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    gone = 2**22 + 1  # (above Linux's PID_MAX_LIMIT: no process has it)
    swept = [tmp / f"deja-metrics-{gone}-a", tmp / f"deja-config-{gone}-b"]
    kept = [
        tmp / f"deja-config-{os.getpid()}-c",  # (this process runs)
        tmp / f"deja-metrics-{gone}-d",  # a worker of it still writes there
        tmp / f"deja-metrics-{gone}-e",  # this start's, given as PROMETHEUS_MULTIPROC_DIR
        tmp / "deja-metrics-x7k2m9qa",  # an earlier version's
    ]
    for path in [*swept, *kept]:
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"")  # (pid 1 runs)
        (path / f"counter_{gone}.db").write_bytes(b"")
    (swept[0] / "counter_1.db").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp / f"deja-config-{gone}-f").symlink_to(elsewhere)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(kept[2]))
    (kept[2] / "counter_1.db").unlink()
    _sweep_leftovers()
    assert not any(path.exists() for path in swept)
    assert all(path.exists() for path in kept)
    assert (tmp / f"deja-config-{gone}-f").is_symlink() and elsewhere.exists()


def test_the_sweep_leaves_the_directories_of_a_proxy_it_cannot_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two containers sharing TMPDIR see each other's pids as gone: the sweep removed a
    running proxy's metrics directory and the copy of its configuration. A directory is
    in use while its supervisor holds its lock file there, or, for a metrics directory,
    while a worker does (one finishing its requests, its supervisor killed)."""
    import subprocess
    import sys
    import tempfile

    from deja.server.run import _sweep_leftovers

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    other = 2**22 + 1  # (the other container's supervisor: no process here has its pid)
    metrics, copy = tmp / f"deja-metrics-{other}-a", tmp / f"deja-config-{other}-b"
    finishing = tmp / f"deja-metrics-{other + 1}-c"  # (its supervisor gone, a worker not)
    for path in (metrics, copy, finishing):
        path.mkdir()
        (path / "deja-supervisor.lock").touch()
    (metrics / f"counter_{other + 5}.db").write_bytes(b"")
    (copy / "config.yaml").write_text("model_list: []\n")
    (finishing / f"counter_{other + 6}.db").write_bytes(b"")
    (finishing / f"deja-worker-{other + 6}.lock").touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\nfor path in sys.argv[1:]:\n"
            "    fcntl.flock(os.open(path, os.O_RDONLY), fcntl.LOCK_SH)\n"
            "print('held', flush=True)\nsys.stdin.read()\n",
            str(metrics / "deja-supervisor.lock"),
            str(copy / "deja-supervisor.lock"),
            str(finishing / f"deja-worker-{other + 6}.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        _sweep_leftovers()
        assert metrics.is_dir() and copy.is_dir() and finishing.is_dir()
    finally:
        holder.kill()
        holder.wait()
    _sweep_leftovers()  # all of them gone now
    assert list(tmp.iterdir()) == []
