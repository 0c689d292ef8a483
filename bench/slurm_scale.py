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
(d) ``--hand-array N`` (the issue's (d), by hand only, on the private cluster of
bench/private_slurm.sh): N independent ``true`` through ``jobbridge run`` with this
release's defaults against a hand-written script: one ``sbatch --array=0-(N-1)
--wrap=true``, then ``squeue`` every 30 s until none is left. slurmctld's counts
are reset (``sdiag --reset``) before each way; *user RPCs* are those of the
commands (sdiag's message types less slurmd's own: job completions, epilogs,
registrations, and sdiag's). *last end* is when the last job ended (the newest
output file of the hand-written array; the process for jobbridge, which sees
ends from its wrappers' files at once): the hand-written script's wall time is
rounded up to its next 30 s poll.
Shims on PATH count each Slurm command; ``sdiag`` tells slurmctld's own count of
this user's RPCs (before/after; other users of the machine add to it). Prints
figures only. Needs the Slurm of scripts/clusters/slurm-up.sh.

    .venv/bin/python bench/slurm_scale.py [--jobs 60] [--chain 10] [--true-jobs 1000]
        [--repeat 1] [--parts a,b,t]
    eval "$(bench/private_slurm.sh up)"
    .venv/bin/python bench/slurm_scale.py --hand-array 10000
"""

from __future__ import annotations

import argparse
import getpass
import itertools
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DIR, byte_compile, counting_shims, load_average, med, spread, table

from jobbridge.schedulers.jobwrap import command

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
#: sdiag's message types that are not a user's commands: slurmd's (job ends,
#: epilogs, registrations) and the measure's own.
DAEMON_RPCS = frozenset({"REQUEST_COMPLETE_BATCH_SCRIPT", "MESSAGE_EPILOG_COMPLETE",
                         "MESSAGE_NODE_REGISTRATION_STATUS", "REQUEST_COMPLETE_PROLOG",
                         "REQUEST_STEP_COMPLETE", "MESSAGE_COMPOSITE", "REQUEST_STATS_INFO",
                         "REQUEST_STATS_RESET"})
#: The cluster name of bench/private_slurm.sh: (d) runs there only.
PRIVATE_CLUSTER = "jbbench"
#: The hand-written script's poll interval (what sites ask of their users).
HAND_POLL = 30


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


def rpcs_by_type() -> Counter[str]:
    """sdiag's count of RPCs by message type since its last reset."""
    text = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    part = text.partition("by message type")[2].partition("by user")[0]
    return Counter({found[1]: int(found[2]) for found in re.finditer(
        r"^\s*(\w+)\s*\(\s*\d+\)\s*count:\s*(\d+)", part, re.MULTILINE)})


def slurm_config(key: str) -> str:
    text = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                          check=True).stdout
    found = re.search(rf"^{re.escape(key)}\s*=\s*(\S*)", text, re.MULTILINE)
    return found.group(1) if found else ""


def quiet_controller(limit: float = 180) -> None:
    """Wait (up to ``limit`` s) until slurmctld has forgotten every job (MinJobAge),
    so that a way does not start with the last one's records in its queries."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and subprocess.run(
            ["squeue", "--noheader", "--states=all", "--format=%i"],
            capture_output=True, text=True).stdout.strip():
        time.sleep(5)


class Bench:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs = 0
        self.shims, self.calls_log = counting_shims(folder, COUNTED)
        #: sdiag's RPCs by message type of the last run with ``reset``
        self.by_type: Counter[str] = Counter()
        #: CPU seconds of the last ``jobbridge run`` (its process and the commands it ran)
        self.engine_cpu = 0.0

    def forget_calls(self) -> None:
        self.calls_log.write_text("")
        Path(f"{self.calls_log}.argv").write_text("")

    def baseline(self, count: int) -> tuple[float, Counter[str], int | None]:
        """``count`` x ``sbatch --wrap=true``, then ``squeue`` every 2 s until none
        of them is left: what a user's script would do."""
        self.runs += 1
        run = self.folder / f"run{self.runs}"
        run.mkdir()
        env = {**os.environ, "PATH": f"{self.shims}:{os.environ['PATH']}"}
        self.forget_calls()
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

    def hand_array(self, count: int, wrap: str = "true"
                   ) -> tuple[float, float, Counter[str], Counter[str]]:
        """The hand-written script of (d): one ``sbatch --array`` of ``count`` x
        ``wrap`` (``true``), then ``squeue`` every HAND_POLL s until none is left.
        Returns its wall time, the time to the last element's end, the calls and
        sdiag's RPCs."""
        self.runs += 1
        run = self.folder / f"run{self.runs}"
        run.mkdir()
        script = run / "hand.sh"
        script.write_text(f"""#!/bin/bash
set -e
id=$(sbatch --parsable --array=0-{count - 1} --wrap={shlex.quote(wrap)})
while [ -n "$(squeue --noheader --format=%i --jobs="$id")" ]; do sleep {HAND_POLL}; done
""")
        script.chmod(0o700)
        env = {**os.environ, "PATH": f"{self.shims}:{os.environ['PATH']}"}
        self.forget_calls()
        subprocess.run(["sdiag", "--reset"], check=True, capture_output=True)
        started, wall_started = time.perf_counter(), time.time()
        subprocess.run([str(script)], cwd=run, env=env, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - started
        rpcs = rpcs_by_type()
        outputs = [entry.stat().st_mtime for entry in os.scandir(run)
                   if entry.name.startswith("slurm-")]
        if len(outputs) != count:
            raise SystemExit(f"the hand-written array left {len(outputs)} output files, "
                             f"not {count}")
        return elapsed, max(outputs) - wall_started, Counter(
            self.calls_log.read_text().split()), rpcs

    def run(self, way: str, jobs: list[dict[str, object]], deps: list[list[str]], *,
            reset: bool = False
            ) -> tuple[float, Counter[str], int | None, list[dict[str, object]]]:
        """``jobbridge run`` of the workflow; ``reset``: sdiag's counts reset before
        (the RPCs returned are then the user's, by message type: ``user_rpcs_d``)."""
        self.runs += 1
        run = self.folder / f"run{self.runs}"
        run.mkdir()
        (run / "wf.json").write_text(json.dumps({"name": "scale", "jobs": jobs,
                                                 "dependencies": deps}))
        (run / "jobbridge.cfg").write_text(f"[slurm]\nscheduler_type = slurm\n{WAYS[way]}")
        env = {**os.environ, "JOBBRIDGE_HOME": str(run / "home"),
               "JOBBRIDGE_CONFIG": str(run / "jobbridge.cfg"),
               "PATH": f"{self.shims}:{os.environ['PATH']}"}
        self.forget_calls()
        if reset:
            subprocess.run(["sdiag", "--reset"], check=True, capture_output=True)
        rpcs = user_rpcs()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "jobbridge", "run", str(run / "wf.json"),
                                 "--resource", "slurm", "--json"], env=env, text=True,
                                stdin=subprocess.DEVNULL, capture_output=True)
        elapsed = time.perf_counter() - started
        after_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.engine_cpu = (after_usage.ru_utime + after_usage.ru_stime
                           - before.ru_utime - before.ru_stime)
        after = user_rpcs()
        if reset:
            self.by_type = rpcs_by_type()
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


def squeue_kinds(calls_log: Path) -> Counter[str]:
    """The last run's ``squeue`` calls by purpose: status (``--jobs``, or ``--user``
    when the ids are too many for one argument), find (``--name``: a lost
    submission's lookup), other; and the seconds between status calls."""
    kinds: Counter[str] = Counter()
    times = []
    for line in Path(f"{calls_log}.argv").read_text().splitlines():
        name, when, argv = [*line.split(" ", 2), "", ""][:3]
        if name == "squeue":
            kind = ("find" if "--name=" in argv else "status" if any(
                option in argv for option in ("--jobs=", "--user=")) else "other")
            kinds[kind] += 1
            if kind == "status":
                times.append(float(when))
    gaps = [f"{later - earlier:.0f}" for earlier, later in itertools.pairwise(times)]
    kinds[f"(gaps s: {' '.join(gaps)})"] = 0
    return kinds


def user_part(by_type: Counter[str]) -> int:
    return sum(count for kind, count in by_type.items() if kind not in DAEMON_RPCS)


#: ``--floor``: hand-written arrays whose elements start a Python: a bare one, one
#: importing the standard modules a wrapper written the usual way would, and one
#: importing jobbridge's job wrapper as each jobbridge element does before its command.
FLOORS = {"pass": [sys.executable, "-c", "pass"],
          "stdlib": [sys.executable, "-c", "import json, os, signal, subprocess, time"],
          "wrapper": [
              *command(sys.executable)[:-2], "import sys; sys.path.insert(0, sys.argv.pop(1)); "
              "import jobbridge.schedulers.jobwrap", command(sys.executable)[-1]]}


#: What each floor's elements run, as the table says it.
FLOOR_LABELS = {"pass": "hand, python -c pass",
                "stdlib": "hand, python + json, signal, subprocess",
                "wrapper": "hand, python -I -S + jobbridge's wrapper imports"}


def hand_array_case(bench: Bench, count: int, repeat: int, floors: Sequence[str] = ()) -> None:
    """(d): ``count`` x ``true``, the hand-written array then jobbridge, ``repeat``
    times; prints the table (medians) and each way's RPCs by message type.
    ``floors``: then these FLOORS arrays (what a Python in each element costs)."""
    cluster, size = slurm_config("ClusterName"), slurm_config("MaxArraySize")
    if cluster != PRIVATE_CLUSTER:
        raise SystemExit(f"--hand-array runs on the private cluster only (ClusterName "
                         f"{PRIVATE_CLUSTER}, not {cluster!r}): "
                         f'eval "$(bench/private_slurm.sh up)" first')
    if not size.isdigit() or int(size) < count:
        raise SystemExit(f"MaxArraySize {size} is below {count}: "
                         f"JB_BENCH_SLURM_MAX_ARRAY={count + 1} bench/private_slurm.sh up")
    chosen = {FLOOR_LABELS[name]: FLOORS[name] for name in floors}
    walls: dict[str, list[float]] = {way: [] for way in ("hand", "jobbridge", *chosen)}
    ends: dict[str, list[float]] = {way: [] for way in walls}
    #: seconds from the start to the last submission (the hand-written script: its one)
    submitted: dict[str, list[float]] = {way: [0.0] for way in walls}
    submitted["jobbridge"] = []
    calls: dict[str, Counter[str]] = {}
    rpcs: dict[str, Counter[str]] = {}
    for turn in range(repeat):
        quiet_controller()
        print(f"  run {turn + 1}: hand-written array (load average {load_average()})",
              flush=True)
        wall, end, calls["hand"], rpcs["hand"] = bench.hand_array(count)
        walls["hand"].append(wall)
        ends["hand"].append(end)
        quiet_controller()
        print(f"  run {turn + 1}: jobbridge run (load average {load_average()})", flush=True)
        began = time.time()
        wall, calls["jobbridge"], _, jobs = bench.run("arrays", *trues(count), reset=True)
        submitted["jobbridge"].append(max(datetime.fromisoformat(
            str(job["submission_date"])).timestamp() for job in jobs) - began)
        last_end = max(datetime.fromisoformat(str(job["ending_date"])).timestamp()
                       for job in jobs) - began
        print(f"  jobbridge: its last job's own end (its wrapper's record) at {last_end:.1f} s")
        rpcs["jobbridge"] = bench.by_type
        done = sum(job["status"] == "done" for job in jobs)
        if done != count:
            raise SystemExit(f"jobbridge: {done} of {count} jobs done")
        walls["jobbridge"].append(wall)
        ends["jobbridge"].append(wall)
        print(f"  jobbridge: {bench.engine_cpu:.1f} s of CPU (the engine and its commands)")
        print("  jobbridge's squeue calls: " + ", ".join(
            f"{kind} {number}" for kind, number in squeue_kinds(bench.calls_log).items()),
              flush=True)
        for way, code in chosen.items():
            quiet_controller()
            print(f"  run {turn + 1}: {way} (load average {load_average()})", flush=True)
            wall, end, calls[way], rpcs[way] = bench.hand_array(count, shlex.join(code))
            walls[way].append(wall)
            ends[way].append(end)
    base, base_end = med(walls["hand"]), med(ends["hand"])
    rows = []
    for way, label in (("hand", "hand-written sbatch --array"), ("jobbridge", "jobbridge"),
                       *((way, way) for way in chosen)):
        status = calls[way]["squeue"] + calls[way]["sacct"]
        rows.append([label, f"{med(walls[way]):.1f}", spread(walls[way]),
                     f"{med(ends[way]):.1f}", f"{med(submitted[way]):.1f}",
                     f"{med(walls[way]) / base:.3f}x",
                     f"{med(ends[way]) / base_end:.3f}x",
                     *(str(calls[way][c]) for c in COUNTED), str(status),
                     str(user_part(rpcs[way]))])
    print(f"(d) {count} independent true (targets: wall <= 1.05x the hand-written "
          f"array's, < 100 user RPCs)")
    print(table(["", "wall s", "runs", "last end s", "all submitted s", "wall ratio",
                 "last end ratio",
                 *COUNTED, "status", "user RPCs"], rows))
    for way in calls:
        print(f"{way}: sdiag by message type (last run): " + ", ".join(
            f"{kind} {number}" for kind, number in rpcs[way].most_common()))
    print(f"(load average at the end {load_average()})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--chain", type=int, default=10)
    parser.add_argument("--true-jobs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--hand-array", type=int, metavar="N",
                        help="(d) only: N x true against a hand-written sbatch --array, on "
                             "the private cluster of bench/private_slurm.sh")
    parser.add_argument("--floor", nargs="?", const=",".join(FLOORS), default="",
                        help="(d): also hand-written arrays whose elements start a Python: "
                             "comma-separated, of: " + ", ".join(FLOORS) + " (default: all)")
    parser.add_argument("--parts", default="a,b,t", help="comma-separated, of: a, b, t")
    parser.add_argument("--ways", default=",".join(AB_WAYS), help="ways of (a) and (b), "
                        "comma-separated, of: " + ", ".join(AB_WAYS))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    ways = args.ways.split(",")
    parts = args.parts.split(",")
    byte_compile()
    if args.hand_array:
        print(f"(d) {args.hand_array} x true, hand-written sbatch --array against jobbridge "
              f"run, {args.repeat} run(s) each (load average {load_average()})")
        args.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="jb-slurm-hand-", dir=args.dir) as folder:
            hand_array_case(Bench(Path(folder)), args.hand_array, args.repeat,
                            [name for name in args.floor.split(",") if name])
        return 0
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
