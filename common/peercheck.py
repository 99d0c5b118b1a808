"""Checks of what peers other than a job file send the master: an agent's Register, a Submit's base
directory, a List's page token and states. Pure; the master refuses what fails with
INVALID_ARGUMENT and the one-line message of :class:`PeerError` (the field, the limit, the fix).

A broken or hostile agent must not make the master allocate per core or per GPU without bound (a
Register claiming 10^9 cores did: gigabytes), nor name itself in a way that breaks logs and file
names. The limits are named below, next to the job-file limits of ``speccheck.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pj.common.speccheck import GPUS_MAX, NAME_MAX, PATH_MAX, check_name
from pj.v1 import pj_pb2

__all__ = [
    "CAMPAIGN_MAX",
    "GPU_ID_MAX",
    "HOSTNAME_MAX",
    "NODE_CORES_MAX",
    "NODE_GPUS_MAX",
    "NODE_MEMORY_MAX",
    "NODE_NAME_MAX",
    "REGISTER_TASKS_MAX",
    "TEXT_MAX",
    "VERSION_MAX",
    "PeerError",
    "check_base_dir",
    "check_register",
    "check_states",
    "clip",
    "parse_page_token",
    "show",
]

NODE_CORES_MAX = 100_000  # logical cores one agent may offer
NODE_GPUS_MAX = GPUS_MAX  # GPUs one agent may offer (1024, as a job may ask per node)
NODE_MEMORY_MAX = 1 << 50  # bytes (1 PiB)
NODE_NAME_MAX = NAME_MAX  # node names follow the job names' rules (they end up in file names)
GPU_ID_MAX = 200  # characters of one GPU id (a MIG UUID is about 45)
HOSTNAME_MAX = 255
VERSION_MAX = 100
CAMPAIGN_MAX = 64  # a campaign id is 32 hex digits
REGISTER_TASKS_MAX = 1_000_000  # ids in Register.running, exits in Register.ended
TEXT_MAX = 16_384  # characters of a task's error or stderr tail that the master keeps (agents send 4 KB)

_GPU_ID = re.compile(r"[A-Za-z0-9_.:/+-]+")  # CUDA_VISIBLE_DEVICES spellings: 0, GPU-<uuid>, MIG-...
_PAGE_TOKEN = re.compile(r"[0-9]{1,18}")
_JOB_STATES = frozenset(pj_pb2.JobState.values())


class PeerError(ValueError):
    """A field a peer sent that the master refuses: ``str()`` is one line naming the message, the
    field and what is wrong (with the limit or the fix)."""

    def __init__(self, message: str, field: str, reason: str) -> None:
        self.message = message
        self.field = field
        self.reason = reason
        super().__init__(f"{message}: field {field!r}: {reason}")


def _register_error(field: str, reason: str) -> PeerError:
    return PeerError("Register", field, reason)


def _text_problem(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if any(c < " " or c == "\x7f" for c in value):
        return "contains a control character (NUL, newline...)"
    return None


def check_register(reg: pj_pb2.Register) -> None:
    """Raise :class:`PeerError` for the first field of an agent's Register past its limit."""
    why = check_name(reg.node)
    if why is not None:
        raise _register_error("node", f"{why} (node names follow the job names' rules; give the agent --name)")
    if reg.cores < 1:
        raise _register_error("cores", "at least 1 core is needed")
    if reg.cores > NODE_CORES_MAX:
        raise _register_error(
            "cores", f"{reg.cores} cores is more than {NODE_CORES_MAX} per node; start the agent with fewer --cores"
        )
    if len(reg.gpus) > NODE_GPUS_MAX:
        raise _register_error(
            "gpus", f"{len(reg.gpus)} GPUs is more than {NODE_GPUS_MAX} per node; start the agent with fewer --gpus"
        )
    seen: set[str] = set()
    for gpu in reg.gpus:
        if not gpu or len(gpu) > GPU_ID_MAX or _GPU_ID.fullmatch(gpu) is None:
            raise _register_error(
                "gpus", f"{show(gpu, 40)} is not a GPU id (letters, digits and _ . : / + -, at most {GPU_ID_MAX})"
            )
        if gpu in seen:
            raise _register_error("gpus", f"GPU {show(gpu)} is listed twice")
        seen.add(gpu)
    if reg.memory_bytes > NODE_MEMORY_MAX:
        raise _register_error("memory_bytes", f"{reg.memory_bytes} bytes is more than {NODE_MEMORY_MAX} (1 PiB)")
    for field, value, limit in (
        ("hostname", reg.hostname, HOSTNAME_MAX),
        ("version", reg.version, VERSION_MAX),
        ("campaign", reg.campaign, CAMPAIGN_MAX),
    ):
        why = _text_problem(value, limit)
        if why is not None:
            raise _register_error(field, why)
    for field, count in (("running", len(reg.running)), ("ended", len(reg.ended))):
        if count > REGISTER_TASKS_MAX:
            raise _register_error(field, f"{count} tasks is more than {REGISTER_TASKS_MAX}")


def check_base_dir(base_dir: str) -> None:
    """A Submit's base directory: absolute, no NUL, at most PATH_MAX; empty means ``/``."""
    if not base_dir:
        return
    if "\x00" in base_dir:
        raise PeerError("Submit", "base_dir", "contains a NUL character")
    if len(base_dir) > PATH_MAX:
        raise PeerError("Submit", "base_dir", f"is longer than {PATH_MAX} characters")
    if not base_dir.startswith("/"):
        raise PeerError(
            "Submit", "base_dir", f"{show(base_dir)} is not an absolute path; give the directory from / on"
        )


def parse_page_token(token: str) -> int:
    """A List page token: "" (the first page) or the decimal index a ListReply gave."""
    if not token:
        return 0
    if _PAGE_TOKEN.fullmatch(token) is None:
        raise PeerError(
            "List", "page_token", f"{show(token, 40)} is not a token from List; leave it empty for the first page"
        )
    return int(token)


def check_states(states: Iterable[int]) -> None:
    """A List's states: each a JobState of pj.proto (0, unspecified, is ignored)."""
    for s in states:
        if s not in _JOB_STATES:
            names = ", ".join(n.removeprefix("JOB_STATE_") for n in pj_pb2.JobState.keys() if pj_pb2.JobState.Value(n))
            raise PeerError("List", "states", f"{s} is not a job state; use one of {names}")


def clip(text: str, limit: int = TEXT_MAX) -> str:
    """At most ``limit`` characters of a task's error or stderr tail: its end."""
    return text if len(text) <= limit else text[-limit:]


def show(text: str, limit: int = 60) -> str:
    """``text`` quoted for a one-line message, cut at ``limit`` characters: a status's details travel
    in a header, and one longer than 16 KB reaches the caller as RESOURCE_EXHAUSTED, not the error."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
