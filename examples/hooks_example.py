"""Example hooks for examples/hooks.yaml."""

from typing import Any

SYSTEM = "You are a concise assistant for ACME Bank."


async def async_pre_llm_hook(request: dict[str, Any]) -> dict[str, Any]:
    """Put the house system prompt first in chat requests (and keep the caller's own); the
    hook sees every route's body, so completions and embeddings pass unchanged."""
    messages = request.get("messages")
    if not isinstance(messages, list):
        return request
    if not messages or messages[0].get("role") != "system":
        request["messages"] = [{"role": "system", "content": SYSTEM}, *messages]
    return request


async def async_post_cache_hook(
    response: dict[str, Any], request: dict[str, Any]
) -> dict[str, Any]:
    """Tag every stored answer with its model, so one call can invalidate a model's entries."""
    return {"tags": [f"model:{request['model']}"]}
