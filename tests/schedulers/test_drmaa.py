"""drmaa: the pure parts (state table, templates, the exec stub) anywhere, then the
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
    job_name,
    stub_spec,
)
from jobbridge.testing import SchedulerConformance

ROOT = Path(__file__).resolve().parents[2]
def make_scheduler(**options: str) -> DrmaaScheduler:
    config = Configuration.from_dict("sge", {"scheduler_type": "drmaa",
                                             "scheduler_interval": "0.3", **options})
    scheduler = build_scheduler("drmaa", config)
    assert isinstance(scheduler, DrmaaScheduler)
    return scheduler


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
@pytest.mark.timeout(1800)
class TestDrmaaConformance(SchedulerConformance):
    job_timeout = 600  # Grid Engine's two slots are shared with other tests
    held_specification = ["-h"]
    queued_specification = ["-a", "210001010000"]  # a start time to come

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return make_scheduler()
