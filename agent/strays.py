"""A task's processes that left its process group, found and stopped with it.

Every task carries ``PJ_TASK_ID=<id>`` and ``PJ_AGENT_PID=<agent pid>`` in its environment
(launcher.py); processes that left its group (setsid, double fork) keep them. A stop (cancel,
walltime, shutdown: never a normal exit) signals the group, then every process of the task
outside it: the leader's descendants and every same-uid process carrying both marks, found in ONE
pass over /proc for a whole batch of stops. What was found is remembered (pid and start time) so
that a later SIGKILL still reaches a process that has since left the tree (and never a process
that merely reused its pid).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from . import guard

TASK_ENV = "PJ_TASK_ID"
AGENT_ENV = "PJ_AGENT_PID"
_TASK_MARK = f"\0{TASK_ENV}=".encode()


class ProcTable:
    """One pass over /proc: each process's parent and start time, and which carry our marks."""

    __slots__ = ("children", "marked", "start")

    def __init__(self) -> None:
        self.children: dict[int, list[int]] = {}
        self.start: dict[int, int] = {}
        self.marked: dict[int, list[int]] = {}  # task id -> pids

    def descendants(self, pid: int) -> list[int]:
        out: list[int] = []
        todo = [pid]
        while todo:
            kids = self.children.get(todo.pop(), ())
            out.extend(kids)
            todo.extend(kids)
        return out


def scan_proc(marker: bytes) -> ProcTable:
    """Read /proc once (at stop time only). Environments are read for our own uid's processes only."""
    table = ProcTable()
    uid = os.getuid()
    for pid in guard.proc_pids():
        st = guard.proc_stat(pid)
        if st is None:
            continue  # gone meanwhile
        _, ppid, started = st
        table.start[pid] = started
        table.children.setdefault(ppid, []).append(pid)
        if guard.proc_owner(pid) != uid:
            continue
        env = guard.proc_environ(pid)
        if env is None or marker not in env:
            continue
        task_id = guard.env_int(env, _TASK_MARK)
        if task_id is not None:
            table.marked.setdefault(task_id, []).append(pid)
    return table


class Strays:
    """The processes of this agent's tasks outside their groups, remembered between the stops
    of one task (TERM, then KILL after the grace)."""

    def __init__(self, agent_pid: int) -> None:
        self._agent_pid = agent_pid
        self._marker = f"\0{AGENT_ENV}={agent_pid}\0".encode()
        self._remembered: dict[int, set[tuple[int, int]]] = {}  # task id -> strays (pid, start time)

    def stop(self, orders: Iterable[tuple[int, int, int, bool]], signal_group: Callable[[int, int], bool]) -> None:
        """Stop tasks whole: ``orders`` are (task id, pgid = leader pid, signal, leader gone).

        Each group is signalled (``signal_group``), then every process of the task outside it: the
        leader's descendants (when the leader is not gone: a reaped pid may belong to someone
        else), the processes carrying the task's marks, and those found by an earlier sweep of
        that task that still run. A sweep with ``leader gone`` is the task's last: its memory is
        dropped.
        """
        orders = list(orders)
        if not orders:
            return
        table = scan_proc(self._marker)
        for task_id, pgid, signum, leader_gone in orders:
            signal_group(pgid, signum)
            found = self._remembered.pop(task_id, set())
            found = {p for p in found if table.start.get(p[0]) == p[1]}  # still the same process
            if not leader_gone:
                found |= {(p, table.start[p]) for p in table.descendants(pgid)}
            found |= {(p, table.start[p]) for p in table.marked.get(task_id, ())}
            found.discard((pgid, table.start.get(pgid, -1)))
            for pid, _ in found:
                if pid != self._agent_pid:
                    try:
                        os.kill(pid, signum)
                    except OSError:
                        pass  # gone meanwhile
            if not leader_gone and found:
                self._remembered[task_id] = found
