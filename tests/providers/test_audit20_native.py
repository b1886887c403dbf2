"""Audit 20, provider-native caching: injection points checked at start, token estimates of
dense scripts, and every 1h breakpoint sent as 5m counted.

* A point the request-time planner refuses used to pass the configuration check, start the
  proxy, then fail every request to that model with a 400 blaming the caller. LiteLLM's own
  no-op, ``{location: message}`` alone, is accepted with a warning and marks nothing.
* Four characters a token judged a 3,000-character Chinese prompt at 750 tokens: below
  Sonnet 4.5's 1,024, so its breakpoint was dropped and nothing was cached.
* A 1h breakpoint sent as 5m by the longer-lifetimes-first rule was logged but not counted
  in ``deja_provider_cache_ttl_downgrades_total`` (only Bedrock's "no 1h on this model" was).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

import deja
from deja.cli import main
from deja.config import load_config, parse_config
from deja.errors import ConfigError, InvalidRequestError
from deja.providers.anthropic import AnthropicProvider
from deja.providers.bedrock import AwsCredentials, BedrockProvider
from deja.providers.planner import (
    check_injection_point,
    estimate_tokens,
    minimum_cacheable_tokens,
    plan_breakpoints,
)
from deja.testing import FakeAnthropicServer, FakeBedrockServer
from tests.helpers import aws_chain_env

ANTHROPIC = "anthropic/claude-sonnet-4-5"
BEDROCK = "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0"
OLD_BEDROCK = "bedrock/anthropic.claude-3-7-sonnet-20250219-v1:0"  # 5m caches only
CREDS = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SYSTEM = "You are a meticulous assistant. " * 400  # ~3,200 tokens
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "look up a policy " * 300,
        "parameters": {"type": "object", "properties": {}},
    },
}
# The tool's breakpoint (5m) comes before the system prompt's (1h) in the prefix order.
TOOL_THEN_1H_SYSTEM = [{"location": "tool"}, {"location": "message", "role": "system", "ttl": "1h"}]
ZH = "退款在退货后十四天内支付超过五百欧元需要经理批准。" * 115  # 2,875 characters

POINTS = "model_list[0].litellm_params.cache_control_injection_points[0]"


def deployment(points: list[dict[str, Any]], api_base: str) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": ANTHROPIC,
                    "api_base": api_base,
                    "api_key": "ak",
                    "cache_control_injection_points": points,
                },
            }
        ],
        "caching": {"type": "memory"},
    }


# -- 1. injection points checked at start --------------------------------------------------


@pytest.mark.parametrize(
    ("point", "path", "says"),
    [
        (
            {"location": "message", "role": "system", "control": {"type": "persistent"}},
            f"{POINTS}.control.type",
            "expected one of ephemeral, got 'persistent'",
        ),
        (
            {
                "location": "message",
                "role": "system",
                "control": {"type": "ephemeral", "ttl": "2h"},
            },
            f"{POINTS}.control.ttl",
            "expected one of 5m, 1h, got '2h'",
        ),
        (
            {"location": "message", "role": "system", "control": {"ttl": "1h"}},
            f"{POINTS}.control.type",
            "expected one of ephemeral, got null",
        ),
        ({"location": "tool", "last": 2}, POINTS, "last applies only to location: message"),
        (
            {
                "location": "message",
                "role": "system",
                "ttl": "1h",
                "control": {"type": "ephemeral", "ttl": "5m"},
            },
            POINTS,
            "ttl and control.ttl disagree",
        ),
    ],
)
def test_a_point_every_request_would_refuse_stops_the_load(
    tmp_path: Path, point: dict[str, Any], path: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(deployment([point], "http://127.0.0.1:9"), base_dir=tmp_path)
    assert caught.value.path == path
    assert str(caught.value).startswith(path) and says in str(caught.value)
    assert str(caught.value).count(path) == 1


def test_the_top_level_points_are_checked_alike(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"cache_control_injection_points": [{"location": "tool", "last": 1}]},
            base_dir=tmp_path,
        )
    assert caught.value.path == "cache_control_injection_points[0]"


def test_deja_serve_refuses_to_start_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: claude\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-sonnet-4-5\n"
        "      api_key: ak\n"
        "      cache_control_injection_points:\n"
        "        - {location: message, role: system, ttl: 1h,\n"
        "           control: {type: ephemeral, ttl: 5m}}\n",
        encoding="utf-8",
    )
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert line == f"deja: error: {POINTS}: ttl and control.ttl disagree"


def test_a_control_read_from_the_environment_is_not_shown(tmp_path: Path) -> None:
    config = deployment(
        [{"location": "message", "role": "system", "control": {"type": "os.environ/KIND"}}],
        "http://127.0.0.1:9",
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(config, base_dir=tmp_path, environ={"KIND": "persistent-secret"})
    assert "persistent-secret" not in str(caught.value)
    assert caught.value.path == f"{POINTS}.control.type"


def test_litellm_tool_config_location_is_accepted(tmp_path: Path) -> None:
    """LiteLLM's Bedrock name for a tool point; the planner takes it as an alias of tool."""
    settings = parse_config(
        {"cache_control_injection_points": [{"location": "tool_config"}]}, base_dir=tmp_path
    )
    assert settings.cache_control_injection_points == ({"location": "tool_config"},)


def test_check_injection_point_is_the_planners_own_check() -> None:
    assert check_injection_point({"location": "message", "role": "system"}, where="p") is True
    assert check_injection_point({"location": "message"}, where="p") is False
    with pytest.raises(InvalidRequestError, match=r"^p: ttl and control.ttl disagree"):
        check_injection_point(
            {
                "location": "message",
                "index": -1,
                "ttl": "5m",
                "control": {"type": "ephemeral", "ttl": "1h"},
            },
            where="p",
        )


def test_litellms_no_op_point_marks_nothing_on_the_request_path() -> None:
    """LiteLLM resolves a message point with no role and no index to no message at all."""
    body = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]}
    plan = plan_breakpoints(body, injection_points=[{"location": "message", "ttl": "1h"}])
    assert plan.breakpoints == ()
    ((kind, message),) = [(w.kind, w.message) for w in plan.warnings]
    assert kind == "no_target" and "marks nothing" in message
    # and alongside a real point, the real one is placed as before
    plan = plan_breakpoints(
        body, injection_points=[{"location": "message"}, {"location": "message", "index": -1}]
    )
    assert [str(b.target) for b in plan.breakpoints] == ["messages[1]"]


async def test_litellms_no_op_point_starts_with_a_warning_and_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from deja.server.app import ProxyApp

    with FakeAnthropicServer(api_key="ak") as server:
        config = tmp_path / "config.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: claude\n"
            "    litellm_params:\n"
            "      model: anthropic/claude-sonnet-4-5\n"
            f"      api_base: {server.url}\n"
            "      api_key: ak\n"
            "      cache_control_injection_points: [{location: message}]\n",
            encoding="utf-8",
        )
        with caplog.at_level("WARNING", logger="deja.config"):
            settings = load_config(config)
        (warning,) = [w for w in settings.warnings if "injection_points" in w]
        assert warning.startswith(f"{POINTS} marks nothing")
        assert any(warning in record.getMessage() for record in caplog.records)

        transport = httpx2.ASGITransport(app=ProxyApp(settings))
        async with httpx2.AsyncClient(transport=transport, base_url="http://proxy") as c:
            for question in ("hi", "hello"):
                answer = await c.post(
                    "/v1/chat/completions",
                    json={"model": "claude", "messages": [{"role": "user", "content": question}]},
                )
                assert answer.status_code == 200, answer.text
        assert server.count("/v1/messages") == 2
        assert "cache_control" not in str(server.requests[-1].body)


# -- 2. dense scripts ----------------------------------------------------------------------


def test_latin_text_keeps_four_characters_a_token() -> None:
    assert estimate_tokens("x" * 4096) == 1024
    assert estimate_tokens("All work and no play makes Jack a dull boy. " * 100) == 1100


def test_cjk_kana_hangul_and_indic_count_a_token_a_character() -> None:
    for text in (ZH, "払い戻しは返品後十四日以内です。", "환불은반품후십사일이내", "नमस्ते"):
        assert estimate_tokens(text) == len(text), text
    assert estimate_tokens("환불은 반품 후 14일 이내") == 9 + 2  # 9 Hangul, 6 ASCII
    assert estimate_tokens("退款") == 2


def test_two_byte_scripts_count_three_characters_a_token() -> None:
    russian = "Возврат средств производится в течение четырнадцати дней. " * 20
    assert len(russian) / 4 < estimate_tokens(russian) <= len(russian) / 2
    assert estimate_tokens("é" * 3) == 1


def test_mixed_text_adds_its_parts_and_odd_strings_do_not_fail() -> None:
    english = "All work and no play makes Jack a dull boy. " * 10  # 440 ASCII: 110 tokens
    assert estimate_tokens(english + "退款") == 112
    assert estimate_tokens("\ud800") == 1  # a lone surrogate, as JSON can carry one
    assert 1 <= estimate_tokens("😀") <= 2


def test_a_chinese_prompt_above_the_minimum_keeps_its_breakpoint() -> None:
    assert minimum_cacheable_tokens("claude-sonnet-4-5") == 1024
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "system", "content": ZH},
            {"role": "user", "content": "礼物可以退吗。"},
        ],
        "cache_control_injection_points": [{"location": "message", "role": "system"}],
    }
    payload, plan, warnings = AnthropicProvider().translate_request(body)
    assert len(plan.breakpoints) == 1 and warnings == []
    assert payload["system"][-1]["cache_control"] == {"type": "ephemeral"}
    bedrock = BedrockProvider().translate_request(
        {**body, "model": "anthropic.claude-sonnet-4-5-20250929-v1:0"}
    )
    assert bedrock.json["system"][-1] == {"cachePoint": {"type": "default"}}


def test_an_english_prompt_just_below_the_minimum_is_still_skipped() -> None:
    short = "x" * (4 * 1024 - 40)  # ~1,014 tokens with the user turn: below 1,024
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "system", "content": short}, {"role": "user", "content": "hi"}],
        "cache_control_injection_points": [{"location": "message", "role": "system"}],
    }
    _, plan, _ = AnthropicProvider().translate_request(body)
    assert plan.breakpoints == () and plan.not_placed == {"below_minimum": 1}


# -- 3. every 1h breakpoint sent as 5m is counted ------------------------------------------


@pytest.fixture
def bedrock_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrockServer]:
    with FakeBedrockServer(credentials=CREDS, region="eu-west-1") as server:
        aws_chain_env(monkeypatch, CREDS, "eu-west-1", server.url)
        yield server


def downgrades(metrics: deja.PrometheusMetrics) -> list[str]:
    return [
        line
        for line in metrics.render().decode().splitlines()
        if line.startswith("deja_provider_cache_ttl_downgrades_total")
    ]


def ask(client: deja.Client, model: str, question: str = "hi", *, stream: bool = False) -> None:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    answer = client.completion(
        model=model, messages=messages, tools=[TOOL], max_tokens=20, stream=stream
    )
    if stream:
        list(answer)


def test_anthropic_counts_a_1h_breakpoint_after_a_5m_one() -> None:
    pytest.importorskip("prometheus_client")
    with FakeAnthropicServer(api_key="k") as server:
        metrics = deja.PrometheusMetrics()
        c = deja.Client(
            cache=deja.Cache(metrics=metrics),
            api_base=server.url,
            api_key="k",
            max_retries=0,
            cache_control_injection_points=TOOL_THEN_1H_SYSTEM,
        )
        ask(c, ANTHROPIC)
        assert server.requests[-1].body["system"][-1]["cache_control"]["ttl"] == "5m"
        assert downgrades(metrics) == [
            'deja_provider_cache_ttl_downgrades_total{provider="anthropic"} 1.0'
        ]
        ask(c, ANTHROPIC, "and streamed?", stream=True)  # counted alike
        assert downgrades(metrics) == [
            'deja_provider_cache_ttl_downgrades_total{provider="anthropic"} 2.0'
        ]


def test_anthropic_counts_a_downgraded_automatic_breakpoint() -> None:
    pytest.importorskip("prometheus_client")
    with FakeAnthropicServer(api_key="k") as server:
        metrics = deja.PrometheusMetrics()
        c = deja.Client(
            cache=deja.Cache(metrics=metrics),
            api_base=server.url,
            api_key="k",
            max_retries=0,
            cache_control_injection_points=[{"location": "message", "role": "system"}],
        )
        c.completion(
            model=ANTHROPIC,
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}],
            max_tokens=20,
            cache_control={"type": "ephemeral", "ttl": "1h"},
        )
        assert server.requests[-1].body["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
        assert downgrades(metrics) == [
            'deja_provider_cache_ttl_downgrades_total{provider="anthropic"} 1.0'
        ]


def test_bedrock_counts_the_order_rule_and_the_model_rule_once_each(
    bedrock_env: FakeBedrockServer,
) -> None:
    pytest.importorskip("botocore")
    pytest.importorskip("prometheus_client")
    metrics = deja.PrometheusMetrics()
    c = deja.Client(
        cache=deja.Cache(metrics=metrics),
        max_retries=0,
        cache_control_injection_points=TOOL_THEN_1H_SYSTEM,
    )
    ask(c, BEDROCK)  # Claude 4.5 keeps 1h, but not after the tool's 5m
    assert bedrock_env.requests[-1].body["system"][-1] == {"cachePoint": {"type": "default"}}
    assert downgrades(metrics) == [
        'deja_provider_cache_ttl_downgrades_total{provider="bedrock"} 1.0'
    ]
    ask(c, OLD_BEDROCK)  # already 5m by the order rule: not counted twice
    assert downgrades(metrics) == [
        'deja_provider_cache_ttl_downgrades_total{provider="bedrock"} 2.0'
    ]
    c = deja.Client(
        cache=deja.Cache(metrics=metrics),
        max_retries=0,
        cache_control_injection_points=[{"location": "message", "role": "system", "ttl": "1h"}],
    )
    ask(c, OLD_BEDROCK)  # no 1h on this model
    assert downgrades(metrics) == [
        'deja_provider_cache_ttl_downgrades_total{provider="bedrock"} 3.0'
    ]
