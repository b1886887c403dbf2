"""The proxy in front of Bedrock and Gemini: a LiteLLM-style model_list with provider
settings per deployment, OpenAI's format in and out, provider caching per deployment."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest

from deja.providers.bedrock import AwsCredentials
from deja.testing import FakeBedrockServer, FakeGeminiServer
from tests.helpers import without_packages
from tests.server.conftest import MASTER, TEAM_A, half_priced_claude

pytest.importorskip("botocore")
pytest.importorskip("cryptography")

AWS = AwsCredentials("AKIDPROXY", "proxy-secret-key")
MANUAL = "Policy 9: expenses above 100 EUR need a receipt and a manager's approval. " * 150


@pytest.fixture
def bedrock() -> Iterator[FakeBedrockServer]:
    with FakeBedrockServer(credentials=AWS, region="eu-west-3") as server:
        yield server


@pytest.fixture
def gemini() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as server:
        yield server


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_BEARER_TOKEN_BEDROCK",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def config(bedrock: FakeBedrockServer, gemini: FakeGeminiServer) -> dict[str, Any]:
    system_point = [{"location": "message", "role": "system"}]
    return {
        "model_list": [
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
                    "api_base": bedrock.url,
                    "aws_access_key_id": AWS.access_key,
                    "aws_secret_access_key": AWS.secret_key,
                    "aws_region_name": "eu-west-3",
                    "cache_control_injection_points": system_point,
                },
            },
            {
                "model_name": "gemini",
                "litellm_params": {
                    "model": "vertex_ai/gemini-2.5-flash",
                    "api_base": gemini.url,
                    "vertex_project": "acme-prod",
                    "vertex_location": "europe-west1",
                    "vertex_credentials": json.dumps(gemini.service_account()),
                    "cache_control_injection_points": system_point,
                },
            },
        ],
        "caching": {"type": "memory", "ttl": 600},
        "general_settings": {
            "master_key": MASTER,
            "virtual_keys": [{"key": TEAM_A, "tenant": "a"}],
        },
    }


@pytest.fixture
async def proxy(
    bedrock: FakeBedrockServer,
    gemini: FakeGeminiServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> AsyncIterator[httpx2.AsyncClient]:
    async with make_proxy(config(bedrock, gemini)) as client:
        yield client


def body(model: str, question: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": MANUAL},
            {"role": "user", "content": question},
        ],
        **extra,
    }


async def test_bedrock_deployment_signs_caches_and_serves_hits(
    bedrock: FakeBedrockServer, proxy: httpx2.AsyncClient
) -> None:
    first = await proxy.post("/v1/chat/completions", json=body("claude", "Receipts?"))
    second = await proxy.post("/v1/chat/completions", json=body("claude", "Approvals?"))
    again = await proxy.post("/v1/chat/completions", json=body("claude", "Receipts?"))
    assert first.status_code == 200, first.text
    assert first.headers["x-deja-cache"] == "miss" and again.headers["x-deja-cache"] == "hit"
    assert again.json() == first.json()
    assert first.json()["object"] == "chat.completion"
    assert first.json()["model"] == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert bedrock.count("converse") == 2
    sent = bedrock.requests[-1]
    assert "/eu-west-3/bedrock/aws4_request" in sent.headers["authorization"]
    assert sent.body["system"][-1] == {"cachePoint": {"type": "default"}}  # the deployment's
    usage = second.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] > 0  # Bedrock's cache read
    assert float(first.headers["x-deja-cost-usd"]) > 0


async def test_bedrock_stream_through_the_proxy(
    bedrock: FakeBedrockServer, proxy: httpx2.AsyncClient
) -> None:
    answer = await proxy.post("/v1/chat/completions", json=body("claude", "Receipts?", stream=True))
    assert answer.status_code == 200
    events = [
        json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")
    ]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert answer.text.rstrip().endswith("data: [DONE]")
    assert bedrock.count("converse-stream") == 1


async def test_vertex_deployment_with_a_service_account_and_a_context_cache(
    gemini: FakeGeminiServer, proxy: httpx2.AsyncClient
) -> None:
    first = await proxy.post("/v1/chat/completions", json=body("gemini", "Receipts?"))
    second = await proxy.post("/v1/chat/completions", json=body("gemini", "Approvals?"))
    assert first.status_code == 200, first.text
    assert gemini.count("/token") == 1
    (made,) = gemini.cached_contents
    assert made["name"].startswith("projects/acme-prod/locations/europe-west1/cachedContents/")
    calls = [r for r in gemini.requests if ":generateContent" in r.path]
    assert all(r.body["cachedContent"] == made["name"] for r in calls)
    assert all("systemInstruction" not in r.body for r in calls)
    assert second.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert "context_cache" in first.json()["usage"]


async def test_unknown_provider_settings_are_config_errors(
    bedrock: FakeBedrockServer, gemini: FakeGeminiServer, tmp_path: Any
) -> None:
    from deja.config import parse_config
    from deja.errors import ConfigError

    broken = config(bedrock, gemini)
    broken["model_list"][0]["litellm_params"]["aws_regoin_name"] = "eu-west-3"
    with pytest.raises(ConfigError, match="aws_regoin_name"):
        parse_config(broken, base_dir=tmp_path)


async def test_provider_errors_reach_callers_in_openai_shape(
    proxy: httpx2.AsyncClient, gemini: FakeGeminiServer
) -> None:
    """Gemini's (and Anthropic's) error bodies are told in OpenAI's shape, as Bedrock's are:
    one route may fail over across providers, and SDKs read OpenAI's."""
    gemini.fail_next(503, times=5)  # the context cache's creation, and the call
    answer = await proxy.post(
        "/v1/chat/completions", json=body("gemini", "Which filter fits the X200?")
    )
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and "status" not in error


@pytest.mark.parametrize(
    ("blocked", "index", "package", "extra"),
    [("botocore", 0, "botocore", "bedrock"), ("cryptography", 1, "cryptography", "vertex")],
)
def test_a_deployment_whose_provider_extra_is_missing_is_refused_at_start(
    bedrock: FakeBedrockServer,
    gemini: FakeGeminiServer,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    blocked: str,
    index: int,
    package: str,
    extra: str,
) -> None:
    """Not a start without a word and a 500 for every request to that model."""
    from deja.config import parse_config
    from deja.errors import MissingDependencyError
    from deja.server.app import ProxyApp

    settings = parse_config(config(bedrock, gemini), base_dir=tmp_path)
    without_packages(monkeypatch, blocked)
    with pytest.raises(MissingDependencyError) as caught:
        ProxyApp(settings)
    assert (caught.value.package, caught.value.extra) == (package, extra)
    message = str(caught.value)
    assert f"pip install 'deja-llm[{extra}]'" in message
    name = settings.model_list[index].model_name
    assert f"model_list[{index}] {name!r}" in message  # which deployment needs it


def test_deployments_that_need_no_extra_start_without_them(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Bedrock API key with its region, and a Vertex AI access token, are sent as they
    are: neither botocore nor cryptography is imported for them."""
    from deja.config import parse_config
    from deja.server.app import ProxyApp

    models = [
        {
            "model_name": "claude",
            "litellm_params": {
                "model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
                "aws_bearer_token_bedrock": "bedrock-api-key",
                "aws_region_name": "eu-west-3",
            },
        },
        {
            "model_name": "gemini",
            "litellm_params": {
                "model": "vertex_ai/gemini-2.5-flash",
                "api_key": "ya29.an-access-token",
                "vertex_project": "acme-prod",
                "vertex_location": "europe-west1",
            },
        },
    ]
    settings = parse_config({"model_list": models}, base_dir=tmp_path)
    without_packages(monkeypatch, "botocore", "cryptography")
    ProxyApp(settings)


async def test_a_missing_dependency_on_the_request_path_says_what_to_install(
    proxy: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_packages(monkeypatch, "botocore")  # gone after the start's check
    answer = await proxy.post("/v1/chat/completions", json=body("claude", "Receipts?"))
    assert answer.status_code == 500
    error = answer.json()["error"]
    assert error["code"] == "missing_dependency" and error["type"] == "server_error"
    assert error["message"] == "botocore is not installed; run: pip install 'deja-llm[bedrock]'"


async def test_proxy_workers_over_one_store_share_a_context_cache(
    gemini: FakeGeminiServer,
    bedrock: FakeBedrockServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Any,
) -> None:
    """Workers of `deja serve --workers N` are apps over one store: the context cache is
    found there by its digest, made once (each worker made, and billed, its own)."""
    shared = {**config(bedrock, gemini), "caching": {"type": "disk", "directory": "cache"}}
    for question in ("Receipts?", "Approvals?"):
        async with make_proxy(shared) as worker:
            answer = await worker.post("/v1/chat/completions", json=body("gemini", question))
            assert answer.status_code == 200, answer.text
    assert len(gemini.cached_contents) == 1
    calls = [r for r in gemini.requests if ":generateContent" in r.path]
    assert [r.body["cachedContent"] for r in calls] == [gemini.cached_contents[0]["name"]] * 2


async def test_provider_cache_metrics_use_the_configured_prices(
    make_proxy: Callable[..., httpx2.AsyncClient],
) -> None:
    """A deployment's own prices (model_info) price the provider-cache metrics too, as they
    price x-deja-cost-usd (the metrics read the packaged table: twice the saving here)."""
    from deja.testing import FakeAnthropicServer

    with FakeAnthropicServer(api_key="k") as anthropic:
        settings = half_priced_claude(anthropic.url, caching={"type": "memory", "ttl": 600})
        async with make_proxy(settings, key=MASTER) as proxy:
            usages = []
            for question in ("one", "two"):
                answer = await proxy.post(
                    "/v1/chat/completions", json={**body("claude", question), "max_tokens": 20}
                )
                assert answer.status_code == 200, answer.text
                usages.append(answer.json()["usage"])
            exposition = (await proxy.get("/metrics")).text
    written = usages[0]["cache_creation_input_tokens"]
    read = usages[1]["cache_read_input_tokens"]
    assert written > 1024 and read == written
    figures = {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("deja_provider_cache_")
        and line.split("{")[0].endswith(("saved_usd_total", "write_premium_usd_total"))
    }
    assert figures["deja_provider_cache_saved_usd_total"] == pytest.approx(read * 1.35e-6)
    assert figures["deja_provider_cache_write_premium_usd_total"] == pytest.approx(
        written * 0.375e-6
    )


async def test_a_bedrock_miss_tells_its_request_id_a_hit_none(proxy: httpx2.AsyncClient) -> None:
    # README: an answer fetched upstream carries Bedrock's x-amzn-requestid
    first = await proxy.post("/v1/chat/completions", json=body("claude", "Request id?"))
    again = await proxy.post("/v1/chat/completions", json=body("claude", "Request id?"))
    assert first.status_code == 200 and first.headers["x-amzn-requestid"]
    assert again.headers["x-deja-cache"] == "hit" and "x-amzn-requestid" not in again.headers
