"""The pure parts of embeddings cached per item (both clients and the proxy use them):
what an input holds, the requests of its items, the assembled answer.

Kept out of ``deja/_async/embeddings.py``, which ``scripts/unasync.py`` turns into a sync
twin: these are one class and one function each, whichever twin calls them.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from deja.request import Request, check_embedding_input
from deja.result import CacheInfo

__all__ = [
    "DEFAULT_EMBEDDING_INPUTS",
    "EMBEDDING_INPUT_LIMITS",
    "EmbeddingBatch",
    "batch_lock_name",
    "Fetched",
    "embedding_input_limit",
    "embedding_items",
    "float32_base64",
    "identity",
    "item_requests",
    "token_shares",
    "usage_totals",
]


# The most inputs one embeddings call may carry, by provider: what deja sends its misses
# in batches of (the clients, wrap() and the proxy alike), and what the proxy takes in one
# request (OpenAI's, which it mirrors). Only OpenAI-compatible /embeddings endpoints are
# called for embeddings (Anthropic, Gemini and Bedrock are chat completions only).
#   openai, azure: 2,048 ("any array must be 2048 dimensions or less"; Azure OpenAI's
#     embeddings how-to: "the max array size is 2048")
#   mistral: 256 (undocumented; 257 answered "Too many inputs in request, split into more
#     batches", as rig-core's Mistral provider found against the live API)
# Any other server (vLLM, Ollama, a gateway) gets OpenAI's: a smaller call is never refused
# where a larger one is taken, and one call of 10,000 inputs held a server for seconds.
EMBEDDING_INPUT_LIMITS: Mapping[str, int] = MappingProxyType(
    {"openai": 2048, "azure": 2048, "mistral": 256}
)
DEFAULT_EMBEDDING_INPUTS = EMBEDDING_INPUT_LIMITS["openai"]  # (any other server's)


def embedding_input_limit(provider: str) -> int:
    """The most inputs one embeddings call to ``provider`` carries
    (:data:`EMBEDDING_INPUT_LIMITS`, else :data:`DEFAULT_EMBEDDING_INPUTS`)."""
    return EMBEDDING_INPUT_LIMITS.get(provider, DEFAULT_EMBEDDING_INPUTS)


def item_requests(
    *,
    model: str,
    items: Sequence[Any],
    params: Mapping[str, Any],
    api_base: str | None,
    tenant: str | None,
) -> list[Request]:
    """One keyed request per input item (each item is cached on its own)."""
    return [
        Request.from_body(
            {**params, "model": model, "input": item},
            kind="embedding",
            api_base=api_base,
            tenant=tenant,
        )
        for item in items
    ]


def identity(item: Any) -> Any:
    """A hashable stand-in for one input item (a string, or a list of token ids)."""
    return tuple(item) if isinstance(item, list) else item


@dataclass(slots=True)
class EmbeddingBatch:
    """The assembled answer: one vector per input item, in order."""

    vectors: list[list[float]]
    model: str
    usage: dict[str, int]
    info: CacheInfo
    # how many of the items came from the cache (``info.status`` is "hit" only when all
    # did, "miss" when any was fetched)
    cached: int = 0

    def response(self, *, encoding_format: str | None = None) -> dict[str, Any]:
        """An OpenAI embeddings body; ``base64`` encodes the vectors as float32 bytes."""
        return {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": float32_base64(v) if encoding_format == "base64" else v,
                }
                for i, v in enumerate(self.vectors)
            ],
            "model": self.model,
            "usage": dict(self.usage),
        }


def float32_base64(vector: Sequence[float]) -> str:
    """A vector as OpenAI's ``encoding_format: base64``: little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_items(value: object) -> list[Any]:
    """The input items of an embeddings call (a string, strings, or token arrays)."""
    check_embedding_input(value)
    assert isinstance(value, (str, Sequence))  # (for the type checker: checked above)
    if isinstance(value, str):
        return [value]
    if not isinstance(value[0], (str, Sequence)):
        return [list(value)]  # one tokenized input
    return [v if isinstance(v, str) else list(v) for v in value]


@dataclass(slots=True)
class Fetched:
    """What one upstream call for the missing items brought: their vectors, in order."""

    vectors: list[list[float]]
    model: str
    usage: dict[str, int]
    cost: float
    # each item's own answer and cost, as stored
    responses: list[dict[str, Any]]
    costs: list[float]


def usage_totals(usage: object) -> dict[str, int]:
    if isinstance(usage, Mapping):
        prompt = usage.get("prompt_tokens")
        total = usage.get("total_tokens", prompt)
        if isinstance(prompt, int) and isinstance(total, int):
            return {"prompt_tokens": prompt, "total_tokens": total}
    return {"prompt_tokens": 0, "total_tokens": 0}


def token_shares(items: Sequence[Any], total: int) -> list[int]:
    """Split a batch's prompt tokens over its items by length (the API reports one total)."""
    sizes = [len(item) if isinstance(item, (str, list)) else 1 for item in items]
    weight = sum(sizes) or 1
    shares = [total * size // weight for size in sizes]
    shares[-1] += total - sum(shares)
    return shares


def batch_lock_name(flight: str) -> str:
    """The store lock of a batch flight (its items' keys joined by "|"): under the first
    item's key prefix and scope, as every key deja writes is (a Redis user limited to
    ``deja:*`` may take it)."""
    scope = flight.partition("|")[0].rpartition(":")[0]
    return f"{scope}:batch-{hashlib.sha256(flight.encode()).hexdigest()}"
