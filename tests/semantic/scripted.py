"""An embedder for tests that counts its calls, waits, or fails, around a real one; and the
decision a cache makes on a pair."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any


class Scripted:
    """Embeds with ``inner``, after recording the call's size in :attr:`calls`, waiting
    ``delay`` seconds (a sleep in ``embed``, an ``asyncio.sleep`` in ``aembed``) and raising
    what ``refuse(texts)`` returns for the call's texts, else what ``fail(n)`` returns for
    the ``n``-th call, if anything. ``batch_size`` > 1: it takes batches, as a remote
    embedder does (the semantic tier then batches prompts)."""

    def __init__(
        self,
        inner: Any,
        *,
        delay: float = 0.0,
        fail: Callable[[int], BaseException | None] | None = None,
        refuse: Refusal | None = None,
        batch_size: int = 1,
    ) -> None:
        self.id, self.dim = inner.id, inner.dim
        self.batch_size = batch_size
        self.inner = inner
        self.delay = delay
        self.fail = fail
        self.refuse = refuse
        self.calls: list[int] = []

    def _failure(self, texts: Any) -> BaseException | None:
        self.calls.append(len(texts))
        refused = self.refuse(texts) if self.refuse is not None else None
        if refused is not None:
            return refused
        return self.fail(len(self.calls)) if self.fail is not None else None

    def embed(self, texts: Any) -> Any:
        error = self._failure(texts)
        time.sleep(self.delay)
        if error is not None:
            raise error
        return self.inner.embed(texts)

    async def aembed(self, texts: Any) -> Any:
        error = self._failure(texts)
        await asyncio.sleep(self.delay)
        if error is not None:
            raise error
        return self.inner.embed(texts)


def down(n: int) -> BaseException:
    """``fail=down``: every call fails."""
    return ConnectionError("embedder down")


Refusal = Callable[[Sequence[str]], BaseException | None]


def too_long(error: Callable[[str], BaseException]) -> Refusal:
    """``refuse=too_long(...)``: a call holding a text over 200 characters raises
    ``error(message)``, as an endpoint refuses a request for one input too long."""

    def refuse(texts: Sequence[str]) -> BaseException | None:
        if any(len(text) > 200 for text in texts):
            return error("maximum context length is 8192 tokens")
        return None

    return refuse


def bad_request(message: str) -> BaseException:
    """deja's 400 error (``too_long(bad_request)``)."""
    from deja.errors import BadRequestError

    return BadRequestError(message, status_code=400)


def decided(embedder: Any, stored: str, asked: str) -> Any:
    """The decision a cache makes on ``asked`` against ``stored`` (the shipped threshold,
    guards, substitution check and ``embedder``'s verifier, over its vectors)."""
    from deja.semantic.decision import DEFAULT_THRESHOLD, decide, word_similarity_for
    from deja.semantic.verifier import Verifier

    u, v = embedder.embed([stored, asked])
    return decide(
        float(u @ v),
        asked,
        stored,
        threshold=DEFAULT_THRESHOLD,
        verifier=Verifier.default_for(embedder.id),
        query_vector=v,
        candidate_vector=u,
        word_similarity=word_similarity_for(embedder),
    )


def remote_semantic_config(entries: Any, embeddings_base: str) -> dict[str, Any]:
    """A configuration of a semantic tier on a disk store at ``entries`` whose embedder is
    the (fake) OpenAI-compatible endpoint at ``embeddings_base``, 16-dimensional vectors."""
    return {
        "caching": {
            "type": "semantic",
            "store": {"type": "disk", "directory": str(entries)},
            "similarity_threshold": 0.9,
            "params": {
                "embedding_model": "text-embedding-3-small",
                "dimensions": 16,
                "api_base": embeddings_base,
                "api_key": "sk",
            },
        }
    }


async def canned_answer() -> dict[str, Any]:
    """A chat completion, as an upstream call's answer (``Cache.fetch``'s ``call``)."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "An answer."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
