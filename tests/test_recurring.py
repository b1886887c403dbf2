"""Say once, then count (deja._recurring): the one rule of the lines about things that may
recur on every call (the proxy's upstream, hook and fallback failures, failed invalidation
publishes, models without a price)."""

from __future__ import annotations

from deja._recurring import Recurring
from deja.testing import FakeClock


def test_the_first_is_said_the_rest_of_a_window_counted_then_said_with_the_count() -> None:
    clock = FakeClock(100.0)
    lines = Recurring(window=10.0, clock=clock)
    assert lines.occurred("a") == (True, 0, 0.0)
    for _ in range(5):
        clock.advance(1)
        assert lines.occurred("a") is None
    assert lines.unsaid("a") == 5
    assert lines.occurred("b") == (True, 0, 0.0)  # (each key its own)
    clock.advance(6)  # 11 s after "a" was said, 6 s after it last occurred
    assert lines.occurred("a") == (False, 5, 11.0)
    assert lines.unsaid("a") == 0


def test_a_key_quiet_for_a_whole_window_starts_over_with_what_it_left_unsaid() -> None:
    clock = FakeClock(0.0)
    lines = Recurring(window=10.0, clock=clock)
    lines.occurred("a")
    clock.advance(2)
    lines.occurred("a")  # counted
    clock.advance(30)
    assert lines.occurred("a") == (True, 1, 32.0)


def test_keys_past_the_bound_forget_the_oldest() -> None:
    clock = FakeClock(0.0)
    lines = Recurring(window=10.0, clock=clock, max_keys=2)
    for key in ("a", "b", "c"):
        lines.occurred(key)
    assert lines.occurred("a") == (True, 0, 0.0)  # forgotten: said again
    assert lines.occurred("c") is None  # remembered: counted
