"""Durability: a damaged or unmarked value is a miss (never the store failing), and a disk
store that cannot be written is still read.

* An S3 object whose ``x-amz-meta-deja-expires`` metadata is gone (copied onto itself with
  ``MetadataDirective=REPLACE``, as a backup restore or a migration does) raised a
  StoreError: the cache's breaker opened, every request bypassed the cache, and writes
  were skipped while it was open, so nothing healed.
* A DiskStore value cut to 0 bytes (a power loss: diskcache syncs neither file nor row),
  shorter than its header, or of an unknown format raised a StoreError the same way: an
  unrelated intact key was answered ``bypass``.
* A DiskStore on a read-only mount or a full disk failed every read as well as every
  write: diskcache writes its settings each time it opens the directory.

S3 runs against moto's server (s3_server.py); the read-only directory is a real one, made
so with chmod, read by a process that chmod binds (as root: one without the capabilities
that override file permissions).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import diskcache
import pytest

import deja
from deja.stores import DiskStore
from deja.testing import FakeClock
from tests.helpers import chat_request, chat_response
from tests.stores.s3_server import MotoS3Server, shared_server

# -- S3: objects without their expiry metadata --------------------------------------------


@pytest.fixture
def s3() -> MotoS3Server:
    pytest.importorskip("moto")
    return shared_server()


def strip_metadata(server: MotoS3Server, bucket: str, name: str) -> None:
    """Copy the object onto itself without its user metadata, as a restore tool does."""
    admin = server.admin
    admin.copy_object(
        Bucket=bucket,
        Key=name,
        CopySource={"Bucket": bucket, "Key": name},
        MetadataDirective="REPLACE",
        ContentType="application/octet-stream",
    )
    assert "deja-expires" not in admin.head_object(Bucket=bucket, Key=name)["Metadata"]


def test_s3_object_without_expiry_metadata_is_served(
    s3: MotoS3Server, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = s3.new_bucket()
    store = s3.store(bucket=bucket, prefix="deja", clock=clock)
    store.set_many({"a": b"value a", "b": b"value b"}, 60)
    strip_metadata(s3, bucket, "deja/a")
    strip_metadata(s3, bucket, "deja/b")
    with caplog.at_level(logging.WARNING, logger="deja.stores.s3"):
        assert store.get("a") == b"value a"
        assert store.get_many(["b", "a"]) == [b"value b", b"value a"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, "said once per store, not once per object or read"
    assert "'deja/a'" in warnings[0] and "x-amz-meta-deja-expires" in warnings[0]
    store.set("a", b"new a", 10)  # the next write marks it again: the store's TTL is back
    clock.advance(10)
    assert store.get("a") is None
    assert store.delete("b") is True
    store.close()


def test_s3_restored_entries_keep_answering_by_their_own_expiry(
    s3: MotoS3Server, clock: FakeClock
) -> None:
    bucket = s3.new_bucket()
    store = s3.store(bucket=bucket, prefix="deja", clock=clock)
    cache = deja.Cache(store=store, clock=clock, ttl=60)
    hot, junk = chat_request("restored"), chat_request("not an entry")
    cache.put(hot, chat_response())
    strip_metadata(s3, bucket, "deja/" + cache.key(hot))
    # bytes that are no entry, with no metadata either, under a key the cache asks for
    s3.admin.put_object(Bucket=bucket, Key="deja/" + cache.key(junk), Body=b"junk")
    assert cache.get(junk).info.status == "miss"
    assert [cache.get(hot).info.status for _ in range(12)] == ["hit"] * 12
    assert store.get(cache.key(junk)) is None, "the cache deleted what is not an entry"
    stats = cache.stats()
    assert stats.bypasses == 0
    clock.advance(61)  # the entry's own expiry still holds, with the store's gone
    assert cache.get(hot).info.status == "miss"
    cache.close()


# -- disk: damaged values -----------------------------------------------------------------


def value_file(directory: Path, key: str) -> Path:
    """The file diskcache keeps ``key``'s (large) value in."""
    database = directory / "cache.db"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as con:
        (filename,) = con.execute("SELECT filename FROM Cache WHERE key = ?", (key,)).fetchone()
    assert isinstance(filename, str), "a large value lives in a file of its own"
    return directory / filename


@pytest.mark.parametrize("length", [0, 5])
def test_disk_value_file_cut_short_is_a_miss_not_a_store_failure(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, length: int
) -> None:
    store = DiskStore(tmp_path, clock=clock)
    cache = deja.Cache(store=store, clock=clock, compress_min_bytes=10**9)
    hot, other = chat_request("hot"), chat_request("other")
    cache.put(hot, chat_response("x" * 60_000))  # large: a file of its own
    cache.put(other, chat_response("intact"))
    path = value_file(tmp_path, cache.key(hot))
    path.write_bytes(path.read_bytes()[:length])  # a power loss cut it short
    with caplog.at_level(logging.WARNING):
        # more reads than the breaker's threshold (5): each was a store failure
        assert [cache.get(hot).info.status for _ in range(8)] == ["miss"] * 8
        assert cache.get(other).info.status == "hit"
    stats = cache.stats()
    assert (stats.bypasses, stats.store_errors) == (0, 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and cache.key(hot) in warnings[0], warnings
    assert f"{length} bytes" in warnings[0]
    cache.put(hot, chat_response("answered again"))  # the next write replaces it
    result = cache.get(hot)
    assert result.info.status == "hit" and result.response is not None
    assert result.response["choices"][0]["message"]["content"] == "answered again"
    cache.close()


@pytest.mark.parametrize(
    "foreign",
    [
        b"",
        b"\x01\x02",
        struct.pack("<Bd", 0, 0.0) + b"format 0",  # a format no DiskStore wrote
        "a str another program stored",
        12345,
    ],
    ids=["empty", "short", "format-0", "str", "int"],
)
def test_disk_foreign_value_is_a_miss_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, foreign: object
) -> None:
    store = DiskStore(tmp_path)
    store.set("k", b"mine", None)
    with contextlib.closing(diskcache.Cache(str(tmp_path))) as other:  # another writer
        other.set("k", foreign)
    with caplog.at_level(logging.WARNING, logger="deja.stores.disk"):
        assert [store.get("k") for _ in range(3)] == [None, None, None]
        assert store.get_many(["k"]) == [None]
    assert len(caplog.records) == 1 and "'k'" not in caplog.records[0].getMessage()
    assert " k " in caplog.records[0].getMessage()
    assert store.delete("k") is False, "nothing of ours was held"
    store.set("k", b"mine again", None)
    assert store.get("k") == b"mine again"
    # a newer DiskStore's frame is still absent to this one, quietly, and left in place
    store._values().set("newer", b"\x09" + bytes(8) + b"payload")
    assert store.get("newer") is None
    assert store._values().get("newer") is not None
    store.close()


# -- disk: a directory that cannot be written ----------------------------------------------

# Run by a process that cannot write the directory: reads it, then (once the parent has
# made it writable again and sent a line) writes to it.
READER = r"""
import json, logging, sys
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
from deja.errors import StoreError
from deja.stores import DiskStore

store = DiskStore(sys.argv[1])
out = {
    "get": store.get("k").decode(),
    "big": len(store.get("big")),
    "missing": store.get("missing"),
    "many": [v and len(v) for v in store.get_many(["k", "missing", "big"])],
    "keys_for": store.keys_for("t"),
    "entries": store.usage().entries,
}
for name, write in [("set", lambda: store.set("new", b"v", None)),
                    ("tag", lambda: store.tag("t2", ["k"], None)),
                    ("lock", lambda: store.lock("k:lock", ttl=30))]:
    try:
        write()
        out[name] = "written"
    except StoreError as exc:
        out[name] = str(exc)
out["get_after_writes"] = store.get("k").decode()
# a miss takes no lock there, and waits for none: it calls at once (lock_wait: a hang guard)
import time, deja
answer = {"id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                       "finish_reason": "stop"}]}
started = time.monotonic()
result = deja.Cache(store=store, lock_wait=60).fetch(
    deja.Request.chat(model="gpt-4o", messages=[{"role": "user", "content": "new"}]),
    lambda: answer,
)
out["fetch"] = [result.info.status, result.response["choices"][0]["message"]["content"],
                time.monotonic() - started < 30]
print(json.dumps(out), flush=True)
sys.stdin.readline()
store.set("new", b"v", None)
print(json.dumps({"new": store.get("new").decode(), "get": store.get("k").decode()}), flush=True)
store.close()
"""


def bound_by_permissions() -> dict[str, Any]:
    """subprocess options that make the reader a process chmod binds. Root is not bound:
    its reader runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped from the
    bounding set before exec), so the permission bits hold for it as for any owner."""
    if os.geteuid() != 0:
        return {}
    if not sys.platform.startswith("linux"):
        pytest.skip("running as root, and dropping capabilities is Linux's")
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2

    def drop() -> None:
        for capability in (cap_dac_override, cap_dac_read_search):
            if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    return {"preexec_fn": drop}


def reader_process(script: str, directory: Path) -> subprocess.Popen[str]:
    """``script`` run on ``directory`` by a process its permission bits bind (pipes to
    its stdin, stdout and stderr, as text)."""
    return subprocess.Popen(
        [sys.executable, "-c", script, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **bound_by_permissions(),
    )


def chmod_tree(top: Path, *, directories: int, files: int) -> None:
    for root, dirs, names in os.walk(top):
        for name in names:
            os.chmod(os.path.join(root, name), files)
        for name in dirs:
            os.chmod(os.path.join(root, name), directories)
    top.chmod(directories)


@pytest.mark.parametrize("read_only", ["directory", "database"])
def test_disk_store_that_cannot_be_written_is_still_read(tmp_path: Path, read_only: str) -> None:
    directory = tmp_path / "cache"
    store = DiskStore(directory)
    store.set("k", b"small", None)
    store.set("big", b"x" * 100_000, 3600)  # a value file
    store.tag("t", ["k", "big"], None)
    store.close()
    if read_only == "directory":  # as a read-only mount: no file can be made or written
        chmod_tree(directory, directories=0o555, files=0o444)
    else:  # the database files alone: SQLite can make its -shm file, not write the database
        chmod_tree(directory, directories=0o777, files=0o444)
    reader = reader_process(READER, directory)
    try:
        assert reader.stdout is not None
        line = reader.stdout.readline()
        assert line, reader.communicate(timeout=30)[1]
        out = json.loads(line)
        assert out["get"] == "small" and out["big"] == 100_000 and out["missing"] is None
        assert out["many"] == [5, None, 100_000]
        assert sorted(out["keys_for"]) == ["big", "k"]
        assert out["entries"] == 2
        for write in ("set", "tag", "lock"):
            assert str(directory) in out[write] and "cannot be written" in out[write]
        assert out["get_after_writes"] == "small"
        assert out["fetch"] == ["miss", "Paris.", True]
        assert not (directory / "locks.sqlite3").exists()
        chmod_tree(directory, directories=0o777, files=0o666)  # writable again
        stdout, stderr = reader.communicate("go\n", timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert stdout, stderr  # (the reader's error, should its write after the chmod fail)
    assert json.loads(stdout) == {"new": "v", "get": "small"}, stderr
    said = [line for line in stderr.splitlines() if "read-only connection" in line]
    assert len(said) == 1 and str(directory) in said[0], stderr


WATCHER = r"""
import json, sys, time
from deja.stores import disk

disk._READ_ONLY_REOPEN = 0.2
store = disk.DiskStore(sys.argv[1])
for line in sys.stdin:
    key, tag = line.split()
    time.sleep(0.3)  # (past the reopening window)
    value = store.get(key)
    print(json.dumps([None if value is None else value.decode(), store.keys_for(tag)]), flush=True)
"""


def test_a_read_only_view_sees_what_another_process_writes(tmp_path: Path) -> None:
    """Where the directory is read-only to this process (a read-only mount) SQLite reads
    it as immutable, never seeing another process's writes: an entry the writer pod
    deleted (an invalidation, a tenant flush) was served for ever."""
    directory = tmp_path / "cache"
    store = DiskStore(directory)
    store.set("k", b"old answer", None)
    store.tag("t", ["k"], None)
    store.close()
    chmod_tree(directory, directories=0o555, files=0o444)  # read-only to the reader
    reader = reader_process(WATCHER, directory)
    try:
        assert reader.stdin is not None and reader.stdout is not None

        def ask(key: str, tag: str) -> list[Any]:
            reader.stdin.write(f"{key} {tag}\n")  # type: ignore[union-attr]
            reader.stdin.flush()  # type: ignore[union-attr]
            line = reader.stdout.readline()  # type: ignore[union-attr]
            assert line, reader.communicate(timeout=30)[1]
            return list(json.loads(line))

        assert ask("k", "t") == ["old answer", ["k"]]
        if os.geteuid() != 0:  # (root writes through the permission bits, as a rw pod)
            chmod_tree(directory, directories=0o777, files=0o666)
        writer = DiskStore(directory)
        assert writer.delete("k")
        writer.drop("t")
        writer.set("k2", b"new", None)
        writer.close()
        assert ask("k", "t") == [None, []]
        assert ask("k2", "t") == ["new", []]
    finally:
        reader.kill()
        reader.wait()


def test_a_damaged_tag_index_holds_back_only_tagged_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its failures opened the writes' breaker: every answer, untagged too, went unstored
    ("file is not a database", naming no file)."""
    import os

    import deja
    from deja.testing import FakeOpenAIServer

    directory = tmp_path / "cache"
    first = deja.DiskStore(directory)
    first.tag("warm", ["k"], None)  # the tag database exists
    first.close()
    with open(directory / "tags.sqlite3", "r+b") as damaged:
        damaged.write(os.urandom(4096))
    for suffix in ("-wal", "-shm"):
        (directory / f"tags.sqlite3{suffix}").unlink(missing_ok=True)
    with FakeOpenAIServer() as server:
        client = deja.Client(cache=deja.Cache(store=deja.DiskStore(directory)))

        def ask(text: str, tags: list[str] | None = None) -> str:
            return client.completion(
                model="gpt-4o",
                api_base=server.base_url,
                api_key="sk",
                messages=[{"role": "user", "content": text}],
                cache={"tags": tags} if tags else None,
            ).cache.status

        with caplog.at_level("WARNING", logger="deja"):
            assert [ask(f"tagged {i}", ["faq"]) for i in range(8)] == ["miss"] * 8
            assert [ask(f"plain {i}") for i in range(4)] == ["miss"] * 4
            assert [ask(f"plain {i}") for i in range(4)] == ["hit"] * 4  # stored
            assert ask("tagged 0", ["faq"]) == "miss"  # (not stored: its tag would miss it)
        client.close()
    assert "refuses writes" not in caplog.text
    assert "tags.sqlite3" in caplog.text
