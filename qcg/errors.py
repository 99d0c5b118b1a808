"""QCG-PilotJob's API errors, under the names QCG scripts catch.

``ConnectionError`` is raised where QCG's service refused a request (an unknown job, a name
already used): its message starts with "Request failed - " as QCG's does. Each also derives from
the matching Python or PJ error where one exists, so PJ-aware code may catch those instead.
"""

from __future__ import annotations

__all__ = [
    "ConnectionError",
    "FileError",
    "InternalError",
    "InvalidJobDescriptionError",
    "JobNotDefinedError",
    "QCGPJMAError",
    "ServiceError",
    "TimeoutElapsed",
    "WrongArgumentsError",
]


class QCGPJMAError(Exception):
    """Base of the errors of QCG-PilotJob's API (TimeoutElapsed excepted, as in QCG)."""


class InternalError(QCGPJMAError):
    """An answer of an unexpected shape."""


class InvalidJobDescriptionError(QCGPJMAError, ValueError):
    """A job description was refused before it was sent (a bad attribute, a name used twice...)."""


class JobNotDefinedError(QCGPJMAError, KeyError):
    """``Jobs.remove`` of a name that is not in the group."""


class ConnectionError(QCGPJMAError):  # QCG's name (shadows the builtin), which QCG scripts catch
    """The master refused the request or cannot be reached."""


class WrongArgumentsError(QCGPJMAError, ValueError):
    """Bad arguments to LocalManager (an unknown or malformed server argument)."""


class FileError(QCGPJMAError, OSError):
    """A job file could not be read or written."""


class ServiceError(QCGPJMAError):
    """The local master or its agents could not be started."""


class TimeoutElapsed(TimeoutError):
    """A wait ran past its ``timeout``. (In QCG a plain Exception; here also a TimeoutError.)"""
