"""pj.common.durations: every accepted form, and clear errors for everything else."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pj.common.durations import MAX_SECONDS, DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # numbers: seconds
        (90, 90.0),
        (1.5, 1.5),
        (0.25, 0.25),
        # unit forms
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h", 93600.0),
        ("1.5h", 5400.0),
        ("0.5m", 30.0),
        (".5h", 1800.0),
        ("1h30m10s", 5410.0),  # QCG-PilotJob's wt
        ("1d2h3m4s", 93784.0),
        ("1h 30m", 5400.0),
        (" 10m ", 600.0),
        # HyperQueue's (humantime's) spellings
        ("30sec", 30.0),
        ("10min", 600.0),
        ("2hr", 7200.0),
        ("1h 30min", 5400.0),
        ("1hour 12min 5s", 4325.0),
        ("2 hours", 7200.0),
        ("10 minutes", 600.0),
        ("3days", 3 * 86400.0),
        ("1w", 7 * 86400.0),
        ("1week 2d", 9 * 86400.0),
        ("1h30min10sec", 5410.0),
        ("45 secs", 45.0),
        # Slurm forms: a bare number is minutes
        ("90", 5400.0),
        ("0:30", 30.0),
        ("05:30", 330.0),
        ("90:00", 5400.0),
        ("1:02:03", 3723.0),
        ("100:00:00", 360000.0),
        ("2-3", 2 * 86400.0 + 3 * 3600.0),
        ("2-03:04", 2 * 86400.0 + 3 * 3600.0 + 4 * 60.0),
        ("1-00:00:01", 86401.0),
        # the forms the issue names, as Slurm writes them
        ("1-02:00:00", 93600.0),
        ("02:00:00", 7200.0),
        ("30:00", 1800.0),
        ("1-02", 93600.0),  # days-hours
        ("1-02:30", 95400.0),  # days-hours:minutes
        ("00:00:01", 1.0),
    ],
)
def test_accepted_forms(text: str | float, seconds: float) -> None:
    assert parse_duration(text, "walltime") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "abc", "10x", "h", "1h30", "m10", "1.5", "-5", "-5m", "1:2:3:4", "1-2-3", "1:60", "1:00:60",
     "1:60:00", "1-24", "1-00:60", "10M", "1e3s", "1..5h", "30m1h", "1h1h", "10 minits", "1h-30m", "10mn", "1min30", "1hours30", "5 m s", "2 hr hr", "10Min", "nan", "0x10",
     "1-", "-1-00", ":30", "1:", "1d-2h", "1:30:", "1-02:", "2-1:2:3:4", "1--2"],
)  # fmt: skip
def test_garbage_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text, "walltime")
    msg = str(info.value)
    assert msg.startswith("walltime: ")
    assert "\n" not in msg
    assert "'1h30m'" in msg and "'HH:MM:SS'" in msg  # says what is accepted
    assert info.value.field == "walltime"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, "0", "0s", "0m0s", "00:00", "0-0", "0:00:00"])
def test_zero_and_negative_are_refused(value: str | float) -> None:
    with pytest.raises(DurationError, match=r"^--walltime: must be greater than zero"):
        parse_duration(value, "--walltime")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(DurationError, match="is not a duration"):
        parse_duration(value, "wt")


@pytest.mark.parametrize("value", [True, False, None, [1], {"h": 1}, b"10m"])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(DurationError, match="expected a duration"):
        parse_duration(value, "walltime")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["UNLIMITED", "infinite", "inf"])
def test_unlimited_says_to_leave_the_field_out(value: str) -> None:
    with pytest.raises(DurationError, match="leave it out for no limit"):
        parse_duration(value, "walltime")


def test_absurdly_long_durations_are_refused() -> None:
    assert parse_duration("36500d", "walltime") == 36500 * 86400.0
    with pytest.raises(DurationError, match="longer than 100 years"):
        parse_duration("36600d", "walltime")
    with pytest.raises(DurationError, match="longer than 100 years"):
        parse_duration(MAX_SECONDS * 2, "walltime")
    with pytest.raises(DurationError, match="is not a duration"):
        parse_duration("9" * 5000, "walltime")  # no int() of a huge digit string


def test_units_must_come_largest_first_and_once() -> None:
    with pytest.raises(DurationError, match="give each unit once, largest first"):
        parse_duration("30m1h", "walltime")


@given(st.one_of(st.text(max_size=30), st.from_regex(r"[0-9dhms:.\- ]{1,12}", fullmatch=True)))
def test_any_text_gives_a_positive_duration_or_a_duration_error(text: str) -> None:
    try:
        seconds = parse_duration(text, "walltime")
    except DurationError as e:
        assert str(e).startswith("walltime: ") and "\n" not in str(e)
    else:
        assert 0 < seconds <= MAX_SECONDS


@given(st.integers(min_value=0, max_value=99), st.integers(min_value=0, max_value=23),
       st.integers(min_value=0, max_value=59), st.integers(min_value=0, max_value=59))  # fmt: skip
def test_slurm_and_unit_forms_agree(d: int, h: int, m: int, s: int) -> None:
    total = d * 86400 + h * 3600 + m * 60 + s
    if total == 0:
        return
    assert parse_duration(f"{d}-{h:02d}:{m:02d}:{s:02d}", "t") == total
    assert parse_duration(f"{d}d{h}h{m}m{s}s", "t") == total
    assert parse_duration(f"{d * 24 + h}:{m:02d}:{s:02d}", "t") == total


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2, "2s"), (0.3, "0.3s"), (1.5, "1.5s"), (0, "0s"), (59, "59s"), (60, "1m"), (90, "1m30s"),
     (3600, "1h"), (5400, "1h30m"), (86400, "1d"), (86401, "1d1s"), (93784, "1d2h3m4s"), (90.5, "90.5s")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.one_of(st.integers(min_value=1, max_value=10**9), st.floats(min_value=0.001, max_value=10**6)))
def test_format_duration_reads_back(seconds: float) -> None:
    seconds = round(seconds, 3)
    assert parse_duration(format_duration(seconds), "t") == pytest.approx(seconds, abs=1e-3)


def test_a_bare_number_is_minutes_for_a_walltime_and_seconds_for_a_timeout() -> None:
    from pj.client.cli import _seconds_for
    from pj.client.jobfile import command_job

    assert command_job(["/bin/true"], walltime="90").walltime_s == 90 * 60.0  # Slurm's --time rule
    assert command_job(["/bin/true"], walltime="1h 30min").walltime_s == 5400.0
    timeout = _seconds_for("--timeout")
    assert timeout("90") == 90.0
    assert timeout("10min") == 600.0 and timeout("1h 30min") == 5400.0
