"""pj.qcg.LocalManager starts a real master and agents from QCG's server arguments, and finish()
leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from pj.client.startup import choose_layout
from pj.qcg import Jobs, LocalManager, ServiceError, WrongArgumentsError

NO_SLURM = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


def alive_under(path: Path) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if str(path) in " ".join(p.info["cmdline"] or [])]


def test_nodes_of_different_sizes_and_names(tmp_path: Path) -> None:
    m = LocalManager(["--nodes", "a:1,b:3", "--wd", str(tmp_path)])
    try:
        assert m.resources() == {"total_nodes": 2, "total_cores": 4, "used_cores": 0, "free_cores": 4}
        nodes = {n.name: n.cores for n in m.client.resources().nodes}
        assert nodes == {"a": 1, "b": 3}
        ids = m.submit(Jobs().add(name="wide", exec="/bin/true", numCores=3))
        assert m.wait4(ids, timeout=60) == {"wide": "SUCCEED"}
        assert m.info_parsed("wide")["wide"].nodes == {"b": ["0", "1", "2"]}
        run = m.cluster.workdir
        assert run.parent == tmp_path and run.name == ".qcgpjm-service-pj.0"
        assert (run / "agent-a.log").exists() and (run / "agent-b.log").exists()
    finally:
        m.finish()
    assert not alive_under(run)


def test_unnamed_nodes_and_system_core(tmp_path: Path) -> None:
    m = LocalManager(["--nodes", "2,3", "--system-core", "--wd", str(tmp_path)])
    try:
        assert m.resources()["total_cores"] == 4 and m.resources()["total_nodes"] == 2
    finally:
        m.finish()


def test_finish_cancels_what_runs_and_stops_everything(tmp_path: Path) -> None:
    m = LocalManager(["--nodes", "2", "--wd", str(tmp_path)])
    m.submit(Jobs().add(name="s", exec="sleep", args=["60"]))
    run = m.cluster.workdir
    m.finish()
    m.finish()  # twice: nothing more
    assert not alive_under(run)
    report = (run / "jobs.jsonl").read_text()
    assert '"CANCELED"' in report


def test_bad_server_arguments_start_nothing(tmp_path: Path) -> None:
    with pytest.raises(WrongArgumentsError, match="--nodes"):
        LocalManager(["--nodes", "two", "--wd", str(tmp_path)])
    assert not list(tmp_path.glob(".qcgpjm-service-*"))


def test_start_up_failures_are_service_errors(tmp_path: Path) -> None:
    (tmp_path / ".qcgpjm-service-pj.0").mkdir()
    (tmp_path / ".qcgpjm-service-pj.0" / "x").write_text("")  # taken: the next number is used
    m = LocalManager(["--nodes", "1", "--wd", str(tmp_path)], {"init_timeout": 30})
    try:
        assert m.cluster.workdir.name == ".qcgpjm-service-pj.1"
    finally:
        m.finish()
    with pytest.raises(ServiceError, match="cannot create the working directory /proc/no/such/place"):
        LocalManager(["--nodes", "1", "--wd", "/proc/no/such/place"])
    with pytest.raises(ServiceError, match=r"Service not started: .*did not start within"):
        LocalManager(["--nodes", "1", "--wd", str(tmp_path)], {"init_timeout": 0.001})
    assert not alive_under(tmp_path)


def test_layouts_per_node() -> None:
    layout = choose_layout(NO_SLURM, False, None, [2, 3], None, ["a", "b"])
    assert [layout.agent(i) for i in range(2)] == [("a", 2), ("b", 3)] and layout.cores is None
    assert choose_layout(NO_SLURM, False, None, [2, 2], None).cores == 2
    with pytest.raises(ValueError, match="one per node"):
        choose_layout(NO_SLURM, False, 3, [2, 3], None)
    with pytest.raises(ValueError, match="at least 1"):
        choose_layout(NO_SLURM, False, None, [2, 0], None)
    with pytest.raises(ValueError, match="distinct node names"):
        choose_layout(NO_SLURM, False, 2, 4, None, ["a", "a"])
