"""What `pj` and `pj-submit` share: the parser class, the options that find the master, value
parsers, and ``guard``, which turns every error into one line (or, under ``--json``, one JSON object)
and an exit code: 0 done, 1 a runtime failure, 2 bad usage or input, 130 interrupted."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from pj.common.workdir import WORKDIR_ENV

from .commands import UsageError, _say
from .errors import InvalidJobError, PJError, UnknownJobError, one_line


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def wants_json(words: Sequence[str]) -> bool:
    """--json anywhere before a `--` (before or after the subcommand)."""
    for w in words:
        if w == "--":
            return False
        if w == "--json":
            return True
    return False


def add_json(p: argparse.ArgumentParser, top: bool = False) -> None:
    """--json on the main parser (default False) and on each subcommand (set only when given there)."""
    p.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="machine-readable output: one JSON document on stdout; an error is a JSON object "
                   '{"error": ..., "kind": ..., "exit_code": ...} (schemas: pj/common/schemas/)')


def say_error(message: str, kind: str, rc: int, as_json: bool) -> int:
    if as_json:
        sys.stdout.write(json.dumps({"error": one_line(message), "kind": kind, "exit_code": rc}) + "\n")
        sys.stdout.flush()
    else:
        _say(message)
    return rc


def guard(body: Callable[[], int], as_json: bool = False) -> int:
    """Run a command; turn every error into one line on stderr (a JSON object on stdout under
    ``--json``) and an exit code."""
    try:
        rc = body()
        sys.stdout.flush()
        return rc
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except UsageError as e:
        return say_error(str(e), "usage", 2, as_json)
    except (InvalidJobError, UnknownJobError) as e:
        return say_error(str(e), "input", 2, as_json)
    except PJError as e:
        return say_error(str(e), "runtime", 1, as_json)
    except KeyboardInterrupt:
        return say_error("interrupted", "interrupted", 130, as_json)
    except BrokenPipeError:  # `pj list | head`
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except Exception as e:
        if os.environ.get("PJ_DEBUG"):
            traceback.print_exc()
        return say_error(f"internal error: {type(e).__name__}: {e} (set PJ_DEBUG=1 for a traceback)",
                         "internal", 1, as_json)


def quiet_grpc() -> None:
    """No gRPC C-core INFO lines (a GOAWAY when the master stops...) on the user's terminal.

    Only takes effect before grpc is first imported, which the CLI delays until it needs it.
    """
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def add_connection(p: argparse.ArgumentParser, workdir: bool = True) -> None:
    g = p.add_argument_group("finding the master")
    if workdir:
        g.add_argument("--workdir", metavar="DIR", default=argparse.SUPPRESS,
                       help=f"the master's workdir (holds master.json and token; default ${WORKDIR_ENV})")
    g.add_argument("--master", metavar="ADDR", default=argparse.SUPPRESS,
                   help="the master's HOST:PORT (with --token-file, or the token of --workdir)")
    g.add_argument("--token-file", metavar="F", default=argparse.SUPPRESS, help="file holding the master's token")
    g.add_argument("--tls-cert", metavar="FILE", default=argparse.SUPPRESS,
                   help="the run's certificate (DIR/tls.crt) when the master runs with --tls: the only one trusted")
    g.add_argument("--rpc-timeout", metavar="S", type=float, default=argparse.SUPPRESS,
                   help="seconds each call may take (default 30)")


def seconds_for(option: str) -> Callable[[str], float]:
    """A timeout for ``option``: plain seconds ("90", "1.5") or a duration ("10m", "1h30m", "1:30:00")."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            from pj.common.durations import DurationError, parse_duration

            try:
                return parse_duration(text, option)
            except DurationError as e:
                raise UsageError(str(e)) from None  # already names the option
        if not value > 0 or value == float("inf"):
            raise UsageError(f"{option}: must be a positive number of seconds, got {text!r}")
        return value

    return parse


def reconnect_seconds(text: str) -> float:
    """--reconnect-timeout: as seconds_for, and 0 (never)."""
    try:
        if float(text) == 0:
            return 0.0
    except ValueError:
        pass
    return seconds_for("--reconnect-timeout")(text)


def count(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {value}")
        return value

    return parse
