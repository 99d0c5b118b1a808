"""Protobuf <-> core objects, in one place (the servicers call nothing else to translate)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pj.v1 import pj_pb2 as pb

from .launch import TaskLaunch
from .model import ONE, Dependency, Iterations, JobSpec, NodeInfo, Range, Request, State
from .pool import Node
from .registry import Job, Task


def _range(msg: pb.JobSpec, name: str) -> Range:
    if not msg.HasField(name):  # type: ignore[arg-type]
        return ONE
    r = getattr(msg, name)
    lo = max(r.min, 1)
    return Range(lo, None if r.max == 0 else max(r.max, lo))


def dependency(text: str) -> Dependency:
    job, sep, it = text.partition(":")
    if not sep:
        return Dependency(job)
    if it == "${it}":
        return Dependency(job, per_iteration=True)
    return Dependency(job, iteration=int(it))


def spec_from_pb(msg: pb.JobSpec, base_dir: str, shared: dict[object, object] | None = None) -> JobSpec:
    """``shared``: one dict for a whole batch (``specs_from_pb``), so that equal strings and
    requests of its jobs are one object each (100 000 jobs running one program keep one copy)."""
    iterations = None
    if msg.HasField("iterations"):
        i = msg.iterations
        iterations = (
            Iterations(0, len(i.values), tuple(i.values)) if i.values else Iterations(i.start, i.stop)
        )
    one = shared.setdefault if shared is not None else _same
    has_range = msg.HasField("cores") or msg.HasField("nodes")
    if has_range or msg.gpus:
        request = Request(cores=_range(msg, "cores"), nodes=_range(msg, "nodes"), gpus=msg.gpus)
        request = one(request, request)  # type: ignore[assignment]
    else:
        request = _ONE_CORE
    env = msg.env
    return JobSpec(
        name=msg.name,
        exec=one(msg.exec, msg.exec),  # type: ignore[arg-type]
        script=one(msg.script, msg.script),  # type: ignore[arg-type]
        args=tuple(msg.args),
        env=tuple(sorted(env.items())) if env else (),
        wd=one(msg.wd, msg.wd),  # type: ignore[arg-type]
        stdin=msg.stdin,
        stdout=msg.stdout,
        stderr=msg.stderr,
        request=request,
        iterations=iterations,
        after=tuple(dependency(a) for a in msg.after) if msg.after else (),
        model=one(msg.model, msg.model) if msg.model else "default",  # type: ignore[arg-type]
        modules=tuple(msg.modules),
        venv=msg.venv,
        walltime_s=msg.walltime_s,
        retries=msg.retries,
        base_dir=base_dir or "/",
    )


_ONE_CORE = Request()


def _same(key: object, value: object) -> object:
    return value


def specs_from_pb(msgs: Iterable[pb.JobSpec], base_dir: str) -> list[JobSpec]:
    """A batch of specs, sharing equal strings and requests (and the one base directory)."""
    shared: dict[object, object] = {}
    base = base_dir or "/"
    return [spec_from_pb(m, base, shared) for m in msgs]


def node_from_pb(msg: pb.Register) -> NodeInfo:
    return NodeInfo(
        name=msg.node,
        cores=msg.cores,
        gpus=tuple(msg.gpus),
        memory_bytes=msg.memory_bytes,
        hostname=msg.hostname,
    )


def launch_to_pb(t: TaskLaunch) -> pb.Launch:
    msg = pb.Orders()
    add_launches(msg.launch, (t,))
    return msg.launch[0]


def add_launches(into: Any, launches: Iterable[TaskLaunch]) -> None:
    """Append each launch to a repeated ``Launch`` field, built in place (no copy)."""
    add = into.add
    for t in launches:
        add(
            task_id=t.task_id,
            argv=t.argv,
            env=t.env,
            wd=t.wd,
            stdin=t.stdin,
            stdout=t.stdout,
            stderr=t.stderr,
            cores=t.cores,
            gpus=t.gpus,
            walltime_s=t.walltime_s,
            hostfile=t.hostfile,
            slurm_hostfile=t.slurm_hostfile,
        )


def _history(h: list[tuple[State, float]]) -> list[pb.StateChange]:
    return [pb.StateChange(state=int(s), time=t) for s, t in h]  # type: ignore[arg-type]


def summary_to_pb(job: Job) -> pb.JobSummary:
    return pb.JobSummary(
        name=job.name,
        state=int(job.state),  # type: ignore[arg-type]
        reason=job.reason,
        iterations=job.total if job.spec.iterations is not None else 0,
        iterations_done=job.done,
        iterations_failed=job.failed,
    )


def task_to_pb(task: Task) -> pb.TaskInfo:
    msg = pb.TaskInfo(
        name=task.name,
        iteration=task.iteration or 0,
        has_iteration=task.iteration is not None,
        state=int(task.state),  # type: ignore[arg-type]
        reason=task.reason,
        shares=[pb.NodeShare(node=s.node, cores=s.cores, gpus=s.gpus) for s in task.allocation],
        history=_history(task.history),
    )
    if task.exit_code is not None:
        msg.exit_code = task.exit_code
    return msg


def info_to_pb(job: Job, with_tasks: bool) -> pb.JobInfo:
    msg = pb.JobInfo(summary=summary_to_pb(job), history=_history(job.history))
    if with_tasks or job.spec.iterations is None:
        msg.tasks.extend(task_to_pb(t) for t in job.tasks.values())
    return msg


def node_to_pb(node: Node) -> pb.NodeResources:
    return pb.NodeResources(
        name=node.name,
        cores=node.total_cores,
        cores_free=len(node.free_cores),
        gpus=node.gpus,
        gpus_free=len(node.free_gpus),
        memory_bytes=node.info.memory_bytes,
        online=node.online,
    )


def counts_to_pb(counts: dict[State, int]) -> list[pb.StateCount]:
    return [pb.StateCount(state=int(s), count=n) for s, n in sorted(counts.items()) if n > 0]  # type: ignore[arg-type]
