"""Shared helpers of the benchmarks: the xargs baseline, medians, tables."""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: Where the benchmarks make their folders (JOBBRIDGE_HOMEs): beside a user's real
#: home (~/.local/share/jobbridge), not in /tmp, where test suites create and delete
#: thousands of files a minute (see README: file creation).
DEFAULT_DIR = Path.home() / ".cache" / "jobbridge-bench"


def byte_compile() -> None:
    """Compile jobbridge's modules, as ``pip install`` does: an editable install under
    PYTHONDONTWRITEBYTECODE would otherwise compile every module at every start
    (~60 ms per process), a cost no installed jobbridge pays."""
    import compileall

    import jobbridge

    compileall.compile_dir(Path(jobbridge.__file__).parent, quiet=1)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def xargs_true(jobs: int, parallel: int) -> float:
    """Seconds for ``xargs -P<parallel>`` to run ``true`` ``jobs`` times."""
    numbers = "".join(f"{i}\n" for i in range(jobs)).encode()
    started = time.perf_counter()
    subprocess.run(["xargs", f"-P{parallel}", "-n1", "true"], input=numbers, check=True)
    return time.perf_counter() - started


def loop_true(jobs: int) -> float:
    """Seconds for a plain Python loop of ``subprocess.run(["true"])``."""
    started = time.perf_counter()
    for _ in range(jobs):
        subprocess.run(["true"], check=True)
    return time.perf_counter() - started


def median_of(repeat: int, *measures: Callable[[], float]) -> list[list[float]]:
    """Run the measures in turn (interleaved, so noise hits all alike) ``repeat`` times;
    every sample of each."""
    samples: list[list[float]] = [[] for _ in measures]
    for _ in range(repeat):
        for index, measure in enumerate(measures):
            samples[index].append(measure())
    return samples


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """The samples, for the reader to judge the noise."""
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(lines)


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def file_creation_ms(folder: Path, count: int = 1000) -> float:
    """Kernel-side milliseconds to create one empty file in ``folder`` now: every job
    of jobbridge creates two (its stdout and stderr), xargs none."""
    probe = folder / "probe"
    probe.mkdir()
    before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(count):
        os.close(os.open(probe / str(i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    after = resource.getrusage(resource.RUSAGE_SELF)
    # left in place: deleting files makes the next creations slower (README)
    return ((after.ru_stime - before.ru_stime) + (after.ru_utime - before.ru_utime)
            ) / count * 1000


def counting_shims(folder: Path, commands: Sequence[str]) -> tuple[Path, Path]:
    """A folder of shims that log each call of ``commands`` to a file (and when, with
    its argv, to the same file's ``.argv`` beside it), then run the real command: put the
    folder first on PATH. Returns (folder, log file)."""
    shims, calls_log = folder / "shims", folder / "calls"
    shims.mkdir()
    for command in commands:
        real = shutil.which(command)
        if real is None:
            raise SystemExit(f"{command} is not on PATH: start scripts/clusters/slurm-up.sh")
        shim = shims / command
        argv_log = shlex.quote(f"{calls_log}.argv")
        shim.write_text(f"#!/bin/sh\necho {command} >> {shlex.quote(str(calls_log))}\n"
                        f"echo {command} \"$(date +%s.%N) $*\" >> {argv_log}\n"
                        f"exec {shlex.quote(real)} \"$@\"\n")
        shim.chmod(0o755)
    return shims, calls_log
