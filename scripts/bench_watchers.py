"""Unread Watch streams against dispatch (issue 13, item 9).

Starts `pj-master` and --agents `pj-agent --dry-run --cores C` (tasks reported started and exited
0, no process), opens --watchers Watch streams of every job over TCP (raw gRPC with the token, each
on its own channel: its own socket) that are never read, submits --jobs one-core jobs and waits
for them with `Client.wait` (a reading watch, as `pj wait`). Reports the master's peak RSS
(VmHWM), the dispatch rate (jobs/s from the Submit call to the wait's end), the master's CPU
seconds over that time and how the unread streams ended; then the same run with no unread
watcher, and the ratio of the two rates.

    .venv/bin/python scripts/bench_watchers.py [--jobs 50000] [--watchers 100] [--agents 4] [--cores 8]
        [--watch-backlog MB] [--watch-stall S] [--rounds N]

--watch-backlog/--watch-stall go to pj-master (when a watcher that reads nothing is dropped); with
--rounds N both runs are made N times, alternating, and the medians compared.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from procstat import cpu_s, status_kb

from pj.client import Client
from pj.client.jobfile import load_jobfile
from pj.common.workdir import TOKEN_METADATA_KEY, find_master
from pj.v1 import pj_pb2, pj_pb2_grpc


def vm(pid: int, key: str) -> float:
    """A /proc/PID/status figure in MB (VmRSS, VmHWM); 0 when the process is gone."""
    return status_kb(pid, key) / 1024


def wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


def open_unread(workdir: Path, n: int) -> list[tuple[grpc.Channel, Any]]:
    """n Watch streams of every job, each on its own TCP channel, never read."""
    master = find_master(workdir, wait_s=30)
    md = ((TOKEN_METADATA_KEY, master.token),)
    streams = []
    for _ in range(n):
        ch = grpc.insecure_channel(master.address)
        call = pj_pb2_grpc.PilotJobStub(ch).Watch(pj_pb2.WatchRequest(), metadata=md)
        streams.append((ch, call))
    return streams


def stream_end(call: Any) -> str:
    """How an unread stream ended (read now, at the end): its status code and details."""
    try:
        for _ in call:
            pass
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"
    return "OK"


def run(jobs: int, watchers: int, agents: int, cores: int, tmp: Path, master_args: list[str]) -> dict[str, Any]:
    wd = tmp / f"wd-{watchers}-{time.monotonic_ns()}"
    jobfile = tmp / "jobs.json"
    if not jobfile.exists():
        jobfile.write_text(json.dumps({"jobs": [{"name": f"t{i}", "exec": "/bin/true", "cores": 1}
                                                for i in range(jobs)]}))
    specs = load_jobfile(jobfile).jobs
    bindir = Path(sys.executable).parent
    logs = open(tmp / f"procs-{watchers}.log", "w")
    procs = [subprocess.Popen([str(bindir / "pj-master"), "--workdir", str(wd), "--expect-nodes",
                               str(agents), *master_args], stdout=logs, stderr=subprocess.STDOUT,
                              start_new_session=True)]
    master = procs[0]
    try:
        wait_for(wd / "master.json", 30)
        procs += [subprocess.Popen([str(bindir / "pj-agent"), "--workdir", str(wd), "--name",
                                    f"n{i}", "--cores", str(cores), "--dry-run"], stdout=logs,
                                   stderr=subprocess.STDOUT, start_new_session=True)
                  for i in range(agents)]
        c = Client(wd, timeout=3600)
        deadline = time.monotonic() + 60
        while len(c.resources().nodes) < agents:
            if time.monotonic() > deadline:
                raise SystemExit("the agents did not join")
            time.sleep(0.1)
        streams = open_unread(wd, watchers)
        time.sleep(0.5)  # their first message is out: every stream is open at the master
        rss0 = vm(master.pid, "VmRSS")
        cpu0 = cpu_s(master.pid)
        t0 = time.perf_counter()
        c.submit(specs)
        counts = c.wait(timeout=3600)
        wall = time.perf_counter() - t0
        cpu = cpu_s(master.pid) - cpu0
        rss_end = vm(master.pid, "VmRSS")
        peak = vm(master.pid, "VmHWM")
        ends: dict[str, int] = {}
        c.finish()
        for ch, call in streams:
            end = stream_end(call)
            key = end.split(":")[0] if not end.startswith("RESOURCE") else end.split(" behind")[0] + " behind..."
            ends[key] = ends.get(key, 0) + 1
            ch.close()
        master.wait(timeout=120)
        c.close()
        states: dict[str, int] = {}
        for state in counts.values():
            states[state] = states.get(state, 0) + 1
        return {"watchers": watchers, "jobs": jobs, "states": states, "wall_s": round(wall, 2), "rate_jobs_s": round(jobs / wall, 1),
                "master_cpu_s": round(cpu, 2),
                "rss_before_mb": round(rss0, 1), "rss_end_mb": round(rss_end, 1),
                "peak_rss_mb": round(peak, 1), "unread_streams_ended": ends,
                "master_exit": master.returncode}
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        logs.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=50_000)
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("--watch-backlog", metavar="MB", help="pj-master --watch-backlog")
    ap.add_argument("--watch-stall", metavar="S", help="pj-master --watch-stall")
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    margs = [*(["--watch-backlog", a.watch_backlog] if a.watch_backlog else []),
             *(["--watch-stall", a.watch_stall] if a.watch_stall else [])]
    bases, loads = [], []
    with tempfile.TemporaryDirectory(prefix="pj-bench-watchers-") as t:
        tmp = Path(t)
        for _ in range(a.rounds):
            bases.append(run(a.jobs, 0, a.agents, a.cores, tmp, margs))
            print(json.dumps(bases[-1]), flush=True)
            loads.append(run(a.jobs, a.watchers, a.agents, a.cores, tmp, margs))
            print(json.dumps(loads[-1]), flush=True)

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 1)

    base, loaded = median(bases, "rate_jobs_s"), median(loads, "rate_jobs_s")
    ends: dict[str, int] = {}
    for r in loads:
        for k, n in r["unread_streams_ended"].items():
            ends[k] = ends.get(k, 0) + n
    print(f"{a.jobs} jobs, {a.agents}x{a.cores} dry-run cores, median of {a.rounds}: no watcher {base} jobs/s, "
          f"master CPU {median(bases, 'master_cpu_s')} s, peak RSS {median(bases, 'peak_rss_mb')} MB; "
          f"{a.watchers} unread watchers {loaded} jobs/s (ratio {loaded / base:.2f}), master CPU "
          f"{median(loads, 'master_cpu_s')} s, peak RSS {median(loads, 'peak_rss_mb')} MB (max "
          f"{max(r['peak_rss_mb'] for r in loads)}); unread streams ended: {ends}")


if __name__ == "__main__":
    main()
