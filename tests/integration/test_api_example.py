"""examples/api_example.py runs as a user would run it, and does what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "api_example.py"

pytestmark = pytest.mark.timeout(60)


def run_example(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("PJ_WORKDIR", "PJ_MASTER")}
    return subprocess.run([sys.executable, str(EXAMPLE)], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=50)


def check_output(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "submitted: prep, sim, post, summary"
    assert lines[1] == ("final states: {'prep': 'SUCCEED', 'sim': 'SUCCEED', 'post': 'SUCCEED', "
                        "'summary': 'SUCCEED'}")
    assert "job sim: SUCCEED, 3/3 iterations" in lines
    assert "job post: SUCCEED, 3/3 iterations" in lines
    assert [line.split(",")[0] for line in lines if line.startswith("  task post:")] == [
        f"  task post:{i}: SUCCEED" for i in range(3)]
    assert "summary.txt: 6" in lines
    assert lines[-2:] == ["master and agent exit codes: 0 0",
                          "jobs.jsonl: 10 lines (one per job and per iteration)"]


def test_api_example_in_a_temporary_workdir(tmp_path: Path) -> None:
    check_output(run_example(tmp_path))
    assert list(tmp_path.iterdir()) == []  # it wrote nowhere else


def test_api_example_in_pj_workdir(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    check_output(run_example(tmp_path, PJ_WORKDIR=str(wd)))
    assert not (wd / "master.json").exists()
    report = [json.loads(line) for line in (wd / "jobs.jsonl").read_text().splitlines()]
    assert {r["name"]: r["state"] for r in report}["summary"] == "SUCCEED"
    assert (wd / "example-out" / "summary.txt").read_text() == "6\n"
    assert "master ready" in (wd / "master.log").read_text()
