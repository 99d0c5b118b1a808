"""Prefetch: the next task for a core is on its agent before the core frees. Pure bookkeeping.

When ready work is left over after a pass (every core is busy), the core places the oldest of it
as a *standby* on exactly the share (node, cores, GPUs) of a task that runs there: the agent holds
the launch until those cores and GPUs are free and starts it the moment the running task ends, so
the master's round trip (the exit up, the next launch down) leaves each core's turnaround.

- Only single-node requests with an exact core count are put on standby, on the share of a running
  task with that many cores and as many GPUs. Standbys queue on a share up to ``depth`` deep (4:
  the agent is not left without the next task while the master hears of one end and answers with
  a launch, so it can send its ends in fuller, fewer messages; 10k /bin/true on 8 cores: depth 1
  5.2 s, 2 4.8 s, 4 4.67 s, 8 4.64 s), behind a function call (pj.client.Executor, common/pycall.py)
  ``call_depth`` deep (32): a warm worker ends a call every ~100 us, so a share ran through 4
  standbys long before the master's answer came (issue 15: 20,000 trivial calls on 2 cores,
  ~5,300 -> ~7,900 calls/s; 16 ~7,000, 64 no better; 32 for every task cost /bin/true ~7%). The
  pass walks the ready work in submission order. Older work that can neither run nor wait on a
  share (a range, several nodes, a size nothing running has) is passed over for ``patience``
  seconds at most; then the pass
  stops at it, so that standbys stop taking every core that frees and it gets its turn
  (``ReadyQueue.schedule(hold=...)``).
- The pool never sees a standby: the share stays held by the running task, and passes to the
  first standby when that task leaves (ends, or is queued again); a standby that leaves first
  holds nothing of its own (the one behind it moves up).
- A standby should not wait behind a long task while cores idle elsewhere: once cores are free
  that the ready work cannot use and a standby has waited ``patience`` seconds, the master
  *withdraws* it (``Orders.withdraw``); the agent drops it if it has not started it, says so, and
  the task goes back to the front of the queue (``Core.task_withdrawn``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import Allocation, Request, State
from .pool import holds, until

if TYPE_CHECKING:
    from .core import Core
    from .pool import Pool
    from .registry import Task

Key = tuple[int, int, int]  # (cores, GPUs, memory) of a one-node share
# A function call's args start so (common/pycall.is_call; not imported: pycall does I/O, the core
# none; tests/master/test_prefetch.py checks they agree).
CALL_ARGS = ("-m", "pj.agent.pyworker", "call")
# Standbys at most, all shares together: each is a launch its agent holds. 8,192 x 8 cores with
# 150,000 two-second tasks had ~80,000 of them (4 deep) and was no faster for it.
STANDBY_MAX = 50_000


def _key(task: Task) -> Key | None:
    alloc = task.allocation
    if len(alloc) != 1:
        return None
    share = alloc[0]
    return len(share.cores), len(share.gpus), share.memory


class Standbys:
    """Which running tasks may get a standby, and which standby waits on which task."""

    def __init__(self, enabled: bool = True, patience: float = 0.25, depth: int = 4, call_depth: int = 32,
                 limit: int = STANDBY_MAX) -> None:
        self.enabled = enabled
        self.patience = patience  # seconds a standby may wait while cores idle before it is withdrawn
        self.depth = depth  # standbys per share at most (behind a task that is not a call)
        self.call_depth = call_depth  # the same behind a function call
        # Tasks that may get a standby (holding a share, or a standby less than ``depth`` deep, and
        # without one yet), by the (cores, GPUs) of their share; oldest offered first.
        self.heads: dict[Key, dict[int, Task]] = {}
        # Heads on a node cut off (paused: nothing new goes there), taken out of ``heads`` by the
        # first ``share_for`` that met them and put back by ``unpark`` when it returns: else every
        # later call walks past them (8,192 x 8 agents, 820 vanished: passes of 10 s).
        self.parked: dict[str, dict[int, Task]] = {}
        self.ahead: dict[int, Task] = {}  # task id -> the standby right behind it on its share
        self.behind: dict[int, Task] = {}  # standby id -> the task right before it (oldest standby first)
        self.places: dict[int, int] = {}  # standby id -> its place in its share's line (1: next)
        self.withdrawing: set[int] = set()  # standbys the agent was asked to give back
        self.withdrawing_cores = 0  # their cores: free cores they will take once given back
        self.limit = limit  # standbys at most, all shares together
        self._picked: Task | None = None  # the task whose share ``share_for`` just gave out

    def offer(self, task: Task) -> None:
        """A task holds a one-node share now (placed, or its predecessor left): it may get a standby."""
        key = _key(task)
        if key is not None:
            d = self.heads.get(key)
            if d is None:
                d = self.heads[key] = {}
            d[task.id] = task

    def waits_on(self, task_id: int) -> tuple[Task, int] | None:
        """For a standby: the task that holds the share it waits for, and its place in that share's
        line (1: next); None for any other task. Read-only: for reports (why.py)."""
        before = self.behind.get(task_id)
        if before is None:
            return None
        while before.id in self.behind:
            before = self.behind[before.id]
        return before, self.places[task_id]

    def share_for(self, request: Request, pool: Pool, until: float = 0.0, walltime: float = 0.0) -> Allocation | None:
        """The share of the oldest running task a standby with ``request`` can wait on, or None;
        on a node whose allocation ``holds`` a task that runs until ``until`` (it starts later: the
        end is checked again when it is withdrawn). The next ``link`` makes the standby wait on that task."""
        if request.nodes.max != 1 or request.cores.max != request.cores.min:
            return None
        key = (request.cores.min, request.gpus, request.memory)
        d = self.heads.get(key)
        if not d:
            return None
        by_name = pool.by_name
        found: Task | None = None
        cut_off: list[Task] = []
        for task in d.values():
            if task.job.cancel_requested:
                continue  # about to end: a standby there would only wait on a kill
            node = by_name.get(task.allocation[0].node)
            if node is None or not node.online or node.paused:
                cut_off.append(task)
            elif holds(node.ends_at, until) and (
                not until or not node.ends_at or _ends_in_time(task, self.behind, node.ends_at, walltime)
            ):
                found = task
                break
        for task in cut_off:
            del d[task.id]
            self.parked.setdefault(task.allocation[0].node, {})[task.id] = task
        if found is not None:
            del d[found.id]
        if not d:
            del self.heads[key]
        if found is None:
            return None
        task = found
        self._picked = task
        return task.allocation

    def link(self, standby: Task) -> None:
        """``standby`` was just placed on the share ``share_for`` gave out."""
        task, self._picked = self._picked, None
        assert task is not None, "link() without share_for()"
        self.ahead[task.id] = standby
        self.behind[standby.id] = task
        place = self.places[standby.id] = self.places.get(task.id, 0) + 1
        if place < self._depth(standby):
            self.offer(standby)

    def leave(self, task: Task) -> bool:
        """``task`` leaves its share (ended, queued again, withdrawn). True: the share goes back to
        the pool; False: it does not (it passes to the next standby, or the task was a standby
        whose share is still held by the task it waited on)."""
        tid = task.id
        self._unoffer(task)
        after = self.ahead.pop(tid, None)
        before = self.behind.pop(tid, None)
        if before is None:  # it held the share
            if after is None:
                return True
            del self.behind[after.id]
            self._unwithdraw(after)
            self._move_up(after)  # it holds the share now
            return False
        # A standby: the one behind it (if any) moves up to its place.
        del self.places[tid]
        self._unwithdraw(task)
        if after is None:
            del self.ahead[before.id]
            self.offer(before)  # the line behind ``before`` is shorter now
        else:
            self.ahead[before.id] = after
            self.behind[after.id] = before
            self._move_up(after)
        return False

    def _unwithdraw(self, task: Task) -> None:
        if task.id in self.withdrawing:
            self.withdrawing.discard(task.id)
            self.withdrawing_cores -= len(task.allocation[0].cores)

    def _move_up(self, task: Task) -> None:
        """The line from ``task`` on moved one place closer to the share."""
        places = self.places
        while True:
            place = places.pop(task.id) - 1
            if place:
                places[task.id] = place
            nxt = self.ahead.get(task.id)
            if nxt is None:
                if place < self._depth(task):
                    self.offer(task)  # the end of the line: room behind it again
                return
            task = nxt

    def _depth(self, task: Task) -> int:
        """How deep the line may grow behind ``task`` (the last in it)."""
        return self.call_depth if task.job.tmpl.args[:3] == CALL_ARGS else self.depth

    def unpark(self, node: str) -> None:
        """``node`` is back (its cut-off heads may get standbys again)."""
        for task in self.parked.pop(node, {}).values():
            if task.id not in self.ahead:
                self.offer(task)

    def _unoffer(self, task: Task) -> None:
        key = _key(task)
        if key is not None:
            d = self.heads.get(key)
            if d is not None and d.pop(task.id, None) is not None and not d:
                del self.heads[key]
            node = task.allocation[0].node
            p = self.parked.get(node)
            if p is not None and p.pop(task.id, None) is not None and not p:
                del self.parked[node]

    def stuck(self, now: float, pool: Pool) -> tuple[list[Task], float | None]:
        """Standbys to withdraw now: those that waited ``patience`` seconds while the pool has free
        cores they would fit (no more than fit, less the cores of those already being withdrawn:
        each of those takes a free core once its agent gives it back), oldest first; and when to
        look again."""
        if not self.behind or pool.free_cores <= self.withdrawing_cores:
            return [], None
        out: list[Task] = []
        taken: list[Allocation] = []
        missed: set[int] = set()
        wake: float | None = None
        ahead = self.ahead
        for sid, before in self.behind.items():
            if sid in self.withdrawing:
                continue
            standby = ahead[before.id]  # (``behind`` keeps the order the standbys were placed in)
            due = standby.history[-1][1] + self.patience
            if due > now:
                wake = due  # the rest were placed later
                break
            request = standby.job.tmpl.request
            if id(request) in missed:
                continue
            alloc = pool.allocate(request, until(now, standby.job.tmpl.walltime_s))  # for the count only, given back below
            if alloc is None:
                missed.add(id(request))
                continue
            taken.append(alloc)
            out.append(standby)
            if pool.free_cores <= self.withdrawing_cores:
                break
        for alloc in taken:
            pool.release(alloc)
        for standby in out:
            self.withdrawing.add(standby.id)
            self.withdrawing_cores += len(standby.allocation[0].cores)
        return out, wake


def _ends_in_time(ahead: Task, behind: dict[int, Task], ends_at: float, walltime: float) -> bool:
    """Whether a standby of ``walltime`` behind ``ahead`` ends by ``ends_at`` even if it starts as late
    as it may: when ``ahead`` has run out its own walltime (the agent starts a standby at once, with
    no word from the master). Behind a task without a walltime, or a standby, its start is not known:
    no."""
    wall = ahead.job.tmpl.walltime_s
    if wall <= 0 or ahead.id in behind:
        return False
    return ahead.history[-1][1] + wall + walltime <= ends_at


def standby_pass(core: Core, now: float, paced: bool, room: int) -> float | None:
    """After the core's pass over free cores: put ready work on standby behind running tasks (at
    most ``room`` this pass, and ``Standbys.limit`` in all), then withdraw standbys stuck while
    cores idle. Neither when the pass over free cores was ``paced`` (cut by the core's launch
    limits with free cores left): the next pass gives those cores the ready work; standbys made or
    withdrawn for them meanwhile would only go back and forth. Returns when to look again for stuck
    ones (None: when something happens)."""
    if paced:
        return None
    queue, pool, sb = core.queue, core.pool, core.standbys
    place = core.place
    if queue.queues and sb.heads and room > 0 and len(sb.behind) < sb.limit:
        placed = core.outbox.placed
        most = len(placed) + room
        queue.schedule(lambda request, wall: sb.share_for(request, pool, until(now, wall), wall),
                       lambda job, it, alloc: sb.link(place(job, it, alloc, now)),
                       lambda: bool(sb.heads) and len(placed) < most and len(sb.behind) < sb.limit,
                       now, hold=now - sb.patience)
    if not sb.behind or pool.free_cores <= sb.withdrawing_cores:
        return None
    stuck, wake = sb.stuck(now, pool)
    withdraws = core.outbox.withdraws
    for task in stuck:
        withdraws.setdefault(task.allocation[0].node, []).append(task.id)
    return wake


def withdrawn(core: Core, task_id: int, now: float) -> None:
    """The agent gave back a standby it had not started: it goes back to the front of the queue
    as if never placed (no record of it stays), or ends CANCELED if its job is being canceled."""
    task = core.running.get(task_id)
    if task is None or task.state != State.SCHEDULED:
        return  # it started (or ended) before the withdraw reached the agent
    job = task.job
    if job.cancel_requested:
        core.end_task(task, State.CANCELED, None, job.cancel_reason, now)
        return
    core.requeue(task, now, None, front=True)
