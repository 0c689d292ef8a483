"""Test helpers for scheduler authors: the conformance kit and job-running helpers.

A third-party scheduler proves it honours the Scheduler API with a few lines in
its own pytest suite::

    from jobbridge.testing import SchedulerConformance

    class TestMySchedulerConformance(SchedulerConformance):
        def make_scheduler(self, tmp_path):   # a new instance; the kit closes it
            return MyScheduler(...)

Override ``job_dir`` when jobs run on machines that do not see pytest's
``tmp_path`` (it must be a folder both sides see), and ``job_timeout`` for slow
queues.
"""

from ..scheduler import run_to_end, wait_for_status
from .conformance import SchedulerConformance

__all__ = ["SchedulerConformance", "run_to_end", "wait_for_status"]
