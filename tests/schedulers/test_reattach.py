"""No status that no query produced: a fresh scheduler in a new process (a script, a
restarted engine) is asked, one id after another in a tight loop, about ended, held
and running jobs it did not submit, and about an id the system does not know.

Each id must be asked about before it is answered (a scheduler adopting an id after
its last poll used to answer ``queued_active`` for it unasked), and answered as a
scheduler that followed the jobs all along answers; the unknown id is exactly
``undetermined``. On the real Slurm, Grid Engine (DRMAA), Slurm's Torque wrappers,
the fake PBS Pro that replays recorded qstat output, and local_basic (another
engine's runner, alive; it has no holds). The mpi scheduler's jobs live only in its
mpirun: mpi_conformance.py's kit asks its unknown ids, test_scheduler_api.py the
stand-in's outside mpirun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from jobbridge import constants
from jobbridge.configuration import Configuration
from jobbridge.model import EngineJob
from jobbridge.scheduler import Scheduler, build_scheduler
from jobbridge.testing import wait_for_status
from systems import TORQUE_BIN

from .test_pbspro_fake import FakePBS, fake_pbs  # noqa: F401 - the fake's fixture

#: Run in a new process: every id alone, back to back, then all in bulk (a second
#: fresh instance, counting its queries), then the exit info of the ended ones and
#: of the unknown one.
FRESH = """
import json, sys
from jobbridge.configuration import Configuration
from jobbridge.scheduler import build_scheduler
ask = json.loads(sys.argv[1])
config = Configuration.from_dict("fresh", ask["config"])
first = build_scheduler(config.get_scheduler_type(), config)
single = {job_id: first.get_job_status(job_id) for job_id in ask["ids"]}
first.close()
second = build_scheduler(config.get_scheduler_type(), config)
bulk = second.get_jobs_status(ask["ids"])
queries = dict(getattr(second, "calls", {}))  # a batch scheduler's commands so far
exits = {job_id: list(second.get_job_exit_info(job_id))[:3] for job_id in ask["ids"]
         if bulk[job_id] in ("done", "failed") or job_id == ask["unknown"]}
second.close()
print(json.dumps({"single": single, "bulk": bulk, "exit": exits, "queries": queries}))
"""
#: name -> (command, final status, (exit_status, exit_value, term_sig))
ENDED: dict[str, tuple[list[str], str, list[Any]]] = {
    f"{kind}{i}": spec for i in range(2) for kind, spec in {
        "ok": (["true"], constants.DONE, [constants.FINISHED_REGULARLY, 0, 0]),
        "three": (["sh", "-c", "exit 3"], constants.FAILED,
                  [constants.FINISHED_REGULARLY, 3, 0]),
        "killed": (["sh", "-c", "kill -KILL $$"], constants.FAILED,
                   [constants.FINISHED_TERM_SIG, None, 9]),
    }.items()}
HELD = ["held0", "held1"]
FAST = {"min_scheduler_interval": "0.1", "scheduler_interval": "1"}
RUNNING = "running"


def check_fresh_process(scheduler: Scheduler, fresh_config: dict[str, str], tmp_path: Path,
                        hold: list[str] | str | None, held_status: str,
                        unknown: str = "99999999",
                        before_asking: Callable[[list[str]], None] = lambda ended: None
                        ) -> None:
    """Submit the mix through ``scheduler``, follow it to the wanted states, then ask
    a fresh process built from ``fresh_config`` (``before_asking`` the ended ids).
    ``hold`` None: the system has no holds, no held jobs."""
    held = HELD if hold is not None else []
    def job(name: str, command: list[str], **options: Any) -> EngineJob:
        return EngineJob(name, command, working_directory=str(tmp_path),
                         stdout_file=str(tmp_path / f"{name}.out"),
                         stderr_file=str(tmp_path / f"{name}.err"), **options)

    jobs = [job(name, command) for name, (command, _, _) in ENDED.items()]
    jobs += [job(name, ["true"], native_specification=hold) for name in held]
    jobs.append(job(RUNNING, ["sleep", "600"]))
    submitted = scheduler.job_submission(jobs)
    assert None not in submitted, submitted
    ids = dict(zip([j.job_id for j in jobs], [str(i) for i in submitted], strict=True))
    try:
        followed = wait_for_status(scheduler, [ids[name] for name in ENDED], timeout=180)
        followed |= wait_for_status(scheduler, [ids[RUNNING]], {constants.RUNNING},
                                    timeout=180)
        if held:
            followed |= wait_for_status(scheduler, [ids[name] for name in held],
                                        {held_status}, timeout=60)
        before_asking([ids[name] for name in ENDED])
        every = [*ids.values(), unknown]
        answer = _ask_fresh_process(fresh_config, every, unknown)
        assert answer["single"] == {**followed, unknown: constants.UNDETERMINED}
        assert answer["bulk"] == answer["single"]
        if answer["queries"]:  # the batch base: every unasked id of the call in one query
            assert answer["queries"]["status"] == 1, answer["queries"]
        for name, (_, status, exit_info) in ENDED.items():
            assert answer["single"][ids[name]] == status, name
            assert answer["exit"][ids[name]] == exit_info, name
        assert answer["single"][ids[RUNNING]] == constants.RUNNING
        assert all(answer["single"][ids[name]] == held_status for name in held)
        assert answer["exit"][unknown][0] == constants.EXIT_UNDETERMINED
    finally:
        for name in [*held, RUNNING]:
            scheduler.kill_job(ids[name])
        wait_for_status(scheduler, [ids[name] for name in [*held, RUNNING]], timeout=120)
        scheduler.close()


def _ask_fresh_process(config: dict[str, str], ids: Sequence[str], unknown: str
                       ) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps({"config": config, "ids": list(ids),
                                                  "unknown": unknown})],
        capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def _built(config: dict[str, str], fast: dict[str, str]) -> Scheduler:
    """The scheduler that submits and follows the jobs, polling fast; the fresh one
    keeps the defaults, as a script would."""
    return build_scheduler(config["scheduler_type"],
                           Configuration.from_dict("test", {**config, **fast}))


def test_local_basic(tmp_path: Path) -> None:
    """The ids of another engine's live runner: ended ones from its journal, the
    running one running; one of a runner that never was is undetermined."""
    config = {"scheduler_type": "local_basic", "cpu_nb": "2"}
    check_fresh_process(_built(config, {}), config, tmp_path, None, "",
                        unknown="20000101000000-000000.7")


@pytest.mark.slurm
def test_slurm(tmp_path: Path) -> None:
    config = {"scheduler_type": "slurm"}
    check_fresh_process(_built(config, FAST), config, tmp_path, ["--hold"],
                        constants.USER_ON_HOLD)


@pytest.mark.torque
def test_torque_wrappers(tmp_path: Path) -> None:
    """Slurm's qstat wrapper shows a held job as Q: queued is what the system says."""
    config = {"scheduler_type": "pbspro", "pbs_bin_dir": str(TORQUE_BIN)}
    check_fresh_process(_built(config, FAST), config, tmp_path, ["-h"],
                        constants.QUEUED_ACTIVE)


def test_pbspro_recorded_output(fake_pbs: FakePBS, tmp_path: Path) -> None:  # noqa: F811
    """PBS Pro's JSON (the fake fills a recorded record): a held job is H."""
    config = {"scheduler_type": "pbspro", "pbs_bin_dir": str(fake_pbs.bin),
              "array_submission": "off"}  # the fake has no qsub -J
    check_fresh_process(_built(config, FAST), config, tmp_path, ["-h"],
                        constants.USER_SYSTEM_ON_HOLD, unknown="99999999.pbs")


@pytest.mark.sge
@pytest.mark.timeout(900)
@pytest.mark.parametrize("scheduler_type", ["drmaa", "sge"])
def test_grid_engine(scheduler_type: str, tmp_path: Path) -> None:
    """Ended jobs of another DRMAA session, or of another engine using Grid Engine's
    commands, are known from its accounting."""
    config = {"scheduler_type": scheduler_type}
    check_fresh_process(_built(config, {"scheduler_interval": "0.3"}), config, tmp_path, "-h",
                        constants.USER_ON_HOLD, before_asking=_wait_for_accounting)


def _wait_for_accounting(job_ids: Sequence[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for job_id in job_ids:
        while subprocess.run(["qacct", "-j", job_id], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, f"job {job_id} not in Grid Engine's accounting"
            time.sleep(0.5)
