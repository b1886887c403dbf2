"""An invalidation bus over Redis pub/sub, for TieredStores in many processes.

Each :class:`RedisInvalidationBus` publishes on one channel and listens on it from a
daemon thread. Until the subscription is confirmed, and whenever the connection to Redis is
lost, ``healthy`` is false and the tiered store empties and bypasses its L1; the listener
reconnects with backoff and reports health again once subscribed. Publishing is best-effort:
a publish that fails is logged (the other processes' L1 copies then live at most ``l1_ttl``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import orjson

from deja.errors import MissingDependencyError
from deja.stores.bus import Handler, HealthHandler, Invalidation

__all__ = ["RedisInvalidationBus"]

logger = logging.getLogger("deja.stores.tiered")


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
    cluster). ``op_timeout`` bounds a publish; ``reconnect_max`` caps the listener's backoff.
    """

    def __init__(
        self,
        *,
        url: str,
        channel: str = "deja:invalidate",
        op_timeout: float = 0.25,
        reconnect_max: float = 1.0,
    ) -> None:
        self.url = url
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
        self._client: Any = None
        self._aclient: Any = None

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
        try:
            if self._client is None:
                self._client = self._redis().Redis.from_url(
                    self.url, socket_timeout=self.op_timeout, socket_connect_timeout=self.op_timeout
                )
            self._client.publish(self.channel, _encode(event))
        except Exception as exc:  # best-effort by design: the L2 write already happened
            logger.warning(
                "invalidation publish failed (%s); other L1 copies expire by l1_ttl", exc
            )

    async def apublish(self, event: Invalidation) -> None:
        """Async twin of :meth:`publish`."""
        try:
            loop = asyncio.get_running_loop()
            if self._aclient is None or self._aclient[0] is not loop:
                import redis.asyncio

                # an asyncio client belongs to the loop it was made on
                self._aclient = (
                    loop,
                    redis.asyncio.Redis.from_url(
                        self.url,
                        socket_timeout=self.op_timeout,
                        socket_connect_timeout=self.op_timeout,
                    ),
                )
            await self._aclient[1].publish(self.channel, _encode(event))
        except Exception as exc:  # see publish
            logger.warning(
                "invalidation publish failed (%s); other L1 copies expire by l1_ttl", exc
            )

    def subscribe(self, handler: Handler, on_health: HealthHandler) -> None:
        """Deliver events to ``handler`` from a listener thread (started on first call)."""
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
        while not self._stop.is_set():
            connection = None
            try:
                connection = redis.Redis.from_url(
                    self.url, socket_connect_timeout=self.op_timeout, socket_timeout=None
                )
                pubsub = connection.pubsub(ignore_subscribe_messages=False)
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
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
        if self._client is not None:
            self._client.close()
