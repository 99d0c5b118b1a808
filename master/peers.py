"""Which agent may report on which task: the ownership rule. Pure (reads the core, changes nothing).

A task runs where its launch went: the first node of its allocation (``Outbox.launches`` are keyed
by ``allocation[0].node``). Only that node's agent may report the task started, ended or withdrawn;
a report from any other agent (a broken or hostile one, or one that lost track after a restart) is
ignored, with a warning in the master's log, so it can neither end a running task nor start its
dependents. A report on a task the core no longer runs (a duplicate, an exit after a node loss) is
not foreign: the core ignores it as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import Core

SHOWN_MAX = 10  # foreign task ids named in one warning


def owner(core: Core, task_id: int) -> str | None:
    """The node whose agent runs ``task_id``; ``None`` when the core does not run it."""
    task = core.running.get(task_id)
    if task is None or not task.allocation:
        return None
    return task.allocation[0].node


def reports_on(core: Core, node: str, task_id: int) -> bool:
    """May the agent of ``node`` report on ``task_id``? Yes for its own tasks and for tasks the
    core does not run (ignored there anyway); no for a task running on another node."""
    where = owner(core, task_id)
    return where is None or where == node


def foreign(core: Core, node: str, task_ids: Iterable[int]) -> list[int]:
    """The ids among ``task_ids`` that run on a node other than ``node``."""
    return [tid for tid in task_ids if not reports_on(core, node, tid)]


def warning(node: str, ids: list[int]) -> str:
    """The log line for reports ignored as foreign (each task named once)."""
    ids = list(dict.fromkeys(ids))
    shown = ", ".join(map(str, ids[:SHOWN_MAX]))
    more = f" and {len(ids) - SHOWN_MAX} more" if len(ids) > SHOWN_MAX else ""
    return f"node {node} reported on task(s) {shown}{more} running on other nodes: ignored"
