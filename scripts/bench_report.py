#!/usr/bin/env python3
"""`pj report stats` on a big jobs.jsonl: wall time and peak RSS (scripts/bench system `report-1m`).

The report is generated once into the bench's temporary directory, in the master's own layout
(``master/report.py``: key order, separators, rusage fields, stderr tails of failed tasks, the
attempts of retried tasks): --report-tasks tasks (default 1,000,000) on 16 nodes of 64 cores, as
four jobs of many iterations (1, 2 and 4 cores) plus one-task jobs (a tenth of the tasks), 0.1%
FAILED, 0.1% retried. Each round runs ``pj report stats --json --workdir DIR`` as its own process;
wall time runs from its start to its exit, peak RSS is that process's ``ru_maxrss`` (os.wait4).
The goal (issue 12): at most 10 s and 1 GB for a million tasks. The JSON answer is checked
(task count, SUCCEED + FAILED) or the benchmark stops.

    scripts/bench --only report-1m [--report-tasks N] [--rounds R]
    scripts/bench_report.py [--tasks N] [--rounds R] [--pj PATH]   (alone)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPORT_SYSTEMS = ("report-1m",)
REPORT_EXTRAS = ("peak_rss_mb",)
NODES, CORES = 16, 64
T0 = 1_796_000_000.0


def report_label(system: str, a: Any) -> str:
    return f"report-1m (pj report stats, {a.report_tasks:,} tasks)"


def _times(queued: float, start: float, end: float, state: str) -> str:
    return (f'{{"QUEUED":{queued:.6f},"SCHEDULED":{queued:.6f},"EXECUTING":{start:.6f},'
            f'"{state}":{end:.6f}}}')


def write_report(path: Path, tasks: int, seed: int = 1) -> dict[str, int]:
    """A jobs.jsonl of ``tasks`` tasks in the master's layout; returns the task counts per state."""
    rng = random.Random(seed)
    single = tasks // 10
    per_job = (tasks - single) // 4
    sizes = [per_job] * 3 + [tasks - single - 3 * per_job]
    cores_of = [1, 1, 2, 4]
    counts = {"SUCCEED": 0, "FAILED": 0}
    free_at = [[T0] * CORES for _ in range(NODES)]  # a crude schedule: each task on the earliest core
    clock = [0]

    def place(ncores: int, dur: float) -> tuple[int, list[int], float, float]:
        clock[0] += 1
        node = clock[0] % NODES
        first = rng.randrange(0, CORES - ncores + 1)
        ids = list(range(first, first + ncores))
        start = max(free_at[node][c] for c in ids) + rng.random() * 0.002
        end = start + dur
        for c in ids:
            free_at[node][c] = end
        return node, ids, start, end

    def task_fields(state: str, rest: list[str]) -> None:
        counts[state] += 1
        rest.append(f',"cpu_user_s":{rng.random() * 0.5:.6f},"cpu_system_s":{rng.random() * 0.05:.6f},'
                    f'"max_rss_kb":{rng.randrange(2000, 900000)}')
        if state == "FAILED":
            rest.append(',"stderr_tail":' + json.dumps("Traceback (most recent call last):\n  ...\nValueError: bad"))

    with open(path, "w") as f:
        for j, n in enumerate(sizes):
            name = f"sweep{j}"
            f.write(f'{{"name":"{name}","state":"SUCCEED","reason":"","times":{_times(T0, T0 + 1, T0 + 9000, "SUCCEED")},'
                    f'"iterations":{n},"succeeded":{n},"failed":0,"exit_code":null,"nodes":[],"cores":{{}}}}\n')
            for it in range(n):
                node, ids, start, end = place(cores_of[j], rng.uniform(0.5, 30))
                failed = rng.random() < 0.001
                state, code = ("FAILED", 1) if failed else ("SUCCEED", 0)
                reason = "exit code 1" if failed else ""
                rest: list[str] = []
                task_fields(state, rest)
                if rng.random() < 0.001:
                    rest.append(f',"attempts":[{{"state":"FAILED","exit_code":null,"reason":"node lost: node{node}",'
                                f'"nodes":["node{node}"],"started":{start - 5:.6f},"ended":{start - 1:.6f}}},'
                                f'{{"state":"{state}","exit_code":{code},"reason":"{reason}","nodes":["node{node}"],'
                                f'"started":{start:.6f},"ended":{end:.6f}}}]')
                f.write(f'{{"name":"{name}:{it}","job":"{name}","iteration":{it},"state":"{state}","exit_code":{code},'
                        f'"reason":"{reason}","nodes":["node{node}"],"cores":{{"node{node}":{json.dumps(ids, separators=(",", ":"))}}},'
                        f'"times":{_times(start - 1, start, end, state)}{"".join(rest)}}}\n')
        for i in range(single):
            node, ids, start, end = place(1, rng.uniform(0.5, 30))
            rest = []
            task_fields("SUCCEED", rest)
            f.write(f'{{"name":"one{i}","state":"SUCCEED","reason":"","times":{_times(T0, start - 1, end, "SUCCEED")},'
                    f'"exit_code":0,"nodes":["node{node}"],"cores":{{"node{node}":[{ids[0]}]}},'
                    f'"task_times":{_times(start - 1, start, end, "SUCCEED")}{"".join(rest)}}}\n')
    return {state: n for state, n in counts.items() if n}


def measure(pj: str, workdir: Path, timeout: float) -> tuple[int, float, float, float, str]:
    """(exit status, wall s, CPU s, peak RSS MB, stdout) of `pj report stats --json --workdir DIR`."""
    cmd = [pj, "report", "stats", "--json", "--workdir", str(workdir)]
    out_path = workdir / "stats.json"
    with open(out_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, out_path.read_text()


def run_report(system: str, rnd: int, a: Any, ctx: dict, tools: Any) -> dict:
    """One round of report-1m; the file is generated on the first call and kept in ctx."""
    n = a.report_tasks
    workdir: Path = ctx["tmp"] / f"report-{n}"
    if ctx.get("report_counts", {}).get(n) is None:
        workdir.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        counts = write_report(workdir / "jobs.jsonl", n)
        ctx.setdefault("report_counts", {})[n] = counts
        size = (workdir / "jobs.jsonl").stat().st_size
        print(f"(generated {n:,}-task jobs.jsonl, {size / 1e6:.0f} MB, in {time.perf_counter() - t0:.1f} s) ",
              end="", flush=True)
    counts = ctx["report_counts"][n]
    rc, wall, cpu, rss, out = measure(ctx["pj"], workdir, a.timeout)
    problem = None if rc == 0 else f"exit status {rc}: {out[-500:]}"
    if problem is None:
        try:
            got = json.loads(out)["tasks"]
        except (ValueError, KeyError) as e:
            problem = f"no JSON answer ({e}): {out[-300:]}"
        else:
            if got != counts:
                problem = f"tasks {got}, expected {counts}"
    if problem:
        print(f"\nbench: error: {system} round {rnd}: {problem}", file=sys.stderr)
        ctx["keep"] = True
        sys.exit(1)
    return {"system": system, "round": rnd, "tasks": n, "wall_s": wall, "cpu_s": cpu, "tasks_per_s": n / wall,
            "rc": rc, "ok": True, "problem": None, "cmd": ["pj", "report", "stats", "--json"], "peak_rss_mb": rss}


def print_report(summary: dict[str, dict]) -> None:
    m = summary.get("report-1m")
    if m:
        print(f"\npj report stats (medians): {m['wall_median']:.2f} s wall, {m['cpu_median']:.2f} s CPU, peak RSS "
              f"{m['peak_rss_mb_median']:.0f} MB (goal for 1,000,000 tasks: at most 10 s and 1024 MB; on a busy "
              "machine the CPU time is the steadier figure)")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="pj report stats on a generated jobs.jsonl: wall time and peak RSS")
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pj", default=str(Path(sys.executable).parent / "pj"))
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    ns = argparse.Namespace(report_tasks=a.tasks, timeout=a.timeout)
    with tempfile.TemporaryDirectory(prefix="pj-bench-report-") as tmp:
        ctx: dict = {"tmp": Path(tmp), "pj": a.pj}
        for rnd in range(1, a.rounds + 1):
            r = run_report("report-1m", rnd, ns, ctx, None)
            print(f"round {rnd}: {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU, peak RSS {r['peak_rss_mb']:.0f} MB",
                  flush=True)


if __name__ == "__main__":
    main()
