"""Batch-system faults on the real Slurm: no job falsely failed or lost, exit codes kept.

- ``sacct`` failing while ``squeue`` works (a failure-injecting shim in front of the
  real ``sacct``: it answers like slurmdbd being down);
- jobs that end while the engine is down for longer than ``MinJobAge`` (the test
  cluster is reconfigured with ``MinJobAge=2`` for that test, then restored).
(slurmctld stopped for 30 s: tests/schedulers/test_slurm.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jbcli import kill_engines
from jobbridge import constants
from jobbridge.controller import WorkflowController

pytestmark = pytest.mark.slurm
SLURM_UP = Path(__file__).resolve().parent.parent / "scripts" / "clusters" / "slurm-up.sh"
CONFIG = "[slurm]\nscheduler_type = slurm\nscheduler_interval = 2\nmin_scheduler_interval = 0.2\n"


def _workflow(folder: Path) -> dict[str, Any]:
    return {"jobs": [
        {"id": "ok", "command": ["sh", "-c", "sleep 1; echo fine"]},
        {"id": "three", "command": ["sh", "-c", "sleep 1; exit 3"]},
        {"id": "signal", "command": ["sh", "-c", "sleep 1; kill -KILL $$"]},
        {"id": "after", "command": ["true"]}],
        "dependencies": [["ok", "after"]]}


def _check(status: dict[str, Any]) -> None:
    jobs = {job["id"]: job for job in status["jobs"]}
    assert (jobs["ok"]["status"], jobs["ok"]["exit_value"]) == (constants.DONE, 0)
    assert (jobs["three"]["exit_status"], jobs["three"]["exit_value"]) == (
        constants.FINISHED_REGULARLY, 3)
    assert (jobs["signal"]["exit_status"], jobs["signal"]["term_sig"]) == (
        constants.FINISHED_TERM_SIG, 9)
    assert jobs["after"]["status"] == constants.DONE


@pytest.fixture
def slurm_env(tmp_path: Path, jobbridge_home: Path) -> dict[str, str]:
    (tmp_path / "jobbridge.cfg").write_text(CONFIG)
    (tmp_path / "wf.json").write_text(json.dumps(_workflow(tmp_path)))
    return {**os.environ, "JOBBRIDGE_HOME": str(jobbridge_home),
            "JOBBRIDGE_CONFIG": str(tmp_path / "jobbridge.cfg")}


def test_sacct_failing_while_squeue_works(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sacct").write_text("#!/bin/sh\necho 'sacct: error: Problem talking to the "
                                "database: Connection refused' >&2\nexit 1\n")
    (shim / "sacct").chmod(0o755)
    env = {**slurm_env, "PATH": f"{shim}:{slurm_env['PATH']}"}
    run = subprocess.run([sys.executable, "-m", "jobbridge", "run", str(tmp_path / "wf.json"),
                          "--resource", "slurm", "--json"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1, run.stderr  # 'three' and 'signal' fail, truthfully
    _check(json.loads(run.stdout))


@pytest.fixture
def short_min_job_age() -> Iterator[None]:
    """Slurm forgets ended jobs 2 s after their end during the test."""
    env = {**os.environ, "SLURM_CI_MIN_JOB_AGE": "2"}
    subprocess.run(["bash", str(SLURM_UP)], env=env, check=True, timeout=120)
    try:
        yield
    finally:
        subprocess.run(["bash", str(SLURM_UP)], check=True, timeout=120)


@pytest.mark.slow
@pytest.mark.usefixtures("short_min_job_age")
def test_jobs_ending_while_the_engine_is_down_longer_than_min_job_age(
        tmp_path: Path, slurm_env: dict[str, str], jobbridge_home: Path) -> None:
    submitted = subprocess.run([sys.executable, "-m", "jobbridge", "submit",
                                str(tmp_path / "wf.json"), "--resource", "slurm"],
                               env=slurm_env, capture_output=True, text=True, check=True)
    workflow_id = submitted.stdout.strip()
    controller = WorkflowController(jobbridge_home)
    deadline = time.monotonic() + 60
    while sum(job["scheduler_job_id"] is not None
              for job in controller.status(workflow_id)["jobs"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert kill_engines(jobbridge_home) == 1  # the background engine
    ids = [job["scheduler_job_id"] for job in controller.status(workflow_id)["jobs"]
           if job["scheduler_job_id"]]
    deadline = time.monotonic() + 120
    while subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i"],
                         capture_output=True, text=True, check=False).stdout.strip():
        assert time.monotonic() < deadline, "Slurm did not forget the ended jobs"
        time.sleep(1)
    engine = subprocess.Popen([sys.executable, "-m", "jobbridge", "engine"], env=slurm_env)
    status = controller.wait(workflow_id, timeout=180)
    engine.wait(timeout=60)
    _check(status)
