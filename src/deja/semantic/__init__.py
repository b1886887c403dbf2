"""The semantic tier: reuse answers for prompts that mean the same thing.

Importing this package loads nothing heavy; numpy, onnxruntime, tokenizers and usearch
(the ``semantic`` extra: ``pip install 'deja-llm[semantic]'``) are imported by the modules
that need them, when first used.

* :class:`SemanticCache` — ``check`` / ``store`` / ``forget`` / ``feedback``;
* :class:`Embedder`, :class:`LocalEmbedder` (embedded all-MiniLM-L6-v2), :class:`OpenAIEmbedder`;
* :class:`VectorIndex`, :class:`InProcessIndex`;
* :mod:`~deja.semantic.scope`, :mod:`~deja.semantic.guards`, :mod:`~deja.semantic.verifier`,
  :mod:`~deja.semantic.decision` — the pure parts of the decision;
* :func:`calibrate` — threshold calibration on labelled pairs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deja.semantic.cache import Feedback, SemanticCache, SemanticLookup, SemanticMatch
    from deja.semantic.calibrate import CalibrationReport, calibrate
    from deja.semantic.decision import DEFAULT_THRESHOLD, Decision, decide
    from deja.semantic.embedders import Embedder, LocalEmbedder, OpenAIEmbedder
    from deja.semantic.guards import GuardSettings
    from deja.semantic.index import InProcessIndex, Neighbor, VectorIndex
    from deja.semantic.verifier import Verifier

__all__ = [
    "DEFAULT_THRESHOLD",
    "CalibrationReport",
    "Decision",
    "Embedder",
    "Feedback",
    "GuardSettings",
    "InProcessIndex",
    "LocalEmbedder",
    "Neighbor",
    "OpenAIEmbedder",
    "SemanticCache",
    "SemanticLookup",
    "SemanticMatch",
    "VectorIndex",
    "Verifier",
    "calibrate",
    "decide",
]

_HOMES = {
    "DEFAULT_THRESHOLD": "decision",
    "CalibrationReport": "calibrate",
    "Decision": "decision",
    "Embedder": "embedders",
    "Feedback": "cache",
    "GuardSettings": "guards",
    "InProcessIndex": "index",
    "LocalEmbedder": "embedders",
    "Neighbor": "index",
    "OpenAIEmbedder": "embedders",
    "SemanticCache": "cache",
    "SemanticLookup": "cache",
    "SemanticMatch": "cache",
    "VectorIndex": "index",
    "Verifier": "verifier",
    "calibrate": "calibrate",
    "decide": "decision",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'deja.semantic' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deja.semantic.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
