"""Semantic scope: what must match exactly before two prompts are compared by meaning.

Only the text of the final user turn is compared by meaning. Everything else that can
change the answer must be equal, so it is hashed into the *scope*, a filter inside the
index query: the resolved model and endpoint, the system prompt, every earlier turn, tools,
sampling parameters (all of :func:`deja.keys.key_payload` except the final user text), the
final turn's non-text parts (images, files) and other fields, the embedder id and
dimension, the tenant and namespace, the cache's key prefix (and key version), and, with a
custom key builder, what that builder keys beyond the prompt.

A scope reads ``<partition>/<tenant-namespace hash>/<context hash>``. The partition stands
for the cache's key prefix: bumping the prefix leaves every earlier vector out of reach, as
it does the earlier entries, and caches of other prefixes sharing one index (a Redis) never
match each other's; clearing a prefix clears its vectors with
``VectorIndex.remove_scope(partition)``. The middle part is the same
:func:`deja.keys.scope_hash` the exact tier's keys carry, so clearing a tenant or namespace
clears its vectors with ``VectorIndex.remove_scope(partition/middle part)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from deja.keys import KEY_VERSION, KeyBuilder, key_payload, make_key, scope_hash
from deja.request import Request

__all__ = [
    "DEFAULT_PARTITION",
    "SemanticQuery",
    "builder_context",
    "final_user_text",
    "partition_of",
    "semantic_query",
    "tenant_scope",
    "without_final_text",
]

# Stands for the final user text in the hashed context, so that "text here" differs from
# "no text" and from a literal string anyone could send.
_TEXT_SLOT = {"deja:semantic-text": True}


@dataclass(frozen=True, slots=True)
class SemanticQuery:
    """The part of a request compared by meaning (``text``) and its exact ``scope``."""

    text: str
    scope: str


def partition_of(key_prefix: str) -> str:
    """The first scope segment of the semantic entries of a cache with ``key_prefix``."""
    digest = hashlib.sha256(f"{key_prefix}{KEY_VERSION}".encode()).hexdigest()
    return f"p{digest[:16]}"


DEFAULT_PARTITION = partition_of("deja:")
"""The partition of a cache with the default key prefix."""


def tenant_scope(
    tenant: str | None, namespace: str | None, partition: str = DEFAULT_PARTITION
) -> str:
    """The scope prefix shared by every semantic entry of one (tenant, namespace)."""
    return f"{partition}/{scope_hash(tenant, namespace)}"


def without_final_text(request: Request) -> Request:
    """``request`` with its final user turn's text left out (its other parts kept): what a
    custom key builder is asked for to learn what it keys beyond the prompt."""
    last = dict(request.messages[-1])
    content = last.get("content")
    rest = (
        []
        if isinstance(content, str)
        else [
            part
            for part in content or ()
            if not (isinstance(part, Mapping) and part.get("type") == "text")
        ]
    )
    # text alone, as a string or as parts, leaves the same thing (a string equals one text
    # part: DESIGN.md's key contract); other parts stay, in their order
    last["content"] = rest or ""
    return replace(request, messages=(*request.messages[:-1], last))


def final_user_text(request: Request) -> str | None:
    """The text of the final message if it is a user turn with text, else ``None``.

    A list content's text parts are joined with newlines; its other parts are not text.
    """
    if request.kind != "chat" or not request.messages:
        return None
    last = request.messages[-1]
    if last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, (list, tuple)):
        text = "\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    else:
        return None
    return text if text.strip() else None


def _context(payload: dict[str, Any]) -> dict[str, Any]:
    messages = list(payload["messages"])
    last = dict(messages[-1])  # a copy: the payload may share the caller's message
    content = last.get("content")
    if isinstance(content, str):
        last["content"] = [_TEXT_SLOT]
    else:
        # the text parts are compared by meaning; the other parts (images, files...) and
        # their order relative to the text stay in the scope
        parts: list[Any] = []
        for part in content or ():
            if isinstance(part, Mapping) and part.get("type") == "text":
                if not parts or parts[-1] is not _TEXT_SLOT:
                    parts.append(_TEXT_SLOT)
            else:
                parts.append(part)
        last["content"] = parts
    messages[-1] = last
    return {**payload, "messages": messages}


def builder_context(
    request: Request,
    *,
    key_prefix: str,
    namespace: str | None,
    builder: KeyBuilder | None,
) -> str | None:
    """What a custom key ``builder`` keys for ``request`` beyond its prompt (its key for
    the request without the final text), so that the semantic tier keeps apart what the
    builder keeps apart (a user id in the metadata...); ``None`` without a builder."""
    if builder is None or request.kind != "chat" or not request.messages:
        return None
    return make_key(
        without_final_text(request), key_prefix=key_prefix, namespace=namespace, builder=builder
    )


def semantic_query(
    request: Request,
    *,
    embedder_id: str,
    namespace: str | None = None,
    partition: str = DEFAULT_PARTITION,
    context_key: str | None = None,
) -> SemanticQuery | None:
    """The text and scope of ``request``, or ``None`` if the semantic tier does not apply.

    It applies to chat requests whose final message is a user turn with some text.
    ``context_key``: what a custom key builder keys for the request without its final
    text (see :func:`without_final_text`), hashed into the scope too.
    """
    text = final_user_text(request)
    if text is None:
        return None
    known = request._scope_digest
    if known is not None and known[0] == embedder_id and known[1] == context_key:
        digest = known[2]
    else:
        # (the whole request normalized and encoded: a large body's is computed in the
        # proxy's thread that keys it, not on the event loop)
        context = _context(key_payload(request))
        context["embedder"] = embedder_id
        if context_key is not None:
            context["key_builder"] = context_key
        digest = hashlib.sha256(orjson.dumps(context, option=orjson.OPT_SORT_KEYS)).hexdigest()
        request._scope_digest = (embedder_id, context_key, digest)
    return SemanticQuery(
        text=text, scope=f"{tenant_scope(request.tenant, namespace, partition)}/{digest[:32]}"
    )
