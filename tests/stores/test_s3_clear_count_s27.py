"""What ``S3Store.clear`` counts: the entries the call listed and deleted (documented).

S3's ``DeleteObjects`` reports every name it is given as deleted, whether or not the object
was still there, so two clears that listed the same entries both count them. This pins
the documented meaning (each count is of the listed entries, all gone afterwards); it is
no fix: S3 offers no portable way to tell (see ``S3Store.clear``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("moto")

from deja.stores.s3 import S3Store
from deja.testing import FakeClock
from tests.stores.s3_server import ACCESS_KEY, REGION, SECRET_KEY, shared_server


class ListsTogether(S3Store):
    """An S3Store whose clears wait, listed, for each other before deleting: the race of
    two clears of one prefix at once, made certain."""

    barrier = threading.Barrier(2, timeout=10)

    def _delete_names(self, action: str, names: Sequence[str]) -> int:
        if action == "clear" and names:
            self.barrier.wait()
        return super()._delete_names(action, names)


def test_two_clears_at_once_each_count_the_entries_they_listed() -> None:
    server = shared_server()
    bucket = server.new_bucket()
    options = {
        "bucket": bucket,
        "endpoint_url": server.endpoint_url,
        "region": REGION,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "clock": FakeClock(),
    }
    first, second = ListsTogether(**options), ListsTogether(**options)
    first.set_many({f"k{i}": b"v" for i in range(50)}, None)
    with ThreadPoolExecutor(2) as pool:
        counts = list(pool.map(lambda store: store.clear("k"), [first, second]))
    assert counts == [50, 50]  # the documented upper bound: each listed all 50
    assert first.usage().entries == 0
    assert first.clear("k") == 0  # nothing listed, nothing counted
    first.close()
    second.close()
