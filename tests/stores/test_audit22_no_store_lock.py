"""A call whose answer is not to be stored holds no cross-process lock: identical calls in
other processes (proxy workers on one Redis) do not wait for an answer that never comes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import deja
from deja.stores.redis import RedisStore
from tests.helpers import chat_request, chat_response


def test_a_no_store_call_makes_no_other_process_wait(
    redis_server: Any, make_redis: Callable[..., RedisStore]
) -> None:
    # two caches on one Redis: two processes' (the lock is the store's, not the cache's)
    refreshing = deja.Cache(store=make_redis(redis_server), ttl=600, lock_wait=60)
    other = deja.Cache(store=make_redis(redis_server), ttl=600, lock_wait=60)
    called, release = threading.Event(), threading.Event()

    def held_up() -> dict[str, Any]:
        called.set()
        release.wait(30)
        return chat_response("not stored")

    first = threading.Thread(
        target=refreshing.fetch,
        args=(chat_request(), held_up),
        kwargs={"control": {"no-store": True}},
    )
    first.start()
    try:
        assert called.wait(10)
        # before: it waited on the no-store call's lock, then gave up when its own call's
        # time was up (UpstreamTimeoutError), though its upstream answers at once
        result = other.fetch(chat_request(), lambda: chat_response("stored"), timeout=2)
        assert result.info.status == "miss" and not release.is_set()
    finally:
        release.set()
        first.join()
    assert other.get(chat_request()).response == chat_response("stored")
