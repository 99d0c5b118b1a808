"""Where a running master is found: DIR/master.json (its address) and DIR/token (the secret).

The master writes both when it starts; agents and clients read them through
``--workdir DIR`` or ``PJ_WORKDIR``. With ``pj-master --tls``, master.json says ``"tls": true``
and DIR/tls.crt is the run's own certificate, the only one a client then trusts (pinned). The
master also listens on the Unix socket DIR/master.sock (``"socket"`` in master.json); a client on
the master's host prefers it. Plain file I/O, no grpc (``pj.common.dial`` makes the channels).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from pj.common import perms

# Waiting for a master that is still starting: look every 5 ms for the first second (a master
# started together with us appears within a few tenths of a second; a look is one failed open(),
# ~10 us), then every 50 ms (a resumed master replaying a long journal; agents on a shared file
# system should not stat its metadata server hundreds of times a second for minutes).
POLL_FAST_S = 0.005
POLL_FAST_FOR_S = 1.0
POLL_SLOW_S = 0.05


def poll_interval(waited_s: float) -> float:
    """How long to sleep before the next look for master.json, having waited ``waited_s`` so far."""
    return POLL_FAST_S if waited_s < POLL_FAST_FOR_S else POLL_SLOW_S

MASTER_FILE = "master.json"
TOKEN_FILE = "token"
TLS_CERT_FILE = "tls.crt"
TLS_KEY_FILE = "tls.key"
SOCKET_FILE = "master.sock"
TOKEN_METADATA_KEY = "pj-token"
# pj-master's exit status when every job ended but DIR/jobs.jsonl could not be written (a full
# disk): `pj run` then says so instead of naming the report.
REPORT_NOT_WRITTEN_EXIT = 3
WORKDIR_ENV = "PJ_WORKDIR"
MASTER_ENV = "PJ_MASTER"


class WorkdirError(Exception):
    """No master could be found; the message says where PJ looked and what to do."""


@dataclass(frozen=True)
class MasterAddress:
    address: str  # host:port as grpc dials it
    token: str
    workdir: Path | None = None
    tls_cert: bytes | None = None  # PEM of the run's certificate: TLS on the TCP port, pinned
    socket: str | None = None  # "unix:PATH" when the master's Unix socket is usable from here


def write_token(workdir: Path, keep: bool = False) -> str:
    """Create DIR/token with a fresh secret, readable by the owner alone. With ``keep`` (a resumed
    master), an existing token is kept: the agents and clients of the run still get in."""
    path = workdir / TOKEN_FILE
    if keep:
        try:
            old = path.read_text().strip()
        except FileNotFoundError:
            old = ""
        if old:
            return old
    token = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    with os.fdopen(perms.create(tmp), "w") as f:  # 0600 (0640 in a workdir shared with its group)
        f.write(token + "\n")
    os.replace(tmp, path)
    return token


def write_master_info(workdir: Path, info: dict[str, object]) -> None:
    """Atomically write DIR/master.json (readers never see half a file)."""
    path = workdir / MASTER_FILE
    tmp = path.with_suffix(".tmp")
    with os.fdopen(perms.create(tmp), "w") as f:
        f.write(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, path)


def read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        raise WorkdirError(f"cannot read the token file {path}: {e.strerror}") from None


def resolve_workdir(workdir: str | os.PathLike[str] | None) -> Path | None:
    """The workdir given, else $PJ_WORKDIR, else None."""
    if workdir is not None:
        return Path(workdir).absolute()
    env = os.environ.get(WORKDIR_ENV)
    return Path(env).absolute() if env else None


def find_master(
    workdir: str | os.PathLike[str] | None = None,
    address: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    wait_s: float = 0.0,
    tls_cert: str | os.PathLike[str] | None = None,
) -> MasterAddress:
    """Find the master's address and token.

    ``address`` (with ``token_file``, or the token of the workdir) wins; else
    DIR/master.json of ``workdir`` or $PJ_WORKDIR. With ``wait_s`` > 0, waits that
    long for a master that is still starting to write its file. ``tls_cert`` (a PEM file) pins the
    master's TLS certificate; without it, DIR/tls.crt when master.json says TLS is on.
    """
    cert = _read_cert(Path(tls_cert)) if tls_cert is not None else None
    wd = resolve_workdir(workdir)
    if address is None and wd is None and os.environ.get(MASTER_ENV):
        address = os.environ[MASTER_ENV]
    if address is not None:
        if token_file is not None:
            token = read_token(Path(token_file))
        elif wd is not None:
            token = read_token(wd / TOKEN_FILE)
        else:
            raise WorkdirError(
                f"--master {address} needs a token: give --token-file FILE or --workdir DIR (or set {WORKDIR_ENV})"
            )
        if cert is None and wd is not None:
            info = _read_info(wd)
            if info is not None and info.get("tls"):
                cert = _read_cert(wd / TLS_CERT_FILE)
        return MasterAddress(address, token, wd, cert)
    if wd is None:
        raise WorkdirError(f"no master given: use --workdir DIR (or set {WORKDIR_ENV}), or --master ADDR")
    path = wd / MASTER_FILE
    start = time.monotonic()
    deadline = start + wait_s
    while True:
        try:
            info = json.loads(path.read_text())
            break
        except FileNotFoundError:
            now = time.monotonic()
            if now >= deadline:
                raise WorkdirError(
                    f"no master runs in {wd}: {path} does not exist (start one with `pj-master --workdir {wd}`)"
                ) from None
            time.sleep(min(poll_interval(now - start), deadline - now))
        except (OSError, ValueError) as e:
            raise WorkdirError(f"cannot read {path}: {e}") from None
    tf = Path(token_file) if token_file is not None else wd / TOKEN_FILE
    if cert is None and info.get("tls"):
        cert = _read_cert(wd / TLS_CERT_FILE)
    return MasterAddress(str(info["address"]), read_token(tf), wd, cert, _local_socket(info))


def _read_info(wd: Path) -> dict[str, object] | None:
    try:
        info = json.loads((wd / MASTER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _read_cert(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise WorkdirError(f"cannot read the TLS certificate {path}: {e.strerror}") from None


def _local_socket(info: dict[str, object]) -> str | None:
    """The master's Unix socket, when it runs on this host and the socket is there."""
    path = info.get("socket")
    if not isinstance(path, str) or info.get("host") != socket.gethostname():
        return None
    return f"unix:{path}" if os.path.exists(path) else None
