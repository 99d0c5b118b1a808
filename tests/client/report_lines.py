"""A small hand-written jobs.jsonl whose every figure the report tests compute by hand.

Jobs: ``a`` (2 iterations on n0, 2 cores each; a:1 FAILED with a stderr tail), ``b`` (one task on
n1), ``c`` (OMITTED, no task), ``d`` (one task on n1, retried after a node loss).
"""

from __future__ import annotations

from pathlib import Path

LINES = [
    '{"name":"a","state":"FAILED","reason":"1 of 2 iterations failed","times":{"QUEUED":100.0,"SCHEDULED":100.5,'
    '"EXECUTING":101.0,"FAILED":106.0},"iterations":2,"succeeded":1,"failed":1,"exit_code":null,"nodes":[],"cores":{}}',
    '{"name":"a:0","job":"a","iteration":0,"state":"SUCCEED","exit_code":0,"reason":"","nodes":["n0"],'
    '"cores":{"n0":[0,1]},"times":{"QUEUED":100.5,"SCHEDULED":100.5,"EXECUTING":101.0,"SUCCEED":105.0},'
    '"cpu_user_s":6.0,"cpu_system_s":1.0,"max_rss_kb":1000}',
    '{"name":"a:1","job":"a","iteration":1,"state":"FAILED","exit_code":3,"reason":"exit code 3","nodes":["n0"],'
    '"cores":{"n0":[2,3]},"times":{"QUEUED":100.5,"SCHEDULED":100.5,"EXECUTING":102.0,"FAILED":106.0},'
    '"cpu_user_s":0.5,"cpu_system_s":0.5,"max_rss_kb":3000,"stderr_tail":"Traceback...\\nValueError: boom <b>\\n"}',
    '{"name":"b","state":"SUCCEED","reason":"","times":{"QUEUED":100.0,"SCHEDULED":103.0,"EXECUTING":104.0,'
    '"SUCCEED":110.0},"exit_code":0,"nodes":["n1"],"cores":{"n1":[0]},"task_times":{"QUEUED":103.0,'
    '"SCHEDULED":103.0,"EXECUTING":104.0,"SUCCEED":110.0},"cpu_user_s":5.5,"cpu_system_s":0.5,"max_rss_kb":2000}',
    '{"name":"c","state":"OMITTED","reason":"dependency a failed","times":{"QUEUED":100.0,"OMITTED":106.0},'
    '"exit_code":null,"nodes":[],"cores":{}}',
    '{"name":"d","state":"SUCCEED","reason":"","times":{"QUEUED":101.0,"SCHEDULED":101.2,"EXECUTING":101.5,'
    '"SUCCEED":109.0},"exit_code":0,"nodes":["n1"],"cores":{"n1":[1]},"task_times":{"QUEUED":103.0,'
    '"SCHEDULED":103.0,"EXECUTING":104.0,"SUCCEED":109.0},"cpu_user_s":1.0,"cpu_system_s":0.0,"max_rss_kb":500,'
    '"attempts":[{"state":"FAILED","exit_code":null,"reason":"node lost: n1","nodes":["n1"],"started":101.5,'
    '"ended":102.5,"cpu_user_s":0,"cpu_system_s":0,"max_rss_kb":0},{"state":"SUCCEED","exit_code":0,"reason":"",'
    '"nodes":["n1"],"started":104.0,"ended":109.0,"cpu_user_s":1.0,"cpu_system_s":0.0,"max_rss_kb":500}]}',
]


def write_report(directory: Path, lines: list[str] = LINES, tail: str = "") -> Path:
    """directory/jobs.jsonl holding ``lines`` (each ended by a newline) then ``tail`` (a partial line)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "jobs.jsonl"
    path.write_text("".join(line + "\n" for line in lines) + tail)
    return path
