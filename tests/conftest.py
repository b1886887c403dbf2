"""Shared fixtures."""

from __future__ import annotations

import pytest

from deja.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
