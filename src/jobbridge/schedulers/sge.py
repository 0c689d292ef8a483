"""Grid Engine through its commands: the ``sge`` scheduler, for sites without DRMAA.

A :class:`.BatchScheduler` backend (the job wrapper, bulk polling, retries);
Grid Engine's formats and exit rules come from :mod:`.gridengine`. The ``drmaa``
scheduler is its subclass, submitting and holding through DRMAA. What is its own:

- ``qsub -terse`` prints the job id; ``-wd`` and ``-o`` name the job's private
  folder, never a user's path. Grid Engine expands ``$HOME``, ``$JOB_ID``... in
  them without any escape, so a state folder holding a ``$`` is refused; it reads
  ``-o host:path``, so the path gets an empty host (``:path``);
- one ``qstat -xml`` a poll for every job (pending and running), one ``qacct``
  for those that left it (``-j '*'`` for several: one read of the accounting
  file); a job ended at its ``h_rt`` or ``h_vmem`` is a TIMEOUT or OUT_OF_MEMORY;
- ``qdel`` (one for many jobs) SIGKILLs the job script's process group at once
  (:attr:`KILL`); ``hold_job`` / ``release_job``: ``qhold`` / ``qrls``.
"""

from __future__ import annotations

import re
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .. import constants
from ..configuration import Configuration
from ..errors import ConfigurationError
from ..model import EngineJob
from . import gridengine
from .batch import ArraySupport, BatchScheduler, CommandError, JobRecord, SystemKill

#: The native state of a job read from accounting (it left the queue).
ENDED = "ENDED"
#: qacct's exit status when it has no record of a job (yet).
QACCT_ANSWERED = (0, 1)


class SGEScheduler(BatchScheduler):
    """Jobs on a Grid Engine cluster (SGE, Son of Grid Engine, OGS, Univa/Altair)."""

    name: ClassVar[str] = "sge"
    CONFIG_KEYS = BatchScheduler.CONFIG_KEYS | {"parallel_environment", "memory_resource"}
    KILL: ClassVar[SystemKill] = SystemKill("process_group")
    RESERVED_OPTIONS: ClassVar[Mapping[str, str]] = {
        "-N": "jobbridge names the job itself (the workflow's job id and the tag that finds "
              "it again after an engine crash)"}
    #: ``qsub -t 1-N``; an element is ``NUMBER.TASK`` in qstat, qacct and qdel.
    ARRAY: ClassVar[ArraySupport | None] = ArraySupport(
        ("-t", "{first}-{last}"), "SGE_TASK_ID", element="{id}.{index}", first=1)
    usage_source: ClassVar[str] = "Grid Engine accounting (qacct)"
    peak_memory_item: ClassVar[str] = "vmem"  # h_vmem bounds the job's virtual memory

    def __init__(self, *, parallel_environment: str = "smp", memory_resource: str = "h_vmem",
                 **options: Any) -> None:
        super().__init__(**options)
        if "$" in str(self.state_dir):
            raise ConfigurationError(
                f"sge: the state folder {self.state_dir} holds a '$', which Grid Engine would "
                "expand in qsub's -wd and -o: set JOBBRIDGE_HOME to a folder without one")
        self.parallel_environment = parallel_environment
        self.memory_resource = memory_resource
        self._max_tasks: int | None = None

    @classmethod
    def build_scheduler(cls, config: Configuration) -> SGEScheduler:
        """Keys: ``parallel_environment`` (default ``smp``), ``memory_resource``
        (default ``h_vmem``, per slot; empty: none), and the batch base's keys."""
        return cls(parallel_environment=config.get("parallel_environment") or "smp",
                   memory_resource=config.get("memory_resource", "h_vmem") or "",
                   **cls.options_from_config(config))

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if shutil.which("qsub") is None or shutil.which("qacct") is None:
            return False, "qsub or qacct is not on PATH (is this a Grid Engine submit host?)"
        return True, ""

    def submit_argv(self, job: EngineJob, script: Path, name: str) -> list[str]:
        return ["qsub", "-terse", "-N", name, "-wd", str(script.parent), "-j", "y",
                "-o", f":{self.batch_output_path(name)}",
                *gridengine.resource_options(job, self.parallel_environment,
                                             self.memory_resource),
                *self.native_specification, *job.native_args(), str(script)]

    def parse_submit_output(self, stdout: str) -> str:
        """``-terse`` prints ``NUMBER``, or ``NUMBER.1-N:1`` for an array."""
        return super().parse_submit_output(stdout).partition(".")[0]

    def array_chunk(self) -> int:
        """``max_aj_tasks`` of ``qconf -sconf`` (0: no limit), read once."""
        if self._max_tasks is None:
            try:
                config = self.run("config", ["qconf", "-sconf"], retries=0).stdout
            except CommandError:
                return super().array_chunk()
            found = re.search(r"^max_aj_tasks\s+(\d+)", config, re.MULTILINE)
            self._max_tasks = (int(found.group(1)) if found and int(found.group(1)) > 0
                               else super().array_chunk())
        return self._max_tasks

    def limit_notes(self, job: EngineJob) -> list[str]:
        notes: list[str] = []
        gridengine.Limits.of_job(job, self.memory_resource, notes)
        return notes

    def cancel_argv(self, scheduler_job_id: str) -> list[str]:
        return ["qdel", scheduler_job_id]

    def cancel_many_argv(self, scheduler_job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *scheduler_job_ids]

    def hold_job(self, scheduler_job_id: str) -> None:
        """Keep a queued job from starting (``user_on_hold``) until :meth:`release_job`."""
        self.run("hold", ["qhold", scheduler_job_id])

    def release_job(self, scheduler_job_id: str) -> None:
        self.run("release", ["qrls", scheduler_job_id])

    def query_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        jobs = self._queue()
        return {job_id: JobRecord(jobs[job_id][0]) for job_id in scheduler_job_ids
                if job_id in jobs}

    def record_status(self, record: JobRecord) -> str | None:
        return constants.DONE if record.state == ENDED else gridengine.job_status(record.state)

    def ended_records(self, scheduler_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        argv = gridengine.accounting_query(scheduler_job_ids)
        if argv is None:
            return {}
        output = self.run("history", argv, retries=0, ok_codes=QACCT_ANSWERED).stdout
        return {job_id: _ended(record) for job_id, record
                in gridengine.accounting_records(output, scheduler_job_ids).items()}

    def find_by_name(self, names: Sequence[str]) -> dict[str, str]:
        """Queued or running jobs (qstat), else ended ones (qacct, once it flushed)."""
        found = {name: job_id for job_id, (_, name) in self._queue("find").items()
                 if name in names and "." not in job_id}  # NUMBER.TASK: the array's too
        missing = [name for name in names if name not in found]
        if missing:  # a job that ended a moment ago is in accounting after the next flush
            config = self.run("find", ["qconf", "-sconf"], check=False).stdout
            time.sleep(gridengine.flush_seconds(config) + 1)
            pattern = missing[0] if len(missing) == 1 else "*"
            ended = gridengine.named_job_numbers(self.run(
                "find", ["qacct", "-j", pattern], ok_codes=QACCT_ANSWERED).stdout)
            found.update((name, ended[name]) for name in missing if name in ended)
        return found

    def _queue(self, kind: str = "status") -> dict[str, tuple[str, str]]:
        """``{job number: (state, name)}`` of every pending or running job."""
        # no retries within a poll: the next poll is the retry
        stdout = self.run(kind, ["qstat", "-xml"], retries=0).stdout
        try:
            return gridengine.parse_qstat_xml(stdout)
        except ET.ParseError as error:
            raise CommandError(f"qstat: unreadable output: {error}", transient=True) from None


def _ended(record: dict[str, str]) -> JobRecord:
    """A qacct record as a JobRecord: its exit, usage, and an abnormal end's reason."""
    info = gridengine.exit_info_from_accounting(record, killed=False)
    abnormal = info.exit_status == constants.EXIT_ABORTED
    return JobRecord(ENDED, exit_value=info.exit_value, term_sig=info.term_sig,
                     resource_usage=info.resource_usage, reason=info.reason,
                     exit_status=info.exit_status if abnormal else None, ran=info.ran)
