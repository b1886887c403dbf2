"""PatientTimeout: a timeout that does not count the time its event loop spent elsewhere."""

from __future__ import annotations

import asyncio
import time

import pytest

from deja._aio import PatientTimeout


async def test_work_that_never_ends_times_out_on_a_loop_that_keeps_up() -> None:
    never = asyncio.get_running_loop().create_future()
    patience = PatientTimeout(0.05)
    with pytest.raises(TimeoutError):
        async with patience:
            await never
    assert patience.expired()


async def test_an_answer_that_came_while_the_loop_was_busy_is_read() -> None:
    """The answer arrives in time, but the loop is busy elsewhere (a blocking callback)
    until past the deadline: a plain timeout fires in the turn the answer would have been
    read, and fails work that was done."""
    loop = asyncio.get_running_loop()

    def answered_during_a_busy_loop() -> asyncio.Future[str]:
        answer: asyncio.Future[str] = loop.create_future()
        loop.call_later(0.01, time.sleep, 0.3)  # the loop held up from 10 ms to 310 ms
        loop.call_later(0.02, answer.set_result, "answer")  # due at 20 ms, run at 310
        return answer

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await answered_during_a_busy_loop()
    async with PatientTimeout(0.1):
        assert await answered_during_a_busy_loop() == "answer"


async def test_what_is_forgiven_is_bounded() -> None:
    loop = asyncio.get_running_loop()
    never = loop.create_future()
    loop.call_later(0.01, time.sleep, 0.3)
    patience = PatientTimeout(0.05, most_forgiven=0.02)
    with pytest.raises(TimeoutError):
        async with patience:
            await never


async def test_progress_moves_the_deadline() -> None:
    """A queue served in turn: each step reported as progress, the wait outlasts its
    ``seconds`` in all and does not time out; without progress, it does."""
    loop = asyncio.get_running_loop()
    last = loop.time()

    def progress() -> float:
        return last

    async def queue(steps: int) -> int:
        nonlocal last
        for _ in range(steps):
            await asyncio.sleep(0.02)
            last = loop.time()
        return steps

    async with PatientTimeout(0.1, progress=progress):
        assert await queue(15) == 15  # (0.3 s in all)
    with pytest.raises(TimeoutError):
        async with PatientTimeout(0.1):
            await queue(15)
    stalled = loop.create_future()
    with pytest.raises(TimeoutError):  # progress that stops: the deadline stops moving
        async with PatientTimeout(0.1, progress=progress):
            await queue(3)
            await stalled


async def test_a_loop_late_turn_after_turn_is_forgiven_a_few_times_only() -> None:
    """A server that answers nothing, on a loop 15 ms late at every turn: each late run of
    the timer moved the deadline again, and the work failed after ~4 s, not its 0.1 s."""
    loop = asyncio.get_running_loop()
    busy = True

    def hold_up() -> None:  # every turn of the loop takes 15 ms
        if busy:
            time.sleep(0.015)
            loop.call_soon(hold_up)

    loop.call_soon(hold_up)
    patience = PatientTimeout(0.1)
    try:
        with pytest.raises(TimeoutError):
            async with patience:
                await loop.create_future()
    finally:
        busy = False
    assert patience._times <= 3  # (forgiven a few times, not at every late turn)
