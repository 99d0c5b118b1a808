"""A hypothesis state machine drives the master's core with random events, as agents and users
would send them: submits (sizes, GPUs, iterations, dependencies on earlier jobs and iterations,
retries), nodes joining, cut off, coming back and lost, tasks starting and exiting, standbys given
back, cancels, a finish, and the clock. After every step every invariant holds (``Core.check``,
also run after each event by conftest.py), and at the end, once every node is back and every task
has exited, every job is final and its counts add up."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pj.master.core import Core
from pj.master.model import Dependency, Iterations, JobSpec, NodeInfo, Range, Request, State
from pj.master.pool import holds
from pj.master.registry import Job

NODES = ("n0", "n1", "n2")


class CoreMachine(RuleBasedStateMachine):
    @initialize(prefetch=st.booleans())
    def start(self, prefetch: bool) -> None:
        self.core = Core(now=0.0, prefetch_on=prefetch, crash_limit=3)
        self.now = 0.0
        self.names: list[str] = []
        self.iterations: dict[str, int] = {}
        self.joined: set[str] = set()
        self.cut: set[str] = set()  # disconnected, may come back
        self.finished = False

    def _tick(self) -> None:
        self.now += 0.1
        self.core.step(self.now)

    # ------------------------------------------------------------------ users

    @rule(data=st.data(), n=st.integers(1, 3))
    def submit(self, data: st.DataObject, n: int) -> None:
        if self.finished:
            return
        specs = []
        for _ in range(n):
            name = f"j{len(self.names) + len(specs)}"
            cores = data.draw(st.integers(1, 3), "cores")
            nodes = data.draw(st.sampled_from([1, 1, 1, 2]), "nodes")
            gpus = data.draw(st.sampled_from([0, 0, 1]), "gpus")
            memory = data.draw(st.sampled_from([0, 0, 1, 3]), "memory GiB") * 2**30
            its = data.draw(st.sampled_from([None, None, 2, 4]), "iterations")
            after: list[Dependency] = []
            if self.names and data.draw(st.booleans(), "has deps"):
                target = data.draw(st.sampled_from(self.names), "dep")
                t_its = self.iterations.get(target)
                kind = data.draw(st.sampled_from(["job", "iteration", "per_iteration"]), "dep kind")
                if kind == "iteration" and t_its:
                    after.append(Dependency(target, iteration=data.draw(st.integers(0, t_its - 1), "it")))
                elif kind == "per_iteration" and t_its and its:
                    after.append(Dependency(target, per_iteration=True))
                else:
                    after.append(Dependency(target))
            specs.append(JobSpec(
                name=name, exec="/bin/true", request=Request(Range(cores, cores), Range(nodes, nodes), gpus, memory=memory),
                iterations=Iterations(0, its) if its else None, after=tuple(after),
                retries=data.draw(st.integers(0, 2), "retries"),
                walltime_s=data.draw(st.sampled_from([0.0, 0.0, 10.0, 100.0]), "walltime"),
            ))
        self.core.submit(specs, self.now)
        for s in specs:
            self.names.append(s.name)
            if s.iterations is not None:
                self.iterations[s.name] = s.iterations.count
        self._tick()

    @precondition(lambda self: len(self.names) >= 4)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.core.cancel([data.draw(st.sampled_from(self.names))], self.now)
        self._tick()

    @precondition(lambda self: len(self.names) >= 8 and not self.finished)  # late, once
    @rule(drain=st.booleans())
    def finish(self, drain: bool) -> None:
        self.core.finish(drain, self.now)
        self.finished = True
        self._tick()

    # ------------------------------------------------------------------ agents

    @rule(name=st.sampled_from(NODES), cores=st.integers(2, 6), gpus=st.integers(0, 2),
          ends_in=st.sampled_from([0.0, 0.0, 30.0, 300.0]), memory=st.sampled_from([0, 2, 4, 8]))
    def join(self, name: str, cores: int, gpus: int, ends_in: float = 0.0, memory: int = 0) -> None:
        """``memory``: GiB the agent registers (0: none, an old agent); ``ends_in``: its allocation's end."""
        if name in self.joined:
            if name not in self.cut:
                return
            # It comes back: an agent that outlived its stream names what still runs there.
            node = self.core.pool.by_name[name]
            running = [t.id for t in self.core.running.values() if any(s.node == name for s in t.allocation)]
            self.core.node_joined(node.info, self.now, self.core.campaign, running)
            self.cut.discard(name)
        else:
            ends_at = self.now + ends_in if ends_in else 0.0  # its allocation's end (0: none)
            info = NodeInfo(name, cores, tuple(str(g) for g in range(gpus)), memory * 2**30, ends_at=ends_at)
            self.core.node_joined(info, self.now)
            self.joined.add(name)
        self._tick()

    @precondition(lambda self: bool(self.joined - self.cut))
    @rule(data=st.data())
    def disconnect(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.joined - self.cut)))
        self.core.node_disconnected(name, self.now)
        self.cut.add(name)
        self._tick()

    @precondition(lambda self: bool(self.joined))
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.joined)))
        self.core.node_left(name, self.now)
        self.joined.discard(name)
        self.cut.discard(name)
        self._tick()

    def _running(self, *states: State) -> list[int]:
        return sorted(t.id for t in self.core.running.values() if t.state in states)

    @precondition(lambda self: bool(self.core.running))
    @rule(data=st.data())
    def start_one(self, data: st.DataObject) -> None:
        ids = [i for i in self._running(State.SCHEDULED) if i not in self.core.standbys.behind]
        if ids:
            self.core.task_started(data.draw(st.sampled_from(ids)), self.now)
        self._tick()

    @precondition(lambda self: bool(self.core.running))
    @rule(data=st.data(), code=st.sampled_from([0, 0, 0, 1, -9]))
    def exit_one(self, data: st.DataObject, code: int) -> None:
        ids = [i for i in self._running(State.SCHEDULED, State.EXECUTING) if i not in self.core.standbys.behind]
        if ids:
            self.core.task_exited(data.draw(st.sampled_from(ids)), code, "", self.now)
        self._tick()

    @precondition(lambda self: bool(self.core.standbys.behind))
    @rule(data=st.data())
    def give_back_standby(self, data: st.DataObject) -> None:
        self.core.task_withdrawn(data.draw(st.sampled_from(sorted(self.core.standbys.behind))), self.now)
        self._tick()

    @rule(dt=st.sampled_from([0.3, 5.0, 40.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.core.step(self.now)

    # ------------------------------------------------------------------ checks

    @invariant()
    def holds(self) -> None:
        if hasattr(self, "core"):
            self.core.check()

    @invariant()
    def walltimes_fit_allocations(self) -> None:
        """No task was placed where its walltime outlasts its node's allocation (pool.holds)."""
        if not hasattr(self, "core"):
            return
        for t in self.core.running.values():
            wall = t.job.spec.walltime_s
            if wall <= 0 or t.id in self.core.standbys.behind:
                continue
            placed = next(when for state, when in t.history if state == State.SCHEDULED)
            for share in t.allocation:
                node = self.core.pool.by_name[share.node]
                assert holds(node.ends_at, placed + wall), (t.id, share.node, node.ends_at, placed, wall)

    def _could_run(self, job: Job) -> bool:
        """Could the job run on the nodes online, each idle (its walltime within their allocations)?"""
        wall = job.spec.walltime_s
        pool = self.core.pool
        return pool.can_hold(job.spec.request, self.now + wall) if wall > 0 else pool.can_ever_fit(job.spec.request)

    def teardown(self) -> None:
        """Bring every node back, run everything to its end: every job ends, counts add up."""
        if not hasattr(self, "core"):
            return
        core = self.core
        for name in sorted(self.cut):
            self.join(name, 0, 0)
        if not any(n.online for n in core.pool.nodes):
            core.node_joined(NodeInfo("big", 8, ("0", "1"), 8 * 2**30), self.now)
        for _ in range(2000):
            if core.unfinished == 0:
                break
            for tid in sorted(core.running):
                if tid in core.running and tid not in core.standbys.behind:
                    core.task_exited(tid, 0, "", self.now)
            self.now += 1.0
            core.step(self.now)
        core.check()
        reg = core.registry
        # A service (no expected node count) keeps a job no node can hold waiting for a bigger one,
        # and what depends on it waits too: nothing else may be left.
        stuck = [
            (j.name, j.state.name, j.spec.request.describe()) for j in reg
            if not j.final and self._could_run(j) and all(reg.jobs[d.job].final for d in j.spec.after)
        ]
        assert not stuck, stuck  # liveness: every job that some online node can hold has ended
        core.finish(False, self.now)
        for _ in range(10):
            for tid in sorted(core.running):
                if tid in core.running:
                    core.task_exited(tid, -15, "", self.now)
            self.now += 1.0
            core.step(self.now)
        assert core.unfinished == 0, [(j.name, j.state.name) for j in reg if not j.final]
        for j in core.registry:
            if j.final:
                assert j.done == j.total and j.succeeded + j.failed == j.total, j.name
                assert (j.state == State.SUCCEED) == (j.succeeded == j.total), (j.name, j.state)


TestCoreMachine = CoreMachine.TestCase
TestCoreMachine.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
