"""The scheduler registry: built-ins and third-party schedulers found the same way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobbridge.configuration import Configuration
from jobbridge.errors import InputError, UnknownSchedulerError
from jobbridge.scheduler import (
    build_scheduler,
    describe_schedulers,
    get_scheduler_implementation,
    get_schedulers_list,
)

THIRD_PARTY = '''
from jobbridge.schedulers.local_basic import LocalScheduler


class EchoClusterScheduler(LocalScheduler):
    """A third-party scheduler: the local one under another name."""

    @classmethod
    def build_scheduler(cls, config):
        return cls(proc_nb=config.get_int("cpu_nb", 1))


class BrokenClusterScheduler(LocalScheduler):
    @classmethod
    def availability(cls):
        return False, "the brokencluster CLI is not installed"


class WrappedClusterScheduler(EchoClusterScheduler):
    """Declares how a command using it runs (as MPI's does: on every rank)."""

    @classmethod
    def run_command(cls, main):
        import sys
        print("wrappedcluster: command starts", file=sys.stderr)
        code = main()
        print(f"wrappedcluster: command ended with {code}", file=sys.stderr)
        return code
'''


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install a package the way pip would: a module plus a dist-info with entry points."""
    site = tmp_path / "site"
    (site / "jb_echocluster").mkdir(parents=True)
    (site / "jb_echocluster" / "__init__.py").write_text(THIRD_PARTY)
    info = site / "jb_echocluster-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: jb-echocluster\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [jobbridge.schedulers]
        echocluster = jb_echocluster:EchoClusterScheduler
        brokencluster = jb_echocluster:BrokenClusterScheduler
        wrappedcluster = jb_echocluster:WrappedClusterScheduler
        """))
    monkeypatch.syspath_prepend(str(site))
    yield site


def test_builtins_are_registered() -> None:
    names = dict(get_schedulers_list())
    assert {"local_basic", "slurm", "pbspro", "drmaa", "drmaa2", "mpi"} <= set(names)
    assert names["local_basic"] is True


def test_third_party_scheduler_is_found_by_all_three_functions(third_party: Path) -> None:
    implementation = get_scheduler_implementation("echocluster")
    assert implementation.__name__ == "EchoClusterScheduler"
    scheduler = build_scheduler("echocluster", Configuration.from_dict("x", {"cpu_nb": 3}))
    assert isinstance(scheduler, implementation)
    assert ("echocluster", True) in get_schedulers_list()
    assert ("brokencluster", False) in get_schedulers_list()
    reasons = {info.name: info.reason for info in describe_schedulers()}
    assert reasons["brokencluster"] == "the brokencluster CLI is not installed"


def test_third_party_scheduler_runs_a_workflow_from_the_cli(third_party: Path, tmp_path: Path
                                                            ) -> None:
    env = {**os.environ, "PYTHONPATH": str(third_party)}
    listed = subprocess.run([sys.executable, "-m", "jobbridge", "schedulers", "--json"],
                            env=env, capture_output=True, text=True, check=True)
    assert "echocluster" in [s["name"] for s in json.loads(listed.stdout)]
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"jobs": [{"id": "a", "command": ["true"]}]}))
    run = subprocess.run([sys.executable, "-m", "jobbridge", "run", str(workflow),
                          "--scheduler", "echocluster"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    refused = subprocess.run([sys.executable, "-m", "jobbridge", "run", str(workflow),
                              "--scheduler", "brokencluster"], env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "jobbridge: error: scheduler 'brokencluster' cannot work here: "
        "the brokencluster CLI is not installed"]


def test_a_scheduler_declares_how_a_command_runs(third_party: Path, tmp_path: Path) -> None:
    """``Scheduler.run_command``: the CLI names no backend (MPI's ranks are declared
    the same way); other commands and schedulers run plainly."""
    env = {**os.environ, "PYTHONPATH": str(third_party)}
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"jobs": [{"id": "a", "command": ["sh", "-c", "exit 3"]}]}))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jobbridge", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    wrapped = run("run", str(workflow), "--scheduler", "wrappedcluster")
    assert wrapped.returncode == 1
    lines = wrapped.stderr.splitlines()
    assert lines[0] == "wrappedcluster: command starts"
    assert lines[-1] == "wrappedcluster: command ended with 1"
    plain = run("run", str(workflow), "--scheduler", "echocluster")
    assert plain.returncode == 1 and "wrappedcluster" not in plain.stderr
    assert "wrappedcluster" not in run("list").stderr


def test_drmaa2_is_registered_and_says_why_it_cannot_work(tmp_path: Path) -> None:
    """The seed lists ``drmaa2``: no DRMAA 2 library here (and no backend yet), so it
    is listed as not usable, with the reason, and refused with it."""
    env = {**os.environ, "DRMAA2_LIBRARY_PATH": "/no/such/libdrmaa2.so"}
    listed = json.loads(subprocess.run([sys.executable, "-m", "jobbridge", "schedulers",
                                        "--json"], env=env, capture_output=True, text=True,
                                       check=True).stdout)
    [drmaa2] = [s for s in listed if s["name"] == "drmaa2"]
    assert drmaa2["enabled"] is False
    assert drmaa2["reason"].startswith("no DRMAA 2 library found")
    assert ("drmaa2", False) in get_schedulers_list()
    workflow = tmp_path / "wf.json"
    workflow.write_text(json.dumps({"jobs": [{"id": "a", "command": ["true"]}]}))
    refused = subprocess.run([sys.executable, "-m", "jobbridge", "run", str(workflow),
                              "--scheduler", "drmaa2"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.startswith("jobbridge: error: scheduler 'drmaa2' cannot work here: "
                                     "no DRMAA 2 library found")
    assert refused.stderr.count("\n") == 1
    library = tmp_path / "libdrmaa2.so"
    library.write_bytes(b"")
    implementation = get_scheduler_implementation("drmaa2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRMAA2_LIBRARY_PATH", str(library))
        enabled, reason = implementation.availability()
    assert not enabled and f"found the DRMAA 2 library {library}" in reason
    with pytest.raises(InputError, match="drmaa2"):
        build_scheduler("drmaa2", Configuration.from_dict("x", {}))


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownSchedulerError) as caught:
        get_scheduler_implementation("nosuch")
    message = str(caught.value)
    assert "nosuch" in message
    assert "local_basic" in message and "slurm" in message
