"""Key builders written in LiteLLM's form (``build_cache_key(model, messages, **kwargs)``,
``tenant_key_builder(api_key, **kwargs)``) are called with the request's keyword arguments,
as LiteLLM calls them; deja's own forms (``f(request)``, ``f(request, tenant)``) as before.
A LiteLLM-form builder had been taken for ``f(request, tenant)`` and called with a
``Request`` as ``model`` and ``None`` as ``messages``: it keyed on the Request's repr (two
callers differing in ``user`` missed each other's entries) or failed every request."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja.keys import default_digest, digest_of, key_builder_form, litellm_arguments
from deja.request import Request
from deja.testing import FakeOpenAIServer
from tests.server.conftest import TEAM_A, TEAM_B, proxy_config

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Share me?"}]}


def _request(model: str, messages: Any, **kwargs: Any) -> str:  # LiteLLM's, named
    return "x"


def _anything(*args: Any, **kwargs: Any) -> str:  # LiteLLM's custom_key_generator
    return "x"


def _tenanted(api_key: Any, **kwargs: Any) -> str:  # the guide's tenant builder
    return "x"


def _ours(request: Request) -> str:
    return "x"


def _ours_with_tenant(request: Request, tenant: str | None) -> str:
    return "x"


@pytest.mark.parametrize(
    ("builder", "form"),
    [
        (_request, "litellm"),
        (_anything, "litellm"),
        (_tenanted, "litellm"),
        (_ours, "request"),
        (lambda r: "x", "request"),
        (len, "request"),  # a builtin without a signature: the one-argument form
        (_ours_with_tenant, "request_tenant"),
    ],
)
def test_a_builders_form_is_read_from_its_signature(builder: Callable[..., str], form: str) -> None:
    assert key_builder_form(builder) == form


@pytest.mark.parametrize(
    "request_",
    [
        Request.from_body({**BODY, "temperature": 0.5, "user": "alice"}),
        Request.from_body(BODY, api_base="http://gateway.internal:8080/v1/"),
        Request.from_body(
            {"model": "text-embedding-3-small", "input": ["a", "b"]}, kind="embedding"
        ),
        Request.from_body({"model": "gpt-3.5-turbo-instruct", "prompt": "Hi"}, kind="completion"),
        Request.from_body({"model": "anthropic/claude-sonnet-4-5", **BODY}, tenant="team-a"),
    ],
)
def test_digest_of_a_calls_arguments_is_the_default_digest(request_: Request) -> None:
    # what a LiteLLM-form builder calls where LiteLLM's had litellm's key generator
    arguments = litellm_arguments(request_)
    assert "api_key" not in arguments  # (a builder that names one gets the tenant)
    assert digest_of(**arguments) == default_digest(request_)


def test_digest_of_refuses_what_is_no_call() -> None:
    from deja.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="model"):
        digest_of(messages=[{"role": "user", "content": "Hi"}])


async def test_a_litellm_form_builder_ignoring_user_shares_entries_across_users(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    # the guide's builder, with deja's digest where it called litellm's key generator
    (tmp_path / "custom_key_hook.py").write_text(
        inspect.cleandoc(
            """
            import deja.keys
            seen = []
            def build_cache_key(model, messages, **kwargs):
                seen.append((model, kwargs.get("user"), kwargs.get("temperature")))
                kwargs.pop("user", None)
                return deja.keys.digest_of(model=model, messages=messages, **kwargs)
            """
        )
    )
    config = proxy_config(upstream)
    config["caching"]["key_builder"] = "custom_key_hook.build_cache_key"
    async with make_proxy(config) as proxy:
        alice = await proxy.post(CHAT, json={**BODY, "user": "alice", "temperature": 0})
        bob = await proxy.post(CHAT, json={**BODY, "user": "bob", "temperature": 0})
        warmer = await proxy.post(CHAT, json={**BODY, "user": "bob", "temperature": 1})
    assert [r.status_code for r in (alice, bob, warmer)] == [200, 200, 200]
    assert [r.headers["x-deja-cache"] for r in (alice, bob, warmer)] == ["miss", "hit", "miss"]
    assert alice.headers["x-deja-cache-key"] == bob.headers["x-deja-cache-key"]
    assert upstream.count(CHAT) == 2


async def test_a_litellm_form_tenant_builder_gets_the_tenant_as_its_api_key(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    (tmp_path / "tenant_cache_hook.py").write_text(
        inspect.cleandoc(
            """
            import deja.keys
            def tenant_key_builder(api_key, **kwargs):
                return f"tenant:{api_key}:{deja.keys.digest_of(**kwargs)}"
            """
        )
    )
    config = proxy_config(
        upstream, hooks=[{"path": "tenant_cache_hook.py", "key_builder": "tenant_key_builder"}]
    )
    team_b = {"authorization": f"Bearer {TEAM_B}"}
    async with make_proxy(config, key=TEAM_A) as proxy:
        first = await proxy.post(CHAT, json=BODY)
        again = await proxy.post(CHAT, json=BODY)
        other = await proxy.post(CHAT, json=BODY, headers=team_b)
    assert [r.headers["x-deja-cache"] for r in (first, again, other)] == ["miss", "hit", "miss"]
    # the tenant's name, never a secret (deja's key scope isolates tenants by itself)
    assert ":tenant:team-a:" in first.headers["x-deja-cache-key"]
    assert ":tenant:team-b:" in other.headers["x-deja-cache-key"]
    assert TEAM_A not in first.headers["x-deja-cache-key"]


def test_a_litellm_form_builder_without_kwargs_gets_the_arguments_it_names() -> None:
    from deja.keys import request_builder

    seen: list[tuple[Any, ...]] = []

    def build(model: str, messages: list[Any]) -> str:
        seen.append((model, messages))
        return "k"

    request = Request.from_body({**BODY, "temperature": 0.2, "user": "alice"}, tenant="t")
    assert request_builder(build)(request) == "k"
    assert seen == [("openai/gpt-4o", BODY["messages"])]


def test_the_librarys_cache_takes_every_form_too() -> None:
    import deja

    def ours_with_tenant(request: Request, tenant: str | None) -> str:
        return f"{tenant}-{default_digest(request)}"

    def litellm_style(model: str, messages: list[Any], **kwargs: Any) -> str:
        kwargs.pop("user", None)
        return "l" + digest_of(model=model, messages=messages, **kwargs)

    request = Request.from_body({**BODY, "user": "alice"}, tenant="team-a")
    tenanted = deja.Cache(key_builder=ours_with_tenant)
    assert tenanted.key(request).endswith(f":team-a-{default_digest(request)}")
    litellm = deja.Cache(key_builder=litellm_style)
    assert litellm.key(request).endswith(f":l{default_digest(request)}")
