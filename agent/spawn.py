"""posix_spawn from libc, called with the GIL released, on the agent's spawner threads.

Why: ``os.posix_spawn`` holds the GIL for the whole call, and a call lasts as long as the child
takes to reach ``execve`` (glibc's clone(CLONE_VM|CLONE_VFORK) suspends the caller until then),
about 0.3 ms for /bin/true on a small VM. With one thread doing it, the agent could never read the
next orders, reap or report while a process was starting. Through ctypes the call releases the
GIL, so a spawner thread waits for the child while the event loop goes on; two spawner threads
start two children at once.

- ``Libc``: the bindings (posix_spawn, its file actions and attributes, sched_setaffinity).
  ``Libc.load()`` returns None where a piece is missing (non-glibc, glibc < 2.29 without
  ``posix_spawn_file_actions_addchdir_np``): the launcher then spawns in the loop's thread.
- ``Request``: everything one spawn needs, prepared by the launcher in the loop's thread (argv and
  environment as C arrays, file actions whose first is the chdir to the task's working directory,
  the CPU mask). A spawner thread only binds itself and calls posix_spawn.
- ``Spawner``: the threads, one queue each. A request goes to the thread last given the same
  CPUs, so a thread rarely moves between CPUs (a move costs about as much as the spawn). Results
  come back in order of completion through ``wake`` (the runner passes
  ``loop.call_soon_threadsafe`` of its drain), at most one pending wake at a time, so a burst of
  spawns costs one wake-up of the loop, not one each.

Measured on a 2-CPU VM (10 000 /bin/true, `pj run --cores 8`, side by side): 1.16x the
throughput of spawning in the loop's thread with two threads; one thread alone was slower
(0.9x: every result costs the loop a wake-up and the GIL changes hands twice per spawn).

The attributes are the same for every task and are built once: each task leads its own process
group, its signal mask is empty and every signal but KILL/STOP goes back to its default (the
agent ignores SIGPIPE, like every Python process, and a task must not inherit that).
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

POSIX_SPAWN_SETPGROUP = 0x02
POSIX_SPAWN_SETSIGDEF = 0x04
POSIX_SPAWN_SETSIGMASK = 0x08

_ACTIONS_BYTES = 128  # posix_spawn_file_actions_t is 80 bytes on x86-64/aarch64 glibc
_ATTR_BYTES = 512  # posix_spawnattr_t is 336
_SIGSET_BYTES = 128
_MASK_WORDS = 16  # cpu_set_t: 1024 CPUs
_WORD_BITS = 8 * ctypes.sizeof(ctypes.c_ulong)
_JOIN_S = 5.0

CharArray = ctypes.Array[ctypes.c_char_p]


class Libc:
    """The libc functions the spawner calls (ctypes releases the GIL around each call)."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        self.spawn = lib.posix_spawn
        self.spawn.argtypes = (ctypes.POINTER(ci), cp, vp, vp, vp, vp)
        self.actions_init = lib.posix_spawn_file_actions_init
        self.actions_destroy = lib.posix_spawn_file_actions_destroy
        self.add_open = lib.posix_spawn_file_actions_addopen
        self.add_open.argtypes = (vp, ci, cp, ci, ctypes.c_uint)
        self.add_dup2 = lib.posix_spawn_file_actions_adddup2
        self.add_dup2.argtypes = (vp, ci, ci)
        self.add_chdir = lib.posix_spawn_file_actions_addchdir_np
        self.add_chdir.argtypes = (vp, cp)
        self.setaffinity = lib.sched_setaffinity
        self.setaffinity.argtypes = (ci, ctypes.c_size_t, vp)
        for fn in (self.spawn, self.actions_init, self.actions_destroy, self.add_open, self.add_dup2,
                   self.add_chdir, self.setaffinity):
            fn.restype = ci
        self._lib = lib
        self.attr = self._attributes()

    @classmethod
    def load(cls) -> Libc | None:
        """The bindings, or None when this libc lacks one of them."""
        try:
            return cls(ctypes.CDLL(None, use_errno=True))
        except (OSError, AttributeError):
            return None

    def _attributes(self) -> ctypes.Array[ctypes.c_char]:
        lib = self._lib
        attr = ctypes.create_string_buffer(_ATTR_BYTES)
        default = ctypes.create_string_buffer(_SIGSET_BYTES)
        empty = ctypes.create_string_buffer(_SIGSET_BYTES)
        ok = lib.posix_spawnattr_init(attr) == 0
        ok = ok and lib.sigfillset(default) == 0 and lib.sigemptyset(empty) == 0
        for sig in (signal.SIGKILL, signal.SIGSTOP):
            ok = ok and lib.sigdelset(default, int(sig)) == 0
        ok = ok and lib.posix_spawnattr_setsigdefault(attr, default) == 0
        ok = ok and lib.posix_spawnattr_setsigmask(attr, empty) == 0
        ok = ok and lib.posix_spawnattr_setpgroup(attr, 0) == 0
        flags = POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
        ok = ok and lib.posix_spawnattr_setflags(attr, ctypes.c_short(flags)) == 0
        if not ok:
            raise OSError("cannot set up posix_spawn attributes")
        return attr

    def cpu_mask(self, cpus: Iterable[int]) -> ctypes.Array[ctypes.c_ulong]:
        mask = (ctypes.c_ulong * _MASK_WORDS)()
        for c in cpus:
            if c >= _MASK_WORDS * _WORD_BITS:
                raise ValueError(f"CPU {c} is beyond the {_MASK_WORDS * _WORD_BITS} this agent can bind to")
            mask[c // _WORD_BITS] |= 1 << (c % _WORD_BITS)
        return mask


class FileActions:
    """One posix_spawn_file_actions_t; ``close()`` frees what libc allocated for it."""

    __slots__ = ("buf", "libc")

    def __init__(self, libc: Libc) -> None:
        self.libc = libc
        self.buf: ctypes.Array[ctypes.c_char] | None = ctypes.create_string_buffer(_ACTIONS_BYTES)
        if libc.actions_init(self.buf) != 0:
            raise MemoryError("posix_spawn_file_actions_init failed")

    def chdir(self, path: bytes) -> None:
        self._ok(self.libc.add_chdir(self.buf, path))

    def open(self, fd: int, path: bytes, flags: int, mode: int) -> None:
        self._ok(self.libc.add_open(self.buf, fd, path, flags, mode))

    def dup2(self, fd: int, new_fd: int) -> None:
        self._ok(self.libc.add_dup2(self.buf, fd, new_fd))

    @staticmethod
    def _ok(rc: int) -> None:
        if rc != 0:
            raise OSError(rc, "cannot add a posix_spawn file action")

    def close(self) -> None:
        if self.buf is not None:
            self.libc.actions_destroy(self.buf)
            self.buf = None


class Request:
    """One spawn, ready to go: only C data, so that a spawner thread needs no Python work."""

    __slots__ = ("actions", "argv", "cpus", "envp", "exe", "keep_actions", "mask", "spec", "task_id")

    def __init__(
        self,
        task_id: int,
        exe: bytes,
        argv: CharArray,
        envp: CharArray,
        actions: FileActions,
        keep_actions: bool,
        cpus: frozenset[int],
        mask: ctypes.Array[ctypes.c_ulong] | None,
        spec: object,
    ) -> None:
        self.task_id = task_id
        self.exe = exe
        self.argv = argv
        self.envp = envp
        self.actions = actions
        self.keep_actions = keep_actions  # shared (cached by the launcher): not freed after use
        self.cpus = cpus
        self.mask = mask  # None: leave the thread's affinity as it is
        self.spec = spec  # for the launcher's explanation of a failure


class Result:
    __slots__ = ("errno", "pid", "request", "time")

    def __init__(self, request: Request, pid: int, errno: int, when: float = 0.0) -> None:
        self.request = request
        self.pid = pid
        self.errno = errno  # 0: started
        self.time = when  # when posix_spawn returned (the task's start), seconds since the epoch


class _Worker:
    """One spawner thread's queue, and the CPUs of the last request routed to it."""

    __slots__ = ("cpus", "cv", "thread", "todo")

    def __init__(self, cpus: frozenset[int]) -> None:
        self.todo: deque[Request] = deque()
        self.cv = threading.Condition(threading.Lock())
        self.cpus = cpus  # where its thread will be bound once its queue is done
        self.thread: threading.Thread | None = None


class Spawner:
    """``threads`` threads that start prepared requests; results go to ``results``.

    A request goes to the thread last given the same CPUs (it is bound there already: moving a
    thread to another CPU costs about as much as the spawn itself), else to the least busy one.
    """

    def __init__(self, libc: Libc, threads: int, home_cpus: frozenset[int]) -> None:
        if threads < 1:
            raise ValueError("a spawner needs at least one thread")
        self.libc = libc
        self.results: deque[Result] = deque()
        self._closing = False
        self._wake: Callable[[], object] | None = None
        self._wake_pending = False
        self._in_flight = 0  # submitted and not yet taken from results
        self._home = home_cpus
        self._workers = [_Worker(home_cpus) for _ in range(threads)]
        for i, w in enumerate(self._workers):
            w.thread = threading.Thread(target=self._work, args=(w,), name=f"pj-spawner-{i}", daemon=True)
            w.thread.start()

    @property
    def in_flight(self) -> int:
        """Spawns submitted whose result has not been taken yet."""
        return self._in_flight

    def set_wake(self, wake: Callable[[], object] | None) -> None:
        """``wake()`` is called from a spawner thread when results wait and no wake is pending."""
        self._wake = wake

    def submit(self, requests: list[Request]) -> None:
        if self._closing:
            raise RuntimeError("the spawner is closed")
        workers = self._workers
        given: dict[int, list[Request]] = {}
        for req in requests:
            pick = -1
            for i, w in enumerate(workers):
                if w.cpus == req.cpus:
                    pick = i
                    break
            if pick < 0:
                pick = min(range(len(workers)), key=lambda i: len(workers[i].todo) + len(given.get(i, ())))
                workers[pick].cpus = req.cpus
            given.setdefault(pick, []).append(req)
        self._in_flight += len(requests)
        for i, reqs in given.items():
            w = workers[i]
            with w.cv:
                w.todo.extend(reqs)
                w.cv.notify()

    def take(self) -> list[Result]:
        """Every result ready now (the loop's thread)."""
        self._wake_pending = False  # before taking: a result added later wakes the loop again
        out: list[Result] = []
        results = self.results
        while results:
            out.append(results.popleft())
        self._in_flight -= len(out)
        return out

    def close(self) -> None:
        """Let queued requests run, then stop the threads (daemon threads: one stuck in a spawn
        is left behind after a few seconds rather than hang the agent's exit)."""
        self._closing = True
        for w in self._workers:
            with w.cv:
                w.cv.notify_all()
        for w in self._workers:
            if w.thread is not None:  # a spawn blocked on a FIFO (stdin) must not hang the agent
                w.thread.join(timeout=_JOIN_S)

    # ------------------------------------------------------------ the threads

    def _work(self, me: _Worker) -> None:
        libc = self.libc
        spawn, setaffinity, attr = libc.spawn, libc.setaffinity, libc.attr
        now = time.time
        bound = self._home
        pid = ctypes.c_int()
        pid_ref = ctypes.byref(pid)
        mask_bytes = _MASK_WORDS * ctypes.sizeof(ctypes.c_ulong)
        todo, cv = me.todo, me.cv
        while True:
            with cv:
                while not todo and not self._closing:
                    cv.wait()
                if not todo:
                    break
                req = todo.popleft()
            if req.mask is not None and req.cpus != bound:
                # The child inherits this thread's affinity; the thread stays bound until a task
                # with other CPUs comes, so tasks on the same CPUs cost one move, not one each.
                if setaffinity(0, mask_bytes, req.mask) == 0:
                    bound = req.cpus
                else:
                    self._deliver(Result(req, 0, ctypes.get_errno() or 22))
                    continue
            err = spawn(pid_ref, req.exe, req.actions.buf, attr, req.argv, req.envp)
            self._deliver(Result(req, pid.value if err == 0 else 0, err, now()))

    def _deliver(self, result: Result) -> None:
        self.results.append(result)
        if not self._wake_pending:
            self._wake_pending = True
            wake = self._wake
            if wake is not None:
                try:
                    wake()
                except RuntimeError:  # the loop is closed: the owner takes results itself
                    pass
