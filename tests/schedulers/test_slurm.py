"""slurm: parsers on output captured from a real Slurm (tests/data/slurm), then the
conformance kit and Slurm's own cases (resources, holds, TIMEOUT, one squeue per
poll, slurmctld stopped for 30 s) on the real one-node Slurm that
scripts/clusters/slurm-up.sh starts (marked ``slurm``: see tests/systems.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from jbcli import memory_retry, wait_for
from jobbridge import constants
from jobbridge.configuration import Configuration
from jobbridge.model import EngineJob
from jobbridge.scheduler import Scheduler, build_scheduler
from jobbridge.schedulers.batch import CommandError, CommandResult, JobRecord
from jobbridge.schedulers.slurm import (
    SlurmScheduler,
    _names_and_ids,
    chunks,
    parse_config,
    parse_sacct,
    parse_squeue,
    resource_args,
)
from jobbridge.testing import SchedulerConformance, run_to_end, wait_for_status
from systems import unavailable

DATA = Path(__file__).parent.parent / "data" / "slurm"
#: Every job state squeue documents (Slurm 22.05 ``squeue(1)``, JOB STATE CODES).
SLURM_STATES = [
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "CONFIGURING", "COMPLETING", "DEADLINE", "FAILED",
    "NODE_FAIL", "OUT_OF_MEMORY", "PENDING", "PREEMPTED", "RUNNING", "RESV_DEL_HOLD",
    "REQUEUE_FED", "REQUEUE_HOLD", "REQUEUED", "RESIZING", "REVOKED", "SIGNALING",
    "SPECIAL_EXIT", "STAGE_OUT", "STOPPED", "SUSPENDED", "TIMEOUT"]


def data(name: str) -> str:
    return (DATA / name).read_text()


# --- the state table and the parsers (no Slurm needed) -------------------------------------
def test_every_slurm_state_is_mapped() -> None:
    assert set(SlurmScheduler.STATES) == set(SLURM_STATES)
    ended = {s for s, status in SlurmScheduler.STATES.items() if status == constants.DONE}
    assert {"PREEMPTED", "REQUEUED", "COMPLETING"}.isdisjoint(ended)
    assert set(SlurmScheduler.ABNORMAL_ENDS) - {"PREEMPTED"} <= ended
    for state in ("TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"):
        assert SlurmScheduler.ABNORMAL_ENDS[state][0] == constants.EXIT_ABORTED
    assert SlurmScheduler.ABNORMAL_ENDS["CANCELLED"][0] == constants.USER_KILLED


def test_squeue_while_jobs_run() -> None:
    scheduler = SlurmScheduler()
    records = parse_squeue(data("squeue-live-1.txt"))
    statuses = {job_id: scheduler.record_status(record) for job_id, record in records.items()}
    assert statuses == {
        "537": constants.DONE, "542": constants.DONE,  # ran to its end despite a hold
        "538": constants.DONE, "539": constants.DONE, "540": constants.DONE,
        "541": constants.USER_ON_HOLD, "546": constants.USER_SYSTEM_ON_HOLD,
        "543": constants.DONE, "544": constants.SYSTEM_SUSPENDED,
        "545": constants.USER_SUSPENDED, "547": constants.RUNNING}
    assert (records["539"].exit_value, records["539"].term_sig) == (7, None)
    assert records["539"].reason == "FAILED (NonZeroExitCode)"
    assert (records["540"].exit_value, records["540"].term_sig) == (None, 9)
    assert (records["538"].exit_value, records["538"].reason) == (0, "COMPLETED")
    assert records["547"].exit_value is None and records["547"].reason is None


def test_squeue_after_min_job_age() -> None:
    records = parse_squeue(data("squeue-ended-1.txt"))
    assert set(records) == {"541", "542", "545", "546", "547", "548"}  # others purged
    assert records["547"].state == "TIMEOUT"
    assert records["547"].reason == "TIMEOUT (TimeLimit)"
    assert records["547"].term_sig == 15
    assert SlurmScheduler().record_status(records["541"]) == constants.DONE  # cancelled held


def test_sacct_records_and_usage() -> None:
    records = parse_sacct(data("sacct-2.txt"))
    assert set(records) == {str(n) for n in range(537, 549)}  # steps folded into jobs
    mem = records["538"]
    assert (mem.state, mem.exit_value, mem.term_sig) == ("COMPLETED", 0, None)
    # soma-workflow's rounded items, then the exact ones (a short job is not all zeros)
    assert mem.resource_usage == ("cput=00:00:00 mem=219816kb walltime=00:00:13 ncpus=1 "
                                  "cpu_s=0.480 wall_s=13.000")
    assert (records["539"].exit_value, records["539"].term_sig) == (7, None)
    assert (records["540"].exit_value, records["540"].term_sig) == (None, 9)
    assert records["547"].state == "TIMEOUT"
    assert records["547"].resource_usage == ("cput=00:00:00 mem=3152kb walltime=00:01:03 "
                                             "ncpus=1 cpu_s=0.004 wall_s=63.000")
    assert records["541"].resource_usage == ("cput=00:00:00 walltime=00:00:00 ncpus=1 "
                                             "cpu_s=0.000 wall_s=0.000")
    cancelled = parse_sacct(data("sacct-1.txt"))["543"]
    assert (cancelled.state, cancelled.reason) == ("CANCELLED", "CANCELLED by 0")


def test_sacct_while_jobs_run() -> None:
    records = parse_sacct(data("sacct-running-1.txt"))
    assert records["537"].state == "RUNNING"
    assert records["537"].exit_value is None and records["537"].resource_usage is None
    assert records["546"].state == "PENDING"


def test_sacct_durations_and_sizes() -> None:
    line = "9|COMPLETED|0:0|1-02:03:04.5|1.5G|12:00:01|4\n9.batch|COMPLETED|0:0||2048|00:00:01|1\n"
    assert parse_sacct(line)["9"].resource_usage == (
        "cput=26:03:04 mem=2kb walltime=12:00:01 ncpus=4 cpu_s=93784.500 wall_s=43201.000")
    line = "9|COMPLETED|0:0|00:00.480||00:00:13|1\n9.batch|COMPLETED|0:0||1.5G|00:00:13|1\n"
    assert parse_sacct(line)["9"].resource_usage == (
        f"cput=00:00:00 mem={3 * 1024 * 512}kb walltime=00:00:13 ncpus=1 cpu_s=0.480 "
        "wall_s=13.000")


def test_preempted_is_an_end_only_in_sacct() -> None:
    scheduler = SlurmScheduler()
    assert scheduler.record_status(parse_squeue("7|PREEMPTED|0|None|\n")["7"]) \
        == constants.QUEUED_ACTIVE
    final = parse_sacct("7|PREEMPTED|0:0|00:00:01||00:00:05|1\n")["7"]
    assert scheduler.record_status(final) == constants.DONE
    assert final.exit_status == constants.EXIT_ABORTED


def test_unknown_state_is_undetermined() -> None:
    assert SlurmScheduler().record_status(JobRecord("NEW_STATE")) is None  # base logs it


def test_scontrol_show_config() -> None:
    config = parse_config(data("scontrol-show-config-1.txt"))
    assert config["MinJobAge"] == "300 sec"
    assert config["AccountingStorageType"] == "accounting_storage/slurmdbd"
    assert config["SLURM_VERSION"] == "22.05.8"


def test_resources_become_sbatch_options() -> None:
    job = EngineJob("r", ["true"], resources={"cpus": 3, "memory_mb": 1500, "walltime_s": 61})
    assert resource_args(job) == ["--cpus-per-task=3", "--mem=1500M", "--time=2"]
    openmp = EngineJob("o", ["true"], resources={"cpus": 9}, parallel_job_info={
        "config_name": "OpenMP", "nodes_number": 2, "cpu_per_node": 4})
    assert resource_args(openmp) == ["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=4"]
    mpi = EngineJob("m", ["true"], parallel_job_info={
        "config_name": "MPI", "nodes_number": 3, "cpu_per_node": 2})
    assert resource_args(mpi) == ["--nodes=3", "--ntasks-per-node=2"]


def test_walltime_rounded_to_minutes_is_said() -> None:
    notes: list[str] = []
    assert resource_args(EngineJob("r", ["true"], resources={"walltime_s": 61}), notes) == [
        "--time=2"]
    assert notes == ["walltime_s 61 rounded up to 2 min (sbatch --time=2: Slurm's limits are "
                     "whole minutes)"]
    notes.clear()
    resource_args(EngineJob("r", ["true"], resources={"walltime_s": 120}), notes)
    assert notes == []


def test_refusals_in_sbatchs_words() -> None:
    stderr = ("sbatch: error: invalid partition specified: gpu\n"
              "sbatch: error: Batch job submission failed: Invalid partition name specified\n")
    error = CommandError("sbatch: error: Batch job submission failed: Invalid partition name "
                         "specified", False, CommandResult(1, "", stderr), "sbatch")
    assert SlurmScheduler().refusal_text(error) == (
        "invalid partition specified: gpu; Invalid partition name specified")


def test_submit_argv(tmp_path: Path) -> None:
    scheduler = SlurmScheduler(state_dir=tmp_path / "50%j home",
                               native_specification=["--comment=config", "--qos=low"])
    job = EngineJob("n", ["true"], queue="big", native_specification="--comment='mine too'")
    name = "jb-x-1"
    script = scheduler.state_dir / name / "job.sh"
    argv = scheduler.submit_argv(job, script, name)
    assert argv == [
        "sbatch", "--parsable", "--job-name=jb-x-1",
        f"--output={tmp_path}/50%%j home/jb-x-1/batch.out", f"--chdir={script.parent}",
        "--partition=big", "--comment=config", "--qos=low", "--comment=mine too", str(script)]
    assert scheduler.parse_submit_output("1234;cluster\n") == "1234"


def test_one_argument_per_id_list_or_the_user(tmp_path: Path) -> None:
    scheduler = SlurmScheduler(state_dir=tmp_path)
    assert scheduler.status_argv(["1", "2"])[-1] == "--jobs=1,2"
    many = [str(10_000_000 + n) for n in range(20_000)]
    assert scheduler.status_argv(many)[-1] == f"--user={os.getuid()}"
    parts = list(chunks(many, limit=1000))
    assert [item for part in parts for item in part] == many
    assert all(len(",".join(part)) <= 1000 for part in parts)


class FakeCommands:
    """Stands for Slurm's commands: records each argv, answers from a table."""

    def __init__(self, answers: dict[str, str | CommandError]) -> None:
        self.answers = answers
        self.argvs: list[list[str]] = []

    def __call__(self, kind: str, argv: list[str], **_: object) -> CommandResult:
        self.argvs.append(argv)
        answer = self.answers[argv[0]]
        if isinstance(answer, CommandError):
            raise answer
        return CommandResult(0, answer, "")


def test_history_is_bounded_by_the_submission_time(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = SlurmScheduler(state_dir=tmp_path)
    fake = FakeCommands({"sbatch": "12\n", "scontrol": data("scontrol-show-config-1.txt"),
                         "squeue": "", "sacct": "12|COMPLETED|0:0|00:00:01||00:00:02|1\n"})
    monkeypatch.setattr(scheduler, "run", fake)
    assert scheduler.job_submission([EngineJob("a", ["true"], submission_tag="jb-a")]) == ["12"]
    os.utime(tmp_path / "jb-a" / "job.spec", (1_700_000_000, 1_700_000_000))
    assert scheduler.get_jobs_status(["12"]) == {"12": constants.DONE}  # gone from squeue
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(1_700_000_000 - 3600))
    assert fake.argvs[-1][:4] == ["sacct", "--noheader", "--parsable2", f"--starttime={since}"]
    assert fake.argvs[-1][4] == "--jobs=12"


def test_a_kill_slurm_could_not_take_is_asked_again_at_each_poll(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = SlurmScheduler(state_dir=tmp_path)
    fake = FakeCommands({"sbatch": "12\n", "scontrol": data("scontrol-show-config-1.txt"),
                         "squeue": "12|RUNNING|0|None|\n",
                         "scancel": CommandError("scancel: Unable to contact slurm controller",
                                                 transient=True)})
    monkeypatch.setattr(scheduler, "run", fake)
    [job_id] = scheduler.job_submission([EngineJob("a", ["sleep", "60"], submission_tag="jb-a")])
    scheduler.kill_job(str(job_id))
    time.sleep(0.25)  # the next poll is due
    scheduler.get_jobs_status(["12"])  # Slurm still down: asked again
    fake.answers["scancel"] = ""
    time.sleep(0.25)  # the next poll is due
    scheduler.get_jobs_status(["12"])  # back: taken
    time.sleep(0.25)  # the next poll is due
    scheduler.get_jobs_status(["12"])  # not asked any more
    assert [argv[0] for argv in fake.argvs].count("scancel") == 3


def test_max_submit_jobs_from_sacctmgr(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = SlurmScheduler(state_dir=tmp_path)
    fake = FakeCommands({"sacctmgr": "|\n200|\n|150\n"})  # one line per association
    monkeypatch.setattr(scheduler, "run", fake)
    assert scheduler.submission_limit() == 150
    fake.answers["sacctmgr"] = "|\n"
    assert scheduler.submission_limit() is None  # unset: no limit
    fake.answers["sacctmgr"] = CommandError("sacctmgr: accounting storage is disabled",
                                            transient=False)
    assert scheduler.submission_limit() is None


def test_find_by_name_in_squeue_then_sacct(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = SlurmScheduler(state_dir=tmp_path)
    fake = FakeCommands({"squeue": "12|jb-a|\n", "sacct": "13|jb-b\n"})
    monkeypatch.setattr(scheduler, "run", fake)
    assert scheduler.find_by_name(["jb-a", "jb-b", "jb-c"]) == {"jb-a": "12", "jb-b": "13"}
    [squeue, sacct] = fake.argvs
    assert squeue[-1] == "--name=jb-a,jb-b,jb-c"
    assert sacct[-2] == "--name=jb-b,jb-c"


def test_without_accounting_sacct_is_not_asked_again(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = SlurmScheduler(state_dir=tmp_path)
    fake = FakeCommands({"sacct": CommandError(
        "sacct: Slurm accounting storage is disabled", transient=False)})
    monkeypatch.setattr(scheduler, "run", fake)
    assert scheduler.ended_records(["5", "6"]) == {}
    assert scheduler.find_by_name([]) == {}
    assert scheduler.ended_records(["7"]) == {}
    assert len(fake.argvs) == 1 and not scheduler.accounting
    configured = SlurmScheduler(state_dir=tmp_path, max_interval=600.0)
    text = data("scontrol-show-config-1.txt").replace("accounting_storage/slurmdbd",
                                                      "accounting_storage/none")
    monkeypatch.setattr(configured, "run", FakeCommands({"scontrol": text, "squeue": ""}))
    assert configured.query_status(["5"]) == {}
    assert not configured.accounting
    assert configured.max_interval == 75.0  # MinJobAge 300 / 4


# --- the real Slurm ------------------------------------------------------------------------
def slurm_scheduler(tmp_path: Path, **options: object) -> SlurmScheduler:
    """A scheduler whose files live in a folder with a space and a ``%`` (sbatch
    patterns) in its name, polling fast as tests want."""
    options.setdefault("min_interval", 0.2)
    options.setdefault("max_interval", 1.0)
    return SlurmScheduler(state_dir=tmp_path / "batch 100% files", **options)  # type: ignore[arg-type]


@pytest.mark.slurm
class TestSlurmConformance(SchedulerConformance):
    job_timeout = 120.0
    held_specification = ["--hold"]
    queued_specification = ["--begin=now+1hour"]

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return slurm_scheduler(tmp_path)


def _scontrol_job(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                          check=True).stdout


def test_the_readme_example_configuration(tmp_path: Path) -> None:
    """The README's Slurm section: its configuration is accepted as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Using jobbridge on a Slurm cluster", 1)[1].split("\n## ", 1)[0]
    example = section.split("```ini\n", 1)[1].split("```", 1)[0]
    (tmp_path / "jobbridge.cfg").write_text(example)
    config = Configuration.load("mycluster", tmp_path / "jobbridge.cfg")
    scheduler = SlurmScheduler.build_scheduler(config)
    assert scheduler.native_specification == ["--account=proj42", "--qos=normal"]
    assert (scheduler.max_interval, config.get_int("max_job_in_queue")) == (30.0, 500)


@pytest.mark.slurm
def test_each_job_wrapper_runs_jobs_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """``auto``: the native wrapper, built once into the state folder; with no C
    compiler, the Python one, to the same end; ``native`` without one: the job is
    refused, saying why, in its reason and its stderr file."""
    if shutil.which(os.environ.get("CC") or "cc") is None:
        unavailable("no C compiler to build the native job wrapper")
    def job(name: str) -> EngineJob:
        return EngineJob(name, ["sh", "-c", "echo out; exit 3"], working_directory=str(tmp_path),
                         stdout_file=str(tmp_path / f"{name}.out"),
                         stderr_file=str(tmp_path / f"{name}.err"))

    native = slurm_scheduler(tmp_path / "native")
    python = slurm_scheduler(tmp_path / "python")
    refused = slurm_scheduler(tmp_path / "refused", job_wrapper="native")
    try:
        for scheduler in (native, python):
            if scheduler is python:  # built on first use: with no compiler by then
                monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
            [(status, info)] = run_to_end(scheduler, [job(scheduler.state_dir.name)],
                                          timeout=120)
            assert (status, info[:3]) == (constants.FAILED, (constants.FINISHED_REGULARLY, 3, 0))
            assert (tmp_path / f"{scheduler.state_dir.name}.out").read_text() == "out\n"
        [built] = native.wrapper_command()
        assert Path(built).parent == native.state_dir / ".wrapper"
        assert python.wrapper_command()[1:3] == ["-I", "-S"]  # python -I -S -c BOOT ...
        unbuilt = job("refused")
        assert refused.job_submission([unbuilt]) == [None]
        reason = refused.refusal_reason(unbuilt)
        assert reason is not None and "job_wrapper = native: no C compiler" in reason
        assert "job_wrapper = native: no C compiler" in (tmp_path / "refused.err").read_text()
    finally:
        for scheduler in (native, python, refused):
            scheduler.close()


@pytest.mark.slurm
def test_no_max_submit_jobs_on_this_slurm(tmp_path: Path) -> None:
    assert slurm_scheduler(tmp_path).submission_limit() is None  # none configured here


@pytest.mark.slurm
def test_built_from_configuration(tmp_path: Path) -> None:
    config = Configuration.from_dict("cluster", {
        "scheduler_type": "slurm", "scheduler_interval": "4", "native_specification": "--qos=x"})
    scheduler = build_scheduler("slurm", config)
    assert isinstance(scheduler, SlurmScheduler)
    assert scheduler.native_specification == ["--qos=x"]
    assert scheduler.max_interval == 4.0
    assert SlurmScheduler.availability() == (True, "")


@pytest.mark.slurm
def test_resources_queue_and_native_options_reach_slurm(tmp_path: Path) -> None:
    scheduler = slurm_scheduler(tmp_path, native_specification=["--comment=from config"])
    job = EngineJob("res", ["true"], working_directory=str(tmp_path), queue="debug",
                    resources={"cpus": 2, "memory_mb": 100, "walltime_s": 90},
                    native_specification=["--hold", "--comment=job's own, wins"])
    mpi = EngineJob("mpi", ["true"], working_directory=str(tmp_path),
                    parallel_job_info={"config_name": "MPI", "nodes_number": 1,
                                       "cpu_per_node": 2},
                    native_specification="--hold")
    ids = scheduler.job_submission([job, mpi])
    assert None not in ids
    try:
        shown = _scontrol_job(str(ids[0]))
        for item in ("NumCPUs=2", "MinMemoryNode=100M", "TimeLimit=00:02:00",
                     "Partition=debug", "Comment=job's own, wins", "Reason=JobHeldUser"):
            assert item in shown
        assert "NumTasks=2" in _scontrol_job(str(ids[1]))
        assert scheduler.get_jobs_status([str(i) for i in ids]) == {
            str(i): constants.USER_ON_HOLD for i in ids}
    finally:
        for job_id in ids:
            scheduler.kill_job(str(job_id))
    wait_for_status(scheduler, [str(i) for i in ids], timeout=60)
    for job_id in ids:
        info = scheduler.get_job_exit_info(str(job_id))
        assert info[0] == constants.USER_KILLED


@pytest.mark.slurm
def test_at_most_one_squeue_per_poll_for_many_jobs(tmp_path: Path) -> None:
    scheduler = slurm_scheduler(tmp_path)
    jobs = [EngineJob(f"p{i}", ["sleep", "1"], working_directory=str(tmp_path))
            for i in range(6)]
    ids = [str(i) for i in scheduler.job_submission(jobs)]
    polls = 0
    while True:
        before = dict(scheduler.calls)
        statuses = scheduler.get_jobs_status(ids)
        polls += 1
        assert scheduler.calls.get("status", 0) - before.get("status", 0) <= 1
        assert scheduler.calls.get("history", 0) - before.get("history", 0) <= 1
        if all(status in constants.ENDED_JOB_STATUS for status in statuses.values()):
            break
        time.sleep(0.3)
        assert polls < 300
    assert scheduler.calls["config"] == 1  # MinJobAge read once
    assert scheduler.calls.get("history", 0) == 0  # the wrappers told every end
    for job_id in ids:
        info = scheduler.get_job_exit_info(job_id)
        assert (info[0], info[1]) == (constants.FINISHED_REGULARLY, 0)
        assert info[3] is not None and "mem=" in info[3]  # the wrapper's usage


@pytest.mark.slurm
def test_max_interval_stays_well_under_min_job_age(tmp_path: Path) -> None:
    scheduler = slurm_scheduler(tmp_path, max_interval=3600.0)
    assert scheduler.query_status(["99999999"]) == {}  # one unknown id: squeue fails
    assert scheduler.min_job_age is not None
    assert scheduler.max_interval <= scheduler.min_job_age / 4


@pytest.mark.slurm
def test_find_submitted_by_tag(tmp_path: Path) -> None:
    scheduler = slurm_scheduler(tmp_path)
    job = EngineJob("tag", ["true"], working_directory=str(tmp_path),
                    submission_tag=f"jb-slurm-find-{time.time_ns():x}")
    [job_id] = scheduler.job_submission([job])
    again = slurm_scheduler(tmp_path)
    assert again.find_submitted([str(job.submission_tag), "jb-never-submitted"]) == {
        job.submission_tag: job_id}
    wait_for_status(again, [str(job_id)], timeout=120)
    assert again.get_job_exit_info(str(job_id))[:2] == (constants.FINISHED_REGULARLY, 0)


@pytest.mark.slurm
def test_exit_info_carries_the_true_dates(tmp_path: Path) -> None:
    """The wrapper's exit record dates the job: an engine learning of its end late (it
    was down) still records when it really started and ended."""
    scheduler = slurm_scheduler(tmp_path)
    stamps = tmp_path / "stamps"
    job = EngineJob("dated", ["sh", "-c", f"date +%s.%N >> {stamps}; sleep 1; "
                                         f"date +%s.%N >> {stamps}"],
                    working_directory=str(tmp_path))
    [job_id] = scheduler.job_submission([job])
    wait_for_status(scheduler, [str(job_id)], timeout=120)
    time.sleep(2)
    info = scheduler.get_job_exit_info(str(job_id))
    began, ended = (float(stamp) for stamp in stamps.read_text().split())
    assert info[:2] == (constants.FINISHED_REGULARLY, 0)
    assert info.started is not None and abs(info.started - began) < 0.5, (info.started, began)
    assert info.ended is not None and abs(info.ended - ended) < 0.5, (info.ended, ended)


@pytest.mark.slurm
@pytest.mark.slow
def test_timeout_is_a_failure_with_its_reason(tmp_path: Path) -> None:
    """Slurm's smallest limit is 1 minute, checked every 30 s: TIMEOUT in 60-95 s."""
    scheduler = slurm_scheduler(tmp_path)
    job = EngineJob("slow", ["sleep", "300"], working_directory=str(tmp_path),
                    resources={"walltime_s": 1})
    [(status, info)] = run_to_end(scheduler, [job], timeout=180)
    assert status == constants.FAILED
    assert info[0] == constants.EXIT_ABORTED
    assert info[2] == signal.SIGTERM  # Slurm's SIGTERM, forwarded by the wrapper
    assert getattr(info, "reason", "").startswith("TIMEOUT")


def _slurmctld_pid() -> int:
    config = parse_config(subprocess.run(["scontrol", "show", "config"], capture_output=True,
                                         text=True, check=True).stdout)
    return int(Path(config["SlurmctldPidFile"]).read_text())


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.slurm
@pytest.mark.slow
def test_slurmctld_stopped_for_30_s(tmp_path: Path) -> None:
    """Jobs that end while slurmctld is down, one submitted during the outage and one
    still running after it all end with their true exit info; no poll fails a job; a
    job killed during the outage is cancelled once Slurm is back."""
    if os.geteuid() != 0:
        unavailable("stopping and starting slurmctld needs root")
    scheduler = slurm_scheduler(tmp_path, command_timeout=20.0)
    jobs = [EngineJob("quick", ["sh", "-c", "sleep 3; exit 0"]),
            EngineJob("five", ["sh", "-c", "sleep 8; exit 5"]),
            EngineJob("long", ["sh", "-c", "sleep 45; exit 0"]),
            EngineJob("victim", ["sleep", "600"])]
    ids = [str(i) for i in scheduler.job_submission(jobs)]
    # Slurm may start them seconds apart on a busy node: the quick ones may be over
    wait_for_status(scheduler, ids[2:], {constants.RUNNING}, timeout=120)
    pid = _slurmctld_pid()
    os.kill(pid, signal.SIGTERM)
    _wait(lambda: not Path(f"/proc/{pid}").exists(), 60, "slurmctld did not stop")
    stopped = time.monotonic()
    submitted: list[str | None] = []
    during = threading.Thread(target=lambda: submitted.extend(scheduler.job_submission(
        [EngineJob("during", ["sh", "-c", "exit 4"])])))
    during.start()
    killing = threading.Thread(target=scheduler.kill_job, args=[ids[3]])
    killing.start()
    try:
        while time.monotonic() - stopped < 30:
            statuses = scheduler.get_jobs_status(ids)  # fails inside: keeps the last states
            # "five"'s exit 5 comes from its wrapper's exit file; no failed poll fails a job
            assert constants.FAILED not in [statuses[i] for i in ids if i != ids[1]]
            time.sleep(2)
    finally:
        subprocess.run(["slurmctld"], check=True, timeout=60)  # daemonizes itself
    _wait(lambda: "UP" in subprocess.run(["scontrol", "ping"], capture_output=True,
                                         text=True).stdout, 60, "slurmctld did not restart")
    during.join(timeout=120)
    killing.join(timeout=120)
    assert submitted and submitted[0] is not None, "the submission during the outage failed"
    all_ids = [*ids, str(submitted[0])]
    statuses = wait_for_status(scheduler, all_ids, timeout=180)
    infos = [scheduler.get_job_exit_info(job_id) for job_id in all_ids]
    assert [info[0] for info in infos] == [
        constants.FINISHED_REGULARLY, constants.FINISHED_REGULARLY,
        constants.FINISHED_REGULARLY, constants.USER_KILLED, constants.FINISHED_REGULARLY]
    assert [infos[i][1] for i in (0, 1, 2, 4)] == [0, 5, 0, 4]
    assert [statuses[job_id] for job_id in all_ids] == [
        constants.DONE, constants.FAILED, constants.DONE, constants.FAILED, constants.FAILED]


def _slurm_enforces_memory() -> str:
    """Why the test Slurm would not kill a job over its --mem ("": it does)."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                            timeout=30, check=False).stdout
    if "task/cgroup" not in parse_config(config).get("TaskPlugin", ""):
        return ("this Slurm does not enforce --mem (TaskPlugin is not task/cgroup: "
                "scripts/clusters/slurm-up.sh, SLURM_CI_CGROUP)")
    return ""


def _requested_memory(attempt: dict[str, Any]) -> str:
    """What sacct says the attempt asked for (``ReqMem``), once slurmdbd has it (just
    after a job's end sacct may show ``16?``); only since its submission, as a purged
    Slurm reuses job ids."""
    since = datetime.fromisoformat(attempt["submission_date"]).timestamp() - 60
    argv = ["sacct", "-n", "-P", "-X", "-j", attempt["scheduler_job_id"], "--format=ReqMem",
            "--starttime", time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since))]
    answer: list[str] = []

    def known() -> bool:  # a busy slurmdbd may fail a query: asked again
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        answer[:] = result.stdout.split()[-1:] if result.returncode == 0 else []
        return bool(answer) and answer[0][-1:] in ("K", "M", "G", "T")

    wait_for(known, 120, f"sacct's ReqMem of job {attempt['scheduler_job_id']}")
    return answer[0]


@pytest.mark.slurm
def test_a_job_killed_for_memory_is_retried_with_twice_the_memory(tmp_path: Path) -> None:
    """--mem enforced by a cgroup: attempt 1 ends OUT_OF_MEMORY, attempt 2 asks Slurm
    for twice the memory and succeeds; the report has both, with their sources."""
    if why := _slurm_enforces_memory():
        unavailable(why)
    report = memory_retry(tmp_path, "cluster", "[cluster]\nscheduler_type = slurm\n"
                          "scheduler_interval = 2\n", processes=1, size_mb=200, memory_mb=150)
    first, second = report["jobs"][0]["attempts"]
    assert first["exit_reason"].startswith("OUT_OF_MEMORY"), first
    assert (first["outcome"], second["outcome"]) == ("retried", "done")
    assert (first["requested"]["memory_mb"], second["requested"]["memory_mb"]) == (150, 300)
    assert [_requested_memory(attempt) for attempt in (first, second)] == ["150M", "300M"]
    assert second["used"]["mem_bytes"] >= 200 << 20
    for attempt in (first, second):  # sacct's, or the wrapper's when its exit file told first
        wrapped = next((item.removeprefix("wrapper=").split(",") for item in
                        attempt["resource_usage"].split() if item.startswith("wrapper=")), [])
        for figure, key in (("cpu_s", "cpu_s"), ("mem_bytes", "mem"), ("wall_s", "wall_s")):
            assert attempt["sources"][figure] == (
                "job wrapper (wait4)" if key in wrapped else "sacct"), attempt
    assert report["summary"]["retried_jobs"] == 1


def test_array_elements_in_squeue_and_sacct() -> None:
    """An element is ``ID_IDX`` in squeue's JobArrayID and sacct's JobID (its JobIDRaw
    is a job id of its own): a plain job's raw id stays its id (lines recorded from
    the real Slurm: array 7272, elements 0-3, exit codes 0-3)."""
    records = parse_squeue("7272_0|COMPLETED|0|None|\n7272_3|FAILED|768|NonZeroExitCode|\n"
                           "7277|PENDING|0|JobHeldUser|\n")
    assert (records["7272_3"].state, records["7272_3"].exit_value) == ("FAILED", 3)
    assert set(records) == {"7272_0", "7272_3", "7277"}
    text = ("7273|COMPLETED|0:0|00:00.003||00:00:01|1|7272_0\n"
            "7273.batch|COMPLETED|0:0|00:00.003|3256K|00:00:01|1|7272_0.batch\n"
            "7272|FAILED|3:0|00:00.002||00:00:01|1|7272_3\n"
            "7272.batch|FAILED|3:0|00:00.002|3000K|00:00:01|1|7272_3.batch\n"
            "7280|COMPLETED|0:0|00:00.002||00:00:01|1|7280\n")
    records = parse_sacct(text)
    assert set(records) == {"7272_0", "7272_3", "7280"}
    assert (records["7272_3"].exit_value, records["7272_0"].exit_value) == (3, 0)
    assert records["7272_0"].resource_usage is not None
    assert "mem=3256kb" in records["7272_0"].resource_usage
    assert _names_and_ids("7272_3|jb.array|\n7272_[4-9]|jb.array|\n7280|lone|\n") == {
        "jb.array": "7272", "lone": "7280"}
