"""Texts asked for at once share calls (the semantic tier's embeddings)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence

import pytest

from deja._async.batching import AsyncBatchFlight
from deja._sync.batching import BatchFlight


class Calls:
    """A call that records its batches and, while ``gate`` is closed, waits for it."""

    def __init__(self, *, fail: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.fail = fail

    async def __call__(self, texts: list[str]) -> Sequence[str]:
        self.batches.append(list(texts))
        await self.gate.wait()
        if self.fail is not None and self.fail in texts:
            raise ConnectionError(f"failed on {self.fail}")
        return [t.upper() for t in texts]


async def _started(*coros: object) -> list[asyncio.Task[str]]:
    tasks = []
    for coro in coros:
        tasks.append(asyncio.ensure_future(coro))  # type: ignore[call-overload]
        await asyncio.sleep(0)  # each asks in turn
    await asyncio.sleep(0)
    return tasks


def _idle(flight: AsyncBatchFlight[str] | BatchFlight[str]) -> bool:
    return flight.in_flight() == 0 and not flight._queues


async def test_texts_queued_while_calls_run_go_together_in_the_next_call() -> None:
    calls = Calls()
    flight: AsyncBatchFlight[str] = AsyncBatchFlight(calls, size=3, parallel=1)
    tasks = await _started(*(flight.run(t) for t in "abcdefg"))
    assert calls.batches == [["a"]]  # asked at once, alone: nothing waited before it
    calls.gate.set()
    assert await asyncio.gather(*tasks) == list("ABCDEFG")
    assert calls.batches == [["a"], ["b", "c", "d"], ["e", "f", "g"]]
    assert _idle(flight)


async def test_without_a_bound_each_text_is_its_own_call_and_identical_ones_share() -> None:
    calls = Calls()
    flight: AsyncBatchFlight[str] = AsyncBatchFlight(calls, size=1, parallel=None)
    tasks = await _started(*(flight.run(t) for t in ["x", "y", "x", "z", "x"]))
    assert calls.batches == [["x"], ["y"], ["z"]]
    calls.gate.set()
    assert await asyncio.gather(*tasks) == ["X", "Y", "X", "Z", "X"]
    assert _idle(flight)


async def test_a_text_queued_twice_is_asked_for_once() -> None:
    calls = Calls()
    flight: AsyncBatchFlight[str] = AsyncBatchFlight(calls, size=8, parallel=1)
    tasks = await _started(*(flight.run(t) for t in ["a", "b", "b", "c", "b"]))
    calls.gate.set()
    assert await asyncio.gather(*tasks) == ["A", "B", "B", "C", "B"]
    assert calls.batches == [["a"], ["b", "c"]]


async def test_a_call_s_error_reaches_its_texts_only() -> None:
    calls = Calls(fail="b")
    flight: AsyncBatchFlight[str] = AsyncBatchFlight(calls, size=2, parallel=1)
    tasks = await _started(*(flight.run(t) for t in "abcd"))
    calls.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == "A" and results[3] == "D"
    assert all(isinstance(r, ConnectionError) for r in results[1:3])
    assert results[1] is results[2]  # one error, shared (counted once by the tier)
    assert _idle(flight)


async def test_a_cancelled_caller_s_call_runs_on_for_its_other_texts() -> None:
    calls = Calls()
    flight: AsyncBatchFlight[str] = AsyncBatchFlight(calls, size=4, parallel=1)
    lead, same = await _started(flight.run("a"), flight.run("a"))
    queued = (await _started(flight.run("b")))[0]
    lead.cancel()
    await asyncio.sleep(0.01)
    calls.gate.set()
    assert await asyncio.gather(same, queued) == ["A", "B"]
    assert calls.batches == [["a"], ["b"]]  # "a" asked for once, its caller gone or not
    assert lead.cancelled()
    assert _idle(flight)


def test_a_call_interrupted_is_asked_for_again_by_its_waiters() -> None:
    asked: list[list[str]] = []
    entered = threading.Event()

    def call(texts: list[str]) -> list[str]:
        asked.append(list(texts))
        if len(asked) == 1:
            entered.set()
            time.sleep(0.1)
            raise KeyboardInterrupt  # (a sync caller's interrupt: no outcome to share)
        return [t.upper() for t in texts]

    flight: BatchFlight[str] = BatchFlight(call, size=4, parallel=1)
    results: list[str] = []

    def first() -> None:
        with contextlib.suppress(KeyboardInterrupt):
            flight.run("a")

    lead = threading.Thread(target=first)
    lead.start()
    entered.wait(5)
    other = threading.Thread(target=lambda: results.append(flight.run("a")))
    other.start()
    lead.join(5)
    other.join(5)
    assert results == ["A"] and asked == [["a"], ["a"]]
    assert _idle(flight)


async def test_a_waiter_cancelled_while_queued_takes_its_text_out() -> None:
    calls = Calls()
    flight: AsyncBatchFlight[str] = AsyncBatchFlight(calls, size=4, parallel=1)
    first, gone, kept = await _started(flight.run("a"), flight.run("b"), flight.run("c"))
    gone.cancel()
    await asyncio.sleep(0)
    calls.gate.set()
    assert await asyncio.gather(first, kept) == ["A", "C"]
    assert calls.batches == [["a"], ["c"]]
    assert _idle(flight)


async def test_a_wrong_number_of_results_is_an_error_for_every_text_of_the_call() -> None:
    async def short(texts: list[str]) -> list[str]:
        await asyncio.sleep(0.01)
        return texts[:1]

    flight: AsyncBatchFlight[str] = AsyncBatchFlight(short, size=4, parallel=1)
    assert await flight.run("a") == "a"  # one text, one result
    with pytest.raises(ValueError, match="1 results for 2 texts"):
        await asyncio.gather(*(flight.run(t) for t in ["x", "y", "z"]))


def test_the_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        BatchFlight(lambda texts: texts, size=0, parallel=None)
    with pytest.raises(ValueError):
        BatchFlight(lambda texts: texts, size=4, parallel=0)


def test_threads_share_calls_and_each_gets_its_own_result() -> None:
    batches: list[list[str]] = []
    running = 0
    most = 0
    guard = threading.Lock()

    def call(texts: list[str]) -> list[str]:
        nonlocal running, most
        with guard:
            batches.append(list(texts))
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with guard:
            running -= 1
        return [t.upper() for t in texts]

    flight: BatchFlight[str] = BatchFlight(call, size=8, parallel=2)
    texts = [f"t{i}" for i in range(40)]
    results: dict[str, str] = {}

    def ask(text: str) -> None:
        results[text] = flight.run(text)

    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {t: t.upper() for t in texts}
    assert sorted(t for batch in batches for t in batch) == sorted(texts)
    assert most <= 2 and len(batches) < 40 and max(map(len, batches)) <= 8
    assert _idle(flight)


async def test_a_text_that_failed_alone_raises_to_its_callers_only() -> None:
    from deja._outcomes import Failed

    async def call(texts: list[str]) -> list[str | Failed]:
        await asyncio.sleep(0.01)
        return [Failed(ValueError(t)) if t == "bad" else t.upper() for t in texts]

    flight: AsyncBatchFlight[str] = AsyncBatchFlight(call, size=8, parallel=1)
    results = await asyncio.gather(
        *(flight.run(t) for t in ["a", "b", "bad", "c", "bad"]), return_exceptions=True
    )
    assert results[:2] == ["A", "B"] and results[3] == "C"
    assert isinstance(results[2], ValueError) and results[4] is results[2]
    assert _idle(flight)
