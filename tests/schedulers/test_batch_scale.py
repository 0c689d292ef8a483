"""Batch systems at scale (issue 15): ends seen from the wrappers' files with the
status commands unavailable, a job cancelled while queued seen within one
``scheduler_interval``, the command budget holding under a burst, the fallback to
polling when the state folder is not shared; on the real Slurm, on Slurm's
Torque wrappers, on OpenPBS and on Grid Engine through DRMAA (marked: see
tests/systems.py). The batch system's commands are reached through PATH shims that
log or fail them; DRMAA's calls are logged where the process's session makes them."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from jbcli import jb, status_json, wait_for
from jobbridge import constants
from jobbridge.model import EngineJob
from jobbridge.schedulers.batch import BatchScheduler
from jobbridge.schedulers.batchwatch import BURST, EXIT_FILE, RESERVE, TokenBucket
from jobbridge.schedulers.pbspro import PBSProScheduler
from jobbridge.schedulers.slurm import SlurmScheduler
from jobbridge.testing import wait_for_status
from systems import PBSPRO_BIN, PBSPRO_HOST_COMMAND, TORQUE_BIN

SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol")
TORQUE_COMMANDS = ("qsub", "qstat", "qdel", "qselect", "pbsnodes")
GRID_ENGINE_COMMANDS = ("qstat", "qacct", "qdel", "qconf")


def shim(folder: Path, names: Iterable[str], real: dict[str, str], log: Path,
         failing: Iterable[str] = ()) -> Path:
    """A folder of commands that log each call (time and name) to ``log``, then run
    the real one, or fail (exit 1) for the names in ``failing``."""
    folder.mkdir(exist_ok=True)
    failing = set(failing)
    for name in names:
        body = (f'echo "$(date +%s.%N) {name}" >> "{log}"\n'
                + ('echo "shim: unavailable" >&2; exit 1\n' if name in failing
                   else f'exec "{real[name]}" "$@"\n'))
        path = folder / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o700)
    return folder


def logged(log: Path) -> list[tuple[float, str]]:
    if not log.exists():
        return []
    return [(float(stamp), name) for stamp, name in
            (line.split() for line in log.read_text().splitlines())]


def slurm_real() -> dict[str, str]:
    return {name: shutil.which(name) or name for name in SLURM_COMMANDS}


def slurm_scheduler(tmp_path: Path, **options: object) -> SlurmScheduler:
    options.setdefault("min_interval", 0.2)
    options.setdefault("max_interval", 30.0)
    options.setdefault("commands_per_second", 50.0)
    return SlurmScheduler(state_dir=tmp_path / "state", **options)  # type: ignore[arg-type]


def pbs_scheduler(tmp_path: Path, bin_dir: Path, **options: object) -> PBSProScheduler:
    return PBSProScheduler({}, pbs_bin_dir=str(bin_dir), min_interval=0.2, max_interval=30.0,
                           state_dir=tmp_path / "state", commands_per_second=50.0,
                           **options)


def jobs(tmp_path: Path) -> list[EngineJob]:
    return [EngineJob("ok", ["true"], working_directory=str(tmp_path)),
            EngineJob("three", ["sh", "-c", "sleep 1; exit 3"], working_directory=str(tmp_path)),
            EngineJob("signal", ["sh", "-c", "kill -USR1 $$"], working_directory=str(tmp_path))]


def check_ends_without_status_commands(scheduler: BatchScheduler, log: Path,
                                       status_commands: set[str], tmp_path: Path) -> str:
    """Check the ends the wrappers tell; the id of the job whose end waits for the
    system (a signal)."""
    ended: set[str] = set()  # the watcher's reports of ends (an exit file then exists)
    scheduler.set_change_notifier(lambda ids=None: ended.update(
        i for i in ids or [] if (scheduler._files_of(i)[0] / EXIT_FILE).exists()))
    ids = [str(job_id) for job_id in scheduler.job_submission(jobs(tmp_path))]
    start = time.monotonic()
    # no status call meanwhile: one reading an exit file first would take the end
    # from the watcher (which follows only jobs not known to have ended)
    while time.monotonic() - start < 240 and not ended >= set(ids[:2]):
        time.sleep(0.2)  # a busy queue (shared systems) is slow
    statuses = scheduler.get_jobs_status(ids)
    assert [statuses[i] for i in ids[:2]] == [constants.DONE, constants.FAILED]
    assert scheduler.get_job_exit_info(ids[0])[:2] == (constants.FINISHED_REGULARLY, 0)
    assert scheduler.get_job_exit_info(ids[1])[:2] == (constants.FINISHED_REGULARLY, 3)
    calls = [name for _, name in logged(log)]
    submits = [at for at, name in enumerate(calls) if name in ("sbatch", "qsub")]
    calls = calls[submits[0]:] if submits else calls  # DRMAA: no submit command
    # asked at the first status call, and when the signal's end is seen; failing: not
    # again within scheduler_interval
    allowed = 2 + int((time.monotonic() - start) / scheduler.max_interval)
    assert sum(name in status_commands for name in calls) <= allowed, calls
    # the end by a signal waits for the system's word: still unknown while it is down
    assert statuses[ids[2]] not in constants.ENDED_JOB_STATUS
    return ids[2]


@pytest.mark.slurm
def test_ends_seen_from_exit_files_while_squeue_and_sacct_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.log"
    folder = shim(tmp_path / "bin", SLURM_COMMANDS, slurm_real(), log,
                  failing=("squeue", "sacct"))
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    scheduler = slurm_scheduler(tmp_path)
    try:
        signal_id = check_ends_without_status_commands(scheduler, log, {"squeue", "sacct"},
                                                       tmp_path)
        (folder / "squeue").unlink()  # back: the signal's end is confirmed
        (folder / "sacct").unlink()
        scheduler.max_interval = 0.5
        assert wait_for_status(scheduler, [signal_id], timeout=60)[signal_id] == constants.FAILED
        assert scheduler.get_job_exit_info(signal_id)[2] == 10  # SIGUSR1
    finally:
        scheduler.close()


@pytest.mark.torque
def test_ends_seen_from_exit_files_while_qstat_fails(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    real = {name: str(TORQUE_BIN / name) for name in TORQUE_COMMANDS}
    folder = shim(tmp_path / "bin", TORQUE_COMMANDS, real, log, failing=("qstat",))
    scheduler = pbs_scheduler(tmp_path, folder)
    try:
        check_ends_without_status_commands(scheduler, log, {"qstat"}, tmp_path)
    finally:
        scheduler.close()


@pytest.mark.pbspro
def test_ends_seen_from_exit_files_while_openpbs_qstat_fails(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    real = {name: str(PBSPRO_BIN / name) for name in TORQUE_COMMANDS}
    folder = shim(tmp_path / "bin", TORQUE_COMMANDS, real, log)
    scheduler = pbs_scheduler(tmp_path, folder, host_command=PBSPRO_HOST_COMMAND)
    shim(folder, ["qstat"], real, log, failing=["qstat"])  # once the flavour is known
    try:
        check_ends_without_status_commands(scheduler, log, {"qstat"}, tmp_path)
    finally:
        scheduler.close()


def drmaa_scheduler(tmp_path: Path, **options: object) -> BatchScheduler:
    from jobbridge.schedulers.drmaa import DrmaaScheduler

    options.setdefault("min_interval", 0.2)
    options.setdefault("max_interval", 30.0)
    options.setdefault("commands_per_second", 50.0)
    return DrmaaScheduler(state_dir=tmp_path / "state", **options)  # type: ignore[arg-type]


def drmaa_logged(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Log each DRMAA call that reaches the DRMS (time and ``drmaa``), as the shims do
    for commands."""
    from jobbridge.schedulers import drmaa

    real = drmaa._SESSION.call

    def call(action: Any) -> Any:
        with log.open("a") as stream:
            stream.write(f"{time.time()} drmaa\n")
        return real(action)

    monkeypatch.setattr(drmaa._SESSION, "call", call)


@pytest.mark.sge
def test_ends_seen_from_exit_files_while_grid_engines_qstat_and_qacct_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drmaa scheduler: jobs submitted by DRMAA end from their wrappers' files
    while Grid Engine's status commands fail; back, they confirm the end by a signal."""
    log = tmp_path / "calls.log"
    real = {name: shutil.which(name) or name for name in GRID_ENGINE_COMMANDS}
    folder = shim(tmp_path / "bin", GRID_ENGINE_COMMANDS, real, log,
                  failing=("qstat", "qacct"))
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    drmaa_logged(log, monkeypatch)
    scheduler = drmaa_scheduler(tmp_path)
    try:
        signal_id = check_ends_without_status_commands(scheduler, log, {"qstat", "qacct"},
                                                       tmp_path)
        assert scheduler.calls["submit"] == 1, scheduler.calls  # one runBulkJobs
        shim(folder, ["qstat", "qacct"], real, log)  # back: the signal's end is confirmed
        scheduler.max_interval = 0.5
        assert wait_for_status(scheduler, [signal_id], timeout=120)[signal_id] == (
            constants.FAILED)
        assert scheduler.get_job_exit_info(signal_id)[2] == 10  # SIGUSR1
    finally:
        scheduler.close()


@pytest.mark.slurm
def test_a_job_cancelled_while_queued_is_seen_within_one_interval(tmp_path: Path) -> None:
    interval = 4.0
    scheduler = slurm_scheduler(tmp_path, max_interval=interval)
    try:
        [job_id] = scheduler.job_submission(
            [EngineJob("held", ["true"], working_directory=str(tmp_path),
                       native_specification=["--hold"])])
        assert job_id is not None
        wait_for_status(scheduler, [job_id], {constants.USER_ON_HOLD, constants.SYSTEM_ON_HOLD,
                                              constants.USER_SYSTEM_ON_HOLD}, timeout=30)
        subprocess.run(["scancel", job_id], check=True)  # by hand: no wrapper ever runs
        cancelled = time.monotonic()
        statuses = wait_for_status(scheduler, [job_id], timeout=60)
        seen = time.monotonic() - cancelled
        assert statuses[job_id] == constants.FAILED
        assert seen <= interval + 2.5, seen  # the interval, and wait_for_status's own beat
        assert scheduler.get_job_exit_info(job_id)[0] == constants.USER_KILLED
    finally:
        scheduler.close()


def test_the_token_bucket_allows_a_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=50.0, burst=10)
    start = time.monotonic()
    for _ in range(10):
        bucket.take()
    assert time.monotonic() - start < 0.05 * 10  # the burst: at once (generous bound)
    for _ in range(25):
        bucket.take()
    assert time.monotonic() - start >= 25 / 50.0 * 0.95


@pytest.mark.slurm
def test_the_command_budget_holds_under_a_burst_of_ready_jobs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "calls.log"
    folder = shim(tmp_path / "bin", SLURM_COMMANDS, slurm_real(), log)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    rate, count = 10.0, 70
    scheduler = slurm_scheduler(tmp_path, commands_per_second=rate, max_interval=1.0,
                                array_submission="off")  # one sbatch a job
    try:
        ids = scheduler.job_submission(
            [EngineJob(f"j{i}", ["true"], working_directory=str(tmp_path)) for i in range(count)])
        assert None not in ids
        for job_id in ids:  # a status call per job would blow the budget too
            scheduler.get_jobs_status([str(job_id)])
        wait_for_status(scheduler, [str(job_id) for job_id in ids], timeout=180)
    finally:
        scheduler.close()
    calls = logged(log)
    assert sum(name == "sbatch" for _, name in calls) == count
    assert_within_budget(calls, rate)


@pytest.mark.sge
def test_the_command_budget_holds_for_drmaas_calls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every DRMAA call that reaches the DRMS (runJob, control) and every Grid Engine
    command (qstat, qacct, qdel) takes a token of the one budget: 40 jobs submitted
    one by one at 10 a second after the burst, all asked about one by one."""
    log = tmp_path / "calls.log"
    real = {name: shutil.which(name) or name for name in GRID_ENGINE_COMMANDS}
    folder = shim(tmp_path / "bin", GRID_ENGINE_COMMANDS, real, log)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    drmaa_logged(log, monkeypatch)
    rate, count = 10.0, 40
    scheduler = drmaa_scheduler(tmp_path, commands_per_second=rate, max_interval=1.0,
                                array_submission="off")  # one runJob a job
    try:
        ids = scheduler.job_submission(
            [EngineJob(f"d{i}", ["true"], working_directory=str(tmp_path))
             for i in range(count)])
        assert None not in ids
        for job_id in ids:  # a status call per job would blow the budget too
            scheduler.get_jobs_status([str(job_id)])
        wait_for_status(scheduler, [str(job_id) for job_id in ids], timeout=600)
    finally:
        scheduler.close()
    calls = logged(log)
    assert sum(name == "drmaa" for _, name in calls) == count == scheduler.calls["submit"]
    assert_within_budget(calls, rate)


def assert_within_budget(calls: list[tuple[float, str]], rate: float) -> None:
    """No more commands by any time than a burst and ``rate`` a second allow."""
    first = min(stamp for stamp, _ in calls)
    for seen, (stamp, _) in enumerate(sorted(calls), start=1):
        # a shim logs just before the command starts: a tenth of a second of slack
        assert seen <= BURST + rate * (stamp - first + 0.1) + 1, (seen, stamp - first)


def test_submission_room_is_what_the_budget_lets_through_now(tmp_path: Path) -> None:
    """The engine submits only what the budget can take without waiting, leaving
    RESERVE tokens: a status query or cancel then runs at once."""
    scheduler = SlurmScheduler(state_dir=tmp_path / "state", commands_per_second=2.0)
    assert scheduler.submission_room() == BURST - RESERVE
    for _ in range(BURST - RESERVE):  # submissions spending the room
        scheduler.run("submit", ["true"])
    assert scheduler.submission_room() == 0
    start = time.monotonic()
    for _ in range(RESERVE):  # queries and cancels: not starved
        scheduler.run("status", ["true"])
    assert time.monotonic() - start < 0.4  # a token comes every 0.5 s
    assert scheduler.submission_room() == 0
    time.sleep((RESERVE + 1) / 2.0 + 0.1)  # the reserve refilled, then one more
    assert 1 <= (scheduler.submission_room() or 0) <= 3
    unlimited = SlurmScheduler(state_dir=tmp_path / "other", commands_per_second=0.0)
    assert unlimited.submission_room() is None


@pytest.mark.slurm
def test_a_stop_is_applied_while_submissions_trickle_within_the_budget(
        tmp_path: Path) -> None:
    """60 jobs at 2 commands a second take ~16 s to submit after the burst; the
    engine submits only what the budget allows each cycle, so a stop asked
    meanwhile is applied at once: the jobs not yet submitted never are."""
    log = tmp_path / "calls.log"
    folder = shim(tmp_path / "bin", SLURM_COMMANDS, slurm_real(), log)
    rate, count = 2.0, 60
    (tmp_path / "wf.json").write_text(json.dumps(
        {"jobs": [{"id": f"t{i}", "command": ["true"]} for i in range(count)]}))
    (tmp_path / "jobbridge.cfg").write_text(
        f"[slurm]\nscheduler_type = slurm\nmax_commands_per_second = {rate:g}\n"
        "array_submission = off\n")  # one sbatch a job
    env = {"JOBBRIDGE_HOME": str(tmp_path / "home"),
           "JOBBRIDGE_CONFIG": str(tmp_path / "jobbridge.cfg"),
           "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    submitted = jb("submit", str(tmp_path / "wf.json"), "--resource", "slurm", env=env)
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()

    def sbatch_calls() -> int:
        return sum(name == "sbatch" for _, name in logged(log))

    wait_for(lambda: sbatch_calls() >= BURST + 4, timeout=120, what="the trickle")
    stopped = jb("stop", workflow_id, env=env)
    assert stopped.returncode == 0, stopped.stderr
    asked = time.monotonic()
    waiting = (constants.NOT_SUBMITTED, constants.SUBMISSION_PENDING)
    wait_for(lambda: all(job["status"] not in waiting
                         for job in status_json(workflow_id, env)["jobs"]),
             timeout=60, what="the stop")
    applied = time.monotonic() - asked
    assert applied < 3.0, applied  # not after the ~10 s of submissions left
    assert jb("wait", workflow_id, "--timeout", "120", env=env).returncode == 1
    jobs = status_json(workflow_id, env)["jobs"]
    not_run = sum(job["exit_status"] == constants.EXIT_NOTRUN for job in jobs)
    assert not_run == count - sbatch_calls() > 0, (not_run, sbatch_calls())
    assert_within_budget(logged(log), rate)


def _unshared_python(tmp_path: Path) -> Path:
    """A job_python that runs the wrapper with its files redirected elsewhere, as if
    the state folder were not shared with the compute nodes."""
    elsewhere = tmp_path / "node-local"
    elsewhere.mkdir()
    script = tmp_path / "python-elsewhere"
    script.write_text(f"""#!{sys.executable}
import os, sys
from jobbridge.schedulers.jobwrap import read_spec, write_spec
spec = read_spec(sys.argv[-1])
for key in ("exit_file", "start_file"):
    spec[key] = os.path.join({str(elsewhere)!r}, os.path.basename(spec[key]))
path = os.path.join({str(elsewhere)!r}, "job.spec")
write_spec(path, spec)
os.execv(sys.executable, [sys.executable, *sys.argv[1:-1], path])
""")
    script.chmod(0o700)
    return script


@pytest.mark.slurm
def test_a_state_folder_not_shared_means_polling(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    scheduler = slurm_scheduler(tmp_path, max_interval=1.0,
                                job_python=str(_unshared_python(tmp_path)),
                                job_wrapper="python")
    try:
        with caplog.at_level(logging.WARNING):
            [job_id] = scheduler.job_submission([EngineJob("a", ["true"],
                                                           working_directory=str(tmp_path))])
            assert job_id is not None
            statuses = wait_for_status(scheduler, [job_id], timeout=60)
        assert statuses[job_id] == constants.DONE
        assert scheduler.polling
        assert "not shared with the compute nodes" in caplog.text
        assert scheduler.poll_interval() < 1.0  # adaptive, as before
    finally:
        scheduler.close()


@pytest.mark.slurm
def test_the_engine_follows_a_chain_without_waiting_for_squeue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``jobbridge run``, defaults (scheduler_interval 30 s): each end wakes the engine
    from the wrapper's exit file, so a chain of 4 takes far less than the 3 intervals
    waiting for squeue would, with a handful of squeue calls."""
    log = tmp_path / "calls.log"
    folder = shim(tmp_path / "bin", SLURM_COMMANDS, slurm_real(), log)
    ids = [f"s{i}" for i in range(4)]
    workflow = {"jobs": [{"id": i, "command": ["true"]} for i in ids],
                "dependencies": [list(pair) for pair in itertools.pairwise(ids)]}
    (tmp_path / "wf.json").write_text(json.dumps(workflow))
    (tmp_path / "jobbridge.cfg").write_text("[slurm]\nscheduler_type = slurm\n")
    env = {"JOBBRIDGE_HOME": str(tmp_path / "home"),
           "JOBBRIDGE_CONFIG": str(tmp_path / "jobbridge.cfg"),
           "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    result = jb("run", str(tmp_path / "wf.json"), "--resource", "slurm", "--json", env=env,
                timeout=300)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert [job["status"] for job in json.loads(result.stdout)["jobs"]] == ["done"] * 4
    assert wall < 60, wall  # squeue alone would see the 3 links in >= 90 s
    calls = [name for _, name in logged(log)]
    assert calls.count("sbatch") == 4
    assert calls.count("squeue") + calls.count("sacct") <= 2 + int(wall / 30), calls
