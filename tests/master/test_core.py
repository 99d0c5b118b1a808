"""The master's pure core: scheduling, dependencies, iterations, cancel, finish (no I/O, fake clock)."""

from __future__ import annotations

import ast
import pathlib

import pytest

from pj.master.admission import SubmitError
from pj.master.model import (
    IllegalTransition,
    Iterations,
    JobSpec,
    NodeInfo,
    Range,
    Request,
    State,
    check_transition,
)

from .coreharness import Run, spec


def test_fifo_fills_cores_and_runs_the_rest_as_cores_free() -> None:
    r = Run(cores=4)
    r.submit(*(spec(f"j{i}") for i in range(10)))
    first = r.step()
    assert [launch.env["PJ_JOB"] for launch in first] == ["j0", "j1", "j2", "j3"]
    assert sorted(c for launch in first for c in launch.cores) == [0, 1, 2, 3]
    assert r.step() == []
    r.finish_all()
    assert [launch.env["PJ_JOB"] for launch in r.step()] == ["j4", "j5", "j6", "j7"]
    r.finish_all()
    r.step()
    r.finish_all()
    r.core.finish(drain=True, now=r.tick())
    assert all(r.state(f"j{i}") == State.SUCCEED for i in range(10))
    assert r.core.step(r.tick()).stop


def test_backfill_lets_small_jobs_pass_a_big_one_that_waits() -> None:
    r = Run(cores=4)
    r.submit(spec("small0", 3), spec("big", 4), spec("small1", 1))
    names = [launch.env["PJ_JOB"] for launch in r.step()]
    assert names == ["small0", "small1"]
    assert r.state("big") == State.QUEUED
    r.finish_all()
    assert [launch.env["PJ_JOB"] for launch in r.step()] == ["big"]


def test_range_takes_the_most_cores_that_fit_now() -> None:
    r = Run(cores=8)
    r.submit(spec("a", 3), spec("b", Range(2, 4)), spec("c", Range(1, None)))
    launched = {launch.env["PJ_JOB"]: launch for launch in r.step()}
    assert len(launched["a"].cores) == 3
    assert len(launched["b"].cores) == 4
    assert len(launched["c"].cores) == 1
    assert launched["c"].env["PJ_NCORES"] == "1"


def test_multi_node_job_gets_whole_nodes_and_env_names_them() -> None:
    r = Run(nodes=3, cores=4)
    r.submit(spec("mpi", cores=4, nodes=2))
    (launch,) = r.step()
    assert launch.env["PJ_NNODES"] == "2"
    assert launch.env["PJ_NODES"] == "n0,n1"
    assert launch.env["PJ_NCORES"] == "8"
    assert launch.env["QCG_PM_NODELIST"] == "n0,n1"
    assert launch.env["QCG_PM_TASKS_PER_NODE"] == "4,4"
    assert r.core.pool.free_cores == 4


def test_job_too_big_fails_at_once_with_reason_and_dependents_are_omitted() -> None:
    r = Run(nodes=2, cores=4)
    r.submit(spec("huge", cores=16), spec("after_huge", after=("huge",)), spec("fine"))
    assert r.state("huge") == State.FAILED
    job = r.core.registry.get("huge")
    assert job is not None and "can never fit" in job.reason and "16 core" in job.reason
    assert r.state("after_huge") == State.OMITTED
    assert [launch.env["PJ_JOB"] for launch in r.step()] == ["fine"]


def test_service_master_keeps_big_jobs_queued_until_every_expected_agent_joined() -> None:
    r = Run(nodes=1, cores=4, expected=2)
    r.submit(spec("eight", cores=8), spec("nine", cores=9))
    assert r.state("eight") == State.QUEUED and r.state("nine") == State.QUEUED
    r.core.node_joined(NodeInfo("n1", 8), r.tick())
    assert r.state("nine") == State.FAILED
    assert [launch.env["PJ_JOB"] for launch in r.step()] == ["eight"]


def test_unknown_expected_nodes_never_fails_for_size() -> None:
    r = Run(nodes=1, cores=2, expected=None)
    r.submit(spec("big", cores=64))
    assert r.state("big") == State.QUEUED


def test_gpus_are_given_out_per_node_and_limit_concurrency() -> None:
    r = Run(nodes=1, cores=8, gpus=2)
    r.submit(*(spec(f"g{i}", gpus=1) for i in range(3)))
    launched = r.step()
    assert [launch.env["CUDA_VISIBLE_DEVICES"] for launch in launched] == ["0", "1"]
    r.submit(spec("cpu"))
    cpu = r.step()
    assert cpu[0].env["CUDA_VISIBLE_DEVICES"] == ""
    assert [launch.env["ROCR_VISIBLE_DEVICES"] for launch in launched] == ["0", "1"]
    assert [launch.env["HIP_VISIBLE_DEVICES"] for launch in launched] == ["0", "0"]
    assert [launch.env["ZE_AFFINITY_MASK"] for launch in launched] == ["0", "1"]


def test_dependency_failure_omits_the_chain() -> None:
    r = Run(cores=2)
    r.submit(spec("a"), spec("b", after=("a",)), spec("c", after=("b",)), spec("d"))
    r.run_to_end(codes={"a": 3})
    assert r.state("a") == State.FAILED
    assert r.core.registry.get("a").reason == "exit code 3"  # type: ignore[union-attr]
    assert r.state("b") == State.OMITTED and r.state("c") == State.OMITTED
    assert r.state("d") == State.SUCCEED
    assert r.core.unfinished == 0


def test_dependency_waits_until_the_whole_job_ends() -> None:
    r = Run(cores=4)
    r.submit(spec("sim", it=3), spec("post", after=("sim",)))
    launched = r.step()
    assert len(launched) == 3 and all(launch.env["PJ_JOB"] == "sim" for launch in launched)
    tids = list(r.running)
    r.core.task_exited(tids[0], 0, "", r.tick())
    del r.running[tids[0]]
    assert r.step() == []
    r.finish_all()
    assert [launch.env["PJ_JOB"] for launch in r.step()] == ["post"]


def test_per_iteration_dependencies_release_iterations_one_by_one() -> None:
    r = Run(cores=8)
    r.submit(spec("sim", it=4), spec("post", it=4, after=("sim:${it}",)))
    assert len(r.step()) == 4
    sim2 = next(t for t, launch in r.running.items() if launch.env["PJ_ITERATION"] == "2")
    r.core.task_exited(sim2, 0, "", r.tick())
    del r.running[sim2]
    (post,) = r.step()
    assert post.env["PJ_JOB"] == "post" and post.env["PJ_ITERATION"] == "2"
    sim1 = next(t for t, launch in r.running.items() if launch.env["PJ_ITERATION"] == "1" and launch.env["PJ_JOB"] == "sim")
    r.core.task_exited(sim1, 1, "", r.tick())
    del r.running[sim1]
    r.run_to_end()
    post_job = r.core.registry.get("post")
    assert post_job is not None
    assert post_job.tasks[1].state == State.OMITTED
    assert post_job.tasks[2].state == State.SUCCEED
    assert r.state("post") == State.FAILED and "1 of 4" in post_job.reason
    assert r.state("sim") == State.FAILED


def test_dependency_on_one_iteration() -> None:
    r = Run(cores=2)
    r.submit(spec("sim", it=3), spec("one", after=("sim:1",)))
    r.run_to_end(codes={"sim:0": 1})
    assert r.state("one") == State.SUCCEED
    assert r.state("sim") == State.FAILED


def test_dependency_on_a_job_already_finished_in_an_earlier_submit() -> None:
    r = Run(cores=2)
    r.submit(spec("a"))
    r.run_to_end()
    r.submit(spec("b", after=("a",)), spec("bad"))
    r.run_to_end(codes={"bad": 1})
    r.submit(spec("c", after=("bad",)))
    assert r.state("b") == State.SUCCEED and r.state("c") == State.OMITTED


def test_iterations_are_expanded_lazily() -> None:
    r = Run(cores=2)
    r.submit(spec("many", it=1_000_000))
    job = r.core.registry.get("many")
    assert job is not None and job.tasks == {}
    r.step()
    assert len(job.tasks) == 2


def test_iterations_substitute_it_and_itval_per_field() -> None:
    r = Run(cores=4)
    s = JobSpec(name="sweep", exec="./sim", args=("--case", "${it}", "${itval}", "$HOME", "$${it}"),
                wd="case-${it}", stdout="out.${itval}", env=(("CASE", "c${it}"),),
                iterations=Iterations(0, 2, ("alpha", "beta")), base_dir="/home/u/run")
    r.submit(s)
    a, b = r.step()
    assert a.argv == ("/home/u/run/sim", "--case", "0", "alpha", "$HOME", "$0")
    assert b.wd == "/home/u/run/case-1"
    assert b.stdout == "/home/u/run/case-1/out.beta"
    assert b.env["CASE"] == "c1"


def test_script_and_venv_and_modules_build_a_bash_command() -> None:
    r = Run(cores=2)
    r.submit(JobSpec(name="s", script="echo hi", base_dir="/x"),
             JobSpec(name="v", exec="python", args=("a.py",), venv="env", modules=("gcc",), base_dir="/x"))
    s, v = r.step()
    assert s.argv == ("bash", "-c", "echo hi") and s.wd == "/x"
    assert v.argv[:2] == ("bash", "-c")
    assert "source /x/env/bin/activate" in v.argv[2] and "module load gcc" in v.argv[2]
    assert v.argv[-2:] == ("python", "a.py")


def test_cancel_queued_and_running_jobs() -> None:
    r = Run(cores=1)
    r.submit(spec("run"), spec("wait"), spec("dep", after=("run",)))
    (launch,) = r.step()
    canceled, done = r.core.cancel(["run", "wait"], r.tick())
    assert canceled == ["run", "wait"] and done == []
    assert r.state("wait") == State.CANCELED
    out = r.core.step(r.tick())
    assert out.cancels == {"n0": [launch.task_id]}
    assert r.state("run") == State.EXECUTING
    r.core.task_exited(launch.task_id, -15, "", r.tick())
    assert r.state("run") == State.CANCELED
    assert r.state("dep") == State.OMITTED
    with pytest.raises(KeyError):
        r.core.cancel(["nope"], r.tick())


def test_finish_without_drain_cancels_everything_and_stops() -> None:
    r = Run(cores=1)
    r.submit(spec("a"), spec("b"))
    r.step()
    r.core.finish(drain=False, now=r.tick())
    out = r.core.step(r.tick())
    assert not out.stop and out.cancels
    r.finish_all(code=-15)
    assert r.core.step(r.tick()).stop
    assert r.state("a") == State.CANCELED and r.state("b") == State.CANCELED


def test_node_lost_fails_its_tasks() -> None:
    r = Run(nodes=2, cores=1)
    r.submit(spec("a"), spec("b"))
    r.step()
    r.core.node_left("n0", r.tick())
    job = r.core.registry.get("a")
    assert job is not None and job.state == State.FAILED and "node lost" in job.reason
    assert r.core.pool.total_cores == 1


def _lose(r: Run, node: str) -> None:
    """The node's agent is gone: forget what ran there, as its stream ending would."""
    r.core.node_left(node, r.tick())
    for tid, launch in list(r.running.items()):
        if launch.node == node:  # type: ignore[attr-defined]
            del r.running[tid]


def test_node_lost_with_retries_left_queues_the_task_again_and_it_runs_elsewhere() -> None:
    r = Run(nodes=2, cores=1)
    r.submit(spec("a", retries=1), spec("b"))
    (la, _) = sorted(r.step(), key=lambda launch: launch.env["PJ_JOB"])
    assert la.node == "n0"
    _lose(r, "n0")
    job = r.core.registry.get("a")
    assert job is not None and job.state == State.EXECUTING and job.done == 0
    assert r.step() == []  # n1 is busy with b
    r.finish_all()  # b ends: a runs on n1
    (again,) = r.step()
    assert again.node == "n1" and again.env["PJ_JOB"] == "a" and again.task_id != la.task_id
    r.finish_all()
    assert job.state == State.SUCCEED and job.reason == ""
    (first,) = job.attempts[None]  # type: ignore[index]
    assert first.state == State.FAILED and first.lost and first.nodes == ("n0",)
    assert first.reason == "node lost: n0 (retry 1 of 1 follows)" and first.exit_code is None
    assert first.started is not None and first.ended > first.started
    assert r.core.registry.get("b").attempts is None  # type: ignore[union-attr]  # nothing kept


def test_node_lost_without_retries_fails_the_task() -> None:
    r = Run(nodes=2, cores=1)
    r.submit(spec("a", retries=1), spec("b"))
    r.step()
    _lose(r, "n0")  # a is retried on n1 once b is done
    r.finish_all()
    (again,) = r.step()
    assert again.node == "n1"
    _lose(r, "n1")
    job = r.core.registry.get("a")
    assert job is not None and job.state == State.FAILED and job.reason == "node lost: n1"
    assert len(job.attempts[None]) == 1 and r.core.pool.total_cores == 0  # type: ignore[index]


def test_a_lost_node_that_comes_back_runs_the_retry() -> None:
    r = Run(nodes=1, cores=1)
    r.submit(spec("a", retries=2))
    r.step()
    _lose(r, "n0")
    assert r.step() == []  # no node: it waits
    r.core.node_joined(NodeInfo("n0", 1, ()), r.tick())
    assert (r.core.pool.total_cores, r.core.pool.free_cores) == (1, 1)
    (again,) = r.step()
    assert again.node == "n0"
    r.finish_all()
    assert r.state("a") == State.SUCCEED


def test_crash_limit_fails_a_task_that_keeps_losing_its_nodes() -> None:
    r = Run(nodes=3, cores=1)
    r.core.crash_limit = 2
    r.submit(spec("killer", retries=5), spec("sweep", it=2, retries=5))
    r.step()  # killer on n0, sweep:0 on n1, sweep:1 on n2
    _lose(r, "n0")
    r.core.node_joined(NodeInfo("n3", 1, ()), r.tick())
    (again,) = r.step()
    assert again.env["PJ_JOB"] == "killer" and again.node == "n3"
    _lose(r, "n3")
    job = r.core.registry.get("killer")
    assert job is not None and job.state == State.FAILED
    assert job.reason == "crash limit: 2 nodes were lost while it ran (last: n3)"
    r.finish_all()  # the sweep was never hurt
    assert r.state("sweep") == State.SUCCEED


def test_crash_limit_zero_means_no_limit() -> None:
    r = Run(nodes=1, cores=1)
    r.core.crash_limit = 0
    r.submit(spec("a", retries=5))
    for _ in range(5):
        r.step()
        _lose(r, "n0")
        r.core.node_joined(NodeInfo("n0", 1, ()), r.tick())
    r.step()
    r.finish_all()
    job = r.core.registry.get("a")
    assert job is not None and job.state == State.SUCCEED and len(job.attempts[None]) == 5  # type: ignore[index]


def test_every_attempt_is_in_the_report() -> None:
    from pj.master import report

    r = Run(nodes=2, cores=1)
    r.submit(spec("sweep", it=2, retries=2), spec("one", retries=1))
    r.step()  # sweep:0 on n0, sweep:1 on n1
    _lose(r, "n0")
    r.core.node_joined(NodeInfo("n0", 1, ()), r.tick())
    r.run_to_end(codes={"one": 3})
    lines = list(report.job_records(r.core.registry.get("sweep")))  # type: ignore[arg-type]
    it0, it1 = lines[1], lines[2]
    assert it0["state"] == "SUCCEED" and [a["state"] for a in it0["attempts"]] == ["FAILED", "SUCCEED"]
    assert it0["attempts"][0]["reason"].startswith("node lost: n0") and it0["attempts"][0]["nodes"] == ["n0"]
    assert it0["attempts"][1]["ended"] == it0["times"]["SUCCEED"]
    assert "attempts" not in it1 and "attempts" not in lines[0]
    (one,) = report.job_records(r.core.registry.get("one"))  # type: ignore[arg-type]
    assert one["state"] == "FAILED" and one["exit_code"] == 3
    assert [(a["state"], a["exit_code"]) for a in one["attempts"]] == [("FAILED", 3), ("FAILED", 3)]


def test_a_job_canceled_while_its_node_is_lost_ends_canceled() -> None:
    r = Run(nodes=2, cores=1)
    r.submit(spec("a", retries=3), spec("b", retries=3))
    r.step()
    r.core.cancel(["a"], r.tick())
    _lose(r, "n0")  # a ran there: canceled, not retried
    assert r.state("a") == State.CANCELED and r.core.registry.get("a").attempts is None  # type: ignore[union-attr]
    _lose(r, "n1")  # b is queued again, then canceled while it waits
    r.core.cancel(["b"], r.tick())
    assert r.state("b") == State.CANCELED and r.step() == []
    from pj.master import report

    (line,) = report.job_records(r.core.registry.get("b"))  # type: ignore[arg-type]
    assert [a["state"] for a in line["attempts"]] == ["FAILED"]  # its one attempt, not twice


def test_spawn_failure_is_a_failed_task_with_the_agents_message() -> None:
    r = Run(cores=1)
    r.submit(spec("x"))
    out = r.core.step(r.tick())
    (launch,) = out.launches["n0"]
    r.core.task_exited(launch.task_id, 127, "cannot start ./nope: No such file or directory", r.tick())
    job = r.core.registry.get("x")
    assert job is not None and job.state == State.FAILED
    assert job.reason == "cannot start ./nope: No such file or directory"
    assert [s for s, _ in job.tasks[None].history] == [State.QUEUED, State.SCHEDULED, State.FAILED]


def test_failed_tasks_are_retried_up_to_retries_times() -> None:
    r = Run(cores=1)
    r.submit(spec("flaky", retries=2), spec("sweep", it=2, retries=1), spec("after", after=("flaky",)))
    codes = iter([3, 0])  # flaky fails once, then succeeds; sweep:0 fails every time
    for _ in range(20):
        launched = r.step()
        if not r.running and not launched:
            break
        for tid, launch in list(r.running.items()):
            job, it = launch.env["PJ_JOB"], launch.env["PJ_ITERATION"]
            code = next(codes) if job == "flaky" else (5 if it == "0" else 0)
            r.core.task_exited(tid, code, "", r.tick())
            del r.running[tid]
    flaky = r.core.registry.get("flaky")
    assert flaky is not None and flaky.state == State.SUCCEED and flaky.reason == ""
    assert (flaky.done, flaky.succeeded, flaky.failed) == (1, 1, 0)
    assert r.state("after") == State.SUCCEED
    sweep = r.core.registry.get("sweep")
    assert sweep is not None and sweep.state == State.FAILED  # sweep:0 failed twice: 1 retry, no more
    assert (sweep.done, sweep.succeeded, sweep.failed) == (2, 1, 1)
    assert sweep.tasks[0].exit_code == 5 and sweep.tasks[0].reason == "exit code 5"
    assert r.core.task_counts[State.FAILED] == 3  # every failed attempt: flaky once, sweep:0 twice
    assert r.core.step(r.tick()).stop is False and r.core.unfinished == 0


def test_a_canceled_job_is_not_retried() -> None:
    r = Run(cores=1)
    r.submit(spec("x", retries=3))
    (launch,) = r.step()
    r.core.cancel(["x"], r.tick())
    r.core.task_exited(launch.task_id, -15, "", r.tick())
    assert r.state("x") == State.CANCELED and r.step() == []


def test_tasks_that_never_run_count_as_done_and_failed() -> None:
    r = Run(cores=1)
    r.submit(spec("big", cores=2), spec("dep", it=4, after=("big",)), spec("run", it=3))
    r.step()  # run:0 starts; big can never fit; dep is omitted
    dep, run = r.core.registry.get("dep"), r.core.registry.get("run")
    assert dep is not None and run is not None
    assert dep.state == State.OMITTED and (dep.done, dep.failed) == (4, 4)
    r.core.cancel(["run"], r.tick())
    assert (run.done, run.failed) == (2, 2)  # run:1 and run:2 will never start
    r.finish_all(code=-15)
    assert run.state == State.CANCELED and (run.done, run.failed, run.succeeded) == (3, 3, 0)


def test_every_transition_is_timestamped() -> None:
    r = Run(cores=1)
    r.submit(spec("a"))
    r.run_to_end()
    job = r.core.registry.get("a")
    assert job is not None
    assert [s for s, _ in job.history] == [State.QUEUED, State.SCHEDULED, State.EXECUTING, State.SUCCEED]
    times = [t for _, t in job.history]
    assert times == sorted(times)


def test_illegal_transitions_raise() -> None:
    with pytest.raises(IllegalTransition):
        check_transition("x", State.SUCCEED, State.FAILED)
    with pytest.raises(IllegalTransition):
        check_transition("x", State.QUEUED, State.EXECUTING)
    check_transition("x", State.QUEUED, State.SCHEDULED)


def test_duplicate_and_unknown_names_are_refused_whole() -> None:
    r = Run()
    r.submit(spec("a"))
    with pytest.raises(SubmitError, match=r"'a'.*name"):
        r.core.submit([spec("b"), spec("a")], r.tick())
    with pytest.raises(SubmitError, match=r"'c'.*after.*'zzz'"):
        r.core.submit([spec("c", after=("zzz",))], r.tick())
    assert len(r.core.registry) == 1


def test_a_pass_costs_what_it_places_not_the_queue_length() -> None:
    r = Run(cores=4)
    r.submit(*(spec(f"j{i}") for i in range(100_000)))
    calls = 0
    real = r.core.pool.allocate

    def counting(req: Request, until: float = 0.0):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real(req, until)

    r.core.pool.allocate = counting  # type: ignore[method-assign]
    assert len(r.step()) == 4
    r.finish_all()
    calls = 0
    assert len(r.step()) == 4
    assert calls <= 5  # four placements and at most one failed attempt


def test_core_modules_do_no_io() -> None:
    root = pathlib.Path(__file__).resolve().parents[2] / "master"
    forbidden = {"grpc", "asyncio", "subprocess", "socket", "time", "os", "threading"}
    for mod in ("model", "pool", "registry", "scheduler", "launch", "core", "expect", "execmodels", "reconcile",
                "restore", "prefetch", "itersize", "nodeloss", "peers", "usage", "why", "ended", "invariants", "deps",
                "allocs"):
        tree = ast.parse((root / f"{mod}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            assert not set(names) & forbidden, f"master/{mod}.py imports {names}"


def test_start_and_end_times_are_the_agents_but_never_before_the_tasks_last_change() -> None:
    h = Run(cores=2)
    h.submit(spec("a"), spec("b"))
    out = h.core.step(h.tick())  # both SCHEDULED at t0
    t0 = h.t
    (ta, tb) = [launch.task_id for ls in out.launches.values() for launch in ls]
    h.core.task_started(ta, t0 + 0.25)  # the agent's spawn time, reported later
    h.core.task_exited(ta, 0, "", t0 + 0.5)
    h.core.task_started(tb, t0 - 30)  # an agent whose clock is behind
    h.core.task_exited(tb, 0, "", t0 - 29)
    a, b = h.core.registry.get("a"), h.core.registry.get("b")
    assert a is not None and b is not None
    assert [(s, t - t0) for s, t in a.history[-2:]] == [(State.EXECUTING, 0.25), (State.SUCCEED, 0.5)]
    assert [(s, t - t0) for s, t in b.history[-2:]] == [(State.EXECUTING, 0.0), (State.SUCCEED, 0.0)]


def test_master_modules_import_each_other_in_no_circle() -> None:
    """At run time (imports under TYPE_CHECKING aside, function-level ones counted) no module of
    pj.master imports, through others, itself: helpers of the core use it, it does not need them back."""
    root = pathlib.Path(__file__).resolve().parents[2] / "master"
    graph: dict[str, set[str]] = {}
    for f in root.glob("*.py"):
        deps: set[str] = set()

        def visit(node: ast.AST, typing_only: bool, deps: set[str] = deps) -> None:
            for child in ast.iter_child_nodes(node):
                tc = typing_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
                if isinstance(child, ast.ImportFrom) and child.level == 1 and not tc:
                    deps.update([child.module.split(".")[0]] if child.module else [a.name for a in child.names])
                visit(child, tc)

        visit(ast.parse(f.read_text()), False)
        graph[f.stem] = deps
    circles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            mod, path = stack.pop()
            for nxt in graph.get(mod, ()):
                if nxt == start:
                    circles.append(" -> ".join([*path, start]))
                elif nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    assert circles == []


def test_a_pass_places_at_most_pass_place_max_and_asks_for_the_next_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from pj.master import core as core_module

    monkeypatch.setattr(core_module, "PASS_PLACE_MAX", 3)
    r = Run(cores=10)
    r.submit(*(spec(f"j{i}") for i in range(7)))
    got = []
    for _ in range(3):
        now = r.tick()
        out = r.core.step(now)
        got.append(([t.job.name for t in out.placed], out.wake_at == now))
    assert got == [(["j0", "j1", "j2"], True), (["j3", "j4", "j5"], True), (["j6"], False)]


def test_no_more_is_placed_while_launched_max_tasks_have_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    from pj.master import core as core_module

    monkeypatch.setattr(core_module, "PASS_PLACE_MAX", 3)
    monkeypatch.setattr(core_module, "LAUNCHED_MAX", 4)
    r = Run(cores=10)
    r.submit(*(spec(f"j{i}") for i in range(7)))
    now = r.tick()
    out = r.core.step(now)
    assert [t.job.name for t in out.placed] == ["j0", "j1", "j2"] and out.wake_at == now
    out = r.core.step(r.tick())  # 4 launched, none started: no wake, wait for the reports
    assert [t.job.name for t in out.placed] == ["j3"] and out.wake_at is None
    assert r.core.step(r.tick()).placed == []
    r.core.task_started(out.placed[0].id, r.tick())
    assert [t.job.name for t in r.core.step(r.tick()).placed] == ["j4"]


def test_launch_room_is_used_in_slices_not_one_task_per_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from pj.master import core as core_module

    monkeypatch.setattr(core_module, "PASS_PLACE_MAX", 8)
    monkeypatch.setattr(core_module, "LAUNCHED_MAX", 10)
    r = Run(cores=30)
    r.submit(*(spec(f"j{i}") for i in range(20)))
    first = r.core.step(r.tick()).placed
    assert len(first) == 8 and len(r.core.step(r.tick()).placed) == 2  # 10 launched, none started
    r.core.task_started(first[0].id, r.tick())
    assert r.core.step(r.tick()).placed == []  # room for 1 only: wait for more reports
    r.core.task_started(first[1].id, r.tick())
    assert len(r.core.step(r.tick()).placed) == 2


def test_per_iteration_waiter_of_a_job_cancelled_with_retries_pending_ends() -> None:
    # sim:0 and sim:1 failed and wait for their retry when sim is cancelled while sim:2 still runs;
    # post, waiting per iteration on sim, must not stay QUEUED once sim ends CANCELED (found by the
    # core machine's liveness check: the failed attempts counted as 'has a task' and were skipped).
    r = Run(cores=3)
    r.submit(spec("sim", it=4, retries=1))
    assert len(r.step()) == 3
    by_it = {launch.env["PJ_ITERATION"]: tid for tid, launch in r.running.items()}
    for it in ("0", "1"):
        r.core.task_exited(by_it[it], 1, "", r.tick())
        del r.running[by_it[it]]
    r.core.cancel(["sim"], r.tick())
    r.submit(spec("post", it=2, after=("sim:${it}",)))
    assert r.state("sim") != State.CANCELED  # sim:2 still runs
    r.run_to_end()
    assert r.state("sim") == State.CANCELED
    post = r.core.registry.get("post")
    assert post is not None and post.final
    assert [post.tasks[i].state for i in (0, 1)] == [State.OMITTED, State.OMITTED]
