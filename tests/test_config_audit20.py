"""Configurations as a new user writes them (audit 20): an embedding deployment's settings
reach the semantic tier's calls, LiteLLM's request parameters in ``litellm_params`` are sent
and keyed, and what the OS, HTTP or a pipe cannot take is said at load, naming the path."""

from __future__ import annotations

import datetime
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from deja.cli import main
from deja.config import load_config, parse_config
from deja.errors import ConfigError
from deja.server.app import ProxyApp
from deja.stores.memory import MemoryStore
from deja.testing import FakeOpenAIServer

CHAT = "/v1/chat/completions"


@pytest.fixture
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(embedding_dim=1536) as server:
        yield server


def _client(app: ProxyApp) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://proxy")


def _chat(content: str, model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


# -- 1. the semantic tier embeds with its deployment's full settings -------------------------


def _semantic_config(upstream: FakeOpenAIServer, embedding: str) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "my-embedding",
                "litellm_params": {
                    "model": "openai/text-embedding-3-small",
                    "api_base": upstream.base_url,
                    "api_key": "sk-emb",
                    "organization": "org-123",
                    "extra_headers": {"X-Gateway-Key": "gw-secret"},
                },
            },
            {
                "model_name": "azure-embedding",
                "litellm_params": {
                    "model": "azure/text-embedding-3-small",
                    "api_base": upstream.url,
                    "api_key": "az-key",
                    "api_version": "2024-02-01",
                },
            },
        ],
        "caching": {
            "type": "semantic",
            "similarity_threshold": 0.8,
            "params": {"embedding_model": embedding},
        },
    }


@pytest.mark.parametrize("store", [None, MemoryStore], ids=["no-store", "vectors-cached"])
def test_the_tier_sends_the_deployments_headers_and_organization(
    upstream: FakeOpenAIServer, tmp_path: Path, store: type[MemoryStore] | None
) -> None:
    """Only api_base, api_key and timeout were taken: behind a gateway that needs its
    header, every embedding failed and the tier turned itself off."""
    settings = parse_config(_semantic_config(upstream, "my-embedding"), base_dir=tmp_path)
    assert settings.caching is not None
    tier = settings.caching.build_semantic(None if store is None else store())
    tier.embedder.embed(["How do I reset my password?"])
    (sent,) = [r for r in upstream.requests if r.path.endswith("/embeddings")]
    assert sent.headers["x-gateway-key"] == "gw-secret"
    assert sent.headers["openai-organization"] == "org-123"
    assert sent.headers["authorization"] == "Bearer sk-emb"


async def test_the_tier_sends_the_deployments_headers_from_the_proxy_too(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    config = _semantic_config(upstream, "my-embedding")
    config["model_list"].append(
        {
            "model_name": "gpt-4o",
            "litellm_params": {
                "model": "openai/gpt-4o",
                "api_base": upstream.base_url,
                "api_key": "sk-up",
            },
        }
    )
    app = ProxyApp(parse_config(config, base_dir=tmp_path, environ={}))
    try:
        async with _client(app) as proxy:
            answer = await proxy.post(CHAT, json=_chat("How do I reset my password?", "gpt-4o"))
    finally:
        await app.aclose()
    assert answer.status_code == 200, answer.text
    embedded = [r for r in upstream.requests if r.path.endswith("/embeddings")]
    assert embedded and all(r.headers.get("x-gateway-key") == "gw-secret" for r in embedded)


def test_the_tier_calls_an_azure_deployment_at_its_api_version(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """The client's default version went out instead of the deployment's."""
    settings = parse_config(_semantic_config(upstream, "azure-embedding"), base_dir=tmp_path)
    assert settings.caching is not None
    tier = settings.caching.build_semantic()
    tier.embedder.embed(["How do I reset my password?"])
    (sent,) = upstream.requests
    assert sent.path == "/openai/deployments/text-embedding-3-small/embeddings"
    assert sent.query == "api-version=2024-02-01"
    assert sent.headers["api-key"] == "az-key"


# -- 2. LiteLLM's completion() parameters in litellm_params ----------------------------------


def _deployment(upstream: FakeOpenAIServer, name: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {
            "model": "openai/my-model",
            "api_base": upstream.base_url,
            "api_key": "sk-up",
            **params,
        },
    }


async def test_completion_parameters_are_sent_as_keyed_defaults(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """They stopped the start: "neither a deja setting nor one LiteLLM documents here"."""
    tuned = {
        "top_k": 40,
        "n": 1,
        "tool_choice": "none",
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "keep_alive": "10m",
        "extra_body": {"repetition_penalty": 1.1, "guided_json": {"type": "object"}},
    }
    config = {
        "model_list": [
            _deployment(upstream, "tuned", **tuned),
            _deployment(upstream, "plain"),
        ],
        "caching": {"type": "memory"},
    }
    app = ProxyApp(parse_config(config, base_dir=tmp_path, environ={}))
    try:
        async with _client(app) as proxy:
            first = await proxy.post(CHAT, json=_chat("Hi", "tuned"))
            again = await proxy.post(CHAT, json=_chat("Hi", "tuned"))
            plain = await proxy.post(CHAT, json=_chat("Hi", "plain"))
            own = await proxy.post(CHAT, json={**_chat("Hi", "tuned"), "top_k": 5})
    finally:
        await app.aclose()
    assert all(r.status_code == 200 for r in (first, again, plain, own)), first.text
    sent = [r.body for r in upstream.requests]
    assert len(sent) == 3  # the repeat was a hit
    expected = {k: v for k, v in tuned.items() if k != "extra_body"} | tuned["extra_body"]
    assert {k: sent[0][k] for k in expected} == expected
    assert "extra_body" not in sent[0]
    assert not set(expected) & set(sent[1])  # the other deployment's calls carry none
    assert sent[2]["top_k"] == 5  # the caller's own value wins
    assert again.headers["x-deja-cache"] == "hit"
    # keyed: the defaults change the answer, so the plain deployment's is another entry
    assert first.headers["x-deja-cache-key"] != plain.headers["x-deja-cache-key"]
    assert own.headers["x-deja-cache-key"] != first.headers["x-deja-cache-key"]


def _litellm_params_error(tmp_path: Path, **params: Any) -> str:
    config = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m", **params}}]
    }
    with pytest.raises(ConfigError) as info:
        parse_config(config, base_dir=tmp_path, environ={})
    return str(info.value)


def test_misspelt_settings_are_still_errors(tmp_path: Path) -> None:
    said = _litellm_params_error(tmp_path, temprature=0)
    assert "litellm_params.temprature" in said and "did you mean 'temperature'" in said
    said = _litellm_params_error(tmp_path, api_kye="sk")
    assert "did you mean 'api_key'" in said


def test_an_unlisted_key_is_not_said_to_be_undocumented(tmp_path: Path) -> None:
    """LiteLLM documents that it passes any other key to the provider."""
    said = _litellm_params_error(tmp_path, guided_json={"type": "object"})
    assert "litellm_params.guided_json" in said
    assert "documents" not in said and "did you mean" not in said
    assert "LiteLLM would pass it on to the provider" in said and "extra_body" in said
    assert "top_k" in said  # the request parameters deja does send are listed


def test_extra_body_entries_are_checked(tmp_path: Path) -> None:
    said = _litellm_params_error(tmp_path, extra_body={"messages": []})
    assert "litellm_params.extra_body.messages" in said and "request's own field" in said
    said = _litellm_params_error(tmp_path, top_k=3, extra_body={"top_k": 4})
    assert "extra_body.top_k" in said and "keep one" in said


def test_a_default_stream_is_warned_about_not_sent(tmp_path: Path) -> None:
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m"}}]}
    config["model_list"][0]["litellm_params"]["stream"] = True
    settings = parse_config(config, base_dir=tmp_path, environ={})
    assert "stream" not in settings.model_list[0].litellm_params
    assert any("litellm_params.stream" in w for w in settings.warnings)


# -- 3. environment_variables the OS cannot hold ---------------------------------------------


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ('{"MY=VAR": x}', "environment_variables.MY=VAR"),
        ('{"": x}', "environment_variables"),
        ('{TOKEN: "abc\\0def"}', "environment_variables.TOKEN"),
        ('{TOKEN: "abc\\ud800"}', "environment_variables.TOKEN"),
    ],
)
def test_an_environment_variable_the_os_refuses_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], block: str, path: str
) -> None:
    """A bare ValueError / OSError came out of os.environ: a traceback, exit code 1."""
    file = tmp_path / "config.yaml"
    file.write_text(f"environment_variables: {block}\ncaching: {{type: memory}}\n")
    before = dict(os.environ)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert info.value.path == path
    assert "abc" not in str(info.value)  # a value is never shown
    assert dict(os.environ) == before
    assert main(["serve", "--config", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deja: error: {path}: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# -- 4. a config read from a pipe ------------------------------------------------------------


def _write_into(fd: int, text: str) -> threading.Thread:
    def write() -> None:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)

    writer = threading.Thread(target=write)
    writer.start()
    return writer


def test_a_piped_config_resolves_relative_paths_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They resolved against /dev/fd: the shipped examples could not start piped."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    text = "caching: {type: disk, directory: ./cache}\nhooks: [{path: h.py, key_builder: k}]\n"
    read, write = os.pipe()
    writer = _write_into(write, text)
    try:
        settings = load_config(f"/dev/fd/{read}")
    finally:
        writer.join()
        os.close(read)
    assert settings.base_dir == work
    assert settings.caching is not None
    assert settings.caching.options["directory"] == work / "cache"
    assert settings.hooks[0].path == work / "h.py"
    # a worker process loads the parent's copy, under the name of a pipe it does not have
    worker = load_config(f"/dev/fd/{read}", text=text, log_warnings=False)
    assert worker.base_dir == work


def test_a_fifo_config_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "fifos" / "config.yaml"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    monkeypatch.chdir(tmp_path)
    # the writer opens the FIFO itself, which waits for the reader: a FIFO opened and closed
    # by a writer before its reader opened it drops what was written, and the reader waits
    writer = threading.Thread(
        target=fifo.write_text, args=("caching: {type: disk, directory: c}\n",)
    )
    writer.start()
    try:
        settings = load_config(fifo)
    finally:
        writer.join()
    assert settings.base_dir == tmp_path
    regular = tmp_path / "files" / "config.yaml"
    regular.parent.mkdir()
    regular.write_text("caching: {type: disk, directory: c}\n")
    assert load_config(regular).base_dir == regular.parent  # a file's own directory still


def test_a_missing_relative_file_says_what_relative_paths_resolve_against(
    tmp_path: Path,
) -> None:
    file = tmp_path / "config.yaml"
    file.write_text("hooks: [{path: nowhere.py, key_builder: k}]\n")
    settings = load_config(file)
    with pytest.raises(ConfigError) as info:
        settings.hooks[0].load("k")
    assert f"no such file: {tmp_path / 'nowhere.py'}" in str(info.value)
    assert "the working directory for a config read from a pipe" in str(info.value)


# -- 5. provider keys and headers with a newline or a control character ----------------------


async def test_a_key_with_a_trailing_newline_is_stripped(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """A Kubernetes secret made from a file: every request was a 502 "cannot reach the
    upstream", the upstream receiving nothing."""
    config = {
        "model_list": [
            _deployment(
                upstream,
                "gpt-4o",
                api_key="os.environ/OPENAI_API_KEY",
                organization="org-1\n",
                extra_headers={"X-Gateway-Key": "os.environ/GATEWAY_KEY"},
            )
        ]
    }
    environ = {"OPENAI_API_KEY": "sk-up\n", "GATEWAY_KEY": " gw\r\n"}
    app = ProxyApp(parse_config(config, base_dir=tmp_path, environ=environ))
    try:
        async with _client(app) as proxy:
            answer = await proxy.post(CHAT, json=_chat("Hi", "gpt-4o"))
    finally:
        await app.aclose()
    assert answer.status_code == 200, answer.text
    (sent,) = upstream.requests
    assert sent.headers["authorization"] == "Bearer sk-up"
    assert sent.headers["openai-organization"] == "org-1"
    assert sent.headers["x-gateway-key"] == "gw"


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"api_key": "os.environ/KEY"}, "model_list[0].litellm_params.api_key"),
        ({"aws_secret_access_key": "os.environ/KEY"}, "aws_secret_access_key"),
        ({"extra_headers": {"X-Key": "os.environ/KEY"}}, "litellm_params.extra_headers.X-Key"),
    ],
)
def test_a_key_with_a_line_break_inside_is_refused_at_load(
    tmp_path: Path, params: dict[str, Any], path: str
) -> None:
    config = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m", **params}}]
    }
    with pytest.raises(ConfigError) as info:
        parse_config(config, base_dir=tmp_path, environ={"KEY": "sk-one\nsk-two"})
    assert info.value.path is not None and info.value.path.endswith(path)
    assert "control character" in str(info.value) and "sk-one" not in str(info.value)


def test_the_semantic_tiers_own_key_is_stripped_too(tmp_path: Path) -> None:
    config = {
        "caching": {
            "type": "semantic",
            "params": {"embedding_model": "text-embedding-3-small", "api_key": "os.environ/K"},
        }
    }
    settings = parse_config(config, base_dir=tmp_path, environ={"K": "sk-emb\n"})
    assert settings.caching is not None and settings.caching.params["api_key"] == "sk-emb"


# -- 6a. an empty Redis host -----------------------------------------------------------------


def test_an_empty_redis_host_from_the_environment_is_refused(tmp_path: Path) -> None:
    """It started, every lookup a miss against ':6379'."""
    config = {"caching": {"type": "redis", "host": "os.environ/REDIS_HOST", "port": 6379}}
    with pytest.raises(ConfigError) as info:
        parse_config(config, base_dir=tmp_path, environ={"REDIS_HOST": ""})
    assert info.value.path == "caching.host" and "must not be empty" in str(info.value)


async def test_defaults_with_number_keys_are_sent_as_json_writes_them(
    upstream: FakeOpenAIServer, tmp_path: Path
) -> None:
    """YAML reads ``logit_bias: {50256: -100}`` with int keys: the proxy died at start with
    a bare TypeError (a wildcard route: a 500 on every request)."""
    text = f"""
model_list:
  - model_name: biased
    litellm_params:
      model: openai/gpt-4o
      api_base: {upstream.base_url}
      api_key: sk-test
      logit_bias: {{50256: -100}}
      extra_body: {{allowed_token_ids_bias: {{128001: 5, true: 1}}}}
"""
    file = tmp_path / "config.yaml"
    file.write_text(text)
    app = ProxyApp(load_config(file))
    try:
        async with _client(app) as proxy:
            answer = await proxy.post(CHAT, json=_chat("Hi", "biased"))
    finally:
        await app.aclose()
    assert answer.status_code == 200, answer.text
    sent = upstream.requests[-1].body
    assert sent["logit_bias"] == {"50256": -100}
    assert sent["allowed_token_ids_bias"] == {"128001": 5, "true": 1}


def test_a_default_json_cannot_carry_is_refused_at_load(tmp_path: Path) -> None:
    said = _litellm_params_error(tmp_path, stop=datetime.date(2026, 1, 1))
    assert "litellm_params.stop" in said and "JSON value" in said


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"temperature": float("nan")}, "litellm_params.temperature"),
        ({"extra_body": {"guided_x": float("inf")}}, "litellm_params.extra_body.guided_x"),
        ({"logit_bias": {"50256": float("-inf")}}, "litellm_params.logit_bias.50256"),
    ],
)
def test_a_default_that_is_no_finite_number_is_refused_at_load(
    tmp_path: Path, params: dict[str, Any], where: str
) -> None:
    """YAML's ``.nan`` / ``.inf``: the proxy started, then every request of the model was
    a 400 telling the caller its own request was wrong, for a field it never sent."""
    said = _litellm_params_error(tmp_path, **params)
    assert where in said and "finite number" in said


def test_a_top_level_key_written_inside_a_block_says_where_it_goes(tmp_path: Path) -> None:
    """``cache_responses`` beside ``cache_params`` was "unknown key in litellm_settings"."""
    config = {"litellm_settings": {"cache_responses": True, "cache": True}}
    with pytest.raises(ConfigError) as info:
        parse_config(config, base_dir=tmp_path, environ={})
    assert info.value.path == "litellm_settings.cache_responses"
    assert "cache_responses is a top-level key" in str(info.value)


def test_a_deployments_two_retry_counts_must_agree(tmp_path: Path) -> None:
    said = _litellm_params_error(tmp_path, max_retries=2, num_retries=0)
    assert "litellm_params.num_retries" in said and "say two things" in said
