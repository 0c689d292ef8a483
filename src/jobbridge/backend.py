"""What a batch backend needs, in one public import (docs/batch-backend.md).

A scheduler for a command-driven batch system is a small subclass of
:class:`BatchScheduler`: tables (native states, abnormal ends, how the system
kills) and a few hooks (the argv of the submit and cancel commands, one bulk
status query parsed into :class:`JobRecord`). The base does the rest: safe batch
scripts (the job wrapper), bulk polling, retries, re-attachment, exit info.
:mod:`jobbridge.testing` proves the result against the real system.

Everything here is kept stable for backends outside jobbridge; the modules it
comes from are not.
"""

from . import constants
from .configuration import Configuration
from .errors import ConfigurationError, JobbridgeError
from .model import EngineJob, ExitInfo
from .schedulers.batch import (
    ArraySupport,
    BatchScheduler,
    CommandError,
    CommandResult,
    JobRecord,
    SystemKill,
)
from .schedulers.common import parse_duration, parse_size, safe_name
from .schedulers.exits import format_resource_usage, hms

__all__ = [
    "ArraySupport",
    "BatchScheduler",
    "CommandError",
    "CommandResult",
    "Configuration",
    "ConfigurationError",
    "EngineJob",
    "ExitInfo",
    "JobRecord",
    "JobbridgeError",
    "SystemKill",
    "constants",
    "format_resource_usage",
    "hms",
    "parse_duration",
    "parse_size",
    "safe_name",
]
