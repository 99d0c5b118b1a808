"""common/logs.py: ISO-8601 timestamps with milliseconds, console and json formats, env defaults."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import structlog

from pj.common import logs

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")


@pytest.fixture(autouse=True)
def restore_logging() -> object:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logging.basicConfig(force=True, handlers=[logging.NullHandler()])


def test_console_lines_have_iso_timestamps_with_milliseconds() -> None:
    out = io.StringIO()
    logs.setup("info", stream=out, component="master")
    structlog.get_logger("t1").info("agent joined", node="n0", cores=4)
    structlog.get_logger("t1").debug("hidden")
    line = out.getvalue().strip()
    assert "\n" not in line
    m = re.fullmatch(r"timestamp='(.*?)' level='info' event='agent joined' node='n0' cores=4 component='master'", line)
    assert m and ISO_MS.fullmatch(m.group(1)), line


def test_json_lines_are_objects_and_other_loggers_alike() -> None:
    out = io.StringIO()
    logs.setup("debug", stream=out, component="agent", fmt="json")
    structlog.get_logger("t2").warning("slow", seconds=1.5)
    logging.getLogger("some.library").debug("plain %s", "text")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["event"] == "slow" and first["level"] == "warning" and first["seconds"] == 1.5
    assert first["component"] == "agent" and ISO_MS.fullmatch(first["timestamp"])
    assert second["event"] == "plain text" and second["logger"] == "some.library"
    assert ISO_MS.fullmatch(second["timestamp"])


def test_environment_gives_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.LEVEL_ENV, "WARNING")
    monkeypatch.setenv(logs.FORMAT_ENV, "json")
    assert (logs.level_default(), logs.format_default()) == ("warning", "json")
    out = io.StringIO()
    logs.setup(stream=out)
    structlog.get_logger("t3").info("dropped")
    structlog.get_logger("t3").warning("kept")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["kept"]
    monkeypatch.setenv(logs.LEVEL_ENV, "loud")
    monkeypatch.delenv(logs.FORMAT_ENV)
    assert (logs.level_default(), logs.format_default()) == ("info", "console")
