"""drmaa: the pure parts anywhere, its native specification, then the
conformance kit on the real Grid Engine that scripts/clusters/sge-up.sh starts
(``source scripts/clusters/env.sh`` first), marked ``sge`` (see tests/systems.py).
The Grid Engine cases drmaa shares with the sge scheduler are in test_grid_engine.py,
Grid Engine's formats in test_gridengine.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobbridge.configuration import Configuration
from jobbridge.model import EngineJob
from jobbridge.scheduler import Scheduler, build_scheduler
from jobbridge.schedulers import drmaa as drmaa_scheduler
from jobbridge.schedulers.common import job_name
from jobbridge.schedulers.drmaa import DrmaaScheduler
from jobbridge.testing import SchedulerConformance

ROOT = Path(__file__).resolve().parents[2]
def make_scheduler(**options: str) -> DrmaaScheduler:
    config = Configuration.from_dict("sge", {"scheduler_type": "drmaa",
                                             "scheduler_interval": "0.3", **options})
    scheduler = build_scheduler("drmaa", config)
    assert isinstance(scheduler, DrmaaScheduler)
    return scheduler


# --- no Grid Engine needed -----------------------------------------------------------------
def test_job_names_are_safe() -> None:
    assert job_name("step 1/2: ça") == "step_1_2___a"
    assert job_name("3d") == "j3d"
    assert job_name("") == "job"
    assert len(job_name("x" * 500)) == 100


@pytest.mark.sge
def test_native_specification(tmp_path: Path) -> None:
    scheduler = make_scheduler(native_specification="-P proj -v 'A=1 2'",
                               parallel_environment="mpi")
    try:
        spec = EngineJob(job_id="p", command=["true"], queue="long.q",
                         parallel_job_info={"nodes_number": 2, "cpu_per_node": 2},
                         resources={"memory_mb": 1000, "walltime_s": 90},
                         native_specification=["-l", "arch=lx amd64", "-A", 'say "x"'])
        script = tmp_path / "job.sh"
        assert scheduler.submit_argv(spec, script, "n") == [
            "-N", "n", "-q", "long.q", "-pe", "mpi", "4", "-l", "h_rt=90,h_vmem=250M",
            "-P", "proj", "-v", "A=1 2", "-l", "arch=lx amd64", "-A", 'say "x"', str(script)]
        assert drmaa_scheduler._quote("arch=lx amd64") == '"arch=lx amd64"'
        assert drmaa_scheduler._quote('say "x"') == "'say \"x\"'"
        spec.native_specification = "-l 'a=b c'"
        spec.parallel_job_info = None
        assert scheduler.submit_argv(spec, script, "n")[4:] == [
            "-l", "h_rt=90,h_vmem=1000M", "-P", "proj", "-v", "A=1 2", "-l", "a=b c",
            str(script)]
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
@pytest.mark.timeout(1800)
class TestDrmaaConformance(SchedulerConformance):
    job_timeout = 600  # Grid Engine's two slots are shared with other tests
    held_specification = ["-h"]
    queued_specification = ["-a", "210001010000"]  # a start time to come

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return make_scheduler()


@pytest.mark.sge
@pytest.mark.timeout(1800)
class TestDrmaaLibraryAloneConformance(SchedulerConformance):
    """As on a DRMS other than Grid Engine (no qstat or qacct on PATH): states from
    DRMAA's jobStatus, exits from its wait, kills through its control."""

    job_timeout = 600
    held_specification = ["-h"]
    queued_specification = ["-a", "210001010000"]

    @pytest.fixture(autouse=True)
    def _no_grid_engine_commands(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                 ) -> None:
        monkeypatch.setenv("PATH", str(tmp_path / "no-commands"))

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        scheduler = make_scheduler()
        assert not scheduler.grid_engine and not scheduler.arrays
        return scheduler
