"""One structured-concurrency shape that the stream handlers share: run a few coroutines in one
TaskGroup until the first of them is done, then cancel the rest (a stream's reader and writer, a
lost flag, a stop request). Whatever raised in one of them propagates from the TaskGroup."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any


async def first_done(*watched: Coroutine[Any, Any, Any],
                     beside: Sequence[Coroutine[Any, Any, Any]] = ()) -> tuple[int, asyncio.Task[Any]]:
    """Run ``watched`` and ``beside`` until one of ``watched`` is done; cancel every other; return
    the index in ``watched`` of the one that ended first and its task (to read its result)."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(c) for c in watched]
        others = [tg.create_task(c) for c in beside]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in (*tasks, *others):
            t.cancel()
    first = next(t for t in tasks if t in done)
    return tasks.index(first), first
