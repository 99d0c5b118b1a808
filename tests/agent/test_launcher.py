"""The launcher with real processes: spawn, files, env, binding, signals, reaping, failures."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pj.agent.launcher import Launcher, SpawnError
from pj.agent.resources import NodeResources, detect, usable_cpus
from pj.agent.state import Exited, TaskSpec

pytestmark = pytest.mark.timeout(20)

PY = sys.executable


class Reaper:
    """Collects exits from Launcher.reap() (which takes whatever child ended)."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.seen: dict[int, Exited] = {}

    def wait(self, pid: int, timeout: float = 10.0) -> Exited:
        deadline = time.monotonic() + timeout
        while pid not in self.seen:
            for e in self.launcher.reap():
                self.seen[e.pid] = e
            if pid in self.seen:
                break
            assert time.monotonic() < deadline, f"pid {pid} did not end"
            time.sleep(0.005)
        return self.seen.pop(pid)


# Every test runs twice: spawning in the calling thread (os.posix_spawn), and on spawner threads
# (libc posix_spawn with the GIL released, agent/spawn.py), which is what pj-agent does by default.
MODES = pytest.mark.parametrize("threads", [0, 2], ids=["loop", "threads"])


def spawn(launcher: Launcher, spec: TaskSpec) -> int:
    """Start one task the way the runner does in this launcher's mode; the pid, or SpawnError."""
    spawner = launcher.spawner
    if spawner is None:
        return launcher.spawn(spec)
    spawner.submit([launcher.prepare(spec)])
    deadline = time.monotonic() + 10
    while True:
        results = spawner.take()
        if results:
            assert len(results) == 1 and results[0].request.task_id == spec.task_id
            return launcher.finish(results[0])
        assert time.monotonic() < deadline, "the spawner thread never answered"
        time.sleep(0.001)


@pytest.fixture(params=[0, 2], ids=["loop", "threads"])
def launcher(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Launcher]:
    monkeypatch.chdir(tmp_path)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PJ_BASE": "base", "PJ_OVER": "base"}
    lch = Launcher(detect(), base_env=base, spawn_threads=request.param)
    assert (lch.spawner is not None) == (request.param > 0)
    yield lch
    lch.close()
    lch.reap()


@pytest.fixture
def reaper(launcher: Launcher) -> Reaper:
    return Reaper(launcher)


def run(launcher: Launcher, reaper: Reaper, *argv: str, **kw: object) -> Exited:
    pid = spawn(launcher, TaskSpec(1, tuple(argv), **kw))  # type: ignore[arg-type]
    return reaper.wait(pid)


def test_exit_codes(launcher: Launcher, reaper: Reaper) -> None:
    assert run(launcher, reaper, "/bin/true").exit_code == 0
    assert run(launcher, reaper, "/bin/sh", "-c", "exit 3").exit_code == 3


def test_signal_deaths_are_negative(launcher: Launcher, reaper: Reaper) -> None:
    assert run(launcher, reaper, "/bin/sh", "-c", "kill -KILL $$").exit_code == -signal.SIGKILL
    assert run(launcher, reaper, "/bin/sh", "-c", "kill -USR1 $$").exit_code == -signal.SIGUSR1


def test_rusage_is_filled(launcher: Launcher, reaper: Reaper) -> None:
    e = run(launcher, reaper, PY, "-c", "x = sum(range(3_000_000)); b = bytearray(50 << 20)")
    assert e.exit_code == 0
    assert e.cpu_user_s + e.cpu_system_s > 0
    assert e.max_rss_kb > 50 * 1024


def test_stdout_and_stderr_files(launcher: Launcher, reaper: Reaper, tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    out.write_text("old content that must go away\n")
    e = run(
        launcher, reaper, "/bin/sh", "-c", "echo to-out; echo to-err >&2", stdout=str(out), stderr=str(err)
    )
    assert e.exit_code == 0
    assert out.read_text() == "to-out\n"
    assert err.read_text() == "to-err\n"
    assert out.stat().st_mode & 0o777 == 0o644 & ~_umask()


def test_stdout_and_stderr_to_one_file(launcher: Launcher, reaper: Reaper, tmp_path: Path) -> None:
    both = tmp_path / "both"
    run(
        launcher,
        reaper,
        "/bin/sh",
        "-c",
        "echo one; echo two >&2; echo three",
        stdout=str(both),
        stderr=str(both),
    )
    assert both.read_text() == "one\ntwo\nthree\n"


def test_default_streams_are_dev_null_and_stderr_an_unnamed_capture(
    launcher: Launcher, reaper: Reaper, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    e = run(
        launcher,
        reaper,
        "/bin/sh",
        "-c",
        f"readlink /proc/self/fd/0 /proc/self/fd/2 > {out}; cat; echo x; echo y >&2",
    )
    assert e.exit_code == 0
    stdin, stderr = out.read_text().split("\n")[:2]
    assert stdin == "/dev/null"
    # stderr: an O_TMPFILE in the capture directory, which has no name ("(deleted)" to readlink).
    assert launcher.captures.directory and stderr.startswith(launcher.captures.directory.rstrip("/") + "/")
    assert stderr.endswith("(deleted)")
    assert launcher.ended(1, tail=True) == "y" and len(launcher.captures) == 0
    assert launcher.ended(1, tail=True) == ""  # dropped once: nothing left to read


def test_without_a_capture_directory_stderr_is_dev_null(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lch = Launcher(detect(), base_env={"PATH": "/usr/bin:/bin"}, capture_dir="")
    try:
        pid = lch.spawn(TaskSpec(1, ("/bin/sh", "-c", f"readlink /proc/self/fd/2 > {tmp_path / 'err'}; exit 1")))
        assert Reaper(lch).wait(pid).exit_code == 1
        assert (tmp_path / "err").read_text().split() == ["/dev/null"]
        assert lch.ended(1, tail=True) == ""
    finally:
        lch.close()


def test_stdin_from_a_file(launcher: Launcher, reaper: Reaper, tmp_path: Path) -> None:
    (tmp_path / "in").write_text("hello stdin\n")
    run(launcher, reaper, "/bin/cat", stdin=str(tmp_path / "in"), stdout=str(tmp_path / "out"))
    assert (tmp_path / "out").read_text() == "hello stdin\n"


def test_working_directory_is_created_and_used(launcher: Launcher, reaper: Reaper, tmp_path: Path) -> None:
    wd = tmp_path / "a" / "b" / "c"
    e = run(launcher, reaper, "/bin/sh", "-c", "pwd > where", wd=str(wd), stdout="rel.out")
    assert e.exit_code == 0
    assert (wd / "where").read_text().strip() == str(wd)
    assert (wd / "rel.out").exists()  # relative paths resolve in the wd
    # A task without a wd runs where the agent started, whatever ran before.
    run(launcher, reaper, "/bin/sh", "-c", "pwd > where0")
    assert (tmp_path / "where0").read_text().strip() == str(tmp_path)


def test_recreated_working_directory_is_the_new_one(
    launcher: Launcher, reaper: Reaper, tmp_path: Path
) -> None:
    wd = tmp_path / "w"
    run(launcher, reaper, "/bin/true", wd=str(wd))
    wd.rmdir()
    wd.mkdir()
    run(launcher, reaper, "/bin/sh", "-c", "echo ok > f", wd=str(wd))
    assert (wd / "f").read_text() == "ok\n"


def test_env_overlay(launcher: Launcher, reaper: Reaper, tmp_path: Path) -> None:
    out = tmp_path / "env"
    run(
        launcher,
        reaper,
        "/usr/bin/env",
        env={"PJ_OVER": "task", "PJ_NEW": "new"},
        gpus=("1", "3"),
        stdout=str(out),
    )
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert env["PJ_BASE"] == "base"
    assert env["PJ_OVER"] == "task"
    assert env["PJ_NEW"] == "new"
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3"
    # every vendor's runtime alike; HIP's are positions in what ROCR_VISIBLE_DEVICES leaves
    assert (env["ROCR_VISIBLE_DEVICES"], env["HIP_VISIBLE_DEVICES"], env["ZE_AFFINITY_MASK"]) == ("1,3", "0,1", "1,3")
    run(launcher, reaper, "/usr/bin/env", env={"CUDA_VISIBLE_DEVICES": "mine"}, gpus=("1",), stdout=str(out))
    assert "CUDA_VISIBLE_DEVICES=mine\n" in out.read_text()
    run(launcher, reaper, "/usr/bin/env", stdout=str(out))
    assert "CUDA_VISIBLE_DEVICES=\n" in out.read_text()  # no GPU: none visible
    assert "ROCR_VISIBLE_DEVICES=\n" in out.read_text() and "HIP_VISIBLE_DEVICES=\n" in out.read_text()


def test_argv0_is_looked_up_in_the_task_path(launcher: Launcher, reaper: Reaper, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "pj-test-tool"
    tool.write_text('#!/bin/sh\necho "$0 $1" > "$2"\n')
    tool.chmod(0o755)
    out = tmp_path / "out"
    e = run(launcher, reaper, "pj-test-tool", "arg", str(out), env={"PATH": f"/nonexistent:{bindir}"})
    assert e.exit_code == 0
    assert out.read_text() == f"{tool} arg\n"
    assert run(launcher, reaper, "true").exit_code == 0  # the base PATH
    with pytest.raises(SpawnError) as err:
        spawn(launcher, TaskSpec(1, ("pj-test-tool",)))  # not in the base PATH
    assert err.value.exit_code == 127 and "pj-test-tool" in err.value.message


def test_signals_are_reset(launcher: Launcher, reaper: Reaper, tmp_path: Path) -> None:
    old = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        out = tmp_path / "status"
        run(launcher, reaper, "/bin/cat", "/proc/self/status", stdout=str(out))
    finally:
        signal.signal(signal.SIGUSR2, old)
    fields = dict(line.split(":", 1) for line in out.read_text().splitlines())
    # Signals 32 and 33 are glibc's own: its posix_spawn ignores them in the child, glibc re-arms them.
    glibc_internal = (1 << 31) | (1 << 32)
    assert int(fields["SigIgn"], 16) & ~glibc_internal == 0
    assert int(fields["SigBlk"], 16) == 0


@MODES
def test_only_std_descriptors_are_inherited(tmp_path: Path, threads: int) -> None:
    leaky = os.open(os.devnull, os.O_RDONLY)  # as if the agent had inherited it
    os.set_inheritable(leaky, True)
    launcher = Launcher(detect(), spawn_threads=threads)
    reaper = Reaper(launcher)
    out = tmp_path / "fds"
    run(
        launcher,
        reaper,
        PY,
        "-c",
        "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))",
        stdout=str(out),
    )
    launcher.close()
    os.close(leaky)
    assert eval(out.read_text()) == [0, 1, 2, 3]  # 3: listdir's own


def test_each_task_leads_its_own_process_group(launcher: Launcher, reaper: Reaper, tmp_path: Path) -> None:
    out = tmp_path / "pg"
    pid = spawn(launcher, TaskSpec(1, (PY, "-c", "import os; print(os.getpgid(0))"), stdout=str(out)))
    reaper.wait(pid)
    assert int(out.read_text()) == pid != os.getpgid(0)


def _affinity_of_task(launcher: Launcher, reaper: Reaper, out: Path, cores: tuple[int, ...]) -> set[int]:
    run(
        launcher,
        reaper,
        PY,
        "-c",
        "import os; print(sorted(os.sched_getaffinity(0)))",
        stdout=str(out),
        cores=cores,
    )
    return set(eval(out.read_text()))


@MODES
def test_affinity_is_the_tasks_cores(tmp_path: Path, threads: int) -> None:
    cpus = usable_cpus()
    n = len(cpus)
    res = NodeResources(cpus=cpus, cores=3 * n, gpus=(), memory_bytes=1)  # an emulated bigger node
    lch = Launcher(res, spawn_threads=threads)
    reaper = Reaper(lch)
    try:
        out = tmp_path / "aff"
        assert _affinity_of_task(lch, reaper, out, (0,)) == {cpus[0]}
        assert _affinity_of_task(lch, reaper, out, (n - 1,)) == {cpus[n - 1]}
        assert _affinity_of_task(lch, reaper, out, (2 * n,)) == {cpus[0]}  # logical core i -> cpus[i % n]
        assert _affinity_of_task(lch, reaper, out, ()) == set(cpus)  # unbound: the agent's CPUs
        assert os.sched_getaffinity(0) == set(cpus)  # the agent's own is back
        with pytest.raises(SpawnError) as err:
            spawn(lch, TaskSpec(1, ("/bin/true",), cores=(3 * n,)))
        assert "core" in err.value.message
    finally:
        lch.close()


def test_group_signal_takes_down_the_tasks_children(
    launcher: Launcher, reaper: Reaper, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child"
    pid = spawn(launcher, TaskSpec(1, ("/bin/sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait")))
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child = int(pidfile.read_text())
    assert alive(child)
    assert launcher.signal(pid, signal.SIGTERM)
    assert reaper.wait(pid).exit_code == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while alive(child):
        assert time.monotonic() < deadline, "the task's child survived"
        time.sleep(0.01)


def test_missing_executable(launcher: Launcher) -> None:
    with pytest.raises(SpawnError) as err:
        spawn(launcher, TaskSpec(1, ("/nonexistent/prog", "x")))
    assert err.value.exit_code == 127
    assert "/nonexistent/prog" in err.value.message and "No such file" in err.value.message


def test_not_executable(launcher: Launcher, tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_text("not a program\n")
    f.chmod(0o644)
    with pytest.raises(SpawnError) as err:
        spawn(launcher, TaskSpec(1, (str(f),)))
    assert err.value.exit_code == 126 and str(f) in err.value.message
    with pytest.raises(SpawnError) as err:
        spawn(launcher, TaskSpec(1, (str(tmp_path),)))
    assert err.value.exit_code == 126 and "directory" in err.value.message


def test_unopenable_streams(launcher: Launcher, tmp_path: Path) -> None:
    with pytest.raises(SpawnError) as err:
        spawn(launcher, TaskSpec(1, ("/bin/true",), stdout=str(tmp_path / "no" / "out")))
    assert (
        err.value.exit_code == 127
        and "stdout" in err.value.message
        and str(tmp_path / "no") in err.value.message
    )
    with pytest.raises(SpawnError) as err:
        spawn(launcher, TaskSpec(1, ("/bin/true",), stdin=str(tmp_path / "missing-input")))
    assert "stdin" in err.value.message and "missing-input" in err.value.message


def test_uncreatable_working_directory(launcher: Launcher, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    wd = tmp_path / "file" / "wd"
    with pytest.raises(SpawnError) as err:
        spawn(launcher, TaskSpec(1, ("/bin/true",), wd=str(wd)))
    assert err.value.exit_code == 127 and str(wd) in err.value.message


def test_empty_argv(launcher: Launcher) -> None:
    with pytest.raises(SpawnError) as err:
        spawn(launcher, TaskSpec(1, ()))
    assert err.value.exit_code == 127


def test_many_tasks_are_all_reaped(launcher: Launcher, reaper: Reaper) -> None:
    pids = {spawn(launcher, TaskSpec(i, ("/bin/true",), cores=(i % 2,))) for i in range(300)}
    for pid in pids:
        assert reaper.wait(pid).exit_code == 0
    assert launcher.reap() == []


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (shared by the agent tests)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_without_the_libc_bindings_tasks_start_in_the_calling_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pj.agent.launcher as launcher_mod

    monkeypatch.setattr(launcher_mod.Libc, "load", classmethod(lambda cls: None))  # e.g. glibc < 2.29
    lch = Launcher(detect(), spawn_threads=2)
    try:
        assert lch.spawner is None
        out = tmp_path / "out"
        assert run(lch, Reaper(lch), "/bin/sh", "-c", "echo ran", stdout=str(out)).exit_code == 0
        assert out.read_text() == "ran\n"
    finally:
        lch.close()
