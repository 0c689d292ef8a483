"""What a cluster user meets, on the real Slurm and Grid Engine (and OpenPBS where
it applies), through the command line as users drive it (issue 22):

- a refusal's reason is the batch system's own words, cleaned, in ``status``,
  ``status --json`` and ``run``'s summary, and it leaves no file behind;
- a waiting job shows why it waits (Slurm's squeue reason, PBS's comment), its
  batch name starts with its workflow job id, and a native option that would
  rename it is refused before anything is stored;
- a limit rounded to the system's units is said once, in the log and the status;
- ``stop`` cancels every job with one command; a job cancelled before it ran
  says so; a job still ending shows ``stopping``;
- a resource's ``scheduler_interval`` holds, above the engine's own 5 s;
- a job removed from the queue by someone else ends at once (issue 21).

The kill racing a natural end is the conformance kit's
``test_kill_after_the_end_keeps_the_end``, run on every backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import openpbs
from jbcli import error_line, jb, listed, status_json, wait_for, write_json
from jobbridge import constants
from jobbridge.configuration import Configuration
from jobbridge.engine import Engine, submission_tag
from jobbridge.model import EngineJob, parse_workflow
from jobbridge.scheduler import Scheduler, build_scheduler, wait_for_status
from jobbridge.schedulers.drmaa import DrmaaScheduler
from jobbridge.schedulers.slurm import SlurmScheduler
from jobbridge.store import Store, WorkflowRow

#: A fast-polling resource named ``cluster`` on each system.
RESOURCES = {
    "slurm": "[cluster]\nscheduler_type = slurm\nscheduler_interval = 1\n"
             "min_scheduler_interval = 0.2\n",
    "sge": "[cluster]\nscheduler_type = drmaa\nscheduler_interval = 1\n",
    "pbspro": openpbs.resource("cluster"),
}
#: Native options keeping a job queued: held (Slurm, GE and PBS all say -h/--hold).
HOLD = {"slurm": ["--hold"], "sge": ["-h"], "pbspro": ["-h"]}
#: Each system's cancel command, by the name a PATH shim counts.
CANCEL = {"slurm": "scancel", "sge": "qdel"}


def systems(*names: str) -> list[Any]:
    return [pytest.param(name, marks=getattr(pytest.mark, name), id=name) for name in names]


@pytest.fixture
def cluster(jobbridge_home: Path, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> Iterator[str]:
    """The system of the test's parameter, as resource ``cluster`` of the configuration."""
    system: str = request.param
    config = jobbridge_home / "jobbridge.cfg"
    config.write_text(RESOURCES[system])
    monkeypatch.setenv("JOBBRIDGE_CONFIG", str(config))
    yield system
    for workflow in listed():  # a failed test's jobs must not stay on the shared system
        if workflow["status"] != constants.WORKFLOW_DONE:
            jb("stop", workflow["id"])
            jb("wait", workflow["id"], "--timeout", "120", timeout=180)


def _stop_and_wait(workflow_id: str) -> dict[str, Any]:
    assert jb("stop", workflow_id).returncode == 0
    result = jb("wait", workflow_id, "--timeout", "180", timeout=240)
    assert result.returncode in (0, 1), result.stderr
    return status_json(workflow_id)


def _submit(tmp_path: Path, jobs: list[dict[str, Any]], env: dict[str, str] | None = None
            ) -> str:
    workflow = write_json(tmp_path / "wf.json", {"name": "cluster-use", "jobs": jobs})
    result = jb("submit", str(workflow), "--resource", "cluster", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _jobs(workflow_id: str) -> dict[str, dict[str, Any]]:
    return {job["id"]: job for job in status_json(workflow_id)["jobs"]}


def _all_submitted(workflow_id: str, count: int) -> bool:
    return sum(job["scheduler_job_id"] is not None
               for job in _jobs(workflow_id).values()) == count


# --- 2: refusals say why ---------------------------------------------------------------------
REFUSED = {
    # more memory than any node, a partition that does not exist
    "slurm": ([{"resources": {"memory_mb": 100_000_000}}, {"queue": "no-such-partition"}],
              ["Requested node configuration is not available", "invalid partition"]),
    # a queue and a resource Grid Engine does not know
    "sge": ([{"native_specification": ["-l", "nosuchresource=1"]},
             {"queue": "no-such-partition"}],
            ['unknown resource "nosuchresource"', 'unknown queue "no-such-partition"']),
}


@pytest.mark.parametrize("cluster", systems("slurm", "sge"), indirect=True)
def test_a_refusal_says_why_in_the_systems_words(cluster: str, tmp_path: Path,
                                                 jobbridge_home: Path) -> None:
    options, words = REFUSED[cluster]
    jobs = [{"id": f"refused{i}", "command": ["true"], **extra}
            for i, extra in enumerate(options)] + [{"id": "fine", "command": ["true"]}]
    workflow = write_json(tmp_path / "wf.json", {"jobs": jobs})
    result = jb("run", str(workflow), "--resource", "cluster", timeout=300)
    assert result.returncode == 1, result.stderr
    status = status_json()
    reasons = {job["id"]: job["exit_reason"] for job in status["jobs"]}
    assert status["jobs"][-1]["status"] == constants.DONE
    for i, word in enumerate(words):
        reason = reasons[f"refused{i}"]
        assert word.lower() in reason.lower(), reasons
        assert "refused the job" in reason, reason
        for noise in ("sbatch: sbatch:", "error:", "code 17", "the scheduler refused"):
            assert noise not in reason, reason
        assert f"refused{i}: aborted - {reason}" in result.stderr  # run's summary
    table = jb("status").stdout
    assert reasons["refused0"] in table
    state = jobbridge_home / "batch" / "slurm"
    if state.is_dir():  # the refused jobs' folders are gone, the done one's too
        assert sorted(path.name for path in state.iterdir()
                      if path.name not in ("by-id", ".wrapper")) == []


# --- 3: a waiting job, seen from the cluster --------------------------------------------------
def _batch_name(system: str, scheduler_job_id: str) -> str:
    if system == "slurm":
        return subprocess.run(["squeue", "-h", "-o", "%j", "-j", scheduler_job_id],
                              capture_output=True, text=True, check=True).stdout.strip()
    if system == "sge":
        shown = subprocess.run(["qstat", "-j", scheduler_job_id], capture_output=True,
                               text=True, check=True).stdout
        return next(line.split()[1] for line in shown.splitlines()
                    if line.startswith("job_name:"))
    attributes = openpbs.attributes(scheduler_job_id)
    return str(attributes["Job_Name"])


@pytest.mark.parametrize("cluster", systems("slurm", "sge", "pbspro"), indirect=True)
def test_a_waiting_job_seen_from_the_cluster_then_stopped(cluster: str, tmp_path: Path
                                                          ) -> None:
    """Held: its batch name starts with its job id; Slurm and PBS say why it waits;
    once stopped it was cancelled before it ran, because the workflow was stopped."""
    jobs = [{"id": "align s01:x", "command": ["sleep", "600"],
             "native_specification": HOLD[cluster]}]
    if cluster == "slurm":  # a reason other than the hold: not before an hour from now
        jobs.append({"id": "later", "command": ["true"],
                     "native_specification": ["--begin=now+3600"]})
    if cluster == "pbspro":  # PBS comments on a job it cannot run, not on a held one
        jobs.append({"id": "wide", "command": ["true"], "resources": {"cpus": 64}})
    workflow_id = _submit(tmp_path, jobs)
    wait_for(lambda: _all_submitted(workflow_id, len(jobs)), 120, "submissions")
    held = _jobs(workflow_id)["align s01:x"]
    name = _batch_name(cluster, held["scheduler_job_id"])
    assert name.startswith("align_s01_x-jb-"), name
    if cluster != "sge":  # DRMAA tells no pending reason
        expected = {"slurm": {"align s01:x": "pending: JobHeldUser", "later": "pending: BeginTime"},
                    "pbspro": {"wide": "pending: Can Never Run: Insufficient amount of "
                                        "resource: ncpus"}}[cluster]

        def said() -> bool:
            reasons = {job_id: job["exit_reason"] or "" for job_id, job in
                       _jobs(workflow_id).items()}
            return all(reasons[job_id].startswith(text) for job_id, text in expected.items())

        wait_for(said, 60, f"pending reasons {expected}")
        table = jb("status", workflow_id).stdout
        assert "pending: JobHeldUser" in table or cluster != "slurm", table
    status = _stop_and_wait(workflow_id)
    for job in status["jobs"]:
        assert job["status"] == constants.FAILED
        assert job["exit_status"] == constants.USER_KILLED
        assert job["exit_reason"] == "cancelled before it ran (workflow stopped)", job


NATIVE_NAME = {"slurm": [["--job-name=mine"], ["-J", "mine"], ["--job-n=x"]],
               "sge": [["-N", "mine"]], "pbspro": [["-N", "mine"]]}


@pytest.mark.parametrize("cluster", systems("slurm", "sge"), indirect=True)
def test_a_native_job_name_is_refused_before_anything_is_stored(
        cluster: str, tmp_path: Path, jobbridge_home: Path) -> None:
    """jobbridge's batch name carries what re-attachment needs: a user's own name
    option is refused with one line naming the job and the option, exit 2."""
    for native in NATIVE_NAME[cluster]:
        workflow = write_json(tmp_path / "named.json", {"jobs": [
            {"id": "a", "command": ["true"]},
            {"id": "named", "command": ["true"], "native_specification": native}]})
        line = error_line(jb("submit", str(workflow), "--resource", "cluster"))
        assert "job 'named': native_specification: " in line and native[0] in line, line
        assert "jobbridge names the job itself" in line, line
    assert listed() == []
    config = jobbridge_home / "jobbridge.cfg"
    config.write_text(RESOURCES[cluster] + f"native_specification = {' '.join(native)}\n")
    workflow = write_json(tmp_path / "plain.json", {"jobs": [{"id": "a", "command": ["true"]}]})
    line = error_line(jb("submit", str(workflow), "--resource", "cluster"))
    assert "native_specification" in line and native[0] in line, line


@pytest.mark.parametrize("system", systems("slurm", "sge"))
def test_the_scheduler_refuses_a_native_job_name_too(system: str, tmp_path: Path) -> None:
    """Through the API (no workflow check before): refused at submission, saying why."""
    scheduler = _scheduler(system)
    try:
        job = EngineJob("named", ["true"], native_specification=NATIVE_NAME[system][0],
                        stderr_file=str(tmp_path / "err"))
        assert scheduler.job_submission([job]) == [None]
        reason = scheduler.refusal_reason(job)
        assert reason is not None and NATIVE_NAME[system][0][0] in reason, reason
        assert scheduler.refusal_reason(job) is None  # told once
        assert reason in (tmp_path / "err").read_text()
    finally:
        scheduler.close()


@pytest.mark.parametrize("system", systems("slurm", "sge", "pbspro"))
def test_a_tag_with_any_job_id_finds_its_job_again(system: str, tmp_path: Path) -> None:
    """Re-attachment after an engine crash finds a submission by its tag, whose
    first part is now the job's id (spaces, colons, accents, a leading digit)."""
    scheduler = _scheduler(system)
    tag = submission_tag("1 ça:va" + "x" * 50, "f00d42", 7, 3, 1)
    job = EngineJob("x", ["true"], submission_tag=tag, working_directory=str(tmp_path))
    [job_id] = scheduler.job_submission([job])
    assert job_id is not None
    again = _scheduler(system)
    try:
        never = submission_tag("never", "f00d42", 7, 3, 1)
        assert again.find_submitted([tag, never]) == {tag: job_id}
    finally:
        again.kill_job(job_id)  # a busy shared server may not have run it yet
        wait_for_status(again, [job_id], timeout=120)
        again.close()
        scheduler.close()


# --- 4: rounded limits are said ---------------------------------------------------------------
ROUNDED = {
    "slurm": ({"resources": {"walltime_s": 5}},
              "walltime_s 5 rounded up to 1 min (sbatch --time=1: Slurm's limits are whole "
              "minutes)"),
    "sge": ({"resources": {"cpus": 2, "memory_mb": 1001}},
            "memory_mb 1001 rounded up to 501 MB a slot x 2 slots (h_vmem is per slot)"),
}


@pytest.mark.parametrize("cluster", systems("slurm", "sge"), indirect=True)
def test_a_rounded_limit_is_said_once(cluster: str, tmp_path: Path) -> None:
    extra, note = ROUNDED[cluster]
    jobs = [{"id": f"r{i}", "command": ["sleep", "1"], **extra} for i in range(3)]
    workflow = write_json(tmp_path / "wf.json", {"jobs": jobs})
    result = jb("run", str(workflow), "--resource", "cluster", timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(note) == 1, result.stderr  # the log: once, not per job
    for job in status_json()["jobs"]:
        assert job["exit_reason"] == note, job


# --- 6: stop, seen from the cluster -----------------------------------------------------------
def _shim(folder: Path, command: str) -> Path:
    """A PATH folder whose ``command`` logs each call, then runs the real one."""
    folder.mkdir(exist_ok=True)
    real = shutil.which(command)
    assert real is not None
    log = folder / f"{command}.log"
    script = folder / command
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    script.chmod(0o755)
    return log


@pytest.mark.parametrize("cluster", systems("slurm", "sge"), indirect=True)
def test_stop_cancels_every_job_with_one_command(cluster: str, tmp_path: Path) -> None:
    log = _shim(tmp_path / "shim", CANCEL[cluster])
    env = {"PATH": f"{tmp_path / 'shim'}:{os.environ['PATH']}"}
    jobs = [{"id": f"held{i}", "command": ["sleep", "600"],
             "native_specification": HOLD[cluster]} for i in range(6)]
    workflow_id = _submit(tmp_path, jobs, env=env)  # the engine it starts has the shim
    wait_for(lambda: _all_submitted(workflow_id, len(jobs)), 120, "submissions")
    status = _stop_and_wait(workflow_id)
    calls = log.read_text().splitlines()
    assert len(calls) == 1, calls
    assert sorted(calls[0].split()) == sorted(job["scheduler_job_id"] for job in status["jobs"])
    assert {job["exit_reason"] for job in status["jobs"]} == {
        "cancelled before it ran (workflow stopped)"}


@pytest.mark.parametrize("cluster", systems("slurm"), indirect=True)
def test_a_job_still_ending_after_stop_shows_stopping(cluster: str, tmp_path: Path) -> None:
    """A job ignoring SIGTERM stays in Slurm's COMPLETING until KillWait's SIGKILL:
    ``status`` says ``stopping`` meanwhile, never ``running``, then killed."""
    started = tmp_path / "started"
    workflow_id = _submit(tmp_path, [{"id": "stubborn", "command": [
        "sh", "-c", f'trap "" TERM; touch "{started}"; sleep 60']}])
    wait_for(started.exists, 120, "the job's start")
    assert jb("stop", workflow_id).returncode == 0
    seen = []
    while True:
        rows = [line.split() for line in jb("status", workflow_id).stdout.splitlines()[2:]]
        seen.append(rows[0][1])
        if rows[0][1] in constants.ENDED_JOB_STATUS:
            break
        assert len(seen) < 400
        time.sleep(0.2)
    # once the engine took the stop (a moment after the request), never running again
    assert "stopping" in seen, seen
    assert "running" not in seen[seen.index("stopping"):], seen
    assert seen.count("stopping") >= 5, seen  # Slurm's KillWait: 5 s of COMPLETING
    job = _jobs(workflow_id)["stubborn"]
    assert (job["exit_status"], job["exit_reason"]) == (
        constants.USER_KILLED, "killed while it ran (workflow stopped)")


# --- 7: a resource's polling interval holds ---------------------------------------------------
class CountingDrmaa(DrmaaScheduler):
    """The real drmaa scheduler, counting the engine's status queries."""

    polls = 0

    def get_jobs_status(self, scheduler_job_ids: Any) -> dict[str, str]:
        type(self).polls += 1
        return super().get_jobs_status(scheduler_job_ids)


INTERVAL = 20  # seconds; the job lasts 2.5 of them: at most ~5 queries, not one each 5 s


@pytest.mark.slurm
def test_slurm_polls_at_the_resources_interval(tmp_path: Path, jobbridge_home: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    log = _shim(tmp_path / "shim", "squeue")
    config = jobbridge_home / "jobbridge.cfg"
    config.write_text(f"[cluster]\nscheduler_type = slurm\nscheduler_interval = {INTERVAL}\n"
                      f"min_scheduler_interval = {INTERVAL}\n")
    monkeypatch.setenv("JOBBRIDGE_CONFIG", str(config))
    workflow = write_json(tmp_path / "wf.json", {"jobs": [
        {"id": "long", "command": ["sleep", str(INTERVAL * 5 // 2)]}]})
    result = jb("run", str(workflow), "--resource", "cluster", timeout=300,
                env={"PATH": f"{tmp_path / 'shim'}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert 2 <= len(calls) <= 6, calls


@pytest.mark.sge
def test_grid_engine_polls_at_the_resources_interval(tmp_path: Path) -> None:
    config = Configuration.from_dict("cluster", {"scheduler_type": "drmaa",
                                                 "scheduler_interval": str(INTERVAL)})
    store = Store()
    spec = parse_workflow({"jobs": [{"id": "long", "command": [
        "sleep", str(INTERVAL * 5 // 2)]}]}, base_dir=tmp_path)
    workflow_id = store.add_workflow(spec, config)

    def factory(workflow: WorkflowRow) -> Scheduler:
        return CountingDrmaa.build_scheduler(workflow.config)

    CountingDrmaa.polls = 0
    Engine(store, workflow_ids=[workflow_id], scheduler_factory=factory).run()
    [job] = store.jobs(workflow_id)
    assert job.status == constants.DONE
    assert 2 <= CountingDrmaa.polls <= 6, CountingDrmaa.polls


# --- issue 21: a job removed from the queue by someone else ----------------------------------
def _scheduler(system: str) -> Scheduler:
    if system == "slurm":
        return SlurmScheduler(min_interval=0.2, max_interval=1.0)
    if system == "sge":
        return build_scheduler("drmaa", Configuration.from_dict(
            "sge", {"scheduler_type": "drmaa", "scheduler_interval": "1"}))
    from schedulers.test_pbspro_openpbs import openpbs_scheduler

    return openpbs_scheduler()


def _remove(system: str, job_id: str) -> None:
    if system == "pbspro":
        openpbs.pbs("qdel", job_id)
    else:
        subprocess.run([CANCEL[system], job_id], check=True, capture_output=True)


@pytest.mark.parametrize("system", systems("slurm", "sge", "pbspro"))
def test_a_job_removed_from_the_queue_by_someone_else_ends_at_once(system: str,
                                                                   tmp_path: Path) -> None:
    """Someone's scancel/qdel of a job that never ran: the job ends within a minute
    (Grid Engine: after its accounting flush), aborted or killed, not after the
    10 minutes a job missing from every answer waits before it counts as lost."""
    scheduler = _scheduler(system)
    try:
        if system == "sge":  # submitted elsewhere (another engine's session, a script)
            job_id = subprocess.run(["qsub", "-h", "-terse", "-b", "y", "-o", "/dev/null",
                                     "-e", "/dev/null", "true"], capture_output=True,
                                    text=True, check=True).stdout.strip()
        else:
            [submitted] = scheduler.job_submission([EngineJob(
                "gone", ["true"], native_specification=HOLD[system],
                working_directory=str(tmp_path))])
            assert submitted is not None
            job_id = submitted
        assert wait_for_status(scheduler, [job_id], {constants.USER_ON_HOLD,
                                                     constants.USER_SYSTEM_ON_HOLD},
                               timeout=60)
        _remove(system, job_id)
        started = time.monotonic()
        assert wait_for_status(scheduler, [job_id], timeout=60) == {job_id: constants.FAILED}
        assert time.monotonic() - started < 60
        info = scheduler.get_job_exit_info(job_id)
        assert info[0] in (constants.EXIT_ABORTED, constants.USER_KILLED), info
    finally:
        scheduler.close()


# --- 8: the Slurm documentation ---------------------------------------------------------------
def test_the_slurm_doc_lists_every_configuration_key() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "slurm.md").read_text()
    table = doc.split("### Configuration keys", 1)[1]
    for key in SlurmScheduler.CONFIG_KEYS:
        assert f"`{key}`" in table, key


def test_schedulers_and_check_agree(tmp_path: Path) -> None:
    """A scheduler ``jobbridge schedulers`` calls disabled is refused by ``check`` for
    the same reason (exit 2); one it calls enabled is not refused as unusable."""
    table = json.loads(jb("schedulers", "--json").stdout)
    for row in table:
        if row["enabled"]:
            continue
        line = error_line(jb("check", "--scheduler", str(row["name"])))
        assert str(row["reason"]) in line, (row, line)
