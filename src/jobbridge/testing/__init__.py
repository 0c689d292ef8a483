"""Test helpers for scheduler authors: the conformance kit and job-running helpers.

A third-party scheduler proves it honours the Scheduler API with a few lines in
its own pytest suite::

    from jobbridge.testing import SchedulerConformance

    class TestMySchedulerConformance(SchedulerConformance):
        held_specification = ["-h"]   # native options holding a job (None: cannot)
        def make_scheduler(self, tmp_path):   # a new instance; the kit closes it
            return MyScheduler(...)

The kit checks, against the real system: exit codes and signals; stdout, stderr
and stdin files; environment and working directory; hostile arguments arriving
byte-exact; a command that cannot start (failed); paths and a state folder
holding ``$HOME``, ``$JOB_ID``, ``:`` and ``%``; a refused submission (None or
failed, never done); many jobs at once; bulk statuses equal to single ones;
unknown ids (exactly ``undetermined``); kills of a running job (its whole process
tree gone), of a job catching the warning signal, of a queued and of a held job
(ended at once, never run), of many jobs at once (``kill_jobs``), and a kill
after the job's end (which keeps its own end). Each test has a private
``JOBBRIDGE_HOME``.

Override ``job_dir`` when jobs run on machines that do not see pytest's
``tmp_path`` (it must be a folder both sides see), ``job_timeout`` for slow
queues, ``queued_specification`` with native options keeping a job queued
(docs/batch-backend.md shows a whole backend and its test).
"""

from ..scheduler import run_to_end, wait_for_status
from .conformance import SchedulerConformance

__all__ = ["SchedulerConformance", "run_to_end", "wait_for_status"]
