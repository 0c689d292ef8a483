"""What the job wrapper costs a job: start-to-end wall time of a ``true`` job run
as a batch script runs it (``sh -c 'exec WRAPPER SPEC'``), native and Python,
against ``sh -c true`` itself (and ``sh -c 'exec true'``: the same plus the
exec of a ``true`` program), the runs alternating (docs/job-wrapper.md; issue [4/10] (d)).

    .venv/bin/python bench/wrapper_start.py [--runs 300]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jobbridge.schedulers import jobwrap, nativewrap


def timed(argv: list[str]) -> float:
    """Seconds from spawning ``argv`` to reaping it."""
    began = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ)
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - began
    assert os.waitstatus_to_exitcode(status) == 0, argv
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    runs = parser.parse_args().runs
    sh = shutil.which("sh")
    assert sh is not None
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        native = nativewrap.build(folder / "wrapper")  # as jobbridge builds it
        files = {key: str(folder / key) for key in ("exit", "start", "out", "err")}
        spec = folder / "job.spec"  # both wrappers read the same
        jobwrap.write_spec(str(spec), {
            "exit_file": files["exit"], "start_file": files["start"],
            "kill_reaches": "process_group", "cpus": 1, "stdout_file": files["out"],
            "stderr_file": files["err"], "command": ["true"]})
        variants = {
            "sh -c true": [sh, "-c", "true"],
            "sh -c 'exec true'": [sh, "-c", "exec true"],  # the job's own exec
            "native wrapper": [sh, "-c", 'exec "$0" "$@"', str(native), str(spec)],
            "python wrapper": [sh, "-c", 'exec "$0" "$@"', *jobwrap.command(sys.executable),
                               str(spec)],
        }
        times: dict[str, list[float]] = {key: [] for key in variants}
        for _ in range(runs):  # alternating: the machine's noise hits each alike
            for key, argv in variants.items():
                times[key].append(timed(argv))
                for record in ("exit", "start"):  # each job's are new: a rename over an
                    with contextlib.suppress(FileNotFoundError):  # old one costs more
                        os.unlink(files[record])
    base = statistics.median(times["sh -c true"])
    print(f"{runs} runs each, ms: median (mean, 90th percentile), median over sh -c true")
    for key, values in times.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"  {key:18} {median * 1e3:7.2f} ({statistics.mean(values) * 1e3:6.2f}, "
              f"{p90 * 1e3:6.2f})  +{(median - base) * 1e3:.2f}")


if __name__ == "__main__":
    main()
