"""Memory sizes (common/sizes.py) and the job field ``memory`` that uses them."""

from __future__ import annotations

import pytest

from pj.client.jobfile import JobFileError, command_job, parse_jobfile
from pj.common.sizes import SizeError, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("512M", 512 * 2**20), ("4G", 4 * 2**30), ("1.5GiB", 3 * 2**29), ("2gb", 2 * 2**30), ("100", 100 * 2**20),
     (256, 256 * 2**20), ("64K", 64 * 1024), ("1T", 2**40), (" 3 G ", 3 * 2**30)],
)
def test_sizes_read(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "4X", "G", "-1G", "0", 0, True, None, [], "1e3M", "2000T"])
def test_bad_sizes_refused(bad: object) -> None:
    with pytest.raises(SizeError):
        parse_size(bad)


def test_format_size() -> None:
    assert [format_size(n) for n in (4 * 2**30, 3 * 2**29, 512 * 2**20, 10)] == ["4 GiB", "1.5 GiB", "512 MiB", "10 B"]


def test_job_field_memory() -> None:
    jf = parse_jobfile('{"jobs": [{"name": "a", "exec": "x", "memory": "4G"}, {"name": "b", "exec": "x"}]}', "f")
    assert [s.memory_request_bytes for s in jf.jobs] == [4 * 2**30, 0]


def test_job_field_memory_error_names_field_and_fix() -> None:
    with pytest.raises(JobFileError) as e:
        parse_jobfile('{"jobs": [{"name": "a", "exec": "x", "memory": "lots"}]}', "f")
    assert e.value.field == "memory"
    assert "field 'memory'" in str(e.value) and '"4G"' in str(e.value) and "\n" not in str(e.value)


def test_submit_option_memory() -> None:
    assert command_job(["x"], memory="512M").memory_request_bytes == 512 * 2**20
    with pytest.raises(JobFileError, match="--memory"):
        command_job(["x"], memory="big")
