"""QCG's LocalManager server arguments as LocalCluster options (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pj.qcg import WrongArgumentsError
from pj.qcg.serverargs import parse_server_args


def test_nodes_forms() -> None:
    assert parse_server_args(["--nodes", "4"]).cluster_options() == {"slurm": False, "nodes": 1, "cores": 4}
    assert parse_server_args(["--nodes", "2,3"]).cluster_options() == {"slurm": False, "nodes": 2, "cores": [2, 3]}
    assert parse_server_args(["--nodes=a:2,b:2"]).cluster_options() == {
        "slurm": False, "nodes": 2, "cores": 2, "names": ["a", "b"],
    }
    assert parse_server_args([]).cluster_options() == {"slurm": None}


def test_system_core_takes_one_core_of_the_first_node() -> None:
    assert parse_server_args(["--nodes", "4,4", "--system-core"]).cluster_options()["cores"] == [3, 4]


def test_wd_resources_and_qcg_tuning_options() -> None:
    args = parse_server_args(["--log", "debug", "--wd", "/tmp/x", "--net", "--resources", "slurm", "--enable-rt-stats"])
    assert args.wd == "/tmp/x" and args.slurm is True


def test_run_dir_is_new_each_time(tmp_path: Path) -> None:
    args = parse_server_args([])
    first = args.run_dir(tmp_path)
    first.mkdir()
    assert args.run_dir(tmp_path) != first and args.run_dir(tmp_path).parent == tmp_path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nodes", "0"], "--nodes '0'"),
        (["--nodes", "a:b"], "NAME:"),
        (["--nodes"], "missing its value"),
        (["--governor"], "not supported by PJ"),
        (["--file-path", "x.json"], "pj run FILE"),
        (["--resources", "cloud"], "one of auto, local, slurm"),
        (["--frobnicate"], "unknown server argument '--frobnicate'"),
    ],
)
def test_bad_arguments_name_the_argument(argv: list[str], message: str) -> None:
    with pytest.raises(WrongArgumentsError, match=message):
        parse_server_args(argv)
