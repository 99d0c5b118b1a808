"""Ending a PJ process at once once its work is done.

A finished `pj run` or master has nothing left to tear down that matters, yet the interpreter's
own teardown (grpc's threads, thousands of module objects) takes tens of milliseconds, all of
it on the wall time of `pj run`. ``exit_now`` flushes what is buffered and ends the process.
Only for a process's own entry point (never for a function that tests call in-process).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Flush the logs, stdout and stderr, then end this process with ``code`` (no atexit, no teardown)."""
    logging = sys.modules.get("logging")  # not imported here: `pj` commands start faster without it
    if logging is not None:
        with contextlib.suppress(Exception):
            logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
