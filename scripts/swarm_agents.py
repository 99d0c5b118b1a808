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
first start), by the agents' clocks), the CPU seconds the master, the relays and the agents each
used from Submit to done (master_cpu_s...: on 2 shared cores, the master's seconds per task say more
than the rate), the master's peak RSS (VmHWM) and whether every job SUCCEEDED
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
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from procstat import cpu_s, status_kb
from swarm_figures import (
    check_report,
    lateness,
    master_losses,
    probe_summary,
    reconnect_figures,
    storm_figures,
)
from swarm_sim import parse_duration, run_worker

HERE = Path(__file__).resolve()
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
# host, one clock), per second, and every stall the heartbeat watch credited: Sessions.heard is
# wrapped with the measure.
PROBED_MASTER = """
import asyncio, json, sys, time
import pj.master.main as mm
from pj.master import agentsession, runtime
out = sys.argv.pop(1)
sys.argv[0] = "pj-master"
lag, late, credits = {}, {}, []
slow = []  # (when, what, seconds): every call over 0.3 s of the master's big steps, GC, loop callback
def peak(d, v):
    k = int(time.time())
    d[k] = max(d.get(k, 0.0), v)
heard_plain = agentsession.Sessions.heard
def heard(self, conn, msg):
    if msg.WhichOneof("body") == "heartbeat":
        peak(late, time.time() - msg.heartbeat.time)
    heard_plain(self, conn, msg)
agentsession.Sessions.heard = heard
import gc, logging
gc_t = [0.0]
def gc_timer(phase, info):
    if phase == "start":
        gc_t[0] = time.perf_counter()
    elif (d := time.perf_counter() - gc_t[0]) > 0.3:
        slow.append((round(time.time(), 3), f"gc{info['generation']}", round(d, 3)))
gc.callbacks.append(gc_timer)
class SlowHandle(logging.Handler):  # asyncio's debug mode names each callback that held the loop
    def emit(self, record):
        if record.args and len(record.args) == 2:
            slow.append((round(time.time(), 3), str(record.args[0])[:160], round(float(record.args[1]), 3)))
logging.getLogger("asyncio").addHandler(SlowHandle())
async def probe():
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.3
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
def timed(owner, name):
    plain = getattr(owner, name)
    def call(*args, **kw):
        t = time.perf_counter()
        try:
            return plain(*args, **kw)
        finally:
            d = time.perf_counter() - t
            if d > 0.3:
                slow.append((round(time.time(), 3), name, round(d, 3)))
    setattr(owner, name, call)
from pj.master import core, journal, nodeloss, prefetch, relaylink
for owner, name in ((core.Core, "step"), (runtime.Dispatcher, "_route"), (journal.Journal, "record"),
                    (runtime.Dispatcher, "agent_reports"), (agentsession.Sessions, "ended"),
                    (prefetch, "standby_pass"), (nodeloss, "nodes_lost"), (core.Core, "submit")):
    timed(owner, name)
fast = mm.exit_now
def exit_now(code):
    with open(out, "w") as f:
        json.dump({"loop_lag": lag, "hb_read_late": late, "credits": credits, "slow": slow}, f)
    fast(code)
mm.exit_now = exit_now
sys.exit(mm.main())
"""


# ----------------------------------------------------------------------------- the driver


def cpu_total(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far (none for one gone)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_s(pid)
        except (OSError, IndexError, ValueError):
            pass
    return total


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
    master = subprocess.Popen([py, *prof, "--workdir", str(wd), "--log-level", a.log_level, *hb],
                              stdout=open(tmp / "master.log", "w"), stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    workers: list[Worker] = []
    relays: list[tuple[subprocess.Popen[bytes], str]] = []
    hwm = [0]
    relay_hwm: dict[int, int] = {}
    done = threading.Event()

    def poll_rss() -> None:
        while not done.wait(0.2):
            hwm[0] = max(hwm[0], status_kb(master.pid, "VmHWM"))
            for r, _ in relays:
                relay_hwm[r.pid] = max(relay_hwm.get(r.pid, 0), status_kb(r.pid, "VmHWM"))

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
        if a.relays:  # real relays (agent/relay.py): the agents are spread over them
            relays = start_relays(py, wd, tmp, a.relays, a.log_level)
            address = ",".join(addr for _, addr in relays)
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
                groups = {"master": [master.pid], "relays": [r.pid for r, _ in relays],
                          "agents": [w.p.pid for w in workers]}
                cpu0 = {k: cpu_total(v) for k, v in groups.items()}
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
                # CPU each side used from Submit to every job done (this host's 2 cores are shared
                # by all three: seconds per task say more than tasks/s here).
                for k, pids in groups.items():
                    if pids:
                        out[f"{k}_cpu_s"] = round(cpu_total(pids) - cpu0[k], 2)
            hwm[0] = max(hwm[0], status_kb(master.pid, "VmHWM"))
            c.finish()
        master.wait(timeout=a.timeout)
        for w in workers:
            w.p.wait(timeout=120)
            w.t.join(10)
        for r, _ in relays:  # a relay stops once the master is gone after its agents left
            r.wait(timeout=30)
        done.set()
        out["master_hwm_mb"] = round(hwm[0] / 1024, 1)
        if relays:
            out["relays"] = len(relays)
            out["relay_hwm_mb_max"] = round(max(relay_hwm.values(), default=0) / 1024, 1)
            out["relay_rcs"] = sorted({r.returncode for r, _ in relays}, key=str)
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
            if a.jobs:  # Submit's start -> the first task's start; the last exit -> the client saw all done
                out["first_start_s"] = round(min(starts) - t1, 3)
                out["done_seen_s"] = round(t1 + out["wait_s"] - max(ends), 3)
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
        for p in [master, *(w.p for w in workers), *(r for r, _ in relays)]:
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


def start_relays(py: str, wd: Path, tmp: Path, k: int, log_level: str) -> list[tuple[subprocess.Popen[bytes], str]]:
    """K pj-relay processes on this host, each on a port of its own; (process, address) once each
    listens."""
    started = []
    for i in range(k):
        addr_file = tmp / f"relay{i}.addr"
        p = subprocess.Popen([py, "-m", "pj.agent.relay", "--workdir", str(wd), "--listen", "127.0.0.1:0",
                              "--address-file", str(addr_file), "--log-level", log_level],
                             stdout=subprocess.DEVNULL, stderr=open(tmp / f"relay{i}.log", "w"),
                             stdin=subprocess.DEVNULL, start_new_session=True)
        started.append((p, addr_file))
    out = []
    deadline = time.monotonic() + 60
    for p, addr_file in started:
        while not addr_file.exists():
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a relay did not start; see {addr_file.with_suffix('.log')}")
            time.sleep(0.05)
        out.append((p, addr_file.read_text().strip()))
    return out


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
    ap.add_argument("--relays", type=int, default=0, metavar="K",
                    help="start K real relays (pj-relay) and spread the agents over them: the master then holds "
                         "K streams instead of one per agent")
    ap.add_argument("--heartbeat-timeout", type=float, default=0.0, metavar="S",
                    help="the master's --heartbeat-timeout (also its grace for a cut-off node)")
    ap.add_argument("--retries", type=int, metavar="N",
                    help="each job's retries (default 0; 1 with --vanish: a task on a lost node uses one)")
    ap.add_argument("--json", metavar="FILE", help="also write the result line there")
    ap.add_argument("--master-profile", metavar="FILE", help="run the master under cProfile, its stats to FILE")
    ap.add_argument("--master-probe", metavar="FILE",
                    help="measure inside the master: its loop's lag and how late it reads heartbeats, per "
                         "second, and the stalls its heartbeat watch credited, as JSON to FILE")
    ap.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"),
                    help="the master's and the relays' --log-level (default warning; info: every agent's "
                         "join and disconnect in master.log, with --keep)")
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
