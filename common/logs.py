"""Logging set-up shared by the master, the agents and the CLI (structlog over stdlib logging).

Every line has an ISO-8601 timestamp with milliseconds and the local UTC offset
(``2026-12-04T18:27:05.123+01:00``), the level, the event and its fields, as ``console`` key=value
text (the default) or one JSON object per line (``json``). ``pj-master``/``pj-agent``
``--log-level``/``--log-format`` choose; without them ``$PJ_LOG_LEVEL``/``$PJ_LOG_FORMAT`` do, which
is how ``pj run --log-level/--log-format`` reaches the master and every agent it starts (srun
passes the environment on).
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from .logopts import FORMATS, LEVELS

LEVEL_ENV = "PJ_LOG_LEVEL"
FORMAT_ENV = "PJ_LOG_FORMAT"


def level_default() -> str:
    """$PJ_LOG_LEVEL when it names a level, else info."""
    value = os.environ.get(LEVEL_ENV, "").strip().lower()
    return value if value in LEVELS else "info"


def format_default() -> str:
    """$PJ_LOG_FORMAT when it names a format, else console."""
    value = os.environ.get(FORMAT_ENV, "").strip().lower()
    return value if value in FORMATS else "console"


def _timestamp(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event["timestamp"] = datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")
    return event


def setup(level: str | None = None, stream: TextIO | None = None, component: str = "pj",
          fmt: str | None = None) -> None:
    """One line per event on stderr (or ``stream``), with a timestamp and the component.
    ``level``/``fmt`` None: $PJ_LOG_LEVEL/$PJ_LOG_FORMAT, else info/console."""
    level = level or level_default()
    fmt = fmt or format_default()
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer(default=str)
        if fmt == "json"
        else structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"], sort_keys=False)
    )
    # Lines of other libraries' loggers (asyncio, grpc at debug) are rendered alike.
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, _timestamp, _logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    logging.basicConfig(level=lvl, handlers=[handler], force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(component=component)


def _logger_name(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event.get("_record")
    if record is not None:
        event["logger"] = record.name
    return event

