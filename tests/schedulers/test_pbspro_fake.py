"""pbspro layer (c): PBS Pro mode end to end against a FAKE PBS Pro, and replays.

The fake (tests/fake_pbspro/fakepbs.py) runs each job for real on this machine
and answers ``qstat -x -f -F json`` from a real recorded OpenPBS record; the
replays feed recorded qstat output (tests/data/pbs) through the scheduler.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobbridge import constants
from jobbridge.configuration import Configuration, jobbridge_home
from jobbridge.model import EngineJob
from jobbridge.scheduler import Scheduler, build_scheduler
from jobbridge.schedulers.batch import JobRecord
from jobbridge.schedulers.pbspro import PBSError, PBSProScheduler
from jobbridge.testing import SchedulerConformance, run_to_end, wait_for_status

TESTS = Path(__file__).resolve().parent.parent
FAKE = TESTS / "fake_pbspro" / "fakepbs.py"
DATA = TESTS / "data" / "pbs"
FAST: dict[str, Any] = {"min_interval": 0.05, "max_interval": 0.3, "retries": 1}


@dataclass
class FakePBS:
    bin: Path
    home: Path

    def configure(self, **settings: float | str) -> None:
        (self.home / "config.json").write_text(json.dumps(settings))

    def scheduler(self, **options: Any) -> PBSProScheduler:
        """A scheduler of the fake, which has no job arrays (``qsub -J``)."""
        return PBSProScheduler({}, pbs_bin_dir=str(self.bin),
                               **{**FAST, "array_submission": "off", **options})


@pytest.fixture
def fake_pbs(tmp_path: Path) -> Iterator[FakePBS]:
    fake = FakePBS(tmp_path / "fake-pbs-bin", tmp_path / "fake-pbs-server")
    fake.bin.mkdir()
    fake.home.mkdir()
    for name in ("qsub", "qstat", "qdel", "qselect"):
        argv = shlex.join([sys.executable, str(FAKE), str(fake.home), name])
        _script(fake.bin / name, f'exec {argv} "$@"')
    yield fake
    subprocess.run([sys.executable, str(FAKE), str(fake.home), "_shutdown"], check=True)


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


class TestFakePBSProConformance(SchedulerConformance):
    job_timeout = 60.0
    held_specification = ["-h"]

    @pytest.fixture(autouse=True)
    def _fake(self, fake_pbs: FakePBS) -> None:
        self.fake = fake_pbs

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return self.fake.scheduler()


class TestFakeTorqueConformance(SchedulerConformance):
    """Torque mode (``qstat -x`` XML, ``qsub -t`` arrays) against the fake's Torque
    flavour, shaped by recorded Torque 6.1 output."""

    job_timeout = 60.0
    held_specification = ["-h"]

    @pytest.fixture(autouse=True)
    def _fake(self, fake_pbs: FakePBS) -> None:
        fake_pbs.configure(flavour="torque")
        self.fake = fake_pbs

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        scheduler = self.fake.scheduler(array_submission="auto")
        assert (scheduler.implementation, scheduler.status_format) == ("torque", "xml")
        return scheduler


# --- PBS Pro behaviour through the fake -----------------------------------------------------

def test_detects_pbs_pro_and_asks_qstat_for_json(fake_pbs: FakePBS) -> None:
    scheduler = fake_pbs.scheduler()
    assert scheduler.get_pbs_version() == ("pbspro", "19.0.0")
    assert scheduler.status_format == "json"
    assert scheduler.status_argv(["1.pbs", "2.pbs"])[1:] == [
        "-E", "-t", "-x", "-f", "-F", "json", "1.pbs", "2.pbs"]


@pytest.mark.parametrize(("version", "express"), [
    ("pbspro-qstat-version-1.txt", False),  # PBS Pro 11.1: neither -E nor JSON
    ("pbspro-qstat-version-2.txt", True),  # OpenPBS 19.0.0
    ("pbspro-qstat-version-3.txt", True),  # PBS Pro 2025.2.0
])
def test_qstat_form_by_release(tmp_path: Path, version: str, express: bool) -> None:
    """-E (one batch request: without it a real qstat prints only the first job of
    ``-F json ID1 ID2``) and JSON came with release 18; before: text, id by id."""
    scheduler = replay(tmp_path, "pbspro-qstat-f-F-1.txt", version=version)
    assert scheduler.express is express
    assert scheduler.status_argv(["1.pbs"])[1:] == (
        ["-E", "-t", "-x", "-f", "-F", "json", "1.pbs"] if express else ["-x", "-f", "1.pbs"])


def test_a_qstat_refusing_e_gets_text(tmp_path: Path) -> None:
    """A qstat that prints its usage for -E (a release older than its version
    says) is asked again in text, without -E, in the same poll."""
    bin_dir = tmp_path / "old-bin"
    bin_dir.mkdir()
    text = shlex.quote(str(DATA / "pbspro-qstat-f-F-1.txt"))
    _script(bin_dir / "qstat", 'case "$1" in\n'
            "  --version) echo 'pbs_version = 19.2.1';;\n"
            "  -E) echo \"qstat: invalid option -- 'E'\" >&2; echo 'usage: qstat [-f] ...' >&2;"
            " exit 2;;\n"
            f"  *) cat {text};;\n"
            "esac")
    scheduler = PBSProScheduler({}, pbs_bin_dir=str(bin_dir), **FAST)
    assert scheduler.get_job_status("4686875") == constants.DONE
    assert (scheduler.express, scheduler.status_format) == (False, "text")
    assert scheduler.calls["status"] == 2


def test_status_of_many_jobs_costs_one_qstat_per_cycle(
        fake_pbs: FakePBS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = fake_pbs.scheduler()
    asked: list[list[str]] = []
    query = scheduler.query_status

    def spy(ids: Sequence[str]) -> dict[str, JobRecord]:
        asked.append(list(ids))
        return query(ids)

    monkeypatch.setattr(scheduler, "query_status", spy)
    # long enough that none ends (by its exit file) before the first poll on a loaded machine
    jobs = [EngineJob(f"j{i}", ["sleep", "3"], working_directory=str(tmp_path))
            for i in range(6)]
    results = run_to_end(scheduler, jobs, timeout=60)
    assert all(status == constants.DONE for status, _ in results)
    assert len(asked[0]) == 6, "the first poll asks about every job at once"
    assert scheduler.calls["status"] == len(asked), "one qstat call per poll"


def test_one_poll_gives_every_job_its_state(fake_pbs: FakePBS) -> None:
    """Like a real OpenPBS, the fake prints only the first job of ``qstat -F json
    ID1 ID2`` without -E: every queued job must still be seen queued."""
    fake_pbs.configure(start_delay=5)
    scheduler = fake_pbs.scheduler()
    ids = [str(i) for i in scheduler.job_submission(
        [EngineJob(f"q{i}", ["true"]) for i in range(4)])]
    assert scheduler.get_jobs_status(ids) == dict.fromkeys(ids, constants.QUEUED_ACTIVE)
    assert scheduler.calls["status"] == 1
    for job_id in ids:
        scheduler.kill_job(job_id)


def test_a_job_submitted_held_is_held_before_any_qstat(fake_pbs: FakePBS) -> None:
    """Between its qsub and the next qstat (``scheduler_interval``, 30 s by default), a
    job is shown as its submission left it: held with ``-h`` (also from the resource's
    options), else queued."""
    fake_pbs.configure(start_delay=30)
    scheduler = fake_pbs.scheduler(max_interval=600.0)
    assert scheduler.get_jobs_status([]) == {}  # the first poll, with nothing to ask
    polls = scheduler.calls.get("status", 0)
    ids = [str(job_id) for job_id in scheduler.job_submission(
        [EngineJob("held", ["true"], native_specification="-p 3 -h"),
         EngineJob("plain", ["true"])])]
    assert scheduler.get_jobs_status(ids) == {ids[0]: constants.USER_SYSTEM_ON_HOLD,
                                              ids[1]: constants.QUEUED_ACTIVE}
    held_everywhere = PBSProScheduler({}, None, "-h", pbs_bin_dir=str(fake_pbs.bin),
                                      **{**FAST, "array_submission": "off",
                                         "max_interval": 600.0})
    held_everywhere.get_jobs_status([])
    [other] = held_everywhere.job_submission([EngineJob("any", ["true"])])
    assert held_everywhere.get_jobs_status([str(other)]) == {
        str(other): constants.USER_SYSTEM_ON_HOLD}
    assert scheduler.calls.get("status", 0) == polls
    assert "status" not in held_everywhere.calls
    for job_id in ids:
        scheduler.kill_job(job_id)
    held_everywhere.kill_job(str(other))


def test_walltime_kill_is_aborted_with_pbs_reason(fake_pbs: FakePBS) -> None:
    # the wrapper gets 10 s, not 2, between SIGTERM and SIGKILL to write its exit file
    # (under a load of 30 it once had not, and the signal was unknown)
    fake_pbs.configure(kill_delay=10)
    job = EngineJob("long", ["sleep", "30"], resources={"walltime_s": 1})
    [(status, info)] = run_to_end(fake_pbs.scheduler(), [job], timeout=60)
    assert status == constants.FAILED
    assert info[0] == constants.EXIT_ABORTED
    assert info[2] == 15  # the wrapper saw the SIGTERM PBS sent
    assert "JOB_EXEC_KILL_WALLTIME" in str(getattr(info, "reason", ""))


def test_killing_a_queued_job(fake_pbs: FakePBS, tmp_path: Path) -> None:
    fake_pbs.configure(start_delay=3)
    scheduler = fake_pbs.scheduler()
    marker = tmp_path / "ran"
    [job_id] = scheduler.job_submission([EngineJob("q", ["touch", str(marker)])])
    assert job_id is not None
    assert scheduler.get_job_status(job_id) == constants.QUEUED_ACTIVE
    scheduler.kill_job(job_id)
    assert wait_for_status(scheduler, [job_id], timeout=30)[job_id] == constants.FAILED
    assert scheduler.get_job_exit_info(job_id)[0] == constants.USER_KILLED
    assert not marker.exists()


def test_a_job_whose_wrapper_never_started_reports_pbs_exit_status(fake_pbs: FakePBS) -> None:
    """No exit file: the exit code comes from PBS's Exit_status (bash: 127)."""
    scheduler = fake_pbs.scheduler(job_python="/nonexistent/python3", job_wrapper="python")
    [(status, info)] = run_to_end(scheduler, [EngineJob("x", ["true"])], timeout=60)
    assert status == constants.FAILED
    assert (info[0], info[1]) == (constants.FINISHED_REGULARLY, 127)
    assert info[3] is not None and "walltime=" in info[3]


def test_invalid_json_falls_back_to_qstat_text(fake_pbs: FakePBS, tmp_path: Path) -> None:
    """openpbs #1255: ``qsub -v X=005`` makes qstat's JSON invalid; text still works."""
    out = tmp_path / "out"
    job = EngineJob("zip", ["sh", "-c", "echo $JB_ZIP"], stdout_file=str(out),
                    native_specification="-v JB_ZIP=005")
    scheduler = fake_pbs.scheduler()
    [(status, _)] = run_to_end(scheduler, [job], timeout=60)
    assert status == constants.DONE
    assert scheduler.status_format == "text"
    assert out.read_text() == "005\n"


def test_resources_become_select_and_walltime(fake_pbs: FakePBS) -> None:
    fake_pbs.configure(start_delay=30)
    scheduler = fake_pbs.scheduler()
    jobs = [EngineJob("r", ["true"], resources={"cpus": 2, "memory_mb": 100, "walltime_s": 90}),
            EngineJob("mpi", ["true"], resources={"memory_mb": 1000},
                      parallel_job_info={"config_name": "MPI", "nodes_number": 2,
                                         "cpu_per_node": 3})]
    ids = scheduler.job_submission(jobs)
    lists = [scheduler.get_job_extended_status(str(job_id))["Resource_List"] for job_id in ids]
    assert (lists[0]["select"], lists[0]["walltime"]) == ("1:ncpus=2:mem=100mb", "00:01:30")
    assert lists[1]["select"] == "2:ncpus=3:mpiprocs=3:mem=500mb"
    for job_id in ids:
        scheduler.kill_job(str(job_id))


def test_memory_divided_among_nodes_is_said_when_rounded(fake_pbs: FakePBS) -> None:
    """PBS Pro's select chunks each get a share of the memory, rounded up: said in the
    job's notes (its status) and its exit reason, not only in the log."""
    scheduler = fake_pbs.scheduler()
    job = EngineJob("m", ["true"], resources={"memory_mb": 1000},
                    parallel_job_info={"config_name": "native", "nodes_number": 3,
                                       "cpu_per_node": 1})
    exact = EngineJob("e", ["true"], resources={"memory_mb": 900},
                      parallel_job_info={"config_name": "native", "nodes_number": 3,
                                         "cpu_per_node": 1})
    ids = [str(job_id) for job_id in scheduler.job_submission([job, exact])]
    note = "memory_mb 1000 rounded up to 334 MB a node x 3 nodes (select chunks)"
    assert scheduler.job_notes(ids) == {ids[0]: note}
    wait_for_status(scheduler, ids, timeout=60)
    assert getattr(scheduler.get_job_exit_info(ids[0]), "reason", None) == note
    assert getattr(scheduler.get_job_exit_info(ids[1]), "reason", None) is None


def test_torque_resources_go_in_one_l_option(fake_pbs: FakePBS, tmp_path: Path) -> None:
    scheduler = fake_pbs.scheduler()
    scheduler.implementation = "torque"
    job = EngineJob("t", ["true"], resources={"memory_mb": 1000, "walltime_s": 3600 * 30 + 61},
                    parallel_job_info={"config_name": "native", "nodes_number": 2,
                                       "cpu_per_node": 3})
    assert scheduler.resource_args(job) == ["-l", "nodes=2:ppn=3,mem=1000mb,walltime=30:01:01"]
    assert scheduler.resource_args(EngineJob("plain", ["true"])) == []


def test_extended_status_and_wait_job(fake_pbs: FakePBS) -> None:
    scheduler = fake_pbs.scheduler()
    [job_id] = scheduler.job_submission([EngineJob("w", ["sleep", "0.3"], submission_tag="jb-w")])
    assert job_id is not None and job_id.endswith(".pbs")
    assert scheduler.wait_job(job_id, timeout=60) == constants.DONE
    # done by its wrapper's exit record, written just before PBS's own end: qstat
    # says F, with the Exit_status, a moment later
    deadline = time.monotonic() + 30
    while (status := scheduler.get_job_extended_status(job_id)).get("job_state") != "F":
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    assert (status["job_state"], status["Exit_status"], status["Job_Name"]) == ("F", 0, "jb-w")
    assert scheduler.get_job_extended_status("9999.pbs") == {}


def test_wait_job_times_out(fake_pbs: FakePBS) -> None:
    scheduler = fake_pbs.scheduler()
    [job_id] = scheduler.job_submission([EngineJob("s", ["sleep", "30"])])
    assert job_id is not None
    with pytest.raises(TimeoutError):
        scheduler.wait_job(job_id, timeout=0.5, poll_interval=0.1)
    scheduler.kill_job(job_id)


def test_submit_simple_test_job(fake_pbs: FakePBS, tmp_path: Path) -> None:
    scheduler = PBSProScheduler({}, tmp_path / "check", pbs_bin_dir=str(fake_pbs.bin), **FAST)
    info = scheduler.submit_simple_test_job("hello pbs", "test.o", "test.e")
    assert tuple(info)[:2] == (constants.FINISHED_REGULARLY, 0)
    assert (tmp_path / "check" / "test.o").read_text() == "hello pbs\n"


def test_the_simple_test_jobs_default_folder_is_private(fake_pbs: FakePBS) -> None:
    """Without tmp_file_path it is in the home's state folder: 0700 under umask 022,
    as every folder there, its files 0600."""
    old = os.umask(0o022)
    try:
        scheduler = PBSProScheduler({}, pbs_bin_dir=str(fake_pbs.bin), **FAST)
        info = scheduler.submit_simple_test_job("hello pbs", "test.o", "test.e")
    finally:
        os.umask(old)
    assert tuple(info)[:2] == (constants.FINISHED_REGULARLY, 0)
    folder = scheduler.tmp_file_path
    assert folder.is_relative_to(jobbridge_home())
    assert oct(folder.stat().st_mode & 0o777) == oct(0o700)
    assert {path.name: oct(path.stat().st_mode & 0o777) for path in folder.iterdir()} == {
        "test.o": oct(0o600), "test.e": oct(0o600)}


def test_find_submitted_and_a_new_scheduler_reads_the_end(fake_pbs: FakePBS) -> None:
    """What engine resume rests on: find a submission by tag, follow it by id."""
    first = fake_pbs.scheduler()
    job = EngineJob("r", ["sh", "-c", "sleep 0.5; exit 4"], submission_tag="jb-resume-1")
    [job_id] = first.job_submission([job])
    second = fake_pbs.scheduler()
    assert second.find_submitted(["jb-resume-1", "jb-never"]) == {"jb-resume-1": job_id}
    assert wait_for_status(second, [str(job_id)], timeout=60)[str(job_id)] == constants.FAILED
    assert tuple(second.get_job_exit_info(str(job_id)))[:2] == (constants.FINISHED_REGULARLY, 4)


def test_refused_submission_names_the_reason(fake_pbs: FakePBS, tmp_path: Path) -> None:
    err = tmp_path / "err"
    job = EngineJob("big", ["true"], stderr_file=str(err), resources={"cpus": 1000})
    assert fake_pbs.scheduler().job_submission([job]) == [None]
    assert "resource limits" in err.read_text()


# --- configuration and commands -------------------------------------------------------------

def test_build_scheduler_from_configuration(fake_pbs: FakePBS, tmp_path: Path) -> None:
    config = Configuration.from_dict("cluster", {
        "scheduler_type": "pbspro", "pbs_bin_dir": str(fake_pbs.bin),
        "native_specification": "-A proj", "parallel_MPI": "-l place=scatter",
        "scheduler_interval": "2"})
    scheduler = build_scheduler("pbspro", config)
    assert isinstance(scheduler, PBSProScheduler)
    assert scheduler.parallel_job_submission_info == {"MPI": ["-l", "place=scatter"]}
    assert scheduler.max_interval == 2
    job = EngineJob("p", ["true"], native_specification=["-p", "5"],
                    parallel_job_info={"config_name": "MPI", "nodes_number": 1,
                                       "cpu_per_node": 2})
    argv = scheduler.submit_argv(job, tmp_path / "job.sh", "p")
    assert argv[0] == str(fake_pbs.bin / "qsub")
    assert argv[-9:] == ["-l", "select=1:ncpus=2:mpiprocs=2", "-l", "place=scatter",
                         "-A", "proj", "-p", "5", str(tmp_path / "job.sh")]


def test_schedulers_says_pbspro_needs_a_pbs_qstat(fake_pbs: FakePBS, tmp_path: Path) -> None:
    """jobbridge schedulers: pbspro is disabled, saying why, without a qstat on PATH or
    with Grid Engine's; a PBS qstat in the configuration's pbs_bin_dir is enough."""
    def pbspro(**env: str) -> dict[str, Any]:
        result = subprocess.run([sys.executable, "-m", "jobbridge", "schedulers", "--json"],
                                capture_output=True, text=True, env={**os.environ, **env})
        assert result.returncode == 0, result.stderr
        entry: dict[str, Any] = next(e for e in json.loads(result.stdout)
                                     if e["name"] == "pbspro")
        return entry

    empty = tmp_path / "empty"
    empty.mkdir()
    entry = pbspro(PATH=str(empty))
    assert entry["enabled"] is False and "qstat is not on PATH" in entry["reason"], entry
    grid_engine = tmp_path / "sge"
    grid_engine.mkdir()
    _script(grid_engine / "qstat", "echo 'SGE 8.1.9'; echo 'usage: qstat [options]'; exit 1")
    entry = pbspro(PATH=str(grid_engine))
    assert entry["enabled"] is False and "Grid Engine's qstat" in entry["reason"], entry
    config = tmp_path / "jobbridge.cfg"
    config.write_text(f"[cluster]\nscheduler_type = pbspro\npbs_bin_dir = {fake_pbs.bin}\n")
    assert pbspro(PATH=str(grid_engine), JOBBRIDGE_CONFIG=str(config))["enabled"] is True


def test_host_command_prefix(fake_pbs: FakePBS) -> None:
    """Commands reach PBS through a prefix (``env`` here; ``ssh`` on a real host)."""
    scheduler = fake_pbs.scheduler(host_command=["env", "VIA_HOST=1"])
    assert scheduler.implementation == "pbspro"
    assert scheduler.command("qdel", "1.pbs")[:2] == ["env", "VIA_HOST=1"]
    scheduler.host_command = ["ssh", "-o", "BatchMode=yes", "login1"]
    assert scheduler.command("qsub", "-N", "a b", "/x/job.sh") == [
        "ssh", "-o", "BatchMode=yes", "login1", f"{fake_pbs.bin}/qsub -N 'a b' /x/job.sh"]


def test_out_of_container_command(fake_pbs: FakePBS, monkeypatch: pytest.MonkeyPatch) -> None:
    """A staticmethod, as the seed documents it: called on the class."""
    assert isinstance(inspect.getattr_static(PBSProScheduler, "out_of_container_command"),
                      staticmethod)
    assert PBSProScheduler.out_of_container_command() == []
    monkeypatch.setenv("APPTAINER_CONTAINER", "/images/tools.sif")
    qstat = str(fake_pbs.bin / "qstat")
    assert PBSProScheduler.out_of_container_command(qstat) == []  # qstat is reachable here
    assert PBSProScheduler.out_of_container_command("/no/pbs/here/qstat") == [
        "ssh", "-o", "BatchMode=yes", "localhost"]


def test_missing_commands_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PBSError, match="pbs_bin_dir"):
        PBSProScheduler({}, pbs_bin_dir=str(tmp_path / "nothing"))


def test_grid_engine_qstat_is_refused(tmp_path: Path) -> None:
    """Grid Engine ships a qstat too (/usr/bin/qstat on the test machine)."""
    (tmp_path / "sge.txt").write_text("SGE 8.1.9\nusage: qstat [options]\n")
    with pytest.raises(PBSError, match=re.escape("Grid Engine's (SGE 8.1.9), not PBS's")):
        replay(tmp_path, "pbspro-qstat-json-F-1.json", version=str(tmp_path / "sge.txt"))


# --- replays of recorded output ---------------------------------------------------------------

def replay(tmp_path: Path, stdout: str, *, stderr: str | None = None, code: int = 0,
           version: str = "pbspro-qstat-version-2.txt") -> PBSProScheduler:
    """A scheduler whose qstat prints recorded output (and whose qsub does not exist)."""
    bin_dir = tmp_path / "replay-bin"
    bin_dir.mkdir()
    err = f"cat {shlex.quote(str(DATA / stderr))} >&2; " if stderr else ""
    _script(bin_dir / "qstat",
            f'if [ "$1" = --version ]; then cat {shlex.quote(str(DATA / version))}; exit 0; fi\n'
            f"cat {shlex.quote(str(DATA / stdout))}; {err}exit {code}")
    return PBSProScheduler({}, pbs_bin_dir=str(bin_dir), **FAST)


def test_replayed_pbspro_statuses_and_exit(tmp_path: Path) -> None:
    scheduler = replay(tmp_path, "pbspro-qstat-json-mixed-2.json")
    server = ".aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"
    ids = {n: n + server for n in ("4345644", "4683812", "4846771", "4905429")}
    statuses = scheduler.get_jobs_status(list(ids.values()))
    assert statuses == {ids["4345644"]: constants.USER_SYSTEM_ON_HOLD,
                        ids["4683812"]: constants.QUEUED_ACTIVE,
                        ids["4846771"]: constants.FAILED,
                        ids["4905429"]: constants.USER_SYSTEM_ON_HOLD}
    info = scheduler.get_job_exit_info(ids["4846771"])
    assert tuple(info) == (constants.EXIT_ABORTED, None, None, None)
    assert "Not enough free nodes" in str(info.reason)


def test_replayed_walltime_kill(tmp_path: Path) -> None:
    scheduler = replay(tmp_path, "pbspro-qstat-json-F-2.json")
    job_id = "6617175.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"
    assert scheduler.get_job_status(job_id) == constants.FAILED
    info = scheduler.get_job_exit_info(job_id)
    assert info[0] == constants.EXIT_ABORTED and info[3] is not None
    assert "JOB_EXEC_KILL_WALLTIME" in str(info.reason)


def test_short_ids_match_long_answers(tmp_path: Path) -> None:
    scheduler = replay(tmp_path, "pbspro-qstat-json-F-1.json")
    assert scheduler.get_job_status("40") == constants.DONE
    assert scheduler.get_job_exit_info("40")[:2] == (constants.FINISHED_REGULARLY, 0)


def test_unknown_ids_do_not_hide_the_others(tmp_path: Path) -> None:
    """qstat exits 153 when some ids are unknown; its answer for the others counts."""
    (tmp_path / "unknown.txt").write_text("qstat: Unknown Job Id 999.pbs\n")
    scheduler = replay(tmp_path, "pbspro-qstat-json-F-1.json",
                       stderr=str(tmp_path / "unknown.txt"), code=153)
    statuses = scheduler.get_jobs_status(["40.pbs", "999.pbs"])
    assert statuses == {"40.pbs": constants.DONE, "999.pbs": constants.UNDETERMINED}


def _answers(tmp_path: Path, answers: list[dict[str, Any]], version: str) -> PBSProScheduler:
    """A scheduler whose qstat gives these JSON documents in turn, the last one
    for good, and whose qstat -x is refused where ``version`` keeps no history."""
    bin_dir, folder = tmp_path / "answers-bin", tmp_path / "answers"
    bin_dir.mkdir()
    folder.mkdir()
    for number, answer in enumerate(answers):
        (folder / str(number)).write_text(json.dumps(answer))
    history = "" if version == "history" else (
        'case " $* " in *" -x "*) echo "qstat: PBS is not configured to maintain job '
        'history" >&2; exit 0;; esac\n')
    state = shlex.quote(str(folder))
    _script(bin_dir / "qstat",
            "if [ \"$1\" = --version ]; then echo 'pbs_version = 23.06.06'; exit 0; fi\n"
            f"{history}n=$(cat {state}/count 2>/dev/null || echo 0)\n"
            f"[ -e {state}/$((n + 1)) ] && echo $((n + 1)) > {state}/count\n"
            f"cat {state}/$n")
    return PBSProScheduler({}, pbs_bin_dir=str(bin_dir), **{**FAST, "retries": 0})


@pytest.mark.parametrize("version", ["history", "no history"])
def test_a_job_missing_from_an_express_answer_is_asked_again(tmp_path: Path,
                                                             version: str) -> None:
    """``qstat -E`` leaves out, without a word, an id it cannot answer for. Where the
    server keeps history (``-x`` shows deleted jobs as F), a queued job missing from
    answers is asked about again at each poll, undetermined meanwhile, never taken as
    gone; where it keeps none, missing from two polls in a row, it left the queue."""
    recorded = json.loads((DATA / "pbspro-qstat-json-mixed-2.json").read_text())
    server = ".aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"
    queued, held = "4683812" + server, "4905429" + server
    both = {**recorded, "Jobs": {job_id: recorded["Jobs"][job_id] for job_id in (queued, held)}}
    dropped = {**recorded, "Jobs": {held: recorded["Jobs"][held]}}
    scheduler = _answers(tmp_path, [both, dropped, dropped, dropped, both], version)
    seen: list[str] = []
    while len(seen) < 5 and constants.FAILED not in seen:
        before = scheduler.calls.get("status", 0)
        while scheduler.calls.get("status", 0) == before:  # the answer of the next qstat
            statuses = scheduler.get_jobs_status([queued, held])
            time.sleep(0.02)
        assert statuses[held] == constants.USER_SYSTEM_ON_HOLD
        seen.append(statuses[queued])
    if version == "history":
        assert seen == [constants.QUEUED_ACTIVE, *[constants.UNDETERMINED] * 3,
                        constants.QUEUED_ACTIVE]
    else:
        assert seen == [constants.QUEUED_ACTIVE, constants.UNDETERMINED, constants.FAILED]
        assert "removed from the queue before it ran" in str(
            scheduler.get_job_exit_info(queued).reason)


def test_unreachable_server_keeps_the_last_states(tmp_path: Path) -> None:
    scheduler = replay(tmp_path, "pbspro-qstat-json-nojobs-1.json",
                       stderr="pbspro-qstat-json-nojobs-1.stderr.txt", code=255)
    # no answer yet about this id: undetermined (never a guess), and not lost
    assert scheduler.get_job_status("40.pbs") == constants.UNDETERMINED
    assert scheduler.calls["status"] == 2, "cannot connect: retried, not a lost job"


def test_replayed_torque_xml(tmp_path: Path) -> None:
    scheduler = replay(tmp_path, "torque-qstat-x-xml-mixed-1.xml",
                       version="torque-qstat-version-2.txt")
    assert (scheduler.implementation, scheduler.version) == ("torque", "6.1.2")
    assert scheduler.status_argv(["1"])[1:] == ["-x", "-t", "1"]  # -t: arrays' subjobs
    statuses = scheduler.get_jobs_status(["665199.superserver.stanford.edu",
                                          "673175[19].fruster.stanford.edu"])
    assert list(statuses.values()) == [constants.RUNNING, constants.DONE]


def test_replayed_torque_text_without_version(tmp_path: Path) -> None:
    """qstat that names no version (Slurm's wrappers): Torque, ``qstat -f`` text."""
    (tmp_path / "usage.txt").write_text("Unknown option: version\nUsage: qstat [-f]\n")
    scheduler = replay(tmp_path, "torque-qstat-f-C-4.txt", version=str(tmp_path / "usage.txt"))
    assert (scheduler.implementation, scheduler.status_format) == ("torque", "text")
    job_id = "522083.barnacle.ucsd.edu"
    assert scheduler.get_job_status(job_id) == constants.FAILED
    info = scheduler.get_job_exit_info(job_id)
    assert info[0] == constants.EXIT_ABORTED
    assert "JOB_EXEC_OVERLIMIT_WT" in str(info.reason)


@pytest.mark.parametrize(("name", "job_id"), [
    ("pbspro-qsub-1.txt", "53.testpbs.nas.nasa.gov"), ("pbspro-qsub-2.txt", "9[].djoko"),
    ("torque-qsub-1.txt", "141.torque01.bcgsc.ca"),
    ("torque-qsub-2.txt", "142[].torque01.bcgsc.ca"),
])
def test_replayed_qsub_output(tmp_path: Path, name: str, job_id: str) -> None:
    scheduler = replay(tmp_path, "pbspro-qstat-json-F-1.json")
    _script(Path(str(scheduler.pbs_bin_dir)) / "qsub", f"cat {shlex.quote(str(DATA / name))}")
    assert scheduler.job_submission([EngineJob("s", ["true"])]) == [job_id]


def test_replayed_qsub_refusal_reaches_the_job_stderr(tmp_path: Path) -> None:
    """A site's submission hook refuses the job: qsub's message ends up in its stderr."""
    scheduler = replay(tmp_path, "pbspro-qstat-json-F-1.json")
    refusal = shlex.quote(str(DATA / "pbspro-qsub-error-1.txt"))
    _script(Path(str(scheduler.pbs_bin_dir)) / "qsub", f"cat {refusal} >&2; exit 1")
    err = tmp_path / "err"
    assert scheduler.job_submission([EngineJob("s", ["true"], stderr_file=str(err))]) == [None]
    assert "Account_Name is required to be set" in err.read_text()


def test_batch_scripts_and_job_specs_are_private(fake_pbs: FakePBS) -> None:
    """Generated scripts carry the job's env and paths: only the user may read them."""
    fake_pbs.configure(start_delay=3)
    scheduler = fake_pbs.scheduler()
    [job_id] = scheduler.job_submission([EngineJob("secret", ["true"],
                                                   env={"TOKEN": "do-not-share"})])
    assert job_id is not None
    folders = [p for p in scheduler.state_dir.rglob("*") if p.is_dir()]
    files = [p for p in scheduler.state_dir.rglob("*") if p.is_file()]
    assert any(p.name == "job.sh" for p in files) and any(p.name == "job.spec" for p in files)
    for path in [scheduler.state_dir, *folders, *files]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    scheduler.kill_job(job_id)
    wait_for_status(scheduler, [job_id], timeout=30)
