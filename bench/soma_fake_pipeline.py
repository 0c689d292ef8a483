"""soma-workflow's FakePipeline case timed under soma-workflow and under jobbridge's controller.

Issue [5/10]. Prints figures only; asserts nothing timed.

The workflow is the one of soma-workflow's own test (``test_fake_pipeline``):
``example_fake_pipelineT1(5 * cores)``, pipelines of 7 jobs (``python sleep_job.py
SECONDS``, 1 or 2 s each, 11 s of sleep per pipeline, 9 s on its longest path). The
same script, in a child process each time, builds it with soma-workflow's classes,
creates a ``WorkflowController(isolated_light_mode=<fresh folder>)``, submits the
workflow and waits for its end; for jobbridge, the child first calls
``jobbridge.compat.soma_workflow.install()``: that is the only difference.
``--no-sleep`` makes every job sleep 0 s (the engines' own costs, Python start-up of
each job included). *ideal* is the sleep time over the CPU slots, or the longest
path if longer.

    .venv/bin/python bench/soma_fake_pipeline.py [--repeat 1] [--iterations N] [--no-sleep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DIR, byte_compile, cores, load_average, med, median_of, spread, table

CHILD = textwrap.dedent("""
    import contextlib, json, shutil, sys, time
    runner, folder, iterations, no_sleep = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with contextlib.redirect_stdout(sys.stderr):
        if runner == "jobbridge":
            import jobbridge.compat.soma_workflow
            jobbridge.compat.soma_workflow.install()
        from soma_workflow.client import Helper, WorkflowController
        from soma_workflow.test.workflow_tests import WorkflowExamplesLocal
        examples = WorkflowExamplesLocal()
        workflow = examples.example_fake_pipelineT1(iterations)
        if no_sleep == "1":
            for job in workflow.jobs:
                job.command[-1] = "0"
        started = time.perf_counter()
        controller = WorkflowController(isolated_light_mode=folder)
        ready = time.perf_counter()
        workflow_id = controller.submit_workflow(workflow)
        controller.wait_workflow(workflow_id)
        ended = time.perf_counter()
        failed = Helper.list_failed_jobs(workflow_id, controller, include_aborted_jobs=True)
        controller.stop_engine()
        shutil.rmtree(examples.output_dir, ignore_errors=True)
    print("RESULT", json.dumps({"start": ready - started, "run": ended - ready,
                                "jobs": len(workflow.jobs), "failed": len(failed)}))
""")


def measure(runner: str, iterations: int, no_sleep: bool, base: Path) -> dict[str, float]:
    folder = tempfile.mkdtemp(prefix=f"{runner}-", dir=base)
    done = subprocess.run([sys.executable, "-c", CHILD, runner, folder, str(iterations),
                           "1" if no_sleep else "0"], capture_output=True, text=True,
                          timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{runner} run failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(lines[0].removeprefix("RESULT "))
    if result["failed"]:
        sys.exit(f"{runner}: {result['failed']} jobs failed")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=5 * cores(),
                        help="pipelines (soma-workflow's test: 5 x CPU slots)")
    parser.add_argument("--no-sleep", action="store_true", help="jobs sleep 0 s")
    args = parser.parse_args()
    byte_compile()
    DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="soma-fake-pipeline-", dir=DEFAULT_DIR))
    os.environ["JOBBRIDGE_HOME"] = str(base / "jobbridge-home")  # none of the user's
    print(f"load average {load_average()}, {cores()} CPU slots, {args.iterations} pipelines "
          f"({7 * args.iterations} jobs){', no sleep' if args.no_sleep else ''}")
    runs: dict[str, list[dict[str, float]]] = {"soma": [], "jobbridge": []}

    def timed(runner: str) -> float:
        result = measure(runner, args.iterations, args.no_sleep, base)
        runs[runner].append(result)
        return result["run"]

    soma, jobbridge = median_of(args.repeat, lambda: timed("soma"),
                                lambda: timed("jobbridge"))
    ideal = 0.0 if args.no_sleep else max(9.0, 11.0 * args.iterations / cores())
    rows = [[name, f"{med(samples):.1f}", spread(samples),
             f"{med([r['start'] for r in runs[key]]):.2f}"]
            for name, key, samples in (("soma-workflow 6.0.13 (light mode)", "soma", soma),
                                       ("jobbridge WorkflowController", "jobbridge", jobbridge))]
    rows.append(["ideal (sleep time / slots)", f"{ideal:.1f}", "", ""])
    print(table(["runner", "submit -> end (s)", "runs", "controller start (s)"], rows))
    print(f"jobbridge / soma-workflow: {med(jobbridge) / med(soma):.2f}")


if __name__ == "__main__":
    main()
