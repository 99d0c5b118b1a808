"""Which address an agent of a relayed Slurm run dials (agent/relayroute.py): its group's relay once
that relay has written its address, with the run's token; the master without one, and on every
third try of a reconnect (a dead relay must not strand its agents)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pj.agent.options import UsageError, configure
from pj.agent.relayroute import DIRECT_EVERY, RelayRoute, relay_file
from pj.common.workdir import MasterAddress


def test_each_node_dials_the_relay_of_its_group(tmp_path: Path) -> None:
    assert relay_file(tmp_path, 0, 256) == relay_file(tmp_path, 255, 256) == tmp_path / "relays" / "relay-0.addr"
    assert relay_file(tmp_path, 256, 256) == tmp_path / "relays" / "relay-1.addr"


def test_the_relay_while_it_has_an_address_the_master_otherwise_and_every_third_try(tmp_path: Path) -> None:
    master = MasterAddress("m:1", "tok", tmp_path)
    path = tmp_path / "relays" / "relay-0.addr"
    route = RelayRoute(lambda: master, path)
    assert route.first(master, wait_s=0.2) is None  # no relay yet: the agent dials the master
    assert [route().address for _ in range(3)] == ["m:1"] * 3
    path.parent.mkdir()
    path.write_text("n1:4242\n")
    relay = route.first(master, wait_s=0.2)
    assert relay == MasterAddress("n1:4242", "tok", tmp_path)
    route.tries = 0
    got = [route().address for _ in range(2 * DIRECT_EVERY)]
    assert got == ["n1:4242", "n1:4242", "m:1", "n1:4242", "n1:4242", "m:1"]
    tls = MasterAddress("m:1", "tok", tmp_path, tls_cert=b"PEM")
    assert route.relay(tls) is None  # relays do not carry TLS: such a run dials the master


def test_relay_group_needs_a_workdir_and_a_slurm_node_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_NODEID", raising=False)
    token = tmp_path / "token"
    token.write_text("tok\n")
    token.chmod(0o600)
    with pytest.raises(UsageError, match=r"^--relay-group goes with --workdir DIR"):
        configure(["--master", "h:1", "--token-file", str(token), "--relay-group", "4", "--cores", "1"])
    (tmp_path / "master.json").write_text('{"address": "h:1"}')
    with pytest.raises(UsageError, match=r"^--relay-group needs \$SLURM_NODEID \(a Slurm step"):
        configure(["--workdir", str(tmp_path), "--relay-group", "4", "--cores", "1", "--wait-master", "1"])
