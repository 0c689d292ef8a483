"""Calls to Grid Engine for N independent ``true`` jobs through the ``drmaa`` scheduler.

Issue [4/10] item 4, "the same (a) on Grid Engine through DRMAA". ``jobbridge run``
of ``--jobs`` (1000) independent ``true`` on the local Grid Engine, four ways in the
same run (alternating when ``--repeat`` > 1):

- **bulk**: this release's defaults (ends from the wrappers' files, Grid Engine
  asked every ``scheduler_interval`` = 30 s, ``max_commands_per_second`` = 1, jobs
  alike as one ``runBulkJobs``);
- **off+poll**: this release with the previous one's settings (``array_submission
  = off``, ``job_files = poll``, ``scheduler_interval = 1``, no budget);
- **previous**: the previous release's own drmaa scheduler (the ``--previous`` git
  revision's ``src``, default ``main``): one ``runJob`` a job, ``jobStatus`` of
  every job every second, ``wait`` for each end;
- **qsub**: the baseline a user would script: one ``qsub -b y true`` a job, then
  ``qstat`` every 2 s until none is left.

Every DRMAA call that reaches the DRMS is counted in the engine's process (a
``sitecustomize`` on PYTHONPATH wraps the ``drmaa`` package's session calls), and
every Grid Engine command through counting shims on PATH. Prints figures only.
Needs the Grid Engine of scripts/clusters/sge-up.sh (``source
scripts/clusters/env.sh``); fills its slots for minutes: say so to its other users.

    .venv/bin/python bench/drmaa_scale.py [--jobs 1000] [--repeat 1] [--ways ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DIR, byte_compile, counting_shims, load_average, med, spread, table

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("qsub", "qstat", "qacct", "qdel", "qconf")
DRMAA_CALLS = ("runJob", "runBulkJobs", "jobStatus", "wait", "control")
WAYS = {
    "bulk": "",
    "off+poll": "array_submission = off\njob_files = poll\nscheduler_interval = 1\n"
                 "max_commands_per_second = 0\n",
    "previous": "scheduler_interval = 1\n",
    "qsub": None,
}
#: Loaded by the engine (PYTHONPATH): counts the drmaa package's calls to the DRMS.
COUNTER = """
import os
log = os.environ.get("JB_BENCH_DRMAA_LOG")
if log:
    import drmaa

    def counted(real, name):
        def call(*args, **kwargs):
            with open(log, "a") as stream:
                stream.write(name + "\\n")
            return real(*args, **kwargs)
        return staticmethod(call)

    for name in CALLS:
        setattr(drmaa.Session, name, counted(getattr(drmaa.Session, name), name))
""".replace("CALLS", repr(DRMAA_CALLS))


class Bench:
    def __init__(self, folder: Path, previous: str) -> None:
        self.folder = folder
        self.runs = 0
        self.shims, self.calls_log = counting_shims(folder, COMMANDS)
        (self.shims / "sitecustomize.py").write_text(COUNTER)
        self.previous = folder / "previous"
        self.previous.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", previous, "src"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(self.previous)], input=archive, check=True)

    def baseline(self, count: int) -> tuple[float, Counter[str]]:
        self.runs += 1
        run = self.folder / f"run{self.runs}"
        run.mkdir()
        env = {**os.environ, "PATH": f"{self.shims}:{os.environ['PATH']}"}
        self.calls_log.write_text("")
        started = time.perf_counter()
        for _ in range(count):
            subprocess.run(["qsub", "-terse", "-b", "y", "-j", "y", "-o", f":{run}/out",
                            "-N", "jbbenchq", "true"], env=env, check=True, capture_output=True)
        while "jbbenchq" in subprocess.run(["qstat"], env=env, capture_output=True,
                                        text=True).stdout:
            time.sleep(2)
        return time.perf_counter() - started, Counter(self.calls_log.read_text().split())

    def run(self, way: str, count: int) -> tuple[float, Counter[str]]:
        self.runs += 1
        run = self.folder / f"run{self.runs}"
        run.mkdir()
        jobs = [{"id": f"t{i}", "command": ["true"]} for i in range(count)]
        (run / "wf.json").write_text(json.dumps({"name": "scale", "jobs": jobs}))
        (run / "jobbridge.cfg").write_text(f"[sge]\nscheduler_type = drmaa\n{WAYS[way]}")
        drmaa_log = run / "drmaa"
        paths = [str(self.shims), *([str(self.previous / "src")] if way == "previous" else [])]
        env = {**os.environ, "JOBBRIDGE_HOME": str(run / "home"),
               "JOBBRIDGE_CONFIG": str(run / "jobbridge.cfg"),
               "PATH": f"{self.shims}:{os.environ['PATH']}",
               "PYTHONPATH": os.pathsep.join(paths), "JB_BENCH_DRMAA_LOG": str(drmaa_log)}
        self.calls_log.write_text("")
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "jobbridge", "run", str(run / "wf.json"),
                                 "--resource", "sge", "--json"], env=env, text=True,
                                stdin=subprocess.DEVNULL, capture_output=True)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"jobbridge run ({way}) failed ({result.returncode}):\n"
                             f"{result.stderr}")
        statuses = Counter(job["status"] for job in json.loads(result.stdout)["jobs"])
        if statuses != {"done": count}:
            raise SystemExit(f"jobbridge run ({way}): {dict(statuses)}")
        calls = Counter(self.calls_log.read_text().split())
        if drmaa_log.exists():
            calls.update(drmaa_log.read_text().split())
        return elapsed, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--ways", default=",".join(WAYS),
                        help="comma-separated, of: " + ", ".join(WAYS))
    parser.add_argument("--previous", default="main",
                        help="git revision of the previous release (default: main)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    ways = args.ways.split(",")
    byte_compile()
    print(f"{args.jobs} x true on the local Grid Engine through DRMAA, {args.repeat} run(s) "
          f"each (load average {load_average()})")
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jb-drmaa-scale-", dir=args.dir) as folder:
        bench = Bench(Path(folder), args.previous)
        walls: dict[str, list[float]] = {}
        last: dict[str, Counter[str]] = {}
        for _ in range(args.repeat):
            for way in ways:
                wall, calls = (bench.baseline(args.jobs) if way == "qsub"
                               else bench.run(way, args.jobs))
                walls.setdefault(way, []).append(wall)
                last[way] = calls
                print(f"  {way}: {wall:.1f} s, {dict(calls)}", flush=True)
    rows = []
    for way in ways:
        calls, runs = last[way], walls[way]
        submit = calls["runJob"] + calls["runBulkJobs"] + calls["qsub"]
        status = calls["jobStatus"] + calls["wait"] + calls["qstat"] + calls["qacct"]
        rows.append([way, f"{med(runs):.1f}", spread(runs), str(submit), str(status),
                     f"{med(runs) / 10 + 5:.0f}",
                     *(str(calls[name]) for name in (*DRMAA_CALLS, *COMMANDS))])
    print(table(["", "wall s", "runs", "submit", "status", "target", *DRMAA_CALLS, *COMMANDS],
                rows))
    print("submit = runJob + runBulkJobs + qsub (target <= 5); status = jobStatus + wait + "
          "qstat + qacct; target = wall / 10 + 5 (issue 15); calls: the last run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
