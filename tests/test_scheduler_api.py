"""The Scheduler API as the seed documents it, on every built-in scheduler, and the
truth of what a scheduler answers about ids it did not give (no system needed)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jbcli import JOBBRIDGE, write_json
from jobbridge import constants
from jobbridge.configuration import Configuration
from jobbridge.model import EngineJob
from jobbridge.scheduler import (
    Scheduler,
    build_scheduler,
    describe_schedulers,
    get_scheduler_implementation,
)
from jobbridge.schedulers import batch
from jobbridge.schedulers.batch import BatchScheduler
from jobbridge.schedulers.drmaa import DrmaaScheduler
from jobbridge.schedulers.local_basic import LocalScheduler
from jobbridge.schedulers.pbspro import PBSProScheduler
from jobbridge.schedulers.sge import SGEScheduler
from jobbridge.schedulers.slurm import SlurmScheduler
from jobbridge.testing import wait_for_status

BUILT_IN = ["local_basic", "slurm", "pbspro", "drmaa", "drmaa2", "sge", "mpi"]


def test_every_built_in_scheduler_is_checked() -> None:
    assert sorted(info.name for info in describe_schedulers()
                  if info.target.startswith("jobbridge.")) == sorted(BUILT_IN)


@pytest.mark.parametrize("name", BUILT_IN)
def test_job_submission_has_the_seed_signature(name: str) -> None:
    """``job_submission(jobs, signal_end=True)``, as the seed's PBSProScheduler has it
    (each scheduler's kit also calls it so: ``test_submission_takes_one_job_and_signal_end``)."""
    implementation = get_scheduler_implementation(name)
    for cls in (Scheduler, implementation):
        parameters = inspect.signature(cls.job_submission).parameters
        assert list(parameters)[:3] == ["self", "jobs", "signal_end"], cls
        assert parameters["signal_end"].default is True


def test_the_mpi_stand_in_outside_mpirun_knows_only_mpi_ids() -> None:
    """An engine outside mpirun sees an ended allocation: its jobs failed; an id no MPI
    scheduler gave is undetermined, as everywhere."""
    gone = build_scheduler("mpi", Configuration.from_dict("mpi", {"scheduler_type": "mpi"}))
    assert gone.get_job_status("mpi.0a1b2c.7") == constants.FAILED
    assert gone.get_job_status("99999999") == constants.UNDETERMINED
    assert gone.get_jobs_status(["99999999"]) == {"99999999": constants.UNDETERMINED}
    assert gone.get_job_exit_info("99999999")[0] == constants.EXIT_UNDETERMINED


def test_local_ids_of_a_live_runner_it_never_started_are_undetermined(tmp_path: Path) -> None:
    """Another process's runner is alive: an id its journal does not show is not
    guessed queued; a job it runs is running; kill of the unknown id is a no-op."""
    owner = LocalScheduler(proc_nb=1)
    try:
        [running] = owner.job_submission([EngineJob("long", ["sleep", "60"])])
        assert running is not None
        wait_for_status(owner, [running], {constants.RUNNING}, timeout=30)
        runner_id = running.rpartition(".")[0]
        never = f"{runner_id}.999"
        code = (
            "import sys\n"
            "from jobbridge.schedulers.local_basic import LocalScheduler\n"
            "s = LocalScheduler(proc_nb=1)\n"
            "print(s.get_job_status(sys.argv[1]), s.get_job_status(sys.argv[2]))\n"
            "s.kill_job(sys.argv[2])\n"
            "print(s.get_job_status(sys.argv[2]), s.get_job_exit_info(sys.argv[2])[0])\n")
        result = subprocess.run([sys.executable, "-c", code, running, never],
                                capture_output=True, text=True, timeout=60, check=True)
        assert result.stdout.split("\n")[:2] == [
            f"{constants.RUNNING} {constants.UNDETERMINED}",
            f"{constants.UNDETERMINED} {constants.EXIT_UNDETERMINED}"]
    finally:
        if running is not None:
            owner.kill_job(running)
        owner.close()


def test_a_local_job_needing_more_cpus_than_the_machine_is_refused(tmp_path: Path) -> None:
    scheduler = LocalScheduler(proc_nb=2)
    try:
        err = tmp_path / "err"
        ids = scheduler.job_submission([
            EngineJob("big", ["true"], stderr_file=str(err), resources={"cpus": 3}),
            EngineJob("fits", ["true"], resources={"cpus": 2})])
        assert ids[0] is None and ids[1] is not None
        assert err.read_text() == ("jobbridge: local_basic refused the job: it needs 3 CPUs, "
                                   "this machine has 2 slots\n")
        assert oct(err.stat().st_mode & 0o777) == oct(0o600)
        wait_for_status(scheduler, [ids[1]], timeout=30)
    finally:
        scheduler.close()


def test_job_outputs_are_created_private(tmp_path: Path) -> None:
    """Whatever the umask: a job's output files are 0600 when jobbridge creates them
    (they may hold secrets); an existing file keeps its mode."""
    shared = tmp_path / "shared.out"
    shared.write_text("")
    shared.chmod(0o644)
    old = os.umask(0o022)
    scheduler = LocalScheduler(proc_nb=1)
    try:
        ids = scheduler.job_submission([
            EngineJob("new", ["echo", "x"], stdout_file=str(tmp_path / "new.out"),
                      stderr_file=str(tmp_path / "new.err")),
            EngineJob("old", ["echo", "y"], stdout_file=str(shared), join_stderrout=True)])
        wait_for_status(scheduler, [str(job_id) for job_id in ids], timeout=30)
    finally:
        scheduler.close()
        os.umask(old)
    assert (tmp_path / "new.out").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "new.err").stat().st_mode & 0o777 == 0o600
    assert shared.stat().st_mode & 0o777 == 0o644
    assert shared.read_text() == "y\n"


def test_resource_usage_keeps_soma_items_and_adds_exact_seconds(tmp_path: Path) -> None:
    """A job of a tenth of a second: the HH:MM:SS items round to zero, wall_s does not
    (``true`` may take less than the half millisecond wall_s rounds away)."""
    workflow = write_json(tmp_path / "wf.json",
                          {"jobs": [{"id": "quick", "command": ["sleep", "0.1"]}]})
    result = subprocess.run([*JOBBRIDGE, "run", "--json", str(workflow)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [job] = json.loads(result.stdout)["jobs"]
    usage = dict(item.split("=", 1) for item in job["resource_usage"].split())
    assert list(usage) == ["cput", "mem", "walltime", "cpupercent", "ncpus", "cpu_s", "wall_s"]
    assert usage["walltime"] == "00:00:00"
    assert 0.09 <= float(usage["wall_s"]) < 5 and float(usage["cpu_s"]) >= 0
    assert len(usage["wall_s"].split(".")[1]) == 3  # milliseconds


def test_the_batch_base_says_what_a_backend_defines() -> None:
    """Its hooks are abstract (a backend missing one cannot be built), and each
    optional hook is one a backend overrides: no dead hooks."""
    assert BatchScheduler.__abstractmethods__ == {"build_scheduler", "submit_argv",
                                                  "cancel_argv", "query_status"}
    doc = inspect.getdoc(batch)
    assert doc is not None
    optional = ("cancel_many_argv", "parse_submit_output", "send_submission", "send_cancel",
                "record_status", "submitted_status", "ended_records", "answers_ended_jobs",
                "find_by_name", "is_transient", "refusal_text", "limit_notes",
                "array_element_id", "array_chunk")
    for hook in ("submit_argv", "cancel_argv", "query_status", *optional):
        assert f"``{hook}``" in doc or f"~BatchScheduler.{hook}`" in doc, hook
    backends = (SlurmScheduler, PBSProScheduler, SGEScheduler, DrmaaScheduler)
    for hook in optional:
        assert any(hook in vars(backend) for backend in backends), hook
    overridable = {name for name, value in vars(BatchScheduler).items()
                   if inspect.isfunction(value) and not name.startswith("_")
                   and any(name in vars(backend) for backend in backends)}
    assert overridable - BatchScheduler.__abstractmethods__ - {"build_scheduler"} <= {
        *optional, "options_from_config", "check_config", "availability",
        "close"}, "undocumented hook"  # close: the Scheduler API's (drmaa's session)
    assert "NotImplementedError" not in inspect.getsource(batch)


def test_shared_logic_has_one_definition() -> None:
    """List normalisation, get_job_status through the bulk query, container wrapping,
    notes to a job's output and the lost-job timer are each written once."""
    sources = {path.name: path.read_text(encoding="utf-8")
               for path in Path(batch.__file__).parent.glob("*.py")}

    def where(text: str) -> list[str]:
        return sorted(name for name, source in sources.items() if text in source)

    assert where("isinstance(jobs, EngineJob)") == []
    assert where("def get_job_status") == ["mpi.py"]  # the stand-in outside mpirun only
    assert where("wrap_in_container(job.command") == ["common.py"]
    assert where('open(target, "a') == []
    assert where("missing_since") == []
    assert where("as the seed did") == []
