"""moto's S3 server as a real HTTP endpoint on a free loopback port, for the S3 store tests.

One server serves the whole test session: it starts on first use (so a run that selects
no S3 test never starts it) and stops at exit. Each store gets a fresh bucket, so tests
never see each other's objects. Nothing here can reach real AWS: the endpoint is
127.0.0.1, the credentials are dummies, and boto3 is told not to probe the EC2 metadata
service or read the user's AWS files.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import threading
from typing import Any

from deja.stores.s3 import S3Store
from deja.testing import FakeClock

REGION = "us-east-1"
ACCESS_KEY = "deja-test-access-key"
SECRET_KEY = "deja-test-secret-key"

# Set while the server runs: no metadata-service probe, no ~/.aws files, no real account.
_ENVIRONMENT = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


class MotoS3Server:
    """A moto S3 server in this process, on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._buckets = itertools.count()
        self._admin: Any = None
        self._create_loader: Any = None
        self.endpoint_url = ""

    def start(self) -> None:
        """Start serving; ``endpoint_url`` is set once this returns."""
        from moto.server import ThreadedMotoServer

        self._saved_env = {name: os.environ.get(name) for name in _ENVIRONMENT}
        os.environ.update(_ENVIRONMENT)
        # werkzeug logs every request at INFO; the tests make thousands.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._share_botocore_models()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint_url = f"http://{host}:{port}"
        self._admin = self.client()

    def stop(self) -> None:
        """Stop serving and restore the environment."""
        server, self._server = self._server, None
        admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()
        if server is not None:
            server.stop()
        if self._create_loader is not None:
            import botocore.session

            botocore.session.create_loader = self._create_loader
            self._create_loader = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def client(self, *, max_pool_connections: int = 10) -> Any:
        """A new boto3 S3 client for the server (the caller closes it)."""
        import boto3.session
        import botocore.config

        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        )
        config = botocore.config.Config(max_pool_connections=max_pool_connections)
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def _share_botocore_models(self) -> None:
        # Every S3Store makes its own boto3 session, and every new session re-parses
        # botocore's large JSON service models (~0.1-0.4 s). The tests build ~100 stores,
        # so while the server runs all sessions share one loader and its parsed models
        # (read-only data; nothing the tests check depends on it).
        import botocore.loaders
        import botocore.session

        self._create_loader = botocore.session.create_loader
        botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)

    @property
    def admin(self) -> Any:
        """A shared boto3 client, for creating buckets and looking at objects directly."""
        return self._admin

    def new_bucket(self) -> str:
        """Create an empty bucket with a name no other test uses, and return the name."""
        name = f"deja-test-{os.getpid()}-{next(self._buckets)}"
        self._admin.create_bucket(Bucket=name)
        return name

    def store(
        self, *, clock: FakeClock | None = None, bucket: str | None = None, **options: Any
    ) -> S3Store:
        """An S3Store on this server: a fresh bucket unless ``bucket`` is given."""
        options.setdefault("region", REGION)
        options.setdefault("aws_access_key_id", ACCESS_KEY)
        options.setdefault("aws_secret_access_key", SECRET_KEY)
        if clock is not None:
            options["clock"] = clock
        return S3Store(
            bucket=bucket if bucket is not None else self.new_bucket(),
            endpoint_url=self.endpoint_url,
            **options,
        )


_lock = threading.Lock()
_shared: list[MotoS3Server] = []


def shared_server() -> MotoS3Server:
    """The session's server, started on first use and stopped when the process exits."""
    with _lock:
        if not _shared:
            server = MotoS3Server()
            server.start()
            atexit.register(server.stop)
            _shared.append(server)
        return _shared[0]
