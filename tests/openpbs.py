"""The real OpenPBS that scripts/clusters/openpbs-up.sh runs, as tests reach it
(tests needing it are marked ``pbspro``: systems.py probes it).

Its daemons live in a private network namespace, so every PBS command goes
through a prefix: ``ip netns exec jbpbs`` for root, and for the ordinary user
``pbsuser`` (whose jobs get PBS's true ``Exit_status``: pbs_mom does not reap
root's) the same through one sudo rule. scripts/clusters/env.sh exports both.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

from systems import PBSPRO_BIN as BIN
from systems import PBSPRO_HOST_COMMAND as HOST_COMMAND

USER = os.environ.get("JOBBRIDGE_PBS_USER", "pbsuser")
USER_HOST_COMMAND = shlex.split(os.environ.get(
    "JOBBRIDGE_PBS_USER_HOST_COMMAND",
    f"sudo -n /usr/sbin/ip netns exec jbpbs /usr/sbin/runuser -u {USER} --"))
REPO = Path(__file__).resolve().parent.parent
UP = REPO / "scripts" / "clusters" / "openpbs-up.sh"


def pbs(*argv: str, check: bool = True, timeout: float = 60
        ) -> subprocess.CompletedProcess[str]:
    """Run a PBS command as root: ``pbs("qstat", "-B")``."""
    return subprocess.run([*HOST_COMMAND, str(BIN / argv[0]), *argv[1:]], capture_output=True,
                          text=True, timeout=timeout, check=check, cwd="/")


def attributes(job_id: str) -> dict[str, Any]:
    """What ``qstat -x -f -F json ID`` says of one job."""
    jobs: dict[str, dict[str, Any]] = json.loads(
        pbs("qstat", "-x", "-f", "-F", "json", job_id).stdout)["Jobs"]
    return jobs[job_id]


def resource(name: str = "openpbs", host_command: list[str] | None = None, **keys: str) -> str:
    """A configuration section for this OpenPBS (root's prefix unless told)."""
    lines = [f"[{name}]", "scheduler_type = pbspro", f"pbs_bin_dir = {BIN}",
             f"pbs_host_command = {shlex.join(host_command or HOST_COMMAND)}",
             "scheduler_interval = 2", "min_scheduler_interval = 0.2",
             *(f"{key} = {value}" for key, value in keys.items())]
    return "\n".join(lines) + "\n"

