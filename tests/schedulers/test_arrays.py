"""Job arrays (issue 15, item 3): ready jobs alike submitted as one array, one id an
element, each element's true exit info, kills of elements, re-attachment of elements
after an engine killed during the array's submission; ``array_submission = off``
keeps one submission a job. On the real Slurm, OpenPBS and Grid Engine, through its
commands (``sge``) and through DRMAA (``drmaa``: ``runBulkJobs``) (marked: see
tests/systems.py), with job counts the shared systems' slots allow; Torque's
``qsub -t`` against the FAKE Torque of tests/fake_pbspro (shaped by recorded Torque
output: no Torque server can run here, and Slurm's Torque wrappers have no arrays)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import openpbs
from jbcli import error_line, jb, kill_engines, wait_for
from jobbridge import constants
from jobbridge.controller import WorkflowController
from jobbridge.model import EngineJob
from jobbridge.schedulers import batch
from jobbridge.schedulers.batch import BatchScheduler
from jobbridge.schedulers.batchwatch import BURST, RESERVE
from jobbridge.schedulers.pbspro import PBSProScheduler
from jobbridge.schedulers.sge import SGEScheduler
from jobbridge.schedulers.slurm import SlurmScheduler
from jobbridge.testing import wait_for_status
from systems import PBSPRO_BIN, PBSPRO_HOST_COMMAND, TORQUE_BIN

Factory = Callable[..., BatchScheduler]
FAKE = Path(__file__).resolve().parent.parent / "fake_pbspro" / "fakepbs.py"


def fast(tmp_path: Path, options: dict[str, object]) -> dict[str, object]:
    """Options polling fast as tests want, without a command budget unless told."""
    return {"state_dir": tmp_path / "state", "min_interval": 0.2, "max_interval": 2.0,
            "commands_per_second": 0, **options}


def slurm(tmp_path: Path, **options: object) -> BatchScheduler:
    return SlurmScheduler(**fast(tmp_path, options))


def openpbs_scheduler(tmp_path: Path, **options: object) -> BatchScheduler:
    return PBSProScheduler({}, pbs_bin_dir=str(PBSPRO_BIN), host_command=PBSPRO_HOST_COMMAND,
                           **fast(tmp_path, options))  # type: ignore[arg-type]


def sge(tmp_path: Path, **options: object) -> BatchScheduler:
    return SGEScheduler(**fast(tmp_path, options))  # type: ignore[arg-type]


def fake_torque_bin(tmp_path: Path) -> Path:
    """The folder of the FAKE Torque 6.1.2's commands (tests/fake_pbspro), made once."""
    bin_dir, home = tmp_path / "fake-torque-bin", tmp_path / "fake-torque-server"
    if not bin_dir.exists():
        bin_dir.mkdir()
        home.mkdir()
        (home / "config.json").write_text(json.dumps({"flavour": "torque"}))
        for name in ("qsub", "qstat", "qdel", "qselect"):
            script = bin_dir / name
            script.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} {home} {name} \"$@\"\n")
            script.chmod(0o755)
    return bin_dir


def fake_torque(tmp_path: Path, **options: object) -> BatchScheduler:
    scheduler = PBSProScheduler({}, pbs_bin_dir=str(fake_torque_bin(tmp_path)),
                                **fast(tmp_path, options))  # type: ignore[arg-type]
    assert (scheduler.implementation, scheduler.version) == ("torque", "6.1.2")
    return scheduler


def drmaa(tmp_path: Path, **options: object) -> BatchScheduler:
    from jobbridge.schedulers.drmaa import DrmaaScheduler

    return DrmaaScheduler(**fast(tmp_path, options))  # type: ignore[arg-type]


SYSTEMS = [pytest.param(slurm, 50, "--array", id="slurm", marks=pytest.mark.slurm),
           pytest.param(openpbs_scheduler, 16, "-J", id="openpbs", marks=pytest.mark.pbspro),
           pytest.param(sge, 8, "-t", id="sge", marks=pytest.mark.sge),
           pytest.param(drmaa, 8, "-t", id="drmaa", marks=pytest.mark.sge),
           pytest.param(fake_torque, 10, "-t", id="torque-fake")]


@pytest.fixture
def scheduler_of(tmp_path: Path) -> Iterator[Callable[..., BatchScheduler]]:
    """Build schedulers; at the end, cancel whatever their jobs left and close them."""
    made: list[BatchScheduler] = []

    def make(factory: Factory, **options: object) -> BatchScheduler:
        scheduler = factory(tmp_path, **options)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        leftover = [job_id for job_id, tracked in scheduler._jobs.items()
                    if tracked.status not in constants.ENDED_JOB_STATUS]
        if leftover:
            scheduler.kill_jobs(leftover)
        scheduler.close()


def mixed(tmp_path: Path, count: int
          ) -> tuple[list[EngineJob], dict[int, tuple[str | int | None, ...]]]:
    """``count`` jobs alike: successes, failures (exit 1-7), ends by SIGUSR1, and
    long ones to kill; each prints its own argument and env to its own file. The
    expected (exit_status, exit_value, term_sig) by position (None: killed)."""
    jobs, expected = [], {}
    for number in range(count):
        kind = number % 5
        script = {0: "exit 0", 1: "exit 0", 2: f"exit {number % 7 + 1}",
                  3: "kill -USR1 $$", 4: "sleep 120"}[kind]
        jobs.append(EngineJob(
            f"e{number}", ["sh", "-c", f'echo "$1 $ELEMENT"; {script}', "sh", f"arg{number}"],
            env={"ELEMENT": f"env{number}"}, stdout_file=str(tmp_path / f"out{number}"),
            working_directory=str(tmp_path), submission_tag=f"e{number}-{tmp_path.name}"))
        expected[number] = {0: (constants.FINISHED_REGULARLY, 0, 0),
                            1: (constants.FINISHED_REGULARLY, 0, 0),
                            2: (constants.FINISHED_REGULARLY, number % 7 + 1, 0),
                            3: (constants.FINISHED_TERM_SIG, None, 10),
                            4: (constants.USER_KILLED,)}[kind]
    return jobs, expected


@pytest.mark.parametrize(("factory", "count", "option"), SYSTEMS)
def test_an_array_of_mixed_ends_and_kills_gives_each_element_its_true_exit_info(
        scheduler_of: Callable[..., BatchScheduler], tmp_path: Path, factory: Factory,
        count: int, option: str) -> None:
    scheduler = scheduler_of(factory)
    jobs, expected = mixed(tmp_path, count)
    ids = [str(job_id) for job_id in scheduler.job_submission(jobs)]
    assert None not in ids and len(set(ids)) == count
    assert scheduler.calls["submit"] == 1, scheduler.calls  # one array
    doomed = [ids[number] for number in range(count) if number % 5 == 4]
    scheduler.kill_jobs(doomed)
    assert scheduler.calls["cancel"] == 1, scheduler.calls  # one cancel for them all
    statuses = wait_for_status(scheduler, ids, timeout=300)
    for number, job_id in enumerate(ids):
        info = scheduler.get_job_exit_info(job_id)
        want = expected[number]
        assert tuple(info[:len(want)]) == want, (number, job_id, info)
        assert statuses[job_id] == (constants.DONE if want[:2] == (
            constants.FINISHED_REGULARLY, 0) else constants.FAILED), (number, statuses[job_id])
        if want[0] != constants.USER_KILLED:
            out = (tmp_path / f"out{number}").read_text()
            assert out == f"arg{number} env{number}\n", (number, out)
    # every element's files and the array's folder are gone once their ends are read
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [".wrapper", "by-id"]
    assert not list((tmp_path / "state" / "by-id").iterdir())


@pytest.mark.parametrize(("factory", "count", "option"), SYSTEMS)
def test_a_fresh_scheduler_finds_an_arrays_elements_by_their_tags(
        scheduler_of: Callable[..., BatchScheduler], tmp_path: Path, factory: Factory,
        count: int, option: str) -> None:
    """What a restarted engine does: the tags of an array's elements give their ids
    (their folders name the array and index), which then answer as any job."""
    jobs = [EngineJob(f"r{number}", ["sh", "-c", f"exit {number}"],
                      working_directory=str(tmp_path),
                      submission_tag=f"r{number}-{tmp_path.name}") for number in range(4)]
    ids = scheduler_of(factory).job_submission(jobs)
    fresh = scheduler_of(factory)
    found = fresh.find_submitted([str(job.submission_tag) for job in jobs] + ["never-sent"])
    assert found == {str(job.submission_tag): job_id for job, job_id in zip(jobs, ids,
                                                                            strict=True)}
    wait_for_status(fresh, [str(job_id) for job_id in ids], timeout=300)
    assert [fresh.get_job_exit_info(str(job_id))[:2] for job_id in ids] == [
        (constants.FINISHED_REGULARLY, number) for number in range(4)]
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [".wrapper", "by-id"]


@pytest.mark.parametrize("factory", [pytest.param(slurm, id="slurm", marks=pytest.mark.slurm),
                                     pytest.param(fake_torque, id="torque-fake")])
def test_a_fresh_scheduler_follows_an_arrays_elements_by_their_ids(
        scheduler_of: Callable[..., BatchScheduler], tmp_path: Path, factory: Factory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a restarted engine does with the elements' ids it had committed: each
    id's entry in by-id (a hard link to the element's array.json: no new inode a
    job) leads to the element's folder, whose exit file tells its true end, read
    once however many steps of its end look at it; nothing is left after."""
    jobs = [EngineJob(f"i{number}", ["sh", "-c", f"exit {number}"],
                      working_directory=str(tmp_path),
                      submission_tag=f"i{number}-{tmp_path.name}") for number in range(4)]
    first = factory(tmp_path)
    ids = [str(job_id) for job_id in first.job_submission(jobs)]
    first.close()  # the engine is gone; its jobs run on
    by_id = tmp_path / "state" / "by-id"
    assert [(entry.is_symlink(), entry.stat().st_nlink) for entry in by_id.iterdir()] == [
        (False, 2)] * len(ids)
    reads: Counter[str] = Counter()
    read_exit_file = batch.read_exit_file

    def counted(path: str | os.PathLike[str]) -> dict[str, object] | None:
        record = read_exit_file(path)
        if record is not None:
            reads[os.fspath(path)] += 1
        return record

    monkeypatch.setattr(batch, "read_exit_file", counted)
    fresh = scheduler_of(factory)
    wait_for_status(fresh, ids, timeout=300)
    assert [fresh.get_job_exit_info(job_id)[:2] for job_id in ids] == [
        (constants.FINISHED_REGULARLY, number) for number in range(4)]
    assert len(reads) == 4 and set(reads.values()) == {1}, reads
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [".wrapper", "by-id"]
    assert not list((tmp_path / "state" / "by-id").iterdir())


@pytest.mark.parametrize(("factory", "count", "option"), SYSTEMS)
def test_array_submission_off_submits_each_job_alone(
        scheduler_of: Callable[..., BatchScheduler], tmp_path: Path, factory: Factory,
        count: int, option: str) -> None:
    scheduler = scheduler_of(factory, array_submission="off")
    jobs = [EngineJob(f"o{number}", ["true"], working_directory=str(tmp_path))
            for number in range(3)]
    ids = [str(job_id) for job_id in scheduler.job_submission(jobs)]
    assert scheduler.calls["submit"] == 3
    statuses = wait_for_status(scheduler, ids, timeout=300)
    assert set(statuses.values()) == {constants.DONE}


@pytest.mark.slurm
def test_jobs_alike_go_in_arrays_chunked_under_max_array_size(
        scheduler_of: Callable[..., BatchScheduler], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """N jobs alike -> ceil(N / chunk) sbatch calls; jobs of another shape (here
    another memory request) go on their own."""
    scheduler = scheduler_of(slurm)
    assert scheduler.array_chunk() == int(subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout.split("MaxArraySize", 1)[1].split("=", 1)[1].split()[0])
    monkeypatch.setattr(scheduler, "array_chunk", lambda: 4)
    alike = [EngineJob(f"c{number}", ["true"], working_directory=str(tmp_path))
             for number in range(10)]
    other = EngineJob("big", ["true"], working_directory=str(tmp_path),
                      resources={"memory_mb": 50})
    ids = [str(job_id) for job_id in scheduler.job_submission([*alike[:5], other, *alike[5:]])]
    assert scheduler.calls["submit"] == math.ceil(10 / 4) + 1
    arrays = Counter(job_id.partition("_")[0] for job_id in ids)
    assert sorted(arrays.values()) == [1, 2, 4, 4]
    assert "_" not in ids[5]  # the lone job: a plain id
    statuses = wait_for_status(scheduler, ids, timeout=300)
    assert set(statuses.values()) == {constants.DONE}


@pytest.mark.slurm
def test_the_room_for_submissions_counts_the_jobs_a_command_carried(
        scheduler_of: Callable[..., BatchScheduler], tmp_path: Path) -> None:
    """The engine submits what the budget lets through now: as many jobs a token as
    the last submission's commands carried (an array's worth for jobs alike, one for
    jobs unalike, which would otherwise wait on the budget)."""
    scheduler = scheduler_of(slurm, commands_per_second=1.0)
    room = scheduler.submission_room()
    assert room is not None and 0 < room <= BURST - RESERVE
    ids = scheduler.job_submission([EngineJob(f"m{number}", ["true"],
                                              working_directory=str(tmp_path))
                                    for number in range(6)])
    room = scheduler.submission_room()
    assert room is not None and room % 6 == 0 and room >= 6 * (BURST - RESERVE - 3), room
    unalike = [EngineJob(f"u{number}", ["true"], working_directory=str(tmp_path),
                         resources={"memory_mb": 10 + number}) for number in range(2)]
    ids += scheduler.job_submission(unalike)
    assert scheduler.calls["submit"] == 3
    assert (scheduler.submission_room() or 0) <= BURST - RESERVE
    wait_for_status(scheduler, [str(job_id) for job_id in ids], timeout=300)


# --- an engine killed during an array's submission ------------------------------------------
SUBMIT = {"slurm": "sbatch", "openpbs": "qsub", "sge": "qsub", "torque-fake": "qsub"}


def _shim(folder: Path, real: str, name: str, submit_first: bool) -> Path:
    """``name`` logging each call; its first call waits for ``go`` (the engine is
    killed meanwhile) after submitting (the answer is lost) or instead of it (the
    command died with the engine)."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    first = (f'"{real}" "$@" > /dev/null; touch "{folder}/sent"; ' if submit_first
             else f'touch "{folder}/sent"; ')
    path.write_text(f"""#!/bin/sh
echo "call $PPID $*" >> "{folder}/calls"
if [ ! -e "{folder}/first" ]; then
  touch "{folder}/first"; {first}
  while [ ! -e "{folder}/go" ]; do sleep 0.1; done
  exit 1
fi
exec "{real}" "$@"
""")
    path.chmod(0o700)
    return folder


def _config(system: str, tmp_path: Path) -> str:
    if system == "openpbs":
        return openpbs.resource("target")
    if system == "torque-fake":
        return (f"[target]\nscheduler_type = pbspro\npbs_bin_dir = {fake_torque_bin(tmp_path)}"
                "\nscheduler_interval = 2\n")
    return f"[target]\nscheduler_type = {system}\nscheduler_interval = 2\n"


#: Loaded by the engines of the drmaa case (PYTHONPATH): DRMAA's submissions are library
#: calls, not commands a PATH shim could hold back; this holds the first one back.
DRMAA_SHIM = """
import os, time
folder = os.environ.get("JB_DRMAA_SHIM")
if folder:
    import drmaa

    def held(real, name):
        def call(*args):
            with open(os.path.join(folder, "calls"), "a") as log:
                log.write(f"call {os.getpid()} {name}\\n")
            if os.path.exists(os.path.join(folder, "first")):
                return real(*args)
            open(os.path.join(folder, "first"), "w").close()
            if os.environ["JB_DRMAA_SEND"] == "1":
                real(*args)
            open(os.path.join(folder, "sent"), "w").close()
            while not os.path.exists(os.path.join(folder, "go")):
                time.sleep(0.1)
            raise SystemExit(1)
        return staticmethod(call)

    drmaa.Session.runJob = held(drmaa.Session.runJob, "runJob")
    drmaa.Session.runBulkJobs = held(drmaa.Session.runBulkJobs, "runBulkJobs")
"""


@pytest.mark.parametrize("submit_first", [True, False], ids=["answer-lost", "never-sent"])
@pytest.mark.parametrize(("system", "count"), [
    pytest.param("slurm", 12, marks=pytest.mark.slurm),
    pytest.param("openpbs", 8, marks=pytest.mark.pbspro),
    pytest.param("sge", 4, marks=pytest.mark.sge),
    pytest.param("drmaa", 4, marks=pytest.mark.sge),
    pytest.param("torque-fake", 6)])
def test_an_engine_killed_during_an_array_submission_runs_every_element_once(
        tmp_path: Path, jobbridge_home: Path, monkeypatch: pytest.MonkeyPatch, system: str,
        count: int, submit_first: bool) -> None:
    """The engine is SIGKILLed while its array submission waits (sent, or not), then
    restarted: the new engine finds the array's elements by their tags (or submits
    them again when the array never reached the system); each runs exactly once."""
    log = tmp_path / "ran"
    workflow = {"jobs": [{"id": f"a{number}", "command": [
        "sh", "-c", f'echo a{number} >> "{log}"; exit {number % 3}']} for number in range(count)]}
    (tmp_path / "wf.json").write_text(json.dumps(workflow))
    config = _config(system, tmp_path)
    (tmp_path / "jobbridge.cfg").write_text(config)
    pbs_bin = {"openpbs": PBSPRO_BIN, "torque-fake": fake_torque_bin(tmp_path)}.get(system)
    shims = tmp_path / "bin"
    if system == "drmaa":
        shims.mkdir()
        (shims / "sitecustomize.py").write_text(DRMAA_SHIM)
        monkeypatch.setenv("PYTHONPATH", str(shims))
        monkeypatch.setenv("JB_DRMAA_SHIM", str(shims))
        monkeypatch.setenv("JB_DRMAA_SEND", "1" if submit_first else "0")
    else:
        real = (str(pbs_bin / "qsub") if pbs_bin
                else subprocess.run(["sh", "-c", f"command -v {SUBMIT[system]}"],
                                    capture_output=True, text=True, check=True).stdout.strip())
        _shim(shims, real, SUBMIT[system], submit_first)
    if pbs_bin:  # the resource names PBS's folder: the shim takes its place
        for name in ("qstat", "qdel", "qselect"):
            (shims / name).symlink_to(pbs_bin / name)
        (tmp_path / "jobbridge.cfg").write_text(
            config.replace(f"pbs_bin_dir = {pbs_bin}", f"pbs_bin_dir = {shims}"))
    # here too: an engine the controller starts (it may, once the first one is killed)
    # must see the shims
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("JOBBRIDGE_CONFIG", str(tmp_path / "jobbridge.cfg"))
    env = {**os.environ, "JOBBRIDGE_HOME": str(jobbridge_home)}
    submitted = subprocess.run([sys.executable, "-m", "jobbridge", "submit",
                                str(tmp_path / "wf.json"), "--resource", "target"],
                               env=env, capture_output=True, text=True, check=True)
    workflow_id = submitted.stdout.strip()
    controller = WorkflowController(jobbridge_home)
    try:
        wait_for((shims / "sent").exists, timeout=120, what="the array's submission")
        assert kill_engines(jobbridge_home) == 1
    finally:
        (shims / "go").touch()
    subprocess.Popen([sys.executable, "-m", "jobbridge", "engine"], env=env,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    status = controller.wait(workflow_id, timeout=300)
    ran = Counter(log.read_text().split())
    assert ran == Counter(f"a{number}" for number in range(count)), ran
    for job in status["jobs"]:
        number = int(job["id"][1:])
        assert (job["exit_status"], job["exit_value"]) == (constants.FINISHED_REGULARLY,
                                                           number % 3), job
    calls = (shims / "calls").read_text()
    # the array found again: no other submission; never sent: submitted again, as one
    assert calls.count("\n") == (1 if submit_first else 2), calls


@pytest.mark.torque
def test_slurms_torque_wrappers_submit_each_job_alone(tmp_path: Path) -> None:
    """Slurm's Torque wrappers turn ``qsub -t`` into ``sbatch --array`` but give
    Slurm's ids, not Torque's ``ID[IDX]``: jobbridge submits each job alone there."""
    scheduler = PBSProScheduler({}, pbs_bin_dir=str(TORQUE_BIN), state_dir=tmp_path / "state",
                                min_interval=0.2, max_interval=2.0, commands_per_second=0)
    try:
        assert not scheduler.arrays
        ids = [str(job_id) for job_id in scheduler.job_submission(
            [EngineJob(f"w{number}", ["true"], working_directory=str(tmp_path))
             for number in range(2)])]
        assert scheduler.calls["submit"] == 2
        assert set(wait_for_status(scheduler, ids, timeout=300).values()) == {constants.DONE}
    finally:
        scheduler.close()


def test_array_submission_takes_auto_or_off(tmp_path: Path) -> None:
    config = tmp_path / "jobbridge.cfg"
    config.write_text("[s]\nscheduler_type = slurm\narray_submission = maybe\n")
    result = jb("check", "--resource", "s", env={"JOBBRIDGE_CONFIG": str(config),
                                                 "JOBBRIDGE_HOME": str(tmp_path / "home")})
    assert error_line(result) == ("jobbridge: error: resource 's': option array_submission = "
                                  "'maybe' is not auto or off")


@pytest.mark.slurm
def test_a_kill_the_system_dropped_is_asked_again(
        scheduler_of: Callable[..., BatchScheduler], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenPBS drops a qdel of a subjob it is just starting and says nothing: a kill
    that the next poll shows unheeded is asked again (here scancel's first call does
    nothing, through a shim)."""
    shims = tmp_path / "bin"
    shims.mkdir()
    real = subprocess.run(["sh", "-c", "command -v scancel"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (shims / "scancel").write_text(f"""#!/bin/sh
echo "$*" >> "{shims}/calls"
[ -e "{shims}/dropped" ] || {{ touch "{shims}/dropped"; exit 0; }}
exec "{real}" "$@"
""")
    (shims / "scancel").chmod(0o700)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    scheduler = scheduler_of(slurm)
    ids = [str(job_id) for job_id in scheduler.job_submission(
        [EngineJob(f"k{number}", ["sleep", "120"], working_directory=str(tmp_path))
         for number in range(2)])]
    wait_for_status(scheduler, ids[:1], {constants.RUNNING}, timeout=300)
    scheduler.kill_jobs(ids[:1])
    statuses = wait_for_status(scheduler, ids[:1], timeout=60)
    assert statuses[ids[0]] == constants.FAILED
    assert scheduler.get_job_exit_info(ids[0])[0] == constants.USER_KILLED
    assert (shims / "calls").read_text().splitlines() == [ids[0], ids[0]]
    assert scheduler.get_jobs_status(ids[1:])[ids[1]] not in constants.ENDED_JOB_STATUS
