"""Why a job is not running: reasons computed when a user asks (Info, List, Status), never on a pass.

Pure and read-only: it looks at the core through its public attributes and read-only accessors
(``ReadyQueue.lineup``, ``Standbys.waits_on``, the pool's nodes, ``Arrivals``) and changes nothing.
One ``Why`` serves one call: what it learns (each shape's queue by one pass, the tasks placed by
one pass over ``Core.running``, the nodes' free cores, each request's fit) is kept for that call,
so a List page of 1000 jobs costs one pass per shape on the page, not one per job.

Every unfinished job that is not simply running gets a reason and a *kind* (``KINDS``: the keys
of ``StatusReply.waiting``, what ``pj status`` counts):

- ``dependencies``: whole-job dependencies not ended yet (named, a few, then "and N more"), or
  iterations waiting for their own iteration of another job (``after: ["sim:${it}"]``);
- ``too big``: no node that has joined (or is online) could ever hold it; in service mode (no
  ``--expect-nodes``) with the fix: start a bigger agent, or cancel the job;
- ``nodes``: no node has joined yet, or the expected nodes have not all joined (which, how many,
  until when) and those that did are too small, or an iteration scheduler waits for the run's size,
  or its walltime outlasts the allocation of every node that could hold it (it waits for a new one);
- ``retry``: queued again after a failed attempt (attempt k of n, after what, where);
- ``free cores``: ready, in line for free cores (or GPUs) behind K jobs of its resource shape;
- ``standby``: placed on a busy node's share (prefetch), started when the task there ends;
- ``agent``: placed on a node whose agent is cut off, or restored after a master restart and
  waiting for its agent to come back;
- ``starting``: placed, its agent has not yet said it started;
- ``canceling``: canceled, waiting for its tasks to stop.

A job whose iterations partly run says how many run, are done and wait, and why the rest wait.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pj.common.sizes import format_size

from .expect import show
from .model import Dependency, Placement, Request, State
from .pool import until
from .scheduler import Shape, shape_of

if TYPE_CHECKING:
    from .core import Core
    from .registry import Job, Task

KINDS = ("dependencies", "too big", "nodes", "retry", "free cores", "standby", "agent", "starting", "canceling")
NAMED = 3  # dependencies named in a reason, then "and N more"

Line = tuple[dict["Job", int], dict["Job", int]]  # ReadyQueue.line: (job -> jobs ahead, job -> entries if > 1)


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _secs(s: float) -> str:
    return f"{max(s, 0.0):.0f} s"


def _dur(s: float) -> str:
    """A span for people: seconds under 2 min, minutes under 2 h, else hours."""
    s = max(s, 0.0)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h".replace(".0 h", " h")


class Lines:
    """Each shape's line (``ReadyQueue.line``) as last seen, kept between calls (the servicer holds
    one): a List paging through 100 000 queued jobs while nothing moves makes one pass per shape,
    not one per page. A line is reused while nothing was pushed (``ReadyQueue.pushes``), its shape's
    queue has the same length (a pass only takes from the head) and no job has ended
    (``Core.unfinished``); a job being canceled while some of its tasks still run counts as ahead
    in its line until it ends."""

    def __init__(self) -> None:
        self._kept: dict[Shape, tuple[tuple[int, int, int], Line]] = {}

    def get(self, core: Core, shape: Shape) -> Line:
        queue = core.queue
        key = (queue.pushes, len(queue.queues.get(shape, ())), core.unfinished)
        kept = self._kept.get(shape)
        if kept is not None and kept[0] == key:
            return kept[1]
        line = queue.line(shape)
        stale = [s for s, (k, _) in self._kept.items() if k[0] != key[0]]
        for s in stale:  # pushed to since: never of use again
            del self._kept[s]
        self._kept[shape] = (key, line)
        return line


class Why:
    """Reasons for one call (an Info, a List page, a Status) at ``now``; ``lines``: kept between
    calls (a fresh one per call without)."""

    def __init__(self, core: Core, now: float, lines: Lines | None = None) -> None:
        self.core = core
        self.now = now
        self._lines = lines if lines is not None else Lines()
        self._active: dict[Job, list[Task]] | None = None
        self._fits: dict[tuple[int, int, int, int], bool] = {}  # Request.shape -> fits
        self._short: dict[Shape, str] = {}
        self._unsized: set[Job] | None = None
        self._free: dict[tuple[int, int, int], int] = {}
        self._nodes: list[tuple[int, int, int]] | None = None

    # ------------------------------------------------------------------ facts, kept for the call

    def _placed(self, job: Job) -> Sequence[Task]:
        """The job's tasks placed and not final (one pass over ``Core.running`` per call)."""
        if self._active is None:
            active: dict[Job, list[Task]] = {}
            for task in self.core.running.values():
                got = active.get(task.job)
                if got is None:
                    active[task.job] = [task]
                else:
                    got.append(task)
            self._active = active
        return self._active.get(job, ())

    def _line(self, job: Job) -> Line:
        """(each queued job's place in the line of ``job``'s shape, entries of jobs with several),
        by one pass over that shape's queue while it does not change (``Lines``)."""
        return self._lines.get(self.core, shape_of(job))

    def _fit(self, req: Request) -> bool:
        """Whether the request would fit the nodes online if they were idle (``Pool.can_ever_fit``,
        which looks only at the request's shape: one verdict per shape and call)."""
        shape = req.shape
        known = self._fits.get(shape)
        if known is None:
            known = self._fits[shape] = self.core.pool.can_ever_fit(req)
        return known

    def _outlasts(self, job: Job) -> str:
        """Why no online node's allocation can hold the job's walltime ("" when one can, or the job
        has no walltime): ``Pool.can_hold``, one verdict per shape and call."""
        wall = job.tmpl.walltime_s
        if wall <= 0:
            return ""
        shape = shape_of(job)
        text = self._short.get(shape)
        if text is None:
            text = ""
            pool = self.core.pool
            if not pool.can_hold(job.tmpl.request, until(self.now, wall)):
                end = pool.latest_end()
                ends = f" (the latest ends in {_dur(end - self.now)})" if end else ""
                text = (f"walltime {_dur(wall)} outlasts the allocation of every node that could hold it{ends}; "
                        "it waits for a node with a longer allocation (pj-agent in a new Slurm job), or cancel the job")
            self._short[shape] = text
        return text

    def _is_unsized(self, job: Job) -> bool:
        if not self.core.unsized:
            return False
        if self._unsized is None:
            self._unsized = set(self.core.unsized)
        return job in self._unsized

    def _online(self) -> list[tuple[int, int, int]]:
        """(cores, GPUs, memory) of every node online."""
        if self._nodes is None:
            self._nodes = [(n.total_cores, len(n.gpus), n.info.memory_bytes) for n in self.core.pool.online()]
        return self._nodes

    def _free_nodes(self, cores: int, gpus: int, memory: int = 0) -> int:
        """How many nodes taking new work have ``cores`` cores, ``gpus`` GPUs and ``memory`` bytes free now."""
        got = self._free.get((cores, gpus, memory))
        if got is None:
            got = self._free[(cores, gpus, memory)] = sum(
                1 for n in self.core.pool.online()
                if not n.paused and len(n.free_cores) >= cores and len(n.free_gpus) >= gpus
                and n.free_memory >= memory
            )
        return got

    def _counts(self, job: Job, placed: Sequence[Task]) -> tuple[int, int, int]:
        """(iterations not placed nor done, of which queued, of which waiting for their own
        iteration of another job). Only for a job past its whole-job dependencies and sizing."""
        rest = job.total - job.done - len(placed)
        if rest <= 0:
            return 0, 0, 0
        if job.iter_deps == 0:
            return rest, rest, 0
        place, more = self._line(job)  # (iterations with their own dependencies are queued one by one)
        queued = min(more.get(job, 1), rest) if job in place else 0
        return rest, queued, rest - queued

    def _again(self, job: Job) -> list[int | None]:
        """Iterations (None: the job's one task) queued again after an attempt that ended."""
        if not job.attempts:
            return []
        out = []
        for it, atts in job.attempts.items():
            t = job.task(it)
            if t is not None and t.state.final and atts and atts[-1].task_id == t.id:
                out.append(it)
        return out

    def _waiting_for_nodes(self) -> bool:
        return not self._online() or self.core.arrivals.waiting

    # ------------------------------------------------------------------ kinds (Status)

    def kind(self, job: Job) -> str:
        """The kind of reason of an unfinished job ("" when it runs, or has ended)."""
        if job.state._value_ >= State.SUCCEED:
            return ""
        placed = self._placed(job)
        if job.cancel_requested:
            return "canceling"
        if job.total - job.done > len(placed):
            if not self._fit(job.tmpl.request):
                return "nodes" if self._waiting_for_nodes() else "too big"
            if job.tmpl.walltime_s > 0 and self._outlasts(job):
                return "nodes"
            if job.pending:
                return "dependencies"
            if self.core.unsized and self._is_unsized(job):
                return "nodes"
            _, queued, deps = self._counts(job, placed)
            if queued:
                return "retry" if job.attempts and self._again(job) else "free cores"
            if deps:
                return "dependencies"
        if not placed:
            return ""
        kinds = {self._task_kind(t) for t in placed}
        if "" in kinds:
            return ""
        return next(k for k in ("standby", "agent", "starting") if k in kinds)

    def counts(self) -> dict[str, int]:
        """Unfinished jobs by the kind of their reason (jobs that run are not counted)."""
        got: Counter[str] = Counter()
        for job in self.core.registry:
            if job.state._value_ < State.SUCCEED:
                kind = self.kind(job)
                if kind:
                    got[kind] += 1
        return {k: got[k] for k in KINDS if got[k]}

    def _task_kind(self, task: Task) -> str:
        where = self.core.placement(task)
        if where in (Placement.ORPHAN, Placement.CUT_OFF):
            return "agent"
        if task.state == State.EXECUTING:
            return ""
        if where in (Placement.STANDBY, Placement.WITHDRAWING):
            return "standby"
        return "starting"

    # ------------------------------------------------------------------ reasons (Info, List)

    def reason(self, job: Job) -> str:
        """What a user sees as the job's reason: why it does not run (or not all of it), with the
        first failure so far of a job whose iterations still run; an ended job's own reason."""
        if job.state.final:
            return job.reason
        text = self.explain(job)
        if job.reason:  # an iteration that failed while others go on
            return f"{text}; first failure: {job.reason}" if text else job.reason
        return text

    def explain(self, job: Job) -> str:
        """Why the unfinished ``job`` does not run, or not all of it ("" when it all runs)."""
        if job.state.final:
            return ""
        placed = self._placed(job)
        if job.cancel_requested:
            return f"being canceled: waiting for {_n(len(placed), 'task')} to stop"
        many = job.tmpl.iterations is not None
        waits: list[str] = []
        counted = False  # a part of the reason counts iterations
        rest = job.total - job.done - len(placed)
        if rest > 0:
            req = job.tmpl.request
            fit = self._fit(req)
            if not fit:
                waits.append(self._too_big(req))
            elif job.tmpl.walltime_s > 0 and (short := self._outlasts(job)):
                waits.append(short)
                fit = False  # not placeable now: no "waiting for free cores"
            if job.pending:
                waits.append(self._deps(job))
            elif self._is_unsized(job):
                if not fit:  # the too-big reason says what the run lacks
                    return "; ".join(waits)
                sizing = req.sizing
                name = sizing.name if sizing is not None else "iteration scheduler"
                waits.append(f"its iteration scheduler ({name}) sizes it once the run's nodes are known: "
                             + self._nodes_text())
            else:
                _, queued, deps = self._counts(job, placed)
                if queued and fit:
                    waits.append(self._queued(job, queued, many))
                    counted = True
                elif queued and (again := self._again(job)):
                    waits.append(self._retry(job, again))
                if deps:
                    counted = True
                    names = ", ".join(str(d) for d in job.tmpl.after if d.per_iteration)
                    waits.append(f"{deps} waiting for {names}")
        if not many:
            return "; ".join(waits + [t for t in map(self._placed_text, placed) if t])
        if not waits and all(not self._task_kind(t) for t in placed):
            return ""
        tally = self._tally(job, placed)
        if not tally and not counted:
            return "; ".join(waits)
        return f"{_n(job.total, 'iteration')}: " + "; ".join(([tally] if tally else []) + waits)

    # ------------------------------------------------------------------ the words

    def _deps(self, job: Job) -> str:
        reg = self.core.registry
        names: list[str] = []
        for dep in job.tmpl.after:
            if dep.per_iteration:
                continue
            state = self._unmet(dep, reg.jobs[dep.job]) if dep.job in reg else None
            if state is not None:
                names.append(f"{dep} ({state})")
                if len(names) > NAMED:
                    break
        more = max(job.pending, len(names)) - NAMED
        shown = ", ".join(names[:NAMED])
        return f"waiting for {shown}" + (f" and {more} more" if more > 0 else "")

    def _unmet(self, dep: Dependency, target: Job) -> str | None:
        """The state of what ``dep`` waits for, or None when it has ended."""
        if dep.iteration is None:
            return None if target.final else target.state.name
        t = target.task(dep.iteration)
        if t is None:
            return None if target.final else State.QUEUED.name
        if t.state.final and dep.iteration not in self._again(target):
            return None
        return t.state.name if not t.state.final else State.QUEUED.name

    def _too_big(self, req: Request) -> str:
        core = self.core
        nodes = self._online()
        service = core.expect is None
        cmin, gpus, need = req.cores.min, req.gpus, req.nodes.min
        if not nodes:
            if core.arrivals.waiting or not service:
                return f"no node has joined yet: {self._nodes_text()}"
            return f"no agent has joined yet; start one with pj-agent --workdir DIR --cores {cmin} or more" + (
                f" and --gpus listing {gpus} or more GPUs" if gpus else "") + (
                f" and --memory {_size_option(req.memory)} or more" if req.memory else "")
        memory = req.memory
        what = _n(gpus, "GPU") if gpus and cmin == 1 else _n(cmin, "core") + (f" and {_n(gpus, 'GPU')}" if gpus else "")
        if memory:
            what += f" and {format_size(memory)} memory"
        largest = f"largest: {_n(max(c for c, _, _ in nodes), 'core')}" + (
            f", most GPUs: {max(g for _, g, _ in nodes)}" if gpus else "") + (
            f", most memory: {format_size(max(m for _, _, m in nodes))}" if memory else "")
        joined = service or core.arrivals.waiting
        ok = sum(1 for c, g, m in nodes if c >= cmin and g >= gpus and m >= memory)
        if need == 1:
            who = "agent that has joined" if service else "node that has joined" if joined else "node online"
            text = f"no {who} has {what} ({largest})"
        else:
            group = f"{len(nodes)} agent(s) that have joined" if joined else f"{len(nodes)} node(s) online"
            text = f"needs {need} nodes with {what} each; {f'only {ok}' if ok else 'none'} of the {group} {'has' if ok == 1 else 'have'} " \
                   f"that ({largest})"
        if core.arrivals.waiting:
            return f"{text}; {self._nodes_text()}"
        if service:
            more = need - ok
            agents = "an agent" if need == 1 else f"{_n(more, 'more agent')}"
            opts = " and ".join(([f"--cores {cmin} or more"] if cmin > 1 or not (gpus or memory) else [])
                                + ([f"--gpus listing {gpus} or more GPUs"] if gpus else [])
                                + ([f"--memory {_size_option(memory)} or more"] if memory else []))
            return f"{text}; start {agents} with {opts}, or cancel the job"
        return f"{text}; it waits for a lost node to come back, or cancel the job"

    def _nodes_text(self) -> str:
        """The expected nodes still missing (which, how many, until when), or what a service lacks."""
        arr = self.core.arrivals
        e = arr.expect
        if e is None:
            return "no agent has joined yet; start one with pj-agent" if not self._online() else "the run has nodes"
        if not arr.waiting:
            return f"{len(self._online())} of {e.count} expected nodes online"
        missing = arr.missing()
        names = f" ({show(missing)})" if missing else ""
        left = _secs((arr.deadline or self.now) - self.now)
        return (f"{e.count - len(arr.joined)} of {e.count} expected nodes not joined yet{names}; "
                f"the wait for them ends in {left}")

    def _queued(self, job: Job, queued: int, many: bool) -> str:
        req = job.tmpl.request
        ahead = self._line(job)[0].get(job, 0)
        cmin, gpus, need = req.cores.min, req.gpus, req.nodes.min
        head = f"{queued} " if many else ""
        memory = req.memory
        if ahead == 0 and self._free_nodes(cmin, gpus, memory) >= need:
            text = f"{head}ready: placed on the next scheduling pass"
        else:
            if memory and self._free_nodes(cmin, gpus) >= need:
                short = "memory"
            else:
                short = "GPUs" if gpus and self._free_nodes(cmin, 0) >= need else "cores"
            where = f"behind {_n(ahead, 'job')} of its shape" if ahead else ", next in line of its shape"
            pool = self.core.pool
            nodes = [n for n in pool.online() if not n.paused]
            most = max((len(n.free_cores) for n in nodes), default=0)
            free = f"free now: {_n(pool.free_cores, 'core')}, at most {most} on a node" if most else "no core free now"
            if gpus:
                free += f", at most {max((len(n.free_gpus) for n in nodes), default=0)} GPUs on a node"
            if memory:
                free += f", at most {format_size(max((n.free_memory for n in nodes), default=0))} memory on a node"
            text = f"{head}waiting for free {short}{where if ahead == 0 else ' ' + where} (needs {req.describe()}; {free})"
        again = self._again(job)
        if again:
            text = f"{self._retry(job, again)}; {text}"
        if self.core.arrivals.waiting:
            text += f"; {self._nodes_text()}"
        return text

    def _retry(self, job: Job, again: list[int | None]) -> str:
        it = again[0]
        assert job.attempts is not None
        last = job.attempts[it][-1]
        used = job.retried.get(it, 0) if job.retried else 0
        n = job.tmpl.retries
        suffix = f" (retry {used} of {n} follows)"
        where = f" on {', '.join(last.nodes)}" if last.nodes else ""
        if last.reason.endswith(suffix):
            what = f"attempt {used + 1} of {n + 1}, after {last.reason[: -len(suffix)]}{where}"
            head = "held for a retry"
        else:  # queued again without using a retry (its node's agent came back without it...)
            what = f"after {last.reason}" + (f" (was on {', '.join(last.nodes)})" if last.nodes else "")
            head = "queued again"
        if job.tmpl.iterations is None:
            return f"{head}: {what}"
        name = f"{job.name}:{it}"
        others = f" and {len(again) - 1} more" if len(again) > 1 else ""
        return f"{len(again)} {head} ({name}: {what}{others})"

    def _placed_text(self, task: Task) -> str:
        """Why a placed task does not run ("" when it runs); for a job's only task."""
        kind = self._task_kind(task)
        if not kind:
            return ""
        core = self.core
        node = task.allocation[0].node if task.allocation else "?"
        if kind == "agent":
            if task.id in core.recon.orphans:
                left = core.recon.orphan_deadline
                until = f" for {_secs(left - self.now)} more (then it is queued again)" if left else ""
                return f"placed on {node} before the master restarted: waiting for its agent to come back{until}"
            lost = core.recon.disconnected.get(node, self.now)
            doing = "running" if task.state == State.EXECUTING else "placed"
            return f"{doing} on {node}, whose agent is cut off: the node is lost in {_secs(lost - self.now)} " \
                   "unless it comes back"
        if kind == "standby":
            got = core.standbys.waits_on(task.id)
            assert got is not None
            holder, place = got
            if place > 1:
                return f"on standby on {node}: starts there after {holder.name} and {_n(place - 1, 'standby')} before it"
            return f"on standby on {node}: starts there when {holder.name} ends"
        return f"placed on {node}: its agent has not said it started yet"

    def _tally(self, job: Job, placed: Sequence[Task]) -> str:
        kinds = Counter(self._task_kind(t) for t in placed)
        parts = [f"{kinds['']} running"] if kinds[""] else []
        words = {"standby": "on standby", "agent": "on cut-off nodes", "starting": "starting"}
        parts += [f"{kinds[k]} {w}" for k, w in words.items() if kinds[k]]
        if job.done:
            parts.append(f"{job.done} done")
        return ", ".join(parts)


def counts(core: Core, now: float, lines: Lines | None = None) -> dict[str, int]:
    """Unfinished jobs by the kind of their reason, in ``KINDS`` order (for ``StatusReply.waiting``)."""
    return Why(core, now, lines).counts()


def _size_option(n: int) -> str:
    """A size as pj-agent --memory reads it: ``4G``, ``1.5G``, ``512M`` (rounded up to a MiB)."""
    mib = -(-n // 2**20)
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"
