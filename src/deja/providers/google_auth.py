"""Vertex AI service-account auth, sans I/O: the OAuth 2.0 JWT-bearer grant as pure functions.

Vertex AI takes ``Authorization: Bearer <access token>``. A service account gets one from
Google's token endpoint with a signed JWT (RFC 7523), which is all this module builds and
reads; the client sends the bytes and caches the token until it is about to expire::

    account = ServiceAccount.from_file("key.json")
    url, body, headers = account.token_request(now=time.time())
    # POST body to url with headers; then, from the JSON answer:
    token = parse_token_response(answer, now=time.time(), status_code=200)
    # ... "authorization: Bearer " + token.token until token.expired(time.time())

The assertion (:meth:`ServiceAccount.assertion`) is a compact JWS signed with RS256 over
``{"alg": "RS256", "typ": "JWT", "kid": <private_key_id>}`` and the claims ``iss`` (the
account's e-mail), ``scope`` (default :data:`CLOUD_PLATFORM_SCOPE`), ``aud`` (the token
URI), ``iat`` and ``exp`` (at most one hour later: Google refuses longer-lived assertions).
The token request is ``POST token_uri`` with the form
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>``; the answer is
``{"access_token", "expires_in", "token_type": "Bearer"}``, or an OAuth error
``{"error", "error_description"}`` that :func:`parse_token_response` turns into a typed
:class:`~deja.errors.ProviderError`.

Signing needs ``cryptography`` (the ``vertex`` extra), imported only when a JWT is signed:
``import deja`` works without it. Private keys never appear in a ``repr``, a log or an
error message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import urlencode

from deja.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    MissingDependencyError,
    ProviderError,
    provider_error_for_status,
)

__all__ = [
    "ASSERTION_LIFETIME",
    "CLOUD_PLATFORM_SCOPE",
    "DEFAULT_TOKEN_URI",
    "JWT_BEARER_GRANT",
    "AccessToken",
    "ServiceAccount",
    "TokenRequest",
    "parse_token_response",
    "require_cryptography",
]

DEFAULT_TOKEN_URI: Final = "https://oauth2.googleapis.com/token"
"""Google's OAuth 2.0 token endpoint (a key file's ``token_uri`` overrides it)."""

CLOUD_PLATFORM_SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
"""The scope Vertex AI accepts."""

JWT_BEARER_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
"""The ``grant_type`` of the JWT-bearer flow (RFC 7523)."""

ASSERTION_LIFETIME: Final = 3600
"""Seconds between ``iat`` and ``exp``: Google accepts assertions of at most one hour."""

_PROVIDER: Final = "vertex_ai"
# OAuth error codes (RFC 6749 §5.2) that mean the credentials themselves were refused.
_CREDENTIAL_ERRORS: Final = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
_REQUEST_ERRORS: Final = frozenset({"invalid_request", "invalid_scope", "unsupported_grant_type"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_segment(value: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8"))


class TokenRequest(NamedTuple):
    """What to send for an access token: ``POST url`` with ``body`` and ``headers``."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An OAuth access token and when it stops working (epoch seconds, wall clock)."""

    token: str = field(repr=False)
    expires_at: float
    token_type: str = "Bearer"

    def expired(self, now: float, *, margin: float = 60.0) -> bool:
        """Whether the token is expired, or will be within ``margin`` seconds (refresh
        before it runs out, so a request in flight never carries a dead token)."""
        return now + margin >= self.expires_at

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        return f"Bearer {self.token}"


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A Google service account key: e-mail, PEM private key and token endpoint.

    Build one with :meth:`from_info` (the parsed key file) or :meth:`from_file`. Nothing
    is parsed or signed until :meth:`assertion`; the private key is left out of ``repr``.
    """

    client_email: str
    private_key: str = field(repr=False)
    token_uri: str = DEFAULT_TOKEN_URI
    private_key_id: str | None = None
    project_id: str | None = None

    @classmethod
    def from_info(cls, info: Mapping[str, Any], *, token_uri: str | None = None) -> ServiceAccount:
        """A service account from a key file's JSON object.

        ``token_uri`` overrides the file's (and the default
        :data:`DEFAULT_TOKEN_URI`). Raises :class:`~deja.errors.ConfigError` naming the
        missing field, or for a key file that is not a service account's (a user's
        ``authorized_user`` credentials, say).
        """
        if not isinstance(info, Mapping):
            raise ConfigError("a service account key must be a JSON object")
        kind = info.get("type")
        if kind is not None and kind != "service_account":
            raise ConfigError(
                f"the key file is of type {kind!r}; Vertex auth needs a 'service_account' key"
            )
        missing = [
            name
            for name in ("client_email", "private_key")
            if not isinstance(info.get(name), str) or not info.get(name)
        ]
        if missing:
            raise ConfigError(f"the service account key has no {' or '.join(missing)}")
        uri = token_uri or info.get("token_uri") or DEFAULT_TOKEN_URI
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            raise ConfigError("the service account's token_uri must be an http(s) URL")
        key_id = info.get("private_key_id")
        project = info.get("project_id")
        return cls(
            client_email=info["client_email"],
            private_key=info["private_key"],
            token_uri=uri,
            private_key_id=key_id if isinstance(key_id, str) and key_id else None,
            project_id=project if isinstance(project, str) and project else None,
        )

    @classmethod
    def from_file(cls, path: str | Path, *, token_uri: str | None = None) -> ServiceAccount:
        """A service account from a key file (JSON). Raises
        :class:`~deja.errors.ConfigError` when it cannot be read or parsed."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the service account key {str(path)!r}: {exc}") from exc
        try:
            info = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"the service account key {str(path)!r} is not JSON") from exc
        return cls.from_info(info, token_uri=token_uri)

    def assertion(
        self,
        now: float,
        *,
        scope: str = CLOUD_PLATFORM_SCOPE,
        lifetime: int = ASSERTION_LIFETIME,
    ) -> str:
        """The signed JWT (RS256) asserting this account at ``now`` (epoch seconds).

        ``lifetime`` is ``exp - iat`` in seconds, 1 to 3,600. Raises
        :class:`~deja.errors.MissingDependencyError` without ``cryptography`` and
        :class:`~deja.errors.ConfigError` for a private key that is not an RSA PEM key.
        """
        if not 0 < lifetime <= ASSERTION_LIFETIME:
            raise ValueError(f"lifetime must be 1 to {ASSERTION_LIFETIME} seconds")
        issued = int(now)
        header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
        if self.private_key_id:
            header["kid"] = self.private_key_id
        claims = {
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": issued,
            "exp": issued + lifetime,
        }
        signing_input = f"{_json_segment(header)}.{_json_segment(claims)}".encode("ascii")
        return signing_input.decode("ascii") + "." + _b64url(self._sign(signing_input))

    def token_request(self, now: float, *, scope: str = CLOUD_PLATFORM_SCOPE) -> TokenRequest:
        """The token request for an assertion made at ``now``: ``(url, body, headers)``."""
        body = urlencode(
            {"grant_type": JWT_BEARER_GRANT, "assertion": self.assertion(now, scope=scope)}
        )
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json",
        }
        return TokenRequest(self.token_uri, body.encode("ascii"), headers)

    def _sign(self, data: bytes) -> bytes:
        try:
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding, rsa
        except ImportError as exc:
            raise MissingDependencyError("cryptography", "vertex") from exc
        try:
            key = serialization.load_pem_private_key(self.private_key.encode("utf-8"), None)
        except (ValueError, TypeError) as exc:
            # The library's message can quote key material; say only what is wrong.
            raise ConfigError(
                f"the private key of {self.client_email} is not an unencrypted PEM key"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"the private key of {self.client_email} is not an RSA key")
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def require_cryptography() -> None:
    """Import what signing a service account's JWT needs (``cryptography``, the ``vertex``
    extra), raising :class:`~deja.errors.MissingDependencyError` without it: a check at
    start-up for a deployment that would otherwise fail at its first request."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: F401
        from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("cryptography", "vertex") from exc


def parse_token_response(data: object, now: float, *, status_code: int = 200) -> AccessToken:
    """The :class:`AccessToken` in a token endpoint's JSON answer received at ``now``.

    An OAuth error answer (``{"error": ..., "error_description": ...}``, or any status
    code of 400 or more) raises: :class:`~deja.errors.AuthenticationError` for refused
    credentials (``invalid_grant`` — a bad signature, an unknown account, a clock far
    off —, ``invalid_client``, ``unauthorized_client``),
    :class:`~deja.errors.BadRequestError` for a malformed request (``invalid_scope``,
    ``invalid_request``, ``unsupported_grant_type``), otherwise the error class of the
    status. A success without ``access_token`` raises :class:`~deja.errors.ProviderError`.
    ``expires_in`` missing counts as one hour, Google's lifetime.
    """
    body = data if isinstance(data, Mapping) else {}
    error = body.get("error")
    if error is not None or status_code >= 400:
        # Google's token endpoint puts a string here; other OAuth servers an object.
        code = error.get("status") if isinstance(error, Mapping) else error
        description = body.get("error_description")
        if description is None and isinstance(error, Mapping):
            description = error.get("message")
        message = f"the token endpoint refused the service account: {code}"
        if description:
            message += f": {description}"
        cls: type[ProviderError]
        if code in _CREDENTIAL_ERRORS:
            cls = AuthenticationError
        elif code in _REQUEST_ERRORS:
            cls = BadRequestError
        else:
            cls = provider_error_for_status(status_code if status_code >= 400 else 400)
        raise cls(
            message,
            status_code=status_code if status_code >= 400 else None,
            body=dict(body),
            provider=_PROVIDER,
        )
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ProviderError(
            "the token endpoint answered without an access_token",
            status_code=status_code,
            body=None,  # an answer we cannot read might still hold a credential
            provider=_PROVIDER,
        )
    lifetime = body.get("expires_in", ASSERTION_LIFETIME)
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)
    if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or lifetime < 0:
        lifetime = ASSERTION_LIFETIME
    kind = body.get("token_type")
    return AccessToken(
        token=token,
        expires_at=float(now) + float(lifetime),
        token_type=kind if isinstance(kind, str) and kind else "Bearer",
    )
