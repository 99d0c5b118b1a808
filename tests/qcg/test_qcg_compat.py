"""QCG-PilotJob compatibility: module/venv prefix rule, model_opts, iteration schedulers (pure parts)."""

from __future__ import annotations

import json
import subprocess

import pytest

from pj.client.jobfile import JobFileError, parse_jobfile
from pj.common.speccheck import SpecError, check_specs
from pj.master.core import Core
from pj.master.expect import Expectation
from pj.master.itersize import resolve
from pj.master.launch import MODULE_INIT, Context, build
from pj.master.model import ONE as ONE_NODE
from pj.master.model import (
    Allocation,
    Iterations,
    JobSpec,
    NodeInfo,
    NodeShare,
    Range,
    Request,
    Sizing,
    State,
)
from pj.v1 import pj_pb2

LOCAL = Context(master="h:1", workdir="/w")
ONE: Allocation = (NodeShare("n1", (0,)),)


def _spec(**kw: object) -> JobSpec:
    return JobSpec(name="j", base_dir="/b", **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- item: one prefix rule, QCG's


def test_exec_and_script_jobs_get_the_same_prefix_steps_modules_first() -> None:
    e = build(_spec(exec="/bin/prog", args=("a b",), modules=("m1", "m 2"), venv="env"), 1, None, ONE, LOCAL)
    s = build(_spec(script="echo hi", modules=("m1", "m 2"), venv="env"), 2, None, ONE, LOCAL)
    steps = [MODULE_INIT + "module load m1 'm 2'", "source /b/env/bin/activate"]
    assert e.argv == ("bash", "-c", "\n".join([*steps, 'exec "$@"']), "j", "/bin/prog", "a b")
    assert s.argv == ("bash", "-c", "\n".join([*steps, "echo hi"]))
    assert "&&" not in e.argv[2].replace(MODULE_INIT, "")


def test_a_failing_prefix_step_does_not_stop_the_command_whose_exit_code_decides(tmp_path: object) -> None:
    # The argv PJ builds, run by bash: no such venv, no such module (and here no `module` command).
    for kw in ({"venv": "/nonexistent/venv"}, {"modules": ("no-such-module",)}):
        t = build(_spec(exec="/bin/sh", args=("-c", "echo ran; exit 3"), **kw), 1, None, ONE, LOCAL)
        r = subprocess.run(t.argv, capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout) == (3, "ran\n"), (kw, r.stderr)
        t = build(_spec(script="echo ran", **kw), 1, None, ONE, LOCAL)
        r = subprocess.run(t.argv, capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout) == (0, "ran\n"), (kw, r.stderr)


# ---------------------------------------------------------------- item: iteration schedulers


def _sized(field: str, name: str, parts: int = 0, lo: int = 1, nodes: Range = ONE_NODE, gpus: int = 0) -> Request:
    r = Range(lo, None)
    if field == "cores":
        return Request(cores=r, nodes=nodes, gpus=gpus, sizing=Sizing("cores", name, parts))
    return Request(cores=Range(1, None), nodes=r, gpus=gpus, sizing=Sizing("nodes", name, parts))


def test_split_into_gives_each_iteration_one_part_of_the_run() -> None:
    assert resolve(_sized("cores", "split-into", 2), 4, [(4, 0, 0)]) == Request(cores=Range(2, 2))
    assert resolve(_sized("cores", "split-into"), 4, [(8, 0, 0)]) == Request(cores=Range(2, 2))  # parts: iterations
    assert resolve(_sized("cores", "split-into", 3), 9, [(5, 0, 0), (5, 0, 0)]) == Request(cores=Range(2, 2))  # per node
    got = resolve(_sized("nodes", "split-into", 2), 8, [(4, 0, 0)] * 4)
    assert got == Request(cores=Range(1, None), nodes=Range(2, 2))
    assert "fewer than its min 3" in str(resolve(_sized("cores", "split-into", 4, lo=3), 4, [(8, 0, 0)]))
    assert "less than one core each" in str(resolve(_sized("cores", "split-into", 9), 9, [(8, 0, 0)]))


def test_maximum_iters_lets_all_iterations_run_at_once_with_at_least_min() -> None:
    assert resolve(_sized("cores", "maximum-iters"), 4, [(8, 0, 0)]) == Request(cores=Range(2, 2))
    assert resolve(_sized("cores", "maximum-iters"), 3, [(4, 0, 0)]) == Request(cores=Range(1, 1))
    assert resolve(_sized("cores", "maximum-iters"), 2, [(4, 0, 0), (4, 0, 0)]) == Request(cores=Range(4, 4))
    # 10 iterations, 8 cores, min 1: two rounds of 5, 1 core each (every one of a round fits at once).
    assert resolve(_sized("cores", "maximum-iters"), 10, [(8, 0, 0)]) == Request(cores=Range(1, 1))
    # min 3 on 10 cores: 3 fit at once, so 4 iterations go in 2 rounds of 2: 5 cores each.
    assert resolve(_sized("cores", "maximum-iters", lo=3), 4, [(10, 0, 0)]) == Request(cores=Range(5, 5))
    # GPUs bound the shares too: 2 GPUs, 1 per iteration: 2 at once, 4 cores each.
    assert resolve(_sized("cores", "maximum-iters", gpus=1), 4, [(8, 2, 0)]) == Request(cores=Range(4, 4), gpus=1)
    assert "no node of the run holds its min of 16" in str(resolve(_sized("cores", "maximum-iters", lo=16), 2, [(8, 0, 0)]))


def test_the_core_sizes_a_job_once_the_runs_resources_are_known_then_queues_it() -> None:
    core = Core(expect=Expectation(2), now=0.0)
    job = JobSpec(name="it", exec="/bin/true", iterations=Iterations(0, 4), request=_sized("cores", "split-into", 2))
    core.submit([job], 1.0)
    core.node_joined(NodeInfo("n0", 4), 2.0)
    assert not core.step(3.0).launches  # one node of two: the run's size is not known yet
    core.node_joined(NodeInfo("n1", 4), 4.0)
    launches = [t for ts in core.step(5.0).launches.values() for t in ts]
    assert [len(t.cores) for t in launches] == [4, 4]  # split-into 2 parts of 8 cores: 4 each, 2 at a time
    bad = JobSpec(name="bad", exec="/bin/true", iterations=Iterations(0, 2),
                  request=_sized("cores", "split-into", 16))
    core.submit([bad], 6.0)
    job_bad = core.registry.get("bad")
    assert job_bad is not None and job_bad.state == State.FAILED and "split-into 16 parts" in job_bad.reason


def _qcg_text(resources: dict, iteration: dict | None = {"stop": 4}, **execution: object) -> str:  # noqa: B006
    job: dict = {"name": "j", "execution": {"exec": "/bin/true", **execution}, "resources": resources}
    if iteration is not None:
        job["iteration"] = iteration
    return json.dumps([{"request": "submit", "jobs": [job]}])


def test_a_qcg_scheduler_is_read_into_the_range_and_bad_ones_are_refused_naming_the_field() -> None:
    jf = parse_jobfile(_qcg_text({"numCores": {"min": 2, "scheduler": {"name": "Split-Into", "params": {"parts": 3}}}}))
    (s,) = jf.jobs
    assert (s.cores.min, s.cores.max, s.cores.scheduler.name, s.cores.scheduler.parts) == (2, 0, "split-into", 3)
    assert not jf.warnings
    (n,) = parse_jobfile(_qcg_text({"numNodes": {"min": 1, "scheduler": {"name": "maximum-iters"}}})).jobs
    assert n.nodes.scheduler.name == "maximum-iters" and not n.cores.HasField("scheduler")
    jf = parse_jobfile(_qcg_text({"numCores": {"min": 1, "scheduler": {"name": "maximum-iters"}}}, iteration=None))
    assert not jf.jobs[0].cores.HasField("scheduler") and "no 'iteration'" in jf.warnings[0]
    for resources, words in [
        ({"numCores": {"min": 1, "scheduler": {"name": "split_into"}}},
         ["'resources.numCores.scheduler.name'", "did you mean 'split-into'"]),
        ({"numCores": {"min": 1, "scheduler": {"name": "split-into", "params": {"part": 2}}}},
         ["'part'", "did you mean 'parts'"]),
        ({"numCores": {"min": 1, "max": 4, "scheduler": {"name": "split-into"}}},
         ["'resources.numCores'", "drop max 4"]),
        ({"numCores": {"min": 1, "scheduler": {"name": "maximum-iters"}}, "numNodes": 2},
         ["'resources.numCores'", "put it on nodes"]),
        ({"numCores": {"min": 1, "scheduler": {}}}, ["'resources.numCores.scheduler'", "'name'"]),
    ]:
        with pytest.raises(JobFileError) as e:
            parse_jobfile(_qcg_text(resources))
        msg = str(e.value)
        assert "\n" not in msg and all(w in msg for w in words), msg


# ---------------------------------------------------------------- item: model_opts


def test_model_opts_are_read_per_model_and_ignored_with_a_warning_where_qcg_ignores_them() -> None:
    opts = {"mpirun": "/opt/ompi/bin/mpirun", "mpirun_args": ["--mca", "btl", "self", 1]}
    (s,) = parse_jobfile(_qcg_text({"numCores": 4}, None, model="openmpi", model_opts=opts)).jobs
    assert (s.mpirun, list(s.model_args)) == ("/opt/ompi/bin/mpirun", ["--mca", "btl", "self", "1"])
    jf = parse_jobfile(_qcg_text({"numCores": 4}, None, model="srunmpi", model_opts={"srun_args": ["-v"], **opts}))
    assert (jf.jobs[0].mpirun, list(jf.jobs[0].model_args)) == ("", ["-v"])
    assert "'execution.model_opts.mpirun' is ignored with model 'srun'" in "\n".join(jf.warnings)
    with pytest.raises(JobFileError, match=r"unknown field 'mpirun_arg' in 'execution.model_opts'; did you mean 'mpirun_args'"):
        parse_jobfile(_qcg_text({"numCores": 4}, None, model="openmpi", model_opts={"mpirun_arg": []}))
    with pytest.raises(JobFileError, match=r"'execution.model_opts.mpirun_args': expected a list"):
        parse_jobfile(_qcg_text({"numCores": 4}, None, model="intelmpi", model_opts={"mpirun_args": "-v"}))


def test_mpirun_and_its_args_go_where_qcg_puts_them_in_the_launcher_argv() -> None:
    two: Allocation = (NodeShare("a", (0, 1)), NodeShare("b", (0, 1)))
    kw: dict = {"exec": "/bin/app", "args": ("x",), "mpirun": "/opt/mpi/bin/mpirun", "model_args": ("--mca", "b")}
    slurm = Context(slurm=True)
    t = build(_spec(model="openmpi", **kw), 1, None, two, slurm)
    assert t.argv == ("/opt/mpi/bin/mpirun", "-np", "4", "--host", "a:2,b:2", "--bind-to", "none", "--mca", "b",
                      "/bin/app", "x")
    t = build(_spec(model="openmpi", **kw), 1, None, two, LOCAL)
    assert t.argv[:7] == ("/opt/mpi/bin/mpirun", "-np", "4", "--oversubscribe", "--bind-to", "none", "--mca")
    t = build(_spec(model="intelmpi", **kw), 1, None, two, slurm)
    assert t.argv == ("/opt/mpi/bin/mpirun", "-n", "4", "-ppn", "2", "-hosts", "a,b", "--mca", "b", "/bin/app", "x")
    t = build(_spec(model="intelmpi", **kw), 1, None, two, LOCAL)
    assert t.argv == ("/opt/mpi/bin/mpirun", "-n", "4", "--mca", "b", "/bin/app", "x")
    t = build(_spec(model="srun", exec="/bin/app", model_args=("--mpi=pmix",)), 1, None, two, slurm)
    assert t.argv[0] == "srun" and t.argv[-2:] == ("--mpi=pmix", "/bin/app")
    t = build(_spec(model="openmpi", exec="/bin/app"), 1, None, two, LOCAL)
    assert t.argv[0] == "mpirun"  # no mpirun given: the one on PATH
    # The wire refuses them where no model uses them.
    bad = pj_pb2.JobSpec(name="j", exec="/bin/app", model="default", mpirun="/x/mpirun")
    with pytest.raises(SpecError, match=r"mpirun.*openmpi and intelmpi"):
        check_specs([bad])
