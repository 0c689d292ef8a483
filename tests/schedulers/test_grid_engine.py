"""Grid Engine's cases, the same for both of its schedulers: ``drmaa`` (the DRMAA
library) and ``sge`` (its commands): hostile strings, files, parallel jobs and limits
(and the TIMEOUT and OUT_OF_MEMORY they end with), native options, holds, refusals,
jobs re-attached by id or by tag from a new instance, the qmaster restarted, a
workflow whose engine is killed; and the conformance kit for ``sge``. On the real
Grid Engine that scripts/clusters/sge-up.sh starts (``source
scripts/clusters/env.sh`` first), marked ``sge`` (see tests/systems.py)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from jobbridge.errors import ConfigurationError
from jobbridge.model import EngineJob
from jobbridge.report import WRAPPER_SOURCE
from jobbridge.scheduler import Scheduler, build_scheduler
from jobbridge.schedulers import drmaa as drmaa_scheduler
from jobbridge.schedulers.sge import SGEScheduler
from jobbridge.testing import SchedulerConformance, run_to_end, wait_for_status
from systems import unavailable

ROOT = Path(__file__).resolve().parents[2]
TYPES = ["drmaa", "sge"]
#: Seconds a job may take: Grid Engine's two slots are shared with other tests.
TIMEOUT = 600
pytestmark = [pytest.mark.sge, pytest.mark.timeout(1800)]


def make_scheduler(scheduler_type: str, **options: str) -> Scheduler:
    config = Configuration.from_dict("sge", {
        "scheduler_type": scheduler_type, "scheduler_interval": "1",
        **({"min_scheduler_interval": "0.2"} if scheduler_type == "sge" else {}), **options})
    return build_scheduler(scheduler_type, config)


@pytest.fixture(params=TYPES)
def scheduler_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def scheduler(scheduler_type: str) -> Iterator[Scheduler]:
    scheduler = make_scheduler(scheduler_type)
    yield scheduler
    scheduler.close()


def job(tmp_path: Path, name: str, command: list[str], **options: object) -> EngineJob:
    options.setdefault("working_directory", str(tmp_path))
    options.setdefault("stdout_file", str(tmp_path / f"{name}.out"))
    options.setdefault("stderr_file", str(tmp_path / f"{name}.err"))
    return EngineJob(job_id=name, command=command, **options)  # type: ignore[arg-type]


class TestSGEConformance(SchedulerConformance):
    job_timeout = TIMEOUT
    held_specification = ["-h"]
    queued_specification = ["-a", "210001010000"]  # a start time to come

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return make_scheduler("sge")


def test_the_sge_module_is_short() -> None:
    """At most 120 lines of code: Grid Engine's formats live in gridengine.py."""
    import ast
    import io
    import tokenize

    source = (ROOT / "src" / "jobbridge" / "schedulers" / "sge.py").read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            docstrings.update(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    code = {line for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                  tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
            for line in range(token.start[0], token.end[0] + 1) if line not in docstrings}
    assert len(code) <= 120, f"sge.py has {len(code)} lines of code"


def test_a_state_folder_grid_engine_would_expand_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBBRIDGE_HOME", str(tmp_path / "h$HOME"))
    with pytest.raises(ConfigurationError, match=re.escape(str(tmp_path / "h$HOME"))):
        SGEScheduler()


def test_strings_grid_engine_would_change(scheduler: Scheduler, tmp_path: Path) -> None:
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


def test_output_files_start_empty(scheduler: Scheduler, tmp_path: Path) -> None:
    """Grid Engine appends to an existing output file; jobbridge's files start empty."""
    spec = job(tmp_path, "again", ["echo", "new"], join_stderrout=True)
    Path(str(spec.stdout_file)).write_text("old output of an earlier run\n")
    run_to_end(scheduler, [spec])
    assert Path(str(spec.stdout_file)).read_text() == "new\n"


def test_parallel_job_and_limits(scheduler: Scheduler, tmp_path: Path) -> None:
    spec = job(tmp_path, "pe", ["sh", "-c", 'echo "$NSLOTS $PE $(ulimit -v)"'],
               parallel_job_info={"config_name": "native", "nodes_number": 1,
                                  "cpu_per_node": 2},
               resources={"memory_mb": 512, "walltime_s": 60}, queue="all.q")
    [(status, info)] = run_to_end(scheduler, [spec])
    assert status == constants.DONE
    assert Path(str(spec.stdout_file)).read_text() == f"2 smp {512 * 1024}\n"
    assert "ncpus=2" in str(info[3]).split()


def test_native_specification_reaches_grid_engine(scheduler_type: str, tmp_path: Path) -> None:
    scheduler = make_scheduler(scheduler_type, native_specification="-v FROM_CONFIG=1")
    try:
        spec = job(tmp_path, "native", ["sh", "-c", 'echo "$FROM_CONFIG|$JB_X|$JB_Y"'],
                   native_specification=["-v", "JB_X=a b", "-v", "JB_Y=it's"])
        [(status, _)] = run_to_end(scheduler, [spec])
        assert status == constants.DONE
        assert Path(str(spec.stdout_file)).read_text() == "1|a b|it's\n"
    finally:
        scheduler.close()


#: A job waiting for a start time, then also held, as both schedulers see it (one
#: ``qstat -xml`` for all jobs: it shows both as ``qw``).
LATER = (constants.QUEUED_ACTIVE, constants.USER_ON_HOLD)


def test_hold_release_and_kill_while_queued(scheduler: Any, scheduler_type: str,
                                            tmp_path: Path) -> None:
    """Grid Engine's holds: qsub -h (user), a start time to come (system), both; the
    job killed while it waited never ran (no execution date)."""
    held = job(tmp_path, "held", ["true"], native_specification="-h")
    later = job(tmp_path, "later", ["true"], native_specification="-a 210001010000")
    held_id, later_id = scheduler.job_submission([held, later])
    assert held_id and later_id
    waiting, both = LATER
    try:
        assert scheduler.get_job_status(held_id) == constants.USER_ON_HOLD
        assert scheduler.get_job_status(later_id) == waiting
        scheduler.hold_job(later_id)
        wait_for_status(scheduler, [later_id], {both}, timeout=60)
        scheduler.release_job(later_id)
        wait_for_status(scheduler, [later_id], {waiting}, timeout=60)
        scheduler.kill_job(later_id)
        scheduler.release_job(held_id)
        statuses = wait_for_status(scheduler, [held_id, later_id], timeout=TIMEOUT)
        assert statuses == {held_id: constants.DONE, later_id: constants.FAILED}
        assert scheduler.get_job_exit_info(held_id)[:2] == (constants.FINISHED_REGULARLY, 0)
        killed = scheduler.get_job_exit_info(later_id)
        assert (killed.exit_status, killed.ran) == (constants.USER_KILLED, False)
    finally:  # nothing left held in the cell when the test fails
        scheduler.kill_job(held_id)
        scheduler.kill_job(later_id)


def test_limits_end_as_timeout_and_out_of_memory(scheduler: Scheduler, tmp_path: Path
                                                 ) -> None:
    """Grid Engine kills a job at its h_rt, or when its processes together pass its
    h_vmem: aborted, TIMEOUT or OUT_OF_MEMORY (what retry_on matches), as on Slurm."""
    hog = "import time; x = bytearray(60 * 2**20); time.sleep(30)"
    jobs = [job(tmp_path, "slow", ["sleep", "120"], resources={"walltime_s": 3}),
            job(tmp_path, "hog", ["sh", "-c", f'for i in 1 2 3; do python3 -c "{hog}" & done;'
                                              " wait"], resources={"memory_mb": 120})]
    [(slow_status, slow), (hog_status, hogged)] = run_to_end(scheduler, jobs, timeout=TIMEOUT)
    assert (slow_status, slow[0]) == (constants.FAILED, constants.EXIT_ABORTED)
    assert getattr(slow, "reason", "").startswith("TIMEOUT: killed at its time limit (h_rt=3)")
    assert (hog_status, hogged[0]) == (constants.FAILED, constants.EXIT_ABORTED)
    assert getattr(hogged, "reason", "").startswith("OUT_OF_MEMORY: killed at its memory limit")


def test_refused_submission_says_why(scheduler: Scheduler, tmp_path: Path) -> None:
    spec = job(tmp_path, "refused", ["true"], queue="no-such-queue-jobbridge")
    assert scheduler.job_submission(spec) == [None]
    assert "unknown queue" in Path(str(spec.stderr_file)).read_text()


def test_reattached_by_id_from_a_new_instance(scheduler_type: str, tmp_path: Path) -> None:
    """An engine restarted: a new instance (a new session) follows jobs submitted by the
    last one, whether they ended before it came (qacct, one call a poll for all) or
    end under its eyes."""
    first = make_scheduler(scheduler_type)
    ids = first.job_submission([
        job(tmp_path, "five", ["sh", "-c", "exit 5"]),
        job(tmp_path, "sig", ["sh", "-c", "kill -KILL $$"]),
        job(tmp_path, "slow", ["sh", "-c", "sleep 15; exit 7"]),
        job(tmp_path, "victim", ["sleep", "600"]),
    ])
    five, sig, slow, victim = (str(job_id) for job_id in ids)
    try:
        wait_for_status(first, [five, sig], timeout=TIMEOUT)
        wait_for_status(first, [slow, victim], {constants.RUNNING}, timeout=TIMEOUT)
        first.close()  # the session ends with the jobs' exit info unread
        assert drmaa_scheduler._SESSION.session is None
        second = make_scheduler(scheduler_type)
        try:
            assert second.get_jobs_status([five, sig, slow])[slow] == constants.RUNNING
            assert isinstance(second, SGEScheduler)  # one qstat for all, one qacct at most
            assert second.calls["status"] == 1 and second.calls.get("history", 0) <= 1
            second.kill_job(victim)
            statuses = wait_for_status(second, [five, sig, slow, victim], timeout=TIMEOUT)
            assert statuses == dict.fromkeys([five, sig, slow, victim], constants.FAILED)
            assert second.get_job_exit_info(five)[:2] == (constants.FINISHED_REGULARLY, 5)
            assert tuple(second.get_job_exit_info(sig))[::2] == (
                constants.FINISHED_TERM_SIG, 9)
            info = second.get_job_exit_info(slow)
            assert info[:2] == (constants.FINISHED_REGULARLY, 7)
            assert re.search(r"\bwalltime=00:00:1[5-7]\b", str(info[3])), info
            assert second.get_job_exit_info(victim)[0] == constants.USER_KILLED
        finally:
            second.kill_job(victim)
            second.close()
    finally:  # however it failed, the 600 s victim must not hold a slot of the shared queue
        subprocess.run(["qdel", victim, slow], capture_output=True, check=False, timeout=60)


@pytest.mark.slow
def test_survives_grid_engine_restarting(scheduler: Scheduler, tmp_path: Path) -> None:
    """qmaster and execd stopped and started again while a job runs: no error while they
    are down, the session reopened, the job's true end, new submissions work again.

    Both daemons: after a qmaster restart alone, an execd that could not report a job's
    end while the qmaster was down shows it running for minutes (it re-registers late).
    """
    if os.geteuid() != 0:
        unavailable("restarting Grid Engine needs root")
    # long enough to run on across the outage (its wrapper's exit file then ends it):
    # stopping both daemons may take up to 30 s after two qconf calls on a loaded machine
    [running] = scheduler.job_submission(job(tmp_path, "across",
                                             ["sh", "-c", "sleep 75; exit 3"]))
    assert running
    wait_for_status(scheduler, [running], {constants.RUNNING}, timeout=TIMEOUT)
    state = Path(os.environ.get("SGE_CI_STATE", "/var/tmp/jobbridge-sge"))
    pids = [path.read_text().strip() for path in
            [state / "qmaster" / "qmaster.pid", *state.glob("execd/*/execd.pid")]]
    try:
        subprocess.run(["qconf", "-ke", "all"], capture_output=True, check=True, timeout=30)
        subprocess.run(["qconf", "-km"], capture_output=True, check=True, timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert scheduler.get_job_status(running) == constants.RUNNING  # kept while down
    finally:  # however it failed, Grid Engine comes back for the tests after this one
        subprocess.run(["bash", str(ROOT / "scripts" / "clusters" / "sge-up.sh")], check=True,
                       env={**os.environ, "SGE_CI_SMOKE": "0"}, timeout=120)
    [after] = scheduler.job_submission(job(tmp_path, "after", ["sh", "-c", "exit 4"]))
    assert after
    wait_for_status(scheduler, [running, after], timeout=TIMEOUT)
    assert scheduler.get_job_exit_info(running)[:2] == (constants.FINISHED_REGULARLY, 3)
    assert scheduler.get_job_exit_info(after)[:2] == (constants.FINISHED_REGULARLY, 4)


@pytest.mark.slow
def test_workflow_through_the_engine_killed_and_resumed(scheduler_type: str, tmp_path: Path,
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
        f"[sge]\nscheduler_type = {scheduler_type}\nscheduler_interval = 0.5\n")
    env = {"JOBBRIDGE_CONFIG": str(tmp_path / "jobbridge.cfg")}
    submitted = jb("submit", str(tmp_path / "wf.json"), "--resource", "sge", env=env)
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()

    def job_row(job_id: str) -> dict[str, object]:
        jobs = status_json(workflow_id, env=env)["jobs"]
        return next(row for row in jobs if row["id"] == job_id)

    wait_for(lambda: job_row("long")["status"] == constants.RUNNING, TIMEOUT, "long to run")
    long_id = job_row("long")["scheduler_job_id"]
    assert kill_engines(jobbridge_home) == 1
    restarted = jb_start("engine", env=env)
    try:
        waited = jb("wait", workflow_id, env=env, timeout=TIMEOUT)
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


def test_submissions_found_by_tag(scheduler: Scheduler, tmp_path: Path) -> None:
    """A restarted engine finds the jobs a killed one submitted but never recorded:
    queued or running (qstat), or already ended (qacct)."""
    tag = f"jb-test-{os.getpid()}-{time.time_ns():x}"
    ended, running = scheduler.job_submission([
        job(tmp_path, "ended", ["true"], submission_tag=f"{tag}-1"),
        job(tmp_path, "running", ["sleep", "60"], submission_tag=f"{tag}-2")])
    assert ended and running
    try:
        wait_for_status(scheduler, [ended], timeout=TIMEOUT)
        found = scheduler.find_submitted([f"{tag}-1", f"{tag}-2", f"{tag}-never"])
        assert found == {f"{tag}-1": ended, f"{tag}-2": running}
    finally:
        scheduler.kill_job(running)


def test_a_job_killed_over_h_vmem_is_retried_with_twice_the_memory(scheduler_type: str,
                                                                   tmp_path: Path) -> None:
    """Three processes of 50 MB under h_vmem=150M: GE kills the job (each process is
    under the limit, their sum is not), which ends OUT_OF_MEMORY; attempt 2 asks for
    h_vmem=300M and succeeds. The report compares the peak memory with the ask: a job
    that succeeded ends by its wrapper's exit file, before accounting has it: the
    wrapper's resident peak (of its largest process), said to be the wrapper's."""
    report = memory_retry(tmp_path, "sge", f"[sge]\nscheduler_type = {scheduler_type}\n"
                          "scheduler_interval = 0.5\n", processes=3, size_mb=50,
                          memory_mb=150, hold=15)
    first, second = report["jobs"][0]["attempts"]
    assert first["exit_reason"].startswith("OUT_OF_MEMORY: killed at its memory limit "
                                           "(h_vmem=150M"), first
    assert (first["exit_status"], first["term_sig"]) == (constants.EXIT_ABORTED, 9)
    assert (first["requested"]["memory_mb"], second["requested"]["memory_mb"]) == (150, 300)
    assert (second["exit_status"], second["exit_value"]) == (constants.FINISHED_REGULARLY, 0)
    assert first["used"]["mem_bytes"] >= 150 << 20
    assert 50 << 20 <= second["used"]["mem_bytes"] < 150 << 20
    assert second["sources"]["mem_bytes"] == WRAPPER_SOURCE


def test_a_job_that_never_ran_has_no_execution_date(scheduler_type: str, tmp_path: Path,
                                                   jobbridge_home: Path) -> None:
    """Through the engine: a job held in Grid Engine's queue and stopped never ran; its
    status says killed_by_user, and it has no execution date (before, the engine dated
    an end it had not seen start as the job's start)."""
    config = jobbridge_home / "jobbridge.cfg"
    config.write_text(f"[ge]\nscheduler_type = {scheduler_type}\nscheduler_interval = 1\n")
    env = {"JOBBRIDGE_CONFIG": str(config)}
    write_json(tmp_path / "wf.json", {"name": "held", "jobs": [
        {"id": "held", "command": ["true"], "native_specification": ["-h"]}]})
    submitted = jb("submit", str(tmp_path / "wf.json"), "--resource", "ge", env=env)
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()

    def row() -> dict[str, Any]:
        return dict(status_json(workflow_id, env=env)["jobs"][0])

    wait_for(lambda: row()["status"] == constants.USER_ON_HOLD, TIMEOUT, "the job held")
    assert jb("stop", workflow_id, env=env).returncode == 0
    assert jb("wait", workflow_id, "--timeout", str(TIMEOUT), env=env,
              timeout=TIMEOUT + 60).returncode == 1
    ended = row()
    assert (ended["status"], ended["exit_status"]) == (constants.FAILED, constants.USER_KILLED)
    assert ended["execution_date"] is None, ended
    assert ended["ending_date"] is not None


def test_a_job_killed_while_running_is_dated_by_its_start(tmp_path: Path) -> None:
    """qdel's SIGKILL leaves no exit file: the wrapper's start file still tells when the
    job started (an engine restarted meanwhile would otherwise date it by the kill)."""
    scheduler = make_scheduler("sge")
    marker = tmp_path / "started"
    try:
        [job_id] = scheduler.job_submission(job(tmp_path, "victim", [
            "sh", "-c", f'touch "{marker}"; exec sleep 600']))
        assert job_id is not None
        deadline = time.monotonic() + TIMEOUT
        while not marker.exists():
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.2)
        seen = time.time()
        scheduler.kill_job(job_id)
        wait_for_status(scheduler, [job_id], timeout=TIMEOUT)
        info = scheduler.get_job_exit_info(job_id)
        assert info.exit_status == constants.USER_KILLED
        assert info.started is not None and seen - 60 < info.started <= seen, info
        assert info.ran is True
    finally:
        scheduler.close()


def test_a_stop_another_engine_began_ends_a_deleted_queued_job_at_once(
        scheduler_type: str, tmp_path: Path) -> None:
    """`run` Ctrl-C'd: its scheduler deleted a queued job and went away; the next
    engine kills it again (qdel: no such job) and, with no record of it in
    Grid Engine, ends it killed and never run at its first poll, not after
    LOST_AFTER."""
    first = make_scheduler(scheduler_type)
    [job_id] = first.job_submission([job(tmp_path, "held", ["true"],
                                         native_specification="-h")])
    assert job_id is not None
    job_id = str(job_id)
    first.kill_job(job_id)
    first.close()
    second = make_scheduler(scheduler_type)
    try:
        second.kill_jobs([job_id])
        assert wait_for_status(second, [job_id], timeout=60) == {job_id: constants.FAILED}
        info = second.get_job_exit_info(job_id)
        assert info[0] == constants.USER_KILLED
        assert getattr(info, "execution_date", None) is None
    finally:
        second.close()


def _alive(pid: str) -> bool:
    """Whether a process runs (a zombie no parent reaps has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except (OSError, IndexError):
        return False
