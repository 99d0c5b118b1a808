"""The Python-API half of scripts/bench (imports nothing from PJ, like it): a pilot started from Python.

  cluster-pj   `with pj.client.LocalCluster(nodes=1, cores=4) as c:` until it is ready, one
               `/bin/true` job submitted (c.client()) and waited for, then the block's exit (close)
  cluster-qcg  QCG-PilotJob's `LocalManager(['--nodes', '4', '--wd', TMP])`, `submit(Jobs().add(
               name='t', exec='/bin/true'))`, `wait4all()`, `finish()`
  qcgapi-pj    ONE QCG-PilotJob API script (LocalManager on 4 cores; 1000 `/bin/true` jobs and one
  qcgapi-qcg   job of 1000 iterations submitted, wait4all, status of every job, finish) run on
               PJ (`from pj.qcg import ...`) and on QCG-PilotJob (`from qcg.pilotjob.api...`): the
               script is the same but for its two import lines

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

CLUSTER_SYSTEMS = ("cluster-pj", "cluster-qcg", "qcgapi-pj", "qcgapi-qcg")
QCGAPI_TASKS = 2000
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


QCGAPI_SCRIPT = r'''
import json, os, time
{imports}
os.mkdir("wd")
t0 = time.perf_counter()
m = LocalManager(["--nodes", "4", "--wd", os.path.abspath("wd")])
jobs = Jobs()
for i in range(1000):
    jobs.add(name=f"j{i}", exec="/bin/true")
jobs.add(name="sweep", exec="/bin/true", args=["${it}"], iteration=1000)
ids = m.submit(jobs)
m.wait4all()
states = {j["data"]["status"] for j in m.status(ids)["jobs"].values()}
m.finish()
t2 = time.perf_counter()
print(json.dumps({"ready": 0.0, "total": t2 - t0, "state": "SUCCEED" if states == {"SUCCEED"} else str(states)}))
'''
DRIVERS["qcgapi-pj"] = QCGAPI_SCRIPT.replace("{imports}", "from pj.qcg import LocalManager, Jobs")
DRIVERS["qcgapi-qcg"] = QCGAPI_SCRIPT.replace(
    "{imports}", "from qcg.pilotjob.api.manager import LocalManager\nfrom qcg.pilotjob.api.job import Jobs")


def cluster_label(s: str) -> str:
    return {"cluster-pj": "cluster-pj (LocalCluster 1x4, 1 job, close)",
            "cluster-qcg": "cluster-qcg (LocalManager 4 cores, 1 job, finish)",
            "qcgapi-pj": f"qcgapi-pj (a QCG API script, {QCGAPI_TASKS} tasks, on pj.qcg)",
            "qcgapi-qcg": "qcgapi-qcg (the same script on QCG-PilotJob)"}[s]


def run_driver(cmd: list[str], run_dir: Path, timeout: float, tools: Any) -> tuple[int, float, float, dict, str | None]:
    """Run a driver script in ``run_dir``: (exit status, wall, cpu, its last output line as JSON,
    what went wrong or None). Shared by the systems whose timings come from a driver's own clock."""
    rc, wall, cpu = tools.timed(cmd, run_dir, run_dir / "output.log", timeout)
    out: dict[str, Any] = {}
    problem = None if rc == 0 else f"exit status {rc}: {tools.tail(run_dir / 'output.log', 5)}"
    if problem is None:
        try:
            out = json.loads((run_dir / "output.log").read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError) as e:
            problem = f"no timings in output.log ({e})"
    return rc, wall, cpu, out, problem


def run_cluster(system: str, rnd: int, a: Any, ctx: dict, tools: Any) -> dict:
    """One run of a CLUSTER_SYSTEMS system; returns scripts/bench's run record (plus ready_s)."""
    run_dir: Path = ctx["tmp"] / f"{system}-r{rnd}"
    run_dir.mkdir()
    driver = run_dir / "driver.py"
    driver.write_text(DRIVERS[system])
    python = Path(ctx["pj"] if system.endswith("-pj") else ctx["qcg"]).parent / "python"
    cmd = [str(python), str(driver)]
    rc, wall, cpu, out, problem = run_driver(cmd, run_dir, a.timeout, tools)
    if problem is None and out.get("state") != "SUCCEED":
        problem = f"the job ended {out.get('state')}"
    if problem:
        print(f"\nbench: error: {system} round {rnd}: {problem}\n--- logs kept in {run_dir}", file=sys.stderr)
        ctx["keep"] = True
        sys.exit(1)
    if not a.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    total = out["total"]
    tasks = QCGAPI_TASKS if system.startswith("qcgapi") else 1
    return {"system": system, "round": rnd, "tasks": tasks, "wall_s": total, "cpu_s": cpu,
            "tasks_per_s": tasks / total, "rc": rc, "ok": True, "problem": None, "cmd": cmd,
            "ready_s": out["ready"], "process_wall_s": wall}


def print_cluster(summary: dict[str, dict]) -> None:
    """Ready time and wall (clock started after the import) of each, and the ratio qcg/pj."""
    lines = []
    for s in CLUSTER_SYSTEMS[:2]:
        m = summary.get(s)
        if m:
            lines.append(f"  {s}: ready {m['ready_s_median']:.3f} s, ready + 1 job + close "
                         f"{m['wall_median']:.3f} s (interpreter and import included: "
                         f"{m['process_wall_s_median']:.2f} s)")
    if all(s in summary for s in CLUSTER_SYSTEMS):
        x = summary["cluster-qcg"]["wall_median"] / summary["cluster-pj"]["wall_median"]
        lines.append(f"  cluster-qcg/cluster-pj wall: {x:.1f}x (>1: pj faster)")
    if "qcgapi-pj" in summary and "qcgapi-qcg" in summary:
        pj, qcg = summary["qcgapi-pj"]["wall_median"], summary["qcgapi-qcg"]["wall_median"]
        lines.append(f"  the same QCG API script, {QCGAPI_TASKS} tasks: pj.qcg {pj:.2f} s, QCG-PilotJob "
                     f"{qcg:.2f} s: {qcg / pj:.1f}x (>1: pj faster)")
    if lines:
        print("\npilot from Python (medians):")
        print("\n".join(lines))
