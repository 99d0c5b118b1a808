"""Logging set-up shared by the master, the agents and the CLI (structlog over stdlib logging)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def setup(level: str = "info", stream: TextIO | None = None, component: str = "pj") -> None:
    """Key=value lines on stderr (or ``stream``), one per event, with a timestamp and the component."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=lvl, stream=stream or sys.stderr, format="%(message)s", force=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"], sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(component=component)
