"""Which address an agent of a relayed Slurm run dials (issue 16): its group's relay, else the master.

`pj run` over many nodes starts one pj-relay per group of G nodes (client/slurm.py) and gives every
agent ``--relay-group G``: the agent of node $SLURM_NODEID belongs to relay K = $SLURM_NODEID // G,
which writes its address to DIR/relays/relay-K.addr once it listens. The agent waits for that file a
while (the relay starts with the agents), then dials it with the run's token; without one it dials
the master directly, as it does after every third failed try on a reconnect (a dead relay leaves
its agents with the master; a master that restarts is found again through the relay, which dials
it again). The master treats an agent the same on either path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pj.common.workdir import MasterAddress

RELAY_WAIT_S = 30.0  # how long a starting agent waits for its relay's address
DIRECT_EVERY = 3  # on a reconnect, every third try dials the master itself
NODE_ID_ENV = "SLURM_NODEID"


class RelayRouteError(ValueError):
    """--relay-group cannot be used here; the message names the fix."""


def relay_file(workdir: Path, node_id: int, group: int) -> Path:
    return workdir / "relays" / f"relay-{node_id // group}.addr"


def node_id(env: Mapping[str, str]) -> int:
    raw = env.get(NODE_ID_ENV, "")
    try:
        return int(raw)
    except ValueError:
        raise RelayRouteError(f"--relay-group needs ${NODE_ID_ENV} (a Slurm step: `pj run` sets it up), "
                              f"got {raw!r}; drop --relay-group to dial the master") from None


class RelayRoute:
    """``__call__`` gives the address for the next try (the agent's ``rediscover``)."""

    def __init__(self, find_master: Callable[[], MasterAddress], path: Path) -> None:
        self.find_master = find_master
        self.path = path
        self.tries = 0

    def relay(self, master: MasterAddress) -> MasterAddress | None:
        """The relay's address with the master's token, or None while the relay has written none."""
        try:
            address = self.path.read_text().strip()
        except OSError:
            return None
        if not address or master.tls_cert is not None:
            return None
        return MasterAddress(address, master.token, master.workdir)

    def first(self, master: MasterAddress, wait_s: float = RELAY_WAIT_S) -> MasterAddress | None:
        """The relay's address once written (None after ``wait_s``: dial ``master``)."""
        deadline = time.monotonic() + wait_s
        while (got := self.relay(master)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return got

    def __call__(self) -> MasterAddress:
        master = self.find_master()
        self.tries += 1
        if self.tries % DIRECT_EVERY == 0:
            return master
        return self.relay(master) or master
