"""soma-workflow's server configuration read as a jobbridge resource.

soma-workflow's ``[RESOURCE]`` sections use jobbridge's key names for what both
have (``SCHEDULER_TYPE``, ``CPU_NB``, ``MAX_CPU_NB``, ``SCHEDULER_INTERVAL``,
``NATIVE_SPECIFICATION``, ``QUEUES``), their own syntax for some values
(``MAX_JOB_IN_QUEUE = {15}``, ``CONTAINER_COMMAND = ['docker', 'run', ...]``) and
keys for their own machinery (database, logs, server). :func:`soma_options`
turns such a section into jobbridge options: values in soma-workflow's syntax
are rewritten, keys about soma-workflow's machinery are dropped, keys naming
what jobbridge cannot do yet are refused by name; any other key is left for
jobbridge's own checks. Importable without soma-workflow installed.
"""

from __future__ import annotations

import ast
import shlex
import socket
from collections.abc import Mapping

from ...errors import ConfigurationError

#: soma-workflow keys about its own database, logs and server: jobbridge keeps its
#: state under $JOBBRIDGE_HOME and has nothing to set from them.
MACHINERY_KEYS = frozenset({
    "database_file", "transfered_files_dir", "soma_workflow_dir", "server_name",
    "engine_log_dir", "engine_log_level", "engine_log_format", "server_log_file",
    "server_log_level", "server_log_format", "remove_orphan_files", "light_mode",
    "allowed_python_versions", "python_command", "installpath", "drmaa_implementation",
})
#: soma-workflow keys jobbridge has under another name.
RENAMED_KEYS = {"shared_temporary_dir": "scratch_directory"}
#: Keys of a soma-workflow client reaching a remote server over ssh.
REMOTE_KEYS = frozenset({"cluster_address", "submitting_machines", "login", "sshport"})
#: soma-workflow's parallel job settings: jobbridge's schedulers place parallel jobs
#: themselves (``parallel_job_info``); these would be silently different.
UNSUPPORTED_KEYS = frozenset({
    "drmaa_native_specification", "drmaa_job_category", "parallel_env_mpi_bin",
    "parallel_env_node_file", "mpi", "openmp", "native", "mpi_job_timeout", "mpi_log_dir",
    "mpi_log_format",
})
_LIMIT_KEYS = ("max_job_in_queue", "max_job_running")
#: What marks a section as soma-workflow's: any key jobbridge itself does not have.
SOMA_ONLY_KEYS = MACHINERY_KEYS | REMOTE_KEYS | UNSUPPORTED_KEYS | set(RENAMED_KEYS)


def is_soma_section(options: Mapping[str, str]) -> bool:
    """Whether a section (keys lower-cased) is written for soma-workflow."""
    return (any(key.lower() in SOMA_ONLY_KEYS for key in options)
            or any(str(options.get(key, "")).strip().startswith("{") for key in _LIMIT_KEYS)
            or str(options.get("container_command", "")).strip().startswith("["))


def soma_options(options: Mapping[str, str], where: str) -> dict[str, str]:
    """jobbridge options of a soma-workflow section; ConfigurationError naming ``where``."""
    result: dict[str, str] = {}
    remote = {key.lower(): value for key, value in options.items()
              if key.lower() in REMOTE_KEYS}
    _refuse_remote(remote, where)
    for key, value in options.items():
        name = key.lower()
        if name in MACHINERY_KEYS or name in REMOTE_KEYS:
            continue
        if name in UNSUPPORTED_KEYS:
            raise ConfigurationError(f"{where}: {key.upper()}: soma-workflow's parallel job "
                                     "settings are not supported by jobbridge (use the jobs' "
                                     "parallel_job_info and the scheduler's own options)")
        if name in _LIMIT_KEYS:
            result[name] = _limit(value, f"{where}: {key.upper()}")
        elif name == "container_command":
            result[name] = _container_command(value, f"{where}: {key.upper()}")
        elif name in RENAMED_KEYS:
            result[RENAMED_KEYS[name]] = value
        else:
            result[name] = value
    if "scheduler_type" not in result and remote.get("submitting_machines"):
        result["scheduler_type"] = "drmaa"  # soma-workflow's default for a server resource
    return result


def _refuse_remote(remote: Mapping[str, str], where: str) -> None:
    """A resource whose submitting machines are others is reached over ssh: refused."""
    machines = (remote.get("submitting_machines") or "").split()
    if not machines and not remote.get("cluster_address"):
        return
    here = {"localhost", socket.gethostname(), socket.gethostname().split(".")[0]}
    if not here.intersection(machines):
        shown = " ".join(machines) or remote.get("cluster_address", "")
        raise ConfigurationError(
            f"{where}: a remote soma-workflow resource (SUBMITTING_MACHINES / CLUSTER_ADDRESS "
            f"{shown}) is not supported by jobbridge: run jobbridge on {shown}")


def _limit(value: str, where: str) -> str:
    """``{15}`` (soma-workflow: the default queue's limit) or ``15`` -> ``15``."""
    words = value.split()
    if not words:
        return ""
    if len(words) == 1 and words[0].isdigit():
        return words[0]
    limit = None
    for word in words:
        queue, brace, rest = word.partition("{")
        if not brace or not rest.endswith("}") or not rest[:-1].isdigit():
            raise ConfigurationError(f"{where} = {value!r}: expected {{N}} or a number")
        if queue:
            raise ConfigurationError(f"{where} = {value!r}: limits per queue ({queue}{{...}}) "
                                     "are not supported by jobbridge, only {N} for all jobs")
        limit = rest[:-1]
    return str(limit)


def _container_command(value: str, where: str) -> str:
    """soma-workflow's Python list (``['docker', 'run', '{#command}']``) -> words."""
    text = value.strip()
    if not text.startswith("["):
        return value
    try:
        words = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        words = None
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ConfigurationError(f"{where} = {value!r}: expected a list of strings")
    return shlex.join(words)
