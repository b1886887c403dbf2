"""LiteLLM's fallbacks across model names in the configuration: read from router_settings
or litellm_settings, every name checked against model_list at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deja.config import DEFAULT_MAX_FALLBACKS, FallbackSettings, Settings, parse_config
from deja.errors import ConfigError


def _config(**blocks: Any) -> dict[str, Any]:
    names = [("gpt-4o", "openai/gpt-4o"), ("gpt-4o-mini", "openai/gpt-4o-mini")]
    names += [("claude", "anthropic/claude-sonnet-4-5"), ("openai/*", "openai/*")]
    return {
        "model_list": [
            {"model_name": name, "litellm_params": {"model": model, "api_key": "sk-x"}}
            for name, model in names
        ],
        **blocks,
    }


def _parse(tmp_path: Path, **blocks: Any) -> Settings:
    return parse_config(_config(**blocks), base_dir=tmp_path, environ={})


def _refused(tmp_path: Path, **blocks: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _parse(tmp_path, **blocks)
    return caught.value


def test_a_litellm_config_s_fallbacks_are_read(tmp_path: Path) -> None:
    settings = _parse(
        tmp_path,
        router_settings={
            "fallbacks": [{"gpt-4o": ["gpt-4o-mini", "claude"]}],
            "context_window_fallbacks": [{"gpt-4o-mini": ["gpt-4o"]}],
            "content_policy_fallbacks": [{"gpt-4o": ["claude"]}],
            "default_fallbacks": ["gpt-4o-mini"],
            "max_fallbacks": 2,
        },
    )
    assert settings.proxy.fallbacks == FallbackSettings(
        general={"gpt-4o": ("gpt-4o-mini", "claude")},
        context_window={"gpt-4o-mini": ("gpt-4o",)},
        content_policy={"gpt-4o": ("claude",)},
        default=("gpt-4o-mini",),
        max_fallbacks=2,
    )
    assert not any("fallbacks" in w for w in settings.warnings)  # read, not ignored


def test_litellm_settings_fallbacks_count_where_router_settings_name_none(
    tmp_path: Path,
) -> None:
    settings = _parse(
        tmp_path,
        litellm_settings={
            "fallbacks": [{"gpt-4o": ["claude"]}],
            "context_window_fallbacks": [{"gpt-4o": ["gpt-4o-mini"]}],
            "default_fallbacks": ["claude"],
        },
        router_settings={"fallbacks": [{"gpt-4o": ["gpt-4o-mini"]}]},
    )
    fallbacks = settings.proxy.fallbacks
    assert fallbacks.general == {"gpt-4o": ("gpt-4o-mini",)}  # router_settings' win
    assert fallbacks.context_window == {"gpt-4o": ("gpt-4o-mini",)}
    assert fallbacks.default == ("claude",)
    assert fallbacks.max_fallbacks == DEFAULT_MAX_FALLBACKS
    (warning,) = [w for w in settings.warnings if "fallbacks" in w]
    assert "router_settings" in warning and "litellm_settings" in warning


def test_wildcard_names_and_the_star_entry_are_fallbacks_too(tmp_path: Path) -> None:
    settings = _parse(
        tmp_path,
        router_settings={"fallbacks": [{"*": ["openai/gpt-4.1"]}, {"openai/*": ["claude"]}]},
    )
    assert settings.proxy.fallbacks.general == {"*": ("openai/gpt-4.1",), "openai/*": ("claude",)}


@pytest.mark.parametrize(
    ("router", "path", "said"),
    [
        (
            {"fallbacks": [{"gpt-4o": ["gpt4o-mini"]}]},
            "router_settings.fallbacks[0].gpt-4o[0]",
            "'gpt4o-mini' is no model_name of model_list; did you mean 'gpt-4o-mini'?",
        ),
        (
            {"context_window_fallbacks": [{"gpt4o": ["claude"]}]},
            "router_settings.context_window_fallbacks[0].gpt4o",
            "did you mean 'gpt-4o'?",
        ),
        (
            {"default_fallbacks": ["claude", "clade"]},
            "router_settings.default_fallbacks[1]",
            "did you mean 'claude'?",
        ),
        (
            {"fallbacks": [{"gpt-4o": "claude"}]},
            "router_settings.fallbacks[0].gpt-4o",
            "expected a list of model names",
        ),
        (
            {"fallbacks": [{"gpt-4o": [{"model": "claude", "temperature": 0}]}]},
            "router_settings.fallbacks[0].gpt-4o[0]",
            "a fallback is a model name",
        ),
        (
            {"fallbacks": [{"gpt-4o": ["claude"]}, {"gpt-4o": ["gpt-4o-mini"]}]},
            "router_settings.fallbacks[1].gpt-4o",
            "'gpt-4o' has fallbacks twice",
        ),
        ({"fallbacks": {"gpt-4o": ["claude"]}}, "router_settings.fallbacks", "expected a list"),
        ({"max_fallbacks": -1}, "router_settings.max_fallbacks", "at least 0"),
        ({"fallback": []}, "router_settings.fallback", "did you mean 'fallbacks'?"),
    ],
)
def test_a_fallback_no_model_serves_is_refused_at_start(
    tmp_path: Path, router: dict[str, Any], path: str, said: str
) -> None:
    error = _refused(tmp_path, router_settings=router)
    assert error.path == path
    assert said in str(error)


def test_a_litellm_settings_fallback_is_checked_too(tmp_path: Path) -> None:
    error = _refused(tmp_path, litellm_settings={"fallbacks": [{"gpt-4o": ["claud"]}]})
    assert error.path == "litellm_settings.fallbacks[0].gpt-4o[0]"
    assert "did you mean 'claude'?" in str(error)


def test_a_pattern_is_no_fallback_name(tmp_path: Path) -> None:
    """A fallback "openai/*" was accepted (the wildcard matched it) and sent upstream as
    the model "*" (a review); a wildcard name as a key stays allowed."""
    refused = _refused(tmp_path, router_settings={"fallbacks": [{"gpt-4o": ["openai/*"]}]})
    assert "is a pattern" in str(refused)
    assert refused.path == "router_settings.fallbacks[0].gpt-4o[0]"


def test_litellm_settings_max_fallbacks_counts_where_router_settings_names_none(
    tmp_path: Path,
) -> None:
    """LiteLLM reads ``max_fallbacks`` in litellm_settings too (deja refused it, unknown);
    router_settings' wins, a 0 as well (LiteLLM's Router: ``litellm.max_fallbacks`` only
    when its own is None)."""
    fallbacks = {"fallbacks": [{"gpt-4o": ["claude"]}]}
    theirs = _parse(tmp_path, litellm_settings={**fallbacks, "max_fallbacks": 2})
    assert theirs.proxy.fallbacks.max_fallbacks == 2
    both = _parse(
        tmp_path,
        litellm_settings={"max_fallbacks": 2},
        router_settings={**fallbacks, "max_fallbacks": 0},
    )
    assert both.proxy.fallbacks.max_fallbacks == 0  # (it bounds a request's own list too)
    (warning,) = [w for w in both.warnings if "max_fallbacks" in w]
    assert "router_settings' is used" in warning
    refused = _refused(tmp_path, litellm_settings={"max_fallbacks": -1})
    assert refused.path == "litellm_settings.max_fallbacks"
