"""Status names shared by schedulers, engine, store and CLI.

Names and string values are those of soma-workflow, so that users and plug-in
authors moving from it find the same vocabulary.
"""

from __future__ import annotations

#: ``typing`` is not imported at run time: the batch job wrapper imports this module
#: before every job's command (see :mod:`jobbridge.schedulers.exits`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# --- job status (JOB_STATUS) -------------------------------------------------
NOT_SUBMITTED: Final = "not_submitted"
UNDETERMINED: Final = "undetermined"
QUEUED_ACTIVE: Final = "queued_active"
SYSTEM_ON_HOLD: Final = "system_on_hold"
USER_ON_HOLD: Final = "user_on_hold"
USER_SYSTEM_ON_HOLD: Final = "user_system_on_hold"
RUNNING: Final = "running"
SYSTEM_SUSPENDED: Final = "system_suspended"
USER_SUSPENDED: Final = "user_suspended"
USER_SYSTEM_SUSPENDED: Final = "user_system_suspended"
DONE: Final = "done"
FAILED: Final = "failed"
DELETE_PENDING: Final = "delete_pending"
KILL_PENDING: Final = "kill_pending"
SUBMISSION_PENDING: Final = "submission_pending"
WARNING: Final = "warning"

JOB_STATUS: Final = (
    NOT_SUBMITTED,
    UNDETERMINED,
    QUEUED_ACTIVE,
    SYSTEM_ON_HOLD,
    USER_ON_HOLD,
    USER_SYSTEM_ON_HOLD,
    RUNNING,
    SYSTEM_SUSPENDED,
    USER_SUSPENDED,
    USER_SYSTEM_SUSPENDED,
    DONE,
    FAILED,
    DELETE_PENDING,
    KILL_PENDING,
    SUBMISSION_PENDING,
    WARNING,
)
#: A job in one of these states will not change any more.
ENDED_JOB_STATUS: Final = frozenset({DONE, FAILED})

# --- job exit status (JOB_EXIT_STATUS) ---------------------------------------
EXIT_UNDETERMINED: Final = "exit_status_undetermined"
EXIT_ABORTED: Final = "aborted"
FINISHED_REGULARLY: Final = "finished_regularly"
FINISHED_TERM_SIG: Final = "finished_signal"
FINISHED_UNCLEAR_CONDITIONS: Final = "finished_unclear_condition"
USER_KILLED: Final = "killed_by_user"
EXIT_NOTRUN: Final = "aborted_before_running"

JOB_EXIT_STATUS: Final = (
    EXIT_UNDETERMINED,
    EXIT_ABORTED,
    FINISHED_REGULARLY,
    FINISHED_TERM_SIG,
    FINISHED_UNCLEAR_CONDITIONS,
    USER_KILLED,
    EXIT_NOTRUN,
)

# --- workflow status (WORKFLOW_STATUS) ---------------------------------------
WORKFLOW_NOT_STARTED: Final = "workflow_not_started"
WORKFLOW_IN_PROGRESS: Final = "workflow_in_progress"
WORKFLOW_DONE: Final = "workflow_done"
#: Not in soma-workflow (whose stopped workflows end ``workflow_done``): stopped by
#: ``jobbridge stop`` or a signal to ``jobbridge run``; only ``restart`` runs it again.
WORKFLOW_STOPPED: Final = "workflow_stopped"

WORKFLOW_STATUS: Final = (
    WORKFLOW_NOT_STARTED,
    WORKFLOW_IN_PROGRESS,
    WORKFLOW_DONE,
    WORKFLOW_STOPPED,
    DELETE_PENDING,
    WARNING,
)

#: Resource id used when no configuration file names one.
DEFAULT_RESOURCE: Final = "localhost"
#: Scheduler type used when the configuration does not name one.
DEFAULT_SCHEDULER_TYPE: Final = "local_basic"
