"""pj-agent's command line: bad arguments give one clear line and status 2; the package stays apart."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import pj.agent
from pj.agent.main import default_spawn_threads, main
from pj.agent.resources import NodeResources

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PJ_WORKDIR", "PJ_MASTER", "SLURMD_NODENAME"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([], "--workdir"),
        (["--master", "127.0.0.1:1"], "token"),
        (["--master", "h:1", "--token-file", "/nonexistent/token"], "/nonexistent/token"),
        (["--master", "h:1", "--workdir", "/tmp"], "not allowed with"),
        (["--token-file", "/tmp/t"], "--master"),
        (["--cores", "0"], "at least 1"),
        (["--cores", "many"], "whole number"),
        (["--kill-grace", "-1"], ">= 0"),
        (["--kill-grace", "nan"], ">= 0"),
        (["--log-level", "loud"], "invalid choice"),
        (["--name", " "], "--name"),
        (["--gpus", "0,0"], "twice"),
        (["--bogus"], "unrecognized"),
    ],
)
def test_bad_arguments(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pj-agent: error: "), err
    assert needle in err


def test_workdir_without_a_master(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--workdir", str(tmp_path), "--wait-master", "0"]) == 2
    err = capsys.readouterr().err
    assert "no master runs in" in err and err.count("\n") == 1


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--kill-grace" in capsys.readouterr().out


def test_print_resources_needs_no_master(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-resources", "--name", "x1", "--cores", "3", "--gpus", "0,2"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["node"], got["cores"], got["gpus"]) == ("x1", 3, ["0", "2"])
    assert got["cpus"] and all(isinstance(c, int) for c in got["cpus"])


def test_print_resources_in_a_slurm_step(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in {"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "0", "SLURMD_NODENAME": "n3",
                 "SLURM_CPUS_ON_NODE": "64", "SLURM_STEP_GPUS": "1"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert main(["--print-resources"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["node"], got["cores"], got["gpus"], got["slurm_step"]) == ("n3", 64, ["1"], True)
    assert "Slurm grants 64 CPUs on n3" in got["notes"][0]


def test_a_bad_slurm_value_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in {"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "0", "SLURM_CPUS_ON_NODE": "x"}.items():
        monkeypatch.setenv(k, v)
    assert main(["--print-resources"]) == 2
    err = capsys.readouterr().err
    assert "SLURM_CPUS_ON_NODE" in err and "--cores" in err


def test_the_agent_never_imports_the_master_or_the_client() -> None:
    for path in Path(pj.agent.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert not name.startswith(("pj.master", "pj.client")), f"{path.name} imports {name}"


def test_spawner_threads_by_default_one_per_real_cpu_and_none_on_a_small_node() -> None:
    assert default_spawn_threads(NodeResources(cpus=(0, 1), cores=8, gpus=(), memory_bytes=0)) == 2
    assert default_spawn_threads(NodeResources(cpus=tuple(range(64)), cores=64, gpus=(), memory_bytes=0)) == 8
    assert default_spawn_threads(NodeResources(cpus=(0, 1), cores=2, gpus=(), memory_bytes=0)) == 0
    assert default_spawn_threads(NodeResources(cpus=(0, 1, 2, 3), cores=4, gpus=(), memory_bytes=0)) == 4
