"""What the loader let through (audit 22, operator): a deployment's default request
parameter of a type no request may carry, taken at start and then a 400 blaming the caller
on every call; and a misspelt router setting deja reads, warned about as a LiteLLM setting
it ignores while retries or the cooldown stayed at their defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja.config import parse_config
from deja.errors import ConfigError
from deja.server.app import ProxyApp
from deja.testing import FakeOpenAIServer


def _config(**litellm_params: Any) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "gpt-4o",
                "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-x", **litellm_params},
            }
        ]
    }


# -- a default request parameter of the wrong type --------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("max_tokens", "100", "max_tokens must be an integer, got '100'"),
        ("max_completion_tokens", 2.5, "must be an integer"),
        ("n", 1.5, "n must be an integer, got 1.5"),
        ("seed", "x", "seed must be an integer"),
        ("temperature", "0.2", "temperature must be a number, got '0.2'"),
        ("top_p", True, "top_p must be a number, got true"),
        ("presence_penalty", "high", "must be a number"),
        ("frequency_penalty", [1], "must be a number"),
        ("stop", 5, "stop must be a string or a list of strings"),
        ("parallel_tool_calls", "no", "parallel_tool_calls must be a boolean"),
    ],
)
def test_a_default_of_a_type_no_request_may_carry_is_refused_at_load(
    tmp_path: Path, name: str, value: object, said: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(**{name: value}), base_dir=tmp_path, environ={})
    assert caught.value.path == f"model_list[0].litellm_params.{name}"
    assert said in str(caught.value)


def test_a_default_in_extra_body_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(extra_body={"max_tokens": "100"}), base_dir=tmp_path, environ={})
    assert caught.value.path == "model_list[0].litellm_params.extra_body.max_tokens"
    # (an entry deja does not send as a default is merged into the body all the same)
    with pytest.raises(ConfigError, match="store must be a boolean"):
        parse_config(_config(extra_body={"store": "yes"}), base_dir=tmp_path, environ={})


def test_defaults_of_the_right_types_are_kept(tmp_path: Path) -> None:
    defaults = {
        "max_tokens": 100,
        "n": 1.0,  # 1 to a request, as the key has it
        "temperature": 5,  # out of the range is the provider's to say, not a type
        "top_p": 0.9,
        "seed": 7,
        "stop": ["###"],
        "logprobs": 3,  # the legacy completions' count (chat's is a switch)
        "parallel_tool_calls": False,
        "response_format": {"type": "json_object"},
    }
    settings = parse_config(_config(**defaults), base_dir=tmp_path, environ={})
    params = settings.model_list[0].litellm_params
    assert {k: params[k] for k in defaults} == defaults


def test_a_default_from_the_environment_is_read_as_the_number_it_spells(tmp_path: Path) -> None:
    """An environment variable is always a string: ``os.environ/`` could never give a
    number, and a wrong one is said without its value."""
    environ = {"MAX_TOKENS": "100", "TEMPERATURE": "0.2", "SEED": "x"}
    config = _config(max_tokens="os.environ/MAX_TOKENS", temperature="os.environ/TEMPERATURE")
    params = parse_config(config, base_dir=tmp_path, environ=environ).model_list[0].litellm_params
    assert (params["max_tokens"], params["temperature"]) == (100, 0.2)
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(seed="os.environ/SEED"), base_dir=tmp_path, environ=environ)
    assert "seed must be an integer, got a string (value hidden)" in str(caught.value)
    assert "'x'" not in str(caught.value)


async def test_the_repro_starts_no_proxy_that_refuses_every_request(tmp_path: Path) -> None:
    """``max_tokens: '100'`` started, then every request was a 400 "max_tokens must be an
    integer, got '100'" that blamed the caller; 100 is sent as it is."""
    with pytest.raises(ConfigError, match="max_tokens"):
        parse_config(_config(max_tokens="100"), base_dir=tmp_path, environ={})
    with FakeOpenAIServer() as upstream:
        config = _config(max_tokens=100, api_base=upstream.base_url)
        app = ProxyApp(parse_config(config, base_dir=tmp_path, environ={}))
        try:
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://p") as proxy:
                answer = await proxy.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
                )
        finally:
            await app.aclose()
        assert answer.status_code == 200, answer.text
        assert upstream.requests[-1].body["max_tokens"] == 100


# -- router_settings near misses ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("num_retires", "num_retries"),
        ("cooldown_tme", "cooldown_time"),
        ("alowed_fails", "allowed_fails"),
        ("Num_Retries", "num_retries"),
    ],
)
def test_a_misspelt_router_setting_deja_reads_is_refused(
    tmp_path: Path, key: str, meant: str
) -> None:
    config = {**_config(), "router_settings": {key: 3}}
    with pytest.raises(ConfigError) as caught:
        parse_config(config, base_dir=tmp_path, environ={})
    assert caught.value.path == f"router_settings.{key}"
    assert f"did you mean {meant!r}?" in str(caught.value)


@pytest.mark.parametrize(
    "key",
    [
        "routing_strategy",
        "redis_host",
        "retry_after",  # LiteLLM's, near num_retries
        "allowed_fails_policy",  # LiteLLM's, near allowed_fails
        "disable_cooldowns",  # LiteLLM's, near cooldown_time
        "retry_policy",
        "allowed_fails_polcy",  # a misspelling of a LiteLLM setting, not of deja's
        "something_else",  # near none: a setting of a LiteLLM to come
        # words near one deja reads, not slips of it (configs in the wild carry them)
        "max_retries",
        "num_workers",
        "default_num_retries",
        "allowed_fails_per_minute",
    ],
)
def test_litellm_router_settings_deja_ignores_stay_a_warning(tmp_path: Path, key: str) -> None:
    config = {**_config(), "router_settings": {key: 3, "num_retries": 2}}
    settings = parse_config(config, base_dir=tmp_path, environ={})
    assert any(f"router_settings ({key})" in w for w in settings.warnings)
    assert settings.model_list[0].litellm_params["max_retries"] == 2
