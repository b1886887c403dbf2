"""Amazon Bedrock API keys: ``Authorization: Bearer <key>`` in place of SigV4, through
deja.Client, deja.AsyncClient and the proxy, against the local Bedrock server over HTTP.

Precedence: the call's ``aws_bearer_token_bedrock`` (or its own ``api_key``), then SigV4
credentials the call names, then ``AWS_BEARER_TOKEN_BEDROCK``, then the AWS chain.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

import deja
from deja.config import parse_config
from deja.errors import ConfigError, PermissionDeniedError
from deja.providers.bedrock import AwsCredentials, BedrockApiKey, BedrockProvider, resolve_region
from deja.server.app import ProxyApp
from deja.stores.memory import MemoryStore
from deja.testing import BedrockReply, FakeBedrockServer

pytest.importorskip("botocore")

MODEL = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
PATH = "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0"
REGION = "eu-west-1"
KEY = "ABSKQmVkcm9ja0FQSUtleS1sb25nLXRlcm0tZXhhbXBsZQ=="
OTHER_KEY = "bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29tLz9zaG9ydC10ZXJt"
CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
HI = [{"role": "user", "content": "Hi"}]
SIGV4_HEADERS = ("x-amz-date", "x-amz-security-token", "x-amz-content-sha256")


@pytest.fixture
def server() -> Iterator[FakeBedrockServer]:
    with FakeBedrockServer(credentials=CREDS, api_keys=[KEY, OTHER_KEY], region=REGION) as s:
        yield s


@pytest.fixture(autouse=True)
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS credentials, region or API key anywhere: no variables, empty files, no IMDS."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_BEARER_TOKEN_BEDROCK",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "credentials").write_text("")
    (tmp_path / "config").write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def client(server: FakeBedrockServer, **options: Any) -> deja.Client:
    return deja.Client(api_base=server.url, max_retries=0, **options)


def assert_bearer(sent: Any, key: str) -> None:
    assert sent.headers["authorization"] == f"Bearer {key}"
    assert not any(name in sent.headers for name in SIGV4_HEADERS)


def assert_signed(sent: Any) -> None:
    authorization = sent.headers["authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={CREDS.access_key}/")
    assert "x-amz-date" in sent.headers


# -- (1) the key goes as a bearer token, JSON and streams ----------------------------------


def test_an_api_key_is_sent_as_a_bearer_token_instead_of_a_signature(
    server: FakeBedrockServer,
) -> None:
    server.queue_reply(BedrockReply("Twenty-five days."))
    reply = client(server).completion(
        model=MODEL, messages=HI, aws_bearer_token_bedrock=KEY, aws_region_name=REGION
    )
    assert reply.choices[0].message.content == "Twenty-five days."
    assert reply.choices[0].finish_reason == "stop" and reply.usage.prompt_tokens > 0
    sent = server.requests[-1]
    assert sent.path == f"{PATH}/converse"
    assert_bearer(sent, KEY)
    assert KEY not in sent.raw.decode()  # an option, never a body field


def test_a_stream_is_sent_with_the_key_and_translated(server: FakeBedrockServer) -> None:
    server.queue_reply(BedrockReply("Twenty-five days a year."))
    chunks = list(
        client(server).completion(
            model=MODEL,
            messages=HI,
            stream=True,
            aws_bearer_token_bedrock=KEY,
            aws_region_name=REGION,
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Twenty-five days a year."
    assert server.requests[-1].path == f"{PATH}/converse-stream"
    assert_bearer(server.requests[-1], KEY)


async def test_the_async_client_sends_the_key_for_calls_and_streams(
    server: FakeBedrockServer,
) -> None:
    options = {"aws_bearer_token_bedrock": KEY, "aws_region_name": REGION}
    async with deja.AsyncClient(api_base=server.url, max_retries=0) as c:
        reply = await c.acompletion(model=MODEL, messages=HI, **options)
        assert reply.choices[0].message.content
        assert_bearer(server.requests[-1], KEY)
        server.queue_reply(BedrockReply("Streamed."))
        stream = await c.acompletion(model=MODEL, messages=HI, stream=True, **options)
        chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Streamed."
    assert server.count("converse-stream") == 1
    assert_bearer(server.requests[-1], KEY)


def test_the_adapter_needs_no_botocore_and_keeps_the_key_out_of_reprs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "botocore.auth", None)  # signing would fail
    wire = BedrockProvider().build_request(
        {"model": MODEL, "messages": HI},
        region=REGION,
        credentials=BedrockApiKey(KEY),
        extra_headers={"Authorization": "Basic not-this", "x-trace": "1"},
    )
    assert wire.url == f"https://bedrock-runtime.{REGION}.amazonaws.com{PATH}/converse"
    assert wire.headers == {
        "content-type": "application/json",
        "x-trace": "1",
        "authorization": f"Bearer {KEY}",
    }
    assert KEY not in repr(wire) and KEY not in repr(BedrockApiKey(KEY))


# -- (2) precedence: explicit, then ambient --------------------------------------------------


def test_the_environment_key_is_used_when_the_call_names_no_credentials(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    assert client(server).completion(model=MODEL, messages=HI).choices[0].message.content
    assert_bearer(server.requests[-1], KEY)


def test_keys_named_on_the_call_win_over_the_environment_key(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "not-a-key-the-server-knows")
    c = client(server)
    c.completion(
        model=MODEL,
        messages=HI,
        aws_access_key_id=CREDS.access_key,
        aws_secret_access_key=CREDS.secret_key,
        aws_region_name=REGION,
    )
    assert_signed(server.requests[-1])


def test_a_profile_named_on_the_call_wins_over_the_environment_key(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch, no_aws: Path
) -> None:
    (no_aws / "credentials").write_text(
        f"[work]\naws_access_key_id = {CREDS.access_key}\n"
        f"aws_secret_access_key = {CREDS.secret_key}\n"
    )
    (no_aws / "config").write_text(f"[profile work]\nregion = {REGION}\n")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "not-a-key-the-server-knows")
    client(server).completion(model=MODEL, messages=HI, aws_profile_name="work")
    assert_signed(server.requests[-1])


def test_an_explicit_key_wins_over_everything(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    c = client(server)
    c.completion(
        model=MODEL,
        messages=HI,
        aws_bearer_token_bedrock=OTHER_KEY,
        aws_access_key_id=CREDS.access_key,
        aws_secret_access_key=CREDS.secret_key,
    )
    assert_bearer(server.requests[-1], OTHER_KEY)
    c.completion(model=MODEL, messages=HI, api_key=OTHER_KEY)  # the call's own api_key
    assert_bearer(server.requests[-1], OTHER_KEY)


def test_the_clients_default_key_is_never_sent_to_bedrock(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "BEDROCK_API_KEY"):
        monkeypatch.setenv(name, "sk-meant-for-another-provider")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDS.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDS.secret_key)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "")  # empty: not a key
    c = client(server, api_key="sk-the-clients-default")
    c.completion(model=MODEL, messages=HI)
    assert_signed(server.requests[-1])
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", KEY)
    c.completion(model=MODEL, messages=HI)
    assert_bearer(server.requests[-1], KEY)


# -- (3) a wrong key -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["call", "environment"])
def test_a_wrong_key_is_a_permission_error_that_does_not_show_it(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    wrong = "ABSKd3Jvbmcta2V5LXRoYXQtbXVzdC1ub3QtbGVhaw=="
    options: dict[str, Any] = {"aws_region_name": REGION}
    if where == "call":
        options["aws_bearer_token_bedrock"] = wrong
    else:
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", wrong)
    with pytest.raises(PermissionDeniedError) as info:
        client(server).completion(model=MODEL, messages=HI, **options)
    error = info.value
    assert error.status_code == 403 and error.provider == "bedrock"
    assert "AccessDeniedException" in str(error) and "API Key is valid" in str(error)
    assert wrong not in f"{error} {error!r} {error.body}"
    assert_bearer(server.requests[-1], wrong)


def test_the_fake_refuses_a_scheme_it_cannot_check() -> None:
    body = {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}
    with (
        FakeBedrockServer(credentials=CREDS, region=REGION) as signed_only,
        FakeBedrockServer(api_keys=[KEY], region=REGION) as keys_only,
        httpx2.Client() as http,
    ):
        url = f"{signed_only.url}{PATH}/converse"
        bearer = http.post(url, json=body, headers={"authorization": f"Bearer {KEY}"})
        assert bearer.status_code == 403
        assert bearer.headers["x-amzn-errortype"] == "AccessDeniedException"
        wire = BedrockProvider().build_request(
            {"model": MODEL, "messages": HI},
            region=REGION,
            credentials=CREDS,
            api_base=keys_only.url,
        )
        signed = http.post(wire.url, content=wire.content, headers=wire.headers)
        assert signed.status_code == 403
        assert signed.headers["x-amzn-errortype"] == "UnrecognizedClientException"
        missing = http.post(f"{keys_only.url}{PATH}/converse", json=body)
        assert missing.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"


# -- (4) keys are not part of the cache key nor of what is stored ----------------------------


def test_keys_do_not_split_the_cache_and_are_never_stored_or_logged(
    server: FakeBedrockServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryStore()
    c = client(server, cache=deja.Cache(store=store))
    first = c.completion(
        model=MODEL, messages=HI, aws_bearer_token_bedrock=KEY, aws_region_name=REGION
    )
    second = c.completion(
        model=MODEL, messages=HI, aws_bearer_token_bedrock=OTHER_KEY, aws_region_name=REGION
    )
    signed = c.completion(
        model=MODEL,
        messages=HI,
        aws_access_key_id=CREDS.access_key,
        aws_secret_access_key=CREDS.secret_key,
        aws_region_name=REGION,
    )
    # who calls does not change what is asked: as for every aws_* option, one entry
    assert first.cache.status == "miss"
    assert second.cache.status == "hit" and signed.cache.status == "hit"
    assert first.cache.key == second.cache.key == signed.cache.key
    assert server.count() == 1
    assert len(store) == 1
    stored = store.get(first.cache.key)
    assert stored is not None
    assert KEY.encode() not in stored and OTHER_KEY.encode() not in stored
    assert not any(KEY in r.getMessage() or OTHER_KEY in r.getMessage() for r in caplog.records)


# -- (5) no AWS credentials anywhere: the region is all a key needs --------------------------


def test_no_credentials_are_needed_with_a_key(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch, no_aws: Path
) -> None:
    c = client(server)
    with pytest.raises(ConfigError, match="no AWS credentials"):  # truly nothing configured
        c.completion(model=MODEL, messages=HI, aws_region_name=REGION)
    assert (
        c.completion(model=MODEL, messages=HI, aws_bearer_token_bedrock=KEY, aws_region_name=REGION)
        .choices[0]
        .message.content
    )
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", KEY)
    assert client(server).completion(model=MODEL, messages=HI).choices[0].message.content
    assert_bearer(server.requests[-1], KEY)
    assert server.count() == 2


def test_the_region_may_come_from_the_profile(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch, no_aws: Path
) -> None:
    (no_aws / "config").write_text(f"[default]\nregion = {REGION}\n")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", KEY)
    assert client(server).completion(model=MODEL, messages=HI).choices[0].message.content
    assert_bearer(server.requests[-1], KEY)
    assert resolve_region() == REGION
    assert resolve_region("us-west-2", profile="absent") == "us-west-2"  # no file read


def test_no_region_is_a_config_error_that_does_not_show_the_key() -> None:
    c = deja.Client(max_retries=0)  # no api_base: the endpoint needs the region
    with pytest.raises(ConfigError, match="no AWS region") as info:
        c.completion(model=MODEL, messages=HI, aws_bearer_token_bedrock=KEY)
    assert KEY not in str(info.value)


# -- (6) a proxy deployment ------------------------------------------------------------------


@pytest.mark.parametrize("setting", ["aws_bearer_token_bedrock", "api_key"])
async def test_a_proxy_deployment_passes_its_key_through(
    server: FakeBedrockServer, tmp_path: Path, setting: str
) -> None:
    params = {"model": MODEL, "api_base": server.url, "aws_region_name": REGION, setting: KEY}
    master = "sk-master-test"
    settings = parse_config(
        {
            "model_list": [{"model_name": "claude", "litellm_params": params}],
            "caching": {"type": "memory"},
            "general_settings": {"master_key": master},
        },
        base_dir=tmp_path,
    )
    assert KEY not in repr(settings.model_list[0])
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=ProxyApp(settings)),
        base_url="http://proxy",
        headers={"authorization": f"Bearer {master}"},
    ) as proxy:
        request = {"model": "claude", "messages": HI}
        first = await proxy.post("/v1/chat/completions", json=request)
        again = await proxy.post("/v1/chat/completions", json=request)
        streaming = {"model": "claude", "messages": [{"role": "user", "content": "Go on"}]}
        streamed = await proxy.post("/v1/chat/completions", json={**streaming, "stream": True})
    assert first.status_code == 200, first.text
    assert first.json()["choices"][0]["message"]["content"]
    assert again.headers["x-deja-cache"] == "hit"
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
    assert server.count("converse") == 1 and server.count("converse-stream") == 1
    for sent in server.requests:
        assert_bearer(sent, KEY)
    assert KEY not in first.text + first.headers.get("x-deja-cache-key", "")


def test_aws_capitalized_error_message_is_read() -> None:
    from deja._upstream import error_for

    # what Bedrock answers a refused API key with: "Message", not "message"
    answer = httpx2.Response(
        403,
        json={"Message": "Authentication failed: Please make sure your API Key is valid."},
        headers={"x-amzn-errortype": "AccessDeniedException:http://internal.amazon.com/"},
    )
    error = error_for(answer, "bedrock")
    assert isinstance(error, PermissionDeniedError)
    assert str(error) == (
        "upstream answered 403: AccessDeniedException: Authentication failed: Please make "
        "sure your API Key is valid."
    )


def test_a_bedrock_key_from_a_secret_file_loses_its_newline(
    server: FakeBedrockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Bedrock key bypassed the client's key cleanup: a key read from a file with its
    newline failed every call with UpstreamConnectionError "Illegal header value" (a
    review), the call's own and AWS_BEARER_TOKEN_BEDROCK alike."""
    server.queue_reply(BedrockReply("Yes."))
    client(server).completion(
        model=MODEL, messages=HI, aws_bearer_token_bedrock=KEY + "\n", aws_region_name=REGION
    )
    assert_bearer(server.requests[-1], KEY)
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", f"  {OTHER_KEY}\n")
    server.queue_reply(BedrockReply("Yes."))
    hey = [{"role": "user", "content": "Hey"}]
    client(server).completion(model=MODEL, messages=hey, aws_region_name=REGION)
    assert_bearer(server.requests[-1], OTHER_KEY)
    with pytest.raises(deja.InvalidRequestError, match="bedrock has a character"):
        client(server).completion(
            model=MODEL, messages=HI, api_key=KEY + "\u200b", aws_region_name=REGION
        )
