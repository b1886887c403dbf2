"""The second-stage verifier: is a candidate that passed threshold and guards really a hit?

A cosine threshold cannot tell "Why did my top-up fail?" from "Why was my top-up
reverted?". The verifier looks at the pair the way a reader would, through a few cheap
text features (similarity, lexical overlap, words on one side only, length, guard signals)
and, when it was trained on the embedder's vectors, through the two prompt vectors
themselves: the element-wise product ``u*v`` and difference ``|u-v|`` say *which*
dimensions agree, which a single cosine averages away (the classic paraphrase-classifier
features). It is a logistic regression trained with cross-validation on labelled pairs
(``deja.semantic.calibrate.fit_verifier``); during training the vector part is confined to
the top principal components of those features, and then folded back into one weight per
dimension, so scoring is two dot products.

Two parameter sets ship beside this module:

* ``verifier.json``: text features and vector weights, for the embedded model
  (``local:all-MiniLM-L6-v2-int8-fused:384``);
* ``verifier_text.json``: text features only, for any other embedder (vector weights
  learned on one model's dimensions mean nothing for another's).

:meth:`Verifier.default_for` picks the one for an embedder. Each holds a mean and scale per
text feature, the weights, and the probability ``cut`` at or above which a candidate is
served. Scoring a candidate takes about 15 µs, of which the vector part (one numpy
product over 2 x 384 values) is about 11 µs; the text features are pure Python (about
80 µs for a one-line prompt), computed once per text and tenant scope by the semantic tier
(:class:`~deja.semantic.decision.PreparedText`).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from deja.errors import ConfigError
from deja.semantic.guards import GuardReport, Signature, content_words, tokens

__all__ = ["FEATURE_NAMES", "TextFeatures", "Verifier", "pair_features", "text_features"]

TextFeatures = tuple[frozenset[str], frozenset[str], int]
"""What :func:`pair_features` needs of one text (:func:`text_features`)."""

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


def text_features(text: str) -> TextFeatures:
    """What :func:`pair_features` needs of one text: its content words, character
    trigrams and token count.

    Not cached here: the semantic tier keeps them per tenant scope
    (:class:`~deja.semantic.decision.PreparedText`), as a cache shared by every tenant
    would answer one tenant's prompt faster for another's having sent it."""
    return frozenset(content_words(text)), _trigrams(text), len(tokens(text))


def pair_features(
    similarity: float,
    a: str,
    b: str,
    *,
    sig_a: Signature,
    sig_b: Signature,
    report: GuardReport,
    features_a: TextFeatures | None = None,
    features_b: TextFeatures | None = None,
) -> list[float]:
    """The verifier's features of the pair (``a``, ``b``), in :data:`FEATURE_NAMES` order;
    ``features_a`` / ``features_b``: the :func:`text_features` of each, if already known."""
    words_a, tri_a, len_a = features_a if features_a is not None else text_features(a)
    words_b, tri_b, len_b = features_b if features_b is not None else text_features(b)
    shared = len(words_a & words_b)
    union = len(words_a | words_b) or 1
    smaller = min(len(words_a), len(words_b)) or 1
    tri_union = len(tri_a | tri_b) or 1
    only_a = math.log1p(len(words_a - words_b))
    only_b = math.log1p(len(words_b - words_a))
    # groups of alternatives (guards' poles) that one prompt names and the other does not
    one_sided = len(set(sig_a.pole_groups).symmetric_difference(sig_b.pole_groups))
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
    """A logistic regression over :func:`pair_features` and, optionally, the two vectors.

    ``probability`` = sigmoid(bias + sum(weight * (feature - mean) / scale)
    + vector_weights . [u*v, |u-v|]), where ``u`` and ``v`` are the prompts' unit vectors
    (the second term only when ``vector_weights`` is set; they are then those of the
    embedder named ``embedder``). A candidate is accepted when the probability is at least
    ``cut``, or when its similarity is at least ``trust_above`` (near-duplicates that passed
    every guard need no more than a veto) and its probability at least ``trust_floor``.
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    cut: float
    trust_above: float = 1.01
    info: dict[str, Any] | None = None
    trust_floor: float = 0.0
    vector_weights: tuple[float, ...] = ()
    embedder: str | None = None
    _vector_arrays: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.features != FEATURE_NAMES[:n] or n != len(FEATURE_NAMES):
            raise ConfigError(f"verifier features {self.features} are not {FEATURE_NAMES}")
        if not (len(self.mean) == len(self.scale) == len(self.weights) == n):
            raise ConfigError("verifier parameters must have one value per feature")
        if self.vector_weights:
            if len(self.vector_weights) % 2 or not self.embedder:
                raise ConfigError(
                    "vector weights come in two halves (u*v, |u-v|) and name their embedder"
                )
            from deja.semantic._deps import np

            half = len(self.vector_weights) // 2
            weights = np.asarray(self.vector_weights, dtype=np.float64)
            object.__setattr__(self, "_vector_arrays", (weights[:half], weights[half:]))

    @property
    def uses_vectors(self) -> bool:
        """Whether scoring needs both prompts' vectors (see :meth:`probability`)."""
        return bool(self.vector_weights)

    @property
    def dim(self) -> int | None:
        """The vector size the vector weights are for (``None`` without them)."""
        return len(self.vector_weights) // 2 if self.vector_weights else None

    def probability(self, features: list[float], vectors: tuple[Any, Any] | None = None) -> float:
        """The estimated probability that one answer serves both prompts.

        ``vectors`` are the two prompts' unit vectors, in either order (both vector
        features are symmetric); required when :attr:`uses_vectors`.
        """
        z = self.bias
        for x, m, s, w in zip(features, self.mean, self.scale, self.weights, strict=True):
            z += w * (x - m) / s
        if self._vector_arrays is not None:
            if vectors is None or vectors[0] is None or vectors[1] is None:
                raise ValueError(
                    f"this verifier weighs the prompt vectors ({self.embedder}): pass both"
                )
            product, difference = self._vector_arrays
            u, v = vectors
            z += float(product @ (u * v)) + float(difference @ abs(u - v))
        if z < -30:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))

    def accepts(
        self,
        similarity: float,
        features: list[float],
        vectors: tuple[Any, Any] | None = None,
        *,
        same_words: bool = False,
    ) -> tuple[bool, float]:
        """(accepted, probability) for one candidate (``vectors`` as in :meth:`probability`).

        ``same_words``: the two prompts say the same words, in order or with one part
        moved, framing words and typing slips aside
        (:meth:`~deja.semantic.guards.Signature.same_words_as`). Such a candidate is
        accepted whatever the model says: trained on dev's negatives, half of them drawn for
        sharing words, it scores identical wording low ("hello there" / "hello there":
        0.42), and a misspelt word lowers the similarity itself ("heimlich maneuver" /
        "hiemlich manuver": 0.65), so neither ``trust_floor`` nor the cut may refuse it.
        """
        p = self.probability(features, vectors)
        if same_words:
            return True, p
        trusted = similarity >= self.trust_above and p >= self.trust_floor
        return trusted or p >= self.cut, p

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what ``verifier.json`` holds)."""
        data: dict[str, Any] = {
            "format": "deja-verifier",
            "version": 2 if self.vector_weights else 1,
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
            "cut": self.cut,
            "trust_above": self.trust_above,
        }
        if self.trust_floor:
            data["trust_floor"] = self.trust_floor
        if self.vector_weights:
            data["embedder"] = self.embedder
            data["vector_weights"] = list(self.vector_weights)
        data["info"] = self.info or {}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verifier:
        """Build from :meth:`to_dict` output (raises ``ConfigError`` if malformed).

        Version 1 has text features only; version 2 adds ``vector_weights`` and ``embedder``.
        """
        try:
            if data.get("format") != "deja-verifier" or data.get("version") not in (1, 2):
                raise ConfigError("not a deja verifier file of a known version")
            vector_weights = data.get("vector_weights") or ()
            if data["version"] == 1 and vector_weights:
                raise ConfigError("a version 1 verifier has no vector weights")
            return cls(
                features=tuple(data["features"]),
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                weights=tuple(float(v) for v in data["weights"]),
                bias=float(data["bias"]),
                cut=float(data["cut"]),
                trust_above=float(data.get("trust_above", 1.01)),
                trust_floor=float(data.get("trust_floor", 0.0)),
                info=dict(data.get("info") or {}),
                vector_weights=tuple(float(v) for v in vector_weights),
                embedder=str(data["embedder"]) if vector_weights else None,
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
        """The shipped verifier for the embedded model (``verifier.json``), read once."""
        return _shipped("verifier.json")

    @classmethod
    def default_for(cls, embedder_id: str) -> Verifier:
        """The shipped verifier to use with the embedder ``embedder_id``.

        The one of :meth:`default` when its vector weights are that embedder's; otherwise
        the text-only one (``verifier_text.json``), which needs no vectors.
        """
        shipped = _shipped("verifier.json")
        if shipped.embedder == embedder_id:
            return shipped
        return _shipped("verifier_text.json")


@functools.cache
def _shipped(name: str) -> Verifier:
    data = resources.files("deja.semantic").joinpath(name).read_bytes()
    return Verifier.from_dict(json.loads(data))
