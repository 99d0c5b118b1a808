"""The simulated agents of scripts/swarm (its worker processes, `swarm_agents.py --_worker`): each
speaks the real agent's AgentLink protocol over its own grpc.aio channel, holds launches for busy
cores, beats, reports starts and exits after a drawn duration, and can vanish or cut and renew its
stream as a real agent does (see swarm_agents.py's docstring)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import deque
from typing import Any

REJOIN_GIVE_UP_S = 60.0  # a reconnecting simulated agent tries again (backoff) this long
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.use_local_subchannel_pool", 1),  # a TCP connection per agent, as real agents have
)



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
    addresses = a.address.split(",")  # the master's, or relays' (--relays): agent i takes the i-th
    ag_index = {ag.name: a.first + i for i, ag in enumerate(agents)}

    tasks: dict[str, asyncio.Task[None]] = {}
    parked = asyncio.Event()  # silent vanished agents hold their connection open until the others end
    live = [len(agents)]

    async def one(ag: SimAgent) -> None:
        nonlocal failed
        try:
            await ag.serve(addresses[ag_index[ag.name] % len(addresses)], a.token, grpc, pb, rpc, welcomed,
                           give_up_at)
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
