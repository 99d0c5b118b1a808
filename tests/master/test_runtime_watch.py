"""How the master paces Watch messages, builds them once for every watcher of a kind and drops a
watcher too far behind (watchhub.py) and notices agents leaving (runtime.py), and how `pj run`
waits for its children (procs.py). No timing assertions: only what is woken, and in what order."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from pj.client.procs import wait_exit
from pj.master.model import State
from pj.master.runtime import AgentConn, AgentTable
from pj.master.watchhub import COUNTS, FULL, Watcher, WatchHub
from pj.v1 import pj_pb2 as pb


class _Job:  # what the hub's build below reads of a job
    def __init__(self, name: str, state: State = State.QUEUED) -> None:
        self.name, self.state = name, state


def _build(names: set[str] | None, counts_only: bool, jobs: list[Any], notices: list[str]) -> pb.WatchEvent:
    return pb.WatchEvent(notices=[*notices, *(j.name for j in jobs)], watched_total=int(counts_only))


def _hub(**kw: Any) -> tuple[WatchHub, list[bool]]:
    built: list[bool] = []  # counts_only of every message built

    def build(names: set[str] | None, counts_only: bool, jobs: list[Any], notices: list[str]) -> pb.WatchEvent:
        built.append(counts_only)
        return _build(names, counts_only, jobs, notices)

    return WatchHub(build, **{"every": 3600.0, **kw}), built  # the pacing timer never fires here


def _said(hub: WatchHub, w: Watcher) -> list[list[str]]:
    """What ``w`` sends next (every tick it has not sent), as lists of names and notices."""
    out = []
    while (tick := hub.next_tick(w)) is not None:
        data = tick.data[w.kind]  # type: ignore[index]
        if data is not None:  # None: a message of a big tick's in the other kind only
            out.append(list(pb.WatchEvent.FromString(data).notices))
        hub.sent(w, tick)
    return out


def test_a_watch_of_every_job_gathers_changes_between_messages() -> None:
    async def scenario() -> None:
        hub, _ = _hub()
        w = Watcher(None)
        hub.add(w)
        hub.offer({"a": _Job("a")})  # type: ignore[dict-item]
        assert w.ready.is_set() and _said(hub, w) == [["a"]]  # the first news goes at once
        w.ready.clear()
        hub.offer({"b": _Job("b")})  # type: ignore[dict-item]
        hub.offer({"c": _Job("c")})  # type: ignore[dict-item]
        assert not w.ready.is_set() and _said(hub, w) == []  # gathered for the next message
        hub.offer({"d": _Job("d")}, all_ended=True)  # type: ignore[dict-item]
        assert w.ready.is_set() and _said(hub, w) == [["b", "c", "d"]]  # every job ended: at once

    asyncio.run(scenario())


@pytest.mark.parametrize("how", ["notice", "close"])
def test_notices_and_the_close_are_never_held_back(how: str) -> None:
    async def scenario() -> None:
        hub, _ = _hub()
        w = Watcher(None)
        hub.add(w)
        hub.offer({"a": _Job("a")})  # type: ignore[dict-item]
        assert _said(hub, w) == [["a"]]
        w.ready.clear()
        hub.offer({"b": _Job("b")})  # type: ignore[dict-item]
        assert not w.ready.is_set()
        if how == "notice":
            hub.tell(["node x lost"])
            assert _said(hub, w) == [["node x lost", "b"]]
        else:
            hub.close()
            assert w.closed and _said(hub, w) == [["b"]]
        assert w.ready.is_set()

    asyncio.run(scenario())


def test_a_watch_of_named_jobs_hears_every_pass() -> None:
    async def scenario() -> None:
        hub, _ = _hub()
        w = Watcher({"a", "b"})
        hub.add(w)
        for name in ("a", "b"):
            w.ready.clear()
            hub.offer({name: _Job(name), "other": _Job("other")})  # type: ignore[dict-item]
            assert w.ready.is_set() and "other" not in w.changed
        assert set(w.changed) == {"a", "b"}

    asyncio.run(scenario())


def test_watchers_of_one_kind_send_the_same_bytes_built_once() -> None:
    async def scenario() -> None:
        hub, built = _hub()
        full = [Watcher(None) for _ in range(50)]
        counts = [Watcher(None, counts_only=True) for _ in range(50)]
        for w in full + counts:
            hub.add(w)
        hub.offer({"ok": _Job("ok", State.SUCCEED), "bad": _Job("bad", State.FAILED)})  # type: ignore[dict-item]
        assert sorted(built) == [False, True]  # one message per kind, whatever the number of watchers
        assert len({id(hub.next_tick(w).data[FULL]) for w in full}) == 1  # type: ignore[union-attr]
        assert len({id(hub.next_tick(w).data[COUNTS]) for w in counts}) == 1  # type: ignore[union-attr]
        assert _said(hub, full[0]) == [["ok", "bad"]]
        assert _said(hub, counts[0]) == [["bad"]]  # counts only: the jobs that ended badly

    asyncio.run(scenario())


def test_a_big_tick_is_several_messages_and_a_reader_is_not_dropped_for_its_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pj.master.watchhub.TICK_JOBS", 10)

    async def scenario() -> None:
        hub, built = _hub(backlog_mb=100 / 2**20, stall_s=3600.0)
        full, counts = Watcher(None), Watcher(None, counts_only=True)
        hub.add(full)
        hub.add(counts)
        hub.offer({f"j{i:02d}": _Job(f"j{i:02d}", State.FAILED if i == 3 else State.QUEUED)  # type: ignore[misc]
                   for i in range(25)})
        assert built == [False, False, False, True]  # 25 jobs: 3 messages in full, the counts in one
        said = _said(hub, full)
        assert [len(m) for m in said] == [10, 10, 5] and said[0][0] == "j00" and said[2][-1] == "j24"
        assert _said(hub, counts) == [["j03"]]
        assert not full.dropped and not counts.dropped  # 4 x 100 bytes behind, but all of one tick

    asyncio.run(scenario())


def test_a_watcher_too_far_behind_that_sends_nothing_is_dropped_and_the_log_trimmed() -> None:
    async def scenario() -> None:
        hub, _ = _hub(backlog_mb=1000 / 2**20, stall_s=5.0)  # 1000 bytes
        reader, stuck, late = Watcher(None), Watcher(None), Watcher(None)
        for w in (reader, stuck):
            hub.add(w)
        for i in range(30):
            hub.tell([f"{i:03d}" + "x" * 96])  # a tick of ~100 bytes each
            _said(hub, reader)  # it keeps up
        assert not stuck.dropped  # far behind, but it finished a write less than 5 s ago
        stuck.since -= 10  # ... and now its write has been stuck for 10 s
        hub.add(late)
        late.since -= 3600  # long idle (a quiet campaign) is not stuck: it had nothing to send
        hub.tell(["one more"])
        assert stuck.dropped.startswith("watch dropped: the client fell 0.0 MB behind")
        assert "read nothing for 10 s" in stuck.dropped and stuck.ready.is_set()
        assert stuck not in hub.shared and hub.dropped == 1
        assert not reader.dropped and not late.dropped
        assert len(hub.log) == 1  # what only the dropped one needed is gone
        assert _said(hub, late) == _said(hub, reader) == [["one more"]]

    asyncio.run(scenario())


def test_one_big_message_does_not_drop_a_reader_but_a_slow_reader_far_behind_is() -> None:
    async def scenario() -> None:
        hub, _ = _hub(backlog_mb=1000 / 2**20, stall_s=3600.0)
        slow = Watcher(None)
        hub.add(slow)
        hub.tell(["x" * 5000])  # one message five times the backlog: it is written, not held against it
        assert not slow.dropped
        for _ in range(3):
            hub.tell(["y" * 1000])  # 3000 bytes queued behind it: under 4 x 1000
        assert not slow.dropped
        hub.tell(["z" * 1500])  # 4500 behind the message it writes: however it reads, too slow
        assert slow.dropped.endswith("MB for a watch) and read too slowly to catch up; watch again to resume from the present")

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
