"""An outcome shared by the async sources and their generated sync twins."""

from __future__ import annotations

__all__ = ["Failed"]


class Failed:
    """The result of one item of a batched call that failed alone (the others did not):
    raised to that item's callers (see :mod:`deja._async.batching`)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error
