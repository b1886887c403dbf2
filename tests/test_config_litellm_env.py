"""LiteLLM configs that lean on the environment, nested TTLs, LiteLLM's documented keys,
``supported_call_types`` and where an in-process semantic index is kept."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from deja import Request
from deja.config import Settings, build_cache, load_config, parse_config
from deja.errors import ConfigError

SECRET = "sk-very-secret-0123456789"


def parse(data: Mapping[str, object], tmp_path: Path, **environ: str) -> Settings:
    return parse_config(data, base_dir=tmp_path, environ=environ)


def litellm_cache(**cache_params: object) -> dict[str, object]:
    return {"litellm_settings": {"cache": True, "cache_params": cache_params}}


def answer(text: str) -> dict[str, Any]:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


def ask(text: str) -> Request:
    return Request.chat(model="gpt-4o", messages=[{"role": "user", "content": text}])


@pytest.fixture
def semantic_deps() -> None:
    """The semantic tier's extras (onnxruntime imported before usearch, as elsewhere)."""
    pytest.importorskip("numpy")
    pytest.importorskip("onnxruntime")
    if not _has_semantic():
        pytest.skip("usearch is not installed")


@pytest.fixture(scope="module")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("redis")
    from tests.stores.redis_servers import start_standalone

    server = start_standalone(tmp_path_factory.mktemp("valkey-env"))
    yield server
    server.kill()


# --------------------------------------------------------------------------- REDIS_*


def test_cache_true_alone_reads_redis_host_port_password(tmp_path: Path) -> None:
    settings = parse(
        {"litellm_settings": {"cache": True}},
        tmp_path,
        REDIS_HOST="redis.internal",
        REDIS_PORT="6380",
        REDIS_PASSWORD=SECRET,
        REDIS_USERNAME="deja",
        REDIS_SSL="True",
    )
    caching = settings.caching
    assert caching is not None and caching.type == "redis"
    options = caching.options
    assert (options["host"], options["port"], options["password"]) == (
        "redis.internal",
        6380,
        SECRET,
    )
    assert (options["username"], options["ssl"]) == ("deja", True)
    assert settings.warnings == ()
    assert SECRET not in repr(settings)


def test_redis_url_from_the_environment(tmp_path: Path) -> None:
    settings = parse(
        litellm_cache(type="redis"),
        tmp_path,
        REDIS_URL="redis://cache.internal:6379/2",
        REDIS_HOST="ignored.internal",
        REDIS_PASSWORD=SECRET,
    )
    assert settings.caching is not None
    options = settings.caching.options
    assert options["url"] == "redis://cache.internal:6379/2"
    # the URL is the address and carries its own credentials, as in LiteLLM
    assert options["host"] is None and options["password"] is None


def test_config_values_win_over_the_environment(tmp_path: Path) -> None:
    settings = parse(
        litellm_cache(type="redis", host="from-config", port=7000),
        tmp_path,
        REDIS_HOST="from-env",
        REDIS_PORT="6380",
        REDIS_URL="redis://from-env-url:6379/0",
        REDIS_PASSWORD=SECRET,
    )
    assert settings.caching is not None
    options = settings.caching.options
    assert (options["host"], options["port"], options["url"]) == ("from-config", 7000, None)
    assert options["password"] == SECRET  # unset in the block: the environment's, as LiteLLM


def test_redis_cluster_nodes_from_the_environment(tmp_path: Path) -> None:
    settings = parse(
        litellm_cache(type="redis"),
        tmp_path,
        REDIS_CLUSTER_NODES='[{"host": "10.0.0.1", "port": "7001"}, ["10.0.0.2", 7002]]',
    )
    assert settings.caching is not None
    assert settings.caching.options["startup_nodes"] == [("10.0.0.1", 7001), ("10.0.0.2", 7002)]


def test_bad_redis_variables_name_the_variable_and_hide_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse(litellm_cache(type="redis"), tmp_path, REDIS_HOST="h", REDIS_PORT="sixty")
    assert info.value.path == "litellm_settings.cache_params.port"
    assert "REDIS_PORT" in str(info.value) and "sixty" not in str(info.value)
    with pytest.raises(ConfigError, match="REDIS_CLUSTER_NODES is not a JSON list"):
        parse(litellm_cache(type="redis"), tmp_path, REDIS_CLUSTER_NODES="10.0.0.1:7000")


def test_redis_semantic_and_a_nested_redis_block_read_the_environment(tmp_path: Path) -> None:
    semantic = parse(
        litellm_cache(type="redis-semantic", similarity_threshold=0.8),
        tmp_path,
        REDIS_HOST="vectors.internal",
        REDIS_PORT="6390",
        REDIS_PASSWORD=SECRET,
    )
    assert semantic.caching is not None
    options = semantic.caching.options
    assert (options["host"], options["port"], options["password"]) == (
        "vectors.internal",
        6390,
        SECRET,
    )
    tiered = parse(
        {"caching": {"type": "dual_cache", "l2": {"type": "redis"}}},
        tmp_path,
        REDIS_HOST="l2.internal",
    )
    assert tiered.caching is not None
    assert tiered.caching.options["l2"].options["host"] == "l2.internal"  # type: ignore[attr-defined]


def test_a_litellm_redis_cache_without_any_address_is_warned(tmp_path: Path) -> None:
    (warning,) = parse({"litellm_settings": {"cache": True}}, tmp_path).warnings
    assert "no Redis address" in warning and "127.0.0.1:6379" in warning


def test_environment_variables_block_feeds_redis_host(tmp_path: Path) -> None:
    settings = parse(
        {
            "environment_variables": {"REDIS_HOST": "from-block", "REDIS_PORT": "6381"},
            "litellm_settings": {"cache": True},
        },
        tmp_path,
    )
    assert settings.caching is not None
    assert (settings.caching.options["host"], settings.caching.options["port"]) == (
        "from-block",
        6381,
    )


def test_redis_from_the_environment_stores_there(tmp_path: Path, valkey_server: Any) -> None:
    settings = parse(
        {"litellm_settings": {"cache": True, "cache_params": {"ttl": 60}}},
        tmp_path,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(valkey_server.port),
    )
    client = valkey_server.client()
    client.flushdb()
    cache = build_cache(settings)
    try:
        assert cache.fetch(ask("env redis"), lambda: answer("A")).info.status == "miss"
        assert cache.fetch(ask("env redis"), lambda: answer("B")).info.status == "hit"
    finally:
        cache.close()
    assert client.dbsize() >= 1


# --------------------------------------------------------------------------- QDRANT_*


def test_qdrant_url_and_key_from_the_environment(tmp_path: Path) -> None:
    for variable in ("QDRANT_URL", "QDRANT_API_BASE"):
        settings = parse(
            litellm_cache(type="qdrant-semantic", similarity_threshold=0.8),
            tmp_path,
            **{variable: "http://qdrant.internal:6333", "QDRANT_API_KEY": SECRET},
        )
        assert settings.caching is not None
        options = settings.caching.options
        assert options["qdrant_api_base"] == "http://qdrant.internal:6333"
        assert options["qdrant_api_key"] == SECRET
        assert settings.warnings == ()
        assert SECRET not in repr(settings)


def test_qdrant_config_wins_and_url_comes_before_api_base(tmp_path: Path) -> None:
    config = litellm_cache(type="qdrant-semantic", qdrant_api_base="http://config:6333")
    settings = parse(config, tmp_path, QDRANT_URL="http://env:6333")
    assert settings.caching is not None
    assert settings.caching.options["qdrant_api_base"] == "http://config:6333"
    both = parse(
        litellm_cache(type="qdrant-semantic"),
        tmp_path,
        QDRANT_URL="http://url:6333",
        QDRANT_API_BASE="http://base:6333",
    )
    assert both.caching is not None
    assert both.caching.options["qdrant_api_base"] == "http://url:6333"


def test_qdrant_without_a_server_is_warned(tmp_path: Path) -> None:
    (warning,) = parse(litellm_cache(type="qdrant-semantic"), tmp_path).warnings
    assert "no Qdrant server" in warning
    assert "lost at restart and not shared between workers" in warning


def test_the_qdrant_index_gets_the_environment_url(tmp_path: Path) -> None:
    pytest.importorskip("qdrant_client")
    settings = parse(
        litellm_cache(type="qdrant-semantic"), tmp_path, QDRANT_URL="http://qdrant.internal:6333"
    )
    assert settings.caching is not None
    index = settings.caching.build_semantic().index
    assert (index.url, index.path) == ("http://qdrant.internal:6333", None)


# --------------------------------------------------------------------------- nested ttl


def test_the_l2_ttl_of_a_dual_cache_is_the_entries_ttl(tmp_path: Path) -> None:
    config = {
        "caching": {
            "type": "dual_cache",
            "l1": {"type": "in-memory", "capacity": 10},
            "l2": {"type": "disk", "directory": "l2", "ttl": 3600},
            "invalidation_url": "redis://bus:6379/0",
        }
    }
    settings = parse(config, tmp_path)
    assert settings.caching is not None and settings.caching.ttl == 3600.0
    assert settings.warnings == ()
    cache = build_cache(settings)
    try:
        assert cache.ttl == 3600.0
    finally:
        cache.close()


def test_differing_nested_and_outer_ttls_take_the_shorter_with_a_warning(
    tmp_path: Path,
) -> None:
    config = {"caching": {"type": "dual_cache", "ttl": 7200, "l2": {"type": "memory", "ttl": 60}}}
    settings = parse(config, tmp_path)
    assert settings.caching is not None and settings.caching.ttl == 60.0
    (warning,) = settings.warnings
    assert "caching.l2.ttl (60 s) and caching.ttl (7200 s) differ" in warning
    semantic = parse(
        {"caching": {"type": "semantic", "store": {"type": "memory", "ttl": 30}}}, tmp_path
    )
    assert semantic.caching is not None and semantic.caching.ttl == 30.0


def test_the_l2_ttl_expires_redis_entries(tmp_path: Path, valkey_server: Any) -> None:
    config = {
        "caching": {
            "type": "dual_cache",
            "l1": {"type": "in-memory", "capacity": 50},
            "l2": {"type": "redis", "host": "127.0.0.1", "port": valkey_server.port, "ttl": 3600},
        }
    }
    client = valkey_server.client()
    client.flushdb()
    cache = build_cache(parse(config, tmp_path))
    try:
        cache.fetch(ask("dual"), lambda: answer("A"))
    finally:
        cache.close()
    keys = client.keys("deja:v1:*")
    assert keys
    assert all(0 < client.pttl(key) <= 3_600_000 for key in keys)


# --------------------------------------------------------------------------- documented keys

DOCUMENTED_GENERAL = [
    "use_x_forwarded_for",
    "service_account_settings",
    "image_generation_model",
    "proxy_batch_polling_interval",
    "alerting_args",
    "embedding_model",
    "default_team_disabled",
    "user_api_key_cache_ttl",
    "litellm_key_header_name",
    "moderation_model",
    "custom_sso",
    "allow_client_side_credentials",
    "use_azure_key_vault",
    "use_google_kms",
    "litellm_license",
    "forward_openai_org_id",
    "enable_oauth2_proxy_auth",
    "allow_user_auth",
    "oauth2_config_mappings",
    "routing_strategy",
    "num_retries",
]


@pytest.mark.parametrize("key", DOCUMENTED_GENERAL)
def test_documented_general_settings_are_warned_not_refused(tmp_path: Path, key: str) -> None:
    (warning,) = parse({"general_settings": {key: "x"}}, tmp_path).warnings
    assert f"general_settings.{key}" in warning
    assert warning.startswith("deja does not implement these LiteLLM settings")


@pytest.mark.parametrize("key", ["ssl_keyfile", "ssl_certfile", "socket_keepalive"])
def test_documented_cache_params_are_warned_not_refused(tmp_path: Path, key: str) -> None:
    settings = parse(litellm_cache(type="redis", host="r", **{key: None}), tmp_path)
    (warning,) = settings.warnings
    assert f"litellm_settings.cache_params.{key}" in warning


def test_the_embedding_timeout_without_a_semantic_tier_is_warned(tmp_path: Path) -> None:
    key = "semantic_cache_embedding_timeout"
    settings = parse(litellm_cache(type="redis", host="r", **{key: 2}), tmp_path)
    (warning,) = settings.warnings
    assert f"litellm_settings.cache_params.{key}" in warning


def test_tls_client_certificates_say_they_are_not_presented(tmp_path: Path) -> None:
    settings = parse(
        litellm_cache(type="redis", host="r", ssl=True, ssl_certfile="c.pem", ssl_keyfile="k.pem"),
        tmp_path,
        REDIS_SSL_CERTFILE="/etc/c.pem",
    )
    tls = [w for w in settings.warnings if "client certificates" in w]
    assert len(tls) == 1
    for name in (
        "litellm_settings.cache_params.ssl_certfile",
        "litellm_settings.cache_params.ssl_keyfile",
        "REDIS_SSL_CERTFILE",
    ):
        assert name in tls[0]
    nested = parse(
        {"caching": {"type": "dual_cache", "l2": {"type": "redis", "ssl_certfile": "c.pem"}}},
        tmp_path,
    )
    assert any("caching.l2.ssl_certfile" in w for w in nested.warnings)


def test_typos_are_still_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'master_key'"):
        parse({"general_settings": {"master_kye": "x"}}, tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'ssl_certfile'"):
        parse(litellm_cache(type="redis", ssl_certfle="c.pem"), tmp_path)


def test_unknown_keys_get_no_far_fetched_suggestion(tmp_path: Path) -> None:
    # a key neither deja nor LiteLLM's documentation knows: no "did you mean" for a
    # LiteLLM key that merely shares a prefix
    with pytest.raises(ConfigError) as info:
        parse({"general_settings": {"disable_telemetry": True}}, tmp_path)
    assert "did you mean" not in str(info.value)
    assert "neither a deja setting nor one LiteLLM documents here" in str(info.value)
    assert "master_key" in str(info.value)  # what deja reads there
    with pytest.raises(ConfigError, match="did you mean 'litellm_key_header_name'"):
        parse({"general_settings": {"litellm_key_header_nam": "x"}}, tmp_path)


def test_redis_url_is_litellms_name_for_the_url(tmp_path: Path) -> None:
    settings = parse(litellm_cache(type="redis", redis_url="redis://r:6379/1"), tmp_path)
    assert settings.caching is not None
    assert settings.caching.options["url"] == "redis://r:6379/1"


# --------------------------------------------------------------------------- supported_call_types


def test_supported_call_types_refuses_the_other_kinds(tmp_path: Path) -> None:
    settings = parse(
        {"caching": {"type": "memory", "supported_call_types": ["aembedding"]}}, tmp_path
    )
    assert settings.caching is not None
    assert settings.caching.call_types == frozenset({"embedding"})
    assert settings.warnings == ()  # as LiteLLM does it: the proxy's other routes bypass
    cache = build_cache(settings)
    try:  # chat is not a supported call type: never stored, so never a hit
        assert cache.fetch(ask("no chat"), lambda: answer("A")).info.status == "miss"
        assert cache.fetch(ask("no chat"), lambda: answer("B")).info.status == "miss"
    finally:
        cache.close()


def test_supported_call_types_admission_by_kind(tmp_path: Path) -> None:
    settings = parse(litellm_cache(type="local", supported_call_types=["acompletion"]), tmp_path)
    assert settings.caching is not None
    admission: Any = settings.caching.cache_kwargs()["admission"]
    embedding = {"object": "list", "data": [{"object": "embedding", "embedding": [0.1]}]}
    text = {"object": "text_completion", "choices": [{"text": "hi", "finish_reason": "stop"}]}
    assert admission.admit(answer("A")).ok
    assert not admission.admit(embedding).ok
    assert not admission.admit(text).ok
    cache = build_cache(settings)
    try:
        cache.fetch(ask("chat"), lambda: answer("A"))
        assert cache.fetch(ask("chat"), lambda: answer("B")).info.status == "hit"
    finally:
        cache.close()


async def test_the_proxy_bypasses_the_cache_for_calls_left_out(tmp_path: Path) -> None:
    import httpx2

    from deja.server.app import ProxyApp
    from deja.testing import FakeOpenAIServer

    with FakeOpenAIServer() as upstream:
        model = {"model": "openai/gpt-4o", "api_base": upstream.base_url, "api_key": "k"}
        config = {
            "model_list": [{"model_name": "gpt-4o", "litellm_params": model}],
            "caching": {"type": "memory", "supported_call_types": ["aembedding"]},
        }
        app = ProxyApp(parse(config, tmp_path))
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://proxy") as proxy:
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
            statuses = [
                (await proxy.post("/v1/chat/completions", json=body)).headers["x-deja-cache"]
                for _ in range(2)
            ]
    assert statuses == ["bypass", "bypass"]


def test_supported_call_types_typos_and_unserved_calls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'acompletion'") as info:
        parse(litellm_cache(type="local", supported_call_types=["acompletions"]), tmp_path)
    assert info.value.path == "litellm_settings.cache_params.supported_call_types[0]"
    settings = parse(
        litellm_cache(
            type="local",
            supported_call_types=[
                "acompletion",
                "atext_completion",
                "aembedding",
                "atranscription",
            ],
        ),
        tmp_path,
    )
    (warning,) = settings.warnings
    assert "atranscription: deja serves no such call" in warning
    assert "always miss" not in warning


# --------------------------------------------------------------------------- environment_variables


def test_load_config_exports_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEJA_TEST_EXPORTED", "old")  # restored after the test
    monkeypatch.setenv("DEJA_TEST_EXPORTED_KEY", "")
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""\
            environment_variables:
              DEJA_TEST_EXPORTED: new
              DEJA_TEST_EXPORTED_KEY: {SECRET}
            general_settings: {{master_key: os.environ/DEJA_TEST_EXPORTED_KEY}}
            """),
        encoding="utf-8",
    )
    settings = load_config(path)
    assert os.environ["DEJA_TEST_EXPORTED"] == "new"  # replaced, as LiteLLM does
    assert os.environ["DEJA_TEST_EXPORTED_KEY"] == SECRET
    assert settings.general.master_key == SECRET
    assert settings.warnings == ()
    assert SECRET not in repr(settings)


# --------------------------------------------------------------------------- semantic index


def test_semantic_with_a_shared_store_warns_that_its_index_is_per_process(
    tmp_path: Path,
) -> None:
    config = {
        "caching": {
            "type": "semantic",
            "store": {"type": "redis", "host": "r"},
            "params": {"semantic_save_interval": 1},
        }
    }
    (warning,) = parse(config, tmp_path).warnings
    assert "lost at restart and not shared between workers" in warning
    assert "caching.index_directory" in warning
    assert "caching.params.semantic_save_interval applies then" in warning


def test_a_save_interval_with_nothing_saved_is_warned(tmp_path: Path) -> None:
    config = {"caching": {"type": "semantic", "params": {"semantic_save_interval": 5}}}
    (warning,) = parse(config, tmp_path).warnings
    assert "caching.params.semantic_save_interval has no effect" in warning


def test_index_directory_saves_the_index_with_any_store(tmp_path: Path) -> None:
    config = {
        "caching": {
            "type": "semantic",
            "store": {"type": "redis", "host": "r"},
            "index_directory": "index",
            "params": {"semantic_save_interval": 1},
        }
    }
    settings = parse(config, tmp_path)
    assert settings.warnings == ()
    assert settings.caching is not None
    caching = settings.caching
    # cache_kwargs builds the (lazy) store and the semantic tier: check only what it passes
    kwargs = caching.cache_kwargs() if _has_semantic() else None
    if kwargs is not None:
        assert kwargs["semantic_path"] == tmp_path / "index"
        assert kwargs["semantic_save_interval"] == 1.0
        kwargs["store"].close()  # type: ignore[attr-defined]
    assert caching.options["index_directory"] == tmp_path / "index"


def test_index_directory_is_not_used_beside_a_memory_store(tmp_path: Path) -> None:
    """A memory store's entries are each worker's: a vector another worker shared through
    the directory pointed at nothing here, and was forgotten, and that removal shared back
    (the workers erased each other's vectors)."""
    config = {"caching": {"type": "semantic", "index_directory": "index"}}
    settings = parse(config, tmp_path)
    (warning,) = settings.warnings
    assert "caching.index_directory has no effect with a memory store" in warning
    assert settings.caching is not None
    if _has_semantic():
        assert "semantic_path" not in settings.caching.cache_kwargs()


def test_index_directory_on_a_shared_index_has_no_effect(tmp_path: Path) -> None:
    config = litellm_cache(type="redis-semantic", host="r", index_directory="x")
    with pytest.raises(ConfigError, match="unknown key"):
        parse(config, tmp_path)  # redis_semantic has no such option
    qdrant = litellm_cache(
        type="qdrant-semantic",
        qdrant_api_base="http://q:6333",
        index_directory="x",
        params={"semantic_save_interval": 3},
    )
    (warning,) = parse(qdrant, tmp_path).warnings
    assert "index_directory have no effect" in warning


def test_index_directory_shares_the_index_between_workers(
    tmp_path: Path, valkey_server: Any, semantic_deps: None
) -> None:
    config = {
        "caching": {
            "type": "semantic",
            "store": {"type": "redis", "host": "127.0.0.1", "port": valkey_server.port},
            "index_directory": "index",
            "params": {"embedding_model": "local", "semantic_save_interval": 1},
        }
    }
    valkey_server.client().flushdb()
    settings = parse(config, tmp_path)
    worker1, worker2 = build_cache(settings), build_cache(settings)
    try:
        assert worker1.semantic_save_interval == 1.0
        worker1.fetch(ask("How can I track my card?"), lambda: answer("A"))
        worker1.sync_semantic()
        reworded = worker2.fetch(
            ask("how do i track my card"), lambda: answer("B"), control={"no-store": True}
        )
        assert reworded.info.status == "semantic_hit"
    finally:
        worker1.close()
        worker2.close()
    restarted = build_cache(settings)
    try:
        again = restarted.fetch(
            ask("How could I track my card"), lambda: answer("C"), control={"no-store": True}
        )
        assert again.info.status == "semantic_hit"
    finally:
        restarted.close()


def _has_semantic() -> bool:
    import importlib.util

    return all(
        importlib.util.find_spec(name) is not None for name in ("numpy", "onnxruntime", "usearch")
    )
