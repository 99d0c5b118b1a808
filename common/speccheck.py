"""Validation of a batch of ``pj.v1.JobSpec``: one set of rules for the client and the master.

The client runs :func:`check_specs` before it starts anything (so a typo in job 900 of a file is
reported before job 1 runs); the master runs it again before it accepts a Submit (a client may be
old, buggy or hostile), passing ``known`` so that names already registered count as duplicates and
as dependency targets. Checks are linear in the size of the batch (the cycle search is an iterative
DFS that runs only when some job waits for a later one): 100 000 specs take 0.2-0.5 s on one core.
Strings are also checked for what would fail later, far from the user: NUL characters (exec would
refuse them), absurd sizes, ``=`` in variable names.

Conventions on the wire (``pj.proto``) that these rules enforce:

- ``cores`` and ``nodes`` unset mean exactly 1. When set, ``min >= 1``; ``max == 0`` means *no
  upper bound* ("at least min, as many as fit"); otherwise ``min <= max`` (``min == max``: exact).
- ``iterations``: ``start..stop-1`` with ``0 <= start < stop``, or one per value (then ``start == 0``
  and ``stop == len(values)``).
- ``after`` entries: ``"job"`` (the whole job, every iteration), ``"job:${it}"`` (the same iteration
  of ``job``; only in a job with iterations, and ``job`` must have them all) or ``"job:N"``.

The first problem found raises :class:`SpecError`; jobs are checked in batch order, then the
dependency graph for cycles.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pj.common.durations import MAX_SECONDS
from pj.v1 import pj_pb2

__all__ = [
    "AFTER_MAX",
    "ARGS_BYTES_MAX",
    "COUNT_MAX",
    "ENV_ENTRIES_MAX",
    "GPUS_MAX",
    "ITERATIONS_MAX",
    "ITERATION_STOP_MAX",
    "JOBS_MAX",
    "MESSAGE_BYTES_MAX",
    "MODELS",
    "NAME_MAX",
    "RETRIES_MAX",
    "WALLTIME_MAX",
    "JobRef",
    "SpecError",
    "check_name",
    "check_specs",
    "split_after",
]

# Every limit a submission meets; the README's job-file section lists them for users.
MESSAGE_BYTES_MAX = 64 << 20  # one gRPC message (a whole Submit): the master's receive limit
JOBS_MAX = 1_000_000  # jobs in one submission
NAME_MAX = 200
COUNT_MAX = 1_000_000  # cores or nodes
GPUS_MAX = 1024  # per node
MEMORY_MAX = 2**50  # bytes per node (1 PiB)
ITERATIONS_MAX = 10_000_000
ITERATION_STOP_MAX = 10**18  # every index stays referable as "job:N" (at most 18 digits)
AFTER_MAX = 100_000  # dependencies of one job
WALLTIME_MAX = MAX_SECONDS  # 100 years: longer is a mistake, and would overflow timers
RETRIES_MAX = 1000
ARGS_BYTES_MAX = 1 << 20  # all arguments together
ENV_ENTRIES_MAX = 1000
ENV_BYTES_MAX = 1 << 20
SCRIPT_BYTES_MAX = 1 << 20
PATH_MAX = 4096  # exec, wd, stdin, stdout, stderr, venv
MODULES_MAX = 100
ATTRIBUTES_MAX = 1000
ATTRIBUTES_BYTES_MAX = 1 << 20
MODELS = frozenset({"", "default", "threads", "srun", "openmpi", "intelmpi"})
ITERATION_VAR = "${it}"

_NAME_CHARS = re.compile(r"[A-Za-z0-9_.+-]+")
_INDEX = re.compile(r"[0-9]{1,18}")


class SpecError(ValueError):
    """One invalid job in a batch.

    ``job`` is its name as given (possibly empty or invalid), ``index`` its 0-based position in the
    batch, ``field`` the ``JobSpec`` field at fault and ``reason`` what is wrong. ``str()`` is one
    line: ``job 'sim': field 'cores': min 4 is greater than max 2`` (``job #3: ...``, 1-based, when
    the job has no usable name).
    """

    def __init__(self, job: str, field: str, reason: str, index: int | None = None) -> None:
        self.job = job
        self.field = field
        self.reason = reason
        self.index = index
        super().__init__(f"{self.label}: field {field!r}: {reason}")

    @property
    def label(self) -> str:
        """``job 'sim'``, or ``job #3`` when the name cannot identify the job; ``the submission``
        for a fault of the whole batch (no job, no index)."""
        if not self.job and self.index is None:
            return "the submission"
        if self.job and check_name(self.job) is None:
            return f"job {self.job!r}"
        if self.index is not None:
            return f"job #{self.index + 1}"
        return f"job {_show(self.job)}"


@dataclass(frozen=True, slots=True)
class JobRef:
    """What the batch needs to know about a job registered earlier: its iteration range.

    ``start``/``stop`` are ``None`` for a job without iterations.
    """

    start: int | None = None
    stop: int | None = None

    @property
    def has_iterations(self) -> bool:
        return self.start is not None and self.stop is not None

    @classmethod
    def of(cls, spec: pj_pb2.JobSpec) -> JobRef:
        """The reference the master keeps for an accepted spec."""
        if spec.HasField("iterations"):
            return cls(spec.iterations.start, spec.iterations.stop)
        return cls()


def _unknown(_name: str) -> JobRef | None:
    return None


def check_name(name: str) -> str | None:
    """Why ``name`` cannot name a job, or ``None`` when it can (names become file names)."""
    if not name:
        return "a name is required"
    if len(name) > NAME_MAX:
        return f"{_show(name)} is longer than {NAME_MAX} characters"
    if _NAME_CHARS.fullmatch(name) is None:
        if ":" in name:
            return (
                f"{_show(name)} must not contain ':' (it separates a job from its iteration, as in 'sim:3')"
            )
        if "/" in name:
            return f"{_show(name)} must not contain '/' (names become file names)"
        bad = next(c for c in name if _NAME_CHARS.fullmatch(c) is None)
        return f"{_show(name)} contains {bad!r}; use letters, digits and _ . + -"
    if name[0] == ".":
        return f"{_show(name)} must not start with '.'"
    if ".." in name:
        return f"{_show(name)} must not contain '..' (names become file names)"
    return None


def split_after(entry: str) -> tuple[str, str | int | None]:
    """Split one ``after`` entry: ``"job"`` -> (job, None); ``"job:${it}"`` -> (job, "${it}");
    ``"job:7"`` -> (job, 7). Raises ``ValueError`` for any other form."""
    job, sep, it = entry.partition(":")
    if not sep:
        return job, None
    if it == ITERATION_VAR:
        return job, ITERATION_VAR
    if _INDEX.fullmatch(it):
        return job, int(it)
    raise ValueError(f"{_show(entry)} is not 'job', 'job:${{it}}' or 'job:N'")


def check_specs(
    specs: Sequence[pj_pb2.JobSpec],
    known: Callable[[str], JobRef | None] = _unknown,
    *,
    allow_external: bool = False,
    renamed: Sequence[bool] | None = None,
    names: Sequence[str] | None = None,
) -> None:
    """Raise :class:`SpecError` for the first invalid job in ``specs``; return ``None`` if all are valid.

    ``known(name)`` describes a job registered before this batch (``None``: no such job). With
    ``allow_external``, a dependency on a job that is neither in the batch nor known is accepted
    unchecked: a client uses it for files that refer to jobs of a running master, which checks them.
    ``renamed[i]``: specs[i] is a copy of an earlier spec of ``specs`` but for its name (a job
    file's reader knows); only its name is checked (the master, trusting no one, checks all).
    ``names[i]``: the name of job i, where ``specs`` holds a renamed job as the very spec it is a copy
    of (a batch sent compactly, ``SubmitRequest.copies``); None: each spec's own name.
    """
    if not specs:
        raise SpecError("", "jobs", "no jobs: a submission needs at least one")
    if len(specs) > JOBS_MAX:
        why = f"{len(specs)} jobs is more than {JOBS_MAX} in one submission; split it"
        raise SpecError("", "jobs", why)
    first: dict[str, int] = {}
    waiting: list[tuple[int, list[str]]] = []  # jobs with dependencies, and these
    check_known = known is not _unknown
    for i, spec in enumerate(specs):
        if renamed is not None and renamed[i]:
            name = spec.name if names is None else names[i]
            _check_name(name, i)
            after = spec.after[:] if spec.after else []
        else:
            name, after = _check_one(spec, i)
        seen = first.setdefault(name, i)
        if seen != i:
            raise SpecError(name, "name", f"{name!r} is also the name of job #{seen + 1}", i)
        if check_known and known(name) is not None:
            raise SpecError(name, "name", f"a job named {name!r} already exists", i)
        if after:
            waiting.append((i, after))
    def name_of(k: int) -> str:
        return specs[k].name if names is None else names[k]

    edges: dict[int, list[int]] = {}
    forward = False  # does some job wait for a later one? If not, there can be no cycle.
    for i, after in waiting:
        targets = edges[i] = []
        for entry in after:
            pos = first.get(entry)  # the common case: a whole job of this batch
            if pos is None or pos == i:
                pos = _check_entry(entry, specs[i], name_of(i), i, specs, first, known, allow_external)
                if pos is None:
                    continue
            targets.append(pos)
            forward = forward or pos > i
    cycle = _find_cycle(edges) if forward else None
    if cycle:
        shown = [name_of(k) for k in cycle]
        if len(shown) > 8:
            shown = [*shown[:4], f"... ({len(shown) - 6} more)", *shown[-2:]]
        path = " -> ".join([*shown, name_of(cycle[0])])
        why = f"dependency cycle {path} (each waits for the next)"
        raise SpecError(name_of(cycle[0]), "after", why, cycle[0])


# The checks below run once per job. ``ListFields`` hands over only the fields that are set (a
# typical job sets four or five of twenty), which is several times cheaper than reading each field;
# anything unusual is then looked at closely in a helper.

_NAME, _EXEC, _SCRIPT, _ARGS, _ENV, _WD, _STDIN, _STDOUT, _STDERR, _CORES, _NODES = range(1, 12)
_GPUS, _ITERATIONS, _AFTER, _MODEL, _MODULES, _VENV, _WALLTIME, _RETRIES, _ATTRIBUTES = range(12, 21)
_MPIRUN, _MODEL_ARGS, _MEMORY = 21, 22, 23
_PATHS = frozenset({_WD, _STDIN, _STDOUT, _STDERR, _VENV, _MPIRUN})
assert [f.number for f in pj_pb2.JobSpec.DESCRIPTOR.fields] == list(range(1, 24)), "pj.proto changed"
ITER_SCHEDULERS = ("split-into", "maximum-iters")  # QCG-PilotJob's (Range.scheduler; master/itersize.py)


def _check_name(name: str, i: int) -> None:
    if len(name) > NAME_MAX or _NAME_CHARS.fullmatch(name) is None or name[0] == "." or ".." in name:
        raise SpecError(name, "name", check_name(name) or "is not a valid name", i)


def _check_one(spec: pj_pb2.JobSpec, i: int) -> tuple[str, list[str]]:
    """Everything about one spec that does not need the rest of the batch.

    Returns its name and its dependencies (``after``).
    """
    name = spec.name
    _check_name(name, i)
    exe = script = ""
    has_args = False
    after: list[str] = []
    for fd, value in spec.ListFields():
        n = fd.number  # the most frequent fields first
        if n == _NAME:
            continue
        if n == _EXEC:
            exe = value
            if len(value) > PATH_MAX or "\0" in value:
                _check_text(value, "exec", PATH_MAX, name, i, unit="characters")
        elif n == _ARGS:
            has_args = True
            joined = "".join(value[:])  # a slice is a list: joining it is much faster than the container
            if "\0" in joined or len(joined) * 8 > ARGS_BYTES_MAX:
                _check_args(value, name, i)
        elif n == _AFTER:
            after = value[:]
            if len(after) > AFTER_MAX:
                why = f"{len(after)} dependencies is more than {AFTER_MAX}; wait for fewer, larger jobs"
                raise SpecError(name, "after", why, i)
        elif n in _PATHS:
            if len(value) > PATH_MAX or "\0" in value:
                _check_text(value, fd.name, PATH_MAX, name, i, unit="characters")
        elif n == _CORES or n == _NODES:
            lo, hi = value.min, value.max
            if not 1 <= lo <= COUNT_MAX or hi > COUNT_MAX or (hi and hi < lo):
                _range_error(lo, hi, fd.name, name, i)
            if value.HasField("scheduler"):
                _check_scheduler(spec, fd.name, name, i)
        elif n == _ITERATIONS:
            _check_iterations(value, name, i)
        elif n == _SCRIPT:
            script = value
            if len(value) * 4 > SCRIPT_BYTES_MAX or "\0" in value:
                _check_text(value, "script", SCRIPT_BYTES_MAX, name, i)
        elif n == _ENV:
            _check_env(value, name, i)
        elif n == _GPUS:
            if value > GPUS_MAX:
                raise SpecError(name, "gpus", f"{value} GPUs per node is more than {GPUS_MAX}", i)
        elif n == _MODEL:
            if value not in MODELS:
                raise SpecError(
                    name, "model", f"unknown model {_show(value)}; use one of {_choices(MODELS)}", i
                )
        elif n == _WALLTIME:
            if not 0 <= value <= WALLTIME_MAX:
                why = f"must be a number of seconds >= 0 (0: no limit) and at most {WALLTIME_MAX:.0f} (100 years), got {value}"
                raise SpecError(name, "walltime_s", why, i)
        elif n == _RETRIES:
            if value > RETRIES_MAX:
                raise SpecError(name, "retries", f"{value} is more than {RETRIES_MAX}", i)
        elif n == _MODULES:
            _check_modules(value, name, i)
        elif n == _MODEL_ARGS:
            _check_args(value, name, i, "model_args")
        elif n == _ATTRIBUTES:
            _check_map(value, "attributes", ATTRIBUTES_MAX, ATTRIBUTES_BYTES_MAX, name, i)
        elif n == _MEMORY:
            if value > MEMORY_MAX:
                raise SpecError(name, "memory_request_bytes", f"{value} bytes per node is more than {MEMORY_MAX} (1 PiB)", i)
    if spec.model == "threads" and (spec.nodes.min > 1 or spec.nodes.max != 1) and spec.HasField("nodes"):
        raise SpecError(
            name, "nodes", "model threads runs one process on one node; drop nodes or use model srun/openmpi", i
        )
    if spec.mpirun and spec.model not in ("openmpi", "intelmpi"):
        raise SpecError(name, "mpirun", "is for models openmpi and intelmpi; drop it or set one of them", i)
    if spec.model_args and spec.model not in ("openmpi", "intelmpi", "srun"):
        raise SpecError(name, "model_args", "are for models srun, openmpi and intelmpi; drop them", i)
    if not exe:
        if not script:
            raise SpecError(name, "exec", "exec or script is required", i)
        if has_args:
            raise SpecError(name, "args", "cannot be combined with script (write them into the script)", i)
    elif script:
        raise SpecError(name, "exec", "give exactly one of exec and script", i)
    return name, after


def _check_text(value: str, field: str, limit: int, name: str, i: int, unit: str = "bytes") -> None:
    size = len(value) if unit == "characters" else len(value.encode(errors="replace"))
    if size > limit:
        raise SpecError(name, field, f"is longer than {limit} {unit}", i)
    if "\0" in value:
        raise SpecError(name, field, f"{_show(value)} contains a NUL character", i)


def _check_args(args: Sequence[str], name: str, i: int, field: str = "args") -> None:
    for arg in args:
        if "\0" in arg:
            raise SpecError(name, field, f"argument {_show(arg)} contains a NUL character", i)
    if sum(len(a.encode(errors="replace")) + 1 for a in args) > ARGS_BYTES_MAX:
        raise SpecError(name, field, f"the arguments together are longer than {ARGS_BYTES_MAX} bytes", i)


def _check_scheduler(spec: pj_pb2.JobSpec, field: str, name: str, i: int) -> None:
    """An iteration scheduler on ``cores`` or ``nodes`` (QCG-PilotJob's; sized by the master)."""
    rng: pj_pb2.Range = getattr(spec, field)
    sched = rng.scheduler
    if sched.name not in ITER_SCHEDULERS:
        why = f"unknown iteration scheduler {_show(sched.name)}; use one of {', '.join(ITER_SCHEDULERS)}"
        raise SpecError(name, field, why, i)
    if rng.max:
        raise SpecError(name, field, f"{sched.name} sizes each iteration itself: drop max {rng.max}", i)
    if sched.parts and sched.name != "split-into":
        raise SpecError(name, field, f"parts is for split-into, not {sched.name}", i)
    if sched.parts > COUNT_MAX:
        raise SpecError(name, field, f"{sched.parts} parts is more than {COUNT_MAX}", i)
    if field == "cores" and spec.HasField("nodes") and not spec.nodes.min == spec.nodes.max == 1:
        why = "an iteration scheduler on cores sizes one-node jobs; put it on nodes for a multi-node job"
        raise SpecError(name, field, why, i)
    if field == "nodes" and spec.cores.HasField("scheduler"):
        raise SpecError(name, field, "give an iteration scheduler on cores or on nodes, not on both", i)


def _check_env(env: Mapping[str, str], name: str, i: int) -> None:
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            raise SpecError(
                name, "env", f"{_show(key)} is not a variable name (empty, or holds '=' or NUL)", i
            )
        if "\0" in value:
            raise SpecError(name, "env", f"the value of {key!r} contains a NUL character", i)
    _check_map(env, "env", ENV_ENTRIES_MAX, ENV_BYTES_MAX, name, i)


def _check_map(values: Mapping[str, str], field: str, entries: int, limit: int, name: str, i: int) -> None:
    if len(values) > entries:
        raise SpecError(name, field, f"{len(values)} entries is more than {entries}", i)
    size = sum(len(k) + len(v) + 2 for k, v in values.items())
    if (
        size * 4 > limit
        and sum(
            len(k.encode(errors="replace")) + len(v.encode(errors="replace")) + 2 for k, v in values.items()
        )
        > limit
    ):
        raise SpecError(name, field, f"the entries together are longer than {limit} bytes", i)


def _range_error(lo: int, hi: int, field: str, name: str, i: int) -> None:
    if lo < 1:
        raise SpecError(name, field, f"at least 1 is needed, got min {lo}", i)
    if lo > COUNT_MAX or hi > COUNT_MAX:
        raise SpecError(name, field, f"more than {COUNT_MAX} is not a real request (min {lo}, max {hi})", i)
    if hi and hi < lo:
        raise SpecError(name, field, f"min {lo} is greater than max {hi}", i)


def _check_iterations(it: pj_pb2.Iterations, name: str, i: int) -> None:
    start, stop = it.start, it.stop
    if it.values:
        if start != 0 or stop != len(it.values):
            why = f"with values, start must be 0 and stop {len(it.values)} (got {start}..{stop})"
            raise SpecError(name, "iterations", why, i)
        for value in it.values:
            if "\0" in value or len(value) > PATH_MAX:
                raise SpecError(name, "iterations", f"value {_show(value)} is too long or holds NUL", i)
    elif start < 0:
        raise SpecError(name, "iterations", f"start must not be negative, got {start}", i)
    elif stop <= start:
        why = f"stop {stop} must be greater than start {start}"
        if stop == start == 0:
            why += " (values, if used, must not be empty)"
        raise SpecError(name, "iterations", why, i)
    if stop > ITERATION_STOP_MAX:
        raise SpecError(name, "iterations", f"stop {stop} is more than {ITERATION_STOP_MAX}", i)
    if stop - start > ITERATIONS_MAX:
        raise SpecError(name, "iterations", f"{stop - start} iterations is more than {ITERATIONS_MAX}", i)


def _check_modules(modules: Sequence[str], name: str, i: int) -> None:
    if len(modules) > MODULES_MAX:
        raise SpecError(name, "modules", f"more than {MODULES_MAX} modules", i)
    for module in modules:
        if not module or len(module) > PATH_MAX or "\0" in module or "\n" in module:
            raise SpecError(name, "modules", f"{_show(module)} is not a module name", i)


def _check_entry(
    entry: str,
    spec: pj_pb2.JobSpec,
    name: str,
    i: int,
    specs: Sequence[pj_pb2.JobSpec],
    first: dict[str, int],
    known: Callable[[str], JobRef | None],
    allow_external: bool,
) -> int | None:
    """Check one ``after`` entry in full (``spec``'s, which names job ``name``); return the batch
    position it waits for, if in the batch."""

    def fail(reason: str) -> SpecError:
        return SpecError(name, "after", reason, i)

    try:
        dep, it = split_after(entry)
    except ValueError as exc:
        raise fail(str(exc)) from None
    why = check_name(dep)
    if why is not None:
        raise fail(f"{_show(entry)}: {why}")
    if dep == name:
        raise fail(f"{entry!r}: a job cannot depend on itself")
    mine = JobRef.of(spec)
    if it == ITERATION_VAR and not mine.has_iterations:
        raise fail(f"{entry!r}: '${{it}}' is only allowed in a job with iterations")
    pos = first.get(dep)
    if pos is not None:
        ref = JobRef.of(specs[pos])
    else:
        found = known(dep)
        if found is None:
            if allow_external:
                return None
            raise fail(f"{entry!r}: no job named {dep!r} in this batch or already submitted")
        ref = found
    if it is None:
        return pos
    if ref.start is None or ref.stop is None:
        raise fail(f"{entry!r}: job {dep!r} has no iterations")
    lo, hi = ref.start, ref.stop
    if it == ITERATION_VAR:
        assert mine.start is not None and mine.stop is not None
        if mine.start < lo or mine.stop > hi:
            raise fail(
                f"{entry!r}: job {dep!r} has iterations {lo}..{hi - 1}, which do not cover "
                f"this job's {mine.start}..{mine.stop - 1}"
            )
    elif not lo <= int(it) < hi:
        raise fail(f"{entry!r}: job {dep!r} has iterations {lo}..{hi - 1} only")
    return pos


def _find_cycle(edges: dict[int, list[int]]) -> list[int] | None:
    """A dependency cycle (as batch positions, from its earliest job), or None. Iterative DFS, O(V+E)."""
    state: dict[int, int] = {}  # absent: unvisited, 1: on the current path, 2: done
    for root in edges:  # batch order
        if root in state:
            continue
        state[root] = 1
        path = [root]
        cursor = [0]
        while path:
            node = path[-1]
            succ = edges.get(node, ())
            k = cursor[-1]
            if k < len(succ):
                cursor[-1] = k + 1
                nxt = succ[k]
                seen = state.get(nxt)
                if seen is None:
                    state[nxt] = 1
                    path.append(nxt)
                    cursor.append(0)
                elif seen == 1:
                    cycle = path[path.index(nxt) :]
                    start = cycle.index(min(cycle))
                    return cycle[start:] + cycle[:start]
            else:
                state[node] = 2
                path.pop()
                cursor.pop()
    return None


def _choices(values: frozenset[str]) -> str:
    return ", ".join(repr(v) for v in sorted(values) if v)


def _show(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "...")
