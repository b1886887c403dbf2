"""The native providers' world of the chaos runs: simulated Anthropic, Bedrock and Gemini
upstreams behind the proxy's OpenAI format, their faults, and the requests drawn for them."""

from __future__ import annotations

import base64
import contextlib
import random
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from deja.providers.bedrock import AwsCredentials
from deja.testing import (
    AnthropicReply,
    BedrockReply,
    FakeAnthropicServer,
    FakeBedrockServer,
    FakeGeminiServer,
    GeminiReply,
)
from tests.chaos.checks import ChatCase, Choice, Oracle, identity
from tests.chaos.proxy import controls, deployment

AWS = AwsCredentials("AKIDPROXY", "proxy-secret-key")
AWS_REGION = "eu-west-3"
ANTHROPIC_KEY = "sk-ant"
GEMINI_KEY = "AIza-test"
MANUAL = "Policy 9: expenses above 100 EUR need a receipt and a manager's approval. " * 150
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
CITIES = ("Paris", "Rome", "Oslo")
TOOL_PROMPT = "TOOL weather in {}"  # answered with a get_weather call for the city
PROMPTS = [
    "What is the capital of France?",
    "What is the capital of Spain?",
    "How can I track my card?",
    "how do i track my card",
    "convert 5 km to miles",
    "convert 8 km to miles",
    "Summarize the plot of Hamlet",
    "Summarize the plot of Macbeth",
    *(TOOL_PROMPT.format(city) for city in CITIES),
    "Is 17 a prime number?",
    "Is 21 a prime number?",
    *(f"Random question number {i} about topic {i * 7 % 11}" for i in range(16)),
]
SAME_MEANING = [{"How can I track my card?", "how do i track my card"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
HISTORY: list[dict[str, Any]] = [  # a tool round trip before the question
    {"role": "user", "content": "What is the weather in Berlin?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_history",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Berlin"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_history", "content": "12C and rain"},
]
#: Converse refuses tool blocks without tools: deja tells such a history as text, which
#: then leads the last user message Bedrock sees (a documented rewrite).
BEDROCK_HISTORY_AS_TEXT = "[result of get_weather:]\n12C and rain\n"
#: Each deployment, and the one it shares its entries with: injection points only add
#: cache markers to what is sent, and keys leave those out.
KEYED_AS = {
    "claude": "claude",
    "claude-inj": "claude",
    "bedrock": "bedrock",
    "gemini": "gemini",
    "gemini-inj": "gemini",
}
SEVERAL_CHOICES = {"gemini", "gemini-inj"}  # n > 1: Gemini only (the others refuse it)


@dataclass(frozen=True)
class Fault:
    """A planned fault: ``fail`` (``value``: the status, and whether a ``retry-after: 0``
    goes with it), ``slow`` (the provider's latency for the batch, in seconds), or a
    Bedrock stream ``cut`` or ended by an ``exception`` event (``value``: after how many
    events)."""

    upstream: str  # anthropic, bedrock or gemini
    kind: str
    value: Any = None


class Upstreams:
    """The three simulated providers. Reply functions script the tool-calling answers and
    Bedrock's broken streams; a ``slow`` fault raises a provider's latency for the batch."""

    def __init__(
        self,
        anthropic: FakeAnthropicServer,
        bedrock: FakeBedrockServer,
        gemini: FakeGeminiServer,
        oracle: Oracle,
    ) -> None:
        self.anthropic, self.bedrock, self.gemini = anthropic, bedrock, gemini
        self.oracle = oracle
        self._bedrock_faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.disarm()

    def arm(self, fault: Fault) -> None:
        """Make the fault's provider misbehave (its next request, or the whole batch)."""
        server = getattr(self, fault.upstream)
        if fault.kind == "fail":
            status, retry = fault.value
            server.fail_next(status, headers={"retry-after": "0"} if retry else None)
        elif fault.kind == "slow":
            server.latency = fault.value
        else:
            with self._lock:
                self._bedrock_faults.append(fault)

    def disarm(self) -> None:
        """Forget every fault not used yet, and the slowness."""
        with self._lock:
            self._bedrock_faults.clear()
        # reset() forgets the unused failures (and the providers' prompt caches)
        self.anthropic.reset()
        self.anthropic.reply_with(self._anthropic)
        self.bedrock.reset()
        self.bedrock.reply_with(self._bedrock)
        self.gemini.reset()
        self.gemini.reply_with(self._gemini)
        for server in (self.anthropic, self.bedrock, self.gemini):
            server.latency = 0.0

    def _answer(self, question: str) -> str:
        return self.oracle.answers(question)[0]

    def _anthropic(self, body: dict[str, Any]) -> AnthropicReply | None:
        city = _tool_city(body)
        if city is None:
            return None
        calls = [{"name": "get_weather", "input": {"city": city}}]
        return AnthropicReply(self._answer(TOOL_PROMPT.format(city)), tool_uses=calls)

    def _gemini(self, body: dict[str, Any]) -> GeminiReply | None:
        city = _tool_city(body)
        if city is None:
            return None
        calls = [{"name": "get_weather", "args": {"city": city}}]
        return GeminiReply(self._answer(TOOL_PROMPT.format(city)), function_calls=calls)

    def _bedrock(self, body: dict[str, Any]) -> BedrockReply | None:
        city = _tool_city(body)
        with self._lock:
            fault = self._bedrock_faults.popleft() if self._bedrock_faults else None
        if city is None and fault is None:
            return None
        broken: dict[str, Any] = {}
        if fault is not None and fault.kind == "cut":
            broken["abort_after_events"] = fault.value
        elif fault is not None:
            broken = {"stream_exception": "throttlingException", "exception_after": fault.value}
        if city is None:
            return BedrockReply(self._answer(_bedrock_question(body)), **broken)
        calls = [{"name": "get_weather", "input": {"city": city}}]
        return BedrockReply(self._answer(TOOL_PROMPT.format(city)), tool_uses=calls, **broken)


def _tool_city(body: dict[str, Any]) -> str | None:
    """The city of a tool prompt (only ever a request's last user message), if one is in
    this provider request."""
    raw = orjson.dumps(body).decode()
    return next((city for city in CITIES if TOOL_PROMPT.format(city) in raw), None)


def _bedrock_question(body: dict[str, Any]) -> str:
    """The text of the last user message of a Converse request, as Bedrock's fake reads it."""
    last = [m for m in body["messages"] if m.get("role") == "user"][-1]
    return "\n".join(b["text"] for b in last["content"] if isinstance(b.get("text"), str))


def draw_fault(rng: random.Random) -> Fault:
    upstream = rng.choice(["anthropic", "bedrock", "gemini"])
    draw = rng.random()
    if draw < 0.35:
        return Fault(upstream, "fail", (529 if upstream == "anthropic" else 503, False))
    if draw < 0.5:
        return Fault(upstream, "fail", (429, True))
    if draw < 0.65:
        return Fault(upstream, "slow", rng.choice([0.5, 1.5]))
    return Fault("bedrock", "cut" if draw < 0.82 else "exception", rng.randint(1, 5))


def draw_chat(rng: random.Random, oracle: Oracle) -> ChatCase:
    question = rng.choice(PROMPTS)
    model = rng.choice(list(KEYED_AS))
    n = rng.choice([1, 1, 2]) if model in SEVERAL_CHOICES else 1
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": MANUAL if rng.random() < 0.5 else "Brief."})
    if rng.random() < 0.3:
        messages += HISTORY
    if rng.random() < 0.2:
        image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
        messages.append({"role": "user", "content": [{"type": "text", "text": question}, image]})
    else:
        messages.append({"role": "user", "content": question})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if n > 1:
        body["n"] = n
    city = next((c for c in CITIES if question == TOOL_PROMPT.format(c)), None)
    if city is not None or rng.random() < 0.3:
        body["tools"] = TOOLS
    if rng.random() < 0.5:
        body["max_tokens"] = rng.choice([300, 1000])
    if rng.random() < 0.3:
        body["temperature"] = 0
    control, namespace = controls(rng)
    if control:
        body["cache"] = control
    asked = question
    if model == "bedrock" and "tools" not in body and HISTORY[0] in messages:
        asked = BEDROCK_HISTORY_AS_TEXT + question
    if city is not None:  # every choice is the scripted tool call
        calls = (("get_weather", {"city": city}),)
        want = (Choice(oracle.answers(question)[0], "tool_calls", calls),) * n
    else:
        want = tuple(Choice(text, "stop") for text in oracle.answers(asked, n))
    meaning = next((group for group in SAME_MEANING if question in group), {question})
    return ChatCase(
        body,
        question,
        identity(body, keyed_as=KEYED_AS[model]),
        want,
        namespace,
        frozenset(text for q in meaning for text in oracle.answers(q, n)),
        usage_adds_up=model not in SEVERAL_CHOICES,
    )


def model_list(
    anthropic: FakeAnthropicServer, bedrock: FakeBedrockServer, gemini: FakeGeminiServer
) -> list[dict[str, Any]]:
    system = {"cache_control_injection_points": [{"location": "message", "role": "system"}]}
    claude: dict[str, Any] = {
        "model": "anthropic/claude-sonnet-4-5",
        "api_base": anthropic.url,
        "api_key": ANTHROPIC_KEY,
    }
    flash = {"model": "gemini/gemini-2.5-flash", "api_base": gemini.url, "api_key": GEMINI_KEY}
    return [
        deployment("claude", **claude),
        deployment("claude-inj", **claude, **system),
        deployment(
            "bedrock",
            model="bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
            api_base=bedrock.url,
            aws_access_key_id=AWS.access_key,
            aws_secret_access_key=AWS.secret_key,
            aws_region_name=AWS_REGION,
            **system,
        ),
        deployment("gemini", **flash),
        deployment("gemini-inj", **flash, **system),
    ]


@contextlib.contextmanager
def providers(
    *, chunk_delay: float
) -> Iterator[tuple[FakeAnthropicServer, FakeBedrockServer, FakeGeminiServer]]:
    """The three simulated providers, started, with the credentials :func:`model_list` uses."""
    with (
        FakeAnthropicServer(api_key=ANTHROPIC_KEY, chunk_delay=chunk_delay) as anthropic,
        FakeBedrockServer(credentials=AWS, region=AWS_REGION, chunk_delay=chunk_delay) as bedrock,
        FakeGeminiServer(api_key=GEMINI_KEY, chunk_delay=chunk_delay) as gemini,
    ):
        yield anthropic, bedrock, gemini
