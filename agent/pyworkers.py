"""Warm Python workers: the agent's launcher for function calls (common/pycall.py).

A launch whose command line is a call does not start a process: it goes to a worker process
(``python -m pj.agent.pyworker serve``, pyworker.py) kept for calls with the same interpreter
and environment (its *key*: argv[0] and the task's variables less those that differ per task,
PJ_*, QCG_PM_*, SLURM_*, the GPU lists, OMP_NUM_THREADS, which the worker sets per call). Workers
are started on demand, at most one per core of the node for a key (a call holds its cores, so an
idle one is there for the next), and reused; an idle worker is sent away (end of file on its
orders, then SIGKILL) after ``idle_s``.

To the agent's bookkeeping (state.py) a call is a task like any other: ``start`` returns a
*token pid* (above any real pid) for ``Spawned``; a reply becomes ``Exited(token, code, rusage)``;
a stop signal for a token reaches the worker running that call (its whole process group: the
worker dies, the call with it, and the next call gets a new worker); the SIGKILL the bookkeeping
sends after a normal end finds the token finished and does nothing. A worker that dies during a
call (reaped by the launcher's wait4) ends that call with the worker's exit status: only that
call fails, and the master's retries apply.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import signal
import struct
from collections.abc import Callable, Mapping

import structlog

from pj.common import pycall
from pj.common.gpuenv import GPU_VARS

from .launcher import SpawnError
from .state import EXIT_CANNOT_START, Exited, TaskSpec

log = structlog.get_logger("pj.agent")

TOKEN_PID0 = 1 << 31  # token pids: above pid_max (at most 2**22) and the dry-run ones (2**30)
IDLE_S = 60.0
IDLE_ENV = "PJ_WORKER_IDLE_S"
_PER_TASK_PREFIXES = ("PJ_", "QCG_PM_", "SLURM_")
_PER_TASK = frozenset({*GPU_VARS, "OMP_NUM_THREADS"})
_LEN = struct.Struct("<I")
_SIGDEF = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGPIPE, signal.SIGHUP, signal.SIGCHLD)

Key = tuple[str, frozenset[tuple[str, str]]]


def worker_key(spec: TaskSpec) -> Key:
    stable = frozenset(
        (k, v) for k, v in spec.env.items() if k not in _PER_TASK and not k.startswith(_PER_TASK_PREFIXES)
    )
    return spec.argv[0], stable


class _Worker:
    __slots__ = ("buf", "cpus", "idle_since", "key", "orders", "pid", "replies", "token")

    def __init__(self, key: Key, pid: int, orders: int, replies: int, now: float) -> None:
        self.key = key
        self.pid = pid
        self.orders = orders  # our write end of its fd 3
        self.replies = replies  # our read end of its fd 4
        self.token = 0  # the call it runs (a token pid), 0: idle
        self.cpus: tuple[int, ...] = ()  # those of its last call
        self.idle_since = now
        self.buf = bytearray()


class PyWorkers:
    def __init__(
        self,
        base_env: Mapping[str, str],
        cores: int,
        real_cpus: Callable[[tuple[int, ...]], frozenset[int]],
        idle_s: float = IDLE_S,
    ) -> None:
        """``real_cpus``: the real CPUs of logical cores (resources.real_cpus); ``cores``: the node's."""
        self._base_env = dict(base_env)
        self._real_cpus = real_cpus
        self._cpu_lists: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.capacity = max(1, cores)  # workers per key
        self.idle_s = idle_s
        self._idle: dict[Key, list[_Worker]] = {}
        self._by_pid: dict[int, _Worker] = {}
        self._running: dict[int, _Worker] = {}  # token pid -> its worker
        self._tails: dict[int, str] = {}  # task id -> the traceback of a call that raised
        self._task_of: dict[int, int] = {}  # token pid -> task id
        self._tokens = itertools.count(TOKEN_PID0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feed: Callable[[list[Exited]], None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @staticmethod
    def is_call(spec: TaskSpec) -> bool:
        return pycall.is_call(spec.argv)

    @staticmethod
    def owns(pid: int) -> bool:
        return pid >= TOKEN_PID0

    def __len__(self) -> int:
        return len(self._by_pid)

    @property
    def busy(self) -> bool:
        """Whether calls run now (their exits may wait a little for others: runner.EXIT_DELAY_S)."""
        return bool(self._running)

    def attach(self, loop: asyncio.AbstractEventLoop, feed: Callable[[list[Exited]], None]) -> None:
        self._loop = loop
        self._feed = feed
        if self.idle_s > 0:
            self._timer = loop.call_later(self.idle_s / 2, self._sweep_idle)

    # ------------------------------------------------------------ calls

    def start(self, spec: TaskSpec) -> int:
        """Hand the call to a worker (started now if none is idle); its token pid. Raises SpawnError."""
        key = worker_key(spec)
        cpus = self._cpus(spec.cores)
        idle = self._idle.get(key)
        if idle:  # one bound to these CPUs already, if any: moving a process costs ~100 us
            worker = idle[-1]
            if worker.cpus != cpus:
                worker = next((w for w in idle if w.cpus == cpus), worker)
            idle.remove(worker)
        else:
            worker = self._new_worker(key, spec)
        worker.cpus = cpus
        token = next(self._tokens)
        worker.token = token
        self._running[token] = worker
        self._task_of[token] = spec.task_id
        order = pickle.dumps((spec.task_id, spec.argv, dict(spec.env), spec.wd, spec.stdout, spec.stderr,
                              cpus))
        try:
            os.write(worker.orders, _LEN.pack(len(order)) + order)
        except OSError:  # it died since its last call: the reaper ends the call (see reaped)
            log.warning("a warm worker died before a call reached it", pid=worker.pid, task_id=spec.task_id)
        return token

    def _cpus(self, cores: tuple[int, ...]) -> tuple[int, ...]:
        cpus = self._cpu_lists.get(cores)
        if cpus is None:
            cpus = self._cpu_lists[cores] = tuple(sorted(self._real_cpus(cores))) if cores else ()
        return cpus

    def signal(self, token: int, signum: int) -> None:
        """A stop for the call ``token``: its worker (and what it started) gets ``signum``."""
        worker = self._running.get(token)
        if worker is None:
            return  # the call ended already (the SIGKILL after every end)
        try:
            os.killpg(worker.pid, signum)
        except ProcessLookupError:
            pass

    def ended(self, task_id: int) -> str:
        """The traceback of a call that raised ("" if none), once."""
        return self._tails.pop(task_id, "") if self._tails else ""

    def reaped(self, exits: list[Exited]) -> list[Exited]:
        """The launcher's reaped children: those that are workers are taken out; a worker that
        ended during a call ends that call with its exit status."""
        if not self._by_pid:
            return exits
        out: list[Exited] = []
        for e in exits:
            worker = self._by_pid.get(e.pid)
            if worker is None:
                out.append(e)
                continue
            self._forget(worker)
            if worker.token:
                token, worker.token = worker.token, 0
                self._running.pop(token, None)
                tid = self._task_of.pop(token, 0)
                how = f"signal {-e.exit_code}" if e.exit_code < 0 else f"exit code {e.exit_code}"
                self._tails[tid] = f"the Python worker running this call died ({how})"
                out.append(Exited(token, e.exit_code or 1, e.cpu_user_s, e.cpu_system_s, e.max_rss_kb))
            else:
                log.debug("a warm worker ended", pid=e.pid, exit_code=e.exit_code)
        return out

    # ------------------------------------------------------------ workers

    def _new_worker(self, key: Key, spec: TaskSpec) -> _Worker:
        self._make_room(key)
        o_r, o_w = _pipe()
        r_r, r_w = _pipe()
        env = {**self._base_env, **spec.env}
        argv = [spec.argv[0], "-m", pycall.MODULE, "serve"]
        try:
            pid = os.posix_spawn(
                spec.argv[0] if "/" in spec.argv[0] else _which(spec.argv[0], env.get("PATH", "")),
                argv,
                env,
                file_actions=[(os.POSIX_SPAWN_DUP2, o_r, 3), (os.POSIX_SPAWN_DUP2, r_w, 4)],
                setpgroup=0,
                setsigmask=(),
                setsigdef=_SIGDEF,
            )
        except OSError as e:
            for fd in (o_r, o_w, r_r, r_w):
                os.close(fd)
            raise SpawnError(EXIT_CANNOT_START, f"cannot start a Python worker ({spec.argv[0]}): {e}") from None
        os.close(o_r)
        os.close(r_w)
        worker = _Worker(key, pid, o_w, r_r, _now(self._loop))
        self._by_pid[pid] = worker
        if self._loop is not None:
            self._loop.add_reader(r_r, self._on_replies, worker)
        log.debug("warm worker started", pid=pid, python=spec.argv[0], workers=len(self._by_pid))
        return worker

    def _make_room(self, key: Key) -> None:
        """At most ``capacity`` workers for the node: an idle one of another key leaves first."""
        if len(self._by_pid) < self.capacity:
            return
        for other, idle in self._idle.items():
            if other != key and idle:
                self._retire(idle.pop(0))
                return

    def _on_replies(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.replies, 1 << 16)
        except OSError:
            data = b""
        if not data:  # it is gone: the reaper says how (see reaped)
            if self._loop is not None:
                self._loop.remove_reader(worker.replies)
            return
        buf = worker.buf
        buf += data
        ended: list[Exited] = []
        while len(buf) >= 4:
            n = _LEN.unpack_from(buf)[0]
            if len(buf) < 4 + n:
                break
            task_id, code, user, system, rss, text = pickle.loads(bytes(buf[4:4 + n]))
            del buf[:4 + n]
            token, worker.token = worker.token, 0
            if not token:
                continue
            self._running.pop(token, None)
            self._task_of.pop(token, None)
            if text:
                self._tails[task_id] = text
            worker.idle_since = _now(self._loop)
            self._idle.setdefault(worker.key, []).append(worker)
            ended.append(Exited(token, code, user, system, rss))
        if ended and self._feed is not None:
            self._feed(ended)

    def _sweep_idle(self) -> None:
        loop = self._loop
        if loop is None:
            return
        self._timer = loop.call_later(self.idle_s / 2, self._sweep_idle)
        cutoff = loop.time() - self.idle_s
        for idle in self._idle.values():
            old = [w for w in idle if w.idle_since <= cutoff]
            for w in old:
                idle.remove(w)
                self._retire(w)

    def _retire(self, worker: _Worker) -> None:
        """An idle worker leaves: end of file on its orders; SIGKILL too (its reaping is the launcher's)."""
        self._forget(worker)
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _forget(self, worker: _Worker) -> None:
        if self._by_pid.pop(worker.pid, None) is None:
            return
        idle = self._idle.get(worker.key)
        if idle and worker in idle:
            idle.remove(worker)
        if self._loop is not None:
            self._loop.remove_reader(worker.replies)
        for fd in (worker.orders, worker.replies):
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        """Every worker leaves (the agent ends)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        workers = list(self._by_pid.values())
        for w in workers:
            self._retire(w)
        for w in workers:
            try:
                os.waitpid(w.pid, 0)
            except ChildProcessError:
                pass


def _pipe() -> tuple[int, int]:
    """A close-on-exec pipe whose ends are above 4 (the worker's fds 3 and 4 are dup2'd to)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    fds = []
    for fd in (r, w):
        if fd <= 4:
            high = _dup_high(fd)
            os.close(fd)
            fd = high
        fds.append(fd)
    return fds[0], fds[1]


def _dup_high(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def _which(name: str, path: str) -> str:
    for d in path.split(":"):
        candidate = os.path.join(d or ".", name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise SpawnError(EXIT_CANNOT_START, f"cannot start a Python worker: {name!r} not found in PATH")


def _now(loop: asyncio.AbstractEventLoop | None) -> float:
    return loop.time() if loop is not None else 0.0


def idle_from_env(env: Mapping[str, str]) -> float:
    """``PJ_WORKER_IDLE_S`` (seconds; 0: never), else IDLE_S."""
    text = env.get(IDLE_ENV, "")
    try:
        return max(0.0, float(text)) if text else IDLE_S
    except ValueError:
        return IDLE_S

