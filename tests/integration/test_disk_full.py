"""A full disk under the workdir (issue 13, item 4), for real: a 2 MB tmpfs filled with a file.

A Submit that cannot be journaled is refused and nothing of it is kept; a pass whose journal write
fails pauses dispatch (a notice) and resumes once space is freed; every job ends right; a report
that cannot be written at the end makes the master exit 3 with no jobs.jsonl. Needs root (mount);
under CI=true a skip is a failure."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pj.client.errors import PJError
from pj.common.workdir import REPORT_NOT_WRITTEN_EXIT


def _cluster_class(config: pytest.Config) -> Any:
    """tests/conftest.py's Cluster (a real master and agents), taken from the loaded conftest."""
    for plugin in config.pluginmanager.get_plugins():
        if hasattr(plugin, "Cluster") and getattr(plugin, "__file__", "").endswith("conftest.py"):
            return plugin.Cluster
    raise AssertionError("tests/conftest.py's Cluster was not loaded")

def _skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the disk-full test cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        _skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        _skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> Path:
    """Fill the file system to the last byte with one file."""
    path = mnt / "filler"
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    return path


def wait_for(what: str, check, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_full_disk_refuses_submits_pauses_dispatch_and_resumes(tiny_fs: Path, request: pytest.FixtureRequest) -> None:
    wd = tiny_fs / "run"
    wd.mkdir()
    c = _cluster_class(request.config)(wd, nodes=1, cores=2, master_args=["--no-prefetch"])  # nothing sent ahead
    try:
        cl = c.client()
        jobs = [{"name": f"s{i}", "exec": "/bin/sleep", "args": ["1"], "cores": 1} for i in range(4)]
        cl.submit(jobs)
        wait_for("the first two to run", lambda: cl.status().tasks.get("EXECUTING", 0) == 2)
        filler = fill(tiny_fs)

        big = [{"name": f"late{i}", "exec": "/bin/true", "args": ["x" * 200]} for i in range(300)]
        with pytest.raises(PJError) as refused:
            cl.submit(big)
        journal = wd / "journal.db"
        assert str(refused.value) == (
            f"no space left on {journal}: the submission was not kept; free space and submit again")
        assert sorted(j.name for j in cl.list()) == [f"s{i}" for i in range(4)]  # nothing of it kept

        # The first two end; the pass that journals their ends (and places the next two) cannot be
        # written: dispatch pauses, nothing more is launched.
        wait_for("the pause notice", lambda: any(n.startswith("dispatch paused") for n in cl.status().notices))
        paused = next(n for n in cl.status().notices if n.startswith("dispatch paused"))
        assert paused.startswith(f"dispatch paused: cannot write {journal}: no space left on device;")
        time.sleep(1.5)  # s2 and s3 would have run by now
        st = cl.status()
        assert st.tasks.get("EXECUTING", 0) == 0 and st.jobs_unfinished == 2

        filler.unlink()
        wait_for("every job to end", lambda: cl.status().jobs_unfinished == 0)
        notices = cl.status().notices
        assert any(n.startswith(f"dispatch resumed: {journal} written again after ") for n in notices)
        assert {j.state for j in cl.list()} == {"SUCCEED"}

        # Every end is journaled; now the report cannot be written: exit 3, no jobs.jsonl.
        filler = fill(tiny_fs)
        cl.finish()
        assert c.master.wait(30) == REPORT_NOT_WRITTEN_EXIT
        assert not (wd / "jobs.jsonl").exists() and not (wd / "jobs.jsonl.tmp").exists()
    finally:
        c.stop()
