"""Stderr tails (tails.py) and spawn-failure reasons (explain.py) on real files and processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pj.agent import explain, tails
from pj.agent.launcher import Launcher, SpawnError
from pj.agent.resources import detect
from pj.agent.state import TaskSpec


def test_tail_text_keeps_whole_characters_and_drops_trailing_newlines() -> None:
    assert tails.tail_text(b"a\nb\n\n") == "a\nb"
    window = ("€" * 3000).encode()[-tails.TAIL_BYTES:]  # 3-byte characters: it starts mid-character
    assert window[0] & 0xC0 == 0x80
    text = tails.tail_text(window)
    assert "\ufffd" not in text and set(text) == {"€"} and len(text) == tails.TAIL_BYTES // 3
    assert tails.tail_text(b"bad \xff byte") == "bad \ufffd byte"


def test_read_tail_of_a_big_file_is_its_last_4_kb(tmp_path: Path) -> None:
    p = tmp_path / "err"
    p.write_bytes(b"x" * 100_000 + b"\nthe end\n")
    text = tails.read_tail(str(p))
    assert text.endswith("\nthe end") and len(text) == tails.TAIL_BYTES - 1
    assert tails.read_tail(str(tmp_path / "missing")) == ""
    assert tails.read_tail("/dev/null") == ""  # not a regular file: never read


def test_trim_punches_out_all_but_the_tail(tmp_path: Path) -> None:
    caps = tails.Captures(tails.pick_dir([str(tmp_path)]))
    assert caps.directory == str(tmp_path)
    fd = caps.open(7)
    assert caps.open(7) == fd  # asked again (a spawn tried twice): the same file
    os.write(fd, b"y" * (3 << 20) + b"\nlast line\n")
    small = caps.open(8)
    os.write(small, b"small\n")
    assert caps.trim() == 1  # only the big one
    st = os.fstat(fd)
    assert st.st_size == (3 << 20) + 11 and st.st_blocks * 512 <= 64 << 10
    assert caps.close(7, tail=True).endswith("y\nlast line")
    assert caps.close(8, tail=False) == "" and len(caps) == 0
    assert os.listdir(tmp_path) == []  # unnamed: nothing to clean up


def test_not_found_suggests_dot_slash_for_a_file_in_the_wd(tmp_path: Path) -> None:
    (tmp_path / "sim").write_text("#!/bin/sh\n")
    code, why = explain.not_found("sim", str(tmp_path), "/usr/bin:/bin")
    assert code == 127 and why == (
        f"exit code 127: command not found: 'sim' (there is ./sim (not executable) in {tmp_path}: "
        'did you mean "./sim"?)')
    (tmp_path / "sim").chmod(0o755)
    assert explain.not_found("sim", str(tmp_path), "/bin")[1].endswith(
        f'(there is ./sim in {tmp_path}: did you mean "./sim"?)')
    code, why = explain.not_found("nothere", str(tmp_path), "/usr/bin:/bin")
    assert why == "exit code 127: command not found: 'nothere' (not in PATH=/usr/bin:/bin)"


@pytest.fixture(params=[0, 2], ids=["loop", "threads"])
def launcher(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    lch = Launcher(detect(), base_env={"PATH": "/usr/bin:/bin"}, spawn_threads=request.param)
    yield lch
    lch.close()
    lch.reap()


def _spawn(launcher: Launcher, spec: TaskSpec) -> int:
    spawner = launcher.spawner
    if spawner is None:
        return launcher.spawn(spec)
    spawner.submit([launcher.prepare(spec)])
    deadline = time.monotonic() + 10
    while not (results := spawner.take()):
        assert time.monotonic() < deadline
        time.sleep(0.001)
    return launcher.finish(results[0])


def test_launcher_reasons_for_126_and_127_name_the_path(launcher: Launcher, tmp_path: Path) -> None:
    (tmp_path / "sim").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "sim").chmod(0o755)
    with pytest.raises(SpawnError) as e:
        _spawn(launcher, TaskSpec(1, ("sim",), wd=str(tmp_path)))
    assert e.value.exit_code == 127 and 'did you mean "./sim"?' in e.value.message
    (tmp_path / "data.txt").write_text("not a program\n")
    with pytest.raises(SpawnError) as e:
        _spawn(launcher, TaskSpec(2, ("./data.txt",), wd=str(tmp_path)))
    assert e.value.exit_code == 126
    assert e.value.message == f"exit code 126: cannot execute {tmp_path}/data.txt: Permission denied"
    (tmp_path / "noint").write_text("#!/nonexistent/interp\n")
    (tmp_path / "noint").chmod(0o755)
    with pytest.raises(SpawnError) as e:
        _spawn(launcher, TaskSpec(3, ("./noint",), wd=str(tmp_path)))
    assert e.value.exit_code == 127 and "its interpreter /nonexistent/interp" in e.value.message
    for tid in (1, 2, 3):
        assert launcher.ended(tid, tail=True) == ""  # nothing ran: no capture left open
    assert len(launcher.captures) == 0


def test_launcher_tail_from_the_stderr_file_only_when_failed(launcher: Launcher, tmp_path: Path) -> None:
    err = tmp_path / "err.txt"
    for tid, code in ((1, 0), (2, 4)):
        pid = _spawn(launcher, TaskSpec(tid, ("/bin/sh", "-c", f"echo said-{tid} >&2; exit {code}"),
                                        stderr=str(err)))
        while not any(e.pid == pid for e in launcher.reap()):
            time.sleep(0.005)
        assert launcher.ended(tid, tail=code != 0) == ("" if code == 0 else f"said-{tid}")


def test_empty_captures_are_reused_and_written_ones_closed(tmp_path: Path) -> None:
    closed: list[int] = []
    caps = tails.Captures(tails.pick_dir([str(tmp_path)]), closed.append)
    a = caps.open(1)
    assert caps.close(1, tail=True) == "" and closed == []  # nothing written: kept for the next task
    assert caps.open(2) == a
    os.write(a, b"oops\n")
    assert caps.close(2, tail=True) == "oops" and closed == [a]  # written: closed, the file is gone
    b = caps.open(3)
    assert os.fstat(b).st_size == 0
    caps.close_all()
    assert closed == [a, b] and len(caps) == 0


def test_cached_spawn_actions_follow_the_capture_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lch = Launcher(detect(), base_env={"PATH": "/usr/bin:/bin"}, spawn_threads=1)
    if lch.spawner is None:
        pytest.skip("no libc posix_spawn bindings here")
    try:
        def one(tid: int, script: str) -> str:
            pid = _spawn(lch, TaskSpec(tid, ("/bin/sh", "-c", script), wd=str(tmp_path)))
            while not any(e.pid == pid for e in lch.reap()):
                time.sleep(0.005)
            return lch.ended(tid, tail=True)

        assert one(1, "exit 0") == "" and one(2, "exit 0") == ""
        assert len(lch._wd_actions) == 1  # one capture file, one cached set of actions
        (fd,) = {k[1] for k in lch._wd_actions}
        assert one(3, "echo failed >&2; exit 1") == "failed"
        assert lch._wd_actions == {} and fd not in lch._capture_wds  # its descriptor was closed
        assert one(4, "echo again >&2; exit 1") == "again"  # a fresh capture file, no stale tail
    finally:
        lch.close()
        lch.reap()
