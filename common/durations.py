"""Durations as users write them (walltimes, timeouts), read into seconds.

Accepted forms, all meaning a positive length of time:

- a number (``90``, ``1.5``; a JSON number): seconds;
- unit forms: ``90s``, ``10m``, ``2h``, ``1d``, combined from the largest unit down (``1h30m``,
  ``1d2h``, QCG-PilotJob's ``1h30m10s``), each with an optional fraction (``1.5h``); HyperQueue's
  (humantime's) spellings of the units too, with spaces between the parts or not: ``30sec``,
  ``10min``, ``2hr``, ``1h 30min``, ``2 hours``, ``1w`` (``s``/``sec``/``second``, ``m``/``min``/
  ``minute``, ``h``/``hr``/``hour``, ``d``/``day``, ``w``/``week``, plurals too);
- Slurm's forms (``--time``): ``MM`` (minutes, as Slurm means a bare number), ``MM:SS``,
  ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.

A bare number written as a *string* is therefore minutes (Slurm), while the same number given as
a JSON or Python number is seconds; the two notations come from different worlds and each keeps its
own meaning. Zero, negative, non-finite or unreadable values raise :class:`DurationError`, whose
message lists the accepted forms.
"""

from __future__ import annotations

import math
import re

__all__ = ["MAX_SECONDS", "DurationError", "format_duration", "parse_duration"]

#: Longest duration accepted (100 years): longer ones are mistakes, and they would overflow timers.
MAX_SECONDS = 100 * 365 * 86400.0

FORMS = (
    "seconds as a number (90), a unit form ('90s', '10m', '10min', '1h30m', '1h 30min', '1.5h', '1d2h') "
    "or a Slurm time ('MM', 'MM:SS', 'HH:MM:SS', 'D-HH', 'D-HH:MM', 'D-HH:MM:SS')"
)

_UNITS = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_UNIT_ORDER = "wdhms"
#: Each spelling of a unit (HyperQueue's humantime ones included) -> its letter in _UNITS.
_SPELLINGS = {
    **dict.fromkeys(("w", "week", "weeks"), "w"),
    **dict.fromkeys(("d", "day", "days"), "d"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "m"),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
}
_UNIT_WORD = "|".join(sorted(_SPELLINGS, key=len, reverse=True))  # longest first: "min" before "m"
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT_FORM = re.compile(rf"(?:\s*{_NUMBER}\s*(?:{_UNIT_WORD})(?![a-z]))+\s*", re.ASCII)
_UNIT_PART = re.compile(rf"({_NUMBER})\s*({_UNIT_WORD})(?![a-z])", re.ASCII)
_MINUTES = re.compile(r"\d+", re.ASCII)
_MM_SS = re.compile(r"(\d+):(\d{1,2})", re.ASCII)
_HH_MM_SS = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})", re.ASCII)
_DAYS = re.compile(r"(\d+)-(\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?", re.ASCII)
_MAX_TEXT = 64  # no real duration is longer; also keeps int() away from huge digit strings


class DurationError(ValueError):
    """A duration that cannot be used. ``str()`` is ``"<field>: <reason>"``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_duration(text: str | int | float, field: str) -> float:
    """Read ``text`` as a duration and return it in seconds (a float > 0).

    ``field`` names what is being read (``"walltime"``, ``"--walltime"``) and starts every error
    message. Raises :class:`DurationError` (a ``ValueError``).
    """
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise DurationError(field, f"expected a duration, got {type(text).__name__}; use {FORMS}")
    if isinstance(text, str):
        seconds = _parse_text(text, field)
    else:
        seconds = float(text)
        if math.isnan(seconds) or math.isinf(seconds):
            raise DurationError(field, f"{text!r} is not a duration; use {FORMS}")
    if seconds <= 0:
        raise DurationError(field, f"must be greater than zero, got {text!r}; use {FORMS}")
    if seconds > MAX_SECONDS:
        raise DurationError(field, f"{text!r} is longer than 100 years; leave it out for no limit")
    return seconds


def _parse_text(text: str, field: str) -> float:
    s = text.strip()
    if len(s) > _MAX_TEXT:
        raise DurationError(field, f"{_show(text)} is not a duration; use {FORMS}")
    if s.lower() in {"unlimited", "infinite", "inf", "none"}:
        raise DurationError(field, f"{text!r} is not accepted; leave it out for no limit")
    if _MINUTES.fullmatch(s):
        return int(s) * 60.0
    if m := _MM_SS.fullmatch(s):
        minutes, secs = int(m[1]), int(m[2])
        _below(secs, 60, "seconds", text, field)
        return minutes * 60.0 + secs
    if m := _HH_MM_SS.fullmatch(s):
        hours, minutes, secs = int(m[1]), int(m[2]), int(m[3])
        _below(minutes, 60, "minutes", text, field)
        _below(secs, 60, "seconds", text, field)
        return hours * 3600.0 + minutes * 60.0 + secs
    if m := _DAYS.fullmatch(s):
        days, hours = int(m[1]), int(m[2])
        minutes = int(m[3]) if m[3] else 0
        secs = int(m[4]) if m[4] else 0
        _below(hours, 24, "hours", text, field)
        _below(minutes, 60, "minutes", text, field)
        _below(secs, 60, "seconds", text, field)
        return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + secs
    if _UNIT_FORM.fullmatch(s):
        return _parse_units(s, text, field)
    raise DurationError(field, f"{_show(text)} is not a duration; use {FORMS}")


def _parse_units(s: str, text: str, field: str) -> float:
    total = 0.0
    last = -1
    for number, word in _UNIT_PART.findall(s):
        unit = _SPELLINGS[word]
        rank = _UNIT_ORDER.index(unit)
        if rank <= last:
            raise DurationError(
                field, f"{text!r}: give each unit once, largest first (as in '1d2h30m10s'); use {FORMS}"
            )
        last = rank
        total += float(number) * _UNITS[unit]
    return total


def format_duration(seconds: float) -> str:
    """A length of time the way a user writes it, and ``parse_duration`` reads back:
    ``2s``, ``0.3s``, ``10m``, ``1h30m``, ``1d5s``. A length with a fraction of a second stays in
    seconds (``90.5s``)."""
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    rest = int(seconds)
    parts = []
    for unit in "dhms":  # weeks are read, never written
        n, rest = divmod(rest, int(_UNITS[unit]))
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


def _below(value: int, limit: int, what: str, text: str, field: str) -> None:
    if value >= limit:
        raise DurationError(field, f"{text!r}: {what} must be below {limit}; use {FORMS}")


def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")
