"""The Python-API half of scripts/bench (imports nothing from PJ, like it): a pilot started from Python.

  cluster-pj   `with pj.client.LocalCluster(nodes=1, cores=4) as c:` until it is ready, one
               `/bin/true` job submitted (c.client()) and waited for, then the block's exit (close)
  cluster-qcg  QCG-PilotJob's `LocalManager(['--nodes', '4', '--wd', TMP])`, `submit(Jobs().add(
               name='t', exec='/bin/true'))`, `wait4all()`, `finish()`

Each runs in a fresh interpreter (PJ's, QCG's venv) in its own empty directory; the clock starts
after the API's import and stops when the pilot has been closed. Also reported: the time until the
pilot is ready (LocalCluster returned: every agent joined; LocalManager returned, its service
still starting) and the process's wall time. A run whose job did not SUCCEED stops the benchmark
(exit status 1).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

CLUSTER_SYSTEMS = ("cluster-pj", "cluster-qcg")
CLUSTER_EXTRAS = ("ready_s", "process_wall_s")

DRIVERS = {
    "cluster-pj": r'''
import json, time
from pj.client import LocalCluster
t0 = time.perf_counter()
with LocalCluster(nodes=1, cores=4, workdir="wd") as c:
    t1 = time.perf_counter()
    with c.client() as pj:
        pj.submit([{"name": "t", "exec": "/bin/true"}])
        state = pj.wait("t", timeout=60)["t"]
t2 = time.perf_counter()
print(json.dumps({"ready": t1 - t0, "total": t2 - t0, "state": state}), flush=True)
''',
    "cluster-qcg": r'''
import json, os, time
from qcg.pilotjob.api.manager import LocalManager
from qcg.pilotjob.api.job import Jobs
os.mkdir("wd")
t0 = time.perf_counter()
m = LocalManager(["--nodes", "4", "--wd", os.path.abspath("wd")])
t1 = time.perf_counter()
m.submit(Jobs().add(name="t", exec="/bin/true"))
m.wait4all()
state = m.status("t")["jobs"]["t"]["data"]["status"]
m.finish()
t2 = time.perf_counter()
print(json.dumps({"ready": t1 - t0, "total": t2 - t0, "state": state}), flush=True)
''',
}


def cluster_label(s: str) -> str:
    return {"cluster-pj": "cluster-pj (LocalCluster 1x4, 1 job, close)",
            "cluster-qcg": "cluster-qcg (LocalManager 4 cores, 1 job, finish)"}[s]


def run_cluster(system: str, rnd: int, a: Any, ctx: dict, tools: Any) -> dict:
    """One run of a CLUSTER_SYSTEMS system; returns scripts/bench's run record (plus ready_s)."""
    run_dir: Path = ctx["tmp"] / f"{system}-r{rnd}"
    run_dir.mkdir()
    driver = run_dir / "driver.py"
    driver.write_text(DRIVERS[system])
    python = Path(ctx["pj"]).parent / "python" if system == "cluster-pj" else Path(ctx["qcg"]).parent / "python"
    cmd = [str(python), str(driver)]
    rc, wall, cpu = tools.timed(cmd, run_dir, run_dir / "output.log", a.timeout)
    out: dict[str, Any] = {}
    problem = None if rc == 0 else f"exit status {rc}: {tools.tail(run_dir / 'output.log', 5)}"
    if problem is None:
        try:
            out = json.loads((run_dir / "output.log").read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError) as e:
            problem = f"no timings in output.log ({e})"
        else:
            if out.get("state") != "SUCCEED":
                problem = f"the job ended {out.get('state')}"
    if problem:
        print(f"\nbench: error: {system} round {rnd}: {problem}\n--- logs kept in {run_dir}", file=sys.stderr)
        ctx["keep"] = True
        sys.exit(1)
    if not a.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    total = out["total"]
    return {"system": system, "round": rnd, "tasks": 1, "wall_s": total, "cpu_s": cpu,
            "tasks_per_s": 1 / total, "rc": rc, "ok": True, "problem": None, "cmd": cmd,
            "ready_s": out["ready"], "process_wall_s": wall}


def print_cluster(summary: dict[str, dict]) -> None:
    """Ready time and wall (clock started after the import) of each, and the ratio qcg/pj."""
    lines = []
    for s in CLUSTER_SYSTEMS:
        m = summary.get(s)
        if m:
            lines.append(f"  {s}: ready {m['ready_s_median']:.3f} s, ready + 1 job + close "
                         f"{m['wall_median']:.3f} s (interpreter and import included: "
                         f"{m['process_wall_s_median']:.2f} s)")
    if all(s in summary for s in CLUSTER_SYSTEMS):
        x = summary["cluster-qcg"]["wall_median"] / summary["cluster-pj"]["wall_median"]
        lines.append(f"  cluster-qcg/cluster-pj wall: {x:.1f}x (>1: pj faster)")
    if lines:
        print("\npilot from Python (medians):")
        print("\n".join(lines))
