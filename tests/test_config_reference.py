"""docs/configuration.md is generated from deja.config's declarations, and kept current.

A key added to the parser without a description, or a page not regenerated after a change,
fails here with the command that fixes it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import pytest

from deja import config

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "config_reference.py"
PAGE = ROOT / "docs" / "configuration.md"


@pytest.fixture(scope="module")
def reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_is_current(reference: ModuleType) -> None:
    assert PAGE.read_text(encoding="utf-8") == reference.render(), (
        "docs/configuration.md is out of date: run"
        " `python scripts/config_reference.py > docs/configuration.md` and commit it"
    )


def test_check_says_whether_the_page_is_current(
    reference: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["config_reference.py", "--check"])
    assert reference.main() == 0
    monkeypatch.setattr(reference, "render", lambda: "another page\n")
    assert reference.main() == 1
    assert "docs/configuration.md is out of date: run" in capsys.readouterr().err


def test_every_option_of_every_cache_type_is_documented() -> None:
    registry = config.CacheTypeRegistry()
    assert {"memory", "disk", "redis", "s3", "tiered", "semantic"} <= set(registry.names())
    for name in registry.names():
        cache_type = registry.get(name)
        assert cache_type is not None
        assert cache_type.doc.strip(), f"cache type {name!r} has no doc"
        for option_name, option in cache_type.options.items():
            assert option.doc.strip(), f"option {name}.{option_name} has no doc"


SECTIONS: Mapping[str, Mapping[str, str]] = {
    "top level": config._TOP_KEYS,
    "caching": config._CACHING_KEYS,
    "cache_params": config._CACHE_PARAMS_MAPPED,
    "params": config._SEMANTIC_PARAMS,
    "model_list entry": config._DEPLOYMENT_KEYS,
    "litellm_params": {**config._LITELLM_SETTINGS_KEPT, **config._LITELLM_PARAMS_OTHER},
    "cache_control_injection_points": config._INJECTION_KEYS,
    "hooks": config._HOOK_KEYS,
    "litellm_settings": config._LITELLM_SETTINGS_KEYS,
    "proxy": config._PROXY_KEYS,
    "general_settings": config._GENERAL_KEYS,
    "virtual_keys": config._VIRTUAL_KEY_KEYS,
    "router_settings": config._ROUTER_KEYS,
}


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_key_of_every_section_is_documented(section: str) -> None:
    for key, doc in SECTIONS[section].items():
        assert doc.strip(), f"{section} key {key!r} has no description"


def test_every_key_the_parser_accepts_is_on_the_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    registry = config.CacheTypeRegistry()
    keys = {key for table in SECTIONS.values() for key in table}
    keys |= set(config.DEPLOYMENT_DEFAULTS)
    for name in registry.names():
        cache_type = registry.get(name)
        assert cache_type is not None
        keys |= set(cache_type.option_keys())
    for key in sorted(keys):
        assert f"`{key}`" in page, key


def test_a_key_is_not_both_read_and_ignored() -> None:
    """An ignored list holding a key deja reads would put it on the page twice, once as
    'not used' (the parser checks the known keys first)."""
    for known, ignored in (
        (config._TOP_KEYS, config._TOP_LITELLM_IGNORED),
        (config._LITELLM_SETTINGS_KEYS, config._LITELLM_SETTINGS_IGNORED),
        (config._GENERAL_KEYS, config._GENERAL_LITELLM_IGNORED),
        (config._ROUTER_KEYS, config._ROUTER_LITELLM_IGNORED),
        ((*config._LITELLM_PARAMS_KEPT, "num_retries"), config._LITELLM_PARAMS_IGNORED),
        ((*config._CACHING_KEYS, *config._CACHE_PARAMS_MAPPED), config._CACHE_PARAMS_LITELLM),
    ):
        assert not set(known) & set(ignored)


_STATED_DEFAULT = re.compile(r"\(default ([^;,)]+)[;,)]")


def test_a_default_an_option_states_is_its_store_default(reference: ModuleType) -> None:
    """An option's doc that says "(default X)" agrees with the default the page derives
    from the store's signature, when there is one: the two cannot drift apart."""
    registry = config.CacheTypeRegistry()
    compared = 0
    for name in registry.names():
        cache_type = registry.get(name)
        assert cache_type is not None
        for option_name, option in cache_type.options.items():
            stated = _STATED_DEFAULT.search(option.doc)
            derived = reference.option_default(name, option_name, option)
            if stated is None or derived == reference.NO_DEFAULT:
                continue
            compared += 1
            assert derived.split()[0] == f"`{stated.group(1)}`", (name, option_name)
    assert compared >= 8
