"""What /proc says of a process, for the benchmark scripts: its CPU seconds and its memory figures."""

from __future__ import annotations

import os
import re
from pathlib import Path


def status_kb(pid: int, key: str) -> int:
    """A /proc/PID/status figure in kB (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        m = re.search(rf"{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


def cpu_s(pid: int) -> float:
    """The CPU seconds (user + system) process ``pid`` has used so far; OSError when it is gone."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15
