"""Readers of PBS Pro / OpenPBS and Torque command output, and PBS's exit rules.

Kept apart from :mod:`.pbspro` so that the scheduler reads as policy and this
module as format knowledge, each checked against real recorded output
(``tests/data/pbs``). Three ``qstat`` formats give the same shape, a dict per
job id like PBS Pro's JSON (``resources_used`` and ``Resource_List`` nested,
``Variable_List`` a dict):

- ``qstat -x -f -F json`` (PBS Pro, OpenPBS);
- ``qstat -x`` XML (Torque);
- ``qstat -f`` text (every flavour, Slurm's Torque wrappers included): an
  attribute per line, long values wrapped onto continuation lines that start
  with one TAB (or 8 spaces once a TAB was expanded), commas inside
  ``Variable_List`` values escaped as ``\\,``.

Exit rules (sources in ``tests/data/pbs/EXIT_CODES.md``): ``Exit_status`` may be
absent or a string; >= 256 means the top process was killed by signal
``value - 256``; 129..192 is a shell's ``128 + signal``; a negative value is a
``JOB_EXEC_*`` code set by PBS itself (the job did not run, or was stopped, by
PBS), whose meaning differs between PBS Pro and Torque below -7.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from .. import constants
from .batch import JobRecord

PBSPRO, TORQUE = "pbspro", "torque"

#: Letters of jobs that ended (PBS Pro F, Torque C, PBS Pro subjob X).
ENDED_STATES = frozenset("FCX")

_COMMON_CODES = {
    -1: ("JOB_EXEC_FAIL1", "job exec failed, before files, no retry"),
    -2: ("JOB_EXEC_FAIL2", "job exec failed, after files, no retry"),
    -3: ("JOB_EXEC_RETRY", "job execution failed, do retry"),
    -4: ("JOB_EXEC_INITABT", "job aborted on MOM initialization"),
    -5: ("JOB_EXEC_INITRST", "job aborted on MOM init, chkpt, no migrate"),
    -6: ("JOB_EXEC_INITRMG", "job aborted on MOM init, chkpt, ok migrate"),
    -7: ("JOB_EXEC_BADRESRT", "job restart failed"),
}
#: Negative ``Exit_status`` values: (name, meaning) per flavour (PBS ``job.h``).
EXEC_CODES: dict[str, dict[int, tuple[str, str]]] = {
    PBSPRO: {
        **_COMMON_CODES,
        -10: ("JOB_EXEC_FAILUID", "invalid uid/gid for job"),
        -11: ("JOB_EXEC_RERUN", "job rerun"),
        -12: ("JOB_EXEC_CHKP", "job was checkpointed and killed"),
        -13: ("JOB_EXEC_FAIL_PASSWORD", "job failed due to a bad password"),
        -14: ("JOB_EXEC_RERUN_SIS_FAIL", "job rerun"),
        -15: ("JOB_EXEC_QUERST", "requeue job for restart from checkpoint"),
        -16: ("JOB_EXEC_FAILHOOK_RERUN", "job exec failed due to a hook rejection, requeued"),
        -17: ("JOB_EXEC_FAILHOOK_DELETE", "job exec failed due to a hook rejection, deleted"),
        -18: ("JOB_EXEC_HOOK_RERUN", "a hook requested for job to be requeued"),
        -19: ("JOB_EXEC_HOOK_DELETE", "a hook requested for job to be deleted"),
        -20: ("JOB_EXEC_RERUN_MS_FAIL", "mother superior connection failed"),
        -21: ("JOB_EXEC_FAIL_SECURITY", "security breach in PBS directory"),
        -22: ("JOB_EXEC_HOOKERROR", "unexpected hook exception or hook timeout"),
        -23: ("JOB_EXEC_FAIL_KRB5", "no kerberos credentials supplied"),
        -24: ("JOB_EXEC_KILL_NCPUS_BURST", "killed for exceeding ncpus (burst)"),
        -25: ("JOB_EXEC_KILL_NCPUS_SUM", "killed for exceeding ncpus (sum)"),
        -26: ("JOB_EXEC_KILL_VMEM", "killed for exceeding vmem"),
        -27: ("JOB_EXEC_KILL_MEM", "killed for exceeding mem"),
        -28: ("JOB_EXEC_KILL_CPUT", "killed for exceeding cput"),
        -29: ("JOB_EXEC_KILL_WALLTIME", "killed for exceeding walltime"),
        -30: ("JOB_EXEC_JOINJOB", "job exec failed due to join job error"),
        -31: ("JOB_EXEC_KILL_HPMEM", "killed for exceeding hpmem"),
        -32: ("JOB_EXEC_RERUN_ZOMBIE_JOB", "MoM lost the job (re-imaged or hung)"),
    },
    TORQUE: {
        **_COMMON_CODES,
        -8: ("JOB_EXEC_CMDFAIL", "exec() of user command failed"),
        -9: ("JOB_EXEC_STDOUTFAIL", "could not create/open stdout stderr files"),
        -10: ("JOB_EXEC_OVERLIMIT_MEM", "job exceeded a memory limit"),
        -11: ("JOB_EXEC_OVERLIMIT_WT", "job exceeded a walltime limit"),
        -12: ("JOB_EXEC_OVERLIMIT_CPUT", "job exceeded a cpu time limit"),
        -13: ("JOB_EXEC_RETRY_CGROUP", "could not create the job's cgroups"),
        -14: ("JOB_EXEC_RETRY_PROLOGUE", "prologue failed"),
    },
}
#: The reason word of the codes that mean a limit was hit: the words Slurm's states
#: use, which ``retry_on`` matches whatever the batch system.
LIMIT_WORDS: dict[str, dict[int, str]] = {
    PBSPRO: {-26: "OUT_OF_MEMORY", -27: "OUT_OF_MEMORY", -29: "TIMEOUT", -31: "OUT_OF_MEMORY"},
    TORQUE: {-10: "OUT_OF_MEMORY", -11: "TIMEOUT"},
}
_MAX_SIGNAL = 64
_MAX_COMMENT = 160
_PBS_SUBSTATE_TERMINATED = 91  # PBS Pro F: deleted or terminated before it ran


# --- versions --------------------------------------------------------------------------------


def parse_version(text: str) -> tuple[str, str] | None:
    """``(implementation, version)`` from ``qstat --version`` (stdout + stderr), if known.

    PBS Pro prints ``pbs_version = X``; Torque ``version: X`` (2.x) or ``Version: X``
    plus a ``Commit:`` line (4.x on). Anything else (Slurm's wrappers print their
    usage) is None.
    """
    for line in text.splitlines():
        key, sep, value = line.partition("=" if "=" in line else ":")
        key = key.strip().lower()
        if sep and value.strip() and key == "pbs_version":
            return PBSPRO, value.strip()
        if sep and value.strip() and key == "version":
            return TORQUE, value.strip()
    return None


def major_version(version: str) -> int | None:
    """The release number a PBS Pro version starts with: ``PBSPro_11.1.0.111761`` ->
    11, ``19.0.0`` -> 19, ``2025.2.0.2025...`` -> 2025; None if there is none."""
    match = re.search(r"\d+", version)
    return int(match[0]) if match else None


# --- qstat formats ---------------------------------------------------------------------------


def parse_json(text: str) -> dict[str, dict[str, Any]]:
    """Jobs of ``qstat -f -F json``; the envelope without ``Jobs`` (no jobs, or a
    server error) gives ``{}``. Raises ValueError on invalid JSON."""
    if not text.strip():
        return {}
    data = json.loads(text)
    jobs = data.get("Jobs") if isinstance(data, dict) else None
    if jobs is None:
        return {}
    if not isinstance(jobs, dict) or not all(isinstance(j, dict) for j in jobs.values()):
        raise ValueError("qstat JSON: 'Jobs' is not an object of job objects")
    return {str(job_id): job for job_id, job in jobs.items()}


def parse_xml(text: str) -> dict[str, dict[str, Any]]:
    """Jobs of Torque's ``qstat -x``. Raises ValueError on invalid XML."""
    if not text.strip():
        return {}
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as error:
        raise ValueError(f"qstat XML: {error}") from None
    jobs: dict[str, dict[str, Any]] = {}
    for element in root.iter("Job"):
        attrs = _xml_dict(element)
        job_id = str(attrs.pop("Job_Id", "")).strip()
        if job_id:
            jobs[job_id] = _normalize(attrs)
    return jobs


def _xml_dict(element: ET.Element) -> dict[str, Any]:
    return {child.tag: _xml_dict(child) if len(child) else (child.text or "")
            for child in element}


_ATTRIBUTE = re.compile(r"(?P<key>[^\s=]+) = ?(?P<value>.*)")


def parse_text(text: str) -> dict[str, dict[str, Any]]:
    """Jobs of ``qstat -f`` text output (PBS Pro, Torque, Slurm's wrappers).

    Attribute lines are indented by the block's first attribute line (4 spaces,
    or a TAB in Slurm's wrappers); a value wrapped by qstat continues on lines
    starting with a TAB or 8 spaces, glued without separator; a line indented by
    neither is a raw newline inside the value (Torque prints ``BASH_FUNC_*``
    values unescaped).
    """
    blocks: dict[str, dict[str, str]] = {}
    flat: dict[str, str] = {}
    indent: str | None = None
    key: str | None = None
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            flat, indent, key = {}, None, None
            blocks[line.partition(":")[2].strip()] = flat
            continue
        if not line.strip() or not blocks:
            continue
        if indent is None:
            indent = line[:len(line) - len(line.lstrip())]
        body = line[len(indent):] if line.startswith(indent) else None
        match = _ATTRIBUTE.fullmatch(body) if body and not body[0].isspace() else None
        if match:
            key = match["key"]
            flat[key] = match["value"]
        elif key is None:
            continue
        elif line.startswith("\t"):
            flat[key] += line[1:]
        elif line.startswith(" " * 8):
            flat[key] += line[8:]
        else:
            flat[key] += "\n" + line
    return {job_id: _normalize(_nest(attrs)) for job_id, attrs in blocks.items()}


def _nest(flat: Mapping[str, str]) -> dict[str, Any]:
    """``resources_used.mem`` -> ``{"resources_used": {"mem": ...}}``, as in JSON."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        group, dot, name = key.partition(".")
        if dot and not isinstance(nested.get(group, {}), str):
            nested.setdefault(group, {})[name] = value
        else:
            nested[key] = value
    return nested


def _normalize(attrs: dict[str, Any]) -> dict[str, Any]:
    """Make text and XML output look like JSON's: ``Variable_List`` as a dict."""
    variables = attrs.get("Variable_List")
    if isinstance(variables, str):
        attrs["Variable_List"] = parse_variable_list(variables)
    return attrs


def parse_variable_list(text: str) -> dict[str, str]:
    """``K=V,K2=V2`` where a comma inside a value is escaped as ``\\,``."""
    variables: dict[str, str] = {}
    for item in re.split(r"(?<!\\),", text):
        name, _, value = item.partition("=")
        if name:
            variables[name] = value.replace("\\,", ",")
    return variables


# --- exit and usage --------------------------------------------------------------------------


def job_record(attrs: Mapping[str, Any], flavour: str) -> JobRecord:
    """What a job's attributes say: its state letter and, once ended, its exit.

    An ``Exit_status`` on a job that has not ended (a requeued R, a held job after
    failed starts) is left over from an earlier attempt and ignored.
    """
    state = str(attrs.get("job_state", "")).strip()
    if state == "Q" and str(attrs.get("Hold_Types", "n")).strip() not in ("", "n"):
        state = "H"  # a subjob of a held array: Q, with the array's holds
    record = JobRecord(state, resource_usage=resource_usage(attrs.get("resources_used")))
    comment = str(attrs.get("comment") or "").strip()
    if len(comment) > _MAX_COMMENT:  # PBS lists every node a big job ran on
        comment = comment[:_MAX_COMMENT - 3] + "..."
    if state not in ENDED_STATES:
        record.reason = comment or None  # a queued job's: why it does not run yet
        return record
    raw = attrs.get("Exit_status", attrs.get("exit_status"))
    if raw is None:
        if state == "F" and _int(attrs.get("substate")) == _PBS_SUBSTATE_TERMINATED:
            record.exit_status = constants.EXIT_ABORTED
            record.reason = "PBS terminated the job before it ran" + (
                f": {comment}" if comment else "")
        return record
    value = _int(raw)
    if value is None:
        record.reason = f"unreadable Exit_status {raw!r}"
    elif value < 0:
        name, meaning = EXEC_CODES[flavour].get(value, ("JOB_EXEC_?", "unknown PBS code"))
        record.exit_status = constants.EXIT_ABORTED
        word = LIMIT_WORDS[flavour].get(value)
        record.reason = (f"{word}: " if word else "") + f"Exit_status {value} {name}: {meaning}" + (
            f" ({comment})" if comment else "")
    elif 256 < value <= 256 + _MAX_SIGNAL:
        record.term_sig = value - 256
        record.reason = f"Exit_status {value}: killed by signal {value - 256}"
    elif 128 < value <= 128 + _MAX_SIGNAL:
        record.term_sig = value - 128
        record.reason = f"Exit_status {value}: the job shell reports signal {value - 128}"
    else:
        record.exit_value = value
    return record


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


_USAGE_KEYS = ("cpupercent", "cput", "mem", "ncpus", "vmem", "walltime")
_UNITS = {"b": 1 / 1024, "kb": 1, "mb": 1024, "gb": 1024**2, "tb": 1024**3, "pb": 1024**4}
_SIZE = re.compile(r"(\d+)\s*([kmgtp]?b)", re.IGNORECASE)
_DURATION = re.compile(r"\d+:\d\d:\d\d")


def resource_usage(used: Any) -> str | None:
    """``resources_used`` as the API's string: ``cpupercent=.. cput=HH:MM:SS mem=..kb``.

    Sizes become kb, durations HH:MM:SS (PBS prints either form or plain
    seconds); values in no known form are left out rather than passed on.
    """
    if not isinstance(used, Mapping):
        return None
    items = []
    for key in _USAGE_KEYS:
        text = str(used.get(key, "")).strip()
        if key in ("mem", "vmem"):
            size = _SIZE.fullmatch(text)
            text = (f"{int(int(size[1]) * _UNITS[size[2].lower()])}kb" if size else "")
        elif key in ("cput", "walltime") and text.isdigit():
            seconds = int(text)
            text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        elif key in ("cput", "walltime"):
            text = text if _DURATION.fullmatch(text) else ""
        elif not text.isdigit():
            text = ""
        if text:
            items.append(f"{key}={text}")
    return " ".join(items) or None
