"""The sync lock keeper: one thread per process extends every lock held by a sync miss."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import deja
from deja import _lock_keeper
from deja._lock_keeper import LockKeeper
from tests.helpers import LockingMemoryStore, chat_request, chat_response

WAIT = 10.0  # a bound on waits for an event that comes within milliseconds


class RecordingStore(LockingMemoryStore):
    """Records each extension (by which thread) and each release, in order. Its locks are
    held until released: an extension late on a busy machine finds its lock still held."""

    def __init__(self, *, lost: frozenset[str] = frozenset(), failing: int = 0) -> None:
        super().__init__()
        self.events: list[tuple[str, str]] = []  # (op, lock name)
        self.extenders: list[threading.Thread] = []
        self.lost = lost  # extending these says "not yours any more"
        self.failing = failing  # the first extensions that raise
        self._seen = threading.Condition()

    def extend(self, name: str, token: str, *, ttl: float) -> bool:
        with self._seen:
            self.events.append(("extend", name))
            self.extenders.append(threading.current_thread())
            self._seen.notify_all()
            if self.failing:
                self.failing -= 1
                raise deja.StoreError("the store is down")
        if name in self.lost:
            return False
        with self._locks_lock:  # held until released (a slow test machine loses no lock)
            held = self._locks.get(name)
            return held is not None and held[0] == token

    def unlock(self, name: str, token: str) -> None:
        with self._seen:
            self.events.append(("unlock", name))
        super().unlock(name, token)

    def extensions_of(self, name: str) -> int:
        with self._seen:
            return self.events.count(("extend", name))

    def wait_for(self, name: str, extensions: int) -> None:
        with self._seen:
            assert self._seen.wait_for(
                lambda: self.events.count(("extend", name)) >= extensions, WAIT
            ), f"{name} extended {self.events.count(('extend', name))} times, not {extensions}"


def lock_of(cache: deja.Cache, text: str) -> str:
    return cache.key(chat_request(text)) + ":lock"


def test_sync_misses_share_one_keeper_thread() -> None:
    """Each of these misses calls long enough for its lock to be extended: one thread, the
    process's keeper, extends them all (a thread was started, and joined, per miss)."""
    store = RecordingStore()
    cache = deja.Cache(store=store, lock_ttl=0.03)

    for i in range(8):
        text = f"question {i}"

        def upstream(text: str = text) -> dict[str, Any]:
            store.wait_for(lock_of(cache, text), 1)
            return chat_response()

        assert cache.fetch(chat_request(text), upstream).info.status == "miss"
    assert len({id(thread) for thread in store.extenders}) == 1
    assert store.extenders[0].name == "deja-lock-keeper" and store.extenders[0].daemon
    keepers = [t for t in threading.enumerate() if t.name == "deja-lock-keeper"]
    assert keepers == [store.extenders[0]]  # kept for the next miss


def test_concurrent_long_calls_each_keep_their_lock_and_none_is_extended_after_release() -> None:
    store = RecordingStore()
    cache = deja.Cache(store=store, lock_ttl=0.06)
    texts = [f"long question {i}" for i in range(6)]
    statuses: list[str] = []

    def worker(text: str) -> None:
        def upstream() -> dict[str, Any]:
            store.wait_for(lock_of(cache, text), 3)
            return chat_response()

        statuses.append(cache.fetch(chat_request(text), upstream).info.status)

    threads = [threading.Thread(target=worker, args=(text,)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == ["miss"] * len(texts)
    assert store._locks == {}  # each released
    for text in texts:
        name = lock_of(cache, text)
        ops = [op for op, of in store.events if of == name]
        assert ops.count("extend") >= 3
        assert ops[-1] == "unlock" and ops.count("unlock") == 1, ops  # nothing after it
    assert len({id(thread) for thread in store.extenders}) == 1


def test_a_release_waits_for_the_extension_in_progress() -> None:
    """The block ends while the keeper thread is inside ``extend``: the end waits for it,
    so the lock is never extended after its holder released it."""
    entered, go = threading.Event(), threading.Event()

    class SlowExtend(LockingMemoryStore):
        def extend(self, name: str, token: str, *, ttl: float) -> bool:
            entered.set()
            go.wait(WAIT)
            return super().extend(name, token, ttl=ttl)

    store = SlowExtend()
    token = store.lock("job:lock", ttl=0.03)
    keeper = LockKeeper(store, "job:lock", token, 0.03)
    ended = threading.Event()

    def hold() -> None:
        with keeper:
            assert entered.wait(WAIT)
        ended.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(WAIT)
    assert not ended.wait(0.1)  # the block's end waits for the extension
    go.set()
    holder.join(WAIT)
    assert ended.is_set() and keeper.extensions <= 1


def test_a_lost_lock_is_no_longer_extended_while_the_others_are() -> None:
    store = RecordingStore(lost=frozenset({"lost:lock"}))
    kept_token = store.lock("kept:lock", ttl=0.03)
    lost_token = store.lock("lost:lock", ttl=0.03)
    kept = LockKeeper(store, "kept:lock", kept_token, 0.03)
    lost = LockKeeper(store, "lost:lock", lost_token, 0.03)
    with kept, lost:
        store.wait_for("lost:lock", 1)
        store.wait_for("kept:lock", store.extensions_of("kept:lock") + 4)
    assert store.extensions_of("lost:lock") == 1
    assert lost.extensions == 0 and kept.extensions >= 4


def test_an_extension_that_fails_is_tried_again() -> None:
    """A store error while extending: the lock expires by itself, unless a later try
    succeeds; the keeper goes on trying (as the thread per miss did)."""
    store = RecordingStore(failing=2)
    token = store.lock("job:lock", ttl=0.03)
    keeper = LockKeeper(store, "job:lock", token, 0.03)
    with keeper:
        store.wait_for("job:lock", 4)
    assert keeper.extensions >= 2


class ExitingStore(RecordingStore):
    """Its extensions raise SystemExit (as gevent's Timeout, a BaseException, would)."""

    def extend(self, name: str, token: str, *, ttl: float) -> bool:
        super().extend(name, token, ttl=ttl)
        raise SystemExit("an extension that exits")


def test_an_extension_raising_a_base_exception_leaves_the_keeper_running() -> None:
    """The one keeper thread died on a BaseException from one store's extend: every other
    lock of the process went unextended (and expired) until another miss took a lock."""
    exiting, other = ExitingStore(), RecordingStore()
    bad = LockKeeper(exiting, "bad:lock", exiting.lock("bad:lock", ttl=0.03), 0.03)
    good = LockKeeper(other, "good:lock", other.lock("good:lock", ttl=0.03), 0.03)
    with bad, good:
        exiting.wait_for("bad:lock", 2)  # (the thread lived past the first)
        other.wait_for("good:lock", other.extensions_of("good:lock") + 4)
    assert good.extensions >= 4


def test_a_disk_store_forked_while_a_lock_call_runs_is_usable_in_the_child(
    tmp_path: Path,
) -> None:
    """The keeper thread inside a DiskStore lock call as the process forked: the child's
    first lock call waited for ever on the store's thread lock, which that thread held."""
    store = deja.DiskStore(tmp_path / "cache")
    assert store.lock("warm:lock", ttl=5)  # (the lock database opened)
    store._lock_lock.acquire()  # as the keeper's extend holds it (white box)
    try:
        pid = os.fork()
        if pid == 0:  # the child: a bounded wait, else a hang kills the test run
            import signal

            signal.alarm(10)
            code = 0 if store.lock("child:lock", ttl=5) else 3
            os._exit(code)
    finally:
        store._lock_lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    store.close()


def test_dropped_locks_do_not_pile_up_in_the_keeper() -> None:
    """Misses far shorter than their lock's TTL: their entries are dropped long before
    due, and the keeper's heap stays bounded by the locks held, not the misses made."""
    store = LockingMemoryStore()
    cache = deja.Cache(store=store, lock_ttl=30)
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(150):
            assert cache.fetch(chat_request(f"{n}-{i}"), chat_response).info.status == "miss"

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store._locks == {}
    assert len(_lock_keeper._KEEPERS._due) <= 2 * _lock_keeper._COMPACT_FLOOR + 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_keeps_its_own_locks_not_its_parents() -> None:
    """Forked while the parent's keeper thread extends a lock: in the child, the parent's
    block ends at once (the thread is not there to finish), and a lock of the child's is
    kept by a keeper thread of its own."""
    go = threading.Event()
    entered = threading.Event()

    class Store(RecordingStore):
        def extend(self, name: str, token: str, *, ttl: float) -> bool:
            if name == "parent:lock":
                entered.set()
                go.wait(WAIT)
            return super().extend(name, token, ttl=ttl)

    store = Store()
    parent = LockKeeper(store, "parent:lock", store.lock("parent:lock", ttl=0.03), 0.03)
    parent.__enter__()
    assert entered.wait(WAIT)
    parent_keeper = _lock_keeper._KEEPERS._thread
    pid = os.fork()
    if pid == 0:
        done = threading.Event()

        def run() -> None:
            parent.__exit__(None, None, None)
            child = LockKeeper(store, "child:lock", store.lock("child:lock", ttl=0.03), 0.03)
            with child:
                store.wait_for("child:lock", 2)
            if child.extensions >= 2 and parent_keeper not in store.extenders:
                done.set()

        threading.Thread(target=run, daemon=True).start()
        os._exit(0 if done.wait(WAIT) else 1)
    _, status = os.waitpid(pid, 0)
    go.set()
    parent.__exit__(None, None, None)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent.extensions == 1  # and no more after its end


def test_the_interpreter_exits_with_a_lock_kept(tmp_path: Path) -> None:
    """The keeper thread is a daemon: a process that exits while a sync miss on a
    DiskStore holds a lock (or after misses) is not held up by it."""
    script = textwrap.dedent(
        """
        import sys, threading
        import deja
        from tests.helpers import chat_request, chat_response

        cache = deja.Cache(store=deja.DiskStore(sys.argv[1]), lock_ttl=0.3)
        cache.fetch(chat_request("done"), chat_response)
        calling = threading.Event()

        def upstream():
            calling.set()
            threading.Event().wait()  # a call that never ends

        threading.Thread(
            target=cache.fetch, args=(chat_request("never"), upstream), daemon=True
        ).start()
        assert calling.wait(10)
        print("exiting", flush=True)
        """
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "exiting\n"
