"""What an ended process's wait status and rusage say, in the API's words.

One definition for the local runner, the MPI workers and the batch job wrapper.
The wrapper runs before every batch job's command (10,000 times for an array of
10,000), so this module imports built-in modules only: ``_signal`` rather than
``signal`` (which imports ``enum``), no ``typing`` at run time. A test holds the
wrapper to that.
"""

from __future__ import annotations

import os

from .. import constants

TYPE_CHECKING = False
if TYPE_CHECKING:  # the same functions and constants, typed
    import signal as _signal
    from resource import struct_rusage
else:
    import _signal

#: Seconds between SIGTERM and SIGKILL when a job is killed or over its walltime.
KILL_GRACE_SECONDS = 2.0
#: Mode of the output files a job gets: outputs may hold secrets.
OUTPUT_MODE = 0o600
#: How a job's output files are opened (a new one is OUTPUT_MODE).
OUTPUT_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
#: The preferred name of each signal number (as ``signal.Signals`` names them).
_SIGNAL_NAMES = {number: name for name, number in sorted(vars(_signal).items(), reverse=True)
                 if name.startswith("SIG") and not name.startswith("SIG_")
                 and name not in ("SIGIOT", "SIGCLD", "SIGPOLL")}


def exit_fields(status: int, cpu_seconds: float, maxrss_kb: int | None, wall_seconds: float,
                cpus: int, killed: bool = False, limit_reason: str | None = None
                ) -> tuple[str, int | None, int | None, str, str | None]:
    """``(exit_status, exit_value, term_sig, resource_usage, reason)`` of a process
    from its ``wait4`` status and rusage (:func:`rusage_items`); ``killed`` when the
    user's kill ended it, ``limit_reason`` when a limit did (TIMEOUT, OUT_OF_MEMORY:
    aborted, as batch systems report it)."""
    usage = format_resource_usage(cpu_seconds, maxrss_kb, wall_seconds, cpus)
    signaled = os.WIFSIGNALED(status)
    code, sig = (None, os.WTERMSIG(status)) if signaled else (os.WEXITSTATUS(status), 0)
    if killed:
        return constants.USER_KILLED, code, sig, usage, None
    if limit_reason is not None:
        return constants.EXIT_ABORTED, code, sig, usage, limit_reason
    if signaled:
        return (constants.FINISHED_TERM_SIG, None, sig, usage,
                f"killed by signal {sig} ({signal_name(sig)})")
    return constants.FINISHED_REGULARLY, code, 0, usage, None


def rusage_items(rusage: struct_rusage | None) -> tuple[float, int | None]:
    """CPU seconds (user and system) and peak memory (kB) of a ``wait4`` rusage."""
    if rusage is None:
        return 0.0, None
    return rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss


class StartError(OSError):
    """Why a job cannot start, as its exit reason says it (the key and path at fault,
    or the program)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def path_error(key: str, path: str, error: OSError) -> StartError:
    """A job's file (``stdin``, ``stdout_file``...) or ``working_directory`` failed."""
    verb = "enter" if key == "working_directory" else "open"
    return StartError(f"{key}: cannot {verb} {path}: {error.strerror or error}")


def start_failure(program: str, error: OSError) -> str:
    """The reason a job could not start (its program, unless a StartError says more)."""
    if isinstance(error, StartError):
        return error.reason
    return f"cannot start {program!r}: {error.strerror or error}"


def signal_name(sig: int) -> str:
    """``SIGTERM`` for 15; ``signal 99`` for a number without a name."""
    return _SIGNAL_NAMES.get(sig, f"signal {sig}")


def format_resource_usage(cpu_seconds: float, maxrss_kb: int | None, wall_seconds: float,
                          cpus: int, vmem_kb: int | None = None) -> str:
    """The ``key=value`` resource usage string (docs/format.md): soma-workflow's items
    (whole seconds as ``HH:MM:SS``), then exact seconds, so that a short job's usage
    is not all zeros."""
    items = [f"cput={hms(cpu_seconds)}"]
    if maxrss_kb is not None:
        items.append(f"mem={maxrss_kb}kb")
    if vmem_kb is not None:
        items.append(f"vmem={vmem_kb}kb")
    items.append(f"walltime={hms(wall_seconds)}")
    if wall_seconds > 0:
        items.append(f"cpupercent={round(100 * cpu_seconds / wall_seconds)}")
    items.append(f"ncpus={cpus}")
    items += exact_usage(cpu_seconds, wall_seconds)
    return " ".join(items)


def exact_usage(cpu_seconds: float | None, wall_seconds: float | None) -> list[str]:
    """``cpu_s=`` and ``wall_s=`` items (seconds, millisecond precision) for the known ones."""
    return [f"{key}={value:.3f}" for key, value in (("cpu_s", cpu_seconds),
                                                      ("wall_s", wall_seconds))
            if value is not None]


def hms(seconds: float) -> str:
    """Seconds as ``HH:MM:SS`` (hours may exceed 99)."""
    whole = int(seconds + 0.5)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def append_note(target: str | None, text: str) -> None:
    """Append ``jobbridge: TEXT`` to a job's stderr file (``target``: its stdout
    when joined), where its user looks first (why it could not start, why it was
    refused); nothing when it has none or it cannot be written."""
    if not target:
        return
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, OUTPUT_MODE)
    except OSError:
        return
    try:
        os.write(fd, f"jobbridge: {text}\n".encode("utf-8", "surrogateescape"))
    except OSError:
        pass
    finally:
        os.close(fd)
