"""``Jobs``: a group of job descriptions to submit, as QCG-PilotJob's API builds them.

``add(**attrs)`` takes QCG's simplified attributes and keeps the job in QCG's standard layout
(``{"name", "execution": {...}, "resources": {...}, "iteration": {...}, "dependencies": {...}}``);
``add_std(**attrs)`` takes that layout directly. Both check what QCG checks, with its errors, and
keep the order of addition (``ordered_jobs``). What is sent to the master is exactly the
standard layout, read by PJ's QCG batch-file parser, so the API and batch files agree.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from .errors import FileError, InvalidJobDescriptionError, JobNotDefinedError, QCGPJMAError

__all__ = ["MAX_ITERATIONS", "Jobs"]

# The simplified attributes and the types QCG accepts for each.
_TOP: dict[str, tuple[type, ...]] = {
    "name": (str,), "exec": (str,), "script": (str,), "args": (list, str), "stdin": (str,),
    "stdout": (str,), "stderr": (str,), "wd": (str,), "modules": (list, str), "venv": (str,),
    "model": (str,), "model_opts": (dict,), "numNodes": (int, dict), "numCores": (int, dict),
    "wt": (str,), "iteration": (int, list, dict), "after": (list, str),
}  # fmt: skip
_RESOURCE: dict[str, tuple[type, ...]] = {"min": (int,), "max": (int,), "exact": (int,), "scheduler": (str, dict)}
_ITERATION: dict[str, tuple[type, ...]] = {"start": (int,), "stop": (int,), "values": (list,)}
_EXECUTION_KEYS = ("args", "stdin", "stdout", "stderr", "wd", "modules", "venv", "model", "model_opts")
_RESOURCE_KEYS = ("numCores", "numNodes", "wt")

MAX_ITERATIONS = 64 * 1024  # QCG's limit for the simplified API


def _is(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int in Python, but never a count of cores or iterations
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


def _check_element(element: str, value: dict[str, Any], allowed: dict[str, tuple[type, ...]]) -> None:
    for key, v in value.items():
        if key not in allowed:
            raise InvalidJobDescriptionError(f"Unknown {element} attribute {key}")
        if not _is(v, allowed[key]):
            raise InvalidJobDescriptionError(f"Invalid {element} attribute {key} type {type(v)}")


def _merge(job_attrs: Mapping[str, Any] | None, kw_attrs: dict[str, Any]) -> dict[str, Any]:
    return {**job_attrs, **kw_attrs} if job_attrs is not None else dict(kw_attrs)


class Jobs:
    """A group of job descriptions, in the order they were added. Methods that add return the group,
    so calls chain: ``Jobs().add(name="a", exec="/bin/date").add(name="b", script="echo b")``."""

    def __init__(self) -> None:
        self._list: dict[str, dict[str, Any]] = {}  # name -> the job in QCG's standard layout

    # ------------------------------------------------------------ adding

    def add(self, job_attrs: Mapping[str, Any] | None = None, **kw_attrs: Any) -> Jobs:
        """Add a job given by QCG's simplified attributes (``name``, ``exec``/``script``, ``args``,
        ``stdin``, ``stdout``, ``stderr``, ``wd``, ``modules``, ``venv``, ``model``, ``model_opts``,
        ``numCores``, ``numNodes``, ``wt``, ``iteration``, ``after``). A missing name is a UUID."""
        attrs = _merge(job_attrs, kw_attrs)
        self._check_simple(attrs)
        self._list[attrs["name"]] = self._standard(attrs)
        return self

    def add_std(self, job_attrs: Mapping[str, Any] | None = None, **kw_attrs: Any) -> Jobs:
        """Add a job in QCG's standard layout (as in a batch file's ``submit`` request)."""
        attrs = _merge(job_attrs, kw_attrs)
        self._check_standard(attrs)
        self._list[attrs["name"]] = attrs
        return self

    def _check_simple(self, attrs: dict[str, Any]) -> None:
        attrs.setdefault("name", str(uuid.uuid4()))
        if attrs["name"] in self._list:
            raise InvalidJobDescriptionError(f"Job {attrs['name']} already in list")
        for key, value in attrs.items():
            if key not in _TOP:
                raise InvalidJobDescriptionError(f"Unknown attribute {key}")
            if not _is(value, _TOP[key]):
                raise InvalidJobDescriptionError(f"Invalid attribute {key} type {type(value)}")
        if isinstance(attrs.get("after"), str):
            attrs["after"] = [attrs["after"]]
        if "exec" not in attrs and "script" not in attrs:
            raise InvalidJobDescriptionError("No 'exec' nor 'script' defined")
        if "exec" in attrs and "script" in attrs:
            raise InvalidJobDescriptionError("Both 'exec' and 'script' defined")
        for key in ("numCores", "numNodes"):
            if isinstance(attrs.get(key), int):
                attrs[key] = {"exact": attrs[key]}
            if key in attrs:
                _check_element(key, attrs[key], _RESOURCE)
        if "iteration" in attrs:
            attrs["iteration"] = self._iteration(attrs["iteration"])

    @staticmethod
    def _iteration(value: Any) -> dict[str, Any]:
        it: dict[str, Any]
        if isinstance(value, int):
            it = {"start": 0, "stop": value}
        elif isinstance(value, list):
            it = {"values": value}
        else:
            it = dict(value)
        _check_element("iteration", it, _ITERATION)
        if "stop" not in it and "values" not in it:
            raise InvalidJobDescriptionError("Required attribute stop of element iteration not defined")
        if "stop" in it and "values" in it:
            raise InvalidJobDescriptionError("Stop and values iteration attribute are excluding")
        count = len(it["values"]) if "values" in it else it["stop"] - it.get("start", 0)
        if count < 0 or count > MAX_ITERATIONS:
            raise InvalidJobDescriptionError(
                f"Wrong number of iterations - outside range (0, {MAX_ITERATIONS})"
            )
        return it

    @staticmethod
    def _standard(attrs: dict[str, Any]) -> dict[str, Any]:
        execution: dict[str, Any] = {}
        if "exec" in attrs:
            execution["exec"] = attrs["exec"]
        else:
            execution["script"] = attrs["script"]
        execution.update((k, attrs[k]) for k in _EXECUTION_KEYS if k in attrs)
        job: dict[str, Any] = {"name": attrs["name"], "execution": execution}
        resources = {k: attrs[k] for k in _RESOURCE_KEYS if k in attrs}
        if resources:
            job["resources"] = resources
        if "iteration" in attrs:
            job["iteration"] = attrs["iteration"]
        if "after" in attrs:
            job["dependencies"] = {"after": attrs["after"]}
        return job

    def _check_standard(self, job: dict[str, Any]) -> None:
        job.setdefault("name", str(uuid.uuid4()))
        execution = job.get("execution")
        if not isinstance(execution, dict) or ("exec" not in execution and "script" not in execution):
            raise InvalidJobDescriptionError('Missing "execution/exec" key')
        if job["name"] in self._list:
            raise InvalidJobDescriptionError(f"Job {job['name']} already in list")

    # ------------------------------------------------------------ the group

    def remove(self, name: str) -> None:
        """Take the named job out of the group; JobNotDefinedError if it is not there."""
        if name not in self._list:
            raise JobNotDefinedError(name)
        del self._list[name]

    def clear(self) -> int:
        """Empty the group; return how many jobs it held."""
        n = len(self._list)
        self._list.clear()
        return n

    def job_names(self) -> list[str]:
        return list(self._list)

    def ordered_job_names(self) -> list[str]:
        return list(self._list)  # a dict keeps the order of addition

    def jobs(self) -> list[dict[str, Any]]:
        """The jobs in QCG's standard layout."""
        return list(self._list.values())

    def ordered_jobs(self) -> list[dict[str, Any]]:
        return list(self._list.values())

    def __len__(self) -> int:
        return len(self._list)

    # ------------------------------------------------------------ files

    def load_from_file(self, file_path: str | os.PathLike[str]) -> None:
        """Add the jobs of a JSON file holding a list of jobs in the standard layout."""
        try:
            with open(file_path) as f:
                jobs = json.load(f)
            if not isinstance(jobs, list):
                raise InvalidJobDescriptionError(
                    f"{file_path}: expected a JSON list of jobs, got {type(jobs).__name__}"
                )
            for job in jobs:
                if not isinstance(job, dict):
                    raise InvalidJobDescriptionError(f"{file_path}: a job is not a JSON object: {job!r}")
                self._check_standard(job)
                self._list[job["name"]] = job
        except QCGPJMAError:
            raise
        except (OSError, ValueError) as e:
            raise FileError(f'File to open/write file "{file_path}": {e}') from None

    def save_to_file(self, file_path: str | os.PathLike[str]) -> None:
        """Write the jobs as a JSON list in the standard layout (``load_from_file`` reads it back)."""
        try:
            with open(file_path, "w") as f:
                f.write(json.dumps(self.ordered_jobs(), indent=2))
        except (OSError, TypeError, ValueError) as e:
            raise FileError(f'File to open/write file "{file_path}": {e}') from None
