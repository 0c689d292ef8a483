"""pbspro layer (b): Torque mode end to end against Slurm's real Torque wrappers.

scripts/clusters/torque-wrappers-up.sh installs the wrappers (``slurm-wlm-torque``)
in a private prefix, ``$JOBBRIDGE_TORQUE_BIN`` (default /opt/jobbridge-torque/bin),
kept off PATH so that their qsub never shadows Grid Engine's: the scheduler is
pointed at it with ``pbs_bin_dir``. The wrappers print no exit status at all,
so every exit code here comes from the job wrapper's exit file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobbridge import constants
from jobbridge.model import EngineJob
from jobbridge.scheduler import Scheduler
from jobbridge.schedulers.pbspro import PBSProScheduler
from jobbridge.testing import SchedulerConformance, run_to_end, wait_for_status
from systems import TORQUE_BIN

pytestmark = pytest.mark.torque


def torque_scheduler() -> PBSProScheduler:
    return PBSProScheduler({}, pbs_bin_dir=str(TORQUE_BIN), min_interval=0.2, max_interval=1.0)


class TestTorqueWrappersConformance(SchedulerConformance):
    job_timeout = 120.0
    held_specification = ["-h"]  # Slurm's qstat wrapper shows it Q: waiting all the same

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return torque_scheduler()


def test_detected_as_torque_with_text_output() -> None:
    scheduler = torque_scheduler()
    assert scheduler.get_pbs_version() == ("torque", "")
    assert scheduler.status_format == "text"
    assert scheduler.status_argv(["7"])[1:] == ["-f", "7"]


def test_resources_reach_slurm(tmp_path: Path) -> None:
    scheduler = torque_scheduler()
    job = EngineJob("res", ["sleep", "30"], working_directory=str(tmp_path),
                    resources={"cpus": 2, "memory_mb": 100, "walltime_s": 120})
    [job_id] = scheduler.job_submission([job])
    assert job_id is not None and job_id.isdigit()
    try:
        status = scheduler.get_job_extended_status(job_id)
        assert status["Resource_List"]["walltime"] == "00:02:00"
        assert status["Resource_List"]["ncpus"] == "2"
        assert status["job_state"] in ("Q", "R")
    finally:
        scheduler.kill_job(job_id)
    wait_for_status(scheduler, [job_id], timeout=60)
    assert scheduler.get_job_exit_info(job_id)[0] == constants.USER_KILLED


def test_exit_code_and_usage_come_from_the_exit_file(tmp_path: Path) -> None:
    scheduler = torque_scheduler()
    job = EngineJob("code", ["sh", "-c", "exit 7"], working_directory=str(tmp_path))
    [(status, info)] = run_to_end(scheduler, [job], timeout=120)
    assert status == constants.FAILED
    assert (info[0], info[1]) == (constants.FINISHED_REGULARLY, 7)
    assert info[3] is not None and "walltime=" in info[3]


def test_find_submitted_by_tag(tmp_path: Path) -> None:
    scheduler = torque_scheduler()
    job = EngineJob("tag", ["true"], working_directory=str(tmp_path),
                    submission_tag="jb-torque-find-me")
    [job_id] = scheduler.job_submission([job])
    again = torque_scheduler()
    assert again.find_submitted(["jb-torque-find-me"]) == {"jb-torque-find-me": job_id}
    wait_for_status(again, [str(job_id)], timeout=120)
