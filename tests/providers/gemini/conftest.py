"""Fixtures of the Gemini client tests: the local Gemini server on a clock moved by hand."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from deja.testing import FakeClock, FakeGeminiServer
from tests.providers.gemini.shared import KEY


@pytest.fixture
def clock() -> FakeClock:
    # the server's clock, moved by hand; it starts at the real time because token
    # assertions are signed and checked against it
    return FakeClock(start=time.time())


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(api_key=KEY, clock=clock) as s:
        yield s
