"""`pj top` against a real master and real agents: `--once` in a pipe, and the live view under tmux
as a person uses it (a detached tmux session of a fixed size, read with `capture-pane`, `q` typed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(90)

PJ = str(Path(sys.executable).parent / "pj")


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PJ_WORKDIR", "PJ_MASTER")}


def sleepers(n: int, seconds: float, prefix: str = "s") -> list[dict[str, Any]]:
    return [{"name": f"{prefix}{i}", "exec": "/bin/sleep", "args": [str(seconds)]} for i in range(n)]


def wait_for(what: Callable[[], Any], timeout: float = 30, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


def test_once_prints_one_plain_frame(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=2, cores=2)
    with c.client() as pj:
        pj.submit([
            {"name": "bad", "exec": "/bin/sh", "args": ["-c", "exit 3"]},
            {"name": "after-bad", "exec": "/bin/true", "after": ["bad"]},
            {"name": "sweep", "exec": "/bin/true", "iterations": 6},
            *sleepers(2, 60, "long"),
            *sleepers(3, 60, "waiting"),
        ])  # fmt: skip
        assert pj.wait(["bad", "after-bad", "sweep"], timeout=30) == {
            "bad": "FAILED", "after-bad": "OMITTED", "sweep": "SUCCEED"}  # fmt: skip
        # both nodes busy (work placed before the second node joined moves there within a second)
        assert wait_for(lambda: [n.cores_free for n in pj.resources().nodes] == [0, 0])
    r = subprocess.run([PJ, "top", "--once", "--workdir", str(c.workdir)], capture_output=True, text=True,
                       env=user_env(), timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "\x1b" not in out and r.stderr == ""
    lines = out.splitlines()
    address = json.loads((c.workdir / "master.json").read_text())["address"]
    assert lines[0].startswith(f"pj top  master {address}  up ")
    jobs = re.fullmatch(r"jobs    3/8 ended: (.*), SUCCEED 1, FAILED 1, OMITTED 1", lines[1])
    assert jobs, lines[1]  # the 5 sleepers: 4 run, 1 waits (QUEUED, or SCHEDULED behind a running one)
    assert sum(int(n) for n in re.findall(r"\d+", jobs[1])) == 5
    assert lines[2].startswith("tasks   7 of ~13 done: ")  # 1 + 6 iterations; 1 + 1 + 6 + 5 in all
    assert re.match(r"rate    - tasks/s \(last 10 s\), [\d.]+ overall   ETA \S+", lines[3]), lines[3]
    assert lines[4] == "nodes   2 online, cores 4/4 busy (100%)", out
    assert "  node0  [####] 2/2 cores" in lines and "  node1  [####] 2/2 cores" in lines
    fails = lines.index("failures, newest first (2 of 2)")
    assert lines[fails + 1 : fails + 3] == ["  after-bad  OMITTED  dependency bad FAILED", "  bad  FAILED  exit code 3"]

    # from anywhere: the address and the token file
    r = subprocess.run([PJ, "top", "--once", "--master", address, "--token-file", str(c.workdir / "token")],
                       capture_output=True, text=True, env=user_env(), timeout=30, cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].startswith("jobs    3/8 ended: ")


def test_a_pipe_gets_a_frame_per_interval_until_the_campaign_ends(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=2)
    with c.client() as pj:
        pj.submit(sleepers(4, 0.5))
        r = subprocess.run([PJ, "top", "--workdir", str(c.workdir), "--interval", "0.2"], capture_output=True,
                           text=True, env=user_env(), timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    frames = [f for f in r.stdout.split("\n\n") if f.strip()]
    assert len(frames) >= 3 and "\x1b" not in r.stdout
    assert all(f.startswith("pj top  master ") for f in frames)
    assert frames[-1].splitlines()[-1] == "campaign ended: all 4 jobs succeeded"
    assert "ETA done" in frames[-1]


# ---------------------------------------------------------------- under tmux, as a person uses it


class Tmux:
    """A tmux server of our own (its own socket): one detached session running a plain shell."""

    def __init__(self, cols: int = 100, rows: int = 30) -> None:
        self.socket = f"pjtest-{os.getpid()}-{time.monotonic_ns()}"  # under tmux's own socket folder
        env = {**user_env(), "PS1": "pjtest$ ", "TERM": "xterm-256color"}
        self.tmux("new-session", "-d", "-s", "t", "-x", str(cols), "-y", str(rows),
                  "env", f"PATH={Path(sys.executable).parent}:{os.environ['PATH']}", "PS1=pjtest$ ",
                  "bash", "--norc", "--noprofile", env=env)  # fmt: skip

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        r = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], capture_output=True, text=True,
                           env=env or user_env(), timeout=10)  # fmt: skip
        assert r.returncode == 0, f"tmux {args[0]}: {r.stderr}"
        return r.stdout

    def type(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def screen_when(self, ok: Callable[[str], bool], timeout: float) -> str | None:
        """The screen once ``ok(screen)``; None if it never was within ``timeout``."""
        return wait_for(lambda: next((s for s in [self.screen()] if ok(s)), None), timeout)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/run installs it): apt-get install tmux")
    t = Tmux()
    try:
        assert wait_for(lambda: "pjtest$" in t.screen(), 10), t.screen()
        yield t
    finally:
        t.kill()


def tasks_done(screen: str) -> int | None:
    m = re.search(r"^tasks   (\d+) (?:of ~\d+ )?done", screen, re.M)
    return int(m[1]) if m else None


def test_live_view_under_tmux_changes_and_q_quits(cluster_factory: Any, tmux: Tmux) -> None:
    c = cluster_factory(nodes=2, cores=2)
    with c.client() as pj:
        pj.submit([*sleepers(1, 120, "anchor"), *sleepers(30, 0.6)])  # runs ~6 s, then the anchor holds it open
        tmux.type(f"pj top --workdir {c.workdir}; echo rc=$?", "Enter")
        first = tmux.screen_when(lambda s: tasks_done(s) is not None and "nodes   2 online" in s, 20)
        assert first, tmux.screen()
        assert "q quits" in first and "pj top  master " in first.splitlines()[0]  # full screen: the frame at the top
        assert "pjtest$" not in first  # the alternate screen hides the shell
        assert re.search(r"^nodes   2 online, cores \d/4 busy", first, re.M)
        assert re.search(r"^  node0  \[[#.]{4}\] \d/2 cores", first, re.M)
        n0 = tasks_done(first)
        later = tmux.screen_when(lambda s: (tasks_done(s) or 0) > (n0 or 0), 20)
        assert later, f"the counts did not change:\n{tmux.screen()}"
        assert all(len(line) < 100 for line in later.splitlines())
        tmux.tmux("resize-window", "-t", "t", "-x", "50", "-y", "12")  # the frame follows the window
        small = tmux.screen_when(lambda s: s.count("\n") <= 12 and "  node0  [" in s and "q quits" in s, 10)
        assert small and all(len(line) < 50 for line in small.splitlines()), tmux.screen()
        assert re.search(r"^jobs    .{30,}(…|_)$", small, re.M), small  # redrawn: cut to the new width by pj top
        tmux.type("q")
        after = tmux.screen_when(lambda s: "rc=0" in s.split("\n"), 10)
        assert after, tmux.screen()
        assert "q quits" not in after and "pj top  master" not in after  # the normal screen is back
        assert after.rstrip().splitlines()[-1] == "pjtest$"  # and the shell prompt
        tmux.type("clear; stty -a | grep -cw -e -icanon -e -echo; echo stty-done", "Enter")
        shown = tmux.screen_when(lambda s: "stty-done" in s.split("\n"), 10)
        assert shown, tmux.screen()
        lines = shown.split("\n")
        assert lines[lines.index("stty-done") - 1] == "0", shown  # the terminal's modes are restored
        pj.cancel(["anchor0"])


def test_under_tmux_the_end_of_the_campaign_is_said_and_kept(cluster_factory: Any, tmux: Tmux) -> None:
    c = cluster_factory(nodes=1, cores=2)
    with c.client() as pj:
        pj.submit([*sleepers(4, 0.5), {"name": "bad", "exec": "/bin/sh", "args": ["-c", "sleep 1; exit 7"]}])
        tmux.type(f"pj top --workdir {c.workdir} --interval 0.5; echo rc=$?", "Enter")
        after = tmux.screen_when(lambda s: re.search(r"^rc=\d+$", s, re.M) is not None, 30)
    assert after, tmux.screen()
    assert "rc=1" in after.split("\n")  # a job failed
    assert "campaign ended: 5 jobs: SUCCEED 4, FAILED 1" in after  # the final frame stays on the normal screen
    assert "  bad  FAILED  exit code 7" in after and "q quits" not in after


def test_a_pipe_says_when_the_master_goes_away(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=1)
    with c.client() as pj:
        pj.submit(sleepers(1, 60))
    top = subprocess.Popen([PJ, "top", "--workdir", str(c.workdir), "--interval", "0.2"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=user_env())  # fmt: skip
    try:
        assert top.stdout is not None
        assert top.stdout.readline().startswith("pj top  master ")  # it runs
        c.master.kill()
        out, err = top.communicate(timeout=20)
    finally:
        if top.poll() is None:
            top.kill()
    assert top.returncode == 1 and err == ""
    assert out.rstrip().splitlines()[-1].startswith("the master went away before every job had ended: ")
