"""OpenAI-shaped response objects: attribute and item access over the JSON body.

``response.choices[0].message.content`` and ``response["choices"][0]["message"]["content"]``
both work, as does ``model_dump()``; fields the body does not have read as ``None``, as
the OpenAI SDK's optional fields do. Every response object carries ``cache``: the
:class:`~deja.result.CacheInfo` of how it was served.

The wrappers are thin (the JSON stays a dict underneath), so a cache hit pays for no model
validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from deja.result import CacheInfo

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "Completion",
    "CreateEmbeddingResponse",
    "OpenAIObject",
]


def _wrap(value: Any) -> Any:
    if type(value) is dict:
        return OpenAIObject(value)
    if type(value) is list:
        return [_wrap(v) for v in value]
    return value


class OpenAIObject:
    """A JSON object with attribute access (``None`` for absent fields) and item access."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _wrap(self._data.get(name))

    def __getitem__(self, name: str) -> Any:
        return _wrap(self._data[name])

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, name: str, default: Any = None) -> Any:
        """Item access with a default, like ``dict.get``."""
        return _wrap(self._data.get(name, default))

    def keys(self) -> Any:
        """The field names."""
        return self._data.keys()

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """A deep copy of the body as plain dicts and lists (SDK-compatible name)."""
        copy: dict[str, Any] = orjson.loads(orjson.dumps(self._data))
        return copy

    def model_dump_json(self, **_: Any) -> str:
        """The body as a JSON string (SDK-compatible name)."""
        return orjson.dumps(self._data).decode()

    def to_dict(self) -> dict[str, Any]:
        """Same as :meth:`model_dump`."""
        return self.model_dump()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OpenAIObject):
            return self._data == other._data
        if isinstance(other, dict):
            return self._data == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable underneath, like a dict

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


class _Served(OpenAIObject):
    """A top-level response: the body plus how deja served it."""

    __slots__ = ("cache",)

    def __init__(self, data: dict[str, Any], cache: CacheInfo) -> None:
        super().__init__(data)
        self.cache = cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r}, cache={self.cache!r})"


class ChatCompletion(_Served):
    """A ``chat.completion`` response, with ``.cache``."""

    __slots__ = ()


class Completion(_Served):
    """A legacy ``text_completion`` response, with ``.cache``."""

    __slots__ = ()


class CreateEmbeddingResponse(_Served):
    """An embeddings response (``object: list``), with ``.cache``."""

    __slots__ = ()


class ChatCompletionChunk(OpenAIObject):
    """One ``chat.completion.chunk`` of a stream."""

    __slots__ = ()
