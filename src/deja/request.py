"""The normalized request: what deja keys, looks up and forwards.

A :class:`Request` is built once per call from the caller's arguments (library) or body
(proxy). Building it resolves the model to ``provider/model`` and the ``api_base`` to a
normalized URL, validates the message shapes and the common fields' types and shapes
(refusing what no API deja calls takes, and below the bounds of the APIs whose bounds it
knows), and keeps every body field as given; what counts for the key is decided later by
:mod:`deja.keys`.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, TypeGuard
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from deja.errors import InvalidRequestError

__all__ = [
    "LITELLM_PROVIDERS",
    "PROVIDER_API_BASES",
    "PROVIDER_ALIASES",
    "Request",
    "check_embedding_input",
    "check_encoding_format",
    "check_params",
    "check_tenant",
    "env_api_base",
    "is_openais",
    "knows_bounds",
    "RequestKind",
    "normalize_api_base",
    "resolve_model",
    "upstream_base",
    "with_provider",
]

RequestKind = Literal["chat", "completion", "embedding"]

# Default endpoints of the providers deja knows by prefix. ``None``: the provider has no
# single public endpoint (Azure deployments, Bedrock and Vertex regions, self-hosted vLLM),
# so the caller must pass ``api_base``. A prefix that names no provider is part of the model
# name (``meta-llama/Llama-3-8B`` on a vLLM server), and the provider is OpenAI-compatible;
# one that names a LiteLLM provider deja does not call is refused (LITELLM_PROVIDERS).
PROVIDER_API_BASES: Mapping[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "deepseek": "https://api.deepseek.com",
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "together_ai": "https://api.together.xyz/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "xai": "https://api.x.ai/v1",
    "perplexity": "https://api.perplexity.ai",
    "cerebras": "https://api.cerebras.ai/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "ollama": "http://localhost:11434/v1",
    "lm_studio": "http://localhost:1234/v1",
    "gemini": "https://generativelanguage.googleapis.com",
    "vllm": None,
    "hosted_vllm": None,
    "llamacpp": None,
    "azure": None,
    "bedrock": None,
    "vertex_ai": None,
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# LiteLLM's names for the providers deja calls the same way: ``ollama_chat/`` is LiteLLM's
# chat route to Ollama (its /api/chat), which applies the model's chat template as Ollama's
# OpenAI-compatible /v1/chat/completions does, so it is deja's ``ollama`` and shares its keys.
PROVIDER_ALIASES: Mapping[str, str] = {"ollama_chat": "ollama"}
_KNOWN_PROVIDERS = ", ".join(sorted({*PROVIDER_API_BASES, *PROVIDER_ALIASES}))  # (for messages)

# LiteLLM's provider prefixes (``LlmProviders`` in litellm/types/utils.py). One that deja
# has no adapter for must not be read as part of an OpenAI model name: the request would go
# to OpenAI (or OPENAI_BASE_URL) with that provider's API key (``cohere/command-r`` with a
# Cohere key). It is refused instead (:func:`resolve_model`).
LITELLM_PROVIDERS = _words(
    """
    a2a a2a_agent ai21 ai21_chat aiml aiohttp_openai amazon_nova anthropic anthropic_text
    apertis assemblyai auto_router aws_polly azure azure_ai azure_text baseten bedrock
    bedrock_mantle black_forest_labs bytez cerebras charity_engine chatgpt chutes clarifai
    cloudflare codestral cohere cohere_chat cometapi compactifai cursor custom custom_openai
    darkbloom dashscope databricks datarobot deepgram deepinfra deepseek docker_model_runner
    dotprompt elevenlabs empower fal_ai featherless_ai fireworks_ai friendliai galadriel gdc
    gemini gigachat github github_copilot gradient_ai groq helicone heroku hosted_vllm
    huggingface humanloop hyperbolic inception infinity jina_ai lambda_ai langflow langfuse
    langgraph lemonade libertai litellm_agent litellm_proxy llamafile lm_studio manus
    maritalk meta meta_llama milvus minimax mistral modelscope moonshot morph nano-gpt
    nebius neosantara nlp_cloud novita nscale nvidia_nim nvidia_riva oci ollama ollama_chat
    oobabooga openai openai_like openrouter ovhcloud parasail perplexity petals pg_vector
    pinstripes poe predibase publicai ragflow recraft reducto replicate runwayml s3_vectors
    sagemaker sagemaker_chat sagemaker_nova sambanova sap scaleway snowflake soniox
    stability synthetic tencent tensormesh text-completion-codestral
    text-completion-inception text-completion-openai together_ai topaz triton v0
    vercel_ai_gateway vertex_ai vertex_ai_beta vllm volcengine voyage wandb watsonx
    watsonx_text xai xiaomi_mimo xinference zai
    """
)

# Providers whose OpenAI-compatible API sits under a path that LiteLLM's documented
# api_base leaves out: Ollama's is under /v1 (``api_base: http://localhost:11434``).
_API_PATHS: Mapping[str, str] = {"ollama": "/v1"}

# Query parameters that carry credentials (Gemini's ``?key=``, Azure SAS tokens): they are
# stripped from the normalized api_base so no credential ever reaches a key or a log.
_CREDENTIAL_PARAMS = frozenset(
    {"key", "api_key", "api-key", "apikey", "token", "access_token", "sig", "signature"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _model_name(model: object) -> str:
    """``model`` as a plain string (a str Enum's value: str() would give "Enum.NAME"), or
    :class:`InvalidRequestError` unless it is a non-empty string."""
    if type(model) is str and model.strip():  # (every request's: the plain case first)
        return model
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError(
            f"model must be a non-empty string, got {model!r:.80}", param="model"
        )
    return str.__str__(model)


def resolve_model(model: str, *, strict: bool = False) -> tuple[str, str]:
    """Split ``provider/model`` into (provider, model).

    No prefix, or one that names no provider (``meta-llama/Llama-3-8B`` on a vLLM server),
    means an OpenAI-compatible ``openai`` model of that whole name; so does a LiteLLM
    provider deja does not call (``cohere/``, ``meta/`` on NVIDIA NIM or OpenRouter),
    unless ``strict``: a caller about to send the request to OpenAI's endpoint because it
    named none gets an :class:`InvalidRequestError` instead, as that would hand the
    provider's API key to another company.
    """
    model = _model_name(model)
    prefix, sep, rest = model.partition("/")
    if sep and rest:
        if prefix in PROVIDER_API_BASES:
            return prefix, rest
        if prefix in PROVIDER_ALIASES:
            return PROVIDER_ALIASES[prefix], rest
        if prefix in LITELLM_PROVIDERS and strict:
            raise InvalidRequestError(
                f"model {model!r}: deja does not support the provider {prefix!r} (supported:"
                f" {_KNOWN_PROVIDERS}); to send the name as it is to an OpenAI-compatible server,"
                f" write 'openai/{model}' or 'hosted_vllm/{model}' and give its api_base"
            )
    return "openai", model


def with_provider(model: str, provider: str) -> str:
    """``model`` as LiteLLM reads it with ``custom_llm_provider: provider``: prefixed with
    ``provider/`` unless its first segment already is ``provider`` (``azure/*`` with
    ``azure``), so that :func:`resolve_model` picks that provider exactly as the prefix
    would; ``openai`` keeps a provider-like name whole (``anthropic/claude-3`` on an
    OpenAI-compatible gateway).

    A provider deja does not call is an :class:`InvalidRequestError`, never an OpenAI
    model: the request would carry that provider's API key to OpenAI's wire format, or
    to OpenAI itself.
    """
    if provider not in PROVIDER_API_BASES and provider not in PROVIDER_ALIASES:
        what = "the provider" if provider in LITELLM_PROVIDERS else "a provider called"
        raise InvalidRequestError(
            f"deja does not call {what} {provider!r} (supported: {_KNOWN_PROVIDERS}); an"
            " OpenAI-compatible server is provider 'openai' with its api_base"
        )
    return model if model.split("/", 1)[0] == provider else f"{provider}/{model}"


def is_openais(api_base: str) -> bool:
    """Whether ``api_base`` is OpenAI's own endpoint (``api.openai.com``)."""
    try:
        host = urlsplit(api_base.strip()).hostname
    except ValueError:
        return False
    return host == "api.openai.com"


def env_api_base(provider: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The endpoint the environment names for ``provider`` (``OPENAI_BASE_URL`` /
    ``OPENAI_API_BASE``; LiteLLM's ``<PROVIDER>_API_BASE``; ``VERTEXAI_API_BASE``; the AWS
    SDKs' ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` / ``AWS_ENDPOINT_URL``), if any: what a
    :class:`deja.Client` without an ``api_base`` calls, and so keys. ``environ`` defaults
    to :data:`os.environ` (a configuration passes the environment it was loaded with)."""
    env = os.environ if environ is None else environ
    base = None
    if provider == "openai":
        base = env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_BASE")
    if base is None:
        base = env.get(f"{provider.upper()}_API_BASE")
    if base is None and provider == "vertex_ai":
        base = env.get("VERTEXAI_API_BASE")
    if base is None and provider == "bedrock":
        base = env.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME") or env.get("AWS_ENDPOINT_URL")
    return base


@functools.lru_cache(maxsize=1024)
def normalize_api_base(api_base: str | None, provider: str = "openai") -> str | None:
    """Normalize an endpoint URL so equivalent spellings give one key.

    Lower-cases scheme and host, drops credentials (user-info and credential query
    parameters), default ports, fragments and trailing slashes, and sorts the query.
    ``None`` means the provider's default endpoint.
    """
    if api_base is None:
        return PROVIDER_API_BASES.get(provider)
    if not isinstance(api_base, str) or not api_base.strip():
        raise InvalidRequestError("api_base must be a non-empty URL string")
    try:
        parts = urlsplit(api_base.strip())
        hostname = parts.hostname
    except ValueError:  # ("http://[::1": urllib's "Invalid IPv6 URL")
        raise InvalidRequestError(f"api_base must be an http(s) URL, got {api_base!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not hostname:
        raise InvalidRequestError(f"api_base must be an http(s) URL, got {api_base!r}")
    host = hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidRequestError(f"api_base has an invalid port: {api_base!r}") from exc
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in _CREDENTIAL_PARAMS
    )
    path = parts.path.rstrip("/") or _API_PATHS.get(provider, "")
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def upstream_base(provider: str, api_base: str) -> str:
    """The base URL a client calls for ``provider`` at ``api_base`` (the endpoint path is
    appended to it): ``api_base`` without its trailing slash, and for Ollama given without
    a path (LiteLLM's documented ``http://localhost:11434``), with the ``/v1`` its
    OpenAI-compatible API lives under. Nothing else changes: credentials in the URL stay."""
    path = _API_PATHS.get(provider)
    if path is not None:
        parts = urlsplit(api_base.strip())
        if not parts.path.strip("/"):
            return urlunsplit(parts._replace(path=path))
    return api_base.rstrip("/")


# Query parameters shown as they are where a URL is shown: the rest may hold a credential
# under a name no list can foresee (Azure Functions' ?code=...), so only their names show.
_PLAIN_QUERY = frozenset({"api-version", "api_version", "alt", "beta"})


def redact_url(url: str) -> str:
    """``url`` fit for a message or a log: without user-info or credential query
    parameters, and other parameters' values masked but a few known harmless ones
    (``https://user:pw@host/v1?api_key=k&code=c`` -> ``https://host/v1?code=***``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<an invalid URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    query = urlencode(
        [
            (k, v if k.lower() in _PLAIN_QUERY else "***")
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k.lower() not in _CREDENTIAL_PARAMS
        ],
        safe="*",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# a URL in a message, to the next space or quote (a password or key may hold , ; ( ) ')
# or to the , ; or | that starts the next URL of a list ("http://a/x,http://u:pw@b/y")
_URL_IN_TEXT = re.compile(
    r"\b[a-zA-Z][a-zA-Z0-9+.-]*://(?:(?![,;|]\s*[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s\"<>])+"
)
_AFTER_URL = ",.;:)]}'"  # what ends a sentence or a bracket around a URL, kept as said


def redact_urls_in(text: str) -> str:
    """``text`` (an error's message, say) with every URL in it as :func:`redact_url`
    shows it: no user-info, no credential in its query."""
    if "://" not in text:
        return text

    def shown(found: re.Match[str]) -> str:
        url = found.group()
        stripped = url.rstrip(_AFTER_URL)
        return redact_url(stripped) + url[len(stripped) :]

    return _URL_IN_TEXT.sub(shown, text)


def _check_messages(
    messages: object, *, known_api: bool = True
) -> tuple[tuple[Mapping[str, Any], ...], bool]:
    """Validate message shapes; also say whether all are plain ``{role, content: str}``.

    Messages are returned as plain JSON data (:func:`_json_data`): the key is made of them
    and the upstream body is sent from them, so both see the same fields.
    """
    if not _is_array(messages):
        raise InvalidRequestError("messages must be a list of message objects", param="messages")
    if not messages:
        raise InvalidRequestError("messages must hold at least one message", param="messages")
    checked: list[Mapping[str, Any]] = []
    plain = True
    for i, item in enumerate(messages):
        message = item
        if (
            type(message) is dict
            and len(message) == 2
            and type(message.get("content")) is str
            and type(message.get("role")) is str
        ):
            if message["role"] not in _PLAIN_ROLES:  # "", a tool message, an unknown role
                _check_message(message, i, known_api)
            checked.append(message)  # the common case, checked without ABC isinstance calls
            continue
        plain = False
        if not isinstance(message, Mapping):
            dump = getattr(message, "model_dump", None)  # SDK message objects in agent loops
            if not callable(dump):
                raise InvalidRequestError(
                    f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]"
                )
            message = dump(exclude_none=True)
            if not isinstance(message, Mapping):
                raise InvalidRequestError(
                    f"messages[{i}] must be an object with a 'role'", param=f"messages[{i}]"
                )
        if type(message) is not dict or not _plain_json(message):
            try:
                message = _json_data(message)
            except RecursionError:
                raise InvalidRequestError(
                    f"messages[{i}] is nested too deeply", param=f"messages[{i}]"
                ) from None
        _check_message(message, i, known_api)
        checked.append(message)
    return tuple(checked), plain


# The roles of a message that is whole as {role, content: str}
_PLAIN_ROLES = frozenset({"user", "assistant", "system", "developer"})
# What stands for an assistant message's content: OpenAI's own one-of (tool calls, a
# function call, a refusal, an audio answer's id) and the reasoning deja's answers carry
# (an agent loop puts an answer that was all reasoning back into the conversation)
_ASSISTANT_CONTENT = ("tool_calls", "function_call", "refusal", "audio")
_ASSISTANT_REASONING = ("reasoning_content", "thinking_blocks")
# The roles whose message is its content: without one, no API deja calls takes it (OpenAI
# and the providers deja translates to refuse it; a lenient server took it, and its answer
# to an empty turn was cached). Roles deja does not know are left to the upstream: some
# OpenAI-compatible servers have their own.
_CONTENT_ROLES = frozenset({"user", "system", "developer", "tool"})


def _check_message(message: Mapping[str, Any], i: int, known_api: bool) -> None:
    """Refuse a message no API takes: no role, content of a wrong type, no content where its
    role needs some, tool calls that are no list of objects, and (for an API whose rules
    deja knows: ``known_api``) a tool message that names no tool call."""
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise InvalidRequestError(
            f"messages[{i}].role must be a non-empty string", param=f"messages[{i}].role"
        )
    content = message.get("content")
    if type(content) is list:
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise InvalidRequestError(
                    f"messages[{i}].content[{j}] must be an object with a 'type'",
                    param=f"messages[{i}].content[{j}]",
                )
    elif content is not None and not isinstance(content, str):
        raise InvalidRequestError(
            f"messages[{i}].content must be a string or a list of parts",
            param=f"messages[{i}].content",
        )
    if role == "tool" and known_api and not isinstance(message.get("tool_call_id"), str):
        # (llama.cpp's and Ollama's tool messages may name the tool instead: theirs to judge)
        call_id = message.get("tool_call_id")
        said = "is required" if call_id is None else f"must be a string, got {call_id!r:.80}"
        raise InvalidRequestError(
            f"messages[{i}].tool_call_id {said}: a tool message answers the tool call of that id",
            param=f"messages[{i}].tool_call_id",
        )
    calls = message.get("tool_calls")
    if calls is not None:
        if not _is_array(calls):  # (any sequence: the SDK types it an Iterable)
            _bad_tool_calls(calls, i)
        for call in calls:
            if not isinstance(call, Mapping):
                _bad_tool_calls(calls, i)
    if content or content == "":
        return
    if role == "assistant":
        for name in _ASSISTANT_CONTENT:
            if message.get(name) not in (None, [], ""):
                return
        for name in _ASSISTANT_REASONING:
            if message.get(name) is not None:
                return
        raise InvalidRequestError(
            f"messages[{i}] is an assistant message with nothing in it: it needs content,"
            " tool_calls, function_call or refusal",
            param=f"messages[{i}].content",
        )
    if role in _CONTENT_ROLES:
        said = "is required" if content is None else "must not be an empty list"
        raise InvalidRequestError(
            f"messages[{i}].content {said} in a {role} message: a string or a non-empty"
            " list of parts",
            param=f"messages[{i}].content",
        )


def _bad_tool_calls(calls: object, i: int) -> NoReturn:
    raise InvalidRequestError(
        f"messages[{i}].tool_calls must be a list of tool call objects, got {calls!r:.80}",
        param=f"messages[{i}].tool_calls",
    )


def _is_array(value: object) -> TypeGuard[Sequence[Any]]:
    """Whether ``value`` is what JSON writes as an array: a list, or any other sequence that
    is no text (a tuple: the SDKs type these fields as iterables)."""
    return type(value) is list or (
        isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))
    )


def _plain_json(message: dict[str, Any]) -> bool:
    """Whether ``message`` is plain JSON data already, as :func:`_json_data` would leave it
    (but for lists written as tuples below its content, which the key and the body read as
    lists): orjson's walk, in C, refuses anything else (a str subclass, an SDK object, a
    mapping that is no dict). A 31-message tool conversation took 60 us walked in Python."""
    if type(message.get("role")) is not str:  # (orjson writes a str Enum as its value)
        return False
    try:
        orjson.dumps(message, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
    except TypeError:
        return False
    return type(message.get("content")) is not tuple


def _json_data(value: Any) -> Any:
    """``value`` as plain JSON data: mappings as dicts, other sequences (tuples) as lists,
    str subclasses (a str Enum role such as LlamaIndex's MessageRole) as plain strings
    (``str()`` of a str Enum is ``"Role.USER"``), keys too, and objects with a
    ``model_dump`` (the OpenAI SDK's tool calls, deja's own response objects, put back in
    the conversation by an agent loop) as what it returns without ``None`` fields, as
    :mod:`deja.keys` reads them. Anything else (a number key, bytes) stays as it is, for the
    key to refuse. (Only messages :func:`_plain_json` finds not plain come here.)"""
    if isinstance(value, str):
        return str.__str__(value)
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, Mapping):
        return {_plain_str(k): _json_data(v) for k, v in value.items()}
    if _is_array(value):
        return [_json_data(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return _json_data(dump(exclude_none=True))
    return value


def _plain_str(value: Any) -> Any:
    """A str subclass's value as a plain ``str``; anything else as it is."""
    return str.__str__(value) if type(value) is not str and isinstance(value, str) else value


# Not frozen (treat it as immutable all the same; use dataclasses.replace to derive one):
# a frozen dataclass costs ~1.5 us more to build here, and one is built per call.
@dataclass(slots=True)
class Request:
    """One normalized LLM request.

    ``params`` holds every other body field exactly as given (volatile ones included, so
    the request can be forwarded); :mod:`deja.keys` decides which of them are keyed.

    Build one with :meth:`chat` or :meth:`from_body`. One built with the constructor (or
    derived with :func:`dataclasses.replace`) is checked as they check theirs: a provider
    deja does not call, a model that is no non-empty string, a bad ``api_base`` (else
    normalized; ``None`` is the environment's endpoint, as :meth:`chat` reads it),
    ``params`` that are no object of fields or hold a field of a wrong type or shape,
    messages of a wrong shape (``kind="chat"``; none for the other kinds, whose ``prompt``
    or ``input`` is a field of ``params``) raise :class:`~deja.errors.InvalidRequestError`
    there, not somewhere deep in the cache.
    """

    provider: str
    model: str
    api_base: str | None
    messages: tuple[Mapping[str, Any], ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: RequestKind = "chat"
    tenant: str | None = None
    # True when every message is exactly {"role": str, "content": str}: such messages are
    # already canonical, so keying skips normalizing them. Set by the constructors after
    # checking; not an init field, so dataclasses.replace() resets it to the safe False.
    plain_messages: bool = field(default=False, init=False, repr=False, compare=False)
    # The default key digest, once computed ahead of the cache's lookup
    # (deja.keys.remember_digest: the proxy keys a large body in a thread). Not an init
    # field either, so dataclasses.replace() drops it with the fields it was computed from.
    _key_digest: str | None = field(default=None, init=False, repr=False, compare=False)
    # The semantic tier's scope digest (deja.semantic.scope.semantic_query), with the
    # embedder and custom-builder context it was computed for: the proxy computes it in
    # the thread that keys a large body, and a lookup's store reuses the lookup's.
    _scope_digest: tuple[str, str | None, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # (only a Request built by hand, or by dataclasses.replace, comes here: chat and
        # from_body check their arguments as they normalize them, then build with _checked)
        provider = self.provider
        if type(provider) is not str or provider not in PROVIDER_API_BASES:
            provider = _known_provider(provider)
        model = self.model
        if type(model) is not str or not model.strip():
            model = _model_name(model)
        # None is the environment's endpoint, as for chat and from_body (a hand-built request
        # keyed apart from theirs when OPENAI_BASE_URL or the like was set)
        base = self.api_base
        base = normalize_api_base(env_api_base(provider) if base is None else base, provider)
        given = self.params
        if not isinstance(given, Mapping) or not all(type(k) is str for k in given):
            raise InvalidRequestError(
                f"params must be an object of body fields by name, got {given!r:.80}",
                param="params",
            )
        params = dict(given)  # (check_params writes a stop tuple as a list: not the caller's)
        kind = self.kind
        _check_kind(kind)
        check_params(params, kind, provider=provider, api_base=base)
        messages, plain = _check_parts(
            kind, self.messages, params, known_api=knows_bounds(provider, base)
        )
        self.provider, self.model, self.api_base = provider, model, base
        self.messages, self.params, self.tenant = messages, params, check_tenant(self.tenant)
        self.plain_messages = plain

    @classmethod
    def _checked(
        cls,
        *,
        provider: str,
        model: str,
        api_base: str | None,
        messages: tuple[Mapping[str, Any], ...],
        params: Mapping[str, Any],
        kind: RequestKind,
        tenant: str | None,
        plain: bool,
    ) -> Request:
        """A Request of fields its caller has checked and normalized (:meth:`chat`,
        :meth:`from_body`): built without :meth:`__post_init__`'s second look at them,
        which would cost a call as much again."""
        request = cls.__new__(cls)
        request.provider = provider
        request.model = model
        request.api_base = api_base
        request.messages = messages
        request.params = params
        request.kind = kind
        request.tenant = tenant
        request.plain_messages = plain
        request._key_digest = None
        request._scope_digest = None
        return request

    @property
    def upstream(self) -> str:
        """The resolved upstream model, ``provider/model``."""
        return f"{self.provider}/{self.model}"

    @classmethod
    def chat(
        cls,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        api_base: str | None = None,
        tenant: str | None = None,
        **params: Any,
    ) -> Request:
        """A chat-completions request (``messages`` plus body parameters)."""
        provider, name = resolve_model(model)
        base = normalize_api_base(api_base or env_api_base(provider), provider)
        checked, plain = _check_messages(messages, known_api=knows_bounds(provider, base))
        check_params(params, provider=provider, api_base=base)
        return cls._checked(
            provider=provider,
            model=name,
            api_base=base,
            messages=checked,
            params=params,
            kind="chat",
            tenant=check_tenant(tenant),
            plain=plain,
        )

    @classmethod
    def from_body(
        cls,
        body: Mapping[str, Any],
        *,
        kind: RequestKind = "chat",
        api_base: str | None = None,
        tenant: str | None = None,
    ) -> Request:
        """Build from the JSON body of a chat, completions or embeddings call."""
        if not isinstance(body, Mapping):
            raise InvalidRequestError("the request body must be a JSON object")
        if "model" not in body:
            raise InvalidRequestError("'model' is required")
        if kind != "chat":
            _check_kind(kind)
        # a completions or embeddings body's "messages" is one more field, sent and keyed
        taken = ("model", "messages") if kind == "chat" else ("model",)
        params = {k: v for k, v in body.items() if k not in taken}
        provider, name = resolve_model(body["model"])
        base = normalize_api_base(api_base or env_api_base(provider), provider)
        check_params(params, kind, provider=provider, api_base=base)
        if kind == "chat":
            if "messages" not in body:
                raise InvalidRequestError("'messages' is required")
            messages, plain = _check_messages(
                body["messages"], known_api=knows_bounds(provider, base)
            )
        else:  # (its body's "messages", if any, is one of its params)
            messages, plain = _check_parts(kind, (), params, known_api=False)
        return cls._checked(
            provider=provider,
            model=name,
            api_base=base,
            messages=messages,
            params=params,
            kind=kind,
            tenant=check_tenant(tenant),
            plain=plain,
        )


_KINDS: frozenset[str] = frozenset({"chat", "completion", "embedding"})


def _check_kind(kind: object) -> None:
    if kind not in _KINDS:
        raise InvalidRequestError(
            f"kind must be 'chat', 'completion' or 'embedding', got {kind!r:.80}", param="kind"
        )


def _known_provider(provider: object) -> str:
    """``provider`` as deja names it (an alias resolved), or InvalidRequestError."""
    if isinstance(provider, str):
        name = str.__str__(provider)
        if name in PROVIDER_API_BASES:
            return name
        if name in PROVIDER_ALIASES:
            return PROVIDER_ALIASES[name]
    raise InvalidRequestError(
        f"provider must be one deja calls ({_KNOWN_PROVIDERS}), got {provider!r:.80}",
        param="provider",
    )


def _check_parts(
    kind: RequestKind, messages: object, params: Mapping[str, Any], *, known_api: bool
) -> tuple[tuple[Mapping[str, Any], ...], bool]:
    """A request's own part, by ``kind``: a chat's messages (checked and as plain JSON data,
    and whether all are plain: :func:`_check_messages`); a completion's ``prompt`` or an
    embedding's ``input``, which must be in ``params`` (and the input of a shape OpenAI
    takes), and no messages."""
    if kind == "chat":
        return _check_messages(messages, known_api=known_api)
    if not _is_array(messages) or messages:
        raise InvalidRequestError(
            f"{kind} requests have no messages (their text is a field of their params),"
            f" got {messages!r:.80}",
            param="messages",
        )
    required = "prompt" if kind == "completion" else "input"
    if required not in params:
        raise InvalidRequestError(f"'{required}' is required", param=required)
    if kind == "embedding":  # (the clients and the proxy's items pass, as built)
        check_embedding_input(params["input"])
    return (), True


# The types of the common body fields (null is "not given" for each): a wrong one is the
# caller's mistake, refused here rather than forwarded and, if the upstream took it, cached
# ("stream": "false" would otherwise read as true)
_NUMBER_PARAMS = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})
_INT_PARAMS = frozenset({"n", "max_tokens", "max_completion_tokens", "seed", "top_logprobs"})
_BOOL_PARAMS = frozenset({"stream", "logprobs", "parallel_tool_calls", "store"})
# ... and of those the key leaves out (volatile): a wrong one was served the right
# request's entry, and stored under its key when the upstream let it through
_STRING_PARAMS = frozenset(
    {"user", "safety_identifier", "service_tier", "prompt_cache_key", "prompt_cache_retention"}
)
_OBJECT_PARAMS = frozenset({"metadata", "stream_options"})
# Fields of a shape no API deja calls takes otherwise (checked for chat and completions):
# a lenient upstream answered "tools": 5 and the answer was cached; a provider deja
# translates to failed inside the translation (a 500) or got a request it refuses
_SHAPED_PARAMS = frozenset(
    {"tools", "tool_choice", "response_format", "logit_bias", "functions", "function_call"}
)
# (OpenAI's deprecated forms of tools and tool_choice, still taken by its API and LiteLLM)
_CHOICE_PARAMS = frozenset({"tool_choice", "function_call"})


def check_params(
    params: dict[str, Any],
    kind: RequestKind = "chat",
    *,
    provider: str | None = None,
    api_base: str | None = None,
) -> None:
    """Refuse a common body field of the wrong type, or of a value or shape that no API
    deja calls takes (``n`` below 1, ``top_p`` outside 0..1, ``tools`` that are not a list
    of objects...); a ``stop`` tuple becomes a list.

    ``provider`` and ``api_base`` (normalized) say where the request goes; when deja knows
    that API's lower bounds (:func:`knows_bounds`), a ``max_tokens`` or
    ``max_completion_tokens`` below 1 (the legacy completions' ``max_tokens`` below 0), a
    negative ``temperature`` or ``top_logprobs`` is refused too."""
    lists: dict[str, list[Any]] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name == "logprobs" and kind == "completion":
            # the legacy completions endpoint's logprobs is how many (0-5), not a switch
            ok = isinstance(value, int) and not isinstance(value, bool)
            ok = ok or (isinstance(value, float) and value.is_integer())
            what = "an integer"
        elif name in _BOOL_PARAMS:
            ok, what = isinstance(value, bool), "a boolean"
        elif name in _STRING_PARAMS:
            ok, what = isinstance(value, str), "a string"
        elif name in _OBJECT_PARAMS:
            ok, what = isinstance(value, Mapping), "an object"
        elif isinstance(value, bool) and name in _INT_PARAMS | _NUMBER_PARAMS:
            # an int to Python, never a number to a caller
            ok, what = False, "an integer" if name in _INT_PARAMS else "a number"
        elif name in _INT_PARAMS:  # 5.0 is 5, as the key has it
            ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            what = "an integer"
            if ok and value < 1 and kind != "embedding":  # (the rare path)
                floor = _floor(name, kind, _bounds_known(provider, api_base))
                if floor is not None and value < floor:
                    ok, what = False, f"an integer >= {floor}"
        elif name in _NUMBER_PARAMS:  # numpy's float64 is a float
            ok = isinstance(value, (int, float)) and math.isfinite(value)
            what = "a number"
            if ok and not 0 <= value <= 1 and kind != "embedding":  # (the rare path)
                if name == "top_p":
                    ok, what = False, "a number from 0 to 1"  # (a probability mass)
                elif name == "temperature" and value < 0 and _bounds_known(provider, api_base):
                    ok, what = False, "a number >= 0"
        elif name == "stop":
            # any sequence of strings (the SDK types it SequenceNotStr[str]: a tuple is
            # fine), keyed and sent as the list it is in JSON
            ok = isinstance(value, str) or (
                _is_array(value) and all(isinstance(v, str) for v in value)
            )
            if ok and not isinstance(value, (str, list)):
                lists[name] = list(value)
            what = "a string or a list of strings"
        elif name in _SHAPED_PARAMS and kind != "embedding":
            if type(value) is not str or name not in _CHOICE_PARAMS:  # ("auto": the common case)
                _check_shape(name, value)
            continue
        elif name == "encoding_format" and kind == "embedding":
            check_encoding_format(value)
            continue
        elif name == "dimensions" and kind == "embedding":
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and value.is_integer()  # 256.0 is 256, as max_tokens
            )
            ok, what = ok and value >= 1, "an integer >= 1"
        else:
            continue
        if not ok:
            raise InvalidRequestError(f"{name} must be {what}, got {value!r:.80}", param=name)
    if params.get("stream_options") is not None and params.get("stream") is not True:
        # (OpenAI's rule: refused before an entry was stored, served once one was)
        raise InvalidRequestError(
            "stream_options is only allowed with stream: true", param="stream_options"
        )
    params.update(lists)


def _sdk_object(value: object) -> bool:
    """Whether ``value`` is an object that dumps to JSON (an OpenAI SDK type, a pydantic
    model): taken where an object is wanted, as :mod:`deja.keys` reads it."""
    return callable(getattr(value, "model_dump", None)) and not isinstance(value, type)


def _is_function(value: object) -> bool:
    """Whether ``value`` is a function's declaration as a function tool's ``function`` and
    the deprecated ``functions`` hold one: an object with a string ``name`` (or an SDK
    object, as :mod:`deja.keys` reads it)."""
    if isinstance(value, Mapping):
        return isinstance(value.get("name"), str)
    return _sdk_object(value)


def _is_bias(value: object) -> bool:
    """A logit bias: a finite number, or ``false`` (llama.cpp's "never this token")."""
    if isinstance(value, bool):
        return value is False
    if not isinstance(value, numbers.Real):  # (numpy's numbers too)
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int past a float's range: 10**400
        return False


def _check_shape(name: str, value: Any) -> None:
    """Refuse ``tools``, ``tool_choice``, ``response_format``, ``logit_bias`` or the
    deprecated ``functions`` and ``function_call`` of a shape that no API deja calls
    takes. Every native shape an adapter sends as written stays taken: Anthropic's tools
    (``name``, ``input_schema``), Bedrock's (``toolSpec``), Gemini's
    (``functionDeclarations``), a tool that is an SDK object."""
    if name == "tools":
        if not _is_array(value):
            raise InvalidRequestError(
                f"tools must be a list of tool objects, got {value!r:.80}", param="tools"
            )
        for i, tool in enumerate(value):
            if type(tool) is not dict and not isinstance(tool, Mapping):
                if _sdk_object(tool):
                    continue
                raise InvalidRequestError(
                    f"tools[{i}] must be an object, got {tool!r:.80}", param=f"tools[{i}]"
                )
            if tool.get("type") != "function":
                continue
            function = tool.get("function")
            if type(function) is dict and type(function.get("name")) is str:
                continue  # (the common case, without ABC isinstance calls)
            if function is None and isinstance(tool.get("name"), str):
                continue  # the flat (Responses-style) function tool
            if not _is_function(function):
                raise InvalidRequestError(
                    f"tools[{i}] is a function tool: its 'function' must be an object with a"
                    f" string 'name', got {function!r:.80}",
                    param=f"tools[{i}].function",
                )
    elif name in _CHOICE_PARAMS:
        # "auto", "none", "required", "any"..., or an object: OpenAI's {"type": "function",
        # ...}, Anthropic's {"type": "tool", ...}, Bedrock's {"auto": {}}; function_call's
        # {"name": ...}
        if not isinstance(value, (str, dict, Mapping)) and not _sdk_object(value):
            raise InvalidRequestError(
                f"{name} must be a string or an object, got {value!r:.80}", param=name
            )
    elif name == "functions":
        if not _is_array(value):
            raise InvalidRequestError(
                f"functions must be a list of function objects, got {value!r:.80}",
                param="functions",
            )
        for i, function in enumerate(value):
            if not _is_function(function):
                raise InvalidRequestError(
                    f"functions[{i}] must be an object with a string 'name', got {function!r:.80}",
                    param=f"functions[{i}]",
                )
    elif name == "response_format":
        if isinstance(value, type):
            return  # a pydantic class: the key says what to pass instead (deja.keys)
        if isinstance(value, Mapping):
            if not isinstance(value.get("type"), str):
                raise InvalidRequestError(
                    "response_format must be an object with a string 'type' (\"text\","
                    f' "json_object", "json_schema"...), got {value!r:.80}',
                    param="response_format.type",
                )
        elif not _sdk_object(value):
            raise InvalidRequestError(
                f"response_format must be an object with a string 'type', got {value!r:.80}",
                param="response_format",
            )
    elif isinstance(value, Mapping):  # logit_bias: token (id or text) -> bias
        for token, bias in value.items():
            if not _is_bias(bias):
                raise InvalidRequestError(
                    f"logit_bias must map tokens to numbers, got {bias!r:.40} for {token!r:.40}",
                    param="logit_bias",
                )
    elif not (
        # llama.cpp's own form too: [[token, bias], ...]
        _is_array(value)
        and all(_is_array(pair) and len(pair) == 2 and _is_bias(pair[1]) for pair in value)
    ):
        raise InvalidRequestError(
            f"logit_bias must be an object of token ids to numbers, got {value!r:.80}",
            param="logit_bias",
        )


# The APIs whose lower bounds deja knows: OpenAI's own (and Azure OpenAI's), and those it
# translates to. There, a max_tokens below 1 (0 for the legacy completions, which can
# echo the prompt alone), a negative temperature or a negative top_logprobs is refused
# before it is sent. Any other OpenAI-compatible server judges them itself: LM Studio and
# llama.cpp take max_tokens -1 (no limit), llama.cpp 0 (the prompt only) and a negative
# temperature (greedy decoding, with probabilities), vLLM top_logprobs -1 (every token).
_KNOWN_BOUNDS = frozenset({"anthropic", "azure", "bedrock", "gemini", "vertex_ai"})


@functools.lru_cache(maxsize=256)
def knows_bounds(provider: str, api_base: str | None) -> bool:
    """Whether deja knows the lower bounds of the common numbers at ``provider``'s
    ``api_base`` (normalized): OpenAI's own API, Azure OpenAI, Anthropic, Bedrock, Gemini
    and Vertex AI; not another OpenAI-compatible server (see :func:`check_params`)."""
    return provider in _KNOWN_BOUNDS or (
        provider == "openai" and api_base is not None and is_openais(api_base)
    )


def _bounds_known(provider: str | None, api_base: str | None) -> bool:
    return provider is not None and knows_bounds(provider, api_base)


def _floor(name: str, kind: RequestKind, bounded: bool) -> int | None:
    """The least integer ``name`` may be (``None``: no floor deja holds)."""
    if name == "n":
        return 1  # (no answer at all: every API refuses it)
    if not bounded or name == "seed":
        return None
    if name == "top_logprobs" or (name == "max_tokens" and kind == "completion"):
        return 0
    return 1


def check_embedding_input(value: object) -> None:
    """Refuse an embeddings ``input`` of a shape OpenAI does not take: a string, a list of
    strings, a token array or a list of token arrays (one shape, none empty)."""
    if isinstance(value, str):
        return
    # one shape, as OpenAI takes it: a mix went upstream whole (a 400) or, once its
    # strings were cached, as its token arrays alone (a 200)
    if (
        _is_array(value)
        and value
        and (
            all(_token(v) for v in value)
            or all(isinstance(v, str) for v in value)
            or all(_tokens(v) for v in value)
        )
    ):
        return
    raise InvalidRequestError(
        "input must be a string, a list of strings, a token array or a list of token arrays",
        param="input",
    )


# What an embeddings call's encoding_format may be (OpenAI's: base64 is float32 bytes)
_ENCODING_FORMATS = ("float", "base64")


def check_encoding_format(value: object) -> None:
    """Refuse an embeddings ``encoding_format`` other than ``"float"`` or ``"base64"``
    (``None``: not given). The clients, :func:`deja.wrap` and the proxy ask the upstream
    for floats and encode the answer themselves, so an unknown format was served as
    floats; OpenAI refuses it."""
    if value is not None and (type(value) is not str or value not in _ENCODING_FORMATS):
        raise InvalidRequestError(
            f"encoding_format must be 'float' or 'base64', got {value!r:.80}",
            param="encoding_format",
        )


def _token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tokens(value: object) -> bool:
    """Whether ``value`` is one tokenized input: a non-empty list of token ids."""
    return _is_array(value) and bool(value) and all(_token(v) for v in value)


def check_tenant(tenant: str | None) -> str | None:
    """``tenant`` if it is ``None`` or a non-empty string, else
    :class:`~deja.errors.InvalidRequestError`."""
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise InvalidRequestError("tenant must be a non-empty string or None")
    return tenant
