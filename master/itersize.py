"""QCG-PilotJob's iteration schedulers: one exact size for every iteration of a job, from the run.

A QCG-PilotJob file may put ``"scheduler": {"name": "split-into", "params": {"parts": N}}`` or
``{"name": "maximum-iters"}`` on the ``numCores`` or ``numNodes`` range of a job with iterations:
instead of a range, each iteration gets an exact count computed from the whole run's resources
(QCG: ``qcg/pilotjob/iterscheduler.py``, at submit, against the total cores or nodes). Here:

- ``split-into``: the run is split into ``parts`` parts (default: one per iteration); each iteration
  gets one part.
- ``maximum-iters``: each iteration gets as much as lets all of them run at once, at least ``min``;
  when they cannot all run at once even with ``min``, the iterations go in as few equal rounds as
  possible and the size is the one that lets a whole round run at once.

PJ places a one-node job on one node (QCG may spread ``numCores`` over several), so "how many fit
at once" is counted per node: the size is the largest ``s`` for which the nodes hold the wanted
number of ``s``-sized shares (for ``numNodes``: of ``s`` nodes). On one node this is QCG's
``floor(total / parts)``. Every iteration gets the same size: QCG's ``maximum-iters`` hands the
cores left over (total mod iterations) to the last iterations of a round; PJ leaves them to other
jobs. A size below ``min`` (``split-into`` into too many parts) fails the job with the reason.

Pure: called by the core once the run's resources are known (no I/O, no clock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pj.common.sizes import format_size

from .model import Event, Range, Request

if TYPE_CHECKING:
    from .core import Core
    from .registry import Job


def size(core: Core, job: Job, now: float) -> bool:
    """Give a ready job whose request has a sizing its exact request; True if it may be queued.
    Until the run's resources are known (every expected node joined, or the wait for them over;
    a service that expects none: a node has joined) it waits in ``core.unsized``. A job that gets
    no size fails with the reason."""
    if not (core.capacity_known or (core.expect is None and core.pool.total_cores > 0)):
        core.unsized.append(job)
        return False
    assert job.tmpl.iterations is not None  # convert.py sets a sizing only then
    nodes = [(n.total_cores, len(n.gpus), n.info.memory_bytes) for n in core.pool.online()]
    got = resolve(job.tmpl.request, job.tmpl.iterations.count, nodes)
    if isinstance(got, str):
        core.settle_unrun(job, job.total - job.done)
        core.move_job(job, Event.FAIL, now, got)
        core.job_ended(job, now)
        return False
    job.spec = job.spec._replace(request=got)
    return True


def size_parked(core: Core, now: float) -> None:
    """The run's resources may be known now: size (and queue) the jobs that waited for them."""
    parked, core.unsized = core.unsized, []
    for job in parked:
        if not job.final and not job.cancel_requested:
            core.unblock(job, now)  # sizes it first; parks it again if still too early


def resolve(request: Request, iterations: int, nodes: Sequence[tuple[int, int, int]]) -> Request | str:
    """The exact request for every iteration, or why there is none (a job's failure reason).

    ``nodes``: (cores, GPUs, memory) of every node of the run; an iteration asking for memory
    counts only the nodes with that much, and only as many per node as their memory holds.
    """
    sizing = request.sizing
    assert sizing is not None
    gpus, memory = request.gpus, request.memory
    if sizing.field == "cores":
        fit = [(c, g, m) for c, g, m in nodes if g >= gpus and m >= memory]

        def slots(s: int) -> int:
            return sum(min(c // s, g // gpus if gpus else c, m // memory if memory else c) for c, g, m in fit)

        lo, top, unit = request.cores.min, max((c for c, _, _ in fit), default=0), "core(s)"
    else:
        cmin = request.cores.min
        count = sum(1 for c, g, m in nodes if c >= cmin and g >= gpus and m >= memory)

        def slots(s: int) -> int:
            return count // s

        lo, top, unit = request.nodes.min, count, "node(s)"
    if sizing.name == "split-into":
        want = sizing.parts or iterations
        size = _largest(slots, want, top)
        if size < lo:
            got = f"{size} {unit} each" if size else f"less than one {unit[:-3]} each"
            return f"split-into {want} parts gives {got}, fewer than its min {lo}{_mem(memory)}; the run has {_total(nodes, memory)}"
    else:
        room = slots(lo) if lo <= top else 0
        if room == 0:
            return (f"maximum-iters: no node of the run holds its min of {lo} {unit}{_mem(memory)}; "
                    f"the run has {_total(nodes, memory)}")
        rounds = -(-iterations // room)
        size = _largest(slots, -(-iterations // rounds), top)
    exact = Range(size, size)
    if sizing.field == "cores":
        return Request(cores=exact, nodes=request.nodes, gpus=gpus, memory=request.memory)
    return Request(cores=request.cores, nodes=exact, gpus=gpus, memory=request.memory)


def _largest(slots: Callable[[int], int], want: int, top: int) -> int:
    """The largest size in 1..top with slots(size) >= want (slots never grows with the size); 0: none."""
    lo, hi = 0, top
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if slots(mid) >= want:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _total(nodes: Sequence[tuple[int, int, int]], memory: int = 0) -> str:
    most = max((m for _, _, m in nodes), default=0)
    mem = f", at most {format_size(most)} memory per node" if memory else ""
    return f"{sum(c for c, _, _ in nodes)} core(s) on {len(nodes)} node(s){mem}"


def _mem(memory: int) -> str:
    return f" with {format_size(memory)} memory per node" if memory else ""
