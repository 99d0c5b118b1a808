"""`pj sbatch-template` (the batch script PJ ships) and `pj completion bash|zsh|fish|tcsh`.

Completion scripts are made by shtab from the `pj` parser itself, imported only here: no other
command pays for it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .commands import _json

SHELLS = ("bash", "zsh", "fish", "tcsh")


def add_parsers(sub: Any) -> None:
    t = sub.add_parser("sbatch-template", help="print the Slurm batch script that runs a campaign (pj.sbatch)",
                       description="Print scripts/pj.sbatch, the batch script that runs `pj run FILE` in one "
                       "Slurm allocation: save it, adapt it, submit it with `sbatch -N 4 pj.sbatch FILE`.")
    t.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="as a JSON object")
    t.set_defaults(func=cmd_sbatch_template)
    c = sub.add_parser("completion", help="print a shell completion script: bash, zsh, fish or tcsh",
                       description="Print a completion script for pj. bash: `source <(pj completion bash)` "
                       "(or save it in ~/.local/share/bash-completion/completions/pj); zsh: save it as _pj in "
                       "a folder of $fpath; fish: `pj completion fish > ~/.config/fish/completions/pj.fish`.")
    c.add_argument("shell", choices=SHELLS, metavar="SHELL", help=" | ".join(SHELLS))
    c.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="as a JSON object")
    c.set_defaults(func=cmd_completion)


def sbatch_template() -> str:
    from importlib.resources import files

    return files("pj.client").joinpath("pj.sbatch").read_text()


def cmd_sbatch_template(args: argparse.Namespace) -> int:
    text = sbatch_template()
    if args.json:
        _json({"name": "pj.sbatch", "script": text})
    else:
        sys.stdout.write(text)
    return 0


def completion_script(shell: str) -> str:
    import shtab  # only here: completion costs no other command anything

    from .cli import pj_parser

    return str(shtab.complete(pj_parser(), shell=shell))


def cmd_completion(args: argparse.Namespace) -> int:
    text = completion_script(args.shell)
    if args.json:
        _json({"shell": args.shell, "script": text})
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
