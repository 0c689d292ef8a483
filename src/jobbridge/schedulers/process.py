"""Running one job as a local process: shared by the local runner and MPI workers.

Jobs are argv lists started without a shell, in their own session (so a kill
reaches the whole process group), with their own files: an output file jobbridge
creates is private (0600: outputs may hold secrets), an existing one keeps its
mode. Exit info is read from the ``wait4`` status and rusage, so signals and
resource usage are exact.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from ..model import EngineJob, ExitInfo
from .exits import (
    KILL_GRACE_SECONDS,
    OUTPUT_FLAGS,
    OUTPUT_MODE,
    StartError,
    append_note,
    exit_fields,
    path_error,
    rusage_items,
    start_failure,
)

if TYPE_CHECKING:
    from .memory_limits import MemoryLimit

CONTAINER_PLACEHOLDER = "{#command}"


def wrap_in_container(command: Sequence[str], container_command: Sequence[str]) -> list[str]:
    """Put ``command`` inside ``container_command`` (soma-workflow's convention).

    An item equal to ``{#command}`` is replaced by the job's argv; an item that
    contains it (``sh -c '... {#command}'``) gets the argv shell-quoted; without a
    placeholder the argv is appended.
    """
    if not container_command:
        return list(command)
    wrapped: list[str] = []
    placed = False
    for item in container_command:
        if item == CONTAINER_PLACEHOLDER:
            wrapped.extend(command)
            placed = True
        elif CONTAINER_PLACEHOLDER in item:
            wrapped.append(item.replace(CONTAINER_PLACEHOLDER, shlex.join(command)))
            placed = True
        else:
            wrapped.append(item)
    return wrapped if placed else [*wrapped, *command]


def _open(key: str, path: str | None, flags: int) -> IO[bytes] | int:
    if path is None:
        return subprocess.DEVNULL
    try:
        fd = os.open(path, flags, OUTPUT_MODE)
    except OSError as error:
        raise path_error(key, path, error) from None
    return os.fdopen(fd, "rb" if flags == os.O_RDONLY else "wb")


def start_process(job: EngineJob, preexec_fn: Callable[[], None] | None = None,
                  new_session: bool = True) -> subprocess.Popen[bytes]:
    """Start ``job`` (argv, env merged over ours, cwd, stdin/stdout/stderr files);
    ``preexec_fn`` runs in the child before exec (a memory limit); ``new_session``
    False keeps it in our process group (the job wrapper's, which a batch system
    signals as a whole).

    Raises OSError when it cannot start: StartError for its files and folder.
    """
    env = {**os.environ, **job.env} if job.env else None
    files: list[IO[bytes] | int] = []
    try:
        stdin = _open("stdin", job.stdin, os.O_RDONLY)
        files.append(stdin)
        stdout = _open("stdout_file", job.stdout_file, OUTPUT_FLAGS)
        files.append(stdout)
        stderr: IO[bytes] | int = (subprocess.STDOUT if job.join_stderrout
                                   else _open("stderr_file", job.stderr_file, OUTPUT_FLAGS))
        files.append(stderr)
        return subprocess.Popen(
            job.command, stdin=stdin, stdout=stdout, stderr=stderr, env=env,
            cwd=job.working_directory, start_new_session=new_session, close_fds=True,
            # safe here: callers' preexec_fn only make system calls (no lock that another
            # thread could hold at fork), and the local runner has no threads
            preexec_fn=preexec_fn)  # noqa: PLW1509
    except OSError as error:
        directory = job.working_directory
        if not isinstance(error, StartError) and directory and error.filename == directory:
            raise path_error("working_directory", directory, error) from None
        raise
    finally:
        for file in files:
            if not isinstance(file, int):
                file.close()


#: Signals Popen's ``restore_signals`` gives back their default action in the child.
_DEFAULT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ")
                         if hasattr(signal, name))


class Spawner:
    """Starts jobs as :func:`start_process` does, at a fraction of the cost.

    For a process that starts thousands of jobs (the local runner): no Popen
    object, no error pipe, files opened with plain ``os.open``, and the child
    made by libc's ``posix_spawn`` (``vfork`` + ``exec``). The semantics are
    Popen's: relative file paths resolve against the caller's working directory,
    the program is searched on ``PATH`` after changing to the job's working
    directory, the job gets a new session, SIGPIPE and SIGXFSZ back to their
    default action, and only stdin/stdout/stderr are inherited (every other
    descriptor of a Python process is close-on-exec). Not thread-safe: the
    caller's working directory moves to each job's.

    ``spawn`` returns ``(pid, popen)``: ``popen`` is None, or the Popen object of
    a job whose ``env`` changes ``PATH`` (the one case ``posix_spawnp`` would
    search differently) or that has a ``preexec`` (a memory limit), which the
    caller must keep until it reaps the job.
    """

    def __init__(self) -> None:
        self.origin = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.fast = hasattr(os, "posix_spawnp")
        # os.environ re-encodes every variable on each use: a plain copy of ours (the
        # caller must not change its environment meanwhile, as Popen's env=None reads it)
        self.environ = dict(os.environb)

    def spawn(self, job: EngineJob, preexec: Callable[[], None] | None = None
              ) -> tuple[int, subprocess.Popen[bytes] | None]:
        """Start ``job``; raises OSError when it cannot start."""
        if (preexec is not None or not self.fast
                or (job.env and job.env.get("PATH", "") != os.environ.get("PATH", ""))):
            os.fchdir(self.origin)
            process = start_process(job, preexec)
            return process.pid, process
        opened: list[int] = []
        try:
            stdin = self._open("stdin", job.stdin, os.O_RDONLY | os.O_CLOEXEC, opened)
            stdout = self._open("stdout_file", job.stdout_file, OUTPUT_FLAGS, opened)
            stderr = 1 if job.join_stderrout else self._open("stderr_file", job.stderr_file,
                                                             OUTPUT_FLAGS, opened)
            self._chdir(job.working_directory)
            env = {**os.environ, **job.env} if job.env else self.environ
            return os.posix_spawnp(
                job.command[0], job.command, env, setsid=True, setsigdef=_DEFAULT_SIGNALS,
                file_actions=[(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
                              (os.POSIX_SPAWN_DUP2, stderr, 2)]), None
        finally:
            for fd in opened:
                os.close(fd)

    def _open(self, key: str, path: str | None, flags: int, opened: list[int]) -> int:
        if path is None:
            return self.devnull
        try:
            fd = os.open(path, flags, OUTPUT_MODE, dir_fd=self.origin)
        except OSError as error:
            raise path_error(key, path, error) from None
        opened.append(fd)
        return fd

    def _chdir(self, directory: str | None) -> None:
        """Into the job's directory, a relative one from the caller's own (as Popen)."""
        if directory is None or not directory.startswith("/"):
            os.fchdir(self.origin)
        if directory is None:
            return
        try:
            os.chdir(directory)
        except OSError as error:
            raise path_error("working_directory", directory, error) from None


def report_start_failure(job: EngineJob, error: OSError) -> str:
    """Write why ``job`` could not start into its stderr file; return the reason."""
    reason = start_failure(job.command[0], error)
    note_to_job(job, reason)
    return reason


def note_to_job(job: EngineJob, text: str) -> None:
    """Append ``jobbridge: TEXT`` to the job's stderr file (:func:`.exits.append_note`)."""
    append_note(job.stdout_file if job.join_stderrout else job.stderr_file, text)


def exit_info_from_wait(status: int, rusage: Any, wall_seconds: float, cpus: int,
                        killed: bool = False, limit_reason: str | None = None) -> ExitInfo:
    """Exit info from a ``wait4`` status and rusage (:func:`.exits.exit_fields`)."""
    return ExitInfo(*exit_fields(status, *rusage_items(rusage), wall_seconds, cpus, killed,
                                 limit_reason))


@dataclass(slots=True)
class RunningJob:
    """A job started here, and what may end it early: a kill, its ``walltime_s``, its
    memory limit. The local runner and MPI workers keep one per running job."""

    job: EngineJob
    pid: int
    popen: subprocess.Popen[bytes] | None  # only for jobs Popen starts (Spawner.spawn)
    started: float
    memory: MemoryLimit | None = None
    killed: bool = False  # by the user
    timed_out: bool = False
    terminating: bool = False
    kill_deadline: float | None = None
    began: float = field(default_factory=time.time)  # POSIX time, for the job's dates

    def terminate(self) -> None:
        """SIGTERM the job's process tree now, SIGKILL it after KILL_GRACE_SECONDS."""
        if not self.terminating:
            self.terminating = True
            self.kill_deadline = time.monotonic() + KILL_GRACE_SECONDS
            kill_tree(self.pid, signal.SIGTERM)

    def due(self, now: float) -> float | None:
        """End the job if its walltime is over, SIGKILL it once its grace is; seconds
        until the next of these is due (None: nothing is)."""
        walltime = self.job.resources.get("walltime_s")
        if walltime and not self.terminating:
            left = self.started + walltime - now
            if left > 0:
                return left
            self.timed_out = True
            self.terminate()
        if self.kill_deadline is None:
            return None
        if now < self.kill_deadline:
            return self.kill_deadline - now
        self.kill_deadline = None
        kill_tree(self.pid, signal.SIGKILL)
        return None

    def exit_info(self, status: int, rusage: Any, cpus: int) -> ExitInfo:
        """The job's exit info once reaped (releases its memory limit)."""
        reason = None if self.memory is None else self.memory.ended(status, self.job)
        if self.timed_out:
            reason = (f"TIMEOUT: killed at its time limit "
                      f"(walltime_s={self.job.resources['walltime_s']})")
        return exit_info_from_wait(status, rusage, time.monotonic() - self.started, cpus,
                                   self.killed, reason)


def kill_tree(pid: int, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to a job's process group and every descendant (even ones that
    left the group with setsid)."""
    import psutil  # here: the local runner starts faster without it

    try:
        victims = [psutil.Process(pid)]
        victims += victims[0].children(recursive=True)
    except psutil.Error:
        victims = []
    with contextlib.suppress(OSError):
        os.killpg(pid, sig)
    for process in victims:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)
