"""The service mode end to end: a real pj-master, real pj-agents, the real `pj` / `pj-submit` commands
and real gRPC, as a user drives them (`cluster_factory` in tests/conftest.py starts the processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from google.protobuf import message_factory

from pj.client import AuthError, Client
from pj.v1 import pj_pb2

pytestmark = pytest.mark.timeout(60)

BIN = Path(sys.executable).parent
PJ, PJ_SUBMIT = str(BIN / "pj"), str(BIN / "pj-submit")


# ---------------------------------------------------------------- helpers


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PJ_* left over from elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("PJ_WORKDIR", "PJ_MASTER")}
    env.update(extra)
    return env


def run(cmd: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cmd, *args], cwd=cwd, env=env or user_env(), capture_output=True, text=True,
                          timeout=timeout)


def pj(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run(PJ, *args, **kw)


def pj_submit(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run(PJ_SUBMIT, *args, **kw)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"rc={r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def pj_json(*args: str, **kw: Any) -> Any:
    return json.loads(ok(pj(*args, "--json", **kw)))


def eventually(check: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    """Poll ``check`` until it returns something true (no timing asserted: only a bound on hanging)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or check}")
        time.sleep(0.05)


def online(wd: Path, n: int) -> None:
    """Wait until n agents have registered with the master of ``wd``."""
    with Client(wd) as c:
        eventually(lambda: sum(node.online for node in c.resources().nodes) >= n, what=f"{n} agents")


def write_jobs(path: Path, jobs: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"jobs": jobs}))
    return path


def report(wd: Path) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in map(json.loads, (wd / "jobs.jsonl").read_text().splitlines())}


def gone(pid: int, created: float) -> bool:
    """The process is no more (a zombie waiting for a reaper counts as gone; so does a reused pid)."""
    try:
        p = psutil.Process(pid)
        return p.create_time() != created or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def group_members(pgid: int) -> list[int]:
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


# ---------------------------------------------------------------- submit, wait, query


def test_submit_wait_and_query(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=2, cores=2)
    wd = str(c.workdir)
    online(c.workdir, 2)
    f = write_jobs(tmp_path / "jobs.json", [
        {"name": "hello", "exec": "/bin/echo", "args": ["hi"], "stdout": "hello.out"},
        {"name": "two", "script": "cat hello.out > two.out", "after": ["hello"], "cores": 2},
    ])
    assert ok(pj_submit("--workdir", wd, str(f), cwd=tmp_path)).split() == ["hello", "two"]
    out = ok(pj_submit("--workdir", wd, "--name", "sweep", "--iterations", "4", "--cores", "1", "--",
                       "/bin/sh", "-c", "echo $PJ_ITERATION > out-$PJ_ITERATION", cwd=tmp_path))
    assert out.split() == ["sweep"]

    r = pj("wait", "--workdir", wd)
    assert ok(r).startswith("3 jobs finished: SUCCEED 3"), r.stdout
    assert (tmp_path / "hello.out").read_text() == "hi\n"
    assert (tmp_path / "two.out").read_text() == "hi\n"
    for i in range(4):
        assert (tmp_path / f"out-{i}").read_text() == f"{i}\n"

    st = pj_json("status", "--workdir", wd)
    assert st["jobs"] == {"SUCCEED": 3} and st["tasks"] == {"SUCCEED": 6}
    assert (st["jobs_total"], st["jobs_unfinished"], st["nodes"]) == (3, 0, 2)
    assert (st["cores_total"], st["cores_used"], st["finishing"]) == (4, 0, False)
    assert st["address"] == json.loads((c.workdir / "master.json").read_text())["address"]
    text = ok(pj("status", "--workdir", wd))
    assert "nodes   2, cores 0/4 in use" in text and "SUCCEED 3" in text

    listed = pj_json("list", "--workdir", wd, "--state", "SUCCEED")
    assert [(j["name"], j["state"]) for j in listed] == [("hello", "SUCCEED"), ("two", "SUCCEED"),
                                                         ("sweep", "SUCCEED")]
    assert listed[2]["iterations"] == listed[2]["iterations_done"] == 4
    assert pj_json("list", "--workdir", wd, "--state", "failed,CANCELED") == []
    assert ok(pj("list", "--workdir", wd, "--state", "FAILED")) == "no jobs\n"
    rows = ok(pj("list", "--workdir", wd)).splitlines()
    assert rows[0].split() == ["NAME", "STATE", "ITERATIONS", "REASON"]
    assert rows[3].split() == ["sweep", "SUCCEED", "4/4"]

    [info] = pj_json("info", "--workdir", wd, "sweep", "--tasks")
    assert info["summary"]["state"] == "SUCCEED"
    assert [h["state"] for h in info["history"]] == ["QUEUED", "SCHEDULED", "EXECUTING", "SUCCEED"]
    tasks = {t["name"]: t for t in info["tasks"]}
    assert sorted(tasks) == [f"sweep:{i}" for i in range(4)]
    assert all(t["exit_code"] == 0 and len(t["shares"]) == 1 and len(t["shares"][0]["cores"]) == 1
               for t in tasks.values())
    [two] = pj_json("info", "--workdir", wd, "two", "--tasks")
    assert two["tasks"][0]["shares"][0]["cores"] == [0, 1]  # two cores on one node
    text = ok(pj("info", "--workdir", wd, "hello"))
    assert text.splitlines()[:2] == ["job hello", "  state       SUCCEED"]

    res = pj_json("resources", "--workdir", wd)
    assert res["nodes_expected"] == 2
    assert sorted((n["name"], n["cores"], n["cores_free"], n["online"]) for n in res["nodes"]) == [
        ("node0", 2, 2, True), ("node1", 2, 2, True)]
    assert ok(pj("resources", "--workdir", wd)).splitlines()[-1] == "2 nodes online of 2 expected, 4 cores free"

    # PJ_WORKDIR in place of --workdir, for pj-submit and pj alike.
    env = user_env(PJ_WORKDIR=wd)
    assert ok(pj_submit("--name", "via-env", "--", "/bin/true", env=env)).split() == ["via-env"]
    assert ok(pj("wait", "via-env", env=env)).startswith("1 job finished: SUCCEED 1")
    assert pj_json("status", env=env)["jobs_total"] == 4
    # Without either, one line and exit 2.
    r = pj("status")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--workdir" in r.stderr


def test_dependencies_across_submissions(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1, cores=2)
    wd = str(c.workdir)
    ok(pj_submit("--workdir", wd, "--name", "first", "--", "/bin/sh", "-c", "sleep 0.5; touch first.done",
                 cwd=tmp_path))
    ok(pj_submit("--workdir", wd, "--name", "gen", "--iterations", "3", "--",
                 "/bin/sh", "-c", "sleep 0.2; touch gen-$PJ_ITERATION", cwd=tmp_path))
    # A later submission depends on jobs of the earlier ones: whole job, and per iteration.
    ok(pj_submit("--workdir", wd, "--name", "second", "--after", "first", "--",
                 "/bin/sh", "-c", "test -f first.done", cwd=tmp_path))
    ok(pj_submit("--workdir", wd, "--name", "use", "--iterations", "3", "--after", "gen:${it}", "--",
                 "/bin/sh", "-c", "test -f gen-$PJ_ITERATION", cwd=tmp_path))
    ok(pj("wait", "--workdir", wd))
    infos = {i["summary"]["name"]: i for i in pj_json("info", "--workdir", wd, "first", "second")}
    t = {n: {h["state"]: h["time"] for h in i["history"]} for n, i in infos.items()}
    assert t["second"]["SCHEDULED"] >= t["first"]["SUCCEED"]
    # An unknown dependency is refused by the master, and nothing is registered.
    r = pj_submit("--workdir", wd, "--name", "orphan", "--after", "nosuchjob", "--", "/bin/true")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nosuchjob" in r.stderr, r.stderr
    assert len(pj_json("list", "--workdir", wd)) == 4


# ---------------------------------------------------------------- cancel and finish


def _sleeper(tmp_path: Path, wd: str, name: str, script: str) -> tuple[int, list[tuple[int, float]]]:
    """Submit a task that writes its pid and starts children; return its pid and its processes."""
    ok(pj_submit("--workdir", wd, "--name", name, "--", "/bin/sh", "-c", f"echo $$ > {name}.pid; {script}",
                 cwd=tmp_path))
    pidfile = tmp_path / f"{name}.pid"
    pid = int(eventually(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the pid file"))
    sh = psutil.Process(pid)
    kids = eventually(lambda: len(sh.children()) == 2 and sh.children(), what="the task's children")
    assert os.getpgid(pid) == pid  # the task leads its own process group
    procs = [(p.pid, p.create_time()) for p in [sh, *kids]]
    assert all(os.getpgid(p) == pid for p, _ in procs)
    return pid, procs


def test_cancel_kills_the_task_and_its_children(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1, cores=2)
    wd = str(c.workdir)
    pid, procs = _sleeper(tmp_path, wd, "sleeper", "sleep 60 & sleep 60; wait")
    assert ok(pj("cancel", "--workdir", wd, "sleeper")) == "canceled: sleeper\n"
    # SIGTERM goes to the whole group; SIGKILL follows after the agent's kill grace (5 s).
    eventually(lambda: all(gone(p, t) for p, t in procs), timeout=5 + 3, what="every process to end")
    assert group_members(pid) == []
    r = pj("wait", "--workdir", wd, "sleeper")
    assert r.returncode == 1 and "CANCELED" in r.stdout
    [info] = pj_json("info", "--workdir", wd, "sleeper", "--tasks")
    assert info["summary"]["state"] == "CANCELED"
    assert info["tasks"][0]["state"] == "CANCELED" and info["tasks"][0]["exit_code"] == -15
    # Canceling again is no error: the job has already finished.
    assert ok(pj("cancel", "--workdir", wd, "sleeper")) == "already finished: sleeper\n"
    r = pj("cancel", "--workdir", wd, "nosuchjob")
    assert r.returncode == 2 and r.stderr == "pj: no job named 'nosuchjob'\n"


def test_cancel_kills_a_task_that_ignores_sigterm(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=0, expect=False)
    c.add_agent("node0", 2, "--kill-grace", "0.5")
    wd = str(c.workdir)
    pid, procs = _sleeper(tmp_path, wd, "stubborn", "trap '' TERM; sleep 60 & sleep 60; wait")
    ok(pj("cancel", "--workdir", wd, "stubborn"))
    eventually(lambda: all(gone(p, t) for p, t in procs), timeout=0.5 + 5, what="SIGKILL after the grace")
    assert group_members(pid) == []
    with Client(wd) as cl:
        assert cl.wait("stubborn", timeout=20) == {"stubborn": "CANCELED"}
        assert cl.info("stubborn", with_tasks=True)[0].tasks[0].exit_code == -9


def test_a_stopped_agent_kills_its_tasks_and_leaves(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1, cores=1)
    wd = str(c.workdir)
    _, procs = _sleeper(tmp_path, wd, "sleeper", "sleep 60 & sleep 60; wait")
    [agent] = c.agents
    agent.terminate()
    # The agent kills the task, reports it, closes its stream and exits 128 + SIGTERM: it does not
    # wait for the master (whose heartbeat is 10 s) to time out on it.
    assert agent.wait(8) == 128 + 15, (c.workdir / "agent-node0.log").read_text()
    assert all(gone(p, t) for p, t in procs)
    with Client(wd) as cl:
        assert cl.wait("sleeper", timeout=10) == {"sleeper": "FAILED"}
        assert cl.info("sleeper")[0].summary.reason == "killed by signal 15"
        assert [(n.name, n.online) for n in cl.resources().nodes] == [("node0", False)]
    assert "lost the master" not in (c.workdir / "agent-node0.log").read_text()


def test_finish_after_the_work_ends(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=2, cores=1)
    wd = str(c.workdir)
    online(c.workdir, 2)
    ok(pj_submit("--workdir", wd, "--name", "one", "--", "/bin/true", cwd=tmp_path))
    ok(pj_submit("--workdir", wd, "--name", "many", "--iterations", "3", "--after", "one", "--",
                 "/bin/sh", "-c", "exit $PJ_ITERATION", cwd=tmp_path))
    assert pj("wait", "--workdir", wd).returncode == 1  # many:1 and many:2 fail
    r = pj("finish", "--workdir", wd)
    assert "stops once every job has ended" in ok(r)
    assert c.wait_exit(20) == 0
    assert [p.returncode for p in c.procs] == [0, 0, 0]  # the master and both agents
    assert not (c.workdir / "master.json").exists()

    lines = (c.workdir / "jobs.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 1 + 3  # one per job, one per iteration
    rep = report(c.workdir)
    assert all({"name", "state", "exit_code", "nodes", "cores", "times"} <= set(r) for r in rep.values())
    assert rep["one"]["state"] == "SUCCEED" and rep["one"]["exit_code"] == 0
    assert rep["one"]["nodes"][0] in ("node0", "node1") and len(rep["one"]["cores"]) == 1
    assert rep["many"]["state"] == "FAILED" and rep["many"]["iterations"] == 3
    assert (rep["many"]["succeeded"], rep["many"]["failed"]) == (1, 2)
    for i in range(3):
        it = rep[f"many:{i}"]
        assert (it["job"], it["iteration"], it["exit_code"]) == ("many", i, i)
        assert it["state"] == ("SUCCEED" if i == 0 else "FAILED")
        assert len(it["nodes"]) == 1 and list(it["cores"]) == it["nodes"]
        times = it["times"]
        assert list(times) == ["QUEUED", "SCHEDULED", "EXECUTING", it["state"]]
        assert times["QUEUED"] <= times["SCHEDULED"] <= times["EXECUTING"] <= times[it["state"]]
        assert times["SCHEDULED"] >= rep["one"]["times"]["SUCCEED"]
    # The master has gone: the CLI says so in one line.
    r = pj("status", "--workdir", wd)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no master runs" in r.stderr


def test_finish_cancel_stops_running_work(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1, cores=1)
    wd = str(c.workdir)
    _, procs = _sleeper(tmp_path, wd, "sleepy", "sleep 60 & sleep 60; wait")
    ok(pj_submit("--workdir", wd, "--name", "queued", "--", "/bin/true"))  # waits for the core
    r = pj("finish", "--workdir", wd, "--cancel")
    assert "cancels every job" in ok(r)
    assert c.wait_exit(20) == 0
    assert [p.returncode for p in c.procs] == [0, 0]
    assert all(gone(p, t) for p, t in procs)
    rep = report(c.workdir)
    assert rep["sleepy"]["state"] == "CANCELED" and rep["sleepy"]["exit_code"] == -15
    assert rep["queued"]["state"] == "CANCELED" and rep["queued"]["exit_code"] is None
    assert not (c.workdir / "master.json").exists()


def test_finishing_master_refuses_new_jobs(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1, cores=1)
    wd = str(c.workdir)
    ok(pj_submit("--workdir", wd, "--name", "slow", "--", "/bin/sleep", "60"))
    ok(pj("finish", "--workdir", wd))
    assert pj_json("status", "--workdir", wd)["finishing"] is True
    r = pj_submit("--workdir", wd, "--name", "late", "--", "/bin/true")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "finishing" in r.stderr, r.stderr
    assert c.master.poll() is None  # still draining: slow runs
    ok(pj("cancel", "--workdir", wd, "slow"))
    assert c.wait_exit(20) == 0
    assert {n: r["state"] for n, r in report(c.workdir).items()} == {"slow": "CANCELED"}


def test_retries_and_walltime(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1, cores=2)
    wd = str(c.workdir)
    # Fails on its first two attempts (it counts them in a file), succeeds on the third.
    flaky = 'n=$(cat tries 2>/dev/null || echo 0); echo $((n + 1)) > tries; test "$n" -ge 2'
    ok(pj_submit("--workdir", wd, "--name", "flaky", "--retries", "2", "--", "/bin/sh", "-c", flaky, cwd=tmp_path))
    ok(pj_submit("--workdir", wd, "--name", "hopeless", "--retries", "1", "--", "/bin/sh", "-c",
                 "echo x >> hopeless.log; exit 3", cwd=tmp_path))
    ok(pj_submit("--workdir", wd, "--name", "slow", "--walltime", "1s", "--", "/bin/sleep", "60", cwd=tmp_path))
    with Client(wd) as cl:
        assert cl.wait(timeout=30) == {"flaky": "SUCCEED", "hopeless": "FAILED", "slow": "FAILED"}
        [flaky_info, hopeless, slow] = cl.info(["flaky", "hopeless", "slow"])
    assert (tmp_path / "tries").read_text() == "3\n"
    assert flaky_info.tasks[0].exit_code == 0 and flaky_info.summary.iterations_failed == 0
    assert (tmp_path / "hopeless.log").read_text() == "x\nx\n"  # one retry, no more
    assert hopeless.summary.reason == "exit code 3" and hopeless.tasks[0].exit_code == 3
    assert slow.summary.reason.startswith("walltime 1s exceeded: killed"), slow.summary.reason
    assert pj_json("status", "--workdir", wd)["tasks"] == {"SUCCEED": 1, "FAILED": 5}  # every attempt


# ---------------------------------------------------------------- errors


def test_duplicate_name_is_refused_and_nothing_is_registered(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1)
    wd = str(c.workdir)
    ok(pj_submit("--workdir", wd, "--name", "taken", "--", "/bin/true"))
    f = write_jobs(tmp_path / "dup.json", [{"name": "fresh", "exec": "/bin/true"},
                                           {"name": "taken", "exec": "/bin/true"}])
    r = pj_submit("--workdir", wd, str(f))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("pj: "), r.stderr
    assert "'taken'" in r.stderr and "field 'name'" in r.stderr
    assert [j["name"] for j in pj_json("list", "--workdir", wd)] == ["taken"]
    # The same from the command line.
    r = pj_submit("--workdir", wd, "--name", "taken", "--", "/bin/true")
    assert r.returncode == 2 and "'taken'" in r.stderr and "field 'name'" in r.stderr


def test_unknown_job(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1)
    for args in (["info", "nosuchjob"], ["wait", "nosuchjob"]):
        r = pj(*args, "--workdir", str(c.workdir))
        assert (r.returncode, r.stdout, r.stderr) == (2, "", "pj: no job named 'nosuchjob'\n"), args
    r = pj("info", "--json", "nosuchjob", "--workdir", str(c.workdir))  # under --json: a JSON object
    assert (r.returncode, r.stderr) == (2, "")
    assert json.loads(r.stdout) == {"error": "no job named 'nosuchjob'", "kind": "input", "exit_code": 2}


def test_wrong_token(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1)
    address = json.loads((c.workdir / "master.json").read_text())["address"]
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token\n")
    with Client(address=address, token_file=bad) as cl, pytest.raises(AuthError, match="refused the token"):
        cl.status()
    for args in (["status"], ["list"], ["wait"], ["finish"]):
        r = pj(*args, "--master", address, "--token-file", str(bad))
        assert r.returncode == 1 and r.stdout == "", args
        assert r.stderr.count("\n") == 1 and "refused the token" in r.stderr, r.stderr
    r = pj_submit("--master", address, "--token-file", str(bad), "--", "/bin/true")
    assert r.returncode == 1 and "refused the token" in r.stderr
    # An agent with the wrong token is turned away at once.
    r = run(sys.executable, "-m", "pj.agent", "--master", address, "--token-file", str(bad), "--name", "intruder",
            "--cores", "1", timeout=20)
    assert r.returncode == 1 and "refused our token" in r.stdout + r.stderr, r.stdout + r.stderr
    with Client(c.workdir) as cl:
        assert [n.name for n in cl.resources().nodes] == ["node0"]
    # The right token, from anywhere, with --master and --token-file.
    st = pj_json("status", "--master", address, "--token-file", str(c.workdir / "token"), cwd=tmp_path)
    assert st["jobs_total"] == 0 and st["finishing"] is False


def _methods() -> Iterator[Any]:
    for service in pj_pb2.DESCRIPTOR.services_by_name.values():
        yield from service.methods


@pytest.fixture(scope="module", params=["tcp", "tls", "unix"])
def lone_master(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        Callable[[], grpc.Channel]]:
    """A master without agents, and how to reach it: plain TCP, TCP with TLS, or its Unix socket."""
    wd = tmp_path_factory.mktemp("lone")
    extra = ["--tls"] if request.param == "tls" else []
    with open(wd / "master.log", "wb") as log:
        p = subprocess.Popen([sys.executable, "-m", "pj.master", "--workdir", str(wd), *extra], stdout=log,
                             stderr=subprocess.STDOUT, env=user_env())
    try:
        eventually(lambda: (wd / "master.json").exists() or p.poll() is not None, what="the master")
        assert p.poll() is None, (wd / "master.log").read_text()
        info = json.loads((wd / "master.json").read_text())
        if request.param == "tls":
            creds = grpc.ssl_channel_credentials((wd / "tls.crt").read_bytes())
            yield lambda: grpc.secure_channel(info["address"], creds)
        elif request.param == "unix":
            yield lambda: grpc.insecure_channel(f"unix:{info['socket']}")
        else:
            yield lambda: grpc.insecure_channel(info["address"])
    finally:
        p.terminate()
        p.wait(10)


def test_every_rpc_has_a_method_here() -> None:
    names = {f"{m.containing_service.name}.{m.name}" for m in _methods()}
    assert {"PilotJob.Submit", "PilotJob.Watch", "PilotJob.Finish", "AgentLink.Connect"} <= names


@pytest.mark.parametrize("token", [None, "wrong"], ids=["no-token", "wrong-token"])
@pytest.mark.parametrize("method", list(_methods()), ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_every_rpc_needs_the_token(lone_master: Callable[[], grpc.Channel], method: Any, token: str | None) -> None:
    """Each method of each service, called through the generated stubs with a bad or no token, on
    every way in (plain TCP, TLS, the Unix socket)."""
    from pj.v1 import pj_pb2_grpc

    request = message_factory.GetMessageClass(method.input_type)()
    metadata = (("pj-token", token),) if token is not None else None
    hold = threading.Event()

    def stalled() -> Iterator[Any]:
        # An open stream that sends nothing and never half-closes, as a stalled agent would:
        # the refusal must come anyway, not at the deadline.
        hold.wait(30)
        yield from ()

    with lone_master() as channel:
        stub = getattr(pj_pb2_grpc, f"{method.containing_service.name}Stub")(channel)
        call = getattr(stub, method.name)
        try:
            with pytest.raises(grpc.RpcError) as e:
                arg = stalled() if method.client_streaming else request
                reply = call(arg, metadata=metadata, timeout=10)
                if method.server_streaming:
                    next(reply)
        finally:
            hold.set()
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, (e.value.code(), e.value.details())


# ---------------------------------------------------------------- capacity


def test_a_too_big_job_waits_for_the_expected_nodes_then_fails(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=0, expect_nodes=2)
    wd = str(c.workdir)
    c.add_agent("big", 2)
    online(c.workdir, 1)
    ok(pj_submit("--workdir", wd, "--name", "huge", "--cores", "3", "--", "/bin/true"))
    ok(pj_submit("--workdir", wd, "--name", "small", "--", "/bin/true"))
    ok(pj_submit("--workdir", wd, "--name", "post", "--iterations", "3", "--after", "huge", "--", "/bin/true"))
    assert ok(pj("wait", "--workdir", wd, "small")).startswith("1 job finished: SUCCEED 1")
    # Only 1 of 2 expected nodes: the missing one might be big enough, so the job waits.
    queued = pj_json("list", "--workdir", wd, "--state", "QUEUED")
    assert [j["name"] for j in queued] == ["huge", "post"]
    assert queued[0]["reason"].startswith(
        "no node that has joined has 3 cores (largest: 2 cores); 1 of 2 expected nodes not joined yet; "
        "the wait for them ends in "), queued[0]
    assert queued[1]["reason"] == "waiting for huge (QUEUED)"
    assert ok(pj("resources", "--workdir", wd)).splitlines()[-1].startswith("1 node online of 2 expected")
    c.add_agent("little", 1)
    with Client(wd) as cl:
        assert cl.wait("huge", timeout=20) == {"huge": "FAILED"}
        [info] = cl.info("huge")
    assert "can never fit: needs 3 core(s)" in info.summary.reason, info.summary.reason
    assert info.tasks == ()
    # What depended on it will never run: every iteration counts as done and not succeeded.
    [post] = pj_json("list", "--workdir", wd, "--state", "OMITTED")
    assert (post["name"], post["iterations"], post["iterations_done"], post["iterations_failed"]) == (
        "post", 3, 3, 3)
    assert "huge FAILED" in post["reason"]
    # Now that the run's size is known, a job too big fails at once.
    ok(pj_submit("--workdir", wd, "--name", "huge2", "--nodes", "3", "--", "/bin/true"))
    [s] = pj_json("list", "--workdir", wd, "--state", "FAILED")[1:]
    assert s["name"] == "huge2" and "on 3 node(s)" in s["reason"], s


def _notices_seen(stream: Any, wanted: str) -> list[str]:
    """Read a watch stream until a notice holding ``wanted`` arrives (the test timeout bounds it)."""
    seen: list[str] = []
    for event in stream:
        seen.extend(event.notices)
        if any(wanted in n for n in seen):
            return seen
    raise AssertionError(f"the watch stream ended without a notice about {wanted!r}: {seen}")


def test_a_named_node_that_never_comes_is_reported_and_the_run_goes_on(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=2, expect=False,
                        master_args=["--expect-nodes", "node0,ghost", "--node-timeout", "1s"])
    notice = "node(s) ghost did not register within 1 s; going on with 1 of 2 nodes (node0)"
    with Client(c.workdir) as cl, cl.watch() as stream:
        cl.submit([{"name": "a", "exec": "/bin/true"}, {"name": "b", "exec": "/bin/true", "cores": 2},
                   {"name": "wide", "exec": "/bin/true", "nodes": 2}])
        # A watcher hears of it whether it came before (first event) or after the watch began.
        assert notice in _notices_seen(stream, "ghost")
        assert cl.wait(timeout=20) == {"a": "SUCCEED", "b": "SUCCEED", "wide": "FAILED"}
        [wide] = cl.info("wide")
        assert "can never fit" in wide.summary.reason and "on 2 node(s)" in wide.summary.reason
        assert notice in cl.status().notices
        res = cl.resources()
        assert (res.nodes_expected, res.nodes_missing) == (2, ("ghost",))
        assert [n.name for n in res.nodes] == ["node0"]
    with Client(c.workdir) as cl, cl.watch() as stream:
        assert notice in next(stream).notices  # a later watcher is told in its first event
    assert notice in (c.workdir / "master.log").read_text()


def test_a_counts_only_watch_counts_jobs_and_names_only_those_that_ended_badly(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=2)
    with Client(c.workdir) as cl, cl.watch(counts_only=True) as stream:
        first = next(stream)
        assert (first.changed, first.jobs, first.watched_total) == ((), None, 0)  # nothing yet
        cl.submit([{"name": "good", "exec": "/bin/true", "iterations": 3},
                   {"name": "bad", "exec": "/bin/false"},
                   {"name": "after-bad", "exec": "/bin/true", "after": ["bad"]}])
        named: set[str] = set()
        for event in stream:
            named |= {j.name for j in event.changed}
            if event.watched_total == 3 and event.watched_unfinished == 0:
                break
    assert event.jobs == {"SUCCEED": 1, "FAILED": 1, "OMITTED": 1}
    assert named == {"bad", "after-bad"}  # the one that succeeded travels as a count only


def test_missing_nodes_fail_cancels_every_job_with_the_reason(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=1, expect=False, master_args=[
        "--expect-nodes", "node0,ghost", "--node-timeout", "5s", "--missing-nodes", "fail"])
    reason = "node(s) ghost did not register within 5 s; giving up (--missing-nodes fail): every job is canceled"
    with Client(c.workdir) as cl:
        cl.submit([{"name": "long", "exec": "/bin/sleep", "args": ["60"]},
                   {"name": "next", "exec": "/bin/true", "after": ["long"]},
                   {"name": "other", "exec": "/bin/true", "cores": 1, "iterations": 3}])
        assert cl.wait(timeout=30) == {"long": "CANCELED", "next": "CANCELED", "other": "CANCELED"}
    # The master finishes as after `pj finish --cancel` (at once: ask it nothing more), and says why.
    assert c.wait_exit() == 0
    assert {(r["state"], r["reason"]) for r in report(c.workdir).values()} == {("CANCELED", reason)}
    assert reason in (c.workdir / "master.log").read_text()


# ---------------------------------------------------------------- what a task sees


ENV_VARS = ("PJ_JOB", "PJ_ITERATION", "PJ_NODES", "PJ_NNODES", "PJ_NCORES", "PJ_CORES", "PJ_MASTER",
            "PJ_WORKDIR", "QCG_PM_NNODES", "QCG_PM_NPROCS", "CUDA_VISIBLE_DEVICES")


def test_task_environment(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=0, expect_nodes=2)
    wd = str(c.workdir)
    c.add_agent("g0", 2, "--gpus", "0,1")
    c.add_agent("g1", 2, "--gpus", "0,1")
    online(c.workdir, 2)
    dump = "import json, os, sys; json.dump({k: os.environ.get(k) for k in sys.argv[1:]}, sys.stdout)"

    def job(name: str, **kw: Any) -> dict[str, Any]:
        return {"name": name, "exec": sys.executable, "args": ["-c", dump, *ENV_VARS], "stdout": f"{name}.json",
                **kw}

    f = write_jobs(tmp_path / "env.json", [
        job("plain"),
        job("gpu", gpus=1),
        job("wide", nodes=2, cores=2, gpus=2),
        job("it", iterations={"start": 5, "stop": 7}, stdout="it-${it}.json"),
    ])
    ok(pj_submit("--workdir", wd, str(f), cwd=tmp_path))
    assert ok(pj("wait", "--workdir", wd)).startswith("4 jobs finished: SUCCEED 4")
    master = json.loads((c.workdir / "master.json").read_text())["address"]

    def seen(name: str) -> dict[str, str]:
        return json.loads((tmp_path / f"{name}.json").read_text())

    plain = seen("plain")
    assert plain["PJ_JOB"] == "plain" and plain["PJ_ITERATION"] == ""
    assert plain["PJ_NODES"] in ("g0", "g1") and plain["PJ_NNODES"] == "1"
    assert plain["PJ_NCORES"] == plain["QCG_PM_NPROCS"] == "1" and plain["QCG_PM_NNODES"] == "1"
    assert plain["PJ_CORES"] in ("0", "1")
    assert (plain["PJ_MASTER"], plain["PJ_WORKDIR"]) == (master, wd)
    assert plain["CUDA_VISIBLE_DEVICES"] == ""  # no GPUs asked: none visible

    gpu = seen("gpu")
    assert gpu["CUDA_VISIBLE_DEVICES"] in ("0", "1")

    wide = seen("wide")
    assert wide["PJ_NODES"].split(",") in (["g0", "g1"], ["g1", "g0"]) and wide["PJ_NNODES"] == "2"
    assert wide["PJ_NCORES"] == wide["QCG_PM_NPROCS"] == "4" and wide["QCG_PM_NNODES"] == "2"
    assert wide["PJ_CORES"] == "0,1;0,1"
    assert sorted(wide["CUDA_VISIBLE_DEVICES"].split(",")) == ["0", "1"]

    for i in (5, 6):
        it = seen(f"it-{i}")
        assert (it["PJ_JOB"], it["PJ_ITERATION"]) == ("it", str(i))
    [info] = pj_json("info", "--workdir", wd, "gpu", "--tasks")
    assert info["tasks"][0]["shares"][0]["gpus"] == [gpu["CUDA_VISIBLE_DEVICES"]]


def test_a_task_submits_more_work(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1, cores=2)
    wd = str(c.workdir)
    # The first job uses PJ_WORKDIR (set by the agent) to submit a follow-up that needs its output.
    script = (f'echo 42 > seed.txt && {PJ_SUBMIT} --name follow-up --after "$PJ_JOB" -- '
              '/bin/sh -c "cp seed.txt follow-up.txt"')
    ok(pj_submit("--workdir", wd, "--name", "spawner", "--stdout", "spawner.out", "--stderr", "spawner.err",
                 "--", "/bin/sh", "-c", script, cwd=tmp_path))
    r = pj("wait", "--workdir", wd)
    assert ok(r).startswith("2 jobs finished: SUCCEED 2"), (r.stdout, (tmp_path / "spawner.err").read_text())
    assert (tmp_path / "spawner.out").read_text() == "follow-up\n"
    assert (tmp_path / "follow-up.txt").read_text() == "42\n"
