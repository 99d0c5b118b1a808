"""scripts/bench's swarm rows (`--only swarm`): the plain swarm and the storm, each one run of
scripts/swarm_agents.py, with their medians printed."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().with_name("swarm_agents.py")

SWARM_SYSTEMS = ("swarm", "swarm-storm", "swarm-relay")  # --only swarm brings the storm row too
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
    via = f", through {a.swarm_relays} pj-relay" if system == "swarm-relay" else ""
    return (f"{system} ({a.swarm_jobs} jobs, {a.swarm_agents}x{a.swarm_cores} simulated agents{via}, "
            f"{a.swarm_procs} procs, duration {a.swarm_duration})")


def swarm_command(system: str, a: Any, python: Path, run_dir: Path) -> tuple[list[str], int]:
    """The command of one run of ``system``, and its jobs."""
    common = ["--tmp", str(run_dir), "--timeout", str(a.timeout)]
    if system == "swarm-storm":
        return [str(python), str(HERE), *STORM, "--jobs", str(storm_jobs(a)), *common], storm_jobs(a)
    return [str(python), str(HERE), "--agents", str(a.swarm_agents), "--cores", str(a.swarm_cores),
            "--jobs", str(a.swarm_jobs), "--procs", str(a.swarm_procs), "--duration", a.swarm_duration,
            *(["--relays", str(a.swarm_relays)] if system == "swarm-relay" else []), *common], a.swarm_jobs


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
    for name in ("swarm", "swarm-relay"):
        m = summary.get(name)
        if m:
            print(f"\n{name} (medians):")
            print(f"  every agent registered in {m['reg_s_median']:.2f} s; {m['rate_median']:,.0f} jobs/s "
                  f"Submit to done; {m.get('swarm_rate_median', 0):,.0f} tasks/s first start to last exit "
                  f"(agents' clocks); master peak RSS {m['master_hwm_mb_median']:.0f} MB")
    d, r = summary.get("swarm"), summary.get("swarm-relay")
    if d and r:
        print(f"  swarm-relay/swarm: {r['rate_median'] / d['rate_median']:.2f}x jobs/s, "
              f"{r['master_hwm_mb_median'] / d['master_hwm_mb_median']:.2f}x the master's peak RSS")
    m = summary.get("swarm-storm")
    if m:
        print("\nswarm-storm (medians; 10% of the agents vanish, the master's grace 5 s):")
        requeue, rerun = m.get("requeue_s_median"), m.get("rerun_s_median")
        print("  their tasks queued again (requeue_s) "
              + ("-" if requeue is None else f"{requeue:.2f} s") + " and run again (rerun_s) "
              + ("-" if rerun is None else f"{rerun:.2f} s") + f" after they vanished; master peak RSS "
              f"{m['master_hwm_mb_median']:.0f} MB")
