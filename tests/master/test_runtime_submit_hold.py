"""The passes wait for the next part of a big submit (Dispatcher.submitted, runtime.py). No timing
assertions: whether a pass ran after many turns of the loop, with the hold made long or none."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pj.master import runtime
from pj.master.core import Core
from pj.master.runtime import TRIM_AFTER_JOBS, Dispatcher


def passes_after(monkeypatch: pytest.MonkeyPatch, jobs: int, hold_max: float = 30.0, more: int = 0,
                 hold: float = 3600.0, then: tuple[int, int] | None = None) -> int:
    """How many passes ran in 50 turns of the loop after a Submit of ``jobs`` (``more`` parts
    announced) with a 1-hour hold (``hold``: that of a part with none announced); ``then``: (jobs,
    more) of a next part, sent after those 50 turns (the passes counted after 50 more)."""
    monkeypatch.setattr(runtime, "SUBMIT_HOLD_S", hold)
    monkeypatch.setattr(runtime, "SUBMIT_MORE_HOLD_S", 3600.0)
    monkeypatch.setattr(runtime, "SUBMIT_HOLD_MAX_S", hold_max)
    monkeypatch.setattr(runtime, "_libc_trim", lambda: None)
    core = Core()
    steps: list[float] = []
    real = core.step

    def step(now: float) -> Any:
        steps.append(now)
        return real(now)

    core.step = step  # type: ignore[method-assign]

    async def scenario() -> int:
        d = Dispatcher(core)
        run = asyncio.get_running_loop().create_task(d.run())
        try:
            d.submitted(jobs, more)
            for _ in range(50):
                await asyncio.sleep(0)
            if then is not None:
                assert not steps
                d.submitted(*then)
                for _ in range(50):
                    await asyncio.sleep(0)
            return len(steps)
        finally:
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run

    return asyncio.run(scenario())


def test_a_big_submit_holds_the_passes_for_its_next_part(monkeypatch: pytest.MonkeyPatch) -> None:
    assert passes_after(monkeypatch, TRIM_AFTER_JOBS) == 0


def test_a_small_submit_is_passed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert passes_after(monkeypatch, TRIM_AFTER_JOBS - 1) == 1


def test_no_hold_beyond_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert passes_after(monkeypatch, TRIM_AFTER_JOBS, hold_max=0.0) == 1


def test_announced_parts_hold_the_passes_past_the_short_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    # the short hold (SUBMIT_HOLD_S) is over at once; the part says 3 more follow: still held
    assert passes_after(monkeypatch, TRIM_AFTER_JOBS, more=3, hold=0.0) == 0
    assert passes_after(monkeypatch, 10, more=3, hold=0.0) == 0  # small parts too
    assert passes_after(monkeypatch, TRIM_AFTER_JOBS, more=0, hold=0.0) == 1


def test_the_last_part_ends_the_hold_its_first_part_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # the first part says 1 more follows (an hour's hold); the last says none (no hold): the pass
    # runs at once, not when the first part's hold would have ended
    assert passes_after(monkeypatch, TRIM_AFTER_JOBS, more=1, hold=0.0, then=(TRIM_AFTER_JOBS, 0)) == 1
