"""Nothing in a workdir is world-readable (issue 13, item 8): real `pj run` and LocalCluster runs,
with a permissive umask, then every file and directory of the workdir is stat'ed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pj.client import LocalCluster
from pj.common import perms

pytestmark = pytest.mark.timeout(60)

JOBS = [
    {"name": "ok", "exec": "/bin/echo", "args": ["secret-argument"]},
    {"name": "bad", "exec": "/bin/sh", "args": ["-c", "echo oops >&2; exit 1"], "retries": 1},
]


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o000)  # what PJ makes must not depend on it
    try:
        yield
    finally:
        os.umask(old)


def entries(workdir: Path) -> list[Path]:
    """The workdir, and everything under it."""
    return [workdir, *workdir.rglob("*")]


def modes(workdir: Path) -> dict[str, int]:
    return {str(p.relative_to(workdir.parent)): stat.S_IMODE(os.lstat(p).st_mode) for p in entries(workdir)}


def assert_private(workdir: Path) -> None:
    found = modes(workdir)
    assert {"jobs.jsonl", "journal.db", "master.log", "token"} <= {Path(p).name for p in found}
    loose = {p: oct(m) for p, m in found.items() if m & 0o077}
    assert not loose, f"readable by others than the owner: {loose}"


def assert_group_shared(workdir: Path) -> None:
    found = modes(workdir)
    world = {p: oct(m) for p, m in found.items() if m & 0o007}
    assert not world, f"world-accessible: {world}"
    for p in entries(workdir):
        m = stat.S_IMODE(os.lstat(p).st_mode)
        if p.is_dir():
            assert m == 0o750, f"{p}: {oct(m)}"
        elif p.is_file():
            assert m & 0o040 and not m & 0o020, f"{p}: {oct(m)}"


def pj_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"jobs": JOBS}))
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != perms.SHARE_ENV}
    return subprocess.run(
        [str(Path(sys.executable).parent / "pj"), "run", str(jobs), "--workdir", "runs/wd", "--nodes", "1",
         "--cores", "2", "--quiet", "--tls", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=50, env={**base, **(env or {})},
    )


def test_pj_run_leaves_nothing_readable_by_others(tmp_path: Path) -> None:
    done = pj_run(tmp_path)
    assert done.returncode == 1, done.stderr  # "bad" failed
    workdir = tmp_path / "runs" / "wd"
    assert_private(workdir)
    assert stat.S_IMODE(os.stat(tmp_path / "runs").st_mode) == 0o700  # made by PJ too
    assert {"tls.key", "tls.crt"} <= {p.name for p in workdir.iterdir()}
    line = json.loads((workdir / "jobs.jsonl").read_text().splitlines()[-1])
    assert line["name"] == "bad" and len(line["attempts"]) == 2


def test_pj_run_share_group_lets_the_group_read_never_the_world(tmp_path: Path) -> None:
    done = pj_run(tmp_path, "--share-group")
    assert done.returncode == 1, done.stderr
    assert_group_shared(tmp_path / "runs" / "wd")


def test_pj_share_env_and_a_bad_value(tmp_path: Path) -> None:
    assert pj_run(tmp_path, env={perms.SHARE_ENV: "group"}).returncode == 1
    assert_group_shared(tmp_path / "runs" / "wd")
    bad = pj_run(tmp_path, env={perms.SHARE_ENV: "world"})
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "PJ_SHARE='world'" in bad.stderr


@pytest.mark.parametrize("share", [False, True])
def test_local_cluster_leaves_nothing_readable_by_others(tmp_path: Path, share: bool) -> None:
    workdir = tmp_path / "wd"
    with LocalCluster(nodes=2, cores=1, workdir=workdir, share_group=share) as cluster, cluster.client() as pj:
        pj.submit(JOBS)
        assert pj.wait() == {"ok": "SUCCEED", "bad": "FAILED"}
    if share:
        assert_group_shared(workdir)
    else:
        assert_private(workdir)


def test_an_existing_workdir_and_older_files_are_tightened(tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    workdir.mkdir(mode=0o777)
    os.chmod(workdir, 0o777)
    (workdir / "master.log").write_text("from an earlier run\n")
    os.chmod(workdir / "master.log", 0o666)
    with LocalCluster(nodes=1, cores=1, workdir=workdir) as cluster, cluster.client() as pj:
        pj.submit(JOBS[:1])
        assert pj.wait() == {"ok": "SUCCEED"}
    assert_private(workdir)
