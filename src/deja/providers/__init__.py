"""Provider adapters, one usage schema, and prompt-cache breakpoint planning.

* :mod:`deja.providers.usage` — every upstream's ``usage`` in OpenAI's schema, with the
  provider's prompt-cache reads and writes (and the 5m/1h write split) spelled out;
* :mod:`deja.providers.planner` — where ``cache_control`` breakpoints go (the caller's
  markers, ``cache_control_injection_points``, the provider's limit, lifetimes, minimum
  cacheable prefixes), pure;
* :mod:`deja.providers.anthropic` — the Anthropic Messages adapter: OpenAI chat format in
  and out, JSON and streams.

Nothing here does I/O: the client sends what an adapter builds and feeds back what came.
"""

from deja.providers.anthropic import AnthropicProvider, AnthropicRequest, StreamTranslator
from deja.providers.planner import (
    Breakpoint,
    Plan,
    PlanWarning,
    Target,
    apply_plan,
    estimate_tokens,
    minimum_cacheable_tokens,
    plan_breakpoints,
)
from deja.providers.usage import (
    CacheTokens,
    cache_tokens,
    normalize_anthropic,
    normalize_compatible,
    normalize_deepseek,
    normalize_openai,
    normalize_usage,
)

__all__ = [
    "AnthropicProvider",
    "AnthropicRequest",
    "Breakpoint",
    "CacheTokens",
    "Plan",
    "PlanWarning",
    "StreamTranslator",
    "Target",
    "apply_plan",
    "cache_tokens",
    "estimate_tokens",
    "minimum_cacheable_tokens",
    "normalize_anthropic",
    "normalize_compatible",
    "normalize_deepseek",
    "normalize_openai",
    "normalize_usage",
    "plan_breakpoints",
]
