"""Drive PJ from Python with ``pj.client.LocalCluster`` and ``pj.client.Client``.

    python examples/api_example.py

It starts its own master and one agent (two cores) with ``LocalCluster``, in a temporary workdir,
submits a small campaign, waits for it, prints what became of every job, then stops the master and
the agent. With ``PJ_WORKDIR=DIR`` set, the workdir is DIR instead, and is kept afterwards
(master.log, agent-node0.log, jobs.jsonl and the jobs' output under DIR/example-out); DIR must not
hold a running master. Exits 0 when every job succeeded and both processes stopped cleanly.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pj.client import ClusterError, LocalCluster

# A campaign in PJ's native job format (the same fields as in a JSON job file).
JOBS = [
    # One task: make the input.
    {"name": "prep", "script": "echo 'seed 42' > seed.txt"},
    # Three iterations (0, 1, 2) that may run in parallel once prep has succeeded.
    # ${it} is replaced by the iteration number in every field.
    {"name": "sim", "exec": "/bin/sh", "args": ["-c", "cat seed.txt; echo case ${it}"],
     "iterations": 3, "after": ["prep"], "cores": 1, "stdout": "sim-${it}.txt"},
    # A per-iteration dependency: post:N starts as soon as sim:N has succeeded, whatever the others do.
    {"name": "post", "script": "wc -l < sim-${it}.txt > post-${it}.txt", "iterations": 3,
     "after": ["sim:${it}"]},
    # Runs once every iteration of post has succeeded: adds up their counts (3 x 2 lines).
    {"name": "summary", "script": "awk '{ n += $1 } END { print n }' post-*.txt > summary.txt",
     "after": ["post"]},
]


def run(workdir: Path) -> int:
    out = workdir / "example-out"  # where the jobs run (relative paths resolve here)

    # 1. A master and one agent of two cores, as processes of their own; ready once the agent has
    #    joined. Leaving the block (an exception, Ctrl-C included) cancels what runs and stops them.
    with LocalCluster(nodes=1, cores=2, workdir=workdir) as cluster:
        out.mkdir(parents=True, exist_ok=True)

        # 2. Talk to the master: a Client connected to it.
        with cluster.client() as pj:
            names = pj.submit(JOBS, base_dir=out)  # all or nothing
            print("submitted:", ", ".join(names))

            # 3. Wait for the jobs to end: a server stream, no polling. Returns name -> final state.
            final = pj.wait(names, timeout=120)
            print("final states:", final)

            # 4. The details of each job, and of each of its tasks (one per iteration).
            for info in pj.info(names, with_tasks=True):
                s = info.summary
                its = f", {s.iterations_done}/{s.iterations} iterations" if s.iterations else ""
                print(f"job {s.name}: {s.state}{its}" + (f" ({s.reason})" if s.reason else ""))
                for t in sorted(info.tasks, key=lambda t: t.iteration or 0):
                    where = " ".join(f"{sh.node}{list(sh.cores)}" for sh in t.shares)
                    print(f"  task {t.name}: {t.state}, exit code {t.exit_code}, on {where}")
            print("summary.txt:", (out / "summary.txt").read_text().strip())

            # 5. Stop the master once every job has ended (finish(drain=False) would cancel them).
            pj.finish()

    # 6. The master told the agent to stop, wrote DIR/jobs.jsonl and exited; the block waited for both.
    codes = tuple(cluster.exit_codes.values())
    print("master and agent exit codes:", *codes)
    report = (workdir / "jobs.jsonl").read_text().splitlines()
    print(f"jobs.jsonl: {len(report)} lines (one per job and per iteration)")
    ok = all(state == "SUCCEED" for state in final.values()) and codes == (0, 0)
    return 0 if ok else 1


def main() -> int:
    try:
        if os.environ.get("PJ_WORKDIR"):
            return run(Path(os.environ["PJ_WORKDIR"]).absolute())
        with tempfile.TemporaryDirectory(prefix="pj-example-") as tmp:
            return run(Path(tmp))
    except ClusterError as e:  # e.g. a master already runs in PJ_WORKDIR; the message names the log
        sys.exit(f"api_example: {e}")


if __name__ == "__main__":
    sys.exit(main())
