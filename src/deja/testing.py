"""Public helpers for testing code that uses deja.

:class:`FakeClock` is a wall clock you move by hand, so TTL and age tests never sleep:
pass it as ``clock=`` to a store or cache.

:class:`FakeOpenAIServer` is a simulated OpenAI-compatible API (no real model behind it) on a
free loopback port: it speaks OpenAI's wire format over real HTTP, records every request, and
lets a test script replies (:class:`Reply`), failures, delays and dropped connections.

:class:`FakeAnthropicServer` is a simulated Anthropic Messages API (JSON and SSE) that records
what deja sent, simulates prompt caching (cache writes, then reads, with the 5m/1h split) and
answers with Anthropic's own errors (a fifth ``cache_control`` breakpoint, a missing
``anthropic-version`` header, a wrong ``x-api-key``); :class:`AnthropicReply` scripts an answer.

:class:`FakeBedrockServer` is a simulated Amazon Bedrock Converse API (JSON, and ConverseStream
in AWS's binary event-stream framing) that checks SigV4 signatures and Bedrock API keys,
simulates ``cachePoint`` prompt caching and answers with AWS's errors; :class:`BedrockReply`
scripts an answer.

:class:`FakeGeminiServer` is a simulated Gemini API, on Google AI's paths and Vertex AI's
(``generateContent``, ``streamGenerateContent``, ``cachedContents`` and an OAuth token
endpoint that checks service-account JWTs); :class:`GeminiReply` scripts an answer and
:func:`make_service_account` makes a throwaway service account for it.
"""

from __future__ import annotations

import threading

from deja._fake_anthropic import AnthropicReply, FakeAnthropicServer
from deja._fake_bedrock import BedrockReply, FakeBedrockServer
from deja._fake_gemini import FakeGeminiServer, GeminiReply, make_service_account
from deja._fake_openai import FakeOpenAIServer, RecordedRequest, Reply

__all__ = [
    "AnthropicReply",
    "BedrockReply",
    "FakeAnthropicServer",
    "FakeBedrockServer",
    "FakeClock",
    "FakeGeminiServer",
    "FakeOpenAIServer",
    "GeminiReply",
    "RecordedRequest",
    "Reply",
    "make_service_account",
]


class FakeClock:
    """A callable clock (seconds since the epoch) that only moves when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock does not run backwards")
        with self._lock:
            self._now += seconds

    def set(self, now: float) -> None:
        """Jump to an absolute time."""
        with self._lock:
            self._now = float(now)
