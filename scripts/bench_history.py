#!/usr/bin/env python3
"""What the master's history costs (issue 13, item 9): memory per finished task, and --resume time.

Three measurements, each in a fresh process:

  core-iter N   one job of N iterations run to the end in the master's core (no I/O: each task
                is placed, started and exits 0 with CPU figures, as an agent reports them); bytes
                of Python memory (tracemalloc) held per finished task once all have ended, beyond
                what was held once submitted (bytes_per_task) and in all (with_submitted_...)
  core-jobs N   the same with N one-task jobs: what a job holds once ended beyond what it held
                when submitted (its spec and record are counted before the run starts)
  core-rss N    core-iter without tracemalloc: the process's peak RSS (VmHWM), whole, for N
                iterations run to the end (the issue's 10^7-iteration job in <= 2 GB)
  resume N      a journal holding one job of N/2 finished iterations and N/2 one-task finished jobs
                (written through the journal's own API), then `pj-master --resume` on it: seconds
                from process start until it answers Status, and its peak RSS (VmHWM)
  resume-iter N the same with one job of N finished iterations only

    .venv/bin/python scripts/bench_history.py [--tasks 1000000] [--only core-iter,core-jobs,core-rss,resume,resume-iter]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def vm(key: str) -> float:
    """This process's /proc/self/status figure in MB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def core_rss(n: int) -> dict:
    """One job of n iterations run to the end in the core, without tracemalloc (it would double the
    time): the process's peak and final RSS, the whole interpreter included."""
    from pj.master import convert, usage
    from pj.master.core import Core
    from pj.master.model import NodeInfo
    from pj.v1 import pj_pb2 as pb

    core = Core()
    core.submit(convert.specs_from_pb(
        [pb.JobSpec(name="big", exec="/bin/true", iterations=pb.Iterations(start=0, stop=n))], "/"), 1.0)
    for k in range(8):
        core.node_joined(NodeInfo(f"n{k}", 128), 1.0)
    start = vm("VmRSS")
    t0 = time.perf_counter()
    now = 1.0
    while core.unfinished:
        now += 0.001
        out = core.step(now)
        for i, t in enumerate(out.placed):
            core.task_exited(t.id, 0, "", now + 0.0005, usage.pack(0.01 * (i % 7), 0.002, 2000 + i))
        del out
    core.step(now + 1)
    wall = time.perf_counter() - t0
    gc.collect()
    job = core.registry.jobs["big"]
    assert job.state.name == "SUCCEED" and len(job.tasks) == n
    return {"tasks": n, "rss_before_mb": round(start), "peak_rss_mb": round(vm("VmHWM")),
            "rss_after_mb": round(vm("VmRSS")), "wall_s": round(wall, 1), "tasks_per_s": round(n / wall)}


def core_run(n: int, mode: str) -> dict:
    from pj.master import convert, usage
    from pj.master.core import Core
    from pj.master.model import NodeInfo
    from pj.v1 import pj_pb2 as pb

    tracemalloc.start()  # from the start: what the run frees of the submitted records counts too
    core = Core()
    zero = tracemalloc.get_traced_memory()[0]
    if mode == "iter":
        msgs = [pb.JobSpec(name="big", exec="/bin/true", iterations=pb.Iterations(start=0, stop=n))]
    else:
        msgs = [pb.JobSpec(name=f"j{i}", exec="/bin/true") for i in range(n)]
    specs = convert.specs_from_pb(msgs, "/")
    del msgs
    now = 1.0
    core.submit(specs, now)
    del specs
    for k in range(8):
        core.node_joined(NodeInfo(f"n{k}", 128), now)
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    done = 0
    while True:
        now += 0.001
        out = core.step(now)
        if not out.placed:
            if core.unfinished == 0 or out.stop:
                break
            continue
        for t in out.placed:
            core.task_started(t.id, now)
        for i, t in enumerate(out.placed):
            core.task_exited(t.id, 0, "", now + 0.0005, usage.pack(0.01 * (i % 7), 0.002, 2000 + i))
        done += len(out.placed)
        del out
    core.step(now + 1)
    wall = time.perf_counter() - t0
    gc.collect()
    end = tracemalloc.get_traced_memory()[0]
    held, whole = end - base, end - zero
    tracemalloc.stop()
    assert done == n and core.unfinished == 0, (done, core.unfinished)
    return {"tasks": n, "bytes_per_task": round(held / n), "with_submitted_bytes_per_task": round(whole / n), "held_mb": round(held / 1e6, 1), "wall_s": round(wall, 2)}


def write_journal(workdir: Path, n: int, singles: bool = True) -> None:
    """A journal of one job of n finished iterations, and (``singles``) n finished one-task jobs."""
    from pj.master import journal, usage
    from pj.master.convert import specs_from_pb
    from pj.master.model import NodeShare, State
    from pj.master.registry import Job, Task
    from pj.v1 import pj_pb2 as pb

    req = pb.SubmitRequest(base_dir="/", jobs=[
        pb.JobSpec(name="big", exec="/bin/true", iterations=pb.Iterations(start=0, stop=n)),
        *[pb.JobSpec(name=f"j{i}", exec="/bin/true") for i in range(n if singles else 0)],
    ])
    jour = journal.Journal(journal.path_in(workdir))
    jour.campaign()
    jour.submit(req.SerializeToString(), 1.0)
    specs = specs_from_pb(req.jobs, "/")
    jobs = [Job(s, i, 1.0) for i, s in enumerate(specs)]
    big = jobs[0]
    step = 20_000
    tid = 0
    total = 2 * n if singles else n
    for lo in range(0, total, step):
        tasks = []
        for k in range(lo, min(total, lo + step)):
            tid += 1
            job, it = (big, k) if k < n else (jobs[1 + k - n], None)
            t = Task(tid, job, it, 1.0)
            now = 2.0 + k * 1e-4
            t.allocation = (NodeShare(f"n{k % 8}", (k % 128,)),)
            t.set_state(State.SCHEDULED, now)
            t.set_state(State.EXECUTING, now)
            t.set_state(State.SUCCEED, now + 0.01)
            t.exit_code = 0
            t.usage = usage.pack(0.01, 0.002, 2000 + k % 1000)
            tasks.append(t)
        ended_jobs = []
        for t in tasks:
            if t.iteration is None:
                j = t.job
                j.set_state(State.SCHEDULED, t.history[1][1])
                j.set_state(State.EXECUTING, t.history[2][1])
                j.set_state(State.SUCCEED, t.history[3][1])
                ended_jobs.append(j)
        jour.record(tasks, ended_jobs, placed=tasks)
    big.set_state(State.SCHEDULED, 2.0)
    big.set_state(State.EXECUTING, 2.0)
    big.set_state(State.SUCCEED, 3.0)
    jour.record([], [big])
    jour.close()


def resume_run(n: int, pj_python: str, singles: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="pj-bench-history-") as tmp:
        wd = Path(tmp) / "run"
        wd.mkdir(mode=0o700)
        t0 = time.perf_counter()
        write_journal(wd, n, singles)
        written = time.perf_counter() - t0
        size = (wd / "journal.db").stat().st_size
        t0 = time.perf_counter()
        proc = subprocess.Popen([pj_python, "-m", "pj.master", "--workdir", str(wd), "--resume"],
                                stdout=subprocess.DEVNULL, stderr=open(wd.parent / "master.err", "w"))
        try:
            from pj.client import Client

            ready = None
            while ready is None:
                if proc.poll() is not None:
                    raise SystemExit(f"pj-master exited {proc.returncode}: {(wd.parent / 'master.err').read_text()[-2000:]}")
                if (wd / "master.json").exists():
                    try:
                        with Client(str(wd)) as c:
                            st = c.status()
                        ready = time.perf_counter() - t0
                    except Exception:
                        pass
                time.sleep(0.02)
            hwm = 0.0
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
        finally:
            proc.terminate()
            proc.wait(30)
        return {"tasks": 2 * n if singles else n, "jobs": n + 1 if singles else 1, "journal_mb": round(size / 1e6, 1), "write_s": round(written, 1),
                "resume_ready_s": round(ready, 2), "master_peak_rss_mb": round(hwm), "status": str(st)[:200]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--only", default="core-iter,core-jobs,resume,resume-iter")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:  # a child: one measurement in a fresh process
        kind = a.one
        if kind == "core-rss":
            res = core_rss(a.tasks)
        elif kind.startswith("core"):
            res = core_run(a.tasks, "iter" if kind == "core-iter" else "jobs")
        elif kind == "resume-iter":
            res = resume_run(a.tasks, sys.executable, singles=False)
        else:
            res = resume_run(a.tasks // 2, sys.executable)
        print(json.dumps(res))
        return
    for kind in a.only.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", kind, "--tasks", str(a.tasks)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{kind}: FAILED\n{out.stderr[-3000:]}")
            sys.exit(1)
        print(f"{kind:10} {out.stdout.strip()}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
