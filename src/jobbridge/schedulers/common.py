"""What the built-in schedulers share: job names, container wrapping, private
files and the lost-job timer (one definition each)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, replace

from ..model import EngineJob
from .process import wrap_in_container

#: Seconds a job may be missing from every answer of its system before it counts as
#: lost: queues forget ended jobs before histories record them, so absence alone
#: means nothing for a while.
LOST_AFTER = 600.0
#: Characters allowed in a batch job name or file name; others become "_" (Grid
#: Engine refuses ``/:@\\*?`` and blanks, Slurm's ``%`` starts a pattern).
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.+-]")
PRIVATE = 0o600


def safe_name(text: str, limit: int) -> str:
    """``text`` as a batch job name or file name: characters other than letters,
    digits and ``_.+-`` replaced by ``_``, at most ``limit`` of them."""
    return _UNSAFE_NAME.sub("_", text)[:limit]


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
