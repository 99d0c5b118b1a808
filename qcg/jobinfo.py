"""``JobInfo``: QCG-PilotJob's parsed form of a ``jobInfo`` answer (``Manager.info_parsed``)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

__all__ = ["JobInfo", "parse_allocation", "parse_runtime"]


def parse_allocation(allocation: str) -> dict[str, list[str]]:
    """``"n0[0:1],n1[2]"`` -> ``{"n0": ["0", "1"], "n1": ["2"]}`` (QCG's allocation string)."""
    nodes: dict[str, list[str]] = {}
    for part in allocation.split(","):
        if "[" in part:
            name, _, cores = part.partition("[")
            nodes[name] = cores.rstrip("]").split(":") if cores.rstrip("]") else []
    return nodes


def parse_runtime(text: str) -> timedelta:
    """``"H:MM:SS.ffffff"`` (QCG's run time) -> a timedelta."""
    clock, _, micro = text.partition(".")
    h, m, s = (int(x) for x in clock.split(":"))
    return timedelta(hours=h, minutes=m, seconds=s, microseconds=int((micro or "0").ljust(6, "0")[:6]))


class JobInfo:
    """What ``info_parsed`` returns per job: name, status, nodes ({node: [core ids]}), total_cores,
    wdir, time (a timedelta), iteration, iterations (start/stop/total/finished/failed), childs (a
    JobInfo per iteration, with ``withChilds=True``), history (one "time: STATE" line per change)
    and messages (why it failed, if it did)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.status: str | None = None
        self.nodes: dict[str, list[str]] | None = None
        self.total_cores: int | None = None
        self.wdir: str | None = None
        self.time: timedelta | None = None
        self.iteration: int | None = None
        self.iterations: dict[str, Any] | None = None
        self.childs: list[JobInfo] | None = None
        self.history: list[str] | None = None
        self.messages: str | None = None

    @staticmethod
    def from_child(job_name: str, child: dict[str, Any]) -> JobInfo:
        info = JobInfo()
        info.iteration = child["iteration"]
        info.name = f"{job_name}:{info.iteration}"
        info.status = child["state"]
        runtime = child.get("runtime", {})
        info.wdir = runtime.get("wd")
        if runtime.get("allocation"):
            info.nodes = parse_allocation(runtime["allocation"])
            info.total_cores = sum(len(c) for c in info.nodes.values())
        if runtime.get("rtime"):
            info.time = parse_runtime(runtime["rtime"])
        return info

    @staticmethod
    def from_job(job: dict[str, Any]) -> JobInfo:
        info = JobInfo()
        info.name = job.get("jobName")
        info.status = job.get("status")
        runtime = job.get("runtime", {})
        info.nodes = parse_allocation(runtime["allocation"]) if runtime.get("allocation") else {}
        info.total_cores = sum(len(c) for c in info.nodes.values())
        info.wdir = runtime.get("wd")
        if runtime.get("rtime"):
            info.time = parse_runtime(runtime["rtime"])
        info.iterations = job.get("iterations", {})
        if "childs" in job:
            info.childs = [JobInfo.from_child(info.name or "", c) for c in job["childs"]]
        info.history = [line for line in job.get("history", "").splitlines() if line]
        info.messages = job.get("messages")
        return info

    def __str__(self) -> str:
        fields = ("childs", "history", "iteration", "iterations", "messages", "name", "nodes", "status",
                  "time", "total_cores", "wdir")  # fmt: skip
        return json.dumps({f: str(getattr(self, f)) for f in fields})

    def __repr__(self) -> str:
        return f"JobInfo(name={self.name!r}, status={self.status!r})"
