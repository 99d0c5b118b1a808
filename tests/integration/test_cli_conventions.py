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
def test_wheel_ships_the_template_schemas_and_license(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (wheel,) = tmp_path.glob("pj-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(f"pj-{pj.__version__}.dist-info/METADATA").decode()
    assert "pj/client/pj.sbatch" in names
    assert {"pj/common/schemas/cli-output.v1.schema.json", "pj/common/schemas/jobs-line.v1.schema.json"} <= names
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
    # A job on both nodes: each agent has joined (and logged) before the run can end.
    (tmp_path / "j2.json").write_text('{"jobs": [{"name": "a", "exec": "/bin/true", "nodes": 2}]}')
    (tmp_path / "j.json").write_text('{"jobs": [{"name": "a", "exec": "/bin/true"}]}')
    r = cli("pj", "run", "j2.json", "--workdir", "wd", "--quiet", "--nodes", "2", "--cores", "1",
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


# ----------------------------------------------------------------- --json everywhere, pj submit, plurals

SCHEMAS = REPO / "common" / "schemas"


def validate(doc: object, kind: str) -> None:
    """``doc`` against the shipped schema's $defs entry ``kind`` (cli-output.v1)."""
    import jsonschema  # a dev/test dependency only: PJ never validates at run time

    schema = json.loads((SCHEMAS / "cli-output.v1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, {**schema, "$ref": f"#/$defs/{kind}"})


def as_json(r: subprocess.CompletedProcess[str], rc: int = 0) -> object:
    assert r.returncode == rc, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_json_before_or_after_every_command_and_errors_as_json(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = cluster_factory(nodes=1, cores=2)
    wd = str(c.workdir)
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"jobs": [{"name": "ok", "exec": "/bin/true"},
                                         {"name": "bad", "exec": "/bin/false"}]}))
    doc = as_json(cli("pj", "submit", "--workdir", wd, "--json", str(jobs), cwd=tmp_path))
    validate(doc, "submit")
    assert doc == {"submitted": ["ok", "bad"], "warnings": []}
    doc = as_json(cli("pj", "--json", "submit", "--workdir", wd, "--wait", "--name", "w", "--", "/bin/true"))
    validate(doc, "submit_wait")
    assert doc["submitted"] == ["w"] and doc["jobs"] == {"w": "SUCCEED"} and doc["all_succeeded"] is True
    doc = as_json(cli("pj-submit", "--workdir", wd, "--json", "--wait", "--name", "f", "--", "/bin/false"), rc=1)
    validate(doc, "submit_wait")
    assert doc["jobs"] == {"f": "FAILED"} and doc["counts"] == {"FAILED": 1}
    doc = as_json(cli("pj", "--json", "wait", "--workdir", wd), rc=1)  # 'bad' failed
    validate(doc, "wait")
    assert doc["jobs"]["ok"] == "SUCCEED" and doc["jobs"]["bad"] == "FAILED"
    for argv, kind in [
        (["pj", "--json", "status", "--workdir", wd], "status"),
        (["pj", "status", "--workdir", wd, "--json"], "status"),
        (["pj", "--json", "list", "--workdir", wd], "list"),
        (["pj", "info", "--workdir", wd, "ok", "bad", "--tasks", "--json"], "info"),
        (["pj", "resources", "--workdir", wd, "--json"], "resources"),
        (["pj", "--json", "top", "--workdir", wd], "top"),
        (["pj", "cancel", "--workdir", wd, "ok", "--json"], "cancel"),
        (["pj", "--json", "sbatch-template"], "sbatch_template"),
        (["pj", "completion", "bash", "--json"], "completion"),
    ]:
        validate(as_json(cli(*argv)), kind)
    assert as_json(cli("pj", "--json", "cancel", "--workdir", wd, "ok")) == {"canceled": [], "already_finished": ["ok"]}
    # errors: one JSON object on stdout, a non-zero exit
    for argv, rc, kind in [
        (["pj", "--json", "info", "--workdir", wd, "nosuch"], 2, "input"),
        (["pj", "info", "nosuch", "--json"], 2, "usage"),  # no master given
        (["pj", "--json", "status", "--workdir", str(tmp_path)], 1, "runtime"),  # no master there
        (["pj", "--json", "bogus"], 2, "usage"),
        (["pj-submit", "--json", "--workdir", wd, str(tmp_path / "missing.json")], 2, "usage"),
        (["pj", "--json", "run", str(tmp_path / "missing.json")], 2, "usage"),
    ]:
        doc = as_json(cli(*argv), rc=rc)
        validate(doc, "error")
        assert doc["kind"] == kind and doc["exit_code"] == rc and doc["error"], doc
    doc = as_json(cli("pj", "finish", "--workdir", wd, "--json"))
    validate(doc, "finish")
    assert c.wait_exit() == 0


def test_pj_submit_is_pj_submit_and_counts_read_as_english(cluster_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = cluster_factory(nodes=1, cores=2)
    wd = str(c.workdir)
    r = cli("pj", "submit", "--workdir", wd, "--name", "one", "--wait", "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "one\n1 job finished: SUCCEED 1\n"
    r = cli("pj", "submit", "--workdir", wd, "--name", "two", "--wait", "--", "/bin/sh", "-c", "exit 3")
    assert r.returncode == 1 and r.stdout.startswith("two\n1 job finished: FAILED 1\n"), r.stdout
    r = cli("pj", "wait", "--workdir", wd)
    assert r.returncode == 1 and r.stdout.startswith("2 jobs finished: SUCCEED 1, FAILED 1\n"), r.stdout
    r = cli("pj", "resources", "--workdir", wd)
    assert r.stdout.splitlines()[-1] == "1 node online of 1 expected, 2 cores free", r.stdout
    r = cli("pj", "submit", "--help")
    assert r.returncode == 0 and "--wait" in r.stdout and "pj submit" in r.stdout
    cli("pj", "finish", "--workdir", wd)
    assert c.wait_exit() == 0
    (tmp_path / "one.json").write_text('{"jobs": [{"name": "a", "exec": "/bin/true"}]}')
    r = cli("pj", "run", "one.json", "--workdir", "wd", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "pj: 1 job submitted;" in r.stderr and "pj run finished: 1 job: SUCCEED 1" in r.stdout


def test_pj_run_json_summary_follows_the_schema(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"jobs": [
        {"name": "ok", "exec": "/bin/true"},
        {"name": "bad", "script": "echo oops >&2; exit 4"},
        {"name": "it", "exec": "/bin/true", "iterations": 2},
    ]}))
    r = cli("pj", "run", "c.json", "--workdir", "wd", "--json", cwd=tmp_path)
    doc = as_json(r, rc=1)
    validate(doc, "run")
    assert doc["outcome"] == "finished" and doc["all_succeeded"] is False
    assert doc["jobs"] == {"SUCCEED": 2, "FAILED": 1} and doc["not_succeeded_total"] == 1
    assert doc["stderr_tail"]["task"] == "bad" and doc["stderr_tail"]["text"].strip() == "oops"
    assert doc["report"] == str(tmp_path / "wd" / "jobs.jsonl") and r.stderr == ""


def test_jobs_jsonl_follows_its_schema(tmp_path: Path) -> None:
    import jsonschema

    (tmp_path / "c.json").write_text(json.dumps({"jobs": [
        {"name": "ok", "exec": "/bin/true", "gpus": 1},
        {"name": "it", "script": "exit ${it}", "iterations": 2, "retries": 1},
        {"name": "after", "exec": "/bin/true", "after": ["it"]},
    ]}))
    r = cli("pj", "run", "c.json", "--workdir", "wd", "--quiet", "--gpus", "1", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    schema = json.loads((SCHEMAS / "jobs-line.v1.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    lines = [json.loads(line) for line in (tmp_path / "wd" / "jobs.jsonl").read_text().splitlines()]
    assert {rec["name"] for rec in lines} == {"ok", "it", "it:0", "it:1", "after"}
    for rec in lines:
        jsonschema.validate(rec, schema)
    assert any("attempts" in rec for rec in lines) and any("gpus" in rec for rec in lines)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish", "tcsh"])
def test_completion_scripts(shell: str, tmp_path: Path) -> None:
    r = cli("pj", "completion", shell)
    assert r.returncode == 0, r.stderr
    for word in ("submit", "status", "completion", *(("--workdir",) if shell != "tcsh" else ())):
        assert word in r.stdout, word  # shtab's tcsh script completes commands, not options
    checker = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}.get(shell)
    if checker and shutil.which(checker[0]):  # the shell itself reads it without a syntax error
        (tmp_path / "pj.comp").write_text(r.stdout)
        check = subprocess.run([*checker, str(tmp_path / "pj.comp")], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
    if shell == "bash":  # and completes: `pj sub<TAB>` offers submit
        script = tmp_path / "try.sh"
        script.write_text(f"source {tmp_path / 'pj.comp'}\nCOMP_WORDS=(pj sub); COMP_CWORD=1; COMP_LINE='pj sub'; "
                          "COMP_POINT=6\n_shtab_pj pj sub pj\necho \"${COMPREPLY[@]}\"\n")
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        assert "submit" in done.stdout.split(), done.stdout + done.stderr


def test_completion_costs_other_commands_nothing() -> None:
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "from pj.client import cli; cli.pj_parser()"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "shtab" not in r.stderr
    r = cli("pj", "completion", "powershell")
    assert r.returncode == 2 and "invalid choice" in r.stderr
