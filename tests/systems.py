"""The one way tests say which real system they need (a pytest plugin, loaded by
conftest.py): mark a test ``slurm``, ``sge``, ``torque``, ``mpi`` or ``pbspro``.

Before a marked test runs, its system is probed once per run (:data:`PROBES`).
Where it is missing or does not answer, the test is skipped saying why, except
under ``CI`` (``CI=true``): there it fails with the same reason, so that CI
cannot pass by skipping a backend. The run ends with one line saying which
systems were used and which were missing.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

#: Slurm's Torque wrappers, kept off PATH (scripts/clusters/torque-wrappers-up.sh).
TORQUE_BIN = Path(os.environ.get("JOBBRIDGE_TORQUE_BIN", "/opt/jobbridge-torque/bin"))
#: How the real OpenPBS server is reached: its daemons run in a network namespace.
PBSPRO_HOST_COMMAND = ["ip", "netns", "exec", "jbpbs"]
PBSPRO_BIN = Path("/opt/pbs/bin")


def _answer(argv: list[str], timeout: float = 30) -> tuple[int, str]:
    """``(exit status, output)`` of a probe command; 127 when it cannot run."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 127, str(error)
    return done.returncode, (done.stdout + done.stderr).strip()


def probe_slurm() -> str:
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (run scripts/clusters/slurm-up.sh)"
    code, text = _answer(["scontrol", "ping"])
    if code != 0 or "UP" not in text:
        return f"slurmctld is not up (scripts/clusters/slurm-up.sh): {text}"
    return ""


def probe_sge() -> str:
    from jobbridge.schedulers.drmaa import DrmaaScheduler

    enabled, reason = DrmaaScheduler.availability()
    if not enabled:
        return f"the drmaa scheduler is disabled: {reason}"
    if not os.environ.get("SGE_ROOT"):
        return "SGE_ROOT is not set (source scripts/clusters/env.sh)"
    if shutil.which("qstat") is None:
        return "Grid Engine's qstat is not on PATH (run scripts/clusters/sge-up.sh)"
    code, text = _answer(["qstat", "-f"])
    if code != 0:
        return f"Grid Engine does not answer (scripts/clusters/sge-up.sh): {text}"
    return ""


def probe_torque() -> str:
    if not (TORQUE_BIN / "qsub").exists():
        return (f"Slurm's Torque wrappers are not in {TORQUE_BIN} "
                "(run scripts/clusters/torque-wrappers-up.sh, or set JOBBRIDGE_TORQUE_BIN)")
    code, text = _answer([str(TORQUE_BIN / "qstat")])
    if code not in (0, 153):
        return f"{TORQUE_BIN}/qstat fails (is Slurm up?): {text}"
    return ""


def probe_mpi() -> str:
    if shutil.which("mpirun") is None:
        return "mpirun not found (scripts/clusters/mpi-up.sh installs Open MPI)"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install 'jobbridge[mpi]')"
    return ""


def probe_pbspro() -> str:
    qstat = PBSPRO_BIN / "qstat"
    if not qstat.exists():
        return f"OpenPBS is not installed ({qstat} missing: run scripts/clusters/openpbs-up.sh)"
    code, text = _answer([*PBSPRO_HOST_COMMAND, str(qstat), "-B"])
    if code != 0:
        return f"the OpenPBS server does not answer `{' '.join(PBSPRO_HOST_COMMAND)} {qstat} -B`" \
               f" (scripts/clusters/openpbs-up.sh): {text}"
    return ""


#: One probe per system: "" when it is usable, else why not.
PROBES: dict[str, Callable[[], str]] = {
    "slurm": probe_slurm, "sge": probe_sge, "torque": probe_torque, "mpi": probe_mpi,
    "pbspro": probe_pbspro,
}
_used: set[str] = set()
_missing: dict[str, str] = {}


@functools.cache
def why_not(system: str) -> str:
    """Why ``system`` cannot be used in this run ("" when it can); probed once."""
    return PROBES[system]()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip the current test because something it needs is missing; fail under CI."""
    if in_ci():
        pytest.fail(f"needed under CI, but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for system in PROBES:
        if item.get_closest_marker(system) is None:
            continue
        reason = why_not(system)
        if reason:
            _missing[system] = reason
            unavailable(f"{system}: {reason}")
        _used.add(system)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    used = ", ".join(sorted(_used)) or "none"
    missing = "; ".join(f"{name} ({reason})" for name, reason in sorted(_missing.items()))
    line = f"systems used: {used}" + (f"; missing: {missing}" if missing else "")
    terminalreporter.write_line(line)
