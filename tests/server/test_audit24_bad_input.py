"""Bad input found by a fuzzing audit: an admin body's misspelt or unknown field is a 400,
never read as "no field" (a flush naming no tenant flushes every tenant's entries); the
fields the key leaves out are typed too (a wrong one was served the right request's
entry, and stored under its key when the upstream let it through)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from deja.testing import FakeOpenAIServer
from tests.server.conftest import MASTER, TEAM_A, TEAM_B, proxy_config

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Keep me?"}]}
ADMIN = {"authorization": f"Bearer {MASTER}"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tennant": "team-a"}, "tennant"),  # (did you mean 'tenant'?)
        ({"tenant": None}, "tenant"),
        ({"namespace": "staging"}, "namespace"),
        ({"tag": "doc:42"}, "tag"),
        ({"key": "deja:v1:x:y"}, "key"),
    ],
)
async def test_a_flush_with_a_field_it_does_not_read_flushes_nothing(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    body: dict[str, Any],
    param: str,
) -> None:
    async with make_proxy(proxy_config(upstream), key=TEAM_B) as proxy:
        assert (await proxy.post(CHAT, json=BODY)).headers["x-deja-cache"] == "miss"
        refused = await proxy.post("/cache/flush", json=body, headers=ADMIN)
        again = await proxy.post(CHAT, json=BODY)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == param
    assert again.headers["x-deja-cache"] == "hit"  # team-b's entry is still there


async def test_a_misspelt_field_is_named_with_its_likely_meaning(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    async with make_proxy(proxy_config(upstream), key=MASTER) as proxy:
        flush = await proxy.post("/cache/flush", json={"tennant": "team-a"})
        invalidate = await proxy.post("/cache/invalidate", json={"tags": "doc:42"})
    assert "did you mean 'tenant'?" in flush.json()["error"]["message"]
    assert invalidate.status_code == 400
    assert "did you mean 'tag'?" in invalidate.json()["error"]["message"]


async def test_the_fields_these_routes_read_still_work(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    async with make_proxy(proxy_config(upstream), key=TEAM_A) as proxy:
        await proxy.post(CHAT, json=BODY)
        flushed = await proxy.post("/cache/flush", json={"tenant": "team-a"}, headers=ADMIN)
        everything = await proxy.post("/cache/flush", json={"all": True}, headers=ADMIN)
        tagged = await proxy.post(
            "/cache/invalidate", json={"tag": "doc:42", "tenant": "team-a"}, headers=ADMIN
        )
    assert flushed.status_code == 200 and flushed.json()["deleted"] == 1
    assert everything.status_code == 200 and tagged.status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user", {"a": 1}),
        ("user", 5),
        ("safety_identifier", 7),
        ("metadata", [1, 2]),
        ("metadata", "x"),
        ("service_tier", 12),
        ("prompt_cache_key", ["k"]),
        ("stream_options", 5),
        ("stream_options", {"include_usage": True}),  # without stream: true (OpenAI's 400)
    ],
)
async def test_an_unkeyed_field_of_the_wrong_type_is_a_400_not_a_hit(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    field: str,
    value: Any,
) -> None:
    async with make_proxy(proxy_config(upstream)) as proxy:
        fresh = await proxy.post(CHAT, json={**BODY, field: value})  # nothing stored yet
        await proxy.post(CHAT, json=BODY)
        cached = await proxy.post(CHAT, json={**BODY, field: value})
    for answer in (fresh, cached):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["message"].startswith(field)
    assert upstream.count(CHAT) == 1  # the good request's only


async def test_unkeyed_fields_of_the_right_type_share_the_entry(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    extras = {"user": "alice", "metadata": {"run": "7"}, "service_tier": "auto"}
    async with make_proxy(proxy_config(upstream)) as proxy:
        first = await proxy.post(CHAT, json=BODY)
        second = await proxy.post(CHAT, json={**BODY, **extras})
        streamed = await proxy.post(
            CHAT, json={**BODY, "stream": True, "stream_options": {"include_usage": True}}
        )
    assert [first.headers["x-deja-cache"], second.headers["x-deja-cache"]] == ["miss", "hit"]
    assert streamed.headers["x-deja-cache"] == "hit" and upstream.count(CHAT) == 1


async def test_an_admin_request_body_with_its_own_fallbacks_names_the_entry_it_made(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    # the data route takes a request's own fallbacks out of the key; the admin routes keyed
    # them, so /cache/delete and /cache/explain named an entry that does not exist
    body = {**BODY, "fallbacks": ["gpt-4o"]}
    async with make_proxy(proxy_config(upstream), key=TEAM_A) as proxy:
        made = await proxy.post(CHAT, json=body)
        explained = await proxy.post(
            "/cache/explain", json={"request": body, "tenant": "team-a"}, headers=ADMIN
        )
        deleted = await proxy.post(
            "/cache/delete", json={"request": body, "tenant": "team-a"}, headers=ADMIN
        )
        bad = await proxy.post(
            "/cache/delete", json={"request": {**BODY, "fallbacks": 5}}, headers=ADMIN
        )
    assert explained.json()["key"] == made.headers["x-deja-cache-key"]
    assert deleted.json()["deleted"] is True
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "fallbacks"


async def test_a_tag_no_request_could_carry_is_refused_naming_the_tag(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> None:
    async with make_proxy(proxy_config(upstream), key=MASTER) as proxy:
        refused = await proxy.post("/cache/invalidate", json={"tag": "x" * 100_000})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tag"
