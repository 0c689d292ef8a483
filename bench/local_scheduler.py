"""3000 ``true`` jobs pushed straight through the local scheduler vs ``xargs -P<cores>``.

Issue [1/7] item 7. Target: within 1.3x of xargs. The local scheduler's time runs
from the first ``job_submission`` (which starts its runner process) until every job
has ended and its exit info was read. Prints figures only; asserts nothing timed.

    .venv/bin/python bench/local_scheduler.py [--jobs 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_DIR,
    byte_compile,
    cores,
    load_average,
    med,
    median_of,
    spread,
    table,
    xargs_true,
)

from jobbridge import constants
from jobbridge.model import EngineJob
from jobbridge.schedulers.local_basic import LocalScheduler


def local_true(jobs: int, slots: int, folder: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="jb-bench-", dir=folder) as state:
        scheduler = LocalScheduler(proc_nb=slots, state_dir=state)
        batch = [EngineJob(job_id=f"j{i}", command=["true"]) for i in range(jobs)]
        started = time.perf_counter()
        ids = scheduler.job_submission(batch)
        submitted = [job_id for job_id in ids if job_id is not None]
        if not scheduler.wait_for(submitted, timeout=600):
            raise SystemExit("local scheduler: jobs still running after 600 s")
        infos = [scheduler.get_job_exit_info(job_id) for job_id in submitted]
        elapsed = time.perf_counter() - started
        scheduler.close()
        failed = [i for i in infos if i[0] != constants.FINISHED_REGULARLY or i[1] != 0]
        if len(submitted) != jobs or failed:
            raise SystemExit(f"local scheduler: {jobs - len(submitted)} refused, "
                             f"{len(failed)} failed: {failed[:3]}")
        return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help=f"where to put the runner's state (default {DEFAULT_DIR})")
    args = parser.parse_args()
    byte_compile()
    args.dir.mkdir(parents=True, exist_ok=True)
    n = cores()
    print(f"{args.jobs} `true` jobs, {n} cores, median of {args.repeat} runs "
          f"(load average {load_average()})")
    xargs, local = median_of(args.repeat, lambda: xargs_true(args.jobs, n),
                             lambda: local_true(args.jobs, n, args.dir))
    ratio = med(local) / med(xargs)
    print(table(["", "seconds", "jobs/s", "runs"], [
        [f"xargs -P{n}", f"{med(xargs):.2f}", f"{args.jobs / med(xargs):.0f}", spread(xargs)],
        ["LocalScheduler", f"{med(local):.2f}", f"{args.jobs / med(local):.0f}", spread(local)],
    ]))
    print(f"ratio LocalScheduler / xargs: {ratio:.2f}x (target <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
