"""redial.Retry: how a wait or watch tries again while the master (re)starts (pure, fake clock)."""

from __future__ import annotations

import pytest

from pj.client.errors import AuthError, MasterNotFound, MasterUnreachable, PJTimeout, WatchDropped
from pj.client.redial import BACKOFF_MAX_S, Retry, backoff


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


GONE = MasterUnreachable("no master answers at 127.0.0.1:9: Connection refused")


def test_backoff_doubles_from_a_tenth_of_a_second_to_two_seconds() -> None:
    assert [backoff(i) for i in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert backoff(10_000) == BACKOFF_MAX_S


def test_only_a_master_that_is_gone_or_not_there_yet_is_tried_again() -> None:
    r = Retry(60.0, clock=Clock())
    for error in (AuthError("refused the token"), PJTimeout("waited 5 s")):
        with pytest.raises(type(error)) as e:
            r.after(error)
        assert e.value is error
    assert r.after(GONE) == 0.1
    assert r.after(MasterNotFound("no master runs in /wd: /wd/master.json does not exist")) == 0.2
    with pytest.raises(MasterUnreachable) as e2:
        Retry(0.0, clock=Clock()).after(GONE)  # 0: no retry, the error as it came
    assert e2.value is GONE


def test_the_limit_counts_from_the_first_failure_and_a_heard_master_starts_it_again() -> None:
    clock = Clock()
    r = Retry(3.0, clock=clock)
    waited = 0.0
    with pytest.raises(MasterUnreachable) as e:
        while True:
            delay = r.after(GONE)
            assert 0 < delay <= BACKOFF_MAX_S
            clock.now += delay
            waited += delay
    assert waited == pytest.approx(3.0)  # the last pause is cut to the limit, then one last try
    message = str(e.value)
    assert message.startswith("no master answers at 127.0.0.1:9: ")
    assert message.endswith("; no master came back within 3s (reconnect_timeout 3s)") and "\n" not in message
    r.heard()
    assert r.after(GONE) == 0.1  # a new outage: a new count


def test_none_never_gives_up_and_the_waits_timeout_bounds_the_tries() -> None:
    clock = Clock()
    r = Retry(None, clock=clock)
    for _ in range(1000):
        clock.now += r.after(GONE)
    assert clock.now > 100 + 1000
    clock = Clock()
    r = Retry(60.0, timeout=5.0, clock=clock, limit_name="--reconnect-timeout")
    assert r.call_timeout() == 5.0
    with pytest.raises(MasterUnreachable, match=r"within 3.1s \(the wait's timeout of 5s\)$"):
        while True:
            clock.now += r.after(GONE)  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6; the next 2 s would pass 5 s
    assert r.call_timeout() == pytest.approx(1.9)
    assert Retry(1.0, timeout=None).call_timeout() is None


def test_a_dropped_watch_is_opened_again_at_once_whatever_the_reconnect_limit() -> None:
    dropped = WatchDropped("the master at h:1: watch dropped: the client fell 17.0 MB behind ...")
    clock = Clock()
    for limit in (0.0, 60.0, None):
        r = Retry(limit, clock=clock)
        assert [r.after(dropped) for _ in range(5)] == [0.0] * 5  # no back-off: the master is there
        assert r.away_since is None  # nor is the master counted as away
    timed = Retry(60.0, timeout=10.0, clock=clock)
    assert timed.after(dropped) == 0.0
    clock.now += 10.0
    with pytest.raises(WatchDropped):  # the wait's own timeout still bounds it
        timed.after(dropped)


def test_the_masters_drop_of_a_watch_reads_as_watch_dropped_other_exhaustion_does_not() -> None:
    import grpc

    from pj.client.errors import from_rpc_error

    class Failed(grpc.RpcError):
        def __init__(self, details: str) -> None:
            self._details = details

        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

        def details(self) -> str:
            return self._details

    e = from_rpc_error(Failed("watch dropped: the client fell 17.0 MB behind"), "h:1")
    assert isinstance(e, WatchDropped) and str(e) == "the master at h:1: watch dropped: the client fell 17.0 MB behind"
    assert not isinstance(from_rpc_error(Failed("Received message larger than max"), "h:1"), WatchDropped)
