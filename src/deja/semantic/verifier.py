"""The second-stage verifier: is a candidate that passed threshold and guards really a hit?

A cosine threshold cannot tell "Why did my top-up fail?" from "Why was my top-up
reverted?". The verifier looks at the pair the way a reader would, through a few cheap
features (similarity, lexical overlap, words on one side only, length, guard signals) and a
logistic regression trained with cross-validation on labelled pairs
(``deja.semantic.calibrate.fit_verifier``). Its parameters ship as ``verifier.json``
beside this module: a dozen weights, a mean and scale per feature, and the probability
``cut`` at or above which a candidate is served.

Scoring is pure Python (no numpy): a few microseconds per candidate.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any

from deja.errors import ConfigError
from deja.semantic.guards import GuardReport, Signature, content_words, tokens

__all__ = ["FEATURE_NAMES", "Verifier", "pair_features"]

FEATURE_NAMES: tuple[str, ...] = (
    "similarity",
    "similarity_squared",
    "word_jaccard",
    "word_containment",
    "trigram_jaccard",
    "unmatched_words",
    "unmatched_imbalance",
    "log_min_length",
    "length_ratio",
    "negation_mismatch",
    "one_sided_polarity",
    "shared_anchors",
)


def _trigrams(text: str) -> frozenset[str]:
    joined = " ".join(tokens(text))
    return frozenset(joined[i : i + 3] for i in range(len(joined) - 2))


@functools.lru_cache(maxsize=8192)
def _text_features(text: str) -> tuple[frozenset[str], frozenset[str], int]:
    return frozenset(content_words(text)), _trigrams(text), len(tokens(text))


def pair_features(
    similarity: float,
    a: str,
    b: str,
    *,
    sig_a: Signature,
    sig_b: Signature,
    report: GuardReport,
) -> list[float]:
    """The verifier's features of the pair (``a``, ``b``), in :data:`FEATURE_NAMES` order."""
    words_a, tri_a, len_a = _text_features(a)
    words_b, tri_b, len_b = _text_features(b)
    shared = len(words_a & words_b)
    union = len(words_a | words_b) or 1
    smaller = min(len(words_a), len(words_b)) or 1
    tri_union = len(tri_a | tri_b) or 1
    only_a = math.log1p(len(words_a - words_b))
    only_b = math.log1p(len(words_b - words_a))
    one_sided = sum(
        1 for pa, pb in zip(sig_a.poles, sig_b.poles, strict=True) if bool(pa) != bool(pb)
    )
    return [
        similarity,
        similarity * similarity,
        shared / union,
        shared / smaller,
        len(tri_a & tri_b) / tri_union,
        only_a + only_b,
        abs(only_a - only_b),
        math.log1p(min(len_a, len_b)),
        abs(math.log(max(len_a, 1)) - math.log(max(len_b, 1))),
        float(sig_a.negated != sig_b.negated),
        float(one_sided),
        math.log1p(report.shared_anchors),
    ]


@dataclass(frozen=True, slots=True)
class Verifier:
    """A logistic regression over :func:`pair_features`.

    ``probability`` = sigmoid(bias + sum(weight * (feature - mean) / scale)); a candidate is
    accepted when it is at least ``cut``, or when its similarity is at least ``trust_above``
    (near-duplicates that passed every guard need no second opinion).
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    cut: float
    trust_above: float = 1.01
    info: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.features != FEATURE_NAMES[:n] or n != len(FEATURE_NAMES):
            raise ConfigError(f"verifier features {self.features} are not {FEATURE_NAMES}")
        if not (len(self.mean) == len(self.scale) == len(self.weights) == n):
            raise ConfigError("verifier parameters must have one value per feature")

    def probability(self, features: list[float]) -> float:
        """The estimated probability that one answer serves both prompts."""
        z = self.bias
        for x, m, s, w in zip(features, self.mean, self.scale, self.weights, strict=True):
            z += w * (x - m) / s
        if z < -30:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def accepts(self, similarity: float, features: list[float]) -> tuple[bool, float]:
        """(accepted, probability) for one candidate."""
        p = self.probability(features)
        return (similarity >= self.trust_above or p >= self.cut), p

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``verifier.json`` holds)."""
        return {
            "format": "deja-verifier",
            "version": 1,
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
            "cut": self.cut,
            "trust_above": self.trust_above,
            "info": self.info or {},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verifier:
        """Build from :meth:`to_dict` output (raises ``ConfigError`` if malformed)."""
        try:
            if data.get("format") != "deja-verifier" or data.get("version") != 1:
                raise ConfigError("not a deja verifier file of a known version")
            return cls(
                features=tuple(data["features"]),
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                weights=tuple(float(v) for v in data["weights"]),
                bias=float(data["bias"]),
                cut=float(data["cut"]),
                trust_above=float(data.get("trust_above", 1.01)),
                info=dict(data.get("info") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid verifier parameters: {exc!r}") from exc

    @classmethod
    def load(cls, path: str) -> Verifier:
        """Read a verifier JSON file."""
        with open(path, "rb") as f:
            return cls.from_dict(json.loads(f.read()))

    @classmethod
    def default(cls) -> Verifier:
        """The shipped verifier (``deja/semantic/verifier.json``), read once."""
        return _default_verifier()


@functools.cache
def _default_verifier() -> Verifier:
    data = resources.files("deja.semantic").joinpath("verifier.json").read_bytes()
    return Verifier.from_dict(json.loads(data))
