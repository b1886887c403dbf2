"""Helpers shared by the tests: requests, responses, a fault-injecting store, and
packages made missing."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from deja.request import Request
from deja.stores.base import SyncStore
from deja.stores.memory import MemoryStore
from deja.testing import FakeClock


def without_packages(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``import`` of ``packages`` (and of their submodules, imported or not) fail, as
    on a machine without them, until the test ends: the modules already imported stay
    where other code holds them."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            monkeypatch.setitem(sys.modules, name, None)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)


# Code run by ``python -c`` before a command: the packages named in BLOCKED fail to
# import, as on a machine without them (a subprocess, for what imports them at its start).
BLOCKING = """
import sys
BLOCKED = {blocked!r}

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, _Block())
"""


def chat_request(content: str = "What is the capital of France?", **params: Any) -> Request:
    return Request.chat(model="gpt-4o", messages=[{"role": "user", "content": content}], **params)


def stream_chunk(i: int, *, finish: str | None = None) -> dict[str, Any]:
    """Chunk ``i`` of a streamed chat answer ("w1 w2 ..."), or its last, with ``finish``."""
    delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f"w{i} "}
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "delta": {} if finish else delta,
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
    }


def chat_response(
    content: str | None = "Paris.",
    *,
    finish_reason: str | None = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    prompt_tokens: int = 20,
    completion_tokens: int = 5,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class FaultyStore(SyncStore):
    """A MemoryStore that fails on command: raise on chosen ops, or return garbage."""

    name = "faulty"

    def __init__(self, *, clock: FakeClock | None = None) -> None:
        self.inner = MemoryStore(clock=clock) if clock else MemoryStore()
        self.fail_ops: set[str] = set()
        self.garbage: object = None
        self.calls: dict[str, int] = {}
        self.read: list[str] = []  # the keys asked for, in order

    def _enter(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        if op in self.fail_ops:
            raise ConnectionError(f"injected failure on {op}")

    def get(self, key: str) -> bytes | None:
        self.read.append(key)
        self._enter("get")
        if self.garbage is not None:
            return self.garbage  # type: ignore[return-value]
        return self.inner.get(key)

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._enter("set")
        self.inner.set(key, value, ttl)

    def delete(self, key: str) -> bool:
        self._enter("delete")
        return self.inner.delete(key)

    def clear(self, prefix: str) -> int:
        self._enter("clear")
        return self.inner.clear(prefix)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(k) for k in keys]

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        for k, v in items.items():
            self.set(k, v, ttl)


class LockingMemoryStore(MemoryStore):
    """A MemoryStore with the optional Locking ability, for cross-'process' tests in one process."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        import threading

        self._locks: dict[str, tuple[str, float]] = {}
        self._locks_lock = threading.Lock()
        self.lock_calls = 0

    def lock(self, name: str, *, ttl: float) -> str | None:
        import time
        import uuid

        with self._locks_lock:
            self.lock_calls += 1
            held = self._locks.get(name)
            if held is not None and held[1] > time.monotonic():
                return None
            token = uuid.uuid4().hex
            self._locks[name] = (token, time.monotonic() + ttl)
            return token

    def unlock(self, name: str, token: str) -> None:
        with self._locks_lock:
            if self._locks.get(name, ("", 0.0))[0] == token:
                del self._locks[name]

    def extend(self, name: str, token: str, *, ttl: float) -> bool:
        import time

        with self._locks_lock:
            held = self._locks.get(name)
            if held is None or held[0] != token or held[1] <= time.monotonic():
                return False
            self._locks[name] = (token, time.monotonic() + ttl)
            return True

    async def alock(self, name: str, *, ttl: float) -> str | None:
        return self.lock(name, ttl=ttl)

    async def aextend(self, name: str, token: str, *, ttl: float) -> bool:
        return self.extend(name, token, ttl=ttl)

    async def aunlock(self, name: str, token: str) -> None:
        self.unlock(name, token)


def finishes_in_a_fork_during(lead: Callable[[], Any], again: Callable[[], Any]) -> bool:
    """Whether ``again()`` finishes (within 5 s) in a child forked while a parent's thread
    runs ``lead()`` (given 0.1 s to start): what a call in flight leaves to a child."""
    import os
    import threading
    import time

    parent = threading.Thread(target=lead)
    parent.start()
    time.sleep(0.1)
    pid = os.fork()
    if pid == 0:
        done = threading.Event()

        def run() -> None:
            again()
            done.set()

        threading.Thread(target=run, daemon=True).start()
        os._exit(0 if done.wait(5) else 1)
    _, status = os.waitpid(pid, 0)
    parent.join()
    return os.waitstatus_to_exitcode(status) == 0


class LoopTicks:
    """Counts the turns a 10 ms ticker gets on the running event loop: a call that blocks
    the loop stops the count. ``async with LoopTicks() as ticks: ...`` then ``ticks.count``.
    """

    def __init__(self) -> None:
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.count += 1

    async def __aenter__(self) -> LoopTicks:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)  # (started before the block runs)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()


def aws_chain_env(
    monkeypatch: pytest.MonkeyPatch, credentials: Any, region: str, endpoint: str
) -> None:
    """The AWS chain as a deployment has it: ``credentials``' keys, ``region`` and the
    Bedrock runtime ``endpoint`` in the environment, and nothing else of the machine's
    (no profile, session token, Bedrock API key, config files or instance metadata)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)  # (an API key would replace SigV4)
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# Each way to invalidate the entry of ``chat_request()`` tagged ``doc:42``: a function of a
# Cache (what it returns) or an AsyncCache (to await).
INVALIDATIONS: dict[str, Callable[[Any], Any]] = {
    "delete_tag": lambda cache: cache.delete_tag("doc:42"),
    "delete_tag in its namespace": lambda cache: cache.delete_tag("doc:42", namespace=None),
    "delete": lambda cache: cache.delete(cache.key(chat_request())),
    "clear": lambda cache: cache.clear(),
    "clear of its scope": lambda cache: cache.clear(tenant=None),
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
