"""QCG-PilotJob's Executor API on PJ: ``QCGPJExecutor``, ``QCGPJFuture`` and the templates.

A template is a callable returning a QCG job description as text with ``${placeholders}`` (and
optionally a dict of defaults); ``submit(template, *dicts, **kwargs)`` substitutes them (kwargs
over the dicts, later dicts over earlier ones, both over the defaults; a missing placeholder is a
KeyError naming it), reads the text as a Python literal and submits that one job. The future
resolves from the master's Watch stream.
"""

from __future__ import annotations

import ast
import os
import textwrap
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from enum import Enum
from string import Template
from typing import Any

from .jobs import Jobs
from .manager import LocalManager, Manager

__all__ = ["BasicTemplate", "QCGPJExecutor", "QCGPJFuture", "QCGPJTemplate"]

TemplateResult = str | tuple[str, dict[str, Any]]


class ServiceLogLevel(Enum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"


class QCGPJTemplate:
    """Base of templates: ``template()`` returns (description text, defaults)."""

    @staticmethod
    def template() -> tuple[str, dict[str, Any]]:
        raise NotImplementedError("a template class defines template()")


class BasicTemplate(QCGPJTemplate):
    """One program: placeholders ``name`` and ``exec``; ``args`` (default []), ``stdout`` and
    ``stderr`` (default the files ``stdout`` and ``stderr``)."""

    @staticmethod
    def template() -> tuple[str, dict[str, Any]]:
        text = """
        {
            'name': '${name}',
            'execution': {
                'exec': '${exec}',
                'args': ${args},
                'stdout': '${stdout}',
                'stderr': '${stderr}'
            }
        }
        """
        return text, {"args": [], "stdout": "stdout", "stderr": "stderr"}


class QCGPJFuture:
    """The jobs of one ``QCGPJExecutor.submit``. ``result()`` blocks until they have finished and
    returns {name: final state}."""

    def __init__(self, ids: list[str], qcgpjm: Manager) -> None:
        self.ids = ids
        self.qcgpjm = qcgpjm
        self._done = False
        self._cancelled = False

    def result(self, timeout: float | None = None) -> dict[str, str]:
        """{name: final state} once every job has finished; TimeoutElapsed past ``timeout`` s."""
        states = self.qcgpjm.wait4(self.ids, timeout=timeout)
        self._done = True
        return states

    def done(self) -> bool:
        """Whether every job has finished (from the event stream; asks the master only about jobs
        the stream has not reported yet)."""
        if self._done:
            return True
        seen = {n: self.qcgpjm.job_state(n) for n in self.ids}
        if any(s is not None and not Manager.is_status_finished(s) for s in seen.values()):
            return False
        unknown = [n for n, s in seen.items() if s is None]
        if unknown:
            jobs = self.qcgpjm.status(unknown)["jobs"]
            if not all(Manager.is_status_finished(jobs[n]["data"]["status"]) for n in unknown):
                return False
        self._done = True
        return True

    def running(self) -> bool:
        return not self.done()

    def cancel(self) -> bool:
        """Cancel the jobs (those already finished stay as they are)."""
        if not self._cancelled:
            self.qcgpjm.cancel(self.ids)
            self._cancelled = True
        return True

    def cancelled(self) -> bool:
        return self._cancelled


def substitute(template: Callable[[], TemplateResult], args: tuple[Mapping[str, Any] | None, ...],
               kwargs: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The job description a template gives for these arguments (QCG's substitution order)."""
    made = template()
    text, defaults = made if isinstance(made, tuple) else (made, {})
    values: dict[str, Any] = {}
    for a in args:
        if a is not None:
            values.update(a)
    values.update(kwargs)
    filled = Template(textwrap.dedent(text)).substitute(defaults, **values)
    try:
        job = ast.literal_eval(filled)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"the template did not give a Python literal after substitution: {e}:\n{filled}") from None
    if not isinstance(job, dict) or not isinstance(job.get("execution"), dict):
        raise ValueError(f"the template must give a job description with an 'execution' dict, got: {filled}")
    return job


class QCGPJExecutor(Executor):
    """QCG-PilotJob's Executor: a LocalManager started in ``wd`` (default the current directory)
    on ``resources`` (QCG's --nodes syntax, e.g. "4" or "n1:2,n2:3"; default every local core, or
    the Slurm allocation) that takes templates. ``reserve_core`` keeps one core for the manager;
    ``enable_rt_stats`` and ``wrapper_rt_stats`` are QCG's own statistics and have nothing to do
    here; ``other_args`` are more server arguments."""

    def __init__(self, *other_args: str, wd: str = ".", resources: str | None = None, reserve_core: bool = False,
                 enable_rt_stats: bool = False, wrapper_rt_stats: str | None = None,
                 log_level: str = "info") -> None:  # fmt: skip
        self.finished = False
        level = log_level.lower() if log_level.upper() in ServiceLogLevel.__members__ else "debug"
        args = ["--log", level, "--wd", wd]
        if resources:
            args += ["--nodes", str(resources)]
        if reserve_core:
            args.append("--system-core")
        if enable_rt_stats:
            args.append("--enable-rt-stats")
        if wrapper_rt_stats:
            args += ["--wrapper-rt-stats", wrapper_rt_stats]
        args += [str(a) for a in other_args]
        os.makedirs(wd, exist_ok=True)
        with open(os.path.join(wd, "executor_api.log"), "w") as f:
            f.write(f"Starting QCG-PJ Manager with arguments: {args}")
        self._qcgpjm = LocalManager(args, {"log_file": os.path.join(wd, "api.log"), "log_level": level})

    def __enter__(self) -> QCGPJExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the manager (what still runs is canceled). A second call does nothing."""
        if not self.finished:
            self.finished = True
            self._qcgpjm.finish()

    def submit(self, fn: Callable[[], TemplateResult], /, *args: Any, **kwargs: Any) -> QCGPJFuture:  # type: ignore[override]
        """Submit the job the template ``fn`` describes once its placeholders are substituted
        (defaults < dicts in ``args`` < ``kwargs``); its environment gets QCG_PM_EXEC_API_JOB_ID."""
        job = substitute(fn, args, kwargs)
        job["execution"].setdefault("env", {})["QCG_PM_EXEC_API_JOB_ID"] = "${jname}"
        return QCGPJFuture(self._qcgpjm.submit(Jobs().add_std(job)), self._qcgpjm)

    @property
    def qcgpj_manager(self) -> LocalManager:
        return self._qcgpjm
