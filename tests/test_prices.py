"""Prices as data: the packaged table, lookups, cost arithmetic and config overrides."""

from __future__ import annotations

import calendar
import dataclasses
import json
import re
from importlib.resources import files

import pytest

from deja.errors import ConfigError
from deja.prices import Price, PriceTable

REQUIRED_MODELS = {
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "o1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-4-turbo",
    "gpt-3.5-turbo",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "deepseek-flash",
    "deepseek-v4-flash",
    "deepseek-v4-pro",
}


# OpenAI bills 30-minute cache writes from GPT-5.6 on (1.25x the input price).
_BILLS_CACHE_WRITES = re.compile(r"^gpt-(?:5\.6|6)(?:\.\d+)?(?:-|$)")  # (gpt-5.6: an alias)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.default()


def _price(**fields: object) -> Price:
    base: dict[str, object] = {
        "input": 3.0,
        "output": 15.0,
        "cached_input": 0.3,
        "cache_write": 3.75,
        "source": "https://example.test/prices",
        "date": "2026-01-01",
    }
    base.update(fields)
    return Price(**base)  # type: ignore[arg-type]


# -- the packaged data ---------------------------------------------------------------------


def test_packaged_json_has_source_and_date_on_every_row() -> None:
    document = json.loads((files("deja") / "data" / "prices.json").read_text(encoding="utf-8"))
    assert document["unit"] == "USD per 1M tokens"
    rows = document["models"]
    assert rows.keys() >= REQUIRED_MODELS
    for name, row in rows.items():
        required = {"input", "output", "cached_input", "cache_write", "source", "date"}
        optional = {"cache_storage_hour", "long_context", "off_peak"}
        assert required <= set(row) <= required | optional
        assert row["source"].startswith("https://"), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date"]), name
        assert row["input"] >= 0 and row["output"] >= 0, name
        # Keys are bare model names; provider prefixes and snapshots are lookup concerns.
        assert name == name.lower() and "/" not in name, name
        if not name.startswith("deepseek") and not _BILLS_CACHE_WRITES.match(name):
            # OpenAI before GPT-5.6 bills no cache writes; Gemini and Nova bill them at the
            # input price
            assert row["cache_write"] is None, name


def test_default_table_loads_every_row(table: PriceTable) -> None:
    assert table.prices.keys() >= REQUIRED_MODELS
    gpt_4o = table.prices["gpt-4o"]
    assert (gpt_4o.input, gpt_4o.output, gpt_4o.cached_input, gpt_4o.cache_write) == (
        2.5,
        10.0,
        1.25,
        None,
    )
    # Each call builds its own table from the packaged file.
    assert PriceTable.default().prices == table.prices


def test_price_is_frozen(table: PriceTable) -> None:
    price = table.prices["gpt-4o"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        price.input = 0.0  # type: ignore[misc]


def test_table_view_is_read_only(table: PriceTable) -> None:
    with pytest.raises(TypeError):
        table.prices["gpt-4o"] = _price()  # type: ignore[index]


# -- lookup --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "row"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("  gpt-4o ", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-4o-2024-11-20", "gpt-4o"),
        # Longest known name: the mini snapshot is not a gpt-4o snapshot.
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o1-2024-12-17", "o1"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        # The older -MMDD snapshot form.
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("gpt-4-0613", "gpt-4"),
        ("deepseek/deepseek-flash", "deepseek-flash"),
        ("text-embedding-3-small", "text-embedding-3-small"),
    ],
)
def test_lookup_finds_the_row(table: PriceTable, model: str, row: str) -> None:
    assert table.lookup(model) is table.prices[row]


@pytest.mark.parametrize(
    "model",
    [
        "claude-3-opus",
        "gpt-4o-audio-preview",  # a different model, not a snapshot
        "gpt-4-1106-preview",  # date not at the end
        "gpt-4o-2024-08",  # not a date suffix
        "gpt-4o-latest",
        "gpt-4",  # a prefix of a known name is not that name
        "",
        "openai/",
    ],
)
def test_lookup_unknown_is_none(model: str) -> None:
    table = PriceTable({"gpt-4o": _price()})
    assert table.lookup(model) is None


def test_provider_qualified_row_wins_over_the_bare_one() -> None:
    table = PriceTable({"gpt-4o": _price(input=2.5), "azure/gpt-4o": _price(input=5.0)})
    assert table.lookup("azure/gpt-4o").input == 5.0  # type: ignore[union-attr]
    assert table.lookup("azure/gpt-4o-2024-08-06").input == 5.0  # type: ignore[union-attr]
    assert table.lookup("openai/gpt-4o").input == 2.5  # type: ignore[union-attr]


# -- cost ----------------------------------------------------------------------------------


def test_cost_bills_cached_tokens_at_the_cached_price(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 400},
    }
    # 600 * 2.50 + 400 * 1.25 + 500 * 10.00, per 1M tokens
    assert table.cost("openai/gpt-4o", usage) == pytest.approx(0.007)


def test_cost_without_cache_details(table: PriceTable) -> None:
    usage = {"prompt_tokens": 2000, "completion_tokens": 1000}
    # 2000 * 0.15 + 1000 * 0.60
    assert table.cost("gpt-4o-mini", usage) == pytest.approx(0.0009)


def test_cost_with_cache_reads_and_writes() -> None:
    table = PriceTable({"m": _price()})
    usage = {
        "prompt_tokens": 10_000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 2000},
        "cache_creation_input_tokens": 4000,
    }
    # 4000 * 3 + 2000 * 0.3 + 4000 * 3.75 + 100 * 15
    assert table.cost("m", usage) == pytest.approx(0.0291)


def test_cost_with_no_cache_prices_bills_everything_at_input() -> None:
    table = PriceTable({"m": _price(cached_input=None, cache_write=None)})
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 500},
        "cache_creation_input_tokens": 200,
    }
    # 1000 * 3 + 100 * 15
    assert table.cost("m", usage) == pytest.approx(0.0045)


def test_cost_of_a_model_without_cached_price(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 500},
    }
    # gpt-4-turbo lists no cached price: 1000 * 10 + 100 * 30
    assert table.cost("gpt-4-turbo-2024-04-09", usage) == pytest.approx(0.013)


def test_cost_of_an_embedding(table: PriceTable) -> None:
    usage = {"prompt_tokens": 5000, "total_tokens": 5000}
    assert table.cost("text-embedding-3-small", usage) == pytest.approx(0.0001)
    assert table.cost("text-embedding-3-large", usage) == pytest.approx(0.00065)


# Friday 2026-11-27 02:00 UTC is DeepSeek's peak; the Saturday after is off-peak all day, and
# so is a weekday at 05:00 (between the two peak windows) or at 10:00 (the end is excluded)
PEAK = calendar.timegm((2026, 11, 27, 2, 0, 0))
OFF_PEAK = (
    calendar.timegm((2026, 11, 28, 2, 0, 0)),
    calendar.timegm((2026, 11, 27, 5, 0, 0)),
    calendar.timegm((2026, 11, 27, 10, 0, 0)),
)


def test_cost_reads_deepseek_cache_hits(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 100,
        "prompt_cache_hit_tokens": 800,
        "prompt_cache_miss_tokens": 200,
    }
    # 200 * 0.30 + 800 * 0.006 + 100 * 1.20 at the peak, half of it off-peak
    assert table.cost("deepseek-flash", usage, at=PEAK) == pytest.approx(0.0001848)
    for when in OFF_PEAK:
        assert table.cost("deepseek-flash", usage, at=when) == pytest.approx(0.0000924)


def test_a_hit_on_an_off_peak_priced_model_saves_the_off_peak_price(table: PriceTable) -> None:
    # the least a repeat costs, whatever the hour of the hit: savings never overstated (a
    # repeat reads the prompt from DeepSeek's own cache, at the off-peak price)
    response = {"usage": {"prompt_tokens": 1000, "completion_tokens": 1000}}
    repeat = (1_000 * 0.044 + 1_000 * 3.96) / 1e6 * 0.5
    assert table.repeat_cost("deepseek/deepseek-v4-pro", response) == pytest.approx(repeat)
    assert table.repeat_cost("gpt-4o", response) is None  # rates that do not change


def test_an_override_states_flat_rates() -> None:
    table = PriceTable.default().with_overrides({"deepseek-flash": {"input": 1.0, "output": 1.0}})
    usage = {"prompt_tokens": 1_000_000}
    assert table.cost("deepseek-flash", usage, at=OFF_PEAK[0]) == pytest.approx(1.0)
    assert table.cost("deepseek-flash", usage, at=PEAK) == pytest.approx(1.0)


def test_an_unpriced_model_is_named_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable.default()
    response = {"usage": {"prompt_tokens": 10, "completion_tokens": 1}}
    with caplog.at_level("WARNING", logger="deja.prices"):
        for _ in range(3):
            assert table.response_cost("no-such-model-audit19", response) == 0.0
        assert table.response_cost("gpt-4o", response) > 0
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "'no-such-model-audit19'" in warned[0]


def test_models_callers_make_up_cannot_grow_the_log_or_the_process(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a wildcard route callers name the models: 40,000 names made 40,000 warning
    lines (94% of a soaked proxy's log) and a set that never shrank. Past the first
    names, one line a window counts the others."""
    from deja import prices

    warnings = prices._UnpricedWarnings()
    monkeypatch.setattr(prices, "_UNPRICED_WARNED", warnings)
    monkeypatch.setattr(prices._UnpricedWarnings, "NAMES", 5)
    table = PriceTable.default()
    response = {"usage": {"prompt_tokens": 10, "completion_tokens": 1}}
    with caplog.at_level("WARNING", logger="deja.prices"):
        for i in range(1000):
            assert table.response_cost(f"made-up-{i}", response) == 0.0
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 6, said  # five named, then one count for the window
    assert all(f"'made-up-{i}'" in said[i] for i in range(5))
    assert said[5].startswith("requests for models without a price since the last such line: 1 ")
    assert len(warnings._warned) == 5 and warnings._unnamed.unsaid("unnamed") == 994


def test_cost_prefers_openai_cached_tokens_over_deepseek_field() -> None:
    table = PriceTable({"m": _price()})
    usage = {
        "prompt_tokens": 1000,
        "prompt_tokens_details": {"cached_tokens": 1000},
        "prompt_cache_hit_tokens": 0,
    }
    assert table.cost("m", usage) == pytest.approx(0.0003)


def test_cost_is_never_rounded() -> None:
    table = PriceTable({"m": _price(input=0.1, output=0.0, cached_input=None)})
    assert table.cost("m", {"prompt_tokens": 1}) == pytest.approx(1e-7, rel=1e-12)


@pytest.mark.parametrize("usage", [None, {}, {"total_tokens": 10}, {"prompt_tokens": "10"}])
def test_cost_without_usable_usage_is_none(table: PriceTable, usage: object) -> None:
    assert table.cost("gpt-4o", usage) is None  # type: ignore[arg-type]


def test_cost_of_unknown_model_is_none(table: PriceTable) -> None:
    assert table.cost("mystery-model", {"prompt_tokens": 10, "completion_tokens": 1}) is None


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # Non-int fields are ignored, not fatal.
        ({"prompt_tokens": "many", "completion_tokens": 10}, 10 * 15),
        ({"prompt_tokens": 100, "completion_tokens": 1.5}, 100 * 3),
        ({"prompt_tokens": True, "completion_tokens": 10}, 10 * 15),
        ({"prompt_tokens": -5, "completion_tokens": 10}, 10 * 15),
        ({"prompt_tokens": 100, "prompt_tokens_details": None}, 100 * 3),
        ({"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": "x"}}, 100 * 3),
        ({"prompt_tokens": 100, "prompt_tokens_details": [1, 2]}, 100 * 3),
        # Counts larger than the prompt are capped at it.
        ({"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 500}}, 100 * 0.3),
        (
            {
                "prompt_tokens": 100,
                "prompt_tokens_details": {"cached_tokens": 60},
                "cache_creation_input_tokens": 500,
            },
            60 * 0.3 + 40 * 3.75,
        ),
    ],
)
def test_cost_tolerates_odd_usage(usage: dict[str, object], expected: float) -> None:
    table = PriceTable({"m": _price()})
    assert table.cost("m", usage) == pytest.approx(expected / 1_000_000)


# -- overrides -----------------------------------------------------------------------------


def test_override_changes_only_the_given_fields(table: PriceTable) -> None:
    updated = table.with_overrides({"gpt-4o": {"input": 2.0, "date": "2026-12-01"}})
    price = updated.lookup("gpt-4o")
    assert price == Price(
        input=2.0,
        output=10.0,
        cached_input=1.25,
        cache_write=None,
        source="override",
        date="2026-12-01",
    )
    # The original table is untouched.
    assert table.lookup("gpt-4o").input == 2.5  # type: ignore[union-attr]
    # Snapshots of the overridden model follow the override.
    assert updated.lookup("gpt-4o-2024-08-06") is price


def test_override_adds_a_new_model() -> None:
    table = PriceTable({}).with_overrides(
        {"My-Finetune": {"input": 1, "output": 4, "source": "https://example.test/contract"}}
    )
    assert table.lookup("my-finetune") == Price(
        input=1.0,
        output=4.0,
        cached_input=None,
        cache_write=None,
        source="https://example.test/contract",
        date="",
    )


def test_override_accepts_litellm_per_token_names() -> None:
    table = PriceTable({}).with_overrides(
        {
            "claude-like": {
                "input_cost_per_token": 0.000003,
                "output_cost_per_token": 0.000015,
                "cache_read_input_token_cost": 0.0000003,
                "cache_creation_input_token_cost": 0.00000375,
            }
        }
    )
    price = table.lookup("claude-like")
    assert price is not None
    assert price.input == pytest.approx(3.0)
    assert price.output == pytest.approx(15.0)
    assert price.cached_input == pytest.approx(0.3)
    assert price.cache_write == pytest.approx(3.75)
    usage = {
        "prompt_tokens": 10_000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 2000},
        "cache_creation_input_tokens": 4000,
    }
    assert table.cost("claude-like", usage) == pytest.approx(0.0291)


def test_override_for_one_provider_only(table: PriceTable) -> None:
    updated = table.with_overrides({"azure/gpt-4o": {"input": 5.0}})
    assert updated.lookup("azure/gpt-4o").input == 5.0  # type: ignore[union-attr]
    assert updated.lookup("azure/gpt-4o").output == 10.0  # type: ignore[union-attr]
    assert updated.lookup("openai/gpt-4o").input == 2.5  # type: ignore[union-attr]


def test_override_can_clear_a_cache_price(table: PriceTable) -> None:
    updated = table.with_overrides({"gpt-4o": {"cached_input": None}})
    assert updated.lookup("gpt-4o").cached_input is None  # type: ignore[union-attr]


def test_unknown_override_field_is_a_config_error_naming_it(table: PriceTable) -> None:
    with pytest.raises(ConfigError, match="'inptu'") as info:
        table.with_overrides({"gpt-4o": {"inptu": 1.0}})
    assert info.value.path == "gpt-4o.inptu"
    assert "did you mean 'input'" in str(info.value)


def test_litellm_field_deja_does_not_price_is_an_error(table: PriceTable) -> None:
    with pytest.raises(ConfigError, match="'input_cost_per_audio_token'"):
        table.with_overrides({"gpt-4o": {"input_cost_per_audio_token": 1e-6}})


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"input": "cheap"}, "m.input"),
        ({"input": True}, "m.input"),
        ({"input": -1}, "m.input"),
        ({"output": float("nan")}, "m.output"),
        ({"input": None}, "m.input"),
        ({"input_cost_per_token": None}, "m.input_cost_per_token"),
        ({"source": 3}, "m.source"),
    ],
)
def test_invalid_override_values(fields: dict[str, object], path: str) -> None:
    table = PriceTable({"m": _price()})
    with pytest.raises(ConfigError) as info:
        table.with_overrides({"m": fields})
    assert info.value.path == path


def test_new_model_needs_input_and_output() -> None:
    with pytest.raises(ConfigError, match="needs output"):
        PriceTable({}).with_overrides({"new": {"input": 1.0}})


def test_same_price_under_two_names_is_an_error() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        PriceTable({"m": _price()}).with_overrides(
            {"m": {"input": 1.0, "input_cost_per_token": 0.000001}}
        )


def test_override_fields_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        PriceTable({}).with_overrides({"m": 1.0})  # type: ignore[dict-item]


def test_context_cache_storage_is_billed_per_token_hour() -> None:
    table = PriceTable({"m": _price()}).with_overrides({"m": {"cache_storage_hour": 4.5}})
    # 100k tokens kept 30 minutes at $4.50 per 1M tokens per hour
    assert table.storage_cost("m", 100_000, 1800) == pytest.approx(0.225)
    assert table.storage_cost("m", 0, 1800) == 0.0
    assert PriceTable({"m": _price()}).storage_cost("m", 100, 60) is None  # no storage price
    assert table.storage_cost("unknown", 100, 60) is None
    with pytest.raises(ConfigError, match="cache_storage_hour"):
        table.with_overrides({"m": {"cache_storage_hour": -1}})


def test_gemini_rows_long_context_and_versions(table: PriceTable) -> None:
    pro = table.lookup("gemini/gemini-2.5-pro")
    assert pro is not None and pro.cache_storage_hour == 4.5
    assert table.lookup("vertex_ai/gemini-2.5-flash-001") == table.lookup("gemini-2.5-flash")
    assert table.lookup("gpt-4o-latest") is None  # only Gemini names carry these versions
    short = {"prompt_tokens": 200_000, "completion_tokens": 1_000}
    long = {"prompt_tokens": 200_001, "completion_tokens": 1_000}
    assert table.cost("gemini/gemini-2.5-pro", short) == pytest.approx(0.25 + 0.01)
    # above 200k the whole request is billed at the long-context rates
    assert table.cost("gemini/gemini-2.5-pro", long) == pytest.approx(200_001 * 2.5e-6 + 0.015)


def test_a_context_cache_made_for_a_call_is_billed_with_it(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 10_000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 8_000},
        "context_cache": {"created_tokens": 8_000, "storage_token_hours": 8_000 * 0.5},
    }
    plain = table.cost("gemini-2.5-flash", {k: v for k, v in usage.items() if k != "context_cache"})
    made = table.cost("gemini-2.5-flash", usage)
    assert plain is not None and made is not None
    # 8k tokens written at the input price, and kept half an hour at $1 per 1M tokens-hour
    assert made - plain == pytest.approx(8_000 * 0.30e-6 + 4_000 * 1.0e-6)


def test_bedrock_ids_find_their_model(table: PriceTable) -> None:
    sonnet_4 = table.lookup("claude-sonnet-4")
    for model in (
        "bedrock/anthropic.claude-sonnet-4-20250514-v1:0",
        "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0",
        "bedrock/global.anthropic.claude-sonnet-4-20250514-v1:0",
    ):
        assert table.lookup(model) == sonnet_4, model
    assert table.lookup("bedrock/amazon.nova-lite-v1:0") == table.lookup("nova-lite")


def test_bedrock_regional_claude_4_5_costs_10_percent_more(table: PriceTable) -> None:
    listed = table.lookup("claude-sonnet-4-5")
    assert listed is not None
    # a global inference profile has Anthropic's list price...
    assert table.lookup("bedrock/global.anthropic.claude-sonnet-4-5-20250929-v1:0") == listed
    # ...one region or a geography 10% more, on every token rate
    for model in (
        "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "bedrock/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
    ):
        regional = table.lookup(model)
        assert regional is not None, model
        assert (regional.input, regional.output) == (3.3, 16.5)
        assert (regional.cached_input, regional.cache_write, regional.cache_write_1h) == (
            0.33,
            4.125,
            6.6,
        )
        assert "+10%" in regional.source
    haiku = table.lookup("bedrock/apac.anthropic.claude-haiku-4-5-20251001-v1:0")
    assert haiku is not None and haiku.input == 1.1
    opus_4_6 = table.lookup("bedrock/us.anthropic.claude-opus-4-6-v1:0")
    listed_opus = table.lookup("claude-opus-4-6")
    assert opus_4_6 is not None and listed_opus is not None
    assert opus_4_6.input == pytest.approx(listed_opus.input * 1.1)
    # Claude before 4.5 and other vendors: no premium
    older = table.lookup("bedrock/us.anthropic.claude-opus-4-1-20250805-v1:0")
    assert older == table.lookup("claude-opus-4-1")
    # the anthropic/ provider itself, and a deployment's own row for the full id, win
    assert table.lookup("anthropic/claude-sonnet-4-5") == listed
    own = table.with_overrides(
        {"bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0": {"input": 3.0, "output": 15.0}}
    )
    pinned = own.lookup("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert pinned is not None and pinned.input == 3.0
    cost = table.cost(
        "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        {"prompt_tokens": 100_000, "completion_tokens": 0},
    )
    assert cost == pytest.approx(0.33)
    # above 200K input tokens, the long-context rates, 10% more too
    long = table.cost(
        "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        {"prompt_tokens": 1_000_000, "completion_tokens": 0},
    )
    assert long == pytest.approx(6.6)


# -- rows added 2026-11-27 from the providers' official pages -------------------------------


def test_packaged_table_has_current_models(table: PriceTable) -> None:
    for name in (
        "claude-fable-5-1",
        "claude-mythos-5-1",
        "claude-fable-5",
        "claude-mythos-5",
        "claude-opus-5-5",
        "claude-opus-5",
        "claude-opus-4-8",
        "claude-opus-4-7",
        "claude-sonnet-5-5",
        "claude-sonnet-5",
        "gpt-6.2-sol",
        "gpt-6.1-sol",
        "gpt-6-sol",
        "gpt-6-luna",
        "gpt-5.6-luna",
    ):
        price = table.prices[name]
        assert price.source.startswith("https://"), name
        assert price.date == "2026-11-27", name
    # every Claude row bills both write lifetimes
    document = json.loads((files("deja") / "data" / "prices.json").read_text(encoding="utf-8"))
    for name, row in document["provider_models"]["anthropic"].items():
        assert row["cache_write_1h"] is not None, name
        assert row["cache_write_1h"] >= row["cache_write"] >= row["input"], name


def test_cost_of_claude_sonnet_5_5_with_both_write_lifetimes(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 100_000,
        "completion_tokens": 2_000,
        "prompt_tokens_details": {"cached_tokens": 60_000},
        "cache_creation_input_tokens": 30_000,
        "cache_creation": {"ephemeral_1h_input_tokens": 10_000},
    }
    # 10k plain at $2, 60k read at $0.10 (cut from $0.20 on 2026-10-07), 20k 5-minute writes
    # at $2.50, 10k 1-hour writes at $4, 2k output at $10
    expected = (10_000 * 2 + 60_000 * 0.1 + 20_000 * 2.5 + 10_000 * 4 + 2_000 * 10) / 1e6
    assert table.cost("anthropic/claude-sonnet-5-5", usage) == pytest.approx(expected)
    assert expected == pytest.approx(0.136)


def test_cost_of_claude_sonnet_4_6_on_anthropic_and_bedrock(table: PriceTable) -> None:
    # $3 input, $15 output; reads 0.1x, 5m writes 1.25x, 1h writes 2x input
    usage = {
        "prompt_tokens": 100_000,
        "completion_tokens": 1_000,
        "prompt_tokens_details": {"cached_tokens": 50_000},
        "cache_creation_input_tokens": 30_000,
        "cache_creation": {"ephemeral_1h_input_tokens": 10_000},
    }
    expected = (20_000 * 3 + 50_000 * 0.3 + 20_000 * 3.75 + 10_000 * 6 + 1_000 * 15) / 1e6
    assert table.cost("anthropic/claude-sonnet-4-6", usage) == pytest.approx(expected)
    global_id = "bedrock/global.anthropic.claude-sonnet-4-6"
    assert table.cost(global_id, usage) == pytest.approx(expected)
    regional = table.cost("bedrock/us.anthropic.claude-sonnet-4-6", usage)
    assert regional == pytest.approx(expected * 1.1)


def test_cost_of_claude_fable_5_1_cache_reads(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 1_000_000,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 1_000_000},
    }
    # Fable 5.1 reads at 0.025x input; Fable 5 at the usual 0.1x
    assert table.cost("claude-fable-5-1", usage) == pytest.approx(0.25)
    assert table.cost("claude-fable-5", usage) == pytest.approx(1.0)


def test_bedrock_claude_4_6_and_5_ids(table: PriceTable) -> None:
    opus_4_6 = table.lookup("claude-opus-4-6")
    assert opus_4_6 is not None
    assert table.lookup("bedrock/global.anthropic.claude-opus-4-6-v1") == opus_4_6
    regional = table.lookup("bedrock/eu.anthropic.claude-opus-4-6-v1")
    assert regional is not None
    assert (regional.input, regional.cache_write, regional.cache_write_1h) == (5.5, 6.875, 11.0)

    opus_5_5 = table.lookup("claude-opus-5-5")
    assert opus_5_5 is not None and (opus_5_5.input, opus_5_5.cached_input) == (4.0, 0.2)
    assert table.lookup("bedrock/global.anthropic.claude-opus-5-5") == opus_5_5
    us = table.lookup("bedrock/us.anthropic.claude-opus-5-5-v1:0")
    assert us is not None
    assert (us.input, us.output, us.cached_input, us.cache_write, us.cache_write_1h) == (
        4.4,
        22.0,
        0.22,
        5.5,
        8.8,
    )
    usage = {
        "prompt_tokens": 10_000,
        "completion_tokens": 1_000,
        "cache_creation_input_tokens": 10_000,
        "cache_creation": {"ephemeral_1h_input_tokens": 10_000},
    }
    # 10k 1-hour writes at $8 and 1k output at $20, 10% more in one region
    assert table.cost("bedrock/global.anthropic.claude-opus-5-5", usage) == pytest.approx(0.1)
    assert table.cost("bedrock/us.anthropic.claude-opus-5-5", usage) == pytest.approx(0.11)
    # Sonnet 5 (no minor version) is Claude 5.0: regional premium too
    sonnet_5 = table.lookup("bedrock/apac.anthropic.claude-sonnet-5-v1:0")
    assert sonnet_5 is not None and sonnet_5.input == pytest.approx(2.2)


def test_claude_sonnet_4_and_4_5_above_200k_bill_the_whole_request_at_long_context_rates(
    table: PriceTable,
) -> None:
    """$6 in / $22.50 out for every token of a request over 200K input tokens (cache reads
    and writes count towards the 200K), with the cache multipliers on the long rates:
    reads $0.60, 5-minute writes $7.50, 1-hour writes $12."""
    long = {
        "prompt_tokens": 250_000,
        "completion_tokens": 2_000,
        "prompt_tokens_details": {"cached_tokens": 200_000},
        "cache_creation_input_tokens": 40_000,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 30_000,
            "ephemeral_1h_input_tokens": 10_000,
        },
    }
    expected = (10_000 * 6.0 + 200_000 * 0.6 + 30_000 * 7.5 + 10_000 * 12.0 + 2_000 * 22.5) / 1e6
    for model in ("claude-sonnet-4-5", "anthropic/claude-sonnet-4-5-20250929", "claude-sonnet-4"):
        assert table.cost(model, long) == pytest.approx(expected), model
    plain = {"prompt_tokens": 250_000, "completion_tokens": 2_000}
    assert table.cost("claude-sonnet-4-5", plain) == pytest.approx(
        (250_000 * 6 + 2_000 * 22.5) / 1e6
    )
    # at 200K or under, the standard rates
    short = {"prompt_tokens": 200_000, "completion_tokens": 2_000}
    assert table.cost("claude-sonnet-4-5", short) == pytest.approx((200_000 * 3 + 2_000 * 15) / 1e6)
    # Sonnet 4.6 and Opus 4.6 bill their whole 1M window at the standard rates
    assert table.cost("claude-sonnet-4-6", plain) == pytest.approx((250_000 * 3 + 2_000 * 15) / 1e6)


def test_cache_writes_in_openai_details_are_billed_as_writes(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 3_000,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 1_000, "cache_write_tokens": 1_500},
    }
    # 500 at $2, 1,000 read at $0.20, 1,500 written at $2.50
    assert table.cost("gpt-6-sol", usage) == pytest.approx(
        (500 * 2 + 1_000 * 0.2 + 1_500 * 2.5) / 1e6
    )
    saved, premium = table.provider_cache_effect("gpt-6-sol", usage)
    assert saved == pytest.approx(1_000 * (2 - 0.2) / 1e6)
    assert premium == pytest.approx(1_500 * (2.5 - 2) / 1e6)


def test_cost_of_gpt_6_sol_with_writes_and_long_context(table: PriceTable) -> None:
    usage = {
        "prompt_tokens": 100_000,
        "completion_tokens": 1_000,
        "prompt_tokens_details": {"cached_tokens": 50_000},
        "cache_creation_input_tokens": 20_000,
    }
    # 30k at $2, 50k read at $0.10, 20k 30-minute writes at $2.50, 1k output at $10
    assert table.cost("openai/gpt-6.2-sol", usage) == pytest.approx(0.125)
    # GPT-6 Sol reads at $0.20
    assert table.cost("gpt-6-sol", usage) == pytest.approx(0.13)
    # above 272K input tokens input and cache reads double and output is 1.5x
    long = {
        "prompt_tokens": 300_000,
        "completion_tokens": 1_000,
        "prompt_tokens_details": {"cached_tokens": 100_000},
    }
    assert table.cost("gpt-6.1-sol", long) == pytest.approx(
        (200_000 * 4.0 + 100_000 * 0.2 + 1_000 * 15.0) / 1e6
    )
    assert table.cost("gpt-6.1-sol-2026-09-29", long) == table.cost("gpt-6.1-sol", long)
    # ... and cache writes double too ("input and cache rates double": the model pages):
    # they were billed at the short-context $2.50, a write premium below zero
    written = {**long, "cache_creation_input_tokens": 150_000}
    assert table.cost("gpt-6.2-sol", written) == pytest.approx(
        (50_000 * 4.0 + 100_000 * 0.2 + 150_000 * 5.0 + 1_000 * 15.0) / 1e6
    )
    assert table.cost("gpt-6-luna", written) == pytest.approx(
        (50_000 * 0.2 + 100_000 * 0.02 + 150_000 * 0.25 + 1_000 * 0.75) / 1e6
    )


@pytest.mark.parametrize(
    ("model", "row"),
    [
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
        ("gemini/gemini-2.5-flash-lite-preview-09-2025", "gemini-2.5-flash-lite"),
        ("vertex_ai/gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
        ("gemini-2.5-pro-preview", "gemini-2.5-pro"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-1.5-pro-latest", "gemini-1.5-pro"),
        ("gemini-2.0-flash-exp", "gemini-2.0-flash"),
    ],
)
def test_gemini_preview_suffixes_find_the_base_row(table: PriceTable, model: str, row: str) -> None:
    assert table.lookup(model) is table.prices[row]


@pytest.mark.parametrize(
    "model",
    [
        "gemini-2.5-flash-preview-tts",  # a different model
        "gemini-2.5-flash-native-audio-preview-12-2025",  # a different model, dated
        "gemini-2.5-flash-image-preview",  # a different model
        "gemini-2.5-flash-preview-13-2025",  # not a month
        "gemini-2.5-flash-preview-09-25-2025",  # not a preview date
        "gemini-2.5-flash-preview-2025",  # a year alone is not a preview date
        "gemini-2.5-flash-preview-09",  # neither a day nor a year
        "gpt-4o-preview-09-2025",  # only Gemini names carry these versions
    ],
)
def test_gemini_preview_suffix_does_not_match_other_names(model: str) -> None:
    table = PriceTable(
        {"gemini-2.5-flash": _price(), "gpt-4o": _price(), "gemini-2.5-flash-image": _price()}
    )
    if model == "gemini-2.5-flash-image-preview":
        # the image model's own row, never the text model's
        assert table.lookup(model) is table.prices["gemini-2.5-flash-image"]
    else:
        assert table.lookup(model) is None


def test_a_repeat_reads_what_the_first_call_wrote(table: PriceTable) -> None:
    """A hit saves what asking again would cost with the provider's cache warm: what the
    answer wrote is read instead (never the write premium, which would overstate it)."""
    written = {
        "model": "claude-sonnet-4-5",
        "usage": {
            "prompt_tokens": 4_000,
            "completion_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 0},
            "cache_creation_input_tokens": 3_800,
            "cache_creation": {"ephemeral_5m_input_tokens": 3_800, "ephemeral_1h_input_tokens": 0},
        },
    }
    first = table.response_cost("claude-sonnet-4-5", written)
    assert first == pytest.approx((200 * 3 + 3_800 * 3.75 + 100 * 15) / 1e6)
    again = table.repeat_cost("claude-sonnet-4-5", written)
    assert again == pytest.approx((200 * 3 + 3_800 * 0.3 + 100 * 15) / 1e6)
    # OpenAI's writes in the details too
    openai = {
        "usage": {
            "prompt_tokens": 3_000,
            "completion_tokens": 0,
            "prompt_tokens_details": {"cached_tokens": 1_000, "cache_write_tokens": 1_500},
        }
    }
    assert table.repeat_cost("gpt-6-sol", openai) == pytest.approx((500 * 2 + 2_500 * 0.2) / 1e6)
    # nothing written, no context cache made: the answer's own cost (None)
    plain = {"usage": {"prompt_tokens": 10, "completion_tokens": 2}}
    assert table.repeat_cost("gpt-4o", plain) is None
    assert table.repeat_cost("gpt-4o", {"choices": []}) is None
