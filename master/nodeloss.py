"""A node's agent is gone: what becomes of the tasks placed there. Pure (hooks in reconcile.py).

- A task that never started (SCHEDULED: no started report came; a standby the agent held, or a
  launch it may not have spawned) goes back to the front of the queue as if never placed: no
  retry used, no crash counted, no attempt kept (``prefetch.withdrawn``). Its dependents wait.
- A task that ran on a node declared lost (``node_lost``: its agent did not come back within the
  grace) is retried as before (``Core.node_left``: a retry used, a crash counted).
- A node whose agent died and whose *new* agent registers (``replaced``: it registers without a
  campaign while the node is disconnected): the new agent has stopped, before registering, every
  process its dead predecessor left on the node (agent/guard.py), so the tasks that ran there are
  over: each is queued again without using a retry (``interrupted``), its attempt counted towards
  the crash limit (an agent killed by its task's memory must not be killed forever).
- A node whose allocation has ended (``allocation_ended``: its agent leaves or breaks off no earlier
  than ``ENDED_SLACK_S`` before ``ends_at``): what ran there was cut short by the allocation, not by a
  fault of its own: queued again without using a retry or counting a crash, with the reason
  ``allocation ended``; so is a task killed by a signal once its node's allocation has ended
  (``cut_by_end``: the agent stops its tasks when Slurm ends the job). (Tasks with a walltime are never placed where they would outlast it: pool.py.)
- A multi-node task runs on its first node's agent: when another of its nodes is lost, the copy
  still running there is canceled, so that it never runs beside its next attempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import prefetch
from .model import State

if TYPE_CHECKING:
    from .core import Core
    from .registry import Task


ENDED_SLACK_S = 60.0  # an agent gone this close to its allocation's end is taken as ended by it


def ended(core: Core, name: str, now: float) -> bool:
    """Whether ``name``'s allocation has ended (or ends within ``ENDED_SLACK_S``: clocks differ)."""
    node = core.pool.by_name.get(name)
    return node is not None and node.ends_at > 0 and now >= node.ends_at - ENDED_SLACK_S


def allocation_ended(core: Core, name: str, now: float) -> None:
    """``name``'s agent is gone with its allocation: every task there is queued again free (no retry
    used, no crash counted), those that never started as if never placed."""
    core.recon.disconnected.pop(name, None)
    reason = _ended_reason(name)
    for task in _unstarted(core, name, now):
        core.interrupt(task, reason, now)
    core.pool.remove(name)


def _ended_reason(name: str) -> str:
    return f"allocation ended: the allocation of node {name} ended while it ran (queued again, no retry used)"


def cut_by_end(core: Core, task: Task, exit_code: int, now: float) -> bool:
    """A task killed by a signal on a node whose allocation has ended (the agent stops its tasks when
    Slurm ends the job) was cut short by the allocation: queued again free (``Core.interrupt``);
    True if it was. Not a task killed at its own walltime (that is its own failure)."""
    if exit_code >= 0 or not any(ended(core, s.node, now) for s in task.allocation):
        return False
    wall = task.job.tmpl.walltime_s
    started = next((t for s, t in task.history if s == State.EXECUTING), now)
    if wall > 0 and now - started >= wall - 1.0:
        return False
    node = next(s.node for s in task.allocation if ended(core, s.node, now))
    core.interrupt(task, _ended_reason(node), now)
    return True


def _on(core: Core, name: str) -> list[Task]:
    return [t for t in core.running.values() if any(s.node == name for s in t.allocation)]


def on_nodes(core: Core, names: Iterable[str]) -> dict[str, list[Task]]:
    """The running tasks holding a share of each of ``names``, in placement order: one walk over
    the running tasks for all of them (a storm loses hundreds of nodes in one pass)."""
    out: dict[str, list[Task]] = {n: [] for n in names}
    for task in core.running.values():
        for share in task.allocation:
            found = out.get(share.node)
            if found is not None:
                found.append(task)
    return out


def _unstarted(core: Core, name: str, now: float, on: list[Task] | None = None) -> list[Task]:
    """Queue again, free, the tasks of ``name`` that never started; the others, in placement order.
    ``on``: the tasks there as ``on_nodes`` found them (those gone meanwhile are passed over)."""
    rest = []
    running = core.running
    for task in _on(core, name) if on is None else on:
        if running.get(task.id) is not task:
            continue  # it ended with another node of its allocation, lost in the same pass
        if task.state == State.SCHEDULED:
            prefetch.withdrawn(core, task.id, now)
        else:
            rest.append(task)
            first = task.allocation[0].node
            if first != name:  # its process runs on another node's agent: stop that copy
                core.outbox.cancels.setdefault(first, []).append(task.id)
    return rest


def node_lost(core: Core, name: str, now: float, on: list[Task] | None = None) -> None:
    """The node is lost (its agent did not come back): unstarted tasks free, the others retried.
    ``on``: its tasks as ``on_nodes`` found them (None: looked up here)."""
    if ended(core, name, now):  # node_left queues every task there again free
        core.node_left(name, now)
    else:
        core.node_left(name, now, _unstarted(core, name, now, on))


def nodes_lost(core: Core, names: list[str], now: float) -> None:
    """Many nodes lost at once (a storm): ``node_lost`` for each, their tasks found in one walk."""
    on = on_nodes(core, names) if len(names) > 1 else {}
    for name in names:
        node_lost(core, name, now, on.get(name))


def replaced(core: Core, name: str, now: float) -> None:
    """A new agent registers for ``name`` whose old agent died: its tasks there were stopped."""
    core.recon.disconnected.pop(name, None)
    reason = f"interrupted: its agent on {name} died (a new agent took the node)"
    for task in _unstarted(core, name, now):
        if task.allocation[0].node != name:
            continue  # canceled on its first node; node_left retries it
        job = task.job
        earlier = job.attempts.get(task.iteration, ()) if job.attempts else ()
        crashes = 1 + sum(1 for a in earlier if a.lost)
        if core.crash_limit and crashes >= core.crash_limit and not job.cancel_requested:
            core.end_task(task, State.FAILED, None,
                           f"crash limit: {crashes} nodes were lost while it ran (last: {name})", now)
        else:
            core.interrupt(task, reason, now, lost=True)
    core.node_left(name, now)
