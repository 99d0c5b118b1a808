"""No task outlives its agent unsupervised (issue 13, item 1).

An agent killed -9 (the OOM killer) cannot stop its tasks. Two safeguards, neither on the hot path:

- A *watchdog*: at start the agent spawns one small process (``python -m pj.agent.guard``, in a
  session of its own) that blocks reading a pipe only the agent holds the write end of (close-on-exec:
  tasks never inherit it). When the agent dies, however it dies, the kernel closes that end, the
  read returns EOF and the watchdog stops every process marked with the agent's pid and node
  (``PJ_AGENT_PID`` and ``PJ_AGENT_NODE`` in its environment, which tasks and the processes they
  start keep): SIGTERM, SIGKILL after the agent's ``--kill-grace``. After a normal exit it finds none.
- A *successor* sweep: an agent started under a name stops, before it registers, the processes
  marked with that node (``PJ_AGENT_NODE``: node name and workdir, or the master's address) whose
  agent is dead (its pid gone, or reused by a process younger than the task): what a watchdog
  killed with its agent left behind. It then registers as a new agent, which tells the master that
  nothing of the old one runs any more (reconcile.py). Marked processes whose agent is alive mean
  another agent serves this node here: it refuses to start (``AgentAlive``).

Why not PR_SET_PDEATHSIG: posix_spawn (libc, spawner threads) runs no code in the child before
exec, and the signal fires when the *thread* that spawned dies, not the process; a wrapper exec per
task would cost the hot path one more exec. The markers are read from /proc/PID/environ (the
environment a process was started with), so the sweeps cost nothing until an agent dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

NODE_ENV = "PJ_AGENT_NODE"
AGENT_ENV = "PJ_AGENT_PID"  # as launcher.AGENT_ENV (set by the launcher in every task)
_POLL_S = 0.02
_AFTER_KILL_S = 5.0  # how long to wait for processes after SIGKILL (reaped by whoever adopted them)


class AgentAlive(Exception):
    """Another agent of the same node and workdir runs on this host."""


def node_mark(name: str, scope: str) -> str:
    """The value of PJ_AGENT_NODE for an agent: its node name and where its master is found."""
    return f"{name}@{scope}"


@dataclass(frozen=True)
class Proc:
    pid: int
    started: int  # start time in clock ticks since boot (/proc/PID/stat field 22)
    agent: int  # the pid in its PJ_AGENT_PID


# ------------------------------------------------------------ /proc, read as text (also launcher.py's)


def proc_pids() -> list[int]:
    """Every pid in /proc now (empty where there is no /proc)."""
    try:
        return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return []


def proc_stat(pid: int) -> tuple[bytes, int, int] | None:
    """A process's (state, parent pid, start time in clock ticks since boot); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            line = f.read()
        # "pid (comm) state ppid ...", where comm may hold spaces and parentheses
        fields = line[line.rindex(b")") + 2 :].split()
        return fields[0], int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def proc_owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def proc_environ(pid: int) -> bytes | None:
    """The environment a process started with, as ``\0NAME=value\0NAME=value\0``; None if unreadable."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"\0" + f.read()
    except OSError:
        return None


def env_int(env: bytes, key: bytes) -> int | None:
    """The integer after ``key`` (``b"\0NAME="``) in a proc_environ text; None when absent or not a number."""
    at = env.find(key)
    if at < 0:
        return None
    at += len(key)
    try:
        return int(env[at : env.index(b"\0", at)])
    except ValueError:
        return None


def _start_time(pid: int) -> int | None:
    """A process's start time, None when it is gone or a zombie."""
    st = proc_stat(pid)
    return None if st is None or st[0] in (b"Z", b"X") else st[2]


def marked(mark: str, agent_pid: int | None = None) -> list[Proc]:
    """This user's live processes carrying PJ_AGENT_NODE=``mark`` (and PJ_AGENT_PID=``agent_pid``
    when given): one pass over /proc."""
    want = f"\0{NODE_ENV}={mark}\0".encode()
    agent_key = f"\0{AGENT_ENV}=".encode()
    uid, me = os.getuid(), os.getpid()
    out: list[Proc] = []
    for pid in proc_pids():
        if pid == me or proc_owner(pid) != uid:
            continue
        env = proc_environ(pid)
        if env is None or want not in env:
            continue
        agent = env_int(env, agent_key)
        if agent is None or (agent_pid is not None and agent != agent_pid):
            continue
        started = _start_time(pid)
        if started is not None:
            out.append(Proc(pid, started, agent))
    return out


def _agent_alive(proc: Proc) -> bool:
    """Whether the agent that started ``proc`` still runs (a pid reused later is not it)."""
    started = _start_time(proc.agent)
    return started is not None and started <= proc.started


def _signal(procs: Iterable[Proc], signum: int) -> None:
    for p in procs:
        if _start_time(p.pid) != p.started:
            continue  # gone, or its pid reused
        for kill, target in ((os.killpg, p.pid), (os.kill, p.pid)):  # its group first (a task leads one)
            try:
                kill(target, signum)
            except OSError:
                pass


def _wait_gone(procs: list[Proc], seconds: float) -> list[Proc]:
    deadline = time.monotonic() + seconds
    while True:
        procs = [p for p in procs if _start_time(p.pid) == p.started]
        if not procs or time.monotonic() >= deadline:
            return procs
        time.sleep(_POLL_S)


def stop(procs: list[Proc], grace: float) -> list[Proc]:
    """SIGTERM, then SIGKILL what is left after ``grace``; returns what would not die."""
    if not procs:
        return []
    _signal(procs, signal.SIGTERM)
    left = _wait_gone(procs, grace)
    if left:
        _signal(left, signal.SIGKILL)
        left = _wait_gone(left, _AFTER_KILL_S)
    return left


def sweep_predecessors(mark: str, grace: float) -> list[Proc]:
    """Before an agent registers: stop the processes a dead agent of this node left; returns them.
    Raises AgentAlive when marked processes belong to an agent that still runs."""
    found = [p for p in marked(mark) if p.agent != os.getpid()]
    alive = sorted({p.agent for p in found if _agent_alive(p)})
    if alive:
        raise AgentAlive(
            f"another pj-agent (pid {', '.join(map(str, alive))}) runs tasks for this node here; "
            "stop it first, or give this agent another --name"
        )
    left = stop(found, grace)
    if left:
        raise OSError(f"processes of a dead agent would not die: pids {', '.join(str(p.pid) for p in left)}")
    return found


@dataclass
class Watchdog:
    """The agent's half: the pipe's write end (never written) and the watchdog process."""

    write_fd: int
    proc: subprocess.Popen[bytes] = field(repr=False)

    def close(self, wait: float = 2.0) -> None:
        """The agent is ending on its own: let the watchdog look once and go, and wait (up to
        ``wait`` seconds) until it has, so that no process of this agent outlives it. Every task
        has been stopped by then, so the watchdog finds none and exits within tens of ms."""
        try:
            os.close(self.write_fd)
        except OSError:
            pass
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass  # still stopping something: it runs on in its own session until done


def start_watchdog(mark: str, grace: float) -> Watchdog:
    """Spawn the watchdog of this (the agent's) process."""
    r, w = os.pipe()  # both close-on-exec: no task inherits the write end
    try:
        proc = subprocess.Popen(
            # This file as a script, isolated and without site: stdlib only, ~15 ms to start.
            [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), mark, repr(grace)],
            stdin=r, stdout=subprocess.DEVNULL, start_new_session=True, close_fds=True,
        )
    finally:
        os.close(r)
    return Watchdog(w, proc)


def scope_of(workdir: os.PathLike[str] | None, address: str) -> str:
    """Where the agent's master is found: its workdir (resolved), else its address."""
    return os.path.realpath(workdir) if workdir is not None else address


def arm(name: str, scope: str, grace: float) -> tuple[str, Watchdog, list[Proc]]:
    """At an agent's start, before it registers: stop what a dead agent of this node left, then
    start this agent's watchdog. Returns the mark for its tasks' PJ_AGENT_NODE, the watchdog and
    the processes stopped. Raises AgentAlive (nothing done) when another agent serves the node here."""
    mark = node_mark(name, scope)
    stopped = sweep_predecessors(mark, grace)
    return mark, start_watchdog(mark, grace), stopped


def watch(agent_pid: int, mark: str, grace: float) -> int:
    """The watchdog: wait for the agent to die (EOF on stdin), then stop what it left."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    left = stop(marked(mark, agent_pid), grace)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
