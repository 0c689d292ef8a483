"""Every file a job leaves under ``$JOBBRIDGE_HOME`` is 0600 and every folder 0700,
whatever the umask, on every scheduler: the batch script and the job's spec (they
hold its environment and paths), the batch system's own output, the wrapper's exit
file and the job's logs, which the batch system, the DRMAA library or the local
runner may be the one to open."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

import openpbs
from jobbridge import constants
from jobbridge.configuration import Configuration
from jobbridge.model import EngineJob
from jobbridge.scheduler import build_scheduler
from jobbridge.testing import wait_for_status
from systems import TORQUE_BIN

FAST = {"scheduler_interval": "1", "min_scheduler_interval": "0.2"}
#: The batch base's files of a job (the cases: a scheduler's configuration, and
#: those of its files it must have left besides the job's logs).
BATCH_FILES = {"job.sh", "job.spec", "batch.out", "exit.json"}
CASES = [
    pytest.param({"scheduler_type": "local_basic", "cpu_nb": "1"}, set(), id="local_basic"),
    pytest.param({"scheduler_type": "slurm", **FAST}, BATCH_FILES, id="slurm",
                 marks=pytest.mark.slurm),
    pytest.param({"scheduler_type": "pbspro", "pbs_bin_dir": str(TORQUE_BIN), **FAST},
                 BATCH_FILES, id="torque", marks=pytest.mark.torque),
    pytest.param({"scheduler_type": "pbspro", "pbs_bin_dir": str(openpbs.BIN),
                  "pbs_host_command": shlex.join(openpbs.HOST_COMMAND), **FAST},
                 BATCH_FILES, id="openpbs", marks=pytest.mark.pbspro),
    pytest.param({"scheduler_type": "sge", **FAST}, BATCH_FILES, id="sge",
                 marks=[pytest.mark.sge, pytest.mark.timeout(900)]),
    pytest.param({"scheduler_type": "drmaa", "scheduler_interval": "1"}, set(), id="drmaa",
                 marks=[pytest.mark.sge, pytest.mark.timeout(900)]),
]


@pytest.mark.parametrize(("config", "batch_files"), CASES)
def test_every_file_under_the_home_is_private(config: dict[str, str], batch_files: set[str],
                                              jobbridge_home: Path) -> None:
    logs = jobbridge_home / "logs"
    logs.mkdir(mode=0o700)
    old = os.umask(0o022)
    try:
        scheduler = build_scheduler(config["scheduler_type"],
                                    Configuration.from_dict("private", config))
        try:
            [job_id] = scheduler.job_submission([EngineJob(
                "p", ["sh", "-c", "echo out; echo err >&2"], working_directory=str(logs),
                stdout_file=str(logs / "p.out"), stderr_file=str(logs / "p.err"))])
            assert job_id is not None
            assert wait_for_status(scheduler, [job_id], timeout=600) == {
                job_id: constants.DONE}
            modes = {str(path): (path.is_dir(), oct(path.stat().st_mode & 0o777))
                     for path in jobbridge_home.rglob("*") if not path.is_symlink()}
            assert scheduler.get_job_exit_info(job_id)[:2] == (constants.FINISHED_REGULARLY, 0)
        finally:
            scheduler.close()
    finally:
        os.umask(old)
    names = {Path(path).name for path in modes}
    assert names >= batch_files | {"p.out", "p.err"}
    wrapper = {path for path in modes if Path(path).parent.name == ".wrapper"}
    assert len(wrapper) == (config["scheduler_type"] != "local_basic")  # built once
    assert modes == {path: (folder, oct(0o700 if folder or path in wrapper else 0o600))
                     for path, (folder, _) in modes.items()}
    assert (logs / "p.out").read_text() == "out\n" and (logs / "p.err").read_text() == "err\n"
