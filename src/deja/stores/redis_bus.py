"""An invalidation bus over Redis pub/sub, for TieredStores in many processes.

Each :class:`RedisInvalidationBus` publishes on one channel and listens on it from a
daemon thread. Until the subscription is confirmed, and whenever the connection to Redis is
lost, ``healthy`` is false and the tiered store empties and bypasses its L1; the listener
reconnects with backoff and reports health again once subscribed. A connection dropped
without a word (a NAT or load balancer forgetting an idle one) is found by pings: the
listener pings every ``_PING_EVERY`` seconds and takes a silence past ``_SILENCE`` as a lost
connection. A forked child does not have its parent's listener thread: there the bus starts
over, unsubscribed and so not healthy, and each store subscribes again on first use. Given
several URLs (a cluster's nodes), the listener and the publishers move on to the next one
when theirs fails. Publishing is best-effort: a publish that fails is logged
(at most once per ``_WARN_EVERY`` seconds; the other processes' L1 copies then live at most
``l1_ttl``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson

from deja._forks import renew_in_child
from deja._recurring import Recurring
from deja.errors import MissingDependencyError
from deja.stores.bus import Handler, HealthHandler, Invalidation

__all__ = ["RedisInvalidationBus"]

logger = logging.getLogger("deja.stores.tiered")

_PING_EVERY = 2.0  # seconds between the listener's pings
_SILENCE = 3 * _PING_EVERY  # nothing heard for this long (not even a pong): the link is gone
_WARN_EVERY = 30.0  # seconds between two warnings of failed publishes


def _encode(event: Invalidation) -> bytes:
    return orjson.dumps({"o": event.origin, "k": list(event.keys), "p": event.prefix})


def _decode(data: object) -> Invalidation | None:
    try:
        doc = orjson.loads(data)  # type: ignore[arg-type]
        keys = doc.get("k") or []
        prefix = doc.get("p")
        if not isinstance(doc.get("o"), str) or not isinstance(keys, list):
            return None
        return Invalidation(
            doc["o"],
            tuple(k for k in keys if isinstance(k, str)),
            prefix if isinstance(prefix, str) else None,
        )
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None


class RedisInvalidationBus:
    """Pub/sub on ``channel`` of the Redis (or Valkey) server at ``url``.

    Use a standalone server or a cluster node's URL (pub/sub messages reach every node of a
    cluster); ``url`` may also be several (a cluster's nodes), tried in turn when one
    fails. ``op_timeout`` bounds a publish; ``reconnect_max`` caps the listener's backoff.
    """

    def __init__(
        self,
        *,
        url: str | Sequence[str],
        channel: str = "deja:invalidate",
        op_timeout: float = 0.25,
        reconnect_max: float = 1.0,
    ) -> None:
        urls = [url] if isinstance(url, str) else [str(u) for u in url]
        if not urls:
            raise ValueError("the invalidation bus needs at least one Redis URL")
        self.urls = urls
        self.url = urls[0]
        self.channel = channel
        self.op_timeout = op_timeout
        self.reconnect_max = reconnect_max
        self._healthy = False
        self._warned = False
        self._handlers: list[Handler] = []
        self._health_handlers: list[HealthHandler] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publish_at = 0  # which URL publishes go to (the last that worked)
        self._clients: dict[int, Any] = {}
        self._aclients: dict[int, tuple[asyncio.AbstractEventLoop, Any]] = {}
        self._publish_lines = Recurring(window=_WARN_EVERY)  # (failed publishes)
        self._parents: list[Any] = []  # a forked child's inherited asyncio clients: see _forked
        renew_in_child(self, RedisInvalidationBus._forked)

    def _forked(self) -> None:
        """In a forked child, which has the parent's subscribers and health but not its
        listener thread: start over, not subscribed, so not healthy and with no subscribers
        (each subscribes again on first use, which starts this process's own listener)."""
        closed = self._stop.is_set()
        self._lock = threading.Lock()  # a parent's thread may have held these
        self._stop = threading.Event()
        if closed:
            self._stop.set()
        self._thread = None
        self._healthy = False
        self._warned = False
        self._handlers = []
        self._health_handlers = []
        self._publish_lines = Recurring(window=_WARN_EVERY)
        # The sync publishers' redis-py pools open new connections in a child by themselves.
        # An asyncio client's socket is the parent's too: it is set aside, neither used (two
        # processes on one connection would read each other's replies) nor closed (closing
        # it could unregister the parent's socket from the epoll set both processes share).
        self._parents.extend(client for _, client in self._aclients.values())
        self._aclients = {}

    @property
    def healthy(self) -> bool:
        """True while the subscription is up."""
        return self._healthy

    def _redis(self) -> Any:
        try:
            import redis
        except ImportError as exc:
            raise MissingDependencyError("redis", "redis") from exc
        return redis

    def publish(self, event: Invalidation) -> None:
        """Publish ``event`` (best-effort)."""
        data = _encode(event)
        error: Exception | None = None
        for index in self._order():
            try:
                client = self._clients.get(index)
                if client is None:
                    client = self._clients[index] = self._redis().Redis.from_url(
                        self.urls[index],
                        socket_timeout=self.op_timeout,
                        socket_connect_timeout=self.op_timeout,
                    )
                client.publish(self.channel, data)
            except Exception as exc:  # best-effort by design: the L2 write already happened
                error = exc
                continue
            self._publish_at = index
            return
        assert error is not None
        self._publish_failed(error)

    async def apublish(self, event: Invalidation) -> None:
        """Async twin of :meth:`publish`."""
        data = _encode(event)
        error: Exception | None = None
        loop = asyncio.get_running_loop()
        for index in self._order():
            try:
                known = self._aclients.get(index)
                if known is None or known[0] is not loop:
                    import redis.asyncio

                    # an asyncio client belongs to the loop it was made on
                    known = self._aclients[index] = (
                        loop,
                        redis.asyncio.Redis.from_url(
                            self.urls[index],
                            socket_timeout=self.op_timeout,
                            socket_connect_timeout=self.op_timeout,
                        ),
                    )
                try:
                    await known[1].publish(self.channel, data)
                except self._redis().exceptions.ConnectionError:
                    # a pooled connection the server closed while idle (a Redis `timeout`,
                    # a load balancer): once more, on a fresh one. A delete's invalidation
                    # lost so left other hosts' L1s serving the deleted answer (twice is
                    # harmless: an invalidation drops what is already gone)
                    await known[1].publish(self.channel, data)
            except Exception as exc:  # see publish
                error = exc
                continue
            self._publish_at = index
            return
        assert error is not None
        self._publish_failed(error)

    def _order(self) -> list[int]:
        """The URLs' indexes to publish to, the last that worked first."""
        first = self._publish_at
        return [(first + step) % len(self.urls) for step in range(len(self.urls))]

    def _publish_failed(self, exc: Exception) -> None:
        """Log a failed publish, once per ``_WARN_EVERY`` seconds (a dead server failed
        every write's publish: a warning per miss)."""
        said = self._publish_lines.occurred("publish")
        if said is None:
            return
        _, unsaid, _ = said
        logger.warning(
            "invalidation publish failed (%s)%s; other L1 copies expire by l1_ttl",
            exc,
            f", and {unsaid} more since the last warning" if unsaid else "",
        )

    def subscribe(self, handler: Handler, on_health: HealthHandler) -> None:
        """Deliver events to ``handler`` from a listener thread, started on the first call.
        A forked child has neither the parent's listener nor its subscribers: subscribe
        again there."""
        with self._lock:
            self._handlers.append(handler)
            self._health_handlers.append(on_health)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="deja-invalidation", daemon=True
                )
                self._thread.start()

    def _set_health(self, healthy: bool) -> None:
        if healthy == self._healthy:
            return
        self._healthy = healthy
        for on_health in list(self._health_handlers):
            on_health(healthy)

    def _listen(self) -> None:
        redis = self._redis()
        delay = 0.05
        subscribed = False  # ever: a bus that never comes up is said once, loudly
        at = 0  # which URL (moved on to the next one when it fails)
        while not self._stop.is_set():
            connection = None
            try:
                connection = redis.Redis.from_url(
                    self.urls[at],
                    socket_connect_timeout=self.op_timeout,
                    # bounds the handshake and SUBSCRIBE too: a node that takes the
                    # connection and never answers held the listener for good (the
                    # pings below only start once subscribed)
                    socket_timeout=max(1.0, 4 * self.op_timeout),
                    socket_keepalive=True,
                )
                pubsub = connection.pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(self.channel)
                heard = pinged = time.monotonic()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    now = time.monotonic()
                    if message is None:
                        if now - heard > _SILENCE:
                            raise ConnectionError(f"no answer from Redis for {_SILENCE:g} s")
                        if now - pinged >= _PING_EVERY:
                            pubsub.ping()
                            pinged = now
                        continue
                    heard = now
                    if message["type"] == "subscribe":
                        delay = 0.05
                        if not subscribed and self._warned:
                            logger.warning("invalidation bus subscribed at last")
                        subscribed = True
                        self._set_health(True)
                    elif message["type"] == "message":
                        event = _decode(message["data"])
                        if event is not None:
                            for handler in list(self._handlers):
                                handler(event)
            except Exception as exc:
                self._set_health(False)
                at = (at + 1) % len(self.urls)
                if not subscribed and not self._warned and not self._stop.is_set():
                    self._warned = True
                    logger.warning(
                        "the invalidation bus cannot subscribe (%s: %s): the in-memory L1 is"
                        " not used until it does (check invalidation_url, or the L2's"
                        " address, credentials and TLS settings)",
                        type(exc).__name__,
                        exc,
                    )
                if not self._stop.is_set():
                    logger.debug(
                        "invalidation subscription lost (%s); retrying in %.2f s", exc, delay
                    )
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.reconnect_max)
            finally:
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:  # closing a broken connection: nothing left to do
                        logger.debug("closing the subscription connection failed", exc_info=True)
        # Stopped on purpose: still reported as down, since a store sharing this bus gets no
        # invalidations any more; the store that closes it knows, and logs no outage.
        self._set_health(False)

    def close(self) -> None:
        """Stop the listener and close the connections."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()
