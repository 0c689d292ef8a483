"""The mpi scheduler through its API, run by test_mpi.py under ``mpirun -n 3``: every
rank enters ``run_ranks``, rank 0 runs these tests, ranks 1 and 2 run their jobs.
Not collected by a plain ``pytest`` run (it needs the workers)."""

from __future__ import annotations

import time
from pathlib import Path

from jobbridge import constants
from jobbridge.configuration import Configuration
from jobbridge.model import EngineJob
from jobbridge.scheduler import Scheduler, build_scheduler
from jobbridge.testing import SchedulerConformance, run_to_end, wait_for_status


def mpi_scheduler(**options: object) -> Scheduler:
    return build_scheduler("mpi", Configuration.from_dict("mpi", {"scheduler_type": "mpi",
                                                                  **options}))


class TestMPIConformance(SchedulerConformance):
    job_timeout = 30.0

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return mpi_scheduler()


def test_retries_until_success_or_the_last_attempt(tmp_path: Path) -> None:
    scheduler = mpi_scheduler(mpi_max_attempts=3)
    count = 'echo run >> "$1"; [ $(wc -l < "$1") -ge {} ]'
    flaky = EngineJob("flaky", ["sh", "-c", count.format(2), "sh", str(tmp_path / "flaky")])
    bad = EngineJob("bad", ["sh", "-c", count.format(99) + " || exit 5", "sh",
                            str(tmp_path / "bad")])
    [(flaky_status, flaky_info), (bad_status, bad_info)] = run_to_end(scheduler, [flaky, bad])
    assert flaky_status == constants.DONE
    assert getattr(flaky_info, "reason", None) == "run 2 of at most 3"
    assert (tmp_path / "flaky").read_text() == "run\n" * 2
    assert bad_status == constants.FAILED
    assert (bad_info[0], bad_info[1]) == (constants.FINISHED_REGULARLY, 5)
    assert (tmp_path / "bad").read_text() == "run\n" * 3


def test_killed_job_is_not_retried(tmp_path: Path) -> None:
    scheduler = mpi_scheduler(mpi_max_attempts=3)
    [job_id] = scheduler.job_submission([EngineJob("victim", ["sh", "-c", f"echo run >> "
                                                              f"{tmp_path}/runs; sleep 60"])])
    assert job_id is not None
    wait_for_status(scheduler, [job_id], {constants.RUNNING}, timeout=30)
    scheduler.kill_job(job_id)
    wait_for_status(scheduler, [job_id], timeout=30)
    assert scheduler.get_job_exit_info(job_id)[0] == constants.USER_KILLED
    assert (tmp_path / "runs").read_text() == "run\n"


def test_no_worker_idles_while_jobs_are_ready(tmp_path: Path) -> None:
    """One long job holds a worker: the other one runs every short job meanwhile."""
    scheduler = mpi_scheduler()
    long = EngineJob("long", ["sleep", "3"], priority=10)
    shorts = [EngineJob(f"s{i}", ["sh", "-c", f"sleep 0.2; date +%s.%N > {tmp_path}/s{i}"])
              for i in range(4)]
    started = time.time()
    results = run_to_end(scheduler, [long, *shorts])
    assert all(status == constants.DONE for status, _ in results)
    ends = [float((tmp_path / f"s{i}").read_text()) - started for i in range(4)]
    assert max(ends) < 2.5, ends  # all four behind each other beside the long job


def test_kill_queued_job(tmp_path: Path) -> None:
    scheduler = mpi_scheduler()
    blockers = [EngineJob(f"b{i}", ["sleep", "60"]) for i in range(2)]
    queued = EngineJob("queued", ["touch", str(tmp_path / "ran")])
    ids = scheduler.job_submission([*blockers, queued])
    assert None not in ids
    wait_for_status(scheduler, ids[:2], {constants.RUNNING}, timeout=30)
    assert scheduler.get_job_status(str(ids[2])) == constants.QUEUED_ACTIVE
    for job_id in reversed(ids):
        scheduler.kill_job(str(job_id))
    wait_for_status(scheduler, [str(job_id) for job_id in ids], timeout=30)
    info = scheduler.get_job_exit_info(str(ids[2]))
    assert (info[0], getattr(info, "reason", None)) == (constants.USER_KILLED,
                                                        "killed before it started")
    assert not (tmp_path / "ran").exists()
