"""Drive PJ from Python with ``pj.client.Client``.

    python examples/api_example.py

It starts its own master and one agent (two cores) as subprocesses, in a temporary workdir, submits
a small campaign, waits for it, prints what became of every job, then stops the master and the agent.
With ``PJ_WORKDIR=DIR`` set, the workdir is DIR instead, and is kept afterwards (master.log,
agent-node0.log, jobs.jsonl and the jobs' output under DIR/example-out); DIR must not hold a
running master. Exits 0 when every job succeeded and both processes stopped cleanly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pj.client import Client

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


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT)


def wait_for_master(workdir: Path, master: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """The master writes DIR/master.json (its address) and DIR/token once it listens."""
    deadline = time.monotonic() + timeout
    while not (workdir / "master.json").exists():
        if master.poll() is not None or time.monotonic() > deadline:
            sys.exit("the master did not start:\n" + (workdir / "master.log").read_text())
        time.sleep(0.05)


def run(workdir: Path) -> int:
    if (workdir / "master.json").exists():
        sys.exit(f"a master already runs in {workdir}: use another PJ_WORKDIR")
    out = workdir / "example-out"  # where the jobs run (relative paths resolve here)
    out.mkdir(parents=True, exist_ok=True)

    # 1. A master (--expect-nodes 1: a job too big for the one agent fails at once) and an agent.
    master = start(["pj.master", "--workdir", str(workdir), "--expect-nodes", "1"], workdir / "master.log")
    agent = None
    try:
        wait_for_master(workdir, master)
        agent = start(["pj.agent", "--workdir", str(workdir), "--name", "node0", "--cores", "2"],
                      workdir / "agent-node0.log")

        # 2. Talk to the master: Client finds it through the workdir (master.json and token).
        with Client(workdir) as pj:
            names = pj.submit(JOBS, base_dir=out)  # all or nothing; jobs queue until the agent joins
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

        # 6. The master tells the agent to stop, writes DIR/jobs.jsonl and exits.
        codes = master.wait(30), agent.wait(30)
        print("master and agent exit codes:", *codes)
        report = (workdir / "jobs.jsonl").read_text().splitlines()
        print(f"jobs.jsonl: {len(report)} lines (one per job and per iteration)")
        ok = all(state == "SUCCEED" for state in final.values()) and codes == (0, 0)
        return 0 if ok else 1
    finally:
        for p in (agent, master):  # only if something above went wrong
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(30)


def main() -> int:
    if os.environ.get("PJ_WORKDIR"):
        return run(Path(os.environ["PJ_WORKDIR"]).absolute())
    with tempfile.TemporaryDirectory(prefix="pj-example-") as tmp:
        return run(Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
