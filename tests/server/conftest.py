"""Proxy fixtures: a simulated upstream and an in-process ASGI client for the proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja.config import parse_config
from deja.server.app import ProxyApp
from deja.testing import FakeOpenAIServer

MASTER = "sk-master-test"
TEAM_A = "sk-team-a"
TEAM_B = "sk-team-b"


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


def proxy_config(upstream: FakeOpenAIServer, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_list": [
            {
                "model_name": "gpt-4o",
                "litellm_params": {
                    "model": "openai/gpt-4o",
                    "api_base": upstream.base_url,
                    "api_key": "sk-up",
                },
            },
            {
                "model_name": "text-embedding-3-small",
                "litellm_params": {
                    "model": "openai/text-embedding-3-small",
                    "api_base": upstream.base_url,
                    "api_key": "sk-up",
                },
            },
        ],
        "caching": {"type": "memory", "ttl": 600},
        "general_settings": {
            "master_key": MASTER,
            "virtual_keys": [
                {"key": TEAM_A, "tenant": "team-a"},
                {"key": TEAM_B, "tenant": "team-b", "models": ["gpt-4o"]},
            ],
        },
    }
    config.update(extra)
    return config


@pytest.fixture
def make_proxy(tmp_path: Path) -> Iterator[Callable[..., httpx2.AsyncClient]]:
    apps: list[ProxyApp] = []

    def make(config: dict[str, Any], key: str | None = TEAM_A) -> httpx2.AsyncClient:
        app = ProxyApp(parse_config(config, base_dir=tmp_path))
        apps.append(app)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://proxy", headers=headers
        )

    yield make


@pytest.fixture
async def proxy(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient]
) -> AsyncIterator[httpx2.AsyncClient]:
    async with make_proxy(proxy_config(upstream)) as client:
        yield client


def half_priced_claude(api_base: str, **extra: Any) -> dict[str, Any]:
    """A proxy config of one Anthropic deployment (``claude``) whose system message is a
    prompt-cache breakpoint, priced by its model_info at half the list prices."""
    return {
        "model_list": [
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": "anthropic/claude-sonnet-4-5",
                    "api_base": api_base,
                    "api_key": "k",
                    "cache_control_injection_points": [{"location": "message", "role": "system"}],
                },
                "model_info": {
                    "input_cost_per_token": 1.5e-6,
                    "output_cost_per_token": 7.5e-6,
                    "cache_read_input_token_cost": 0.15e-6,
                    "cache_creation_input_token_cost": 1.875e-6,
                },
            }
        ],
        "general_settings": {"master_key": MASTER},
        **extra,
    }


def two_deployments(
    first_base: str, second: FakeOpenAIServer, **first_params: Any
) -> dict[str, Any]:
    """:func:`proxy_config` of ``second`` with gpt-4o on two deployments: at
    ``first_base`` (with ``first_params``), tried first, then on ``second`` (else the two
    are shuffled)."""
    config = proxy_config(second)
    deployments = [
        {
            "model_name": "gpt-4o",
            "litellm_params": {
                "model": "openai/gpt-4o",
                "api_base": base,
                "api_key": "sk-up",
                "order": order,
                **(first_params if order == 1 else {}),
            },
        }
        for order, base in ((1, first_base), (2, second.base_url))
    ]
    config["model_list"] = [*deployments, *config["model_list"][1:]]
    return config
