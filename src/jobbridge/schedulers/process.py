"""Running one job as a local process: shared by the local runner and MPI workers.

Jobs are argv lists started without a shell, in their own session (so a kill
reaches the whole process group), with their own files. Exit info is read from
the ``wait4`` status and rusage, so signals and resource usage are exact.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from typing import IO, Any

from .. import constants
from ..model import EngineJob, ExitInfo

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


def _open(path: str | None, mode: str) -> IO[bytes] | int:
    if path is None:
        return subprocess.DEVNULL
    return open(path, mode)


def start_process(job: EngineJob) -> subprocess.Popen[bytes]:
    """Start ``job`` (argv, env merged over ours, cwd, stdin/stdout/stderr files).

    Raises OSError when it cannot start (missing program, bad directory...).
    """
    env = {**os.environ, **job.env} if job.env else None
    files: list[IO[bytes] | int] = []
    try:
        stdin = _open(job.stdin, "rb")
        files.append(stdin)
        stdout = _open(job.stdout_file, "wb")
        files.append(stdout)
        stderr: IO[bytes] | int = (subprocess.STDOUT if job.join_stderrout
                                   else _open(job.stderr_file, "wb"))
        files.append(stderr)
        return subprocess.Popen(
            job.command, stdin=stdin, stdout=stdout, stderr=stderr, env=env,
            cwd=job.working_directory, start_new_session=True, close_fds=True)
    finally:
        for file in files:
            if not isinstance(file, int):
                file.close()


#: Signals Popen's ``restore_signals`` gives back their default action in the child.
_DEFAULT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ")
                         if hasattr(signal, name))
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


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
    search differently), which the caller must keep until it reaps the job.
    """

    def __init__(self) -> None:
        self.origin = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.fast = hasattr(os, "posix_spawnp")
        # os.environ re-encodes every variable on each use: a plain copy of ours (the
        # caller must not change its environment meanwhile, as Popen's env=None reads it)
        self.environ = dict(os.environb)

    def spawn(self, job: EngineJob) -> tuple[int, subprocess.Popen[bytes] | None]:
        """Start ``job``; raises OSError when it cannot start."""
        if not self.fast or (job.env and job.env.get("PATH", "") != os.environ.get("PATH", "")):
            os.fchdir(self.origin)
            process = start_process(job)
            return process.pid, process
        opened: list[int] = []
        try:
            stdin = self._open(job.stdin, os.O_RDONLY | os.O_CLOEXEC, opened)
            stdout = self._open(job.stdout_file, _WRITE_FLAGS, opened)
            stderr = 1 if job.join_stderrout else self._open(job.stderr_file, _WRITE_FLAGS,
                                                             opened)
            self._chdir(job.working_directory)
            env = {**os.environ, **job.env} if job.env else self.environ
            return os.posix_spawnp(
                job.command[0], job.command, env, setsid=True, setsigdef=_DEFAULT_SIGNALS,
                file_actions=[(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
                              (os.POSIX_SPAWN_DUP2, stderr, 2)]), None
        finally:
            for fd in opened:
                os.close(fd)

    def _open(self, path: str | None, flags: int, opened: list[int]) -> int:
        if path is None:
            return self.devnull
        fd = os.open(path, flags, 0o666, dir_fd=self.origin)
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
        except OSError as error:  # as Popen reports it: naming the directory given
            raise type(error)(error.errno, error.strerror, directory) from None


def report_start_failure(job: EngineJob, error: OSError) -> str:
    """Write why ``job`` could not start into its stderr file; return the reason."""
    reason = f"cannot start {job.command[0]!r}: {error.strerror or error}"
    if isinstance(error, FileNotFoundError) and error.filename == job.working_directory:
        reason = f"working directory {job.working_directory!r} does not exist"
    target = job.stdout_file if job.join_stderrout else job.stderr_file
    if target:
        try:
            with open(target, "ab") as stream:
                stream.write(f"jobbridge: {reason}\n".encode())
        except OSError:
            pass
    return reason


def exit_info_from_wait(status: int, rusage: Any, wall_seconds: float, cpus: int,
                        killed: bool = False) -> ExitInfo:
    """Exit info from a ``wait4`` status and rusage."""
    usage = format_resource_usage(rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss,
                                  wall_seconds, cpus)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if killed:
            return ExitInfo(constants.USER_KILLED, None, sig, usage)
        return ExitInfo(constants.FINISHED_TERM_SIG, None, sig, usage,
                        reason=f"killed by signal {sig} ({_signal_name(sig)})")
    code = os.WEXITSTATUS(status)
    if killed:
        return ExitInfo(constants.USER_KILLED, code, 0, usage)
    return ExitInfo(constants.FINISHED_REGULARLY, code, 0, usage)


def format_resource_usage(cpu_seconds: float, maxrss_kb: int | None, wall_seconds: float,
                          cpus: int) -> str:
    """The SPEC's ``key=value`` resource usage string."""
    items = [f"cput={hms(cpu_seconds)}"]
    if maxrss_kb is not None:
        items.append(f"mem={maxrss_kb}kb")
    items.append(f"walltime={hms(wall_seconds)}")
    if wall_seconds > 0:
        items.append(f"cpupercent={round(100 * cpu_seconds / wall_seconds)}")
    items.append(f"ncpus={cpus}")
    return " ".join(items)


def hms(seconds: float) -> str:
    """Seconds as ``HH:MM:SS`` (hours may exceed 99)."""
    whole = int(seconds + 0.5)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


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


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
