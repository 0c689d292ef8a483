"""A 200-job workflow on the local Slurm: jobbridge against plain ``sbatch --dependency``.

Issue [3/7] item 8. The workflow is 10 chains of 20 short jobs (every job but the
first of a chain depends on the one before), so most of the wall time is the path
from one job's end to the next one's start. Two ways, alternating in the same run:

- **jobbridge**: ``jobbridge run FILE --resource slurm`` (default intervals), with
  ``sbatch``/``squeue``/``sacct``/``scontrol`` on PATH replaced by shims that count
  their calls and run the real command;
- **sbatch loop**: what a shell loop does, all 200 ``sbatch --parsable
  --dependency=afterok:PREV`` at once, then ``squeue`` every 0.5 s until they are gone
  (Slurm's own dependency handling: the fastest a user script can get).

Each job writes the times its command starts and ends (ms); *end -> next start* is
the median from a job's end to its dependent's start, *end -> next sbatch* (jobbridge)
the median from a job's end to the store's submission date of its dependent.
Prints figures only. Needs the Slurm of scripts/clusters/slurm-up.sh.

    .venv/bin/python bench/slurm_bench.py [--chains 10] [--length 20] [--repeat 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_DIR,
    byte_compile,
    counting_shims,
    load_average,
    med,
    median_of,
    spread,
    table,
)

COUNTED = ("sbatch", "squeue", "sacct", "scontrol", "scancel")


class Bench:
    def __init__(self, folder: Path, chains: int, length: int, partition: str | None) -> None:
        self.folder, self.chains, self.length = folder, chains, length
        self.partition = partition
        self.runs = 0
        self.shims, self.calls_log = counting_shims(folder, COUNTED)
        self.jobbridge: dict[str, list[float]] = {"latency": [], "to_submit": []}
        self.native: dict[str, list[float]] = {"latency": []}
        self.calls: list[Counter[str]] = []

    def ids(self) -> list[list[str]]:
        return [[f"c{c}s{s}" for s in range(self.length)] for c in range(self.chains)]

    def command(self, job_id: str, times: Path) -> list[str]:
        """The job: its start and end times (seconds, ns precision) in its own file."""
        return ["sh", "-c", 'date +%s.%N > "$1"; date +%s.%N >> "$1"',
                "sh", str(times / job_id)]

    def ends_to_starts(self, times: Path) -> tuple[list[float], dict[str, float]]:
        """Latencies from each job's end to its dependent's start; the end times."""
        starts, ends, latencies = {}, {}, []
        for path in times.iterdir():
            start, end = path.read_text().split()
            starts[path.name], ends[path.name] = float(start), float(end)
        for chain in self.ids():
            latencies += [starts[after] - ends[before]
                          for before, after in itertools.pairwise(chain)]
        return latencies, ends

    def run_jobbridge(self) -> float:
        self.runs += 1
        run = self.folder / f"jb{self.runs}"
        times = run / "times"
        times.mkdir(parents=True)
        jobs, deps = [], []
        for chain in self.ids():
            jobs += [{"id": job_id, "command": self.command(job_id, times)} for job_id in chain]
            deps += [[before, after] for before, after in itertools.pairwise(chain)]
        (run / "wf.json").write_text(json.dumps({"name": "slurm bench", "jobs": jobs,
                                                 "dependencies": deps}))
        queue = f"native_specification = --partition={self.partition}\n" if self.partition else ""
        (run / "jobbridge.cfg").write_text(f"[slurm]\nscheduler_type = slurm\n{queue}")
        env = {**os.environ, "JOBBRIDGE_HOME": str(run / "home"),
               "JOBBRIDGE_CONFIG": str(run / "jobbridge.cfg"),
               "PATH": f"{self.shims}:{os.environ['PATH']}"}
        self.calls_log.write_text("")
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "jobbridge", "run", str(run / "wf.json"),
                                 "--resource", "slurm", "--json"], env=env, text=True,
                                stdin=subprocess.DEVNULL, capture_output=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"jobbridge run failed ({result.returncode}):\n{result.stderr}")
        self.calls.append(Counter(self.calls_log.read_text().split()))
        latencies, ends = self.ends_to_starts(times)
        self.jobbridge["latency"] += latencies
        submitted = {job["id"]: datetime.fromisoformat(job["submission_date"]).timestamp()
                     for job in json.loads(result.stdout)["jobs"]}
        self.jobbridge["to_submit"] += [submitted[after] - ends[before]
                                        for chain in self.ids()
                                        for before, after in itertools.pairwise(chain)]
        return elapsed

    def run_native(self) -> float:
        self.runs += 1
        run = self.folder / f"native{self.runs}"
        times = run / "times"
        times.mkdir(parents=True)
        options = ["--parsable", "--output=/dev/null", "--error=/dev/null", "--ntasks=1",
                   "--kill-on-invalid-dep=yes"]
        if self.partition:
            options.append(f"--partition={self.partition}")
        started = time.perf_counter()
        submitted = []
        for chain in self.ids():
            previous = None
            for job_id in chain:
                after = [f"--dependency=afterok:{previous}"] if previous else []
                wrap = shlex.join(self.command(job_id, times))
                answer = subprocess.run(["sbatch", *options, *after, f"--job-name={job_id}",
                                         f"--wrap={wrap}"], capture_output=True, text=True,
                                        check=True)
                previous = answer.stdout.strip().split(";")[0]
                submitted.append(previous)
        while subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(submitted)],
                             capture_output=True, text=True).stdout.strip():
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        self.native["latency"] += self.ends_to_starts(times)[0]
        return elapsed


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=10)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--partition", default=None, help="Slurm partition (default: Slurm's)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    byte_compile()
    jobs = args.chains * args.length
    print(f"{jobs} jobs ({args.chains} chains of {args.length}) on the local Slurm, "
          f"{args.repeat} run(s) each (load average {load_average()})")
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jb-slurm-bench-", dir=args.dir) as folder:
        bench = Bench(Path(folder), args.chains, args.length, args.partition)
        native, ours = median_of(args.repeat, bench.run_native, bench.run_jobbridge)
        calls = bench.calls[-1]
        print(table(["", "wall s", "runs", "end -> next start", "end -> next sbatch",
                     *COUNTED], [
            ["sbatch loop", f"{med(native):.1f}", spread(native), ms(bench.native["latency"]),
             "-", str(jobs), "(polls)", "0", "0", "0"],
            ["jobbridge", f"{med(ours):.1f}", spread(ours), ms(bench.jobbridge["latency"]),
             ms(bench.jobbridge["to_submit"]), *(str(calls[c]) for c in COUNTED)],
        ]))
        print(f"ratio jobbridge / sbatch loop: {med(ours) / med(native):.2f}x "
              "(calls: the last jobbridge run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
