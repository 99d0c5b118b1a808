"""The conventions a new user expects, checked as they would check them: the installed commands run in
subprocesses (`--version`, `pj sbatch-template`, the packaging, the README's first command)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import pj

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def cli(*argv: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "PJ_"))}
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("command", ["pj", "pj-submit", "pj-master", "pj-agent"])
def test_every_command_answers_version(command: str) -> None:
    r = cli(command, "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{command} {pj.__version__}\n"


def test_one_version_source() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in meta["project"] and meta["project"]["dynamic"] == ["version"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pj.__version__"}


def test_sbatch_template_prints_the_shipped_script() -> None:
    r = cli("pj", "sbatch-template")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (REPO / "scripts" / "pj.sbatch").read_text()
    assert r.stdout.startswith("#!/bin/bash\n") and 'exec "$PJ" run "$@"' in r.stdout


def test_license_is_the_apache_text() -> None:
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 190
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()


def test_runtime_code_never_imports_psutil() -> None:
    for folder in ("master", "agent", "client", "common", "qcg", "proto"):
        for path in (REPO / folder).rglob("*.py"):
            assert "import psutil" not in path.read_text(), path


@pytest.mark.slow
def test_wheel_ships_the_template_and_license(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("pj-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(f"pj-{pj.__version__}.dist-info/METADATA").decode()
    assert "pj/client/pj.sbatch" in names
    assert any(n.endswith("dist-info/licenses/LICENSE") for n in names)
    runtime = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert runtime and not any("psutil" in line for line in runtime), runtime
    assert any("psutil" in line and 'extra == "dev"' in line for line in metadata.splitlines())
    assert f"Version: {pj.__version__}" in metadata


@pytest.mark.slow
def test_readme_first_command_leaves_git_status_clean(tmp_path: Path) -> None:
    """The README's first command, in a checkout: everything it writes lands in ignored folders."""
    readme = (REPO / "README.md").read_text()
    first = next(line for line in readme.splitlines() if line.startswith("python3 -m venv"))
    assert ". .venv/bin/activate" in first and first.endswith("pj run examples/campaign.json")
    checkout = tmp_path / "checkout"
    (checkout / "examples").mkdir(parents=True)
    shutil.copy(REPO / ".gitignore", checkout / ".gitignore")
    shutil.copy(REPO / "examples" / "campaign.json", checkout / "examples" / "campaign.json")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(checkout)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    r = cli("pj", "run", "examples/campaign.json", "--quiet", cwd=checkout, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (checkout / "pj-runs" / "campaign-out" / "summary.txt").read_text() == "".join(
        f"result of case {i}: a={i} b=0.5\n" for i in range(4))
    status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=all"], capture_output=True,
                            text=True, check=True)
    assert status.stdout == ""


def test_pj_run_log_level_and_json_format_reach_the_master_and_agents(tmp_path: Path) -> None:
    (tmp_path / "j.json").write_text('{"jobs": [{"name": "a", "exec": "/bin/true"}]}')
    r = cli("pj", "run", "j.json", "--workdir", "wd", "--quiet", "--nodes", "2", "--cores", "1",
            "--log-level", "debug", "--log-format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    iso_ms = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")
    for name in ("master.log", "agent-node0.log", "agent-node1.log"):
        records = [json.loads(line) for line in (tmp_path / "wd" / name).read_text().splitlines()]
        assert records and all(iso_ms.fullmatch(rec["timestamp"]) for rec in records), name
        assert any(rec["level"] == "debug" for rec in records), name  # --log-level debug got there
    r = cli("pj", "run", "j.json", "--workdir", "wd2", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    first = (tmp_path / "wd2" / "master.log").read_text().splitlines()[0]
    m = re.match(r"timestamp='([^']*)' level='info' event='master ready'", first)
    assert m and iso_ms.fullmatch(m.group(1)), first
    r = cli("pj-master", "--log-format", "xml")
    assert r.returncode == 2 and "--log-format" in r.stderr
