"""The one error tree of deja.

Every error deja raises on purpose is a :class:`DejaError`. Library errors from
back-ends and HTTP clients are translated at the boundary (``raise ... from exc``)
so callers catch one family::

    DejaError
    ├── ConfigError            bad configuration (YAML path and suggestion in the message)
    ├── InvalidRequestError    a request deja cannot key or forward (bad message shape, NaN, ...)
    ├── StreamFormatError      a streamed chunk deja cannot read (deja.streaming; never stored)
    ├── ControlError           an unknown or ill-typed per-request cache option
    ├── KeyBuilderError        a custom key builder returned something that is not a digest
    ├── StoreError             a storage back-end failed (the cache façade turns these into misses)
    │   ├── EntryDecodeError   bytes in the store that are not a deja entry of a known version
    │   └── UnsupportedOperation  the store cannot do this (e.g. tags on a store with no tag index)
    ├── MissingDependencyError an optional extra is not installed (message names the pip command)
    └── ProviderError          the upstream answered with an error, or could not be reached
        ├── BadRequestError          400 / 422
        ├── AuthenticationError      401
        ├── PermissionDeniedError    403
        ├── NotFoundError            404
        ├── ConflictError            409
        ├── RateLimitError           429 (``retry_after`` in seconds when the upstream said)
        ├── ServerError              5xx
        ├── UpstreamTimeoutError     no answer in time
        └── UpstreamConnectionError  no connection
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "ControlError",
    "DejaError",
    "EntryDecodeError",
    "InvalidRequestError",
    "KeyBuilderError",
    "MissingDependencyError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "ServerError",
    "StoreBusy",
    "StoreError",
    "UnsupportedOperation",
    "UpstreamConnectionError",
    "UpstreamTimeoutError",
    "provider_error_for_status",
]


class DejaError(Exception):
    """Root of every error deja raises on purpose."""


class ConfigError(DejaError):
    """The configuration is invalid. ``path`` is the dotted YAML path, when known."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class InvalidRequestError(DejaError):
    """A request that deja cannot key or forward (wrong shape, wrong types, NaN...).

    ``param`` names the body field at fault when one is (``"max_tokens"``,
    ``"messages[2].content"``): the proxy's 400 carries it as OpenAI's error ``param``."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # rebuilt with its param (a worker process raising it, pickled back)
        return functools.partial(type(self), param=self.param), self.args


class ControlError(DejaError):
    """An unknown or ill-typed per-request cache option. ``option`` names it."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        self.option = option
        super().__init__(message)


class KeyBuilderError(DejaError):
    """A custom key builder failed or returned something that is not a usable digest."""


class StoreError(DejaError):
    """A storage back-end failed. The cache façade turns these into misses (fail-open)."""


class StoreBusy(StoreError):
    """This process had no free connection to the store in time (a burst of requests):
    the store itself is not known to have failed, so it is not skipped for it."""


class EntryDecodeError(StoreError):
    """Bytes found in a store are not a deja entry of a version this deja can read."""


class EntryVersionError(EntryDecodeError):
    """An entry written by a newer deja (sharing the store during a rolling upgrade): left
    in place and read as a miss, never counted as corruption."""


class UnsupportedOperation(StoreError):
    """The store cannot perform this operation (for example tags without a tag index)."""


class MissingDependencyError(DejaError):
    """An optional dependency is missing; the message names the ``pip install`` to run.

    ``package`` is the distribution to install and ``extra`` the deja extra that brings it;
    ``detail`` (optional) says what needs it or what to do instead, after the command.
    """

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        # rebuilt from its arguments (a worker process raising it, pickled back)
        return functools.partial(type(self), detail=self.detail), (self.package, self.extra)

    def __init__(self, package: str, extra: str, *, detail: str | None = None) -> None:
        self.package = package
        self.extra = extra
        self.detail = detail
        message = f"{package} is not installed; run: pip install 'deja-llm[{extra}]'"
        super().__init__(f"{message} ({detail})" if detail else message)


class ProviderError(DejaError):
    """The upstream provider answered with an error, or could not be reached.

    ``retry_after``: the seconds its answer asked to wait before asking again (a 429's, a
    503's ``Retry-After``), when it said. ``request_id``: the upstream's id of the failed
    call (``x-request-id``, Anthropic's ``request-id``, Bedrock's ``x-amzn-requestid``: what
    its support asks for), and ``upstream_headers`` that and its rate-limit headers
    (``x-ratelimit-*``, ``anthropic-ratelimit-*``), names in lower case; ``None`` and
    empty when it gave none, or gave no answer."""

    retry_after: float | None = None
    request_id: str | None = None
    upstream_headers: Mapping[str, str] = MappingProxyType({})

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: object = None,
        provider: str | None = None,
        url: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.provider = provider
        self.url = url
        """The upstream URL the message names, credentials removed (``None``: none named)."""
        super().__init__(message)


class BadRequestError(ProviderError):
    """The upstream rejected the request as malformed (400 or 422)."""


class AuthenticationError(ProviderError):
    """The upstream rejected the credentials (401)."""


class PermissionDeniedError(ProviderError):
    """The credentials may not do this (403)."""


class NotFoundError(ProviderError):
    """The model or resource does not exist upstream (404)."""


class ConflictError(ProviderError):
    """The upstream reported a conflict (409)."""


class RateLimitError(ProviderError):
    """The upstream is rate limiting (429). ``retry_after`` is in seconds when given."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        body: object = None,
        provider: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status_code=status_code, body=body, provider=provider)


class ServerError(ProviderError):
    """The upstream failed (5xx)."""


class UpstreamTimeoutError(ProviderError):
    """The upstream did not answer in time."""


class UpstreamConnectionError(ProviderError):
    """No connection to the upstream could be made."""


_BY_STATUS: dict[int, type[ProviderError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: UpstreamTimeoutError,  # the upstream (Bedrock: the model) took too long
    409: ConflictError,
    422: BadRequestError,
    424: ServerError,  # Bedrock's ModelErrorException: the model failed, worth a retry
    429: RateLimitError,
}


def provider_error_for_status(status_code: int) -> type[ProviderError]:
    """The :class:`ProviderError` subclass for an upstream HTTP status code."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, ProviderError)
