"""Rebuilding a core from its journal (restore.py, pure) and the journal itself (journal.py, SQLite)."""

from __future__ import annotations

from pathlib import Path

from pj.master import convert, journal
from pj.master.core import Core, Outbox
from pj.master.model import JobSpec, NodeInfo, State
from pj.master.restore import Batch, JobRecord, RequestRecord, TaskRecord, restore
from pj.v1 import pj_pb2 as pb

from .coreharness import spec


class Journaled:
    """A core whose ended tasks and finished jobs are kept the way the journal keeps them."""

    def __init__(self, cores: int = 2) -> None:
        self.t = 100.0
        self.core = Core(now=self.t)
        self.core.node_joined(NodeInfo("n0", cores, ()), self.t)
        self.batches: list[Batch] = []
        self.tasks: list[TaskRecord] = []
        self.jobs: list[JobRecord] = []
        self.requests: list[RequestRecord] = []
        self.running: dict[int, str] = {}  # task id -> "job:it"

    def tick(self) -> float:
        self.t += 1.0
        return self.t

    def submit(self, *specs: JobSpec) -> None:
        now = self.tick()
        self.core.submit(list(specs), now)
        self.batches.append(Batch(list(specs), now))

    def step(self) -> Outbox:
        out = self.core.step(self.tick())
        for t in out.ended:
            self.tasks.append(TaskRecord(t.job.name, t.iteration, t.state, t.exit_code, t.reason,
                                         tuple(t.history), t.allocation))
        for j in out.finished:
            self.jobs.append(JobRecord(j.name, j.state, j.reason, tuple(j.history)))
        for launches in out.launches.values():
            for launch in launches:
                self.running[launch.task_id] = f"{launch.env['PJ_JOB']}:{launch.env['PJ_ITERATION']}"
                self.core.task_started(launch.task_id, self.t)
        return out

    def end(self, codes: dict[str, int] | None = None) -> None:
        """Every running task exits (code 0 unless ``codes`` names its job or job:it)."""
        codes = codes or {}
        for tid, name in list(self.running.items()):
            code = codes.get(name, codes.get(name.split(":")[0], 0))
            self.core.task_exited(tid, code, "", self.tick())
            del self.running[tid]

    def resumed(self, cores: int = 2) -> Core:
        """A fresh core rebuilt from the records, as after a crash now, with one node joined."""
        core = Core(now=self.tick())
        restore(core, self.batches, self.tasks, self.jobs, self.requests, self.t)
        core.node_joined(NodeInfo("n9", cores, ()), self.t)
        return core


def run_out(core: Core, t: float, codes: dict[str, int] | None = None) -> list[str]:
    """Run the core to the end; the tasks it launched, by name."""
    codes = codes or {}
    ran: list[str] = []
    for _ in range(1000):
        t += 1
        out = core.step(t)
        launched = [x for ls in out.launches.values() for x in ls]
        if not launched and not core.running:
            return ran
        for x in launched:
            name = x.env["PJ_JOB"] + (f":{x.env['PJ_ITERATION']}" if x.env["PJ_ITERATION"] else "")
            ran.append(name)
            core.task_started(x.task_id, t)
            code = codes.get(name, codes.get(x.env["PJ_JOB"], 0))
            core.task_exited(x.task_id, code, "", t)
    raise AssertionError("did not end")


def test_finished_jobs_stay_finished_with_their_history_and_the_rest_runs() -> None:
    j = Journaled(cores=2)
    j.submit(*(spec(f"a{i}") for i in range(4)))
    j.step()
    j.end({"a1": 3})  # a0 succeeds, a1 fails
    j.step()  # a2, a3 start and are running at the crash
    a0 = j.core.registry.jobs["a0"]
    a0_history = list(a0.history)

    core = j.resumed()
    reg = core.registry.jobs
    assert [reg[n].state for n in ("a0", "a1", "a2", "a3")] == [
        State.SUCCEED, State.FAILED, State.QUEUED, State.QUEUED]
    assert list(reg["a0"].history) == a0_history
    assert reg["a0"].tasks[None].history == list(a0.tasks[None].history)
    assert reg["a0"].tasks[None].allocation == a0.tasks[None].allocation
    assert reg["a1"].reason == "exit code 3" and reg["a1"].tasks[None].exit_code == 3
    assert core.unfinished == 2 and core.job_counts[State.SUCCEED] == 1
    assert sorted(run_out(core, j.t)) == ["a2", "a3"]
    assert core.unfinished == 0 and core.job_counts[State.SUCCEED] == 3


def test_dependencies_resolve_after_replay() -> None:
    j = Journaled(cores=1)
    j.submit(spec("ok"), spec("bad"), spec("after_ok", after=("ok",)), spec("after_bad", after=("bad",)))
    for _ in range(2):
        j.step()
        j.end({"bad": 1})
    j.step()  # journals bad's end; after_ok starts
    # ok SUCCEED, bad FAILED, after_bad OMITTED; after_ok was ready (queued or running) at the crash.
    core = j.resumed(cores=1)
    reg = core.registry.jobs
    assert reg["ok"].state == State.SUCCEED and reg["bad"].state == State.FAILED
    assert reg["after_bad"].state == State.OMITTED
    assert run_out(core, j.t) == ["after_ok"]
    assert reg["after_ok"].state == State.SUCCEED


def test_iterations_done_are_not_run_again_and_per_iteration_dependents_follow() -> None:
    j = Journaled(cores=3)
    j.submit(spec("it", it=6), spec("per", it=6, after=("it:${it}",)), spec("last", after=("per",)))
    j.step()  # it:0..2
    j.end({"it:1": 1})
    j.step()  # it:3..5; journals it:0..2 and per:1 (omitted)
    j.end()
    j.step()  # per:0, per:2, per:3 run at the crash; journals it:3..5
    core = j.resumed(cores=3)
    per = core.registry.jobs["per"]
    assert per.tasks[1].state == State.OMITTED and core.registry.jobs["it"].final
    assert sorted(run_out(core, j.t)) == ["per:0", "per:2", "per:3", "per:4", "per:5"]  # no it:*, no per:1
    reg = core.registry.jobs
    assert reg["it"].state == State.FAILED and reg["it"].succeeded == 5
    assert per.state == State.FAILED and per.succeeded == 5
    assert reg["last"].state == State.OMITTED
    assert core.unfinished == 0


def test_cancel_and_finish_are_replayed() -> None:
    j = Journaled(cores=1)
    j.submit(spec("a"), spec("b"), spec("c"))
    j.step()  # a running
    j.core.cancel(["b"], j.tick())
    j.requests.append(RequestRecord("cancel", ("b",)))
    j.core.finish(True, j.tick())
    j.requests.append(RequestRecord("finish", drain=True))
    j.step()
    core = j.resumed(cores=1)
    reg = core.registry.jobs
    assert reg["b"].state == State.CANCELED and core.finishing
    assert run_out(core, j.t) == ["a", "c"]
    assert core.step(j.t + 100).stop


def test_the_journal_keeps_what_the_replay_needs(tmp_path: Path) -> None:
    path = tmp_path / journal.FILENAME
    jour = journal.Journal(path)
    req = pb.SubmitRequest(base_dir="/w", jobs=[pb.JobSpec(name="a", exec="/bin/true"),
                                                pb.JobSpec(name="b", exec="/bin/true", after=["a"])])
    jour.submit(req.SerializeToString(), 5.0)
    core = Core(now=1.0)
    core.node_joined(NodeInfo("n0", 1, ()), 1.0)
    core.submit([convert.spec_from_pb(s, "/w") for s in req.jobs], 5.0)
    t = 6.0
    out = core.step(t)
    (launch,) = out.launches["n0"]
    core.task_exited(launch.task_id, 0, "", t + 1)
    out = core.step(t + 2)
    jour.record(out.ended, out.finished)
    jour.request("finish", (), True, t + 3)
    jour.close()

    jour = journal.Journal(path)
    assert jour.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    batches, tasks, jobs, requests = jour.load()
    assert [[s.name for s in b.specs] for b in batches] == [["a", "b"]] and batches[0].time == 5.0
    assert [(r.job, r.iteration, r.state, r.exit_code) for r in tasks] == [("a", None, State.SUCCEED, 0)]
    assert tasks[0].allocation == core.registry.jobs["a"].tasks[None].allocation
    assert [(r.name, r.state) for r in jobs] == [("a", State.SUCCEED)]
    assert requests == [RequestRecord("finish", (), True)]
    again = Core(now=10.0)
    restore(again, batches, tasks, jobs, requests, 10.0)
    assert again.registry.jobs["a"].history == core.registry.jobs["a"].history
    assert again.registry.jobs["b"].state == State.QUEUED and again.queue.queues
    jour.close()


def test_jobs_sharing_a_spec_read_back_their_own_after_resume() -> None:
    j = Journaled(cores=1)
    specs = [spec(f"s{i}", retries=1) for i in range(3)]
    j.submit(*specs)
    j.step()
    j.end()
    j.step()  # s0's end journaled; s1 runs at the crash
    core = j.resumed()
    jobs = [core.registry.jobs[s.name] for s in specs]
    assert [x.spec for x in jobs] == specs and jobs[1].tmpl is jobs[2].tmpl
    assert [x.state for x in jobs] == [State.SUCCEED, State.QUEUED, State.QUEUED]
    assert sorted(run_out(core, j.t)) == ["s1", "s2"]


def test_a_submit_sent_as_copies_is_replayed_under_every_name(tmp_path: Path) -> None:
    path = tmp_path / journal.FILENAME
    jour = journal.Journal(path)
    req = pb.SubmitRequest(base_dir="/w", jobs=[pb.JobSpec(name="s0", exec="/bin/true"),
                                                pb.JobSpec(name="post", exec="/bin/true", after=["s2"])],
                           copies=[2], copy_names=["s1", "s2"])
    jour.submit(req.SerializeToString(), 5.0)
    jour.close()
    jour = journal.Journal(path)
    batches, tasks, jobs, requests = jour.load()
    jour.close()
    core = Core(now=6.0)
    restore(core, batches, tasks, jobs, requests, 6.0)
    reg = core.registry
    assert [j.name for j in reg.jobs.values()] == ["s0", "s1", "s2", "post"]
    assert reg.jobs["s2"].spec.name == "s2" and reg.jobs["s2"].tmpl is reg.jobs["s0"].tmpl
    assert reg.jobs["post"].pending == 1  # waits for s2, by the copy's own name
