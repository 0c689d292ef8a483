"""pbspro layer (d): PBS Pro mode on the real OpenPBS 23.06 of scripts/clusters/openpbs-up.sh.

The conformance kit, then what PBS itself does to jobs: many jobs at once each
with its true state (running, queued for want of ncpus, held by ``qsub -h`` and
by ``qhold``), ``qdel`` and walltime kills, resources read back from qstat,
resubmission safety, pbs_server restarted mid-run, a server keeping no job
history, and an ordinary user's jobs (pbs_mom reaps only those: a qdel'd root
job shows ``Exit_status`` 0 where a user's shows 271). The engine's own crash
test on this server is in tests/test_crash.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import openpbs
from jobbridge import constants
from jobbridge.model import EngineJob
from jobbridge.scheduler import Scheduler
from jobbridge.schedulers.pbspro import PBSProScheduler
from jobbridge.testing import SchedulerConformance, run_to_end, wait_for_status
from systems import unavailable

pytestmark = pytest.mark.pbspro


def openpbs_scheduler(native: Sequence[str] = (), **options: object) -> PBSProScheduler:
    """Root's scheduler on the namespaced server, polling fast as tests want."""
    options.setdefault("min_interval", 0.2)
    options.setdefault("max_interval", 1.0)
    return PBSProScheduler({}, None, list(native), pbs_bin_dir=str(openpbs.BIN),
                           host_command=openpbs.HOST_COMMAND, **options)  # type: ignore[arg-type]


def submit(scheduler: PBSProScheduler, jobs: list[EngineJob]) -> list[str]:
    ids = scheduler.job_submission(jobs)
    assert None not in ids, "qsub refused a job (see the log)"
    return [str(job_id) for job_id in ids]


def poll(scheduler: PBSProScheduler, ids: list[str]) -> dict[str, str]:
    """The statuses of the next qstat: between two, the scheduler answers from the
    wrappers' files and the last one (its interval is 1 s here)."""
    before = scheduler.calls.get("status", 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        statuses = scheduler.get_jobs_status(ids)
        if scheduler.calls.get("status", 0) > before:
            return statuses
        time.sleep(0.05)
    raise TimeoutError("no qstat within 10 s")


class TestOpenPBSConformance(SchedulerConformance):
    job_timeout = 120.0
    held_specification = ["-h"]
    queued_specification = ["-a", "210001010000"]  # a start time to come

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return openpbs_scheduler()


def test_detected_as_openpbs_with_one_bulk_qstat() -> None:
    scheduler = openpbs_scheduler()
    assert scheduler.implementation == "pbspro" and scheduler.version.startswith("23.")
    assert scheduler.status_argv(["1.pbshost", "2.pbshost"])[len(openpbs.HOST_COMMAND) + 1:] == [
        "-E", "-t", "-x", "-f", "-F", "json", "1.pbshost", "2.pbshost"]


def test_express_qstat_answers_all_drops_unknown_ids_and_they_are_asked_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real qstat: without -E, ``-F json ID1 ID2`` prints the first job only; with
    -E, all of them, leaving out an unknown id without a word (exit 0). jobbridge's
    one qstat a poll names every tracked id each time: the unknown one stays
    undetermined, asked about again, never taken as gone."""
    scheduler = openpbs_scheduler(array_submission="off")
    held = submit(scheduler, [EngineJob(f"held{i}", ["true"], native_specification=["-h"],
                                        working_directory=str(tmp_path)) for i in range(2)])
    number, _, server = held[0].partition(".")
    unknown = f"{int(number) + 1_000_000}.{server}"
    try:
        plain = openpbs.pbs("qstat", "-x", "-f", "-F", "json", *held, check=False)
        assert list(json.loads(plain.stdout)["Jobs"]) == held[:1]
        express = openpbs.pbs("qstat", "-E", "-x", "-f", "-F", "json", *held, unknown,
                              check=False)
        assert (express.returncode, express.stderr) == (0, "")
        assert sorted(json.loads(express.stdout)["Jobs"]) == sorted(held)
        asked: list[list[str]] = []
        query = scheduler.query_status
        monkeypatch.setattr(scheduler, "query_status",
                            lambda ids: asked.append(list(ids)) or query(ids))
        for _ in range(3):
            assert poll(scheduler, [*held, unknown]) == {
                **dict.fromkeys(held, constants.USER_SYSTEM_ON_HOLD),
                unknown: constants.UNDETERMINED}
        assert len(asked) == 3 and all(unknown in ids for ids in asked), asked
    finally:
        for job_id in held:
            scheduler.kill_job(job_id)
    assert wait_for_status(scheduler, held, timeout=60) == dict.fromkeys(held, constants.FAILED)


def test_many_jobs_each_with_its_true_state(tmp_path: Path) -> None:
    """Running, queued (no ncpus left for 8), held at submission and held later
    with qhold: every job's own state in each poll, one qstat each; then qrls.
    Lone jobs (PBS cannot qhold an array's subjob alone)."""
    scheduler = openpbs_scheduler(array_submission="off")

    def job(name: str, command: list[str], **options: object) -> EngineJob:
        return EngineJob(name, command, working_directory=str(tmp_path), **options)  # type: ignore[arg-type]

    running = submit(scheduler, [job(f"run{i}", ["sleep", "300"]) for i in range(4)])
    wait_for_status(scheduler, running, {constants.RUNNING}, timeout=60)
    queued = submit(scheduler, [job(f"big{i}", ["true"], resources={"cpus": 8})
                                for i in range(3)])
    held = submit(scheduler, [job(f"held{i}", ["true"], native_specification=["-h"])
                              for i in range(3)])
    everyone = running + queued + held
    try:
        openpbs.pbs("qhold", queued[0])
        before = scheduler.calls["status"]
        assert poll(scheduler, everyone) == {
            **dict.fromkeys(running, constants.RUNNING),
            queued[0]: constants.USER_SYSTEM_ON_HOLD,
            **dict.fromkeys(queued[1:], constants.QUEUED_ACTIVE),
            **dict.fromkeys(held, constants.USER_SYSTEM_ON_HOLD)}
        assert scheduler.calls["status"] == before + 1, "one qstat for all the jobs"
        openpbs.pbs("qrls", queued[0], held[0])
        # the release is seen at the next qstat (the scheduler's interval, not at once)
        assert wait_for_status(scheduler, [queued[0]], {constants.QUEUED_ACTIVE},
                               timeout=60) == {queued[0]: constants.QUEUED_ACTIVE}
        assert wait_for_status(scheduler, [held[0]], timeout=60) == {held[0]: constants.DONE}
        # a root job deleted by someone else: PBS says Exit_status 0 (pbs_mom does
        # not reap root's jobs), the job wrapper's exit file says SIGTERM
        openpbs.pbs("qdel", running[0])
        assert wait_for_status(scheduler, [running[0]], timeout=60)[running[0]] \
            == constants.FAILED
        info = scheduler.get_job_exit_info(running[0])
        assert (info[0], info[2]) == (constants.FINISHED_TERM_SIG, signal.SIGTERM)
    finally:  # queued ones first: killing a running one lets a big one start
        for job_id in reversed(everyone[1:]):
            scheduler.kill_job(job_id)
    rest = [job_id for job_id in everyone[1:] if job_id != held[0]]
    assert wait_for_status(scheduler, rest, timeout=60) == dict.fromkeys(rest, constants.FAILED)
    for job_id in rest:
        assert scheduler.get_job_exit_info(job_id)[0] == constants.USER_KILLED
    assert openpbs.attributes(queued[1])["job_state"] == "F"


def test_jobs_held_at_submission_go_alone_and_are_released_one_by_one(tmp_path: Path) -> None:
    """Jobs alike with ``-h`` are not sent as one array: OpenPBS refuses qrls of a
    subjob ("Invalid request"), so each goes alone, to be released by its own id."""
    scheduler = openpbs_scheduler()
    ids = submit(scheduler, [EngineJob(f"h{i}", ["sh", "-c", f'touch "{tmp_path}/ran{i}"'],
                                       native_specification=["-h"],
                                       working_directory=str(tmp_path)) for i in range(3)])
    try:
        assert not any("[" in job_id for job_id in ids), ids
        assert poll(scheduler, ids) == dict.fromkeys(ids, constants.USER_SYSTEM_ON_HOLD)
        openpbs.pbs("qrls", ids[0])
        assert wait_for_status(scheduler, ids[:1], timeout=90) == {ids[0]: constants.DONE}
        assert poll(scheduler, ids[1:]) == dict.fromkeys(ids[1:],
                                                          constants.USER_SYSTEM_ON_HOLD)
        assert [(tmp_path / f"ran{i}").exists() for i in range(3)] == [True, False, False]
    finally:
        for job_id in ids[1:]:
            scheduler.kill_job(job_id)
    assert wait_for_status(scheduler, ids[1:], timeout=60) == dict.fromkeys(
        ids[1:], constants.FAILED)


def test_a_held_arrays_elements_are_held(tmp_path: Path) -> None:
    """An array held as a whole (``qsub -h -J``, or ``qhold ID[]``): OpenPBS shows the
    array H but each subjob Q, with the array's Hold_Types; each is held until
    ``qrls ID[]``, then runs."""
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\ntrue\n")
    array = openpbs.pbs("qsub", "-h", "-J", "0-2", "-o", "/dev/null", "-j", "oe",
                        "-N", "heldarray", str(script)).stdout.strip()
    ids = [array.replace("[]", f"[{index}]") for index in range(3)]
    scheduler = openpbs_scheduler()
    try:
        assert {attrs["job_state"] for attrs in json.loads(openpbs.pbs(
            "qstat", "-E", "-t", "-f", "-F", "json", *ids).stdout)["Jobs"].values()} == {"Q"}
        assert poll(scheduler, ids) == dict.fromkeys(ids, constants.USER_SYSTEM_ON_HOLD)
        openpbs.pbs("qrls", array)
        assert wait_for_status(scheduler, ids, timeout=90) == dict.fromkeys(ids, constants.DONE)
    finally:
        openpbs.pbs("qdel", "-x", array, check=False)


def test_walltime_kill_is_a_timeout(tmp_path: Path) -> None:
    """pbs_mom kills the job past its walltime (checked every 1-4 s here):
    Exit_status -29, which jobbridge reports as aborted, reason TIMEOUT."""
    scheduler = openpbs_scheduler()
    job = EngineJob("slow", ["sleep", "300"], working_directory=str(tmp_path),
                    resources={"walltime_s": 2})
    [(status, info)] = run_to_end(scheduler, [job], timeout=60)
    assert status == constants.FAILED
    assert info[0] == constants.EXIT_ABORTED
    # the wrapper's SIGTERM, when it wrote its exit file before pbs_mom's SIGKILL (a
    # loaded machine may not: seen once with the server unreachable meanwhile)
    assert info[2] in (signal.SIGTERM, None)
    reason = str(getattr(info, "reason", ""))
    assert reason.startswith("TIMEOUT: Exit_status -29 JOB_EXEC_KILL_WALLTIME"), reason


def test_resources_reach_pbs(tmp_path: Path) -> None:
    scheduler = openpbs_scheduler(native=["-p", "5"])
    held = [EngineJob("res", ["true"], queue="workq", native_specification=["-h"],
                      resources={"cpus": 2, "memory_mb": 100, "walltime_s": 90}),
            EngineJob("mpi", ["true"], native_specification="-h -p 7",
                      parallel_job_info={"config_name": "MPI", "nodes_number": 1,
                                         "cpu_per_node": 2})]
    ids = submit(scheduler, held)
    try:
        first, mpi = (openpbs.attributes(job_id) for job_id in ids)
        wanted = {"select": "1:ncpus=2:mem=100mb", "ncpus": "2", "mem": "100mb",
                  "walltime": "00:01:30"}
        assert {key: str(first["Resource_List"][key]) for key in wanted} == wanted
        assert (first["queue"], first["Priority"], first["job_state"]) == ("workq", 5, "H")
        assert mpi["Resource_List"]["select"] == "1:ncpus=2:mpiprocs=2"
        assert mpi["Priority"] == 7  # the job's own option comes last and wins
        assert scheduler.get_job_extended_status(ids[0])["Resource_List"] == first[
            "Resource_List"]
    finally:
        for job_id in ids:
            scheduler.kill_job(job_id)
    wait_for_status(scheduler, ids, timeout=60)
    out = tmp_path / "ncpus.out"
    job = EngineJob("env", ["sh", "-c", "echo $NCPUS $OMP_NUM_THREADS"],
                    resources={"cpus": 2}, stdout_file=str(out))
    [(status, _)] = run_to_end(scheduler, [job], timeout=60)
    assert status == constants.DONE
    assert out.read_text() == "2 2\n"  # what PBS gives a job that has 2 ncpus


def test_the_report_says_who_measured_each_figure(tmp_path: Path) -> None:
    """Through the engine: a job holding 40 MB, burning a second of CPU, then
    sleeping long enough for pbs_mom to sample it while it runs. The report's figures
    are PBS's resources_used, or the job wrapper's where PBS gave none (a ``wrapper=``
    item), and each says which; never the sample of a running job (once reported as
    the job's peak memory: ``mem=0kb``)."""
    config = tmp_path / "jobbridge.cfg"
    config.write_text(openpbs.resource())
    busy = ("import time\nx = bytearray(40 << 20)\nx[::4096] = b'x' * len(x[::4096])\n"
            "while time.process_time() < 1: pass\ntime.sleep(9)")
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"jobs": [{
        "id": "busy", "command": ["python3", "-c", busy],
        "resources": {"memory_mb": 200, "walltime_s": 120}}]}))
    env = {**os.environ, "JOBBRIDGE_CONFIG": str(config)}
    jb = [sys.executable, "-m", "jobbridge"]
    ran = subprocess.run([*jb, "run", str(workflow), "-r", "openpbs"], env=env, text=True,
                         capture_output=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(subprocess.run([*jb, "report", "1", "--json"], env=env, text=True,
                                       capture_output=True, timeout=60, check=True).stdout)
    assert report["usage_source"] == "PBS resources_used"
    [attempt] = report["jobs"][0]["attempts"]
    wrapped = next((item.removeprefix("wrapper=").split(",") for item in
                    attempt["resource_usage"].split() if item.startswith("wrapper=")), [])
    for figure, keys in (("cpu_s", {"cpu_s", "cput"}), ("mem_bytes", {"mem"}),
                         ("wall_s", {"wall_s", "walltime"})):
        assert attempt["sources"][figure] == (
            "job wrapper (wait4)" if keys & set(wrapped) else "PBS resources_used"), attempt
    used = attempt["used"]
    assert used["cpu_s"] >= 0.9 and used["wall_s"] >= 9, attempt
    assert 40 << 20 <= used["mem_bytes"] < 200 << 20, attempt
    assert (attempt["requested"]["memory_mb"], attempt["requested"]["walltime_s"]) == (200, 120)


def test_find_submitted_by_tag(tmp_path: Path) -> None:
    scheduler = openpbs_scheduler()
    job = EngineJob("tag", ["sh", "-c", "sleep 1; exit 4"], working_directory=str(tmp_path),
                    submission_tag=f"jb-openpbs-find-{time.time_ns():x}")
    [job_id] = submit(scheduler, [job])
    again = openpbs_scheduler()
    assert again.find_submitted([str(job.submission_tag), "jb-never-submitted"]) == {
        job.submission_tag: job_id}
    assert wait_for_status(again, [job_id], timeout=60)[job_id] == constants.FAILED
    assert again.get_job_exit_info(job_id)[:2] == (constants.FINISHED_REGULARLY, 4)


def test_pbs_server_restarted_mid_run(tmp_path: Path) -> None:
    """pbs_server stopped (``qterm -t quick``: jobs keep running) and started again:
    jobs that end meanwhile, one submitted and one killed during the outage, and
    one running across it all end with their true exit info; no poll fails a job."""
    scheduler = openpbs_scheduler(command_timeout=20.0)
    jobs = [EngineJob("quick", ["sh", "-c", "sleep 2; exit 0"]),
            EngineJob("five", ["sh", "-c", "sleep 4; exit 5"]),
            EngineJob("long", ["sh", "-c", "sleep 20; exit 0"]),
            EngineJob("victim", ["sleep", "600"])]
    ids = submit(scheduler, jobs)
    # PBS may start them a few seconds apart: the quick ones can be over already
    wait_for_status(scheduler, ids[2:], {constants.RUNNING}, timeout=120)
    openpbs.pbs("qterm", "-t", "quick")
    submitted: list[str | None] = []
    during = threading.Thread(target=lambda: submitted.extend(scheduler.job_submission(
        [EngineJob("during", ["sh", "-c", "exit 4"])])))
    killing = threading.Thread(target=scheduler.kill_job, args=[ids[3]])
    try:
        during.start()
        killing.start()
        down = time.monotonic()
        while time.monotonic() - down < 6:
            statuses = scheduler.get_jobs_status(ids)  # fails inside: keeps the last states
            # "five"'s exit 5 comes from its wrapper's exit file; no failed poll fails a job
            assert constants.FAILED not in [statuses[i] for i in ids if i != ids[1]]
            time.sleep(1)
    finally:
        subprocess.run([str(openpbs.UP)], check=True, timeout=300,
                       env={**os.environ, "OPENPBS_CI_SMOKE": "0"})
    during.join(timeout=120)
    killing.join(timeout=120)
    assert submitted and submitted[0] is not None, "the submission during the outage failed"
    all_ids = [*ids, submitted[0]]
    statuses = wait_for_status(scheduler, all_ids, timeout=120)
    infos = [scheduler.get_job_exit_info(job_id) for job_id in all_ids]
    assert [info[0] for info in infos] == [
        constants.FINISHED_REGULARLY, constants.FINISHED_REGULARLY,
        constants.FINISHED_REGULARLY, constants.USER_KILLED, constants.FINISHED_REGULARLY]
    assert [infos[i][1] for i in (0, 1, 2, 4)] == [0, 5, 0, 4]
    assert [statuses[job_id] for job_id in all_ids] == [
        constants.DONE, constants.FAILED, constants.DONE, constants.FAILED, constants.FAILED]


@pytest.fixture
def no_job_history() -> Iterator[None]:
    """The server forgets a job as it ends (PBS's default; openpbs-up.sh turns history on)."""
    openpbs.pbs("qmgr", "-c", "set server job_history_enable = False")
    try:
        yield
    finally:
        openpbs.pbs("qmgr", "-c", "set server job_history_enable = True")


@pytest.mark.usefixtures("no_job_history")
def test_ends_are_seen_without_job_history(tmp_path: Path) -> None:
    """Ended jobs vanish from qstat at once: their ends come from the exit files,
    and a held job deleted before it ran ends killed."""
    scheduler = openpbs_scheduler()
    jobs = [EngineJob("ok", ["true"]), EngineJob("three", ["sh", "-c", "exit 3"]),
            EngineJob("nine", ["sh", "-c", "kill -KILL $$"]),
            EngineJob("victim", ["sleep", "300"]),
            EngineJob("held", ["true"], native_specification=["-h"])]
    ids = submit(scheduler, jobs)
    wait_for_status(scheduler, ids[3:4], {constants.RUNNING}, timeout=60)
    assert poll(scheduler, ids[4:]) == {ids[4]: constants.USER_SYSTEM_ON_HOLD}
    for job_id in ids[3:]:
        scheduler.kill_job(job_id)
    statuses = wait_for_status(scheduler, ids, timeout=60)
    assert [statuses[job_id] for job_id in ids] == [constants.DONE, *[constants.FAILED] * 4]
    infos = [scheduler.get_job_exit_info(job_id) for job_id in ids]
    assert [tuple(info)[:3] for info in infos[:3]] == [
        (constants.FINISHED_REGULARLY, 0, 0), (constants.FINISHED_REGULARLY, 3, 0),
        (constants.FINISHED_TERM_SIG, None, signal.SIGKILL)]
    assert [info[0] for info in infos[3:]] == [constants.USER_KILLED] * 2
    gone = openpbs.pbs("qstat", *ids, check=False)
    assert gone.returncode == 153 and "Unknown Job Id" in gone.stderr


# --- an ordinary user's jobs, through the command line ----------------------------------------

@pytest.fixture
def user_dir() -> Iterator[Path]:
    """A folder of the ordinary user (pytest's tmp_path is root's own)."""
    folder = Path(tempfile.mkdtemp(prefix="jobbridge-pbsuser-"))
    shutil.chown(folder, openpbs.USER, openpbs.USER)
    check = _as_user(folder, ["test", "-r", str(openpbs.REPO / "src" / "jobbridge" / "cli.py")])
    if check.returncode != 0:
        shutil.rmtree(folder)
        unavailable(f"{openpbs.USER} cannot read {openpbs.REPO}/src")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _as_user(folder: Path, argv: list[str], timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    """Run argv as the ordinary user. Debian's python3 runs jobbridge from the source
    folder: the test venv's may live where the user cannot go (root's pyenv)."""
    env = {"HOME": str(folder), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "PYTHONPATH": str(openpbs.REPO / "src"),
           "JOBBRIDGE_HOME": str(folder / "home"), "JOBBRIDGE_CONFIG": str(folder / "jb.cfg")}
    return subprocess.run(["runuser", "-u", openpbs.USER, "--", "env", "-i",
                           *(f"{key}={value}" for key, value in env.items()), *argv],
                          capture_output=True, text=True, timeout=timeout, cwd=folder)


def _user_jobbridge(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _as_user(folder, ["/usr/bin/python3", "-m", "jobbridge", *args])


def test_qdel_of_an_ordinary_users_jobs(user_dir: Path) -> None:
    """pbsuser runs a workflow and qdels two of its jobs: the running one ends
    with PBS's Exit_status 271 (256 + SIGTERM) and jobbridge's signal 15, the held
    one ends aborted before it ran; the others keep their exit codes."""
    (user_dir / "jb.cfg").write_text(openpbs.resource(
        "pbsuser", openpbs.USER_HOST_COMMAND, job_python="/usr/bin/python3",
        native_specification=f"-v PYTHONPATH={openpbs.REPO / 'src'}"))
    marker = user_dir / "started"
    workflow = {"name": "qdel", "jobs": [
        {"id": "victim", "command": ["sh", "-c", f'touch "{marker}"; exec sleep 600']},
        {"id": "waiting", "command": ["true"], "native_specification": ["-h"]},
        {"id": "three", "command": ["sh", "-c", "exit 3"]}]}
    (user_dir / "wf.json").write_text(json.dumps(workflow))
    for path in user_dir.iterdir():
        shutil.chown(path, openpbs.USER, openpbs.USER)
    submitted = _user_jobbridge(user_dir, "submit", "wf.json", "--resource", "pbsuser")
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()

    def statuses() -> dict[str, dict[str, object]]:
        shown = _user_jobbridge(user_dir, "status", workflow_id, "--json")
        return {job["id"]: job for job in json.loads(shown.stdout)["jobs"]}

    deadline = time.monotonic() + 90
    while not (marker.exists() and statuses()["waiting"]["status"]
               == constants.USER_SYSTEM_ON_HOLD):
        assert time.monotonic() < deadline, statuses()
        time.sleep(0.5)
    jobs = statuses()
    assert jobs["victim"]["status"] == constants.RUNNING
    ids = [str(jobs[name]["scheduler_job_id"]) for name in ("victim", "waiting")]
    qdel = _as_user(user_dir, [*openpbs.USER_HOST_COMMAND, str(openpbs.BIN / "qdel"), *ids])
    assert qdel.returncode == 0, qdel.stderr
    waited = _user_jobbridge(user_dir, "wait", workflow_id)
    assert waited.returncode == 1, waited.stderr
    jobs = statuses()
    assert [jobs["victim"][key] for key in ("status", "exit_status", "term_sig")] == [
        constants.FAILED, constants.FINISHED_TERM_SIG, signal.SIGTERM]
    assert [jobs["waiting"][key] for key in ("status", "exit_status")] == [
        constants.FAILED, constants.EXIT_ABORTED]
    assert [jobs["three"][key] for key in ("status", "exit_value")] == [constants.FAILED, 3]
    victim = openpbs.attributes(ids[0])
    assert victim["Job_Owner"].startswith(f"{openpbs.USER}@")
    assert victim["Exit_status"] == 256 + signal.SIGTERM, victim
    assert "Exit_status" not in openpbs.attributes(ids[1])  # it never ran
