"""Real processes: each task's rusage and a failed task's stderr tail reach jobs.jsonl, `pj info`
and `pj run`'s summary; exit 127 of a bare name present in the wd suggests ./name; a task writing
100 MB to stderr costs its agent no memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.timeout(120)

PY = sys.executable
# ~0.3 s of user CPU time (os.times: user time only, not the page faults of the 50 MB), 50 MB touched.
BURN = ("import os\nb = bytearray(50 << 20)\nt = os.times().user\n"
        "while os.times().user - t < 0.3:\n    pass\n")
BAD = "echo first-line >&2; echo 'Traceback: boom' >&2; exit 1"


def pj_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}  # local mode
    return subprocess.run([str(Path(sys.executable).parent / "pj"), "run", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=90, env=clean)


def report(workdir: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["name"]: r for r in map(json.loads, (workdir / "jobs.jsonl").read_text().splitlines())}


def write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_pj_run_keeps_rusage_and_tails_and_shows_the_first_tail(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    sim.write_text("#!/bin/sh\nexit 0\n")
    sim.chmod(0o755)
    f = write(tmp_path / "c.json", {"jobs": [
        {"name": "bad", "script": BAD},
        {"name": "ok", "script": "echo harmless >&2"},
        {"name": "burn", "exec": PY, "args": ["-c", BURN]},
        {"name": "sim127", "exec": "sim"},
        {"name": "withfile", "script": "echo from-the-file >&2; exit 2", "stderr": "err.txt"},
        {"name": "its", "script": "echo it-${it} >&2; exit ${it}", "iterations": 2},
    ]})
    r = pj_run(tmp_path, str(f), "--workdir", "wd", "--cores", "2", "--quiet")
    assert r.returncode == 1, r.stdout + r.stderr
    rep = report(tmp_path / "wd")

    assert rep["bad"]["state"] == "FAILED" and rep["bad"]["stderr_tail"] == "first-line\nTraceback: boom"
    assert "stderr_tail" not in rep["ok"] and rep["ok"]["state"] == "SUCCEED"
    assert rep["withfile"]["stderr_tail"] == "from-the-file"
    assert (tmp_path / "err.txt").read_text() == "from-the-file\n"
    assert rep["its:1"]["stderr_tail"] == "it-1" and "stderr_tail" not in rep["its:0"]

    burn = rep["burn"]
    assert burn["state"] == "SUCCEED", burn
    assert burn["cpu_user_s"] >= 0.2 and burn["max_rss_kb"] >= 40_000, burn
    assert burn["cpu_user_s"] < 30 and burn["max_rss_kb"] < 4_000_000, burn  # plausible, not garbage
    for name in ("bad", "ok", "its:0", "its:1"):  # every task that ran was measured
        assert rep[name]["max_rss_kb"] > 0, rep[name]

    reason = rep["sim127"]["reason"]
    assert rep["sim127"]["exit_code"] == 127
    assert f"command not found: 'sim' (there is ./sim in {tmp_path}" in reason and 'did you mean "./sim"?' in reason

    out = r.stdout
    failed_list = out.index("not succeeded")
    tail_at = out.index("stderr of bad (its last lines):")
    assert failed_list < tail_at < out.index("report:"), out
    assert "\n    first-line\n    Traceback: boom\n" in out


def test_pj_info_shows_usage_and_tails_and_a_chatty_task_costs_its_agent_no_memory(
    cluster_factory, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    c = cluster_factory(nodes=1, cores=2)
    agent = psutil.Process(c.agents[0].pid)
    with c.client() as pj:
        pj.submit([{"name": "warm", "exec": "/bin/true"}])
        pj.wait(["warm"])
        rss_before = agent.memory_info().rss
        chatty = ("head -c 100000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo LAST-LINE >&2; exit 3")
        pj.submit([{"name": "bad", "script": BAD}, {"name": "chatty", "script": chatty},
                   {"name": "ok", "script": "echo fine >&2"}])
        assert pj.wait(["bad", "chatty", "ok"]) == {"bad": "FAILED", "chatty": "FAILED", "ok": "SUCCEED"}
        rss_after = agent.memory_info().rss
        (chatty_info,) = pj.info(["chatty"])
    (task,) = chatty_info.tasks
    assert task.stderr_tail.endswith("\nLAST-LINE") and 4000 <= len(task.stderr_tail.encode()) <= 4096
    assert set(task.stderr_tail[:-len("\nLAST-LINE")].strip("\n")) == {"x"}
    assert task.cpu_user_s + task.cpu_system_s > 0 and task.max_rss_kb > 0
    assert rss_after - rss_before < 8 << 20, (rss_before, rss_after)  # the 100 MB never went through it

    pj_bin = str(Path(sys.executable).parent / "pj")
    text = subprocess.run([pj_bin, "info", "bad", "ok", "--workdir", str(c.workdir)],
                          capture_output=True, text=True, timeout=30)
    assert text.returncode == 0, text.stderr
    assert "CPU" in text.stdout and "MAX RSS" in text.stdout
    assert "  stderr of bad (its end):\n    first-line\n    Traceback: boom\n" in text.stdout
    assert "stderr of ok" not in text.stdout
    js = subprocess.run([pj_bin, "info", "bad", "ok", "--json", "--workdir", str(c.workdir)],
                        capture_output=True, text=True, timeout=30)
    infos = {i["summary"]["name"]: i for i in json.loads(js.stdout)}
    bad_task = infos["bad"]["tasks"][0]
    assert bad_task["stderr_tail"] == "first-line\nTraceback: boom" and bad_task["max_rss_kb"] > 0
    assert infos["ok"]["tasks"][0]["stderr_tail"] == "" and infos["ok"]["tasks"][0]["max_rss_kb"] > 0


def test_no_capture_file_is_left_behind(cluster_factory) -> None:  # type: ignore[no-untyped-def]
    """The captures are unnamed files: after many tasks, the agent holds none open and none has a name."""
    c = cluster_factory(nodes=1, cores=2)
    agent = psutil.Process(c.agents[0].pid)
    with c.client() as pj:
        pj.submit([{"name": "many", "script": "echo e-${it} >&2; exit $((${it} % 2))", "iterations": 50}])
        pj.wait(["many"])
        time.sleep(0.2)
        (info,) = pj.info(["many"], with_tasks=True)
    tails = {t.name: t.stderr_tail for t in info.tasks}
    assert tails["many:1"] == "e-1" and tails["many:0"] == "" and len(tails) == 50
    open_captures = [f.path for f in agent.open_files() if "(deleted)" in f.path or f.path.startswith("/tmp/#")]
    assert open_captures == []
