"""The arguments of an official ``openai`` SDK call, read for the cache (shared by the
async wrapper and its generated sync twin, see :func:`deja.wrap`)."""

from __future__ import annotations

from typing import Any

from deja.errors import InvalidRequestError

__all__ = ["required", "sdk_dump", "split_call"]

# SDK call options that are not request fields
_SDK_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


def split_call(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(kwargs for the SDK without deja's controls, request fields for the key, controls)."""
    extra_body = dict(kwargs.get("extra_body") or {})
    control = extra_body.pop("cache", None)
    sdk_kwargs = dict(kwargs)
    if extra_body:
        sdk_kwargs["extra_body"] = extra_body
    else:
        sdk_kwargs.pop("extra_body", None)
    fields = {k: v for k, v in kwargs.items() if k not in _SDK_OPTIONS and not _not_given(v)}
    fields.update(extra_body)  # sent upstream as body fields, so they are keyed like them
    return sdk_kwargs, fields, control


def _not_given(value: Any) -> bool:
    """The SDK's "not given" markers (``openai.NOT_GIVEN``, ``openai.omit``): the SDK sends
    nothing for them, so nothing is keyed."""
    return type(value).__name__ in ("NotGiven", "Omit")


def required(fields: dict[str, Any], name: str) -> Any:
    if name not in fields:
        raise InvalidRequestError(f"'{name}' is required")
    return fields.pop(name)


def sdk_dump(model: Any) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    return data
