"""Shared fixtures of the provider tests."""

from __future__ import annotations

import pytest

from deja import _upstream


@pytest.fixture(autouse=True)
def adapter_warnings_said_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an adapter could not do is logged once per process: each test starts with
    nothing said yet, so a test that reads the warning does not depend on which ran before
    (test_audit20_native's 1h breakpoints made test_client_bedrock's go unsaid)."""
    monkeypatch.setattr(_upstream, "_warned", set())
