"""A hypothesis state machine drives the agent's pure bookkeeping (AgentState) as the master and
the processes would: launches on overlapping cores and GPUs (held until free), spawns that succeed
or fail, exits, cancels, withdraws, walltimes, ticks, a lost link and a shutdown. After every event
its invariants hold (``AgentState.check``, run by conftest.py), a spawned task is reported started
once and every task that was launched ends reported exactly once (or withdrawn, or dropped with the
link)."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from pj.agent.state import (
    AgentState,
    CancelTask,
    Exited,
    LaunchTask,
    LinkLost,
    ReportExited,
    ReportStarted,
    ReportWithdrawn,
    Shutdown,
    Spawn,
    Spawned,
    SpawnFailed,
    TaskSpec,
    Tick,
    WithdrawTask,
)


class AgentMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.state = AgentState(kill_grace=1.0)
        self.now = 100.0
        self.next_id = 1
        self.next_pid = 1000
        self.to_spawn: list[int] = []  # Spawn actions not answered yet
        self.pids: dict[int, int] = {}  # task id -> pid, spawned and not exited
        self.launched: set[int] = set()
        self.started: dict[int, int] = {}
        self.ended: dict[int, int] = {}  # exited or withdrawn reports per task
        self.dropped = False

    def _feed(self, event: object) -> None:
        for action in self.state.handle(event, self.now):  # type: ignore[arg-type]
            if isinstance(action, Spawn):
                self.to_spawn.append(action.spec.task_id)
            elif isinstance(action, ReportStarted):
                self.started[action.task_id] = self.started.get(action.task_id, 0) + 1
            elif isinstance(action, ReportExited | ReportWithdrawn):
                self.ended[action.task_id] = self.ended.get(action.task_id, 0) + 1

    @rule(cores=st.sets(st.integers(0, 3), min_size=1, max_size=2), gpu=st.sampled_from([(), ("0",), ("1",)]),
          walltime=st.sampled_from([0.0, 0.0, 2.0]))
    def launch(self, cores: set[int], gpu: tuple[str, ...], walltime: float) -> None:
        tid = self.next_id
        self.next_id += 1
        self.launched.add(tid)
        self._feed(LaunchTask(TaskSpec(tid, ("/bin/true",), cores=tuple(sorted(cores)), gpus=gpu,
                                       walltime_s=walltime)))

    @precondition(lambda self: bool(self.to_spawn))
    @rule(data=st.data(), ok=st.sampled_from([True, True, True, False]))
    def spawn(self, data: st.DataObject, ok: bool) -> None:
        tid = self.to_spawn.pop(data.draw(st.integers(0, len(self.to_spawn) - 1)))
        if ok:
            self.next_pid += 1
            self.pids[tid] = self.next_pid
            self._feed(Spawned(tid, self.next_pid, self.now))
        else:
            self._feed(SpawnFailed(tid, 127, "no such file"))

    @precondition(lambda self: bool(self.pids))
    @rule(data=st.data(), code=st.sampled_from([0, 1, -9, -15]))
    def exit(self, data: st.DataObject, code: int) -> None:
        tid = data.draw(st.sampled_from(sorted(self.pids)))
        self._feed(Exited(self.pids.pop(tid), code))

    @precondition(lambda self: bool(self.launched))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self._feed(CancelTask(data.draw(st.sampled_from(sorted(self.launched)))))

    @precondition(lambda self: bool(self.launched))
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        self._feed(WithdrawTask(data.draw(st.sampled_from(sorted(self.launched)))))

    @rule(dt=st.sampled_from([0.1, 1.5, 3.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._feed(Tick())

    @rule()
    def link_lost(self) -> None:
        self.dropped = True  # held launches go without a word: the master requeues them
        self._feed(LinkLost())

    def teardown(self) -> None:
        if not hasattr(self, "state"):
            return
        self._feed(Shutdown("end of test"))
        for _ in range(100):  # answer every spawn and reap everything: all must end
            while self.to_spawn:
                tid = self.to_spawn.pop()
                self.next_pid += 1
                self.pids[tid] = self.next_pid
                self._feed(Spawned(tid, self.next_pid, self.now))
            for tid in sorted(self.pids):
                self._feed(Exited(self.pids.pop(tid), -15))
            self.now += 2.0
            self._feed(Tick())
            if not len(self.state):
                break
        assert not len(self.state), "tasks left after shutdown"
        assert all(n == 1 for n in self.started.values()), self.started
        assert all(n == 1 for n in self.ended.values()), self.ended
        if not self.dropped:
            assert set(self.ended) == self.launched


TestAgentMachine = AgentMachine.TestCase
TestAgentMachine.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
