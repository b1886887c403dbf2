"""The semantic tier's configuration: ``params``, its embedding model and its index name.

No test reaches the internet: an embedder that must run is pointed at a
:class:`~deja.testing.FakeOpenAIServer`; the others check the built objects only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from deja.config import CachingSettings, Settings, build_cache, parse_config
from deja.errors import ConfigError
from deja.testing import FakeOpenAIServer

SECRET = "sk-deployment-secret"


def parse(data: Mapping[str, object], tmp_path: Path) -> Settings:
    return parse_config(data, base_dir=tmp_path, environ={})


def caching_of(data: Mapping[str, object], tmp_path: Path) -> CachingSettings:
    caching = parse(data, tmp_path).caching
    assert caching is not None
    return caching


def error_of(data: Mapping[str, object], tmp_path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(data, tmp_path)
    return info.value


def semantic(params: Mapping[str, object], **more: object) -> dict[str, object]:
    return {"caching": {"type": "semantic", "params": dict(params), **more}}


def deployment(name: str, **litellm_params: object) -> dict[str, object]:
    return {"model_name": name, "litellm_params": litellm_params}


@pytest.fixture
def semantic_deps() -> None:
    """The semantic tier's extras (onnxruntime imported before usearch: see its conftest)."""
    pytest.importorskip("numpy")
    pytest.importorskip("onnxruntime")
    if importlib.util.find_spec("usearch") is None:
        pytest.skip("usearch is not installed")


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(api_key=SECRET, embedding_dim=1536) as server:
        yield server


# --------------------------------------------------------------------------- params keys


@pytest.mark.parametrize(
    ("key", "suggested"),
    [
        ("embeding_model", "embedding_model"),
        ("max_strike", "max_strikes"),
        ("semantic_save_intervall", "semantic_save_interval"),
        ("dimension", "dimensions"),
        ("api_bse", "api_base"),
    ],
)
def test_a_misspelt_params_key_is_an_error_with_a_suggestion(
    tmp_path: Path, key: str, suggested: str
) -> None:
    error = error_of(semantic({key: 1}), tmp_path)
    assert error.path == f"caching.params.{key}"
    assert f"did you mean {suggested!r}?" in str(error)


def test_an_unknown_params_key_lists_the_known_ones(tmp_path: Path) -> None:
    error = error_of(semantic({"colour": "blue"}), tmp_path)
    assert error.path == "caching.params.colour"
    assert "expected one of: api_base, api_key, dimensions, embedding_model" in str(error)


def test_litellm_cache_params_params_are_checked_too(tmp_path: Path) -> None:
    config = {
        "litellm_settings": {
            "cache": True,
            "cache_params": {"type": "qdrant_semantic", "params": {"embeding_model": "x"}},
        }
    }
    error = error_of(config, tmp_path)
    assert error.path == "litellm_settings.cache_params.params.embeding_model"


@pytest.mark.parametrize(
    ("params", "path", "expected"),
    [
        ({"dimensions": 0}, "dimensions", "at least 1"),
        ({"dimensions": "big"}, "dimensions", "a number of dimensions"),
        ({"dimensions": 1.5}, "dimensions", "a number of dimensions"),
        ({"embedding_model": 3}, "embedding_model", "an embedding model name"),
        ({"embedding_model": " "}, "embedding_model", "empty"),
        ({"api_base": "localhost:8000"}, "api_base", "http:// or https:// URL"),
        ({"api_key": 42}, "api_key", "value hidden"),
        ({"semantic_save_interval": 0}, "semantic_save_interval", "positive"),
        ({"max_strikes": True}, "max_strikes", "wrong-answer reports"),
    ],
)
def test_params_values_are_type_checked(
    tmp_path: Path, params: dict[str, object], path: str, expected: str
) -> None:
    error = error_of(semantic({"embedding_model": "m", "dimensions": 8, **params}), tmp_path)
    assert error.path == f"caching.params.{path}"
    assert expected in str(error)


def test_checked_params_are_kept_typed_and_nulls_dropped(tmp_path: Path) -> None:
    params = {
        "embedding_model": "bge-small",
        "dimensions": 384,
        "api_base": "http://embed.internal/v1",
        "api_key": "k",
        "max_strikes": 3,
        "strike_penalty": 0,
        "semantic_save_interval": 5,
        "api_version": None,
    }
    with pytest.raises(ConfigError):  # api_version is not a params key, null or not
        parse(semantic(params), tmp_path)
    del params["api_version"]
    caching = caching_of(semantic({**params, "dimensions": None}), tmp_path)
    assert "dimensions" not in caching.params
    caching = caching_of(semantic(params), tmp_path)
    assert caching.params == {**params, "strike_penalty": 0.0, "semantic_save_interval": 5.0}


# --------------------------------------------------------------------------- unused keys


@pytest.mark.parametrize(
    ("more", "named"),
    [
        ({"similarity_threshold": 0.9}, "caching.similarity_threshold has no effect"),
        ({"params": {"max_strikes": 1}}, "caching.params has no effect"),
        (
            {"similarity_threshold": 0.9, "params": {"embedding_model": "local"}},
            "caching.similarity_threshold and caching.params have no effect",
        ),
    ],
)
def test_semantic_keys_on_a_cache_without_a_semantic_tier_warn(
    tmp_path: Path, more: dict[str, object], named: str
) -> None:
    settings = parse({"caching": {"type": "memory", **more}}, tmp_path)
    (warning,) = settings.warnings
    assert named in warning
    assert "'memory' has no semantic tier" in warning


def test_semantic_keys_on_a_litellm_redis_cache_warn(tmp_path: Path) -> None:
    config = {
        "litellm_settings": {
            "cache": True,
            "cache_params": {"type": "redis", "host": "r", "similarity_threshold": 0.8},
        }
    }
    (warning,) = parse(config, tmp_path).warnings
    assert "litellm_settings.cache_params.similarity_threshold has no effect" in warning


def test_semantic_keys_on_a_semantic_cache_do_not_warn(tmp_path: Path) -> None:
    settings = parse(semantic({"max_strikes": 1}, similarity_threshold=0.9), tmp_path)
    assert settings.warnings == ()


def test_endpoint_params_with_the_local_model_warn(tmp_path: Path) -> None:
    settings = parse(semantic({"dimensions": 16, "api_key": "k"}), tmp_path)
    (warning,) = settings.warnings
    assert "caching.params.dimensions, caching.params.api_key have no effect" in warning
    assert "local embedding model" in warning


# --------------------------------------------------------------------------- dimensions


def test_params_dimensions_reaches_the_embedder(tmp_path: Path, semantic_deps: None) -> None:
    with FakeOpenAIServer(api_key=SECRET) as server:  # 16-dimensional vectors
        params = {
            "embedding_model": "my-org/unknown-embedder",
            "dimensions": 16,
            "api_base": server.base_url,
            "api_key": SECRET,
        }
        tier = caching_of(semantic(params), tmp_path).build_semantic()
        assert (tier.embedder.dim, tier.embedder.dimensions) == (16, 16)
        assert tier.embedder.embed(["How can I track my card?"]).shape == (1, 16)
        (request,) = server.requests
        assert request.body["dimensions"] == 16


def _but_threshold(warnings: tuple[str, ...]) -> list[str]:
    """The warnings but the one every remote embedder without a similarity_threshold gets
    (tested on its own in tests/semantic/test_remote_embedder_audit19.py) and the one of
    a remote embedder without credentials (these tests' environment is empty: tested on
    its own below)."""
    return [
        w
        for w in warnings
        if "no similarity_threshold for embedding model" not in w and NO_KEY not in w
    ]


NO_KEY = "OpenAI will refuse every embedding call"


def test_a_remote_embedder_without_credentials_is_warned_of_at_start(tmp_path: Path) -> None:
    """The seed guide's semantic snippet, as written (its embedding model no model_list name,
    no key): every lookup failed, and /health/ready said ok until the breaker opened."""
    remote = {"embedding_model": "text-embedding-3-small"}
    (warning,) = [w for w in parse(semantic(remote), tmp_path).warnings if NO_KEY in w]
    assert "params.embedding_model" in warning and "'text-embedding-3-small'" in warning
    keyed = parse_config(semantic(remote), base_dir=tmp_path, environ={"OPENAI_API_KEY": "k"})
    local_server = semantic({**remote, "api_base": "http://127.0.0.1:8080/v1"})
    deployed = {
        **semantic({"embedding_model": "embedder"}),
        "model_list": [
            {
                "model_name": "embedder",
                "litellm_params": {"model": "openai/text-embedding-3-small", "api_key": "k"},
            }
        ],
    }
    for settings in (keyed, parse(local_server, tmp_path), parse(deployed, tmp_path)):
        assert not any(NO_KEY in w for w in settings.warnings)


def test_the_embedding_timeout_comes_from_params_litellm_or_the_deployment(
    tmp_path: Path, semantic_deps: None
) -> None:
    """LiteLLM's semantic_cache_embedding_timeout was listed as ignored, and the embedding
    deployment's own timeout too: the embedder waited 600 s (twice per miss)."""
    remote = {"embedding_model": "text-embedding-3-small"}
    default = caching_of(semantic(remote), tmp_path).build_semantic()
    assert default.embedder.timeout == 5.0
    given = caching_of(semantic({**remote, "timeout": 1.5}), tmp_path).build_semantic()
    assert given.embedder.timeout == 1.5
    litellm = semantic(remote, semantic_cache_embedding_timeout=2)
    assert caching_of(litellm, tmp_path).params["timeout"] == 2.0
    assert _but_threshold(parse(litellm, tmp_path).warnings) == []
    both = semantic({**remote, "timeout": 1}, semantic_cache_embedding_timeout=2)
    assert "keep one" in str(error_of(both, tmp_path))
    (local,) = parse(semantic({}, semantic_cache_embedding_timeout=2), tmp_path).warnings
    assert "semantic_cache_embedding_timeout has no effect with the local" in local
    config = {
        "model_list": [deployment("my-embedding", model="openai/e", timeout=3)],
        **semantic({"embedding_model": "my-embedding", "dimensions": 8}),
    }
    assert caching_of(config, tmp_path).params["timeout"] == 3


def test_an_unknown_embedding_size_names_the_config_key(
    tmp_path: Path, semantic_deps: None
) -> None:
    caching = caching_of(semantic({"embedding_model": "my-org/unknown-embedder"}), tmp_path)
    with pytest.raises(ConfigError, match=r"params\.dimensions"):
        caching.build_semantic()


# --------------------------------------------------------------------------- model_list


def test_an_embedding_alias_resolves_through_model_list(tmp_path: Path) -> None:
    config = {
        "model_list": [
            deployment("gpt-4o", model="openai/gpt-4o"),
            deployment(
                "my-embedding",
                model="openai/text-embedding-3-small",
                api_base="http://embed.internal/v1",
                api_key=SECRET,
            ),
        ],
        **semantic({"embedding_model": "my-embedding", "dimensions": 512}),
    }
    assert caching_of(config, tmp_path).params == {
        "embedding_model": "openai/text-embedding-3-small",
        "dimensions": 512,
        "api_base": "http://embed.internal/v1",
        "api_key": SECRET,
    }


def test_explicit_params_endpoint_wins_over_the_deployment(tmp_path: Path) -> None:
    config = {
        "model_list": [
            deployment("my-embedding", model="openai/e", api_base="http://a.internal", api_key="ka")
        ],
        **semantic(
            {"embedding_model": "my-embedding", "api_base": "http://b.internal", "api_key": "kb"}
        ),
    }
    params = caching_of(config, tmp_path).params
    assert (params["embedding_model"], params["api_base"], params["api_key"]) == (
        "openai/e",
        "http://b.internal",
        "kb",
    )


def test_a_name_not_in_model_list_is_kept(tmp_path: Path) -> None:
    config = {
        "model_list": [deployment("gpt-4o", model="openai/gpt-4o", api_key=SECRET)],
        **semantic({"embedding_model": "text-embedding-3-small"}),
    }
    assert caching_of(config, tmp_path).params == {"embedding_model": "text-embedding-3-small"}


def test_duplicate_deployments_of_the_embedding_model_warn(tmp_path: Path) -> None:
    config = {
        "model_list": [
            deployment("emb", model="openai/text-embedding-3-small", api_base="http://a.x"),
            deployment("emb", model="openai/text-embedding-3-small", api_base="http://b.x"),
        ],
        **semantic({"embedding_model": "emb"}),
    }
    settings = parse(config, tmp_path)
    assert settings.caching is not None and settings.caching.params["api_base"] == "http://a.x"
    (warning,) = _but_threshold(settings.warnings)
    assert "2 deployments named 'emb'" in warning


def test_litellm_redis_semantic_embedding_alias_and_index_name(
    tmp_path: Path, semantic_deps: None
) -> None:
    pytest.importorskip("redis")
    config = {
        "model_list": [
            deployment(
                "my-embedding",
                model="openai/text-embedding-3-small",
                api_base="http://embed.internal/v1",
                api_key=SECRET,
            )
        ],
        "litellm_settings": {
            "cache": True,
            "cache_params": {
                "type": "redis-semantic",
                "host": "127.0.0.1",
                "port": 1,
                "redis_semantic_cache_embedding_model": "my-embedding",
                "redis_semantic_cache_index_name": "team-index",
            },
        },
    }
    settings = parse(config, tmp_path)
    # the index name is used, not listed as ignored
    assert _but_threshold(settings.warnings) == []
    caching = settings.caching
    assert caching is not None and caching.options["index_name"] == "team-index"
    tier = caching.build_semantic()  # no I/O: the index connects on first use
    assert tier.index.index_name == "team-index"
    assert (tier.embedder.model, tier.embedder.api_base, tier.embedder.api_key) == (
        "openai/text-embedding-3-small",
        "http://embed.internal/v1",
        SECRET,
    )


def test_the_index_name_key_is_still_ignored_on_other_types(tmp_path: Path) -> None:
    config = {
        "litellm_settings": {
            "cache": True,
            "cache_params": {"type": "local", "redis_semantic_cache_index_name": "x"},
        }
    }
    (warning,) = parse(config, tmp_path).warnings
    assert "litellm_settings.cache_params.redis_semantic_cache_index_name" in warning


def test_a_model_name_in_model_list_embeds_through_that_deployment(
    tmp_path: Path, semantic_deps: None, upstream: FakeOpenAIServer
) -> None:
    config = {
        "model_list": [
            deployment(
                "text-embedding-3-small",
                model="openai/text-embedding-3-small",
                api_base=upstream.base_url,
                api_key=SECRET,
            )
        ],
        **semantic({"embedding_model": "text-embedding-3-small"}),
    }
    cache: Any = build_cache(parse(config, tmp_path))
    try:
        embedder = cache.semantic.embedder
        # checked before any call, so a wrong endpoint never reaches the internet
        assert (embedder.api_base, embedder.api_key) == (upstream.base_url, SECRET)
        assert embedder.embed(["How can I track my card?"]).shape == (1, 1536)
    finally:
        cache.close()
    (request,) = upstream.requests
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.body["model"] == "text-embedding-3-small"
    assert "dimensions" not in request.body


def test_the_in_process_index_is_bounded_by_params_or_by_the_memory_store(
    tmp_path: Path,
) -> None:
    """A vector whose answer the exact store evicted only takes room: the index keeps at
    most what a memory store keeps, unless params.max_entries says otherwise."""

    def bound(caching: dict[str, Any]) -> int:
        settings = parse_config({"caching": caching}, base_dir=tmp_path)
        assert settings.caching is not None
        semantic = settings.caching.build_semantic()
        return int(semantic.index.max_entries)

    assert bound({"type": "semantic", "store": {"type": "memory", "max_entries": 1500}}) == 1500
    assert bound({"type": "semantic"}) == 10_000  # the memory store's default
    assert bound({"type": "semantic", "params": {"max_entries": 300}}) == 300
    disk = {"type": "disk", "directory": str(tmp_path / "c")}
    assert bound({"type": "semantic", "store": disk}) == 100_000
    with pytest.raises(ConfigError, match="in-process semantic index") as err:
        parse_config(
            {"caching": {"type": "redis_semantic", "params": {"max_entries": 300}}},
            base_dir=tmp_path,
        )
    assert err.value.path == "caching.params.max_entries"
