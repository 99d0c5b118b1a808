"""The master's compact forms: a batch's specs share equal strings and requests, history entries are
shared per state and time, and the journal's hand-made JSON is the JSON json.dumps writes."""

from __future__ import annotations

import json

from pj.master import convert, journal
from pj.master.core import Core
from pj.master.model import NodeInfo, NodeShare, State
from pj.master.registry import Task
from pj.v1 import pj_pb2 as pb


def test_a_batch_shares_equal_strings_and_requests_and_equals_one_by_one() -> None:
    msgs = [
        pb.JobSpec(name=f"j{i}", exec="/bin/tr" + "ue", cores=pb.Range(min=2, max=4)) for i in range(3)
    ] + [
        pb.JobSpec(name="s", script="echo ${it}", env={"B": "2", "A": "1"}, after=["j0", "j1:${it}"],
                   iterations=pb.Iterations(start=0, stop=2), model="threads", gpus=1),
        pb.JobSpec(name="plain", exec="x"),
    ]
    batch = convert.specs_from_pb(msgs, "/base")
    assert batch == [convert.spec_from_pb(m, "/base") for m in msgs]
    a, b = batch[0], batch[1]
    assert a.exec is b.exec and a.request is b.request and a.base_dir is b.base_dir
    assert batch[4].request == convert.spec_from_pb(pb.JobSpec(name="p", exec="x", cores=pb.Range(min=1, max=1)), "/").request
    assert batch[3].env == (("A", "1"), ("B", "2"))
    assert convert.specs_from_pb([pb.JobSpec(name="r", exec="x")], "")[0].base_dir == "/"


def test_history_entries_of_one_state_and_time_are_shared_and_stay_right() -> None:
    core = Core()
    core.submit([convert.spec_from_pb(pb.JobSpec(name=f"j{i}", exec="x"), "/") for i in range(2)], 1.0)
    core.node_joined(NodeInfo("n0", 2), 1.0)
    out = core.step(2.0)
    for t in out.placed:
        core.task_exited(t.id, 0, "", 3.0)
    core.step(3.0)
    j0, j1 = core.registry.jobs["j0"], core.registry.jobs["j1"]
    want = [(State.QUEUED, 1.0), (State.SCHEDULED, 2.0), (State.EXECUTING, 3.0), (State.SUCCEED, 3.0)]
    assert list(j0.history) == want and list(j1.history) == want
    assert all(x is y for x, y in zip(j0.history, j1.history, strict=True))
    t0 = j0.tasks[None]
    assert [s for s, _ in t0.history] == [State.QUEUED, State.SCHEDULED, State.EXECUTING, State.SUCCEED]


def test_the_journal_writes_what_json_dumps_writes() -> None:
    core = Core()
    core.submit([convert.spec_from_pb(pb.JobSpec(name="j", exec="x"), "/")], 0.0)
    task = Task(1, core.registry.jobs["j"], None, 0.0)
    for alloc in [(), (NodeShare("n0", (3,)),), (NodeShare('we"ird\\node', (0, 1), ("GPU-0", "1")), NodeShare("b", ()))]:
        task.allocation = alloc
        text = journal._alloc(task)
        assert text == json.dumps([[s.node, s.cores, s.gpus] for s in alloc], separators=(",", ":"))
        assert journal._allocation(text) == alloc
    history = [(State.QUEUED, 1763683537.123456), (State.SCHEDULED, 0.1), (State.SUCCEED, 1e-07), (State.FAILED, 5.0)]
    text = journal._times(history)
    assert text == json.dumps([[int(s), t] for s, t in history], separators=(",", ":"))
    assert journal._history(text) == tuple(history)


def test_jobs_that_differ_only_by_name_share_one_spec_and_read_back_their_own() -> None:
    msgs = [pb.JobSpec(name=f"j{i}", exec="/bin/echo", args=["${jname}"], cores=pb.Range(min=1, max=1))
            for i in range(3)] + [pb.JobSpec(name="other", exec="/bin/echo", args=["x"])]
    specs = convert.specs_from_pb(msgs, "/base")
    core = Core()
    core.submit(specs, 1.0)
    jobs = [core.registry.jobs[s.name] for s in specs]
    assert [j.spec for j in jobs] == specs  # every field, the name included, as submitted
    assert jobs[0].tmpl is jobs[1].tmpl is jobs[2].tmpl and jobs[3].tmpl is not jobs[0].tmpl
    assert [j.name for j in jobs] == ["j0", "j1", "j2", "other"]
    core.node_joined(NodeInfo("n0", 4), 1.0)
    out = core.step(2.0)
    launched = {launch.env["PJ_JOB"]: launch.argv for ls in out.launches.values() for launch in ls}
    assert launched == {"j0": ("/bin/echo", "j0"), "j1": ("/bin/echo", "j1"), "j2": ("/bin/echo", "j2"),
                        "other": ("/bin/echo", "x")}
    jobs[1].spec = jobs[1].spec._replace(retries=2)  # a job's own spec replaced (itersize does): the others keep theirs
    assert jobs[1].spec.retries == 2 and jobs[1].name == "j1" and jobs[0].spec.retries == 0
    assert [j.spec for j in (jobs[0], jobs[2])] == [specs[0], specs[2]]
