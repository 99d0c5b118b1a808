"""readlag.ReadLag (pure): how late the master reads heartbeats, the skew of each agent's clock
taken out; what the heartbeat watch adds to the timeout (Dispatcher.declare_silent)."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pj.master.core import Core
from pj.master.readlag import ReadLag, SentClock
from pj.master.runtime import AgentConn, Dispatcher


def test_skewed_clocks_read_on_time_make_no_lag() -> None:
    r = ReadLag(window=10.0)
    for t in range(5):
        r.heard("a", 100.0 + t, 100.0 + t + 0.01)  # a clock on time
        r.heard("b", 500.0 + t, 100.0 + t + 0.01)  # 400 s ahead
        r.heard("c", 50.0 + t, 100.0 + t + 0.01)  # 50 s behind
    assert r.period(1.0) == 0.0


def test_a_backlog_is_the_allowance_until_the_window_passes() -> None:
    r = ReadLag(window=10.0)
    for n in range(20):
        r.heard(f"n{n}", 100.0, 100.0)  # on time: the base
    assert r.period(1.0) == 0.0
    for n in range(20):
        r.heard(f"n{n}", 103.0, 103.0 + 8.0)  # read 8 s after it was sent
    assert r.period(2.0) == 8.0
    assert r.period(3.0) == 8.0  # nothing read since: the last lag stands
    for n in range(20):
        r.heard(f"n{n}", 112.0, 112.0)  # caught up
    assert r.period(4.0) == 8.0  # within the window, the larger lag stays
    assert r.period(12.5) == 0.0


def test_a_clock_that_steps_back_raises_it_for_a_while_only() -> None:
    r = ReadLag(window=10.0)
    t = 10_000.0
    r.heard("n0", t, t)
    r.heard("n0", t + 3 - 3600, t + 3)  # its clock went back an hour
    assert r.period(1.0) == 3600.0
    r.heard("n0", t + 41 - 3600, t + 41)  # its base is 41 s old: taken again (REBASE x window)
    r.heard("n0", t + 44 - 3600, t + 44)
    assert r.period(12.0) == 0.0
    r.heard("n0", 0.0, t + 45)  # no time said: not counted
    assert r.period(13.0) == 0.0


def test_a_stream_that_ends_forgets_its_clock() -> None:
    r = ReadLag(window=10.0)
    r.heard("a", 400.0, 100.0)
    r.forget("a")
    r.heard("a", 100.0, 100.0)  # a new agent, another host
    assert r.base == {"a": (0.0, 100.0)} and r.period(1.0) == 0.0


def test_the_watch_waits_out_the_read_lag_before_declaring_an_agent_lost() -> None:
    async def run() -> tuple[bool, bool, bool]:
        d = Dispatcher(Core())
        conn = AgentConn("n0")
        d.agents["n0"] = conn
        seen = conn.last_seen
        d.declare_silent(10.0, 8.0, seen + 15.0)  # 15 s unread, but reads are 8 s late
        first = conn.lost.is_set()
        d.declare_silent(10.0, 8.0, seen + 18.5)
        second = conn.lost.is_set()
        other = AgentConn("n1")
        d.agents["n1"] = other
        d.declare_silent(10.0, 0.0, other.last_seen + 10.5)  # the master keeps up: the timeout alone
        return first, second, other.lost.is_set()

    assert asyncio.run(run()) == (False, True, True)


def test_a_master_that_reads_no_heartbeat_allows_for_it_up_to_the_timeout() -> None:
    r = ReadLag(window=10.0)
    assert r.deaf(100.0, 3.0, 10.0) == 0.0  # nothing read yet: nothing to say
    r.heard("a", 100.0, 100.0)
    r.heard("b", 100.5, 101.0)
    assert r.deaf(103.0, 3.0, 10.0) == 0.0  # within the interval
    assert r.deaf(109.0, 3.0, 10.0) == 5.0
    assert r.deaf(150.0, 3.0, 10.0) == 10.0  # at most the timeout


def test_the_watch_allows_for_a_deaf_master_only_with_many_agents() -> None:
    async def run() -> tuple[float, float]:
        d = Dispatcher(Core())
        d.heartbeat_timeout = 9.0
        d.read_lag.heard("n0", time.time() - 8.0, time.time() - 8.0)  # the last read, 8 s ago
        for n in range(7):
            d.agents[f"n{n}"] = AgentConn(f"n{n}")
        few = d.read_allowance(9.0, time.monotonic())
        d.agents["n7"] = AgentConn("n7")
        many = d.read_allowance(9.0, time.monotonic())
        return few, many

    few, many = asyncio.run(run())
    assert few == 0.0 and 4.9 < many < 5.1  # 8 s without a read, less the 3 s interval


@given(skew=st.floats(-1e4, 1e4), ways=st.lists(st.tuples(st.floats(0.0001, 0.05), st.floats(0, 30)), min_size=1,
                                                 max_size=30), ago=st.floats(0, 60))
def test_a_relays_time_on_our_clock_is_never_earlier_than_true(skew: float, ways: list[tuple[float, float]],
                                                               ago: float) -> None:
    # the relay's clock = ours + skew; each message takes a way and may wait before it is read
    c = SentClock()
    ours = 1_000_000.0
    for way, wait in ways:
        ours += 1.0
        c.heard(ours + skew, ours + way + wait)
    read = ours + 40.0
    true_end = read - ago  # when the relay saw the link end, on our clock
    got = c.ours(true_end + skew, read)
    assert true_end - 1e-6 <= got <= read
    best = min(way + wait for way, wait in ways)
    assert got <= true_end + best + 1e-6  # as early as the fastest message allows


def test_a_relay_that_stamps_nothing_gives_the_read_time() -> None:
    c = SentClock()
    assert c.ours(5.0, 100.0) == 100.0  # no base yet
    c.heard(0.0, 100.0)
    assert c.base is None and c.ours(0.0, 100.0) == 100.0


def test_a_clock_that_stepped_back_is_based_again() -> None:
    c = SentClock(rebase=60)
    c.heard(1000.0, 1000.1)  # base 0.1
    c.heard(900.0, 1100.2)  # stepped back 100 s: read - sent = 200.2, more than the base, but 100 s later
    assert c.base == pytest.approx(200.2)
    assert c.ours(950.0, 1200.0) == pytest.approx(1150.2)
