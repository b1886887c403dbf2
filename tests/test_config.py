"""The YAML loader: native and LiteLLM formats, errors with paths, the cache-type registry."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from deja.config import (
    DEFAULT_MAX_REQUEST_BYTES,
    CacheTypeRegistry,
    CachingSettings,
    HookSpec,
    Option,
    Settings,
    StoreSpec,
    build_cache,
    cache_types,
    load_callable,
    load_config,
    parse_config,
)
from deja.errors import ConfigError
from deja.server.app import ProxyApp
from deja.stores.base import Store
from deja.stores.memory import MemoryStore

SECRET = "sk-very-secret-0123456789"


def write(directory: Path, text: str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(
    tmp_path: Path,
    text: str,
    *,
    environ: Mapping[str, str] | None = None,
    registry: CacheTypeRegistry | None = None,
) -> Settings:
    return load_config(write(tmp_path, text), environ=environ or {}, registry=registry)


def parse(data: Mapping[str, object], tmp_path: Path, **kwargs: Any) -> Settings:
    kwargs.setdefault("environ", {})
    return parse_config(data, base_dir=tmp_path, **kwargs)


def config_error(tmp_path: Path, text: str, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **kwargs)
    return info.value


class FakeStore(MemoryStore):
    """A real store that remembers the options its factory received."""

    def __init__(self, options: Mapping[str, object]) -> None:
        super().__init__()
        self.options = dict(options)


def fake_factory(options: Mapping[str, object]) -> Store:
    return FakeStore(options)


# --------------------------------------------------------------------------- seed snippets
# Every config.yaml snippet of shared/seed/caching-guide.md, as a user would paste it.

SEED_INJECTION = """\
    model_list:
      - model_name: claude-3.5-cached
        litellm_params:
          model: anthropic/claude-3.5-sonnet-20240620
    hooks:                                  # ← tell LiteLLM to load the hook file
      - path: anthropic_cache_control_hook.py
        async_pre_llm_hook: async_pre_llm_hook

    # optional – restrict which messages the hook touches
    cache_control_injection_points:
      - location: message
        role: system
    """  # noqa: RUF001 - verbatim from the seed guide

SEED_REDIS = """\
    # config.yaml
    cache_responses: true
    caching:
      type: redis
      host: cache.internal
      port: 6379
      ttl: 7200                 # 2 hours
      key_prefix: litellm:v1:   # optional isolation per environment
    proxy:
      host: 0.0.0.0
      port: 4000
    """

SEED_DUAL = """\
    caching:
      type: dual_cache
      l1:
        type: in-memory
        capacity: 5000              # max entries
      l2:
        type: redis
        host: redis.internal
        ttl: 3600
    """

SEED_SEMANTIC = """\
    cache_responses: true
    caching:
      type: redis_semantic
      host: redis-vector.internal
      port: 6379
      ttl: 86400                       # 24 h
      similarity_threshold: 0.85
      params:
        embedding_model: text-embedding-3-small
    """

SEED_KEY_HOOK = """\
    # config.yaml
    cache_responses: true
    caching:
      type: redis
      host: redis.internal
      # 👇 Point to your custom key builder function
      key_builder: custom_key_hook.build_cache_key
    """

SEED_TENANT_HOOK = """\
    # config.yaml
    cache_responses: true
    caching:
      type: redis
      # 👇 This hook will receive the api_key from the request context
      key_builder: tenant_cache_hook.tenant_key_builder
    """

SEED_PROMETHEUS = """\
    # config.yaml
    # ... other settings
    litellm_settings:
      # 👇 Enables the /metrics endpoint for Prometheus
      enable_prometheus: true
    """

SEED_POLICY_HOOK = """\
    hooks:
      - path: cache_policy.py
        async_post_cache_hook: async_post_cache_hook
    """


def test_seed_injection_snippet_works(tmp_path: Path) -> None:
    # the guide's "bundled hook" is no file a LiteLLM user has: `deja serve` stopped with
    # "no such file"; deja's injection points do its job, so its entry is skipped
    settings = load(tmp_path, SEED_INJECTION)
    assert settings.model_list[0].model_name == "claude-3.5-cached"
    assert settings.model_list[0].model == "anthropic/claude-3.5-sonnet-20240620"
    assert settings.hooks == ()
    assert settings.cache_control_injection_points == ({"location": "message", "role": "system"},)
    assert settings.caching is None
    (warning,) = settings.warnings
    assert warning.startswith(
        "hooks[0]: anthropic_cache_control_hook.py is LiteLLM's bundled hook, and there is no"
        " such file: skipped."
    )
    assert "cache_control_injection_points" in warning
    ProxyApp(settings)  # the proxy starts


def test_a_hook_file_of_the_bundled_hooks_name_that_exists_is_loaded(tmp_path: Path) -> None:
    write(
        tmp_path,
        "async def async_pre_llm_hook(body):\n    return body\n",
        name="anthropic_cache_control_hook.py",
    )
    settings = load(tmp_path, SEED_INJECTION)
    assert settings.hooks == (
        HookSpec(
            path=tmp_path.absolute() / "anthropic_cache_control_hook.py",
            async_pre_llm_hook="async_pre_llm_hook",
        ),
    )
    assert settings.warnings == ()
    # and another function named in an entry of that name is the user's: still required
    missing = SEED_INJECTION.replace("async_pre_llm_hook: async_pre_llm_hook", "key_builder: kb")
    (tmp_path / "anthropic_cache_control_hook.py").unlink()
    assert load(tmp_path, missing).hooks != ()


def test_seed_redis_snippet_fails_on_its_unquoted_key_prefix(tmp_path: Path) -> None:
    # `key_prefix: litellm:v1:` is not valid YAML (a plain value cannot end with ':').
    error = config_error(tmp_path, SEED_REDIS)
    assert "config.yaml:8:" in str(error)  # the key_prefix line
    assert "must be quoted" in str(error)


def test_seed_redis_snippet_with_quoted_prefix_parses(tmp_path: Path) -> None:
    text = SEED_REDIS.replace("litellm:v1:", '"litellm:v1:"')
    settings = load(tmp_path, text)
    caching = settings.caching
    assert caching is not None
    assert caching.type == "redis"
    assert (caching.options["host"], caching.options["port"]) == ("cache.internal", 6379)
    assert caching.ttl == 7200.0
    assert caching.key_prefix == "litellm:v1:"
    assert settings.proxy.host == "0.0.0.0" and settings.proxy.port == 4000


def test_seed_dual_cache_snippet_nests_cache_blocks(tmp_path: Path) -> None:
    settings = load(tmp_path, SEED_DUAL)
    caching = settings.caching
    assert caching is not None and caching.type == "tiered"
    l1, l2 = caching.options["l1"], caching.options["l2"]
    assert isinstance(l1, StoreSpec) and isinstance(l2, StoreSpec)
    assert (l1.type, l1.options, l1.ttl) == (
        "memory",
        {"max_entries": 5000, "max_bytes": None},
        None,
    )
    assert (l2.type, l2.options["host"], l2.ttl) == ("redis", "redis.internal", 3600.0)
    assert isinstance(l1.build(), MemoryStore)


def test_nested_cache_block_errors_name_their_path(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        SEED_DUAL.replace("capacity: 5000", "capacty: 5000"),
    )
    assert error.path == "caching.l1.capacty"
    assert "did you mean 'capacity'?" in str(error)


def test_seed_semantic_snippet_parses(tmp_path: Path) -> None:
    settings = load(tmp_path, SEED_SEMANTIC)
    assert settings.caching is not None and settings.caching.type == "redis_semantic"
    assert settings.caching.similarity_threshold == 0.85
    assert settings.caching.params == {"embedding_model": "text-embedding-3-small"}


@pytest.mark.parametrize("snippet", [SEED_KEY_HOOK, SEED_TENANT_HOOK])
def test_seed_key_builder_snippets_parse(tmp_path: Path, snippet: str) -> None:
    settings = load(tmp_path, snippet)
    assert settings.caching is not None
    assert settings.caching.key_builder in (
        "custom_key_hook.build_cache_key",
        "tenant_cache_hook.tenant_key_builder",
    )


def test_seed_prometheus_snippet_works(tmp_path: Path) -> None:
    settings = load(tmp_path, SEED_PROMETHEUS)
    assert settings.enable_prometheus is True
    assert settings.warnings == ()


def test_seed_post_cache_hook_snippet_works(tmp_path: Path) -> None:
    settings = load(tmp_path, SEED_POLICY_HOOK)
    (hook,) = settings.hooks
    assert hook.path == tmp_path.absolute() / "cache_policy.py"
    assert hook.async_post_cache_hook == "async_post_cache_hook"
    assert hook.async_pre_llm_hook is None


# --------------------------------------------------------------------------- DESIGN.md

DESIGN_EXAMPLE = """\
    model_list:
      - model_name: gpt-4o
        litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
    # native                                   # LiteLLM's equivalent, also accepted
    caching:                                   # litellm_settings: {cache: true, cache_params: {...}}
      type: redis      # memory|disk|redis|s3|tiered|redis_semantic|qdrant_semantic
                       # aliases: local, in-memory, dual_cache, redis-semantic, qdrant-semantic
      url: redis://127.0.0.1:6379/0
      ttl: 7200
      key_prefix: "deja:"
      similarity_threshold: 0.9
      params: {embedding_model: local}
      key_builder: my_hooks.build_cache_key     # module:function relative to the config file
    cache_control_injection_points: [{location: message, role: system}]
    hooks: [{path: my_hooks.py, async_pre_llm_hook: async_pre_llm_hook}]
    litellm_settings: {enable_prometheus: true}
    proxy: {host: 0.0.0.0, port: 4000}
    general_settings:
      master_key: os.environ/DEJA_MASTER_KEY
      virtual_keys: [{key: os.environ/TEAM_A_KEY, tenant: team-a, models: [gpt-4o]}]
    """  # noqa: E501 - verbatim from DESIGN.md

DESIGN_ENV = {
    "OPENAI_API_KEY": SECRET,
    "DEJA_MASTER_KEY": "sk-master-secret",
    "TEAM_A_KEY": "sk-team-a-secret",
}


def test_design_example_parses(tmp_path: Path) -> None:
    settings = load(tmp_path, DESIGN_EXAMPLE, environ=DESIGN_ENV)
    (deployment,) = settings.model_list
    assert deployment.litellm_params == {"model": "openai/gpt-4o", "api_key": SECRET}
    caching = settings.caching
    assert caching is not None
    assert caching.type == "redis"
    assert caching.options["url"] == "redis://127.0.0.1:6379/0"
    assert (caching.ttl, caching.key_prefix, caching.similarity_threshold) == (7200.0, "deja:", 0.9)
    assert caching.params == {"embedding_model": "local"}
    assert caching.key_builder == "my_hooks.build_cache_key"
    assert caching.base_dir == tmp_path.absolute()
    assert settings.cache_control_injection_points == ({"location": "message", "role": "system"},)
    assert settings.hooks[0].path == tmp_path.absolute() / "my_hooks.py"
    assert settings.enable_prometheus is True
    assert (settings.proxy.host, settings.proxy.port, settings.proxy.workers) == (
        "0.0.0.0",
        4000,
        1,
    )
    assert settings.general.master_key == "sk-master-secret"
    (virtual_key,) = settings.general.virtual_keys
    assert (virtual_key.key, virtual_key.tenant, virtual_key.models) == (
        "sk-team-a-secret",
        "team-a",
        ("gpt-4o",),
    )
    assert settings.general.max_request_bytes == DEFAULT_MAX_REQUEST_BYTES
    # the example shows every caching key at once; a redis cache has no semantic tier
    (warning,) = settings.warnings
    assert warning.startswith(
        "caching.similarity_threshold and caching.params have no effect: cache type 'redis'"
    )
    # Secrets stay out of reprs (logs, tracebacks).
    for secret in DESIGN_ENV.values():
        assert secret not in repr(settings)


def test_design_example_with_memory_builds_a_cache(tmp_path: Path) -> None:
    write(
        tmp_path,
        "def build_cache_key(request):\n    return 'digest'\n\n"
        "async def async_pre_llm_hook(request, **kwargs):\n    return request\n",
        name="my_hooks.py",
    )
    text = DESIGN_EXAMPLE.replace("type: redis ", "type: memory ").replace(
        "url: redis://127.0.0.1:6379/0", "max_entries: 100"
    )
    settings = load(tmp_path, text, environ=DESIGN_ENV)
    assert settings.caching is not None
    kwargs = settings.caching.cache_kwargs()
    assert isinstance(kwargs["store"], MemoryStore)
    assert callable(kwargs["key_builder"])
    assert kwargs["key_builder"]("anything") == "digest"
    assert settings.hooks[0].load("async_pre_llm_hook").__name__ == "async_pre_llm_hook"


# --------------------------------------------------------------------------- errors


def test_misspelt_top_level_key_names_the_path_and_suggests(tmp_path: Path) -> None:
    error = config_error(tmp_path, "cachng:\n  type: memory\n")
    assert error.path == "cachng"
    assert str(error).startswith("cachng: ")
    assert "did you mean 'caching'?" in str(error)


def test_non_numeric_ttl_names_the_path(tmp_path: Path) -> None:
    error = config_error(tmp_path, "caching:\n  type: memory\n  ttl: abc\n")
    assert str(error) == "caching.ttl: expected a number of seconds, got 'abc'"
    assert error.path == "caching.ttl"


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        ("caching: {type: memory, key_prefx: 'x:'}", "caching.key_prefx", "key_prefix"),
        (
            "model_list:\n"
            "  - {model_name: a, litellm_params: {model: openai/gpt-4o}}\n"
            "  - {model_name: b, litellm_params: {modle: openai/gpt-4o}}\n",
            "model_list[1].litellm_params.modle",
            "model",
        ),
        ("model_list: [{model_nme: a}]", "model_list[0].model_nme", "model_name"),
        ("proxy: {prot: 4000}", "proxy.prot", "port"),
        ("general_settings: {master_kye: x}", "general_settings.master_kye", "master_key"),
        ("litellm_settings: {cache_parms: {}}", "litellm_settings.cache_parms", "cache_params"),
        ("caching: {type: memory, max_entrys: 5}", "caching.max_entrys", "max_entries"),
        ("caching: {type: disk, directroy: d}", "caching.directroy", "directory"),
        (
            "hooks: [{path: h.py, async_pre_llm_hok: f}]",
            "hooks[0].async_pre_llm_hok",
            "async_pre_llm_hook",
        ),
        (
            "cache_control_injection_points: [{location: message, roel: system}]",
            "cache_control_injection_points[0].roel",
            "role",
        ),
    ],
)
def test_nested_typos_name_the_path_and_suggest(
    tmp_path: Path, text: str, path: str, suggestion: str
) -> None:
    error = config_error(tmp_path, text)
    assert error.path == path
    assert str(error).startswith(f"{path}: ")
    assert f"did you mean {suggestion!r}?" in str(error)


def test_unknown_key_without_a_near_match_lists_the_known_keys(tmp_path: Path) -> None:
    error = config_error(tmp_path, "proxy: {zzz: 1}")
    assert (
        "expected one of: graceful_shutdown_seconds, host, max_upstream_connections, port,"
        " workers" in str(error)
    )


def test_the_proxys_calls_in_flight_per_upstream_are_configurable(tmp_path: Path) -> None:
    from deja.server.app import ProxyApp

    path = tmp_path / "c.yaml"
    path.write_text("proxy: {max_upstream_connections: 400}\n")
    settings = load_config(path)
    assert settings.proxy.max_upstream_connections == 400
    assert ProxyApp(settings).client._max_connections == 400
    path.write_text("proxy: {}\n")
    assert load_config(path).proxy.max_upstream_connections == 100
    error = config_error(tmp_path, "proxy: {max_upstream_connections: 0}")
    assert error.path == "proxy.max_upstream_connections"


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("caching: {ttl: -5}", "caching.ttl", "positive number of seconds"),
        ("caching: {ttl: .inf}", "caching.ttl", "number of seconds"),
        ("caching: {ttl: true}", "caching.ttl", "got true"),
        ("caching: {similarity_threshold: 1.5}", "caching.similarity_threshold", "between 0 and 1"),
        ("caching: {mode: sometimes}", "caching.mode", "default_on or default_off"),
        ("caching: {max_entries: 0}", "caching.max_entries", "greater than 0"),
        ("caching: {max_entries: many}", "caching.max_entries", "expected an integer"),
        ("caching: {key_builder: not-a-spec}", "caching.key_builder", "module.function"),
        ("caching: {store_truncated: maybe}", "caching.store_truncated", "true or false"),
        ("caching: []", "caching", "expected a mapping"),
        ("proxy: {port: 70000}", "proxy.port", "1-65535"),
        ("proxy: {port: 0}", "proxy.port", "1-65535"),
        ("proxy: {workers: 0}", "proxy.workers", "at least 1"),
        ("model_list: {a: b}", "model_list", "expected a list"),
        ("model_list: [{model_name: a}]", "model_list[0].litellm_params", "required"),
        (
            "model_list: [{model_name: a, litellm_params: {}}]",
            "model_list[0].litellm_params.model",
            "required",
        ),
        (
            "model_list: [{model_name: a, litellm_params: {model: m, timeout: soon}}]",
            "model_list[0].litellm_params.timeout",
            "number of seconds",
        ),
        (
            "model_list: [{model_name: a, litellm_params: {model: m, api_base: localhost:8000}}]",
            "model_list[0].litellm_params.api_base",
            "http://",
        ),
        (
            "cache_control_injection_points: [{role: system}]",
            "cache_control_injection_points[0].location",
            "required",
        ),
        (
            "cache_control_injection_points: [{location: mesage}]",
            "cache_control_injection_points[0].location",
            "did you mean 'message'?",
        ),
        ("hooks: [{path: h.py}]", "hooks[0]", "names no hook function"),
        ("hooks: [{path: hooks, async_pre_llm_hook: f}]", "hooks[0].path", "a .py file"),
        (
            "general_settings: {virtual_keys: [{key: k}]}",
            "general_settings.virtual_keys[0].tenant",
            "required",
        ),
        (
            "model_list: [{model_name: gpt-4o, litellm_params: {model: openai/gpt-4o}}]\n"
            "general_settings: {virtual_keys: [{key: k, tenant: t, models: [gpt-40]}]}",
            "general_settings.virtual_keys[0].models[0]",
            "did you mean 'gpt-4o'?",
        ),
        (
            "general_settings: {max_request_bytes: 5, max_request_size_mb: 1}",
            "general_settings.max_request_size_mb",
            "keep one",
        ),
        ("caching: {type: 3}", "caching.type", "cache type name"),
        ("caching: {type: memroy}", "caching.type", "did you mean 'memory'?"),
        ("caching: {type: gcs}", "caching.type", "'gcs' is not supported"),
        ("caching: {type: azure-blob}", "caching.type", "not supported"),
        ("caching: {type: s3}", "caching.bucket", "required by cache type 's3'"),
        ("caching: {type: redis-cluster}", "caching.type", "not available yet"),
        ("caching: {type: memory, capacity: 1, max_entries: 2}", "caching.capacity", "same option"),
        ("1: x", None, "keys must be strings"),
    ],
)
def test_bad_values_name_the_path(
    tmp_path: Path, text: str, path: str | None, fragment: str
) -> None:
    error = config_error(tmp_path, text)
    assert error.path == path
    assert fragment in str(error)


def test_type_errors_list_the_available_types(tmp_path: Path) -> None:
    error = config_error(tmp_path, "caching: {type: nosuch}")
    assert "available types: disk, memory (also: local, in-memory, in_memory)" in str(error)


def test_the_configuration_must_be_a_mapping(tmp_path: Path) -> None:
    error = config_error(tmp_path, "- a\n- b\n")
    assert "must be a mapping of settings, not a list" in str(error)
    error = config_error(tmp_path, "5\n")  # (it read "not a integer")
    assert "must be a mapping of settings, not an integer" in str(error)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    error = config_error(tmp_path, "caching:\n  type: memory\n   ttl: [1, 2\n")
    assert f"{tmp_path / 'config.yaml'}:3:" in str(error)
    assert "invalid YAML" in str(error)


def test_duplicate_keys_are_an_error_with_both_lines(tmp_path: Path) -> None:
    error = config_error(tmp_path, "caching: {type: memory}\nproxy: {}\ncaching: {type: disk}\n")
    assert "config.yaml:3:" in str(error)
    assert "duplicate key 'caching' (first at line 1)" in str(error)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """\
        model_list:
          - model_name: a
            litellm_params: &params {model: openai/gpt-4o, timeout: 10}
          - model_name: b
            litellm_params:
              <<: *params
              timeout: 20
        """,
    )
    assert settings.model_list[1].litellm_params == {"model": "openai/gpt-4o", "timeout": 20.0}


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings == Settings(base_dir=tmp_path.absolute())


# --------------------------------------------------------------------------- environment


def test_environment_references_are_resolved(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """\
        caching: {type: memory, ttl: os.environ/CACHE_TTL, max_entries: os.environ/ENTRIES}
        proxy: {port: os.environ/PORT}
        model_list:
          - model_name: a
            litellm_params:
              model: openai/gpt-4o
              api_base: https://os.environ/UPSTREAM_HOST/v1
        """,
        environ={
            "CACHE_TTL": "60",
            "ENTRIES": "10",
            "PORT": "8080",
            "UPSTREAM_HOST": "llm.internal",
        },
    )
    assert settings.caching is not None
    assert settings.caching.ttl == 60.0
    assert settings.caching.options["max_entries"] == 10
    assert settings.proxy.port == 8080
    assert settings.model_list[0].litellm_params["api_base"] == "https://llm.internal/v1"


def test_missing_environment_variable_names_path_and_variable(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        "model_list:\n"
        "  - model_name: a\n"
        "    litellm_params: {model: m, api_key: os.environ/NOPE}\n",
    )
    assert error.path == "model_list[0].litellm_params.api_key"
    assert "environment variable NOPE is not set" in str(error)


def test_malformed_environment_reference(tmp_path: Path) -> None:
    error = config_error(tmp_path, "general_settings: {master_key: os.environ/}")
    assert error.path == "general_settings.master_key"
    assert "expected os.environ/NAME" in str(error)


def test_parse_config_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEJA_TEST_MASTER", "sk-from-env")
    settings = parse_config(
        {"general_settings": {"master_key": "os.environ/DEJA_TEST_MASTER"}}, base_dir=tmp_path
    )
    assert settings.general.master_key == "sk-from-env"


def test_environment_variables_feed_references_and_an_explicit_environ_is_not_exported(
    tmp_path: Path,
) -> None:
    settings = load(
        tmp_path,
        """\
        environment_variables: {DEJA_TEST_ONLY_HERE: sk-inline}
        general_settings: {master_key: os.environ/DEJA_TEST_ONLY_HERE}
        """,
    )
    assert settings.general.master_key == "sk-inline"
    # load_config was given its environment: the process's own is left alone
    assert "DEJA_TEST_ONLY_HERE" not in __import__("os").environ
    assert settings.warnings == ()
    assert "sk-inline" not in repr(settings)


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "text",
    [
        "caching: {type: memory, ttl: os.environ/SECRET}",
        "proxy: {port: os.environ/SECRET}",
        "caching: {similarity_threshold: os.environ/SECRET}",
        "general_settings: {virtual_keys: [{key: os.environ/SECRET, tenant: a}, "
        "{key: os.environ/SECRET, tenant: b}]}",
        f"general_settings: {{master_key: {SECRET}, virtual_keys: [{{key: {SECRET}, tenant: a}}]}}",
        "model_list: [{model_name: a, litellm_params: {model: m, api_base: os.environ/SECRET}}]",
        f"model_list: [{{model_name: a, litellm_params: {{model: m, api_key: [{SECRET}]}}}}]",
        f"model_list: [{{model_name: a, litellm_params: {{model: m, api_key: {SECRET}, "
        "max_retries: os.environ/SECRET}}]",
        f"general_settings:\n  master_key: {SECRET}: oops\n",
        "caching: {type: os.environ/SECRET}",
        f"environment_variables: {{A: [{SECRET}]}}",
    ],
)
def test_no_secret_in_any_error(tmp_path: Path, text: str) -> None:
    error = config_error(tmp_path, text, environ={"SECRET": SECRET})
    assert SECRET not in str(error)
    assert SECRET not in repr(error.args)


def test_registered_secret_options_are_hidden(tmp_path: Path) -> None:
    error = config_error(tmp_path, f"caching: {{type: redis, password: [{SECRET}]}}")
    assert error.path == "caching.password"
    assert SECRET not in str(error)
    settings = load(tmp_path, f"caching: {{type: redis, password: {SECRET}}}")
    assert SECRET not in repr(settings)


def test_options_declared_secret_are_hidden_in_reprs_whatever_their_name(tmp_path: Path) -> None:
    """An invalidation_url's password, an S3 access key id: secret by their Option, though
    their names do not look it."""
    url = f"redis://:{SECRET}@127.0.0.1:6379/0"
    settings = load(
        tmp_path,
        f"""\
        caching:
          type: tiered
          invalidation_url: "{url}"
          l2: {{type: s3, bucket: b, aws_access_key_id: {SECRET}-id}}
        """,
    )
    assert settings.caching is not None
    assert settings.caching.options["invalidation_url"] == url
    for shown in (repr(settings), repr(settings.caching), repr(settings.caching.options["l2"])):
        assert SECRET not in shown


def test_a_deployments_aws_access_key_id_is_hidden_and_its_prices_are_not(tmp_path: Path) -> None:
    """Prices per token were taken for secrets by their names ("..._token"), and an AWS
    access key id in litellm_params was shown."""
    settings = load(
        tmp_path,
        f"""\
        model_list:
          - model_name: claude
            litellm_params:
              model: bedrock/anthropic.claude-sonnet-4-5
              aws_access_key_id: {SECRET}-id
              aws_secret_access_key: {SECRET}
              aws_region_name: eu-central-1
              input_cost_per_token: 0.0000031
        """,
    )
    assert SECRET not in repr(settings)
    assert "3.1e-06" in repr(settings)
    error = config_error(
        tmp_path,
        "model_list: [{model_name: a, litellm_params: {model: m, input_cost_per_token: cheap}}]",
    )
    assert "cheap" in str(error)  # (the value refused, shown: no secret)


def test_a_deployments_one_hour_cache_write_price_is_read_from_litellm_params(
    tmp_path: Path,
) -> None:
    """LiteLLM's cache_creation_input_token_cost_above_1hr was refused there as an unknown
    string field (model_info took it)."""
    settings = load(
        tmp_path,
        """\
        model_list:
          - model_name: claude
            litellm_params:
              model: anthropic/claude-sonnet-4-5
              api_key: k
              cache_creation_input_token_cost_above_1hr: 0.000007
        """,
    )
    price = settings.price_table().lookup("anthropic/claude-sonnet-4-5")
    assert price is not None and price.cache_write_1h == pytest.approx(7.0)


# --------------------------------------------------------------------------- LiteLLM format


def test_litellm_cache_true_with_local_runs_in_memory(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """\
        litellm_settings:
          cache: true
          cache_params: {type: local, ttl: 600, namespace: team, mode: default_off}
        """,
    )
    caching = settings.caching
    assert caching is not None
    assert (caching.type, caching.ttl, caching.namespace, caching.mode) == (
        "memory",
        600.0,
        "team",
        "default_off",
    )
    assert isinstance(caching.build_store(), MemoryStore)


def test_litellm_default_in_memory_ttl_wins_for_local(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "litellm_settings: {cache: true, cache_params: {type: local, ttl: 600, "
        "default_in_memory_ttl: 30, default_in_redis_ttl: 90}}",
    )
    assert settings.caching is not None and settings.caching.ttl == 30.0
    # default_in_redis_ttl does not apply to a memory cache, as in LiteLLM: warned.
    assert "litellm_settings.cache_params.default_in_redis_ttl" in settings.warnings[0]


def test_litellm_cache_true_alone_means_redis_as_in_litellm(tmp_path: Path) -> None:
    settings = load(tmp_path, "litellm_settings: {cache: true}")
    assert settings.caching is not None and settings.caching.type == "redis"


def test_litellm_disk_cache_dir_is_the_disk_directory(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "litellm_settings: {cache: true, cache_params: {type: disk, disk_cache_dir: cache}}",
    )
    assert settings.caching is not None
    assert settings.caching.options["directory"] == tmp_path.absolute() / "cache"


def test_litellm_cache_params_ignored_when_cache_is_off(tmp_path: Path) -> None:
    settings = load(tmp_path, "litellm_settings: {cache: false, cache_params: {type: gcs}}")
    assert settings.caching is None
    assert any("litellm_settings.cache_params is ignored" in w for w in settings.warnings)


def test_native_and_litellm_cache_together_are_an_error(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        "caching: {type: memory}\nlitellm_settings: {cache: true, cache_params: {type: local}}\n",
    )
    assert error.path == "litellm_settings.cache_params"
    assert "configured twice" in str(error)


def test_litellm_unknown_cache_params_key_is_an_error(tmp_path: Path) -> None:
    error = config_error(
        tmp_path, "litellm_settings: {cache: true, cache_params: {type: local, tl: 5}}"
    )
    assert error.path == "litellm_settings.cache_params.tl"
    assert "did you mean 'ttl'?" in str(error)


def test_litellm_unimplemented_keys_make_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = """\
        model_list:
          - model_name: a
            litellm_params: {model: openai/gpt-4o, max_parallel_requests: 10, base_model: x}
          - model_name: b
            litellm_params: {model: openai/gpt-4o-mini, max_parallel_requests: 10}
        litellm_settings:
          set_verbose: true
          drop_params: true
          num_retries: 3
          callbacks: [prometheus, langfuse]
          cache: true
          cache_params:
            type: local
            supported_call_types: [acompletion]
            host: ignored.example
        router_settings: {routing_strategy: simple-shuffle}
        general_settings: {database_url: os.environ/DATABASE_URL}
        """
    with caplog.at_level(logging.WARNING, logger="deja.config"):
        settings = load(tmp_path, text, environ={"DATABASE_URL": SECRET})
    assert settings.enable_prometheus is True
    # supported_call_types is implemented: no warning
    (warning,) = settings.warnings
    for path in (
        "model_list[*].litellm_params.max_parallel_requests",
        "model_list[0].litellm_params.base_model",
        "litellm_settings.set_verbose",
        "litellm_settings.drop_params",
        "litellm_settings.num_retries",
        "litellm_settings.callbacks (langfuse)",
        "litellm_settings.cache_params.host",
        "router_settings",
        "general_settings.database_url",
    ):
        assert path in warning
    assert SECRET not in warning
    assert "supported_call_types" not in warning
    logged = [r for r in caplog.records if r.name == "deja.config"]
    assert len(logged) == 1
    assert logged[0].levelno == logging.WARNING
    assert "litellm_settings.set_verbose" in logged[0].getMessage()


def test_cache_responses_switch(tmp_path: Path) -> None:
    on = load(tmp_path, "cache_responses: true")
    assert on.caching is not None and on.caching.type == "memory"
    off = load(tmp_path, "cache_responses: false\ncaching: {type: disk}\n")
    assert off.caching is None
    # said, as litellm_settings.cache: false is (a cache off without a word, before)
    assert off.warnings == ("the caching block is not used: cache_responses is false (no cache)",)
    litellm_off = load(tmp_path, "litellm_settings: {cache: false}\ncaching: {type: disk}\n")
    assert litellm_off.caching is None
    assert litellm_off.warnings == (
        "the caching block is not used: litellm_settings.cache is false (no cache)",
    )
    # A typo is still reported when the cache is switched off.
    assert config_error(tmp_path, "cache_responses: false\ncaching: {tl: 1}\n").path == "caching.tl"


# --------------------------------------------------------------------------- caching details


def test_caching_defaults(tmp_path: Path) -> None:
    caching = parse({"caching": {}}, tmp_path).caching
    assert caching == CachingSettings(
        type="memory",
        options={"max_entries": None, "max_bytes": None},
        base_dir=tmp_path.absolute(),
    )
    assert (caching.key_prefix, caching.max_entry_bytes, caching.compress_min_bytes) == (
        "deja:",
        4 * 2**20,
        4096,
    )
    assert caching.store_truncated is True and caching.mode == "default_on"


def test_memory_aliases_and_capacity(tmp_path: Path) -> None:
    for alias in ("local", "in-memory", "in_memory", "Memory"):
        caching = parse({"caching": {"type": alias, "capacity": 7}}, tmp_path).caching
        assert caching is not None
        assert (caching.type, caching.options["max_entries"]) == ("memory", 7)


def test_cache_kwargs(tmp_path: Path) -> None:
    caching = parse(
        {
            "caching": {
                "type": "memory",
                "max_bytes": 1000,
                "ttl": 5,
                "key_prefix": "app:",
                "namespace": "ns",
                "max_entry_bytes": 100,
                "compress_min_bytes": 0,
                "store_truncated": False,
            }
        },
        tmp_path,
    ).caching
    assert caching is not None
    kwargs = caching.cache_kwargs()
    store = kwargs.pop("store")
    assert isinstance(store, MemoryStore)
    admission = kwargs.pop("admission")
    assert admission.store_truncated is False  # type: ignore[attr-defined]
    assert kwargs == {
        "semantic": None,
        "ttl": 5.0,
        "key_prefix": "app:",
        "namespace": "ns",
        "key_builder": None,
        "max_entry_bytes": 100,
        "compress_min_bytes": 0,
        "mode": "default_on",
        "lock_ttl": 30.0,
        "lock_wait": 600.0,
    }


def test_build_cache(tmp_path: Path) -> None:
    import deja

    settings = parse({"caching": {"type": "memory", "ttl": 5}}, tmp_path)
    assert isinstance(build_cache(settings), deja.Cache)
    assert settings.caching is not None
    assert isinstance(build_cache(settings.caching, asynchronous=True), deja.AsyncCache)
    with pytest.raises(ConfigError, match="no cache is configured"):
        build_cache(parse({}, tmp_path))


def test_disk_directory_is_relative_to_the_config_file(tmp_path: Path) -> None:
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    settings = load(config_dir, "caching: {type: disk, directory: data/cache, size_limit: 1000000}")
    caching = settings.caching
    assert caching is not None
    assert caching.options == {
        "directory": config_dir.absolute() / "data/cache",
        "size_limit": 1000000,
        "eviction_policy": None,  # the store's default
    }
    default = load(config_dir, "caching: {type: disk}").caching
    assert default is not None
    assert default.options["directory"] == config_dir.absolute() / ".deja_cache"
    absolute = load(config_dir, f"caching: {{type: disk, directory: {tmp_path / 'abs'}}}").caching
    assert absolute is not None and absolute.options["directory"] == tmp_path / "abs"


def test_disk_store_is_built_in_the_resolved_directory(tmp_path: Path) -> None:
    pytest.importorskip("deja.stores.disk", reason="deja.stores.disk is not written yet")
    caching = load(tmp_path, "caching: {type: disk, directory: cache}").caching
    assert caching is not None
    store = caching.build_store()
    try:
        store.set("k", b"v", None)
        assert store.get("k") == b"v"
        assert (tmp_path / "cache").is_dir()
    finally:
        store.close()


def test_hook_key_builder_becomes_the_cache_key_builder(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "caching: {type: memory}\nhooks: [{path: keys.py, key_builder: build}]\n",
    )
    assert settings.caching is not None
    assert settings.caching.key_builder == f"{tmp_path.absolute() / 'keys.py'}:build"
    error = config_error(
        tmp_path,
        "caching: {type: memory, key_builder: a.b}\nhooks: [{path: keys.py, key_builder: build}]\n",
    )
    assert error.path == "hooks[0].key_builder"


def test_virtual_keys_must_be_distinct(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        "general_settings: {virtual_keys: [{key: k1, tenant: a}, {key: k1, tenant: b}]}",
    )
    assert error.path == "general_settings.virtual_keys[1].key"
    assert "virtual_keys[0]" in str(error)


def test_virtual_keys_without_a_master_key_are_an_error(tmp_path: Path) -> None:
    # without a master key the proxy authenticates nobody: the keys would be ignored
    error = config_error(tmp_path, "general_settings: {virtual_keys: [{key: k1, tenant: a}]}")
    assert error.path == "general_settings.virtual_keys"
    assert "master_key" in str(error)


def test_litellm_s_master_key_variable_is_read_when_the_config_names_none(
    tmp_path: Path,
) -> None:
    """LiteLLM's Docker deployments keep the master key in LITELLM_MASTER_KEY: ignored, a
    migrated proxy answered every caller, keyless, on the operator's provider keys."""
    environ = {"LITELLM_MASTER_KEY": "sk-from-env\n"}
    assert load(tmp_path, "model_list: []", environ=environ).general.master_key == "sk-from-env"
    keyed = load(
        tmp_path,
        "general_settings: {virtual_keys: [{key: k1, tenant: a}]}",
        environ=environ,
    )
    assert keyed.general.master_key == "sk-from-env" and keyed.general.virtual_keys
    named = load(tmp_path, "general_settings: {master_key: sk-yaml}", environ=environ)
    assert named.general.master_key == "sk-yaml"  # the config's own wins
    for unset in ({}, {"LITELLM_MASTER_KEY": "  "}):
        assert load(tmp_path, "model_list: []", environ=unset).general.master_key is None


def test_keys_read_from_files_lose_their_newline(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "general_settings: {master_key: os.environ/MASTER, "
        "virtual_keys: [{key: os.environ/TEAM, tenant: a}]}",
        environ={"MASTER": "sk-master\n", "TEAM": " sk-team\n"},
    )
    assert settings.general.master_key == "sk-master"
    assert settings.general.virtual_keys[0].key == "sk-team"


def test_max_request_size_mb_is_litellms_name(tmp_path: Path) -> None:
    settings = load(tmp_path, "general_settings: {max_request_size_mb: 2}")
    assert settings.general.max_request_bytes == 2 * 2**20


def test_per_deployment_injection_points(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """\
        model_list:
          - model_name: claude
            litellm_params:
              model: anthropic/claude-3-5-sonnet-20240620
              cache_control_injection_points:
                - {location: message, index: -1}
        """,
    )
    assert settings.model_list[0].litellm_params["cache_control_injection_points"] == (
        {"location": "message", "index": -1},
    )


# --------------------------------------------------------------------------- load_callable


def test_load_callable_from_the_config_directory(tmp_path: Path) -> None:
    write(tmp_path, "import helper\n\ndef build(request):\n    return helper.VALUE\n", "my_keys.py")
    write(tmp_path, "VALUE = 'from-helper'\n", "helper.py")
    path_before = list(sys.path)
    for spec in ("my_keys.build", "my_keys:build", "my_keys.py:build"):
        function = load_callable(spec, tmp_path)
        assert function("r") == "from-helper"
    assert sys.path == path_before  # the directory was on sys.path only while importing


def test_same_module_name_in_two_directories_does_not_collide(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    write(first, "def f():\n    return 1\n", "hooks.py")
    write(second, "def f():\n    return 2\n", "hooks.py")
    assert load_callable("hooks.f", first)() == 1
    assert load_callable("hooks.f", second)() == 2
    assert "hooks" not in sys.modules


def test_load_callable_from_an_installed_module(tmp_path: Path) -> None:
    assert load_callable("json.dumps", tmp_path) is __import__("json").dumps


@pytest.mark.parametrize(
    ("files", "spec", "fragment"),
    [
        ({}, "missing_module.build", "cannot find 'missing_module'"),
        ({}, "missing.py:build", "no such file"),
        ({"k.py": "def build_key():\n    pass\n"}, "k.build_kye", "did you mean 'build_key'?"),
        ({"k.py": "build = 3\n"}, "k.build", "k.py is an integer, not a function"),
        ({"k.py": "build = [3]\n"}, "k.build", "k.py is a list, not a function"),
        ({"k.py": "raise RuntimeError('boom')\n"}, "k.build", "RuntimeError: boom"),
        ({}, "nodots", "module.function"),
    ],
)
def test_load_callable_errors_name_the_yaml_path(
    tmp_path: Path, files: dict[str, str], spec: str, fragment: str
) -> None:
    for name, text in files.items():
        write(tmp_path, text, name)
    with pytest.raises(ConfigError) as info:
        load_callable(spec, tmp_path, yaml_path="caching.key_builder")
    assert info.value.path == "caching.key_builder"
    assert fragment in str(info.value)


def test_cache_kwargs_reports_a_missing_key_builder(tmp_path: Path) -> None:
    caching = load(tmp_path, "caching: {type: memory, key_builder: absent_hooks.build}").caching
    assert caching is not None
    with pytest.raises(ConfigError) as info:
        caching.cache_kwargs()
    assert info.value.path == "caching.key_builder"


# --------------------------------------------------------------------------- registry


def test_builtin_cache_types() -> None:
    assert {"memory", "disk"} <= set(cache_types())
    assert cache_types() == sorted(cache_types())


def test_a_fresh_registry_starts_empty_or_with_the_builtins() -> None:
    assert CacheTypeRegistry(builtins=False).names() == []
    assert {"disk", "memory", "s3"} <= set(CacheTypeRegistry().names())


def test_custom_cache_type_in_a_fresh_registry(tmp_path: Path) -> None:
    registry = CacheTypeRegistry(builtins=False)

    def even(value: int) -> int:
        if value % 2:
            raise ValueError("must be even")
        return value

    registry.register(
        "Custom",
        factory=fake_factory,
        options={
            "endpoint": Option(types=str, required=True, aliases=("url",)),
            "shards": Option(types=int, default=2, validator=even),
            "ratio": Option(types=float, default=0.5),
            "enabled": Option(types=bool, default=True),
            "root": Option(types=Path),
            "tags": Option(types=list),
        },
        aliases=("my-cache",),
    )
    assert registry.names() == ["custom"]
    assert "MY-CACHE" in registry

    settings = parse(
        {"caching": {"type": "my-cache", "url": "x://y", "ratio": 1, "root": "r"}},
        tmp_path,
        registry=registry,
    )
    caching = settings.caching
    assert caching is not None and caching.type == "custom"
    assert caching.options == {
        "endpoint": "x://y",
        "shards": 2,
        "ratio": 1.0,
        "enabled": True,
        "root": tmp_path.absolute() / "r",
        "tags": None,
    }
    store = caching.build_store()
    assert isinstance(store, FakeStore) and store.options == caching.options

    def error(block: dict[str, object]) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            parse({"caching": {"type": "custom", **block}}, tmp_path, registry=registry)
        return info.value

    assert error({}).path == "caching.endpoint"
    assert "required by cache type 'custom'" in str(error({}))
    assert str(error({"url": "u", "shards": 3})) == "caching.shards: must be even, got 3"
    assert error({"url": "u", "ratio": "half"}).path == "caching.ratio"
    assert "expected a number" in str(error({"url": "u", "ratio": "half"}))
    assert "expected true or false" in str(error({"url": "u", "enabled": 1}))
    assert "expected an integer" in str(error({"url": "u", "shards": True}))
    # The built-ins are not in this registry.
    assert "unknown cache type 'memory'" in str(error({"type": "memory"}))
    assert "available types: custom (also: my-cache)" in str(error({"type": "memory"}))


def test_registration_conflicts_are_rejected() -> None:
    registry = CacheTypeRegistry()
    with pytest.raises(ValueError, match="already registered"):
        registry.register("memory", factory=fake_factory, options={})
    with pytest.raises(ValueError, match="already registered"):
        registry.register("other", factory=fake_factory, options={}, aliases=("local",))
    with pytest.raises(ValueError, match="clashes with a shared caching key"):
        registry.register("other", factory=fake_factory, options={"ttl": Option(types=int)})
    with pytest.raises(ValueError, match="used twice"):
        registry.register(
            "other",
            factory=fake_factory,
            options={"a": Option(types=int, aliases=("b",)), "b": Option(types=int)},
        )


def test_registering_a_planned_type_makes_it_available(tmp_path: Path) -> None:
    registry = CacheTypeRegistry(builtins=False)
    planned = "redis-cluster"
    with pytest.raises(ConfigError, match="not available yet"):
        parse({"caching": {"type": planned}}, tmp_path, registry=registry)
    registry.register(planned, factory=fake_factory, options={"bucket": Option(types=str)})
    settings = parse({"caching": {"type": planned, "bucket": "b"}}, tmp_path, registry=registry)
    assert settings.caching is not None and settings.caching.options == {"bucket": "b"}


FIXTURES = Path(__file__).parent / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.yaml")))
def test_fixture_configs_load(name: str) -> None:
    settings = load_config(FIXTURES / name, environ={"OPENAI_API_KEY": SECRET})
    assert settings.caching is not None
    assert settings.caching.type == "memory"
    assert settings.model_list[0].litellm_params["api_key"] == SECRET


def test_deployment_prices_reach_the_cache(tmp_path: Path) -> None:
    from deja.config import build_cache, parse_config
    from deja.request import Request

    settings = parse_config(
        {
            "model_list": [
                {
                    "model_name": "house-model",
                    "litellm_params": {
                        "model": "openai/house-model",
                        "api_base": "http://127.0.0.1:9/v1",
                    },
                    "model_info": {
                        "input_cost_per_token": 1e-6,
                        "output_cost_per_token": 2e-6,
                        "id": "x",
                    },
                },
                {
                    "model_name": "gpt-4o",
                    "litellm_params": {"model": "gpt-4o", "input_cost_per_token": 5e-6},
                },
            ],
            "caching": {"type": "memory"},
        },
        base_dir=tmp_path,
    )
    assert settings.price_overrides() == {
        "openai/house-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
        "gpt-4o": {"input_cost_per_token": 5e-6},
    }
    cache = build_cache(settings)
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    house = Request.chat(model="openai/house-model", messages=[{"role": "user", "content": "x"}])
    assert cache.cost(house, {"usage": usage}) == pytest.approx(100 * 1e-6 + 10 * 2e-6)
    gpt = Request.chat(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert cache.cost(gpt, {"usage": usage}) == pytest.approx(100 * 5e-6 + 10 * 10e-6)


def test_injection_points_take_last_and_ttl(tmp_path: Path) -> None:
    settings = load(
        tmp_path, "cache_control_injection_points: [{location: message, last: 2, ttl: 1h}]"
    )
    assert settings.cache_control_injection_points == (
        {"location": "message", "last": 2, "ttl": "1h"},
    )
    assert config_error(
        tmp_path, "cache_control_injection_points: [{location: message, ttl: 2h}]"
    ).path == ("cache_control_injection_points[0].ttl")


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"port": "abc"}, "caching.port: expected a port number 1-65535, got 'abc'"),
        ({"port": 0}, "caching.port: expected a port number 1-65535, got 0"),
        (
            {"redis_startup_nodes": ["a:7001", "b:x"]},
            "caching.redis_startup_nodes[1]: expected 'host:port', [host, port] or"
            " {host, port} with a port 1-65535, got 'b:x'",
        ),
        (
            {"sentinel_nodes": [{"port": 26379}], "service_name": "m"},
            "caching.sentinel_nodes[0]: expected 'host:port', [host, port] or"
            " {host, port} with a port 1-65535, got a mapping",
        ),
        (  # (taken for "none given": a standalone server on this machine)
            {"redis_startup_nodes": []},
            "caching.redis_startup_nodes: expected at least one address (or leave it out),"
            " got a list",
        ),
        (
            {"sentinel_nodes": [], "service_name": "m"},
            "caching.sentinel_nodes: expected at least one address (or leave it out), got a list",
        ),
    ],
)
def test_redis_address_errors_show_the_value_once(
    tmp_path: Path, block: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse({"caching": {"type": "redis", **block}}, tmp_path)
    assert str(info.value) == message
    assert str(info.value).count("got") == 1


def test_a_redis_port_from_the_environment_stays_hidden(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse(
            {"caching": {"type": "redis", "port": "os.environ/REDIS_PORT"}},
            tmp_path,
            environ={"REDIS_PORT": "s3cr3t"},
        )
    assert "s3cr3t" not in str(info.value)
    assert str(info.value).count("got") == 1


def test_valid_redis_addresses_are_normalized(tmp_path: Path) -> None:
    settings = parse(
        {"caching": {"type": "redis", "port": "6380", "startup_nodes": ["a:7001", ["b", 7002]]}},
        tmp_path,
    )
    assert settings.caching is not None
    assert settings.caching.options["port"] == 6380
    assert settings.caching.options["startup_nodes"] == [("a", 7001), ("b", 7002)]


def test_what_a_request_would_be_refused_for_is_refused_at_start(tmp_path: Path) -> None:
    unsupported = {
        "model_list": [
            {"model_name": "c", "litellm_params": {"model": "cohere/command-r", "api_key": "k"}}
        ]
    }
    with pytest.raises(ConfigError, match="cohere") as info:
        parse(unsupported, tmp_path)
    assert info.value.path == "model_list[0].litellm_params.model"
    with pytest.raises(ConfigError, match="give no ttl") as info:
        parse({"caching": {"type": "memory", "ttl": 1e16}}, tmp_path)
    assert info.value.path == "caching.ttl"


@pytest.mark.parametrize("signature", ["request", "request, tenant"])
@pytest.mark.parametrize("where", ["caching", "hooks"])
def test_a_key_builder_works_in_either_form_and_either_place(
    tmp_path: Path, where: str, signature: str
) -> None:
    """caching.key_builder is f(request), a hook's f(request, tenant): either form works
    in either place (a builder moved from one to the other used to fail every request)."""
    from deja.config import build_cache
    from deja.request import Request

    (tmp_path / "my_keys.py").write_text(
        f"def build({signature}):\n    return 'same-' + request.messages[-1]['content']\n"
    )
    if where == "caching":
        text = f"caching: {{type: memory, key_builder: {tmp_path / 'my_keys.py'}:build}}\n"
    else:
        text = "caching: {type: memory}\nhooks: [{path: my_keys.py, key_builder: build}]\n"
    cache = build_cache(load(tmp_path, text))
    request = Request.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert cache.key(request).endswith(":same-hi")


def test_a_provider_prefix_with_an_api_base_loads(tmp_path: Path) -> None:
    params = {"model": "cohere/command-r-plus", "api_base": "https://openrouter.ai/api/v1"}
    settings = parse({"model_list": [{"model_name": "c", "litellm_params": params}]}, tmp_path)
    assert settings.model_list[0].model == "cohere/command-r-plus"


# ------------------------------------------------ LiteLLM configs: providers, shares, switches


def _deployments(tmp_path: Path, *params: dict[str, object], **kwargs: Any) -> Settings:
    model_list = [{"model_name": "m", "litellm_params": p} for p in params]
    return parse({"model_list": model_list}, tmp_path, **kwargs)


def test_custom_llm_provider_picks_the_provider_as_its_prefix_does(tmp_path: Path) -> None:
    """LiteLLM's custom_llm_provider was kept and never read: an Anthropic model and key
    went out as an OpenAI call (to api.openai.com without an api_base)."""
    from deja.request import resolve_model

    claude = {"model": "claude-3-5-sonnet-20240620", "custom_llm_provider": "anthropic"}
    (deployment,) = _deployments(tmp_path, {**claude, "api_key": SECRET}).model_list
    assert deployment.model == "anthropic/claude-3-5-sonnet-20240620"
    assert resolve_model(deployment.model) == ("anthropic", "claude-3-5-sonnet-20240620")
    # "openai" keeps a provider-like name whole (a gateway serving anthropic/claude-3)
    gateway = {"api_base": "https://gateway.example/v1", "custom_llm_provider": "openai"}
    (relayed,) = _deployments(tmp_path, {"model": "anthropic/claude-3", **gateway}).model_list
    assert resolve_model(relayed.model) == ("openai", "anthropic/claude-3")
    # a model that already names the provider is left alone (LiteLLM's azure/* case)
    azure = {"model": "azure/*", "custom_llm_provider": "azure", "api_base": "https://a.example"}
    assert _deployments(tmp_path, azure).model_list[0].model == "azure/*"


@pytest.mark.parametrize(
    ("provider", "says"),
    [("cohere", "does not call the provider 'cohere'"), ("antropic", "did you mean 'anthropic'")],
)
def test_a_custom_llm_provider_deja_cannot_call_is_refused(
    tmp_path: Path, provider: str, says: str
) -> None:
    params = {"model": "command-r", "custom_llm_provider": provider, "api_key": SECRET}
    for extra in ({}, {"api_base": "https://gateway.example/v1"}):
        with pytest.raises(ConfigError) as info:
            _deployments(tmp_path, {**params, **extra})
        assert info.value.path == "model_list[0].litellm_params.custom_llm_provider"
        assert says in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    "model", ["azure/my-gpt4o", "hosted_vllm/meta-llama/Llama-3.1-8B", "llamacpp/x", "azure/*"]
)
def test_a_provider_without_an_endpoint_needs_an_api_base_at_start(
    tmp_path: Path, model: str
) -> None:
    """Every request used to get a 400 blaming the caller for the operator's config."""
    with pytest.raises(ConfigError, match="no default endpoint") as info:
        _deployments(tmp_path, {"model": model})
    assert info.value.path == "model_list[0].litellm_params.api_base"
    assert _deployments(tmp_path, {"model": model, "api_base": "http://10.0.0.1:8000/v1"})
    # LiteLLM's variable, which the client reads too
    variable = f"{model.partition('/')[0].upper()}_API_BASE"
    assert _deployments(tmp_path, {"model": model}, environ={variable: "http://10.0.0.1/v1"})


def test_regional_providers_load_without_an_api_base(tmp_path: Path) -> None:
    for model in ("bedrock/anthropic.claude-3-haiku", "vertex_ai/gemini-1.5-pro"):
        assert _deployments(tmp_path, {"model": model}).model_list[0].model == model


def test_a_deployment_at_weight_0_is_drained(tmp_path: Path) -> None:
    settings = _deployments(
        tmp_path,
        {"model": "openai/gpt-4o", "weight": 1},
        {"model": "openai/gpt-4o", "weight": 0},
        {"model": "openai/gpt-4o", "rpm": 0, "tpm": 1000},  # the first share set counts
        {"model": "openai/gpt-4o"},
    )
    assert [d.weight for d in settings.model_list] == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("key", ["weight", "rpm", "tpm"])
def test_a_model_whose_deployments_all_weigh_0_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match="drained") as info:
        _deployments(tmp_path, {"model": "openai/gpt-4o", key: 0}, {"model": "openai/o3", key: 0})
    assert info.value.path == f"model_list[0].litellm_params.{key}"


def test_an_empty_s3_bucket_is_a_config_error(tmp_path: Path) -> None:
    """An empty variable used to pass the loader and crash the server's start."""
    text = (
        "litellm_settings:\n  cache: true\n  cache_params:\n"
        "    {type: s3, s3_bucket_name: os.environ/CACHE_BUCKET}\n"
    )
    error = config_error(tmp_path, text, environ={"CACHE_BUCKET": ""})
    assert error.path == "litellm_settings.cache_params.s3_bucket_name"
    assert "must not be empty" in str(error)
    pytest.importorskip("boto3")
    # the factory says what the store refuses as a config error too (settings built by hand)
    with pytest.raises(ConfigError, match="s3: bucket must be a non-empty str"):
        CacheTypeRegistry().create("s3", {"bucket": ""})


def test_the_invalidation_url_is_checked_at_load(tmp_path: Path) -> None:
    """An http:// typo used to load, and the L1 then stayed unused for good."""
    block = {"type": "tiered", "l2": {"type": "disk", "directory": "l2"}}
    for url, says in (
        (f"http://:{SECRET}@redis.internal:6379", "(this one is http://)"),
        ("redis.internal:6379", "expected a redis://, rediss:// or unix:// URL"),
        (f"redis://:{SECRET}@redis.internal:port/0", "no valid port"),
    ):
        with pytest.raises(ConfigError) as info:
            parse({"caching": {**block, "invalidation_url": url}}, tmp_path)
        assert info.value.path == "caching.invalidation_url"
        assert says in str(info.value) and SECRET not in str(info.value)
    for url in ("redis://redis.internal:6379/0", "rediss://h/0", "unix:///run/redis.sock"):
        settings = parse({"caching": {**block, "invalidation_url": url}}, tmp_path)
        assert settings.caching is not None
        assert settings.caching.options["invalidation_url"] == url


def test_a_url_and_a_password_reach_every_client_of_the_block() -> None:
    """The store took the password beside the url; the bus and the vector index did not."""
    from redis.connection import parse_url

    from deja.config import StoreSpec, tiered_bus_url

    def bus_url(**options: object) -> dict[str, Any]:
        url = tiered_bus_url({"l2": StoreSpec("redis", options)})
        assert url is not None
        return parse_url(url)

    given = bus_url(url="redis://10.0.0.5:6380/2", username="bob", password="p/w@x:1")
    assert (given["host"], given["port"], given["db"]) == ("10.0.0.5", 6380, 2)
    assert (given["username"], given["password"]) == ("bob", "p/w@x:1")
    # the URL's own credentials win, as they do for the store
    own = bus_url(url="redis://alice:mine@h:6379/0", password="other")
    assert (own["username"], own["password"]) == ("alice", "mine")
    # field by field: a URL naming its user only takes the block's password (as the store)
    user_only = bus_url(url="redis://deja@h:6379/0", password="p@ss")
    assert (user_only["username"], user_only["password"]) == ("deja", "p@ss")
    # a rediss:// URL gets the block's TLS options that its query does not set
    tls = bus_url(
        url="rediss://h:6379/0?ssl_cert_reqs=none",
        password="pw",
        ssl_ca_certs="/etc/ca.pem",
        ssl_cert_reqs="required",
    )
    assert tls["ssl_ca_certs"] == "/etc/ca.pem" and tls["ssl_cert_reqs"] == "none"
    assert tls["connection_class"].__name__ == "SSLConnection" and tls["password"] == "pw"
    assert bus_url(url="redis://h:6379/0") == parse_url("redis://h:6379/0")


def test_cache_responses_true_builds_the_litellm_cache_params(tmp_path: Path) -> None:
    """The seed guide's switch used to give a default memory cache, dropping cache_params."""
    text = "cache_responses: true\nlitellm_settings:\n  cache_params: {type: disk, ttl: 60}\n"
    settings = load(tmp_path, text)
    assert settings.caching is not None
    assert (settings.caching.type, settings.caching.ttl) == ("disk", 60.0)
    assert settings.warnings == ()


def test_litellm_cache_false_switches_a_caching_block_off(tmp_path: Path) -> None:
    settings = load(tmp_path, "litellm_settings: {cache: false}\ncaching: {type: disk}\n")
    assert settings.caching is None
    assert any("litellm_settings.cache is false" in w for w in settings.warnings)
    # a typo in the block is still an error
    error = config_error(tmp_path, "litellm_settings: {cache: false}\ncaching: {tl: 1}\n")
    assert error.path == "caching.tl"
    # the two switches may not contradict each other
    for switch, cache in (("true", "false"), ("false", "true")):
        text = f"cache_responses: {switch}\nlitellm_settings: {{cache: {cache}}}\n"
        assert "keep one" in str(config_error(tmp_path, text))


def test_litellm_local_cache_ttls_are_litellms(tmp_path: Path) -> None:
    def ttl(params: str, *, native: bool = False) -> float | None:
        text = (
            f"caching: {params}"
            if native
            else f"litellm_settings: {{cache: true, cache_params: {params}}}"
        )
        caching = load(tmp_path, text).caching
        assert caching is not None
        return caching.ttl

    # LiteLLM's in-memory cache keeps an entry written without a TTL for 600 s
    assert ttl("{type: local}") == 600.0
    assert ttl("{type: local, ttl: 5}") == 5.0
    # its Cache() replaces ttl by the backend's default TTL when one is given
    assert ttl("{type: local, ttl: 5, default_in_memory_ttl: 30}") == 30.0
    assert ttl("{type: redis, host: h, ttl: 5, default_in_redis_ttl: 30}") == 30.0
    # deja's own block keeps deja's default: until evicted
    assert ttl("{type: local}", native=True) is None


@pytest.mark.parametrize(
    ("params", "refused"),
    [
        ({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 0}, "max_tokens"),
        ({"model": "anthropic/claude-sonnet-4-5", "max_tokens": -1}, "max_tokens"),
        ({"model": "openai/gpt-4o", "max_tokens": 0}, "max_tokens"),  # (chat's floor)
        (
            {"model": "azure/my-gpt", "api_base": "https://x.openai.azure.com", "max_tokens": 0},
            "max_tokens",
        ),
        ({"model": "openai/gpt-4o", "temperature": -0.5}, "temperature"),
        ({"model": "openai/gpt-4o", "top_p": 2}, "top_p"),  # (no API takes it)
        # another OpenAI-compatible server judges its own bounds: LM Studio's -1 is "no limit"
        ({"model": "openai/local", "api_base": "http://127.0.0.1:1234/v1", "max_tokens": -1}, None),
        ({"model": "openai/*", "temperature": -1}, None),  # (a wildcard's model: per request)
        ({"model": "anthropic/claude-sonnet-4-5", "max_tokens": 100, "temperature": 0.2}, None),
    ],
)
def test_a_deployment_default_below_its_apis_bound_is_refused_at_start(
    tmp_path: Path, params: dict[str, object], refused: str | None
) -> None:
    """It was taken, and every request of the model was then refused for it."""
    config = {"model_list": [{"model_name": "m", "litellm_params": {**params, "api_key": "k"}}]}
    if refused is None:
        parse(config, tmp_path)
        return
    with pytest.raises(ConfigError) as info:
        parse(config, tmp_path)
    assert info.value.path == f"model_list[0].litellm_params.{refused}"
    assert "every request of this model would be refused" in str(info.value)
