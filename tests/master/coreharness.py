"""The shared harness of the master core's unit tests: job specs in one line, and ``Run``, a core with
a fake clock that plays the agents' part (every launch started at once; exits on request)."""

from __future__ import annotations

from pj.master.core import Core
from pj.master.expect import Expectation
from pj.master.model import Dependency, Iterations, JobSpec, NodeInfo, Range, Request, State


def spec(name: str, cores: Range | int = 1, nodes: Range | int = 1, gpus: int = 0, it: int | None = None,
         after: tuple[str, ...] = (), memory: int = 0, **kw: object) -> JobSpec:
    """A job: ``after`` names "job", "job:3" (one iteration) or "job:${it}" (per iteration); ``kw``
    any other JobSpec field (retries, exec, base_dir, model, ...)."""
    c = Range(cores, cores) if isinstance(cores, int) else cores
    n = Range(nodes, nodes) if isinstance(nodes, int) else nodes
    deps = []
    for a in after:
        job, _, i = a.partition(":")
        deps.append(Dependency(job) if not i else Dependency(job, per_iteration=True) if i == "${it}"
                    else Dependency(job, iteration=int(i)))
    fields: dict[str, object] = {"exec": "/bin/true", "base_dir": "/home/u/run"}
    fields.update(kw)
    return JobSpec(name=name, request=Request(c, n, gpus, memory=memory), iterations=Iterations(0, it) if it else None,
                   after=tuple(deps), **fields)  # type: ignore[arg-type]


def node(name: str = "n0", cores: int = 4, gpus: int = 0, memory: int = 0) -> NodeInfo:
    return NodeInfo(name, cores, tuple(str(g) for g in range(gpus)), memory)


def start(core: Core, t: float) -> list[int]:
    """One pass at ``t``; every launch reported started: their task ids."""
    out = core.step(t)
    ids = [launch.task_id for ls in out.launches.values() for launch in ls]
    for tid in ids:
        core.task_started(tid, t)
    return ids


class Run:
    """A core plus a fake clock and helpers to play the agents' part."""

    def __init__(self, nodes: int = 1, cores: int = 4, gpus: int = 0, expected: int | None = -1, memory: int = 0) -> None:
        self.t = 1000.0
        count = nodes if expected == -1 else expected
        self.core = Core(expect=Expectation(count) if count else None, now=self.t)
        for i in range(nodes):
            self.core.node_joined(NodeInfo(f"n{i}", cores, tuple(str(g) for g in range(gpus)), memory), self.t)
        self.running: dict[int, object] = {}

    def submit(self, *specs: JobSpec) -> None:
        self.core.submit(list(specs), self.tick())

    def tick(self) -> float:
        self.t += 1.0
        return self.t

    def step(self) -> list:
        out = self.core.step(self.tick())
        launched = [launch for ls in out.launches.values() for launch in ls]
        for launch in launched:
            self.running[launch.task_id] = launch
            self.core.task_started(launch.task_id, self.t)
        return launched

    def finish_all(self, code: int = 0) -> None:
        for tid in list(self.running):
            self.core.task_exited(tid, code, "", self.tick())
            del self.running[tid]

    def state(self, name: str) -> State:
        job = self.core.registry.get(name)
        assert job is not None
        return job.state

    def run_to_end(self, codes: dict[str, int] | None = None, limit: int = 10_000) -> None:
        codes = codes or {}
        for _ in range(limit):
            launched = self.step()
            if not self.running and not launched:
                return
            for tid, launch in list(self.running.items()):
                name = launch.env["PJ_JOB"]
                it = launch.env["PJ_ITERATION"]
                code = codes.get(f"{name}:{it}", codes.get(name, 0))
                self.core.task_exited(tid, code, "", self.tick())
                del self.running[tid]
        raise AssertionError("campaign did not end")
