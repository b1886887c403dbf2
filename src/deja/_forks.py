"""What a forked child renews: locks a parent's thread held, calls it led, its subscriptions.

A child forked while another thread of the parent holds a lock, or leads a call others wait
for (single-flight), inherits that state without the thread: whoever waits for it there
waits for ever. So with a subscription whose listener is a thread (an invalidation bus): the
child believes itself subscribed and hears nothing. Objects with such state register a
renewal (``renew_in_child(self, Class._renew)``); one fork hook, registered once per process
(a hook per object would never be unregistered), runs them in the child. Owners are held
weakly.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["renew_in_child"]

_T = TypeVar("_T")

_RENEWALS: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()


def renew_in_child(owner: _T, renew: Callable[[_T], None]) -> None:
    """Run ``renew(owner)`` in every child forked while ``owner`` lives (``renew`` takes
    the owner: a bound method would keep it alive)."""
    _RENEWALS[owner] = renew


def _after_fork() -> None:
    for owner, renew in list(_RENEWALS.items()):
        renew(owner)


if hasattr(os, "register_at_fork"):  # (not on Windows)
    os.register_at_fork(after_in_child=_after_fork)
