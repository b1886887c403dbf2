"""DiskStore beyond the contract: persistence, several processes, threads, error translation."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deja.errors import StoreError
from deja.stores import DiskStore
from deja.stores import disk as disk_module
from deja.stores.base import SyncStore
from deja.testing import FakeClock
from tests.helpers import LoopTicks


def test_constructor_does_no_io(tmp_path: Path) -> None:
    directory = tmp_path / "not-yet"
    store = DiskStore(directory)
    assert not directory.exists()
    store.set("k", b"v", None)
    assert directory.is_dir()
    store.close()


@pytest.mark.parametrize(
    ("size_limit", "error"),
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)],
)
def test_rejects_bad_size_limit(tmp_path: Path, size_limit: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        DiskStore(tmp_path, size_limit=size_limit)  # type: ignore[arg-type]


def test_persists_across_store_objects(tmp_path: Path, clock: FakeClock) -> None:
    first = DiskStore(tmp_path, clock=clock)
    first.set("forever", b"1", None)
    first.set("brief", b"2", 10)
    first.tag("t", ["forever", "brief"], 60)
    first.close()

    second = DiskStore(tmp_path, clock=clock)
    assert second.get_many(["forever", "brief"]) == [b"1", b"2"]
    assert sorted(second.keys_for("t")) == ["brief", "forever"]
    clock.advance(11)
    assert second.get("brief") is None, "the expiry is stored with the value"
    assert second.get("forever") == b"1"
    second.close()


def test_two_open_stores_see_each_other(tmp_path: Path) -> None:
    a = DiskStore(tmp_path)
    b = DiskStore(tmp_path)
    a.set("k", b"from a", None)
    assert b.get("k") == b"from a"
    assert b.delete("k") is True
    assert a.get("k") is None
    a.close()
    b.close()


def test_diskcache_also_expires_the_item(tmp_path: Path) -> None:
    # Our header decides expiry by the injected clock; diskcache's own expiry must be set
    # too, or expired items would stay on disk until evicted.
    store = DiskStore(tmp_path)
    store.set("k", b"v", 30)
    store.set("forever", b"v", None)
    _, expire_time = store._values().get("k", expire_time=True)
    assert time.time() + 29 < expire_time < time.time() + 35
    assert store._values().get("forever", expire_time=True)[1] is None
    store.close()


def test_size_limit_bounds_the_values(tmp_path: Path) -> None:
    store = DiskStore(tmp_path, size_limit=2**20)
    value = os.urandom(64 * 1024)  # stored as files, which the volume counts exactly
    for i in range(64):
        store.set(f"k{i}", value, None)
    usage = store.usage()
    assert usage.entries < 64
    assert usage.bytes is not None
    assert usage.bytes < 2 * 2**20
    assert store.get("k63") == value
    store.close()


def test_the_tag_databases_log_is_checkpointed_near_the_size_limit(tmp_path: Path) -> None:
    """The tag database kept SQLite's checkpoint at 1,000 pages: a soak with a store bounded
    to 2 MB had 3.8 MB of tag log beside it (the values' log held at a quarter)."""
    store = DiskStore(tmp_path / "c", size_limit=2 * 10**6)
    largest = 0
    for i in range(3000):
        store.tag(f"doc:{i % 40}", [f"k{i}", f"k{i}:alt"], 600)
        if i % 100 == 0:
            largest = max(largest, (tmp_path / "c" / "tags.sqlite3-wal").stat().st_size)
    assert 0 < largest <= 2 * 10**6 // 4 + 64 * 1024, largest  # (a checkpoint's own commit)
    store.close()


def test_the_write_ahead_log_is_cut_back_near_the_size_limit(tmp_path: Path) -> None:
    """SQLite keeps its log at its largest size unless told: 4 MB of log beside a cache
    bounded to 3 MB (a soak found the directory at 11.7 MB for a 3 MB bound)."""
    store = DiskStore(tmp_path / "c", size_limit=3 * 2**20)
    for i in range(8000):
        store.set(f"k{i}", os.urandom(600), None)
        if i % 50 == 0:
            store.tag(f"t{i % 7}", [f"k{i}"], None)
    logs = {p.name: p.stat().st_size for p in (tmp_path / "c").glob("*-wal")}
    assert "cache.db-wal" in logs and all(size <= 3 * 2**20 // 4 for size in logs.values()), logs
    total = sum(p.stat().st_size for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert total < 2 * 3 * 2**20, total
    store.close()


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                store.set(f"{n}:{i}", f"{n}-{i}".encode(), None)
                store.tag("all", [f"{n}:{i}"], None)
                assert store.get(f"{n}:{i}") == f"{n}-{i}".encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.keys_for("all")) == 200
    assert store.clear("") == 200
    store.close()


# A worker process: waits for the go signal, then writes and tags its own keys while the
# other worker does the same, then reads the other's keys until all are visible.
WORKER = r"""
import json, sys, time
from pathlib import Path
from deja.stores import DiskStore

directory, me, other, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
(Path(directory).parent / f"ready-{me}").touch()
go = Path(directory).parent / "go"
while not go.exists():
    time.sleep(0.005)
store = DiskStore(directory)
for i in range(count):
    store.set(f"{me}:{i}", f"{me}-{i}".encode() * 50, None)
    store.tag("shared", [f"{me}:{i}"], None)
    store.tag(f"own:{me}", [f"{me}:{i}"], 3600)
    if i % 10 == 0:
        store.get_many([f"{other}:{j}" for j in range(i)])
expected = {f"{other}:{i}": f"{other}-{i}".encode() * 50 for i in range(count)}
deadline = time.monotonic() + 30
while True:
    got = dict(zip(expected, store.get_many(list(expected))))
    if all(v is not None for v in got.values()) or time.monotonic() > deadline:
        break
    time.sleep(0.01)
print(json.dumps({
    "missing": sorted(k for k, v in got.items() if v is None),
    "wrong": sorted(k for k, v in got.items() if v is not None and v != expected[k]),
    "shared": len(store.keys_for("shared")),
}))
store.close()
"""


def test_two_processes_write_and_read_concurrently(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    count = 150
    procs = {
        me: subprocess.Popen(
            [sys.executable, "-c", WORKER, str(directory), me, other, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, other in (("p1", "p2"), ("p2", "p1"))
    }
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready-{me}").exists() for me in procs):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs.values()), "a worker died before starting"
        time.sleep(0.01)
    (tmp_path / "go").touch()

    results: dict[str, Any] = {}
    for me, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results[me] = json.loads(out)
    for result in results.values():
        assert result["missing"] == []
        assert result["wrong"] == []

    store = DiskStore(directory)
    for me in procs:
        keys = [f"{me}:{i}" for i in range(count)]
        assert store.get_many(keys) == [f"{me}-{i}".encode() * 50 for i in range(count)]
        assert sorted(store.keys_for(f"own:{me}")) == sorted(keys)
    assert len(store.keys_for("shared")) == 2 * count
    store.close()


ASYNC_CALLS: dict[str, Callable[[DiskStore], Any]] = {
    "aget": lambda s: s.aget("k"),
    "aset": lambda s: s.aset("k", b"v", None),
    "adelete": lambda s: s.adelete("k"),
    "aget_many": lambda s: s.aget_many(["k"]),
    "aset_many": lambda s: s.aset_many({"k": b"v"}, 60),
    "aclear": lambda s: s.aclear("k"),
    "atag": lambda s: s.atag("t", ["k"], None),
    "akeys_for": lambda s: s.akeys_for("t"),
    "adrop": lambda s: s.adrop("t"),
}


@pytest.mark.parametrize("call", ASYNC_CALLS.values(), ids=ASYNC_CALLS.keys())
async def test_async_methods_run_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: Callable[[DiskStore], Any]
) -> None:
    store = DiskStore(tmp_path)
    loop_thread = threading.get_ident()
    seen: list[int] = []

    # Record the thread of every SQLite-touching entry point the a-methods end up in.
    real_values, real_tags = store._values, store._tags

    def values() -> Any:
        seen.append(threading.get_ident())
        return real_values()

    def tags() -> Any:
        seen.append(threading.get_ident())
        return real_tags()

    monkeypatch.setattr(store, "_values", values)
    monkeypatch.setattr(store, "_tags", tags)
    await call(store)
    assert seen
    assert loop_thread not in seen
    await store.aclose()


async def test_slow_disk_does_not_stall_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DiskStore(tmp_path)
    real_get = store.get

    def slow_get(key: str) -> bytes | None:
        time.sleep(0.3)
        return real_get(key)

    monkeypatch.setattr(store, "get", slow_get)
    async with LoopTicks() as ticks:
        assert await store.aget("k") is None
    assert ticks.count >= 10
    await store.aclose()


def test_directory_that_is_a_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_bytes(b"not a directory")
    with pytest.raises(ValueError, match="not a directory"):
        DiskStore(path)  # refused when made...
    path.unlink()
    store = DiskStore(path)
    path.write_bytes(b"not a directory")  # ... and a store error when it happens later
    with pytest.raises(StoreError) as info:
        store.get("k")
    assert info.value.__cause__ is not None
    with pytest.raises(StoreError):
        store.set("k", b"v", None)
    with pytest.raises(StoreError):
        store.tag("t", ["k"], None)
    store.close()


async def test_async_back_end_error_is_store_error(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    store = DiskStore(path)
    path.write_bytes(b"")  # a file where the directory should be, made after the store
    with pytest.raises(StoreError):
        await store.aset("k", b"v", None)
    with pytest.raises(StoreError):
        await store.akeys_for("t")


def test_corrupt_database_raises_store_error(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.set("k", b"v", None)
    store.close()
    for name in os.listdir(tmp_path):
        if name.startswith("cache.db"):
            (tmp_path / name).write_bytes(b"this is not a database" * 100)
    broken = DiskStore(tmp_path)
    with pytest.raises(StoreError):
        broken.get("k")
    broken.close()


def test_corrupt_tag_database_raises_store_error(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.tag("t", ["k"], None)
    store.close()
    for name in os.listdir(tmp_path):
        if name.startswith("tags.sqlite3"):
            (tmp_path / name).write_bytes(b"garbage" * 1000)
    broken = DiskStore(tmp_path)
    with pytest.raises(StoreError):
        broken.keys_for("t")
    broken.close()


def test_foreign_value_is_a_miss(tmp_path: Path) -> None:
    """Not a store failure (the cache's breaker opened on it, and every caller bypassed
    the cache): the next write of the key replaces it."""
    store = DiskStore(tmp_path)
    store._values().set("k", b"\x00raw bytes written by someone else")
    store._values().set("s", "a string written by someone else")
    for key in ("k", "s"):
        assert store.get(key) is None
    # a larger first byte is the frame of a newer DiskStore sharing the directory: absent
    store._values().set("newer", b"\x09" + bytes(8) + b"payload")
    assert store.get("newer") is None
    store.close()


def test_expired_tag_records_are_purged(tmp_path: Path, clock: FakeClock) -> None:
    store = DiskStore(tmp_path, clock=clock)
    store.tag("old", ["a", "b"], 10)
    clock.advance(11)
    store.tag("new", ["c"], 10)  # any tag write purges expired records
    con = store._tags()
    assert con.execute("SELECT name FROM tag").fetchall() == [("new",)]
    assert con.execute("SELECT name, key FROM tag_key").fetchall() == [("new", "c")]
    store.close()


def test_tag_rows_of_evicted_entries_are_swept(tmp_path: Path, clock: FakeClock) -> None:
    """Entries without a TTL evicted by size_limit leave no tag rows behind for long."""
    store = DiskStore(tmp_path, size_limit=64 * 1024, clock=clock)
    value = b"x" * 1024
    for i in range(3000):
        clock.advance(1)  # a row goes a minute after a sweep found its value gone
        store.set(f"k{i}", value, None)
        store.tag(f"user:{i}", [f"k{i}"], None)
    held = store.usage().entries
    rows = store._tags().execute("SELECT count(*) FROM tag_key").fetchone()[0]
    assert held < 100 and rows < 6 * held + 50, (held, rows)  # was 3000 rows
    live = [f"k{i}" for i in range(3000) if store.get(f"k{i}") is not None]
    assert all(store.keys_for(f"user:{key[1:]}") == [key] for key in live)  # still findable
    store.close()


def test_a_tag_row_whose_value_is_on_its_way_is_not_swept(tmp_path: Path, clock: FakeClock) -> None:
    """The cache tags an entry before it writes the value. Another process's sweep in
    between took the row for one of an evicted value, and the entry, once written, was out
    of its tag's reach: delete_tag missed it and it went on being served."""
    writer, other = DiskStore(tmp_path, clock=clock), DiskStore(tmp_path, clock=clock)
    writer.tag("doc:42", ["summary"], None)  # ... and the value is not written yet
    for i in range(20):  # the other process's tag writes sweep the whole table
        other.set(f"x{i}", b"x", None)
        other.tag(f"other:{i}", [f"x{i}"], None)
    writer.set("summary", b"v1", None)
    assert writer.keys_for("doc:42") == ["summary"]
    # a row whose value never comes goes once a sweep finds it still missing a minute on
    writer.tag("doc:43", ["lost"], None)
    for i in range(20):
        other.tag(f"again:{i}", [f"x{i}"], None)
    clock.advance(61)
    for i in range(20):
        other.tag(f"later:{i}", [f"x{i}"], None)
    assert writer.keys_for("doc:43") == []
    assert writer.keys_for("doc:42") == ["summary"]
    writer.close()
    other.close()


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("least-recently-stored", False), ("least-recently-used", True)],
)
def test_the_eviction_policy_decides_whether_a_hot_entry_stays(
    tmp_path: Path, policy: str, kept: bool
) -> None:
    """Past size_limit diskcache evicts the least recently stored by default (hits never
    write); least-recently-used keeps what is read, at the price of a write per hit."""
    store = DiskStore(tmp_path / policy, size_limit=2**20, eviction_policy=policy)
    value = os.urandom(64 * 1024)  # stored as files, counted exactly
    store.set("hot", value, None)
    for i in range(64):
        store.get("hot")  # read between every write
        store.set(f"k{i}", value, None)
    assert (store.get("hot") is not None) is kept
    store.close()


def test_an_unknown_eviction_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="least-recently-used"):
        DiskStore(tmp_path, eviction_policy="random")
    from deja.config import parse_config
    from deja.errors import ConfigError

    caching = {"type": "disk", "directory": str(tmp_path / "c"), "eviction_policy": "lru"}
    with pytest.raises(ConfigError, match="eviction_policy"):
        parse_config({"caching": caching}, base_dir=tmp_path)
    caching["eviction_policy"] = "least-recently-used"
    settings = parse_config({"caching": caching}, base_dir=tmp_path)
    assert settings.caching is not None and settings.caching.build_store() is not None


async def test_an_async_read_that_writes_nothing_stays_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An async disk hit cost a hop to a worker thread (60-150 us) for a 7 us SQLite
    read; a read under a policy that records reads (a write) still goes to a thread."""
    hops = 0
    real = SyncStore._offloaded

    async def counting(self: SyncStore, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(SyncStore, "_offloaded", counting)
    store = DiskStore(tmp_path / "a")
    await store.aset("k", b"v", None)  # opens the store (in a thread)
    hops = 0
    assert await store.aget("k") == b"v" and await store.aget("missing") is None
    assert hops == 0
    recording = DiskStore(tmp_path / "b", eviction_policy="least-recently-used")
    await recording.aset("k", b"v", None)
    hops = 0
    assert await recording.aget("k") == b"v"
    assert hops == 1
    fresh = DiskStore(tmp_path / "a")  # not open yet: opening is file work, in a thread
    assert await fresh.aget("k") == b"v" and hops == 2
    for opened in (store, recording, fresh):
        opened.close()


def test_value_files_no_entry_names_are_removed(tmp_path: Path) -> None:
    """diskcache writes a large value's file before its row: a writer killed in between
    left a file nothing named, and disk use grew past size_limit crash after crash."""
    store = DiskStore(tmp_path)
    store.set("big", b"x" * 100_000, None)  # a value in a file of its own
    orphan = tmp_path / "ab" / "cd" / ("0" * 28 + ".val")
    young = tmp_path / "ab" / "cd" / ("1" * 28 + ".val")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"y" * 5000)
    young.write_bytes(b"z" * 10)
    os.utime(orphan, (time.time() - 120, time.time() - 120))
    assert store.remove_orphans() == (1, 5000)
    assert not orphan.exists() and young.exists()  # a minute old at least
    assert store.get("big") == b"x" * 100_000
    assert store.remove_orphans(older_than=0) == (1, 10)
    assert store.get("big") == b"x" * 100_000
    assert (tmp_path / "cache.db").exists()  # and diskcache's own files untouched
    store.close()


def test_a_process_opening_a_directory_removes_old_orphans(tmp_path: Path) -> None:
    first = DiskStore(tmp_path)
    first.set("k", b"v", None)
    first.close()
    orphan = tmp_path / "0a" / "0b" / ("2" * 28 + ".val")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left")
    os.utime(orphan, (time.time() - 3600, time.time() - 3600))
    disk_module._collected.discard(os.path.realpath(tmp_path))  # as a new process would
    second = DiskStore(tmp_path)
    assert second.get("k") == b"v"
    deadline = time.monotonic() + 10
    while orphan.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not orphan.exists()
    second.close()


def test_rows_gone_before_their_grace_ended_do_not_stop_the_sweep(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Valueless rows await their grace in a bounded set; rows that went otherwise (their
    tag dropped) stayed in it for good, and once it was full nothing was swept again."""
    monkeypatch.setattr(disk_module, "_SWEEP_SUSPECTS", 8)
    store = DiskStore(tmp_path, clock=clock)
    store.tag("short", [f"s{i}" for i in range(8)], None)  # values never written
    store.tag("other", ["x"], None)  # its sweep notes the eight
    store.drop("short")
    store.tag("long", [f"l{i}" for i in range(20)], None)  # values never written either
    for _ in range(4):
        clock.advance(61)
        for _ in range(30):
            store.tag("other", ["x"], None)
    assert store.keys_for("long") == []
    assert store._tags().execute("SELECT count(*) FROM tag_key").fetchone()[0] == 1
    store.close()


def test_close_lets_the_async_callers_threads_go(tmp_path: Path) -> None:
    """S3Store.close released them; DiskStore.close (the sync Cache's) left them running."""

    def workers() -> int:
        return sum(t.name.startswith("deja-disk") for t in threading.enumerate())

    before = workers()
    store = DiskStore(tmp_path / "a")

    async def use() -> None:
        await store.aset("k", b"v", None)
        await store.aget_many(["k"])

    asyncio.run(use())
    assert workers() > before
    store.close()
    deadline = time.monotonic() + 5
    while workers() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers() == before
    assert store.get("k") == b"v"  # reopens on next use
    store.close()
