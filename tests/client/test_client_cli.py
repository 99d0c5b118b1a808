"""`pj` and `pj-submit`, called in-process against a real gRPC server (a fake master)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pj.client.cli import pj_main, submit_main
from pj.client.formats import table
from pj.client.run import Campaign
from pj.common.workdir import write_master_info

sys.path.insert(0, str(Path(__file__).parent))  # the fakes module beside this file
from test_client_fakes import FAKE_AGENT, QCG_FILE, S, closed_port
from test_client_fakes import Running as Master

FAKES = Path(__file__).with_name("test_client_fakes.py")


@pytest.fixture
def master(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Master]:
    monkeypatch.delenv("PJ_WORKDIR", raising=False)
    monkeypatch.delenv("PJ_MASTER", raising=False)
    m = Master(tmp_path / "wd")
    yield m
    m.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str, main=pj_main) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pj: ") and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- queries


def test_status_human_and_json(master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    master.fake.add("a", S.JOB_STATE_SUCCEED)
    master.fake.add("b")
    wd = str(master.workdir)
    rc, out, _ = run(capsys, "status", "--workdir", wd)
    assert rc == 0
    assert "2, 1 unfinished: QUEUED 1, SUCCEED 1" in out and "up 1:15" in out
    rc, out, _ = run(capsys, "--workdir", wd, "status", "--json")  # the option works before the command too
    assert rc == 0 and json.loads(out)["jobs"] == {"QUEUED": 1, "SUCCEED": 1}


def test_list_table_filter_and_json(master: Master, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PJ_WORKDIR", str(master.workdir))
    master.fake.add("short", S.JOB_STATE_SUCCEED)
    master.fake.add("a-much-longer-name", S.JOB_STATE_FAILED, "exit code 3\nand more", iterations=4)
    master.fake.set_state("a-much-longer-name", S.JOB_STATE_FAILED, "exit code 3\nand more")
    master.fake.add("third")
    rc, out, _ = run(capsys, "list")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "ITERATIONS", "REASON"]
    assert lines[1].index("SUCCEED") == lines[2].index("FAILED") == lines[0].index("STATE")
    assert "4/4 (4 failed)  exit code 3 and more" in lines[2]
    rc, out, _ = run(capsys, "list", "--state", "FAILED")
    assert rc == 0 and [ln.split()[0] for ln in out.splitlines()[1:]] == ["a-much-longer-name"]
    rc, out, _ = run(capsys, "list", "--state", "queued,succeed", "--json")
    assert rc == 0 and [j["name"] for j in json.loads(out)] == ["short", "third"]
    rc, out, err = run(capsys, "list", "--state", "DONE")
    assert rc == 2 and "unknown state 'DONE'" in one_error_line(err)
    rc, out, _ = run(capsys, "list", "--state", "OMITTED")
    assert rc == 0 and out == "no jobs\n"


def test_info_and_unknown_job(master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    master.fake.add("sim", S.JOB_STATE_SUCCEED, iterations=2)
    wd = str(master.workdir)
    rc, out, _ = run(capsys, "info", "sim", "--tasks", "--workdir", wd)
    assert rc == 0
    assert "job sim" in out and "state       SUCCEED" in out and "QUEUED" in out
    assert "sim:0" in out and "node0[0-2,5] gpu[1]" in out
    rc, out, _ = run(capsys, "info", "sim", "--json", "--workdir", wd)
    assert json.loads(out)[0]["summary"]["name"] == "sim"
    rc, out, err = run(capsys, "info", "sim", "ghost", "--workdir", wd)
    assert rc == 2 and one_error_line(err) == "pj: no job named 'ghost'" and out == ""


def test_cancel_finish_resources(master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    master.fake.add("a", S.JOB_STATE_EXECUTING)
    master.fake.add("b", S.JOB_STATE_SUCCEED)
    wd = str(master.workdir)
    rc, out, _ = run(capsys, "cancel", "a", "b", "--workdir", wd)
    assert rc == 0 and out == "canceled: a\nalready finished: b\n"
    rc, out, _ = run(capsys, "resources", "--workdir", wd)
    assert rc == 0 and out.splitlines()[1].split() == ["node0", "yes", "3/4", "1/2", "6.0", "GiB/8.0", "GiB", "-"]
    assert "1 node online of 2 expected" in out
    rc, out, _ = run(capsys, "resources", "--json", "--workdir", wd)
    assert json.loads(out)["nodes"][0]["gpus"] == ["0", "1"]
    rc, out, _ = run(capsys, "finish", "--cancel", "--workdir", wd)
    assert rc == 0 and "cancels every job" in out
    rc, out, _ = run(capsys, "finish", "--workdir", wd)
    assert master.fake.finishes == [False, True]


def test_status_shows_notices_and_resources_the_missing_nodes(master: Master,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    master.fake.notice("node(s) n3 did not register within 60 s; going on with 1 of 2 nodes")
    master.fake.nodes_missing = ["n3"]
    wd = str(master.workdir)
    rc, out, _ = run(capsys, "status", "--workdir", wd)
    assert rc == 0 and "notice  node(s) n3 did not register within 60 s; going on with 1 of 2 nodes" in out
    rc, out, _ = run(capsys, "status", "--json", "--workdir", wd)
    assert json.loads(out)["notices"] == ["node(s) n3 did not register within 60 s; going on with 1 of 2 nodes"]
    rc, out, _ = run(capsys, "resources", "--workdir", wd)
    lines = out.splitlines()
    assert rc == 0 and lines[2].split() == ["n3", "missing", "-", "-", "-", "-"]
    assert "1 node online of 2 expected, 1 missing (n3), 3 cores free" in lines[-1]
    rc, out, _ = run(capsys, "resources", "--json", "--workdir", wd)
    assert json.loads(out)["nodes_missing"] == ["n3"]


def test_wait_exit_codes_and_timeout(master: Master, capsys: pytest.CaptureFixture[str]) -> None:
    fake = master.fake
    for n in ("a", "b", "c"):
        fake.add(n)
    wd = str(master.workdir)
    fake.set_later(0.2, "a", S.JOB_STATE_SUCCEED)
    rc, out, _ = run(capsys, "wait", "a", "--workdir", wd, "--timeout", "20")
    assert rc == 0 and out == "1 job finished: SUCCEED 1\n"
    rc, out, err = run(capsys, "wait", "b", "--workdir", wd, "--timeout", "0.3")
    assert rc == 1 and "waited 0.3 s: 1 of 1 jobs still unfinished" in one_error_line(err)
    fake.set_later(0.2, "b", S.JOB_STATE_FAILED, "exit code 1")
    fake.set_later(0.3, "c", S.JOB_STATE_SUCCEED)
    rc, out, _ = run(capsys, "wait", "--workdir", wd, "--timeout", "1m")
    assert rc == 1 and "3 jobs finished: SUCCEED 2, FAILED 1" in out and "b     FAILED" in out
    rc, out, err = run(capsys, "wait", "--workdir", wd, "--timeout", "soon")
    assert rc == 2 and "--timeout" in one_error_line(err)


# ---------------------------------------------------------------- errors


def test_connection_errors_are_one_line(master: Master, capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    rc, _, err = run(capsys, "status")
    assert rc == 2 and "no master given" in one_error_line(err)
    rc, _, err = run(capsys, "status", "--master", master.address)
    assert rc == 2 and "needs the token" in one_error_line(err)
    rc, _, err = run(capsys, "status", "--workdir", str(tmp_path / "empty"))
    assert rc == 1 and "no master runs in" in one_error_line(err)
    bad = tmp_path / "bad-token"
    bad.write_text("wrong\n")
    rc, _, err = run(capsys, "status", "--master", master.address, "--token-file", str(bad))
    assert rc == 1 and "refused the token" in one_error_line(err)
    rc, out, _ = run(capsys, "status", "--master", master.address, "--token-file", str(master.workdir / "token"))
    assert rc == 0 and "jobs    0" in out
    dead = tmp_path / "dead"
    dead.mkdir()
    write_master_info(dead, {"address": f"127.0.0.1:{closed_port()}"})
    (dead / "token").write_text("t\n")
    for argv in (["list"], ["wait", "--reconnect-timeout", "0.3"], ["finish"]):
        rc, _, err = run(capsys, *argv, "--workdir", str(dead))
        assert rc == 1 and one_error_line(err).startswith("pj: no master answers at 127.0.0.1:")
        if argv[0] == "wait":  # it looked for the master again for 0.3 s
            assert "no master came back within" in err and "(reconnect_timeout 0.3s)" in err, err


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["bogus"], ["info"], ["run"], ["run", "f.json", "--nodes", "0"], ["list", "--nope"]):
        rc, _, err = run(capsys, *argv)
        assert rc == 2, argv
        one_error_line(err)
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "run" in out and "resources" in out


# ---------------------------------------------------------------- pj-submit


def test_submit_file_and_command(master: Master, capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    wd = str(master.workdir)
    f = tmp_path / "jobs.json"
    f.write_text(json.dumps({"jobs": [{"name": "a", "exec": "/bin/true"}, {"name": "b", "exec": "x"}]}))
    rc, out, _ = run(capsys, "--workdir", wd, str(f), main=submit_main)
    assert rc == 0 and out == "a\nb\n"
    assert master.fake.submits[0].base_dir == str(tmp_path)
    rc, out, _ = run(capsys, "--workdir", wd, "--name", "echo1", "--cores", "2:4", "--after", "a", "b",
                     "--env", "X=1", "Y=2", "--iterations", "3", "--walltime", "10m", "--retries", "1",
                     "--", "/bin/echo", "--workdir", "-n", main=submit_main)
    assert rc == 0 and out == "echo1\n"
    spec = master.fake.submits[1].jobs[0]
    assert spec.exec == "/bin/echo" and list(spec.args) == ["--workdir", "-n"]
    assert (spec.cores.min, spec.cores.max, spec.iterations.stop) == (2, 4, 3)
    assert list(spec.after) == ["a", "b"] and dict(spec.env) == {"X": "1", "Y": "2"}
    assert spec.walltime_s == 600 and spec.retries == 1
    rc, out, _ = run(capsys, "--workdir", wd, "--", "/bin/true", main=submit_main)
    assert rc == 0 and out.startswith("true-")


def test_submit_prints_file_warnings_on_stderr(master: Master, capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    f = tmp_path / "qcg.json"
    f.write_text(json.dumps([*QCG_FILE, {"request": "control", "command": "finishAfterAllTasksDone"}]))
    rc, out, err = run(capsys, "--workdir", str(master.workdir), str(f), main=submit_main)
    assert rc == 0 and out == "q\n"
    assert all(line.startswith("pj: warning: ") for line in err.splitlines()) and "'extra' ignored" in err
    assert "pj wait && pj finish" in err


def test_submit_errors_are_one_line(master: Master, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    wd = str(master.workdir)
    bad = tmp_path / "bad.json"
    bad.write_text('{"jobs": [{"name": "a"}]}')
    cases = [
        ([str(bad)], "'a'"),
        ([str(tmp_path / "missing.json")], "cannot read"),
        ([], "give a job file"),
        (["/bin/echo", "hi"], "put it after --"),
        (["--cores", "2", str(bad)], "only for a command"),
        (["--cores", "x", "--", "/bin/true"], "--cores"),
        (["--env", "NOEQUALS", "--", "/bin/true"], "--env"),
        (["--"], "nothing after --"),
        (["--retries", "-1", "--", "/bin/true"], "--retries"),
    ]
    for argv, words in cases:
        rc, out, err = run(capsys, "--workdir", wd, *argv, main=submit_main)
        assert rc == 2 and out == "", argv
        assert words in one_error_line(err), (argv, err)
    rc, _, _ = run(capsys, "--workdir", wd, "--name", "dup", "--", "/bin/true", main=submit_main)
    rc, _, err = run(capsys, "--workdir", wd, "--name", "dup", "--", "/bin/true", main=submit_main)
    assert rc == 2 and "a job with this name exists" in one_error_line(err)
    assert len(master.fake.submits) == 1


# ---------------------------------------------------------------- pj run (with a fake master)


def fake_master_cmd(workdir: Path, options: Sequence[str]) -> list[str]:
    return [sys.executable, str(FAKES), "--workdir", str(workdir), *options]


def fake_agent_cmd(workdir: Path, index: int, cores: int, gpus: int | None) -> list[str]:
    return [sys.executable, "-c", FAKE_AGENT, str(workdir)]


def campaign(tmp_path: Path, jobs: list[dict[str, object]], **kw: object) -> Campaign:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"jobs": jobs}))
    opts: dict[str, object] = dict(workdir=tmp_path / "wd", master_cmd=fake_master_cmd, agent_cmd=fake_agent_cmd,
                                   quiet=True, exit_timeout=20.0, env={})  # env: never Slurm mode here
    opts.update(kw)
    return Campaign(f, **opts)  # type: ignore[arg-type]


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pj-watch" and t.is_alive()]


def test_run_refuses_bad_input_and_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text('{"jobs": [{"name": "a", "exec": "x", "after": ["zz"]}]}')
    rc, out, err = run(capsys, "run", "bad.json", "--workdir", "wd")
    assert rc == 2 and "zz" in one_error_line(err) and out == ""
    assert not (tmp_path / "wd").exists() and not (tmp_path / "pj-runs").exists()


def test_run_a_campaign_to_success(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = campaign(tmp_path, [{"name": "a", "exec": "/bin/true"}, {"name": "b", "exec": "/bin/true", "iterations": 3}],
                 nodes=2)
    assert c.run() == 0
    out, err = capsys.readouterr()
    assert "pj run finished: 2 jobs: SUCCEED 2" in out and "jobs.jsonl" in out
    assert err == ""
    wd = tmp_path / "wd"
    assert "fake master stopped" in (wd / "master.log").read_text()
    assert (wd / "agent-node1.log").exists()
    assert all(ch.proc.returncode == 0 for ch in [c.master, *c.agents])  # type: ignore[list-item]
    assert not watch_threads()  # the follower's pump thread was joined before run() returned


def test_run_reports_failures_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = campaign(tmp_path, [{"name": "ok", "exec": "/bin/true"}, {"name": "bad1", "exec": "/bin/false"}],
                 quiet=False)
    assert c.run() == 1
    out, err = capsys.readouterr()
    assert "FAILED 1" in out and "bad1" in out and "exit code 3" in out
    assert "2 jobs submitted" in err  # the progress (not a TTY) and the start message go to stderr


def test_run_shows_the_master_log_when_the_master_dies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def dying(workdir: Path, options: Sequence[str]) -> list[str]:
        return [sys.executable, "-c", "import sys; print('boom: bad things'); sys.exit(3)"]

    c = campaign(tmp_path, [{"name": "a", "exec": "/bin/true"}], master_cmd=dying)
    assert c.run() == 1
    _, err = capsys.readouterr()
    assert "the master exited with code 3" in err and "boom: bad things" in err
    # The agents start with the master (they wait for it); it died, so they were stopped too.
    assert c.agents and all(a.proc.returncode is not None for a in c.agents)


def test_run_reports_a_master_that_dies_midway(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = campaign(tmp_path, [{"name": "ok", "exec": "/bin/true"}, {"name": "crash", "exec": "/bin/true"}])
    assert c.run() == 1
    out, err = capsys.readouterr()
    assert "pj: the master exited with code 5" in err and "fake master: crashing" in err
    assert "pj run failed" in out
    assert all(a.proc.returncode is not None for a in c.agents)
    assert not watch_threads()  # joined on the way out of a failed run too


def test_run_stops_a_master_that_never_gets_ready(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def silent(workdir: Path, options: Sequence[str]) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    c = campaign(tmp_path, [{"name": "a", "exec": "/bin/true"}], master_cmd=silent, start_timeout=0.5)
    assert c.run() == 1
    _, err = capsys.readouterr()
    assert "the master did not start within 0.5 s" in one_error_line(err)
    assert c.master is not None and c.master.proc.returncode == -signal.SIGTERM


def test_run_cannot_start_the_master(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def missing(workdir: Path, options: Sequence[str]) -> list[str]:
        return [str(tmp_path / "no-such-program")]

    assert campaign(tmp_path, [{"name": "a", "exec": "/bin/true"}], master_cmd=missing).run() == 1
    _, err = capsys.readouterr()
    assert "cannot start the master" in one_error_line(err)


def test_run_refuses_a_workdir_with_a_live_master(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    write_master_info(wd, {"address": "127.0.0.1:1", "pid": os.getpid()})
    assert campaign(tmp_path, [{"name": "a", "exec": "/bin/true"}]).run() == 1
    _, err = capsys.readouterr()
    assert "already runs in" in one_error_line(err)


def test_run_sigterm_cancels_and_exits_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = campaign(tmp_path, [{"name": "hang", "exec": "/bin/sleep"}, {"name": "ok", "exec": "/bin/true"}])
    stop = threading.Event()

    def term_once_running() -> None:  # as `kill` would, once the hanging job runs
        while not stop.wait(0.05):
            if c.tracker.counts.get("EXECUTING"):
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=term_once_running, daemon=True).start()
    try:
        rc = c.run()
    finally:
        stop.set()
    out, err = capsys.readouterr()
    assert rc == 130, (out, err)
    assert "interrupted" in err and "pj run interrupted" in out and "CANCELED 1" in out
    assert c.master is not None and c.master.proc.returncode == 0
    assert signal.getsignal(signal.SIGTERM) is not None


def test_helpers() -> None:
    assert table(["A", "BB"], [["xxx", "y"]]) == ["A    BB", "xxx  y"]


def test_progress_rate_limits_and_formats() -> None:
    import io

    from pj.client.convert import JobSummary, WatchEvent
    from pj.client.progress import Progress, Tracker

    now = [100.0]
    tracker = Tracker()
    tracker.seed([JobSummary("a", "QUEUED"), JobSummary("b", "QUEUED")])
    tracker.apply(WatchEvent(changed=(JobSummary("a", "SUCCEED"),), watched_total=2, watched_unfinished=1,
                             tasks={"SUCCEED": 10}))
    assert tracker.job_counts() == {"QUEUED": 1, "SUCCEED": 1} and tracker.tasks_done == 10

    tty = io.StringIO()
    p = Progress(tracker, tty, tty=True, clock=lambda: now[0])
    now[0] += 2
    p.tick()
    p.tick()  # too soon: nothing
    assert tty.getvalue() == "\r[2.0s] jobs 1/2 done (QUEUED 1, SUCCEED 1) | tasks 10 done, 5.0/s\x1b[K"
    now[0] += 0.3
    p.tick()
    p.close()
    assert tty.getvalue().count("\r") == 3 and tty.getvalue().endswith("\n")

    plain = io.StringIO()
    p = Progress(tracker, plain, tty=False, clock=lambda: now[0])
    for _ in range(12):
        now[0] += 1
        p.tick()
    assert len(plain.getvalue().splitlines()) == 2  # one line per 5 s

    quiet = io.StringIO()
    p = Progress(tracker, quiet, quiet=True, clock=lambda: now[0])
    p.tick(force=True)
    p.close()
    assert quiet.getvalue() == ""


def test_resources_say_when_a_node_allocation_ends() -> None:
    from pj.client.commands import fmt_end

    now = 1_000_000.0
    assert fmt_end(0.0, now) == "-"
    assert fmt_end(now + 2400, now).endswith("(in 40:00)")
    assert fmt_end(now - 5, now).endswith("(ended)")
