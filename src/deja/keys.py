"""Cache keys: a pure, versioned function of the normalized request.

A key is ``<key_prefix>v1:<scope>:<digest>``:

* ``scope`` is the first 16 hex digits of SHA-256 over ``[tenant, namespace]``, so all of a
  tenant's or a namespace's entries share a prefix and can be cleared by it, and no key
  builder can reach across tenants (deja always adds prefix and scope itself);
* ``digest`` is the SHA-256 hex of canonical JSON (sorted keys, compact, UTF-8) of the
  resolved upstream (provider/model and normalized api_base, never a credential), the full
  messages, and every other body parameter that can change the output.

Normalization makes equal requests equal: a string ``content`` equals a single text part
(the string is the canonical form),
``1`` equals ``1.0``, ``None``-valued fields equal absent ones (but inside a JSON schema,
where ``{"const": null}`` or ``{"default": null}`` is a constraint of its own), prompt-cache
markers on messages, parts and tools (``cache_control``, ``prompt_cache_breakpoint``) are
dropped, and volatile parameters (:data:`VOLATILE_PARAMS`) are left out. Omitted
parameters are never filled in with defaults.

Object key order never matters, with one exception: the JSON schemas a request carries
(:data:`SCHEMA_PATHS`). Structured Outputs generate an object's fields in the order its
schema lists them, and a tool's schema reaches the model as written, so two schemas that
differ only in key order ask for different answers. Those schemas are keyed a second time,
in their given order, under ``ordered_schemas``; requests without one keep their keys.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import orjson

from deja.errors import InvalidRequestError, KeyBuilderError
from deja.request import Request, RequestKind

__all__ = [
    "KEY_VERSION",
    "SCHEMA_PATHS",
    "VOLATILE_PARAMS",
    "KeyBuilder",
    "KeyBuilderForm",
    "check_key_prefix",
    "default_digest",
    "digest_of",
    "explain",
    "format_key",
    "key_builder_form",
    "key_payload",
    "litellm_arguments",
    "make_key",
    "request_builder",
    "scope_hash",
    "scope_prefix",
]

KEY_VERSION = "v1"

VOLATILE_PARAMS = frozenset(
    {
        # who is asking, tracing and transport: never change the answer
        "user",
        "safety_identifier",  # OpenAI's successor of "user"
        "metadata",
        "stream",
        "stream_options",
        "timeout",
        "request_timeout",
        "max_retries",
        "num_retries",  # LiteLLM's spelling
        "extra_headers",
        "extra_query",
        "headers",
        # credentials and endpoints (the endpoint is keyed as the normalized api_base)
        "api_key",
        "api_base",
        "base_url",
        "organization",
        # deja's own controls and provider cache hints
        "cache",
        "cache_control",
        "cache_control_injection_points",
        "prompt_cache_key",
        "prompt_cache_options",  # OpenAI's explicit prompt caching (mode, ttl)
        "prompt_cache_retention",
        # storage and billing options of the provider
        "store",
        "service_tier",
    }
)

# Where a request carries a JSON schema whose key order changes the answer (module
# docstring). ``[]`` is each item of a list.
SCHEMA_PATHS = (
    "response_format.json_schema.schema",  # OpenAI Structured Outputs
    "response_format.schema",  # Together's and Fireworks' json_object with a schema
    "tools[].function.parameters",
    "tools[].parameters",  # the flat (Responses-style) function tool
    "functions[].parameters",  # the legacy function-calling parameter
    "guided_json",  # vLLM's guided decoding
    "structured_outputs.json",  # vLLM's successor of guided_json
    # the providers' own shapes, which their adapters send as written
    "tools[].input_schema",  # Anthropic's tool (strict tool use)
    "output_config.format.schema",  # Anthropic's JSON outputs
    "tools[].toolSpec.inputSchema.json",  # Bedrock Converse's tool
    "tools[].functionDeclarations[].parameters",  # Gemini's function declarations (or
    "tools[].functionDeclarations[].parametersJsonSchema",  # function_declarations, and
    "tools[].functionDeclarations[].parameters_json_schema",  # either spelling of the name)
    "generationConfig.responseJsonSchema",  # Gemini's JSON Schema output (generationConfig
    "generationConfig.response_json_schema",  # or generation_config, as the adapter reads it)
)
"""Where the JSON schemas whose key order is part of the key sit in the request body."""

# The other spellings of SCHEMA_PATHS the adapters read (_ordered_schemas reads them too).
_SCHEMA_SPELLINGS = (
    "tools[].function_declarations[].parameters",
    "tools[].function_declarations[].parametersJsonSchema",
    "tools[].function_declarations[].parameters_json_schema",
    "generation_config.responseJsonSchema",
    "generation_config.response_json_schema",
)


def _schema_tree(paths: tuple[str, ...]) -> dict[str, Any]:
    """``paths`` as a tree of names (``"[]"``: each item of a list), ``None`` at a schema:
    what :func:`_canon_at` follows to the schemas in a parameter."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        names = path.replace("[]", ".[]").split(".")
        for name in names[:-1]:
            node = node.setdefault(name, {})
        node[names[-1]] = None
    return tree


_SCHEMA_TREE = _schema_tree(SCHEMA_PATHS + _SCHEMA_SPELLINGS)

# The body parameters that can hold one of SCHEMA_PATHS: only these are searched.
_SCHEMA_PARAMS = frozenset(_SCHEMA_TREE)

_TOOL_SCHEMA_PATHS = (  # the order of _ordered_schemas's lists
    "tools[].function.parameters",
    "tools[].parameters",
    "tools[].input_schema",
    "tools[].toolSpec.inputSchema.json",
)

KeyBuilder = Callable[[Request], str]
"""A custom key builder: returns the digest part of the key for a request."""

_MAX_SAFE_INT = 2**53
_DIGEST_RE = re.compile(r"[\x21-\x7e]{1,512}")


_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_sha256 = hashlib.sha256


def _canonical_json(payload: object, option: int = _SORT_KEYS) -> bytes:
    try:
        return _dumps(payload, option=option)
    except orjson.JSONEncodeError as exc:  # an int past 64 bits, a lone surrogate, a
        # non-string key, nesting past 254 levels: nothing JSON can carry upstream either
        raise InvalidRequestError(f"the request cannot be keyed: {exc}") from None


def _ordered_json(value: object) -> str:
    return _canonical_json(value, 0).decode()


def _canon(value: Any, path: str) -> Any:
    """Canonical JSON value: integral floats become ints, tuples lists, Nones in objects go.

    Recursion only enters containers; scalars return at once, which keeps a 1 KB request
    in a few microseconds.
    """
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if t is dict:
        return {
            k if type(k) is str else _key_str(k): _canon(v, path)
            for k, v in value.items()
            if v is not None
        }
    if t is list:
        return [_canon(v, path) for v in value]
    if t is float:
        if value.is_integer() and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return int(value)
        if not math.isfinite(value):
            raise InvalidRequestError(f"{path} must be a finite number, got {value!r}")
        return value
    if isinstance(value, str):  # a str Enum (LlamaIndex's MessageRole), any str subclass
        return str.__str__(value)  # its value: str() of a str Enum is "Role.USER"
    if isinstance(value, Mapping):
        return {_key_str(k): _canon(v, path) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_canon(v, path) for v in value]
    if isinstance(value, (int, float)):  # int/float subclasses (numpy scalars are not)
        return _canon(float(value) if isinstance(value, float) else int(value), path)
    if isinstance(value, type):  # a pydantic class as response_format: its unbound model_dump
        raise InvalidRequestError(
            f"{path} is a class ({value.__name__}), not JSON: pass its JSON schema "
            '({"type": "json_schema", "json_schema": {...}})'
        )
    dump = getattr(value, "model_dump", None)  # pydantic objects from SDKs
    if callable(dump):
        return _canon(dump(exclude_none=True), path)
    raise InvalidRequestError(f"{path} has a value of type {t.__name__} that is not JSON")


def _key_str(key: Any) -> str:
    return str.__str__(key) if isinstance(key, str) else str(key)


def _canon_at(value: Any, path: str, tree: Mapping[str, Any] | None) -> Any:
    """:func:`_canon` of a parameter that may hold JSON schemas where ``tree`` (a node of
    :data:`_SCHEMA_TREE`) says: those are canonical with their nulls (:func:`_canon_schema`),
    everything around them as :func:`_canon` has it."""
    if tree is None:
        return _canon_schema(value, path)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if v is None:
                continue
            name = k if type(k) is str else _key_str(k)
            out[name] = _canon_at(v, path, tree[name]) if name in tree else _canon(v, path)
        return out
    if isinstance(value, (list, tuple)) and "[]" in tree:
        return [_canon_at(v, path, tree["[]"]) for v in value]
    dump = getattr(value, "model_dump", None)  # a pydantic tool: its schema's nulls kept
    if callable(dump) and not isinstance(value, type):
        return _canon_at(dump(), path, tree)  # (its unset fields' Nones go here)
    return _canon(value, path)


def _canon_schema(value: Any, path: str) -> Any:
    """:func:`_canon` of a JSON schema: ``None`` is kept wherever it is, as a schema's
    ``{"const": null}`` or ``{"default": null}`` asks for something else than no keyword
    (so a schema without one keeps the key it had)."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return value
    if isinstance(value, Mapping):
        return {
            k if type(k) is str else _key_str(k): _canon_schema(v, path) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_canon_schema(v, path) for v in value]
    return _canon(value, path)  # a number, a str subclass; an object is refused


def _canon_content(content: Any, i: int) -> Any:
    # A single plain text part is the same request as a string content; the string is the
    # canonical form because it is the common case and needs no copying.
    if type(content) is str:
        return content
    if isinstance(content, str):  # a str subclass (Request.chat makes them plain)
        return str.__str__(content)
    parts = [
        {
            k: _canon(v, f"messages[{i}].content")
            for k, v in part.items()
            if v is not None and k not in _MARKERS
        }
        for part in content
    ]
    if len(parts) == 1 and parts[0].keys() == {"type", "text"} and parts[0]["type"] == "text":
        text = parts[0]["text"]
        if type(text) is str:
            return text
    return parts


# Prompt-cache markers on messages and parts (Anthropic's ``cache_control``, OpenAI's
# ``prompt_cache_breakpoint`` on content parts, the ``"cached": True`` flag LiteLLM's guide
# puts on OpenAI messages): they say what a provider may cache, not what it answers, so
# they are no part of the key.
_MARKERS = frozenset({"cache_control", "cached", "prompt_cache_breakpoint"})


def _canon_messages(messages: tuple[Mapping[str, Any], ...]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for i, message in enumerate(messages):
        if type(message) is dict:
            for v in message.values():
                if type(v) is not str:
                    break
            else:
                out.append(message)  # {"role": ..., "content": "..."}: already canonical
                continue
        out.append(_canon_message(message, i))
    return out


def _canon_message(message: Mapping[str, Any], i: int) -> Mapping[str, Any]:
    out: dict[str, Any] = {}
    for k, v in message.items():
        if v is None or k in _MARKERS:
            continue
        out[k] = _canon_content(v, i) if k == "content" else _canon(v, f"messages[{i}].{k}")
    return out


_TOOL_TREE: Mapping[str, Any] = _SCHEMA_TREE["tools"]["[]"]


def _canon_tools(tools: Any) -> Any:
    if not isinstance(tools, (list, tuple)):
        return _canon_at(tools, "tools", _SCHEMA_TREE["tools"])
    tree = _TOOL_TREE
    return [
        {
            k: _canon_at(v, "tools", tree[k]) if k in tree else _canon(v, "tools")
            for k, v in tool.items()
            if v is not None and k not in _MARKERS
        }
        if isinstance(tool, Mapping)
        else _canon_at(tool, "tools", tree)
        for tool in tools
    ]


def _ordered_schemas(params: dict[str, Any]) -> dict[str, str]:
    """``{path: compact JSON of the schema in its given key order}`` for each of
    :data:`SCHEMA_PATHS` that holds a schema object in the canonical ``params``; for a path
    through a list, the JSON of a list with each item's schema (``null`` where none).

    A second copy, not an unsorted dump of the whole body: order counts only there, so
    requests that differ in any other object's key order still share a key; and the field
    holding it is deja's own, so no request body can forge it. Spelt out path by path, one
    dump per path: this runs on every request with tools.
    """
    found: dict[str, str] = {}
    value = params.get("response_format")
    if type(value) is dict:
        _add(found, "response_format.json_schema.schema", _get(value.get("json_schema"), "schema"))
        _add(found, "response_format.schema", value.get("schema"))
    items = params.get("tools")
    if type(items) is list:
        # one pass over the tools, each shape's schema (or None) per tool
        shapes: tuple[list[Any], ...] = ([], [], [], [])
        declared: list[Any] = []
        for item in items:
            if type(item) is not dict:
                for shape in shapes:
                    shape.append(None)
                continue
            shapes[0].append(_get(item.get("function"), "parameters"))
            shapes[1].append(item.get("parameters"))
            shapes[2].append(item.get("input_schema"))
            shapes[3].append(_get(_get(item.get("toolSpec"), "inputSchema"), "json"))
            for spelling in ("functionDeclarations", "function_declarations"):
                if type(declarations := item.get(spelling)) is list:
                    declared.extend(declarations)
        for path, schemas in zip(_TOOL_SCHEMA_PATHS, shapes, strict=True):
            _add_each(found, path, schemas)
        for name in ("parameters", "parametersJsonSchema", "parameters_json_schema"):
            path = f"tools[].functionDeclarations[].{name}"
            _add_each(found, path, [_get(d, name) for d in declared])
    _add(
        found,
        "output_config.format.schema",
        _get(_get(params.get("output_config"), "format"), "schema"),
    )
    config = params.get("generationConfig", params.get("generation_config"))  # as Gemini's adapter
    if type(config) is dict:
        for name in ("responseJsonSchema", "response_json_schema"):
            _add(found, f"generationConfig.{name}", config.get(name))
    items = params.get("functions")
    if type(items) is list:
        _add_each(found, "functions[].parameters", [_get(item, "parameters") for item in items])
    _add(found, "guided_json", params.get("guided_json"))
    _add(found, "structured_outputs.json", _get(params.get("structured_outputs"), "json"))
    return found


def _get(value: Any, name: str) -> Any:
    return value.get(name) if type(value) is dict else None


def _add(found: dict[str, str], path: str, schema: Any) -> None:
    if type(schema) is dict:
        found[path] = _ordered_json(schema)


def _add_each(found: dict[str, str], path: str, schemas: list[Any]) -> None:
    for schema in schemas:
        if type(schema) is dict:
            found[path] = _ordered_json([s if type(s) is dict else None for s in schemas])
            return


def key_payload(request: Request) -> dict[str, Any]:
    """The normalized fields that the default digest hashes (what ``explain`` shows)."""
    params: dict[str, Any] = {}
    schemas = False
    for name, value in request.params.items():
        if value is None or name in VOLATILE_PARAMS:
            continue
        # Inline fast paths for the common scalar sampling parameters: this function runs on
        # every request, hits included, and a call per parameter is a measurable share of it.
        t = type(value)
        if t is str or t is int or t is bool:
            params[name] = value
        elif t is float and value.is_integer() and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            params[name] = int(value)
        elif name == "tools":
            params[name] = _canon_tools(value)
            schemas = True
        elif name in _SCHEMA_PARAMS:
            params[name] = _canon_at(value, name, _SCHEMA_TREE[name])
            schemas = True
        else:
            params[name] = _canon(value, name)
    messages = request.messages
    payload = {
        "kind": request.kind,
        "model": f"{request.provider}/{request.model}",
        "api_base": request.api_base,
        "messages": messages if request.plain_messages else _canon_messages(messages),
        "params": params,
    }
    if schemas:
        ordered = _ordered_schemas(params)
        if ordered:  # absent otherwise: requests without a schema keep their keys
            payload["ordered_schemas"] = ordered
    return payload


def _digest(request: Request) -> str:
    known = request._key_digest
    if known is not None:  # (remember_digest)
        return known
    try:
        payload = key_payload(request)
    except RecursionError:
        raise InvalidRequestError("the request cannot be keyed: nested too deeply") from None
    return _sha256(_canonical_json(payload)).hexdigest()


def default_digest(request: Request) -> str:
    """The default digest: SHA-256 hex of the canonical JSON of :func:`key_payload`.

    Public so a custom builder can wrap it (drop a field, then call this).
    """
    return _digest(request)


def remember_digest(request: Request) -> str:
    """:func:`default_digest` of ``request``, computed now and kept on it: keying it later
    costs nothing. The proxy keys a large body so, in a thread, before it asks the cache
    (normalizing a 10 MiB body of tiny JSON nodes took seconds of the event loop, every
    other request waiting). ``request`` must not change afterwards (a copy made with
    :func:`dataclasses.replace` is keyed afresh)."""
    digest = request._key_digest = _digest(request)
    return digest


@functools.lru_cache(maxsize=4096)
def scope_hash(tenant: str | None, namespace: str | None) -> str:
    """First 16 hex digits of SHA-256 over ``[tenant, namespace]``."""
    return hashlib.sha256(_canonical_json([tenant, namespace])).hexdigest()[:16]


KeyBuilderForm = Literal["request", "request_tenant", "litellm"]
"""How deja calls a key builder (:func:`key_builder_form`)."""

# parameters that only LiteLLM's form names (its custom_key_generator is called with the
# call's keyword arguments): deja's forms take a Request, and a tenant
_LITELLM_PARAMETERS = frozenset({"model", "messages", "api_key"})


def key_builder_form(builder: Callable[..., Any]) -> KeyBuilderForm:
    """How deja calls ``builder``, read from its signature:

    - ``"litellm"``: LiteLLM's form, ``build_cache_key(model, messages, **kwargs)`` or
      ``f(*args, **kwargs)`` (a parameter named ``model``, ``messages`` or ``api_key``, or
      ``**kwargs``): with the call's keyword arguments (:func:`litellm_arguments`), and as
      ``api_key`` the caller's tenant (never a secret) when it names one;
    - ``"request_tenant"``: ``f(request, tenant)``, the proxy hooks' form (two positional
      arguments without defaults);
    - ``"request"``: ``f(request)``.

    A LiteLLM-form builder was taken for ``f(request, tenant)`` and given a Request as its
    ``model``: it keyed every request apart, or failed every one."""
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the one-argument form
        return "request"
    if any(p.kind is p.VAR_KEYWORD or p.name in _LITELLM_PARAMETERS for p in parameters):
        return "litellm"
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return "request_tenant" if len(positional) >= 2 else "request"


def litellm_arguments(request: Request) -> dict[str, Any]:
    """``request`` as the keyword arguments LiteLLM calls a key builder with: ``model``
    (``provider/model``), a chat's ``messages`` (each a copy: a builder that edits one
    edits no request), ``api_base`` when there is one, and every other body field as
    given, ``user`` and ``metadata`` too (a builder drops what it will not key).
    :func:`digest_of` of them is the request's default digest."""
    arguments: dict[str, Any] = {"model": request.upstream}
    if request.kind == "chat":
        arguments["messages"] = [dict(message) for message in request.messages]
    if request.api_base is not None:
        arguments["api_base"] = request.api_base
    arguments.update(request.params)
    return arguments


def digest_of(**arguments: Any) -> str:
    """deja's default digest of a call given as keyword arguments (``model``; ``messages``,
    ``input`` or ``prompt``; ``api_base``; the other body fields): what a LiteLLM-form key
    builder calls where LiteLLM's called its own key generator. Volatile fields (``user``,
    ``metadata``...) are left out of it, as from :func:`default_digest`; a call that is
    none (no ``model``) is an :class:`~deja.errors.InvalidRequestError`."""
    api_base = arguments.pop("api_base", None)
    kind: RequestKind = (
        "embedding"
        if "input" in arguments and "messages" not in arguments
        else "completion"
        if "prompt" in arguments and "messages" not in arguments
        else "chat"
    )
    return default_digest(Request.from_body(arguments, kind=kind, api_base=api_base))


def request_builder(builder: Callable[..., Any]) -> Callable[[Request], Any]:
    """``builder``, of any of :func:`key_builder_form`'s forms, called as ``f(request)``.

    An ``async def`` builder is refused (``TypeError``): a key is computed synchronously,
    on every lookup, so its coroutine was never awaited and every request failed."""
    # (an object whose class's __call__ is async too)
    if inspect.iscoroutinefunction(builder) or inspect.iscoroutinefunction(type(builder).__call__):
        name = getattr(builder, "__qualname__", type(builder).__qualname__)
        raise TypeError(
            f"key builder {name} is async: a key builder returns its digest (keys are"
            " computed synchronously, on every lookup); make it a plain def"
        )
    form = key_builder_form(builder)
    if form == "request":
        return builder
    if form == "request_tenant":

        def build(request: Request) -> Any:
            return builder(request, request.tenant)

    else:
        parameters = inspect.signature(builder).parameters
        named_key = "api_key" in parameters
        # (one without **kwargs is given the arguments it names, not a TypeError)
        takes_all = any(p.kind is p.VAR_KEYWORD for p in parameters.values())

        def build(request: Request) -> Any:
            arguments = litellm_arguments(request)
            if named_key:
                arguments["api_key"] = request.tenant
            if not takes_all:
                arguments = {k: v for k, v in arguments.items() if k in parameters}
            return builder(**arguments)

    build.__qualname__ = getattr(builder, "__qualname__", "key_builder")
    return build


def tenant_hash(tenant: str | None) -> str:
    """First 16 hex digits of SHA-256 over ``[tenant]``: a tenant's records over all its
    namespaces (a :func:`scope_hash` is over two items, so never the same)."""
    return hashlib.sha256(_canonical_json([tenant])).hexdigest()[:16]


def check_key_prefix(key_prefix: object) -> str:
    """``key_prefix`` if a cache may write its keys under it, else ``ValueError``: a
    printable string without whitespace at either end (``"deja: "`` was taken, and its
    keys were another cache's than ``"deja:"``'s). ``""`` is no prefix: the keys start
    with the key format's version (``v1:``), which is no part of the prefix."""
    if (
        not isinstance(key_prefix, str)
        or not key_prefix.isprintable()
        or key_prefix != key_prefix.strip()
    ):
        raise ValueError(
            "key_prefix must be a printable string without whitespace at either end,"
            f" not {key_prefix!r:.80}"
        )
    return key_prefix


def scope_prefix(key_prefix: str, tenant: str | None, namespace: str | None) -> str:
    """The prefix every key of one (tenant, namespace) starts with."""
    return f"{key_prefix}{KEY_VERSION}:{scope_hash(tenant, namespace)}:"


def format_key(key_prefix: str, scope: str, digest: str) -> str:
    """Assemble ``<key_prefix>v1:<scope>:<digest>``."""
    return f"{key_prefix}{KEY_VERSION}:{scope}:{digest}"


def _checked_digest(builder: KeyBuilder, request: Request) -> str:
    try:
        digest = builder(request)
    except Exception as exc:
        name = getattr(builder, "__qualname__", repr(builder))
        raise KeyBuilderError(f"key builder {name} failed: {exc!r}") from exc
    return check_digest(digest)


def check_digest(digest: object) -> str:
    """``digest``, a key builder's answer, if deja takes it as a key's digest; else a
    :class:`~deja.errors.KeyBuilderError` saying why."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise KeyBuilderError(
            "a key builder must return 1 to 512 printable ASCII characters without spaces,"
            f" got {digest!r:.80}"
        )
    if digest.endswith(":lock"):  # another entry's lock name: its calls would wait on it
        raise KeyBuilderError(f"a key builder's key must not end in ':lock', got {digest!r:.80}")
    return digest


def make_key(
    request: Request,
    *,
    key_prefix: str = "deja:",
    namespace: str | None = None,
    builder: KeyBuilder | None = None,
) -> str:
    """The cache key of ``request`` in ``namespace`` (the tenant comes from the request)."""
    digest = _digest(request) if builder is None else _checked_digest(builder, request)
    return f"{key_prefix}{KEY_VERSION}:{scope_hash(request.tenant, namespace)}:{digest}"


def explain(
    request: Request,
    *,
    key_prefix: str = "deja:",
    namespace: str | None = None,
    builder: KeyBuilder | None = None,
) -> dict[str, Any]:
    """Why a request has the key it has: the key, its parts and the normalized fields.

    ``ignored`` lists the body parameters left out of the key (volatile or ``None``), then
    the prompt-cache markers it leaves out, by path.
    """
    digest = default_digest(request) if builder is None else _checked_digest(builder, request)
    scope = scope_hash(request.tenant, namespace)
    return {
        "key": format_key(key_prefix, scope, digest),
        "key_prefix": key_prefix,
        "version": KEY_VERSION,
        "scope": {"hash": scope, "tenant": request.tenant, "namespace": namespace},
        "digest": digest,
        "builder": "default"
        if builder is None
        else getattr(builder, "__qualname__", repr(builder)),
        "fields": key_payload(request),
        "ignored": sorted(
            name
            for name, value in request.params.items()
            if value is None or name in VOLATILE_PARAMS
        )
        + _marker_paths(request),
    }


def _marker_paths(request: Request) -> list[str]:
    """Where ``request`` holds prompt-cache markers (:data:`_MARKERS`), which its key
    leaves out: ``messages[0].cache_control``, ``messages[1].content[2].cache_control``,
    ``tools[3].cache_control``."""
    paths: list[str] = []

    def marked(item: object, path: str) -> None:
        if isinstance(item, Mapping):
            paths.extend(f"{path}.{k}" for k in sorted(_MARKERS) if item.get(k) is not None)

    for i, message in enumerate(request.messages):
        marked(message, f"messages[{i}]")
        content = message.get("content")
        if isinstance(content, (list, tuple)):
            for j, part in enumerate(content):
                marked(part, f"messages[{i}].content[{j}]")
    tools = request.params.get("tools")
    if isinstance(tools, (list, tuple)):
        for j, tool in enumerate(tools):
            marked(tool, f"tools[{j}]")
    return paths
