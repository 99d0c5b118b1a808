"""A swarm of simulated agents on the real AgentLink stream of a real pj-master (issue 16).

    scripts/swarm --agents N --cores C --jobs J [--procs P] [--duration 0|fixed:S|lognormal:MU,SIGMA]

The driver starts `python -m pj.master` in a temporary workdir (service mode, as the tests and
scripts/bench_pilot.py do), then P worker processes (this file with --_worker), each running N/P
simulated agents as grpc.aio streams in one event loop, one channel (TCP connection) per agent as
real agents have. Each agent speaks the real agent's protocol (agent/link.py): Register -> Welcome,
then Orders (launch, cancel, withdraw) in and AgentEvents (started, exited, withdrawn) plus a
Heartbeat every Welcome.heartbeat_interval_s out, and a half-close after the master's Shutdown.
A launch whose cores are busy is held and starts, in order, once they free (the master's prefetch).
Nothing runs: a started task "exits" 0 after a duration drawn from --duration.

The driver then submits J one-core /bin/true jobs with the real Client, waits for them, finishes
the master, and prints (and with --json writes) one JSON line: seconds until every agent registered
(reg_s; also how many had registered within 30 s and 60 s), the dispatch rate (tasks / (last exit -
first start), by the agents' clocks), the master's peak RSS (VmHWM) and whether every job SUCCEEDED
in WORKDIR/jobs.jsonl. Exit status 1 when not (or when an agent failed to register with --jobs > 0).

Storms: --vanish FRAC (drop: streams cut; silent: connections kept, nothing said) reports requeue_s,
rerun_s and the rest's exits around it; --reconnect FRAC cuts streams that come back after
--reconnect-away s as a real agent's do (Register.campaign, .running, .ended) and fails if a task of
theirs ran twice or one of them was declared lost. Lateness, always: per worker, the longest gap
between an agent's heartbeat writes, the longest write, the event loop's longest lag
(workers_late), and the nodes the master declared silent or lost that did not vanish (false_*,
from master.log; a problem when any); --master-probe FILE also measures inside the master.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REJOIN_GIVE_UP_S = 60.0  # a reconnecting simulated agent tries again (backoff) this long
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.use_local_subchannel_pool", 1),  # a TCP connection per agent, as real agents have
)

PROFILED_MASTER = """
import cProfile, sys
import pj.master.main as mm
out = sys.argv.pop(1)
sys.argv[0] = "pj-master"
p = cProfile.Profile()
fast = mm.exit_now
def exit_now(code):  # the master ends by os._exit: dump the stats first
    p.disable()
    p.dump_stats(out)
    fast(code)
mm.exit_now = exit_now
p.enable()
sys.exit(mm.main())
"""

# --master-probe: the master as it is, watched from inside (a diagnosis, not a benchmark): how late
# its loop runs (a 0.1 s timer) and how late it reads each heartbeat (now - Heartbeat.time: one
# host, one clock), per second, and every stall the heartbeat watch credited. Its Connect handler's
# read loop is AgentLinkService._read, copied here with the measure added.
PROBED_MASTER = """
import asyncio, json, sys, time
import pj.master.main as mm
from pj.master import runtime, service
out = sys.argv.pop(1)
sys.argv[0] = "pj-master"
lag, late, credits = {}, {}, []
def peak(d, v):
    k = int(time.time())
    d[k] = max(d.get(k, 0.0), v)
async def read(self, conn, context):
    m = self.m
    while True:
        msg = await context.read()
        if msg is service._EOF:
            conn.goodbye = True
            return
        kind = msg.WhichOneof("body")
        if kind == "heartbeat":
            peak(late, time.time() - msg.heartbeat.time)
            m.read_lag.heard(conn.node, msg.heartbeat.time, time.time())
        elif kind == "events":
            ev = msg.events
            m.agent_reports(conn.node, [(s.task_id, s.time) for s in ev.started],
                            [(e.task_id, e.exit_code, service.clip(e.error), e.time, service.convert.usage_from_pb(e),
                              service.clip(e.stderr_tail)) for e in ev.exited], ev.withdrawn)
        conn.last_seen = time.monotonic()
service.AgentLinkService._read = read
async def probe():
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 0.1
        await asyncio.sleep(0.1)
        peak(lag, loop.time() - due)
watch = runtime.Dispatcher.watch_agents
async def watch_agents(self):
    async with asyncio.TaskGroup() as tg:
        t = tg.create_task(probe())
        await watch(self)
        t.cancel()
runtime.Dispatcher.watch_agents = watch_agents
credit = runtime.Dispatcher.credit_stall
def credit_stall(self, late_s, now):
    credits.append((round(time.time(), 3), round(late_s, 3)))
    credit(self, late_s, now)
runtime.Dispatcher.credit_stall = credit_stall
fast = mm.exit_now
def exit_now(code):
    with open(out, "w") as f:
        json.dump({"loop_lag": lag, "hb_read_late": late, "credits": credits}, f)
    fast(code)
mm.exit_now = exit_now
sys.exit(mm.main())
"""


def parse_duration(text: str) -> tuple[str, float, float]:
    """'0', 'fixed:S' or 'lognormal:MU,SIGMA' -> (kind, a, b)."""
    if text in ("0", "fixed:0"):
        return ("fixed", 0.0, 0.0)
    kind, _, rest = text.partition(":")
    try:
        if kind == "fixed":
            return ("fixed", float(rest), 0.0)
        if kind == "lognormal":
            mu, sigma = (float(x) for x in rest.split(","))
            return ("lognormal", mu, sigma)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"--duration {text!r}: want 0, fixed:S or lognormal:MU,SIGMA")


# ----------------------------------------------------------------------------- the worker


class SimAgent:
    """One simulated agent: the real agent's stream protocol, no processes."""

    def __init__(self, name: str, cores: int, stats: dict[str, Any], duration: tuple[str, float, float],
                 rng: random.Random, exit_code: int = 0) -> None:
        self.name = name
        self.exit_code = exit_code
        self.cores = cores
        self.stats = stats
        self.duration = duration
        self.rng = rng
        self.busy: set[int] = set()
        self.running: dict[int, tuple[tuple[int, ...], asyncio.TimerHandle | None]] = {}
        self.held: deque[tuple[int, tuple[int, ...]]] = deque()
        self.started: list[Any] = []
        self.exited: list[Any] = []
        self.withdrawn: list[int] = []
        self.ready = asyncio.Event()
        self.closing = False
        self.welcomed = False
        self.no_retry = False  # --no-retry: a stream that fails before the Welcome is not tried again
        self.vanished = ""  # "drop" or "silent" once it vanished (--vanish)
        self.parked: asyncio.Event | None = None  # a silent agent waits on it, saying nothing
        self.cut: asyncio.Event | None = None  # --reconnect: set to cut its stream
        self.away = 0.0  # --reconnect-away: how long it stays cut off
        self.campaign = ""  # Welcome.campaign
        self.sent: deque[tuple[float, Any]] | None = None  # exits sent (monotonic), to resend (--reconnect)
        self.buckets: dict[int, int] = stats["buckets"]  # exits per 0.1 s
        self.last_beat: float | None = None  # monotonic: when it last sent a heartbeat (this session)
        self.last_send: float | None = None  # ... any message

    def _draw(self) -> float:
        kind, a, b = self.duration
        return a if kind == "fixed" else self.rng.lognormvariate(a, b)

    def _start_held(self, pb: Any) -> None:
        """Start every held launch whose cores are free and not claimed by an earlier held one."""
        claimed: set[int] = set()
        keep: deque[tuple[int, tuple[int, ...]]] = deque()
        for tid, cores in self.held:
            if self.busy.isdisjoint(cores) and claimed.isdisjoint(cores):
                self._start(tid, cores, pb)
            else:
                claimed.update(cores)
                keep.append((tid, cores))
        self.held = keep

    def _start(self, tid: int, cores: tuple[int, ...], pb: Any) -> None:
        now = time.time()
        self.busy.update(cores)
        self.started.append(pb.TaskStarted(task_id=tid, pid=1, time=now))
        st = self.stats
        st["started"] += 1
        if st["first_start"] is None:
            st["first_start"] = now
        d = self._draw()
        handle = None
        if d <= 0:
            self.running[tid] = (cores, None)
            asyncio.get_running_loop().call_soon(self._exit, tid, self.exit_code, pb)
        else:
            handle = asyncio.get_running_loop().call_later(d, self._exit, tid, self.exit_code, pb)
            self.running[tid] = (cores, handle)
        self.ready.set()

    def _exit(self, tid: int, code: int, pb: Any) -> None:
        entry = self.running.pop(tid, None)
        if entry is None:
            return
        cores, handle = entry
        if handle is not None:
            handle.cancel()
        now = time.time()
        self.busy.difference_update(cores)
        self.exited.append(pb.TaskExited(task_id=tid, exit_code=code, time=now))
        self.stats["exited"] += 1
        self.stats["last_end"] = now
        b = self.buckets
        k = int(now * 10)  # exits per 0.1 s, for the rate before and after a vanish
        b[k] = b.get(k, 0) + 1
        self._start_held(pb)
        self.ready.set()

    def orders(self, o: Any, pb: Any) -> None:
        for m in o.launch:
            self.held.append((m.task_id, tuple(m.cores)))
        if o.withdraw:
            gone = set(o.withdraw)
            kept = deque(h for h in self.held if h[0] not in gone)
            self.withdrawn.extend(t for t, _ in self.held if t in gone)
            self.held = kept
        for tid in o.cancel:
            if tid in self.running:
                self._exit(tid, -15, pb)
            else:
                for h in list(self.held):
                    if h[0] == tid:
                        self.held.remove(h)
                        self.exited.append(pb.TaskExited(task_id=tid, exit_code=-15, time=time.time(),
                                                         error="canceled before it started"))
        self._start_held(pb)
        self.ready.set()

    def vanish(self, mode: str, parked: asyncio.Event) -> tuple[int, int]:
        """The node dies (its tasks with it): ``drop``, its stream is cut (the caller cancels its
        task, which closes the channel); ``silent``, the TCP connection stays but nothing is read or
        written any more (a hung node: only the heartbeat timeout finds it). (Tasks it ran, held.)"""
        unsent = {m.task_id for m in self.started}  # the master never heard these started
        gone = (sum(t not in unsent for t in self.running), len(self.held) + len(unsent))
        self.stats["exited"] -= len(self.exited)  # exits it never reported: the master runs them again
        for _cores, handle in self.running.values():
            if handle is not None:
                handle.cancel()
        self.running.clear()
        self.held.clear()
        self.started, self.exited, self.withdrawn = [], [], []
        self.vanished = mode
        self.parked = parked
        self.ready.set()
        return gone

    def shutdown(self, pb: Any) -> None:
        """The master's Shutdown: what runs is killed, what is held never starts (as the agent)."""
        self.closing = True
        for tid in list(self.running):
            self._exit(tid, -15, pb)
        now = time.time()
        for tid, _ in self.held:
            self.exited.append(pb.TaskExited(task_id=tid, exit_code=-1, time=now,
                                             error="not started: the agent is shutting down"))
        self.held.clear()
        self.ready.set()

    async def serve(self, address: str, token: str, grpc: Any, pb: Any, rpc: Any,
                    welcomed: Any, give_up_at: float) -> None:
        """Connect and serve; a stream that fails before the Welcome is tried again after the real
        agent's backoff (agent/reconnect.py) until ``give_up_at`` (monotonic). A stream cut by
        --reconnect is made again after ``away`` s as the real agent's reconnect does (its tasks
        run on meanwhile), with the campaign, the tasks running and those that ended."""
        rejoin: str | None = None
        while await self._dial(address, token, grpc, pb, rpc, welcomed, give_up_at, rejoin):
            rejoin = self.campaign
            await asyncio.sleep(self.away)
            give_up_at = time.monotonic() + REJOIN_GIVE_UP_S

    async def _dial(self, address: str, token: str, grpc: Any, pb: Any, rpc: Any,
                    welcomed: Any, give_up_at: float, rejoin: str | None) -> bool:
        """One session, tried again while it fails before the Welcome; True: it was cut (--reconnect)."""
        from pj.agent.reconnect import backoff_delay

        attempt = 0
        while True:
            try:
                return await self._session(address, token, grpc, pb, rpc, welcomed, rejoin)
            except grpc.aio.AioRpcError as e:
                if self.welcomed or time.monotonic() > give_up_at or self.no_retry:
                    if not self.welcomed:
                        self.stats.setdefault("failed_codes", {}).setdefault(e.code().name, 0)
                        self.stats["failed_codes"][e.code().name] += 1
                    raise
                self.stats["retries"] += 1
                self.stats.setdefault("retry_codes", {}).setdefault(e.code().name, 0)
                self.stats["retry_codes"][e.code().name] += 1
                await asyncio.sleep(backoff_delay(attempt))
                attempt += 1

    def _register(self, pb: Any, rejoin: str | None) -> tuple[Any, tuple[int, int]]:
        """The Register, and (started, exited) counts of the pending reports it covers. A reconnect
        (agent/link.py, Link._register_message) names the campaign, the tasks running (never the
        held launches) and every exit the master may have missed: those sent within the resend
        window and those pending."""
        reg = pb.Register(node=self.name, cores=self.cores, hostname="swarm", pid=os.getpid(),
                          version="swarm")
        if rejoin is None:
            return reg, (0, 0)
        reg.campaign = rejoin
        reg.running.extend(self.running)
        reg.ended.extend([*self._resend(), *self.exited])
        self.stats["rejoin_running"] += len(reg.running)
        self.stats["rejoin_ended"] += len(self.exited)
        return reg, (len(self.started), len(self.exited))

    def _resend(self) -> list[Any]:
        from pj.agent.reconnect import RESEND_WINDOW_S

        sent = self.sent
        if sent is None:
            return []
        horizon = time.monotonic() - RESEND_WINDOW_S
        while sent and sent[0][0] < horizon:
            sent.popleft()
        return [e for _, e in sent]

    def _rejoined(self, taken: tuple[int, int]) -> None:
        """Welcomed back: the reports the Register covered leave the pending lists (Link._rejoined)."""
        n_started, n_exited = taken
        del self.started[:n_started]
        self._remember(self.exited[:n_exited])
        del self.exited[:n_exited]

    def _remember(self, exited: list[Any]) -> None:
        if self.sent is not None and exited:
            now = time.monotonic()
            self.sent.extend((now, e) for e in exited)

    def cut_now(self) -> tuple[int, int]:
        """--reconnect: cut the stream now (the session ends it). (Tasks running, held launches.)"""
        assert self.cut is not None
        self.cut.set()
        return len(self.running), len(self.held)

    def _cut_off(self) -> None:
        """The stream broke (agent/runner.py, Runner.link_lost): held launches are dropped (never
        started, never reported), and withdrawn reports not sent; the tasks run on."""
        self.held.clear()
        self.withdrawn.clear()
        self.welcomed = False
        self.closing = False

    async def _session(self, address: str, token: str, grpc: Any, pb: Any, rpc: Any,
                       welcomed: Any, rejoin: str | None) -> bool:
        """One stream to its end; True when --reconnect cut it (its tasks run on)."""
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            stub = rpc.AgentLinkStub(channel)
            call = stub.Connect(metadata=(("pj-token", token),))
            reg, taken = self._register(pb, rejoin)
            await call.write(pb.AgentMessage(register=reg))
            first = await call.read()
            if not isinstance(first, pb.MasterMessage) or first.WhichOneof("body") != "welcome":
                raise RuntimeError(f"{self.name}: no welcome: {first!r}")
            self.welcomed = True
            self.campaign = first.welcome.campaign
            if rejoin is not None:
                self._rejoined(taken)
            welcomed(self.name, rejoin is not None)
            beat = first.welcome.heartbeat_interval_s
            self.last_beat = self.last_send = time.monotonic()  # the master counts from the Register
            try:
                return await self._serve_call(call, beat, pb)
            finally:
                self.session_ended()

    async def _serve_call(self, call: Any, beat: float, pb: Any) -> bool:
        cut = self.cut if self.cut is not None and not self.cut.is_set() else None
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(self._write(call, beat, pb))
            reader = tg.create_task(self._read(call, pb))
            cutter = tg.create_task(cut.wait()) if cut is not None else None
            await asyncio.wait({reader} if cutter is None else {reader, cutter},
                               return_when=asyncio.FIRST_COMPLETED)
            if cutter is not None and cutter.done():  # the channel closes on the way out
                reader.cancel()
                writer.cancel()
                self._cut_off()
                return True
            if cutter is not None:
                cutter.cancel()
            self.closing = True
            self.ready.set()
            await writer
        return False

    async def _read(self, call: Any, pb: Any) -> None:
        while True:
            msg = await call.read()
            if self.parked is not None:  # silent: read no more (the call stays open)
                await self.parked.wait()
                return
            if not isinstance(msg, pb.MasterMessage):
                return
            kind = msg.WhichOneof("body")
            if kind == "orders":
                self.orders(msg.orders, pb)
            elif kind == "shutdown":
                self.shutdown(pb)

    async def _write(self, call: Any, beat: float, pb: Any) -> None:
        next_beat = time.monotonic() + beat if beat > 0 else None
        while True:
            if self.parked is not None:  # silent: write no more, not even a heartbeat
                await self.parked.wait()
                return
            if not self.ready.is_set():
                delay = None if next_beat is None else max(0.0, next_beat - time.monotonic())
                try:
                    async with asyncio.timeout(delay):
                        await self.ready.wait()
                except TimeoutError:
                    pass
            self.ready.clear()
            if self.parked is not None:
                continue
            if self.started or self.exited or self.withdrawn:
                await asyncio.sleep(0)  # let the exits already due join this message
                ev = pb.AgentEvents(started=self.started, exited=self.exited, withdrawn=self.withdrawn)
                self._remember(self.exited)  # counted as sent before the write (agent/link.py)
                self.started, self.exited, self.withdrawn = [], [], []
                self._sent(beat=False)  # when the write began: a late loop may finish it late
                await self._timed_write(call, pb.AgentMessage(events=ev))
            elif self.closing:
                await call.done_writing()
                return
            if next_beat is not None and time.monotonic() >= next_beat:
                self._sent(beat=True)
                await self._timed_write(call, pb.AgentMessage(heartbeat=pb.Heartbeat(time=time.time())))
                next_beat = time.monotonic() + beat

    async def _timed_write(self, call: Any, msg: Any) -> None:
        """A write, and the longest any took (``write_max_s``): a write blocked by flow control or
        by a starved transport shows here, not as a gap between the writes' starts."""
        t = time.monotonic()
        await call.write(msg)
        gap(self.stats, "write_max_s", t, time.monotonic())

    def _sent(self, beat: bool) -> None:
        """A message went out: the longest gaps between heartbeats and between messages (stats)."""
        now = time.monotonic()
        gap(self.stats, "send_max_gap_s", self.last_send, now)
        self.last_send = now
        if beat:
            gap(self.stats, "hb_max_gap_s", self.last_beat, now)
            self.last_beat = now

    def session_ended(self) -> None:
        """The stream ended (however): the time since the last heartbeat and message counts as a gap
        too (an agent the master cut off for silence sends nothing more)."""
        now = time.monotonic()
        if self.last_beat is not None and not self.vanished:
            gap(self.stats, "hb_max_gap_s", self.last_beat, now)
            gap(self.stats, "send_max_gap_s", self.last_send, now)
        self.last_beat = self.last_send = None


def gap(stats: dict[str, Any], key: str, since: float | None, now: float) -> None:
    if since is not None and now - since > stats[key]:
        stats[key] = now - since
        stats[key + "_at"] = time.time()


async def run_worker(a: argparse.Namespace) -> int:
    import grpc
    import grpc.aio

    from pj.v1 import pj_pb2 as pb
    from pj.v1 import pj_pb2_grpc as rpc

    stats: dict[str, Any] = {"started": 0, "exited": 0, "first_start": None, "last_end": None, "retries": 0,
                             "buckets": {}, "hb_max_gap_s": 0.0, "send_max_gap_s": 0.0, "loop_lag_max_s": 0.0,
                             "write_max_s": 0.0,
                             "loop_lags_over_1s": 0, "buckets_cut": {}, "rejoin_running": 0, "rejoin_ended": 0}
    rng = random.Random(a.first)
    agents = [SimAgent(f"s{i:05d}", a.cores, stats, parse_duration(a.duration), rng, a.exit_code)
              for i in range(a.first, a.first + a.count)]
    out = sys.stdout

    def welcomed(name: str, back: bool) -> None:
        out.write(f"B {time.time():.6f} {name}\n" if back else f"W {time.time():.6f}\n")
        out.flush()

    for ag in agents:
        ag.no_retry = a.no_retry
    doomed = pick(agents, a.vanish)
    spared = set(doomed)
    cut = pick([ag for ag in agents if ag not in spared], a.reconnect)
    for ag in cut:
        ag.cut, ag.away, ag.sent, ag.buckets = asyncio.Event(), a.reconnect_away, deque(), stats["buckets_cut"]
    failed = 0
    give_up_at = time.monotonic() + a.register_timeout

    tasks: dict[str, asyncio.Task[None]] = {}
    parked = asyncio.Event()  # silent vanished agents hold their connection open until the others end
    live = [len(agents)]

    async def one(ag: SimAgent) -> None:
        nonlocal failed
        try:
            await ag.serve(a.address, a.token, grpc, pb, rpc, welcomed, give_up_at)
        except asyncio.CancelledError:
            if ag.vanished != "drop":
                raise
        except Exception as e: # counted and reported, the swarm goes on
            if not ag.vanished:  # a vanished agent's stream ends as it may
                failed += 1
                if failed <= 5:
                    print(f"E {ag.name}: {e!r}"[:300], file=sys.stderr, flush=True)
        finally:
            if ag.vanished != "silent":
                live[0] -= 1
                if live[0] == 0:
                    parked.set()

    def vanish() -> None:
        """SIGUSR1 from the driver: --vanish of this worker's agents vanish now."""
        chosen = doomed
        if not chosen:
            return
        ran = held = running_on = 0
        for ag in chosen:
            r, h = ag.vanish(a.vanish_mode, parked)
            ran, held, running_on = ran + r, held + h, running_on + (r > 0)
            if a.vanish_mode == "drop":
                tasks[ag.name].cancel()
            else:
                live[0] -= 1
        if live[0] == 0:
            parked.set()
        out.write(f"V {time.time():.6f} {len(chosen)} {running_on} {ran} {held} "
                  f"{','.join(ag.name for ag in chosen)}\n")
        out.flush()

    def reconnect() -> None:
        """SIGUSR2 from the driver: --reconnect of this worker's agents cut their streams now."""
        if not cut:
            return
        got = [ag.cut_now() for ag in cut]
        out.write(f"C {time.time():.6f} {len(cut)} {sum(r for r, _ in got)} {sum(h for _, h in got)} "
                  f"{','.join(ag.name for ag in cut)}\n")
        out.flush()

    async def progress() -> None:
        while True:
            out.write(f"P {stats['exited']}\n")
            out.flush()
            await asyncio.sleep(0.1)

    if a.vanish:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, vanish)
    if a.reconnect:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, reconnect)
    async with asyncio.TaskGroup() as tg:
        ticker = tg.create_task(progress()) if a.vanish or a.reconnect else None
        lag = tg.create_task(loop_lag(stats))
        for ag in agents:
            tasks[ag.name] = tg.create_task(one(ag))
            await asyncio.sleep(0)  # let connections start as they are made
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        lag.cancel()
        if ticker is not None:
            ticker.cancel()
    out.write("R " + json.dumps({**stats, "failed": failed}) + "\n")
    out.flush()
    return 0


def pick(agents: list[SimAgent], frac: float) -> list[SimAgent]:
    """``frac`` of ``agents``, spread evenly over them."""
    n = round(frac * len(agents))
    if n <= 0:
        return []
    step = len(agents) / n
    return [agents[int(i * step)] for i in range(n)]


LAG_PERIOD_S = 0.1


async def loop_lag(stats: dict[str, Any]) -> None:
    """How late this worker's event loop runs: a timer due every LAG_PERIOD_S, the most it fired
    late (``loop_lag_max_s``, and when: ``_at``) and how often by over 1 s. A late loop sends late
    heartbeats: an agent the master declares lost may be the swarm's fault, not the master's."""
    loop = asyncio.get_running_loop()
    due = loop.time() + LAG_PERIOD_S
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        late = loop.time() - due
        if late > stats["loop_lag_max_s"]:
            stats["loop_lag_max_s"] = late
            stats["loop_lag_max_s_at"] = time.time()
        if late > 1.0:
            stats["loop_lags_over_1s"] += 1
        due = loop.time() + LAG_PERIOD_S


# ----------------------------------------------------------------------------- the driver


def vm_kb(pid: int, field: str) -> int:
    try:
        m = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
        return int(m.group(1)) if m else 0
    except OSError:
        return 0


def check_report(report: Path, n: int) -> str | None:
    """Every job of WORKDIR/jobs.jsonl SUCCEED, and n of them: read line by line (a 1M-job report
    is ~300 MB of JSON; only the count and the first few bad names are kept)."""
    jobs = 0
    bad: list[str] = []
    nbad = 0
    try:
        with report.open() as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                if "job" in r:
                    continue
                jobs += 1
                if r.get("state") != "SUCCEED":
                    nbad += 1
                    if len(bad) < 5:
                        bad.append(r.get("name"))
    except (OSError, ValueError) as e:
        return f"cannot read {report}: {e}"
    if jobs != n:
        return f"{report}: {jobs} jobs, expected {n}"
    return f"{report}: {nbad} not SUCCEED, e.g. {bad}" if nbad else None


def wait_counts(c: Any, timeout: float) -> int:
    """Wait for every job through a counts-only Watch (cheap for the master and here at 1M jobs,
    where Client.wait would learn every name); return how many did not SUCCEED."""
    deadline = time.monotonic() + timeout
    with c.watch(counts_only=True) as w:
        for ev in w:
            if ev.watched_unfinished == 0 and ev.jobs is not None:
                return int(ev.watched_total - ev.jobs.get("SUCCEED", 0))
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:g} s: {ev.watched_unfinished} jobs unfinished")
    raise RuntimeError("the master ended the watch before every job ended")


class Worker:
    def __init__(self, cmd: list[str], log: Path) -> None:
        self.welcomes: list[float] = []
        self.result: dict[str, Any] | None = None
        self.progress = 0  # tasks its agents ended so far (with --vanish)
        self.vanished_names: list[str] = []
        # (when, agents, those running a task, tasks they ran, tasks they held not started)
        self.vanished: tuple[float, int, int, int, int] | None = None
        # --reconnect: (when, agents, tasks they ran, launches they held), their names, when each came back
        self.cut: tuple[float, int, int, int] | None = None
        self.cut_names: list[str] = []
        self.back: dict[str, float] = {}
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
                                  stdin=subprocess.DEVNULL)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            if line.startswith("W "):
                self.welcomes.append(float(line[2:]))
            elif line.startswith("P "):
                self.progress = int(line[2:])
            elif line.startswith("V "):
                t, *n, names = line[2:].split()
                self.vanished = (float(t), *map(int, n))  # type: ignore[assignment]
                self.vanished_names = names.split(",")
            elif line.startswith("C "):
                t, *n, names = line[2:].split()
                self.cut = (float(t), *map(int, n))  # type: ignore[assignment]
                self.cut_names = names.split(",")
            elif line.startswith("B "):
                t, name = line[2:].split()
                self.back[name] = float(t)
            elif line.startswith("R "):
                self.result = json.loads(line[2:])


def drive(a: argparse.Namespace) -> int:
    from pj.client import Client

    tmp = Path(tempfile.mkdtemp(prefix="pj-swarm-", dir=a.tmp))
    wd = tmp / "workdir"
    py = sys.executable
    # cProfile's own -m writes nothing: the master ends by os._exit (common/fastexit.py).
    prof = ["-c", PROFILED_MASTER, str(Path(a.master_profile).resolve())] if a.master_profile else ["-m", "pj.master"]
    if a.master_probe:
        prof = ["-c", PROBED_MASTER, str(Path(a.master_probe).resolve())]
    hb = ["--heartbeat-timeout", f"{a.heartbeat_timeout:g}s"] if a.heartbeat_timeout else []
    master = subprocess.Popen([py, *prof, "--workdir", str(wd), "--log-level", "warning", *hb],
                              stdout=open(tmp / "master.log", "w"), stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    workers: list[Worker] = []
    hwm = [0]
    done = threading.Event()

    def poll_rss() -> None:
        while not done.wait(0.2):
            hwm[0] = max(hwm[0], vm_kb(master.pid, "VmHWM"))

    threading.Thread(target=poll_rss, daemon=True).start()
    ok = False
    out: dict[str, Any] = {"agents": a.agents, "cores": a.cores, "jobs": a.jobs, "procs": a.procs,
                           "duration": a.duration}
    try:
        info = wd / "master.json"
        deadline = time.monotonic() + 60
        while not info.exists() or not (wd / "token").exists():
            if time.monotonic() > deadline or master.poll() is not None:
                raise RuntimeError(f"the master did not start; see {tmp / 'master.log'}")
            time.sleep(0.05)
        time.sleep(0.1)
        meta = json.loads(info.read_text())
        address = str(meta["address"])
        token = (wd / "token").read_text().strip()
        t0 = time.time()
        per = -(-a.agents // a.procs)
        for k in range(a.procs):
            first, count = k * per, min(per, a.agents - k * per)
            if count <= 0:
                break
            workers.append(Worker([py, str(HERE), "--_worker", "--address", address, f"--token={token}",
                                   "--first", str(first), "--count", str(count), "--cores", str(a.cores),
                                   "--duration", a.duration, "--exit-code", str(a.exit_code),
                                   "--register-timeout", str(a.register_timeout),
                                   *(["--no-retry"] if a.no_retry else []),
                                   *vanish_args(a), *reconnect_args(a)], tmp / f"worker{k}.log"))
        deadline = time.monotonic() + a.register_timeout
        while sum(len(w.welcomes) for w in workers) < a.agents and time.monotonic() < deadline:
            if any(w.p.poll() is not None for w in workers):
                break
            time.sleep(0.05)
        welcomes = sorted(t - t0 for w in workers for t in w.welcomes)
        out["registered"] = len(welcomes)
        out["reg_s"] = round(welcomes[-1], 3) if len(welcomes) == a.agents else None
        out["reg_within_30s"] = sum(t <= 30 for t in welcomes)
        out["reg_within_60s"] = sum(t <= 60 for t in welcomes)
        with Client(wd, timeout=600) as c:
            out["resources_nodes"] = len(c.resources().nodes)
            if a.jobs:
                if len(welcomes) < a.agents:
                    raise RuntimeError(f"only {len(welcomes)} of {a.agents} agents registered "
                                       f"within {a.register_timeout} s")
                retries = a.retries if a.retries is not None else (1 if a.vanish else 0)
                extra = {"retries": retries} if retries else {}
                jobs = [{"name": f"t{j}", "exec": "/bin/true", "cores": 1, **extra} for j in range(a.jobs)]
                t1 = time.time()
                if a.vanish:
                    threading.Thread(target=trigger, args=(a.vanish_at * a.jobs, signal.SIGUSR1, workers, done),
                                     daemon=True).start()
                if a.reconnect:
                    threading.Thread(target=trigger, args=(a.reconnect_at * a.jobs, signal.SIGUSR2, workers, done),
                                     daemon=True).start()
                c.submit(jobs)  # one call: the Client sends it in parts (calls.SUBMIT_CHUNK_JOBS)
                out["submit_s"] = round(time.time() - t1, 3)
                del jobs
                out["not_succeeded"] = wait_counts(c, a.timeout)
                out["wait_s"] = round(time.time() - t1, 3)
            hwm[0] = max(hwm[0], vm_kb(master.pid, "VmHWM"))
            c.finish()
        master.wait(timeout=a.timeout)
        for w in workers:
            w.p.wait(timeout=120)
            w.t.join(10)
        done.set()
        out["master_hwm_mb"] = round(hwm[0] / 1024, 1)
        out["master_rc"] = master.returncode
        res = [w.result for w in workers if w.result is not None]
        out["agent_failures"] = sum(r["failed"] for r in res) + (len(workers) - len(res))
        out["register_retries"] = sum(r["retries"] for r in res)
        codes: dict[str, int] = {}
        for r in res:
            for k, v in r.get("retry_codes", {}).items():
                codes[k] = codes.get(k, 0) + v
        out["retry_codes"] = codes
        failed_codes: dict[str, int] = {}
        for r in res:
            for k, v in r.get("failed_codes", {}).items():
                failed_codes[k] = failed_codes.get(k, 0) + v
        out["failed_codes"] = failed_codes
        starts = [r["first_start"] for r in res if r["first_start"]]
        ends = [r["last_end"] for r in res if r["last_end"]]
        tasks = sum(r["exited"] for r in res)
        out["tasks"] = tasks
        if starts and ends and max(ends) > min(starts):
            out["dispatch_s"] = round(max(ends) - min(starts), 3)
            out["tasks_per_s"] = round(tasks / (max(ends) - min(starts)), 1)
        problem = None
        out["workers_late"] = [lateness(r, t0) for r in res]
        if a.master_probe:
            out["master_probe"] = probe_summary(Path(a.master_probe), t0)
        gone = {n for w in workers for n in w.vanished_names}
        losses = master_losses(tmp / "master.log", gone)
        del losses["names"]
        out.update(losses)
        if a.vanish:
            problem = storm_figures(out, res, workers, wd / "jobs.jsonl", t0)
        if a.reconnect:
            problem = reconnect_figures(out, res, workers, wd / "jobs.jsonl", tmp / "master.log") or problem
            if not a.vanish and out["tasks"] != a.jobs:  # a task run twice would exit twice
                problem = problem or f"--reconnect: {out['tasks']} tasks ran for {a.jobs} jobs"
        if a.jobs:
            problem = check_report(wd / "jobs.jsonl", a.jobs) or problem
            if out["resources_nodes"] != a.agents:
                problem = problem or f"Resources shows {out['resources_nodes']} nodes, expected {a.agents}"
            if out["agent_failures"]:
                problem = problem or f"{out['agent_failures']} simulated agents failed (see worker*.log)"
            if master.returncode != 0:
                problem = problem or f"the master exit status {master.returncode}"
            if out["false_silent"] or out["false_lost"]:
                problem = problem or (f"the master declared {out['false_silent']} live agents silent, "
                                      f"{out['false_lost']} lost (see workers_late)")
        out["problem"] = problem
        ok = problem is None
    except Exception as e: # reported as the run's problem
        out["problem"] = f"{type(e).__name__}: {e}"
    finally:
        done.set()
        for p in [master, *(w.p for w in workers)]:
            if p.poll() is None:
                p.kill()
                p.wait()
        if ok and not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            out["kept"] = str(tmp)
    line = json.dumps(out)
    print(line, flush=True)
    if a.json:
        Path(a.json).write_text(line + "\n")
    return 0 if ok else 1


LOSS_LINES = (re.compile(r"node (\S+) lost: its agent said nothing"), re.compile(r"node (\S+) did not come back within"))


def master_losses(log: Path, gone: set[str]) -> dict[str, Any]:
    """From the master's log: nodes it declared silent (--heartbeat-timeout) and nodes it declared
    lost (their grace over), and how many of each did not vanish (``false_*``: live agents)."""
    silent: set[str] = set()
    lost: set[str] = set()
    try:
        with log.open() as f:
            for line in f:
                for found, rx in zip((silent, lost), LOSS_LINES, strict=True):
                    m = rx.search(line)
                    if m:
                        found.add(m.group(1))
    except OSError:
        pass
    return {"declared_silent": len(silent), "false_silent": len(silent - gone),
            "declared_lost": len(lost), "false_lost": len(lost - gone), "names": silent | lost}


def probe_summary(path: Path, t0: float) -> dict[str, Any]:
    """--master-probe's file in short: the master loop's largest lag, the latest it read a heartbeat
    (each with when: seconds after the workers started) and the stalls its watch credited."""
    try:
        p = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"error": str(e)}
    out: dict[str, Any] = {}
    for key in ("loop_lag", "hb_read_late"):
        series = {int(k): v for k, v in p[key].items()}
        if series:
            at = max(series, key=series.__getitem__)
            out[key + "_max_s"], out[key + "_max_at"] = round(series[at], 3), round(at - t0)
    out["credited"] = len(p["credits"])
    out["credited_s"] = round(sum(c[1] for c in p["credits"]), 3)
    return out


def lateness(r: dict[str, Any], t0: float) -> dict[str, Any]:
    """One worker's lateness: its agents' longest gap between heartbeats and between messages sent,
    its event loop's longest lag, each with when it ended (``_at``: seconds after the workers started)."""
    out: dict[str, Any] = {}
    for k in ("hb_max_gap_s", "send_max_gap_s", "write_max_s", "loop_lag_max_s"):
        out[k] = round(r.get(k, 0.0), 3)
        if k + "_at" in r:
            out[k + "_at"] = round(r[k + "_at"] - t0, 3)
    out["loop_lags_over_1s"] = r.get("loop_lags_over_1s", 0)
    return out


def vanish_args(a: argparse.Namespace) -> list[str]:
    return ["--vanish", str(a.vanish), "--vanish-mode", a.vanish_mode] if a.vanish else []


def reconnect_args(a: argparse.Namespace) -> list[str]:
    return ["--reconnect", str(a.reconnect), "--reconnect-away", str(a.reconnect_away)] if a.reconnect else []


def trigger(goal: float, sig: signal.Signals, workers: list[Worker], done: threading.Event) -> None:
    """Once ``goal`` jobs have ended, send every worker ``sig``: SIGUSR1, its --vanish share vanishes;
    SIGUSR2, its --reconnect share cuts its streams."""
    while not done.wait(0.02):
        if sum(w.progress for w in workers) >= goal:
            for w in workers:
                w.p.send_signal(sig)
            return


def storm_figures(out: dict[str, Any], res: list[dict[str, Any]], workers: list[Worker], report: Path,
                  t0: float) -> str | None:
    """What a --vanish storm did: when it struck, the tasks the vanished agents held, how long until
    the master had queued them again (the last attempt ended by ``node lost``, jobs.jsonl) and until
    they had run again, and the rate of the rest in the second before and after. A problem or None."""
    marks = [w.vanished for w in workers if w.vanished is not None]
    if not marks:
        return "--vanish: no agent vanished (the jobs ended before --vanish-at?)"
    tv = min(m[0] for m in marks)
    out["vanish_at_s"] = round(tv - t0, 3)
    out["vanished_agents"] = sum(m[1] for m in marks)
    out["vanished_running_a_task"] = sum(m[2] for m in marks)
    out["vanished_tasks_running"] = sum(m[3] for m in marks)
    out["vanished_tasks_held"] = sum(m[4] for m in marks)
    buckets: dict[int, int] = {}
    for r in res:
        for k, v in r.get("buckets", {}).items():
            buckets[int(k)] = buckets.get(int(k), 0) + v
    k0 = int(tv * 10)
    out["rate_before"] = sum(buckets.get(k, 0) for k in range(k0 - 10, k0))
    out["rate_after"] = sum(buckets.get(k, 0) for k in range(k0, k0 + 10))
    busy = sorted(k for k in buckets if k >= k0)
    gaps = [(b - a_) / 10 for a_, b in itertools.pairwise(busy)]
    out["max_gap_after_s"] = max(gaps, default=0.0)
    try:
        rows = [json.loads(x) for x in report.read_text().splitlines() if x.strip()]
    except (OSError, ValueError) as e:
        return f"cannot read {report}: {e}"
    lost = [(r, at) for r in rows if "job" not in r for at in r.get("attempts") or ()
            if str(at.get("reason", "")).startswith("node lost")]
    out["lost_nodes"] = len({n for _, at in lost for n in at["nodes"]})
    out["requeued_lost"] = len(lost)
    if lost:
        out["requeue_s"] = round(max(at["ended"] for _, at in lost) - tv, 3)
        out["requeue_spread_s"] = round(max(at["ended"] for _, at in lost) - min(at["ended"] for _, at in lost), 3)
        out["rerun_s"] = round(max(max(r["times"].values()) for r, _ in lost) - tv, 3)
    gone = {n for w in workers for n in w.vanished_names}
    lost_nodes = {n for _, at in lost for n in at["nodes"]}
    if lost_nodes - gone:
        return f"nodes lost that did not vanish: {sorted(lost_nodes - gone)[:5]}"
    if out["vanished_tasks_running"] and not lost:
        return f"{out['vanished_tasks_running']} tasks ran on vanished agents, but jobs.jsonl shows no node lost"
    return None


def rate_around(res: list[dict[str, Any]], key: str, t: float) -> tuple[int, int]:
    """Exits counted in ``key`` (per 0.1 s, every worker) in the second before ``t`` and after."""
    buckets: dict[int, int] = {}
    for r in res:
        for k, v in r.get(key, {}).items():
            buckets[int(k)] = buckets.get(int(k), 0) + v
    k0 = int(t * 10)
    return sum(buckets.get(k, 0) for k in range(k0 - 10, k0)), sum(buckets.get(k, 0) for k in range(k0, k0 + 10))


def reconnect_figures(out: dict[str, Any], res: list[dict[str, Any]], workers: list[Worker], report: Path,
                      log: Path) -> str | None:
    """What a --reconnect did: when the streams were cut, what the agents ran and held then, how
    long until every one was welcomed back (the master reconciles a Register before its Welcome),
    the rest's exits in the second before and after the cut; and what a user checks: no task of
    theirs ran twice (no attempt on their nodes in jobs.jsonl), none of them declared lost."""
    marks = [w.cut for w in workers if w.cut is not None]
    if not marks:
        return "--reconnect: no stream was cut (the jobs ended before --reconnect-at?)"
    tc = min(m[0] for m in marks)
    names = {n for w in workers for n in w.cut_names}
    back = {n: t for w in workers for n, t in w.back.items()}
    out["reconnect_agents"] = sum(m[1] for m in marks)
    out["reconnect_tasks_running"] = sum(m[2] for m in marks)
    out["reconnect_launches_held"] = sum(m[3] for m in marks)
    out["rejoin_running"] = sum(r.get("rejoin_running", 0) for r in res)
    out["rejoin_ended"] = sum(r.get("rejoin_ended", 0) for r in res)
    out["reconnected"] = len(back)
    if back:
        out["reconnect_s"] = round(max(back.values()) - tc, 3)  # --reconnect-away included
        out["reconnect_spread_s"] = round(max(back.values()) - min(back.values()), 3)
    out["reconnect_rate_before"], out["reconnect_rate_after"] = rate_around(res, "buckets", tc)
    reruns = 0
    try:
        with report.open() as f:
            for line in f:
                r = json.loads(line) if line.strip() else {}
                reruns += any(names.intersection(at.get("nodes", ())) for at in r.get("attempts") or ()
                              if at.get("state") != "SUCCEED")
    except (OSError, ValueError) as e:
        return f"cannot read {report}: {e}"
    out["reconnect_reruns"] = reruns
    declared = master_losses(log, set())
    out["reconnect_declared_lost"] = sum(1 for n in names if n in declared["names"])
    if len(back) != len(names):
        return f"--reconnect: {len(names) - len(back)} of {len(names)} cut agents were not welcomed back"
    if reruns:
        return f"--reconnect: {reruns} tasks of the reconnecting agents ran again (jobs.jsonl attempts)"
    if out["reconnect_declared_lost"]:
        return f"--reconnect: the master declared {out['reconnect_declared_lost']} reconnecting agents lost"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/swarm", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=64, metavar="N")
    ap.add_argument("--cores", type=int, default=8, metavar="C")
    ap.add_argument("--jobs", type=int, default=3000, metavar="J", help="0: measure registration only")
    ap.add_argument("--procs", type=int, default=1, metavar="P", help="worker processes (default 1)")
    ap.add_argument("--duration", default="0", help="0 | fixed:S | lognormal:MU,SIGMA (default 0)")
    ap.add_argument("--exit-code", type=int, default=0, metavar="N",
                    help="every simulated task exits N (default 0; non-zero shows the check failing)")
    ap.add_argument("--register-timeout", type=float, default=120, metavar="S")
    ap.add_argument("--timeout", type=float, default=1800, metavar="S")
    ap.add_argument("--no-retry", action="store_true",
                    help="a stream that fails before the Welcome is not tried again (counted in failed_codes)")
    ap.add_argument("--vanish", type=float, default=0.0, metavar="FRAC",
                    help="a storm: this fraction of the agents vanish at once, their tasks with them")
    ap.add_argument("--vanish-at", type=float, default=0.5, metavar="FRAC",
                    help="... once this fraction of the jobs has ended (default 0.5)")
    ap.add_argument("--vanish-mode", choices=("drop", "silent"), default="drop",
                    help="drop: their streams are cut (a killed node); silent: the connection stays, "
                         "nothing more is said (a hung node: only the heartbeat timeout finds it)")
    ap.add_argument("--reconnect", type=float, default=0.0, metavar="FRAC",
                    help="this fraction of the agents (none that vanish) cut their streams at once and "
                         "come back as a real agent does: Register with the campaign, the tasks still "
                         "running (they run on meanwhile) and those that ended")
    ap.add_argument("--reconnect-at", type=float, default=0.5, metavar="FRAC",
                    help="... once this fraction of the jobs has ended (default 0.5)")
    ap.add_argument("--reconnect-away", type=float, default=1.0, metavar="S",
                    help="... after staying away S seconds (default 1; keep it well under the grace, "
                         "--heartbeat-timeout, default 30 s)")
    ap.add_argument("--heartbeat-timeout", type=float, default=0.0, metavar="S",
                    help="the master's --heartbeat-timeout (also its grace for a cut-off node)")
    ap.add_argument("--retries", type=int, metavar="N",
                    help="each job's retries (default 0; 1 with --vanish: a task on a lost node uses one)")
    ap.add_argument("--json", metavar="FILE", help="also write the result line there")
    ap.add_argument("--master-profile", metavar="FILE", help="run the master under cProfile, its stats to FILE")
    ap.add_argument("--master-probe", metavar="FILE",
                    help="measure inside the master: its loop's lag and how late it reads heartbeats, per "
                         "second, and the stalls its heartbeat watch credited, as JSON to FILE")
    ap.add_argument("--tmp", metavar="DIR")
    ap.add_argument("--keep", action="store_true", help="keep the workdir and logs")
    ap.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--address", help=argparse.SUPPRESS)
    ap.add_argument("--token", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    try:
        parse_duration(a.duration)
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    if a._worker:
        return asyncio.run(run_worker(a))
    if a.agents < 1 or a.cores < 1 or a.jobs < 0 or a.procs < 1:
        ap.error("--agents, --cores, --procs must be >= 1 and --jobs >= 0")
    if not 0 <= a.vanish < 1 or not 0 < a.vanish_at < 1:
        ap.error("--vanish must be in [0, 1) and --vanish-at in (0, 1)")
    if a.vanish and not a.jobs:
        ap.error("--vanish needs --jobs > 0 (the storm strikes once --vanish-at of them ended)")
    if not 0 <= a.reconnect < 1 or not 0 < a.reconnect_at < 1 or a.reconnect_away < 0:
        ap.error("--reconnect must be in [0, 1), --reconnect-at in (0, 1), --reconnect-away >= 0")
    if a.reconnect and not a.jobs:
        ap.error("--reconnect needs --jobs > 0 (the streams are cut once --reconnect-at of them ended)")
    return drive(a)


if __name__ == "__main__":
    sys.exit(main())


# ----------------------------------------------------------------------------- scripts/bench's swarm

SWARM_SYSTEMS = ("swarm", "swarm-storm")  # --only swarm brings the storm row too
SWARM_EXTRAS = ("reg_s", "swarm_rate", "master_hwm_mb", "requeue_s", "rerun_s")
# The storm row: 256x32 agents, 10% vanish (drop) once 30% of the jobs ended; 20,000 tasks of 2 s:
# about 2.4 waves on the 8,192 cores, so the vanished agents run the second when they go.
STORM = ("--agents", "256", "--cores", "32", "--procs", "1", "--duration", "fixed:2", "--vanish", "0.1",
         "--vanish-at", "0.3", "--heartbeat-timeout", "5")


def storm_jobs(a: Any) -> int:
    return 20_000


def swarm_label(a: Any, system: str = "swarm") -> str:
    if system == "swarm-storm":
        return (f"swarm-storm ({storm_jobs(a)} jobs of 2 s, 256x32 simulated agents, 10% vanish at 30%, "
                "heartbeat timeout 5 s)")
    return (f"swarm ({a.swarm_jobs} jobs, {a.swarm_agents}x{a.swarm_cores} simulated agents, "
            f"{a.swarm_procs} procs, duration {a.swarm_duration})")


def swarm_command(system: str, a: Any, python: Path, run_dir: Path) -> tuple[list[str], int]:
    """The command of one run of ``system``, and its jobs."""
    common = ["--tmp", str(run_dir), "--timeout", str(a.timeout)]
    if system == "swarm-storm":
        return [str(python), str(HERE), *STORM, "--jobs", str(storm_jobs(a)), *common], storm_jobs(a)
    return [str(python), str(HERE), "--agents", str(a.swarm_agents), "--cores", str(a.swarm_cores),
            "--jobs", str(a.swarm_jobs), "--procs", str(a.swarm_procs), "--duration", a.swarm_duration,
            *common], a.swarm_jobs


def run_swarm_bench(system: str, rnd: int, a: Any, ctx: dict, tools: Any) -> dict:
    """One run of scripts/bench's `swarm` in PJ's interpreter; wall = Submit to every job done
    (the Client's clock), tasks/s = jobs / wall. Exits 1 (logs kept) when a job did not SUCCEED."""
    run_dir: Path = ctx["tmp"] / f"{system}-r{rnd}"
    run_dir.mkdir()
    python = Path(ctx["pj"]).parent / "python"
    cmd, n = swarm_command(system, a, python, run_dir)
    rc, wall, cpu = tools.timed(cmd, run_dir, run_dir / "output.log", a.timeout)
    try:
        out = json.loads((run_dir / "output.log").read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError) as e:
        out = {"problem": f"no result line in output.log ({e})"}
    problem = out.get("problem") or (None if rc == 0 else f"exit status {rc}")
    if problem:
        print(f"\nbench: error: {system} round {rnd}: {problem}\n--- logs kept in {run_dir}", file=sys.stderr)
        ctx["keep"] = True
        sys.exit(1)
    if not a.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"system": system, "round": rnd, "tasks": n, "wall_s": out["wait_s"], "cpu_s": cpu,
            "tasks_per_s": n / out["wait_s"], "rc": rc, "ok": True, "problem": None, "cmd": cmd,
            "reg_s": out["reg_s"], "swarm_rate": out.get("tasks_per_s"), "master_hwm_mb": out["master_hwm_mb"],
            "requeue_s": out.get("requeue_s"), "rerun_s": out.get("rerun_s"), "process_wall_s": wall}


def print_swarm(summary: dict[str, dict]) -> None:
    m = summary.get("swarm")
    if m:
        print("\nswarm (medians):")
        print(f"  every agent registered in {m['reg_s_median']:.2f} s; {m['rate_median']:,.0f} jobs/s "
              f"Submit to done; {m.get('swarm_rate_median', 0):,.0f} tasks/s first start to last exit "
              f"(agents' clocks); master peak RSS {m['master_hwm_mb_median']:.0f} MB")
    m = summary.get("swarm-storm")
    if m:
        print("\nswarm-storm (medians; 10% of the agents vanish, the master's grace 5 s):")
        requeue, rerun = m.get("requeue_s_median"), m.get("rerun_s_median")
        print("  their tasks queued again (requeue_s) "
              + ("-" if requeue is None else f"{requeue:.2f} s") + " and run again (rerun_s) "
              + ("-" if rerun is None else f"{rerun:.2f} s") + f" after they vanished; master peak RSS "
              f"{m['master_hwm_mb_median']:.0f} MB")
