"""Reading and writing OpenAI's chat format, shared by the provider adapters (pure).

Each adapter translates OpenAI chat requests to its provider's wire format and the answers
back; the OpenAI side of that — a tool call's arguments, an assistant message assembled
from blocks — is the same for all of them, and lives here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from deja.errors import InvalidRequestError

__all__ = ["arguments_text", "assistant_message", "function_call", "tool_call"]


def function_call(call: object, where: str) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """The ``function`` of an OpenAI tool call and its arguments as a JSON object.

    Arguments may be a JSON string (OpenAI's form), already an object, or empty (``{}``).
    Raises :class:`~deja.errors.InvalidRequestError`, naming ``where``, for anything else.
    """
    if not isinstance(call, Mapping) or not isinstance(call.get("function"), Mapping):
        raise InvalidRequestError(f"{where} is not a function tool call")
    function = call["function"]
    arguments = function.get("arguments")
    if arguments is None or arguments == "":
        parsed: Any = {}
    elif isinstance(arguments, Mapping):
        parsed = dict(arguments)
    else:
        try:
            parsed = json.loads(arguments)
        except (TypeError, ValueError):
            raise InvalidRequestError(f"{where}: arguments are not JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidRequestError(f"{where}: arguments must be a JSON object")
    return function, parsed


def arguments_text(value: object) -> str:
    """A tool's input as OpenAI's ``arguments`` string.

    Anthropic and Bedrock stream tool input as ``json.dumps``-style text (a space after
    each separator); serializing whole inputs the same way keeps a streamed answer and its
    non-streamed twin equal.
    """
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


def tool_call(call_id: object, name: object, arguments: object) -> dict[str, Any]:
    """An OpenAI ``tool_calls`` entry for a provider's tool use (``arguments``: its input)."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments_text(arguments)},
    }


def assistant_message(
    text: list[str],
    reasoning: list[str],
    thinking_blocks: list[dict[str, Any]],
    tool_calls: list[dict[str, Any]],
) -> dict[str, Any]:
    """The assistant message of a choice, from its parts in order."""
    content = "".join(text)
    message: dict[str, Any] = {
        "role": "assistant",
        # As a stream assembles: an empty answer next to tool calls is null.
        "content": content if content or not tool_calls else None,
    }
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message
