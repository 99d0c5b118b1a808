"""The Slurm half of scripts/bench: one allocation per run, timed inside the allocation.

Each run is one `sbatch --wait -N NODES --exclusive` of a small wrapper script that records the
time just before and just after the measured command (so queue waits and allocation set-up are
not counted, for every system alike):

  slurm-pj    `bash scripts/pj.sbatch FILE --quiet --workdir DIR` (the template users copy; the
              master, one `srun` for every agent, the campaign, the shutdown)
  slurm-srun  one `srun -N1 -n1 --exact /bin/true` per task, 8 at a time (xargs -P8)
  slurm-qcg   `qcg-pm-service --file-path FILE` (QCG-PilotJob in its Slurm mode)

Imports nothing from PJ, like scripts/bench.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

SLURM_SYSTEMS = ("slurm-pj", "slurm-srun", "slurm-qcg")
SRUN_WIDTH = 8


def slurm_answers() -> str | None:
    """None if sinfo/sbatch work and some node is up, else why not."""
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        return "no sinfo/sbatch on PATH"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %c %t"], capture_output=True,
                             text=True, timeout=15)
    except (OSError, subprocess.SubprocessError) as e:
        return f"sinfo failed: {e}"
    if out.returncode != 0 or not out.stdout.strip():
        return f"sinfo: {out.stderr.strip() or 'no nodes'}"
    return None


def cluster_shape() -> str:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N:%c:%t"], capture_output=True, text=True,
                         timeout=15)
    return " ".join(sorted(set(out.stdout.split())))


def _wrapper(run_dir: Path, cmd: str) -> Path:
    script = run_dir / "wrapper.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"cd {run_dir}\n"
        "t0=$(date +%s.%N)\n"
        f"{cmd}\n"
        "rc=$?\n"
        "t1=$(date +%s.%N)\n"
        f'echo "$t0 $t1 $rc" > {run_dir}/timing\n'
        "exit $rc\n"
    )
    return script


def _sbatch(run_dir: Path, script: Path, nodes: int, timeout: float) -> int:
    cmd = ["sbatch", "--wait", "--parsable", f"-N{nodes}", "--exclusive", "-J", "pj-bench",
           "-o", str(run_dir / "slurm.out"), "--chdir", str(run_dir), str(script)]
    with open(run_dir / "sbatch.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            subprocess.run(["scancel", "-n", "pj-bench"], check=False)
            return 124


def run_slurm(system: str, rnd: int, n: int, a: Any, ctx: dict, check_pj: Any, check_qcg: Any) -> dict:
    """One run of a Slurm system; returns the same record as scripts/bench's run_one."""
    tmp: Path = ctx["tmp"]
    run_dir = tmp / f"{system}-r{rnd}"
    run_dir.mkdir()
    qcgfile: Path = ctx["slurm_qcgfile"]
    workdir = run_dir / "workdir"
    if system == "slurm-pj":
        sbatch_file = ctx["repo"] / "scripts" / "pj.sbatch"
        pj_bin = Path(ctx["pj"]).parent
        cmd = (f"PATH={pj_bin}:$PATH PJ_VENV={pj_bin.parent} "
               f"bash {sbatch_file} {qcgfile} --quiet --workdir {workdir}")
    elif system == "slurm-srun":
        cmd = (f"seq {n} | xargs -P{SRUN_WIDTH} -I{{}} "
               "srun -N1 -n1 --exact --quiet /bin/true")
    else:
        cmd = f"{ctx['qcg']} --file-path {qcgfile}"
    script = _wrapper(run_dir, cmd)
    t_submit = time.perf_counter()
    rc_sbatch = _sbatch(run_dir, script, a.slurm_nodes, a.timeout)
    outer = time.perf_counter() - t_submit
    try:
        t0, t1, rc_s = (run_dir / "timing").read_text().split()
        wall, rc = float(t1) - float(t0), int(rc_s)
    except (OSError, ValueError):
        wall, rc = outer, rc_sbatch if rc_sbatch else 1
    problem = None if rc == 0 else f"exit status {rc} (sbatch {rc_sbatch})"
    if problem is None and system == "slurm-pj":
        problem = check_pj(workdir, n, False)
    if system == "slurm-qcg" and problem is None:
        problem = check_qcg(run_dir, n)
    if problem and system != "slurm-qcg":
        out = (run_dir / "slurm.out")
        text = out.read_text(errors="replace")[-3000:] if out.exists() else "(no slurm.out)"
        raise RuntimeError(f"{system} round {rnd}: {problem}\n{text}\n--- logs kept in {run_dir}")
    if not problem and not a.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"system": system, "round": rnd, "tasks": n, "wall_s": wall, "cpu_s": 0.0,
            "tasks_per_s": n / wall, "rc": rc, "ok": problem is None, "problem": problem,
            "cmd": cmd, "outer_wall_s": outer}
