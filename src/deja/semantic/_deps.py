"""numpy, imported once for the semantic tier, with the exact install command if missing."""

from __future__ import annotations

from deja.errors import MissingDependencyError

try:
    import numpy as np
except ImportError as exc:  # pragma: no cover - exercised on a machine without the extra
    raise MissingDependencyError("numpy", "semantic") from exc

__all__ = ["np"]
