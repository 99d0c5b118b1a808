"""pj.client.jobfile: native and QCG-PilotJob job files, and ``pj-submit -- CMD`` jobs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pj.client.jobfile import JobFile, JobFileError, command_job, load_jobfile, parse_jobfile
from pj.v1 import pj_pb2

ROOT = Path(__file__).resolve().parents[2]
QCG_DATA = ROOT / "tests" / "data" / "qcg"


def parse(obj: Any, **kw: Any) -> JobFile:
    return parse_jobfile(json.dumps(obj), "jobs.json", **kw)


def native(*jobs: dict[str, Any], **kw: Any) -> JobFile:
    return parse({"jobs": list(jobs)}, **kw)


def qcg(*jobs: dict[str, Any], extra: list[Any] | None = None) -> JobFile:
    return parse([{"request": "submit", "jobs": list(jobs)}, *(extra or [])])


def error(obj: Any) -> str:
    """The message of the JobFileError that parsing ``obj`` (JSON-encoded unless a str) raises."""
    text = obj if isinstance(obj, str) else json.dumps(obj)
    with pytest.raises(JobFileError) as info:
        parse_jobfile(text, "jobs.json")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("jobs.json: "), msg
    return msg


def native_error(*jobs: Any) -> str:
    return error({"jobs": list(jobs)})


def qcg_error(*jobs: Any) -> str:
    return error([{"request": "submit", "jobs": list(jobs)}])


E = {"exec": "/bin/true"}  # the least a native job needs besides its name
QE = {"execution": {"exec": "/bin/true"}}


# ----------------------------------------------------------------------------- native format


def test_design_example() -> None:
    """The example of design.md section 3, field by field."""
    jf = native(
        {"name": "prep", "exec": "/bin/date", "stdout": "prep.out"},
        {"name": "sim", "exec": "./sim", "args": ["--case", "${it}"], "iterations": 8,
         "cores": {"min": 2, "max": 4}, "after": ["prep"], "wd": "sim-${it}"},
        {"name": "post", "script": "cat sim-${it}/result", "iterations": 8, "after": ["sim:${it}"]},
        {"name": "train", "exec": "python", "args": ["train.py"], "cores": 4, "gpus": 1,
         "walltime": "10m", "retries": 2, "env": {"OMP_NUM_THREADS": "4"}},
        {"name": "solve", "exec": "./solver", "nodes": 2, "cores": 8, "model": "srun"},
    )  # fmt: skip
    assert jf.kind == "native" and not jf.finish_after_done and jf.warnings == []
    prep, sim, post, train, solve = jf.jobs
    assert (prep.name, prep.exec, prep.stdout) == ("prep", "/bin/date", "prep.out")
    assert not prep.HasField("cores") and not prep.HasField("iterations")
    assert list(sim.args) == ["--case", "${it}"]  # kept verbatim: the master substitutes
    assert (sim.iterations.start, sim.iterations.stop) == (0, 8)
    assert (sim.cores.min, sim.cores.max) == (2, 4)
    assert (list(sim.after), sim.wd) == (["prep"], "sim-${it}")
    assert (post.script, list(post.after)) == ("cat sim-${it}/result", ["sim:${it}"])
    assert (train.cores.min, train.cores.max, train.gpus) == (4, 4, 1)
    assert (train.walltime_s, train.retries, dict(train.env)) == (600, 2, {"OMP_NUM_THREADS": "4"})
    assert (solve.nodes.min, solve.nodes.max, solve.cores.min, solve.model) == (2, 2, 8, "srun")


def test_every_native_field() -> None:
    (spec,) = native(
        {"name": "all", "exec": "/bin/echo", "args": ["a", 1, 2.5, -3], "env": {"A": "x", "N": 4},
         "wd": "w", "stdin": "in", "stdout": "out", "stderr": "err", "cores": {"max": 8},
         "nodes": {"min": 2}, "gpus": 2, "iterations": {"start": 3, "stop": 7}, "after": "other",
         "model": "OpenMPI", "modules": "gcc/12", "venv": "/venv", "walltime": 90, "retries": 3,
         "attributes": {"s": "text", "n": 3, "d": {"x": [1, True]}, "z": None}},
        {"name": "other", **E},
    ).jobs[:1]  # fmt: skip
    assert list(spec.args) == ["a", "1", "2.5", "-3"]
    assert dict(spec.env) == {"A": "x", "N": "4"}
    assert (spec.wd, spec.stdin, spec.stdout, spec.stderr) == ("w", "in", "out", "err")
    assert (spec.cores.min, spec.cores.max) == (1, 8)  # {"max": b} alone: 1..b
    assert (spec.nodes.min, spec.nodes.max) == (2, 0)  # {"min": a} alone: a..unbounded (max 0)
    assert spec.gpus == 2
    assert (spec.iterations.start, spec.iterations.stop) == (3, 7)
    assert list(spec.after) == ["other"]
    assert spec.model == "openmpi"
    assert list(spec.modules) == ["gcc/12"]
    assert spec.venv == "/venv"
    assert spec.walltime_s == 90  # a JSON number is seconds
    assert spec.retries == 3
    assert dict(spec.attributes) == {"s": "text", "n": "3", "d": '{"x":[1,true]}', "z": "null"}


def test_iteration_values_and_nulls() -> None:
    (spec,) = native(
        {"name": "v", **E, "iterations": {"values": ["a", 2, "c"]}, "wd": None, "after": None}
    ).jobs
    assert list(spec.iterations.values) == ["a", "2", "c"]
    assert (spec.iterations.start, spec.iterations.stop) == (0, 3)
    assert not spec.wd and not spec.after  # null: as if the field were absent


def test_walltime_forms() -> None:
    jobs = native({"name": "a", **E, "walltime": "1:30:00"}, {"name": "b", **E, "walltime": "90"},
                  {"name": "c", **E, "walltime": 2.5}, {"name": "d", **E, "walltime": "1d2h"}).jobs  # fmt: skip
    assert [j.walltime_s for j in jobs] == [5400, 5400, 2.5, 93600]


def test_integral_floats_count_as_integers() -> None:
    (spec,) = native({"name": "a", **E, "cores": 4.0}).jobs
    assert spec.cores.min == 4


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"name": "sim", "core": 3, **E}, "jobs.json: job 'sim' (#1): unknown field 'core'; did you mean 'cores'?"),
        ({"name": "sim", "Exec": "x"}, "unknown field 'Exec'; did you mean 'exec'?"),
        ({"name": "sim", "walltime_s": 3, **E}, "unknown field 'walltime_s'; did you mean 'walltime'?"),
        ({"name": "sim", "execution": {}}, "unknown field 'execution'; this is QCG-PilotJob's layout"),
        ({"name": "sim", "numCores": 2, **E}, "unknown field 'numCores'; did you mean 'cores'?"),
        ({"name": "sim", "wt": "1h", **E}, "unknown field 'wt'; did you mean 'walltime'?"),
        ({"name": "sim", "cmd": "x"}, "did you mean 'exec' (a program) or 'script' (a shell script)?"),
        ({"name": "sim", "zzz": 1, **E}, "jobs.json: job 'sim' (#1): unknown field 'zzz'"),
        ({"exec": "x"}, "jobs.json: job #1: missing field 'name'"),
        ({"name": None, "exec": "x"}, "jobs.json: job #1: missing field 'name'"),
        ({"name": 5, "exec": "x"}, "job #1: field 'name': expected a string, got the number 5"),
        ({"name": "", "exec": "x"}, "job #1: field 'name': a name is required"),
        ({"name": "a:b", **E}, "job 'a:b' (#1): field 'name': 'a:b' must not contain ':'"),
        ({"name": "a/b", **E}, "field 'name': 'a/b' must not contain '/'"),
        ({"name": ".x", **E}, "field 'name': '.x' must not start with '.'"),
        ({"name": "x" * 201, **E}, "longer than 200 characters"),
        ({"name": "sim"}, "job 'sim' (#1): field 'exec': exec or script is required"),
        ({"name": "sim", "exec": ""}, "field 'exec': must not be empty"),
        ({"name": "sim", "exec": 3}, "field 'exec': expected a string, got the number 3"),
        ({"name": "sim", "exec": "a", "script": "b"}, "field 'script': cannot be combined with 'exec'"),
        ({"name": "sim", "script": "b", "args": ["x"]}, "field 'args': cannot be combined with script"),
        ({"name": "sim", **E, "args": "-v"}, "field 'args': expected a list, got the string '-v'"),
        ({"name": "sim", **E, "args": ["a", True]}, "field 'args[1]': expected a string or a number, got true"),
        ({"name": "sim", **E, "args": ["a", None]}, "field 'args[1]': expected a string or a number, got null"),
        ({"name": "sim", **E, "args": [["x"]]}, "field 'args[0]': expected a string or a number, got a list"),
        ({"name": "sim", **E, "env": ["A=1"]}, "field 'env': expected an object {\"NAME\": \"value\", ...}"),
        ({"name": "sim", **E, "env": {"A": [1]}}, "field 'env.A': expected a string or a number, got a list"),
        ({"name": "sim", **E, "env": {"A=B": "1"}}, "field 'env': 'A=B' is not a variable name"),
        ({"name": "sim", **E, "wd": ["a"]}, "field 'wd': expected a string, got a list"),
        ({"name": "sim", **E, "stdout": ""}, "field 'stdout': must not be empty"),
        ({"name": "sim", **E, "cores": "four"}, "field 'cores': expected an integer or {\"min\": a, \"max\": b}, got the string 'four'"),
        ({"name": "sim", **E, "cores": 0}, "field 'cores': must be at least 1, got 0"),
        ({"name": "sim", **E, "cores": -2}, "field 'cores': must be at least 1, got -2"),
        ({"name": "sim", **E, "cores": 1.5}, "field 'cores': expected an integer, got the number 1.5"),
        ({"name": "sim", **E, "cores": True}, "field 'cores': expected an integer or"),
        ({"name": "sim", **E, "cores": 2**40}, "field 'cores': must be at most 4294967295"),
        ({"name": "sim", **E, "cores": 2_000_000}, "field 'cores': more than 1000000 is not a real request"),
        ({"name": "sim", **E, "cores": {"min": 4, "max": 2}}, "job 'sim' (#1): field 'cores': min 4 is greater than max 2"),
        ({"name": "sim", **E, "cores": {}}, "field 'cores': give 'min', 'max' or both"),
        ({"name": "sim", **E, "cores": {"min": 0}}, "field 'cores.min': must be at least 1, got 0"),
        ({"name": "sim", **E, "cores": {"max": 0}}, "field 'cores.max': must be at least 1, got 0"),
        ({"name": "sim", **E, "cores": {"exact": 2}}, "unknown field 'exact' in 'cores'; give an integer for an exact count"),
        ({"name": "sim", **E, "cores": {"mni": 2}}, "unknown field 'mni' in 'cores'; did you mean 'min'?"),
        ({"name": "sim", **E, "nodes": {"min": "2"}}, "field 'nodes.min': expected an integer, got the string '2'"),
        ({"name": "sim", **E, "gpus": -1}, "field 'gpus': must be at least 0, got -1"),
        ({"name": "sim", **E, "gpus": 2000}, "field 'gpus': 2000 GPUs per node is more than 1024"),
        ({"name": "sim", **E, "iterations": 0}, "field 'iterations': must be at least 1, got 0"),
        ({"name": "sim", **E, "iterations": "8"}, "field 'iterations': expected an integer, {\"start\": a, \"stop\": b} or {\"values\": [...]}"),
        ({"name": "sim", **E, "iterations": {"start": 5, "stop": 5}}, "field 'iterations': stop 5 must be greater than start 5"),
        ({"name": "sim", **E, "iterations": {"start": 1}}, "field 'iterations': give 'stop' (and optionally 'start') or 'values'"),
        ({"name": "sim", **E, "iterations": {"stop": 3, "values": ["a"]}}, "'stop' and 'values' exclude each other"),
        ({"name": "sim", **E, "iterations": {"values": []}}, "field 'iterations.values': must not be empty"),
        ({"name": "sim", **E, "iterations": {"values": "abc"}}, "field 'iterations.values': expected a list"),
        ({"name": "sim", **E, "iterations": {"values": ["a"], "start": 1}}, "field 'iterations.start': cannot be combined with 'values'"),
        ({"name": "sim", **E, "iterations": {"start": -1, "stop": 3}}, "field 'iterations.start': must be at least 0"),
        ({"name": "sim", **E, "iterations": {"stop": 20_000_000}}, "field 'iterations': 20000000 iterations is more than 10000000"),
        ({"name": "sim", **E, "iterations": {"step": 2}}, "unknown field 'step' in 'iterations'"),
        ({"name": "sim", **E, "after": 3}, "field 'after': expected a list of strings or one string, got the number 3"),
        ({"name": "sim", **E, "after": [3]}, "field 'after[0]': expected a string"),
        ({"name": "sim", **E, "after": ["nope"]}, "field 'after': 'nope': no job named 'nope'"),
        ({"name": "sim", **E, "after": ["sim"]}, "field 'after': 'sim': a job cannot depend on itself"),
        ({"name": "sim", **E, "model": "mpich"}, "field 'model': unknown model 'mpich'; use one of 'default', 'intelmpi'"),
        ({"name": "sim", **E, "model": 1}, "field 'model': expected a string"),
        ({"name": "sim", **E, "modules": {"gcc": 1}}, "field 'modules': expected a list of strings or one string"),
        ({"name": "sim", **E, "venv": True}, "field 'venv': expected a string, got true"),
        ({"name": "sim", **E, "walltime": "soon"}, "job 'sim' (#1): field 'walltime': 'soon' is not a duration; use seconds as a number"),
        ({"name": "sim", **E, "walltime": 0}, "field 'walltime': must be greater than zero"),
        ({"name": "sim", **E, "walltime": -5}, "field 'walltime': must be greater than zero"),
        ({"name": "sim", **E, "walltime": [1]}, "field 'walltime': expected a duration"),
        ({"name": "sim", **E, "retries": -1}, "field 'retries': must be at least 0"),
        ({"name": "sim", **E, "retries": 5000}, "field 'retries': 5000 is more than 1000"),
        ({"name": "sim", **E, "retries": "2"}, "field 'retries': expected an integer, got the string '2'"),
        ({"name": "sim", **E, "attributes": [1]}, "field 'attributes': expected an object, got a list"),
    ],
)  # fmt: skip
def test_native_errors_name_the_job_and_the_field(job: dict[str, Any], expected: str) -> None:
    assert expected in native_error(job)


def test_errors_name_the_job_by_position_too() -> None:
    msg = native_error({"name": "a", **E}, {"name": "sim", **E, "core": 3})
    assert msg == "jobs.json: job 'sim' (#2): unknown field 'core'; did you mean 'cores'?"
    assert (
        native_error({"name": "a", **E}, "oops")
        == "jobs.json: job #2: expected a job object, got the string 'oops'"
    )


def test_batch_errors() -> None:
    assert "job 'a' (#3): field 'name': 'a' is also the name of job #1" in native_error(
        {"name": "a", **E}, {"name": "b", **E}, {"name": "a", **E}
    )
    msg = native_error({"name": "a", **E, "after": "b"}, {"name": "b", **E, "after": ["a"]})
    assert (
        msg
        == "jobs.json: job 'a' (#1): field 'after': dependency cycle a -> b -> a (each waits for the next)"
    )
    msg = native_error(
        {"name": "a", **E, "iterations": 3}, {"name": "b", **E, "iterations": 4, "after": "a:${it}"}
    )
    assert "job 'b' (#2): field 'after': 'a:${it}': job 'a' has iterations 0..2, which do not cover" in msg


def test_jobs_alike_but_for_their_names_are_each_checked_as_the_first() -> None:
    """The reader reuses an earlier job's spec for a job alike but for its name: each such job is
    still the job it says (its own name, every field), and its own faults are still found."""
    jf = native(*({"name": f"t{i}", "exec": "/bin/sim", "args": ["-n", "4"], "cores": 2, "after": ["prep"]}
                  for i in range(3)), {"name": "prep", **E}, {"name": "t3", "exec": "/bin/sim", "cores": 2})
    assert [j.name for j in jf.jobs] == ["t0", "t1", "t2", "prep", "t3"]
    assert all(list(j.args) == ["-n", "4"] and j.cores.min == 2 and list(j.after) == ["prep"] for j in jf.jobs[:3])
    assert not jf.jobs[4].args and not jf.jobs[4].after
    # 1, 1.0 and true are not alike: the boolean is refused though an integer came first.
    assert "job 'b' (#2): field 'cores'" in native_error({"name": "a", **E, "cores": 1}, {"name": "b", **E, "cores": True})
    assert len(native({"name": "a", **E, "cores": 1}, {"name": "b", **E, "cores": 1.0}).jobs) == 2
    # A bad name, a name given twice, a key given twice: in the alike job, named as such.
    assert "job '.x' (#2): field 'name'" in native_error({"name": "a", **E}, {"name": ".x", **E})
    assert "job 'a' (#2): field 'name': 'a' is also the name of job #1" in native_error({"name": "a", **E}, {"name": "a", **E})
    twice = '{"jobs": [{"name": "a", "exec": "/bin/true"}, {"name": "b", "exec": "/bin/true", "exec": "/bin/true"}]}'
    assert "job 'b' (#2): key 'exec' is given twice" in error(twice)
    assert "job #2: field 'name': expected a string" in native_error({"name": "a", **E}, {"name": 7, **E})


def test_external_dependencies_can_be_allowed() -> None:
    with pytest.raises(JobFileError, match="no job named 'running'"):
        native({"name": "a", **E, "after": "running"})
    (spec,) = native({"name": "a", **E, "after": "running"}, allow_external=True).jobs
    assert list(spec.after) == ["running"]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ('{"jobs": [\n{"name": "a" "exec": 1}]}', "jobs.json: not valid JSON at line 2 column 14: Expecting ',' delimiter"),
        ("", "jobs.json: not valid JSON at line 1 column 1: Expecting value"),
        ('{"jobs": [{"name": "a", "walltime": NaN}]}', "jobs.json: not valid JSON: NaN is not a number JSON allows"),
        ('{"jobs": [{"name": "a", "gpus": Infinity}]}', "Infinity is not a number JSON allows"),
        ("[" * 100_000, "jobs.json: not valid JSON"),
        ('{"jobs": [{"name": "a", "gpus": ' + "9" * 5000 + "}]}", "jobs.json: not valid JSON: "),
        ('"jobs"', "jobs.json: expected a JSON object {\"jobs\": [...]} (PJ's format) or an array of requests (QCG-PilotJob's), got the string 'jobs'"),
        ("42", "got the number 42"),
        ("null", "got null"),
        ('{"job": []}', "jobs.json: unknown top-level field 'job'; did you mean 'jobs'?"),
        ('{"jobs": [], "other": 1}', "unknown top-level field 'other'; a PJ job file is {\"jobs\": [...]}"),
        ('{"request": "submit", "jobs": []}', "this looks like one QCG-PilotJob request; a QCG file is an array of requests"),
        ("{}", "jobs.json: missing 'jobs': a PJ job file is {\"jobs\": [...]}"),
        ('{"jobs": {}}', "jobs.json: 'jobs' must be a list of job objects, got an object"),
        ('{"jobs": []}', "jobs.json: 'jobs' is empty: nothing to run"),
        ('{"jobs": [{"name": "a", "exec": "x", "exec": "y"}]}', "jobs.json: job 'a' (#1): key 'exec' is given twice"),
        ('{"jobs": [{"name": "a", "exec": "x", "env": {"A": "1", "A": "2"}}]}', "job 'a' (#1): key 'A' is given twice in 'env'"),
        ('{"jobs": [{"name": "a", "exec": "x"}], "jobs": []}', "key 'jobs' is given twice"),
        ('{"jobs": [{"name": "a\\ud800", "exec": "x"}]}', "field 'name': 'a\\ud800' is not valid Unicode"),
        ('{"jobs": [{"name": "a", "exec": "x", "env": {"\\udc00": "1"}}]}', "is not valid Unicode"),
    ],
)  # fmt: skip
def test_file_level_errors(doc: str, expected: str) -> None:
    assert expected in error(doc)


def test_substitution_variables_are_kept_verbatim() -> None:
    fields = {"name": "j", "exec": "${root_wd}/bin", "args": ["${it}", "${itval}", "${ncores}", "${nnodes}",
              "${nlist}", "${jname}", "$HOME", "$$"], "iterations": {"values": ["${x}"]}, "stdout": "o-${it}"}  # fmt: skip
    (spec,) = native(fields).jobs
    assert spec.exec == "${root_wd}/bin"
    assert list(spec.args) == [
        "${it}",
        "${itval}",
        "${ncores}",
        "${nnodes}",
        "${nlist}",
        "${jname}",
        "$HOME",
        "$$",
    ]
    assert spec.stdout == "o-${it}" and list(spec.iterations.values) == ["${x}"]


# ----------------------------------------------------------------------------- QCG-PilotJob format


def test_qcg_iterations_example() -> None:
    jf = load_jobfile(QCG_DATA / "iterations.json")
    assert jf.kind == "qcg" and jf.finish_after_done and jf.warnings == []
    prepare, gen, sim, params, collect = jf.jobs
    assert (prepare.exec, list(prepare.args), prepare.HasField("cores")) == (
        "/bin/mkdir",
        ["-p", "out"],
        False,
    )
    assert gen.script == "echo generating ${it} > out/in_${it}.txt"
    assert (gen.iterations.start, gen.iterations.stop, gen.walltime_s) == (0, 10, 300)
    assert (gen.stdout, gen.stderr, list(gen.after)) == (
        "out/gen_${it}.stdout",
        "out/gen_${it}.stderr",
        ["prepare"],
    )
    assert (sim.cores.min, sim.cores.max, sim.walltime_s) == (1, 4, 5400)
    assert (list(sim.after), sim.wd) == (["gen:${it}"], "${root_wd}")
    assert dict(sim.env) == {"OMP_NUM_THREADS": "${ncores}", "CASE": "${it}"}
    assert list(params.iterations.values) == ["0.1", "0.2", "0.5"]
    assert (params.iterations.start, params.iterations.stop) == (0, 3)
    assert list(params.args) == ["param", "${itval}", "index", "${it}"]
    assert collect.script.endswith("echo ${jname} done")  # left for the master
    assert (list(collect.after), dict(collect.attributes)) == (["sim", "params:2"], {"category": "post"})


def test_qcg_resources_example() -> None:
    jf = load_jobfile(QCG_DATA / "resources.json")
    assert jf.kind == "qcg" and jf.finish_after_done
    mpi, train, flex, whole, serialized = jf.jobs
    assert mpi.name == "mpi_job_1"  # ${rcnt}: the submit request's number
    assert re.fullmatch(r"solver\.[0-9a-f-]{36}\.out", mpi.stdout)  # ${uniq}
    assert list(mpi.args) == ["--steps", "100", "--tol", "1e-06"]
    assert (mpi.model, list(mpi.modules), mpi.venv) == ("openmpi", ["openmpi/4.1", "hdf5"], "/home/user/venv")
    assert (mpi.nodes.min, mpi.nodes.max, mpi.cores.min, mpi.cores.max, mpi.walltime_s) == (2, 2, 8, 8, 7200)
    assert (train.gpus, train.model, train.nodes.min, train.nodes.max, train.walltime_s) == (
        1,
        "threads",
        1,
        1,
        600,
    )
    assert (flex.cores.min, flex.cores.max, flex.model, flex.iterations.stop) == (2, 0, "srun", 20)
    assert (flex.cores.scheduler.name, flex.cores.scheduler.parts) == ("maximum-iters", 0)
    assert (mpi.mpirun, list(mpi.model_args)) == ("/opt/openmpi/bin/mpirun", ["--mca", "btl", "^openib"])
    assert (whole.cores.min, whole.cores.max, whole.nodes.min, whole.nodes.max) == (1, 0, 1, 2)
    assert (serialized.script, serialized.exec, list(serialized.args)) == ("date", "", [])
    warnings = "\n".join(jf.warnings)
    for expected in ["request #2 'listJobs' ignored", "request #3 'jobStatus' ignored",
                     "request #4 'resourcesInfo' ignored", "request #5 'finish': PJ finishes once every job is done",
                     "job 'whole_nodes' (#4): 'numNodes' without 'numCores' asks QCG-PilotJob for whole nodes"]:  # fmt: skip
        assert expected in warnings
    assert "serialized_by_qcg_api" not in warnings  # an empty model_opts is no reason to warn
    assert "model_opts" not in warnings and "scheduler" not in warnings  # both are honoured now
    assert all(w.startswith(str(QCG_DATA / "resources.json") + ": ") for w in jf.warnings)


def test_qcg_defaults_and_forms() -> None:
    a, b, c, d = qcg(
        {"name": "a", **QE},
        {"name": "b", **QE, "resources": {"numCores": {"max": 6}, "nodeCrs": {"GPU": 2}}},
        {"name": "c", **QE, "iteration": {"stop": 3}, "dependencies": {"after": ["a", "b"]}},
        {"name": "d", "execution": {"exec": "x", "args": [True, 1.5], "env": {"N": 1}}, "resources": {"wt": "1h30m10s"}},
    ).jobs  # fmt: skip
    assert not a.HasField("cores") and not a.HasField("nodes")  # no resources: one core
    assert (b.cores.min, b.cores.max, b.gpus) == (1, 6, 2)
    assert (c.iterations.start, c.iterations.stop, list(c.after)) == (0, 3, ["a", "b"])
    assert (list(d.args), dict(d.env), d.walltime_s) == (["True", "1.5"], {"N": "1"}, 5410)


def test_qcg_requests() -> None:
    jf = qcg({"name": "a", **QE}, extra=[{"request": "status"}, {"request": "notify"}, {"request": "register"},
                                        {"request": "cancelJob"}, {"request": "removeJob"}, {"request": "jobInfo"}])  # fmt: skip
    assert not jf.finish_after_done
    assert len(jf.warnings) == 6 and all("ignored" in w for w in jf.warnings)
    assert qcg(
        {"name": "a", **QE}, extra=[{"request": "control", "command": "finishAfterAllTasksDone"}]
    ).finish_after_done
    jf = parse([{"request": "submit", "jobs": [{"name": "a", **QE}], "comment": "x"},
                {"request": "submit", "jobs": [{"name": "b_${rcnt}", **QE, "dependencies": {"after": ["a"]}}]}])  # fmt: skip
    assert [j.name for j in jf.jobs] == ["a", "b_2"]  # a batch across submit requests
    assert "request #1: key 'comment' ignored" in jf.warnings[0]


def test_qcg_duplicate_keys_warn_as_qcg_took_the_last_value() -> None:
    jf = parse_jobfile(
        '[{"request": "submit", "jobs": [{"name": "a", "execution": {"exec": "x", "exec": "/bin/true"}}]}]'
    )
    assert jf.jobs[0].exec == "/bin/true"
    assert any("key 'exec' is given twice in 'execution'; the last value is used" in w for w in jf.warnings)


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"execution": {"exec": "x"}}, "request #1, job #1: missing field 'name'"),
        ({"name": "a"}, "request #1, job 'a' (#1): missing field 'execution'"),
        ({"name": "a", "execution": "x"}, "field 'execution': expected an object, got the string 'x'"),
        ({"name": "a", "execution": {}}, "field 'execution.exec': give 'exec' (a program) or 'script'"),
        ({"name": "a", "execution": {"exec": "x", "script": "y"}}, "field 'execution.script': cannot be combined with exec, args or env"),
        ({"name": "a", "execution": {"script": "y", "args": ["1"]}}, "field 'execution.script': cannot be combined"),
        ({"name": "a", "execution": {"script": "y", "env": {"A": "1"}}}, "field 'execution.script': cannot be combined"),
        ({"name": "a", "execution": {"exec": "x", "arg": []}}, "unknown field 'arg' in 'execution'; did you mean 'args'?"),
        ({"name": "a", "execution": {"exec": "x", "args": "-v"}}, "field 'execution.args': expected a list"),
        ({"name": "a", "execution": {"exec": "x", "env": []}}, "field 'execution.env': expected an object"),
        ({"name": "a", "execution": {"exec": "x", "model": "mpich"}}, "field 'execution.model': unknown model 'mpich'"),
        ({"name": "a", "execution": {"exec": "x", "model_opts": []}}, "field 'execution.model_opts': expected an object"),
        ({"name": "a", "exec": "x"}, "unknown field 'exec'; put it in 'execution'"),
        ({"name": "a", **QE, "resource": {}}, "unknown field 'resource'; did you mean 'resources'?"),
        ({"name": "a", **QE, "resources": {"cores": 2}}, "unknown field 'cores' in 'resources'; did you mean 'numCores'?"),
        ({"name": "a", **QE, "resources": {"numCores": "2"}}, "field 'resources.numCores': expected an integer or {\"exact\": n}, {\"min\": a, \"max\": b}"),
        ({"name": "a", **QE, "resources": {"numCores": {}}}, "field 'resources.numCores': give exact, 'min', 'max' or both"),
        ({"name": "a", **QE, "resources": {"numCores": {"exact": 2, "max": 3}}}, "'exact' cannot be combined with 'min', 'max' or 'scheduler'"),
        ({"name": "a", **QE, "resources": {"numCores": {"exact": 2, "scheduler": {"name": "split-into"}}}}, "'exact' cannot be combined"),
        ({"name": "a", **QE, "resources": {"numCores": {"min": 4, "max": 2}}}, "job 'a' (#1): field 'resources.numCores': min 4 is greater than max 2"),
        ({"name": "a", **QE, "resources": {"numCores": {"min": -1}}}, "field 'resources.numCores.min': must be at least 1"),
        ({"name": "a", **QE, "resources": {"numCores": {"exact": 0}}}, "field 'resources.numCores.exact': must be at least 1"),
        ({"name": "a", **QE, "resources": {"numCores": {"exact": 2, "extra": 1}}}, "unknown field 'extra' in 'resources.numCores'"),
        ({"name": "a", **QE, "resources": {"numNodes": {"min": 3, "max": 1}}}, "field 'resources.numNodes': min 3 is greater than max 1"),
        ({"name": "a", **QE, "resources": {"numCores": 5_000_000}}, "field 'resources.numCores': more than 1000000"),
        ({"name": "a", **QE, "resources": {"wt": "10 minits"}}, "field 'resources.wt': '10 minits' is not a duration"),
        ({"name": "a", **QE, "resources": {"wt": "0s"}}, "field 'resources.wt': must be greater than zero"),
        ({"name": "a", **QE, "resources": {"nodeCrs": {"tpu": 1}}}, "field 'resources.nodeCrs.tpu': unknown consumable resource; QCG-PilotJob knows 'gpu' and 'mem'"),
        ({"name": "a", **QE, "resources": {"nodeCrs": {"gpu": 0}}}, "field 'resources.nodeCrs.gpu': must be at least 1"),
        ({"name": "a", **QE, "resources": {"nodeCrs": {"gpu": "1"}}}, "field 'resources.nodeCrs.gpu': expected an integer"),
        ({"name": "a", **QE, "resources": {"nodeCrs": {"gpu": 1, "GPU": 2}}}, "field 'resources.nodeCrs.GPU': given twice"),
        ({"name": "a", **QE, "resources": {"nodeCrs": {"gpu": 2000}}}, "field 'resources.nodeCrs.gpu': 2000 GPUs per node is more than 1024"),
        ({"name": "a", **QE, "iteration": 5}, "field 'iteration': expected {\"start\": a, \"stop\": b} or {\"values\": [...]}"),
        ({"name": "a", **QE, "iteration": {"start": 3}}, "field 'iteration': give 'stop'"),
        ({"name": "a", **QE, "iteration": {"start": 3, "stop": 1}}, "field 'iteration': stop 1 must be greater than start 3"),
        ({"name": "a", **QE, "iteration": {"stop": 2, "values": ["x"]}}, "field 'iteration': 'stop' and 'values' exclude each other"),
        ({"name": "a", **QE, "dependencies": ["b"]}, "field 'dependencies': expected an object"),
        ({"name": "a", **QE, "dependencies": {"afer": ["b"]}}, "unknown field 'afer' in 'dependencies'; did you mean 'after'?"),
        ({"name": "a", **QE, "dependencies": {"after": [1]}}, "field 'dependencies.after[0]': expected a string"),
        ({"name": "a", **QE, "dependencies": {"after": ["b"]}}, "job 'a' (#1): field 'dependencies.after': 'b': no job named 'b'"),
        ({"name": "a", **QE, "dependencies": {"after": ["b_${it}"]}}, "field 'dependencies.after': 'b_${it}': 'b_${it}' contains '$'"),
        ({"name": "a", **QE, "dependencies": {"after": ["a:${it}"]}}, "a job cannot depend on itself"),
        ({"name": "a", **QE, "attributes": "x"}, "field 'attributes': expected an object"),
        ({"name": "a:b", **QE}, "field 'name': 'a:b' must not contain ':'"),
        ({"name": "a ${uniq}", **QE}, "field 'name': "),
        ({"name": "a", "execution": {"exec": "\u0000x"}}, "field 'execution.exec': "),
    ],
)  # fmt: skip
def test_qcg_errors_name_the_job_and_the_field(job: dict[str, Any], expected: str) -> None:
    msg = qcg_error(job)
    assert expected in msg
    assert msg.startswith("jobs.json: request #1")


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([], "jobs.json: no submit request: nothing to run"),
        ([{"request": "control", "command": "finishAfterAllTasksDone"}], "no submit request"),
        (["submit"], "jobs.json: request #1: expected an object like {\"request\": \"submit\", \"jobs\": [...]}, got the string 'submit'"),
        ([{"jobs": []}], "jobs.json: request #1: missing 'request'"),
        ([{"name": "a", "execution": {}}], "missing 'request'; this looks like a job: QCG-PilotJob jobs go in {\"request\": \"submit\""),
        ([{"request": "sumbit"}], "jobs.json: request #1: unknown request 'sumbit'; did you mean 'submit'?"),
        ([{"request": 3}], "unknown request 3; known: submit, control, finish"),
        ([{"request": "control", "command": "stop"}], "jobs.json: request #1: unknown control command 'stop'; QCG-PilotJob knows 'finishAfterAllTasksDone'"),
        ([{"request": "control"}], "unknown control command None"),
        ([{"request": "submit"}], "jobs.json: request #1: a submit request needs a non-empty 'jobs' list"),
        ([{"request": "submit", "jobs": []}], "needs a non-empty 'jobs' list"),
        ([{"request": "submit", "jobs": [{"name": "a", **QE}, 7]}], "request #1, job #2: expected a job object, got the number 7"),
        ([{"request": "submit", "jobs": [{"name": "a", **QE}]}, {"request": "submit", "jobs": [{"name": "a", **QE}]}],
         "request #2, job 'a' (#1): field 'name': 'a' is also the name of job #1"),
    ],
)  # fmt: skip
def test_qcg_file_errors(doc: Any, expected: str) -> None:
    assert expected in error(doc)


def test_qcg_per_iteration_dependencies_and_cycles() -> None:
    msg = qcg_error({"name": "a", **QE, "iteration": {"stop": 3}, "dependencies": {"after": ["b:${it}"]}},
                    {"name": "b", **QE, "iteration": {"stop": 3}, "dependencies": {"after": ["a"]}})  # fmt: skip
    assert "request #1, job 'a' (#1): field 'dependencies.after': dependency cycle a -> b -> a" in msg
    msg = qcg_error({"name": "a", **QE, "iteration": {"stop": 3}},
                    {"name": "b", **QE, "iteration": {"start": 1, "stop": 4}, "dependencies": {"after": ["a:${it}"]}})  # fmt: skip
    assert "job 'b' (#2): field 'dependencies.after': 'a:${it}': job 'a' has iterations 0..2" in msg


def test_qcg_submit_variables_are_substituted_per_field_only() -> None:
    jf = parse([{"request": "submit", "jobs": [
        {"name": "j${rcnt}", "execution": {"exec": "/bin/echo", "args": ["${sname}", "$rcnt", "${it}", "$$rcnt",
                                                                         "${unknown}", "$HOME", "${date}"]}}]}])  # fmt: skip
    (spec,) = jf.jobs
    assert spec.name == "j1"
    args = list(spec.args)
    assert args[:6] == ["local", "1", "${it}", "$$rcnt", "${unknown}", "$HOME"]
    assert re.match(r"\d{4}-\d\d-\d\d ", args[6])


# ----------------------------------------------------------------------------- files and examples


def test_load_jobfile_errors(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match=r"^.*missing\.json: cannot read it: No such file or directory$"):
        load_jobfile(tmp_path / "missing.json")
    with pytest.raises(JobFileError, match=r"dir: cannot read it"):
        (tmp_path / "dir").mkdir()
        load_jobfile(tmp_path / "dir")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"jobs": [{"name": "\xff"}]}')
    with pytest.raises(JobFileError, match=r"bad\.json: not UTF-8 text \(byte 20\)"):
        load_jobfile(bad)
    bom = tmp_path / "bom.json"
    bom.write_text('\ufeff{"jobs": [{"name": "a", "exec": "x"}]}', encoding="utf-8")
    assert load_jobfile(str(bom)).jobs[0].name == "a"
    broken = tmp_path / "broken.json"
    broken.write_text('{"jobs": [\n  {"name": "a",\n   "exec": "x",}\n]}')
    with pytest.raises(JobFileError) as info:
        load_jobfile(broken)
    assert (
        str(info.value)
        == f"{broken}: not valid JSON at line 3 column 16: Expecting property name enclosed in double quotes"
    )


def test_example_campaign() -> None:
    """examples/campaign.json: prep -> per-iteration sim -> post, with standard tools only."""
    jf = load_jobfile(ROOT / "examples" / "campaign.json")
    assert jf.kind == "native" and jf.warnings == []
    prep, sim, post = jf.jobs
    assert prep.iterations.stop == sim.iterations.stop
    assert list(sim.after) == ["prep:${it}"]
    assert list(post.after) == ["sim"]
    programs = {sim.exec} | {j.script.split()[0] for j in (prep, post)}
    assert programs <= {"/bin/sh", "mkdir", "cat"}


def test_every_qcg_data_file_loads() -> None:
    files = sorted(QCG_DATA.glob("*.json"))
    assert files
    for path in files:
        assert load_jobfile(path).kind == "qcg"


# ----------------------------------------------------------------------------- pj-submit -- CMD


def test_command_job_defaults() -> None:
    spec = command_job(
        ["./bin/sim.x", "--case", "3"], None, None, None, 0, [], None, None, None, None, [], None, 0
    )
    assert re.fullmatch(r"sim\.x-[0-9a-f]{6}", spec.name)
    assert (spec.exec, list(spec.args)) == ("./bin/sim.x", ["--case", "3"])
    assert not spec.HasField("cores") and not spec.HasField("nodes") and not spec.HasField("iterations")
    assert spec.name != command_job(["./bin/sim.x"]).name  # unique suffix


def test_command_job_options() -> None:
    spec = command_job(
        ["python3", "x.py"], name="train", cores="2:8", nodes="2:", gpus=1, after=["prep,gen", " post "],
        iterations="3:10", wd="w", stdout="o-${it}", stderr="e", env=["A=1", "B=x=y", "C="], walltime="1h30m",
        retries=2,
    )  # fmt: skip
    assert spec.name == "train"
    assert (spec.cores.min, spec.cores.max, spec.nodes.min, spec.nodes.max, spec.gpus) == (2, 8, 2, 0, 1)
    assert list(spec.after) == ["prep", "gen", "post"]  # may name jobs already submitted
    assert (spec.iterations.start, spec.iterations.stop) == (3, 10)
    assert (spec.wd, spec.stdout, spec.stderr) == ("w", "o-${it}", "e")
    assert dict(spec.env) == {"A": "1", "B": "x=y", "C": ""}
    assert (spec.walltime_s, spec.retries) == (5400, 2)
    assert (command_job(["x"], cores="4").cores.max, command_job(["x"], cores=":4").cores.min) == (4, 1)
    assert command_job(["x"], iterations="5").iterations.stop == 5
    assert command_job([".hidden/...weird name:1"]).name.startswith("weird_name_1-")


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"argv": []}, "command: no command given (pj-submit [options] -- CMD ARGS...)"),
        ({"argv": [""]}, "command: no command given"),
        ({"cores": "x"}, "--cores: expected N or MIN:MAX (or MIN: for at least MIN), got 'x'"),
        ({"cores": ""}, "--cores: expected N or MIN:MAX"),
        ({"cores": ":"}, "--cores: expected N or MIN:MAX"),
        ({"cores": "1:2:3"}, "--cores: expected N or MIN:MAX"),
        ({"cores": "0"}, "--cores: must be at least 1, got '0'"),
        ({"cores": "4:2"}, "--cores: min 4 is greater than max 2"),
        ({"cores": "99999999999"}, "--cores: expected N or MIN:MAX"),
        ({"cores": "5000000"}, "--cores: more than 1000000 is not a real request"),
        ({"nodes": "-1"}, "--nodes: expected N or MIN:MAX"),
        ({"gpus": -1}, "--gpus: must not be negative, got -1"),
        ({"gpus": 5000}, "--gpus: 5000 GPUs per node is more than 1024"),
        ({"iterations": "x"}, "--iterations: expected N or START:STOP, got 'x'"),
        ({"iterations": "0"}, "--iterations: '0' is empty (STOP must be greater than START)"),
        ({"iterations": "5:5"}, "--iterations: '5:5' is empty"),
        ({"env": ["NOVALUE"]}, "--env: expected KEY=VALUE, got 'NOVALUE'"),
        ({"env": ["=1"]}, "--env: expected KEY=VALUE, got '=1'"),
        ({"walltime": "soon"}, "--walltime: 'soon' is not a duration"),
        ({"retries": -2}, "--retries: must not be negative, got -2"),
        ({"retries": 2000}, "--retries: 2000 is more than 1000"),
        ({"name": "a:b"}, "--name: 'a:b' must not contain ':'"),
        ({"name": ""}, "--name: a name is required"),
        ({"after": ["x:y"]}, "--after: 'x:y' is not 'job', 'job:${it}' or 'job:N'"),
        ({"after": ["a:${it}"]}, "--after: 'a:${it}': '${it}' is only allowed in a job with iterations"),
        ({"argv": ["/bin/\0x"]}, "command: '/bin/\\x00x' contains a NUL character"),
        ({"argv": ["x", "\udcff"]}, "command: '\\udcff' is not valid UTF-8"),
        ({"stdout": "a\0"}, "--stdout: 'a\\x00' contains a NUL character"),
    ],
)  # fmt: skip
def test_command_job_errors_name_the_option(kw: dict[str, Any], expected: str) -> None:
    kw.setdefault("argv", ["/bin/true"])
    with pytest.raises(JobFileError) as info:
        command_job(**kw)
    assert str(info.value) == expected or str(info.value).startswith(expected), str(info.value)


# ----------------------------------------------------------------------------- anything at all


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
NATIVE_KEYS = ["name", "exec", "script", "args", "env", "wd", "stdout", "cores", "nodes", "gpus", "iterations",
               "after", "model", "modules", "walltime", "retries", "attributes", "min", "max", "start", "stop",
               "values", "exact"]  # fmt: skip
QCG_KEYS = ["request", "jobs", "command", "name", "execution", "resources", "numCores", "numNodes", "wt",
            "nodeCrs", "gpu", "iteration", "dependencies", "after", "exec", "script", "args", "env", "model",
            "model_opts", "scheduler", "exact", "min", "max", "start", "stop", "values"]  # fmt: skip
scalars = (st.none() | st.booleans() | st.integers(-3, 3) | st.integers() | st.floats() | st.sampled_from(
    ["a", "b", "a:${it}", "b:1", "1h", "10", "/bin/true", "submit", "control", "finishAfterAllTasksDone",
     "srun", "", "x:y", "${uniq}", "gpu", "\ud800"]))  # fmt: skip


def shaped(keys: list[str]) -> st.SearchStrategy[Any]:
    """JSON built from the format's own keys, so that parsing gets deep before it fails."""
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(keys), inner, max_size=5),
        max_leaves=30,
    )


def only_jobfile_errors(text: str) -> None:
    try:
        jf = parse_jobfile(text, "f.json")
    except JobFileError as e:
        assert "\n" not in str(e) and str(e).startswith("f.json: ")
    else:
        assert jf.jobs and all(isinstance(j, pj_pb2.JobSpec) for j in jf.jobs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json_raises_only_jobfile_errors(value: Any) -> None:
    only_jobfile_errors(json.dumps(value))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.builds(lambda jobs: {"jobs": jobs}, st.lists(shaped(NATIVE_KEYS), max_size=3)),
    st.lists(st.builds(lambda jobs, r: {"request": r, "jobs": jobs}, st.lists(shaped(QCG_KEYS), max_size=3),
                       st.sampled_from(["submit", "control", "status"])), max_size=3),
    shaped(NATIVE_KEYS),
    shaped(QCG_KEYS),
))  # fmt: skip
def test_job_shaped_json_raises_only_jobfile_errors(value: Any) -> None:
    only_jobfile_errors(json.dumps(value))


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        out += _paths(value, (*prefix, key))
    return out


VALID_DOCS = [
    json.loads(p.read_text()) for p in [ROOT / "examples" / "campaign.json", *sorted(QCG_DATA.glob("*.json"))]
]
MUTATION_VALUES = (
    scalars | st.lists(scalars, max_size=2) | st.dictionaries(st.sampled_from(QCG_KEYS), scalars, max_size=2)
)


@st.composite
def mutated_files(draw: st.DrawFn) -> Any:
    """A valid job file with one to three fields replaced, removed or added: parsing goes deep."""
    doc = json.loads(json.dumps(draw(st.sampled_from(VALID_DOCS))))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["set", "del", "add"]))
        if op == "set":
            parent[path[-1]] = draw(MUTATION_VALUES)
        elif op == "del":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(QCG_KEYS + NATIVE_KEYS))] = draw(MUTATION_VALUES)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_files())
def test_mutated_valid_files_raise_only_jobfile_errors(value: Any) -> None:
    only_jobfile_errors(json.dumps(value))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_random_text_raises_only_jobfile_errors(text: str) -> None:
    only_jobfile_errors(text)
