"""`pj run FILE`: a whole campaign (a master, its agents, the jobs, a summary).

Parse the file first (bad input: exit 2, nothing started), start ``python -m pj.master`` and the
agents as separate processes (own sessions, so a Ctrl-C reaches only us), submit every job in one
Submit, follow the Watch stream, Finish(drain=True) when everything has ended, wait for the
processes, print a summary. Exit 0 only if every job SUCCEED, 1 otherwise, 130 when interrupted
(SIGINT/SIGTERM: Finish(drain=False) first).

Local mode starts K agents on this machine (``--nodes K --cores N`` emulates nodes). Slurm mode
(inside an allocation, see ``slurm.py``) starts the agents with one ``srun``, one per node.

The commands that start the master and the agents are parameters of ``Campaign`` so that tests
can put fakes in their place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pj.common.journalcheck import JOURNAL_FILE, resume_problem
from pj.common.specbatch import SpecBatch
from pj.common.workdir import MasterAddress

from . import runsummary, slurm, startup
from .errors import InvalidJobError, PJError, one_line
from .follow import Follower
from .formats import plural
from .procs import CampaignError, Child, kill_all, wait_all
from .progress import Progress, Summary, Tracker
from .runsummary import MAX_BAD_SHOWN
from .startup import AGENT_WAIT_MASTER, AgentCmd, MasterCmd, SrunCmd, agent_argv, master_argv

if TYPE_CHECKING:  # api pulls in grpc: imported once the master and agents are starting (_run)
    from .api import Client

__all__ = ["MAX_BAD_SHOWN", "Campaign"]


class Campaign:
    """One `pj run`. ``run()`` returns the exit code; every message goes to ``out``/``err``."""

    def __init__(
        self,
        file: str | os.PathLike[str],
        *,
        workdir: str | os.PathLike[str] | None = None,
        nodes: int | None = None,
        cores: int | None = None,
        gpus: int | None = None,
        slurm_mode: bool | None = None,
        node_timeout: float | None = None,
        missing_nodes: str | None = None,
        heartbeat_timeout: float | None = None,
        crash_limit: int | None = None,
        resume: bool = False,
        quiet: bool = False,
        tls: bool = False,
        relays: str = "auto",
        out: TextIO | None = None,
        err: TextIO | None = None,
        env: Mapping[str, str] | None = None,
        master_cmd: MasterCmd = master_argv,
        agent_cmd: AgentCmd = agent_argv,
        srun_cmd: SrunCmd = slurm.srun_argv,
        start_timeout: float = 60.0,
        exit_timeout: float = 30.0,
        tick: float = 0.25,
        json_out: bool = False,
    ) -> None:
        self.file = Path(file)
        self.start_dir = Path(os.getcwd())
        self.workdir = Path(workdir).absolute() if workdir is not None else None
        # Relative paths in jobs resolve against base_dir: where pj run started, or for a QCG-PilotJob
        # file run with --workdir that workdir (QCG resolves them under its --wd).
        self.base_dir, self.qcg_base = self.start_dir, self.workdir
        self.nodes, self.cores, self.gpus = nodes, cores, gpus  # as given (None: not given)
        self.slurm_mode = slurm_mode  # --slurm True, --local False, None: from the environment
        self.node_timeout = node_timeout
        self.missing_nodes = missing_nodes
        self.heartbeat_timeout = heartbeat_timeout
        self.crash_limit = crash_limit
        self.resume = resume  # continue the campaign journaled in --workdir (pj-master --resume)
        self.tls = tls  # the master serves TCP over TLS; agents (and we) pin DIR/tls.crt
        self.relays = relays  # --relays: auto, or how many pj-relay (Slurm mode)
        self.relay_group = 0  # nodes per relay (0: none), set by _choose_mode
        self.layout = startup.Layout()  # local or Slurm mode: set by _choose_mode
        self.alloc: slurm.Allocation | None = None  # set in Slurm mode
        self.json_out = json_out  # --json: the summary as one JSON object on stdout, no progress display
        self.quiet = quiet or json_out
        self.summary_printed, self.last_said = False, ""
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.env: Mapping[str, str] = env if env is not None else os.environ
        self.master_cmd = master_cmd
        self.agent_cmd = agent_cmd
        self.srun_cmd = srun_cmd
        self.start_timeout = start_timeout
        self.exit_timeout = exit_timeout
        self.tick = tick
        self.master: Child | None = None
        self.agents: list[Child] = []
        self.client: Client | None = None
        self.tracker = Tracker()
        self.follower = Follower(self.tracker, self.err, self._say_plain, quiet=self.quiet, tick=tick)
        self.t0 = time.monotonic()
        self.t_submit: float | None = None

    # ------------------------------------------------------------ messages

    @property
    def progress(self) -> Progress | None:
        return self.follower.progress

    def _say_plain(self, msg: str) -> None:
        self.say(msg)

    def say(self, msg: str, detail: Sequence[str] = ()) -> None:
        self.last_said = msg
        if self.progress is not None:
            self.progress.clear()
        print(f"pj: {msg}", file=self.err)
        for line in detail:
            print(line, file=self.err)
        self.err.flush()

    # ------------------------------------------------------------ the run

    def run(self) -> int:
        from . import jobfile

        if self.resume and self.workdir is None:
            self.say("--resume needs --workdir DIR: the workdir of the campaign to continue")
            return 2
        if self.resume and self.workdir is not None:  # pj-master checks it too; here nothing starts
            problem = resume_problem(self.workdir.absolute() / JOURNAL_FILE)
            if problem is not None:
                self.say(f"--resume: {problem}")
                return 2
        try:
            self._choose_mode()
        except slurm.SlurmModeError as e:
            self.say(one_line(str(e)))
            return 2
        # In a workdir of its own the master and the agents start first and the file is read while
        # they do (their start-up is most of a short campaign's wall time); a bad file stops them
        # and removes that workdir again. Resuming or reusing a workdir: the file is read first.
        early = not self.resume and (self.workdir is None or not self.workdir.exists())
        with self._signals():
            try:
                if early:
                    try:
                        self._start()
                    except KeyboardInterrupt:
                        return self._interrupted()
                    except CampaignError as e:
                        self.say(str(e), e.detail)
                        self._abort()
                        return 1
                try:
                    jf = jobfile.load_jobfile(self.file)
                except (jobfile.JobFileError, KeyboardInterrupt) as e:
                    if early:
                        self._discard()
                    if isinstance(e, KeyboardInterrupt):
                        return 130
                    self.say(one_line(str(e)))
                    return 2
                if jf.kind == "qcg" and self.qcg_base is not None:
                    self.base_dir = self.qcg_base
                for w in jf.warnings:
                    self.say(f"warning: {one_line(w)}")
                return self._run(jf.batch, started=early)
            finally:
                self._cleanup()

    def _start(self) -> None:
        """The workdir, the master and the agents. The agents start now, not once the master is
        ready: they wait for DIR/master.json, so their start-up overlaps the master's."""
        self._prepare_workdir()
        self._start_master()
        self._start_agents()

    def _discard(self) -> None:
        """The file was bad: stop what ``_start`` started and remove the workdir it made."""
        for c in ([self.master] if self.master else []) + self.agents:
            c.signal(signal.SIGTERM)
        with contextlib.suppress(KeyboardInterrupt):
            self._wait_exit()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self, jobs: SpecBatch | list[Any], started: bool = False) -> int:
        try:
            if not started:
                self._start()
            from .api import Client  # grpc's import overlaps the master's start-up too

            self._wait_ready()
            assert self.workdir is not None
            self.client = Client(self.workdir)
            known: set[str] = set()
            if self.resume:  # the journal brought back what was submitted before: submit the rest
                known = {j.name for j in self.client.list()}
                jobs = jobs.only(lambda n: n not in known) if isinstance(jobs, SpecBatch) else [
                    j for j in jobs if j.name not in known]
            try:
                names = self.client.submit(jobs, base_dir=self.base_dir) if jobs else []
            except InvalidJobError as e:
                self.say(str(e))
                self._abort()
                return 2
            self.t_submit = time.monotonic()
            if not self.quiet:
                what = f"{plural(len(names), 'job')} submitted"
                if self.resume:
                    what = f"resumed with {plural(len(known), 'job')} journaled, {len(names)} new submitted"
                self.say(f"{what}; {self.layout.describe()}; workdir {self.workdir}")
            self._follow()
            summary = runsummary.final_summary(self.client, self.tracker, self._facts())
            self.follower.close()  # every job has ended: no more news
            self._finish_drained()
            self._wait_exit()
            self._print(summary)
            return 0 if summary.all_succeeded else 1
        except KeyboardInterrupt:
            return self._interrupted()
        except (CampaignError, PJError) as e:
            self.say(str(e), getattr(e, "detail", []))
            self._abort()
            if self.t_submit is not None:
                self._print(self._tracker_summary("failed"))
            return 1

    def _choose_mode(self) -> None:
        """Slurm mode or local mode, and each one's checks: SlurmModeError for bad usage."""
        self.layout = startup.choose_layout(self.env, self.slurm_mode, self.nodes, self.cores, self.gpus)
        self.alloc, self.nodes, self.cores = self.layout.alloc, self.layout.nodes, self.layout.cores
        if self.alloc is not None:
            self.relay_group = slurm.relay_group(len(self.alloc.nodes), self.relays, self.tls)
        elif self.relays != "auto":
            raise slurm.SlurmModeError(f"--relays {self.relays}: only for Slurm mode (relays serve the agents of "
                                       "an allocation's nodes); drop it in local mode")

    def _finish_drained(self) -> None:
        assert self.client is not None and self.master is not None
        try:
            self.client.finish(drain=True)
        except PJError as e:
            try:  # someone else's `pj finish` may have stopped it already
                self.master.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                raise e from None

    def _prepare_workdir(self) -> None:
        self.workdir = startup.prepare_workdir(self.workdir, self.start_dir, self.layout, self.resume)

    def _master_options(self) -> list[str]:
        options = {"node_timeout": self.node_timeout, "missing_nodes": self.missing_nodes,
                   "heartbeat_timeout": self.heartbeat_timeout, "crash_limit": self.crash_limit,
                   "resume": self.resume, "tls": self.tls}
        return startup.master_options(self.layout, self.env, options)

    def _start_master(self) -> None:
        assert self.workdir is not None
        self.master = startup.start_master(self.workdir, self._master_options(), self.master_cmd)

    def _wait_ready(self) -> MasterAddress:
        assert self.master is not None and self.workdir is not None
        # A resumed master replays its journal before it answers: give it as long as the agents wait.
        timeout = max(self.start_timeout, float(AGENT_WAIT_MASTER)) if self.resume else self.start_timeout
        return startup.wait_ready(self.master, self.workdir, timeout)

    def _start_agents(self) -> None:
        assert self.workdir is not None
        self.agents += startup.start_agents(self.workdir, self.layout, self.env, self.agent_cmd, self.srun_cmd,
                                            self.relay_group)

    # ------------------------------------------------------------ following the jobs

    def _follow(self) -> None:
        """Until every job has ended. Raises CampaignError when the master or every agent is gone."""
        assert self.client is not None
        self.follower.start(self.client)
        self.follower.follow(self._master_gone, self._check_children)

    def _master_gone(self, wait_s: float) -> None:
        """If the master process has died (give it ``wait_s`` to do so), say how, with its log."""
        assert self.master is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.master.proc.wait(timeout=wait_s)
        if self.master.proc.returncode is not None:
            raise self.master.died()

    def _check_children(self) -> None:
        assert self.master is not None
        if self.master.proc.poll() is not None:
            raise self.master.died()
        if self.alloc is not None:
            self._check_srun()
            return
        for a in self.agents:
            if a.reported or a.proc.poll() is None:
                continue
            a.reported = True
            e = a.died()
            self.say(str(e), e.detail)
        if self.agents and all(a.proc.returncode is not None for a in self.agents):
            raise CampaignError("every agent has exited; no job can run")

    def _check_srun(self) -> None:
        """The agents' srun ends only after every agent has: before the campaign's end, that is fatal."""
        srun, wd = self.agents[0], self.workdir
        assert wd is not None
        if srun.proc.poll() is None:
            return
        logs = [*sorted(wd.glob("agent-*.log")), srun.log]
        raise CampaignError(
            f"the agents' srun (a step of Slurm job {self.alloc.job_id if self.alloc else '?'}) exited with code {srun.proc.returncode} "
            "before the campaign ended: no agent is left; the ends of their logs:",
            slurm.log_tails(logs, 8),
        )

    def _facts(self) -> runsummary.RunFacts:
        assert self.workdir is not None
        logs = runsummary.log_names(self.alloc is not None, bool(self.agents))
        return runsummary.RunFacts(self.workdir, self.t0, self.t_submit, logs)

    def _tracker_summary(self, outcome: str) -> Summary:
        return runsummary.tracker_summary(self.tracker, outcome, self._facts())

    def _print(self, summary: Summary) -> None:
        if self.progress is not None:
            self.progress.clear()
        assert self.workdir is not None
        summary.report_missing = runsummary.report_missing(
            self.workdir, self.master.proc.returncode if self.master else None)
        summary.elapsed = time.monotonic() - self.t0  # wall time includes the shutdown
        if self.json_out:
            print(json.dumps(summary.as_dict(), indent=2), file=self.out)
        else:
            for line in summary.lines():
                print(line, file=self.out)
        self.summary_printed = True
        self.out.flush()

    # ------------------------------------------------------------ ending

    def _interrupted(self) -> int:
        if self.progress is not None:
            self.progress.clear()
            self.progress.quiet = True
        self.say("interrupted: canceling every job, then stopping (Ctrl-C again to kill at once)")
        try:
            asked = False
            if self.client is not None and self.master is not None and self.master.proc.poll() is None:
                with contextlib.suppress(PJError):
                    self.client.finish(drain=False)
                    asked = True
            if asked:
                self.follower.drain(self.exit_timeout, self._master_exited)
            else:  # not started far enough to be asked: SIGTERM cancels and stops too
                for c in ([self.master] if self.master else []) + self.agents:
                    c.signal(signal.SIGTERM)
            self._wait_exit()
        except KeyboardInterrupt:
            self._kill_all("interrupted again")
        if self.workdir is not None:
            self._print(self._tracker_summary("interrupted"))
        return 130

    def _master_exited(self) -> bool:
        return self.master is not None and self.master.proc.poll() is not None

    def _abort(self) -> None:
        """Something went wrong: cancel what runs if the master still answers, stop every process."""
        master_alive = self.master is not None and self.master.proc.poll() is None
        asked = False
        if master_alive and self.client is not None:
            try:
                self.client.finish(drain=False)
                asked = True
            except PJError:
                pass
        if not asked:  # no master will tell them to stop
            if self.master is not None:
                self.master.signal(signal.SIGTERM)
            for a in self.agents:
                a.signal(signal.SIGTERM)
        try:
            self._wait_exit()
        except KeyboardInterrupt:
            self._kill_all("interrupted")

    def _wait_exit(self) -> None:
        """Wait for the master, then the agents; kill what is still there after exit_timeout."""
        wait_all(([self.master] if self.master is not None else []) + self.agents, self.exit_timeout,
                 lambda child: self.say(f"{child.what} did not exit within {self.exit_timeout:g} s; killed it"))

    def _kill_all(self, why: str) -> None:
        killed = kill_all(([self.master] if self.master else []) + self.agents)
        if killed:
            self.say(f"{why}: killing {', '.join(c.name for c in killed)}")

    def _cleanup(self) -> None:
        self.follower.close()  # no watch thread outlives the run
        if self.client is not None:
            self.client.close()
        leftover = [c for c in ([self.master] if self.master else []) + self.agents if c.proc.poll() is None]
        for c in leftover:  # only after an error in pj itself: never leave processes behind
            c.kill()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM behaves like Ctrl-C (KeyboardInterrupt) while the campaign runs."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_term(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, on_term)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, old)
