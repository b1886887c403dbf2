"""S3Store beyond the contract: layout, expiry metadata, prefixes, odd keys, concurrency, faults.

Everything runs against moto's S3 server over real HTTP on a loopback port (s3_server.py).
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("moto")

import deja
from deja.config import build_cache, parse_config
from deja.errors import ConfigError, MissingDependencyError, StoreError
from deja.stores import s3 as s3_module
from deja.stores.s3 import S3Store
from deja.testing import FakeClock
from tests.helpers import LoopTicks, chat_request, chat_response
from tests.stores.s3_server import ACCESS_KEY, REGION, SECRET_KEY, MotoS3Server, shared_server


@pytest.fixture
def server() -> MotoS3Server:
    return shared_server()


@pytest.fixture
def bucket(server: MotoS3Server) -> str:
    return server.new_bucket()


@pytest.fixture
def make(server: MotoS3Server, clock: FakeClock) -> Iterator[Callable[..., S3Store]]:
    """Build stores on the server (the test's clock unless told otherwise); closed after."""
    made: list[S3Store] = []

    def build(**options: Any) -> S3Store:
        options.setdefault("clock", clock)
        store = server.store(**options)
        made.append(store)
        return store

    yield build
    for store in made:
        store.close()


def object_names(server: MotoS3Server, bucket: str) -> list[str]:
    response = server.admin.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in response.get("Contents", ())]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RecordingClient:
    """Wraps a boto3 client: counts concurrent get_object calls, can delay or intercept them."""

    def __init__(self, inner: Any, *, delay: float = 0.0) -> None:
        self.inner = inner
        self.delay = delay
        self.after_get: Callable[[], None] | None = None
        self.in_flight = 0
        self.most_in_flight = 0
        self.gets = 0
        self._lock = threading.Lock()

    def get_object(self, **params: Any) -> Any:
        with self._lock:
            self.gets += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            response = self.inner.get_object(**params)
        finally:
            with self._lock:
                self.in_flight -= 1
        if self.after_get is not None:
            self.after_get()
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# -- construction ------------------------------------------------------------------------


def test_constructor_does_no_io(server: MotoS3Server) -> None:
    # No such bucket, and an endpoint nothing listens on: neither is noticed until used.
    store = S3Store(bucket="never-created", endpoint_url=f"http://127.0.0.1:{closed_port()}")
    store.close()
    missing = server.store(bucket="never-created-either")
    with pytest.raises(StoreError, match="NoSuchBucket"):
        missing.get("k")
    missing.close()


def test_deleting_from_a_missing_bucket_is_an_error_not_a_miss(server: MotoS3Server) -> None:
    # HEAD answers a bare 404 for a missing bucket, as for a missing object
    missing = server.store(bucket="no-such-bucket-here")
    with pytest.raises(StoreError, match="delete failed"):
        missing.delete("k")
    missing.close()
    present = server.store()
    assert present.delete("never-stored") is False
    present.close()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"bucket": ""}, ValueError),
        ({"bucket": "b", "prefix": 3}, TypeError),
        ({"bucket": "b", "max_pool_connections": 0}, ValueError),
        ({"bucket": "b", "connect_timeout": 0}, ValueError),
        ({"bucket": "b", "read_timeout": True}, ValueError),
        ({"bucket": "b", "max_attempts": 0}, ValueError),
    ],
)
def test_rejects_bad_options(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        S3Store(**options)


def test_missing_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'deja-llm\[s3\]'"):
        S3Store(bucket="b")


def test_prefix_is_a_directory() -> None:
    assert S3Store(bucket="b").prefix == ""
    assert S3Store(bucket="b", prefix="deja").prefix == "deja/"
    assert S3Store(bucket="b", prefix="deja/").prefix == "deja/"
    assert repr(S3Store(bucket="b", prefix="x")) == "S3Store(bucket='b', prefix='x/')"


# -- layout and expiry metadata ----------------------------------------------------------


def test_objects_carry_their_expiry(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store], clock: FakeClock
) -> None:
    store = make(bucket=bucket, prefix="cache")
    store.set("deja:v1:abc:def", b"value", 60)
    store.set("forever", b"v", None)
    assert sorted(object_names(server, bucket)) == ["cache/deja:v1:abc:def", "cache/forever"]
    head = server.admin.head_object(Bucket=bucket, Key="cache/deja:v1:abc:def")
    assert float(head["Metadata"]["deja-expires"]) == pytest.approx(clock() + 60)
    assert head["Expires"].timestamp() == pytest.approx(clock() + 60, abs=1)
    forever = server.admin.head_object(Bucket=bucket, Key="cache/forever")
    assert forever["Metadata"]["deja-expires"] == "never"
    assert "Expires" not in forever


def test_expired_object_reads_as_missing_and_is_deleted(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store], clock: FakeClock
) -> None:
    store = make(bucket=bucket)
    store.set_many({"a": b"1", "b": b"2"}, 10)
    clock.advance(10)
    assert store.get("a") is None, "expiry is at, not after, the TTL"
    assert store.get_many(["b", "a"]) == [None, None]
    assert object_names(server, bucket) == []


def test_another_process_sees_the_expiry(
    bucket: str, make: Callable[..., S3Store], clock: FakeClock
) -> None:
    writer = make(bucket=bucket)
    writer.set("k", b"v", 30)
    later = FakeClock(clock() + 31)
    reader = make(bucket=bucket, clock=later)
    assert reader.get("k") is None
    assert writer.get("k") is None, "the reader deleted it"


def test_expired_delete_spares_a_value_written_meanwhile(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store], clock: FakeClock
) -> None:
    fresh = make(bucket=bucket)
    recording = RecordingClient(server.client())
    stale = make(bucket=bucket, client=recording)
    fresh.set("k", b"old", 5)
    clock.advance(6)
    # Between the stale reader's GET and its delete, another process writes a new value.
    recording.after_get = lambda: fresh.set("k", b"new", 60)
    assert stale.get("k") is None
    recording.after_get = None
    assert fresh.get("k") == b"new"
    recording.inner.close()


def test_foreign_objects_are_left_alone(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store]
) -> None:
    store = make(bucket=bucket, prefix="deja")
    store.set("mine", b"1", None)
    # Not deja's encoding (a dot, a slash), and a canonical name with no deja metadata.
    for name in ("deja/readme.txt", "deja/other/thing", "deja/plain"):
        server.admin.put_object(Bucket=bucket, Key=name, Body=b"x")
    assert store.usage().entries == 2  # "mine" and "plain": names deja could have written
    assert store.get("plain") == b"x"  # no deja metadata: served as it is
    assert store.clear("m") == 1
    assert sorted(object_names(server, bucket)) == [
        "deja/other/thing",
        "deja/plain",
        "deja/readme.txt",
    ]


# -- prefixes and keys -------------------------------------------------------------------


def test_prefixes_isolate_stores_in_one_bucket(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store]
) -> None:
    app = make(bucket=bucket, prefix="app")
    app2 = make(bucket=bucket, prefix="app2")
    nested = make(bucket=bucket, prefix="app/sub/")
    root = make(bucket=bucket)
    for store in (app, app2, nested, root):
        store.set_many({"k": store.prefix.encode(), "k2": b"x"}, None)
        store.tag("t", ["k"], None)
    assert app.clear("") == 2
    assert app.get("k") is None
    assert [s.get("k") for s in (app2, nested, root)] == [b"app2/", b"app/sub/", b""]
    assert [s.usage().entries for s in (app, app2, nested, root)] == [0, 2, 2, 2]
    assert app.keys_for("t") == ["k"], "clear leaves tag records"
    assert root.drop("t") == ["k"]
    assert nested.keys_for("t") == ["k"]


def test_same_prefix_with_or_without_slash_is_one_store(
    bucket: str, make: Callable[..., S3Store]
) -> None:
    make(bucket=bucket, prefix="deja").set("k", b"v", None)
    assert make(bucket=bucket, prefix="deja/").get("k") == b"v"


ODD_KEYS = [
    "a/b",
    "a%2Fb",
    "/",
    "//",
    ".",
    "..",
    "../escape",
    "a/../b",
    "%",
    "%zz",
    "100%",
    "~home",
    "#hash?query&x=1",
    "back\\slash",
    "{braces}[brackets]<angle>|pipe^caret`tick\"quote'",
    "nul\x00byte",
    "ctrl\x01\x1f\x7f",
    "line\nbreak\r",
    "  spaces  ",
    "plus+equals=",
    "ключ/鍵",
    "emoji-🔑",
    "\u200b zero width",
    "__deja_tags__",
    "__deja_tags__/x",
    "x" * 900,
]


def test_odd_keys_round_trip(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store]
) -> None:
    store = make(bucket=bucket, prefix="odd")
    items = {key: f"value {i}".encode() for i, key in enumerate(ODD_KEYS)}
    store.set_many(items, 60)
    assert store.get_many(ODD_KEYS) == list(items.values())
    for name in object_names(server, bucket):
        assert name.startswith("odd/")
        assert "/" not in name[4:] and "." not in name and name.isascii()
    assert store.usage().entries == len(ODD_KEYS)
    assert store.clear("a/") == 2  # "a/b" and "a/../b", not "a%2Fb"
    assert store.get("a%2Fb") == items["a%2Fb"]
    assert store.clear("__deja_tags__") == 2
    assert store.delete("..") is True
    assert store.delete(".") is True
    assert store.get("/") == items["/"]
    assert store.clear("") == len(ODD_KEYS) - 6


def test_empty_key_needs_a_prefix(make: Callable[..., S3Store]) -> None:
    with_prefix = make(prefix="p")
    with_prefix.set("", b"v", None)
    assert with_prefix.get("") == b"v"
    assert with_prefix.get_many(["", "x"]) == [b"v", None]
    assert with_prefix.clear("") == 1
    with pytest.raises(ValueError):
        make().set("", b"v", None)


def test_clear_deletes_in_batches(
    monkeypatch: pytest.MonkeyPatch, make: Callable[..., S3Store]
) -> None:
    monkeypatch.setattr(s3_module, "_DELETE_BATCH", 3)
    store = make()
    store.set_many({f"k{i}": b"v" for i in range(10)}, None)
    store.set("other", b"v", None)
    assert store.clear("k") == 10
    assert store.usage().entries == 1


def test_usage_counts_bytes_but_not_tags(make: Callable[..., S3Store]) -> None:
    store = make()
    store.set_many({"a": b"x" * 100, "b": b"y" * 50}, None)
    store.tag("t", ["a", "b"], None)
    usage = store.usage()
    assert (usage.entries, usage.bytes, usage.evictions) == (2, 150, 0)


# -- concurrency -------------------------------------------------------------------------


def test_get_many_fetches_concurrently_in_order(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store]
) -> None:
    store = make(bucket=bucket)
    keys = [f"key-{i}" for i in range(50)]
    store.set_many({k: k.encode() for k in keys[::2]}, 60)
    recording = RecordingClient(server.client(max_pool_connections=32), delay=0.1)
    reader = make(bucket=bucket, client=recording)
    wanted = [*reversed(keys), "key-0"]
    got = reader.get_many(wanted)
    assert got == [k.encode() if int(k.split("-")[1]) % 2 == 0 else None for k in wanted]
    assert recording.gets == 50, "a repeated key is fetched once"
    # (counted, not timed: each GET is held 0.1 s, so requests sent together overlap)
    assert recording.most_in_flight > 4, "one request at a time"
    recording.inner.close()


def test_threads_share_one_store(make: Callable[..., S3Store]) -> None:
    store = make()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                store.set(f"{n}:{i}", f"{n}.{i}".encode(), 60)
                assert store.get(f"{n}:{i}") == f"{n}.{i}".encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.usage().entries == 30


def test_concurrent_taggers_lose_nothing(make: Callable[..., S3Store]) -> None:
    first = make()
    writers = [first, *(make(bucket=first.bucket) for _ in range(3))]

    def work(n: int) -> None:
        for i in range(5):
            writers[n].tag("shared", [f"{n}:{i}"], 60)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = sorted(f"{n}:{i}" for n in range(4) for i in range(5))
    assert sorted(first.keys_for("shared")) == expected


async def test_async_methods_do_not_block_the_loop(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store]
) -> None:
    make(bucket=bucket).set("k", b"v", None)
    recording = RecordingClient(server.client(), delay=0.2)
    slow = make(bucket=bucket, client=recording)
    async with LoopTicks() as ticks:
        assert await slow.aget("k") == b"v"
        assert await slow.aget_many(["k", "missing"]) == [b"v", None]
    # 0.4 s in slow requests; a blocked loop would have ticked at most twice.
    assert ticks.count >= 10
    recording.inner.close()


# -- tags --------------------------------------------------------------------------------


def test_a_dead_tag_record_starts_afresh(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store], clock: FakeClock
) -> None:
    store = make(bucket=bucket)
    store.tag("t", ["old"], 10)
    clock.advance(10)
    assert store.keys_for("t") == []
    store.tag("t", ["new"], 10)
    assert store.keys_for("t") == ["new"], "keys of the dead record do not come back"
    clock.advance(5)
    store.tag("t", ["later"], 20)
    clock.advance(10)
    assert sorted(store.keys_for("t")) == ["later", "new"]
    assert len(object_names(server, bucket)) == 2, "keys_for deleted the dead record"
    store.tag("forever", ["a"], None)
    clock.advance(10**9)
    store.tag("forever", ["b"], 1)
    assert sorted(store.keys_for("forever")) == ["a", "b"]


def test_drop_deletes_the_tag_objects(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store], clock: FakeClock
) -> None:
    store = make(bucket=bucket)
    store.tag("t", ["a", "b"], 10)
    clock.advance(20)
    store.tag("t", ["c"], 10)
    store.tag("t", ["c"], 30)
    assert store.drop("t") == ["c"]
    assert object_names(server, bucket) == []


# -- faults ------------------------------------------------------------------------------


def test_unreachable_endpoint_is_a_store_error_quickly() -> None:
    store = S3Store(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        region=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    started = time.monotonic()
    for call in (
        lambda: store.get("k"),
        lambda: store.set("k", b"v", 1),
        lambda: store.delete("k"),
        lambda: store.clear(""),
        lambda: store.keys_for("t"),
    ):
        with pytest.raises(StoreError) as info:
            call()
        assert info.value.__cause__ is not None
    assert time.monotonic() - started < 8
    store.close()


def test_a_silent_endpoint_times_out() -> None:
    # Accepts connections and never answers: only read_timeout ends the wait.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        store = S3Store(
            bucket="b",
            endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
            region=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            read_timeout=0.3,
            max_attempts=1,
        )
        started = time.monotonic()
        with pytest.raises(StoreError, match="timeout"):
            store.get("k")
        assert time.monotonic() - started < 2
        store.close()


def test_the_cache_turns_an_unreachable_store_into_misses() -> None:
    store = S3Store(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        region=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        max_attempts=1,
    )
    cache = deja.Cache(store=store)
    started = time.monotonic()
    assert cache.get(chat_request()).info.status == "miss"
    result = cache.fetch(chat_request(), chat_response)
    assert result.info.status == "miss" and result.response == chat_response()
    assert time.monotonic() - started < 5
    store.close()


async def test_the_async_cache_works_end_to_end(make: Callable[..., S3Store]) -> None:
    cache = deja.AsyncCache(store=make())

    async def upstream() -> dict[str, Any]:
        return chat_response()

    assert (await cache.fetch(chat_request(), upstream)).info.status == "miss"
    assert (await cache.fetch(chat_request(), upstream)).info.status == "hit"


def test_close_then_reuse_and_an_injected_client_stays_open(
    server: MotoS3Server, bucket: str, make: Callable[..., S3Store]
) -> None:
    store = make(bucket=bucket)
    store.set_many({"a": b"1", "b": b"2"}, None)
    store.close()
    assert store.get_many(["a", "b"]) == [b"1", b"2"]
    client = server.client()
    borrowed = make(bucket=bucket, client=client)
    borrowed.close()
    assert client.head_object(Bucket=bucket, Key="a")["ContentLength"] == 1
    client.close()


# -- configuration -----------------------------------------------------------------------


def test_litellm_cache_params_build_an_s3_store(
    server: MotoS3Server, bucket: str, tmp_path: Path
) -> None:
    settings = parse_config(
        {
            "litellm_settings": {
                "cache": True,
                "cache_params": {
                    "type": "s3",
                    "s3_bucket_name": bucket,
                    "s3_region_name": REGION,
                    "s3_endpoint_url": server.endpoint_url,
                    "s3_aws_access_key_id": ACCESS_KEY,
                    "s3_aws_secret_access_key": "os.environ/S3_SECRET",
                    "s3_path": "litellm-cache",
                    "s3_use_ssl": False,
                    "s3_verify": False,
                    "s3_api_version": "2006-03-01",
                    "ttl": 60,
                },
            }
        },
        base_dir=tmp_path,
        environ={"S3_SECRET": SECRET_KEY},
    )
    assert settings.caching is not None and settings.caching.type == "s3"
    assert SECRET_KEY not in repr(settings.caching)
    assert any("s3_api_version" in w for w in settings.warnings)
    cache = build_cache(settings)
    store = cache.store
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == (bucket, "litellm-cache/")
    cache.put(chat_request(), chat_response())
    assert cache.get(chat_request()).info.status == "hit"
    assert all(n.startswith("litellm-cache/deja:") for n in object_names(server, bucket))
    store.close()


def test_native_config_with_the_credential_chain(
    server: MotoS3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No credentials in the config: boto3's usual chain finds them (here, the environment).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    settings = parse_config(
        {
            "caching": {
                "type": "s3",
                "bucket": bucket,
                "prefix": "native/",
                "region": REGION,
                "endpoint_url": server.endpoint_url,
                "max_pool_connections": 4,
                "connect_timeout": 0.5,
                "read_timeout": 2,
            }
        },
        base_dir=tmp_path,
        environ={},
    )
    assert settings.caching is not None
    store = settings.caching.build_store()
    assert isinstance(store, S3Store)
    store.set("k", b"v", None)
    assert object_names(server, bucket) == ["native/k"]
    store.close()


@pytest.mark.parametrize(
    ("block", "path", "fragment"),
    [
        ({"type": "s3"}, "caching.bucket", "required"),
        ({"type": "s3", "bucket": "b", "max_pool_connections": 0}, None, "greater than 0"),
        ({"type": "s3", "bucket": "b", "s3_verify": 3}, "caching.s3_verify", "true or false"),
        ({"type": "s3", "bucket": "b", "buckets": "c"}, "caching.buckets", "did you mean"),
        ({"type": "gcs"}, "caching.type", "not supported"),
    ],
)
def test_config_errors(
    tmp_path: Path, block: dict[str, Any], path: str | None, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"caching": block}, base_dir=tmp_path, environ={})
    if path is not None:
        assert info.value.path == path
    assert fragment in str(info.value)


def test_the_invalidations_marks_are_no_entries(make: Callable[..., S3Store]) -> None:
    """A cache's delete leaves a mark for the other processes' calls in flight: it is no
    entry (usage counted it, and deja_cache_entries no longer went down on delete)."""
    store = make()
    cache = deja.Cache(store=store, ttl=600)
    for n in range(3):
        cache.put(chat_request(f"q{n}"), chat_response())
    assert cache.delete(cache.key(chat_request("q0")))
    assert store.usage().entries == 2
    assert cache.clear() == 2
    assert store.usage().entries == 0
