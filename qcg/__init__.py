"""pj.qcg: QCG-PilotJob's Python API on PJ. A QCG script runs after changing only its imports::

    from pj.qcg import LocalManager, Jobs            # was: from qcg.pilotjob.api.manager import ...
    from pj.qcg import QCGPJExecutor, BasicTemplate  # was: from qcg.pilotjob.executor_api... import ...

``LocalManager`` starts a PJ master and its agents; ``Manager`` talks to one already running;
``Jobs`` builds job descriptions; ``QCGPJExecutor`` takes job templates and returns futures. Names,
signatures, answers (dicts) and job states are QCG-PilotJob 0.14's; README's "Coming from
QCG-PilotJob" lists where PJ differs.
"""

from __future__ import annotations

from .errors import (
    ConnectionError,
    FileError,
    InternalError,
    InvalidJobDescriptionError,
    JobNotDefinedError,
    QCGPJMAError,
    ServiceError,
    TimeoutElapsed,
    WrongArgumentsError,
)
from .executor import BasicTemplate, QCGPJExecutor, QCGPJFuture, QCGPJTemplate
from .jobinfo import JobInfo
from .jobs import Jobs
from .manager import LocalManager, Manager

__all__ = [
    "BasicTemplate",
    "ConnectionError",
    "FileError",
    "InternalError",
    "InvalidJobDescriptionError",
    "JobInfo",
    "JobNotDefinedError",
    "Jobs",
    "LocalManager",
    "Manager",
    "QCGPJExecutor",
    "QCGPJFuture",
    "QCGPJMAError",
    "QCGPJTemplate",
    "ServiceError",
    "TimeoutElapsed",
    "WrongArgumentsError",
]
