"""The proxy's callers: the master key, virtual keys (tenants), missing and wrong keys."""

from __future__ import annotations

import pytest

from deja.config import GeneralSettings, VirtualKey
from deja.server.auth import Auth
from deja.server.http import HTTPError


def _scope(key: str | None) -> dict[str, object]:
    headers = [(b"authorization", f"Bearer {key}".encode())] if key is not None else []
    return {"type": "http", "headers": headers}


def test_each_of_many_virtual_keys_is_its_own_tenant() -> None:
    """Found by the key's digest: one lookup, however many keys (each was compared in
    turn: 1.2 ms a request at 20,000 keys)."""
    keys = tuple(VirtualKey(key=f"sk-user-{i:05d}", tenant=f"t{i}") for i in range(5000))
    auth = Auth(GeneralSettings(master_key="sk-master", virtual_keys=keys))
    assert auth.identify(_scope("sk-user-04321")).tenant == "t4321"
    assert auth.identify(_scope("sk-user-00000")).tenant == "t0"
    assert auth.identify(_scope("sk-master")).is_admin
    for wrong in ("sk-user-05000", "sk-user-0432", "SK-USER-04321", ""):
        with pytest.raises(HTTPError) as caught:
            auth.identify(_scope(wrong))
        assert caught.value.status == 401
    with pytest.raises(HTTPError):
        auth.identify(_scope(None))


def test_a_key_given_twice_is_the_first_one_s_and_the_master_key_stays_the_admin() -> None:
    keys = (
        VirtualKey(key="sk-shared", tenant="first"),
        VirtualKey(key="sk-shared", tenant="second"),
        VirtualKey(key="sk-master", tenant="shadow"),
    )
    auth = Auth(GeneralSettings(master_key="sk-master", virtual_keys=keys))
    assert auth.identify(_scope("sk-shared")).tenant == "first"
    assert auth.identify(_scope("sk-master")).is_admin
    assert auth.tenants == (None, "first", "second", "shadow")
