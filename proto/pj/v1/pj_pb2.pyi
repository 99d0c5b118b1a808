from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_SCHEDULED: _ClassVar[JobState]
    JOB_STATE_EXECUTING: _ClassVar[JobState]
    JOB_STATE_SUCCEED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELED: _ClassVar[JobState]
    JOB_STATE_OMITTED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_SCHEDULED: JobState
JOB_STATE_EXECUTING: JobState
JOB_STATE_SUCCEED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELED: JobState
JOB_STATE_OMITTED: JobState

class Range(_message.Message):
    __slots__ = ("min", "max", "scheduler")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    scheduler: IterScheduler
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ..., scheduler: _Optional[_Union[IterScheduler, _Mapping]] = ...) -> None: ...

class IterScheduler(_message.Message):
    __slots__ = ("name", "parts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    parts: int
    def __init__(self, name: _Optional[str] = ..., parts: _Optional[int] = ...) -> None: ...

class Iterations(_message.Message):
    __slots__ = ("start", "stop", "values")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    start: int
    stop: int
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, start: _Optional[int] = ..., stop: _Optional[int] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("name", "exec", "script", "args", "env", "wd", "stdin", "stdout", "stderr", "cores", "nodes", "gpus", "iterations", "after", "model", "modules", "venv", "walltime_s", "retries", "attributes", "mpirun", "model_args", "memory_request_bytes")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WD_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    VENV_FIELD_NUMBER: _ClassVar[int]
    WALLTIME_S_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    MPIRUN_FIELD_NUMBER: _ClassVar[int]
    MODEL_ARGS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    exec: str
    script: str
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    wd: str
    stdin: str
    stdout: str
    stderr: str
    cores: Range
    nodes: Range
    gpus: int
    iterations: Iterations
    after: _containers.RepeatedScalarFieldContainer[str]
    model: str
    modules: _containers.RepeatedScalarFieldContainer[str]
    venv: str
    walltime_s: float
    retries: int
    attributes: _containers.ScalarMap[str, str]
    mpirun: str
    model_args: _containers.RepeatedScalarFieldContainer[str]
    memory_request_bytes: int
    def __init__(self, name: _Optional[str] = ..., exec: _Optional[str] = ..., script: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., wd: _Optional[str] = ..., stdin: _Optional[str] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., cores: _Optional[_Union[Range, _Mapping]] = ..., nodes: _Optional[_Union[Range, _Mapping]] = ..., gpus: _Optional[int] = ..., iterations: _Optional[_Union[Iterations, _Mapping]] = ..., after: _Optional[_Iterable[str]] = ..., model: _Optional[str] = ..., modules: _Optional[_Iterable[str]] = ..., venv: _Optional[str] = ..., walltime_s: _Optional[float] = ..., retries: _Optional[int] = ..., attributes: _Optional[_Mapping[str, str]] = ..., mpirun: _Optional[str] = ..., model_args: _Optional[_Iterable[str]] = ..., memory_request_bytes: _Optional[int] = ...) -> None: ...

class StateChange(_message.Message):
    __slots__ = ("state", "time")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    time: float
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., time: _Optional[float] = ...) -> None: ...

class NodeShare(_message.Message):
    __slots__ = ("node", "cores", "gpus", "memory_bytes")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    node: str
    cores: _containers.RepeatedScalarFieldContainer[int]
    gpus: _containers.RepeatedScalarFieldContainer[str]
    memory_bytes: int
    def __init__(self, node: _Optional[str] = ..., cores: _Optional[_Iterable[int]] = ..., gpus: _Optional[_Iterable[str]] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class TaskInfo(_message.Message):
    __slots__ = ("name", "iteration", "has_iteration", "state", "exit_code", "reason", "shares", "history", "cpu_user_s", "cpu_system_s", "max_rss_kb", "stderr_tail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    HAS_ITERATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    CPU_USER_S_FIELD_NUMBER: _ClassVar[int]
    CPU_SYSTEM_S_FIELD_NUMBER: _ClassVar[int]
    MAX_RSS_KB_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    iteration: int
    has_iteration: bool
    state: JobState
    exit_code: int
    reason: str
    shares: _containers.RepeatedCompositeFieldContainer[NodeShare]
    history: _containers.RepeatedCompositeFieldContainer[StateChange]
    cpu_user_s: float
    cpu_system_s: float
    max_rss_kb: int
    stderr_tail: str
    def __init__(self, name: _Optional[str] = ..., iteration: _Optional[int] = ..., has_iteration: _Optional[bool] = ..., state: _Optional[_Union[JobState, str]] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., shares: _Optional[_Iterable[_Union[NodeShare, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[StateChange, _Mapping]]] = ..., cpu_user_s: _Optional[float] = ..., cpu_system_s: _Optional[float] = ..., max_rss_kb: _Optional[int] = ..., stderr_tail: _Optional[str] = ...) -> None: ...

class JobSummary(_message.Message):
    __slots__ = ("name", "state", "reason", "iterations", "iterations_done", "iterations_failed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_DONE_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FAILED_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: JobState
    reason: str
    iterations: int
    iterations_done: int
    iterations_failed: int
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., iterations: _Optional[int] = ..., iterations_done: _Optional[int] = ..., iterations_failed: _Optional[int] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("summary", "history", "tasks")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    summary: JobSummary
    history: _containers.RepeatedCompositeFieldContainer[StateChange]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskInfo]
    def __init__(self, summary: _Optional[_Union[JobSummary, _Mapping]] = ..., history: _Optional[_Iterable[_Union[StateChange, _Mapping]]] = ..., tasks: _Optional[_Iterable[_Union[TaskInfo, _Mapping]]] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("jobs", "base_dir", "copies", "copy_names", "parts_after")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    BASE_DIR_FIELD_NUMBER: _ClassVar[int]
    COPIES_FIELD_NUMBER: _ClassVar[int]
    COPY_NAMES_FIELD_NUMBER: _ClassVar[int]
    PARTS_AFTER_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobSpec]
    base_dir: str
    copies: _containers.RepeatedScalarFieldContainer[int]
    copy_names: _containers.RepeatedScalarFieldContainer[str]
    parts_after: int
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobSpec, _Mapping]]] = ..., base_dir: _Optional[str] = ..., copies: _Optional[_Iterable[int]] = ..., copy_names: _Optional[_Iterable[str]] = ..., parts_after: _Optional[int] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class StateCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    count: int
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("jobs", "tasks", "jobs_total", "jobs_unfinished", "nodes", "cores_total", "cores_used", "started_at", "finishing", "address", "notices", "waiting", "alloc_problems")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    JOBS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    JOBS_UNFINISHED_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CORES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CORES_USED_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHING_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    ALLOC_PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[StateCount]
    tasks: _containers.RepeatedCompositeFieldContainer[StateCount]
    jobs_total: int
    jobs_unfinished: int
    nodes: int
    cores_total: int
    cores_used: int
    started_at: float
    finishing: bool
    address: str
    notices: _containers.RepeatedScalarFieldContainer[str]
    waiting: _containers.RepeatedCompositeFieldContainer[ReasonCount]
    alloc_problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, jobs: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., tasks: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., jobs_total: _Optional[int] = ..., jobs_unfinished: _Optional[int] = ..., nodes: _Optional[int] = ..., cores_total: _Optional[int] = ..., cores_used: _Optional[int] = ..., started_at: _Optional[float] = ..., finishing: _Optional[bool] = ..., address: _Optional[str] = ..., notices: _Optional[_Iterable[str]] = ..., waiting: _Optional[_Iterable[_Union[ReasonCount, _Mapping]]] = ..., alloc_problems: _Optional[_Iterable[str]] = ...) -> None: ...

class ReasonCount(_message.Message):
    __slots__ = ("kind", "count")
    KIND_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    count: int
    def __init__(self, kind: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ("names", "with_tasks")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    WITH_TASKS_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    with_tasks: bool
    def __init__(self, names: _Optional[_Iterable[str]] = ..., with_tasks: _Optional[bool] = ...) -> None: ...

class InfoReply(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("states", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[JobState]
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[JobState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReply(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobSummary]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class CancelReply(_message.Message):
    __slots__ = ("canceled", "already_finished")
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_FINISHED_FIELD_NUMBER: _ClassVar[int]
    canceled: _containers.RepeatedScalarFieldContainer[str]
    already_finished: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, canceled: _Optional[_Iterable[str]] = ..., already_finished: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("names", "counts_only")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_ONLY_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    counts_only: bool
    def __init__(self, names: _Optional[_Iterable[str]] = ..., counts_only: _Optional[bool] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("changed", "watched_total", "watched_unfinished", "tasks", "master_finishing", "notices", "jobs")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    WATCHED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    WATCHED_UNFINISHED_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    MASTER_FINISHING_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    changed: _containers.RepeatedCompositeFieldContainer[JobSummary]
    watched_total: int
    watched_unfinished: int
    tasks: _containers.RepeatedCompositeFieldContainer[StateCount]
    master_finishing: bool
    notices: _containers.RepeatedScalarFieldContainer[str]
    jobs: _containers.RepeatedCompositeFieldContainer[StateCount]
    def __init__(self, changed: _Optional[_Iterable[_Union[JobSummary, _Mapping]]] = ..., watched_total: _Optional[int] = ..., watched_unfinished: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., master_finishing: _Optional[bool] = ..., notices: _Optional[_Iterable[str]] = ..., jobs: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ...) -> None: ...

class ResourcesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeResources(_message.Message):
    __slots__ = ("name", "cores", "cores_free", "gpus", "gpus_free", "memory_bytes", "online", "ends_at", "memory_free_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    CORES_FREE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FREE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    cores: int
    cores_free: int
    gpus: _containers.RepeatedScalarFieldContainer[str]
    gpus_free: int
    memory_bytes: int
    online: bool
    ends_at: float
    memory_free_bytes: int
    def __init__(self, name: _Optional[str] = ..., cores: _Optional[int] = ..., cores_free: _Optional[int] = ..., gpus: _Optional[_Iterable[str]] = ..., gpus_free: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., online: _Optional[bool] = ..., ends_at: _Optional[float] = ..., memory_free_bytes: _Optional[int] = ...) -> None: ...

class ResourcesReply(_message.Message):
    __slots__ = ("nodes", "nodes_expected", "nodes_missing")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODES_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    NODES_MISSING_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeResources]
    nodes_expected: int
    nodes_missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeResources, _Mapping]]] = ..., nodes_expected: _Optional[int] = ..., nodes_missing: _Optional[_Iterable[str]] = ...) -> None: ...

class AllocQueueSpec(_message.Message):
    __slots__ = ("nodes", "time_s", "max_allocations", "idle_timeout_s", "partition", "account", "extra_args")
    NODES_FIELD_NUMBER: _ClassVar[int]
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    MAX_ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_ARGS_FIELD_NUMBER: _ClassVar[int]
    nodes: int
    time_s: float
    max_allocations: int
    idle_timeout_s: float
    partition: str
    account: str
    extra_args: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodes: _Optional[int] = ..., time_s: _Optional[float] = ..., max_allocations: _Optional[int] = ..., idle_timeout_s: _Optional[float] = ..., partition: _Optional[str] = ..., account: _Optional[str] = ..., extra_args: _Optional[_Iterable[str]] = ...) -> None: ...

class AllocAddRequest(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[AllocQueueSpec]
    def __init__(self, queues: _Optional[_Iterable[_Union[AllocQueueSpec, _Mapping]]] = ...) -> None: ...

class AllocAddReply(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class AllocListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AllocQueueInfo(_message.Message):
    __slots__ = ("id", "spec", "removed", "problem", "next_try_at", "script_dir")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    NEXT_TRY_AT_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_DIR_FIELD_NUMBER: _ClassVar[int]
    id: int
    spec: AllocQueueSpec
    removed: bool
    problem: str
    next_try_at: float
    script_dir: str
    def __init__(self, id: _Optional[int] = ..., spec: _Optional[_Union[AllocQueueSpec, _Mapping]] = ..., removed: _Optional[bool] = ..., problem: _Optional[str] = ..., next_try_at: _Optional[float] = ..., script_dir: _Optional[str] = ...) -> None: ...

class AllocInfo(_message.Message):
    __slots__ = ("id", "queue", "job_id", "state", "nodes", "submitted_at", "started_at", "ended_at", "why", "ends_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    queue: int
    job_id: str
    state: str
    nodes: _containers.RepeatedScalarFieldContainer[str]
    submitted_at: float
    started_at: float
    ended_at: float
    why: str
    ends_at: float
    def __init__(self, id: _Optional[int] = ..., queue: _Optional[int] = ..., job_id: _Optional[str] = ..., state: _Optional[str] = ..., nodes: _Optional[_Iterable[str]] = ..., submitted_at: _Optional[float] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., why: _Optional[str] = ..., ends_at: _Optional[float] = ...) -> None: ...

class AllocListReply(_message.Message):
    __slots__ = ("queues", "allocations")
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[AllocQueueInfo]
    allocations: _containers.RepeatedCompositeFieldContainer[AllocInfo]
    def __init__(self, queues: _Optional[_Iterable[_Union[AllocQueueInfo, _Mapping]]] = ..., allocations: _Optional[_Iterable[_Union[AllocInfo, _Mapping]]] = ...) -> None: ...

class AllocRemoveRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class AllocRemoveReply(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, removed: _Optional[_Iterable[int]] = ...) -> None: ...

class FinishRequest(_message.Message):
    __slots__ = ("drain",)
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    drain: bool
    def __init__(self, drain: _Optional[bool] = ...) -> None: ...

class FinishReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Register(_message.Message):
    __slots__ = ("node", "cores", "gpus", "memory_bytes", "hostname", "pid", "version", "campaign", "running", "ended", "ends_at", "alloc_job_id")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    ALLOC_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    node: str
    cores: int
    gpus: _containers.RepeatedScalarFieldContainer[str]
    memory_bytes: int
    hostname: str
    pid: int
    version: str
    campaign: str
    running: _containers.RepeatedScalarFieldContainer[int]
    ended: _containers.RepeatedCompositeFieldContainer[TaskExited]
    ends_at: float
    alloc_job_id: str
    def __init__(self, node: _Optional[str] = ..., cores: _Optional[int] = ..., gpus: _Optional[_Iterable[str]] = ..., memory_bytes: _Optional[int] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., version: _Optional[str] = ..., campaign: _Optional[str] = ..., running: _Optional[_Iterable[int]] = ..., ended: _Optional[_Iterable[_Union[TaskExited, _Mapping]]] = ..., ends_at: _Optional[float] = ..., alloc_job_id: _Optional[str] = ...) -> None: ...

class TaskStarted(_message.Message):
    __slots__ = ("task_id", "pid", "time")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    pid: int
    time: float
    def __init__(self, task_id: _Optional[int] = ..., pid: _Optional[int] = ..., time: _Optional[float] = ...) -> None: ...

class TaskExited(_message.Message):
    __slots__ = ("task_id", "exit_code", "time", "error", "cpu_user_s", "cpu_system_s", "max_rss_kb", "stderr_tail")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CPU_USER_S_FIELD_NUMBER: _ClassVar[int]
    CPU_SYSTEM_S_FIELD_NUMBER: _ClassVar[int]
    MAX_RSS_KB_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    exit_code: int
    time: float
    error: str
    cpu_user_s: float
    cpu_system_s: float
    max_rss_kb: int
    stderr_tail: str
    def __init__(self, task_id: _Optional[int] = ..., exit_code: _Optional[int] = ..., time: _Optional[float] = ..., error: _Optional[str] = ..., cpu_user_s: _Optional[float] = ..., cpu_system_s: _Optional[float] = ..., max_rss_kb: _Optional[int] = ..., stderr_tail: _Optional[str] = ...) -> None: ...

class AgentEvents(_message.Message):
    __slots__ = ("started", "exited", "withdrawn")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    started: _containers.RepeatedCompositeFieldContainer[TaskStarted]
    exited: _containers.RepeatedCompositeFieldContainer[TaskExited]
    withdrawn: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, started: _Optional[_Iterable[_Union[TaskStarted, _Mapping]]] = ..., exited: _Optional[_Iterable[_Union[TaskExited, _Mapping]]] = ..., withdrawn: _Optional[_Iterable[int]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time",)
    TIME_FIELD_NUMBER: _ClassVar[int]
    time: float
    def __init__(self, time: _Optional[float] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("register", "events", "heartbeat")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    register: Register
    events: AgentEvents
    heartbeat: Heartbeat
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., events: _Optional[_Union[AgentEvents, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class Launch(_message.Message):
    __slots__ = ("task_id", "argv", "env", "wd", "stdin", "stdout", "stderr", "cores", "gpus", "walltime_s", "hostfile", "slurm_hostfile")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WD_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    WALLTIME_S_FIELD_NUMBER: _ClassVar[int]
    HOSTFILE_FIELD_NUMBER: _ClassVar[int]
    SLURM_HOSTFILE_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    wd: str
    stdin: str
    stdout: str
    stderr: str
    cores: _containers.RepeatedScalarFieldContainer[int]
    gpus: _containers.RepeatedScalarFieldContainer[str]
    walltime_s: float
    hostfile: str
    slurm_hostfile: bool
    def __init__(self, task_id: _Optional[int] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., wd: _Optional[str] = ..., stdin: _Optional[str] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., cores: _Optional[_Iterable[int]] = ..., gpus: _Optional[_Iterable[str]] = ..., walltime_s: _Optional[float] = ..., hostfile: _Optional[str] = ..., slurm_hostfile: _Optional[bool] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("heartbeat_interval_s", "campaign")
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    CAMPAIGN_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_s: float
    campaign: str
    def __init__(self, heartbeat_interval_s: _Optional[float] = ..., campaign: _Optional[str] = ...) -> None: ...

class Orders(_message.Message):
    __slots__ = ("launch", "cancel", "withdraw")
    LAUNCH_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_FIELD_NUMBER: _ClassVar[int]
    launch: _containers.RepeatedCompositeFieldContainer[Launch]
    cancel: _containers.RepeatedScalarFieldContainer[int]
    withdraw: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, launch: _Optional[_Iterable[_Union[Launch, _Mapping]]] = ..., cancel: _Optional[_Iterable[int]] = ..., withdraw: _Optional[_Iterable[int]] = ...) -> None: ...

class Shutdown(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class MasterMessage(_message.Message):
    __slots__ = ("welcome", "orders", "shutdown")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    orders: Orders
    shutdown: Shutdown
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., orders: _Optional[_Union[Orders, _Mapping]] = ..., shutdown: _Optional[_Union[Shutdown, _Mapping]] = ...) -> None: ...

class NodeUp(_message.Message):
    __slots__ = ("link", "message", "end", "ended_at")
    class End(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        END_UNSPECIFIED: _ClassVar[NodeUp.End]
        END_GOODBYE: _ClassVar[NodeUp.End]
        END_BROKEN: _ClassVar[NodeUp.End]
    END_UNSPECIFIED: NodeUp.End
    END_GOODBYE: NodeUp.End
    END_BROKEN: NodeUp.End
    LINK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    link: int
    message: bytes
    end: NodeUp.End
    ended_at: float
    def __init__(self, link: _Optional[int] = ..., message: _Optional[bytes] = ..., end: _Optional[_Union[NodeUp.End, str]] = ..., ended_at: _Optional[float] = ...) -> None: ...

class RelayUp(_message.Message):
    __slots__ = ("up", "time")
    UP_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    up: _containers.RepeatedCompositeFieldContainer[NodeUp]
    time: float
    def __init__(self, up: _Optional[_Iterable[_Union[NodeUp, _Mapping]]] = ..., time: _Optional[float] = ...) -> None: ...

class NodeDown(_message.Message):
    __slots__ = ("link", "message", "code", "details")
    LINK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    link: int
    message: bytes
    code: int
    details: str
    def __init__(self, link: _Optional[int] = ..., message: _Optional[bytes] = ..., code: _Optional[int] = ..., details: _Optional[str] = ...) -> None: ...

class RelayDown(_message.Message):
    __slots__ = ("down", "taken")
    DOWN_FIELD_NUMBER: _ClassVar[int]
    TAKEN_FIELD_NUMBER: _ClassVar[int]
    down: _containers.RepeatedCompositeFieldContainer[NodeDown]
    taken: int
    def __init__(self, down: _Optional[_Iterable[_Union[NodeDown, _Mapping]]] = ..., taken: _Optional[int] = ...) -> None: ...
