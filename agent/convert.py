"""Protobuf <-> the agent's domain types (state.py). The only place that knows both."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pj.v1 import pj_pb2

from .resources import NodeResources
from .state import ReportExited, ReportStarted, TaskSpec, WithdrawTask


def spec_from_pb(m: pj_pb2.Launch) -> TaskSpec:
    return TaskSpec(
        task_id=m.task_id,
        argv=tuple(m.argv),
        env=dict(m.env) if m.env else {},
        wd=m.wd,
        stdin=m.stdin,
        stdout=m.stdout,
        stderr=m.stderr,
        cores=tuple(m.cores),
        gpus=tuple(m.gpus),
        walltime_s=m.walltime_s,
        hostfile=m.hostfile,
        slurm_hostfile=m.slurm_hostfile,
    )


def withdraw_from_pb(task_ids: Iterable[int]) -> list[WithdrawTask]:
    """Orders.withdraw: the launches the master takes back (dropped only if still held)."""
    return [WithdrawTask(t) for t in task_ids]


def started_to_pb(r: ReportStarted) -> pj_pb2.TaskStarted:
    return pj_pb2.TaskStarted(task_id=r.task_id, pid=r.pid, time=r.time)


def exited_to_pb(r: ReportExited) -> pj_pb2.TaskExited:
    return pj_pb2.TaskExited(
        task_id=r.task_id,
        exit_code=r.exit_code,
        time=r.time,
        error=r.error,
        cpu_user_s=r.cpu_user_s,
        cpu_system_s=r.cpu_system_s,
        max_rss_kb=r.max_rss_kb,
        stderr_tail=r.stderr_tail,
    )


def register_pb(node: str, res: NodeResources, hostname: str, pid: int, version: str,
                alloc_job_id: str = "") -> pj_pb2.AgentMessage:
    return pj_pb2.AgentMessage(
        register=pj_pb2.Register(
            node=node,
            cores=res.cores,
            gpus=list(res.gpus),
            memory_bytes=res.memory_bytes,
            ends_at=res.ends_at,
            hostname=hostname,
            pid=pid,
            version=version,
            alloc_job_id=alloc_job_id,
        )
    )


def events_pb(
    started: list[ReportStarted], exited: list[ReportExited], withdrawn: Sequence[int] = ()
) -> pj_pb2.AgentMessage:
    """AgentEvents; ``withdrawn``: the task ids of ReportWithdrawn."""
    return pj_pb2.AgentMessage(
        events=pj_pb2.AgentEvents(
            started=[started_to_pb(r) for r in started],
            exited=[exited_to_pb(r) for r in exited],
            withdrawn=withdrawn,
        )
    )


def heartbeat_pb(now: float) -> pj_pb2.AgentMessage:
    return pj_pb2.AgentMessage(heartbeat=pj_pb2.Heartbeat(time=now))
