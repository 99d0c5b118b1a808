"""``Manager`` and ``LocalManager``: QCG-PilotJob's API over a PJ master.

``Manager(address)`` talks to a running master: ``address`` is its workdir (``pj run
--workdir``/``pj-master --workdir``), or ``[tcp://]HOST:PORT`` with ``cfg={"token_file": ...}``;
None means ``$PJ_WORKDIR`` (set in every PJ task, so a task can drive its own campaign).
``LocalManager(server_args, cfg)`` starts a master and its agents first (``pj.client.LocalCluster``)
from QCG's server arguments (``--nodes 4``, ``--nodes 2,3``, ``--nodes a:2,b:3``, ``--wd DIR``...).

Every method returns QCG's shapes (``qcg.replies``). Waits follow the master's Watch stream; nothing
polls. Refused requests raise ``ConnectionError("Request failed - ...")`` as QCG's API does.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pj.client import calls
from pj.client.api import Client, JobFileWarning
from pj.client.convert import FINAL_STATES, JobInfo
from pj.client.errors import InvalidJobError, MasterNotFound, PJError, PJTimeout, UnknownJobError

from . import replies
from .errors import ConnectionError, InvalidJobDescriptionError, ServiceError, TimeoutElapsed
from .events import FinishEvents
from .jobinfo import JobInfo as ParsedJobInfo
from .jobs import Jobs
from .serverargs import parse_server_args

if TYPE_CHECKING:
    from pj.client.cluster import LocalCluster

__all__ = ["LocalManager", "Manager"]

log = logging.getLogger("pj.qcg")


def _names(names: str | Iterable[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def _split(name: str) -> tuple[str, int | None]:
    """QCG names an iteration "job:3"; PJ job names never hold a colon."""
    job, sep, it = name.partition(":")
    if sep and it.isdigit():
        return job, int(it)
    return name, None


@contextlib.contextmanager
def _refused() -> Iterator[None]:
    """PJ's client errors as QCG's API raises them."""
    try:
        yield
    except PJTimeout as e:
        raise TimeoutElapsed(str(e)) from None
    except (UnknownJobError, InvalidJobError) as e:
        raise ConnectionError(f"Request failed - {e}") from None
    except PJError as e:
        raise ConnectionError(str(e)) from None


class Manager:
    """QCG-PilotJob's ``Manager`` for a running PJ master. See the module docstring."""

    DEFAULT_ADDRESS_ENV = "PJ_WORKDIR"
    DEFAULT_POLL_DELAY = 5  # QCG's; kept for scripts that read it (PJ's waits never poll)
    DEFAULT_PUB_TIMEOUT = 5 * 60

    def __init__(self, address: str | os.PathLike[str] | None = None, cfg: dict[str, Any] | None = None) -> None:
        cfg = dict(cfg or {})
        self._setup_logging(cfg)
        self.default_poll_delay = cfg.get("poll_delay", self.DEFAULT_POLL_DELAY)
        self.default_pub_timeout = cfg.get("default_pub_timeout", self.DEFAULT_PUB_TIMEOUT)
        self._wd = Path(cfg.get("wd") or os.getcwd()).absolute()  # relative job paths resolve here
        self._metas: dict[str, replies.JobMeta] = {}
        self._removed: set[str] = set()
        self._finished = False
        self._client = self._connect(address, cfg)
        try:
            with _refused():
                self._events = FinishEvents(self._client)
        except BaseException:
            self._client.close()
            raise

    @staticmethod
    def _connect(address: str | os.PathLike[str] | None, cfg: dict[str, Any]) -> Client:
        token_file, tls_cert = cfg.get("token_file"), cfg.get("tls_cert")
        try:
            if address is None:
                return Client(None, token_file=token_file, tls_cert=tls_cert)
            text = os.fspath(address)
            if os.path.isdir(text):
                return Client(text, token_file=token_file, tls_cert=tls_cert)
            return Client(address=text.removeprefix("tcp://"), token_file=token_file, tls_cert=tls_cert)
        except MasterNotFound as e:
            raise ConnectionError(f"Failed to connect to {address or '$PJ_WORKDIR'} - {e}") from None

    def _setup_logging(self, cfg: dict[str, Any]) -> None:
        self.log_handler: logging.Handler | None = None
        if cfg.get("log_file"):
            self.log_handler = logging.FileHandler(cfg["log_file"])
            self.log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(self.log_handler)
        level = str(cfg.get("log_level", "")).upper()
        if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            log.setLevel(level)

    # ------------------------------------------------------------ plumbing

    @property
    def client(self) -> Client:
        """The ``pj.client.Client`` underneath, for what QCG's API does not have."""
        return self._client

    def _infos(self, names: list[str], with_tasks: bool) -> list[JobInfo]:
        for n in names:
            if _split(n)[0] in self._removed:
                raise ConnectionError(f"Request failed - Job '{n}' doesn't exist")
        with _refused():
            return self._client.info(names, with_tasks=with_tasks) if names else []

    # ------------------------------------------------------------ QCG's verbs

    def resources(self) -> dict[str, int]:
        """``{"total_nodes", "total_cores", "used_cores", "free_cores"}``."""
        with _refused():
            return replies.resources_reply(self._client.resources())

    def submit(self, jobs: Jobs) -> list[str]:
        """Submit the group (all or none); return the job names in order."""
        std = jobs.ordered_jobs()
        if not std:
            return []
        try:
            parsed = calls.parse_data([{"request": "submit", "jobs": std}], "submit")
        except InvalidJobError as e:
            raise InvalidJobDescriptionError(str(e)) from None
        for w in parsed.warnings:
            log.warning(w)
            warnings.warn(w, JobFileWarning, stacklevel=2)
        reused = [j.name for j in parsed.jobs if j.name in self._removed]
        if reused:
            raise ConnectionError(
                f"Request failed - Job {reused[0]} was removed, but PJ keeps every job's record for its "
                "report: give the new job another name"
            )
        with _refused():
            names = self._client.submit(list(parsed.jobs), base_dir=self._wd)
        for job, spec in zip(std, parsed.jobs, strict=True):
            self._metas[spec.name] = self._meta(job, spec.wd)
        return names

    def _meta(self, job: dict[str, Any], wd: str) -> replies.JobMeta:
        ex = job.get("execution") or {}
        program = os.path.basename(str(ex["exec"])) if ex.get("exec") else "bash"
        it = job.get("iteration") if isinstance(job.get("iteration"), dict) else None
        start = stop = None
        if it is not None:
            if "values" in it:
                start, stop = 0, len(it["values"])
            else:
                start, stop = int(it.get("start", 0)), int(it["stop"])
        return replies.JobMeta(wd=os.path.join(self._wd, wd) if wd else str(self._wd), program=program,
                               start=start, stop=stop)  # fmt: skip

    def list(self) -> dict[str, dict[str, Any]]:
        """Every job: ``{name: {"status": STATE, "messages": why (if it failed)}}``."""
        with _refused():
            return replies.list_reply(j for j in self._client.list() if j.name not in self._removed)

    def status(self, names: str | Iterable[str]) -> dict[str, Any]:
        """``{"jobs": {name: {"status": 0, "data": {"jobName": name, "status": STATE}}}}``; a name
        may be an iteration, "job:3"."""
        wanted = _names(names)
        whole = [n for n in wanted if _split(n)[1] is None]
        parts = [n for n in wanted if _split(n)[1] is not None]
        out = replies.status_reply(self._infos(whole, False))
        if parts:
            for n, state in self._iteration_states(parts).items():
                out["jobs"][n] = {"status": 0, "data": {"jobName": n, "status": state}}
        return {"jobs": {n: out["jobs"][n] for n in wanted}}

    def _iteration_states(self, names: builtins.list[str]) -> dict[str, str]:
        jobs = {j.name: j for j in self._infos(sorted({_split(n)[0] for n in names}), True)}
        out: dict[str, str] = {}
        for n in names:
            job, it = _split(n)
            info = jobs[job]
            if it is not None and info.summary.iterations and not 0 <= it - self._start(job) < info.summary.iterations:
                raise ConnectionError(f"Request failed - Job '{n}' doesn't exist")
            task = next((t for t in info.tasks if t.iteration == it), None)
            # an iteration not started yet waits in its job's queue; one never started after its
            # job ended shares the job's end (OMITTED, CANCELED)
            out[n] = task.state if task is not None else "OMITTED" if info.summary.finished and info.state != "SUCCEED" else "QUEUED"
        return out

    def _start(self, job: str) -> int:
        meta = self._metas.get(job)
        return meta.start if meta is not None and meta.start is not None else 0

    def info(self, names: str | Iterable[str], **kwargs: Any) -> dict[str, Any]:
        """Details per job: status, ``runtime`` (allocation, wd, rtime, exit_code), ``history``, and
        for jobs with iterations ``iterations`` (and ``childs`` with ``withChilds=True``)."""
        wanted = _names(names)
        with_childs = bool(kwargs.get("withChilds", False))
        infos = {i.name: i for i in self._infos(wanted, with_childs)}
        if not with_childs:  # a job without iterations has one task: its runtime comes from it
            single = [n for n, i in infos.items() if not i.summary.iterations]
            infos.update((i.name, i) for i in self._infos(single, True))
        return replies.info_reply((infos[n] for n in wanted), self._metas, with_childs)

    def info_parsed(self, names: str | Iterable[str], **kwargs: Any) -> dict[str, ParsedJobInfo]:
        """``info`` parsed into ``JobInfo`` objects."""
        return {
            name: ParsedJobInfo.from_job(data.get("data", {}))
            for name, data in self.info(names, **kwargs).get("jobs", {}).items()
        }

    def remove(self, names: str | Iterable[str]) -> None:
        """Forget finished jobs in this Manager's answers (``list``, ``status``, ``info``). PJ keeps
        their record (jobs.jsonl), so a removed name cannot be submitted again."""
        wanted = _names(names)
        for info in self._infos(wanted, False):
            if info.state not in FINAL_STATES:
                raise ConnectionError(f"Request failed - Job {info.name} not finished ({info.state}): cancel it first")
        self._removed.update(wanted)

    def cancel(self, names: str | Iterable[str]) -> None:
        """Cancel jobs: queued ones are dequeued, running ones stopped."""
        wanted = _names(names)
        self._infos(wanted, False)  # removed or unknown: refused like QCG
        with _refused():
            self._client.cancel(wanted)

    def system_status(self) -> dict[str, Any]:
        """QCG's ``status``: System, Resources, JobStats, IterationStats."""
        with _refused():
            return replies.system_status_reply(self._client.status(), time.time(), str(self._wd))

    def wait4(self, names: str | Iterable[str], timeout: float | None = None) -> dict[str, str]:
        """Block until the named jobs (or iterations, "job:3") have finished; return name -> state.
        TimeoutElapsed past ``timeout`` seconds."""
        wanted = _names(names)
        jobs = list(dict.fromkeys(_split(n)[0] for n in wanted))
        for j in jobs:
            if j in self._removed:
                raise ConnectionError(f"Request failed - Job '{j}' doesn't exist")
        with _refused():
            states = self._client.wait(jobs, timeout=timeout)
        parts = [n for n in wanted if _split(n)[1] is not None]
        if parts:
            states.update(self._iteration_states(parts))
        return {n: states[n] for n in wanted}

    def wait4all(self, timeout_secs: float | None = None) -> None:
        """Block until every job submitted to the master has finished."""
        with _refused():
            self._client.wait(None, timeout=timeout_secs)

    def wait4_any_job_finish(self, timeout_secs: float | None = None) -> tuple[str, str]:
        """The next job to finish since this Manager connected, in the order they finished, as
        (name, state). TimeoutElapsed past ``timeout_secs``."""
        return self._events.next_finished(timeout_secs)

    @staticmethod
    def is_status_finished(status: str) -> bool:
        return status in FINAL_STATES

    def job_state(self, name: str) -> str | None:
        """The job's last state seen on the event stream (None: none since connecting); no call."""
        return self._events.state(name)

    def finish(self) -> None:
        """Stop the master: what still runs is canceled, then the master and its agents exit."""
        if self._finished:
            return
        self._finished = True
        try:
            with contextlib.suppress(PJError):
                self._client.finish(drain=False)
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        """Close the connection and this Manager's log handler."""
        self._events.close()
        self._client.close()
        if self.log_handler is not None:
            self.log_handler.close()
            log.removeHandler(self.log_handler)
            self.log_handler = None

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


class LocalManager(Manager):
    """QCG-PilotJob's ``LocalManager``: starts a PJ master and its agents, then is a Manager for
    them. ``finish()`` stops them all (nothing is left running)."""

    def __init__(self, server_args: list[str] | None = None, cfg: dict[str, Any] | None = None) -> None:
        from pj.client.cluster import LocalCluster
        from pj.client.procs import CampaignError

        args = parse_server_args(server_args or [])
        cfg = dict(cfg or {})
        wd = Path(args.wd).absolute()
        try:
            wd.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ServiceError(f"cannot create the working directory {wd}: {e.strerror or e}") from None
        self._cluster: LocalCluster | None = None
        try:
            self._cluster = LocalCluster(
                **args.cluster_options(), workdir=args.run_dir(wd),
                start_timeout=float(cfg.get("init_timeout", 300)),
            )  # fmt: skip
            super().__init__(self._cluster.workdir, {**cfg, "wd": str(wd)})
        except (PJError, CampaignError, TypeError, ValueError, OSError) as e:
            self.kill_manager_process()
            raise ServiceError(f"Service not started: {e}") from None
        except BaseException:
            self.kill_manager_process()
            raise

    @property
    def cluster(self) -> LocalCluster:
        """The ``pj.client.LocalCluster`` underneath (its ``workdir`` holds the logs, jobs.jsonl)."""
        assert self._cluster is not None
        return self._cluster

    def finish(self) -> None:
        """Cancel what still runs, stop the master and its agents, and wait for them."""
        try:
            super().finish()
        finally:
            self.kill_manager_process()

    def kill_manager_process(self) -> None:
        """Stop the master and the agents now (finish() does it too)."""
        if self._cluster is not None:
            self._cluster.close()
