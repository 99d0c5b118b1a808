"""pj-agent's session: connect, run the tasks the master sends until told to stop, then kill what
remains; and the reconnect loop that lets the agent outlive its master (see main.py's docstring).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import time

import grpc
import structlog

from pj import __version__
from pj.common.durations import format_duration
from pj.common.fastexit import exit_now
from pj.common.workdir import MasterAddress, WorkdirError
from pj.v1 import pj_pb2

from . import convert, guard, slurm, tails
from .hostfiles import Hostfiles
from .launcher import DryLauncher, Launcher
from .link import Link, LinkBroken, LinkRefused, Outcome
from .options import EXIT_LINK, EXIT_OK, Config
from .pyworkers import PyWorkers, idle_from_env
from .reconnect import SentExits, backoff_delay
from .runner import Runner
from .signals import SignalHub
from .state import AgentState

log = structlog.get_logger("pj.agent")

# How long to wait for tasks after SIGKILL before giving up on them (stuck in D state).
_AFTER_KILL_S = 10.0
# A reconnect attempt waits at most this long for the channel (then backs off and looks again:
# a restarted master may have written a new address meanwhile).
_REDIAL_READY_S = 3.0
# Refusals worth another try while reconnecting: the master may not have noticed yet that our old
# stream is dead ("node ... is already connected").
_RETRY_REFUSALS = frozenset({grpc.StatusCode.ALREADY_EXISTS})


async def serve(cfg: Config, own_process: bool = False) -> int:
    """Connect, run tasks until told to stop, then kill what remains. Returns the exit status.

    ``own_process`` (pj-agent's own command line, not a test): after the master's Shutdown, end the
    process at once, skipping the loop's and the interpreter's teardown (tens of ms `pj run` waits for)."""
    loop = asyncio.get_running_loop()
    state = AgentState(kill_grace=cfg.kill_grace)
    # In Slurm mode the agent's environment describes its own step; tasks get the allocation's.
    base_env = slurm.task_env(os.environ) if cfg.slurm_step else None
    watchdog = None
    if not cfg.dry_run:  # no task outlives its agent unsupervised (guard.py)
        try:
            mark, watchdog, swept = guard.arm(cfg.name, guard.scope_of(cfg.master.workdir, cfg.master.address),
                                              cfg.kill_grace)
        except (guard.AgentAlive, OSError) as e:
            log.error("cannot start: " + str(e), node=cfg.name)
            return EXIT_LINK
        if swept:
            log.warning("stopped the processes a dead agent of this node left", pids=[p.pid for p in swept])
        base_env = dict(os.environ if base_env is None else base_env)
        base_env[guard.NODE_ENV] = mark
    if cfg.dry_run:
        launcher: Launcher = DryLauncher(cfg.resources, base_env, Hostfiles(cfg.name))
    else:
        launcher = Launcher(cfg.resources, base_env, Hostfiles(cfg.name), cfg.spawn_threads)
        log.info("stderr of tasks without a stderr file: unnamed files for their tails",
                 directory=launcher.captures.directory or "none: /dev/null, no tails")
        wanted = os.environ.get(tails.DIR_ENV, "")
        if wanted and launcher.captures.directory != wanted:
            log.warning(f"{tails.DIR_ENV}={wanted}: no unnamed file (O_TMPFILE) can be made there; set it to a "
                        "node-local directory on tmpfs, ext4 or xfs", using=launcher.captures.directory or "/dev/null")
    workers = None
    if not cfg.dry_run:  # function calls (pj.client.Executor) run on warm workers
        workers = PyWorkers(launcher.base_env, cfg.resources.cores, cfg.resources.real_cpus,
                            idle_from_env(os.environ))
    runner = Runner(state, launcher, pyworkers=workers)
    stop = asyncio.Event()
    stopped_by: list[int] = []

    def on_signal(signum: int) -> None:
        if not stopped_by:
            log.info("signal received", signal=signal.Signals(signum).name)
        stopped_by.append(signum)
        stop.set()

    hub = SignalHub(loop)
    try:
        hub.watch(signal.SIGCHLD, runner.on_sigchld)
        for sig in (signal.SIGTERM, signal.SIGINT):
            hub.watch(sig, functools.partial(on_signal, int(sig)))
        runner.attach(loop)
        res = cfg.resources
        log.info(
            "agent starting",
            node=cfg.name,
            cores=res.cores,
            cpus=len(res.cpus),
            gpus=",".join(res.gpus),
            memory_gb=round(res.memory_bytes / 2**30, 1),
            master=cfg.master.address,
            pid=os.getpid(),
            slurm_step=cfg.slurm_step,
            dry_run=cfg.dry_run,
        )
        for level, message in res.notes:
            if level == "warning":
                log.warning(message)
            else:
                log.info(message)
        register = convert.register_pb(cfg.name, res, socket.gethostname(), os.getpid(), __version__,
                                       slurm.job_id(os.environ) if cfg.slurm_step else "")
        outcome = await _serve_links(cfg, register, runner, stop)
    except LinkBroken as e:
        if isinstance(e, LinkRefused):
            log.error("the master refused this agent: killing every task", error=str(e), tasks=len(state))
        else:
            log.error("lost the master: killing every task", error=str(e), tasks=len(state))
        return EXIT_LINK
    finally:
        await _kill_all(runner, cfg.kill_grace, "stopping")  # nothing left in the usual case
        runner.detach()
        hub.close()
        launcher.close()
        if watchdog is not None:
            watchdog.close()
    if outcome is Outcome.SHUTDOWN:
        log.info("agent done")
        if own_process:  # every task has ended and was reported, the link is closed
            exit_now(EXIT_OK)
        return EXIT_OK
    signum = stopped_by[0] if stopped_by else signal.SIGTERM
    log.info("agent stopped", signal=signal.Signals(signum).name)
    return 128 + signum


class ReconnectTimeout(LinkBroken):
    """The master did not come back within --reconnect-timeout."""


async def _serve_links(
    cfg: Config, register: pj_pb2.AgentMessage, runner: Runner, stop: asyncio.Event
) -> Outcome:
    """The first session, then reconnects until a shutdown or a local stop. Raises LinkBroken when
    the first registration fails, a reconnect is refused, or the master stays away too long."""
    sent = SentExits()
    master = cfg.master
    retry = cfg.reconnect_timeout > 0 and cfg.rediscover is not None
    # With a way to look again, the first dial is short too: DIR/master.json may name a master that
    # is gone (killed, or restarting elsewhere), and the next look may find the new one.
    link = _link(cfg, master, register, runner, sent, None, ready_s=_REDIAL_READY_S if retry else None)
    try:
        return await link.session(stop)
    except LinkBroken as e:
        if cfg.reconnect_timeout <= 0 or stop.is_set() or link.closing:
            raise
        if not link.welcomed and (isinstance(e, LinkRefused) or cfg.rediscover is None):
            raise  # a refusal, or nowhere else to look: no campaign to go back to
        campaign, err = (link.campaign if link.welcomed else None), e
    while True:
        if campaign is None:
            log.warning("cannot reach the master: looking for it again until --reconnect-timeout",
                        master=master.address, error=str(err), timeout=format_duration(cfg.reconnect_timeout))
        else:
            log.warning(
                "lost the master: tasks keep running; reconnecting",
                master=master.address,
                error=str(err),
                tasks=len(runner.state),
                timeout=format_duration(cfg.reconnect_timeout),
            )
        got = await _reconnect(cfg, register, runner, stop, sent, campaign, master)
        if isinstance(got, Outcome):
            return got
        master, err, campaign = got


async def _reconnect(
    cfg: Config,
    register: pj_pb2.AgentMessage,
    runner: Runner,
    stop: asyncio.Event,
    sent: SentExits,
    campaign: str | None,
    master: MasterAddress,
) -> Outcome | tuple[MasterAddress, LinkBroken, str]:
    """Try again with back-off until welcomed (back) (then the session runs on: its outcome), or the
    timeout passes (ReconnectTimeout); each try looks for the master again (DIR/master.json, the
    token, the certificate). ``campaign`` None: the first registration never got through (a new
    agent). Returns the master, the error and the campaign when a session that was welcomed broke
    again (a new reconnect period begins)."""
    t0 = time.monotonic()
    deadline = t0 + cfg.reconnect_timeout
    attempt = 0
    last = ""
    while True:
        delay = backoff_delay(attempt)
        attempt += 1
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if await _stopped_within(stop, min(delay, left)):
            return Outcome.INTERRUPTED
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if cfg.rediscover is not None:
            try:
                master = cfg.rediscover()
            except WorkdirError as e:
                last = str(e)
                log.debug("no master to reconnect to yet", error=last)
                continue
        link = _link(cfg, master, register, runner, sent, campaign, within_s=left)
        try:
            return await link.session(stop)
        except LinkBroken as e:
            if link.welcomed:  # back, then broken again: a new reconnect period
                if stop.is_set() or link.closing:
                    raise
                return master, e, link.campaign
            if isinstance(e, LinkRefused) and e.code not in _RETRY_REFUSALS:
                raise
            last = str(e)
            log.debug("reconnect attempt failed", master=master.address, attempt=attempt, error=last)
    waited = format_duration(max(round(time.monotonic() - t0, 1), 0.1))
    if campaign is None:
        raise ReconnectTimeout(f"no master answered at {master.address} within {waited} (--reconnect-timeout); "
                               f"last: {last}")
    raise ReconnectTimeout(
        f"the master at {master.address} did not come back within {waited} (--reconnect-timeout); last: {last}"
    )


def _link(
    cfg: Config,
    master: MasterAddress,
    register: pj_pb2.AgentMessage,
    runner: Runner,
    sent: SentExits,
    campaign: str | None,
    within_s: float | None = None,
    ready_s: float | None = None,
) -> Link:
    """A session; ``within_s`` (a reconnect attempt): the time left, which bounds its waits;
    ``ready_s``: how long to wait for the channel (default: that of a reconnect attempt, or the
    connect timeout for a first one)."""
    if within_s is not None:
        ready_s = min(_REDIAL_READY_S, within_s)
    connect_s = max(cfg.wait_master, 1.0) if within_s is None else max(min(cfg.wait_master, within_s), 1.0)
    return Link(
        master.address,
        master.token,
        register,
        runner,
        connect_timeout_s=connect_s,
        tls_cert=master.tls_cert,
        ready_timeout_s=ready_s,
        sent=sent,
        rejoin=campaign,
    )


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True


async def _kill_all(runner: Runner, kill_grace: float, reason: str) -> None:
    """Stop every task (TERM, KILL after the grace) and wait until all are reaped."""
    runner.shutdown(reason)
    try:
        async with asyncio.timeout(kill_grace + _AFTER_KILL_S):
            await runner.wait_drained()
    except TimeoutError:
        log.error("some tasks would not die", tasks=[t.task_id for t in runner.state.tasks()])
