"""The chain, dispatch and queue half of scripts/bench (imports nothing from PJ, like it).

  chain-pj    `pj run FILE --cores 8` on a QCG batch file of --chain-links `/bin/true` jobs, job
              c{i} `dependencies: {"after": ["c{i-1}"]}`: the cost of one dependency link
  chain-qcg   `qcg-pm-service --file-path FILE --nodes 8` on the same file
  dispatch    `python -m pj.master` + --agents `pj-agent --dry-run --cores C` (tasks reported
              started and exited 0, no process): --dispatch-tasks one-core jobs (native file) are
              submitted by a small driver run with PJ's interpreter (pj.client, the file parsed
              before the clock starts); timed from the Submit call to the Watch stream saying all
              finished: the master + wire cost alone
  queue-100k  --queue-tasks jobs submitted with `pj-submit` to a master with NO agent: the
              pj-submit wall time, when the master logged `submitted` (from pj-submit's start),
              the master's VmRSS before and after; then the master is stopped (SIGSTOP), the dry-run
              agents are started, and once every one has logged `agent starting` the master is
              continued (SIGCONT): timed from SIGCONT to the Watch stream saying all finished
  queue-1k    the same with --queue-small jobs queued (the ratio of the two: does a long queue
              slow dispatch down?)

Every run must end with every job SUCCEED in the workdir's jobs.jsonl (else the benchmark stops,
exit status 1); chain-qcg is checked against QCG's final_status.json and jobs.report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from procstat import status_kb

PILOT_SYSTEMS = ("chain-pj", "chain-qcg", "dispatch", "queue-1k", "queue-100k")

DRIVER = r'''
import json, sys, time
from pj.client import Client
from pj.client.jobfile import load_jobfile
mode, workdir = sys.argv[1], sys.argv[2]
specs = load_jobfile(sys.argv[3]).jobs if mode == "submit-wait" else None
c = Client(workdir, timeout=3600)
c.status()
print(json.dumps({"ready": time.perf_counter()}), flush=True)
t0 = t1 = time.perf_counter()
if specs is not None:
    c.submit(specs)
    t1 = time.perf_counter()
states = c.wait()
t2 = time.perf_counter()
bad = [n for n, s in states.items() if s != "SUCCEED"]
print(json.dumps({"t0": t0, "t1": t1, "t2": t2, "jobs": len(states), "bad": bad[:5],
                  "nbad": len(bad)}), flush=True)
'''


def pilot_label(s: str, a: Any) -> str:
    shape = f"{a.agents}x{a.agent_cores} dry-run cores"
    return {"chain-pj": f"chain-pj ({a.chain_links} dependent jobs)",
            "chain-qcg": f"chain-qcg ({a.chain_links} dependent jobs)",
            "dispatch": f"dispatch ({a.dispatch_tasks} jobs, {shape})",
            "queue-1k": f"queue-1k ({a.queue_small} queued, then {shape})",
            "queue-100k": f"queue-100k ({a.queue_tasks} queued, then {shape})"}[s]


def pilot_files(ctx: dict, a: Any) -> dict[str, Path]:
    """The job files of this size (cached in ctx by size)."""
    tmp: Path = ctx["tmp"]
    key = (a.chain_links, a.dispatch_tasks, a.queue_small, a.queue_tasks)
    cache = ctx.setdefault("pilot_files", {})
    if key in cache:
        return cache[key]
    out: dict[str, Path] = {}
    n = a.chain_links
    chain = [{"name": f"c{i}", "execution": {"exec": "/bin/true"},
              "resources": {"numCores": {"exact": 1}},
              **({"dependencies": {"after": [f"c{i - 1}"]}} if i else {})} for i in range(n)]
    out["chain"] = tmp / f"chain-{n}.json"
    out["chain"].write_text(json.dumps([{"request": "submit", "jobs": chain},
                                        {"request": "control",
                                         "command": "finishAfterAllTasksDone"}]))
    for name, k in (("dispatch", a.dispatch_tasks), ("queue-1k", a.queue_small),
                    ("queue-100k", a.queue_tasks)):
        p = tmp / f"native-{k}.json"
        if not p.exists():
            p.write_text(json.dumps({"jobs": [{"name": f"t{i}", "exec": "/bin/true", "cores": 1}
                                              for i in range(k)]}))
        out[name] = p
    out["driver"] = tmp / "driver.py"
    out["driver"].write_text(DRIVER)
    cache[key] = out
    return out


class Proc:
    """A child in its own session whose stdout+stderr lines are logged and time-stamped."""

    def __init__(self, cmd: list[str], log: Path, cwd: Path) -> None:
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.log = open(log, "w")
        self.p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True, text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            now = time.perf_counter()
            self.log.write(line)
            with self.cond:
                self.lines.append((now, line))
                self.cond.notify_all()
        self.log.close()

    def wait_line(self, pattern: str, count: int = 1, timeout: float = 60) -> list[float] | None:
        """Times of the first `count` lines containing pattern, None on timeout / exit."""
        deadline = time.perf_counter() + timeout
        with self.cond:
            while True:
                hits = [t for t, s in self.lines if pattern in s]
                if len(hits) >= count:
                    return hits[:count]
                left = deadline - time.perf_counter()
                if left <= 0 or (self.p.poll() is not None and not self.t.is_alive()):
                    return None
                self.cond.wait(min(left, 0.5))

    def kill(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.p.wait()


def vmrss_mb(pid: int) -> float:
    return status_kb(pid, "VmRSS") / 1024


def master_rate(report: Path, n: int) -> float | None:
    """n / (last SUCCEED - first SCHEDULED) by the master's own clock, from jobs.jsonl."""
    first = last = None
    with open(report) as f:
        for line in f:
            t = json.loads(line).get("times", {})
            if "SCHEDULED" in t and "SUCCEED" in t:
                first = t["SCHEDULED"] if first is None else min(first, t["SCHEDULED"])
                last = t["SUCCEED"] if last is None else max(last, t["SUCCEED"])
    return n / (last - first) if first is not None and last is not None and last > first else None


def _run_master_campaign(system: str, n: int, run_dir: Path, a: Any, ctx: dict,
                         tools: Any, rec: dict) -> str | None:
    """dispatch / queue-*: fill rec with timings; return a problem or None."""
    files = pilot_files(ctx, a)
    bindir = Path(ctx["pj"]).parent
    py = str(bindir / "python")
    wd = run_dir / "workdir"
    procs: list[Proc] = []
    try:
        master = Proc([py, "-m", "pj.master", "--workdir", str(wd), "--expect-nodes",
                       str(a.agents)], run_dir / "master.log", run_dir)
        procs.append(master)
        if master.wait_line("event='master ready'") is None:
            return "the master did not log `master ready`"

        def agents() -> list[Proc]:
            return [Proc([py, "-m", "pj.agent", "--workdir", str(wd), "--name", f"n{i}",
                          "--cores", str(a.agent_cores), "--dry-run"],
                         run_dir / f"agent-n{i}.log", run_dir) for i in range(a.agents)]

        driver_cmd = [py, str(files["driver"])]
        if system == "dispatch":
            procs += agents()
            if master.wait_line("event='agent joined'", a.agents) is None:
                return f"{a.agents} agents did not join"
            drv = Proc([*driver_cmd, "submit-wait", str(wd), str(files[system])],
                       run_dir / "driver.log", run_dir)
            procs.append(drv)
            t_start = None
        else:
            rec["rss_before_mb"] = vmrss_mb(master.p.pid)
            t_sub0 = time.perf_counter()
            rc, sub_wall, _ = tools.timed([str(bindir / "pj-submit"), "--workdir", str(wd),
                                           str(files[system])], run_dir, run_dir / "submit.log",
                                          a.timeout)
            if rc != 0:
                return f"pj-submit exit status {rc}: {tools.tail(run_dir / 'submit.log', 5)}"
            rec["submit_s"] = sub_wall
            seen = master.wait_line("event='submitted'", 1, 10)
            rec["master_submitted_s"] = seen[0] - t_sub0 if seen else None
            time.sleep(0.2)
            rec["rss_mb"] = vmrss_mb(master.p.pid)
            drv = Proc([*driver_cmd, "wait", str(wd), "-"], run_dir / "driver.log", run_dir)
            procs.append(drv)
            if drv.wait_line('"ready"', 1, 60) is None:
                return "the driver did not connect"
            time.sleep(0.2)  # let its Watch call reach the master
            os.kill(master.p.pid, signal.SIGSTOP)
            try:
                procs += agents()
                ok = all(p.wait_line("event='agent starting'", 1, 120) for p in procs[-a.agents:])
                time.sleep(0.5)  # their Register is sent, or about to be
            finally:
                t_start = time.perf_counter()
                os.kill(master.p.pid, signal.SIGCONT)
            if not ok:
                return "the agents did not start"
        if drv.wait_line('"t2"', 1, a.timeout) is None:
            return f"the driver did not report: {tools.tail(run_dir / 'driver.log', 5)}"
        out = json.loads(next(s for _, s in drv.lines if '"t2"' in s))
        t0 = out["t0"] if t_start is None else t_start
        rec["wall_s"] = out["t2"] - t0
        if system == "dispatch":
            rec["submit_s"] = out["t1"] - out["t0"]
        if out["nbad"] or out["jobs"] != n:
            return f"the Watch stream: {out['jobs']} jobs, {out['nbad']} not SUCCEED {out['bad']}"
        subprocess.run([str(bindir / "pj"), "finish", "--workdir", str(wd)], cwd=run_dir,
                       capture_output=True, timeout=120)
        try:
            master.p.wait(timeout=300)
            for p in procs:
                p.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            return "the master or an agent did not stop after `pj finish`"
        if master.p.returncode != 0:
            return f"the master exit status {master.p.returncode}"
        problem = tools.check_pj(wd, n, False)
        if problem is None:
            rec["master_rate"] = master_rate(wd / "jobs.jsonl", n)
        return problem
    finally:
        for p in procs:
            p.kill()


def run_pilot(system: str, rnd: int, a: Any, ctx: dict, tools: Any) -> dict:
    """One run of a PILOT_SYSTEMS system; returns scripts/bench's run record (plus extras)."""
    run_dir: Path = ctx["tmp"] / f"{system}-r{rnd}"
    run_dir.mkdir()
    files = pilot_files(ctx, a)
    rec: dict[str, Any] = {"system": system, "round": rnd}
    if system.startswith("chain"):
        n = a.chain_links
        if system == "chain-pj":
            cmd = [ctx["pj"], "run", str(files["chain"]), "--cores", "8", "--quiet",
                   "--workdir", str(run_dir / "workdir")]
        else:
            cmd = [str(ctx["qcg"]), "--file-path", str(files["chain"]), "--nodes", "8"]
        rc, wall, cpu = tools.timed(cmd, run_dir, run_dir / "output.log", a.timeout)
        problem = None if rc == 0 else f"exit status {rc}"
        if system == "chain-pj":
            problem = problem or tools.check_pj(run_dir / "workdir", n, False)
        else:
            problem = problem or tools.check_qcg(run_dir, n)
        rec["ms_per_link"] = wall / n * 1000
    else:
        n = {"dispatch": a.dispatch_tasks, "queue-1k": a.queue_small,
             "queue-100k": a.queue_tasks}[system]
        cmd = [f"pj.master + {a.agents} x pj-agent --dry-run --cores {a.agent_cores}, {n} jobs"]
        cpu0 = tools.children_cpu()
        problem = _run_master_campaign(system, n, run_dir, a, ctx, tools, rec)
        cpu = tools.children_cpu() - cpu0
        wall = rec.pop("wall_s", float("nan"))
        rc = 0 if problem is None else 1
        rec["us_per_task"] = wall / n * 1e6
    if problem:
        print(f"\nbench: error: {system} round {rnd}: {problem}\n--- logs kept in {run_dir}",
              file=sys.stderr)
        ctx["keep"] = True
        sys.exit(1)
    if not a.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {**rec, "tasks": n, "wall_s": wall, "cpu_s": cpu, "tasks_per_s": n / wall, "rc": rc,
            "ok": True, "problem": None, "cmd": cmd}


EXTRAS = ("ms_per_link", "us_per_task", "master_rate", "submit_s", "master_submitted_s", "rss_before_mb",
          "rss_mb")


def print_pilot(summary: dict[str, dict]) -> None:
    """The extra lines for the pilot systems: per-link / per-task costs, Submit, RSS, ratios."""
    lines = []
    for s in ("chain-pj", "chain-qcg"):
        if s in summary:
            lines.append(f"  {s}: {summary[s]['ms_per_link_median']:.2f} ms per link")
    for s in ("dispatch", "queue-1k", "queue-100k"):
        m = summary.get(s)
        if not m:
            continue
        text = f"  {s}: {m['us_per_task_median']:.1f} us per task"
        if m.get("master_rate_median") is not None:
            text += (f" ({m['master_rate_median']:,.0f} tasks/s by the master's clock, first "
                     "SCHEDULED to last SUCCEED)")
        if m.get("submit_s_median") is not None:
            text += f", Submit {m['submit_s_median']:.2f} s"
            text += " (driver's Submit call)" if s == "dispatch" else " (pj-submit wall)"
        if m.get("master_submitted_s_median") is not None:
            text += f", master logged `submitted` at {m['master_submitted_s_median']:.2f} s"
        if m.get("rss_mb_median") is not None:
            text += (f", master RSS {m['rss_before_mb_median']:.0f} -> "
                     f"{m['rss_mb_median']:.0f} MB after Submit")
        lines.append(text)
    if lines:
        print("\nper link / per task (medians):")
        print("\n".join(lines))
    ratios = []
    if "chain-pj" in summary and "chain-qcg" in summary:
        x = summary["chain-qcg"]["wall_median"] / summary["chain-pj"]["wall_median"]
        ratios.append(f"  chain-qcg/chain-pj wall: {x:.2f}x (>1: pj faster; target >= 3x)")
    if "dispatch" in summary:
        ratios.append(f"  dispatch: {summary['dispatch']['rate_median']:,.0f} tasks/s "
                      "(target >= 10,000; HyperQueue publishes ~0.1 ms/task)")
    if "queue-1k" in summary and "queue-100k" in summary:
        x = summary["queue-100k"]["rate_median"] / summary["queue-1k"]["rate_median"]
        ratios.append(f"  queue-100k/queue-1k tasks/s: {x:.2f} (target: within 20%, >= 0.80)")
        m1, m2 = summary["queue-1k"], summary["queue-100k"]
        if m1.get("master_rate_median") and m2.get("master_rate_median"):
            x = m2["master_rate_median"] / m1["master_rate_median"]
            ratios.append(f"  queue-100k/queue-1k tasks/s by the master's clock: {x:.2f}")
    if ratios:
        print("\npilot ratios:")
        print("\n".join(ratios))
