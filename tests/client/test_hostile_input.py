"""Hostile input: every limit is refused with a message naming the field, never with a traceback.

Fixed cases for each limit in pj.common.speccheck, then property-based tests (hypothesis): random
and mutated job files through client/jobfile.py, random JobSpec messages through check_specs. The
only outcomes allowed are success (specs the checks and the master's converter accept) or
JobFileError / SpecError.
"""

from __future__ import annotations

import json
import math
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pj.client.jobfile import JobFileError, parse_jobfile
from pj.common.speccheck import (
    AFTER_MAX,
    COUNT_MAX,
    ENV_ENTRIES_MAX,
    GPUS_MAX,
    ITERATION_STOP_MAX,
    ITERATIONS_MAX,
    JOBS_MAX,
    NAME_MAX,
    RETRIES_MAX,
    WALLTIME_MAX,
    SpecError,
    check_specs,
)
from pj.master.convert import spec_from_pb
from pj.v1 import pj_pb2

# ----------------------------------------------------------------------------- fixed cases


def spec(name: str = "sim", **fields: Any) -> pj_pb2.JobSpec:
    fields.setdefault("exec", "/bin/true")
    return pj_pb2.JobSpec(name=name, **fields)


def refused(specs: list[pj_pb2.JobSpec]) -> SpecError:
    with pytest.raises(SpecError) as info:
        check_specs(specs)
    return info.value


@pytest.mark.parametrize(
    "name",
    ["a/b", "..", "a..b", ".hidden", "a\0b", "a\nb", "a\x7fb", "a\tb", "x" * (NAME_MAX + 1), "", "é", "a b"],
)
def test_names_that_cannot_be_file_names_are_refused(name: str) -> None:
    err = refused([spec(name)])
    assert err.field == "name"
    assert "\0" not in str(err) and "\n" not in str(err)


def test_jobs_per_submission_and_the_empty_submission() -> None:
    assert "no jobs" in str(refused([]))

    class Huge(list):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return JOBS_MAX + 1

    err = refused(Huge([spec()]))
    assert err.field == "jobs" and str(JOBS_MAX) in err.reason and "split" in err.reason
    assert str(err).startswith("the submission: field 'jobs'")


def _iterations(start: int, stop: int) -> pj_pb2.JobSpec:
    s = spec()
    s.iterations.start, s.iterations.stop = start, stop
    return s


@pytest.mark.parametrize(
    ("make", "field", "words"),
    [
        (lambda: _iterations(0, ITERATIONS_MAX + 1), "iterations", str(ITERATIONS_MAX)),
        (lambda: _iterations(ITERATION_STOP_MAX, ITERATION_STOP_MAX + 1), "iterations", str(ITERATION_STOP_MAX)),
        (lambda: _iterations(2**63 - 2, 2**63 - 1), "iterations", "more than"),
        (lambda: _iterations(-(2**63), 0), "iterations", "negative"),
        (lambda: _iterations(5, 5), "iterations", "greater than start"),
        (lambda: spec(cores=pj_pb2.Range(min=4, max=2)), "cores", "greater than max"),
        (lambda: spec(cores=pj_pb2.Range(min=0, max=0)), "cores", "at least 1"),
        (lambda: spec(nodes=pj_pb2.Range(min=COUNT_MAX + 1)), "nodes", str(COUNT_MAX)),
        (lambda: spec(cores=pj_pb2.Range(min=1, max=2**32 - 1)), "cores", str(COUNT_MAX)),
        (lambda: spec(gpus=GPUS_MAX + 1), "gpus", str(GPUS_MAX)),
        (lambda: spec(retries=RETRIES_MAX + 1), "retries", str(RETRIES_MAX)),
        (lambda: spec(walltime_s=-1), "walltime_s", ">= 0"),
        (lambda: spec(walltime_s=math.nan), "walltime_s", ">= 0"),
        (lambda: spec(walltime_s=1e308), "walltime_s", "100 years"),
        (lambda: spec(walltime_s=WALLTIME_MAX * 2), "walltime_s", "at most"),
        (lambda: spec(env={str(k): "" for k in range(ENV_ENTRIES_MAX + 1)}), "env", str(ENV_ENTRIES_MAX)),
        (lambda: spec(env={"A": "x" * (2 << 20)}), "env", "longer than"),
        (lambda: spec(wd="d" * 5000), "wd", "longer than"),
        (lambda: spec(exec="e" * 5000), "exec", "longer than"),
        (lambda: spec(stdout="o\0"), "stdout", "NUL"),
        (lambda: spec(args=["a" * (2 << 20)]), "args", "longer than"),
        (lambda: spec(after=["x"] * (AFTER_MAX + 1)), "after", str(AFTER_MAX)),
        (lambda: spec(after=["y" * 100_000]), "after", "longer than"),
        (lambda: spec(after=["a/b"]), "after", "'/'"),
    ],
)
def test_each_limit_is_refused_naming_the_field(make: Any, field: str, words: str) -> None:
    err = refused([make()])
    assert err.field == field, err
    assert words in err.reason, err.reason
    assert len(str(err)) < 400  # one readable line, however large the input


NATIVE_CASES = [
    ('{"jobs": [{"name": "a", "exec": "x", "cores": 1e309}]}', "cores"),
    ('{"jobs": [{"name": "a", "exec": "x", "cores": -1}]}', "cores"),
    ('{"jobs": [{"name": "a", "exec": "x", "cores": 18446744073709551616}]}', "cores"),
    ('{"jobs": [{"name": "a", "exec": "x", "gpus": "2"}]}', "gpus"),
    ('{"jobs": [{"name": "a", "exec": "x", "env": ["A=1"]}]}', "env"),
    ('{"jobs": [{"name": "a", "exec": "x", "iterations": 1e309}]}', "iterations"),
    ('{"jobs": [{"name": "a", "exec": "x", "iterations": {"stop": 99999999999999999999}}]}', "iterations.stop"),
    ('{"jobs": [{"name": "a", "exec": "x", "iterations": 20000000}]}', "iterations"),
    ('{"jobs": [{"name": "a", "exec": "x", "walltime": 1e309}]}', "walltime"),
    ('{"jobs": [{"name": "a", "exec": "x", "walltime": "x"}]}', "walltime"),
    ('{"jobs": [{"name": "a", "exec": "x", "retries": 1e400}]}', "retries"),
    ('{"jobs": [{"name": "a", "exec": "x", "after": {"b": 1}}]}', "after"),
    ('{"jobs": [{"name": "a/b", "exec": "x"}]}', "name"),
    ('{"jobs": [{"name": 7, "exec": "x"}]}', "name"),
    ('{"jobs": [{"name": "a", "exec": ["x"]}]}', "exec"),
    ('{"jobs": [{"name": "a", "exec": "x", "args": "y"}]}', "args"),
    ('{"jobs": [{"name": "a", "exec": "x", "args": [[1]]}]}', "args[0]"),
]

QCG_CASES = [
    ('{"name": "a", "execution": {"exec": "x"}, "resources": {"numCores": 1e309}}', "resources.numCores"),
    ('{"name": "a", "execution": {"exec": "x"}, "resources": {"numCores": {"min": -1}}}', "resources.numCores.min"),
    ('{"name": "a", "execution": {"exec": "x"}, "resources": {"nodeCrs": {"gpu": 2e64}}}', "resources.nodeCrs.gpu"),
    ('{"name": "a", "execution": {"exec": "x"}, "resources": []}', "resources"),
    ('{"name": "a", "execution": "x"}', "execution"),
    ('{"name": "a", "execution": {"exec": "x"}, "iteration": {"start": 0, "stop": "9"}}', "iteration.stop"),
    ('{"name": "a", "execution": {"exec": "x"}, "dependencies": {"after": 3}}', "dependencies.after"),
    ('{"name": "a", "execution": {"exec": "x"}, "resources": {"wt": -1}}', "resources.wt"),
]


@pytest.mark.parametrize(("text", "field"), NATIVE_CASES)
def test_native_wrong_types_and_huge_numbers(text: str, field: str) -> None:
    with pytest.raises(JobFileError) as info:
        parse_jobfile(text, "jobs.json")
    msg = str(info.value)
    assert msg.startswith("jobs.json: job") and f"field {field!r}" in msg, msg


@pytest.mark.parametrize(("job", "field"), QCG_CASES)
def test_qcg_wrong_types_and_huge_numbers(job: str, field: str) -> None:
    with pytest.raises(JobFileError) as info:
        parse_jobfile(f'[{{"request": "submit", "jobs": [{job}]}}]', "q.json")
    msg = str(info.value)
    assert msg.startswith("q.json: request #1, job") and f"field {field!r}" in msg, msg


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_deep_nesting_is_an_error_not_a_crash(depth: int) -> None:
    for text in (
        "[" * depth + "]" * depth,
        '{"jobs": [{"name": "a", "exec": "x", "attributes": {"k": ' + "[" * depth + "]" * depth + "}}]}",
        '[{"request": "submit", "jobs": [{"name": "a", "execution": {"exec": "x"}, "attributes": {"k": '
        + "[" * depth
        + "]" * depth
        + "}}]}]",
    ):
        try:
            parse_jobfile(text, "deep.json")
        except JobFileError as exc:
            assert "deep.json" in str(exc)


def test_a_huge_digit_string_is_an_error() -> None:
    with pytest.raises(JobFileError, match="not valid JSON"):
        parse_jobfile('{"jobs": [{"name": "a", "exec": "x", "cores": ' + "9" * 10_000 + "}]}")


# ----------------------------------------------------------------------------- property-based

FIELDS = [
    "name", "exec", "script", "args", "env", "wd", "stdin", "stdout", "stderr", "cores", "nodes",
    "gpus", "iterations", "after", "model", "modules", "venv", "walltime", "retries", "attributes",
    "min", "max", "start", "stop", "values", "exact", "request", "jobs", "execution", "resources",
    "numCores", "numNodes", "wt", "nodeCrs", "gpu", "dependencies", "iteration", "command",
]  # fmt: skip
ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(string.ascii_letters + string.digits + "_.-+/:${}\0\n\t ")),
        st.characters(codec="utf-8"),
    ),
    max_size=20,
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64, 10**18, 10**19]),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ODD_TEXT, st.sampled_from(FIELDS))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), ODD_TEXT), inner, max_size=6),
    ),
    max_leaves=40,
)


def _accepted(specs: list[pj_pb2.JobSpec]) -> None:
    """What the parser hands on must pass the checks and the master's converter, and survive the wire."""
    check_specs(specs)
    wire = pj_pb2.SubmitRequest(jobs=specs).SerializeToString()
    for s in pj_pb2.SubmitRequest.FromString(wire).jobs:
        spec_from_pb(s, "/tmp")


def _parse(text: str) -> None:
    try:
        jf = parse_jobfile(text, "f.json")
    except JobFileError as exc:
        assert str(exc).startswith("f.json") and "\n" not in str(exc)
        return
    _accepted(jf.jobs)


VALID_NATIVE = {
    "name": "sim",
    "exec": "/bin/echo",
    "args": ["${it}"],
    "env": {"A": "1"},
    "cores": {"min": 1, "max": 4},
    "nodes": 1,
    "gpus": 0,
    "iterations": {"start": 0, "stop": 3},
    "walltime": "1m",
    "retries": 1,
    "attributes": {"k": [1, 2]},
}
VALID_QCG = {
    "name": "q",
    "execution": {"exec": "/bin/echo", "args": ["a"], "env": {"B": "2"}, "model": "default"},
    "resources": {"numCores": {"exact": 2}, "numNodes": 1, "wt": "10m", "nodeCrs": {"gpu": 1}},
    "iteration": {"values": ["x", "y"]},
    "dependencies": {"after": ["sim"]},
}

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(JSON, st.sampled_from(["raw", "native", "qcg"]))
def test_random_json_never_crashes_the_parser(data: Any, wrap: str) -> None:
    if wrap == "native":
        data = {"jobs": data if isinstance(data, list) else [data]}
    elif wrap == "qcg":
        data = [{"request": "submit", "jobs": data if isinstance(data, list) else [data]}]
    _parse(json.dumps(data))


@st.composite
def mutated_jobs(draw: st.DrawFn) -> str:
    """A valid native or QCG file with some fields replaced by random values, or cut and spliced."""
    native = draw(st.booleans())
    job = json.loads(json.dumps(VALID_NATIVE if native else VALID_QCG))
    for _ in range(draw(st.integers(1, 4))):
        target = job
        if not native and draw(st.booleans()):
            target = job.get(draw(st.sampled_from(["execution", "resources"])))
            if not isinstance(target, dict):
                target = job
        key = draw(st.one_of(st.sampled_from(sorted(target) or ["name"]), st.sampled_from(FIELDS)))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(JSON)
    data: Any = {"jobs": [job]} if native else [{"request": "submit", "jobs": [job]}]
    text = json.dumps(data)
    if draw(st.integers(0, 3)) == 0:  # damage the text itself
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=5)) + text[at + draw(st.integers(0, 5)) :]
    return text


@PROPS
@given(mutated_jobs())
def test_mutated_valid_files_never_crash_the_parser(text: str) -> None:
    _parse(text)


def test_the_valid_files_used_for_mutation_are_valid() -> None:
    parse_jobfile(json.dumps({"jobs": [VALID_NATIVE]}))
    parse_jobfile(json.dumps([{"request": "submit", "jobs": [dict(VALID_QCG, dependencies={})]}]))


NAMES = st.one_of(
    st.sampled_from(["a", "b", "sim", "x" * NAME_MAX, "x" * (NAME_MAX + 1), "..", ".a", "a/b", "a:1", ""]),
    ODD_TEXT,
)
UINT32 = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**32 - 1, COUNT_MAX, COUNT_MAX + 1]))
INT64 = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), ITERATION_STOP_MAX])
)


@st.composite
def job_specs(draw: st.DrawFn) -> pj_pb2.JobSpec:
    s = pj_pb2.JobSpec(name=draw(NAMES))
    maybe = lambda: draw(st.integers(0, 3)) == 0  # noqa: E731
    if draw(st.booleans()):
        s.exec = draw(st.one_of(st.just("/bin/true"), ODD_TEXT))
    if maybe():
        s.script = draw(ODD_TEXT)
    if maybe():
        s.args.extend(draw(st.lists(ODD_TEXT, max_size=4)))
    if maybe():
        s.env.update(draw(st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=3)))
    for f in ("wd", "stdin", "stdout", "stderr", "venv"):
        if maybe():
            setattr(s, f, draw(ODD_TEXT))
    for f in ("cores", "nodes"):
        if maybe():
            getattr(s, f).min, getattr(s, f).max = draw(UINT32), draw(UINT32)
    if maybe():
        s.gpus = draw(UINT32)
    if maybe():
        if draw(st.booleans()):
            s.iterations.values.extend(draw(st.lists(ODD_TEXT, max_size=3)))
        s.iterations.start, s.iterations.stop = draw(INT64), draw(INT64)
        if draw(st.booleans()):
            s.iterations.start, s.iterations.stop = 0, len(s.iterations.values) or draw(st.integers(1, 50))
    if maybe():
        s.after.extend(draw(st.lists(st.one_of(NAMES, st.sampled_from(["a:${it}", "b:3", "a:", "b:-1"])), max_size=3)))
    if maybe():
        s.model = draw(st.one_of(st.sampled_from(["default", "threads", "srun", "openmpi", "x"]), ODD_TEXT))
    if maybe():
        s.modules.extend(draw(st.lists(ODD_TEXT, max_size=3)))
    if maybe():
        s.walltime_s = draw(st.floats(allow_nan=True, allow_infinity=True))
    if maybe():
        s.retries = draw(UINT32)
    if maybe():
        s.attributes.update(draw(st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=3)))
    return s


@PROPS
@given(st.lists(job_specs(), max_size=4), st.booleans())
def test_random_job_specs_either_pass_or_raise_spec_error(specs: list[pj_pb2.JobSpec], known: bool) -> None:
    def lookup(name: str) -> None:
        return None

    try:
        if known:
            check_specs(specs, known=lookup)
        else:
            check_specs(specs, allow_external=False)
    except SpecError as exc:
        assert exc.field and "\n" not in str(exc) and len(str(exc)) < 1000, str(exc)
        return
    for s in specs:  # whatever passes, the master can take
        spec_from_pb(s, "/tmp")


def test_the_message_limit_is_the_one_master_and_client_use() -> None:
    from pj.client import api
    from pj.common.speccheck import MESSAGE_BYTES_MAX
    from pj.master import main

    assert dict(main.GRPC_OPTIONS)["grpc.max_receive_message_length"] == MESSAGE_BYTES_MAX
    assert dict(api.CHANNEL_OPTIONS)["grpc.max_send_message_length"] == MESSAGE_BYTES_MAX
