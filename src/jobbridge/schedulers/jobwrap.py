"""The job wrapper that batch scripts run: ``python -m jobbridge.schedulers.jobwrap SPEC``.

Why: a batch script must carry no user string that a shell could misread, and
the batch system's own account of a job is often incomplete (Torque's wrappers
drop ``Exit_status``; Slurm without accounting forgets finished jobs; a shell
reports a signal as 128+n). So the script only runs this wrapper on a private
JSON spec file; the wrapper starts the argv byte-exact with its env, directory
and files, and writes the true exit info (code or signal, rusage, when it started
and ended, and the signals the system sent it meanwhile) to the spec's
``exit_file`` before ending the same way.

Both files are the scheduler's first source of truth (it watches their folder,
costing the batch system nothing): the spec's ``start_file`` is written as soon
as the wrapper runs, the ``exit_file`` just before it ends.

A forced end must reach the job's whole process tree, so the wrapper puts the
job where the batch system's kill reaches, as the backend declares it
(:class:`SystemKill`, in the spec's ``kill``): in the wrapper's own process group
when the system signals the script's process group (Grid Engine) or its session
(PBS, Torque; Slurm signals every process of the job), the signals then reaching
the job directly, once; in a group of its own, to which the wrapper forwards every
signal, when the system signals the script alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .. import constants
from ..model import EngineJob
from .common import write_private
from .process import KILL_GRACE_SECONDS, exit_info_from_wait, report_start_failure, start_process

#: Signals a batch system sends to end, warn or signal a job: the wrapper outlives
#: them (to write the exit file) and notes them.
CAUGHT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                  signal.SIGUSR2, signal.SIGCONT, signal.SIGXCPU)


@dataclass(frozen=True)
class SystemKill:
    """How a batch system ends a job it cancels (a backend's ``KILL``).

    ``reaches``: what the system's signals reach, ``"process_group"`` (the batch
    script's process group: Grid Engine, and Slurm, which signals every process of
    the job), ``"session"`` (every process of the script's session: PBS, Torque) or
    ``"script"`` (the script's process alone). ``warning``: the signal sent first,
    SIGKILL following after a grace time (Slurm's KillWait, PBS's kill_delay);
    None when SIGKILL comes at once. A system that signals only the script must
    warn first: the wrapper forwards the warning to the job's group, and SIGKILLs
    that group itself after :data:`~.process.KILL_GRACE_SECONDS`.
    """

    reaches: Literal["process_group", "session", "script"] = "process_group"
    warning: int | None = None

    def __post_init__(self) -> None:
        if self.reaches not in ("process_group", "session", "script"):
            raise ValueError(f"SystemKill.reaches: unknown value {self.reaches!r}")
        if self.reaches == "script" and self.warning is None:
            raise ValueError("a system that signals only the batch script must send a "
                             "warning signal first: its SIGKILL would leave the job running")

    def to_spec(self) -> dict[str, Any]:
        return asdict(self)


def write_exit_file(path: str, record: dict[str, Any]) -> None:
    """Atomically write a record (exit or start), private (a reader never sees half
    of it; a watcher sees one rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    write_private(tmp, json.dumps(record))
    os.replace(tmp, path)


def read_exit_file(path: str | Path) -> dict[str, Any] | None:
    """The exit record: ``exit`` (the exit info's 4 items), ``reason``, ``signals``
    (those the system sent while the job ran, SIGCONT aside); None before it exists."""
    try:
        with open(path, encoding="utf-8") as stream:
            record: dict[str, Any] = json.load(stream)
            return record
    except (OSError, ValueError):
        return None


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    job = EngineJob(**spec["job"])
    kill = SystemKill(**spec.get("kill", {}))
    exit_file: str = spec["exit_file"]
    forward = kill.reaches == "script"
    received: list[int] = []
    process: Any = None

    def caught(sig: int, _frame: object) -> None:
        if sig != signal.SIGCONT and sig not in received:
            received.append(sig)
        if forward and process is not None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, sig)
            if sig == kill.warning:  # SIGKILL for the script alone follows: end the job first
                signal.signal(signal.SIGALRM, lambda *_: _kill_group(process.pid))
                signal.setitimer(signal.ITIMER_REAL, KILL_GRACE_SECONDS)

    # before the job starts (an exec gives handlers back their default action)
    for sig in CAUGHT_SIGNALS:
        signal.signal(sig, caught)
    if spec.get("start_file"):  # older specs have none
        write_exit_file(spec["start_file"], {"host": socket.gethostname(), "pid": os.getpid()})
    try:
        process = start_process(job, new_session=forward)
    except OSError as error:
        reason = report_start_failure(job, error)
        write_exit_file(exit_file, {"exit": [constants.EXIT_ABORTED, None, None, None],
                                    "reason": reason, "started": None, "ended": time.time(),
                                    "signals": received})
        return 127
    if forward and kill.warning in received:  # warned before the job existed
        _kill_group(process.pid)
    started = time.monotonic()
    began = time.time()
    _, status, rusage = os.wait4(process.pid, 0)  # PEP 475: retried after each handler
    process.returncode = status
    info = exit_info_from_wait(status, rusage, time.monotonic() - started, job.cpu_count)
    write_exit_file(exit_file, {"exit": list(info), "reason": info.reason, "started": began,
                                "ended": time.time(), "signals": received})
    if os.WIFSIGNALED(status):  # end the same way, so the batch system sees it too
        term_sig = os.WTERMSIG(status)
        signal.signal(term_sig, signal.SIG_DFL)
        os.kill(os.getpid(), term_sig)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
