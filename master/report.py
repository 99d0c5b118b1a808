"""The campaign report, DIR/jobs.jsonl: one JSON object per job and per iteration that ran or was omitted.

Each task's line (a job without iterations: the job's line) and each entry of its "attempts" carry
what it used (``cpu_user_s``, ``cpu_system_s``, ``max_rss_kb``: 0 until it has ended or when nothing
was measured) and, for a FAILED one, ``stderr_tail`` (the last 4 KB of its stderr).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pj.common import perms

from . import usage
from .model import State
from .registry import Attempt, Job, Task

_rounded: dict[tuple[State, float], tuple[str, float]] = {}  # history entry -> (state name, time)


def _history(h: Sequence[Any]) -> dict[str, float]:
    # History entries are shared by everything one pass changed (registry._stamp): each entry's
    # name and rounded time are made once.
    out = {}
    for entry in h:
        item = _rounded.get(entry)
        if item is None:
            if len(_rounded) >= 100_000:
                _rounded.clear()
            item = _rounded[entry] = (entry[0].name, round(entry[1], 6))
        out[item[0]] = item[1]
    return out


def _shares(task: Task) -> tuple[list[str], dict[str, list[int]], dict[str, list[str]]]:
    nodes = [s.node for s in task.allocation]
    cores = {s.node: list(s.cores) for s in task.allocation}
    gpus = {s.node: list(s.gpus) for s in task.allocation if s.gpus}
    return nodes, cores, gpus


def _attempts(task: Task) -> list[dict[str, Any]] | None:
    """Every attempt of a retried task, oldest first, the last being the task itself; None if it never retried."""
    earlier = task.job.attempts.get(task.iteration) if task.job.attempts else None
    if not earlier:
        return None
    if earlier[-1].task_id == task.id:  # queued again, never placed since: it is its own last attempt
        earlier = earlier[:-1]
    out: list[dict[str, Any]] = [_attempt(a) for a in earlier]
    started = next((t for s, t in task.history if s == State.EXECUTING), None)
    ended = task.history[-1][1] if task.state.final else None
    last = {"state": task.state.name, "exit_code": task.exit_code, "reason": task.reason,
            "nodes": [s.node for s in task.allocation],
            "started": None if started is None else round(started, 6),
            "ended": None if ended is None else round(ended, 6), **usage.as_dict(task.usage)}
    if task.stderr_tail:
        last["stderr_tail"] = task.stderr_tail
    out.append(last)
    return out


def _attempt(a: Attempt) -> dict[str, Any]:
    rec = {"state": a.state.name, "exit_code": a.exit_code, "reason": a.reason, "nodes": list(a.nodes),
           "started": None if a.started is None else round(a.started, 6), "ended": round(a.ended, 6),
           **usage.as_dict(a.usage)}
    if a.stderr_tail:
        rec["stderr_tail"] = a.stderr_tail
    return rec


def task_record(task: Task) -> dict[str, Any]:
    nodes, cores, gpus = _shares(task)
    rec: dict[str, Any] = {
        "name": task.name,
        "job": task.job.name,
        "iteration": task.iteration,
        "state": task.state.name,
        "exit_code": task.exit_code,
        "reason": task.reason,
        "nodes": nodes,
        "cores": cores,
        "times": _history(task.history),
        **usage.as_dict(task.usage),
    }
    if task.stderr_tail:
        rec["stderr_tail"] = task.stderr_tail
    if gpus:
        rec["gpus"] = gpus
    attempts = _attempts(task)
    if attempts is not None:
        rec["attempts"] = attempts
    return rec


def job_records(job: Job) -> Iterator[dict[str, Any]]:
    """The job's line, then one line per iteration (a job without iterations is one line)."""
    rec: dict[str, Any] = {
        "name": job.name,
        "state": job.state.name,
        "reason": job.reason,
        "times": _history(job.history),
    }
    if job.tmpl.iterations is None:
        task = job.task(None)
        if task is not None:
            t = task_record(task)
            rec.update(exit_code=t["exit_code"], nodes=t["nodes"], cores=t["cores"], task_times=t["times"],
                       cpu_user_s=t["cpu_user_s"], cpu_system_s=t["cpu_system_s"], max_rss_kb=t["max_rss_kb"])
            if "stderr_tail" in t:
                rec["stderr_tail"] = t["stderr_tail"]
            if task.reason and not rec["reason"]:
                rec["reason"] = task.reason
            if "gpus" in t:
                rec["gpus"] = t["gpus"]
            if "attempts" in t:
                rec["attempts"] = t["attempts"]
        else:
            rec.update(exit_code=None, nodes=[], cores={})
        yield rec
        return
    rec.update(
        iterations=job.total, succeeded=job.succeeded, failed=job.failed, exit_code=None, nodes=[], cores={}
    )
    yield rec
    for task in job.each_task():
        yield task_record(task)


_encode = json.JSONEncoder(separators=(",", ":")).encode  # one encoder (json.dumps makes one per call)


def write(path: str, jobs: Iterable[Job]) -> int:
    """Write the report; returns the number of lines. It is written whole or not at all: into
    PATH.tmp, renamed over PATH once complete (an OSError, e.g. a full disk, removes PATH.tmp)."""
    n = 0
    tmp = Path(path + ".tmp")
    try:
        with os.fdopen(perms.create(tmp), "w") as f:  # 0600 (0640: a workdir shared with its group)
            for job in jobs:
                for rec in job_records(job):
                    f.write(_encode(rec) + "\n")
                    n += 1
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return n
