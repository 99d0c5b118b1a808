"""`pj report efficiency`, `rusage` and `launch`: per-job CPU use, peak memory, launch latency and rate.

Fed the report's records in order, like :class:`~.stats.Stats`. CPU time is ``cpu_user_s +
cpu_system_s`` of the task's last attempt (what the agent measured of the task's processes); a
task's capacity is its cores x (end - start). Reports written before PJ kept rusage have none of
these fields: such tasks are counted as ``without_rusage`` and left out of the ratios.
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from typing import Any

from .reading import JobLine, TaskLine
from .stats import Submissions, summary, task_span

LOW_DEFAULT = 0.25  # a task whose CPU time is below this share of its cores x wall "used far less"
LOW_LISTED = 20  # the worst low tasks kept by name


class Efficiency:
    """CPU time / (cores x wall) per job and overall, and the tasks far below their cores."""

    def __init__(self, low: float = LOW_DEFAULT, listed: int = LOW_LISTED) -> None:
        self.low = low
        self.listed = listed
        self.per_job: dict[str, list[float]] = {}  # job -> [cpu_s, capacity core-s, tasks, low tasks]
        self.without = 0
        self.low_count = 0
        self.worst: list[tuple[float, int, dict[str, Any]]] = []  # min-heap on wasted core-seconds
        self._seq = itertools.count()

    def job(self, job: JobLine) -> None:
        pass

    def task(self, task: TaskLine) -> None:
        start, end = task_span(task)
        if start is None or end is None:
            return
        cpu = task.cpu_s
        if cpu is None:
            self.without += 1
            return
        ncores = task.ncores
        capacity = ncores * (end - start)
        acc = self.per_job.get(task.job)
        if acc is None:
            acc = self.per_job[task.job] = [0.0, 0.0, 0, 0]
        acc[0] += cpu
        acc[1] += capacity
        acc[2] += 1
        if capacity > 0 and cpu < self.low * capacity:
            acc[3] += 1
            self.low_count += 1
            wasted = capacity - cpu
            if len(self.worst) < self.listed or wasted > self.worst[0][0]:
                item = {"name": task.name, "job": task.job, "cores": ncores, "wall_s": end - start, "cpu_s": cpu,
                        "efficiency": cpu / capacity, "state": task.state}  # fmt: skip
                entry = (wasted, next(self._seq), item)
                if len(self.worst) < self.listed:
                    heapq.heappush(self.worst, entry)
                else:
                    heapq.heapreplace(self.worst, entry)

    def result(self) -> dict[str, Any]:
        jobs = {}
        cpu_all = cap_all = 0.0
        for name, (cpu, cap, n, low) in self.per_job.items():
            jobs[name] = {"tasks": int(n), "cpu_s": cpu, "capacity_core_s": cap,
                          "efficiency": cpu / cap if cap > 0 else None, "low_tasks": int(low)}  # fmt: skip
            cpu_all += cpu
            cap_all += cap
        return {
            "overall": {"tasks": sum(j["tasks"] for j in jobs.values()), "cpu_s": cpu_all,
                        "capacity_core_s": cap_all, "efficiency": cpu_all / cap_all if cap_all > 0 else None},
            "jobs": jobs,
            "low_threshold": self.low,
            "low_tasks": self.low_count,
            "worst": [item for _, _, item in sorted(self.worst, key=lambda e: (-e[0], e[1]))],
            "without_rusage": self.without,
        }


class Rusage:
    """CPU seconds and peak memory (max RSS) per job: min, median, max."""

    def __init__(self) -> None:
        self.cpu: dict[str, array[float]] = {}
        self.rss: dict[str, array[int]] = {}
        self.without = 0

    def job(self, job: JobLine) -> None:
        pass

    def task(self, task: TaskLine) -> None:
        cpu, rss = task.cpu_s, task.max_rss_kb
        if cpu is None and rss is None:
            if task.times.get("EXECUTING") is not None:
                self.without += 1
            return
        if cpu is not None:
            self.cpu.setdefault(task.job, array("d")).append(cpu)
        if rss is not None:
            self.rss.setdefault(task.job, array("q")).append(rss)

    def result(self) -> dict[str, Any]:
        q = ("min", "median", "max")
        jobs = {}
        for name in sorted(set(self.cpu) | set(self.rss)):
            jobs[name] = {"cpu_s": summary(self.cpu.get(name, ()), q),
                          "max_rss_kb": summary(self.rss.get(name, ()), q)}  # fmt: skip
        all_cpu = array("d", itertools.chain.from_iterable(self.cpu.values()))
        all_rss = array("q", itertools.chain.from_iterable(self.rss.values()))
        return {"jobs": jobs, "overall": {"cpu_s": summary(all_cpu, q), "max_rss_kb": summary(all_rss, q)},
                "without_rusage": self.without}  # fmt: skip


class Launch:
    """Latency from submission and from scheduling to start, and starts per second of the campaign."""

    def __init__(self) -> None:
        self.subs = Submissions()
        self.from_submit = array("d")
        self.from_schedule = array("d")
        self.starts = array("d")
        self.first_submit = math.inf

    def job(self, job: JobLine) -> None:
        self.subs.job(job)
        queued = job.times.get("QUEUED")
        if queued is not None and queued < self.first_submit:
            self.first_submit = queued

    def task(self, task: TaskLine) -> None:
        start = task.times.get("EXECUTING")
        if start is None:
            return
        self.starts.append(start)
        submitted = self.subs.of(task)
        if submitted is not None:
            self.from_submit.append(start - submitted)
        scheduled = task.times.get("SCHEDULED")
        if scheduled is not None:
            self.from_schedule.append(start - scheduled)

    def result(self) -> dict[str, Any]:
        origin = self.first_submit if self.first_submit < math.inf else (min(self.starts) if self.starts else 0.0)
        buckets: dict[int, int] = {}
        for s in self.starts:
            k = math.floor(s - origin)
            buckets[k] = buckets.get(k, 0) + 1
        span = (max(buckets) + 1) if buckets else 0
        per_second = [buckets.get(i, 0) for i in range(min(buckets, default=0), span)]
        q = ("median", "p95", "max")
        return {
            "submit_to_start_s": summary(self.from_submit, q),
            "schedule_to_start_s": summary(self.from_schedule, q),
            "launches": len(self.starts),
            "origin": origin if self.starts else None,
            "first_second": min(buckets, default=0),
            "per_second": per_second,
            "peak_per_s": max(per_second, default=0),
            "mean_per_s": len(self.starts) / len(per_second) if per_second else None,
        }
