"""The log options every PJ command takes alike (no structlog here: the CLI parses them cheaply)."""

from __future__ import annotations

from typing import Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("console", "json")


def add_options(p: Any, whose: str = "") -> None:
    """``--log-level`` and ``--log-format`` on an argparse parser or group, alike for pj-master,
    pj-agent and pj run (``whose``: what the options set, when not this process's own log)."""
    of = f" of {whose}" if whose else ""
    p.add_argument("--log-level", metavar="LEVEL", default=None, type=str.lower, choices=LEVELS,
                   help=f"the log level{of}: debug, info, warning or error (default $PJ_LOG_LEVEL, else info)")
    p.add_argument("--log-format", default=None, choices=FORMATS,
                   help=f"the log format{of}: console (key=value lines, the default; or $PJ_LOG_FORMAT) or "
                   "json (one object per line); both with ISO-8601 timestamps in milliseconds")
