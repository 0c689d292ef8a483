"""The job wrapper that batch scripts run: ``python -m jobbridge.schedulers.jobwrap SPEC``.

Why: a batch script must carry no user string that a shell could misread, and
the batch system's own account of a job is often incomplete (Torque's wrappers
drop ``Exit_status``; Slurm without accounting forgets finished jobs; a shell
reports a signal as 128+n). So the script only runs this wrapper on a private
JSON spec file; the wrapper starts the argv byte-exact with its env, directory
and files, forwards termination signals, and writes the true exit info (code or
signal, rusage, and when it started and ended) to the spec's ``exit_file`` before
ending the same way.

Both files are the scheduler's first source of truth (it watches their folder,
costing the batch system nothing): the spec's ``start_file`` is written as soon
as the wrapper runs, the ``exit_file`` just before it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from .. import constants
from ..model import EngineJob
from .common import write_private
from .process import exit_info_from_wait, report_start_failure, start_process

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                     signal.SIGUSR2, signal.SIGCONT, signal.SIGXCPU)


def write_exit_file(path: str, record: dict[str, Any]) -> None:
    """Atomically write a record (exit or start), private (a reader never sees half
    of it; a watcher sees one rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    write_private(tmp, json.dumps(record))
    os.replace(tmp, path)


def read_exit_file(path: str | Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as stream:
            record: dict[str, Any] = json.load(stream)
            return record
    except (OSError, ValueError):
        return None


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    job = EngineJob(**spec["job"])
    exit_file: str = spec["exit_file"]
    if spec.get("start_file"):  # older specs have none
        write_exit_file(spec["start_file"], {"host": socket.gethostname(), "pid": os.getpid()})
    try:
        process = start_process(job)
    except OSError as error:
        reason = report_start_failure(job, error)
        write_exit_file(exit_file, {"exit": [constants.EXIT_ABORTED, None, None, None],
                                    "reason": reason, "started": None, "ended": time.time()})
        return 127
    started = time.monotonic()
    began = time.time()

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, sig)

    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, forward)
    while True:
        try:
            _, status, rusage = os.wait4(process.pid, 0)
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
    process.returncode = status
    info = exit_info_from_wait(status, rusage, time.monotonic() - started, job.cpu_count)
    write_exit_file(exit_file, {"exit": list(info), "reason": info.reason, "started": began,
                                "ended": time.time()})
    if os.WIFSIGNALED(status):  # end the same way, so the batch system sees it too
        term_sig = os.WTERMSIG(status)
        signal.signal(term_sig, signal.SIG_DFL)
        os.kill(os.getpid(), term_sig)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
