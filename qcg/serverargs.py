"""QCG-PilotJob's service arguments (``LocalManager(server_args)``) as a ``LocalCluster``'s options.

``--nodes SPEC`` (``4``: one node of 4 cores; ``2,3``: two nodes of 2 and 3 cores; ``a:2,b:3``:
named nodes), ``--wd DIR``, ``--resources local|slurm|auto``, ``--system-core`` (one core fewer on
the first node, for the manager as in QCG) are honoured. Arguments that only tune QCG's own
machinery (ports, report format, log level, its node launcher, statistics) are accepted and have
nothing to do in PJ; the governor/partition modes and the file interface are refused with the fix.
Anything else: WrongArgumentsError naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WrongArgumentsError

__all__ = ["ServerArgs", "parse_server_args"]

# QCG options PJ has nothing to do with: option -> takes a value
_NOOP: dict[str, bool] = {
    "--net": False, "--net-port": True, "--net-pub-port": True, "--net-port-min": True,
    "--net-port-max": True, "--envschema": True, "--report-format": True, "--report-file": True,
    "--log": True, "--disable-nl": False, "--show-progress": False, "--id": True, "--tags": True,
    "--enable-proc-stats": False, "--enable-rt-stats": False, "--wrapper-rt-stats": True,
    "--nl-init-timeout": True, "--nl-ready-threshold": True, "--disable-pub": False,
    "--nl-start-method": True,
}  # fmt: skip
_REFUSED: dict[str, str] = {
    "--governor": "PJ runs one master per campaign; run one LocalManager per allocation",
    "--parent": "PJ runs one master per campaign; connect with Manager(address) instead",
    "--slurm-partition-nodes": "PJ's one master drives the whole allocation",
    "--slurm-limit-nodes-range-begin": "PJ's one master drives the whole allocation",
    "--slurm-limit-nodes-range-end": "PJ's one master drives the whole allocation",
    "--slurm-resources-file": "PJ reads the allocation from Slurm's environment",
    "--file": "run a batch file with `pj run FILE`",
    "--file-path": "run a batch file with `pj run FILE`",
    "--resume": "resume with `pj run FILE --workdir DIR --resume`",
}
_VALUED = {"--nodes", "--wd", "--resources"}
_NODE = re.compile(r"^(?:([A-Za-z0-9_.+-]+):)?(\d+)$")


@dataclass
class ServerArgs:
    wd: str = "."
    cores: list[int] = field(default_factory=list)  # per node; empty: LocalCluster's default
    names: list[str] = field(default_factory=list)  # per node, when the spec named them
    slurm: bool | None = None
    system_core: bool = False

    def cluster_options(self) -> dict[str, Any]:
        """Keyword arguments for ``pj.client.LocalCluster``."""
        opts: dict[str, Any] = {"slurm": self.slurm}
        if self.cores:
            cores = list(self.cores)
            if self.system_core and cores[0] > 1:
                cores[0] -= 1
            opts["nodes"] = len(cores)
            opts["cores"] = cores[0] if len(set(cores)) == 1 else cores
            if self.names:
                opts["names"] = list(self.names)
        return opts

    def run_dir(self, wd: Path) -> Path:
        """Where the master keeps its files: ``WD/.qcgpjm-service-<n>`` as QCG names its own."""
        n = 0
        while (path := wd / f".qcgpjm-service-pj.{n}").exists():
            n += 1
        return path


def _nodes(spec: str) -> tuple[list[int], list[str]]:
    cores: list[int] = []
    names: list[str] = []
    for i, part in enumerate(spec.split(",")):
        m = _NODE.match(part.strip())
        if m is None or int(m[2]) < 1:
            raise WrongArgumentsError(
                f"--nodes {spec!r}: expected [NAME:]CORES[,[NAME:]CORES...] with CORES >= 1, e.g. '4', '2,3' or 'a:2,b:3'"
            )
        cores.append(int(m[2]))
        names.append(m[1] or f"n{i}")
    named = any(":" in p for p in spec.split(","))
    return cores, names if named else []


def parse_server_args(argv: list[Any]) -> ServerArgs:
    out = ServerArgs()
    args = [str(a) for a in argv]
    i = 0
    while i < len(args):
        opt, eq, inline = args[i].partition("=")
        takes = opt in _VALUED or _NOOP.get(opt, False) or opt in ("--file-path", "--parent", "--id")
        value: str | None = None
        if takes:
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise WrongArgumentsError(f"server argument {opt}: missing its value")
        i += 1
        if opt in _REFUSED:
            raise WrongArgumentsError(f"server argument {opt} is not supported by PJ: {_REFUSED[opt]}")
        if opt == "--nodes":
            assert value is not None
            out.cores, out.names = _nodes(value)
        elif opt == "--wd":
            assert value is not None
            out.wd = value
        elif opt == "--resources":
            if value not in ("auto", "local", "slurm"):
                raise WrongArgumentsError(f"--resources {value!r}: one of auto, local, slurm")
            out.slurm = None if value == "auto" else value == "slurm"
        elif opt == "--system-core":
            out.system_core = True
        elif opt not in _NOOP:
            raise WrongArgumentsError(
                f"unknown server argument {args[i - 1]!r}; PJ's LocalManager knows --nodes, --wd, --resources, "
                "--system-core and QCG's tuning options"
            )
    if out.cores and out.slurm is None:
        out.slurm = False  # QCG: --nodes implies --resources local
    return out
