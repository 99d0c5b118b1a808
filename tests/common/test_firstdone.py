"""common/firstdone.py: the first of the watched coroutines to finish ends the group; the rest,
watched or beside, are cancelled; an error in any of them propagates."""

from __future__ import annotations

import asyncio

import pytest

from pj.common.firstdone import first_done


def test_the_first_watched_to_finish_ends_the_rest() -> None:
    cancelled: list[str] = []

    async def sleeper(name: str, s: float, value: object = None) -> object:
        try:
            await asyncio.sleep(s)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return value

    async def main() -> tuple[int, object]:
        i, task = await first_done(sleeper("slow", 5), sleeper("quick", 0.01, "bye"),
                                   beside=[sleeper("quicker beside", 0.001), sleeper("beside", 5)])
        return i, task.result()

    assert asyncio.run(main()) == (1, "bye")
    assert sorted(cancelled) == ["beside", "slow"]  # what finished beside did not end the group


def test_an_error_in_any_propagates() -> None:
    async def boom() -> None:
        await asyncio.sleep(0.01)
        raise OSError("stream broke")

    async def main() -> None:
        await first_done(asyncio.sleep(5), beside=[boom()])

    with pytest.raises(ExceptionGroup) as e:
        asyncio.run(main())
    assert isinstance(e.value.exceptions[0], OSError)
