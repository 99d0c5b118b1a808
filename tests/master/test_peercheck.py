"""The checks of what peers send (common/peercheck.py) and the ownership rule of reports
(master/peers.py): pure, no process."""

from __future__ import annotations

import pytest

from pj.common.peercheck import (
    CAMPAIGN_MAX,
    HOSTNAME_MAX,
    NODE_CORES_MAX,
    NODE_GPUS_MAX,
    NODE_MEMORY_MAX,
    NODE_NAME_MAX,
    REGISTER_TASKS_MAX,
    TEXT_MAX,
    PeerError,
    check_base_dir,
    check_register,
    check_states,
    clip,
    parse_page_token,
)
from pj.master import peers
from pj.master.core import Core
from pj.master.model import JobSpec, NodeInfo, State
from pj.v1 import pj_pb2

from .coreharness import spec as harness_spec


def reg(**fields: object) -> pj_pb2.Register:
    fields.setdefault("node", "n0")
    fields.setdefault("cores", 4)
    return pj_pb2.Register(**fields)  # type: ignore[arg-type]


def refused(**fields: object) -> PeerError:
    with pytest.raises(PeerError) as e:
        check_register(reg(**fields))
    assert str(e.value).startswith(f"Register: field {e.value.field!r}: ")
    assert "\n" not in str(e.value)
    return e.value


def test_a_register_within_the_limits_passes() -> None:
    check_register(reg())
    check_register(reg(node="n" * NODE_NAME_MAX, cores=NODE_CORES_MAX, memory_bytes=NODE_MEMORY_MAX,
                       gpus=[str(i) for i in range(NODE_GPUS_MAX)], hostname="h" * HOSTNAME_MAX,
                       campaign="c" * CAMPAIGN_MAX, version="1.0"))
    check_register(reg(node="cn-0042.cluster", gpus=["GPU-0d4f3c1e-aa", "MIG-GPU-1a/3/0"]))


@pytest.mark.parametrize(
    ("fields", "field", "shown"),
    [
        ({"cores": 10**9}, "cores", f"1000000000 cores is more than {NODE_CORES_MAX} per node"),
        ({"cores": NODE_CORES_MAX + 1}, "cores", "fewer --cores"),
        ({"cores": 0}, "cores", "at least 1"),
        ({"gpus": ["0"] * 0 + [str(i) for i in range(NODE_GPUS_MAX + 1)]}, "gpus", f"more than {NODE_GPUS_MAX}"),
        ({"gpus": ["1", "1"]}, "gpus", "listed twice"),
        ({"gpus": [""]}, "gpus", "not a GPU id"),
        ({"gpus": ["0,1"]}, "gpus", "not a GPU id"),
        ({"gpus": ["x" * 201]}, "gpus", "not a GPU id"),
        ({"memory_bytes": NODE_MEMORY_MAX + 1}, "memory_bytes", "1 PiB"),
        ({"node": ""}, "node", "required"),
        ({"node": "n" * (NODE_NAME_MAX + 1)}, "node", f"longer than {NODE_NAME_MAX}"),
        ({"node": "a/b"}, "node", "'/'"),
        ({"node": "..x"}, "node", "'.'"),
        ({"node": "n 1"}, "node", "--name"),
        ({"hostname": "h" * (HOSTNAME_MAX + 1)}, "hostname", f"longer than {HOSTNAME_MAX}"),
        ({"hostname": "a\0b"}, "hostname", "control"),
        ({"version": "1\n2"}, "version", "control"),
        ({"campaign": "c" * (CAMPAIGN_MAX + 1)}, "campaign", f"longer than {CAMPAIGN_MAX}"),
    ],
)
def test_a_register_past_a_limit_names_the_field_and_the_limit(fields: dict[str, object], field: str,
                                                                 shown: str) -> None:
    err = refused(**fields)
    assert err.field == field and shown in str(err), str(err)


def test_register_task_lists_are_bounded() -> None:
    check_register(reg(running=list(range(10))))
    err = refused(running=list(range(REGISTER_TASKS_MAX + 1)))
    assert err.field == "running" and str(REGISTER_TASKS_MAX) in str(err)


@pytest.mark.parametrize("base_dir", ["", "/", "/tmp/runs", "/a b/ü"])
def test_absolute_base_dirs_pass(base_dir: str) -> None:
    check_base_dir(base_dir)


@pytest.mark.parametrize(
    ("base_dir", "shown"),
    [("runs", "not an absolute path"), ("./x", "not an absolute path"), ("/a\0b", "NUL"), ("/" + "d" * 4096, "4096")],
)
def test_bad_base_dirs_are_refused(base_dir: str, shown: str) -> None:
    with pytest.raises(PeerError, match=r"^Submit: field 'base_dir': ") as e:
        check_base_dir(base_dir)
    assert shown in str(e.value) and "\0" not in str(e.value)


def test_page_tokens() -> None:
    assert parse_page_token("") == 0
    assert parse_page_token("0") == 0
    assert parse_page_token("1000") == 1000
    for bad in ["-1", "abc", " 5", "5 ", "+5", "1_000", "1e3", "9" * 19, "٣"]:
        with pytest.raises(PeerError, match=r"^List: field 'page_token': .*leave it empty") as e:
            parse_page_token(bad)
        assert e.value.field == "page_token"


def test_states() -> None:
    check_states([])
    check_states([0, pj_pb2.JOB_STATE_QUEUED, pj_pb2.JOB_STATE_OMITTED])
    for bad in [8, 99, -1]:
        with pytest.raises(PeerError, match=r"^List: field 'states': .* is not a job state; use one of QUEUED, "):
            check_states([bad])


def test_clip_keeps_the_end() -> None:
    assert clip("abc") == "abc"
    long = "a" * TEXT_MAX + "END"
    assert clip(long) == long[-TEXT_MAX:] and clip(long).endswith("END") and len(clip(long)) == TEXT_MAX


# ------------------------------------------------------------------ the ownership rule


def spec(name: str, nodes: int = 1) -> JobSpec:
    return harness_spec(name, cores=2, nodes=nodes)


def test_only_the_node_a_task_runs_on_reports_on_it() -> None:
    core = Core(now=0.0)
    core.node_joined(NodeInfo("n0", 2), 0.0)
    core.node_joined(NodeInfo("n1", 2), 0.0)
    core.submit([spec("one"), spec("wide", nodes=2)], 0.0)
    placed = {t.job.name: t for t in core.step(1.0).placed}
    assert set(placed) == {"one"}  # "wide" waits for both nodes
    one = placed["one"]
    home = one.allocation[0].node
    other = "n1" if home == "n0" else "n0"
    assert peers.owner(core, one.id) == home
    assert peers.reports_on(core, home, one.id)
    assert not peers.reports_on(core, other, one.id)
    assert not peers.reports_on(core, "stranger", one.id)
    assert peers.reports_on(core, other, 12345)  # a task the core does not run: not foreign
    assert peers.owner(core, 12345) is None
    assert peers.foreign(core, other, [one.id, 12345, one.id]) == [one.id, one.id]
    assert peers.foreign(core, home, [one.id, 12345]) == []
    line = peers.warning(other, [one.id, one.id])
    assert line == f"node {other} reported on task(s) {one.id} running on other nodes: ignored"
    assert peers.warning("x", list(range(25))).endswith("9 and 15 more running on other nodes: ignored")

    core.task_exited(one.id, 0, "", 2.0)  # the owner's report, as the servicer passes it on
    assert core.registry.jobs["one"].state == State.SUCCEED
    wide = {t.job.name: t for t in core.step(3.0).placed}["wide"]
    first = wide.allocation[0].node  # a multi-node task runs (and reports) from its first node
    second = wide.allocation[1].node
    assert peers.reports_on(core, first, wide.id) and not peers.reports_on(core, second, wide.id)
