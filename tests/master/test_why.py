"""Why a job is not running (master/why.py): a real Core fed events, every kind of reason as a user reads it."""

from __future__ import annotations

import ast
import pathlib

from pj.master.core import Core
from pj.master.expect import Expectation
from pj.master.model import Iterations, JobSpec, NodeInfo, Range, Request, Sizing, State
from pj.master.restore import Batch, Placement, restore
from pj.master.why import KINDS, Lines, Why, counts

from .coreharness import node, spec


class Run:
    """A core, a fake clock, and the agents' part: every launch is reported started at once."""

    def __init__(self, *nodes: NodeInfo, expect: Expectation | None = None, prefetch: bool = False,
                 start: bool = True) -> None:
        self.t = 1000.0
        self.core = Core(expect=expect, now=self.t, prefetch_on=prefetch)
        self.start = start
        for n in nodes:
            self.core.node_joined(n, self.t)

    def submit(self, *specs: JobSpec) -> None:
        self.core.submit(list(specs), self.t)
        self.step()

    def step(self) -> None:
        self.t += 1
        out = self.core.step(self.t)
        if self.start:
            for launches in out.launches.values():
                for launch in launches:
                    if launch.task_id not in self.core.standbys.behind:
                        self.core.task_started(launch.task_id, self.t)

    def end(self, name: str, code: int = 0) -> None:
        task = self.core.registry.task(name)
        assert task is not None and task.id in self.core.running, name
        self.t += 1
        self.core.task_exited(task.id, code, "", self.t)
        self.step()

    def why(self, name: str) -> str:
        job = self.core.registry.get(name)
        assert job is not None
        return Why(self.core, self.t).reason(job)

    def kind(self, name: str) -> str:
        job = self.core.registry.get(name)
        assert job is not None
        return Why(self.core, self.t).kind(job)

    def counts(self) -> dict[str, int]:
        return counts(self.core, self.t)


# ---------------------------------------------------------------- dependencies


def test_waiting_for_named_dependencies_then_and_n_more() -> None:
    r = Run(node("n0", 1))
    r.submit(spec("prep"), spec("sim", it=4), spec("a"), spec("b"))
    r.submit(spec("post", after=("prep", "sim:3", "a", "b", "sim")))
    assert r.why("post") == (
        "waiting for prep (EXECUTING), sim:3 (QUEUED), a (QUEUED) and 2 more")
    assert r.kind("post") == "dependencies"
    r.end("prep")  # sim:0 runs now; the named list moves on
    assert r.why("post") == "waiting for sim:3 (QUEUED), a (QUEUED), b (QUEUED) and 1 more"


def test_iterations_waiting_for_their_own_iteration_of_another_job() -> None:
    r = Run(node("n0", 1))
    r.submit(spec("sim", it=3), spec("post", it=3, after=("sim:${it}",)))
    assert r.why("post") == "3 iterations: 3 waiting for sim:${it}"
    r.end("sim:0")  # post:0 is ready now, behind sim's other iterations of the same shape
    assert r.why("post") == (
        "3 iterations: 1 waiting for free cores behind 1 job of its shape (needs 1 core(s) on 1 node(s); "
        "no core free now); 2 waiting for sim:${it}")
    assert r.kind("post") == "free cores"


# ---------------------------------------------------------------- too big, nodes


def test_service_mode_too_big_for_every_agent_names_the_fix() -> None:
    r = Run()  # pj-master without --expect-nodes
    r.submit(spec("big", cores=8))
    assert r.why("big") == "no agent has joined yet; start one with pj-agent --workdir DIR --cores 8 or more"
    assert r.kind("big") == "nodes"
    r.core.node_joined(node("n0", 4), r.t)
    r.core.node_joined(node("n1", 2), r.t)
    r.step()
    assert r.core.registry.jobs["big"].state == State.QUEUED  # never failed in service mode
    assert r.why("big") == (
        "no agent that has joined has 8 cores (largest: 4 cores); start an agent with --cores 8 or more, "
        "or cancel the job")
    assert r.kind("big") == "too big"
    r.submit(spec("gpu", gpus=2), spec("wide", cores=3, nodes=2))
    assert r.why("gpu") == (
        "no agent that has joined has 2 GPUs (largest: 4 cores, most GPUs: 0); start an agent with --gpus "
        "listing 2 or more GPUs, or cancel the job")
    assert r.why("wide") == (
        "needs 2 nodes with 3 cores each; only 1 of the 2 agent(s) that have joined has that (largest: 4 cores); "
        "start 1 more agent with --cores 3 or more, or cancel the job")
    r.core.node_joined(node("n2", 8), r.t)
    r.step()
    assert r.core.registry.jobs["big"].state == State.EXECUTING and r.why("big") == ""


def test_expected_nodes_not_joined_yet_say_which_and_until_when() -> None:
    r = Run(node("n1", 2), expect=Expectation.parse("n[1-3]", timeout_s=60))
    r.submit(spec("big", cores=4), spec("s", cores=2), spec("s2", cores=2))
    assert r.why("big") == (
        "no node that has joined has 4 cores (largest: 2 cores); 2 of 3 expected nodes not joined yet (n2, n3); "
        "the wait for them ends in 59 s")
    assert r.kind("big") == "nodes"
    assert r.why("s2") == (
        "waiting for free cores, next in line of its shape (needs 2 core(s) on 1 node(s); no core free now); "
        "2 of 3 expected nodes not joined yet (n2, n3); the wait for them ends in 59 s")
    assert r.counts() == {"nodes": 1, "free cores": 1}


def test_no_node_yet_and_an_iteration_scheduler_waiting_for_the_run_size() -> None:
    r = Run(expect=Expectation(2, timeout_s=30))
    sized = JobSpec(name="sz", exec="/bin/true", iterations=Iterations(0, 4),
                    request=Request(Range(1, None), Range(1, 1), 0, Sizing("cores", "split-into")))
    r.submit(sized, spec("one"))
    assert r.why("one") == "no node has joined yet: 2 of 2 expected nodes not joined yet; the wait for them ends in 29 s"
    r.core.node_joined(node("n0", 2), r.t)
    r.step()
    assert r.why("sz") == (
        "its iteration scheduler (split-into) sizes it once the run's nodes are known: "
        "1 of 2 expected nodes not joined yet; the wait for them ends in 28 s")
    assert r.kind("sz") == "nodes"


# ---------------------------------------------------------------- free cores, position, partly running


def test_waiting_for_free_cores_behind_jobs_of_its_shape_and_backfill_shapes_apart() -> None:
    r = Run(node("n0", 4, gpus=1))
    r.submit(spec("run", cores=3), spec("a", cores=2), spec("b", cores=2), spec("c", cores=2), spec("g", gpus=1))
    assert r.why("a") == (
        "waiting for free cores, next in line of its shape (needs 2 core(s) on 1 node(s); "
        "free now: 0 cores, at most 0 on a node)".replace("free now: 0 cores, at most 0 on a node", "no core free now"))
    assert r.why("c") == (
        "waiting for free cores behind 2 jobs of its shape (needs 2 core(s) on 1 node(s); no core free now)")
    assert r.core.registry.jobs["g"].state == State.EXECUTING  # another shape: backfilled
    r.end("g")  # one core and the GPU free: still too few cores for a
    assert r.why("b") == (
        "waiting for free cores behind 1 job of its shape (needs 2 core(s) on 1 node(s); "
        "free now: 1 core, at most 1 on a node)")
    assert r.counts() == {"free cores": 3}


def test_gpus_short_and_ready_before_the_next_pass() -> None:
    r = Run(node("n0", 4, gpus=1))
    r.submit(spec("g1", gpus=1), spec("g2", gpus=1))
    assert r.why("g2") == (
        "waiting for free GPUs, next in line of its shape (needs 1 core(s) and 1 GPU(s) on 1 node(s); "
        "free now: 3 cores, at most 3 on a node, at most 0 GPUs on a node)")
    task = r.core.registry.task("g1")
    assert task is not None
    r.core.task_exited(task.id, 0, "", r.t + 1)  # no pass yet: it fits now
    assert r.why("g2") == "ready: placed on the next scheduling pass"


def test_a_job_whose_iterations_partly_run_says_how_many_and_why_the_rest_wait() -> None:
    r = Run(node("n0", 2))
    r.submit(spec("sim", it=5))
    r.end("sim:0")
    assert r.why("sim") == (
        "5 iterations: 2 running, 1 done; 2 waiting for free cores, next in line of its shape "
        "(needs 1 core(s) on 1 node(s); no core free now)")
    r.end("sim:1")
    r.core.task_exited(r.core.registry.task("sim:2").id, 3, "", r.t)  # type: ignore[union-attr]
    r.step()
    assert r.why("sim") == "sim:2: exit code 3"  # every iteration left runs: only the failure so far
    assert r.kind("sim") == ""


# ---------------------------------------------------------------- retries, standbys, placed, cut off


def test_held_for_a_retry_says_attempt_k_of_n_and_after_what() -> None:
    r = Run(node("n0", 1))
    r.submit(spec("flaky", retries=2), spec("it", it=3, retries=1))
    r.end("flaky", code=7)
    assert r.why("flaky") == "held for a retry: attempt 2 of 3, after exit code 7 on n0; " \
        "waiting for free cores behind 1 job of its shape (needs 1 core(s) on 1 node(s); no core free now)"
    assert r.kind("flaky") == "retry"
    r.end("it:0", code=1)  # it:1 runs; it:0 is queued again behind flaky's retry, it:2 still in its cursor
    assert r.why("it") == (
        "3 iterations: 1 running; 1 held for a retry (it:0: attempt 2 of 2, after exit code 1 on n0); "
        "2 waiting for free cores, next in line of its shape (needs 1 core(s) on 1 node(s); no core free now)")
    assert r.why("flaky").endswith("waiting for free cores behind 1 job of its shape "
                                   "(needs 1 core(s) on 1 node(s); no core free now)")
    assert r.counts() == {"retry": 2}


def test_queued_again_after_its_agent_came_back_without_it() -> None:
    r = Run()
    r.core.campaign = "c0"
    r.core.node_joined(node("n0", 1), r.t)
    r.submit(spec("a"))
    r.core.node_disconnected("n0", r.t)
    assert r.why("a") == "running on n0, whose agent is cut off: the node is lost in 30 s unless it comes back"
    assert r.kind("a") == "agent"
    r.core.node_joined(node("n0", 1), r.t, "c0", running=[], ended=[])
    # (a returning agent that no longer runs it: queued again without using a retry, and placed again)
    assert r.core.registry.jobs["a"].attempts
    r.core.node_left("n0", r.t)
    r.step()
    assert r.why("a") == ("no agent has joined yet; start one with pj-agent --workdir DIR --cores 1 or more; "
                          "queued again: after interrupted: its agent came back without it (was on n0)")


def test_standbys_on_a_busy_node_and_a_launch_not_reported_started() -> None:
    r = Run(node("n0", 2), prefetch=True)
    r.submit(spec("a", cores=2), spec("b", cores=2), spec("c", cores=2))
    assert r.why("b") == "on standby on n0: starts there when a ends"
    assert r.why("c") == "on standby on n0: starts there after a and 1 standby before it"
    assert r.counts() == {"standby": 2}
    r.end("a")  # b takes a's share: c moves up
    assert r.why("c") == "on standby on n0: starts there when b ends"
    r2 = Run(node("n0", 2), start=False)
    r2.submit(spec("x"))
    assert r2.why("x") == "placed on n0: its agent has not said it started yet"
    assert r2.kind("x") == "starting"


def test_orphans_after_a_restart_wait_for_their_agent() -> None:
    first = Core(now=100.0, campaign="c0")
    first.node_joined(node("n0", 2), 100.0)
    specs = [spec("a")]
    first.submit(specs, 100.0)
    placed = first.step(100.0).placed
    core = Core(now=110.0, campaign="c0")
    restore(core, [Batch(specs, 100.0)], [], [], [],  110.0,
            [Placement(t.id, t.job.name, t.iteration, t.allocation) for t in placed], 60.0)
    why = Why(core, 120.0)
    assert why.reason(core.registry.jobs["a"]) == (
        "placed on n0 before the master restarted: waiting for its agent to come back for 50 s more "
        "(then it is queued again)")
    assert why.kind(core.registry.jobs["a"]) == "agent"


def test_a_canceled_job_waits_for_its_tasks_to_stop_and_an_ended_job_keeps_its_reason() -> None:
    r = Run(node("n0", 2))
    r.submit(spec("a", it=2))
    r.core.cancel(["a"], r.t)
    assert r.why("a") == "being canceled: waiting for 2 tasks to stop"
    assert r.kind("a") == "canceling"
    r.end("a:0", code=-15)
    r.end("a:1", code=-15)
    assert r.core.registry.jobs["a"].state == State.CANCELED and r.why("a") == "canceled"
    assert r.kind("a") == ""


# ---------------------------------------------------------------- counts, cost, purity


def test_counts_are_in_kind_order_and_leave_running_jobs_out() -> None:
    r = Run(node("n0", 2))
    r.submit(spec("run", cores=2), spec("big", cores=3), spec("next", cores=2), spec("dep", after=("run",)))
    assert r.counts() == {"dependencies": 1, "too big": 1, "free cores": 1}
    assert list(r.counts()) == [k for k in KINDS if k in r.counts()]


def test_asking_changes_nothing_and_one_pass_per_shape_serves_a_page() -> None:
    r = Run(node("n0", 1))
    r.submit(*[spec(f"j{i}") for i in range(2000)])
    before = ([(s, len(q)) for s, q in r.core.queue.queues.items()], r.core.pool.free_cores,
              dict(r.core.job_counts))
    why = Why(r.core, r.t)
    jobs = list(r.core.registry)
    assert why.reason(jobs[1500]) == (
        "waiting for free cores behind 1499 jobs of its shape (needs 1 core(s) on 1 node(s); no core free now)")
    scans = []
    line = r.core.queue.line
    r.core.queue.line = lambda shape: (scans.append(shape), line(shape))[1]  # type: ignore[method-assign]
    assert [why.reason(j) for j in jobs[1:4]] == [
        f"waiting for free cores{w} (needs 1 core(s) on 1 node(s); no core free now)"
        for w in (", next in line of its shape", " behind 1 job of its shape", " behind 2 jobs of its shape")]
    assert scans == []  # the page reused the pass made for jobs[1500]
    assert before == ([(s, len(q)) for s, q in r.core.queue.queues.items()], r.core.pool.free_cores,
                      dict(r.core.job_counts))


def test_lines_kept_between_calls_serve_while_the_queue_does_not_move() -> None:
    r = Run(node("n0", 1))
    r.submit(*[spec(f"j{i}") for i in range(10)])
    scans: list[object] = []
    line = r.core.queue.line
    r.core.queue.line = lambda shape: (scans.append(shape), line(shape))[1]  # type: ignore[method-assign]
    lines = Lines()

    def ahead(name: str) -> str:
        return Why(r.core, r.t, lines).reason(r.core.registry.jobs[name]).split(" (")[0]

    assert ahead("j9") == "waiting for free cores behind 8 jobs of its shape" and len(scans) == 1
    assert ahead("j5") == "waiting for free cores behind 4 jobs of its shape" and len(scans) == 1  # another page
    r.core.cancel(["j2"], r.t)  # a job ended: its place is given up
    assert ahead("j9") == "waiting for free cores behind 7 jobs of its shape" and len(scans) == 2
    r.end("j0")  # the pass takes j1 from the head
    assert ahead("j9") == "waiting for free cores behind 6 jobs of its shape" and len(scans) == 3
    r.submit(spec("late"))
    assert ahead("late") == "waiting for free cores behind 7 jobs of its shape" and len(scans) == 4
    assert ahead("j3") == "waiting for free cores, next in line of its shape" and len(scans) == 4


def test_the_core_never_computes_reasons() -> None:
    """Reasons are computed when asked: the core (the scheduling pass) never imports why.py."""
    src = pathlib.Path(__file__).parents[2] / "master"
    for name in ("core.py", "scheduler.py", "pool.py", "prefetch.py", "runtime.py"):
        tree = ast.parse((src / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "why" not in imported, name
