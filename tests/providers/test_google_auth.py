"""Vertex service-account auth: the JWT assertion, the token request and the token answer."""

from __future__ import annotations

import base64
import builtins
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from deja._fake_gemini import FakeGeminiServer, make_service_account
from deja.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    MissingDependencyError,
    ProviderError,
    ServerError,
)
from deja.providers.gemini import GeminiProvider
from deja.providers.google_auth import (
    CLOUD_PLATFORM_SCOPE,
    DEFAULT_TOKEN_URI,
    JWT_BEARER_GRANT,
    AccessToken,
    ServiceAccount,
    parse_token_response,
)
from deja.testing import FakeClock

NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    return make_service_account(client_email="bot@proj.iam.gserviceaccount.com")


def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def decode(jwt: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    header, claims, signature = jwt.split(".")
    signed = f"{header}.{claims}".encode()
    return (
        json.loads(b64decode(header)),
        json.loads(b64decode(claims)),
        b64decode(signature),
        signed,
    )


# -- key files ----------------------------------------------------------------------------------


def test_from_info(info: dict[str, Any]) -> None:
    account = ServiceAccount.from_info(info)
    assert account.client_email == "bot@proj.iam.gserviceaccount.com"
    assert account.token_uri == "https://oauth2.googleapis.com/token" == DEFAULT_TOKEN_URI
    assert account.private_key_id == info["private_key_id"]
    assert account.project_id == "deja-simulated"
    assert ServiceAccount.from_info(info, token_uri="http://x/token").token_uri == "http://x/token"
    without_uri = {k: v for k, v in info.items() if k != "token_uri"}
    assert ServiceAccount.from_info(without_uri).token_uri == DEFAULT_TOKEN_URI


def test_repr_never_shows_the_private_key(info: dict[str, Any]) -> None:
    account = ServiceAccount.from_info(info)
    assert "PRIVATE" not in repr(account) and "bot@proj" in repr(account)
    token = AccessToken("ya29.secret", NOW)
    assert "ya29" not in repr(token)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"client_email": None}, "client_email"),
        ({"private_key": ""}, "private_key"),
        ({"type": "authorized_user"}, "authorized_user"),
        ({"token_uri": "ftp://nope"}, "token_uri"),
    ],
)
def test_from_info_refuses_broken_keys(
    info: dict[str, Any], change: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        ServiceAccount.from_info({**info, **change})
    with pytest.raises(ConfigError):
        ServiceAccount.from_info([])  # type: ignore[arg-type]


def test_from_file(tmp_path: Path, info: dict[str, Any]) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))
    assert ServiceAccount.from_file(path) == ServiceAccount.from_info(info)
    with pytest.raises(ConfigError, match="cannot read"):
        ServiceAccount.from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        ServiceAccount.from_file(tmp_path / "bad.json")


# -- the assertion ------------------------------------------------------------------------------


def test_assertion_header_claims_and_signature(info: dict[str, Any]) -> None:
    account = ServiceAccount.from_info(info)
    header, claims, signature, signed = decode(account.assertion(NOW + 0.9))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": info["private_key_id"]}
    assert claims == {
        "iss": "bot@proj.iam.gserviceaccount.com",
        "scope": CLOUD_PLATFORM_SCOPE,
        "aud": DEFAULT_TOKEN_URI,
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
    }
    key = serialization.load_pem_private_key(info["private_key"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    # Raises InvalidSignature if the signature does not match.
    key.public_key().verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())


def test_assertion_scope_and_lifetime(info: dict[str, Any]) -> None:
    account = ServiceAccount.from_info(info)
    _, claims, _, _ = decode(account.assertion(NOW, scope="s1 s2", lifetime=600))
    assert claims["scope"] == "s1 s2" and claims["exp"] - claims["iat"] == 600
    for lifetime in (0, 3601):
        with pytest.raises(ValueError):
            account.assertion(NOW, lifetime=lifetime)


def test_assertion_without_key_id(info: dict[str, Any]) -> None:
    account = ServiceAccount.from_info({k: v for k, v in info.items() if k != "private_key_id"})
    header, _, _, _ = decode(account.assertion(NOW))
    assert header == {"alg": "RS256", "typ": "JWT"}


def test_assertion_refuses_keys_it_cannot_sign_with(info: dict[str, Any]) -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ConfigError, match="not an RSA key"):
        ServiceAccount.from_info({**info, "private_key": ec_pem}).assertion(NOW)
    with pytest.raises(ConfigError, match="not an unencrypted PEM key") as caught:
        ServiceAccount.from_info({**info, "private_key": "-----BEGIN garbage"}).assertion(NOW)
    assert "garbage" not in str(caught.value)


@pytest.fixture
def no_cryptography(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("cryptography"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    yield


def test_missing_cryptography_names_the_extra(info: dict[str, Any], no_cryptography: None) -> None:
    account = ServiceAccount.from_info(info)  # building one needs no cryptography
    with pytest.raises(MissingDependencyError, match=r"pip install 'deja-llm\[vertex\]'"):
        account.assertion(NOW)


def test_token_request(info: dict[str, Any]) -> None:
    account = ServiceAccount.from_info(info, token_uri="https://oauth.example/token")
    url, body, headers = account.token_request(NOW)
    assert url == "https://oauth.example/token"
    assert headers == {
        "content-type": "application/x-www-form-urlencoded",
        "accept": "application/json",
    }
    form = parse_qs(body.decode())
    assert form["grant_type"] == [JWT_BEARER_GRANT]
    _, claims, _, _ = decode(form["assertion"][0])
    assert claims["aud"] == "https://oauth.example/token"


# -- the answer ---------------------------------------------------------------------------------


def test_parse_token_response() -> None:
    token = parse_token_response(
        {"access_token": "ya29.a", "expires_in": 3599, "token_type": "Bearer"}, NOW
    )
    assert token == AccessToken("ya29.a", NOW + 3599, "Bearer")
    assert token.authorization == "Bearer ya29.a"
    assert not token.expired(NOW + 3500)
    assert token.expired(NOW + 3540)  # within the 60 s margin
    assert token.expired(NOW + 3000, margin=600)
    assert (
        parse_token_response({"access_token": "t", "expires_in": "120"}, NOW).expires_at
        == NOW + 120
    )
    assert parse_token_response({"access_token": "t"}, NOW).expires_at == NOW + 3600
    assert (
        parse_token_response({"access_token": "t", "expires_in": -1}, NOW).expires_at == NOW + 3600
    )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
            400,
            AuthenticationError,
        ),
        (
            {"error": "invalid_client", "error_description": "The OAuth client was not found."},
            401,
            AuthenticationError,
        ),
        (
            {"error": "invalid_scope", "error_description": "Invalid OAuth scope."},
            400,
            BadRequestError,
        ),
        ({"error": "unsupported_grant_type"}, 400, BadRequestError),
        ({"error": {"code": 500, "status": "INTERNAL", "message": "boom"}}, 500, ServerError),
        ("<html>bad gateway</html>", 502, ServerError),
    ],
)
def test_parse_token_errors(body: Any, status: int, error: type[ProviderError]) -> None:
    with pytest.raises(error) as caught:
        parse_token_response(body, NOW, status_code=status)
    assert caught.value.provider == "vertex_ai"
    assert caught.value.status_code == status


def test_parse_token_error_message_and_missing_token() -> None:
    with pytest.raises(AuthenticationError, match=r"invalid_grant: Invalid JWT Signature\."):
        parse_token_response(
            {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
            NOW,
            status_code=400,
        )
    with pytest.raises(ProviderError, match="without an access_token") as caught:
        parse_token_response({"token_type": "Bearer"}, NOW)
    assert type(caught.value) is ProviderError


# -- against the simulated token endpoint, over real HTTP ----------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def server(clock: FakeClock) -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(clock=clock) as fake:
        yield fake


def fetch_token(account: ServiceAccount, now: float, **kwargs: Any) -> httpx2.Response:
    url, body, headers = account.token_request(now, **kwargs)
    return httpx2.post(url, content=body, headers=headers)


def test_jwt_verified_by_the_token_endpoint_and_token_accepted_by_vertex(
    server: FakeGeminiServer, clock: FakeClock
) -> None:
    account = ServiceAccount.from_info(server.service_account())
    answer = fetch_token(account, clock())
    assert answer.status_code == 200
    token = parse_token_response(answer.json(), clock(), status_code=answer.status_code)
    assert token.token.startswith("ya29.") and token.expires_at == NOW + 3599
    wire = GeminiProvider().build_request(
        {"model": "vertex_ai/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]},
        api_base=server.url,
        access_token=token.token,
        vertex_project="proj",
    )
    reply = httpx2.post(wire.url, json=wire.json, headers=wire.headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["candidates"][0]["content"]["parts"][0]["text"].startswith("Simulated")
    # The token dies on the server's clock.
    clock.advance(3600)
    expired = httpx2.post(wire.url, json=wire.json, headers=wire.headers)
    assert expired.status_code == 401
    assert expired.json()["error"]["status"] == "UNAUTHENTICATED"
    assert token.expired(clock())


def refused(answer: httpx2.Response) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        parse_token_response(answer.json(), NOW, status_code=answer.status_code)
    return caught.value


def test_a_signature_by_another_key_is_refused(server: FakeGeminiServer) -> None:
    registered = server.service_account()
    impostor = make_service_account(
        client_email=registered["client_email"], token_uri=server.token_uri
    )
    error = refused(fetch_token(ServiceAccount.from_info(impostor), NOW))
    assert isinstance(error, AuthenticationError)
    assert error.body == {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}


def test_a_tampered_assertion_is_refused(server: FakeGeminiServer) -> None:
    account = ServiceAccount.from_info(server.service_account())
    header, claims, signature = account.assertion(NOW).split(".")
    forged_claims = json.loads(b64decode(claims))
    forged_claims["scope"] += " https://www.googleapis.com/auth/admin"
    forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    body = {"grant_type": JWT_BEARER_GRANT, "assertion": f"{header}.{forged}.{signature}"}
    answer = httpx2.post(server.token_uri, data=body)
    assert answer.status_code == 400
    assert answer.json()["error_description"] == "Invalid JWT Signature."


def test_unknown_account_wrong_audience_stale_assertion_and_scope(server: FakeGeminiServer) -> None:
    stranger = make_service_account(
        client_email="who@x.iam.gserviceaccount.com", token_uri=server.token_uri
    )
    assert "account not found" in str(refused(fetch_token(ServiceAccount.from_info(stranger), NOW)))
    info = server.service_account()
    elsewhere = ServiceAccount.from_info(info, token_uri="https://oauth2.googleapis.com/token")
    _, body, headers = elsewhere.token_request(NOW)
    answer = httpx2.post(server.token_uri, content=body, headers=headers)
    assert "audience" in str(refused(answer))
    account = ServiceAccount.from_info(info)
    stale = refused(fetch_token(account, NOW - 7200))
    assert isinstance(stale, AuthenticationError) and "short-lived" in str(stale)
    future = refused(fetch_token(account, NOW + 3000))
    assert "short-lived" in str(future)
    scope = refused(fetch_token(account, NOW, scope="https://www.googleapis.com/auth/drive"))
    assert isinstance(scope, BadRequestError)
    assert scope.body == {
        "error": "invalid_scope",
        "error_description": "Invalid OAuth scope or ID token audience provided.",
    }


def test_other_grant_types_are_refused(server: FakeGeminiServer) -> None:
    answer = httpx2.post(server.token_uri, data={"grant_type": "client_credentials"})
    assert answer.status_code == 400
    assert isinstance(refused(answer), BadRequestError)


def test_the_wall_clock_default(info: dict[str, Any]) -> None:
    # A real-time assertion is current on a server with the real clock.
    with FakeGeminiServer() as fake:
        fake.add_service_account(info)
        account = ServiceAccount.from_info(info, token_uri=fake.token_uri)
        answer = fetch_token(account, time.time())
        assert answer.status_code == 200
