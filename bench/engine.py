"""The engine end to end, against plain baselines measured in the same run.

Issue [2/7] item 7. Prints figures only; asserts nothing timed.

(a) 3000 independent ``true`` jobs via ``jobbridge run`` (a fresh JOBBRIDGE_HOME
    each run) vs ``xargs -P<cores>``. Target <= 1.3x xargs.
(b) a 300-job chain via ``jobbridge run`` vs a plain Python loop of 300
    ``subprocess.run(["true"])``: overhead per step. Target <= 2 ms.
(c) a 100,000-job workflow of fan-out/fan-in layers (1 -> group of 9,999 -> 1 ->
    ...): time to validate and store it (``load_workflow_file`` + ``Store.add_workflow``),
    then jobs per second and peak RSS running it all with ``jobbridge run``.
    Targets: store < 5 s, >= 1000 jobs/s, peak RSS < 1 GB.

    .venv/bin/python bench/engine.py [--repeat 3] [--only a,b,c] [--big-jobs 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DEFAULT_DIR,
    byte_compile,
    cores,
    file_creation_ms,
    load_average,
    loop_true,
    med,
    median_of,
    spread,
    table,
    xargs_true,
)

#: soma-workflow on this machine (issue [2/7]), for comparison.
SOMA_A_SECONDS = 17.0
SOMA_B_MS_PER_STEP = 63.0


# --- workflows ------------------------------------------------------------------------------


def independent(n: int) -> dict[str, object]:
    return {"name": f"{n} independent", "jobs": [{"id": f"j{i}", "command": ["true"]}
                                                 for i in range(n)]}


def chain(n: int) -> dict[str, object]:
    return {"name": f"chain of {n}",
            "jobs": [{"id": f"c{i}", "command": ["true"]} for i in range(n)],
            "dependencies": [[f"c{i}", f"c{i + 1}"] for i in range(n - 1)]}


def layers(n: int, blocks: int = 10) -> dict[str, object]:
    """``blocks`` times (1 job -> a group of fan-out jobs), then a final join: n jobs."""
    fan = n // blocks - 1
    jobs: list[dict[str, object]] = []
    groups: list[dict[str, object]] = []
    deps: list[list[str]] = []
    for k in range(blocks):
        jobs.append({"id": f"s{k}", "command": ["true"]})
        size = fan - 1 if k == blocks - 1 else fan
        members = [f"l{k}_{i}" for i in range(size)]
        jobs.extend({"id": m, "command": ["true"]} for m in members)
        groups.append({"name": f"g{k}", "elements": members})
        deps.append([f"s{k}", f"g{k}"])
        deps.append([f"g{k}", f"s{k + 1}" if k + 1 < blocks else "end"])
    jobs.append({"id": "end", "command": ["true"]})
    return {"name": f"{len(jobs)} jobs in layers", "jobs": jobs, "dependencies": deps,
            "groups": groups}


# --- running --------------------------------------------------------------------------------


class Bench:
    def __init__(self, folder: Path, slots: int) -> None:
        self.folder = folder
        self.config = folder / "jobbridge.cfg"
        self.config.write_text(f"[localhost]\nscheduler_type = local_basic\ncpu_nb = {slots}\n")
        self.runs = 0

    def write(self, name: str, workflow: dict[str, object]) -> Path:
        path = self.folder / name
        path.write_text(json.dumps(workflow))
        return path

    def fresh_env(self) -> dict[str, str]:
        self.runs += 1
        home = self.folder / f"home{self.runs}"
        return {**os.environ, "JOBBRIDGE_HOME": str(home), "JOBBRIDGE_CONFIG": str(self.config)}

    def run(self, workflow: Path) -> tuple[float, int]:
        """``jobbridge run`` in a fresh home: seconds and peak RSS (kB) of the largest
        process of the run (engine, its runner or a job)."""
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "jobbridge", "run", str(workflow)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=self.fresh_env())
        assert process.stderr is not None
        errors = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"jobbridge run {workflow.name} failed ({process.returncode}):\n"
                             + errors.decode(errors="replace"))
        return elapsed, usage.ru_maxrss

    def store_phase(self, workflow: Path) -> dict[str, float]:
        """Validate and store in a child process (its own peak RSS)."""
        output = subprocess.run(
            [sys.executable, __file__, "--store-phase", str(workflow)],
            env=self.fresh_env(), check=True, capture_output=True, text=True).stdout
        result: dict[str, float] = json.loads(output)
        return result


def store_phase(workflow: str) -> None:
    """Child of ``Bench.store_phase``: time load_workflow_file and Store.add_workflow."""
    from jobbridge.controller import resolve_config
    from jobbridge.model import load_workflow_file
    from jobbridge.store import Store

    started = time.perf_counter()
    spec = load_workflow_file(workflow)
    validated = time.perf_counter()
    store = Store()
    store.add_workflow(spec, resolve_config())
    stored = time.perf_counter()
    store.close()
    print(json.dumps({"validate": validated - started, "store": stored - validated,
                      "jobs": len(spec.jobs) - len(spec.hidden_ids),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def bench_a(bench: Bench, repeat: int, slots: int, jobs: int) -> list[list[str]]:
    workflow = bench.write("independent.json", independent(jobs))
    xargs, run = median_of(repeat, lambda: xargs_true(jobs, slots),
                           lambda: bench.run(workflow)[0])
    ratio = med(run) / med(xargs)
    return [
        [f"(a) {jobs} true: xargs -P{slots}", f"{med(xargs):.2f} s", spread(xargs), "", ""],
        [f"(a) {jobs} true: jobbridge run", f"{med(run):.2f} s", spread(run), "",
         f"{SOMA_A_SECONDS:.0f} s"],
        ["(a) ratio jobbridge / xargs", f"{ratio:.2f}x", "", "<= 1.3x",
         f"{SOMA_A_SECONDS / med(xargs):.1f}x"],
    ]


def bench_b(bench: Bench, repeat: int, steps: int) -> list[list[str]]:
    workflow = bench.write("chain.json", chain(steps))
    single = bench.write("single.json", chain(1))
    loop, run, one = median_of(repeat, lambda: loop_true(steps),
                               lambda: bench.run(workflow)[0], lambda: bench.run(single)[0])
    per_step = (med(run) - med(loop)) / steps * 1000
    marginal = ((med(run) - med(one)) - med(loop) * (steps - 1) / steps) / (steps - 1) * 1000
    return [
        [f"(b) loop of {steps} subprocess.run", f"{med(loop):.2f} s", spread(loop), "", ""],
        [f"(b) chain of {steps}: jobbridge run", f"{med(run):.2f} s", spread(run), "", ""],
        ["(b) jobbridge run of 1 job (startup)", f"{med(one):.2f} s", spread(one), "", ""],
        ["(b) overhead per step, startup included", f"{per_step:.2f} ms", "", "<= 2 ms",
         f"{SOMA_B_MS_PER_STEP:.0f} ms"],
        ["(b) overhead per step, startup excluded", f"{marginal:.2f} ms", "", "", ""],
    ]


def bench_c(bench: Bench, repeat: int, jobs: int) -> list[list[str]]:
    workflow = bench.write("layers.json", layers(jobs))
    phases = [bench.store_phase(workflow) for _ in range(repeat)]
    validate = [p["validate"] for p in phases]
    store = [p["store"] for p in phases]
    total = [p["validate"] + p["store"] for p in phases]
    visible = int(phases[0]["jobs"])
    runs = [bench.run(workflow) for _ in range(repeat)]
    seconds = [r[0] for r in runs]
    rss = [r[1] / 1024 for r in runs]
    return [
        [f"(c) {visible} jobs: validate", f"{med(validate):.2f} s", spread(validate), "", ""],
        [f"(c) {visible} jobs: store", f"{med(store):.2f} s", spread(store), "", ""],
        [f"(c) {visible} jobs: validate + store", f"{med(total):.2f} s", spread(total),
         "< 5 s", ""],
        ["(c) validate + store: peak RSS", f"{med([p['rss_mb'] for p in phases]):.0f} MB",
         "", "", ""],
        [f"(c) {visible} jobs: jobbridge run", f"{med(seconds):.1f} s", spread(seconds), "", ""],
        ["(c) jobs per second (whole run)", f"{visible / med(seconds):.0f}", "", ">= 1000", ""],
        ["(c) jobbridge run: peak RSS", f"{med(rss):.0f} MB", spread(rss), "< 1024 MB", ""],
    ]


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--store-phase":
        store_phase(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="a,b,c", help="which parts, e.g. a,b")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs of (a)")
    parser.add_argument("--steps", type=int, default=300, help="length of the chain (b)")
    parser.add_argument("--big-jobs", type=int, default=100_000, help="jobs of (c)")
    parser.add_argument("--big-repeat", type=int, default=None,
                        help="runs of (c) (default: --repeat)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help=f"where to make the temporary homes (default {DEFAULT_DIR})")
    args = parser.parse_args()
    byte_compile()
    slots = cores()
    parts = set(args.only.split(","))
    print(f"{slots} cores, median of {args.repeat} runs (load average {load_average()})")
    rows: list[list[str]] = []
    args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jb-bench-", dir=args.dir) as folder:
        print(f"creating a file in {folder}: {file_creation_ms(Path(folder)):.3f} ms "
              "(0.03 on a quiet disk; see README)")
        bench = Bench(Path(folder), slots)
        steps: list[tuple[str, Callable[[], list[list[str]]]]] = [
            ("a", lambda: bench_a(bench, args.repeat, slots, args.jobs)),
            ("b", lambda: bench_b(bench, args.repeat, args.steps)),
            ("c", lambda: bench_c(bench, args.big_repeat or args.repeat, args.big_jobs)),
        ]
        for name, step in steps:
            if name in parts:
                rows += step()
                print(f"... ({name}) done", file=sys.stderr)
    print(table(["", "median", "runs", "target", "soma-workflow"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
