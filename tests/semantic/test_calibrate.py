"""Calibration and the evaluation entry point, on a handful of labelled pairs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deja.errors import ConfigError
from deja.semantic.calibrate import (
    BAND_SCORES,
    CalibrationReport,
    EvalReport,
    LabelledPair,
    StreamReport,
    _fit_logistic,
    _fit_model,
    _lowest_cut,
    _predict,
    band_report,
    calibrate,
    evaluate_pairs,
    fit_verifier,
    load_pairs,
    load_queries,
    negatives_needed,
    neighbour_pairs,
    pair_matrix,
    pair_similarities,
    rank_auc,
    score_pairs,
    score_stream,
    shipped_cache_factory,
)
from deja.semantic.guards import check_guards, signature
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
    # no false hit among 4 negatives is far from showing a false-hit rate of 0
    assert not report.supported
    assert "<- lowest within the target here" in text and "<- chosen" not in text
    assert "meets false-hit rate" not in text and "no recommendation" in text
    assert report.to_json()["lowest_within_target"]["recall"] == 1.0
    assert report.to_json()["chosen"] is None and report.to_json()["supported"] is False


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
    assert 0.0 <= cv["train_recall"] <= 1.0 and 0.0 <= cv["train_false_hit_rate"] <= 1.0
    assert verifier.uses_vectors and verifier.embedder == embedder.id
    assert verifier.dim == embedder.dim
    data = json.loads(json.dumps(verifier.to_dict()))
    assert data["version"] == 2 and len(data["vector_weights"]) == 2 * embedder.dim
    again = Verifier.from_dict(data)
    assert again == verifier
    text_only, _ = fit_verifier(
        pairs, embedder=embedder, threshold=0.5, folds=3, repeats=1, vectors=False
    )
    assert not text_only.uses_vectors and text_only.to_dict()["version"] == 1


def test_a_trusted_candidate_the_verifier_is_sure_is_wrong_is_vetoed() -> None:
    base = Verifier.default_for("any:other")
    verifier = dataclasses.replace(base, trust_above=0.85, trust_floor=0.7, cut=0.99)
    features = [0.0] * len(FEATURE_NAMES)
    p = verifier.probability(features)
    below, above = (
        dataclasses.replace(verifier, trust_floor=p + 0.01),
        dataclasses.replace(verifier, trust_floor=p - 0.01),
    )
    assert below.accepts(0.9, features) == (False, p)  # trusted, but vetoed
    assert above.accepts(0.9, features) == (True, p)
    assert below.accepts(0.8, features)[0] is (p >= 0.99)  # the band below: the cut decides
    # the same words are never vetoed nor cut: the model scores identical wording low, and
    # a typing slip lowers the similarity below the trusted band
    assert below.accepts(0.9, features, same_words=True) == (True, p)
    assert below.accepts(0.75, features, same_words=True) == (True, p)
    # the floor is saved and read back; a file without one vetoes nothing
    assert Verifier.from_dict(below.to_dict()) == below
    older = {k: v for k, v in below.to_dict().items() if k != "trust_floor"}
    assert Verifier.from_dict(older).trust_floor == 0.0
    assert Verifier.from_dict(older).accepts(0.9, features) == (True, p)


def test_fit_verifier_applies_the_trust_floor_to_its_figures(embedder: Any) -> None:
    # every pair trusted (trust_above = threshold), and no cut: what is served is what the
    # floor lets through; a floor above any probability lets through the same words only
    same_words = LabelledPair(
        "What is the capital of France?", "what is the capital of france", True
    )
    pairs = [*PAIRS, same_words] * 6
    common = {"embedder": embedder, "threshold": 0.5, "trust_above": 0.5, "folds": 3, "repeats": 1}
    free, cv_free = fit_verifier(pairs, **common)
    vetoing, cv_veto = fit_verifier(pairs, trust_floor=1.01, **common)
    assert free.trust_floor == 0.0 and vetoing.trust_floor == 1.01
    assert cv_veto["trust_floor"] == 1.01
    # the same model and cut: the floor is applied after the cut is chosen
    assert (vetoing.weights, vetoing.cut) == (free.weights, free.cut)
    assert cv_free["train_recall"] == 1.0
    assert cv_veto["train_recall"] == pytest.approx(1 / 4)  # 1 of 4 positives: same words
    assert cv_veto["cv_recall"] == pytest.approx(1 / 4)


def test_the_folded_vector_weights_score_like_the_projected_model() -> None:
    # Training confines the vector part to principal components, then folds projection
    # and standardisation into one weight per dimension: both must give the same scores.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((120, len(FEATURE_NAMES)))
    e = np.abs(rng.standard_normal((120, 20)))
    y = (x[:, 0] + e[:, 3] - e[:, 5] + 0.5 * rng.standard_normal(120) > 0.8).astype(float)
    model = _fit_model(x, e, y, l2=3.0, vector_l2=10.0, components=6)
    e_mean, e_scale = e.mean(axis=0), e.std(axis=0)
    basis = np.linalg.svd((e - e_mean) / e_scale, full_matrices=False)[2][:6].T
    projected = np.c_[x, ((e - e_mean) / e_scale) @ basis]
    penalty = np.r_[np.full(len(FEATURE_NAMES), 3.0), np.full(6, 10.0)]
    mean, scale, w, b = _fit_logistic(projected, y, penalty=penalty)
    expected = 1 / (1 + np.exp(-(((projected - mean) / scale) @ w + b)))
    np.testing.assert_allclose(_predict(model, x, e), expected, rtol=1e-9, atol=1e-12)
    assert model.vector_weights.shape == (20,)


def test_a_vector_verifier_scores_both_vector_features_symmetrically() -> None:
    verifier = Verifier(
        features=FEATURE_NAMES,
        mean=(0.0,) * 12,
        scale=(1.0,) * 12,
        weights=(0.0,) * 12,
        bias=-1.0,
        cut=0.5,
        vector_weights=(2.0, 0.0, 0.0, -1.0),
        embedder="test:2d",
    )
    u, v = np.array([0.6, 0.8]), np.array([1.0, 0.0])
    # z = -1 + 2 * (0.6 * 1.0) - 1 * |0.8 - 0.0| = -0.6
    assert verifier.probability([0.0] * 12, (u, v)) == pytest.approx(1 / (1 + math.exp(0.6)))
    assert verifier.probability([0.0] * 12, (v, u)) == verifier.probability([0.0] * 12, (u, v))
    with pytest.raises(ValueError, match="prompt vectors"):
        verifier.probability([0.0] * 12)
    with pytest.raises(ValueError, match="prompt vectors"):
        verifier.accepts(0.9, [0.0] * 12, (u, None))
    with pytest.raises(ConfigError):
        Verifier.from_dict({**verifier.to_dict(), "vector_weights": [1.0, 2.0, 3.0]})
    with pytest.raises(ConfigError):
        Verifier.from_dict({**verifier.to_dict(), "version": 1})


def test_a_version_1_file_still_loads() -> None:
    data = Verifier.default_for("any:other").to_dict()
    assert data["version"] == 1 and "vector_weights" not in data
    assert Verifier.from_dict(data) == Verifier.default_for("any:other")


def test_the_shipped_verifiers(embedder: Any) -> None:
    from deja.semantic.decision import BARE_THRESHOLD, DEFAULT_THRESHOLD, decide

    verifier = Verifier.default()
    assert verifier is Verifier.default_for(embedder.id)
    assert verifier.uses_vectors and verifier.embedder == embedder.id
    # trained where the cache serves: from the default threshold, trusting cosine >= 0.85,
    # with no false hit of its own out of fold (decision.py says why)
    for shipped in (verifier, Verifier.default_for("openai:text-embedding-3-small:1536")):
        assert shipped.info and shipped.info["threshold"] == DEFAULT_THRESHOLD
        assert shipped.trust_above == BARE_THRESHOLD
        assert shipped.info["cv_false_hit_rate"] <= 0.0101
        assert shipped.info["train_false_hit_rate"] <= 0.01
    text_only = Verifier.default_for("openai:text-embedding-3-small:1536")
    assert not text_only.uses_vectors
    vec = embedder.embed(["hello there"])[0]
    hello = decide(
        1.0,
        "hello there",
        "hello there",
        threshold=DEFAULT_THRESHOLD,
        verifier=verifier,
        query_vector=vec,
        candidate_vector=vec,
    )
    assert hello.hit
    with pytest.raises(ValueError):  # the vectors are part of the decision
        decide(1.0, "hello there", "hello there", threshold=0.6, verifier=verifier)
    with pytest.raises(ConfigError):
        Verifier.from_dict({"format": "something else"})


def test_bench_retrains_and_writes_the_verifiers(
    pairs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deja.bench.semantic import main

    many = tmp_path / "many.jsonl"
    many.write_text(pairs_file.read_text() * 6)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["--pairs", str(many), "--cv", "--write-verifiers", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "nested CV: recall" in out and "training set: recall" in out
    with_vectors = Verifier.load(str(out_dir / "verifier.json"))
    text_only = Verifier.load(str(out_dir / "verifier_text.json"))
    assert with_vectors.uses_vectors and not text_only.uses_vectors
    assert with_vectors.info and with_vectors.info["pairs"] == 6 * len(PAIRS)


def test_the_cut_within_a_false_hit_budget() -> None:
    scores = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([True, False, True, True, False, True])
    eligible = np.ones(6, dtype=bool)
    trusted = np.array([True, True, False, False, False, False])
    nothing = np.zeros(6, dtype=bool)
    # a rate: 2 negatives, a 50% budget allows one false hit, the second one stops the cut
    assert _lowest_cut(scores, labels, eligible, 0.5, trusted=nothing, added=None) == 0.7
    assert _lowest_cut(scores, labels, eligible, 0.0, trusted=nothing, added=None) == 1.0
    # a count on top of the trusted pairs' own false hits (one here, at 0.9)
    assert _lowest_cut(scores, labels, eligible, 0.0, trusted=trusted, added=0) == 0.7
    assert _lowest_cut(scores, labels, eligible, 0.0, trusted=trusted, added=1) == 0.5
    # pairs the verifier never judges do not count
    assert (
        _lowest_cut(scores, labels, ~labels | (scores > 0.6), 0.0, trusted=nothing, added=1) == 0.7
    )


QUERIES = [
    ("How can I track my card delivery?", "card_arrival"),
    ("how do i track the delivery of my card", "card_arrival"),
    ("convert 5 km to miles", "units"),
    ("How can I track my card delivery?", "card_arrival"),  # an exact repeat
    ("convert 8 km to miles", "units_8"),
    ("what is the capital of France?", "geography"),
]


def test_a_stream_counts_served_and_wrong_answers(embedder: Any) -> None:
    from deja.semantic.cache import SemanticCache
    from deja.semantic.guards import GuardSettings

    shipped = score_stream(QUERIES, cache=SemanticCache(embedder=embedder))
    assert shipped == StreamReport(queries=6, exact_repeats=1, served=1, wrong=0)
    assert shipped.served_share == pytest.approx(1 / 5) and shipped.wrong_share == 0.0
    # a bare threshold with the number guard off serves 8 km with the 5 km answer
    loose = SemanticCache(
        embedder=embedder, verifier=None, threshold=0.6, guards=GuardSettings(numbers=False)
    )
    report = score_stream(QUERIES, cache=loose)
    assert (report.served, report.wrong) == (2, 1) and report.wrong_share == 0.5
    assert math.isnan(StreamReport(0, 0, 0, 0).wrong_share)


def test_reported_wrong_hits_are_not_served_again(embedder: Any) -> None:
    from deja.semantic.cache import SemanticCache
    from deja.semantic.guards import GuardSettings

    # 5 km is stored; 8 km and 9 km are served its answer while the number guard is off
    stream = [
        ("convert 5 km to miles", "5"),
        ("convert 8 km to miles", "8"),
        ("convert 9 km to miles", "9"),
    ]

    def run(report_wrong: float) -> StreamReport:
        loose = SemanticCache(
            embedder=embedder,
            verifier=None,
            threshold=0.6,
            guards=GuardSettings(numbers=False),
            max_strikes=1,
        )
        return score_stream(stream, cache=loose, report_wrong=report_wrong)

    assert (run(0.0).served, run(0.0).wrong) == (2, 2)
    # reported, the first wrong answer takes the 5 km entry out (one strike is the limit
    # here); 8 km was served, not stored, so 9 km finds nothing and misses
    assert (run(1.0).served, run(1.0).wrong) == (1, 1)
    with pytest.raises(ValueError, match="share"):
        score_stream(stream, cache=SemanticCache(embedder=embedder), report_wrong=1.5)


def test_load_queries(tmp_path: Path) -> None:
    path = tmp_path / "queries.csv"
    path.write_text("text,category\n" + "".join(f"{t},{c}\n" for t, c in QUERIES if "," not in t))
    rows = load_queries(path)
    assert sorted(rows) == sorted((t, c) for t, c in QUERIES if "," not in t)
    assert load_queries(path, seed=3) == load_queries(path, seed=3)
    assert len(load_queries(path, limit=2)) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("question,label\nx,y\n")
    with pytest.raises(ConfigError, match="text"):
        load_queries(bad)


def test_bench_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deja.bench.semantic import main

    path = tmp_path / "queries.csv"
    path.write_text("text,category\n" + "".join(f"{t},{c}\n" for t, c in QUERIES))
    assert main(["--stream", str(path), "--queries", "6", "--feedback", "1"]) == 0
    out = capsys.readouterr().out
    assert "6 queries" in out
    assert "deja, 100% of wrong hits reported" in out
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"a": QUERIES[0][0], "b": QUERIES[2][0], "same": False}) + "\n")
    assert main(["--stream", str(path), "--exclude", str(pairs)]) == 0
    assert "3 queries" in capsys.readouterr().out  # both copies of the first, and 5 km, left out
    for setup in ("deja (threshold + guards + verifier)", "guards + bare threshold 0.85"):
        line = next(line for line in out.splitlines() if line.startswith(setup))
        assert "of queries" in line and "wrong answers" in line
    pairs_file = tmp_path / "band.jsonl"
    pairs_file.write_text(
        "".join(json.dumps({"a": p.a, "b": p.b, "same": p.same}) + "\n" for p in PAIRS)
    )
    assert main(["--stream", str(path), "--band", str(pairs_file), "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "the verifier's band (cosine 0.50 to 0.85" in out
    rows = {line.split()[0]: line for line in out.splitlines()[-3:-1]}
    assert set(rows) == {"band.jsonl", "the"}


def test_rank_auc() -> None:
    assert rank_auc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert rank_auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert rank_auc([0.5, 0.5, 0.5], [True, False, True]) == 0.5  # ties count half
    # one positive above one of two negatives and tied with the other: (1 + 0.5) / 2
    assert rank_auc([0.7, 0.7, 0.3], [True, False, False]) == 0.75
    assert math.isnan(rank_auc([0.4, 0.6], [True, True]))


def test_neighbour_pairs_are_each_query_with_its_nearest_earlier_ones(embedder: Any) -> None:
    found = neighbour_pairs(QUERIES, embedder=embedder, low=0.5, top=1)
    texts = list(dict.fromkeys(t for t, _ in QUERIES))  # the repeated query counts once
    labels = dict(QUERIES)
    assert found, "near-identical queries must meet"
    later = [pair.b for pair, _ in found]
    assert len(later) == len(set(later))  # top=1: at most one pair per query
    for pair, sim in found:
        assert texts.index(pair.a) < texts.index(pair.b)
        assert pair.same == (labels[pair.a] == labels[pair.b])
        assert sim >= 0.5
        a, b = embedder.embed([pair.a, pair.b])
        assert sim == pytest.approx(float(a @ b), abs=1e-5)
    # the 5 km and 8 km queries meet, under different labels
    units = next(p for p, _ in found if {p.a, p.b} == {QUERIES[2][0], QUERIES[4][0]})
    assert not units.same
    assert neighbour_pairs(QUERIES, embedder=embedder, low=0.5, high=0.5) == []


def test_band_report_ranks_the_pairs_the_verifier_decides(embedder: Any) -> None:
    sims, _, _ = pair_similarities(PAIRS, embedder=embedder)
    pairs = [(p, float(s)) for p, s in zip(PAIRS, sims, strict=True)]
    verifier = Verifier.default_for(embedder.id)
    report = band_report("toy", pairs, verifier=verifier, embedder=embedder, low=0.0, high=1.0)
    # the guards drop the pairs that differ in a number, a direction or a city
    passed = [(p, s) for p, s in pairs if check_guards(signature(p.a), signature(p.b)).ok]
    assert report.pairs == len(passed) < len(pairs)
    assert report.same_share == pytest.approx(sum(p.same for p, _ in passed) / len(passed))
    assert set(report.auc) == set(BAND_SCORES)
    labels = [p.same for p, _ in passed]
    assert report.auc["similarity"] == rank_auc([s for _, s in passed], labels)
    empty = band_report("none", pairs, verifier=verifier, embedder=embedder, low=0.99, high=1.0)
    assert empty.pairs == 0 and math.isnan(empty.same_share)


def test_verifier_training_rows_pass_the_substitution_guard_as_serving_does(
    embedder: Any,
) -> None:
    from deja.semantic.decision import decide, word_similarity_for
    from deja.semantic.guards import GuardSettings

    pairs = [
        LabelledPair(
            "how do I install nginx on ubuntu", "how do I configure nginx on ubuntu", False
        ),
        LabelledPair(
            "what is the largest lake in Africa", "what is the biggest lake in Africa", True
        ),
    ]
    words = word_similarity_for(embedder)
    assert words is not None
    assert word_similarity_for(embedder, GuardSettings(substitution=False)) is None
    _, without = pair_matrix(pairs, [0.9, 0.9])
    _, passed = pair_matrix(pairs, [0.9, 0.9], word_similarity=words)
    assert without.tolist() == [True, True]
    assert passed.tolist() == [False, True]
    served = [
        decide(0.9, p.b, p.a, threshold=0.7, word_similarity=words).passed_checks for p in pairs
    ]
    assert served == passed.tolist()


# -- calibrate: how many pairs a target takes -------------------------------------------------


def _report(target: float, positives: int, negatives: int, false_hits: int = 0) -> Any:
    """A two-row report (0.50 and 0.90) whose 0.50 row is within ``target``."""
    rows = tuple(
        EvalReport(
            pairs=positives + negatives,
            threshold=t,
            precision=1.0,
            recall=1.0,
            false_hit_rate=false_hits / negatives if negatives else math.nan,
            hits=positives + false_hits,
            true_hits=positives,
            positives=positives,
            negatives=negatives,
        )
        for t in (0.5, 0.9)
    )
    return CalibrationReport(target, rows, rows[0] if negatives else None)


def test_negatives_needed_is_the_rule_of_three() -> None:
    assert negatives_needed(0.01) == 300
    assert negatives_needed(0.03) == 100  # 3 / 0.03 is 100.00000000000001 in floats
    assert negatives_needed(0.05) == 60
    assert negatives_needed(0.5) == 6
    assert negatives_needed(0.0) is None  # no sample shows a rate of 0


def test_a_pick_on_too_few_negatives_is_not_recommended() -> None:
    """The audit's case: 7 pairs, 3 negatives, a 1% target, 0.50 picked."""
    report = _report(0.01, positives=4, negatives=3)
    assert report.chosen is not None and not report.supported
    text = report.format()
    assert "meets false-hit rate" not in text and "<- chosen" not in text
    assert "0.500" in text and "<- lowest within the target here" in text
    assert "3 here, at least 300 needed" in text and "rule of three" in text
    assert "recall rests on only 4 positive pairs" in text and "at least 100" in text
    last = text.splitlines()[-1]
    assert last.startswith("no recommendation: threshold 0.500 is the lowest within 1.00%")
    assert "have at least 300 negative pairs labelled" in last and "(0.70)" in last
    data = report.to_json()
    assert data["supported"] is False and data["negatives_needed"] == 300
    assert data["negatives"] == 3 and data["positives"] == 4 and len(data["caveats"]) == 2
    assert data["chosen"] is None  # a script taking "chosen" takes no unsupported pick
    assert data["lowest_within_target"]["threshold"] == 0.5  # what the pairs say


def test_one_negative_short_is_still_too_few() -> None:
    assert not _report(0.01, positives=200, negatives=299).supported
    assert _report(0.01, positives=200, negatives=300).supported


def test_enough_pairs_meet_the_target_without_a_caveat() -> None:
    report = _report(0.01, positives=100, negatives=300)
    text = report.format()
    assert report.supported and report.caveats() == []
    assert "<- chosen" in text
    assert text.splitlines()[-1].startswith("threshold 0.500 meets false-hit rate <= 1.00%")
    assert report.to_json()["supported"] is True


def test_few_positives_are_a_caveat_on_recall_not_on_the_target() -> None:
    report = _report(0.05, positives=12, negatives=80)
    text = report.format()
    assert report.supported
    assert "recall rests on only 12 positive pairs" in text
    assert text.splitlines()[-1].startswith("threshold 0.500 meets false-hit rate <= 5.00%")


def test_a_target_of_zero_is_never_shown() -> None:
    report = _report(0.0, positives=100, negatives=10_000)
    text = report.format()
    assert not report.supported
    assert "no number of pairs can show a false-hit rate of 0" in text and "0.0%" in text
    assert "set a target above 0" in text.splitlines()[-1]


def test_too_few_negatives_with_no_threshold_within_the_target() -> None:
    report = _report(0.01, positives=4, negatives=3, false_hits=1)
    report = CalibrationReport(0.01, report.rows, None)
    text = report.format()
    assert "at least 300 needed" in text
    assert text.splitlines()[-1] == "no threshold keeps the false-hit rate at or below 1.00%"


def test_deja_calibrate_on_a_handful_of_pairs_says_they_are_too_few(
    pairs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deja.cli import main

    assert main(["calibrate", str(pairs_file), "--max-false-hit-rate", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "meets false-hit rate" not in out
    assert "4 here, at least 300 needed" in out and "no recommendation" in out
    assert main(["calibrate", str(pairs_file), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["supported"] is False and data["negatives_needed"] == 300


def test_false_hits_served_need_more_negatives_to_show_the_target() -> None:
    """31 false hits among 3,640 negatives (0.85%) were reported as meeting 1%: they are as
    likely from a rate up to 1.15%. A stricter threshold the pairs do show is chosen."""
    from deja.semantic.calibrate import false_hit_bound

    assert false_hit_bound(0, 300) == pytest.approx(1 - 0.05 ** (1 / 300))
    assert false_hit_bound(31, 3640) == pytest.approx(0.01148, abs=1e-5)
    assert false_hit_bound(2, 3640) == pytest.approx(0.00173, abs=1e-5)

    def row(threshold: float, false_hits: int) -> EvalReport:
        return EvalReport(
            pairs=4640,
            threshold=threshold,
            precision=1.0,
            recall=1.0,
            false_hit_rate=false_hits / 3640,
            hits=1000 + false_hits,
            true_hits=1000,
            positives=1000,
            negatives=3640,
        )

    rows = (row(0.93, 31), row(0.95, 20))
    report = CalibrationReport(0.01, rows, rows[0])
    assert report.recommended is rows[1] and report.supported
    text = report.format()
    assert "threshold 0.950 meets false-hit rate <= 1.00%" in text
    assert "as likely from a rate up to 1.15%" in text
    assert report.to_json()["chosen"]["threshold"] == 0.95
    assert report.to_json()["lowest_within_target"]["threshold"] == 0.93
    alone = CalibrationReport(0.01, rows[:1], rows[0])
    assert not alone.supported and "no recommendation" in alone.format()


def test_undefined_figures_are_null_in_json() -> None:
    """``deja calibrate --json`` printed NaN, which no strict JSON parser reads."""
    import json

    row = EvalReport(
        pairs=3,
        threshold=0.5,
        precision=math.nan,
        recall=math.nan,
        false_hit_rate=0.0,
        negatives=3,
    )
    report = CalibrationReport(0.01, (row,), row)
    text = json.dumps(report.to_json(), allow_nan=False)  # (raises on a NaN)
    assert '"recall": null' in text and '"precision": null' in text
