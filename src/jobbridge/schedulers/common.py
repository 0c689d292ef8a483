"""What the built-in schedulers share: job names, container wrapping, private
files, refusals, rounded limits, the lost-job timer and the readers of batch
systems' durations and sizes (one definition each)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..model import EngineJob, safe_name
from .process import note_to_job, wrap_in_container

if TYPE_CHECKING:
    from ..scheduler import Scheduler

__all__ = ["LOST_AFTER", "Absence", "Rounding", "create_private", "in_container", "job_name",
           "parse_duration", "parse_size", "refuse", "round_up", "safe_name", "write_private"]
log = logging.getLogger(__name__)

#: Seconds a job may be missing from every answer of its system before it counts as
#: lost: queues forget ended jobs before histories record them, so absence alone
#: means nothing for a while.
LOST_AFTER = 600.0
PRIVATE = 0o600
#: Longest batch job name (Grid Engine's DRMAA takes 100 characters at most).
JOB_NAME_LIMIT = 100
_DURATION = re.compile(r"(?:(\d+)-)?(?:(\d+):)??(?:(\d+):)?(\d+(?:\.\d+)?)s?")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGTP]?)(I?B)?", re.IGNORECASE)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def job_name(tag: str) -> str:
    """A batch job's name, from its submission tag alone (so that
    ``find_submitted`` can look it up from the tag): characters other than letters,
    digits and ``_.+-`` become ``_``; it starts with a letter (Grid Engine and PBS
    refuse others first), and the engine's tags begin with the workflow's job id, so
    that ``squeue``/``qstat``/``sacct`` show which job it is."""
    name = safe_name(tag, JOB_NAME_LIMIT) or "job"
    return name if name[0].isalpha() else f"j{name}"[:JOB_NAME_LIMIT]


def refuse(scheduler: Scheduler, job: EngineJob, why: str) -> None:
    """``job``'s submission was refused (its id None): recorded for the engine
    (:meth:`.Scheduler.refusal_reason`), logged, and noted in the job's stderr file,
    where its user looks first. ``why``: the system's words, e.g. ``slurm refused
    the job: invalid partition specified: x``."""
    scheduler.refuse(job, why)
    note_to_job(job, why)


def round_up(value: int, unit: int, notes: list[str] | None, what: str, shown: str) -> int:
    """``value`` in whole ``unit``s, rounded up. When that changes the amount, a note
    in ``notes`` (see :class:`Rounding`): ``what`` (the job's key and value) rounded
    up to ``shown``, in which ``{0}`` stands for the rounded number."""
    whole = math.ceil(value / unit)
    if notes is not None and whole * unit != value:
        notes.append(f"{what} rounded up to {shown.format(whole)}")
    return whole


class Rounding:
    """Limits a backend rounds to its system's units, said once: each note is logged
    the first time this scheduler meets it, and kept with the job for its status
    (``job_notes``) and its exit reason.

    Why: ``walltime_s: 5`` becoming Slurm's ``--time=1`` (a minute) must not be silent.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._logged: set[str] = set()

    def said(self, notes: list[str]) -> str | None:
        """The notes of one job as one text, each logged the first time it is seen."""
        for note in notes:
            if note not in self._logged:
                self._logged.add(note)
                log.warning("%s: %s", self.name, note)
        return "; ".join(notes) or None


def in_container(job: EngineJob, container_command: list[str]) -> EngineJob:
    """``job`` with its argv inside ``container_command`` (the job itself without one)."""
    if not container_command:
        return job
    return replace(job, command=wrap_in_container(job.command, container_command))


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Write a whole file only its owner may read (0600, even when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        os.fchmod(stream.fileno(), PRIVATE)
        stream.write(text)


def create_private(path: str | os.PathLike[str]) -> None:
    """Create an empty file 0600 for a writer that would make it 0644 (a batch
    system's output), so that it keeps this mode; an existing file is left as it is."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE))


@dataclass
class Absence:
    """Since when a job has been missing from every answer of its system."""

    since: float | None = None

    def seen(self) -> None:
        self.since = None

    def lost(self, after: float = LOST_AFTER) -> bool:
        """Note that the job is missing now; whether it has been for over ``after`` s."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since > after


def parse_duration(text: str | None) -> float | None:
    """Seconds in a batch system's duration: ``[D-][[HH:]MM:]SS[.fff]`` (Slurm, PBS,
    Grid Engine limits) or ``12``, ``1.010s`` (qacct); None when it is not one."""
    match = _DURATION.fullmatch((text or "").strip())
    if match is None:
        return None
    days, hours, minutes, seconds = match.groups()
    return (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60
            + float(seconds))


def parse_size(text: str | None, unit: int = 1) -> int | None:
    """Bytes in a batch system's size: ``219816K``, ``1.5G`` (Slurm), ``1.711MB``
    (qacct), ``13530kb``, ``2gb`` (PBS); a suffix is a power of 1024, a bare number
    counts ``unit`` bytes. None when it is not a size."""
    match = _SIZE.fullmatch((text or "").strip())
    if match is None:
        return None
    number, power, suffix = match.groups()
    scale = 1024 ** _POWERS[power.upper()] if power or suffix else unit
    return round(float(number) * scale)
