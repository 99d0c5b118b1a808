"""`pj-master --tls` (a per-run certificate that clients pin) and the Unix socket for local clients."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pj.client import Client, MasterUnreachable
from pj.master.tls import make_cert

from .test_pj_run import REPO, pj_run
from .test_service import eventually, ok, pj, pj_json, user_env

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def other_cert(tmp_path: Path) -> Path:
    """The certificate of another run (same names, another key)."""
    path = tmp_path / "other.crt"
    path.write_bytes(make_cert(["127.0.0.1"])[0])
    return path


def test_tls_clients_pin_the_runs_certificate_and_agents_use_it(
    cluster_factory: Any, tmp_path: Path, other_cert: Path
) -> None:
    c = cluster_factory(nodes=1, master_args=["--tls"])
    wd = c.workdir
    info = json.loads((wd / "master.json").read_text())
    assert info["tls"] is True
    cert = (wd / "tls.crt").read_bytes()
    assert info["tls_sha256"] == hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.decode())).hexdigest()
    assert stat.S_IMODE((wd / "tls.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((wd / "tls.crt").stat().st_mode) == 0o600  # nothing in a workdir is world-readable (issue 13, item 8)
    address, token = info["address"], wd / "token"

    # The right certificate, over TCP: the agent (TCP + TLS too) runs the task.
    with Client(address=address, token_file=token, tls_cert=wd / "tls.crt") as cl:
        assert not cl._target.startswith("unix:")
        cl.submit([{"name": "hello", "exec": "/bin/echo", "args": ["tls"]}])
        assert cl.wait(timeout=30)["hello"] == "SUCCEED"
    st = pj_json("status", "--master", address, "--token-file", str(token), "--tls-cert", str(wd / "tls.crt"),
                 cwd=tmp_path)
    assert st["jobs_total"] == 1

    # Another run's certificate: refused, and said so.
    with Client(address=address, token_file=token, tls_cert=other_cert, timeout=10) as cl, \
            pytest.raises(MasterUnreachable, match=r"TLS handshake .* failed"):
        cl.status()
    r = pj("status", "--master", address, "--token-file", str(token), "--tls-cert", str(other_cert), cwd=tmp_path,
           env=user_env())
    assert r.returncode == 1 and "TLS handshake" in r.stderr, r.stderr
    # A plaintext client: refused.
    with Client(address=address, token_file=token, timeout=10) as cl, pytest.raises(MasterUnreachable):
        cl.status()
    # An agent pinning another run's certificate never registers.
    r = subprocess.run([sys.executable, "-m", "pj.agent", "--master", address, "--token-file", str(token),
                        "--tls-cert", str(other_cert), "--name", "intruder", "--cores", "1", "--wait-master", "2"],
                       capture_output=True, text=True, timeout=30, env=user_env())
    assert r.returncode != 0, r.stdout + r.stderr
    with c.client() as cl:
        assert [n.name for n in cl.resources().nodes] == ["node0"]


@pytest.fixture
def master_in(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(wd: Path, *args: str) -> dict[str, Any]:
        wd.mkdir(parents=True, exist_ok=True)
        with open(wd / "master.log", "wb") as log:
            p = subprocess.Popen([sys.executable, "-m", "pj.master", "--workdir", str(wd), *args], stdout=log,
                                 stderr=subprocess.STDOUT, env=user_env())
        procs.append(p)
        eventually(lambda: (wd / "master.json").exists() or p.poll() is not None, what="the master")
        assert p.poll() is None, (wd / "master.log").read_text()
        return json.loads((wd / "master.json").read_text())  # type: ignore[no-any-return]

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)


def test_local_clients_use_the_unix_socket(master_in: Any, tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    info = master_in(wd, "--tls")
    sock = Path(info["socket"])
    assert sock == wd / "master.sock" and stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    with Client(wd) as cl:
        assert cl._target == f"unix:{sock}"
        assert cl.status().jobs_total == 0
    ok(pj("status", "--workdir", str(wd), env=user_env()))
    # Another host (per master.json) does not use the socket: TCP with TLS.
    info["host"] = "elsewhere"
    (wd / "master.json").write_text(json.dumps(info))
    with Client(wd) as cl:
        assert cl._target == info["address"]
        assert cl.status().jobs_total == 0


def test_a_workdir_too_long_for_a_socket_goes_without(master_in: Any, tmp_path: Path) -> None:
    wd = tmp_path / ("d" * 100)
    info = master_in(wd)
    assert "socket" not in info and not (wd / "master.sock").exists()
    assert "no Unix socket" in (wd / "master.log").read_text()
    with Client(wd) as cl:
        assert cl._target == info["address"] and cl.status().jobs_total == 0


def test_pj_run_tls(tmp_path: Path) -> None:
    r = pj_run(tmp_path, str(REPO / "examples" / "campaign.json"), "--workdir", "wd", "--quiet", "--tls",
               "--nodes", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    wd = tmp_path / "wd"
    assert (wd / "tls.crt").exists() and "tls=True" in (wd / "master.log").read_text().replace("'", "")
    for node in ("node0", "node1"):
        assert "registered" in (wd / f"agent-{node}.log").read_text()
    assert not (wd / "master.sock").exists() and os.path.exists(wd / "jobs.jsonl")
