"""`deja demo`: the committed workload and the figures of a run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from deja.demo import load_workload


def test_workload_is_labelled_and_shaped_like_the_brief() -> None:
    workload = load_workload()
    assert len(workload) == 500
    kinds = Counter(item["kind"] for item in workload)
    assert kinds["unique"] == 150  # 30% unique
    assert kinds["repeat"] + kinds["rewording"] == 350  # 70% about 20 common questions
    assert len({item["group"] for item in workload if item["group"] is not None}) == 20
    assert len({item["text"] for item in workload if item["kind"] == "unique"}) == 150


def test_demo_json_figures_come_from_the_run() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "deja.cli", "demo", "--json", "--exact-only", "--latency", "0.005"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(out.stdout)
    assert report["requests"] == 500
    assert report["upstream_calls"] == report["misses"]
    assert report["hits"] + report["misses"] == 500
    assert report["hits_by_kind"].get("unique", 0) == 0  # unique questions can never hit
    # every distinct text misses once: the exact tier hits on the rest
    distinct = len({item["text"] for item in load_workload()})
    assert report["misses"] == distinct
    assert report["cost_with_cache_usd"] < report["cost_without_cache_usd"]
    assert report["saved_usd"] > 0
    assert report["invalidated_entries"] > 0
    assert report["misses_after_invalidation"] == report["invalidated_entries"]
    assert report["semantic_hits"] == 0 and report["semantic"] is False


def test_demo_default_has_the_semantic_tier() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "deja.cli", "demo", "--json", "--latency", "0.005"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(out.stdout)
    assert report["semantic"] is True
    assert report["upstream_calls"] == report["misses"]
    assert report["hits"] + report["misses"] == 500
    assert report["semantic_hits"] > 0
    assert report["hits_by_kind"]["rewording"] > 0
    assert 0 <= report["false_hits"] <= report["semantic_hits"]
    # fewer upstream calls than distinct texts: some rewordings were answered by meaning
    assert report["misses"] < len({item["text"] for item in load_workload()})


def test_demo_runs_through_the_proxy() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "deja.cli",
            "demo",
            "--json",
            "--proxy",
            "--exact-only",
            "--latency",
            "0.005",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(out.stdout)
    assert report["via_proxy"] is True
    assert report["upstream_calls"] == report["misses"]
    assert report["hits"] + report["misses"] == 500
    assert report["saved_usd"] > 0
    assert report["cost_with_cache_usd"] < report["cost_without_cache_usd"]
    assert report["misses_after_invalidation"] == report["invalidated_entries"] > 0


def _demo_without(blocked: set[str], *options: str) -> subprocess.CompletedProcess[str]:
    """``deja demo *options`` where ``blocked`` packages cannot be imported."""
    from tests.helpers import BLOCKING

    code = BLOCKING.format(blocked=blocked) + (
        f"from deja.cli import main\nsys.exit(main(['demo', *{list(options)!r}]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


def test_demo_without_the_server_extra_says_what_to_install() -> None:
    out = _demo_without({"uvicorn"}, "--exact-only", "--proxy", "--latency", "0.005")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        "deja: error: uvicorn is not installed; run: pip install 'deja-llm[server]'"
    )


@pytest.mark.parametrize(
    ("blocked", "package"), [("numpy", "numpy"), ("onnxruntime", "onnxruntime")]
)
@pytest.mark.parametrize("proxy", [False, True])
def test_demo_without_the_semantic_extra_suggests_exact_only(
    blocked: str, package: str, proxy: bool
) -> None:
    """Never "exact + semantic" in the header of a run whose semantic tier cannot work."""
    options = ["--latency", "0.005", *(["--proxy"] if proxy else [])]
    out = _demo_without({blocked}, *options)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "exact + semantic" not in out.stdout
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"deja: error: {package} is not installed")
    assert "pip install 'deja-llm[semantic]'" in line and "deja demo --exact-only" in line


def test_a_live_run_labels_what_it_did_not_measure(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--live`` printed "(simulated provider)" and an "upstream calls" figure that was
    the miss count copied, as if checked."""
    import asyncio

    from deja.demo import format_report, run_demo
    from deja.testing import FakeOpenAIServer

    with FakeOpenAIServer() as api:  # the live API's stand-in: nothing is paid
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", api.base_url)
        report = asyncio.run(run_demo(live=True, semantic=False))
        # where it went: OPENAI_BASE_URL named another server than OpenAI's
        host = api.base_url.split("//")[1].split("/")[0]
    text = format_report(report)
    assert report.upstream_calls is None and f"the LIVE API at {host}" in text
    assert "(the live API)" in text and "simulated provider" not in text
    assert f"misses {report.misses} (each an API call" in text
