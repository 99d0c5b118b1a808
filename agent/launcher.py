"""Start, signal and reap task processes, without ever forking the agent.

Two ways to start a task, the same result:
- on spawner threads (pj-agent's default, ``spawn_threads`` > 0): ``prepare`` turns the task into
  C data in the loop's thread, a thread of ``spawn.Spawner`` calls libc's posix_spawn with the
  GIL released (the loop goes on while the child reaches exec), and ``finish`` takes the result;
  the child's first file action is a chdir to the task's wd, and each spawner thread is bound to
  the task's CPUs (the runner routes a task to the thread already bound there);
- in the calling thread (``spawn``, with os.posix_spawn): where libc lacks a binding, with
  ``--spawn-threads 0``, and for any task the threads failed to start, to say exactly why.

- ``os.posix_spawn``: glibc implements it with clone(CLONE_VM|CLONE_VFORK), so a
  spawn costs no page-table copy and runs no fork handlers (grpc's included).
  Each task leads its own process group (``setpgroup=0``) so that a signal
  reaches its children too; signal dispositions and the mask are reset.
- stdin/stdout/stderr are opened by file actions in the child; /dev/null is
  one descriptor the agent keeps open and dup2s. Python's and grpc's own
  descriptors are close-on-exec, and the launcher marks close-on-exec those the
  agent inherited (from srun, a shell...), so a task gets 0, 1 and 2 only.
- ``spawn`` (os.posix_spawn has no chdir): the agent chdirs to the task's wd right before the
  spawn and stays there. That is safe because the agent holds no relative path
  anywhere (workdir, token file and every task path are absolute by the time
  they get here); relative stdin/stdout/stderr/argv[0] resolve against the wd,
  as they would in a shell started there. We chdir even when the wd is already
  the current one (1 us against ~350 us for the spawn): if that directory was
  removed and created again meanwhile, the task must run in the new one.
- CPU binding: the spawning thread's affinity is set to the task's CPUs just
  before the spawn (the child inherits it); ``spawn`` puts it back after the batch.
- Hostfiles: a task whose Launch carries one gets PJ_HOSTFILE (and SLURM_HOSTFILE when asked)
  naming a file of the agent's own (hostfiles.py: one file per distinct content); a task
  without one pays a single attribute test.
- Reaping: ``reap()`` collects every ended child with wait4(WNOHANG); the shell
  calls it on SIGCHLD. wait4 gives the task's rusage: CPU time and peak RSS of its main
  process and of the descendants that process waited for (a child it never waited for, or one
  that left for a session of its own and was reparented, is not counted).
- Stderr tails (tails.py): a task without a stderr file writes its stderr into an unnamed file
  (O_TMPFILE) the launcher holds; ``ended`` reads the last 4 KB of it, or of the task's stderr
  file, only when the task failed, and drops the file.
- Marking and stopping (strays.py): every task gets ``PJ_TASK_ID=<id>`` and
  ``PJ_AGENT_PID=<agent pid>`` in its environment (one dict store per spawn: the agent's pid is in
  the base environment); ``sweep`` (at cancel, walltime and shutdown only, never per normal exit)
  signals the group and every process of the task that left it, found in one pass over /proc.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import stat
from collections.abc import Callable, Iterable, Mapping

from pj.common.gpuenv import gpu_env

from . import explain
from .hostfiles import HostfileError, Hostfiles
from .resources import NodeResources, ResourceError
from .spawn import FileActions, Libc, Request, Result, Spawner
from .state import EXIT_CANNOT_START, Exited, TaskSpec
from .strays import AGENT_ENV, TASK_ENV, Strays
from .tails import Captures, default_dirs, pick_dir, read_tail

_OUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_SIGDEF = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
HOSTFILE_ENV = "PJ_HOSTFILE"
SLURM_HOSTFILE_ENV = "SLURM_HOSTFILE"
_ACTIONS_KEPT = 1024  # file actions cached per working directory and capture file (tasks without stdio)


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")  # what os.fsencode does


class SpawnError(Exception):
    """The task could not be started; ``exit_code`` is 127 or 126, as a shell would say."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message


class Launcher:
    immediate_exits = False  # DryLauncher: tasks "end" as they start (the runner reaps per batch)

    def __init__(
        self,
        resources: NodeResources,
        base_env: Mapping[str, str] | None = None,
        hostfiles: Hostfiles | None = None,
        spawn_threads: int = 0,
        capture_dir: str | None = None,
    ) -> None:
        """``capture_dir``: where tasks without a stderr file write it (None: the first of
        tails.default_dirs() that takes unnamed files; "": not captured, /dev/null)."""
        self.resources = resources
        self.hostfiles = hostfiles if hostfiles is not None else Hostfiles()
        # A snapshot: a task's environment is this dict with Launch.env laid over it (one C-level merge).
        self._base_env: dict[str, str] = dict(os.environ if base_env is None else base_env)
        self._base_path = self._base_env.get("PATH", _DEFAULT_PATH)
        self._agent_pid = os.getpid()
        self._base_env[AGENT_ENV] = str(self._agent_pid)
        self.strays = Strays(self._agent_pid)
        # What the agent's thread runs on now, to go back to after a batch. It may hold more CPUs
        # than resources.cpus (Slurm granted fewer); tasks are bound within resources.cpus.
        self._agent_cpus = frozenset(os.sched_getaffinity(0))
        self._bound = self._agent_cpus  # the affinity of the spawning thread now
        self._home = os.getcwd()  # where tasks without a wd run (absolute)
        self._which: dict[tuple[str, str], str] = {}
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._null_actions = (
            (os.POSIX_SPAWN_DUP2, self._devnull, 0),
            (os.POSIX_SPAWN_DUP2, self._devnull, 1),
            (os.POSIX_SPAWN_DUP2, self._devnull, 2),
        )
        _seal_inherited_fds()
        self.captures = Captures(pick_dir(default_dirs()) if capture_dir is None else pick_dir([capture_dir]),
                                 self._capture_closed)
        self._stderr_files: dict[int, str] = {}  # task id -> its stderr file, for its tail
        # Spawner threads (spawn.py): None where libc lacks a binding or spawn_threads is 0; the
        # loop's thread then spawns with os.posix_spawn (``spawn``).
        libc = Libc.load() if spawn_threads > 0 else None
        self._libc = libc
        self.spawner = Spawner(libc, spawn_threads, self._agent_cpus) if libc is not None else None
        self._base_envb = {k: _b(f"{k}={v}") for k, v in self._base_env.items()}
        self._masks: dict[frozenset[int], ctypes.Array[ctypes.c_ulong]] = {}
        # Spawn file actions of tasks without stdio, by (wd, capture descriptor or -1): capture
        # files are reused (tails.Captures), so a few descriptors serve every such task.
        self._wd_actions: dict[tuple[bytes, int], FileActions] = {}
        self._capture_wds: dict[int, list[bytes]] = {}  # capture descriptor -> the wds cached with it
        self._wds: set[str] = set()  # working directories known to exist (made if missing)

    @property
    def base_env(self) -> dict[str, str]:
        """The environment every task's own variables are laid over (the agent's marks included)."""
        return self._base_env

    def close(self) -> None:
        """Stop the spawner threads, give the thread its CPUs back, release the launcher's
        descriptor and remove its hostfiles (when the agent ends)."""
        if self.spawner is not None:
            self.spawner.close()
            self.spawner = None
        self.captures.close_all()
        for actions in self._wd_actions.values():
            actions.close()
        self._wd_actions.clear()
        self.unbind()
        self.hostfiles.close()
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1

    # ------------------------------------------------------------ spawn

    def spawn(self, spec: TaskSpec) -> int:
        """Start the task; return its pid (= its process group id). Raises SpawnError."""
        task_vars, cpus, _, exe = self._resolve(spec, self._enter)
        env = {**self._base_env, **task_vars}
        actions = self._file_actions(spec)
        if cpus != self._bound:
            # The child inherits the calling thread's affinity. The thread stays bound until the
            # batch ends (unbind), so tasks of one core set cost one move of the thread, not one each.
            os.sched_setaffinity(0, cpus)
            self._bound = cpus
        try:
            return os.posix_spawn(
                exe,
                spec.argv,
                env,
                file_actions=actions,
                setpgroup=0,
                setsigmask=(),
                setsigdef=_SIGDEF,
            )
        except OSError as e:
            if exe in self._which.values():
                self._which = {k: p for k, p in self._which.items() if p != exe}
            raise self._explain(e, spec, exe) from None

    def ended(self, task_id: int, tail: bool) -> str:
        """The task's exit was handled: its stderr tail when ``tail`` (it failed), else ""."""
        text = self.captures.close(task_id, tail)
        if self._stderr_files:
            path = self._stderr_files.pop(task_id, None)
            if path is not None and tail:
                text = read_tail(path)
        return text

    def _resolve(
        self, spec: TaskSpec, enter: Callable[[str], None], strict_env: bool = False
    ) -> tuple[dict[str, str], frozenset[int], str, str]:
        """What both spawn paths work out before starting a task, in this order (the first
        problem is the one reported): a command line, the task's variables (``strict_env``: each
        name and value checked, as the spawner threads pass them to C), its real CPUs, its wd
        (``enter``: chdir there, or make it once), and its executable (argv[0] looked up in the
        task's PATH from that wd). Returns (variables, cpus, wd, exe). Raises SpawnError."""
        if not spec.argv or not spec.argv[0]:
            raise SpawnError(EXIT_CANNOT_START, "cannot start: empty command line")
        task_vars = self._task_vars(spec)
        if strict_env:
            for k, v in task_vars.items():
                if not k or "=" in k or "\0" in k or "\0" in v:
                    raise SpawnError(EXIT_CANNOT_START, f"cannot start: bad environment variable {k!r}")
        cpus = self._cpus(spec)
        wd = spec.wd or self._home
        enter(wd)
        path_var = spec.env.get("PATH", self._base_path) if spec.env else self._base_path
        return task_vars, cpus, wd, self._which_exe(spec.argv[0], path_var, wd)

    def _task_vars(self, spec: TaskSpec) -> dict[str, str]:
        """What a task's environment lays over the agent's: Launch.env, the GPU variables of every
        vendor (common/gpuenv.py: each one the launch or the job did not set), PJ_TASK_ID, and
        PJ_HOSTFILE/SLURM_HOSTFILE when it has a hostfile."""
        env = dict(spec.env)
        for k, v in gpu_env(spec.gpus).items():
            env.setdefault(k, v)
        env[TASK_ENV] = str(spec.task_id)
        if spec.hostfile:
            self._give_hostfile(env, spec)
        return env

    def _cpus(self, spec: TaskSpec) -> frozenset[int]:
        try:
            return self.resources.real_cpus(spec.cores)
        except ResourceError as e:
            raise SpawnError(EXIT_CANNOT_START, f"cannot start: {e}") from None

    def bind_key(self, spec: TaskSpec) -> tuple[int, ...]:
        """Sorts tasks by the real CPUs they will be bound to (bad cores sort first: they fail)."""
        try:
            return tuple(sorted(self.resources.real_cpus(spec.cores)))
        except ResourceError:
            return ()

    # ------------------------------------------------------------ spawn on a spawner thread

    def prepare(self, spec: TaskSpec) -> Request:
        """Everything a spawner thread needs to start the task, as C data. Raises SpawnError.

        The child's first file action is the chdir to the task's wd, so relative paths (stdio,
        argv[0]) resolve there, as with ``spawn``; the agent process itself never moves.
        """
        task_vars, cpus, wd, exe = self._resolve(spec, self._make_wd_once, strict_env=True)
        envb = self._base_envb.copy()  # "K=V" entries by name: the task's own replace the agent's
        for k, v in task_vars.items():
            envb[k] = _b(f"{k}={v}")
        args = [_b(a) for a in spec.argv]
        if any(b"\0" in a for a in args):
            raise SpawnError(EXIT_CANNOT_START, "cannot start: an argument holds a NUL character")
        argv = (ctypes.c_char_p * (len(args) + 1))(*args)
        envp = (ctypes.c_char_p * (len(envb) + 1))(*envb.values())
        actions, keep = self._spawn_actions(spec, _b(wd))
        mask = self._masks.get(cpus)
        if mask is None:
            mask = self._libc.cpu_mask(cpus)  # type: ignore[union-attr]
            if len(self._masks) < 4096:
                self._masks[cpus] = mask
        return Request(spec.task_id, _b(exe), argv, envp, actions, keep, cpus, mask, spec)

    def finish(self, result: Result) -> int:
        """The pid of a task a spawner thread started; raises SpawnError if it did not start.

        A failure is tried once more by ``spawn`` in this thread: it says precisely what went
        wrong (which path, which directory), and starts the task if its working directory was
        removed meanwhile (it is made again). Nothing of the task ran the first time.
        """
        req = result.request
        if not req.keep_actions:
            req.actions.close()
        if result.errno == 0:
            return result.pid
        spec: TaskSpec = req.spec  # type: ignore[assignment]
        self._wds.discard(spec.wd or self._home)
        try:
            return self.spawn(spec)
        finally:
            self.unbind()

    def _make_wd_once(self, wd: str) -> None:
        """Make the wd unless it is known to exist (the spawner threads' path: the chdir is the
        child's first file action)."""
        if wd not in self._wds:
            self._make_wd(wd)

    def _make_wd(self, wd: str) -> None:
        try:
            os.makedirs(wd, exist_ok=True)
        except FileExistsError:
            raise SpawnError(
                EXIT_CANNOT_START, f"cannot enter the working directory {wd}: {os.strerror(errno.ENOTDIR)}"
            ) from None
        except OSError as e:
            raise SpawnError(
                EXIT_CANNOT_START, f"cannot create the working directory {wd}: {e.strerror}"
            ) from None
        if len(self._wds) < 65536:
            self._wds.add(wd)

    def _capture_closed(self, fd: int) -> None:
        """A capture file was closed: no cached file actions may name its descriptor any more."""
        for wd in self._capture_wds.pop(fd, ()):
            acts = self._wd_actions.pop((wd, fd), None)
            if acts is not None:
                acts.close()

    def _spawn_actions(self, spec: TaskSpec, wd: bytes) -> tuple[FileActions, bool]:
        """The file actions: chdir, then stdin/stdout/stderr; without stdio, shared per wd and
        capture file (the launch of a task that owns that capture file is the only one using them)."""
        plain = not (spec.stdin or spec.stdout or spec.stderr)
        key = (wd, self.captures.open(spec.task_id) if plain else -1)
        if plain:
            cached = self._wd_actions.get(key)
            if cached is not None:
                return cached, True
        acts = FileActions(self._libc)  # type: ignore[arg-type]
        try:
            acts.chdir(wd)
            for a in self._file_actions(spec):
                if a[0] == os.POSIX_SPAWN_DUP2:
                    acts.dup2(a[1], a[2])  # type: ignore[arg-type]
                else:
                    acts.open(a[1], _b(a[2]), a[3], a[4])  # type: ignore[arg-type]
        except BaseException:
            acts.close()
            raise
        if plain and len(self._wd_actions) < _ACTIONS_KEPT:
            self._wd_actions[key] = acts
            if key[1] >= 0:
                self._capture_wds.setdefault(key[1], []).append(wd)
            return acts, True
        return acts, False

    def _give_hostfile(self, env: dict[str, str], spec: TaskSpec) -> None:
        try:
            path = self.hostfiles.path(spec.hostfile)
        except HostfileError as e:
            raise SpawnError(EXIT_CANNOT_START, f"cannot start: {e}") from None
        env[HOSTFILE_ENV] = path
        if spec.slurm_hostfile:
            env[SLURM_HOSTFILE_ENV] = path

    def unbind(self) -> None:
        """Give the agent's thread back every CPU it started with (after a batch of spawns)."""
        if self._bound != self._agent_cpus:
            os.sched_setaffinity(0, self._agent_cpus)
            self._bound = self._agent_cpus

    def _enter(self, wd: str) -> None:
        try:
            os.chdir(wd)
        except FileNotFoundError:
            try:
                os.makedirs(wd, exist_ok=True)
                os.chdir(wd)
            except OSError as e:
                raise SpawnError(
                    EXIT_CANNOT_START, f"cannot create the working directory {wd}: {e.strerror}"
                ) from None
        except OSError as e:
            raise SpawnError(
                EXIT_CANNOT_START, f"cannot enter the working directory {wd}: {e.strerror}"
            ) from None

    def _file_actions(self, spec: TaskSpec) -> tuple[tuple[object, ...], ...] | list[tuple[object, ...]]:
        """stdin, stdout, stderr; a task without a stderr file gets a capture file for its tail."""
        if spec.stderr:
            self._stderr_files[spec.task_id] = spec.stderr
            capture = -1
        else:
            capture = self.captures.open(spec.task_id)
        null = self._devnull
        if not (spec.stdin or spec.stdout) and capture < 0 and not spec.stderr:
            return self._null_actions
        acts: list[tuple[object, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, spec.stdin, os.O_RDONLY, 0)
            if spec.stdin
            else (os.POSIX_SPAWN_DUP2, null, 0),
            (os.POSIX_SPAWN_OPEN, 1, spec.stdout, _OUT_FLAGS, 0o644)
            if spec.stdout
            else (os.POSIX_SPAWN_DUP2, null, 1),
        ]
        if spec.stderr and spec.stderr == spec.stdout:
            acts.append((os.POSIX_SPAWN_DUP2, 1, 2))
        elif spec.stderr:
            acts.append((os.POSIX_SPAWN_OPEN, 2, spec.stderr, _OUT_FLAGS, 0o644))
        else:
            acts.append((os.POSIX_SPAWN_DUP2, capture if capture >= 0 else null, 2))
        return acts

    def _which_exe(self, name: str, path_var: str, wd: str) -> str:
        """argv[0] with a '/' is used as it is; else the first executable file of that name in PATH
        (relative PATH entries are taken from ``wd``, where the task runs)."""
        if "/" in name:
            return name
        key = (name, path_var)
        found = self._which.get(key)
        if found is not None:
            return found
        cacheable = True
        for d in path_var.split(os.pathsep):
            if not d.startswith("/"):
                cacheable = False  # relative PATH entries depend on the wd
            cand = os.path.join(wd, d, name)
            try:
                st = os.stat(cand)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and os.access(cand, os.X_OK):
                if cacheable:
                    self._which[key] = cand
                return cand
        raise SpawnError(*explain.not_found(name, wd, path_var))

    def _explain(self, e: OSError, spec: TaskSpec, exe: str) -> SpawnError:
        """posix_spawn gives an errno only; find which path it was about (failure path only)."""
        for fd, path in ((0, spec.stdin), (1, spec.stdout), (2, spec.stderr)):
            if not path:
                continue
            name = ("stdin", "stdout", "stderr")[fd]
            problem = explain.open_problem(path, fd == 0)
            if problem:
                return SpawnError(EXIT_CANNOT_START, f"cannot open {name} {path}: {problem}")
        where = exe if exe.startswith("/") else os.path.join(spec.wd or os.getcwd(), exe)
        return SpawnError(*explain.exec_failed(e.errno or errno.EIO, os.path.normpath(where)))

    # ------------------------------------------------------------ signals, reaping

    @staticmethod
    def signal(pgid: int, signum: int) -> bool:
        """Signal a whole process group; False when it no longer exists."""
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            return False
        return True

    def sweep(self, orders: Iterable[tuple[int, int, int, bool]]) -> None:
        """Stop tasks whole: ``orders`` are (task id, pgid = leader pid, signal, leader gone);
        each group and the task's processes outside it (``strays.Strays.stop``)."""
        self.strays.stop(orders, self.signal)

    @staticmethod
    def reap() -> list[Exited]:
        """Every child that ended since the last call (never blocks)."""
        out: list[Exited] = []
        while True:
            try:
                pid, status, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return out
            if pid == 0:
                return out
            out.append(Exited(pid, os.waitstatus_to_exitcode(status), ru.ru_utime, ru.ru_stime, ru.ru_maxrss))


def _seal_inherited_fds() -> None:
    """Make every descriptor above 2 close-on-exec (posix_spawn has no closefrom)."""
    try:
        fds = [int(f) for f in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, already closed


# Fake pids for --dry-run: above any real pid (pid_max is at most 2**22), so never signalled.
_DRY_PID0 = 1 << 30


class DryLauncher(Launcher):
    """``pj-agent --dry-run``: every task "starts" and "exits 0" at once, and no process is ever
    started or signalled (to measure the master and the wire alone). The runner reaps right after
    each batch (``immediate_exits``), so a batch's started and exited reports travel together."""

    immediate_exits = True

    def __init__(
        self,
        resources: NodeResources,
        base_env: Mapping[str, str] | None = None,
        hostfiles: Hostfiles | None = None,
    ) -> None:
        super().__init__(resources, base_env, hostfiles, capture_dir="")
        self._next_pid = _DRY_PID0
        self._ended: list[Exited] = []

    def spawn(self, spec: TaskSpec) -> int:
        pid = self._next_pid
        self._next_pid += 1
        self._ended.append(Exited(pid, 0))
        return pid

    def signal(self, pgid: int, signum: int) -> bool:  # type: ignore[override]
        return False

    def sweep(self, orders: Iterable[tuple[int, int, int, bool]]) -> None:
        pass

    def reap(self) -> list[Exited]:  # type: ignore[override]
        ended, self._ended = self._ended, []
        return ended
