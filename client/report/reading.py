"""Reading DIR/jobs.jsonl as a stream: one record per job line and per task, complete lines only.

The master (``master/report.py``) writes one JSON object per job, then one per iteration of a
job with iterations; a job without iterations carries its one task on its own line
(``exit_code``, ``nodes``, ``cores``, ``task_times``). :func:`records` turns each line into a
:class:`JobLine` and, for every task, a :class:`TaskLine`. A line that does not end in a newline
(the last line of a file still being written) is left out; any other line that is not a report
line raises :class:`ReportError`, one line naming the file, the line number and the field.

Speed: ``json.loads`` costs about 9 µs per line, most of ``pj report stats`` on a million tasks,
so lines in the master's exact layout (its key order) are taken apart by one regular expression,
and only what the expression does not cover (GPUs, attempts, rusage, stderr tails) goes through
``json.loads``. Any other line, however written, takes the ``json.loads`` path; both paths give the
same records (``tests/client/test_report_reading.py`` checks it).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pj.common.workdir import WORKDIR_ENV

REPORT_NAME = "jobs.jsonl"


class ReportError(Exception):
    """Bad or missing report: one line naming the file (and line and field), exit 2."""


class JobLine:
    """A job's own line: its state and the times of its state changes (``QUEUED`` is the submission)."""

    __slots__ = ("iterations", "name", "reason", "state", "times")

    def __init__(self, name: str, state: str, reason: str, times: dict[str, float], iterations: int | None) -> None:
        self.name = name
        self.state = state
        self.reason = reason
        self.times = times
        self.iterations = iterations  # None: a job without iterations (its task is on the same line)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobLine) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return f"JobLine({', '.join(f'{s}={getattr(self, s)!r}' for s in self.__slots__)})"


class TaskLine:
    """One task (an iteration, or the task of a job without iterations) as the report gives it.

    ``cores`` maps each node to the core ids the task held there (in the order of ``nodes``);
    ``attempts`` lists every attempt of a retried task (the last being this line's own), else None.
    ``cpu_user_s``, ``cpu_system_s``, ``max_rss_kb`` and ``stderr_tail`` are None in reports that
    do not hold them.
    """

    __slots__ = ("attempts", "cores", "cpu_system_s", "cpu_user_s", "exit_code", "gpus", "job", "max_rss_kb",
                 "name", "reason", "state", "stderr_tail", "times")  # fmt: skip

    def __init__(self, job: str, name: str, state: str, exit_code: int | None, reason: str,
                 cores: dict[str, list[int]], times: dict[str, float]) -> None:  # fmt: skip
        self.job = job
        self.name = name
        self.state = state
        self.exit_code = exit_code
        self.reason = reason
        self.cores = cores
        self.times = times
        self.gpus: dict[str, list[str]] | None = None
        self.attempts: list[dict[str, Any]] | None = None
        self.cpu_user_s: float | None = None
        self.cpu_system_s: float | None = None
        self.max_rss_kb: int | None = None
        self.stderr_tail: str | None = None

    @property
    def ncores(self) -> int:
        return sum(len(ids) for ids in self.cores.values())

    @property
    def cpu_s(self) -> float | None:
        """User + system CPU seconds, None when the report does not say."""
        if self.cpu_user_s is None and self.cpu_system_s is None:
            return None
        return (self.cpu_user_s or 0.0) + (self.cpu_system_s or 0.0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskLine) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return f"TaskLine({', '.join(f'{s}={getattr(self, s)!r}' for s in self.__slots__)})"


Record = JobLine | TaskLine


class _Bad(Exception):
    """A line that is not a report line; the message names the field."""


# ---------------------------------------------------------------- locating the report


def report_path(workdir: str | None) -> Path:
    """DIR/jobs.jsonl for ``--workdir DIR`` (or $PJ_WORKDIR); a file given instead is the report itself."""
    given = workdir if workdir is not None else os.environ.get(WORKDIR_ENV)
    if not given:
        raise ReportError(f"no campaign given: use --workdir DIR (the workdir of a run, holding {REPORT_NAME}) "
                          f"or set {WORKDIR_ENV}")
    p = Path(given)
    if p.is_dir():
        p = p / REPORT_NAME
    if not p.is_file():
        if not p.parent.is_dir():
            raise ReportError(f"{p.parent}: no such directory (give --workdir DIR of a run)")
        raise ReportError(f"{p}: no such file (the master writes it as the campaign ends; give the workdir of a run)")
    return p


# ---------------------------------------------------------------- the fast path (the master's own layout)

_STR = r'"((?:[^"\\]|\\.)*)"'
_TIMES = r'\{([^{}]*)\}'
_RUSAGE = r'(?:,"cpu_user_s":([-0-9.e+]+),"cpu_system_s":([-0-9.e+]+),"max_rss_kb":(\d+))?'
_TASK = re.compile(
    r'\{"name":' + _STR + r',"job":' + _STR + r',"iteration":[^,]*,"state":"([A-Z_]+)","exit_code":(-?\d+|null),'
    r'"reason":' + _STR + r',"nodes":\[[^\]]*\],"cores":\{([^{}]*)\},"times":' + _TIMES + _RUSAGE
)
# the commonest task line: one node, the four states of a task that ran (the generic one covers the rest)
_TASK1 = re.compile(
    r'\{"name":' + _STR + r',"job":' + _STR + r',"iteration":[^,]*,"state":"([A-Z_]+)","exit_code":(-?\d+|null),'
    r'"reason":' + _STR + r',"nodes":\[[^\]]*\],"cores":\{"([^"\\]+)":\[([0-9,]*)\]\},'
    r'"times":\{"QUEUED":([^,]+),"SCHEDULED":([^,]+),"EXECUTING":([^,]+),"([A-Z_]+)":([^,}]+)\}' + _RUSAGE
)
_JOB = re.compile(r'\{"name":' + _STR + r',"state":"([A-Z_]+)","reason":' + _STR + r',"times":' + _TIMES)
_JOB_TASK = re.compile(
    r',"exit_code":(-?\d+|null),"nodes":\[[^\]]*\],"cores":\{([^{}]*)\},"task_times":' + _TIMES + _RUSAGE
)
_CORES = re.compile(r'"([^"\\]+)":\[([0-9,]*)\]')


def _text(raw: str) -> str:
    return json.loads(f'"{raw}"') if "\\" in raw else raw


def _times(raw: str) -> dict[str, float]:
    out: dict[str, float] = {}
    if raw:
        for item in raw.split(","):
            key, _, value = item.partition(":")
            out[key[1:-1]] = float(value)
    return out


def _cores(raw: str) -> dict[str, list[int]] | None:
    if not raw:
        return {}
    if raw.count("[") == 1:  # one node: most tasks
        i = raw.find('":[')
        if i < 0 or raw[-1] != "]" or "\\" in raw:
            return None
        ids = raw[i + 3 : -1]
        return {raw[1:i]: [int(x) for x in ids.split(",")] if ids else []}
    found = _CORES.findall(raw)
    if sum(len(n) + len(ids) + 5 for n, ids in found) + len(found) - 1 != len(raw):
        return None  # something the expression does not cover: let json.loads judge
    return {n: [int(x) for x in ids.split(",")] if ids else [] for n, ids in found}


def _extras(task: TaskLine, user: str | None, system: str | None, rss: str | None, rest: str) -> None:
    """The rusage the expression read, then the fields after it (``rest`` is ``,"k":v,...}``)."""
    if user is not None:
        task.cpu_user_s = float(user)
        task.cpu_system_s = float(system)  # type: ignore[arg-type]  # the three come together
        task.max_rss_kb = int(rss)  # type: ignore[arg-type]
    if rest != "}":
        obj = json.loads("{" + rest[1:])
        if user is not None and any(k in obj for k in ("cpu_user_s", "cpu_system_s", "max_rss_kb")):
            raise _Bad("a field twice")  # let json.loads judge the whole line
        _apply_extras(task, obj, keep_rusage=user is not None)


def _task1(m: re.Match[str], text: str) -> TaskLine:
    """The TaskLine of a line that ``_TASK1`` matched (the hot path: a million of these take seconds)."""
    name, job, state, code, reason, node, ids, queued, scheduled, started, end_state, ended, user, system, rss = (
        m.groups())  # fmt: skip
    times = {"QUEUED": float(queued), "SCHEDULED": float(scheduled), "EXECUTING": float(started),
             end_state: float(ended)}  # fmt: skip
    task = TaskLine(job if "\\" not in job else _text(job), name if "\\" not in name else _text(name), state,
                    None if code == "null" else int(code), reason if "\\" not in reason else _text(reason),
                    {node: [int(ids)] if "," not in ids else [int(x) for x in ids.split(",")] if ids else []},
                    times)  # fmt: skip
    if user is not None and len(text) == m.end() + 1:  # rusage, then the line's end: nothing more to read
        task.cpu_user_s, task.cpu_system_s, task.max_rss_kb = float(user), float(system), int(rss)
    else:
        _extras(task, user, system, rss, text[m.end() :])
    return task


def _fast(text: str) -> list[Record] | None:
    m = _TASK1.match(text)
    if m is not None:
        return [_task1(m, text)]
    m = _TASK.match(text)
    if m is not None:
        name, job, state, code, reason, cores_raw, times_raw, user, system, rss = m.groups()
        cores = _cores(cores_raw)
        if cores is None:
            return None
        task = TaskLine(_text(job), _text(name), state, None if code == "null" else int(code), _text(reason),
                        cores, _times(times_raw))  # fmt: skip
        _extras(task, user, system, rss, text[m.end() :])
        return [task]
    m = _JOB.match(text)
    if m is None:
        return None
    name, state, reason, times_raw = m.groups()
    rest = text[m.end() :]
    name = _text(name)
    if rest.startswith(',"iterations":'):
        extra = json.loads("{" + rest[1:])
        iterations = extra.get("iterations")
        if not isinstance(iterations, int):
            return None
        return [JobLine(name, state, _text(reason), _times(times_raw), iterations)]
    jl = JobLine(name, state, _text(reason), _times(times_raw), None)
    if rest == ',"exit_code":null,"nodes":[],"cores":{}}':  # never placed (OMITTED, too big, canceled early)
        return [jl]
    t = _JOB_TASK.match(rest)
    if t is None:
        return None  # no task, or an unusual layout: json.loads decides
    code, cores_raw, task_times, user, system, rss = t.groups()
    cores = _cores(cores_raw)
    if cores is None:
        return None
    task = TaskLine(name, name, state, None if code == "null" else int(code), jl.reason, cores, _times(task_times))
    _extras(task, user, system, rss, rest[t.end() :])
    return [jl, task]


# ---------------------------------------------------------------- the general path (any valid JSON line)


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, optional: bool = False) -> Any:
    if key not in obj:
        if optional:
            return None
        raise _Bad(f'no "{key}" field ({what})')
    value = obj[key]
    if optional and value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _Bad(f'"{key}" is {json.dumps(value)[:40]}, expected {what}')
    return value


def _times_of(obj: dict[str, Any], key: str) -> dict[str, float]:
    times = _field(obj, key, dict, "an object of state -> epoch seconds")
    for state, t in times.items():
        if not isinstance(t, (int, float)) or isinstance(t, bool):
            raise _Bad(f'"{key}" has {state}: {json.dumps(t)[:40]}, expected epoch seconds')
    return {k: float(v) for k, v in times.items()}


def _cores_of(obj: dict[str, Any]) -> dict[str, list[int]]:
    cores = _field(obj, "cores", dict, "an object of node -> core ids")
    for node, ids in cores.items():
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise _Bad(f'"cores" has {node}: {json.dumps(ids)[:40]}, expected a list of core ids')
    return {str(k): list(v) for k, v in cores.items()}


def _apply_extras(task: TaskLine, obj: dict[str, Any], keep_rusage: bool = False) -> None:
    task.gpus = _field(obj, "gpus", dict, "an object of node -> GPU ids", optional=True)
    attempts = _field(obj, "attempts", list, "a list of attempts", optional=True)
    if attempts is not None and not all(isinstance(a, dict) for a in attempts):
        raise _Bad('"attempts" holds something that is not an object')
    task.attempts = attempts
    if not keep_rusage:
        for key in ("cpu_user_s", "cpu_system_s"):
            value = _field(obj, key, (int, float), "seconds", optional=True)
            setattr(task, key, None if value is None else float(value))
        task.max_rss_kb = _field(obj, "max_rss_kb", int, "kilobytes", optional=True)
    task.stderr_tail = _field(obj, "stderr_tail", str, "text", optional=True)


def _slow(text: str) -> list[Record]:
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise _Bad(f"not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise _Bad("not a JSON object")
    name = _field(obj, "name", str, "a name")
    state = _field(obj, "state", str, "a state name")
    reason = _field(obj, "reason", str, "text", optional=True) or ""
    code = _field(obj, "exit_code", int, "an exit code", optional=True)
    if "job" in obj:  # an iteration's line
        job = _field(obj, "job", str, "a job name")
        task = TaskLine(job, name, state, code, reason, _cores_of(obj), _times_of(obj, "times"))
        _apply_extras(task, obj)
        return [task]
    iterations = _field(obj, "iterations", int, "a count", optional=True)
    jl = JobLine(name, state, reason, _times_of(obj, "times"), iterations)
    if iterations is not None or "task_times" not in obj:  # iterations on lines of their own, or no task
        return [jl]
    task = TaskLine(name, name, state, code, reason, _cores_of(obj), _times_of(obj, "task_times"))
    _apply_extras(task, obj)
    return [jl, task]


def parse_line(text: str) -> list[Record]:
    """One report line (without its newline) -> its records; raises ``_Bad`` naming the field."""
    try:
        fast = _fast(text)
    except (ValueError, _Bad):
        fast = None
    return fast if fast is not None else _slow(text)


def records(path: Path) -> Iterator[Record]:
    """Every record of the report at ``path``, in file order; a last line without its newline is skipped."""
    try:
        f = open(path, "rb")  # closed by the with below, also when the consumer stops early
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror})") from None
    match1 = _TASK1.match
    with f:
        for lineno, raw in enumerate(f, 1):
            if raw[-1:] != b"\n":
                return  # being written: the rest comes later
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                raise ReportError(f"{path} line {lineno}: not UTF-8 text; the report is damaged "
                                  "(the master rewrites it whole when a campaign ends)") from None
            text = text.rstrip("\r\n")
            m = match1(text)
            if m is not None:  # the commonest line, without parse_line's layers
                try:
                    yield _task1(m, text)
                    continue
                except (ValueError, _Bad):
                    pass  # json.loads judges it below
            if not text.strip():
                continue
            try:
                yield from parse_line(text)
            except _Bad as e:
                raise ReportError(f"{path} line {lineno}: {e}; not a PJ report line "
                                  "(jobs.jsonl is written by the master: give the workdir of a run)") from None
