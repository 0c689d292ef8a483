"""The one way tests say which real system they need (a pytest plugin, loaded by
conftest.py): mark a test ``slurm``, ``sge``, ``torque``, ``mpi``, ``pbspro``,
``ssh`` or ``browser``.

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
import pwd
import shlex
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

#: Slurm's Torque wrappers, kept off PATH (scripts/clusters/torque-wrappers-up.sh).
TORQUE_BIN = Path(os.environ.get("JOBBRIDGE_TORQUE_BIN", "/opt/jobbridge-torque/bin"))
#: How the real OpenPBS server is reached: its daemons run in a network namespace
#: (scripts/clusters/env.sh exports both, following openpbs-up.sh's knobs).
PBSPRO_HOST_COMMAND = shlex.split(os.environ.get("JOBBRIDGE_PBS_HOST_COMMAND",
                                                 "ip netns exec jbpbs"))
PBSPRO_BIN = Path(os.environ.get("JOBBRIDGE_PBS_BIN", "/opt/pbs/bin"))
#: The SSH "cluster" of scripts/clusters/sshd-up.sh: its state (keys, configs),
#: login node and jump host ports, and account (env.sh exports the knobs).
SSH_STATE = Path(os.environ.get("SSH_CI_STATE", "/var/tmp/jobbridge-ssh"))
SSH_PORT = int(os.environ.get("SSH_CI_PORT", "2222"))
SSH_JUMP_PORT = int(os.environ.get("SSH_CI_JUMP_PORT", "2223"))
SSH_USER = os.environ.get("SSH_CI_USER", "jbcluster")


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


def probe_ssh() -> str:
    if shutil.which("ssh") is None:
        return "no ssh client (scripts/clusters/sshd-up.sh installs OpenSSH)"
    client = SSH_STATE / "client"
    for path in (client / "id_ed25519", client / "id_ed25519_prompt", client / "known_hosts"):
        if not path.exists():
            return f"{path} is missing (run scripts/clusters/sshd-up.sh)"
    try:
        pwd.getpwnam(SSH_USER)
    except KeyError:
        return f"no user {SSH_USER} (run scripts/clusters/sshd-up.sh)"
    for port in (SSH_PORT, SSH_JUMP_PORT):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except OSError as error:
            return f"no sshd on 127.0.0.1:{port} (scripts/clusters/sshd-up.sh): {error}"
    return ""


#: The browser the dashboard's tests drive (scripts/browser-up.sh installs it).
CHROMIUM = Path(os.environ.get("JOBBRIDGE_CHROMIUM", "/usr/bin/chromium"))


def probe_browser() -> str:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (run scripts/browser-up.sh: Debian's chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    return ""


#: One probe per system: "" when it is usable, else why not.
PROBES: dict[str, Callable[[], str]] = {
    "slurm": probe_slurm, "sge": probe_sge, "torque": probe_torque, "mpi": probe_mpi,
    "pbspro": probe_pbspro, "ssh": probe_ssh, "browser": probe_browser,
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


#: Tests of one system run one after another in one worker when the suite runs in
#: parallel (pytest-xdist's ``--dist loadgroup``): they share its few slots, and
#: some stop its daemons. Torque's wrappers are Slurm's; the first match decides.
GROUPS = {"slurm": "slurm", "torque": "slurm", "pbspro": "pbspro", "sge": "sge",
          "ssh": "ssh", "browser": "browser", "mpi": "mpi", "soma": "soma"}


def pytest_itemcollected(item: pytest.Item) -> None:
    """Groups each test as it is collected (xdist reads the groups when collection
    is over, in its own pytest_collection_modifyitems)."""
    group = next((name for marker, name in GROUPS.items()
                  if item.get_closest_marker(marker) is not None), None)
    if group is not None:
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_runtest_setup(item: pytest.Item) -> None:
    for system in PROBES:
        if item.get_closest_marker(system) is None:
            continue
        reason = why_not(system)
        if reason:
            item.user_properties.append(("system missing", f"{system}\0{reason}"))
            unavailable(f"{system}: {reason}")
        item.user_properties.append(("system used", system))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collects what the tests used (in the main process, workers' included)."""
    for key, value in report.user_properties:
        if key == "system used":
            _used.add(str(value))
        elif key == "system missing":
            system, reason = str(value).split("\0", 1)
            _missing[system] = reason


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """The systems line, after every other summary (the outermost wrapper: after
    the durations and the short test summary), just above pytest's count line."""
    yield
    used = ", ".join(sorted(_used)) or "none"
    missing = "; ".join(f"{name} ({reason})" for name, reason in sorted(_missing.items()))
    line = f"systems used: {used}" + (f"; missing: {missing}" if missing else "")
    terminalreporter.write_line(line)
