"""Grid Engine's output and exit rules, shared by the ``drmaa`` and ``sge`` schedulers.

Format knowledge only, no policy; each rule was checked on the real Grid Engine
8.1.9 (tests/data/sge holds recorded output):

- **state letters** of ``qstat``: ``qw`` queued, ``hqw`` held, ``t``/``r``
  running, ``s``/``S``/``T`` suspended, ``d`` being deleted, ``E`` an error
  that holds the job until ``qmod -cj`` clears it;
- **``qstat -xml``**: a ``job_list`` element per pending or running job;
- **``qacct -j``** (and ``qstat -j``): ``key value`` records between ``=====`` lines;
  durations ``4s``, ``1.010s``; sizes ``1.711MB``; ``start_time -/-`` when the job
  never ran; ``category`` holds the job's limits (``-l h_rt=5,h_vmem=1G``);
- **``failed``** codes: 0 none, 1-36 Grid Engine failed before or while starting
  the job (its words follow the code), 37 the qmaster ended it at its ``h_rt``,
  ``h_cpu`` or ``h_vmem`` limit, 100 it ended after a signal. Which limit: its
  wallclock or ``maxvmem`` against its limits (:class:`Limits`), as TIMEOUT or
  OUT_OF_MEMORY;
- **units**: qacct's sizes are binary (``1.711MB``); in limits, ``150M`` is binary
  and ``150m`` decimal.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import constants
from ..model import EngineJob, ExitInfo
from .common import parse_duration, parse_size, round_up
from .exits import format_resource_usage

#: ``failed`` codes: none, the qmaster enforced a limit, after the job (a signal).
FAILED_NONE, FAILED_LIMIT, FAILED_AFTER_JOB = 0, 37, 100


def job_status(state: str) -> str | None:
    """The JOB_STATUS of a ``qstat`` state (``qw``, ``hqw``, ``r``, ``dr``, ``Eqw``...);
    None for letters Grid Engine does not print."""
    if not state or not set(state) <= set("dEhrRsStTwq"):
        return None
    if "E" in state:  # waits for an operator, as a hold does
        return constants.SYSTEM_ON_HOLD
    if "s" in state:
        return constants.USER_SUSPENDED
    if "S" in state or "T" in state:
        return constants.SYSTEM_SUSPENDED
    if "r" in state or "t" in state:
        return constants.RUNNING
    if "h" in state:
        return constants.USER_ON_HOLD
    return constants.QUEUED_ACTIVE


def parse_qstat_xml(text: str) -> dict[str, tuple[str, str]]:
    """``qstat -xml`` -> ``{job number: (state letters, job name)}``; an array's tasks
    also as ``NUMBER.TASK`` (a running task has a line of its own, pending ones a
    range: ``<tasks>4-9:1</tasks>``, ``3,5-7:2``)."""
    root = ET.fromstring(text)
    jobs: dict[str, tuple[str, str]] = {}
    for job in root.iter("job_list"):
        number = job.findtext("JB_job_number") or ""
        if not number:
            continue
        entry = (job.findtext("state") or "", job.findtext("JB_name") or "")
        jobs.setdefault(number, entry)
        for task in task_ids(job.findtext("tasks") or ""):
            jobs[f"{number}.{task}"] = entry
    return jobs


def task_ids(text: str) -> list[int]:
    """Task ids of a ``tasks`` field: ``7``, ``4-9:1``, ``3,5-7:2``."""
    ids: list[int] = []
    for part in text.split(","):
        span, _, step = part.strip().partition(":")
        first, _, last = span.partition("-")
        if first.isdigit() and (last or first).isdigit():
            ids += range(int(first), int(last or first) + 1,
                         int(step) if step.isdigit() and int(step) > 0 else 1)
    return ids


def records(output: str) -> list[dict[str, str]]:
    """The ``key value`` records of ``qacct -j`` or ``qstat -j``, in order."""
    found: list[dict[str, str]] = [{}]
    for line in output.splitlines():
        if line.startswith("====="):
            found.append({})
            continue
        key, _, value = line.partition(" ")
        if key:
            found[-1][key] = value.strip()
    return [record for record in found if record]


def named_job_numbers(output: str, name_key: str = "jobname",
                      number_key: str = "jobnumber") -> dict[str, str]:
    """``{job name: job number}`` of ``qacct -j`` (or, with ``job_name:`` and
    ``job_number:``, ``qstat -j``) records; the last of a name wins (the latest)."""
    return {record[name_key]: record[number_key] for record in records(output)
            if name_key in record and number_key in record}


def accounting_query(job_ids: Sequence[str]) -> list[str] | None:
    """The ``qacct`` argv reading these jobs' records in one pass: ``-j ID`` for one,
    ``-j '*'`` (one read of the accounting file, not one per job) for several; None
    for none (``-j`` also takes names: only numbers are asked)."""
    numbers = sorted({number for job_id in job_ids
                      if (number := job_id.partition(".")[0]).isdigit()})
    if not numbers:
        return None
    return ["qacct", "-j", numbers[0] if len(numbers) == 1 else "*"]


def accounting_records(output: str, job_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """The last accounting record of each of these jobs in ``qacct`` output (an
    array's task as ``NUMBER.TASK``)."""
    wanted = set(job_ids)
    found = {}
    for record in records(output):
        number, task = record.get("jobnumber", ""), record.get("taskid", "undefined")
        job_id = number if task in ("undefined", "") else f"{number}.{task}"
        if job_id in wanted:
            found[job_id] = record
    return found


def flush_seconds(qconf_sconf: str) -> float:
    """How long Grid Engine may keep an ended job out of its accounting file, from
    ``qconf -sconf`` (``accounting_flush_time``, else ``flush_time``); 15 s, its
    default, when the output does not say."""
    params = " ".join(qconf_sconf.replace("\\\n", " ").split())
    match = (re.search(r"reporting_params .*?\baccounting_flush_time=(\d+):(\d+):(\d+)", params)
             or re.search(r"reporting_params .*?\bflush_time=(\d+):(\d+):(\d+)", params))
    if match is None:
        return 15.0
    hours, minutes, seconds = (int(part) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


@dataclass(frozen=True)
class Limits:
    """A job's ``-l`` limits: Grid Engine kills a job over ``h_vmem`` or ``h_rt`` with
    SIGKILL and says no more (qacct: ``failed 37``); its peak ``maxvmem`` or wall
    clock past the limit tells which one, as a TIMEOUT or OUT_OF_MEMORY reason."""

    memory_bytes: float | None = None
    walltime_s: float | None = None
    #: ``h_vmem=150M``, ``h_rt=60``: as the reason names them
    memory_text: str = ""
    walltime_text: str = ""

    @classmethod
    def from_category(cls, category: str, slots: int) -> Limits:
        """The ``h_vmem`` and ``h_rt`` of a qacct ``category`` (``-l h_vmem=150M,h_rt=60``):
        for a job submitted by an earlier engine, whose limits this one never saw."""
        values = dict(item.partition("=")[::2] for word in re.findall(r"-l\s+(\S+)", category)
                      for item in word.split(","))
        memory = size_bytes(values.get("h_vmem", ""))
        walltime = parse_duration(values.get("h_rt"))
        return cls(memory_bytes=memory * slots if memory else None, walltime_s=walltime,
                   memory_text=f"h_vmem={values['h_vmem']}" if memory else "",
                   walltime_text=f"h_rt={values['h_rt']}" if walltime else "")

    @classmethod
    def of_job(cls, job: EngineJob, memory_resource: str, notes: list[str] | None = None
               ) -> Limits:
        """The job's walltime and memory as ``-l`` limits. Grid Engine's memory limits
        are per slot: the job's memory is divided among its slots, rounded up to whole
        megabytes (said in ``notes``)."""
        walltime = job.resources.get("walltime_s")
        memory = job.resources.get("memory_mb") if memory_resource else None
        cpus = job.cpu_count
        per_slot = round_up(memory, cpus, notes, f"memory_mb {memory}",
                            f"{{0}} MB a slot x {cpus} slots ({memory_resource} is per "
                            "slot)") if memory else 0
        return cls(memory_bytes=per_slot * cpus * 1024**2 if memory else None,
                   walltime_s=walltime,
                   memory_text=f"{memory_resource}={per_slot}M" if memory else "",
                   walltime_text=f"h_rt={walltime}" if walltime else "")

    def reason(self, maxvmem_bytes: float | None, wallclock_s: float | None) -> str | None:
        """The limit a job Grid Engine killed had reached, as Slurm words it; None."""
        if self.memory_bytes and maxvmem_bytes is not None and maxvmem_bytes >= self.memory_bytes:
            return (f"OUT_OF_MEMORY: killed at its memory limit ({self.memory_text}, maxvmem "
                    f"{maxvmem_bytes / 1024**2:.0f}M)")
        if self.walltime_s and wallclock_s is not None and wallclock_s >= self.walltime_s:
            return f"TIMEOUT: killed at its time limit ({self.walltime_text})"
        return None


def resource_options(job: EngineJob, parallel_environment: str, memory_resource: str,
                     notes: list[str] | None = None) -> list[str]:
    """qsub options of the job's queue, slots (``-pe``) and limits (``-l h_rt=S,
    MEMORY=NM``), what they round said in ``notes``."""
    words: list[str] = ["-q", job.queue] if job.queue else []
    if job.cpu_count > 1:
        words += ["-pe", parallel_environment, str(job.cpu_count)]
    limits = Limits.of_job(job, memory_resource, notes)
    texts = [text for text in (limits.walltime_text, limits.memory_text) if text]
    return words + (["-l", ",".join(texts)] if texts else [])


def exit_info_from_accounting(record: Mapping[str, str], killed: bool,
                              limits: Limits | None = None) -> ExitInfo:
    """Exit info from a qacct record (see the module doc for ``failed``); ``limits``:
    the job's, else its ``category``'s; ``ran`` False for a job that never started."""
    failed_text = record.get("failed", "0")
    failed = int(number(failed_text) or 0)
    code = int(number(record.get("exit_status")) or 0)
    slots = int(number(record.get("slots")) or 1)
    maxvmem, wallclock = parse_size(record.get("maxvmem")), number(record.get("ru_wallclock"))
    usage = resource_usage(number(record.get("cpu")), None, maxvmem, wallclock, slots)
    ran = record.get("start_time", "-/-") != "-/-"
    abnormal = failed not in (FAILED_NONE, FAILED_AFTER_JOB)
    reason = f"Grid Engine: failed {failed_text}" if abnormal else None
    if killed:
        return ExitInfo(constants.USER_KILLED, None, None, usage, ran=ran)
    if not ran:
        return ExitInfo(constants.EXIT_ABORTED, None, None, usage, reason, ran=False)
    if failed == FAILED_LIMIT:  # which limit, GE's record does not say
        limit = (limits or Limits.from_category(record.get("category", ""), slots)).reason(
            maxvmem, wallclock)
        if limit is not None:  # as Slurm and the local scheduler report it
            return ExitInfo(constants.EXIT_ABORTED, None, code - 128 if code > 128 else None,
                            usage, limit, ran=True)
    if failed and code > 128:
        return ExitInfo(constants.FINISHED_TERM_SIG, None, code - 128, usage, reason, ran=True)
    if abnormal:
        return ExitInfo(constants.EXIT_ABORTED, code, None, usage, reason, ran=True)
    return ExitInfo(constants.FINISHED_REGULARLY, code, 0, usage, ran=True)


def resource_usage(cpu: float | None, maxrss_kb: float | None, vmem_bytes: float | None,
                   wall: float | None, cpus: int) -> str | None:
    """The usage items of a Grid Engine job (None unless its CPU and wall times are known)."""
    if cpu is None or wall is None:
        return None
    return format_resource_usage(cpu, int(maxrss_kb) if maxrss_kb else None, wall, cpus,
                                 int(vmem_bytes) // 1024 if vmem_bytes else None)


def number(text: str | None) -> float | None:
    """The leading number of a DRMAA or qacct value (``0.224s``, ``137  (Killed)``)."""
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", text or "")
    return float(match.group(1)) if match else None


def size_bytes(text: str | None) -> float | None:
    """A Grid Engine memory value (``150M`` binary, ``150m`` decimal, bytes) in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTkmgt]?)", (text or "").strip())
    if match is None:
        return None
    unit = match.group(2)
    scale = 1024 ** ("KMGT".index(unit) + 1) if unit.isupper() else (
        1000 ** ("kmgt".index(unit) + 1) if unit else 1)
    return float(match.group(1)) * scale
