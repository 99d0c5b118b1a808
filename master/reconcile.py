"""Agents that outlive the master's stream: what the core believes against what the agents run. Pure.

An agent whose stream breaks keeps its tasks running and connects again. Two cases:

- the same master (a network cut, a master that declared it lost): the node is *disconnected*:
  nothing new goes there, its tasks stay as they are; it has ``grace`` seconds to come back, else
  it is lost (``Core.node_left``: retries, crash limit);
- a master restarted with ``--resume``: the tasks placed but not final in the journal are
  *orphans*: back in the registry with their allocation, holding no core (their nodes have not
  joined); a node that does not register within ``--node-timeout`` leaves its orphans to run again.

When an agent registers it says the campaign it served, the tasks it still runs and those that
ended while it was cut off (with recent exits it may have sent already). For every task the core
has running on that node: ended -> the exit is applied as usual; still running -> adopted (its
cores taken again); neither -> a launch it never started (the agent drops the launches waiting for
busy cores when its stream breaks, and some are lost with the stream): queued again as if never
placed, no attempt kept; or one that started and died with an old agent: queued again without
using a retry (``interrupted``), its attempt kept. A task the agent runs that the core does not: canceled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import nodeloss, prefetch
from .model import NodeShare, State

if TYPE_CHECKING:
    from .core import Core
    from .registry import Task

INTERRUPTED_RESTART = "interrupted: no agent ran it after the master restarted"
INTERRUPTED_RETURN = "interrupted: its agent came back without it"

Exit = tuple[int, int, str, bytes, str]  # (task id, exit code, error, usage packed, stderr tail)


class WrongCampaign(ValueError):
    """An agent that served another campaign: it must stop its tasks, not join this one."""


@dataclass
class Reconciler:
    """The core's part of the bookkeeping: nodes cut off and the shares of orphans not yet held."""

    grace: float = 30.0  # how long a disconnected node may take to come back
    # Once the first node is due, the loss waits this long more and takes every node due by then in
    # the same pass: a storm's stream ends reach a busy master over a second or two, and each pass
    # that loses nodes walks the running tasks and requeues them (one walk, one requeue). It only
    # adds to a grace, never cuts one short. 0: each node as soon as it is due.
    gather: float = 0.0
    disconnected: dict[str, float] = field(default_factory=dict)  # node -> the time it is lost
    unheld: dict[str, dict[int, NodeShare]] = field(default_factory=dict)  # node -> task id -> share
    orphans: set[int] = field(default_factory=set)  # restored placed tasks whose node has not registered
    orphan_deadline: float | None = None  # orphans whose node has not registered by then run again

    @property
    def losses_at(self) -> float | None:
        """When the next pass that loses nodes is due: the first deadline, plus the gather."""
        return min(self.disconnected.values()) + self.gather if self.disconnected else None

    @property
    def wake_at(self) -> float | None:
        losses = self.losses_at
        times = [] if losses is None else [losses]
        if self.orphan_deadline is not None:
            times.append(self.orphan_deadline)
        return min(times, default=None)

    def held(self, task: Task) -> tuple[NodeShare, ...]:
        """The shares of ``task`` the pool holds, forgetting those it does not (the task is leaving)."""
        if not self.unheld:
            return task.allocation
        out = []
        for share in task.allocation:
            pending = self.unheld.get(share.node)
            if pending is not None and pending.pop(task.id, None) is not None:
                if not pending:
                    del self.unheld[share.node]
                continue
            out.append(share)
        return tuple(out)


def orphan(core: Core, task: Task) -> None:
    """A task restored as placed, its nodes not joined yet: its shares are taken when they join."""
    core.recon.orphans.add(task.id)
    for share in task.allocation:
        core.recon.unheld.setdefault(share.node, {})[task.id] = share


def check_campaign(core: Core, campaign: str) -> None:
    if campaign and campaign != core.campaign:
        raise WrongCampaign(f"this agent served campaign {campaign}, not {core.campaign or '(none)'}")


def disconnect(core: Core, name: str, now: float) -> None:
    node = core.pool.by_name.get(name)
    if node is None or not node.online or name in core.recon.disconnected:
        return
    if nodeloss.ended(core, name, now):
        nodeloss.allocation_ended(core, name, now)  # it will not come back: no grace
        return
    core.pool.pause(name)
    core.recon.disconnected[name] = now + core.recon.grace


def rejoin(core: Core, name: str, campaign: str, now: float) -> bool:
    """Before a node registers: True when it is a disconnected node come back (kept as it is);
    an agent that did not serve this campaign on a disconnected node means the old one died."""
    if name not in core.recon.disconnected:
        return False
    if campaign:
        del core.recon.disconnected[name]
        core.pool.unpause(name)
        core.standbys.unpark(name)
        return True
    nodeloss.replaced(core, name, now)
    return False


def claim(core: Core, name: str) -> set[int]:
    """A node joined: take the shares orphans hold there; the ids of those that could not be taken."""
    pending = core.recon.unheld.pop(name, None)
    bad: set[int] = set()
    for tid, share in (pending or {}).items():
        if not core.pool.claim(share):
            core.recon.unheld.setdefault(name, {})[tid] = share  # never held: not to be released
            bad.add(tid)
    return bad


def settle(core: Core, name: str, running: Iterable[int], ended: Iterable[Exit], bad: set[int],
           now: float) -> None:
    """Match what the agent on ``name`` says against the tasks the core has running there."""
    still = set(running)
    exits = {e[0]: e for e in ended}
    mine = [t for t in core.running.values() if t.allocation and t.allocation[0].node == name]
    cancels = core.outbox.cancels
    orphans = core.recon.orphans
    unstarted: list[int] = []
    for task in mine:
        was_orphan = task.id in orphans
        orphans.discard(task.id)
        if task.id in exits:
            _, code, error, used, tail = exits[task.id]
            core.task_exited(task.id, code, error, now, used, tail)
        elif task.id in still and task.id not in bad:
            if task.state == State.SCHEDULED:
                core.task_started(task.id, now)
            if task.job.cancel_requested:  # the cancel order was lost with the stream
                cancels.setdefault(name, []).append(task.id)
        elif task.id not in still and task.state == State.SCHEDULED and not was_orphan:
            # A launch it dropped unstarted (held for busy cores when the stream broke, or lost
            # with it): as if never placed, no attempt kept (nodeloss.py's rule for such tasks).
            unstarted.append(task.id)
        else:
            if task.id in still:  # it runs, but on cores this node no longer offers
                cancels.setdefault(name, []).append(task.id)
            core.interrupt(task, INTERRUPTED_RESTART if was_orphan else INTERRUPTED_RETURN, now)
    for tid in reversed(unstarted):  # each goes to the front: the first placed ends up first
        prefetch.withdrawn(core, tid, now)
    known = {t.id for t in mine}
    unknown = sorted(still - known)
    if unknown:
        cancels.setdefault(name, []).extend(unknown)
        core.outbox.notices.append(
            f"node {name} runs task(s) {', '.join(map(str, unknown))} this campaign does not: canceled"
        )


def due(core: Core, now: float) -> None:
    """Deadlines: a disconnected node that did not come back is lost; orphans whose node never
    registered run again."""
    recon = core.recon
    if not recon.disconnected and recon.orphan_deadline is None:
        return
    losses = recon.losses_at
    gone = [] if losses is None or now < losses else [n for n, dl in recon.disconnected.items() if now >= dl]
    for name in gone:
        core.outbox.notices.append(f"node {name} did not come back within {recon.grace:g} s: lost")
    if gone:
        nodeloss.nodes_lost(core, gone, now)  # every node due in this pass, their tasks found at once
    if recon.orphan_deadline is not None and now >= recon.orphan_deadline:
        recon.orphan_deadline = None
        orphans, recon.orphans = recon.orphans, set()
        for tid in sorted(orphans):
            task = core.running.get(tid)
            if task is not None:
                core.interrupt(task, INTERRUPTED_RESTART, now)
