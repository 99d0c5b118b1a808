"""The dispatcher keeps the core's appointment (wake_at) and hands notices to every watcher."""

from __future__ import annotations

import asyncio
import time

from pj.master.core import Core
from pj.master.expect import Expectation
from pj.master.model import NodeInfo
from pj.master.runtime import Dispatcher
from pj.master.watchhub import FULL, Watcher
from pj.v1 import pj_pb2 as pb


def test_the_deadline_passes_with_nothing_else_happening_and_watchers_hear_of_it() -> None:
    async def scenario() -> tuple[list[str], list[str], dict[str, object], bool]:
        core = Core(expect=Expectation.parse("a,b", timeout_s=0.2), now=time.time())
        core.node_joined(NodeInfo("a", 2), time.time())
        master = Dispatcher(core)
        everyone, one_job = Watcher(None), Watcher({"some-job"})
        master.hub.add(everyone)
        master.hub.add(one_job)
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(master.run())
            master.poke()  # the first pass learns the deadline; then nothing pokes the dispatcher
            await asyncio.wait_for(one_job.ready.wait(), 30)
            run.cancel()
        tick = master.hub.next_tick(everyone)
        assert tick is not None and tick.data[FULL] is not None
        heard = list(pb.WatchEvent.FromString(tick.data[FULL]).notices)
        return heard, one_job.notices, one_job.changed, core.capacity_known  # type: ignore[return-value]

    everyone, one_job, changed, known = asyncio.run(scenario())
    notice = "node(s) b did not register within 0.2 s; going on with 1 of 2 nodes (a)"
    assert everyone == one_job == [notice]
    assert changed == {}  # no job changed, and still the watcher was woken
    assert known
