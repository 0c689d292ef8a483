"""Enforcing a job's ``memory_mb`` on this machine (``local_basic``, ``mpi`` workers).

Two mechanisms, chosen by the resource key ``enforce_memory``:

- ``cgroup``: each job runs in a memory cgroup of its own, created under this
  process's cgroup, where the user may do so (cgroup v2: the cgroup delegates the
  memory controller to its children; cgroup v1: its memory cgroup is writable,
  e.g. as root). The kernel kills the job when its resident memory exceeds the
  limit; the cgroup's ``oom_kill`` count says so afterwards, as Slurm's
  ``OUT_OF_MEMORY``.
- ``rlimit``: ``RLIMIT_AS``, available everywhere. Allocations beyond the limit
  fail; it counts virtual memory, so programs that reserve much address space
  (Java, some GPU or BLAS libraries) need a larger ``memory_mb``. The job then
  usually exits with an error: its end is taken for OUT_OF_MEMORY when its stderr
  ends saying that an allocation failed.

``auto`` (the default) uses a cgroup when one can be created, else RLIMIT_AS;
``off`` enforces nothing. The job joins its cgroup (or sets its limit) between
fork and exec, so it never runs a moment unlimited.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .exits import StartError

if TYPE_CHECKING:
    from ..configuration import Configuration
    from ..model import EngineJob

#: Values of the resource key ``enforce_memory``.
MODES = ("auto", "cgroup", "rlimit", "off")
#: What a job's stderr says when an allocation failed (the end of it, lower case).
ALLOCATION_FAILED = (b"memoryerror", b"cannot allocate memory", b"out of memory", b"bad_alloc",
                     b"memory exhausted")
_STDERR_TAIL_BYTES = 4096


def configured_mode(config: Configuration) -> str:
    """The resource's ``enforce_memory`` (default ``auto``); refuses other values."""
    mode = (config.get("enforce_memory") or "auto").strip().lower()
    if mode not in MODES:
        raise ConfigurationError(
            f"resource {config.resource_id!r}: option enforce_memory = "
            f"{config.get('enforce_memory')!r} is not one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class _Layout:
    """File names of one cgroup version's memory controller."""

    version: str
    limit: str
    swap: str  # set to keep the job from swapping instead
    events: str  # holds an ``oom_kill N`` line


_V2 = _Layout("v2", "memory.max", "memory.swap.max", "memory.events")
_V1 = _Layout("v1", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.oom_control")


def find_cgroup() -> tuple[Path, _Layout] | str:
    """The cgroup under which this process may create memory-limited job cgroups
    (and its version), or why there is none."""
    try:
        membership = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError as error:
        return f"cannot read this process's cgroups: {error.strerror}"
    own: dict[str, str] = {}
    for line in membership:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            own["v2"] = path
        elif "memory" in controllers.split(","):
            own["v1"] = path
    found: dict[str, Path] = {}
    for line in mounts:
        fields = line.split()
        rest = fields[fields.index("-") + 1:]
        if rest[0] == "cgroup2":
            version = "v2"
        elif rest[0] == "cgroup" and "memory" in rest[2].split(","):
            version = "v1"
        else:
            continue
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        mine = own.get(version)
        if mine is not None and (mine + "/").startswith(root.rstrip("/") + "/"):
            found.setdefault(version, Path(mount_point, mine[len(root):].lstrip("/")))
    why = []
    if (v2 := found.get("v2")) is not None:
        with contextlib.suppress(OSError):
            if ("memory" in (v2 / "cgroup.subtree_control").read_text().split()
                    and os.access(v2, os.W_OK)):
                return v2, _V2
        why.append(f"cgroup v2 {v2} does not delegate the memory controller to this user")
    if (v1 := found.get("v1")) is not None:
        if os.access(v1, os.W_OK):
            return v1, _V1
        why.append(f"memory cgroup v1 {v1} is not writable by this user")
    return "; ".join(why) or "no memory cgroup controller is mounted"


def cgroup_unusable() -> str:
    """Why ``enforce_memory = cgroup`` cannot work here ("" when it can)."""
    found = find_cgroup()
    return found if isinstance(found, str) else ""


def _unescape(text: str) -> str:
    """A mountinfo path: spaces and the like are written as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), text)


class MemoryLimit:
    """One job's limit: applied in the child by :meth:`preexec`; :meth:`ended` says
    whether its end was for memory, and releases what the limit held."""

    def __init__(self, megabytes: int) -> None:
        self.megabytes = megabytes
        self.bytes = megabytes * 2**20

    def preexec(self) -> None:
        """Runs in the job's process, between fork and exec."""
        resource.setrlimit(resource.RLIMIT_AS, (self.bytes, self.bytes))

    def ended(self, status: int, job: EngineJob) -> str | None:
        """The OUT_OF_MEMORY reason if the job ended for lack of memory."""
        failed = not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
        stderr = job.stdout_file if job.join_stderrout else job.stderr_file
        if not failed or stderr is None:
            return None
        try:
            with open(stderr, "rb") as stream:
                stream.seek(max(0, os.fstat(stream.fileno()).st_size - _STDERR_TAIL_BYTES))
                tail = stream.read().lower()
        except OSError:
            return None
        if any(marker in tail for marker in ALLOCATION_FAILED):
            return (f"OUT_OF_MEMORY: an allocation failed at its memory limit "
                    f"(memory_mb={self.megabytes})")
        return None

    def discard(self) -> None:
        """The job did not start."""


class _CgroupLimit(MemoryLimit):
    def __init__(self, megabytes: int, path: Path, layout: _Layout) -> None:
        super().__init__(megabytes)
        self.path, self.layout = path, layout
        path.mkdir()
        try:
            (path / layout.limit).write_text(str(self.bytes))
            with contextlib.suppress(OSError):  # without swap accounting, no such file
                (path / layout.swap).write_text("0" if layout is _V2 else str(self.bytes))
            if layout is _V2:  # kill the whole job, not only its largest process
                (path / "memory.oom.group").write_text("1")
        except OSError:
            self.discard()
            raise
        self.procs = os.fsencode(path / "cgroup.procs")

    def preexec(self) -> None:
        fd = os.open(self.procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")  # this process
        finally:
            os.close(fd)

    def ended(self, status: int, job: EngineJob) -> str | None:
        killed = 0
        with contextlib.suppress(OSError, ValueError):
            for line in (self.path / self.layout.events).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    killed = int(value)
        self.discard()
        if killed:
            return f"OUT_OF_MEMORY: killed for exceeding its memory (memory_mb={self.megabytes})"
        return None

    def discard(self) -> None:
        # processes the job left behind keep it busy: then it stays (harmless, empty later)
        with contextlib.suppress(OSError):
            self.path.rmdir()


class MemoryLimiter:
    """Makes the :class:`MemoryLimit` of each job that has a ``memory_mb``."""

    def __init__(self, mode: str, name: str) -> None:
        self.mode, self.name = mode, name
        self.count = 0
        self.cgroup: tuple[Path, _Layout] | None = None
        self.why_no_cgroup = ""
        if mode in ("auto", "cgroup"):
            found = find_cgroup()
            if isinstance(found, str):
                self.why_no_cgroup = found
            else:
                self.cgroup = found

    def limit(self, job: EngineJob) -> MemoryLimit | None:
        """The job's limit, ready to apply; raises StartError when it cannot be."""
        megabytes = job.resources.get("memory_mb")
        if not megabytes or self.mode == "off":
            return None
        if self.cgroup is not None:
            self.count += 1
            parent, layout = self.cgroup
            try:
                return _CgroupLimit(megabytes, parent / f"{self.name}-{self.count}", layout)
            except OSError as error:
                if self.mode == "cgroup":
                    raise StartError(f"enforce_memory = cgroup: cannot create a cgroup under "
                                     f"{parent}: {error.strerror}") from None
                self.why_no_cgroup = f"cannot create a cgroup under {parent}: {error.strerror}"
                self.cgroup = None  # auto: RLIMIT_AS from now on
        if self.mode == "cgroup":
            raise StartError(f"enforce_memory = cgroup: {self.why_no_cgroup}")
        return MemoryLimit(megabytes)
