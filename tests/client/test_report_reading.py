"""Reading jobs.jsonl: the fast path and json.loads agree, live files, bad input as one line naming file and line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # report_lines beside this file
from report_lines import LINES, write_report

from pj.client.report.reading import JobLine, ReportError, TaskLine, _fast, _slow, records, report_path

ODD_LINES = [
    # escapes in names and reasons, an unknown extra field, GPUs
    '{"name":"q\\"x","job":"j\\\\k","iteration":0,"state":"FAILED","exit_code":-9,"reason":"killed: \\"walltime\\"\\n",'
    '"nodes":["n0"],"cores":{"n0":[5]},"times":{"QUEUED":1.0,"SCHEDULED":1.0,"EXECUTING":2.0,"FAILED":3.0},'
    '"cpu_user_s":0,"cpu_system_s":0.25,"max_rss_kb":7,"stderr_tail":"\\u00e9t\\u00e9","gpus":{"n0":["1"]},"new":1}',
    # two nodes, several cores each, no rusage (an older report)
    '{"name":"m:3","job":"m","iteration":3,"state":"SUCCEED","exit_code":0,"reason":"","nodes":["a","b"],'
    '"cores":{"a":[0,1,2],"b":[4,5,6]},"times":{"QUEUED":1.0,"SCHEDULED":1.5,"EXECUTING":2.0,"SUCCEED":9.0}}',
    # canceled before it started: no EXECUTING
    '{"name":"w:0","job":"w","iteration":0,"state":"CANCELED","exit_code":null,"reason":"canceled","nodes":[],'
    '"cores":{},"times":{"QUEUED":1.0,"CANCELED":2.0}}',
    # a job without iterations, omitted (no task) and one with a task on two nodes
    '{"name":"o","state":"OMITTED","reason":"dependency x failed","times":{"QUEUED":1.0,"OMITTED":2.0},'
    '"exit_code":null,"nodes":[],"cores":{}}',
    '{"name":"p","state":"SUCCEED","reason":"","times":{"QUEUED":1.0,"SCHEDULED":1.0,"EXECUTING":1.0,"SUCCEED":2.0},'
    '"exit_code":0,"nodes":["a","b"],"cores":{"a":[0],"b":[0]},"task_times":{"QUEUED":1.0,"SCHEDULED":1.0,'
    '"EXECUTING":1.25,"SUCCEED":2.0},"cpu_user_s":1.5,"cpu_system_s":0.5,"max_rss_kb":10}',
    # keys in another order than the master's: only json.loads reads it
    '{"job":"z","name":"z:0","state":"SUCCEED","iteration":0,"reason":"","exit_code":0,"nodes":["n"],'
    '"times":{"EXECUTING":1.0,"SUCCEED":2.0},"cores":{"n":[0]}}',
]


@pytest.mark.parametrize("line", LINES + ODD_LINES)
def test_fast_path_and_json_loads_agree(line: str) -> None:
    slow = _slow(line)
    fast = _fast(line)
    assert fast is None or fast == slow
    if '"job":"z"' not in line:
        assert fast is not None, "the master's own layout must take the fast path"


def test_what_a_line_gives() -> None:
    (task,) = _slow(ODD_LINES[0])
    assert isinstance(task, TaskLine)
    assert (task.name, task.job, task.exit_code, task.reason) == ('q"x', "j\\k", -9, 'killed: "walltime"\n')
    assert (task.cpu_user_s, task.cpu_system_s, task.max_rss_kb, task.stderr_tail) == (0.0, 0.25, 7, "été")
    assert task.cpu_s == 0.25 and task.gpus == {"n0": ["1"]}
    (old,) = _slow(ODD_LINES[1])
    assert isinstance(old, TaskLine) and old.cpu_s is None and old.max_rss_kb is None and old.ncores == 6
    assert _slow(ODD_LINES[3]) == [JobLine("o", "OMITTED", "dependency x failed", {"QUEUED": 1.0, "OMITTED": 2.0},
                                           None)]  # fmt: skip
    job, own = _slow(ODD_LINES[4])
    assert isinstance(job, JobLine) and isinstance(own, TaskLine)
    assert own.times["EXECUTING"] == 1.25 and own.cores == {"a": [0], "b": [0]} and own.job == "p"


def test_a_partial_last_line_is_left_for_later(tmp_path: Path) -> None:
    whole = list(records(write_report(tmp_path / "a")))
    assert len(whole) == 8  # 6 lines; b and d carry a job and its task
    live = write_report(tmp_path / "b", tail=LINES[1][:57])
    assert list(records(live)) == whole
    with open(live, "a") as f:  # the writer finishes the line: it counts now
        f.write(LINES[1][57:] + "\n")
    assert len(list(records(live))) == 9


def _error(path: Path) -> str:
    with pytest.raises(ReportError) as e:
        list(records(path))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_lines_name_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    bad = [*LINES[:2], '{"name":"a:1","job":"a","state":"FAILED",', *LINES[3:]]
    msg = _error(write_report(tmp_path / "a", bad))
    assert msg.startswith(f"{tmp_path / 'a' / 'jobs.jsonl'} line 3: not JSON")
    msg = _error(write_report(tmp_path / "b", [LINES[0], '{"name":"x","job":"a","reason":""}']))
    assert 'line 2: no "state" field' in msg
    msg = _error(write_report(tmp_path / "c", ['{"name":"x","job":"a","state":"SUCCEED","cores":{"n":["0"]},'
                                                '"times":{}}']))  # fmt: skip
    assert 'line 1: "cores" has n: ["0"], expected a list of core ids' in msg
    msg = _error(write_report(tmp_path / "d", ['{"name":"x","state":"SUCCEED","times":{"QUEUED":"soon"}}']))
    assert 'line 1: "times" has QUEUED: "soon"' in msg
    msg = _error(write_report(tmp_path / "e", ["[1, 2]"]))
    assert "line 1: not a JSON object" in msg
    p = tmp_path / "f" / "jobs.jsonl"
    p.parent.mkdir()
    p.write_bytes(LINES[0].encode() + b"\n\xff\xfe\n")
    assert "line 2: not UTF-8" in _error(p)


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    p = write_report(tmp_path, [LINES[0], "", LINES[1]])
    assert [r.name for r in records(p)] == ["a", "a:0"]


def test_report_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PJ_WORKDIR", raising=False)
    with pytest.raises(ReportError, match="use --workdir DIR"):
        report_path(None)
    with pytest.raises(ReportError, match=f"{tmp_path / 'jobs.jsonl'}: no such file"):
        report_path(str(tmp_path))
    with pytest.raises(ReportError, match="no such directory"):
        report_path(str(tmp_path / "nope" / "x"))
    p = write_report(tmp_path / "run")
    assert report_path(str(tmp_path / "run")) == p
    assert report_path(str(p)) == p  # the file itself
    monkeypatch.setenv("PJ_WORKDIR", str(tmp_path / "run"))
    assert report_path(None) == p
    assert json.loads(LINES[0])["name"] == "a"
