"""The shell around the allocation manager (allocs.py): sbatch, squeue, scontrol and scancel.

One task in the master's TaskGroup (``AllocShell.run``) ticks every ``POLL_S``: it asks Slurm how
the live allocations fare (one ``squeue`` for all, ``scontrol`` for those squeue no longer shows),
feeds the manager, lets it decide on the core's waiting work and idle nodes, and runs its
commands: an allocation's script is written to DIR/allocs/<id>/alloc.sbatch (kept for the user)
and submitted with ``sbatch --parsable``; ``scancel`` when told; a release tells the allocation's
agents to leave (their one srun ends, and with it the allocation). Every subprocess has a timeout;
a missing or failing command is a refusal with its message, never a crash.

Agents tell their allocation by $SLURM_JOB_ID (Register.alloc_job_id): the servicer calls
``joined`` and ``left``.
"""

from __future__ import annotations

import asyncio
import math
import os
import shlex
import sys
from pathlib import Path

import structlog

from .allocs import AllocQueue, Cancel, Manager, Release, Submit
from .runtime import Dispatcher

log = structlog.get_logger("pj.master")

POLL_S = 2.0
COMMAND_TIMEOUT_S = 30.0
RELEASE_REASON = "idle: its allocation is released"
FINAL_SLURM = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
               "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"}  # fmt: skip


def agent_python() -> str:
    """The python the allocations' agents run: $PJ_VENV's, else the master's own."""
    venv = os.environ.get("PJ_VENV", "")
    if venv and os.access(Path(venv) / "bin" / "python", os.X_OK):
        return str(Path(venv) / "bin" / "python")
    return sys.executable


def script(q: AllocQueue, alloc_id: int, workdir: Path, python: str) -> str:
    """The batch script of one allocation: ONE srun of one agent per node."""
    minutes = max(1, math.ceil(q.time_s / 60))
    out = workdir / "allocs" / str(alloc_id)
    lines = [
        "#!/bin/bash",
        f"# Allocation {alloc_id} of alloc queue {q.id}, written by pj-master for `pj alloc`.",
        f"# Submitted as: sbatch --parsable {shlex.join(sbatch_args(q))} {out / 'alloc.sbatch'}",
        f"#SBATCH --job-name=pj-alloc-{alloc_id}",
        f"#SBATCH --nodes={q.nodes}",
        "#SBATCH --exclusive",  # whole nodes: one agent per node, and no other allocation's agent beside it
        f"#SBATCH --time={minutes}",
        f"#SBATCH --output={out / 'slurm-%j.out'}",
        "set -u",
        f"exec srun --overlap --ntasks-per-node=1 --nodes={q.nodes} {shlex.quote(python)} -m pj.agent "
        f"--workdir {shlex.quote(str(workdir))}",
        "",
    ]
    return "\n".join(lines)


def sbatch_args(q: AllocQueue) -> list[str]:
    args = []
    if q.partition:
        args.append(f"--partition={q.partition}")
    if q.account:
        args.append(f"--account={q.account}")
    return [*args, *q.extra]


async def command(*argv: str, timeout: float = COMMAND_TIMEOUT_S) -> tuple[int, str, str]:
    """Run a command; (exit code, stdout, stderr). A missing command or a timeout is exit code 127/124."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as e:
        return 127, "", f"{argv[0]}: cannot run it ({e.strerror or e}); is Slurm installed and on PATH?"
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, "", f"{argv[0]}: no answer within {timeout:g} s"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def errors(text: str) -> str:
    """sbatch's error lines in one: ``invalid partition specified: nosuch; Batch job submission failed: ...``."""
    lines = [x.strip().removeprefix("sbatch: error:").strip() for x in text.strip().splitlines() if x.strip()]
    return "; ".join(dict.fromkeys(x for x in lines if x))


def parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    """``squeue -h -o '%i|%T|%S'`` -> job id -> (state, start time as Slurm prints it)."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


def slurm_time(text: str) -> float:
    """Slurm's ``2026-12-05T10:00:00`` (local) as epoch seconds; 0 for N/A, Unknown, or bad text."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


class AllocShell:
    def __init__(self, master: Dispatcher, workdir: Path, manager: Manager | None = None,
                 poll_s: float = POLL_S, python: str = "") -> None:
        self.m = master
        self.workdir = workdir
        self.manager = manager or Manager()
        self.poll_s = poll_s
        self.python = python or agent_python()
        self._poke = asyncio.Event()

    # ------------------------------------------------------------------ from the servicers

    def joined(self, node: str, job_id: str, cores: int, ends_at: float = 0.0) -> bool:
        """An agent registered (``job_id``: its $SLURM_JOB_ID). False: it belongs to an allocation
        that is over: the caller tells it to leave."""
        return self.manager.node_joined(node, job_id, cores, self.m.now(), ends_at) if job_id else True

    def left(self, node: str) -> None:
        self.manager.node_left(node)

    def add(self, q: AllocQueue) -> AllocQueue:
        q = self.manager.add_queue(q.nodes, q.time_s, q.max_allocs, q.idle_s, q.partition, q.account, q.extra)
        log.info("alloc queue added", id=q.id, nodes=q.nodes, time_s=q.time_s, max_allocations=q.max_allocs,
                 idle_timeout_s=q.idle_s, partition=q.partition, account=q.account, extra=list(q.extra))
        self._wake()
        return q

    def remove(self, queue_id: int) -> None:
        self.manager.remove_queue(queue_id, self.m.now())  # KeyError: no such queue
        log.info("alloc queue removed", id=queue_id)
        self._wake()

    # ------------------------------------------------------------------ the loop

    def _wake(self) -> None:
        self._poke.set()

    async def run(self) -> None:
        """Tick until the master stops; then cancel every allocation still alive."""
        while not self.m.stopping:
            if self.manager.queues:
                await self.m.settled()  # the waiting work is what the last pass left
                await self.tick()
            try:
                await asyncio.wait_for(self._poke.wait(), self.poll_s)
            except TimeoutError:
                pass
            self._poke.clear()
        for a in self.manager.live():
            await self._run_command(Cancel(a.id, a.job_id), "the master stopped")

    async def tick(self) -> None:
        mgr, now = self.manager, self.m.now()
        await self.poll()
        core = self.m.core
        for c in mgr.step(now, core.waiting_work() if not core.finishing else {}, core.idle_nodes()):
            await self._run_command(c)
        for c in mgr.out:  # what the answers above led to (a late job id to cancel)
            await self._run_command(c)
        mgr.out.clear()

    async def poll(self) -> None:
        """Ask Slurm about every live allocation: one squeue, and scontrol for the ones it no longer lists."""
        live = self.manager.live()
        if not live:
            return
        ids = [a.job_id for a in live]
        code, out, err = await command("squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%S")
        if code != 0 and "Invalid job id" not in err:
            log.warning("squeue failed: allocations not polled", error=last_line(err))
            return
        seen = parse_squeue(out)
        now = self.m.now()
        for a in live:
            state, start = seen.get(a.job_id, ("", ""))
            if not state:
                state, reason = await self._scontrol(a.job_id)
            else:
                reason = ""
            if state in ("RUNNING", "COMPLETING") or (state in FINAL_SLURM and slurm_time(start)):
                self.manager.started(a.job_id, slurm_time(start) or now)
            if not state or state in FINAL_SLURM:
                if not reason and state in FINAL_SLURM:
                    _, reason = await self._scontrol(a.job_id)
                why = " ".join(x for x in (state or "gone from squeue", f"({reason})" if reason else "") if x)
                self.manager.gone(a.job_id, why, now)
                log.info("allocation ended", id=a.id, job_id=a.job_id, state=a.state.value, why=a.why)

    @staticmethod
    async def _scontrol(job_id: str) -> tuple[str, str]:
        code, out, _ = await command("scontrol", "-o", "show", "job", job_id)
        if code != 0:
            return "", ""
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        reason = fields.get("Reason", "")
        return fields.get("JobState", ""), "" if reason in ("None", "") else reason

    async def _run_command(self, c: Submit | Cancel | Release, why: str = "") -> None:
        if isinstance(c, Submit):
            await self._submit(c)
        elif isinstance(c, Cancel):
            code, _, err = await command("scancel", c.job_id)
            log.info("allocation cancelled", id=c.alloc, job_id=c.job_id, why=why or self.manager.allocs[c.alloc].why,
                     **({"error": last_line(err)} if code else {}))
        else:
            self.release(c.nodes)

    def release(self, nodes: tuple[str, ...]) -> None:
        """Tell each agent to leave (nothing more is placed there first)."""
        for node in nodes:
            self.m.core.retire(node)
            conn = self.m.agents.get(node)
            if conn is not None and not conn.shutdown:
                conn.shutdown = RELEASE_REASON
                conn.wake()
        self.m.poke()

    async def _submit(self, c: Submit) -> None:
        mgr, q = self.manager, c.queue
        folder = self.workdir / "allocs" / str(c.alloc)
        path = folder / "alloc.sbatch"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(script(q, c.alloc, self.workdir, self.python))
        except OSError as e:
            mgr.refused(c.alloc, f"cannot write {path}: {e.strerror or e}", self.m.now())
            return
        code, out, err = await command("sbatch", "--parsable", *sbatch_args(q), str(path))
        job_id = out.strip().split(";")[0]
        if code != 0 or not job_id.isdigit():
            error = errors(err) or last_line(out) or f"sbatch exited {code}"
            mgr.refused(c.alloc, error, self.m.now())
            log.warning("sbatch refused an allocation", id=c.alloc, queue=q.id, error=error,
                        next_try_s=round(q.next_try_at - self.m.now(), 1))
            return
        mgr.submitted(c.alloc, job_id, self.m.now())
        log.info("allocation submitted", id=c.alloc, queue=q.id, job_id=job_id, script=str(path))
