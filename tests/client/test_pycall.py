"""The call layout shared by pj.client.Executor and the agent's warm workers (common/pycall.py),
the worker key (agent/pyworkers.py) and the client's pickling (client/callfiles.py)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from pj.agent.pyworkers import worker_key
from pj.agent.state import TaskSpec
from pj.client import callfiles
from pj.common import pycall


def test_a_call_command_line_round_trips() -> None:
    call = pycall.CallArgs("/w/calls/x", "b3.in", (0, 12), (12, 40), "x-7", 1000)
    argv = ["/venv/bin/python", *pycall.call_args("/venv/bin/python", call)]
    assert pycall.is_call(argv)
    assert pycall.parse(argv) == call
    assert not pycall.is_call(["/bin/echo", "-m", pycall.MODULE])
    assert not pycall.is_call(argv[:-1])
    with pytest.raises(ValueError):
        pycall.parse(["python", "-c", "pass"])


def test_results_logs_are_read_incrementally_and_the_last_record_wins(tmp_path: Path) -> None:
    log = str(tmp_path / "r-h-1.log")
    results = pycall.Results(str(tmp_path))
    assert results.take("a") is None
    pycall.append(log, pycall.record("a", b"first"))
    pycall.append(log, pycall.record("b", b"bee"))
    assert results.take("a") == b"first" and results.take("a") is None
    pycall.append(log, pycall.record("c", b"one"))
    pycall.append(str(tmp_path / "r-h-2.log"), pycall.record("c", b"two"))
    whole = pycall.record("d", b"x" * 100)
    with open(log, "ab") as f:  # a torn record waits for the rest
        f.write(whole[:20])
    assert results.take("b", keep=True) == b"bee" and results.take("b") == b"bee"
    assert results.take("d") is None
    with open(log, "ab") as f:
        f.write(whole[20:])
    assert results.take("d") == b"x" * 100
    assert results.take("c") in (b"one", b"two")


def test_the_worker_key_ignores_what_differs_per_task() -> None:
    a = TaskSpec(1, ("/py", "-m"), {"PJ_JOB": "a", "CUDA_VISIBLE_DEVICES": "", "X": "1", "QCG_PM_NPROCS": "1"})
    b = TaskSpec(2, ("/py", "-m"), {"PJ_JOB": "b", "CUDA_VISIBLE_DEVICES": "0", "X": "1", "SLURM_OVERLAP": "1"})
    c = TaskSpec(3, ("/py", "-m"), {"X": "2"})
    d = TaskSpec(4, ("/other/py", "-m"), {"X": "1"})
    assert worker_key(a) == worker_key(b) != worker_key(c)
    assert worker_key(d) != worker_key(a)


def test_pickled_calls_share_the_function_and_are_size_capped() -> None:
    p = callfiles.Pickled(max_call_bytes=1000)
    f1, a1 = p.call(len, ("abc",), {})
    f2, _ = p.call(len, ("d",), {})
    assert f1 is f2 and pickle.loads(a1) == (("abc",), {})
    with pytest.raises(callfiles.CallTooBig, match="limit of 1000"):
        p.call(len, ("x" * 2000,), {})


def test_outcomes_raise_with_the_remote_traceback() -> None:
    ok, value = callfiles.outcome(pickle.dumps((pycall.OK, 5)))
    assert ok and value == 5
    ok, exc = callfiles.outcome(pickle.dumps((pycall.ERROR, ValueError("v"), "ValueError", "v", "TB")))
    assert not ok and isinstance(exc, ValueError) and "TB" in str(exc.__cause__)
    ok, exc = callfiles.outcome(pickle.dumps((pycall.ERROR, None, "Odd", "cannot pickle", "TB")))
    assert isinstance(exc, callfiles.CallError) and str(exc) == "Odd: cannot pickle"
    assert isinstance(callfiles.failure("x", "OMITTED", ""), callfiles.DependencyFailed)
