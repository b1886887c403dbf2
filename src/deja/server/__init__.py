"""The caching proxy (`deja serve`): an OpenAI-compatible ASGI app."""

from deja.server.app import ProxyApp

__all__ = ["ProxyApp"]
