"""Breakpoint planning: caller markers kept, injection order, the limit, TTL order, minimums.

Placement is checked on the exact Anthropic wire body (what deja would send), and on the
pure plan (warnings, counts for the metric).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from deja.errors import InvalidRequestError
from deja.providers.anthropic import AnthropicProvider
from deja.providers.planner import (
    IMAGE_TOKENS,
    Target,
    apply_plan,
    estimate_tokens,
    minimum_cacheable_tokens,
    plan_breakpoints,
)

EPHEMERAL = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
FIVE_MIN = {"type": "ephemeral", "ttl": "5m"}
MODEL = "anthropic/claude-sonnet-4-5-20250929"  # minimum cacheable prefix: 1,024 tokens
LONG = "All work and no play makes Jack a dull boy. " * 100  # ~1,100 tokens
# No minimum: these tests are about order and limits, not prefix length.
provider = AnthropicProvider(minimum_tokens=lambda model: 0)


def wire(body: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    request = provider.build_request(body, api_key="sk-ant-test", **kwargs)
    return request.json, request.warnings


def text(value: str, control: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": value}
    if control is not None:
        block["cache_control"] = control
    return block


def conversation() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "S1"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
        {"role": "assistant", "content": "A2"},
        {"role": "user", "content": "U3"},
    ]


# -- the caller's markers ------------------------------------------------------------------


def test_caller_markers_are_kept_where_they_are() -> None:
    body = {
        "model": MODEL,
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"type": "object"}},
                "cache_control": ONE_HOUR,
            }
        ],
        "messages": [
            {"role": "system", "content": "Rules.", "cache_control": EPHEMERAL},
            {"role": "user", "content": [text("Doc."), text("Question?", EPHEMERAL)]},
        ],
    }
    out, warnings = wire(body)
    assert out["tools"] == [
        {"name": "f", "input_schema": {"type": "object"}, "cache_control": ONE_HOUR}
    ]
    assert out["system"] == [text("Rules.", EPHEMERAL)]
    assert out["messages"] == [
        {"role": "user", "content": [text("Doc."), text("Question?", EPHEMERAL)]}
    ]
    assert warnings == ()


def test_injection_never_overwrites_a_caller_marker() -> None:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Rules.", "cache_control": ONE_HOUR},
            {"role": "user", "content": "Hi"},
        ],
    }
    out, warnings = wire(body, injection_points=[{"location": "message", "role": "system"}])
    assert out["system"] == [text("Rules.", ONE_HOUR)]  # the caller's lifetime, not 5m
    assert warnings == ()


def test_too_many_caller_markers_keep_the_last_four_and_name_the_dropped() -> None:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "S", "cache_control": EPHEMERAL},
            {"role": "user", "content": "U1", "cache_control": EPHEMERAL},
            {"role": "assistant", "content": "A1", "cache_control": EPHEMERAL},
            {"role": "user", "content": "U2", "cache_control": EPHEMERAL},
            {"role": "assistant", "content": "A2", "cache_control": EPHEMERAL},
            {"role": "user", "content": "U3", "cache_control": EPHEMERAL},
        ],
    }
    out, warnings = wire(body)
    assert out["system"] == "S"  # marker dropped: the system prompt is a plain string again
    assert out["messages"] == [
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": [text("A1", EPHEMERAL)]},
        {"role": "user", "content": [text("U2", EPHEMERAL)]},
        {"role": "assistant", "content": [text("A2", EPHEMERAL)]},
        {"role": "user", "content": [text("U3", EPHEMERAL)]},
    ]
    assert warnings == (
        "caller's cache_control at messages[0] dropped: the request has 6 and the provider "
        "accepts 4; the last 4 are kept",
        "caller's cache_control at messages[1] dropped: the request has 6 and the provider "
        "accepts 4; the last 4 are kept",
    )
    plan = plan_breakpoints(body)
    assert plan.not_placed == {"over_limit": 2}
    assert [w.target for w in plan.warnings] == [Target("message", 0), Target("message", 1)]


def test_prefix_order_is_tools_then_system_then_messages() -> None:
    # A system message late in the list still comes before every message in the prefix.
    body = {
        "model": MODEL,
        "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": EPHEMERAL}],
        "messages": [
            {"role": "user", "content": "U1", "cache_control": EPHEMERAL},
            {"role": "assistant", "content": "A1", "cache_control": EPHEMERAL},
            {"role": "system", "content": "late system", "cache_control": EPHEMERAL},
            {"role": "user", "content": "U2", "cache_control": EPHEMERAL},
        ],
    }
    plan = plan_breakpoints(body)
    # The first in prefix order (the tool) is the one dropped, not messages[0].
    assert [str(w.target) for w in plan.warnings] == ["tools[0]"]
    assert [str(b.target) for b in plan.breakpoints] == [
        "messages[2]",
        "messages[0]",
        "messages[1]",
        "messages[3]",
    ]


# -- injection points ----------------------------------------------------------------------


def test_injection_points_apply_in_order_until_the_limit() -> None:
    body = {"model": MODEL, "messages": conversation()}
    points = [
        {"location": "message", "role": "system"},
        {"location": "message", "index": -1},
        {"location": "message", "role": "user"},  # U1, U2, U3 (already marked)
        {"location": "message", "index": 2},
    ]
    out, warnings = wire(body, injection_points=points)
    assert out["system"] == [text("S1", EPHEMERAL)]
    assert out["messages"] == [
        {"role": "user", "content": [text("U1", EPHEMERAL)]},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": [text("U2", EPHEMERAL)]},
        {"role": "assistant", "content": "A2"},
        {"role": "user", "content": [text("U3", EPHEMERAL)]},
    ]
    assert warnings == (
        "injected breakpoint at messages[2] (injection point #3) not placed: the provider's "
        "limit of 4 breakpoints is reached",
    )
    plan = plan_breakpoints(body, injection_points=points)
    assert plan.not_placed == {"over_limit": 1}
    assert [(str(b.target), b.point) for b in plan.breakpoints] == [
        ("messages[0]", 0),
        ("messages[1]", 2),
        ("messages[3]", 2),
        ("messages[5]", 1),
    ]


def test_injection_fills_only_the_slots_the_caller_left() -> None:
    messages = conversation()
    messages[1]["cache_control"] = EPHEMERAL
    messages[3]["cache_control"] = EPHEMERAL
    messages[5]["cache_control"] = EPHEMERAL
    body = {"model": MODEL, "messages": messages}
    points = [{"location": "message", "last": 3}]  # U3 (taken), A2, then U2 (taken)
    plan = plan_breakpoints(body, injection_points=points)
    assert [(str(b.target), b.source) for b in plan.breakpoints] == [
        ("messages[1]", "caller"),
        ("messages[3]", "caller"),
        ("messages[4]", "injected"),
        ("messages[5]", "caller"),
    ]
    assert plan.warnings == ()


def test_last_n_wants_the_latest_messages_first() -> None:
    body = {"model": MODEL, "messages": conversation()}
    plan = plan_breakpoints(
        body, injection_points=[{"location": "message", "role": "user", "last": 3}], limit=2
    )
    assert [str(b.target) for b in plan.breakpoints] == ["messages[3]", "messages[5]"]
    assert [str(w) for w in plan.warnings] == [
        "injected breakpoint at messages[1] (injection point #0) not placed: the provider's "
        "limit of 2 breakpoints is reached"
    ]


def test_tool_injection_marks_the_last_tool() -> None:
    tools = [
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}},
    ]
    body = {"model": MODEL, "tools": tools, "messages": [{"role": "user", "content": "Hi"}]}
    out, _ = wire(body, injection_points=[{"location": "tool"}])
    assert out["tools"] == [
        {"name": "a", "input_schema": {"type": "object"}},
        {"name": "b", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL},
    ]
    # LiteLLM's Bedrock name, and an index.
    out, _ = wire(body, injection_points=[{"location": "tool_config", "index": 0, "ttl": "1h"}])
    assert out["tools"][0]["cache_control"] == ONE_HOUR
    assert "cache_control" not in out["tools"][1]
    assert tools[0] == {
        "type": "function",
        "function": {"name": "a", "parameters": {"type": "object"}},
    }


def test_injected_marker_on_list_content_goes_on_the_last_part() -> None:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": [text("A"), text("B")]},
            {"role": "user", "content": "Q"},
        ],
    }
    out, _ = wire(body, injection_points=[{"location": "message", "role": "system"}])
    assert out["system"] == [text("A"), text("B", EPHEMERAL)]


def test_injection_on_tool_calls_and_tool_results() -> None:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        ],
    }
    out, warnings = wire(body, injection_points=[{"location": "message", "last": 2}])
    assert out["messages"] == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "w",
                    "input": {},
                    "cache_control": EPHEMERAL,
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": "sunny",
                    "cache_control": EPHEMERAL,
                }
            ],
        },
    ]
    assert warnings == ()


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (
            {"location": "message", "index": 9},
            'injection point #0 {"location": "message", "index": 9} matched nothing',
        ),
        (
            {"location": "message", "index": 0, "role": "user"},
            'injection point #0 {"location": "message", "index": 0, "role": "user"} '
            "matched nothing",
        ),
        ({"location": "tool"}, 'injection point #0 {"location": "tool"} matched nothing'),
        (
            {"location": "message", "role": "developer"},
            'injection point #0 {"location": "message", "role": "developer"} matched nothing',
        ),
    ],
)
def test_a_point_that_matches_nothing_is_named(point: dict[str, Any], message: str) -> None:
    plan = plan_breakpoints({"messages": conversation()}, injection_points=[point])
    assert [str(w) for w in plan.warnings] == [message]
    assert plan.not_placed == {"no_target": 1}
    assert plan.breakpoints == ()


def test_a_message_with_nothing_to_mark_is_named() -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}]}
    plan = plan_breakpoints(body, injection_points=[{"location": "message", "index": -1}])
    assert [str(w) for w in plan.warnings] == [
        "injected breakpoint at messages[1] (injection point #0) not placed: no content to mark"
    ]


# -- lifetimes -----------------------------------------------------------------------------


def test_one_hour_after_five_minutes_is_downgraded_with_a_warning() -> None:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "S", "cache_control": EPHEMERAL},
            {"role": "user", "content": "U", "cache_control": ONE_HOUR},
        ],
    }
    out, warnings = wire(body, injection_points=[{"location": "message", "index": 0}])
    assert out["system"] == [text("S", EPHEMERAL)]
    assert out["messages"] == [{"role": "user", "content": [text("U", FIVE_MIN)]}]
    assert warnings == (
        "breakpoint at messages[1] downgraded from ttl 1h to 5m: it comes after a 5m "
        "breakpoint, and longer lifetimes must come first",
    )
    plan = plan_breakpoints(body)
    assert [b.ttl for b in plan.breakpoints] == ["5m", "5m"]
    assert plan.not_placed == {}  # downgraded, still placed


def test_injected_one_hour_after_caller_five_minutes_is_downgraded_too() -> None:
    body = {"model": MODEL, "messages": [*conversation()]}
    body["messages"][0] = {**body["messages"][0], "cache_control": EPHEMERAL}
    points = [{"location": "message", "index": -1, "control": ONE_HOUR}]
    plan = plan_breakpoints(body, injection_points=points)
    assert [(str(b.target), b.ttl) for b in plan.breakpoints] == [
        ("messages[0]", "5m"),
        ("messages[5]", "5m"),
    ]
    assert [w.kind for w in plan.warnings] == ["ttl_downgraded"]


def test_longer_lifetimes_first_is_fine() -> None:
    body = {"model": MODEL, "messages": conversation()}
    points = [
        {"location": "message", "role": "system", "ttl": "1h"},
        {"location": "message", "index": -1},
    ]
    out, warnings = wire(body, injection_points=points)
    assert out["system"] == [text("S1", ONE_HOUR)]
    assert out["messages"][-1] == {"role": "user", "content": [text("U3", EPHEMERAL)]}
    assert warnings == ()


def test_automatic_one_hour_after_an_injected_five_minutes_is_downgraded() -> None:
    # Anthropic puts the automatic breakpoint on the last block, after the injected 5m one
    # on the system prompt: sent as asked, the request is refused ("a ttl='1h'
    # cache_control block must not come after a ttl='5m' cache_control block").
    body = {"model": MODEL, "messages": conversation(), "cache_control": ONE_HOUR}
    out, warnings = wire(body, injection_points=[{"location": "message", "role": "system"}])
    assert out["system"] == [text("S1", EPHEMERAL)]
    assert out["cache_control"] == FIVE_MIN
    assert warnings == (
        "automatic cache_control (top level) downgraded from ttl 1h to 5m: it goes on the "
        "last block, after a 5m breakpoint, and longer lifetimes must come first",
    )


def test_automatic_one_hour_after_one_hour_breakpoints_is_kept() -> None:
    body = {"model": MODEL, "messages": conversation(), "cache_control": ONE_HOUR}
    points = [{"location": "message", "role": "system", "ttl": "1h"}]
    out, warnings = wire(body, injection_points=points)
    assert out["system"] == [text("S1", ONE_HOUR)]
    assert out["cache_control"] == ONE_HOUR
    assert warnings == ()


def test_automatic_five_minutes_after_one_hour_is_fine() -> None:
    body = {"model": MODEL, "messages": conversation(), "cache_control": EPHEMERAL}
    points = [{"location": "message", "role": "system", "ttl": "1h"}]
    out, warnings = wire(body, injection_points=points)
    assert out["system"] == [text("S1", ONE_HOUR)]
    assert out["cache_control"] == EPHEMERAL
    assert warnings == ()


def test_automatic_on_a_last_block_with_another_lifetime_is_not_sent() -> None:
    # Anthropic refuses an automatic breakpoint whose lifetime differs from an explicit
    # one on the same (last) block; that breakpoint caches the same prefix anyway.
    body = {"model": MODEL, "messages": conversation(), "cache_control": EPHEMERAL}
    out, warnings = wire(body, injection_points=[{"location": "message", "index": -1, "ttl": "1h"}])
    assert out["messages"][-1] == {"role": "user", "content": [text("U3", ONE_HOUR)]}
    assert "cache_control" not in out
    assert warnings == (
        "automatic cache_control (top level, ttl 5m) not sent: the last block, messages[5], "
        "has a breakpoint with ttl 1h, which caches the same prefix (Anthropic refuses two "
        "lifetimes on one block)",
    )
    plan = plan_breakpoints(
        body,
        injection_points=[{"location": "message", "index": -1, "ttl": "1h"}],
        automatic=EPHEMERAL,
    )
    assert plan.automatic is None
    assert [(w.kind, w.placed) for w in plan.warnings] == [("merged", True)]
    assert plan.not_placed == {}


def test_automatic_with_the_same_lifetime_as_the_last_block_is_sent() -> None:
    body = {"model": MODEL, "messages": conversation(), "cache_control": EPHEMERAL}
    out, warnings = wire(body, injection_points=[{"location": "message", "index": -1}])
    assert out["messages"][-1] == {"role": "user", "content": [text("U3", EPHEMERAL)]}
    assert out["cache_control"] == EPHEMERAL  # Anthropic: a no-op
    assert warnings == ()


def test_automatic_takes_a_slot_of_the_limit() -> None:
    body = {"messages": conversation()}
    points = [{"location": "message", "last": 6}]
    plan = plan_breakpoints(body, injection_points=points, automatic=EPHEMERAL)
    assert len(plan.breakpoints) == 3
    assert plan.limit == 3
    assert plan.automatic == EPHEMERAL
    assert plan.not_placed == {"over_limit": 3}
    assert plan.warnings[-1].message.endswith(
        "not placed: the provider's limit of 3 breakpoints besides the automatic one is reached"
    )


def test_malformed_automatic_cache_control_is_an_error() -> None:
    with pytest.raises(InvalidRequestError, match=r"cache_control \(top level\)"):
        plan_breakpoints({"messages": conversation()}, automatic={"type": "persistent"})


def test_without_longer_first_each_breakpoint_keeps_its_lifetime() -> None:
    # Gemini's rule set: the breakpoint that becomes a context cache keeps what it asked.
    body = {"model": MODEL, "messages": [*conversation()]}
    body["messages"][0] = {**body["messages"][0], "cache_control": EPHEMERAL}
    points = [{"location": "message", "index": -1, "control": ONE_HOUR}]
    plan = plan_breakpoints(body, injection_points=points, longer_first=False)
    assert [(str(b.target), b.ttl) for b in plan.breakpoints] == [
        ("messages[0]", "5m"),
        ("messages[5]", "1h"),
    ]
    assert plan.warnings == ()


# -- minimum cacheable prefix ---------------------------------------------------------------


def test_injected_breakpoint_below_the_minimum_is_not_placed() -> None:
    real = AnthropicProvider()  # the packaged minimums: Sonnet 4.5 caches from 1,024 tokens
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": LONG},
            {"role": "assistant", "content": "OK."},
            {"role": "user", "content": "Next?"},
        ],
    }
    points = [{"location": "message", "role": "system"}, {"location": "message", "index": 1}]
    request = real.build_request(body, injection_points=points)
    assert request.json["system"] == "Be brief."
    assert request.json["messages"][0] == {"role": "user", "content": [text(LONG, EPHEMERAL)]}
    assert request.warnings == (
        "injected breakpoint at messages[0] (injection point #0) not placed: its prefix "
        "(~3 tokens, estimated) is below the model's minimum of 1024",
    )
    assert request.plan.not_placed == {"below_minimum": 1}
    # The cumulative prefix counts what comes before: the system prompt plus the long turn.
    assert request.plan.breakpoints[0].prefix_tokens == estimate_tokens(
        "Be brief."
    ) + estimate_tokens(LONG)


def test_tools_count_toward_the_prefix() -> None:
    tools = [{"type": "function", "function": {"name": "search", "description": LONG}}]
    body = {
        "model": MODEL,
        "tools": tools,
        "messages": [{"role": "system", "content": "Short."}, {"role": "user", "content": "Q"}],
    }
    plan = plan_breakpoints(
        body, injection_points=[{"location": "message", "role": "system"}], minimum_tokens=1024
    )
    assert [str(b.target) for b in plan.breakpoints] == ["messages[0]"]


def test_caller_marker_below_the_minimum_is_kept_with_a_warning() -> None:
    body = {"messages": [{"role": "system", "content": "Tiny.", "cache_control": EPHEMERAL}]}
    plan = plan_breakpoints(body, minimum_tokens=1024)
    assert [str(b.target) for b in plan.breakpoints] == ["messages[0]"]
    assert [(w.kind, w.placed) for w in plan.warnings] == [("below_minimum", True)]
    assert plan.not_placed == {}


def test_images_count_a_fixed_estimate() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}}
    body = {"messages": [{"role": "user", "content": [image, text("What is this?")]}]}
    plan = plan_breakpoints(body, injection_points=[{"location": "message", "index": 0}])
    assert plan.breakpoints[0].target == Target("message", 0, 1)
    assert plan.breakpoints[0].prefix_tokens == IMAGE_TOKENS + estimate_tokens("What is this?")


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("anthropic/claude-sonnet-4-5-20250929", 1024),
        ("claude-sonnet-4-20250514", 1024),
        ("claude-sonnet-4-0", 1024),
        ("claude-opus-4-1-20250805", 1024),
        ("claude-opus-4-20250514", 1024),
        ("claude-opus-4-5-20251101", 4096),
        ("claude-opus-4-6", 4096),
        ("claude-haiku-4-5-20251001", 4096),
        ("claude-sonnet-4-6", 2048),
        # Anthropic's prompt-caching page, "Cache limitations"
        ("claude-opus-4-7", 2048),
        ("anthropic/claude-opus-4-8", 1024),
        ("claude-opus-5", 512),
        ("claude-sonnet-5", 1024),
        ("claude-fable-5", 512),
        ("claude-fable-5-1", 512),
        ("claude-mythos-5", 512),
        ("claude-mythos-5-1", 512),
        # not listed there: another minor version is another model, not its family's row
        ("claude-opus-5-5", 1024),
        ("claude-sonnet-5-5", 1024),
        ("claude-opus-4-9", 1024),
        ("claude-3-7-sonnet-latest", 1024),
        ("claude-3-5-sonnet-20240620", 1024),
        ("claude-3.5-sonnet-20240620", 1024),  # the seed's dotted spelling
        ("claude-3-5-haiku-20241022", 2048),
        ("claude-3-haiku-20240307", 2048),
        ("us.anthropic.claude-3-5-haiku-20241022-v1:0", 2048),
        ("claude-future-model", 1024),
        ("gpt-4o", 1024),
    ],
)
def test_minimum_cacheable_tokens(model: str, minimum: int) -> None:
    assert minimum_cacheable_tokens(model) == minimum


def test_estimate_is_four_characters_a_token() -> None:
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 4096)] == [0, 1, 1, 2, 1024]


# -- validation and purity -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "match"),
    [
        ({"location": "message", "roel": "system"}, "unknown key 'roel'"),
        ({"location": "mesage", "role": "system"}, "location must be"),
        ({"location": "tool", "last": 2}, "last applies only to location: message"),
        ({"location": "message", "index": "one"}, "index must be an integer"),
        ({"location": "message", "last": 0}, "last must be a positive integer"),
        ({"location": "tool", "role": "user"}, "role must be"),
        ({"location": "message", "role": "user", "ttl": "2h"}, "ttl must be"),
        ({"location": "message", "role": "user", "control": {"type": "persistent"}}, "ephemeral"),
        ({"location": "message", "role": "user", "ttl": "5m", "control": ONE_HOUR}, "disagree"),
        ("system", "must be an object"),
    ],
)
def test_malformed_injection_points_are_errors(point: Any, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        plan_breakpoints({"messages": conversation()}, injection_points=[point])


def test_string_index_is_accepted_as_litellm_does() -> None:
    plan = plan_breakpoints(
        {"messages": conversation()}, injection_points=[{"location": "message", "index": "-1"}]
    )
    assert [str(b.target) for b in plan.breakpoints] == ["messages[5]"]


def test_malformed_caller_marker_is_an_error() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1d"}}
        ]
    }
    with pytest.raises(InvalidRequestError, match="messages\\[0\\]: ttl"):
        plan_breakpoints(body)


def test_planning_and_applying_never_change_the_body() -> None:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": [text("A", EPHEMERAL)]},
            *[{"role": "user", "content": f"U{i}", "cache_control": EPHEMERAL} for i in range(5)],
        ],
        "cache_control_injection_points": [{"location": "message", "role": "system"}],
    }
    before = copy.deepcopy(body)
    plan = plan_breakpoints(body, injection_points=body["cache_control_injection_points"])
    applied = apply_plan(body, plan)
    assert body == before
    assert "cache_control_injection_points" not in applied
    assert applied["messages"][0] == {"role": "system", "content": [text("A")]}  # dropped
    assert sum("cache_control" in m for m in applied["messages"]) == 4
