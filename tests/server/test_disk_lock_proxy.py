"""A disk cache shared by two ``deja serve`` processes, as an operator runs them: the
cross-process lock of DiskStore, and its settings in the caching block."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja import AsyncCache
from deja.config import build_cache, parse_config
from deja.errors import ConfigError
from deja.testing import FakeOpenAIServer, Reply
from tests.server.test_e2e import serve, write_config


def test_the_caching_block_sets_the_locks_ttl_and_wait(tmp_path: Path) -> None:
    """``lock_ttl`` / ``lock_wait`` reach the cache (they could not be set in a config: a
    proxy's waiters stalled 30 s behind a worker killed mid-call, whatever the operator
    wanted); unset, they are the cache's own defaults; a bad one is a ConfigError."""

    def cache_of(caching: dict[str, Any]) -> AsyncCache:
        settings = parse_config({"caching": caching}, base_dir=tmp_path)
        return build_cache(settings, asynchronous=True)

    disk = {"type": "disk", "directory": str(tmp_path / "cache")}
    cache = cache_of({**disk, "lock_ttl": 5, "lock_wait": 0})
    assert (cache.lock_ttl, cache.lock_wait) == (5.0, 0.0)
    defaults = inspect.signature(AsyncCache).parameters
    cache = cache_of(disk)
    assert cache.lock_ttl == defaults["lock_ttl"].default
    assert cache.lock_wait == defaults["lock_wait"].default
    for key, value in (("lock_ttl", 0), ("lock_ttl", 0.5), ("lock_wait", -1), ("lock_ttl", "soon")):
        with pytest.raises(ConfigError) as caught:
            cache_of({**disk, key: value})
        assert caught.value.path == f"caching.{key}"


def _holder(upstream: FakeOpenAIServer, pids: set[int]) -> int | None:
    """The process of ``pids`` with a connection open to ``upstream`` (the one calling),
    read from /proc (no ``ss`` on a bare machine): the sockets connected to its port, then
    which process holds one."""
    port = int(upstream.url.rstrip("/").rpartition(":")[2])
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if int(fields[2].rpartition(":")[2], 16) == port and fields[3] == "01":
                    inodes.add(fields[9])  # (an ESTABLISHED connection to the port)
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] in inodes:  # socket:[N]
                        return pid
    return None


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rpartition(")")[2].split()[1]) == pid:  # (its parent's pid)
                found.add(int(entry))
    return found


def test_a_worker_killed_holding_the_lock_frees_the_other_proxys_callers(
    tmp_path: Path,
) -> None:
    """Two proxies on one disk directory: identical misses wait for the one upstream call
    of the other proxy; when the worker making it is killed (SIGKILL: no release), they get
    an answer after the configured ``lock_ttl`` (one call for them all), no error, and the
    next request is a hit."""
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "who holds it?"}]}
    answers: list[httpx2.Response] = []
    with FakeOpenAIServer() as upstream:
        config = write_config(
            tmp_path,
            upstream,
            f"caching: {{type: disk, directory: {tmp_path / 'cache'}, lock_ttl: 2}}",
        )
        with (
            serve(config, "--log-level", "warning") as (first, first_process),
            serve(config, "--log-level", "warning") as (second, _),
        ):
            upstream.queue_reply(Reply("never delivered", latency=120))

            def doomed() -> None:  # its worker is killed: no answer
                with contextlib.suppress(httpx2.TransportError):
                    httpx2.post(f"{first}/v1/chat/completions", json=body, timeout=60)

            victim = threading.Thread(target=doomed, daemon=True)
            victim.start()
            deadline = time.monotonic() + 30  # (bounds for a broken test only)
            holder = None
            while holder is None and time.monotonic() < deadline:
                holder = _holder(upstream, _children(first_process.pid) | {first_process.pid})
                time.sleep(0.05)
            assert holder is not None, "the first proxy never called the upstream"
            waiters = [
                threading.Thread(
                    target=lambda: answers.append(
                        httpx2.post(f"{second}/v1/chat/completions", json=body, timeout=60)
                    )
                )
                for _ in range(3)
            ]
            for waiter in waiters:
                waiter.start()
            time.sleep(0.5)  # (they wait on the lock: the upstream has one call)
            waited_on = upstream.count("/v1/chat/completions")
            os.kill(holder, signal.SIGKILL)
            for waiter in waiters:
                waiter.join(timeout=60)
            calls = upstream.count("/v1/chat/completions")
            after = httpx2.post(f"{second}/v1/chat/completions", json=body, timeout=30)
    assert waited_on == 1
    assert len(answers) == 3 and {a.status_code for a in answers} == {200}
    assert len({a.json()["choices"][0]["message"]["content"] for a in answers}) == 1
    assert calls == 2  # the killed call, then one for the three waiters
    assert after.headers["x-deja-cache"] == "hit"
