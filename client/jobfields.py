"""Reading one job's fields, shared by both job-file formats (jobfile.py: PJ's native format and
the loading of a file; qcgfile.py: QCG-PilotJob's): the file's context (name, duplicate keys,
warnings), ``FieldReader`` (typed access to a job's fields, each error one line naming file, job
and field) and the small helpers of messages. Depends on neither format's module.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from pj.common.durations import DurationError, parse_duration
from pj.common.sizes import SizeError, parse_size
from pj.v1 import pj_pb2

UINT32 = 2**32 - 1
INT64 = 2**63 - 1


class JobFileError(ValueError):
    """A job file (or ``pj-submit`` command line) that cannot be used; ``str()`` is one line."""

    def __init__(self, message: str, *, job: str | None = None, field: str | None = None) -> None:
        super().__init__(" ".join(message.splitlines()))
        self.job = job
        self.field = field


class FileContext:
    """The file being read: its name, duplicate keys found by the JSON reader, and warnings."""

    def __init__(self, source: str, dups: dict[int, tuple[str, object]], strict: bool) -> None:
        self.source = source
        self.dups = dups
        self.strict = strict
        self._warnings: list[str] = []
        self._grouped: dict[str, list[str]] = {}
        self.warned = 0  # warnings so far (a reader can tell whether a job gave any)

    def warn(self, message: str) -> None:
        self.warned += 1
        self._warnings.append(f"{self.source}: {message}")

    def warn_job(self, message: str, label: str) -> None:
        """One warning per kind of problem, naming the jobs it concerns."""
        self.warned += 1
        self._grouped.setdefault(message, []).append(label)

    def finish_warnings(self) -> list[str]:
        out = list(self._warnings)
        for message, labels in self._grouped.items():
            shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
            out.append(f"{self.source}: {shown}: {message}")
        return out


class FieldReader:
    """One job being read: where it is (for messages) and typed access to its fields."""

    def __init__(self, ctx: FileContext, label: str, prefix: str = "") -> None:
        self.ctx = ctx
        self.label = label
        self.prefix = prefix  # "execution." etc. in QCG jobs

    def fail(self, field: str, message: str) -> NoReturn:
        raise JobFileError(
            f"{self.ctx.source}: {self.label}: field {self.prefix + field!r}: {message}",
            field=self.prefix + field,
        )

    def sub(self, prefix: str) -> FieldReader:
        return FieldReader(self.ctx, self.label, prefix)

    def obj(self, field: str, value: Any, what: str = "an object") -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, f"expected {what}, got {kind_of(value)}")
        self.check_dups(field, value)
        return value

    def check_dups(self, field: str | None, value: dict[str, Any]) -> None:
        """Refuse (native) or warn about (QCG: it took the last value) a key given twice in ``value``."""
        found = self.ctx.dups.pop(id(value), None)
        if found is None:
            return
        key = found[0]
        where = f" in {self.prefix + field!r}" if field else ""
        if self.ctx.strict:
            raise JobFileError(
                f"{self.ctx.source}: {self.label}: key {key!r} is given twice{where}",
                field=self.prefix + (field or key),
            )
        self.ctx.warn_job(f"key {key!r} is given twice{where}; the last value is used", self.label)

    def known(
        self, value: dict[str, Any], fields: Sequence[str], hints: Mapping[str, str] | None = None
    ) -> None:
        """Refuse the first key of ``value`` not in ``fields``, suggesting the likely one."""
        for key in value:
            if key not in fields:
                hint = (hints or {}).get(key) or suggest(key, fields)
                where = f" in {self.prefix[:-1]!r}" if self.prefix else ""
                raise JobFileError(
                    f"{self.ctx.source}: {self.label}: unknown field {key!r}{where}{'; ' + hint if hint else ''}",
                    field=self.prefix + key,
                )

    def job_head(
        self, obj: Any, fields: Sequence[str], hints: Mapping[str, str] | None = None
    ) -> pj_pb2.JobSpec:
        """Start a job of either format: an object, no key twice, a name, only ``fields``."""
        if not isinstance(obj, dict):
            raise JobFileError(f"{self.ctx.source}: {self.label}: expected a job object, got {kind_of(obj)}")
        self.check_dups(None, obj)
        if obj.get("name") is None:
            raise JobFileError(f"{self.ctx.source}: {self.label}: missing field 'name'", field="name")
        spec = pj_pb2.JobSpec(name=self.string("name", obj["name"]))
        self.known(obj, fields, hints)
        return spec

    def string(self, field: str, value: Any) -> str:
        if not isinstance(value, str):
            self.fail(field, f"expected a string, got {kind_of(value)}")
        if not unicode_ok(value):
            self.fail(field, f"{show(value)} is not valid Unicode (a lone surrogate escape)")
        return value

    def integer(self, field: str, value: Any, lo: int = 0, hi: int = UINT32) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"expected an integer, got {kind_of(value)}")
        if value < lo:
            self.fail(field, f"must be at least {lo}, got {show(value)}")
        if value > hi:
            self.fail(field, f"must be at most {hi}, got {show(value)}")
        return value

    def text(self, field: str, value: Any, bools: bool = False) -> str:
        """A string, or a number (or with ``bools``, true/false) written as text."""
        if isinstance(value, str):
            return self.string(field, value)
        if isinstance(value, bool):
            if bools:
                return str(value)
        elif isinstance(value, int | float):
            return str(value)
        self.fail(field, f"expected a string or a number, got {kind_of(value)}")

    def texts(self, field: str, value: Any, bools: bool = False) -> list[str]:
        if not isinstance(value, list):
            self.fail(field, f"expected a list, got {kind_of(value)}")
        return [self.text(f"{field}[{k}]", v, bools) for k, v in enumerate(value)]

    def strings(self, field: str, value: Any) -> list[str]:
        if isinstance(value, str):
            return [self.string(field, value)]
        if not isinstance(value, list):
            self.fail(field, f"expected a list of strings or one string, got {kind_of(value)}")
        return [self.string(f"{field}[{k}]", v) for k, v in enumerate(value)]

    def mapping(self, field: str, value: Any, what: str = "an object") -> dict[str, Any]:
        """An object whose keys are valid Unicode (keys of ``env``, ``attributes``)."""
        obj = self.obj(field, value, what)
        for key in obj:
            self.string(f"{field}.{key}", key)
        return obj

    def env(self, field: str, value: Any) -> dict[str, str]:
        env = self.mapping(field, value, 'an object {"NAME": "value", ...}')
        return {k: self.text(f"{field}.{k}", v) for k, v in env.items()}

    def attributes(self, field: str, value: Any) -> dict[str, str]:
        """Strings stay as they are; other JSON values are kept as compact JSON text."""
        out = {}
        for key, v in self.mapping(field, value).items():
            try:
                out[key] = self.string(f"{field}.{key}", v) if isinstance(v, str) else _compact(v)
            except RecursionError:
                self.fail(f"{field}.{key}", "nested too deeply")
        return out

    def walltime(self, field: str, value: Any) -> float:
        try:
            return parse_duration(value, field)
        except DurationError as exc:
            self.fail(field, exc.reason)

    def memory(self, field: str, value: Any) -> int:
        """Bytes per node of each task: "512M", "4G", "1.5GiB" or a number of MiB."""
        try:
            return parse_size(value)
        except SizeError as exc:
            self.fail(field, exc.reason)

    def count(self, field: str, value: Any, spec: pj_pb2.Range, qcg: bool = False) -> list[str]:
        """Fill ``spec`` from an int or a {min, max} object (QCG: also exact, scheduler).

        Returns ``["scheduler"]`` when a QCG range has one (:mod:`pj.client.qcgfile` reads it).
        """
        form = '{"exact": n}, {"min": a, "max": b}' if qcg else '{"min": a, "max": b}'
        if not isinstance(value, dict):
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(field, f"expected an integer or {form}, got {kind_of(value)}")
            n = self.integer(field, value, 1)
            spec.min, spec.max = n, n
            return []
        rng = self.obj(field, value)
        keys = ("exact", "min", "max", "scheduler") if qcg else ("min", "max")
        hints = None if qcg else {"exact": "give an integer for an exact count"}
        self.sub(self.prefix + field + ".").known(rng, keys, hints)
        exact, lo, hi = rng.get("exact"), rng.get("min"), rng.get("max")
        ignored = ["scheduler"] if rng.get("scheduler") is not None else []  # read by qcgfile
        if exact is not None:
            if lo is not None or hi is not None or ignored:
                self.fail(field, "'exact' cannot be combined with 'min', 'max' or 'scheduler'")
            n = self.integer(f"{field}.exact", exact, 1)
            spec.min, spec.max = n, n
            return []
        if lo is None and hi is None:
            self.fail(field, f"give {'exact, ' if qcg else ''}'min', 'max' or both")
        spec.min = self.integer(f"{field}.min", lo, 1) if lo is not None else 1
        spec.max = self.integer(f"{field}.max", hi, 1) if hi is not None else 0  # 0: no upper bound
        if spec.max and spec.max < spec.min:
            self.fail(field, f"min {spec.min} is greater than max {spec.max}")
        return ignored

    def iterations(self, field: str, value: Any, spec: pj_pb2.Iterations, allow_int: bool) -> None:
        if allow_int and not isinstance(value, dict):
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(
                    field,
                    f'expected an integer, {{"start": a, "stop": b}} or {{"values": [...]}}, got {kind_of(value)}',
                )
            spec.start, spec.stop = 0, self.integer(field, value, 1, INT64)
            return
        it = self.obj(field, value, '{"start": a, "stop": b} or {"values": [...]}')
        self.sub(self.prefix + field + ".").known(it, ("start", "stop", "values"))
        stop, values = it.get("stop"), it.get("values")
        if stop is not None and values is not None:
            self.fail(field, "'stop' and 'values' exclude each other")
        if values is not None:
            spec.values.extend(self.texts(f"{field}.values", values))
            if not spec.values:
                self.fail(f"{field}.values", "must not be empty")
            spec.start, spec.stop = 0, len(spec.values)
            if it.get("start") is not None:
                self.fail(f"{field}.start", "cannot be combined with 'values'")
            return
        if stop is None:
            self.fail(field, "give 'stop' (and optionally 'start') or 'values'")
        start = it.get("start")
        spec.start = self.integer(f"{field}.start", start, 0, INT64) if start is not None else 0
        spec.stop = self.integer(f"{field}.stop", stop, 0, INT64)
        if spec.stop <= spec.start:
            self.fail(field, f"stop {spec.stop} must be greater than start {spec.start}")


def job_label(index: int, obj: Any, prefix: str = "") -> str:
    name = obj.get("name") if isinstance(obj, dict) else None
    if isinstance(name, str) and name:
        return f"{prefix}job {show(name)} (#{index})"
    return f"{prefix}job #{index}"


def unicode_ok(text: str) -> bool:
    """False for strings that protobuf cannot carry (JSON lets a lone surrogate in as an escape)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def suggest(key: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[key.lower()]] if key.lower() in lowered else []
    return f"did you mean {close[0]!r}?" if close else None


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {show(value)}"
    if isinstance(value, int | float):
        return f"the number {show(value)}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
