"""pj.common.speccheck: the rules every batch of JobSpecs must follow, on the client and the master."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from pj.common.speccheck import (
    ARGS_BYTES_MAX,
    COUNT_MAX,
    ENV_ENTRIES_MAX,
    ITERATIONS_MAX,
    NAME_MAX,
    JobRef,
    SpecError,
    check_name,
    check_specs,
    split_after,
)
from pj.v1 import pj_pb2


def job(name: str = "sim", **fields: Any) -> pj_pb2.JobSpec:
    """A valid JobSpec (exec /bin/true unless a script is given), with ``fields`` laid over it."""
    if "script" not in fields and "exec" not in fields:
        fields["exec"] = "/bin/true"
    cores = fields.pop("cores", None)
    nodes = fields.pop("nodes", None)
    iterations = fields.pop("iterations", None)
    spec = pj_pb2.JobSpec(name=name, **fields)
    if cores is not None:
        spec.cores.min, spec.cores.max = cores
    if nodes is not None:
        spec.nodes.min, spec.nodes.max = nodes
    if isinstance(iterations, tuple):
        spec.iterations.start, spec.iterations.stop = iterations
    elif isinstance(iterations, list):
        spec.iterations.values.extend(iterations)
        spec.iterations.stop = len(iterations)
    return spec


def refused(specs: list[pj_pb2.JobSpec], **kw: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        check_specs(specs, **kw)
    err = info.value
    assert "\n" not in str(err)
    assert isinstance(err, ValueError)
    return err


# ----------------------------------------------------------------------------- valid batches


def test_a_valid_batch_passes() -> None:
    check_specs(
        [
            job("prep", stdout="prep.out"),
            job("sim", args=["--case", "${it}"], iterations=(0, 8), cores=(2, 4), after=["prep"], wd="sim-${it}"),
            job("post", script="cat sim-${it}/result", iterations=(0, 8), after=["sim:${it}"]),
            job("train", exec="python", args=["train.py"], cores=(4, 4), gpus=1, walltime_s=600, retries=2,
                env={"OMP_NUM_THREADS": "4"}),
            job("solve", exec="./solver", nodes=(2, 2), cores=(8, 8), model="srun"),
            job("pick", after=["sim:7", "post"], model="default", modules=["gcc"], venv="/v",
                attributes={"k": "v"}),
            job("vals", iterations=["a", "b", "c"], after=["post"]),
        ]
    )  # fmt: skip


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(SpecError, match="the submission: field 'jobs': no jobs"):
        check_specs([])


@pytest.mark.parametrize(
    "name", ["a", "sim", "Sim_2", "a.b", "a-b", "a+b", "x" * NAME_MAX, "0", "-x", "job.1.out"]
)
def test_valid_names(name: str) -> None:
    assert check_name(name) is None
    check_specs([job(name)])


@pytest.mark.parametrize("model", ["", "default", "threads", "srun", "openmpi", "intelmpi"])
def test_every_model_is_accepted(model: str) -> None:
    check_specs([job(model=model)])


def test_max_zero_means_no_upper_bound() -> None:
    check_specs([job(cores=(4, 0), nodes=(2, 0))])


def test_limits_themselves_are_accepted() -> None:
    check_specs([job(cores=(COUNT_MAX, COUNT_MAX), gpus=1024, retries=1000, iterations=(0, ITERATIONS_MAX),
                     env={f"V{i}": "x" for i in range(ENV_ENTRIES_MAX)})])  # fmt: skip


# ----------------------------------------------------------------------------- one job at a time


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "a name is required"),
        ("x" * (NAME_MAX + 1), "longer than 200 characters"),
        ("a:b", "must not contain ':'"),
        ("a/b", "must not contain '/'"),
        ("../etc", "must not contain '/'"),
        (".hidden", "must not start with '.'"),
        ("a b", "contains ' '"),
        ("a$b", "contains '$'"),
        ("sim_${it}", "contains '$'"),
        ("é", "contains 'é'"),
        ("a\0b", "contains '\\x00'"),
    ],
)
def test_bad_names(name: str, reason: str) -> None:
    err = refused([job(name)])
    assert err.field == "name"
    assert reason in err.reason
    assert err.index == 0
    assert check_name(name) is not None


def test_error_format_names_the_job_and_the_field() -> None:
    err = refused([job("ok"), job("sim", cores=(4, 2))])
    assert str(err) == "job 'sim': field 'cores': min 4 is greater than max 2"
    assert (err.job, err.field, err.index) == ("sim", "cores", 1)
    assert err.reason == "min 4 is greater than max 2"


def test_a_job_without_a_usable_name_is_named_by_position() -> None:
    err = refused([job("ok"), job("bad:name")])
    assert str(err).startswith("job #2: field 'name': ")


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"exec": ""}, "exec", "exec or script is required"),
        ({"exec": "/bin/true", "script": "true"}, "exec", "exactly one of exec and script"),
        ({"script": "echo", "args": ["x"]}, "args", "cannot be combined with script"),
        ({"args": ["ok", "a\0b"]}, "args", "NUL"),
        ({"args": ["x" * (ARGS_BYTES_MAX + 1)]}, "args", "longer than"),
        ({"args": ["é" * (ARGS_BYTES_MAX // 2)]}, "args", "longer than"),  # bytes, not characters
        ({"exec": "/bin/\0true"}, "exec", "NUL"),
        ({"exec": "/" + "x" * 5000}, "exec", "longer than 4096"),
        ({"wd": "a\0"}, "wd", "NUL"),
        ({"stdin": "a\0"}, "stdin", "NUL"),
        ({"stdout": "x" * 5000}, "stdout", "longer than"),
        ({"stderr": "a\0"}, "stderr", "NUL"),
        ({"venv": "a\0"}, "venv", "NUL"),
        ({"script": "echo \0"}, "script", "NUL"),
        ({"script": "x" * (2 << 20)}, "script", "longer than"),
        ({"env": {"A=B": "x"}}, "env", "not a variable name"),
        ({"env": {"": "x"}}, "env", "not a variable name"),
        ({"env": {"A": "x\0"}}, "env", "NUL"),
        ({"env": {f"V{i}": "" for i in range(ENV_ENTRIES_MAX + 1)}}, "env", "more than 1000"),
        ({"env": {"BIG": "x" * (1 << 20)}}, "env", "longer than"),
        ({"cores": (0, 0)}, "cores", "at least 1 is needed"),
        ({"cores": (0, 4)}, "cores", "at least 1 is needed"),
        ({"cores": (4, 2)}, "cores", "min 4 is greater than max 2"),
        ({"cores": (COUNT_MAX + 1, 0)}, "cores", "not a real request"),
        ({"cores": (1, COUNT_MAX + 1)}, "cores", "not a real request"),
        ({"nodes": (3, 1)}, "nodes", "min 3 is greater than max 1"),
        ({"nodes": (0, 0)}, "nodes", "at least 1"),
        ({"gpus": 1025}, "gpus", "more than 1024"),
        ({"iterations": (5, 5)}, "iterations", "stop 5 must be greater than start 5"),
        ({"iterations": (0, 0)}, "iterations", "values, if used, must not be empty"),
        ({"iterations": (7, 3)}, "iterations", "greater than start"),
        ({"iterations": (-1, 3)}, "iterations", "must not be negative"),
        ({"iterations": (0, ITERATIONS_MAX + 1)}, "iterations", "more than 10000000"),
        ({"walltime_s": -1.0}, "walltime_s", ">= 0"),
        ({"walltime_s": math.nan}, "walltime_s", ">= 0"),
        ({"walltime_s": math.inf}, "walltime_s", ">= 0"),
        ({"retries": 1001}, "retries", "more than 1000"),
        ({"model": "mpich"}, "model", "unknown model 'mpich'"),
        ({"model": "SRUN"}, "model", "unknown model"),
        ({"modules": [""]}, "modules", "not a module name"),
        ({"modules": ["a\nb"]}, "modules", "not a module name"),
        ({"modules": ["m"] * 101}, "modules", "more than 100"),
        ({"attributes": {f"k{i}": "" for i in range(1001)}}, "attributes", "more than 1000"),
    ],
)
def test_field_errors(fields: dict[str, Any], field: str, reason: str) -> None:
    err = refused([job("sim", **fields)])
    assert err.field == field
    assert reason in err.reason, err.reason
    assert str(err).startswith(f"job 'sim': field '{field}': ")


def test_iteration_values_must_match_start_and_stop() -> None:
    spec = job()
    spec.iterations.values.extend(["a", "b"])
    spec.iterations.stop = 3
    assert "with values, start must be 0 and stop 2" in refused([spec]).reason


def test_the_first_error_in_batch_order_is_reported() -> None:
    err = refused([job("a"), job("b", gpus=5000), job("c", cores=(0, 0))])
    assert err.job == "b"
    # job checks come before dependency checks of earlier jobs
    err = refused([job("a", after=["nowhere"]), job("b", retries=5000)])
    assert (err.job, err.field) == ("b", "retries")


# ----------------------------------------------------------------------------- names across the batch


def test_duplicate_names_in_the_batch() -> None:
    err = refused([job("a"), job("b"), job("a")])
    assert (err.job, err.field, err.index) == ("a", "name", 2)
    assert "also the name of job #1" in err.reason


def test_names_already_registered() -> None:
    registered = {"old": JobRef()}
    err = refused([job("new"), job("old")], known=registered.get)
    assert (err.job, err.field) == ("old", "name")
    assert "already exists" in err.reason


# ----------------------------------------------------------------------------- dependencies


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("a:b", "is not 'job', 'job:${it}' or 'job:N'"),
        ("a:", "is not 'job'"),
        ("a:-1", "is not 'job'"),
        ("a:${itval}", "is not 'job'"),
        ("a:${it}x", "is not 'job'"),
        ("pre_${it}", "contains '$'"),
        ("a:1:2", "is not 'job'"),
        ("", "a name is required"),
        (":3", "a name is required"),
        ("missing", "no job named 'missing'"),
        ("sim", "cannot depend on itself"),
        ("sim:${it}", "cannot depend on itself"),
        ("sim:0", "cannot depend on itself"),
    ],
)
def test_bad_dependencies(entry: str, reason: str) -> None:
    err = refused([job("a"), job("sim", iterations=(0, 2), after=[entry])])
    assert (err.job, err.field) == ("sim", "after")
    assert reason in err.reason, err.reason


def test_per_iteration_dependency_needs_iterations_on_both_sides() -> None:
    err = refused([job("a", iterations=(0, 4)), job("b", after=["a:${it}"])])
    assert "only allowed in a job with iterations" in err.reason
    err = refused([job("a"), job("b", iterations=(0, 4), after=["a:${it}"])])
    assert "job 'a' has no iterations" in err.reason


def test_per_iteration_dependency_must_cover_every_iteration() -> None:
    check_specs([job("a", iterations=(0, 10)), job("b", iterations=(2, 10), after=["a:${it}"])])
    err = refused([job("a", iterations=(0, 4)), job("b", iterations=(0, 5), after=["a:${it}"])])
    assert "iterations 0..3, which do not cover this job's 0..4" in err.reason
    err = refused([job("a", iterations=(1, 5)), job("b", iterations=(0, 4), after=["a:${it}"])])
    assert "do not cover" in err.reason
    # values count as 0..len-1
    check_specs([job("a", iterations=["x", "y"]), job("b", iterations=(0, 2), after=["a:${it}"])])


def test_dependency_on_one_iteration() -> None:
    check_specs([job("a", iterations=(3, 6)), job("b", after=["a:3", "a:5"])])
    assert "iterations 3..5 only" in refused([job("a", iterations=(3, 6)), job("b", after=["a:6"])]).reason
    assert "iterations 3..5 only" in refused([job("a", iterations=(3, 6)), job("b", after=["a:2"])]).reason
    assert "has no iterations" in refused([job("a"), job("b", after=["a:0"])]).reason


def test_dependencies_on_registered_jobs() -> None:
    registered = {"old": JobRef(0, 10), "single": JobRef()}
    check_specs([job("n", iterations=(0, 10), after=["old:${it}", "single", "old:9", "old"])],
                known=registered.get)  # fmt: skip
    err = refused([job("n", iterations=(0, 11), after=["old:${it}"])], known=registered.get)
    assert "do not cover" in err.reason
    err = refused([job("n", iterations=(0, 2), after=["single:${it}"])], known=registered.get)
    assert "has no iterations" in err.reason
    err = refused([job("n", after=["gone"])], known=registered.get)
    assert "no job named 'gone' in this batch or already submitted" in err.reason


def test_forward_references_are_fine() -> None:
    check_specs([job("post", after=["sim"]), job("sim", after=["prep"]), job("prep")])


def test_allow_external_accepts_unknown_targets_but_still_checks_their_form() -> None:
    check_specs([job("n", after=["elsewhere", "other:3"])], allow_external=True)
    check_specs([job("n", iterations=(0, 3), after=["other:${it}"])], allow_external=True)
    assert "is not 'job'" in refused([job("n", after=["x:y"])], allow_external=True).reason
    # a target that IS known or in the batch is still checked in full
    err = refused([job("a"), job("n", after=["a:1"])], allow_external=True)
    assert "has no iterations" in err.reason


@pytest.mark.parametrize(
    ("specs", "cycle"),
    [
        ([job("a", after=["b"]), job("b", after=["a"])], "a -> b -> a"),
        ([job("x"), job("c", after=["a"]), job("a", after=["b"]), job("b", after=["c"])], "c -> a -> b -> c"),
        (
            [job("a", iterations=(0, 2), after=["b:${it}"]), job("b", iterations=(0, 2), after=["a:1"])],
            "a -> b -> a",
        ),
    ],
)
def test_dependency_cycles(specs: list[pj_pb2.JobSpec], cycle: str) -> None:
    err = refused(specs)
    assert err.field == "after"
    assert f"dependency cycle {cycle}" in err.reason


# ----------------------------------------------------------------------------- helpers


def test_split_after() -> None:
    assert split_after("a") == ("a", None)
    assert split_after("a:${it}") == ("a", "${it}")
    assert split_after("a:12") == ("a", 12)
    with pytest.raises(ValueError):
        split_after("a:b")


def test_jobref() -> None:
    assert not JobRef().has_iterations
    assert JobRef(0, 3).has_iterations
    assert JobRef.of(job(iterations=(2, 5))) == JobRef(2, 5)
    assert JobRef.of(job(iterations=["a", "b"])) == JobRef(0, 2)
    assert JobRef.of(job()) == JobRef()
    with pytest.raises(AttributeError):
        JobRef().start = 1  # type: ignore[misc]


# ----------------------------------------------------------------------------- scale


def _timed(specs: list[pj_pb2.JobSpec], **kw: Any) -> float:
    t = time.perf_counter()
    try:
        check_specs(specs, **kw)
    except SpecError:
        pass
    return time.perf_counter() - t


def test_100k_jobs_check_quickly() -> None:
    n = 100_000
    specs = []
    for i in range(n):
        spec = job(f"job{i}", exec="/bin/echo", args=["hello", str(i)], stdout=f"out{i}.txt", cores=(1, 4))
        if i:
            spec.after.append(f"job{i - 1}")
        specs.append(spec)
    # Typically ~0.5 s here; the bound leaves room for a loaded CI machine, and a quadratic step
    # would take minutes.
    assert _timed(specs) < 5
    known = {f"old{i}": JobRef() for i in range(n)}
    assert _timed(specs, known=known.get) < 5
    # every job waiting for the next one (forward edges): the iterative cycle search runs
    reversed_chain = [job(f"r{i}", after=[f"r{i + 1}"] if i + 1 < n else []) for i in range(n)]
    assert _timed(reversed_chain) < 5
    # ... and a cycle 100 000 jobs long is found without recursion
    reversed_chain[-1].after.append("r0")
    err = refused(reversed_chain)
    assert err.job == "r0"
    assert "dependency cycle r0 -> r1 -> r2 -> r3 -> ... (99994 more) -> r99998 -> r99999 -> r0" in err.reason
    assert len(str(err)) < 200


@pytest.mark.parametrize("nodes", [(2, 2), (1, 0), (1, 3)])
def test_threads_on_more_than_one_node_is_refused(nodes: tuple[int, int]) -> None:
    with pytest.raises(SpecError, match=r"job 'omp'.*nodes.*one node.*srun/openmpi"):
        check_specs([job("omp", model="threads", nodes=nodes)])


def test_threads_on_exactly_one_node_is_fine() -> None:
    check_specs([job("omp", model="threads", nodes=(1, 1), cores=(4, 4))])
