"""How the master paces Watch messages and notices agents leaving (runtime.py), and how `pj run`
waits for its children (procs.py). No timing assertions: only what is woken, and in what order."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from pj.client.procs import wait_exit
from pj.master.runtime import AgentConn, AgentTable, Watcher


class _Job:  # the Watcher only stores what it is offered
    pass


def test_a_watch_of_every_job_gathers_changes_between_messages() -> None:
    async def scenario() -> None:
        w = Watcher(None, every=3600.0)  # the pacing timer never fires during this test
        w.offer({"a": _Job()})  # type: ignore[dict-item]
        assert w.ready.is_set()  # the first news goes at once
        w.ready.clear()
        w.changed = {}
        w.offer({"b": _Job()})  # type: ignore[dict-item]
        w.offer({"c": _Job()})  # type: ignore[dict-item]
        assert not w.ready.is_set() and set(w.changed) == {"b", "c"}  # gathered for the next message
        w.offer({"d": _Job()}, all_ended=True)  # type: ignore[dict-item]
        assert w.ready.is_set() and set(w.changed) == {"b", "c", "d"}  # every job ended: at once

    asyncio.run(scenario())


@pytest.mark.parametrize("how", ["notice", "close"])
def test_notices_and_the_close_are_never_held_back(how: str) -> None:
    async def scenario() -> None:
        w = Watcher(None, every=3600.0)
        w.offer({"a": _Job()})  # type: ignore[dict-item]
        w.ready.clear()
        w.offer({"b": _Job()})  # type: ignore[dict-item]
        assert not w.ready.is_set()
        if how == "notice":
            w.tell(["node x lost"])
        else:
            w.close()
        assert w.ready.is_set()

    asyncio.run(scenario())


def test_a_watch_of_named_jobs_hears_every_pass() -> None:
    async def scenario() -> None:
        w = Watcher({"a", "b"})
        for name in ("a", "b"):
            w.ready.clear()
            w.offer({name: _Job(), "other": _Job()})  # type: ignore[dict-item]
            assert w.ready.is_set() and "other" not in w.changed

    asyncio.run(scenario())


def test_the_agent_table_says_when_the_last_agent_left() -> None:
    async def scenario() -> None:
        agents = AgentTable()
        assert agents.emptied.is_set()
        agents["n1"] = AgentConn("n1")
        agents["n2"] = AgentConn("n2")
        assert not agents.emptied.is_set()
        del agents["n1"]
        assert not agents.emptied.is_set()
        agents.pop("n2")
        assert agents.emptied.is_set() and not agents

    asyncio.run(scenario())


def test_wait_exit_returns_the_exit_code_or_times_out() -> None:
    quick = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert wait_exit(quick, 60) == 3
    assert wait_exit(quick, 0) == 3  # already reaped: the same answer
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            wait_exit(slow, 0.01)
    finally:
        slow.kill()
        slow.wait()
