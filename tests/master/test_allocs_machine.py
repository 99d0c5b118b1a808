"""A hypothesis state machine drives the allocation manager (master/allocs.py) with random events in
a random order, as a shell and Slurm could deliver them, and checks its invariants after each."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pj.master.allocs import FINAL, AllocState, Cancel, Manager, Release, Submit
from pj.master.invariants import check_allocs

SHAPES = [(1, 1, 0, 0, 0.0), (1, 2, 0, 0, 30.0), (2, 1, 0, 0, 0.0), (1, 1, 0, 0, 7200.0)]


class AllocMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = Manager(join_timeout_s=20)
        self.now = 0.0
        self.sent: list[int] = []  # allocations whose sbatch has not answered
        self.jobs = 0
        self.cancelled: set[str] = set()  # Slurm job ids scancel was run for
        self.nodes = 0
        self.m.add_queue(nodes=1, time_s=600, max_allocs=3, idle_s=15)

    def _run(self, out: list) -> None:
        for c in out:
            if isinstance(c, Submit):
                assert not c.queue.removed
                self.sent.append(c.alloc)
            elif isinstance(c, Cancel):
                assert c.job_id not in self.cancelled, "cancelled twice"
                self.cancelled.add(c.job_id)
            elif isinstance(c, Release):
                assert c.nodes

    @rule(dt=st.floats(0, 30), work=st.dictionaries(st.sampled_from(SHAPES), st.integers(1, 50), max_size=3),
          idle=st.booleans())
    def step(self, dt: float, work: dict, idle: bool) -> None:
        self.now += dt
        idle_nodes = list(self.m.by_node) if idle else []
        self._run(self.m.step(self.now, work, idle_nodes))

    @rule(nodes=st.integers(1, 3), max_allocs=st.integers(1, 3), time_s=st.sampled_from([60.0, 600.0]))
    def add_queue(self, nodes: int, max_allocs: int, time_s: float) -> None:
        self.m.add_queue(nodes=nodes, time_s=time_s, max_allocs=max_allocs, idle_s=10)

    @precondition(lambda self: any(not q.removed for q in self.m.queues.values()))
    @rule(data=st.data())
    def remove_queue(self, data: st.DataObject) -> None:
        q = data.draw(st.sampled_from([q for q in self.m.queues.values() if not q.removed]))
        self.m.remove_queue(q.id, self.now)
        self._run(self.m.out)
        self.m.out.clear()

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), ok=st.booleans())
    def sbatch_answers(self, data: st.DataObject, ok: bool) -> None:
        aid = data.draw(st.sampled_from(self.sent))
        self.sent.remove(aid)
        if ok:
            self.jobs += 1
            self.m.submitted(aid, str(self.jobs), self.now)
        else:
            self.m.refused(aid, "sbatch: error: invalid partition", self.now)
        self._run(self.m.out)
        self.m.out.clear()

    @precondition(lambda self: self.m.live())
    @rule(data=st.data(), what=st.sampled_from(["start", "join", "gone", "leave"]))
    def slurm(self, data: st.DataObject, what: str) -> None:
        a = data.draw(st.sampled_from(self.m.live()))
        if what == "start":
            self.m.started(a.job_id, self.now)
        elif what == "join":
            self.nodes += 1
            self.m.node_joined(f"n{self.nodes}", a.job_id, 4, self.now)
        elif what == "leave" and a.nodes:
            self.m.node_left(sorted(a.nodes)[0])
        else:
            for n in list(a.nodes):
                self.m.node_left(n)
            self.m.gone(a.job_id, "COMPLETED", self.now)
            assert a.state in FINAL
        self._run(self.m.out)
        self.m.out.clear()

    @invariant()
    def holds(self) -> None:
        check_allocs(self.m)
        for a in self.m.allocs.values():
            if a.state is AllocState.QUEUED:
                assert a.id in self.sent


TestAllocMachine = AllocMachine.TestCase
TestAllocMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
