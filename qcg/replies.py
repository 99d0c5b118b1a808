"""PJ's answers in the shapes of QCG-PilotJob's service answers (pure: no I/O).

QCG scripts index these dicts (``status(names)['jobs'][name]['data']['status']``,
``resources()['total_cores']``), so the keys and nesting follow QCG-PilotJob 0.14. What PJ does
not know (a task's pid) is left out rather than invented.
"""

from __future__ import annotations

import datetime
import os
import platform
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pj.client.convert import (
    FINAL_STATES,
    JobInfo,
    JobSummary,
    NodeShare,
    Resources,
    StateChange,
    Status,
    TaskInfo,
)

__all__ = [
    "JobMeta",
    "allocation",
    "history",
    "info_reply",
    "list_reply",
    "resources_reply",
    "rtime",
    "status_reply",
    "system_status_reply",
]

_BAD = ("FAILED", "CANCELED", "OMITTED")
_WAITING = ("QUEUED", "SCHEDULED")


@dataclass(frozen=True)
class JobMeta:
    """What a Manager remembers of a job it submitted, for answers the master does not give."""

    wd: str  # the job's working directory, ${it} and ${jname} still in it
    program: str  # QCG's "pname": the program's base name
    start: int | None = None  # QCG's iterations start and stop, for iterative jobs
    stop: int | None = None


def _stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f")


def history(changes: Iterable[StateChange]) -> str:
    """QCG's history text: a newline, then "YYYY-mm-dd HH:MM:SS.ffffff: STATE" per change."""
    return "".join(f"\n{_stamp(c.time)}: {c.state}" for c in changes)


def rtime(changes: Iterable[StateChange]) -> str | None:
    """The run time, "H:MM:SS.ffffff", from EXECUTING to the end; None if it has not ended."""
    started = ended = None
    for c in changes:
        if c.state == "EXECUTING" and started is None:
            started = c.time
        elif c.state in FINAL_STATES:
            ended = c.time
    if started is None or ended is None:
        return None
    micros = max(round((ended - started) * 1e6), 0)
    s, us = divmod(micros, 1_000_000)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}.{us:06d}"


def allocation(shares: Iterable[NodeShare]) -> str:
    """QCG's allocation text: ``n0[0:1],n1[2:3]``."""
    return ",".join(f"{s.node}[{':'.join(str(c) for c in s.cores)}]" for s in shares)


def _wd(meta: JobMeta | None, job: str, iteration: int | None) -> str | None:
    if meta is None:
        return None
    wd = meta.wd.replace("${jname}", job)
    if iteration is not None:
        wd = wd.replace("${it}", str(iteration))
    return wd


def _runtime(task: TaskInfo, meta: JobMeta | None, job: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if task.shares:
        out["allocation"] = allocation(task.shares)
    wd = _wd(meta, job, task.iteration)
    if wd is not None:
        out["wd"] = wd
    took = rtime(task.history)
    if took is not None:
        out["rtime"] = took
    if task.exit_code is not None:
        out["exit_code"] = str(task.exit_code)
    if meta is not None and task.state != "QUEUED":
        out["pname"] = meta.program
    return out


def _summary_data(s: JobSummary) -> dict[str, Any]:
    data: dict[str, Any] = {"jobName": s.name, "status": s.state}
    if s.reason:
        data["messages"] = s.reason
    return data


def status_reply(infos: Iterable[JobInfo]) -> dict[str, Any]:
    """``jobStatus``: ``{"jobs": {name: {"status": 0, "data": {"jobName", "status"}}}}``."""
    return {"jobs": {i.name: {"status": 0, "data": _summary_data(i.summary)} for i in infos}}


def list_reply(jobs: Iterable[JobSummary]) -> dict[str, dict[str, Any]]:
    """``listJobs``: ``{name: {"status": STATE, "messages": why (only if it failed)}}``."""
    out: dict[str, dict[str, Any]] = {}
    for j in jobs:
        entry: dict[str, Any] = {"status": j.state}
        if j.reason:
            entry["messages"] = j.reason
        out[j.name] = entry
    return out


def info_reply(infos: Iterable[JobInfo], metas: Mapping[str, JobMeta], with_childs: bool) -> dict[str, Any]:
    """``jobInfo``: per job its status, run time data (allocation, wd, rtime, exit_code), history,
    and for a job with iterations ``iterations`` (start, stop, total, finished, failed) and, with
    ``with_childs``, one entry per iteration started so far."""
    jobs: dict[str, Any] = {}
    for info in infos:
        s, meta = info.summary, metas.get(info.name)
        data = _summary_data(s)
        if s.iterations:
            start = meta.start if meta is not None and meta.start is not None else 0
            stop = meta.stop if meta is not None and meta.stop is not None else start + s.iterations
            data["iterations"] = {
                "start": start, "stop": stop, "total": s.iterations,
                "finished": s.iterations_done - s.iterations_failed, "failed": s.iterations_failed,
            }  # fmt: skip
            if with_childs:
                data["childs"] = [
                    {"iteration": t.iteration, "state": t.state, "runtime": _runtime(t, meta, s.name)}
                    for t in sorted(info.tasks, key=lambda t: t.iteration or 0)
                ]
        elif info.tasks:
            data["runtime"] = _runtime(info.tasks[-1], meta, s.name)
        data["history"] = history(info.history)
        jobs[info.name] = {"status": 0, "data": data}
    return {"jobs": jobs}


def resources_reply(res: Resources) -> dict[str, int]:
    """``resourcesInfo``: total_nodes, total_cores, used_cores, free_cores (online nodes)."""
    nodes = [n for n in res.nodes if n.online]
    total = sum(n.cores for n in nodes)
    free = sum(n.cores_free for n in nodes)
    return {"total_nodes": len(nodes), "total_cores": total, "used_cores": total - free, "free_cores": free}


def _stats(counts: Mapping[str, int], unit: str) -> dict[str, int]:
    return {
        f"Total{unit}s": sum(counts.values()),
        f"InSchedule{unit}s": sum(counts.get(s, 0) for s in _WAITING),
        f"Failed{unit}s": sum(counts.get(s, 0) for s in _BAD),
        f"Finished{unit}s": counts.get("SUCCEED", 0),
        f"Executing{unit}s": counts.get("EXECUTING", 0),
    }


def system_status_reply(st: Status, now: float, wd: str) -> dict[str, Any]:
    """QCG's ``status`` request: System, Resources, JobStats and IterationStats."""
    return {
        "System": {
            "InstanceId": f"{socket.gethostname()}.{os.getpid()}",
            "Started": str(datetime.datetime.fromtimestamp(st.started_at)),
            "Generated": str(datetime.datetime.fromtimestamp(now)),
            "Uptime": str(datetime.timedelta(seconds=max(now - st.started_at, 0.0))),
            "Address": st.address,
            "Ifaces": ["gRPC"],
            "Host": socket.gethostname(),
            "Account": _account(),
            "Wd": wd,
            "PythonVersion": sys.version.replace("\n", " "),
            "Python": sys.executable,
            "Platform": sys.platform,
            "Machine": platform.machine(),
        },
        "Resources": {
            "TotalNodes": st.nodes,
            "TotalCores": st.cores_total,
            "UsedCores": st.cores_used,
            "FreeCores": st.cores_total - st.cores_used,
        },
        "JobStats": _stats(st.jobs, "Job"),
        "IterationStats": _stats(st.tasks, "Iteration"),
    }


def _account() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
