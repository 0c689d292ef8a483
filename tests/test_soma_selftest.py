"""soma-workflow's own test suite passes on jobbridge: one test per soma-workflow case.

Each case runs as ``python -m jobbridge.compat.soma_workflow.selftest --case NAME`` (its own
isolated home); the cases run a few at a time from the first test on, as they are mostly
sleeping jobs, so the whole suite costs about its longest case (FakePipeline, ~1 min), not
the 4 minutes soma-workflow's main takes: its light mode in both path managements, local
paths and file transfers.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

SELFTEST = [sys.executable, "-m", "jobbridge.compat.soma_workflow.selftest"]
#: Cases run at once (their jobs mostly sleep).
PARALLEL = 4
#: The longest first, so that the others fill the time they take.
LONGEST = ("FakePipeline", "NJobsWithDependencies", "SerialJobs", "Multiple", "NJobs")

pytestmark = pytest.mark.soma


def _case_names() -> list[str]:
    listed = subprocess.run([*SELFTEST, "--list"], capture_output=True, text=True, timeout=300)
    if listed.returncode != 0:
        raise RuntimeError(f"selftest --list failed: {listed.stderr}")
    names = [line for line in listed.stdout.splitlines() if line.strip()]
    return sorted(names, key=lambda n: (n not in LONGEST,
                                        LONGEST.index(n) if n in LONGEST else 0))


CASES = _case_names()


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest
         ) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """The selected cases, started at once a few at a time."""
    selected = {item.callspec.params["case"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")}
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(subprocess.run, [*SELFTEST, "--case", name],
                                     capture_output=True, text=True, timeout=900)
                   for name in CASES if name in selected}
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.parametrize("case", CASES)
def test_soma_workflow_case(case: str,
                            runs: dict[str, Future[subprocess.CompletedProcess[str]]]) -> None:
    result = runs[case].result()
    assert result.returncode == 0, f"{case}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    # soma-workflow's own controller prints this when created: jobbridge's ran every test
    assert "soma-workflow starting" not in result.stdout + result.stderr


def test_the_cases_are_soma_workflows() -> None:
    """soma-workflow's main runs 30 light-mode cases; WorkflowConf is the one it leaves out."""
    assert len(CASES) == 31 and "WorkflowConf" in CASES
    assert sum(name.endswith("[file transfer]") for name in CASES) == 8


def test_unknown_case() -> None:
    result = subprocess.run([*SELFTEST, "--case", "Nope"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "unknown case 'Nope'" in result.stderr
