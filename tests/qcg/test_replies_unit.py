"""PJ's answers in QCG's shapes (pure), and QCG's JobInfo parsing of them."""

from __future__ import annotations

import datetime

from pj.client.convert import (
    JobInfo,
    JobSummary,
    NodeResources,
    NodeShare,
    Resources,
    StateChange,
    Status,
    TaskInfo,
)
from pj.qcg import JobInfo as ParsedJobInfo
from pj.qcg import replies

T0 = datetime.datetime(2026, 12, 4, 15, 8, 38, 830783).timestamp()
HISTORY = (StateChange("QUEUED", T0), StateChange("SCHEDULED", T0 + 0.001), StateChange("EXECUTING", T0 + 0.002),
           StateChange("FAILED", T0 + 3723.5))  # fmt: skip


def test_history_rtime_and_allocation_texts() -> None:
    assert replies.history(HISTORY[:1]) == "\n2026-12-04 15:08:38.830783: QUEUED"
    assert replies.rtime(HISTORY) == "1:02:03.498000"
    assert replies.rtime(HISTORY[:3]) is None  # still running
    assert replies.allocation([NodeShare("n0", (0, 1)), NodeShare("n1", (2,))]) == "n0[0:1],n1[2]"


def test_info_of_a_failed_job_parses_back() -> None:
    task = TaskInfo("sim", None, "FAILED", 3, "exit code 3", (NodeShare("n0", (2, 3)),), HISTORY)
    info = JobInfo(JobSummary("sim", "FAILED", "exit code 3"), HISTORY, (task,))
    meta = replies.JobMeta(wd="/runs/${jname}", program="sim")
    data = replies.info_reply([info], {"sim": meta}, False)["jobs"]["sim"]
    assert data["status"] == 0
    assert data["data"]["runtime"] == {
        "allocation": "n0[2:3]", "wd": "/runs/sim", "rtime": "1:02:03.498000", "exit_code": "3", "pname": "sim",
    }
    parsed = ParsedJobInfo.from_job(data["data"])
    assert (parsed.name, parsed.status, parsed.nodes, parsed.total_cores) == ("sim", "FAILED", {"n0": ["2", "3"]}, 2)
    assert parsed.time == datetime.timedelta(hours=1, minutes=2, seconds=3, microseconds=498000)
    assert parsed.messages == "exit code 3" and len(parsed.history or []) == 4


def test_info_of_iterations_with_childs() -> None:
    tasks = tuple(TaskInfo(f"it:{i}", i, "SUCCEED", 0, "", (NodeShare("n0", (i,)),), HISTORY[:3]) for i in (4, 3))
    info = JobInfo(JobSummary("it", "EXECUTING", "", 5, 2, 1), HISTORY[:3], tasks)
    meta = replies.JobMeta(wd="/w/${it}", program="bash", start=3, stop=8)
    data = replies.info_reply([info], {"it": meta}, True)["jobs"]["it"]["data"]
    assert data["iterations"] == {"start": 3, "stop": 8, "total": 5, "finished": 1, "failed": 1}
    assert [c["iteration"] for c in data["childs"]] == [3, 4]
    assert data["childs"][0]["runtime"]["wd"] == "/w/3"
    parsed = ParsedJobInfo.from_job(data)
    assert [c.name for c in parsed.childs or []] == ["it:3", "it:4"]


def test_status_list_resources_and_system_status() -> None:
    infos = [JobInfo(JobSummary("a", "SUCCEED")), JobInfo(JobSummary("b", "FAILED", "exit code 1"))]
    assert replies.status_reply(infos) == {"jobs": {
        "a": {"status": 0, "data": {"jobName": "a", "status": "SUCCEED"}},
        "b": {"status": 0, "data": {"jobName": "b", "status": "FAILED", "messages": "exit code 1"}},
    }}  # fmt: skip
    assert replies.list_reply(i.summary for i in infos) == {
        "a": {"status": "SUCCEED"}, "b": {"status": "FAILED", "messages": "exit code 1"},
    }
    res = Resources((NodeResources("n0", 4, 1, (), 0, 0, True), NodeResources("n1", 2, 2, (), 0, 0, False)), 2)
    assert replies.resources_reply(res) == {"total_nodes": 1, "total_cores": 4, "used_cores": 3, "free_cores": 1}
    st = Status({"SUCCEED": 2, "FAILED": 1, "OMITTED": 1, "QUEUED": 3, "EXECUTING": 1}, {"SUCCEED": 5}, 8, 4, 1, 4, 3,
                T0, False, "127.0.0.1:5")  # fmt: skip
    sys_st = replies.system_status_reply(st, T0 + 10, "/wd")
    assert sys_st["Resources"] == {"TotalNodes": 1, "TotalCores": 4, "UsedCores": 3, "FreeCores": 1}
    assert sys_st["JobStats"] == {"TotalJobs": 8, "InScheduleJobs": 3, "FailedJobs": 2, "FinishedJobs": 2,
                                  "ExecutingJobs": 1}  # fmt: skip
    assert sys_st["IterationStats"]["FinishedIterations"] == 5 and sys_st["System"]["Uptime"] == "0:00:10"
