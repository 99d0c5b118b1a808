"""Hostfiles: a Launch's hostfile becomes a file of the agent's own, named in the task's environment."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pj.agent import convert
from pj.agent.hostfiles import HostfileError, Hostfiles
from pj.agent.launcher import Launcher, SpawnError
from pj.agent.resources import detect
from pj.agent.state import TaskSpec
from pj.v1 import pj_pb2

pytestmark = pytest.mark.timeout(20)

HOSTS_A = "n2\nn2\nn3\nn3\n"
HOSTS_B = "n1\n"


@pytest.fixture
def hostfiles(tmp_path: Path) -> Iterator[Hostfiles]:
    h = Hostfiles("n1", tmpdir=str(tmp_path))
    yield h
    h.close()


def test_one_file_per_distinct_content(hostfiles: Hostfiles, tmp_path: Path) -> None:
    assert hostfiles.directory is None  # nothing made before the first hostfile
    a = hostfiles.path(HOSTS_A)
    assert Path(a).read_text() == HOSTS_A
    assert hostfiles.path(HOSTS_A) == a
    b = hostfiles.path(HOSTS_B)
    assert b != a and Path(b).read_text() == HOSTS_B
    d = Path(hostfiles.directory or "")
    assert d.parent == tmp_path and d.name.startswith("pj-agent-n1-")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert sorted(p.name for p in d.iterdir()) == sorted([Path(a).name, Path(b).name])


def test_files_stay_after_the_cache_forgets(hostfiles: Hostfiles, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pj.agent.hostfiles._CACHE_MAX", 8)
    first = hostfiles.path("n0\n")
    for i in range(1, 20):  # more than the cache holds: it starts again
        hostfiles.path(f"n{i}\n")
    assert Path(first).read_text() == "n0\n"  # a task may still be reading it
    assert hostfiles.path("n0\n") == first


def test_close_removes_everything(tmp_path: Path) -> None:
    h = Hostfiles("n1", tmpdir=str(tmp_path))
    path = h.path(HOSTS_A)
    h.close()
    assert not Path(path).exists()
    assert list(tmp_path.iterdir()) == []


def test_odd_node_names_make_a_safe_directory_name(tmp_path: Path) -> None:
    h = Hostfiles("../a b/c", tmpdir=str(tmp_path))
    try:
        d = Path(os.path.dirname(h.path(HOSTS_B)))
        assert d.parent == tmp_path and "/" not in d.name[len("pj-agent-") :]
    finally:
        h.close()


def test_an_unwritable_place_says_what_to_do(tmp_path: Path) -> None:
    h = Hostfiles("n1", tmpdir=str(tmp_path / "missing"))
    with pytest.raises(HostfileError) as e:
        h.path(HOSTS_A)
    assert str(tmp_path / "missing") in str(e.value) and "TMPDIR" in str(e.value)


def test_convert_carries_the_hostfile() -> None:
    m = pj_pb2.Launch(task_id=7, argv=["/bin/true"], hostfile=HOSTS_A, slurm_hostfile=True)
    spec = convert.spec_from_pb(m)
    assert (spec.hostfile, spec.slurm_hostfile) == (HOSTS_A, True)
    plain = convert.spec_from_pb(pj_pb2.Launch(task_id=8, argv=["/bin/true"]))
    assert (plain.hostfile, plain.slurm_hostfile) == ("", False)


# ---------------------------------------------------------------- in a real task's environment


@pytest.fixture
def launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Launcher]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PJ_HOSTFILE": "/stale", "SLURM_HOSTFILE": "/stale"}
    lch = Launcher(detect(), base_env=base, hostfiles=Hostfiles("n1", tmpdir=str(tmp_path / "tmp")))
    yield lch
    lch.close()
    lch.reap()


def task_env(launcher: Launcher, tmp_path: Path, name: str, **kw: object) -> dict[str, str]:
    """Run a task that dumps its environment and the hostfile it was given; return the environment."""
    out = tmp_path / f"{name}.env"
    script = f'env > {out}; [ -n "$PJ_HOSTFILE" ] && cp "$PJ_HOSTFILE" {tmp_path / name}.hosts; true'
    pid = launcher.spawn(TaskSpec(1, ("/bin/sh", "-c", script), **kw))  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while not any(e.pid == pid for e in launcher.reap()):
        assert time.monotonic() < deadline, "the task did not end"
        time.sleep(0.005)
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def test_task_gets_pj_hostfile(launcher: Launcher, tmp_path: Path) -> None:
    env = task_env(launcher, tmp_path, "a", hostfile=HOSTS_A)
    assert env["PJ_HOSTFILE"].startswith(str(tmp_path / "tmp" / "pj-agent-n1-"))
    assert (tmp_path / "a.hosts").read_text() == HOSTS_A
    assert env["SLURM_HOSTFILE"] == "/stale"  # not asked: the agent leaves it as it was


def test_task_gets_slurm_hostfile_when_asked(launcher: Launcher, tmp_path: Path) -> None:
    env = task_env(launcher, tmp_path, "s", hostfile=HOSTS_A, slurm_hostfile=True)
    assert env["SLURM_HOSTFILE"] == env["PJ_HOSTFILE"] != "/stale"
    assert Path(env["SLURM_HOSTFILE"]).read_text() == HOSTS_A


def test_tasks_with_one_content_share_one_file(launcher: Launcher, tmp_path: Path) -> None:
    one = task_env(launcher, tmp_path, "x", hostfile=HOSTS_A)["PJ_HOSTFILE"]
    two = task_env(launcher, tmp_path, "y", hostfile=HOSTS_A)["PJ_HOSTFILE"]
    other = task_env(launcher, tmp_path, "z", hostfile=HOSTS_B)["PJ_HOSTFILE"]
    assert one == two != other
    assert (tmp_path / "z.hosts").read_text() == HOSTS_B


def test_task_without_hostfile_gets_none_of_ours(launcher: Launcher, tmp_path: Path) -> None:
    env = task_env(launcher, tmp_path, "n")
    assert env["PJ_HOSTFILE"] == "/stale"  # whatever the base environment had, untouched
    assert list((tmp_path / "tmp").iterdir()) == []  # no directory made for it


def test_closing_the_launcher_removes_the_hostfiles(launcher: Launcher, tmp_path: Path) -> None:
    path = task_env(launcher, tmp_path, "c", hostfile=HOSTS_A)["PJ_HOSTFILE"]
    assert Path(path).exists()
    launcher.close()
    assert not Path(path).exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_hostfile_failure_fails_the_task_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lch = Launcher(detect(), base_env={"PATH": "/usr/bin:/bin"}, hostfiles=Hostfiles("n1", str(tmp_path / "nope")))
    try:
        with pytest.raises(SpawnError) as e:
            lch.spawn(TaskSpec(1, ("/bin/true",), hostfile=HOSTS_A))
        assert e.value.exit_code == 127
        assert "hostfile" in e.value.message and "TMPDIR" in e.value.message
    finally:
        lch.close()
