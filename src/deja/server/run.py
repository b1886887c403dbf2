"""Running the proxy: ``deja serve --config config.yaml`` (uvicorn, uvloop + httptools).

The configuration is read once, and validated in the parent process before any worker
starts, so a bad file exits non-zero with the YAML path in the message, and the start-up
warnings are logged there, once; each worker then builds its own app from the text the
parent read (a private copy, ``DEJA_CONFIG_TEXT``; ``DEJA_CONFIG`` names the file, for
its directory and messages) without repeating them. A worker started again (uvicorn
replaces one that died, or all of them on SIGHUP) builds from that same text: a file
edited meanwhile, or broken, is read at the next start only (workers serving two
configurations side by side, or one that fails to start again and again, otherwise; on
SIGHUP a warning says so when the file changed since), and a configuration piped in
(``--config <(...)``, a FIFO, ``--config -``: the standard input) is read once.

The workers, one as well as several, run under uvicorn's supervisor (this process): on
SIGHUP it starts each worker again, the new one taking requests before the old one stops
and finishes those in flight, and it replaces a worker that died; a worker stops, as on
SIGTERM, when the supervisor is gone (killed outright). (uvicorn would serve a
single worker in this process, which SIGHUP, sent by a reload or a closed terminal, ends
at once.) So the parent also builds that app once, and closes it, before they start: what
fails there (a store or provider whose extra is not installed, a hook that does not
import) is one error and exit code 2, not workers that die and are started again without
end.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

from deja.config import (
    DEFAULT_REQUEST_HEADER_TIMEOUT,
    Settings,
    load_config,
    read_config_text,
    tiered_bus_url,
)
from deja.errors import ConfigError, MissingDependencyError
from deja.server.app import ProxyApp
from deja.server.http import error_body
from deja.server.workers import MULTIPROC_ENV

__all__ = ["MAX_HEAD_BYTES", "app_from_env", "serve"]

logger = logging.getLogger("deja.server")

APP_FACTORY = "deja.server.run:app_from_env"
# What ``--config -`` reads, as most commands take ``-``: the standard input, once (read as
# a FIFO is; relative paths in it resolve against the working directory).
STDIN_PATH = Path("/dev/stdin")
CONFIG_ENV = "DEJA_CONFIG"
CONFIG_TEXT_ENV = "DEJA_CONFIG_TEXT"  # a file holding the configuration's text as read
COPY_PREFIX = "deja-config-"  # (the name of that file's private directory begins so)
METRICS_PREFIX = "deja-metrics-"  # (that of the workers' metrics directory deja makes)
LOG_LEVEL_ENV = "DEJA_LOG_LEVEL"
# general_settings.request_header_timeout, for the workers' protocol (uvicorn makes it)
HEADER_TIMEOUT_ENV = "DEJA_REQUEST_HEADER_TIMEOUT"
# How long uvicorn's supervisor waits for a worker started on SIGHUP to be ready, and for
# a running worker to answer its liveness ping (a thread of the worker answers it). Its
# default, 5 s, is less than a worker may take to start (imports, a large semantic index
# loaded, the semantic tier's start-up probes of up to 5 s each): the new worker was
# killed, the old one kept and the restart given up; and a worker holding the GIL for 5 s
# (a large body's JSON, an index save) was killed as hung, its requests with it.
WORKER_HEALTHCHECK_SECONDS = 60
# The supervisor's pid, for its workers to stop when it is gone (see _follow_supervisor)
SUPERVISOR_ENV = "DEJA_SUPERVISOR_PID"
# How often a worker looks whether its supervisor is still there
SUPERVISOR_POLL_SECONDS = 0.25


# The most a request's line and headers may take (uvicorn's h11 parser allows 16 KiB, nginx
# 4 x 8 KiB): httptools, the parser uvicorn picks, keeps any amount, and a client without a
# key held hundreds of MiB per connection with one endless header.
MAX_HEAD_BYTES = 64 * 1024
# ... and what else of a request is not its body: chunk sizes, trailers (kept as headers are)
_MAX_FRAMING_BYTES = 1024 * 1024
# uvicorn's httptools protocol with those bounds (made when uvicorn loads it: see __getattr__)
HTTP_PROTOCOL = f"{__name__}:BoundedHttpToolsProtocol"


def __getattr__(name: str) -> Any:
    """``BoundedHttpToolsProtocol``, made at its first use: uvicorn and httptools are the
    ``server`` extra's, not imported by ``import deja.server.run``."""
    if name == "BoundedHttpToolsProtocol":
        return _bounded_protocol()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _bounded_protocol() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, refusing a request whose line and headers pass
    :data:`MAX_HEAD_BYTES` (a 431, and the connection closed), or whose other bytes but its
    body (chunk framing, trailers) pass 1 MiB (the connection closed); giving up on a head
    not complete within ``general_settings.request_header_timeout`` (a 408, and the
    connection closed); and sending an HTTP/1.0 client a response of no length unframed,
    delimited by the connection's close, not in chunks it cannot read."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

    # (set by serve() from the validated configuration, before the workers start)
    head_seconds = float(os.environ.get(HEADER_TIMEOUT_ENV) or DEFAULT_REQUEST_HEADER_TIMEOUT)

    class CloseDelimitedCycle(RequestResponseCycle):
        """uvicorn's request-response exchange for an HTTP/1.0 request.

        uvicorn frames a response that declares no length in chunks whatever the request's
        version, which an HTTP/1.0 client (nginx's ``proxy_http_version`` by default) reads
        as body. Such a response is sent here as it comes, with ``connection: close``, and
        ends with the connection (RFC 9112 6.3). uvicorn decides the framing from
        ``chunked_encoding`` (``None``: not yet decided) at the response's start, and writes
        a body part of an unchunked response as it is while ``expected_content_length``
        allows it: both are set here, and nothing else of uvicorn's is changed.
        """

        _unframed = False

        async def send(self, message: Any) -> None:
            if message["type"] == "http.response.start" and not self.response_started:
                # (an iterable of fields, read here and by uvicorn: a list, read twice)
                message = {**message, "headers": list(message.get("headers", ()))}
                if _without_length(self.scope["method"], message):
                    self._unframed = True
                    self.chunked_encoding = False
                    self.keep_alive = False  # (so the body's end closes the connection)
            elif self._unframed and message["type"] == "http.response.body":
                # each part is as long as it says: uvicorn's length check passes, and its
                # last part leaves nothing expected
                self.expected_content_length = len(message.get("body", b""))
            await super().send(message)

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        # what the parser has been given of the current request but its body (counted a
        # whole read at a time: at most one read past the bound is parsed); its head
        # complete or not
        _held = 0
        _in_head = True
        # ends the connection if the head is not complete in time: armed when the
        # connection is made (a client may send nothing) and at a request's first byte,
        # an empty line before it included (between requests uvicorn's timeout_keep_alive
        # closes an idle connection, but it stops at any byte: the parser skips empty lines)
        # One timer a connection, not one a request (a call_later and its cancel cost
        # ~3.5 us of every keep-alive hit): when it fires early for a head begun since, it
        # is set again for that one's time.
        _head_timer: asyncio.TimerHandle | None = None
        _head_since: float | None = None  # when the head waited for began (None: none)
        _head_seconds = head_seconds

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_since = None
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        # a head that ended past the bound in the read that completed it: not run, refused
        # once the parser returns
        _oversized = False

        def data_received(self, data: bytes) -> None:
            if self._in_head:  # (a pipelined request's head begins in on_message_begin)
                self._arm_head_timer()
            self._held += len(data)  # (on_body takes the body back out)
            super().data_received(data)
            limit = MAX_HEAD_BYTES if self._in_head else _MAX_FRAMING_BYTES
            if (self._oversized or self._held > limit) and not self.transport.is_closing():
                self._refuse()

        def on_message_begin(self) -> None:
            self._arm_head_timer()
            super().on_message_begin()

        def on_body(self, body: bytes) -> None:
            self._held -= len(body)
            if not self._oversized:
                super().on_body(body)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm_head_timer()
            # (counted in the read: one that both crossed the bound and ended the head,
            # up to twice the bound in all, went through)
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if self._oversized or size > MAX_HEAD_BYTES:  # (and what the read pipelines)
                self._oversized = self._in_head = True  # (the 431 of a head too large)
                return
            previous = self.cycle
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not previous and cycle.scope["http_version"] == "1.0":
                # (its ASGI task has not run yet: it calls this class's send)
                cycle.__class__ = CloseDelimitedCycle

        def on_message_complete(self) -> None:
            self._held, self._in_head = 0, True
            if not self._oversized:
                super().on_message_complete()

        def _refuse(self) -> None:
            if self._in_head and (self.cycle is None or self.cycle.response_complete):
                # (a response under way on this connection cannot be cut into: only closed)
                self._answer_and_close(
                    431,
                    f"request line and headers larger than {MAX_HEAD_BYTES} bytes",
                    "request_headers_too_large",
                )
            else:
                self.transport.close()

        def _arm_head_timer(self) -> None:
            if self._head_since is not None:
                return
            loop = asyncio.get_running_loop()
            self._head_since = loop.time()
            if self._head_timer is None:
                due = self._head_since + self._head_seconds
                self._head_timer = loop.call_at(due, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            self._head_since = None  # (the timer stays: see _head_timer)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            since = self._head_since
            if since is None or self.transport.is_closing():
                return
            loop = asyncio.get_running_loop()
            if loop.time() < since + self._head_seconds:  # a head begun after it was set
                self._head_timer = loop.call_at(since + self._head_seconds, self._head_timed_out)
                return
            if self.cycle is not None and not self.cycle.response_complete:
                # the previous request's answer (the head is a pipelined one's) is not cut:
                # the connection is closed at its end
                self.cycle.keep_alive = False
                return
            self._answer_and_close(
                408,
                f"request line and headers not received within {self._head_seconds:g} s",
                "request_timeout",
            )

        def _answer_and_close(self, status: int, message: str, code: str) -> None:
            """Answer ``status`` (deja's error body) to a request never run, and close."""
            body = error_body(status, message, code=code)
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, HTTPStatus(status).phrase.encode(), len(body), body)
            )
            self.transport.close()

    CloseDelimitedCycle.__module__ = BoundedHttpToolsProtocol.__module__ = __name__
    CloseDelimitedCycle.__qualname__ = "CloseDelimitedCycle"
    BoundedHttpToolsProtocol.__qualname__ = "BoundedHttpToolsProtocol"
    return BoundedHttpToolsProtocol


def _without_length(method: str, start: Any) -> bool:
    """Whether the response that ASGI message ``start`` begins (to a ``method`` request)
    has a body and says nothing of its framing: uvicorn would send it in chunks."""
    if method == "HEAD" or start["status"] in (204, 304):
        return False
    names = {bytes(name).lower() for name, _ in start["headers"]}
    return b"content-length" not in names and b"transfer-encoding" not in names


def app_from_env() -> ProxyApp:
    """The ASGI app for the configuration named by ``DEJA_CONFIG`` (a uvicorn factory).

    :func:`serve` has validated the file and logged its warnings: they are not repeated
    here, where every worker would log them again.
    """
    level = os.environ.get(LOG_LEVEL_ENV)
    if level and not logging.getLogger().handlers:  # a spawned worker: log as the parent does
        logging.basicConfig(level=level)
    _follow_supervisor()  # (first: building the app may take long, a large index loaded)
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(
            f"{CONFIG_ENV} is not set; start the proxy with `deja serve --config FILE`"
        )
    copy = os.environ.get(CONFIG_TEXT_ENV)
    text = Path(copy).read_text(encoding="utf-8") if copy else None
    return ProxyApp(load_config(path, log_warnings=False, text=text))


def _follow_supervisor() -> None:
    """In a worker of ``deja serve``: stop as SIGTERM stops it (no new connections, those
    in flight finished within ``proxy.graceful_shutdown_seconds``, then exit) once the
    supervisor that started it is gone, and remove the private copy of the configuration
    it leaves behind.

    A supervisor killed outright (SIGKILL: the OOM killer, a test runner's timeout,
    ``kill -9``) stops nothing: its workers went on serving, with nobody to replace or stop
    them, and kept the port, so a ``deja serve`` started again failed with "address already
    in use". A worker started by anything else (``uvicorn --factory``) is left alone.

    The worker's parent is watched by a daemon thread polling :func:`os.getppid`, which
    changes only when the parent process dies (the orphan goes to init or a subreaper):
    the worker stops within :data:`SUPERVISOR_POLL_SECONDS`, for a wake-up of a few
    microseconds each time, and never while the supervisor lives (on SIGHUP it starts new
    workers and stops the old ones itself). Linux's ``prctl(PR_SET_PDEATHSIG)`` was not
    chosen: it fires when the *thread* that started the worker ends, not its process (a
    supervisor starting workers from a thread of its own, as a restart may, would stop
    the healthy workers at that thread's end), it is Linux's only, so another way is needed
    anyway, and set by the worker after it started, it needs this same check against a
    parent that died before. (On Windows a process keeps its parent's pid when the parent
    dies: the thread never fires there, and the worker outlives the supervisor as before.)
    """
    value = os.environ.pop(SUPERVISOR_ENV, "")  # (once: not for this worker's own children)
    if not value.isdigit() or int(value) == os.getpid():
        return  # (not a worker: the supervisor itself, building an app in its own process)
    supervisor = int(value)

    def watch() -> None:
        # (a parent that died before this thread started is seen at the first look)
        while os.getppid() == supervisor:
            time.sleep(SUPERVISOR_POLL_SECONDS)
        logger.warning(
            "the supervisor of this worker (pid %d) is gone: stopping, as on SIGTERM",
            supervisor,
        )
        # (it holds keys, and no worker reads it again: none will be started)
        copy = Path(os.environ.get(CONFIG_TEXT_ENV) or ".").parent
        if copy.name.startswith(COPY_PREFIX):  # (only what _private_copy made)
            import shutil

            shutil.rmtree(copy, ignore_errors=True)
        # (uvicorn's handler, in the main thread, stops the server gracefully; before the
        # server runs, the default action ends a worker that serves nothing yet)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="deja-supervisor-watch", daemon=True).start()


def _local_bus(settings: Settings) -> bool:
    """Whether a tiered cache's L1 invalidations would reach this process only (see
    :func:`deja.config.tiered_bus_url`)."""
    caching = settings.caching
    if caching is None or caching.type != "tiered":
        return False
    return tiered_bus_url(caching.options) is None


def _warn_about(settings: Settings, workers: int) -> None:
    # The configuration's own warnings were logged by load_config; these concern workers.
    if workers > 1 and _local_bus(settings):
        # each worker's L1 would keep serving what another worker deleted or flushed
        raise ConfigError(
            f"a tiered cache with {workers} workers needs an invalidation bus all of them"
            " hear: set invalidation_url: redis://... (a standalone redis L2 gives one by"
            " itself, as does a cluster's)",
            path="caching.invalidation_url",
        )
    store = settings.caching.options.get("store") if settings.caching is not None else None
    in_memory = settings.caching is not None and (
        settings.caching.type == "memory"
        or (settings.caching.type == "semantic" and getattr(store, "type", "memory") == "memory")
    )
    if workers > 1 and in_memory:
        logger.warning(
            "%d workers with an in-memory cache: each worker has its own cache and its own"
            " semantic index, if any (use redis or a tiered store to share one)",
            workers,
        )
    semantic = settings.caching is not None and settings.caching.type == "semantic"
    if workers > 1 and semantic and not in_memory:
        logger.warning(
            "%d workers with an in-process semantic index: each worker matches the prompts "
            "the others stored only after its next save to the shared directory "
            "(params.semantic_save_interval, 60 s by default); use redis_semantic or "
            "qdrant_semantic to share one index at once",
            workers,
        )
    if (
        workers > 1
        and settings.caching is not None
        and settings.caching.type == "qdrant_semantic"
        and not settings.caching.options.get("qdrant_api_base")
    ):
        logger.warning(
            "%d workers with qdrant_semantic in qdrant-client's in-memory mode: each worker "
            "keeps an index of its own, saved in full at exit, so the last worker to stop "
            "writes the copy the next start loads; set qdrant_api_base (a Qdrant server) "
            "to share one index, or use type: semantic",
            workers,
        )


def _check_app(settings: Settings) -> None:
    """Build the app every worker will build from ``settings``, and close it at once.

    Raises what building it raises (:class:`~deja.errors.MissingDependencyError`,
    :class:`~deja.errors.ConfigError`...). Nothing is connected: stores and indexes
    connect at their first use, and the upstream client at its first call. Its log lines
    (warnings each worker logs again) are left out. Its counters stay in this process's
    memory: prometheus_client, imported here first, reads ``PROMETHEUS_MULTIPROC_DIR``
    when imported, and the workers' directory is no place for this process's files.
    """
    directory = os.environ.pop(MULTIPROC_ENV, None)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        app = ProxyApp(settings)
    finally:
        logging.disable(previous)
        if directory is not None:
            os.environ[MULTIPROC_ENV] = directory
    asyncio.run(app.aclose())


def _supervise(options: dict[str, Any], *, workers: int) -> None:
    """Serve ``workers`` workers under uvicorn's supervisor, as ``uvicorn.run`` serves
    several (``options``: its keyword arguments but the app and ``workers``), one too.

    ``uvicorn.run`` serves a single worker in this process, with no SIGHUP handler: the
    signal's default action ended the proxy there and then, cutting the requests in flight.
    On SIGHUP the supervisor says when the configuration file changed since the start (the
    workers start again from the text read then: see the module's docstring).
    """
    from uvicorn import Config
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:
            _say_if_edited()
            super().handle_hup()

    config = Config(APP_FACTORY, factory=True, workers=workers, **options)
    supervisor = Supervisor(config, sockets=[config.bind_socket()])
    os.environ[SUPERVISOR_ENV] = str(os.getpid())  # (its workers stop when it is gone)
    try:
        supervisor.run()
    finally:
        os.environ.pop(SUPERVISOR_ENV, None)
    if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
        # the supervisor stops when a worker cannot start (its lifespan failed): exit
        # non-zero, as uvicorn.run does when the one worker it serves itself cannot
        sys.exit(STARTUP_FAILURE)


def _say_if_edited() -> None:
    """Warn that the configuration file differs from the text the workers are started
    from (an operator's SIGHUP is often meant to apply an edit, which it does not)."""
    path, copy = Path(os.environ.get(CONFIG_ENV, "")), os.environ.get(CONFIG_TEXT_ENV)
    if not copy or not path.is_file():  # (a FIFO is not read again: it would block)
        return
    try:
        edited = read_config_text(path) != Path(copy).read_text(encoding="utf-8")
    except (ConfigError, OSError) as exc:
        edited, why = True, f" ({exc})"
    else:
        why = ""
    if edited:
        logger.warning(
            "%s changed since the proxy started%s: the workers start again from the"
            " configuration read then; restart deja serve to apply the file",
            path,
            why,
        )


def _private_copy(text: str) -> str:
    """Write ``text`` where only this user reads it (it may hold keys), name it in
    ``DEJA_CONFIG_TEXT`` for the workers, and return its directory (removed at exit)."""
    import tempfile

    # (mode 0700; the pid in its name: see _sweep_leftovers)
    directory = tempfile.mkdtemp(prefix=f"{COPY_PREFIX}{os.getpid()}-")
    copy = Path(directory) / "config.yaml"
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.environ[CONFIG_TEXT_ENV] = str(copy)
    return directory


def _share_metrics() -> str | None:
    """Let every worker's /metrics and /cache/stats see all workers' counters.

    A fresh directory per start, set before the workers import prometheus_client (they are
    spawned, and read the variable when they import it); returned, for the caller to remove
    once the workers have stopped. A directory given by the operator is used as it is, and
    emptied first as prometheus_client's docs require (and left in place at exit).
    """
    import tempfile

    from deja.server.workers import clear_directory

    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        clear_directory(directory)
        return None
    created = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")  # (see below)
    os.environ[MULTIPROC_ENV] = created
    return created


def _sweep_leftovers() -> None:
    """Remove the temporary directories a ``deja serve`` killed outright left: the
    workers' metrics (:func:`_share_metrics`) and the private copy of the configuration
    (:func:`_private_copy`, keys and all: its workers remove it when they see their
    supervisor gone, but nobody does when the whole process group is killed, ``kill -9``
    of a service manager or the OOM killer). Removed at exit otherwise; one 64 KiB file per
    worker and kind and one copy of the keys left in TMPDIR at each kill, for ever.

    A directory is in use while its supervisor holds the lock of its
    ``deja-supervisor.lock`` (:func:`_hold_supervisor_lock`), or, for a metrics directory,
    while a worker holds its own lock file there (workers still finishing their requests):
    a lock, not a pid, as two containers sharing TMPDIR each see the other's pids as
    gone. Only this user's directories are removed, never a symbolic link, nor the
    metrics directory this process is given. A directory with no supervisor lock file
    (made by the version before, or a moment ago and not locked yet) is removed only once
    the pid its name holds (``deja-metrics-<pid>-...``) is gone; a name with no pid (made
    by an earlier version) is left: whose it is cannot be told.
    """
    import shutil
    import stat
    import tempfile

    from deja.server.workers import SUPERVISOR_LOCK, alive, held, writers_alive

    given = os.environ.get(MULTIPROC_ENV)
    root = Path(tempfile.gettempdir())
    for prefix in (METRICS_PREFIX, COPY_PREFIX):
        for path in root.glob(f"{prefix}*"):
            pid, dash, _ = path.name.removeprefix(prefix).partition("-")
            if not (pid.isdigit() and dash):
                continue
            try:
                status = path.lstat()
                if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid():
                    continue  # (a symbolic link, another user's)
                lock = path / SUPERVISOR_LOCK
                if held(lock) or (not lock.exists() and alive(int(pid))):
                    continue
                if prefix == METRICS_PREFIX and (
                    (given and os.path.realpath(given) == os.path.realpath(path))
                    or writers_alive(path)
                ):
                    continue
            except OSError:  # (gone meanwhile, unreadable)
                continue
            shutil.rmtree(path, ignore_errors=True)


def _hold_supervisor_lock(directory: str) -> int | None:
    """Hold, for this ``deja serve``'s life, a shared lock of ``directory``'s
    ``deja-supervisor.lock``: the sign for :func:`_sweep_leftovers` and
    :func:`~deja.server.workers.clear_directory` of other processes (whose pids may be
    another namespace's) that it is in use. Its descriptor, to close at exit."""
    from deja.server.workers import SUPERVISOR_LOCK, hold_lock

    return hold_lock(Path(directory) / SUPERVISOR_LOCK)


def bind_problem(host: str, port: int) -> str | None:
    """Why the proxy could not listen on ``host``:``port`` (``None``: it can), found by
    binding a socket there and closing it at once: uvicorn says it only after the
    configuration and the app were built, naming neither the address nor where it came
    from, and exits 3."""
    # uvicorn's choice of family (Config.bind_socket): IPv6 for an address with a colon
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # as uvicorn binds: a port that a stopped proxy's connections hold in TIME_WAIT
            # is free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    # OSError: in use, not an address of this machine, a name that does not resolve
    # (gaierror); TypeError: a name the socket module cannot encode (IDNA refuses a label
    # over 63 characters; a lone surrogate, from argv bytes that are not UTF-8; a NUL)
    except (OSError, TypeError) as exc:
        return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return None


def serve(
    config: str | Path,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    log_level: str = "info",
) -> None:
    """Validate ``config`` and serve it until interrupted (graceful shutdown on SIGTERM).

    ``config`` ``"-"`` is the standard input, read to its end (as ``/dev/stdin`` is: see the
    module's docstring); a file of that name is ``./-``.
    """
    # (not resolved: /dev/fd/63 would become "pipe:[...]")
    path = STDIN_PATH if str(config) == "-" else Path(config).absolute()
    text = read_config_text(path)
    settings = load_config(path, text=text)
    try:
        import uvicorn  # noqa: F401  (the server extra: its absence is one clear error)
    except ImportError as exc:
        raise MissingDependencyError("uvicorn", "server") from exc
    if host is None or port is None:  # (the command line's own were checked by the CLI)
        where = (host or settings.proxy.host, port if port is not None else settings.proxy.port)
        reason = bind_problem(*where)
        if reason is not None:
            raise ConfigError(
                f"cannot listen on {where[0]}:{where[1]}: {reason} (proxy.host / proxy.port"
                f" of {path.name}, or --host / --port)"
            )
    n = workers if workers is not None else settings.proxy.workers
    _warn_about(settings, n)
    # built here first: a worker process that fails to build it is only started again
    _check_app(settings)
    os.environ[CONFIG_ENV] = str(path)
    os.environ[LOG_LEVEL_ENV] = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    _sweep_leftovers()  # (those of a deja serve killed outright)
    # an operator's PROMETHEUS_MULTIPROC_DIR is used by one worker too: emptied of the
    # figures of earlier runs
    created = _share_metrics() if n > 1 or os.environ.get(MULTIPROC_ENV) else None
    copy_dir = _private_copy(text)  # (last: what fails before it leaves no copy of keys)
    locks = [_hold_supervisor_lock(copy_dir)]
    if os.environ.get(MULTIPROC_ENV):
        locks.append(_hold_supervisor_lock(os.environ[MULTIPROC_ENV]))
    options: dict[str, Any] = {
        "host": host or settings.proxy.host,
        "port": port if port is not None else settings.proxy.port,
        "log_level": log_level,
        "lifespan": "on",
        "access_log": False,  # one log line per request costs more than a cache hit
        # request heads bounded (without httptools, uvicorn's h11 parser bounds them itself)
        "http": HTTP_PROTOCOL if importlib.util.find_spec("httptools") else "auto",
        "timeout_graceful_shutdown": math.ceil(settings.proxy.graceful_shutdown_seconds),
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS,
    }
    try:
        # (read by each worker's protocol: uvicorn passes it no settings of deja's)
        os.environ[HEADER_TIMEOUT_ENV] = repr(settings.general.request_header_timeout)
        _supervise(options, workers=n)
    finally:
        import shutil

        if created is not None:  # a directory of ours: one 64 KiB file per worker and kind
            shutil.rmtree(created, ignore_errors=True)
        shutil.rmtree(copy_dir, ignore_errors=True)
        for fd in locks:
            if fd is not None:
                os.close(fd)
        os.environ.pop(CONFIG_TEXT_ENV, None)
        os.environ.pop(HEADER_TIMEOUT_ENV, None)
