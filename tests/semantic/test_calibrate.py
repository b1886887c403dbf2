"""Calibration and the evaluation entry point, on a handful of labelled pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deja.errors import ConfigError
from deja.semantic.calibrate import (
    LabelledPair,
    calibrate,
    evaluate_pairs,
    fit_verifier,
    load_pairs,
    score_pairs,
    shipped_cache_factory,
)
from deja.semantic.verifier import FEATURE_NAMES, Verifier

PAIRS = [
    LabelledPair("what is the capital of France?", "which city is the capital of France?", True),
    LabelledPair("how do I reset my password?", "steps to reset a password", True),
    LabelledPair("convert 5 km to miles", "how many miles is 5 km?", True),
    LabelledPair("convert 5 km to miles", "convert 8 km to miles", False),
    LabelledPair("how to increase heart rate", "how to decrease heart rate", False),
    LabelledPair("weather in Paris tomorrow", "weather in Rome tomorrow", False),
    LabelledPair("best pizza recipe", "how do I file my taxes?", False),
]


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "\n".join(json.dumps({"a": p.a, "b": p.b, "same": p.same}) for p in PAIRS) + "\n"
    )
    return path


def test_load_pairs(pairs_file: Path, tmp_path: Path) -> None:
    assert load_pairs(pairs_file) == PAIRS
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": "x", "b": "y"}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1"):
        load_pairs(bad)


def test_calibrate_sweeps_thresholds_through_the_check_path(embedder: Any) -> None:
    report = calibrate(PAIRS, embedder=embedder, max_false_hit_rate=0.0)
    assert report.chosen is not None
    assert report.chosen.false_hit_rate == 0.0
    assert report.chosen.recall == 1.0  # the guards and verifier catch every negative
    assert [r.threshold for r in report.rows] == sorted(r.threshold for r in report.rows)
    text = report.format()
    assert "<- chosen" in text and "meets false-hit rate" in text
    assert report.to_json()["chosen"]["recall"] == 1.0


def test_bare_embedding_serves_the_near_duplicates(embedder: Any) -> None:
    outcomes = score_pairs(PAIRS, make_cache=shipped_cache_factory(embedder, PAIRS))
    bare = evaluate_pairs(outcomes, 0.8, bare=True)
    full = evaluate_pairs(outcomes, 0.8)
    assert bare.false_hit_rate > 0 and full.false_hit_rate == 0


def test_bench_entry_point_json(pairs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deja.bench.semantic import main

    assert main(["--pairs", str(pairs_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"pairs", "threshold", "precision", "recall", "false_hit_rate"}
    assert data["pairs"] == len(PAIRS) and data["false_hit_rate"] == 0.0
    assert main(["--pairs", str(pairs_file)]) == 0
    out = capsys.readouterr().out
    assert "bare embedding" in out and "deja" in out


def test_fit_verifier_reports_cross_validated_figures(embedder: Any) -> None:
    pairs = PAIRS * 6  # enough rows for 3 folds
    verifier, cv = fit_verifier(pairs, embedder=embedder, threshold=0.5, folds=3, repeats=1)
    assert verifier.features == FEATURE_NAMES
    assert 0.0 <= cv["cv_recall"] <= 1.0 and 0.0 <= cv["cv_false_hit_rate"] <= 1.0
    again = Verifier.from_dict(json.loads(json.dumps(verifier.to_dict())))
    assert again == verifier


def test_the_shipped_verifier_loads_and_trusts_identical_prompts() -> None:
    from deja.semantic.decision import decide

    verifier = Verifier.default()
    assert verifier.info and verifier.info["cv_recall"] > 0.3
    assert decide(1.0, "hello there", "hello there", threshold=0.7, verifier=verifier).hit
    with pytest.raises(ConfigError):
        Verifier.from_dict({"format": "something else"})
