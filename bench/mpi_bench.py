"""10,000 ``true`` jobs under ``mpirun -n 3`` vs the local scheduler vs ``xargs -P2``.

Issue [6/7] item 4. Each way runs the jobs on the same number of job slots (the
MPI workers: ranks - 1): ``xargs -P<slots>``; ``jobbridge run`` on local_basic
with ``cpu_nb = <slots>``; ``mpirun -n <ranks> jobbridge run --scheduler mpi``
(engine on rank 0, a fresh JOBBRIDGE_HOME each run, mpirun's start included);
and, to tell the engine's share from the scheduler's, the mpi scheduler alone
(rank 0 submits the jobs through the API and waits for their ends). Prints
figures only; asserts nothing timed. Needs mpirun and mpi4py
(scripts/clusters/mpi-up.sh; as root, source scripts/clusters/env.sh).

    .venv/bin/python bench/mpi_bench.py [--jobs 10000] [--ranks 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import byte_compile, cores, load_average, med, median_of, spread, table, xargs_true


class Bench:
    def __init__(self, folder: Path, jobs: int, ranks: int) -> None:
        self.folder, self.jobs, self.ranks = folder, jobs, ranks
        self.workflow = folder / "true.json"
        self.workflow.write_text(json.dumps({"name": f"{jobs} true", "jobs": [
            {"id": f"j{i}", "command": ["true"]} for i in range(jobs)]}))
        self.config = folder / "jobbridge.cfg"
        self.config.write_text(f"[localhost]\nscheduler_type = local_basic\n"
                               f"cpu_nb = {ranks - 1}\n")
        self.runs = 0

    def timed(self, command: list[str]) -> float:
        """Seconds of ``command`` in a fresh JOBBRIDGE_HOME; it must succeed."""
        self.runs += 1
        env = {**os.environ, "JOBBRIDGE_HOME": str(self.folder / f"home{self.runs}"),
               "JOBBRIDGE_CONFIG": str(self.config)}
        started = time.perf_counter()
        result = subprocess.run(command, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command[:4])}... failed ({result.returncode}):\n"
                             + result.stderr[-2000:])
        return elapsed

    def local(self) -> float:
        return self.timed([sys.executable, "-m", "jobbridge", "run", str(self.workflow)])

    def mpi(self) -> float:
        return self.timed(["mpirun", "-n", str(self.ranks), sys.executable, "-m", "jobbridge",
                           "run", str(self.workflow), "--scheduler", "mpi"])

    def mpi_scheduler_only(self) -> float:
        return self.timed(["mpirun", "-n", str(self.ranks), sys.executable, __file__,
                           "--scheduler-only", str(self.jobs)])


def scheduler_only(jobs: int) -> int:
    """Every rank of ``mpirun ... --scheduler-only N``: rank 0 pushes N jobs through
    MPIScheduler (no engine, no store) and waits for their ends."""
    from jobbridge import constants
    from jobbridge.configuration import Configuration
    from jobbridge.model import EngineJob
    from jobbridge.scheduler import build_scheduler, run_to_end
    from jobbridge.schedulers.mpi import run_ranks

    def main() -> int:
        scheduler = build_scheduler("mpi", Configuration.from_dict("mpi", {
            "scheduler_type": "mpi"}))
        results = run_to_end(scheduler, [EngineJob(f"j{i}", ["true"]) for i in range(jobs)],
                             timeout=3600)
        return int(any(status != constants.DONE for status, _ in results))

    return run_ranks(main)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--scheduler-only":
        return scheduler_only(int(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--ranks", type=int, default=3, help="MPI ranks (job slots + 1)")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    byte_compile()
    slots = args.ranks - 1
    print(f"{args.jobs} `true` jobs on {slots} job slots, {cores()} cores, median of "
          f"{args.repeat} run(s) (load average {load_average()})")
    with tempfile.TemporaryDirectory(prefix="jb-mpi-bench-") as folder:
        bench = Bench(Path(folder), args.jobs, args.ranks)
        xargs, local, mpi, alone = median_of(
            args.repeat, lambda: xargs_true(args.jobs, slots), bench.local, bench.mpi,
            bench.mpi_scheduler_only)
    rows = [[name, f"{med(runs):.2f}", f"{args.jobs / med(runs):.0f}",
             f"{med(runs) / med(xargs):.2f}x", spread(runs)] for name, runs in [
        (f"xargs -P{slots}", xargs),
        (f"jobbridge run (local_basic, cpu_nb={slots})", local),
        (f"mpirun -n {args.ranks} jobbridge run --scheduler mpi", mpi),
        (f"mpirun -n {args.ranks}: MPIScheduler alone (no engine)", alone)]]
    print(table(["", "seconds", "jobs/s", "vs xargs", "runs"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
