"""pj-agent: runs the tasks the master sends to this node.

    pj-agent (--workdir DIR | --master ADDR --token-file F [--tls-cert FILE]) [--name NODE] [--cores N]
             [--gpus LIST] [--memory SIZE] [--kill-grace S] [--log-level L] [--wait-master S]
             [--reconnect-timeout DURATION] [--dry-run]
    pj-agent --print-resources [--name NODE] [--cores N] [--gpus LIST] [--memory SIZE]

Slurm mode (started by srun: $SLURM_JOB_ID and $SLURM_STEP_ID are set): cores default to the
CPUs Slurm grants on this node, GPUs to the step's, and tasks get the allocation's environment
without the variables that describe the agent's own step (slurm.py).

The agent outlives its master: when the stream breaks after a Welcome (the master killed, a
network cut), the tasks keep running and the agent reconnects with back-off (0.2 s doubling to
5 s, jittered) for --reconnect-timeout (default 10 min), finding the master again through
DIR/master.json (a restarted master may listen elsewhere, with another certificate and token) or
at the same --master address. Its Register then names the campaign, the tasks still running and
the exits the master may have missed (those that ended meanwhile, and those sent in the last
120 s: the master ignores duplicates). When the timeout passes, or the master refuses it, the
agent stops every task and exits 1. A new agent whose first dial fails (DIR/master.json names a
master that is gone: killed, or restarting on another port) looks again the same way, for as long.

--dry-run (or $PJ_AGENT_DRY_RUN=1, which reaches the agents `pj run` starts): no process is started;
every task is reported started and exited 0 at once (the dispatch ceiling: master and wire alone).

Exit status: 0 after the master's Shutdown; 1 when the link to the master broke for good
(every task is killed first); 2 for bad arguments; 128+N after signal N
(SIGTERM, SIGINT: the tasks are killed and reported first).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from pj.common import logs

from .options import (
    DRY_RUN_ENV,
    EXIT_LINK,
    EXIT_OK,
    EXIT_USAGE,
    RECONNECT_TIMEOUT_S,
    SPAWN_THREADS_ENV,
    SPAWN_THREADS_MAX,
    SPAWN_THREADS_MIN_CORES,
    Config,
    ResourcesReport,
    UsageError,
    configure,
    default_spawn_threads,
    resources_report,
)
from .session import ReconnectTimeout, serve

__all__ = [
    "DRY_RUN_ENV",
    "EXIT_LINK",
    "EXIT_OK",
    "EXIT_USAGE",
    "RECONNECT_TIMEOUT_S",
    "SPAWN_THREADS_ENV",
    "SPAWN_THREADS_MAX",
    "SPAWN_THREADS_MIN_CORES",
    "Config",
    "ReconnectTimeout",
    "ResourcesReport",
    "UsageError",
    "configure",
    "default_spawn_threads",
    "main",
    "resources_report",
    "serve",
]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = configure(argv)
    except UsageError as e:
        print(f"pj-agent: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else EXIT_OK
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    if isinstance(cfg, ResourcesReport):
        print(json.dumps(cfg.report))
        return EXIT_OK
    logs.setup(cfg.log_level, component="agent", fmt=cfg.log_format)
    try:
        return asyncio.run(serve(cfg, own_process=argv is None))
    except KeyboardInterrupt:  # a second ^C while stopping
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
