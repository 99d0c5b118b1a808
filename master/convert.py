"""Protobuf <-> core objects, in one place (the servicers call nothing else to translate)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pj.common.peercheck import PeerError
from pj.common.specbatch import BatchError, SpecBatch
from pj.v1 import pj_pb2 as pb

from . import usage
from .allocs import IDLE_DEFAULT_S, Alloc, AllocQueue
from .launch import TaskLaunch
from .model import ONE, Dependency, Iterations, JobSpec, NodeInfo, Range, Request, Sizing, State
from .pool import Node
from .reconcile import Exit
from .registry import Job, Task


def _range(r: pb.Range | None) -> Range:
    if r is None:
        return ONE
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
    requests of its jobs are one object each (100 000 jobs running one program keep one copy).

    Only the fields the message sets are read (``ListFields``, one call): a Submit converts every
    job of its batch before it answers, and most fields of most jobs are left empty."""
    one = shared.setdefault if shared is not None else _same
    name = exec_ = script = wd = stdin = stdout = stderr = venv = ""
    model = "default"
    args: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    model_args: tuple[str, ...] = ()
    mpirun = ""
    env: tuple[tuple[str, str], ...] = ()
    after: tuple[Dependency, ...] = ()
    iterations = None
    cores = nodes = None
    gpus = retries = memory = 0
    walltime_s = 0.0
    for fd, value in msg.ListFields():
        n = fd.number
        if n == _NAME:
            name = value
        elif n == _EXEC:
            exec_ = one(value, value)  # type: ignore[assignment]
        elif n == _CORES:
            cores = value
        elif n == _SCRIPT:
            script = one(value, value)  # type: ignore[assignment]
        elif n == _ARGS:
            args = tuple(value)
        elif n == _ENV:
            env = tuple(sorted(value.items()))
        elif n == _WD:
            wd = one(value, value)  # type: ignore[assignment]
        elif n == _STDIN:
            stdin = value
        elif n == _STDOUT:
            stdout = value
        elif n == _STDERR:
            stderr = value
        elif n == _NODES:
            nodes = value
        elif n == _GPUS:
            gpus = value
        elif n == _ITERATIONS:
            iterations = (
                Iterations(0, len(value.values), tuple(value.values)) if value.values
                else Iterations(value.start, value.stop)
            )
        elif n == _AFTER:
            after = tuple(dependency(a) for a in value)
        elif n == _MODEL:
            model = one(value, value)  # type: ignore[assignment]
        elif n == _MODULES:
            modules = tuple(value)
        elif n == _VENV:
            venv = value
        elif n == _WALLTIME:
            walltime_s = value
        elif n == _RETRIES:
            retries = value
        elif n == _MPIRUN:
            mpirun = value
        elif n == _MODEL_ARGS:
            model_args = tuple(value)
        elif n == _MEMORY:
            memory = value
    if cores is None and nodes is None and not gpus and not memory:
        request = _ONE_CORE
    else:
        sizing = _sizing(cores, nodes) if iterations is not None else None
        key = (
            "request",
            None if cores is None else (cores.min, cores.max),
            None if nodes is None else (nodes.min, nodes.max),
            gpus,
            memory,
            sizing,
        )
        found = shared.get(key) if shared is not None else None
        if isinstance(found, Request):
            request = found
        else:
            request = Request(cores=_range(cores), nodes=_range(nodes), gpus=gpus, sizing=sizing, memory=memory)
            request = one(request, request)  # type: ignore[assignment]
            if shared is not None:
                shared[key] = request
    return JobSpec(
        name, exec_, script, args, env, wd, stdin, stdout, stderr, request, iterations, after, model,
        modules, venv, walltime_s, retries, base_dir or "/", mpirun, model_args,
    )


def _sizing(cores: pb.Range | None, nodes: pb.Range | None) -> Sizing | None:
    """The iteration scheduler of a job with iterations (checked at submit: at most one range has one)."""
    for field, r in (("cores", cores), ("nodes", nodes)):
        if r is not None and r.HasField("scheduler"):
            return Sizing(field, r.scheduler.name, r.scheduler.parts)
    return None


_F = pb.JobSpec.DESCRIPTOR.fields_by_name
_NAME, _EXEC, _SCRIPT, _ARGS, _ENV, _WD, _STDIN, _STDOUT, _STDERR = (
    _F[f].number for f in ("name", "exec", "script", "args", "env", "wd", "stdin", "stdout", "stderr")
)
_CORES, _NODES, _GPUS, _ITERATIONS, _AFTER, _MODEL, _MODULES, _VENV, _WALLTIME, _RETRIES = (
    _F[f].number
    for f in ("cores", "nodes", "gpus", "iterations", "after", "model", "modules", "venv", "walltime_s", "retries")
)
_MEMORY = _F["memory_request_bytes"].number
_MPIRUN, _MODEL_ARGS = _F["mpirun"].number, _F["model_args"].number


_ONE_CORE = Request()


def _same(key: object, value: object) -> object:
    return value


def specs_from_pb(msgs: Sequence[pb.JobSpec], base_dir: str, copies: Sequence[int] | None = None) -> list[JobSpec]:
    """A batch of specs, sharing equal strings and requests (and the one base directory).
    ``copies[i]`` >= 0 (``alike``, ``SpecBatch``): job i is job copies[i] but for its name, and its
    spec is that one's, the very object (its name the other job's: Core.submit takes the names)."""
    shared: dict[object, object] = {}
    base = base_dir or "/"
    if copies is None:
        return [spec_from_pb(m, base, shared) for m in msgs]
    out: list[JobSpec] = []
    for m, k in zip(msgs, copies, strict=True):
        out.append(spec_from_pb(m, base, shared) if k < 0 else out[k])
    return out


def alike(msgs: Sequence[pb.JobSpec]) -> list[int]:
    """For each spec, the index of the first earlier one equal to it but for its name, or -1.
    Campaigns are mostly such jobs: each is then checked by its name and converted by a copy
    (1M one-core jobs: the master's Submit 16.6 -> ~10 s). Equal bytes of the deterministic
    serialization without the name are equal specs. The messages are left as they were."""
    seen: dict[bytes, int] = {}
    out: list[int] = []
    for i, m in enumerate(msgs):
        name = m.name
        m.ClearField("name")
        key = m.SerializeToString(deterministic=True)
        m.name = name
        first = seen.setdefault(key, i)
        out.append(first if first != i else -1)
    return out


def submit_batch(req: pb.SubmitRequest) -> SpecBatch:
    """The jobs of ``req`` in order, copies spelled out (``copies``/``copy_names``); a request
    without copies has its jobs alike but for their names found here (``alike``). Raises PeerError
    when its copies and their names do not add up."""
    try:
        batch = SpecBatch.from_request(req)
    except BatchError as e:
        raise PeerError("SubmitRequest", e.field, e.reason) from None
    if not req.copies:
        batch.copy_of = alike(batch.specs)
    return batch


def batch_specs(batch: SpecBatch, base_dir: str) -> list[JobSpec]:
    """The core's specs of a checked batch, for ``Core.submit(specs, names=batch.names)``: a
    copy's spec is its original's, the very object."""
    return specs_from_pb(batch.specs, base_dir, batch.copy_of)


def node_from_pb(msg: pb.Register) -> NodeInfo:
    return NodeInfo(
        name=msg.node,
        cores=msg.cores,
        gpus=tuple(msg.gpus),
        memory_bytes=msg.memory_bytes,
        hostname=msg.hostname,
        ends_at=max(msg.ends_at, 0.0),
    )


def launch_to_pb(t: TaskLaunch) -> pb.Launch:
    msg = pb.Orders()
    add_launches(msg.launch, (t,))
    return msg.launch[0]


def add_launches(into: Any, launches: Iterable[TaskLaunch]) -> None:
    """Append each launch to a repeated ``Launch`` field, built in place (no copy)."""
    add = into.add
    for t in launches:
        msg = add(
            task_id=t.task_id,
            argv=t.argv,
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
        env = msg.env  # set item by item: env= in add() goes through MutableMapping.update (Python)
        for k, v in t.env.items():
            env[k] = v


def _history(h: Sequence[tuple[State, float]]) -> list[pb.StateChange]:
    return [pb.StateChange(state=int(s), time=t) for s, t in h]  # type: ignore[arg-type]


def add_summaries(into: Any, jobs: Iterable[Job]) -> None:
    """Append each job's summary to a repeated ``JobSummary`` field, built in place (a Watch
    event carries every job that changed since the last one)."""
    add = into.add
    for job in jobs:
        add(
            name=job.name,
            state=job.state._value_,
            reason=job.reason,
            iterations=job.total if job.tmpl.iterations is not None else 0,
            iterations_done=job.done,
            iterations_failed=job.failed,
        )


def summary_to_pb(job: Job, reason: str | None = None) -> pb.JobSummary:
    """``reason``: what to say in place of the job's own (why.py: why an unfinished job waits)."""
    return pb.JobSummary(
        name=job.name,
        state=int(job.state),  # type: ignore[arg-type]
        reason=job.reason if reason is None else reason,
        iterations=job.total if job.tmpl.iterations is not None else 0,
        iterations_done=job.done,
        iterations_failed=job.failed,
    )


def usage_from_pb(e: pb.TaskExited) -> bytes:
    """A TaskExited's CPU times and peak memory, packed as the registry keeps them."""
    return usage.pack(e.cpu_user_s, e.cpu_system_s, e.max_rss_kb)


def exit_from_pb(e: pb.TaskExited) -> Exit:
    """An exit a returning agent's Register names (reconcile.py)."""
    return (e.task_id, e.exit_code, e.error, usage_from_pb(e), e.stderr_tail)


def task_to_pb(task: Task) -> pb.TaskInfo:
    used = usage.unpack(task.usage)
    msg = pb.TaskInfo(
        name=task.name,
        iteration=task.iteration or 0,
        has_iteration=task.iteration is not None,
        state=int(task.state),  # type: ignore[arg-type]
        reason=task.reason,
        shares=[pb.NodeShare(node=s.node, cores=s.cores, gpus=s.gpus, memory_bytes=s.memory) for s in task.allocation],
        history=_history(task.history),
        cpu_user_s=used.cpu_user_s,
        cpu_system_s=used.cpu_system_s,
        max_rss_kb=used.max_rss_kb,
        stderr_tail=task.stderr_tail,
    )
    if task.exit_code is not None:
        msg.exit_code = task.exit_code
    return msg


def info_to_pb(job: Job, with_tasks: bool, reason: str | None = None) -> pb.JobInfo:
    msg = pb.JobInfo(summary=summary_to_pb(job, reason), history=_history(job.history))
    if with_tasks or job.tmpl.iterations is None:
        msg.tasks.extend(task_to_pb(t) for t in job.each_task())
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
        ends_at=node.ends_at,
        memory_free_bytes=node.free_memory,
    )


def reasons_to_pb(counts: dict[str, int]) -> list[pb.ReasonCount]:
    return [pb.ReasonCount(kind=k, count=n) for k, n in counts.items()]


def counts_to_pb(counts: dict[State, int]) -> list[pb.StateCount]:
    return [pb.StateCount(state=int(s), count=n) for s, n in sorted(counts.items()) if n > 0]  # type: ignore[arg-type]


def queue_from_pb(msg: pb.AllocQueueSpec) -> AllocQueue:
    """A `pj alloc add` request; ``AllocQueue.check`` (by the manager) says what is wrong with it."""
    return AllocQueue(0, msg.nodes, msg.time_s, msg.max_allocations or 1, msg.idle_timeout_s or IDLE_DEFAULT_S,
                      msg.partition, msg.account, tuple(msg.extra_args))


def queue_to_pb(q: AllocQueue, script_dir: str) -> pb.AllocQueueInfo:
    spec = pb.AllocQueueSpec(nodes=q.nodes, time_s=q.time_s, max_allocations=q.max_allocs, idle_timeout_s=q.idle_s,
                             partition=q.partition, account=q.account, extra_args=q.extra)
    return pb.AllocQueueInfo(id=q.id, spec=spec, removed=q.removed, problem=q.problem, next_try_at=q.next_try_at,
                             script_dir=script_dir)


def alloc_to_pb(a: Alloc) -> pb.AllocInfo:
    return pb.AllocInfo(id=a.id, queue=a.queue, job_id=a.job_id, state=a.state.value, nodes=sorted(a.nodes),
                        submitted_at=a.submitted_at, started_at=a.started_at, ended_at=a.ended_at, why=a.why,
                        ends_at=a.ends_at)
