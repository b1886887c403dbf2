"""DiskStore's cross-process lock with real processes: single-flight between processes on
one directory, a holder killed with SIGKILL, a clock set back, a fork, an older directory.
(The lock's contract, shared with Redis, is in test_contract.py.)"""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deja.stores import DiskStore
from deja.testing import FakeClock, FakeOpenAIServer

# Asks the same 20 questions at once, when told to (start_at), on a DiskStore in directory.
WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    from concurrent.futures import ThreadPoolExecutor
    import deja

    directory, api_base, start_at, lock_ttl, kind = sys.argv[1:6]
    questions = [[{"role": "user", "content": f"question {i}"}] for i in range(20)]

    async def main():
        cache = deja.AsyncCache(store=deja.DiskStore(directory), lock_ttl=float(lock_ttl))
        client = deja.AsyncClient(cache=cache, api_base=api_base, api_key="k", max_retries=0)
        await asyncio.sleep(max(0.0, float(start_at) - time.time()))
        results = await asyncio.gather(
            *(client.acompletion(model="gpt-4o", messages=q) for q in questions)
        )
        print(" ".join(r.cache.status for r in results), flush=True)
        await client.aclose()

    def main_sync():
        cache = deja.Cache(store=deja.DiskStore(directory), lock_ttl=float(lock_ttl))
        client = deja.Client(cache=cache, api_base=api_base, api_key="k", max_retries=0)
        time.sleep(max(0.0, float(start_at) - time.time()))
        with ThreadPoolExecutor(len(questions)) as pool:
            results = list(
                pool.map(lambda q: client.completion(model="gpt-4o", messages=q), questions)
            )
        print(" ".join(r.cache.status for r in results), flush=True)
        client.close()

    asyncio.run(main()) if kind == "async" else main_sync()
    """
)


@pytest.mark.parametrize(
    ("kinds", "latency", "lock_ttl"),
    [
        (("async", "async"), 0.3, 30.0),  # two proxy workers
        (("async", "sync"), 0.3, 30.0),  # a worker and a batch job on threads
        (("async", "async"), 1.5, 0.4),  # calls outliving the locks' TTL extend them
    ],
)
def test_two_processes_asking_twenty_questions_at_once_pay_each_once(
    tmp_path: Path, kinds: tuple[str, str], latency: float, lock_ttl: float
) -> None:
    """Before DiskStore locked, 20 of the 20 questions were paid twice (40 calls)."""
    with FakeOpenAIServer(latency=latency) as upstream:
        start_at = time.time() + 3.0  # both processes are up by then
        args = [str(tmp_path), upstream.base_url, str(start_at), str(lock_ttl)]
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *args, kind],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for kind in kinds
        ]
        outputs = [w.communicate(timeout=120) for w in workers]
        assert all(w.returncode == 0 for w in workers), [err for _, err in outputs]
        asked = collections.Counter(
            r.body["messages"][-1]["content"] for r in upstream.requests if r.body
        )
    assert asked == {f"question {i}": 1 for i in range(20)}
    statuses = " ".join(out for out, _ in outputs).split()
    assert len(statuses) == 40 and statuses.count("miss") == 20, statuses
    assert statuses.count("hit") == 20, statuses


# Takes a lock by the real clock, then dies (SIGKILL) in the middle of a write transaction
# on the lock file that would have released it.
HOLDER = textwrap.dedent(
    """
    import sqlite3, sys, time
    from deja.stores import DiskStore

    store = DiskStore(sys.argv[1])
    assert store.lock("job:lock", ttl=30) is not None
    con = sqlite3.connect(sys.argv[2], isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute("UPDATE locks SET expires = 0")
    print("holding", flush=True)
    time.sleep(600)
    """
)


def test_a_holder_killed_mid_write_frees_its_lock_after_its_ttl(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), str(tmp_path / "locks.sqlite3")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n", holder.communicate(timeout=30)[1]
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    clock = FakeClock(time.time())  # this process's clock agrees with the holder's
    store = DiskStore(tmp_path, clock=clock)
    # its write lock on the file went with it (no wait for SQLite's busy timeout), and its
    # unfinished transaction too: the lock is still held...
    assert store.lock("job:lock", ttl=30) is None
    assert store.lock("another:lock", ttl=30) is not None
    clock.advance(30.5)  # ...until its TTL has passed
    assert store.lock("job:lock", ttl=30) is not None
    store.close()


def test_a_clock_set_back_does_not_hold_a_lock_for_the_whole_jump(tmp_path: Path) -> None:
    clock = FakeClock()
    taken_at = clock()
    store = DiskStore(tmp_path, clock=clock)
    token = store.lock("job:lock", ttl=30)
    assert token is not None
    clock.set(taken_at - 0.5)  # (a clock read a little earlier elsewhere: still held)
    assert store.lock("job:lock", ttl=30) is None
    clock.set(taken_at - 3600)  # an NTP step back: held for an hour and 30 s otherwise
    taken = store.lock("job:lock", ttl=30)
    assert taken is not None
    assert store.extend("job:lock", token, ttl=30) is False
    assert store.extend("job:lock", taken, ttl=30) is True
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_locks_through_its_own_connection(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    token = store.lock("parent:lock", ttl=30)
    assert token is not None
    pid = os.fork()
    if pid == 0:  # the child: the parent's lock is held, a lock of its own is taken
        code = 1
        try:
            held = store.lock("parent:lock", ttl=30) is None
            mine = store.lock("child:lock", ttl=30)
            code = 0 if held and mine is not None else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.lock("child:lock", ttl=30) is None, "the child's lock is in the file"
    store.unlock("parent:lock", token)
    assert store.lock("parent:lock", ttl=30) is not None
    store.close()


def test_a_directory_written_before_locks_gains_its_lock_file(tmp_path: Path) -> None:
    """A directory an earlier version wrote has no lock file: the first lock creates it, and
    what the directory holds is untouched (an earlier version sharing it ignores the file)."""
    old = DiskStore(tmp_path)
    old.set("k", b"v", None)
    old.tag("t", ["k"], None)
    old.close()
    assert not (tmp_path / "locks.sqlite3").exists()
    store = DiskStore(tmp_path)
    token = store.lock("k:lock", ttl=30)
    assert token is not None and (tmp_path / "locks.sqlite3").is_file()
    assert store.get("k") == b"v" and store.keys_for("t") == ["k"]
    assert store.clear("") == 1 and store.lock("k:lock", ttl=30) is None
    store.close()
    with sqlite3.connect(tmp_path / "locks.sqlite3") as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert con.execute("SELECT name, token FROM locks").fetchall() == [("k:lock", token)]


def test_a_lock_takes_no_ttl_of_none(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    with pytest.raises(ValueError, match="a lock expires"):
        store.lock("job:lock", ttl=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.lock("job:lock", ttl=-1)
    assert store.lock("job:lock", ttl=30) is not None, "nothing was taken"
    store.close()
