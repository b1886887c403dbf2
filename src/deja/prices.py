"""Model prices as data, and the cost of one response.

The packaged table (``deja/data/prices.json``) holds list prices in USD per 1M tokens:
most models (OpenAI, DeepSeek, Gemini, Nova, xAI, Mistral) under ``models``, and models
whose providers bill prompt-cache writes by lifetime under ``provider_models.<provider>``
(Anthropic: a 5-minute write at 1.25x input, ``cache_write``, and a 1-hour write at 2x
input, ``cache_write_1h``). Models a provider hosts under a name others host too, at a price of its
own, are under ``hosted_models.<provider>`` and found only through that provider's prefix:
``groq/openai/gpt-oss-120b`` has Groq's row, ``together_ai/openai/gpt-oss-120b`` none. Each
row records where the price came from (``source``, a URL) and as of when (``date``: the
date the source says it was checked, or else the date it was read).
Prices change; a deployment corrects or extends them with :meth:`PriceTable.with_overrides`
from its configuration rather than waiting for a release.

A row may bill less off-peak (``off_peak``: DeepSeek bills half of its peak rates outside
01:00-04:00 and 06:00-10:00 UTC on weekdays): a response is priced at the rate of the hour
it came, and a hit saves the off-peak price (:meth:`PriceTable.repeat_cost`: the least a
repeat costs). An override states flat rates: it drops the packaged row's schedule.

For the same reason a hit on a model whose provider caches prompt prefixes by itself, without
billing or reporting the write (OpenAI before GPT-5.6, DeepSeek, Gemini 2.5 and later, xAI,
Groq), saves what the repeat would cost with that prefix read from the provider's cache: the
answer alone does not say the provider kept its prompt, but a repeat may well find it there.

Lookups accept what a resolved request carries: ``"gpt-4o"``, ``"openai/gpt-4o"`` and dated
snapshots (``"gpt-4o-2024-08-06"``, ``"gpt-4-0613"``, ``"claude-sonnet-4-5-20250929"``) all
find the ``gpt-4o``/``gpt-4``/``claude-sonnet-4-5`` row, unless the snapshot has a row of its
own (``gpt-4o-2024-05-13`` and the older ``gpt-3.5-turbo`` snapshots kept their launch
prices, above today's family row), and so do Bedrock model ids
(``"bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"``): Claude on Bedrock has
Anthropic's list prices through a global inference profile (``global.anthropic…``), and 10%
more for Claude 4.5 and later called in one region or through a geographic profile (``us.``,
``eu.``, ``apac.``…: AWS prices global cross-Region inference ~10% below geographic). A
deployment's own override of the full id wins, as always.

The cost of a response follows OpenAI's usage shape: ``prompt_tokens`` is the whole input,
of which ``prompt_tokens_details.cached_tokens`` were read from the provider's prompt cache
and a top-level ``cache_creation_input_tokens`` (Anthropic-style usage, as normalized by
:mod:`deja.providers.usage`) were written to it, ``cache_creation.ephemeral_1h_input_tokens``
of them with a 1-hour lifetime; ``completion_tokens`` (reasoning included) is the output.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib.resources import files
from types import MappingProxyType

from deja._recurring import Recurring
from deja.errors import ConfigError

__all__ = [
    "PRICE_FIELDS",
    "LongContextPrice",
    "OffPeak",
    "Price",
    "PriceTable",
    "packaged_prices",
]

_PER_MILLION = 1_000_000

logger = logging.getLogger("deja.prices")


class _UnpricedWarnings:
    """Says once per process that a model has no price, for the first :attr:`NAMES` models;
    past them, one line per :attr:`WINDOW` seconds counts the others. (Behind a wildcard
    route the callers name the models: a line and a set entry per name made up grew the
    log and the process without end.)"""

    NAMES = 1024
    WINDOW = 60.0

    def __init__(self) -> None:
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._unnamed = Recurring(window=self.WINDOW)  # (the models past NAMES)

    def __contains__(self, model: str) -> bool:
        return model in self._warned

    def warn(self, model: str) -> None:
        with self._lock:
            if model in self._warned:
                return
            if len(self._warned) < self.NAMES:
                self._warned.add(model)
                line = "no price for model %r: its costs and savings count as $0 (price it in"
                logger.warning(
                    line + " the proxy's model_info, or with PriceTable.with_overrides and"
                    " prices=)",
                    model,
                )
                return
        said = self._unnamed.occurred("unnamed")
        if said is None:
            return
        unsaid = said[1] + 1  # (this one too)
        logger.warning(
            "requests for models without a price since the last such line: %d (%r the last;"
            " past %d models they are not named one by one): their costs and savings count"
            " as $0",
            unsaid,
            model,
            self.NAMES,
        )


_UNPRICED_WARNED = _UnpricedWarnings()

# A snapshot is a known model name followed by its release date, either ``-YYYY-MM-DD``
# (gpt-4o-2024-08-06), the older ``-MMDD`` (gpt-4-0613, gpt-3.5-turbo-0125) or Anthropic's
# ``-YYYYMMDD`` (claude-sonnet-4-5-20250929).
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Gemini's stable versions and previews: gemini-2.0-flash-001, gemini-2.5-flash-preview-05-20
# (MM-DD), gemini-2.5-flash-preview-09-2025 (MM-YYYY), gemini-1.5-pro-latest all have the price
# of the model they name. A preview's date must be a real month followed by a day or a year, so
# that a different model (gemini-2.5-flash-preview-tts, gemini-2.5-flash-native-audio-preview-
# 12-2025) keeps its own name and finds no row.
_GEMINI_VERSION = re.compile(
    r"-(?:\d{3}|latest|exp(?:-\d{4})?"
    r"|preview(?:-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01]|20\d{2}))?)$"
)
# A Bedrock model id around the model's own name: an inference profile's geography
# (``us.``, ``eu.``, ``global.``…), the vendor (``anthropic.``, ``amazon.``) and the version
# (``-v1:0``). What is left (``claude-sonnet-4-5-20250929``) is looked up like any name.
_BEDROCK_ID = re.compile(
    r"^(?:(?:us|eu|apac|jp|au|ca|us-gov|global)\.)?(?:anthropic|amazon|meta|mistral|cohere|ai21)\."
    r"|-v\d+(?::\d+)?$"
)

# Claude 4.5 and later (claude-sonnet-4-5, claude-opus-4-6…) cost 10% more on Bedrock outside
# a global inference profile.
# (claude-sonnet-4-20250514 is 4.0: a minor version has one or two digits, a date eight)
_CLAUDE_VERSION = re.compile(r"^claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?=-|$)")
_REGIONAL_PREMIUM = 1.10

# Providers that cache every prompt's prefix by themselves, writes free and unreported, so a
# repeat may read what the first call never said it wrote. Per model family (the bare name):
# the shortest prompt the provider caches, and the unit its cached prefix grows by. A repeat
# of the same request reads the longest such prefix; where the docs disagree the lowest
# figure is used, since a cache assumed too eagerly understates a saving, never inflates it.
# - OpenAI: prompts of 1024 tokens or more, hits in 128-token increments
#   (developers.openai.com/api/docs/guides/prompt-caching); GPT-5.6 and later bill and report
#   their writes, so their rows (with a ``cache_write`` price) are left to the report.
# - DeepSeek: a cache prefix unit is persisted at the end of each request's input, and a
#   request that fully matches it hits (api-docs.deepseek.com/guides/kv_cache): the whole
#   prompt, no minimum.
# - Gemini 2.5 and later, implicit caching: 1,024 tokens (2,048 for 2.5 Pro), no stated unit
#   (ai.google.dev/gemini-api/docs/caching). Gemini 2.0 and 1.5 cache only explicitly.
# - xAI: every prefix that matches, no stated minimum or unit
#   (docs.x.ai/developers/advanced-api-usage/prompt-caching).
# - Groq (its gpt-oss models, the only ones it prices here): every matching prefix, no stated
#   minimum or unit (console.groq.com/docs/prompt-caching). Open weights, not OpenAI's API:
#   matched before OpenAI's gpt- family.
# - Mistral: a prefix shared with earlier requests, cached reads at 10% of input, no stated
#   minimum or unit (docs.mistral.ai/studio-api/conversations/advanced/prompt-caching).
# Amazon Nova's implicit cache saves latency only (cost needs a cachePoint), and Anthropic
# caches only at breakpoints: neither is here.
_AUTO_PREFIX_CACHES: tuple[tuple[re.Pattern[str], int, int], ...] = (
    (re.compile(r"^gpt-oss-"), 1, 1),
    (re.compile(r"^(?:gpt-|chatgpt-|codex-|o\d)"), 1024, 128),
    (re.compile(r"^deepseek-"), 1, 1),
    (re.compile(r"^gemini-2\.5-pro"), 2048, 1),
    (re.compile(r"^gemini-(?:2\.5|[3-9]|[1-9]\d)"), 1024, 1),
    (re.compile(r"^grok-"), 1, 1),
    (re.compile(r"^mistral-"), 1, 1),
)

# Field names accepted in overrides: deja's own (per 1M tokens) and LiteLLM's
# ``model_info`` names (per single token), so an existing LiteLLM config keeps working.
_PRICE_FIELDS = ("input", "output", "cached_input", "cache_write")
# The 1-hour write price is optional in ``models`` rows (OpenAI bills no writes) and
# required in ``provider_models`` rows, whose providers bill writes by lifetime.
_LIFETIME_FIELDS = ("cache_write_1h",)
# Context-cache storage (Gemini), USD per 1M tokens per hour: optional everywhere.
_STORAGE_FIELDS = ("cache_storage_hour",)
_LITELLM_FIELDS = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
}
_NULLABLE_FIELDS = ("cached_input", "cache_write", "cache_write_1h", "cache_storage_hour")
_TEXT_FIELDS = ("source", "date")
_KNOWN_FIELDS = (
    *_PRICE_FIELDS,
    *_LIFETIME_FIELDS,
    *_STORAGE_FIELDS,
    *_LITELLM_FIELDS,
    *_TEXT_FIELDS,
)

PRICE_FIELDS: frozenset[str] = (
    frozenset(_PRICE_FIELDS)
    | frozenset(_LIFETIME_FIELDS)
    | frozenset(_STORAGE_FIELDS)
    | frozenset(_LITELLM_FIELDS)
)
"""Field names that set a price in an override (deja's per-1M names and LiteLLM's per-token
names); configuration blocks that mix prices with other settings pick these out."""

_OVERRIDE_SOURCE = "override"


@dataclass(frozen=True, slots=True)
class LongContextPrice:
    """Rates for a prompt longer than ``above`` tokens (Gemini 2.5 Pro above 200k, Claude
    Sonnet 4.5 above 200k, say): they replace the row's rates for the whole request, as the
    providers bill it. ``cache_write`` / ``cache_write_1h``: ``None`` keeps the row's."""

    above: int
    input: float
    output: float
    cached_input: float | None
    cache_write: float | None = None
    cache_write_1h: float | None = None


@dataclass(frozen=True, slots=True)
class OffPeak:
    """Rates times ``factor`` outside the peak hours: ``peak_hours_utc`` holds ``(start,
    end)`` hour ranges (start included, end not) of the peak on weekdays (Monday to Friday,
    UTC); weekends are off-peak all day."""

    factor: float
    peak_hours_utc: tuple[tuple[int, int], ...]

    def factor_at(self, when: float) -> float:
        """The rate multiplier at the Unix time ``when``: 1.0 at the peak."""
        moment = time.gmtime(when)
        if moment.tm_wday < 5 and any(a <= moment.tm_hour < b for a, b in self.peak_hours_utc):
            return 1.0
        return self.factor


@dataclass(frozen=True, slots=True)
class Price:
    """One model's list price, in USD per 1M tokens.

    ``cached_input`` is the price of input read from the provider's prompt cache and
    ``cache_write`` the price of input written to it (for Anthropic: with the default
    5-minute lifetime); ``None`` means the provider has no separate price, so those tokens
    cost ``input``. ``cache_write_1h`` is the price of a write with a 1-hour lifetime;
    ``None`` bills such writes at ``cache_write``. ``cache_storage_hour`` is the price of
    keeping 1M tokens in a provider context cache for one hour (Gemini's ``cachedContents``);
    ``None``: the provider has no such cache. ``off_peak``: the row's rates are the peak
    rates, lower at other hours (:class:`OffPeak`).
    """

    input: float
    output: float
    cached_input: float | None
    cache_write: float | None
    source: str
    date: str
    cache_write_1h: float | None = None
    cache_storage_hour: float | None = None
    long_context: LongContextPrice | None = None
    off_peak: OffPeak | None = None


class PriceTable:
    """Prices by model name, and the cost of a response from its usage.

    Keys are lower-case model names, bare (``gpt-4o``) or, for an override meant for one
    provider only, qualified (``azure/gpt-4o``). A table is immutable: overrides return a
    new table.
    """

    __slots__ = ("_prices",)

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices: dict[str, Price] = {name.lower(): price for name, price in prices.items()}

    @classmethod
    def default(cls) -> PriceTable:
        """The table packaged with deja (read from ``deja/data/prices.json`` once, here)."""
        text = (files("deja") / "data" / "prices.json").read_text(encoding="utf-8")
        document = json.loads(text)
        prices = {name: _packaged_price(name, row) for name, row in document["models"].items()}
        for provider, rows in document.get("hosted_models", {}).items():
            for name, row in rows.items():
                # qualified: the lookup tries the whole name before the bare one
                prices[f"{provider}/{name}"] = _packaged_price(name, row, at=provider)
        for provider, rows in document.get("provider_models", {}).items():
            for name, row in rows.items():
                prices[name] = _packaged_price(
                    name, row, required=(*_PRICE_FIELDS, *_LIFETIME_FIELDS), at=provider
                )
        return cls(prices)

    @property
    def prices(self) -> Mapping[str, Price]:
        """A read-only view of every row, by model name."""
        return MappingProxyType(self._prices)

    def with_overrides(self, overrides: Mapping[str, Mapping[str, object]]) -> PriceTable:
        """A new table with ``overrides`` (model name → fields) applied on top of this one.

        Fields use this module's names, per 1M tokens (``input``, ``output``,
        ``cached_input``, ``cache_write``, ``cache_write_1h``, ``cache_storage_hour`` — per
        1M tokens per hour —, plus optional ``source`` and
        ``date``), or LiteLLM's per-token names (``input_cost_per_token``,
        ``output_cost_per_token``, ``cache_read_input_token_cost``,
        ``cache_creation_input_token_cost``, ``cache_creation_input_token_cost_above_1hr``).
        Overriding a
        known model may change only some fields; a new model needs ``input`` and ``output``.
        Raises :class:`~deja.errors.ConfigError` naming the offending field.
        """
        merged = dict(self._prices)
        for raw_name, fields in overrides.items():
            name = str(raw_name).strip().lower()
            if not isinstance(fields, Mapping):
                raise ConfigError(
                    f"price override for {raw_name!r} must be a mapping of fields",
                    path=str(raw_name),
                )
            merged[name] = _override_price(name, fields, base=self.lookup(name))
        return PriceTable(merged)

    def lookup(self, model: str) -> Price | None:
        """The price of ``model``, or ``None`` when it is unknown.

        Tried in order: the name as given (so a provider-specific override wins), then the
        bare name after the last ``/``; each first exactly, then without a date suffix.
        """
        name = model.strip().lower()
        candidates = [name]
        if "/" in name:
            candidates.append(name.rsplit("/", 1)[1])
        bedrock_id = candidates[-1]
        vendor_free = _BEDROCK_ID.sub("", bedrock_id)
        if vendor_free != bedrock_id:  # a Bedrock model id: us.anthropic.claude-…-v1:0
            candidates.append(vendor_free)
        for candidate in candidates:
            price = self._find(candidate)
            if price is None:
                continue
            if candidate == vendor_free != bedrock_id and _regional_claude(bedrock_id, candidate):
                return _with_premium(price)
            return price
        return None

    def _find(self, candidate: str) -> Price | None:
        """The row of ``candidate``: exactly, else without its date or version suffix."""
        price = self._prices.get(candidate)
        if price is not None:
            return price
        patterns = (
            (_DATE_SUFFIX, _GEMINI_VERSION) if candidate.startswith("gemini-") else (_DATE_SUFFIX,)
        )
        for pattern in patterns:
            undated = pattern.sub("", candidate)
            if undated != candidate:
                price = self._prices.get(undated)
                if price is not None:
                    return price
        return None

    def response_cost(self, model: str, response: object, *, at: float | None = None) -> float:
        """What ``response`` (an OpenAI-style body) cost in USD: priced by ``model`` (what
        was asked for), else by the model the response names; 0.0 when neither is known
        or the response carries no usage. ``at``: as :meth:`cost`."""
        usage = response.get("usage") if isinstance(response, Mapping) else None
        if not isinstance(usage, Mapping):
            return 0.0
        cost = self.cost(model, usage, at=at)
        named = response.get("model") if isinstance(response, Mapping) else None
        if cost is None and isinstance(named, str):
            cost = self.cost(named, usage, at=at)
        if cost is None and model not in _UNPRICED_WARNED and self.lookup(model) is None:
            _UNPRICED_WARNED.warn(model)  # a $0 cost (and saving) is not silent
        return cost or 0.0

    def repeat_cost(self, model: str, response: object) -> float | None:
        """What asking for ``response`` again would cost, the provider's caches warm: a
        hit's saving. The provider context cache this call made (Gemini: its tokens
        written, its hours of storage) is not made again, what it wrote to a prompt
        cache (Anthropic, Bedrock, OpenAI's models that bill writes) is read instead, and
        so is the prefix a provider that caches by itself would keep (OpenAI, DeepSeek,
        Gemini 2.5+, xAI: ``_AUTO_PREFIX_CACHES``) where the row prices cached reads: the
        least a repeat costs, so savings are never overstated: at a row's off-peak rates
        too. ``None`` when that is what the answer cost itself (it made no cache, none
        would serve a repeat, and its model's rates do not change by the hour)."""
        if not isinstance(response, Mapping):
            return None
        usage = response.get("usage")
        if not isinstance(usage, Mapping):
            return None
        read, written = _cache_counts(usage)
        # a call that made a context cache is repeated through it (Gemini documents no
        # implicit cache beside an explicit one): what it holds is read, as below
        kept = 0 if "context_cache" in usage else self._auto_cached(model, response, usage)
        if not written and "context_cache" not in usage and kept <= (read or 0):
            return self._off_peak_cost(model, response)
        details = usage.get("prompt_tokens_details")
        details = details if isinstance(details, Mapping) else {}
        read = max((read or 0) + (written or 0), kept)
        again = {k: v for k, v in usage.items() if k not in ("context_cache", "cache_creation")}
        again["prompt_tokens_details"] = {**details, "cached_tokens": read, "cache_write_tokens": 0}
        again["cache_creation_input_tokens"] = 0
        repeat = {**response, "usage": again}
        off_peak = self._off_peak_cost(model, repeat)
        return self.response_cost(model, repeat) if off_peak is None else off_peak

    def _auto_cached(
        self, model: str, response: Mapping[str, object], usage: Mapping[str, object]
    ) -> int:
        """The prompt tokens a repeat of ``response`` would read from a cache its provider
        keeps by itself (``_AUTO_PREFIX_CACHES``); 0 when there is none, or the row (of
        ``model``, else of the model the response names) prices no cached read or bills
        writes (the provider reports those)."""
        prompt = _count(usage.get("prompt_tokens"))
        if not prompt:
            return 0
        price = self.lookup(model)
        if price is None:
            named = response.get("model")
            if not isinstance(named, str):
                return 0
            model, price = named, self.lookup(named)
        if price is None or price.cache_write is not None:
            return 0
        long = price.long_context
        rate = long.cached_input if long is not None and prompt > long.above else price.cached_input
        if rate is None:
            return 0
        bare = model.strip().lower().rsplit("/", 1)[-1]
        for family, minimum, unit in _AUTO_PREFIX_CACHES:
            if family.match(bare):
                return 0 if prompt < minimum else prompt - prompt % unit
        return 0

    def _off_peak_cost(self, model: str, response: Mapping[str, object]) -> float | None:
        """``response``'s cost at its model's off-peak rates; ``None`` for a model whose
        rates do not change by the hour."""
        price = self.lookup(model)
        named = response.get("model")
        if price is None and isinstance(named, str):
            model, price = named, self.lookup(named)
        if price is None or price.off_peak is None:
            return None
        usage = response.get("usage")
        full = _list_cost(price, usage) if isinstance(usage, Mapping) else None
        return None if full is None else full * min(price.off_peak.factor, 1.0)

    def cost(
        self, model: str, usage: Mapping[str, object] | None, *, at: float | None = None
    ) -> float | None:
        """What one response cost in USD, from its OpenAI-style ``usage``, answered at the
        Unix time ``at`` (default: now; it matters only for a row with ``off_peak`` rates).

        Returns ``None`` for an unknown model or when ``usage`` carries no token counts.
        Never raises on odd usage: fields that are not non-negative integers count as
        absent, and cached/written counts are capped at the prompt size. Written tokens
        are billed at ``cache_write`` except the ``cache_creation.ephemeral_1h_input_tokens``
        among them, billed at ``cache_write_1h``.
        """
        price = self.lookup(model)
        if price is None or not isinstance(usage, Mapping):
            return None
        total = _list_cost(price, usage)
        if total is not None and price.off_peak is not None:
            total *= price.off_peak.factor_at(time.time() if at is None else at)
        return total

    def storage_cost(self, model: str, tokens: int, seconds: float) -> float | None:
        """USD to keep ``tokens`` in ``model``'s provider context cache for ``seconds``.

        ``None`` for an unknown model or one without a storage price. Storage is billed
        pro rata by the second, as Google bills ``cachedContents``.
        """
        price = self.lookup(model)
        if price is None or price.cache_storage_hour is None:
            return None
        if tokens <= 0 or seconds <= 0:
            return 0.0
        return tokens * price.cache_storage_hour * (seconds / 3600.0) / _PER_MILLION

    def provider_cache_savings(
        self, model: str, usage: Mapping[str, object] | None
    ) -> float | None:
        """USD the provider's prompt cache saved on one response (negative: it cost more).

        The cost of the same usage with every prompt token billed at the input price, minus
        :meth:`cost`. Reads save money; writes cost more than plain input, so a response
        that only wrote to the cache has a negative saving. ``None`` when :meth:`cost` is.
        """
        actual = self.cost(model, usage)
        if actual is None or not isinstance(usage, Mapping):
            return None
        plain = {key: usage[key] for key in ("prompt_tokens", "completion_tokens") if key in usage}
        uncached = self.cost(model, plain)
        return None if uncached is None else uncached - actual

    def provider_cache_effect(
        self, model: str, usage: Mapping[str, object]
    ) -> tuple[float | None, float | None]:
        """What the provider's prompt cache did to one response's cost, in two parts that
        only grow (counters cannot go down): what its reads saved (the usage priced as if
        nothing was written, against every prompt token at the input price) and what its
        writes cost above input (the real cost minus the unwritten one). One answer may
        do both; net saving = saved - premium. ``None`` for a part that cannot be priced."""
        unwritten = {
            key: value
            for key, value in usage.items()
            if key not in ("cache_creation_input_tokens", "cache_creation")
        }
        unwritten["cache_creation_input_tokens"] = 0  # not read from the details either
        saved = self.provider_cache_savings(model, unwritten)
        cost, base = self.cost(model, usage), self.cost(model, unwritten)
        premium = None if cost is None or base is None else cost - base
        return saved, premium


def _list_cost(price: Price, usage: Mapping[str, object]) -> float | None:
    """USD of one response's ``usage`` at ``price``'s list (peak) rates (see
    :meth:`PriceTable.cost`); ``None`` when it carries no token counts."""
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    prompt = prompt or 0
    completion = completion or 0

    cached, written = _cache_counts(usage)
    cached = min(cached or 0, prompt)
    written = min(written or 0, prompt - cached)
    split = usage.get("cache_creation")
    written_1h = (
        _count(split.get("ephemeral_1h_input_tokens")) if isinstance(split, Mapping) else None
    )
    written_1h = min(written_1h or 0, written)
    uncached = prompt - cached - written

    input_rate, output_rate, cached_price = price.input, price.output, price.cached_input
    write_price, write_1h_price = price.cache_write, price.cache_write_1h
    long = price.long_context
    if long is not None and prompt > long.above:
        input_rate, output_rate, cached_price = long.input, long.output, long.cached_input
        if long.cache_write is not None:
            write_price = long.cache_write
        if long.cache_write_1h is not None:
            write_1h_price = long.cache_write_1h
    cached_rate = input_rate if cached_price is None else cached_price
    write_rate = input_rate if write_price is None else write_price
    write_1h_rate = write_rate if write_1h_price is None else write_1h_price
    total = (
        uncached * input_rate
        + cached * cached_rate
        + (written - written_1h) * write_rate
        + written_1h * write_1h_rate
        + completion * output_rate
    )
    created = usage.get("context_cache")
    if isinstance(created, Mapping):
        # a provider context cache made for this call: its tokens at the input price (of
        # the long-context tier when the cached prefix alone is past it: Google bills the
        # creation as a prompt of that many tokens), and the storage bought for its lifetime
        made = _count(created.get("created_tokens")) or 0
        total += made * (long.input if long is not None and made > long.above else price.input)
        hours = created.get("storage_token_hours")
        if price.cache_storage_hour is not None and _is_amount(hours):
            total += float(hours) * price.cache_storage_hour  # type: ignore[arg-type]
    return total / _PER_MILLION


def _cache_counts(usage: Mapping[str, object]) -> tuple[int | None, int | None]:
    """The prompt-cache reads and writes a usage reports (``None``: not said): reads in
    ``prompt_tokens_details.cached_tokens``, else DeepSeek's top-level
    ``prompt_cache_hit_tokens``; writes in a top-level ``cache_creation_input_tokens``
    (Anthropic's, normalized usage), else ``prompt_tokens_details.cache_write_tokens``
    (OpenAI's, OpenRouter's)."""
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, Mapping) else {}
    read = _count(details.get("cached_tokens"))
    if read is None:
        read = _count(usage.get("prompt_cache_hit_tokens"))
    written = _count(usage.get("cache_creation_input_tokens"))
    if written is None:
        written = _count(details.get("cache_write_tokens"))
    return read, written


def _regional_claude(bedrock_id: str, name: str) -> bool:
    """Whether Bedrock id ``bedrock_id`` (of model ``name``) is Claude 4.5 or later called
    outside a global inference profile."""
    version = _CLAUDE_VERSION.match(name)
    if version is None or bedrock_id.startswith("global."):
        return False
    return (int(version[1]), int(version[2] or 0)) >= (4, 5)


def _with_premium(price: Price) -> Price:
    """``price`` with every token rate 10% higher (Bedrock's regional Claude 4.5+)."""

    def up(rate: float) -> float:
        return round(rate * _REGIONAL_PREMIUM, 10)  # 3.3, not 3.3000000000000003

    def maybe_up(rate: float | None) -> float | None:
        return None if rate is None else up(rate)

    long = price.long_context
    return replace(
        price,
        input=up(price.input),
        output=up(price.output),
        cached_input=maybe_up(price.cached_input),
        long_context=None
        if long is None
        else replace(
            long,
            input=up(long.input),
            output=up(long.output),
            cached_input=maybe_up(long.cached_input),
            cache_write=maybe_up(long.cache_write),
            cache_write_1h=maybe_up(long.cache_write_1h),
        ),
        cache_write=maybe_up(price.cache_write),
        cache_write_1h=maybe_up(price.cache_write_1h),
        source=f"{price.source} (+10%: Bedrock outside a global inference profile)",
    )


def _is_amount(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value >= 0
    )


def _count(value: object) -> int | None:
    """``value`` if it is a token count (a non-negative int, not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _rate(value: object, *, path: str) -> float:
    """Validate one price: a finite non-negative number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"price must be a number, not {type(value).__name__}", path=path)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"price must be a finite number >= 0, not {value!r}", path=path)
    return float(value)


def _optional_rate(value: object, *, path: str) -> float | None:
    """Validate a price that may be ``None`` (no separate cache price)."""
    return None if value is None else _rate(value, path=path)


def _text(value: object, *, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, not {type(value).__name__}", path=path)
    return value


def _rate_for(target: str, value: object, *, path: str) -> float | None:
    """Validate ``value`` for price field ``target``: only cache prices may be ``None``."""
    if target in _NULLABLE_FIELDS:
        return _optional_rate(value, path=path)
    return _rate(value, path=path)


def _packaged_price(
    name: str,
    row: Mapping[str, object],
    *,
    required: tuple[str, ...] = _PRICE_FIELDS,
    at: str = "models",
) -> Price:
    """One row of the packaged JSON; every ``required`` field must be there."""
    missing = [field for field in (*required, *_TEXT_FIELDS) if field not in row]
    if missing:
        raise ConfigError(f"missing fields {missing}", path=f"prices.json:{at}.{name}")
    date = _text(row["date"], path=f"{name}.date")
    if not _DATE.match(date):
        raise ConfigError(f"date must be YYYY-MM-DD, not {date!r}", path=f"{name}.date")
    return Price(
        input=_rate(row["input"], path=f"{name}.input"),
        output=_rate(row["output"], path=f"{name}.output"),
        cached_input=_optional_rate(row["cached_input"], path=f"{name}.cached_input"),
        cache_write=_optional_rate(row["cache_write"], path=f"{name}.cache_write"),
        source=_text(row["source"], path=f"{name}.source"),
        date=date,
        cache_write_1h=_optional_rate(row.get("cache_write_1h"), path=f"{name}.cache_write_1h"),
        cache_storage_hour=_optional_rate(
            row.get("cache_storage_hour"), path=f"{name}.cache_storage_hour"
        ),
        long_context=_long_context(row.get("long_context"), path=f"{name}.long_context"),
        off_peak=_off_peak(row.get("off_peak"), path=f"{name}.off_peak"),
    )


def _off_peak(value: object, *, path: str) -> OffPeak | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError("must be a mapping of factor and peak_hours_utc", path=path)
    factor = _rate(value.get("factor"), path=f"{path}.factor")
    if not 0 < factor <= 1:
        raise ConfigError("factor must be above 0 and at most 1", path=f"{path}.factor")
    hours = value.get("peak_hours_utc")
    ranges: list[tuple[int, int]] = []
    for span in hours if isinstance(hours, list) else [None]:
        if (
            not isinstance(span, list)
            or len(span) != 2
            or not all(isinstance(h, int) and not isinstance(h, bool) for h in span)
            or not 0 <= span[0] < span[1] <= 24
        ):
            raise ConfigError(
                "peak_hours_utc must be a list of [start, end] hours, 0 <= start < end <= 24",
                path=f"{path}.peak_hours_utc",
            )
        ranges.append((span[0], span[1]))
    return OffPeak(factor=factor, peak_hours_utc=tuple(ranges))


def _long_context(value: object, *, path: str) -> LongContextPrice | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            "must be a mapping of above/input/output/cached_input/cache_write/cache_write_1h",
            path=path,
        )
    above = value.get("above")
    if isinstance(above, bool) or not isinstance(above, int) or above < 1:
        raise ConfigError("above must be a whole number of prompt tokens", path=f"{path}.above")
    return LongContextPrice(
        above=above,
        input=_rate(value.get("input"), path=f"{path}.input"),
        output=_rate(value.get("output"), path=f"{path}.output"),
        cached_input=_optional_rate(value.get("cached_input"), path=f"{path}.cached_input"),
        cache_write=_optional_rate(value.get("cache_write"), path=f"{path}.cache_write"),
        cache_write_1h=_optional_rate(value.get("cache_write_1h"), path=f"{path}.cache_write_1h"),
    )


def _override_price(name: str, fields: Mapping[str, object], *, base: Price | None) -> Price:
    """Apply one model's override fields to ``base`` (or build a new row)."""
    rates: dict[str, float | None] = {}
    texts: dict[str, str] = {}
    for raw_field, value in fields.items():
        field = str(raw_field)
        path = f"{name}.{field}"
        if field in _LITELLM_FIELDS:
            target = _LITELLM_FIELDS[field]
            rate = _rate_for(target, value, path=path)
            # LiteLLM prices a single token; deja's table is per 1M tokens.
            per_million = None if rate is None else rate * _PER_MILLION
        elif field in _PRICE_FIELDS or field in _LIFETIME_FIELDS or field in _STORAGE_FIELDS:
            target = field
            per_million = _rate_for(target, value, path=path)
        elif field in _TEXT_FIELDS:
            texts[field] = _text(value, path=path)
            continue
        else:
            hint = difflib.get_close_matches(field, _KNOWN_FIELDS, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"unknown price field {field!r}{suggestion} "
                f"(expected one of: {', '.join(_KNOWN_FIELDS)})",
                path=path,
            )
        if target in rates:
            raise ConfigError(f"{target!r} is given twice (under two names)", path=path)
        rates[target] = per_million

    if base is None:
        missing = [field for field in ("input", "output") if rates.get(field) is None]
        if missing:
            raise ConfigError(
                f"a model with no packaged price needs {' and '.join(missing)}",
                path=f"{name}.{missing[0]}",
            )
        base = Price(
            input=0.0,
            output=0.0,
            cached_input=None,
            cache_write=None,
            source=_OVERRIDE_SOURCE,
            date="",
        )
    input_rate = rates.get("input", base.input)
    output_rate = rates.get("output", base.output)
    if input_rate is None or output_rate is None:
        raise ConfigError("input and output prices cannot be null", path=name)
    return replace(
        base,
        input=input_rate,
        output=output_rate,
        cached_input=rates.get("cached_input", base.cached_input),
        cache_write=rates.get("cache_write", base.cache_write),
        cache_write_1h=rates.get("cache_write_1h", base.cache_write_1h),
        cache_storage_hour=rates.get("cache_storage_hour", base.cache_storage_hour),
        off_peak=None if rates else base.off_peak,  # flat rates, as stated
        # An override is no longer what the packaged source said.
        source=texts.get("source", _OVERRIDE_SOURCE),
        date=texts.get("date", ""),
    )


@functools.cache
def packaged_prices() -> PriceTable:
    """The packaged table, read once per process: what a call with no cache (and so no
    table of its own) is priced by."""
    return PriceTable.default()
