"""mpi: whole workflows under a real ``mpirun -n 3`` (rank 0 the engine, 1 and 2 the jobs).

Needs Open MPI's mpirun and mpi4py (scripts/clusters/mpi-up.sh); the Slurm test
also needs the real Slurm (scripts/clusters/slurm-up.sh).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from jbcli import stored_rows
from jobbridge import constants
from jobbridge.schedulers.mpi import MPIScheduler
from jobbridge.testing.conformance import HOSTILE_STRINGS
from systems import unavailable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Open MPI as root, 3 ranks on fewer cores (harmless for other MPI implementations).
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
JOBBRIDGE = [sys.executable, "-m", "jobbridge"]


def mpirun(*command: str, timeout: float = 60, env: Mapping[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mpirun", "-n", "3", *command], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **MPI_ENV, **(env or {})})


def jb(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JOBBRIDGE, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def status(workflow_id: str = "1") -> dict[str, Any]:
    result = jb("status", workflow_id, "--json")
    value: dict[str, Any] = json.loads(result.stdout)
    failed = any(job["status"] == "failed" for job in value["jobs"])
    assert result.returncode == int(failed), result.stderr  # status exits 1 iff a job failed
    return value


def jobs_by_id(workflow_id: str = "1") -> dict[str, dict[str, Any]]:
    return {job["id"]: job for job in status(workflow_id)["jobs"]}


def write(path: Path, workflow: dict[str, Any]) -> str:
    path.write_text(json.dumps(workflow))
    return str(path)


def wait_for(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- without mpirun ------------------------------------------------------------------------


def test_unavailable_outside_mpirun(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI"))}
    workflow = write(tmp_path / "wf.json", {"jobs": [{"id": "a", "command": ["true"]}]})
    result = subprocess.run([*JOBBRIDGE, "run", workflow, "--scheduler", "mpi"], env=clean,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not launched by mpirun" in result.stderr
    listed = json.loads(subprocess.run([*JOBBRIDGE, "schedulers", "--json"], env=clean,
                                       capture_output=True, text=True, check=True).stdout)
    [mpi] = [s for s in listed if s["name"] == "mpi"]
    assert not mpi["enabled"] and mpi["reason"]


@pytest.mark.mpi
def test_availability_counts_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    enabled, reason = MPIScheduler.availability()
    assert not enabled and "1 MPI rank" in reason
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert MPIScheduler.availability() == (True, "")


# --- under mpirun -------------------------------------------------------------------------------


@pytest.mark.mpi
def test_scheduler_api_conformance_under_mpirun() -> None:
    """The conformance kit and the API tests of mpi_conformance.py, on rank 0."""
    script = ("import sys, pytest; from jobbridge.schedulers.mpi import run_ranks; "
              "sys.exit(run_ranks(lambda: int(pytest.main(sys.argv[1:]))))")
    result = mpirun(sys.executable, "-c", script, "-q", "-p", "no:cacheprovider",
                    "--rootdir", str(ROOT), str(HERE / "mpi_conformance.py"), timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout, result.stdout
    assert not re.search(r"\d+ (failed|error)", result.stdout), result.stdout


@pytest.mark.mpi
def test_workflow_dependencies_failure_retries_argv(tmp_path: Path) -> None:
    config = tmp_path / "jobbridge.cfg"
    config.write_text("[cluster]\nscheduler_type = mpi\nmpi_max_attempts = 2\n")
    count = 'echo run >> "$1"; [ $(wc -l < "$1") -ge {} ] || exit 3'
    workflow = write(tmp_path / "wf.json", {"name": "mixed", "jobs": [
        {"id": "first", "command": ["sh", "-c", "echo from first > first.txt"],
         "working_directory": str(tmp_path)},
        {"id": "second", "command": ["cat", "first.txt"], "working_directory": str(tmp_path)},
        {"id": "flaky", "command": ["sh", "-c", count.format(2), "sh", str(tmp_path / "flaky")]},
        {"id": "bad", "command": ["sh", "-c", count.format(9), "sh", str(tmp_path / "bad")]},
        {"id": "after_bad", "command": ["touch", str(tmp_path / "never")]},
        {"id": "after_after", "command": ["touch", str(tmp_path / "never")]},
        {"id": "argv", "command": ["printf", "%s\\000", *HOSTILE_STRINGS],
         "working_directory": str(tmp_path)}],
        "dependencies": [["first", "second"], ["bad", "after_bad"], ["after_bad", "after_after"],
                         ["flaky", "second"]]})
    result = mpirun(*JOBBRIDGE, "run", workflow, "--resource", "cluster",
                    env={"JOBBRIDGE_CONFIG": str(config)})
    assert result.returncode == 1, result.stderr
    assert "4/7 jobs succeeded" in result.stderr
    jobs = jobs_by_id()
    assert {k: j["status"] for k, j in jobs.items()} == {
        "first": "done", "second": "done", "flaky": "done", "bad": "failed",
        "after_bad": "failed", "after_after": "failed", "argv": "done"}
    assert (jobs["bad"]["exit_status"], jobs["bad"]["exit_value"]) == (
        constants.FINISHED_REGULARLY, 3)
    assert (tmp_path / "bad").read_text() == "run\n" * 2
    assert (tmp_path / "flaky").read_text() == "run\n" * 2
    for job_id in ("after_bad", "after_after"):
        assert jobs[job_id]["exit_status"] == constants.EXIT_NOTRUN
    assert not (tmp_path / "never").exists()
    assert "cput=" in jobs["second"]["resource_usage"]
    assert jobs["second"]["scheduler_job_id"].startswith("mpi.")
    # the report: every figure measured by wait4 on the rank that ran the job, said so
    report = json.loads(jb("report", "1", "--json").stdout)
    assert report["usage_source"] == "wait4 (MPI worker)"
    [second] = next(j for j in report["jobs"] if j["id"] == "second")["attempts"]
    assert second["sources"] == dict.fromkeys(("cpu_s", "mem_bytes", "wall_s"),
                                              "wait4 (MPI worker)")
    assert second["used"]["mem_bytes"] > 1 << 20 and second["used"]["wall_s"] is not None
    assert second["used"]["cpu_s"] is not None
    assert jb("logs", "1", "second").stdout == "from first\n"
    got = jb("logs", "1", "argv").stdout.encode().split(b"\0")[:-1]
    assert got == [s.encode() for s in HOSTILE_STRINGS]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.mpi
def test_all_ok_exits_0_and_only_rank_0_prints(tmp_path: Path) -> None:
    workflow = write(tmp_path / "wf.json", {"jobs": [
        {"id": f"j{i}", "command": ["sh", "-c", "exit 0"]} for i in range(6)]})
    result = mpirun(*JOBBRIDGE, "run", workflow, "--scheduler", "mpi", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)  # one JSON object: the workers print nothing
    assert printed["status"] == constants.WORKFLOW_DONE
    assert [job["status"] for job in printed["jobs"]] == ["done"] * 6


@pytest.mark.mpi
def test_a_job_may_itself_be_an_mpi_program(tmp_path: Path) -> None:
    """Jobs do not inherit the launcher's variables: MPI_Init makes a singleton, and
    mpirun nests (neither would with them)."""
    workflow = write(tmp_path / "wf.json", {"jobs": [
        {"id": "mpi4py", "command": ["timeout", "20", sys.executable, "-c",
                                     "from mpi4py import MPI; print(MPI.COMM_WORLD.size)"]},
        {"id": "mpirun", "command": ["timeout", "20", "mpirun", "-n", "2", "echo", "nested"]}]})
    result = mpirun(*JOBBRIDGE, "run", workflow, "--scheduler", "mpi")
    assert result.returncode == 0, result.stderr
    assert jb("logs", "1", "mpi4py").stdout == "1\n"
    assert jb("logs", "1", "mpirun").stdout == "nested\n" * 2


@pytest.mark.mpi
def test_bad_workflow_exits_2_without_hanging(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    result = mpirun(*JOBBRIDGE, "run", str(tmp_path / "bad.json"), "--scheduler", "mpi")
    assert result.returncode == 2
    assert "jobbridge: error:" in result.stderr


@pytest.mark.mpi
def test_walltime_memory_and_wrong_paths_are_enforced_on_the_workers(tmp_path: Path) -> None:
    """As on local_basic: walltime_s kills the job tree (TIMEOUT), memory_mb ends a
    greedy job (OUT_OF_MEMORY), a missing folder is named with its key."""
    from jobbridge.controller import WorkflowController

    pid_file = tmp_path / "child.pid"
    missing = tmp_path / "nodir" / "out.txt"
    workflow = write(tmp_path / "wf.json", {"jobs": [
        {"id": "long", "command": ["sh", "-c", f"sleep 10 & echo $! > {pid_file}; wait"],
         "resources": {"walltime_s": 2}},
        {"id": "greedy", "command": [sys.executable, "-c", "b = bytearray(400 * 2**20)"],
         "resources": {"memory_mb": 100}, "stderr_file": str(tmp_path / "greedy.err")},
        {"id": "path", "command": ["echo", "hi"], "stdout_file": str(missing)},
        {"id": "fine", "command": ["sleep", "0.1"], "resources": {"walltime_s": 60}}]})
    started = time.monotonic()
    result = mpirun(*JOBBRIDGE, "run", workflow, "--scheduler", "mpi")
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 30
    jobs = {job["id"]: job for job in WorkflowController().status("1")["jobs"]}
    assert {k: j["status"] for k, j in jobs.items()} == {
        "long": "failed", "greedy": "failed", "path": "failed", "fine": "done"}
    assert jobs["long"]["exit_reason"].startswith("TIMEOUT: ")
    assert jobs["greedy"]["exit_reason"].startswith("OUT_OF_MEMORY: ")
    assert jobs["path"]["exit_reason"] == (
        f"stdout_file: cannot open {missing}: No such file or directory")
    child = int(pid_file.read_text())
    wait_for(lambda: not psutil.pid_exists(child) or
             psutil.Process(child).status() == psutil.STATUS_ZOMBIE, timeout=10)


@pytest.mark.mpi
def test_a_job_needing_more_cpus_than_a_node_has_is_refused(tmp_path: Path,
                                                            jobbridge_home: Path) -> None:
    workflow = write(tmp_path / "wf.json", {"jobs": [
        {"id": "wide", "command": ["true"], "resources": {"cpus": 4096}}]})
    result = mpirun(*JOBBRIDGE, "run", workflow, "--scheduler", "mpi")
    assert result.returncode == 2, result.stderr
    assert "job 'wide' needs 4096 cpus: resource 'mpi' has " in result.stderr
    assert stored_rows(jobbridge_home) == (0, 0, 0)


def _start_long_workflow(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """mpirun running a job whose child sleeps (its pid in child.pid), and a dependent."""
    script = f'sleep 300 & echo $! > {tmp_path}/child.pid; wait'
    workflow = write(tmp_path / "wf.json", {"jobs": [
        {"id": "long", "command": ["sh", "-c", script]},
        {"id": "next", "command": ["true"]}], "dependencies": [["long", "next"]]})
    process = subprocess.Popen(["mpirun", "-n", "3", *JOBBRIDGE, "run", workflow, "--scheduler",
                                "mpi"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, **MPI_ENV})
    pid_file = tmp_path / "child.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    return process, pid_file


@pytest.mark.mpi
def test_stop_from_another_process_kills_the_job_tree(tmp_path: Path) -> None:
    process, pid_file = _start_long_workflow(tmp_path)
    child = int(pid_file.read_text())
    assert jb("stop", "1").returncode == 0
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    jobs = jobs_by_id()
    assert jobs["long"]["exit_status"] == constants.USER_KILLED
    assert jobs["next"]["exit_status"] == constants.EXIT_NOTRUN
    wait_for(lambda: not psutil.pid_exists(child) or
             psutil.Process(child).status() == psutil.STATUS_ZOMBIE, timeout=10)


@pytest.mark.mpi
def test_rank_0_dying_ends_mpirun_and_the_jobs(tmp_path: Path,
                                                 jobbridge_home: Path) -> None:
    process, pid_file = _start_long_workflow(tmp_path)
    child = int(pid_file.read_text())
    [engine] = (jobbridge_home / "engines").glob("*.lock")
    rank_0 = int(engine.stem.split("-")[-2])  # engine ids are host-pid-token
    os.kill(rank_0, signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode != 0
    wait_for(lambda: not psutil.pid_exists(child) or
             psutil.Process(child).status() == psutil.STATUS_ZOMBIE, timeout=30)
    # a later engine (no workers) ends the orphaned workflow, with a reason
    assert jb("wait", "1", "--timeout", "30").returncode == 1
    jobs = jobs_by_id()
    assert jobs["long"]["exit_status"] == constants.FINISHED_UNCLEAR_CONDITIONS
    assert "its MPI allocation ended before the job did" in jb("status", "1").stdout
    assert jobs["next"]["exit_status"] == constants.EXIT_NOTRUN


def _slurm_job_end(job_id: str, timeout: float = 60) -> tuple[str, str]:
    """``(JobState, ExitCode)`` once the job has ended (sbatch --wait polls for seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        fields = dict(item.split("=", 1) for item in subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
            check=True).stdout.split() if "=" in item)
        if fields["JobState"] not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return fields["JobState"], fields["ExitCode"]
        assert time.monotonic() < deadline, f"Slurm job {job_id} still {fields['JobState']}"
        time.sleep(0.2)


def _where_workflow(tmp_path: Path) -> str:
    return write(tmp_path / "wf.json", {"jobs": [
        {"id": "where", "command": ["sh", "-c", 'echo "slurm job $SLURM_JOB_ID"']},
        {"id": "then", "command": ["true"]},
        {"id": "bad", "command": ["sh", "-c", "exit 3"]}], "dependencies": [["where", "then"]]})


@pytest.mark.slurm
@pytest.mark.mpi
def test_whole_workflow_as_one_slurm_job(tmp_path: Path) -> None:
    """``sbatch -n 3 --wrap "mpirun -n 3 jobbridge run ..."``: the Slurm job's exit code
    is jobbridge's (1: a job failed)."""
    command = shlex.join(["mpirun", "-n", "3", *JOBBRIDGE, "run", _where_workflow(tmp_path),
                          "--scheduler", "mpi"])
    job_id = subprocess.run(["sbatch", "--parsable", "-n", "3", "-o", str(tmp_path / "out"),
                             "--wrap", command], capture_output=True, text=True, check=True,
                            env={**os.environ, **MPI_ENV}, cwd=tmp_path).stdout.strip()
    assert _slurm_job_end(job_id) == ("FAILED", "1:0"), (tmp_path / "out").read_text()
    jobs = jobs_by_id()
    assert [jobs[k]["status"] for k in ("where", "then", "bad")] == ["done", "done", "failed"]
    assert jb("logs", "1", "where").stdout == f"slurm job {job_id}\n"


def _srun_has_pmix() -> bool:
    if shutil.which("srun") is None:
        return False
    listed = subprocess.run(["srun", "--mpi=list"], capture_output=True, text=True, timeout=30)
    return "pmix" in listed.stdout + listed.stderr


@pytest.mark.slurm
@pytest.mark.mpi
def test_srun_launches_the_ranks_itself(tmp_path: Path) -> None:
    if not _srun_has_pmix():
        unavailable("this Slurm has no PMIx plugin (srun --mpi=list)")
    result = subprocess.run(["srun", "--mpi=pmix", "-n", "3", *JOBBRIDGE, "run",
                             _where_workflow(tmp_path), "--scheduler", "mpi"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "2/3 jobs succeeded" in result.stderr
    assert jb("logs", "1", "where").stdout.startswith("slurm job ")
