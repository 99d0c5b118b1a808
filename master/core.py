"""The master's core: a sans-I/O state machine fed with events and the time, returning commands.

It owns the registry, the pool of nodes and the ready queue. The gRPC shell
(``service.py``) calls the event methods (submit, node_joined, task_started,
task_exited, cancel, finish, ...) with ``now``, then ``step(now)`` which runs one
scheduling pass and hands back an ``Outbox``: launches and cancels per node, the jobs
whose state changed (for watchers), and whether the master may stop. No grpc,
asyncio, subprocess or clock in here (a test checks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from . import admission, deps, invariants, itersize, nodeloss, prefetch, reconcile
from .expect import Arrivals, Expectation
from .launch import Context, TaskLaunch, build
from .model import END_EVENTS, Allocation, Event, JobSpec, NodeInfo, Placement, State
from .pool import Pool, until
from .reconcile import Exit, Reconciler
from .registry import Attempt, Job, Registry, Task
from .scheduler import Place, ReadyQueue, Shape, shape_of

# A pass places at most this many tasks; the next pass (asked for at once: Outbox.wake_at) goes on.
# A million queued jobs on a million free cores are launched, journaled and reported in slices, so
# the agents' reports are read between them and the master never holds a million launches at once.
PASS_PLACE_MAX = 20_000
# No pass places more while this many tasks are launched and not yet reported started (SCHEDULED):
# the agents' reports (each pokes a pass) pace the launches, so the master's loop, which also
# reads those reports, is never buried under launches it placed faster than they go out.
LAUNCHED_MAX = 50_000


@dataclass
class Outbox:
    launches: dict[str, list[TaskLaunch]] = field(default_factory=dict)
    cancels: dict[str, list[int]] = field(default_factory=dict)
    withdraws: dict[str, list[int]] = field(default_factory=dict)  # standbys to take back, per node
    changed: dict[str, Job] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # run-level news for the user (log, Status, Watch)
    ended: list[Task] = field(default_factory=list)  # tasks that reached their final state (for the journal)
    placed: list[Task] = field(default_factory=list)  # tasks placed on nodes (for the journal)
    unplaced: list[int] = field(default_factory=list)  # placed task ids queued again, not final (journal)
    finished: list[Job] = field(default_factory=list)  # jobs that reached their final state (for the journal)
    attempts: list[tuple[Task, Attempt, bool]] = field(default_factory=list)  # kept, used a retry (journal)
    stop: bool = False
    wake_at: float | None = None  # call step() again at this time even if nothing else happens

    def __bool__(self) -> bool:
        return bool(self.launches or self.cancels or self.withdraws or self.changed or self.notices or self.stop)


def _exit_reason(exit_code: int, error: str) -> str:
    if error:
        return error
    if exit_code < 0:
        return f"killed by signal {-exit_code}"
    return f"exit code {exit_code}"


class Core:
    """``expect``: the nodes the run waits for (None: unknown, a service waiting for agents); the
    wait for them ends ``expect.timeout_s`` after ``now``, the time the core is made. ``crash_limit``:
    a task whose nodes were lost that many times while it ran fails even with retries left (0: no limit).
    ``prefetch_on``: put the next ready tasks on standby behind running ones (prefetch.py; pj-master
    turns it on unless told not to)."""

    def __init__(
        self, expect: Expectation | None = None, ctx: Context | None = None, now: float = 0.0,
        crash_limit: int = 3, campaign: str = "", prefetch_on: bool = False,
    ) -> None:
        self.crash_limit = crash_limit
        self.campaign = campaign  # this campaign's id (Welcome.campaign); agents of another are refused
        self.recon = Reconciler()  # disconnected nodes and orphans (reconcile.py)
        self.registry = Registry()
        self.pool = Pool()
        self.queue = ReadyQueue()
        self.standbys = prefetch.Standbys(prefetch_on)
        self.ctx = ctx or Context()
        self.arrivals = Arrivals(expect, now)
        self._capacity_known = False
        self.running: dict[int, Task] = {}  # tasks placed and not yet final, by id
        self.job_counts: Counter[State] = Counter()
        self.task_counts: Counter[State] = Counter()
        self.unfinished = 0
        self.finishing = False
        self.next_task_id = 1
        self.outbox = Outbox()
        self.waiters = deps.Waiters()  # jobs waiting on iterations of others (deps.py)
        self.unsized: list[Job] = []  # ready jobs whose iterations wait for the run's size (itersize.py)

    # ------------------------------------------------------------------ capacity

    @property
    def capacity_known(self) -> bool:
        """True once every node the run expects has joined, or the wait for them is over: only then
        can a job be judged too big. Once true, it stays true."""
        return self._capacity_known

    @property
    def expect(self) -> Expectation | None:
        return self.arrivals.expect

    def nodes_missing(self) -> list[str]:
        """Nodes expected by name that are not registered now (never came, or lost)."""
        e = self.arrivals.expect
        if e is None or not e.names:
            return []
        by_name = self.pool.by_name
        return [n for n in e.names if (node := by_name.get(n)) is None or not node.online]

    def node_joined(
        self, info: NodeInfo, now: float, campaign: str = "", running: Iterable[int] = (),
        ended: Iterable[Exit] = (),
    ) -> None:
        """An agent registered. ``campaign``, ``running`` and ``ended``: what an agent that outlived
        its stream says (Register); reconciled against the tasks placed on the node (reconcile.py).
        Raises ``WrongCampaign`` (nothing changed) for an agent of another campaign."""
        reconcile.check_campaign(self, campaign)
        bad: set[int] = set()
        if not reconcile.rejoin(self, info.name, campaign, now):
            self.pool.add(info)
            notice = self.arrivals.join(info.name, info.cores)
            if notice:
                self.outbox.notices.append(notice)
            if self.arrivals.complete and not self._capacity_known:
                self._know_capacity(now)
            bad = reconcile.claim(self, info.name)
            if self.unsized:
                itersize.size_parked(self, now)
        reconcile.settle(self, info.name, running, ended, bad, now)

    def node_disconnected(self, name: str, now: float) -> None:
        """The node's agent stream broke: nothing new goes there; it is lost unless it registers
        again within ``recon.grace`` seconds."""
        reconcile.disconnect(self, name, now)

    def runs_on(self, name: str) -> bool:
        """Whether any task placed and not final holds a share of the node."""
        return any(s.node == name for t in self.running.values() for s in t.allocation)

    def waiting_work(self) -> dict[Shape, int]:
        """Ready tasks that no node starts now, per shape: what the last pass left queued, and the
        standbys waiting behind running tasks (for the allocation manager, allocs.py)."""
        out = self.queue.waiting()
        for tid in self.standbys.behind:
            task = self.running.get(tid)
            if task is not None:
                shape = shape_of(task.job)
                out[shape] = out.get(shape, 0) + 1
        return out

    def idle_nodes(self) -> list[str]:
        """Online nodes that hold nothing: every core and GPU free."""
        return [n.name for n in self.pool.online()
                if len(n.free_cores) == n.total_cores and len(n.free_gpus) == len(n.gpus)]

    def retire(self, name: str) -> None:
        """Place nothing more on the node (its agent is about to be told to leave)."""
        if name in self.pool.by_name:
            self.pool.pause(name)

    def is_disconnected(self, name: str) -> bool:
        return name in self.recon.disconnected

    def placement(self, task: Task) -> Placement:
        """Where ``task`` stands with its nodes: the one answer, read from the bookkeeping that
        keeps it (``running``, the standbys' links, the reconciler's orphans and cut-off nodes)."""
        if task.id not in self.running:
            return Placement.NONE
        if task.id in self.recon.orphans:
            return Placement.ORPHAN
        if self.recon.disconnected and any(s.node in self.recon.disconnected for s in task.allocation):
            return Placement.CUT_OFF
        if task.id in self.standbys.withdrawing:
            return Placement.WITHDRAWING
        if task.id in self.standbys.behind:
            return Placement.STANDBY
        return Placement.RUNNING

    def check(self) -> None:
        """Raise ``InvariantError`` naming every invariant the core breaks (invariants.py): counts,
        jobs, running tasks, no core held twice, pool totals, standbys. For tests: it walks everything."""
        invariants.check(self)

    def _know_capacity(self, now: float) -> None:
        self._capacity_known = True
        fits: dict[int, bool] = {}
        for job in list(self.registry):
            if not job.final:
                self._judge_fit(job, now, fits)
        itersize.size_parked(self, now)

    def _wait_over(self, now: float) -> None:
        """The deadline for the expected nodes passed with some missing: say so, then go on or give up."""
        online = [n.name for n in self.pool.online()]
        notice = self.arrivals.expire(online)
        self.outbox.notices.append(notice)
        e = self.arrivals.expect
        if e is not None and e.policy == "fail":
            self.finish(drain=False, now=now, reason=notice)
        else:
            self._know_capacity(now)

    def node_left(self, name: str, now: float, on: list[Task] | None = None) -> None:
        """The node's agent is gone: its tasks are queued again while their job's retries allow,
        else fail with the reason `node lost`; a task that lost ``crash_limit`` nodes fails.
        ``on``: the tasks holding a share of it, if known (nodeloss.on_nodes); None: looked up."""
        self.recon.disconnected.pop(name, None)
        if name not in self.pool.by_name:
            return
        if nodeloss.ended(self, name, now):
            nodeloss.allocation_ended(self, name, now)  # cut short by the allocation: queued again free
            return
        self.pool.remove(name)
        if on is None:
            lost = [t for t in self.running.values() if any(s.node == name for s in t.allocation)]
        else:
            lost = [t for t in on if self.running.get(t.id) is t]  # not ended meanwhile
        for task in lost:
            reason = f"node lost: {name}"
            if task.job.cancel_requested:
                self.end_task(task, State.CANCELED, None, reason, now)
                continue
            job = task.job
            earlier = job.attempts.get(task.iteration, ()) if job.attempts else ()
            crashes = 1 + sum(1 for a in earlier if a.lost)
            if self.crash_limit and crashes >= self.crash_limit:
                reason = f"crash limit: {crashes} nodes were lost while it ran (last: {name})"
            elif self._retry(task, None, reason, now, lost=True):
                continue
            self.end_task(task, State.FAILED, None, reason, now)

    def _judge_fit(self, job: Job, now: float, fits: dict[int, bool] | None = None) -> bool:
        """Fail a job that can never fit the run's resources; True if it was failed. ``fits``: the
        verdicts so far for requests of one batch (the pool does not change while it is judged)."""
        if job.state != State.QUEUED or job.started:
            return False
        req = job.tmpl.request
        known = fits.get(id(req)) if fits is not None else None  # the requests outlive the call: ids stay theirs
        if known is None:
            known = self.pool.can_ever_fit(req)
            if fits is not None:
                fits[id(req)] = known
        if known:
            return False
        reason = f"can never fit: needs {req.describe()}; the run has {self.pool.largest(memory=bool(req.memory))}"
        self.settle_unrun(job, job.total - job.done)
        self.move_job(job, Event.FAIL, now, reason)
        self.job_ended(job, now)
        return True

    # ------------------------------------------------------------------ submit

    def check_submit(self, specs: Sequence[JobSpec], names: Sequence[str] | None = None) -> None:
        """Raise SubmitError if ``submit`` would refuse the batch; nothing changes (admission.py)."""
        admission.check_batch(self.registry, specs, names)

    def submit(
        self, specs: Sequence[JobSpec], now: float, checked: bool = False, names: Sequence[str] | None = None
    ) -> list[str]:
        """Register a batch of jobs (``checked``: by ``check_submit``, nothing submitted since).
        ``names[i]``: job i's name, where specs[i] may be another job's spec (a copy of it but for its
        name, the very object; None: each spec's own name). Returns the names."""
        if not checked:
            self.check_submit(specs, names)
        if names is None:
            names = [s.name for s in specs]
        jobs = []
        by_name = self.registry.jobs
        seq = len(by_name)
        table = self.registry.ended
        tmpl: JobSpec | None = None
        for spec, name in zip(specs, names, strict=True):
            # jobs that differ only by name share one spec (a tuple compare: shared fields match by identity)
            if spec is not tmpl and (tmpl is None or spec[1:] != tmpl[1:]):
                tmpl = spec
            job = Job(spec, seq, now, table, tmpl, name)
            by_name[name] = job
            seq += 1
            jobs.append(job)
        self.job_counts[State.QUEUED] += len(jobs)
        self.unfinished += len(jobs)
        for job in jobs:
            if job.tmpl.after:
                for dep in job.tmpl.after:
                    deps.wire(self, job, dep, now)
                    if job.final:
                        break
        changed = self.outbox.changed
        fits: dict[int, bool] = {}  # a batch shares its requests: each is judged once (by id)
        plain: list[Job] = []  # ready whole jobs, queued together at the end (in order)
        for job in jobs:
            if job.final:
                continue
            changed[job.name] = job
            if self.capacity_known and self._judge_fit(job, now, fits):
                continue
            if job.pending == 0:
                if job.tmpl.request.sizing is None and job.iter_deps == 0:  # what unblock would push
                    plain.append(job)
                    continue
                self.queue.push_jobs(plain)
                plain.clear()
                self.unblock(job, now)
        self.queue.push_jobs(plain)
        return list(names)

    def unblock(self, job: Job, now: float) -> None:
        """Every whole-job dependency is met: queue the job, or its ready iterations."""
        if job.tmpl.request.sizing is not None and not itersize.size(self, job, now):
            return
        if job.iter_deps == 0:
            self.queue.push(job)
            return
        job.iter_ready = True
        assert job.iter_sat is not None
        for it in sorted(it for it, n in job.iter_sat.items() if n >= job.iter_deps):
            del job.iter_sat[it]
            self.queue.push(job, it)

    # ------------------------------------------------------------------ placing and running

    def new_task(self, job: Job, it: int | None, now: float) -> Task:
        """A task for iteration ``it`` of ``job``, QUEUED (it is not placed: e.g. it ends at once)."""
        task = Task(self.next_task_id, job, it, now)
        self.next_task_id += 1
        job.add_task(task)
        self.task_counts[State.QUEUED] += 1
        return task

    def place(self, job: Job, it: int | None, allocation: Allocation, now: float) -> Task:
        task = Task(self.next_task_id, job, it, now)  # new_task, then QUEUED -> SCHEDULED
        self.next_task_id += 1
        job.add_task(task)
        task.allocation = allocation
        task.move(Event.PLACE, now)
        self.task_counts[State.SCHEDULED] += 1
        self.running[task.id] = task
        self.outbox.placed.append(task)
        if job.state == State.QUEUED:
            self.move_job(job, Event.PLACE, now)
        launch = build(job.tmpl, task.id, it, allocation, self.ctx, job.name)
        self.outbox.launches.setdefault(launch.node, []).append(launch)
        return task

    def task_withdrawn(self, task_id: int, now: float) -> None:
        """The agent gave back a standby it had not started (``Orders.withdraw``)."""
        prefetch.withdrawn(self, task_id, now)

    def task_started(self, task_id: int, now: float) -> None:
        """``now``: when the agent started it (never before the task's last change: clocks differ)."""
        task = self.running.get(task_id)
        if task is None or task.state != State.SCHEDULED:
            return
        now = max(now, task.history[-1][1])
        self.move_task(task, Event.START, now)
        job = task.job
        if job.state == State.SCHEDULED:
            self.move_job(job, Event.START, now)

    def task_exited(self, task_id: int, exit_code: int, error: str, now: float, usage: bytes = b"",
                    stderr_tail: str = "") -> None:
        """``usage``: its CPU time and peak memory, packed (usage.py); ``stderr_tail``: kept if it FAILED."""
        task = self.running.get(task_id)
        if task is None:
            return  # already ended (node lost, duplicate report): nothing to do
        task.usage = usage
        now = max(now, task.history[-1][1])
        if task.state == State.SCHEDULED and not error:
            self.task_started(task_id, now)  # its start and its end came in one batch
        code: int | None = exit_code
        if exit_code == 0 and not error:
            state, reason = State.SUCCEED, ""
        elif task.job.cancel_requested:
            state, reason = State.CANCELED, task.job.cancel_reason
            if task.state == State.SCHEDULED:
                code = None  # it never started (the agent held it, waiting for its cores)
        else:
            if nodeloss.cut_by_end(self, task, exit_code, now):
                return
            state, reason = State.FAILED, _exit_reason(exit_code, error)
            task.stderr_tail = stderr_tail
            if self._retry(task, exit_code, reason, now):
                return
        self.end_task(task, state, code, reason, now)

    def _retry(self, task: Task, exit_code: int | None, reason: str, now: float, lost: bool = False) -> bool:
        """Queue a failed task again if its job has retries left; True if it was."""
        job = task.job
        used = job.retried.get(task.iteration, 0) if job.retried else 0
        if used >= job.tmpl.retries or job.cancel_requested:
            return False
        if job.retried is None:
            job.retried = {}
        job.retried[task.iteration] = used + 1
        task.exit_code = exit_code
        self.requeue(task, now, f"{reason} (retry {used + 1} of {job.tmpl.retries} follows)", lost=lost, retried=True)
        return True

    def interrupt(self, task: Task, reason: str, now: float, lost: bool = False) -> None:
        """A placed task was cut short by no fault of its own (its node lost, the master restarted):
        queued again with its attempt kept and no retry used (``lost``: it counts towards the crash
        limit), or ended CANCELED if its job is being canceled."""
        job = task.job
        if job.cancel_requested:
            self.end_task(task, State.CANCELED, None, job.cancel_reason, now)
            return
        self.requeue(task, now, reason, lost=lost)

    def requeue(self, task: Task, now: float, reason: str | None, *, lost: bool = False, retried: bool = False,
                front: bool = False) -> None:
        """Put a placed, not final task's iteration back in the queue (``front``: ahead of the rest).

        ``reason``: its attempt ends FAILED with it and is kept (``keep_attempt``: ``lost``, a node was
        lost under it; ``retried``, it used one of its job's retries); the next attempt is a new task
        (and id). None: it never started and leaves no trace (a standby its agent gave back)."""
        job = task.job
        del self.running[task.id]
        self.release(task)
        self.outbox.unplaced.append(task.id)
        job.started -= 1
        if reason is None:
            job.drop_task(task)
            self.task_counts[task.state] -= 1
            if job.started == 0 and job.state == State.SCHEDULED:
                self.move_job(job, Event.UNPLACE, now)
        else:
            self.move_task(task, Event.FAIL, now, reason)
            self.keep_attempt(task, now, lost, retried)
        self.queue.push(job, task.iteration, front=front)
        self.outbox.changed[job.name] = job

    def keep_attempt(self, task: Task, now: float, lost: bool, retried: bool = False) -> None:
        """Remember the ended attempt of a task about to be queued again (its Task is replaced);
        ``retried``: it used one of the job's retries (both kept in the journal too)."""
        job = task.job
        if job.attempts is None:
            job.attempts = {}
        started = next((t for s, t in task.history if s == State.EXECUTING), None)
        nodes = tuple(s.node for s in task.allocation)
        kept = Attempt(task.state, task.exit_code, task.reason, nodes, started, now, task.id, lost, task.usage,
                       task.stderr_tail)
        job.attempts.setdefault(task.iteration, []).append(kept)
        self.outbox.attempts.append((task, kept, retried))

    def end_task(self, task: Task, state: State, exit_code: int | None, reason: str, now: float) -> None:
        if self.running.pop(task.id, None) is not None:
            self.release(task)
        task.exit_code = exit_code
        self.move_task(task, END_EVENTS[state], now, reason)
        self.outbox.ended.append(task)
        task.job.task_ended(task)
        self.settle_task(task.job, task.iteration, state, reason, now)

    def release(self, task: Task) -> None:
        """Give back what the task holds (an orphan may hold only some of its shares, or none; a
        standby holds none, and a task with a standby passes its share on)."""
        if self.standbys.enabled and not self.standbys.leave(task):
            return
        self.pool.release(self.recon.held(task))

    def settle_task(self, job: Job, it: int | None, state: State, reason: str, now: float) -> None:
        """The job's bookkeeping for one task (iteration ``it``) in a final state: counts, dependents,
        the job's end."""
        job.done += 1
        if state == State.SUCCEED:
            job.succeeded += 1
        else:
            job.failed += 1
            if not job.reason or job.total == 1:
                job.reason = f"{job.name}:{it}: {reason}" if job.total > 1 else reason
        self.outbox.changed[job.name] = job
        if it is not None and self.waiters:
            deps.iteration_ended(self, job, it, state, now)
        if job.done >= job.total and not job.final:
            self._finish_job(job, now)

    def _finish_job(self, job: Job, now: float) -> None:
        if job.succeeded == job.total:
            state, reason = State.SUCCEED, ""
        elif job.cancel_requested:
            state, reason = State.CANCELED, job.cancel_reason
        elif job.state == State.QUEUED:
            state, reason = State.OMITTED, job.reason or "every iteration was omitted"
        else:
            state = State.FAILED
            reason = job.reason if job.total == 1 else (
                f"{job.failed} of {job.total} iterations did not succeed (first: {job.reason})"
            )
        job.reason = ""
        self.move_job(job, END_EVENTS[state], now, reason)
        self.job_ended(job, now)

    @staticmethod
    def settle_unrun(job: Job, n: int) -> None:
        """``n`` tasks of the job will never run: they count as done and as not succeeded."""
        job.done += n
        job.failed += n

    def job_ended(self, job: Job, now: float) -> None:
        """A job reached a final state: tell every job that waits on it (deps.py)."""
        deps.job_ended(self, job, now)

    # ------------------------------------------------------------------ cancel and finish

    def cancel(self, names: Iterable[str], now: float) -> tuple[list[str], list[str]]:
        """Cancel jobs by name. Unknown names raise KeyError before anything changes."""
        jobs = []
        for name in names:
            job = self.registry.get(name)
            if job is None:
                raise KeyError(name)
            jobs.append(job)
        canceled, finished = [], []
        for job in jobs:
            if job.final:
                finished.append(job.name)
                continue
            canceled.append(job.name)
            self._cancel(job, now)
        return canceled, finished

    def _cancel(self, job: Job, now: float, reason: str = "canceled") -> None:
        if job.cancel_requested:
            return
        job.cancel_requested = True
        job.cancel_reason = reason
        running = [t for t in (job.live or {}).values() if t.id in self.running]
        self.settle_unrun(job, job.total - len(running) - job.done)  # what never started never will
        if job.iter_sat:
            job.iter_sat.clear()
        if not running:
            self.move_job(job, Event.CANCEL, now, reason)
            self.job_ended(job, now)
            return
        for t in running:
            self.outbox.cancels.setdefault(t.allocation[0].node, []).append(t.id)
        self.outbox.changed[job.name] = job

    def finish(self, drain: bool, now: float, reason: str = "canceled") -> None:
        """Stop once every job has ended; without ``drain``, cancel what has not (with ``reason``)."""
        self.finishing = True
        if not drain:
            for job in list(self.registry):
                if not job.final:
                    self._cancel(job, now, reason)

    # ------------------------------------------------------------------ output

    def step(self, now: float) -> Outbox:
        """Run one scheduling pass and hand back everything to do."""
        if self.arrivals.due(now):
            self._wait_over(now)
        reconcile.due(self, now)
        pool, sb, queue = self.pool, self.standbys, self.queue
        placed = self.outbox.placed
        # a pass places nothing while too little launch room is left: no string of tiny passes, one per report
        if queue.queues and pool.free_cores > 0 and LAUNCHED_MAX - self.launched() >= PASS_PLACE_MAX // 4:
            place: Place = (  # with prefetch, what is placed on free cores may get standbys behind it
                (lambda job, it, alloc: sb.offer(self.place(job, it, alloc, now))) if sb.enabled
                else (lambda job, it, alloc: self.place(job, it, alloc, now))
            )
            queue.schedule(lambda req, wall: pool.allocate(req, until(now, wall)), place,
                           lambda: (pool.free_cores > 0 and len(placed) < PASS_PLACE_MAX
                                    and self.launched() < LAUNCHED_MAX), now)
        # free cores left, and ready work the limits above kept from them: the next pass places it
        paced = bool(queue.queues) and pool.free_cores > 0 and (
            len(placed) >= PASS_PLACE_MAX or LAUNCHED_MAX - self.launched() < PASS_PLACE_MAX // 4)
        stuck_wake = prefetch.standby_pass(self, now, paced, PASS_PLACE_MAX - len(placed)) if sb.enabled else None
        out, self.outbox = self.outbox, Outbox()
        out.stop = self.finishing and self.unfinished == 0
        # the rest in the next pass: at once, or (too many launched, not yet started) when agents report
        more = now if len(out.placed) >= PASS_PLACE_MAX and self.launched() < LAUNCHED_MAX else None
        wakes = [w for w in (self.arrivals.wake_at, self.recon.wake_at, stuck_wake, more) if w is not None]
        out.wake_at = min(wakes, default=None)
        return out

    # ------------------------------------------------------------------ state changes

    def launched(self) -> int:
        """Tasks launched on free cores and not yet reported started (``LAUNCHED_MAX``); standbys,
        held by their agents until cores free, are not counted (``Standbys.limit`` holds them)."""
        return self.task_counts[State.SCHEDULED] - len(self.standbys.behind)

    def move_task(self, task: Task, event: Event, now: float, reason: str = "") -> None:
        """``task`` takes the move ``TASK_MOVES[(its state, event)]`` (an illegal one raises)."""
        counts = self.task_counts
        counts[task.state] -= 1
        counts[task.move(event, now, reason)] += 1

    def move_job(self, job: Job, event: Event, now: float, reason: str = "") -> None:
        """``job`` takes the move ``JOB_MOVES[(its state, event)]`` (an illegal one raises); the
        outbox learns of the change, and of its end."""
        counts = self.job_counts
        counts[job.state] -= 1
        state = job.move(event, now, reason)
        counts[state] += 1
        out = self.outbox
        if state._value_ >= State.SUCCEED:  # final (State.final, without the property call)
            self.unfinished -= 1
            out.finished.append(job)
        out.changed[job.name] = job
