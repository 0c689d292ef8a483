"""Calls to Slurm for N jobs: ends seen from the wrappers' files against polling only,
job arrays against one sbatch a job.

Issue [4/10] item 4 (in part). Two workflows through ``jobbridge run`` on the local
Slurm, each run three ways in the same run (alternating):

- **watch**: this release's defaults (ends from the wrappers' start/exit files,
  Slurm asked every ``scheduler_interval`` = 30 s, ``max_commands_per_second`` = 1);
- **watch 10/s**: the same with a budget of 10 commands a second;
- **poll only**: the previous release's behaviour (``job_files = poll``,
  ``scheduler_interval = 10``, no budget: ``max_commands_per_second = 0``).

The workflows: (a) ``--jobs`` independent ``sleep 2`` (60: the issue's own case);
(b) a chain of ``--chain`` ``sleep 1``, where *end -> next sbatch* is the median
from a job's end (its own record) to the store's submission date of its dependent.
(t) ``--true-jobs`` (1000) independent ``true``, four ways in the same run:
**arrays** (this release's defaults: ready jobs alike go as ``sbatch --array``),
**arrays, poll only** (the same polling as the previous release: the arrays alone),
**off, poll only** (the previous release: ``array_submission = off``,
``job_files = poll``, ``scheduler_interval = 10``, no budget) and **sbatch** (the
baseline a user would script: one ``sbatch --wrap=true`` a job, then ``squeue``
every 2 s until none is left).
Shims on PATH count each Slurm command; ``sdiag`` tells slurmctld's own count of
this user's RPCs (before/after; other users of the machine add to it). Prints
figures only. Needs the Slurm of scripts/clusters/slurm-up.sh.

    .venv/bin/python bench/slurm_scale.py [--jobs 60] [--chain 10] [--true-jobs 1000]
        [--repeat 1] [--parts a,b,t]
"""

from __future__ import annotations

import argparse
import getpass
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DIR, byte_compile, counting_shims, load_average, med, spread, table

COUNTED = ("sbatch", "squeue", "sacct", "scontrol", "scancel")
WAYS = {
    "watch": "",
    "watch 10/s": "max_commands_per_second = 10\n",
    "poll only": "job_files = poll\nscheduler_interval = 10\nmax_commands_per_second = 0\n",
    "arrays": "",
    "arrays, poll only": "job_files = poll\nscheduler_interval = 10\nmax_commands_per_second = 0\n",
    "off, poll only": "array_submission = off\njob_files = poll\nscheduler_interval = 10\n"
                      "max_commands_per_second = 0\n",
}
#: The ways of (a) and (b); those of (t), the last one a plain sbatch loop.
AB_WAYS = ("watch", "watch 10/s", "poll only")
TRUE_WAYS = ("arrays", "arrays, poll only", "off, poll only", "sbatch")


def user_rpcs() -> int | None:
    """slurmctld's count of this user's RPCs (``sdiag``), None if it cannot say."""
    try:
        text = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    part = text.partition("Remote Procedure Call statistics by user")[2]
    found = re.search(rf"^\s*{re.escape(getpass.getuser())}\s*\(\s*\d+\)\s*count:\s*(\d+)",
                      part, re.MULTILINE)
    return int(found.group(1)) if found else None


class Bench:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs = 0
        self.shims, self.calls_log = counting_shims(folder, COUNTED)
        #: per way: wall times, last call counts, RPCs, end -> next sbatch (chain)
        self.results: dict[str, dict[str, list[object]]] = {}

    def baseline(self, count: int) -> tuple[float, Counter[str], int | None]:
        """``count`` x ``sbatch --wrap=true``, then ``squeue`` every 2 s until none
        of them is left: what a user's script would do."""
        self.runs += 1
        run = self.folder / f"run{self.runs}"
        run.mkdir()
        env = {**os.environ, "PATH": f"{self.shims}:{os.environ['PATH']}"}
        self.calls_log.write_text("")
        rpcs = user_rpcs()
        started = time.perf_counter()
        ids = [subprocess.run(["sbatch", "--parsable", f"--output={run}/out", f"--chdir={run}",
                               "--wrap=true"], env=env, check=True, capture_output=True,
                              text=True).stdout.split(";")[0].strip() for _ in range(count)]
        while subprocess.run(["squeue", "--noheader", "--format=%i", f"--jobs={','.join(ids)}"],
                             env=env, capture_output=True, text=True).stdout.strip():
            time.sleep(2)
        elapsed = time.perf_counter() - started
        after = user_rpcs()
        rpc = None if rpcs is None or after is None else after - rpcs
        return elapsed, Counter(self.calls_log.read_text().split()), rpc

    def run(self, way: str, jobs: list[dict[str, object]], deps: list[list[str]]
            ) -> tuple[float, Counter[str], int | None, list[dict[str, object]]]:
        self.runs += 1
        run = self.folder / f"run{self.runs}"
        run.mkdir()
        (run / "wf.json").write_text(json.dumps({"name": "scale", "jobs": jobs,
                                                 "dependencies": deps}))
        (run / "jobbridge.cfg").write_text(f"[slurm]\nscheduler_type = slurm\n{WAYS[way]}")
        env = {**os.environ, "JOBBRIDGE_HOME": str(run / "home"),
               "JOBBRIDGE_CONFIG": str(run / "jobbridge.cfg"),
               "PATH": f"{self.shims}:{os.environ['PATH']}"}
        self.calls_log.write_text("")
        rpcs = user_rpcs()
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "jobbridge", "run", str(run / "wf.json"),
                                 "--resource", "slurm", "--json"], env=env, text=True,
                                stdin=subprocess.DEVNULL, capture_output=True)
        elapsed = time.perf_counter() - started
        after = user_rpcs()
        if result.returncode != 0:
            raise SystemExit(f"jobbridge run failed ({result.returncode}):\n{result.stderr}")
        calls = Counter(self.calls_log.read_text().split())
        rpc = None if rpcs is None or after is None else after - rpcs
        return elapsed, calls, rpc, json.loads(result.stdout)["jobs"]


def independent(count: int) -> tuple[list[dict[str, object]], list[list[str]]]:
    return [{"id": f"j{i}", "command": ["sleep", "2"]} for i in range(count)], []


def trues(count: int) -> tuple[list[dict[str, object]], list[list[str]]]:
    return [{"id": f"t{i}", "command": ["true"]} for i in range(count)], []


def chain(length: int, times: Path) -> tuple[list[dict[str, object]], list[list[str]]]:
    ids = [f"s{i}" for i in range(length)]
    jobs: list[dict[str, object]] = [
        {"id": job_id, "command": ["sh", "-c", 'sleep 1; date +%s.%N > "$1"', "sh",
                                   str(times / job_id)]} for job_id in ids]
    return jobs, [list(pair) for pair in itertools.pairwise(ids)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--chain", type=int, default=10)
    parser.add_argument("--true-jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--parts", default="a,b,t", help="comma-separated, of: a, b, t")
    parser.add_argument("--ways", default=",".join(AB_WAYS), help="ways of (a) and (b), "
                        "comma-separated, of: " + ", ".join(AB_WAYS))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    ways = args.ways.split(",")
    parts = args.parts.split(",")
    byte_compile()
    print(f"(a) {args.jobs} x sleep 2, (b) a chain of {args.chain} x sleep 1, (t) "
          f"{args.true_jobs} x true, on the local Slurm, {args.repeat} run(s) each, parts "
          f"{','.join(parts)} (load average {load_average()})")
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jb-slurm-scale-", dir=args.dir) as folder:
        bench = Bench(Path(folder))
        walls: dict[tuple[str, str], list[float]] = {}
        last: dict[tuple[str, str], tuple[Counter[str], int | None]] = {}
        reactions: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.repeat):
            for way in TRUE_WAYS if "t" in parts else ():
                if way == "sbatch":
                    wall, calls, rpc = bench.baseline(args.true_jobs)
                else:
                    wall, calls, rpc, _ = bench.run(way, *trues(args.true_jobs))
                walls.setdefault((way, "t"), []).append(wall)
                last[way, "t"] = calls, rpc
            for way in ways:
                if "a" in parts:
                    wall, calls, rpc, _ = bench.run(way, *independent(args.jobs))
                    walls.setdefault((way, "a"), []).append(wall)
                    last[way, "a"] = calls, rpc
                if "b" in parts:
                    times = Path(folder) / f"times{bench.runs}"
                    times.mkdir()
                    wall, calls, rpc, jobs = bench.run(way, *chain(args.chain, times))
                    walls.setdefault((way, "b"), []).append(wall)
                    last[way, "b"] = calls, rpc
                    submitted = {job["id"]: datetime.fromisoformat(
                        str(job["submission_date"])).timestamp() for job in jobs}
                    ends = {path.name: float(path.read_text()) for path in times.iterdir()}
                    reactions[way] += [submitted[f"s{i + 1}"] - ends[f"s{i}"]
                                       for i in range(args.chain - 1)]
        rows: dict[str, list[list[str]]] = {"a": [], "b": [], "t": []}
        for way, part in [*((way, part) for way in ways for part in "ab"),
                          *((way, "t") for way in TRUE_WAYS)]:
            if part not in parts:
                continue
            calls, rpc = last[way, part]
            runs = walls[way, part]
            status = calls["squeue"] + calls["sacct"]
            extra = [f"{statistics.median(reactions[way]) * 1000:.0f} ms"] if part == "b" else []
            rows[part].append([way, f"{med(runs):.1f}", spread(runs), *extra,
                               *(str(calls[c]) for c in COUNTED), str(status),
                               f"{med(runs) / 10 + 5:.0f}", "-" if rpc is None else str(rpc)])
        head = [*COUNTED, "status", "target", "RPCs"]
        if "a" in parts:
            print(f"(a) {args.jobs} independent sleep 2")
            print(table(["", "wall s", "runs", *head], rows["a"]))
        if "b" in parts:
            print(f"(b) a chain of {args.chain} sleep 1")
            print(table(["", "wall s", "runs", "end -> next sbatch", *head], rows["b"]))
        if "t" in parts:
            print(f"(t) {args.true_jobs} independent true (sbatch target <= 5)")
            print(table(["", "wall s", "runs", *head], rows["t"]))
        print("status = squeue + sacct calls; target = wall / 10 + 5 (issue 15); "
              "RPCs: sdiag's count for this user (calls: the last run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
