"""Slurm: the ``slurm`` scheduler, driving sbatch, squeue, sacct and scancel.

A :class:`.BatchScheduler` backend (safe scripts, bulk polling, retries, the job
wrapper's exit file). What is Slurm's own:

- **one squeue per poll** for every tracked id (``-j a,b,..``, or the user's jobs
  when the list would not fit in one argument), ``--states=all`` so that ended
  jobs are seen until ``MinJobAge``; holds are told apart by squeue's reason;
- **one sacct per poll** for the jobs that ended or left squeue: ExitCode
  ``code:signal``, State, and the usage (TotalCPU, MaxRSS of the batch step,
  Elapsed, AllocCPUS); chunked under argv limits, bounded by the jobs' submission
  time (sacct with ``-j`` would otherwise scan all history since 1970);
- **without accounting** (``accounting_storage/none``, or sacct saying it is
  disabled) squeue alone gives states, the wrapper's exit file the exit codes; the
  poll interval is kept well under ``MinJobAge`` so that no end goes unseen.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .. import constants
from ..configuration import Configuration
from ..model import EngineJob
from .batch import ArraySupport, BatchScheduler, CommandError, JobRecord, SystemKill
from .common import parse_duration, parse_size, round_up
from .exits import hms

log = logging.getLogger(__name__)

#: Longest comma-joined id or name list given as one argument (Linux: 128 KiB).
ARG_LIMIT = 64_000
#: sacct's start time is this much before the earliest submission (clock skew).
START_MARGIN = 3600.0
#: Lower bound of a history query for jobs whose files are gone.
UNKNOWN_SUBMISSION_AGE = 7 * 86400.0
#: Fields asked of squeue and sacct (the order the parsers expect).
SQUEUE_FORMAT = "JobArrayID:|,State:|,exit_code:|,Reason:|"
SACCT_FIELDS = "JobIDRaw,State,ExitCode,TotalCPU,MaxRSS,Elapsed,AllocCPUS,JobID"
_ACCOUNTING_OFF = "accounting storage is disabled"

ABORTED = constants.EXIT_ABORTED
_WAITING = {constants.QUEUED_ACTIVE, constants.USER_ON_HOLD, constants.SYSTEM_ON_HOLD,
            constants.USER_SYSTEM_ON_HOLD}


class SlurmScheduler(BatchScheduler):
    """Jobs on a Slurm cluster."""

    name: ClassVar[str] = "slurm"
    usage_source: ClassVar[str] = "sacct"
    #: Every Slurm job state (``squeue --states``). Ends are DONE; the exit
    #: information then decides DONE or FAILED, ABNORMAL_ENDS overrule it.
    STATES: ClassVar[Mapping[str, str]] = {
        "PENDING": constants.QUEUED_ACTIVE,  # or a hold, by squeue's reason (HOLDS)
        "CONFIGURING": constants.QUEUED_ACTIVE,  # allocated, nodes booting
        "RUNNING": constants.RUNNING,
        "RESIZING": constants.RUNNING,
        "SIGNALING": constants.RUNNING,  # a signal is being sent to it
        "COMPLETING": constants.RUNNING,  # ended, processes and epilog still running
        "STAGE_OUT": constants.RUNNING,  # ended, burst buffer staging out
        "SUSPENDED": constants.SYSTEM_SUSPENDED,  # preemption or an operator
        "STOPPED": constants.USER_SUSPENDED,  # SIGSTOP (scancel -s STOP), keeps its nodes
        "PREEMPTED": constants.QUEUED_ACTIVE,  # to be requeued (sacct: see _parse_state)
        "REQUEUED": constants.QUEUED_ACTIVE,
        "REQUEUE_FED": constants.QUEUED_ACTIVE,
        "REQUEUE_HOLD": constants.USER_SYSTEM_ON_HOLD,  # requeued held, by user or admin
        "SPECIAL_EXIT": constants.SYSTEM_ON_HOLD,  # requeued held after a special exit
        "RESV_DEL_HOLD": constants.SYSTEM_ON_HOLD,  # its reservation was deleted
        "REVOKED": constants.UNDETERMINED,  # federation: runs in a sibling cluster
        "COMPLETED": constants.DONE,
        "FAILED": constants.DONE,  # non-zero exit or signal: the exit info tells
        "CANCELLED": constants.DONE,
        "TIMEOUT": constants.DONE,
        "OUT_OF_MEMORY": constants.DONE,
        "NODE_FAIL": constants.DONE,
        "BOOT_FAIL": constants.DONE,
        "DEADLINE": constants.DONE,
    }
    ABNORMAL_ENDS: ClassVar[Mapping[str, tuple[str, str]]] = {
        "CANCELLED": (constants.USER_KILLED, "CANCELLED: scancel"),
        "TIMEOUT": (ABORTED, "TIMEOUT: killed at its time limit"),
        "OUT_OF_MEMORY": (ABORTED, "OUT_OF_MEMORY: killed for exceeding its memory"),
        "NODE_FAIL": (ABORTED, "NODE_FAIL: one of its nodes failed"),
        "BOOT_FAIL": (ABORTED, "BOOT_FAIL: its nodes could not boot"),
        "DEADLINE": (ABORTED, "DEADLINE: ended at its deadline"),
        "PREEMPTED": (ABORTED, "PREEMPTED and not requeued"),
    }
    RESERVED_OPTIONS: ClassVar[Mapping[str, str]] = dict.fromkeys(
        ("--job-name", "-J"), "jobbridge names the job itself (the workflow's job id and "
        "the tag that finds it again after an engine crash); see the job in squeue by "
        "its workflow job id")
    #: scancel: SIGCONT and SIGTERM to every process of the job, SIGKILL KillWait later.
    KILL: ClassVar[SystemKill] = SystemKill("process_group", warning=signal.SIGTERM)
    #: squeue reasons of a pending job that mean it is held.
    HOLDS: ClassVar[Mapping[str, str]] = {
        "JobHeldUser": constants.USER_ON_HOLD,
        "JobHeldAdmin": constants.SYSTEM_ON_HOLD,
        "job requeued in held state": constants.USER_SYSTEM_ON_HOLD,
        "launch failed requeued held": constants.SYSTEM_ON_HOLD,
    }

    #: ``sbatch --array=0-N``; an element is ``ID_IDX`` in every command.
    ARRAY: ClassVar[ArraySupport | None] = ArraySupport(
        ("--array={first}-{last}",), "SLURM_ARRAY_TASK_ID")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.accounting = True  # until scontrol or sacct say otherwise
        self.min_job_age: float | None = None
        self.max_array_size: int | None = None
        self._slurm_config_read = False

    @classmethod
    def build_scheduler(cls, config: Configuration) -> SlurmScheduler:
        """Keys: those of the batch base (``native_specification`` goes to sbatch)."""
        return cls(**cls.options_from_config(config))

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if shutil.which("sbatch") is None:
            return False, "sbatch is not on PATH (is this a Slurm submit host?)"
        return True, ""

    # --- submission ------------------------------------------------------------------------
    def submit_argv(self, job: EngineJob, script: Path, name: str) -> list[str]:
        argv = ["sbatch", "--parsable", f"--job-name={name}",
                f"--output={slurm_filename(self.batch_output_path(name))}",
                f"--chdir={script.parent}"]  # not the engine's directory, which may be gone
        if job.queue:
            argv.append(f"--partition={job.queue}")
        argv += resource_args(job)
        return [*argv, *self.native_specification, *job.native_args(), str(script)]

    def parse_submit_output(self, stdout: str) -> str:
        """``--parsable`` prints ``id`` or ``id;cluster``."""
        return stdout.strip().splitlines()[-1].split(";")[0].strip()

    def array_chunk(self) -> int:
        """``MaxArraySize`` of ``scontrol show config`` (indexes go up to one less)."""
        self._read_slurm_config()
        return self.max_array_size or super().array_chunk()

    def cancel_argv(self, scheduler_job_id: str) -> list[str]:
        return ["scancel", scheduler_job_id]

    def cancel_many_argv(self, scheduler_job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *scheduler_job_ids]

    def limit_notes(self, job: EngineJob) -> list[str]:
        notes: list[str] = []
        resource_args(job, notes)
        return notes

    def refusal_text(self, error: CommandError) -> str:
        """sbatch's words, without its ``Batch job submission failed:`` preamble."""
        return super().refusal_text(error).replace("Batch job submission failed: ", "")

    # --- status ----------------------------------------------------------------------------
    def status_argv(self, scheduler_job_ids: Sequence[str]) -> list[str]:
        ids = ",".join(scheduler_job_ids)
        which = f"--jobs={ids}" if len(ids) <= ARG_LIMIT else f"--user={os.getuid()}"
        return ["squeue", "--noheader", "--array", "--states=all", f"--Format={SQUEUE_FORMAT}",
                which]

    def query_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        self._read_slurm_config()
        try:
            # no retries within a poll: the next poll is the retry (while slurmctld is
            # down every call takes ~10 s to fail, and the engine waits on this one)
            stdout = self.run("status", self.status_argv(scheduler_job_ids), retries=0).stdout
        except CommandError as error:
            if "invalid job id" in str(error).lower():  # squeue -j ONE_UNKNOWN_ID fails
                return {}
            raise
        return parse_squeue(stdout)

    def record_status(self, record: JobRecord) -> str | None:
        if record.exit_status is not None:  # sacct's final word (a PREEMPTED end)
            return constants.DONE
        status = self.STATES.get(record.state)
        if status in _WAITING:
            return self.HOLDS.get(record.reason or "", status)
        return status

    def ended_records(self, scheduler_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        start = _start_time(self.submission_time(scheduler_job_ids))
        records: dict[str, JobRecord] = {}
        for chunk in chunks(scheduler_job_ids):
            stdout = self._sacct("history", f"--starttime={start}", f"--jobs={','.join(chunk)}",
                                 f"--format={SACCT_FIELDS}")
            if stdout is None:
                return {}
            records.update(parse_sacct(stdout))
        wanted = set(scheduler_job_ids)
        return {job_id: record for job_id, record in records.items() if job_id in wanted}

    def find_by_name(self, names: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in chunks(names):
            found.update(_names_and_ids(self.run("find", [
                "squeue", "--noheader", "--states=all", "--Format=JobArrayID:|,Name:|",
                f"--name={','.join(chunk)}"]).stdout))
        missing = [name for name in names if name not in found]
        start = _start_time(self.submission_time(names=missing))
        for chunk in chunks(missing):
            stdout = self._sacct("find", "--allocations", f"--starttime={start}",
                                 f"--name={','.join(chunk)}", "--format=JobID,JobName")
            found.update(_names_and_ids(stdout or ""))
        return found

    def submission_limit(self) -> int | None:
        """``MaxSubmitJobs`` (or ``GrpSubmitJobs``) of this user's associations, from
        one ``sacctmgr`` call; None when unset or unknown (no accounting)."""
        try:
            stdout = self.run("limits", [
                "sacctmgr", "--noheader", "--parsable2", "show", "assoc", "where",
                f"user={getpass.getuser()}", "format=MaxSubmitJobs,GrpSubmitJobs"],
                retries=0).stdout
        except CommandError as error:
            log.info("slurm: no submission limit known: %s", error)
            return None
        return min((int(value) for line in stdout.splitlines() for value in line.split("|")
                    if value.strip().isdigit()), default=None)

    def _sacct(self, kind: str, *args: str) -> str | None:
        """sacct's output, or None without accounting (then never asked again)."""
        if not self.accounting:
            return None
        try:
            # no retries: a poll's or a lookup's caller asks again later
            return self.run(kind, ["sacct", "--noheader", "--parsable2", *args],
                            retries=0).stdout
        except CommandError as error:
            if _ACCOUNTING_OFF not in str(error):
                raise
            self._accounting_off(str(error))
            return None

    def _read_slurm_config(self) -> None:
        """MinJobAge and the accounting type, from ``scontrol show config``, once."""
        if self._slurm_config_read:
            return
        try:
            config = parse_config(self.run("config", ["scontrol", "show", "config"],
                                           retries=0).stdout)
        except CommandError as error:
            log.warning("slurm: cannot read scontrol show config (the next poll "
                        "retries): %s", error)
            return
        self._slurm_config_read = True
        if config.get("AccountingStorageType", "").endswith("/none"):
            self._accounting_off("AccountingStorageType=accounting_storage/none")
        size = config.get("MaxArraySize", "")
        if size.isdigit() and int(size) > 1:
            self.max_array_size = int(size)  # indexes 0 to MaxArraySize - 1
        age = config.get("MinJobAge", "").split()
        if age and age[0].isdigit() and int(age[0]) > 0:  # 0: finished jobs never purged
            self.min_job_age = float(age[0])
            # a job's end must be seen in squeue before Slurm forgets it
            self.max_interval = max(self.min_interval, min(self.max_interval,
                                                           self.min_job_age / 4))

    def _accounting_off(self, why: str) -> None:
        if self.accounting:
            log.info("slurm: no accounting (%s): states from squeue, exit codes "
                     "from the job wrapper", why)
        self.accounting = False


# --- sbatch arguments ------------------------------------------------------------------------
def resource_args(job: EngineJob, notes: list[str] | None = None) -> list[str]:
    """sbatch options for the job's resources and parallel layout; what they round
    goes to ``notes`` (``--time`` is in whole minutes).

    ``native`` and ``OpenMP`` jobs get one task per node with ``cpu_per_node`` CPUs;
    ``MPI`` jobs ``cpu_per_node`` tasks per node.
    """
    argv = []
    parallel = job.parallel_job_info
    if parallel:
        nodes = int(parallel.get("nodes_number", 1))
        cpus = int(parallel.get("cpu_per_node", 1))
        argv.append(f"--nodes={nodes}")
        if parallel.get("config_name") == "MPI":
            argv.append(f"--ntasks-per-node={cpus}")
        else:
            argv += ["--ntasks-per-node=1", f"--cpus-per-task={cpus}"]
    elif job.resources.get("cpus"):
        argv.append(f"--cpus-per-task={job.resources['cpus']}")
    if job.resources.get("memory_mb"):
        argv.append(f"--mem={job.resources['memory_mb']}M")
    walltime = job.resources.get("walltime_s")
    if walltime:
        minutes = round_up(walltime, 60, notes, f"walltime_s {walltime}",
                           "{0} min (sbatch --time={0}: Slurm's limits are whole minutes)")
        argv.append(f"--time={minutes}")
    return argv


def slurm_filename(path: Path) -> str:
    """A path as an sbatch filename pattern: ``%`` would start a replacement symbol."""
    return str(path).replace("%", "%%")


def chunks(items: Sequence[str], limit: int = ARG_LIMIT) -> Iterator[list[str]]:
    """Consecutive lists whose comma-joined text stays under ``limit`` characters."""
    chunk: list[str] = []
    size = 0
    for item in items:
        if chunk and size + len(item) + 1 > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        yield chunk


def _start_time(submitted: float | None) -> str:
    since = (submitted if submitted is not None
             else time.time() - UNKNOWN_SUBMISSION_AGE) - START_MARGIN
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since))


# --- parsers -----------------------------------------------------------------------------------
def parse_squeue(text: str) -> dict[str, JobRecord]:
    """``squeue --Format=JobID:|,State:|,exit_code:|,Reason:|`` lines -> records.

    ``exit_code`` is a wait status (``1792`` = exit 7, ``9`` = SIGKILL); the reason of
    an ended job is kept (``TimeLimit``), that of a pending one tells holds.
    """
    records = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 4:
            continue
        job_id, state, raw_status, reason = (field.strip() for field in fields[:4])
        record = JobRecord(state, reason=None if reason in ("None", "") else reason)
        if SlurmScheduler.STATES.get(state) == constants.DONE:
            record.reason = f"{state} ({reason})" if record.reason else state
            if raw_status.isdigit():
                status = int(raw_status)
                if os.WIFSIGNALED(status):
                    record.term_sig = os.WTERMSIG(status)
                else:
                    record.exit_value = os.WEXITSTATUS(status)
        records[job_id] = record
    return records


def parse_sacct(text: str) -> dict[str, JobRecord]:
    """``sacct --parsable2 --format=SACCT_FIELDS`` lines (jobs and their steps) -> records.

    The job's line gives State, ExitCode, TotalCPU, Elapsed and AllocCPUS; MaxRSS is
    only known for steps: the batch step's is the job's (the wrapper runs there).
    """
    records: dict[str, JobRecord] = {}
    usage: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 7:
            continue
        job_id, state_text, exit_code, total_cpu, max_rss, elapsed, cpus = fields[:7]
        if len(fields) > 7 and "_" in fields[7]:  # an array's element: ID_IDX, as submitted
            job_id = fields[7]
        job, _, step = job_id.partition(".")
        items = usage.setdefault(job, {})
        if step:
            size = parse_size(max_rss)
            if step == "batch" and size is not None:
                items["mem"] = f"{round(size / 1024)}kb"
            continue
        state = state_text.split()[0] if state_text else "UNKNOWN"
        record = records[job] = JobRecord(state, reason=state_text)
        if SlurmScheduler.STATES.get(state) != constants.DONE:
            if state == "PREEMPTED":  # sacct is asked once it left squeue: not requeued
                record.exit_status = ABORTED
            continue
        code, _, sig = exit_code.partition(":")
        if sig.isdigit() and int(sig):
            record.term_sig = int(sig)
        elif code.isdigit():
            record.exit_value = int(code)
        for key, exact, value in (("cput", "cpu_s", total_cpu), ("walltime", "wall_s", elapsed)):
            seconds = parse_duration(value)
            if seconds is not None:
                items[key] = hms(int(seconds))  # whole seconds, as sacct shows them
                items[exact] = f"{seconds:.3f}"
        if cpus.isdigit():
            items["ncpus"] = cpus
    for job, record in records.items():
        items = usage[job]
        if SlurmScheduler.STATES.get(record.state) == constants.DONE:
            record.resource_usage = " ".join(
                f"{key}={items[key]}" for key in ("cput", "mem", "walltime", "ncpus", "cpu_s",
                                                  "wall_s")
                if key in items) or None
    return records


def parse_config(text: str) -> dict[str, str]:
    """``scontrol show config`` -> ``{key: value}``."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            config[key.strip()] = value.strip()
    return config


def _names_and_ids(text: str) -> dict[str, str]:
    """``id|name`` lines -> ``{name: id}`` (the latest id of a name wins); an array's
    elements (``ID_IDX``, ``ID_[0-9]``) give the array's id."""
    found = {}
    for line in text.splitlines():
        job_id, _, name = (field.strip() for field in line.partition("|"))
        job_id = job_id.partition("_")[0]
        name = name.rstrip("|")
        if name and job_id:
            found[name] = job_id
    return found
