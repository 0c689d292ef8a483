"""drmaa: the pure parts (state table, templates, the exec stub, qacct records) anywhere,
then the conformance kit and DRMAA's own cases (hostile strings, parallel jobs, holds,
a job re-attached by id from a new instance, the qmaster restarted) on the real Grid
Engine that scripts/clusters/sge-up.sh starts (``source scripts/clusters/env.sh``
first), marked ``sge`` (see tests/systems.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jbcli import (
    finish,
    jb,
    jb_start,
    kill_engines,
    memory_retry,
    status_json,
    wait_for,
    write_json,
)
from jobbridge import constants
from jobbridge.configuration import Configuration
from jobbridge.model import EngineJob
from jobbridge.scheduler import Scheduler, build_scheduler
from jobbridge.schedulers import drmaa as drmaa_scheduler
from jobbridge.schedulers.drmaa import (
    EXEC_STUB,
    STATES,
    DrmaaScheduler,
    carried_natively,
    exit_info_from_accounting,
    job_name,
    stub_spec,
)
from jobbridge.testing import SchedulerConformance, run_to_end, wait_for_status
from systems import unavailable

ROOT = Path(__file__).resolve().parents[2]
#: ``qacct -j`` of jobs of the test cell: exit 3, killed by SIGKILL, a missing program.
QACCT = """==============================================================
qname        all.q
jobnumber    13
qsub_time    Wed Nov 25 08:56:47 2026
start_time   Wed Nov 25 08:56:48 2026
end_time     Wed Nov 25 08:56:48 2026
slots        2
failed       {failed}
exit_status  {code}
ru_wallclock 3s
cpu          1.010s
maxvmem      1.711MB
"""


def make_scheduler(**options: str) -> DrmaaScheduler:
    config = Configuration.from_dict("sge", {"scheduler_type": "drmaa",
                                             "scheduler_interval": "0.3", **options})
    scheduler = build_scheduler("drmaa", config)
    assert isinstance(scheduler, DrmaaScheduler)
    return scheduler


@pytest.fixture
def scheduler() -> Iterator[DrmaaScheduler]:
    scheduler = make_scheduler()
    yield scheduler
    scheduler.close()


def job(tmp_path: Path, name: str, command: list[str], **options: object) -> EngineJob:
    options.setdefault("working_directory", str(tmp_path))
    options.setdefault("stdout_file", str(tmp_path / f"{name}.out"))
    options.setdefault("stderr_file", str(tmp_path / f"{name}.err"))
    return EngineJob(job_id=name, command=command, **options)  # type: ignore[arg-type]


# --- no Grid Engine needed -----------------------------------------------------------------
@pytest.mark.sge
def test_every_drmaa_state_is_mapped() -> None:
    drmaa = drmaa_scheduler.load_drmaa()
    states = {value for name, value in vars(drmaa.JobState).items() if name.isupper()}
    assert set(STATES) == states
    assert set(STATES.values()) <= set(constants.JOB_STATUS)


def test_job_names_are_safe() -> None:
    assert job_name("step 1/2: ça") == "step_1_2___a"
    assert job_name("3d") == "j3d"
    assert job_name("") == "job"
    assert len(job_name("x" * 500)) == 100


def test_strings_grid_engine_would_change_go_through_the_stub() -> None:
    plain = EngineJob(job_id="a", command=["echo", "it's $(x) `y` * \t €"],
                      stdout_file="/tmp/a b:c.out")
    assert carried_natively(plain.command, {"K": "a b\nc"}, "/tmp", plain)
    assert not carried_natively(["printf", "a\nb"], {}, "/tmp", plain)
    assert not carried_natively(plain.command, {"OPTS": "--x=1"}, "/tmp", plain)
    assert not carried_natively(plain.command, {"BIG": "x" * 9000}, "/tmp", plain)
    assert not carried_natively(plain.command, {}, "/tmp/$JOB_ID", plain)
    dollar = EngineJob(job_id="b", command=["true"], stderr_file="/tmp/$HOME.err")
    assert not carried_natively(dollar.command, {}, "/tmp", dollar)


@pytest.mark.parametrize("join", [False, True])
def test_exec_stub_runs_the_job_byte_exact(tmp_path: Path, join: bool) -> None:
    """The stub as Grid Engine would start it, here with a plain subprocess."""
    argv = ["sh", "-c", 'printf "%s\\0" "$@" "$OPTS"; echo err >&2; cat; kill -PIPE $$',
            "sh", "a\nb", "$HOME", "€", ""]
    (tmp_path / "in").write_bytes(b"input\n")
    workdir = tmp_path / "$JOB_ID"
    workdir.mkdir()
    spec = EngineJob(job_id="s", command=argv, stdin=str(tmp_path / "in"),
                     stdout_file=str(workdir / "o$HOME"), stderr_file=str(tmp_path / "e"),
                     join_stderrout=join)
    env = {"OPTS": "--a=b\n"}
    (workdir / "o$HOME").write_text("old content, longer than the new one" * 10)
    stub = stub_spec(argv, env, str(workdir), spec)
    assert stub.isascii() and "\n" not in stub
    done = subprocess.run([sys.executable, "-I", "-S", "-c", EXEC_STUB, stub], check=False,
                          cwd="/", env={"PATH": os.environ["PATH"]})
    assert done.returncode == -13, "SIGPIPE must have its default action in the job"
    out = (workdir / "o$HOME").read_bytes()
    fields = b"a\nb\0$HOME\0\xe2\x82\xac\0\0--a=b\n\0"
    assert out == fields + (b"err\ninput\n" if join else b"input\n")
    assert (tmp_path / "e").exists() != join


@pytest.mark.parametrize(("failed", "code", "expected"), [
    ("0", "3", (constants.FINISHED_REGULARLY, 3, 0)),
    ("100 : assumedly after job", "137                  (Killed)",
     (constants.FINISHED_TERM_SIG, None, 9)),
    ("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "137",
     (constants.FINISHED_TERM_SIG, None, 9)),
])
def test_exit_info_from_accounting(failed: str, code: str,
                                   expected: tuple[str, int | None, int | None]) -> None:
    record = dict(line.split(None, 1) for line in
                  QACCT.format(failed=failed, code=code).splitlines()[1:])
    info = exit_info_from_accounting(record, killed=False)
    assert tuple(info)[:3] == expected
    assert info.resource_usage == ("cput=00:00:01 vmem=1752kb walltime=00:00:03 cpupercent=34 "
                                   "ncpus=2 cpu_s=1.010 wall_s=3.000")
    assert (info.reason is not None) == failed.startswith("37")
    assert exit_info_from_accounting(record, killed=True)[0] == constants.USER_KILLED


@pytest.mark.parametrize(("category", "reason"), [
    ("-u root -l h_vmem=512K",  # per slot: 2 slots, 1 MB
     "OUT_OF_MEMORY: killed at its memory limit (h_vmem=512K, maxvmem 2M)"),
    ("-l h_rt=3,h_vmem=1G -pe smp 2", "TIMEOUT: killed at its time limit (h_rt=3)"),
    ("-l h_rt=0:1:0,h_vmem=1G", "Grid Engine: failed 37"),  # neither reached: as GE says
])
def test_a_limit_grid_engine_killed_a_job_for(category: str, reason: str) -> None:
    """failed 37 names no limit: the job's own (its category, for a job an earlier
    engine submitted) against its maxvmem and wall clock tell which."""
    record = dict(line.split(None, 1) for line in QACCT.format(
        failed="37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", code="137").splitlines()[1:])
    record["category"] = category
    info = exit_info_from_accounting(record, killed=False)
    assert info.reason is not None and info.reason.startswith(reason), info
    assert info.term_sig == 9
    limited = not reason.startswith("Grid Engine")
    assert info.exit_status == (constants.EXIT_ABORTED if limited else constants.FINISHED_TERM_SIG)


def test_exit_info_of_a_job_that_never_ran() -> None:
    record = {"start_time": "-/-", "failed": "27  : searching requested shell",
              "exit_status": "0"}
    info = exit_info_from_accounting(record, killed=False)
    assert info.exit_status == constants.EXIT_ABORTED
    assert info.reason == "Grid Engine: failed 27  : searching requested shell"


@pytest.mark.sge
def test_native_specification(tmp_path: Path) -> None:
    scheduler = make_scheduler(native_specification="-P proj -v 'A=1 2'",
                               parallel_environment="mpi")
    try:
        spec = EngineJob(job_id="p", command=["true"], queue="long.q",
                         parallel_job_info={"nodes_number": 2, "cpu_per_node": 2},
                         resources={"memory_mb": 1000, "walltime_s": 90},
                         native_specification=["-l", "arch=lx amd64", "-A", 'say "x"'])
        assert scheduler.native_options(spec) == (
            "-P proj -v 'A=1 2' -q long.q -pe mpi 4 -l h_rt=90,h_vmem=250M "
            "-l \"arch=lx amd64\" -A 'say \"x\"'")
        spec.native_specification = "-l 'a=b c'"
        spec.parallel_job_info = None
        assert scheduler.native_options(spec).endswith("-l h_rt=90,h_vmem=1000M -l 'a=b c'")
    finally:
        scheduler.close()


@pytest.mark.sge
def test_availability_says_why(tmp_path: Path) -> None:
    """A missing or unloadable library disables the scheduler with the reason; the
    configuration's drmaa_library_path is enough without DRMAA_LIBRARY_PATH."""
    code = ("from jobbridge.schedulers.drmaa import DrmaaScheduler as D;"
            "print(*D.availability(), sep='|')")

    def availability(**env: str) -> str:
        base = {k: v for k, v in os.environ.items() if k != "DRMAA_LIBRARY_PATH"}
        return subprocess.run([sys.executable, "-c", code], env={**base, **env},
                              capture_output=True, text=True, check=True).stdout.strip()

    assert availability(DRMAA_LIBRARY_PATH="/no/such/libdrmaa.so") .startswith(
        "False|cannot load the DRMAA library: /no/such/libdrmaa.so")
    config = tmp_path / "jobbridge.cfg"
    config.write_text("[other]\nscheduler_type = local_basic\n"
                      "[sge]\nscheduler_type = drmaa\ndrmaa_library_path = /no/such/lib.so\n")
    assert "/no/such/lib.so" in availability(JOBBRIDGE_CONFIG=str(config))
    library = os.environ.get("DRMAA_LIBRARY_PATH")
    if library and DrmaaScheduler.availability()[0]:
        config.write_text(f"[sge]\ndrmaa_library_path = {library}\n")
        assert availability(JOBBRIDGE_CONFIG=str(config)) == "True|"


# --- on the real Grid Engine -----------------------------------------------------------------
@pytest.mark.sge
class TestDrmaaConformance(SchedulerConformance):
    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return make_scheduler()


@pytest.mark.sge
def test_strings_grid_engine_would_change(scheduler: DrmaaScheduler, tmp_path: Path) -> None:
    """Newlines in argv, '=' and 10 kB env values, '$HOME'/'$JOB_ID' in paths."""
    workdir = tmp_path / "w$JOB_ID"
    workdir.mkdir()
    env = {"OPTS": "--a=b =c", "BIG": "x" * 12000, "NL": "1\n2"}
    hostile = job(tmp_path, "h", ["sh", "-c", 'printf "%s\\0" "$@" "$OPTS" "$BIG" "$NL"; pwd',
                                  "sh", "a\nb", "$HOME"],
                  env=env, working_directory=str(workdir),
                  stdout_file=str(tmp_path / "out$HOME"), stderr_file=str(tmp_path / "$USER"))
    [(status, info)] = run_to_end(scheduler, [hostile])
    assert (status, info[0], info[1]) == (constants.DONE, constants.FINISHED_REGULARLY, 0)
    *fields, cwd = (tmp_path / "out$HOME").read_bytes().split(b"\0")
    assert fields == [b"a\nb", b"$HOME", *(value.encode() for value in env.values())]
    assert cwd == f"{workdir}\n".encode()


@pytest.mark.sge
def test_output_files_start_empty(scheduler: DrmaaScheduler, tmp_path: Path) -> None:
    """Grid Engine appends to an existing output file; jobbridge's files start empty."""
    spec = job(tmp_path, "again", ["echo", "new"], join_stderrout=True)
    Path(str(spec.stdout_file)).write_text("old output of an earlier run\n")
    run_to_end(scheduler, [spec])
    assert Path(str(spec.stdout_file)).read_text() == "new\n"


@pytest.mark.sge
def test_parallel_job_and_limits(scheduler: DrmaaScheduler, tmp_path: Path) -> None:
    spec = job(tmp_path, "pe", ["sh", "-c", 'echo "$NSLOTS $PE $(ulimit -v)"'],
               parallel_job_info={"config_name": "native", "nodes_number": 1,
                                  "cpu_per_node": 2},
               resources={"memory_mb": 512, "walltime_s": 60}, queue="all.q")
    [(status, info)] = run_to_end(scheduler, [spec])
    assert status == constants.DONE
    assert Path(str(spec.stdout_file)).read_text() == f"2 smp {512 * 1024}\n"
    assert "ncpus=2" in str(info[3]).split()


@pytest.mark.sge
def test_native_specification_reaches_grid_engine(tmp_path: Path) -> None:
    scheduler = make_scheduler(native_specification="-v FROM_CONFIG=1")
    try:
        spec = job(tmp_path, "native", ["sh", "-c", 'echo "$FROM_CONFIG|$JB_X|$JB_Y"'],
                   native_specification=["-v", "JB_X=a b", "-v", "JB_Y=it's"])
        [(status, _)] = run_to_end(scheduler, [spec])
        assert status == constants.DONE
        assert Path(str(spec.stdout_file)).read_text() == "1|a b|it's\n"
    finally:
        scheduler.close()


@pytest.mark.sge
def test_hold_release_and_kill_while_queued(scheduler: DrmaaScheduler, tmp_path: Path) -> None:
    """Grid Engine's holds: qsub -h (user), a start time to come (system), both."""
    held = job(tmp_path, "held", ["true"], native_specification="-h")
    later = job(tmp_path, "later", ["true"], native_specification="-a 210001010000")
    held_id, later_id = scheduler.job_submission([held, later])
    assert held_id and later_id
    try:
        _hold_release_kill(scheduler, held_id, later_id)
    finally:  # nothing left held in the cell when the test fails
        scheduler.kill_job(held_id)
        scheduler.kill_job(later_id)


def _hold_release_kill(scheduler: DrmaaScheduler, held_id: str, later_id: str) -> None:
    assert scheduler.get_job_status(held_id) == constants.USER_ON_HOLD
    assert scheduler.get_job_status(later_id) == constants.SYSTEM_ON_HOLD
    scheduler.hold_job(later_id)
    wait_for_status(scheduler, [later_id], {constants.USER_SYSTEM_ON_HOLD}, timeout=30)
    scheduler.release_job(later_id)
    wait_for_status(scheduler, [later_id], {constants.SYSTEM_ON_HOLD}, timeout=30)
    scheduler.kill_job(later_id)
    scheduler.release_job(held_id)
    statuses = wait_for_status(scheduler, [held_id, later_id], timeout=60)
    assert statuses == {held_id: constants.DONE, later_id: constants.FAILED}
    assert scheduler.get_job_exit_info(held_id)[:2] == (constants.FINISHED_REGULARLY, 0)
    assert scheduler.get_job_exit_info(later_id)[0] == constants.USER_KILLED


@pytest.mark.sge
def test_refused_submission_says_why(scheduler: DrmaaScheduler, tmp_path: Path) -> None:
    spec = job(tmp_path, "refused", ["true"], queue="no-such-queue-jobbridge")
    assert scheduler.job_submission(spec) == [None]
    assert "unknown queue" in Path(str(spec.stderr_file)).read_text()


@pytest.mark.sge
def test_reattached_by_id_from_a_new_instance(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine restarted: a new instance (a new session) follows jobs submitted by the
    last one, whether they ended before it came (qacct, one call a poll for all) or
    end under its eyes."""
    first = make_scheduler()
    ids = first.job_submission([
        job(tmp_path, "five", ["sh", "-c", "exit 5"]),
        job(tmp_path, "sig", ["sh", "-c", "kill -KILL $$"]),
        job(tmp_path, "slow", ["sh", "-c", "sleep 4; exit 7"]),
        job(tmp_path, "victim", ["sleep", "600"]),
    ])
    five, sig, slow, victim = (str(job_id) for job_id in ids)
    try:
        wait_for_status(first, [five, sig], timeout=60)
        wait_for_status(first, [slow, victim], {constants.RUNNING}, timeout=60)
        first.close()  # the session ends with the jobs' exit info unread
        assert drmaa_scheduler._SESSION.session is None

        commands: list[list[str]] = []
        run_command = drmaa_scheduler._grid_engine_command

        def counted(argv: list[str], timeout: float = 30.0) -> str:
            commands.append(argv)
            return run_command(argv, timeout)

        monkeypatch.setattr(drmaa_scheduler, "_grid_engine_command", counted)
        second = make_scheduler()
        try:
            assert second.get_jobs_status([five, sig, slow])[slow] == constants.RUNNING
            assert commands == [["qacct", "-j", "*"]]  # one for both ended jobs
            second.kill_job(victim)
            statuses = wait_for_status(second, [five, sig, slow, victim], timeout=90)
            assert statuses == dict.fromkeys([five, sig, slow, victim], constants.FAILED)
            assert second.get_job_exit_info(five)[:2] == (constants.FINISHED_REGULARLY, 5)
            assert tuple(second.get_job_exit_info(sig))[::2] == (constants.FINISHED_TERM_SIG, 9)
            info = second.get_job_exit_info(slow)
            assert info[:2] == (constants.FINISHED_REGULARLY, 7)
            assert re.search(r"\bwalltime=00:00:0[4-6]\b", str(info[3])), info
            assert second.get_job_exit_info(victim)[0] == constants.USER_KILLED
        finally:
            second.kill_job(victim)
            second.close()
    finally:  # however it failed, the 600 s victim must not hold a slot of the shared queue
        subprocess.run(["qdel", victim, slow], capture_output=True, check=False, timeout=60)


@pytest.mark.sge
@pytest.mark.slow
def test_survives_grid_engine_restarting(scheduler: DrmaaScheduler, tmp_path: Path) -> None:
    """qmaster and execd stopped and started again while a job runs: no error while they
    are down, the session reopened, the job's true end, new submissions work again.

    Both daemons: after a qmaster restart alone, an execd that could not report a job's
    end while the qmaster was down shows it running for minutes (it re-registers late).
    """
    if os.geteuid() != 0:
        unavailable("restarting Grid Engine needs root")
    [running] = scheduler.job_submission(job(tmp_path, "across", ["sh", "-c", "sleep 5; exit 3"]))
    assert running
    wait_for_status(scheduler, [running], {constants.RUNNING}, timeout=60)
    state = Path(os.environ.get("SGE_CI_STATE", "/var/tmp/jobbridge-sge"))
    pids = [path.read_text().strip() for path in
            [state / "qmaster" / "qmaster.pid", *state.glob("execd/*/execd.pid")]]
    subprocess.run(["qconf", "-ke", "all"], capture_output=True, check=True, timeout=30)
    subprocess.run(["qconf", "-km"], capture_output=True, check=True, timeout=30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert scheduler.get_job_status(running) == constants.RUNNING  # kept while down
    subprocess.run(["bash", str(ROOT / "scripts" / "clusters" / "sge-up.sh")], check=True,
                   env={**os.environ, "SGE_CI_SMOKE": "0"}, timeout=120)
    [after] = scheduler.job_submission(job(tmp_path, "after", ["sh", "-c", "exit 4"]))
    assert after
    wait_for_status(scheduler, [running, after], timeout=60)
    assert scheduler.get_job_exit_info(running)[:2] == (constants.FINISHED_REGULARLY, 3)
    assert scheduler.get_job_exit_info(after)[:2] == (constants.FINISHED_REGULARLY, 4)


@pytest.mark.sge
@pytest.mark.slow
def test_workflow_through_the_engine_killed_and_resumed(tmp_path: Path,
                                                        jobbridge_home: Path) -> None:
    """Dependencies, a failure and its never-run dependent through ``jobbridge submit``;
    the engine SIGKILLed while a job runs in Grid Engine and started again: that job is
    re-attached by its id, not resubmitted, and every job runs once with its true end."""
    log = tmp_path / "ran"

    def step(job_id: str, then: str = "") -> dict[str, object]:
        return {"id": job_id, "command": ["sh", "-c", f'echo {job_id} >> "$1"; {then}',
                                          "sh", str(log)]}

    write_json(tmp_path / "wf.json", {"name": "ge", "jobs": [
        step("first"), step("fails", "exit 3"), step("never"),
        step("long", "sleep 8; exit 0"), step("last", "exit 4")],
        "dependencies": [["first", "fails"], ["fails", "never"], ["first", "long"],
                         ["long", "last"]]})
    (tmp_path / "jobbridge.cfg").write_text(
        "[sge]\nscheduler_type = drmaa\nscheduler_interval = 0.5\n")
    env = {"JOBBRIDGE_CONFIG": str(tmp_path / "jobbridge.cfg")}
    submitted = jb("submit", str(tmp_path / "wf.json"), "--resource", "sge", env=env)
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()

    def job_row(job_id: str) -> dict[str, object]:
        jobs = status_json(workflow_id, env=env)["jobs"]
        return next(row for row in jobs if row["id"] == job_id)

    wait_for(lambda: job_row("long")["status"] == constants.RUNNING, 120, "long to run")
    long_id = job_row("long")["scheduler_job_id"]
    assert kill_engines(jobbridge_home) == 1
    restarted = jb_start("engine", env=env)
    try:
        waited = jb("wait", workflow_id, env=env, timeout=180)
    finally:
        restarted.kill()
        finish(restarted)
    assert waited.returncode == 1, waited.stderr  # the workflow has failures
    rows = {row["id"]: row for row in status_json(workflow_id, env=env)["jobs"]}
    assert rows["long"]["scheduler_job_id"] == long_id  # re-attached, not resubmitted
    assert sorted(log.read_text().split()) == ["fails", "first", "last", "long"]
    ends = {job_id: (row["status"], row["exit_status"], row["exit_value"])
            for job_id, row in rows.items()}
    assert ends == {
        "first": (constants.DONE, constants.FINISHED_REGULARLY, 0),
        "fails": (constants.FAILED, constants.FINISHED_REGULARLY, 3),
        "never": (constants.FAILED, constants.EXIT_NOTRUN, None),
        "long": (constants.DONE, constants.FINISHED_REGULARLY, 0),
        "last": (constants.FAILED, constants.FINISHED_REGULARLY, 4)}


@pytest.mark.sge
def test_submissions_found_by_tag(scheduler: DrmaaScheduler, tmp_path: Path) -> None:
    """A restarted engine finds the jobs a killed one submitted but never recorded:
    queued or running (qstat), or already ended (qacct)."""
    tag = f"jb-test-{os.getpid()}-{time.time_ns():x}"
    ended, running = scheduler.job_submission([
        job(tmp_path, "ended", ["true"], submission_tag=f"{tag}-1"),
        job(tmp_path, "running", ["sleep", "60"], submission_tag=f"{tag}-2")])
    assert ended and running
    try:
        wait_for_status(scheduler, [ended], timeout=60)
        found = scheduler.find_submitted([f"{tag}-1", f"{tag}-2", f"{tag}-never"])
        assert found == {f"{tag}-1": ended, f"{tag}-2": running}
    finally:
        scheduler.kill_job(running)


@pytest.mark.sge
def test_a_job_killed_over_h_vmem_is_retried_with_twice_the_memory(tmp_path: Path) -> None:
    """Three processes of 50 MB under h_vmem=150M: GE kills the job (each process is
    under the limit, their sum is not), which ends OUT_OF_MEMORY; attempt 2 asks for
    h_vmem=300M and succeeds. The report compares peak virtual memory with the ask."""
    report = memory_retry(tmp_path, "sge", "[sge]\nscheduler_type = drmaa\n"
                          "scheduler_interval = 0.5\n", processes=3, size_mb=50,
                          memory_mb=150, hold=15)
    first, second = report["jobs"][0]["attempts"]
    assert first["exit_reason"].startswith("OUT_OF_MEMORY: killed at its memory limit "
                                           "(h_vmem=150M"), first
    assert (first["exit_status"], first["term_sig"]) == (constants.EXIT_ABORTED, 9)
    assert (first["requested"]["memory_mb"], second["requested"]["memory_mb"]) == (150, 300)
    assert (second["exit_status"], second["exit_value"]) == (constants.FINISHED_REGULARLY, 0)
    assert first["used"]["mem_bytes"] >= 150 << 20
    assert 150 << 20 <= second["used"]["mem_bytes"] < 300 << 20
    assert second["sources"]["mem_bytes"] == ("Grid Engine accounting (DRMAA, qacct), "
                                              "virtual memory")
    assert 0.5 < second["efficiency"]["memory"] < 1
