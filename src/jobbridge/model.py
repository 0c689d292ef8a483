"""The workflow model: jobs, dependencies, groups, and the JSON workflow format.

Everything a user writes goes through :func:`parse_workflow`, which refuses bad
input with one :class:`InputError` line naming the place, before anything is
stored or run. The engine and the schedulers then only see valid
:class:`EngineJob` objects.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import re
import signal
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import constants
from .dynamic import (
    DYNAMIC_KEYS,
    TRANSFER_JOB_KEYS,
    Placement,
    Temporary,
    Transfer,
    link_edges,
    parse_job_dynamic,
    parse_job_transfers,
    parse_transfers,
    settle_inputs,
)
from .dynamic import parse_temporaries as _parse_temporaries
from .errors import InputError

PARALLEL_CONFIGS = ("native", "MPI", "OpenMP")
#: Characters allowed in a batch job name or file name; others become "_" (Grid
#: Engine refuses ``/:@\\*?`` and blanks, Slurm's ``%`` starts a pattern).
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.+-]")


def safe_name(text: str, limit: int) -> str:
    """``text`` as a batch job name or file name: characters other than letters,
    digits and ``_.+-`` replaced by ``_``, at most ``limit`` of them."""
    return _UNSAFE_NAME.sub("_", text)[:limit]


class ExitInfo(tuple[str, int | None, int | None, str | None]):
    """``(exit_status, exit_value, term_sig, resource_usage)``, plus a ``reason``
    and whether the job ``ran``.

    It unpacks and compares as the plain 4-tuple of the API; ``reason`` keeps what
    the batch system said about an abnormal end (TIMEOUT, OUT_OF_MEMORY...) for
    ``jobbridge status`` to show. ``started`` and ``ended`` (POSIX timestamps) are
    when the job really started and ended, where the scheduler recorded it: an
    engine that learns of an end long after it happened dates it truly. ``ran`` is
    False when the system says the job never started (deleted while queued, failed
    before it ran: it gets no execution date), None when it does not say.
    """

    reason: str | None
    started: float | None
    ended: float | None
    ran: bool | None

    def __new__(cls, exit_status: str, exit_value: int | None = None,
                term_sig: int | None = None, resource_usage: str | None = None,
                reason: str | None = None, started: float | None = None,
                ended: float | None = None, ran: bool | None = None) -> ExitInfo:
        info = super().__new__(cls, (exit_status, exit_value, term_sig, resource_usage))
        info.reason = reason
        info.started = started
        info.ended = ended
        info.ran = ran
        return info

    def __getnewargs__(self) -> tuple[str, int | None, int | None, str | None]:  # pickle
        return (self[0], self[1], self[2], self[3])

    @property
    def exit_status(self) -> str:
        return self[0]

    @property
    def exit_value(self) -> int | None:
        return self[1]

    @property
    def term_sig(self) -> int | None:
        return self[2]

    @property
    def resource_usage(self) -> str | None:
        return self[3]

    @property
    def job_status(self) -> str:
        """The JOB_STATUS this end gives the job: DONE or FAILED."""
        return ended_status(self[0], self[1])

    def __repr__(self) -> str:
        extra = f", reason={self.reason!r}" if self.reason else ""
        return f"ExitInfo{tuple(self)!r}"[:-1] + extra + ")"


def ended_status(exit_status: object, exit_value: object) -> str:
    """An ended job's JOB_STATUS: DONE iff it finished regularly with exit code 0."""
    ok = exit_status == constants.FINISHED_REGULARLY and exit_value == 0
    return constants.DONE if ok else constants.FAILED


def describe_exit(exit_status: str | None, exit_value: int | None, term_sig: int | None) -> str:
    """How a job ended, in words: ``exit code 3``, ``signal 9 (SIGKILL)``, ``not run``."""
    if exit_status is None:
        return ""
    if exit_status == constants.FINISHED_REGULARLY:
        return f"exit code {exit_value}"
    if exit_status == constants.FINISHED_TERM_SIG:
        return f"signal {signal_name(term_sig)}"
    if exit_status == constants.FINISHED_UNCLEAR_CONDITIONS and exit_value is not None:
        return f"unclear, exit code {exit_value}"  # e.g. its outputs missing
    return {constants.USER_KILLED: "killed", constants.EXIT_NOTRUN: "not run",
            constants.EXIT_ABORTED: "aborted"}.get(exit_status, exit_status)


def signal_name(number: int | None) -> str:
    """``9 (SIGKILL)``, or the bare number of a signal Python does not name."""
    try:
        return f"{number} ({signal.Signals(number or 0).name})"
    except ValueError:
        return str(number)


@dataclass
class EngineJob:
    """One job as the engine hands it to a scheduler.

    ``command`` is an argv list: it is never run through a shell unless the
    user's argv itself calls one. Paths are absolute once the engine hands the
    job over. ``submission_tag`` is a unique label of this submission attempt;
    batch schedulers put it in the job name so that a restarted engine can find
    a job it submitted just before being killed. ``dynamic`` is what the engine
    resolves while the workflow runs (links, outputs...: :mod:`jobbridge.dynamic`);
    schedulers ignore it.
    """

    job_id: str
    command: list[str] = field(default_factory=list)
    name: str | None = None
    working_directory: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    stdout_file: str | None = None
    stderr_file: str | None = None
    join_stderrout: bool = False
    priority: int = 0
    queue: str | None = None
    native_specification: str | list[str] | None = None
    parallel_job_info: dict[str, Any] | None = None
    resources: dict[str, int] = field(default_factory=dict)
    is_barrier: bool = False
    dynamic: dict[str, Any] | None = None
    submission_tag: str | None = None
    #: retry policy (docs/retries.md): further attempts after a failure, which ends
    #: count (None: any), the first delay (doubled each retry), resource factors
    retries: int = 0
    retry_on: list[int | str] | None = None
    retry_delay_s: float = 0
    escalate: dict[str, float] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "job") -> EngineJob:
        """Build a job from a job object of the workflow format (docs/format.md)."""
        return _parse_job(d, where)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        """What users call this job: its name, else its id."""
        return self.name or self.job_id

    @property
    def cpu_count(self) -> int:
        """CPU slots the job takes on one machine."""
        if self.parallel_job_info:
            return int(self.parallel_job_info.get("nodes_number", 1)) * int(
                self.parallel_job_info.get("cpu_per_node", 1))
        return int(self.resources.get("cpus", 1))

    def native_args(self) -> list[str]:
        """``native_specification`` as a list of arguments."""
        spec = self.native_specification
        if spec is None:
            return []
        if isinstance(spec, str):
            import shlex

            return shlex.split(spec)
        return list(spec)


@dataclass
class Group:
    name: str
    elements: list[str]


@dataclass
class WorkflowSpec:
    """A validated workflow: jobs, job-level dependency edges, groups.

    ``edges`` are (before, after) job ids. Dependencies between large groups are
    routed through a hidden barrier job (``hidden_ids``) so that a fan-in of n
    jobs to m jobs costs n + m edges, not n * m. ``temporaries`` are the paths
    created when the workflow is stored, removed with it; ``transfers`` its file
    transfers (client paths, and where they are on the resource).
    """

    name: str | None
    jobs: list[EngineJob]
    edges: list[tuple[str, str]]
    groups: list[Group]
    hidden_ids: set[str] = field(default_factory=set)
    temporaries: list[Temporary] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)


# --- parsing -----------------------------------------------------------------------------------

_JOB_KEYS = {
    "id", "command", "name", "working_directory", "env", "stdin", "stdout_file",
    "stderr_file", "join_stderrout", "priority", "queue", "native_specification",
    "parallel_job_info", "resources", "barrier", *DYNAMIC_KEYS, "retries", "retry_on",
    "retry_delay_s", "escalate", *TRANSFER_JOB_KEYS,
}
_TOP_KEYS = {"name", "jobs", "dependencies", "groups", "temporary_paths", "transfers",
             "defaults"}
_RESOURCE_KEYS = ("cpus", "memory_mb", "walltime_s")
#: Job keys a workflow's ``defaults`` may give every job (a job's own value wins).
RETRY_KEYS = ("retries", "retry_on", "retry_delay_s", "escalate")
#: Resources that ``escalate`` may grow from one attempt to the next.
ESCALATED_RESOURCES = ("memory_mb", "walltime_s")
#: Most retries of a job (factors grow geometrically: beyond this they mean nothing).
MAX_RETRIES = 100
_PARALLEL_KEYS = {"config_name": str, "nodes_number": int, "cpu_per_node": int}


def load_workflow_file(path: str | Path, *, to_run: bool = True,
                       placement: Placement | None = None) -> WorkflowSpec:
    """Read and validate a workflow file; relative paths resolve against its folder.

    ``placement``: where its temporary paths go and how shared resource paths
    translate (default: under ``$JOBBRIDGE_HOME``, no translation). ``to_run=False``
    (only to look at it): a soma-workflow file's env_builder_code is not run, its
    shared resource paths are not translated."""
    file = Path(path)
    with gc_paused():
        data, surrogates = read_workflow_json(file)
        return workflow_from_data(data, str(file), file.parent, check_unicode=surrogates,
                                  to_run=to_run, placement=placement)


def read_workflow_json(file: Path) -> tuple[Any, bool]:
    """A workflow file's JSON data, not validated yet, and whether it may hold a
    lone surrogate (then :func:`parse_workflow` must check its strings)."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{file}: cannot read: {getattr(error, 'strerror', None) or error}"
                         ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{file}:{error.lineno}:{error.colno}: invalid JSON: {error.msg}") from None
    except RecursionError:
        raise InputError(f"{file}: invalid JSON: nested too deeply") from None
    # a lone surrogate can only come from a \\uD800-\\uDFFF escape: skip the full check
    return data, re.search(r"\\u[dD][89a-fA-F]", text) is not None


def workflow_from_data(data: Any, source: str, base_dir: Path, *, check_unicode: bool = True,
                       to_run: bool = True, placement: Placement | None = None) -> WorkflowSpec:
    """A workflow document of either format: jobbridge's, or soma-workflow's serialized
    one (``to_run``, ``placement``: see :func:`load_workflow_file`)."""
    from .compat.soma_workflow.workflow_file import is_soma_workflow, soma_workflow_spec

    if is_soma_workflow(data):  # soma-workflow's Helper.serialize format
        return soma_workflow_spec(data, source=source, base_dir=base_dir, to_run=to_run,
                                  placement=placement)
    return parse_workflow(data, source=source, base_dir=base_dir, check_unicode=check_unicode,
                          placement=placement)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that all stay
    alive (no cycles among them): its passes over the growing heap are ~40% of the
    time to read and validate 100,000 jobs."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_workflow(data: Any, source: str = "workflow", base_dir: Path | None = None,
                   *, check_unicode: bool = True, placement: Placement | None = None
                   ) -> WorkflowSpec:
    """Validate a workflow object (docs/format.md); raise InputError naming the first bad place.

    Relative paths resolve against ``base_dir`` (the workflow file's folder, else
    the current directory), which is also the default working directory.
    ``check_unicode=False`` skips the lone-surrogate check when the caller knows
    every string is valid Unicode. ``placement``: see :func:`load_workflow_file`.
    """
    base_dir = (base_dir or Path.cwd()).resolve()
    if not isinstance(data, dict):
        raise InputError(f"{source}: the workflow must be a JSON object")
    if check_unicode:
        _refuse_invalid_unicode(data, source)
    _no_unknown_keys(data, _TOP_KEYS, source)
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise InputError(f"{source}: name: must be a string")
    raw_jobs = data.get("jobs")
    if not isinstance(raw_jobs, list) or not raw_jobs:
        raise InputError(f"{source}: jobs: must be a non-empty list")
    placement = placement or Placement.for_resource(None)
    temporaries = _parse_temporaries(data.get("temporary_paths"), source, placement)
    transfers = parse_transfers(data.get("transfers"), source, placement, base_dir)
    for name in transfers.keys() & temporaries.keys():
        raise InputError(f"{source}: transfers.{name}: {name!r} is a temporary path too")
    temporaries.update(transfers)  # both are named paths in commands
    defaults = _parse_defaults(data.get("defaults"), f"{source}: defaults")
    jobs: list[EngineJob] = []
    ids: set[str] = set()
    directories: dict[str | None, tuple[Path, str]] = {}  # resolved once, not once a job
    for index, raw in enumerate(raw_jobs):
        where = f"{source}: jobs[{index}]"
        job = _parse_job(raw, where, base_dir, directories, temporaries, defaults)
        if not raw.keys().isdisjoint(TRANSFER_JOB_KEYS):
            parse_job_transfers(raw, job, where, placement)
        if job.job_id in ids:
            raise InputError(f"{where}.id: duplicate id {job.job_id!r}")
        ids.add(job.job_id)
        jobs.append(job)
    settle_inputs(jobs, placement.transfers)
    groups = _parse_groups(data.get("groups"), ids, source)
    members = _group_members(groups, source)
    raw_deps = data.get("dependencies", [])
    if not isinstance(raw_deps, list):
        raise InputError(f"{source}: dependencies: must be a list of [before, after] pairs")
    ends: list[tuple[list[str], list[str]]] = []
    for index, dep in enumerate(raw_deps):
        where = f"{source}: dependencies[{index}]"
        if (not isinstance(dep, list) or len(dep) != 2
                or not all(isinstance(e, str) for e in dep)):
            raise InputError(f"{where}: must be a pair [before, after] of job ids or group names")
        resolved = []
        for end in dep:
            if end in ids:
                resolved.append([end])
            elif end in members:
                resolved.append(members[end])
            else:
                raise InputError(f"{where}: unknown job or group {end!r}")
        ends.append((resolved[0], resolved[1]))
    given = {(b[0], a[0]) for b, a in ends if len(b) == len(a) == 1}
    ends.extend(([before], [after]) for before, after in dict.fromkeys(link_edges(jobs, source))
                if (before, after) not in given)  # a link is a dependency, once
    edges, barriers = _expand_dependencies(ends, ids)
    jobs.extend(barriers)
    spec = WorkflowSpec(name, jobs, edges, groups, {b.job_id for b in barriers},
                        placement.temporaries, placement.transfers)
    _refuse_cycles(spec, source)
    return spec


def _parse_job(raw: Any, where: str, base_dir: Path | None = None,
               directories: dict[str | None, tuple[Path, str]] | None = None,
               temporaries: dict[str, str] | None = None,
               defaults: Mapping[str, Any] | None = None) -> EngineJob:
    """One job object; with ``base_dir``, paths become absolute (default cwd: base_dir).

    ``directories`` caches each working directory's (joined, resolved) forms across
    the jobs of a workflow: resolving costs system calls. ``temporaries``: the
    workflow's temporary paths by name, for its commands. ``defaults``: the
    workflow's validated retry defaults, under the job's own keys.
    """
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be a JSON object")
    _no_unknown_keys(raw, _JOB_KEYS, where)
    job_id = raw.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise InputError(f"{where}.id: required, a non-empty string")
    if "/" in job_id or _has_control(job_id):
        raise InputError(f"{where}.id: must not contain '/', control characters or NUL")
    barrier = raw.get("barrier", False)
    if not isinstance(barrier, bool):
        raise InputError(f"{where}.barrier: must be true or false")
    barrier = barrier or raw.get("engine") is not None  # engine-side jobs run no command
    command = raw.get("command")
    if barrier:
        if command not in (None, []):
            raise InputError(f"{where}.command: a barrier or engine-side job has no command")
        command = []
    elif command is None:
        raise InputError(f"{where}.command: required (or set \"barrier\": true)")
    elif not isinstance(command, list) or not command:
        raise InputError(f"{where}.command: must be a non-empty list of strings (argv)")
    else:
        try:  # one pass in C: join refuses anything but strings
            argv = "".join(command)
        except TypeError:
            raise InputError(f"{where}.command: every argument must be a string") from None
        if "\0" in argv:
            raise InputError(f"{where}.command: arguments cannot contain NUL bytes")
        if not command[0]:
            raise InputError(f"{where}.command: the program name is empty")
    env = raw.get("env") or {}
    if env and (not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        raise InputError(f"{where}.env: must be an object of string values")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise InputError(f"{where}.env: invalid variable name or value {key!r}")
    paths: dict[str, str | None] = {}
    for key in ("working_directory", "stdin", "stdout_file", "stderr_file"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value or "\0" in value):
            raise InputError(f"{where}.{key}: must be a non-empty path string or null")
        paths[key] = value
    if base_dir is not None and not barrier:
        # like sbatch: the working directory defaults to where the workflow comes
        # from, and the job's own files are relative to its working directory
        given = paths["working_directory"]
        known = directories.get(given) if directories is not None else None
        if known is None:
            joined = base_dir / (given or ".")
            known = (joined, str(joined.resolve()))
            if directories is not None:
                directories[given] = known
        workdir, paths["working_directory"] = known
        for key in ("stdin", "stdout_file", "stderr_file"):
            if paths[key] is not None:
                paths[key] = str(workdir / str(paths[key]))
    join = raw.get("join_stderrout", False)
    if not isinstance(join, bool):
        raise InputError(f"{where}.join_stderrout: must be true or false")
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InputError(f"{where}.priority: must be an integer")
    queue = raw.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise InputError(f"{where}.queue: must be a non-empty string or null")
    native = raw.get("native_specification")
    if native is not None and not (
            isinstance(native, str)
            or (isinstance(native, list) and all(isinstance(a, str) for a in native))):
        raise InputError(f"{where}.native_specification: must be a string or a list of strings")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise InputError(f"{where}.name: must be a string")
    resources = _parse_resources(raw.get("resources"), where)
    retry = dict(defaults or {}) if not barrier else {}
    if any(key in raw for key in RETRY_KEYS):
        own = _parse_retry(raw, where)
        for key in own.get("escalate") or {}:
            if key not in resources:
                raise InputError(f"{where}.escalate.{key}: the job sets no resources.{key} "
                                 "to escalate")
        retry.update(own)
    job = EngineJob(
        job_id=job_id,
        command=list(command),
        name=name,
        env=dict(env),
        join_stderrout=join,
        priority=priority,
        queue=queue,
        native_specification=native,
        parallel_job_info=_parse_parallel(raw.get("parallel_job_info"), where),
        resources=resources,
        is_barrier=barrier,
        working_directory=paths["working_directory"],
        stdin=paths["stdin"],
        stdout_file=paths["stdout_file"],
        stderr_file=paths["stderr_file"],
        **retry,
    )
    if temporaries or not DYNAMIC_KEYS.isdisjoint(raw):
        parse_job_dynamic(raw, job, where, temporaries or {})
    return job


def _parse_defaults(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be an object")
    _no_unknown_keys(raw, set(RETRY_KEYS), where)
    return _parse_retry(raw, where)


def _parse_retry(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The retry keys present in a job (or ``defaults``) object, checked."""
    found: dict[str, Any] = {}
    if "retries" in raw:
        retries = raw["retries"]
        if (not isinstance(retries, int) or isinstance(retries, bool)
                or not 0 <= retries <= MAX_RETRIES):
            raise InputError(f"{where}.retries: must be an integer from 0 to {MAX_RETRIES}")
        found["retries"] = retries
    if "retry_on" in raw:
        retry_on = raw["retry_on"]
        if not isinstance(retry_on, list) or not retry_on or not all(
                (isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 255)
                or (isinstance(item, str) and item.strip() and item.isprintable())
                for item in retry_on):
            raise InputError(f"{where}.retry_on: must be a non-empty list of exit codes "
                             "(0-255) and reason words (\"TIMEOUT\", \"OUT_OF_MEMORY\", "
                             "\"NODE_FAIL\", \"killed by signal\"...)")
        found["retry_on"] = list(retry_on)
    if "retry_delay_s" in raw:
        delay = raw["retry_delay_s"]
        if not _is_number(delay) or not 0 <= delay <= 86400:
            raise InputError(f"{where}.retry_delay_s: must be a number of seconds "
                             "from 0 to 86400")
        found["retry_delay_s"] = delay
    if "escalate" in raw:
        escalate = raw["escalate"]
        if not isinstance(escalate, dict):
            raise InputError(f"{where}.escalate: must be an object of factors, e.g. "
                             '{"memory_mb": 2}')
        _no_unknown_keys(escalate, set(ESCALATED_RESOURCES), f"{where}.escalate")
        for key, factor in escalate.items():
            if not _is_number(factor) or not 1 <= factor <= 1000:
                raise InputError(f"{where}.escalate.{key}: must be a factor from 1 to 1000")
        found["escalate"] = dict(escalate)
    return found


def _is_number(value: object) -> bool:
    """An int or a finite float (JSON numbers), not a bool."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _parse_parallel(raw: Any, where: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InputError(f"{where}.parallel_job_info: must be an object")
    _no_unknown_keys(raw, set(_PARALLEL_KEYS), f"{where}.parallel_job_info")
    info: dict[str, Any] = {"config_name": "native", "nodes_number": 1, "cpu_per_node": 1}
    for key, kind in _PARALLEL_KEYS.items():
        if key not in raw:
            continue
        value = raw[key]
        if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InputError(f"{where}.parallel_job_info.{key}: must be an integer >= 1")
        if kind is str and value not in PARALLEL_CONFIGS:
            raise InputError(f"{where}.parallel_job_info.{key}: must be one of "
                             + ", ".join(PARALLEL_CONFIGS))
        info[key] = value
    return info


def _parse_resources(raw: Any, where: str) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}.resources: must be an object")
    _no_unknown_keys(raw, set(_RESOURCE_KEYS), f"{where}.resources")
    for key, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{where}.resources.{key}: must be an integer >= 1")
    return dict(raw)


def _parse_groups(raw: Any, ids: set[str], source: str) -> list[Group]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InputError(f"{source}: groups: must be a list")
    groups: list[Group] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        where = f"{source}: groups[{index}]"
        if not isinstance(item, dict):
            raise InputError(f"{where}: must be an object")
        _no_unknown_keys(item, {"name", "elements"}, where)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"{where}.name: required, a non-empty string")
        if _has_control(name):
            raise InputError(f"{where}.name: must not contain control characters or NUL")
        if name in ids:
            raise InputError(f"{where}.name: {name!r} is already a job id")
        if name in names:
            raise InputError(f"{where}.name: duplicate group name {name!r}")
        names.add(name)
        elements = item.get("elements", [])
        if not isinstance(elements, list) or not all(isinstance(e, str) for e in elements):
            raise InputError(f"{where}.elements: must be a list of job ids or group names")
        groups.append(Group(name, list(elements)))
    for index, group in enumerate(groups):
        for element in group.elements:
            if element not in ids and element not in names:
                raise InputError(
                    f"{source}: groups[{index}].elements: unknown job or group {element!r}")
    return groups


def _group_members(groups: list[Group], source: str) -> dict[str, list[str]]:
    """Each group's jobs, nested groups flattened; a group containing itself is refused."""
    by_name = {g.name: g for g in groups}
    members: dict[str, list[str]] = {}

    def flatten(name: str, trail: tuple[str, ...]) -> list[str]:
        if name in members:
            return members[name]
        if name in trail:
            path = " -> ".join((*trail[trail.index(name):], name))
            raise InputError(f"{source}: groups: group cycle {path}")
        result: list[str] = []
        seen: set[str] = set()
        for element in by_name[name].elements:
            for job in flatten(element, (*trail, name)) if element in by_name else [element]:
                if job not in seen:
                    seen.add(job)
                    result.append(job)
        members[name] = result
        return result

    for group in groups:
        flatten(group.name, ())
    return members


def _expand_dependencies(ends: Sequence[tuple[list[str], list[str]]], ids: set[str]
                         ) -> tuple[list[tuple[str, str]], list[EngineJob]]:
    edges: list[tuple[str, str]] = []
    barriers: list[EngineJob] = []
    for before, after in ends:
        if len(before) * len(after) <= len(before) + len(after) + 1:
            edges.extend((b, a) for b in before for a in after)
            continue
        barrier_id = f"~barrier{len(barriers) + 1}"
        while barrier_id in ids:
            barrier_id = "~" + barrier_id
        barriers.append(EngineJob(job_id=barrier_id, is_barrier=True))
        edges.extend((b, barrier_id) for b in before)
        edges.extend((barrier_id, a) for a in after)
    return edges, barriers


def _refuse_cycles(spec: WorkflowSpec, source: str) -> None:
    """Kahn's algorithm; on a cycle, name one (hidden barriers are left out)."""
    successors: dict[str, list[str]] = {job.job_id: [] for job in spec.jobs}
    indegree = dict.fromkeys(successors, 0)
    for before, after in spec.edges:
        if before == after:
            raise InputError(f"{source}: dependencies: {before!r} depends on itself")
        successors[before].append(after)
        indegree[after] += 1
    ready = [job for job, n in indegree.items() if n == 0]
    seen = 0
    while ready:
        job = ready.pop()
        seen += 1
        for nxt in successors[job]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if seen == len(indegree):
        return
    # every node left has a predecessor left: walk backwards until one repeats
    remaining = {job for job, n in indegree.items() if n > 0}
    predecessors: dict[str, str] = {}
    for before, after in spec.edges:
        if before in remaining and after in remaining:
            predecessors.setdefault(after, before)
    path: list[str] = []
    position: dict[str, int] = {}
    node = next(iter(remaining))
    while node not in position:
        position[node] = len(path)
        path.append(node)
        node = predecessors[node]
    cycle = [node, *reversed(path[position[node]:])]
    shown = [n for n in cycle if n not in spec.hidden_ids]
    if len(shown) < 2 or shown[0] != shown[-1]:  # closed even through a hidden barrier
        shown.append(shown[0])
    raise InputError(f"{source}: dependencies: cycle {' -> '.join(shown)}")


def _refuse_invalid_unicode(data: dict[str, Any], source: str) -> None:
    """Refuse lone surrogates (JSON ``"\\ud800"``): no argv, path or database text can
    hold them. One C-speed pass; the slow walk only runs to name the place."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        pass
    except (TypeError, ValueError, RecursionError):
        return  # not JSON data: the type checks say where
    else:
        return

    def bad(text: object) -> bool:
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return True
        return False

    def walk(value: object, where: str) -> None:
        if bad(value):
            raise InputError(f"{where}: not valid Unicode (a lone surrogate)")
        items = (value.items() if isinstance(value, dict)
                 else enumerate(value) if isinstance(value, list) else ())
        for key, item in items:
            if bad(key):
                raise InputError(f"{where}: a key is not valid Unicode (a lone surrogate)")
            walk(item, f"{where}[{key}]" if isinstance(key, int) else
                 f"{where}: {key}" if where == source else f"{where}.{key}")

    walk(data, source)


def _has_control(text: str) -> bool:
    """Control characters (NUL, tab, VT, ESC...) or line separators: ids and group
    names are shown raw in messages and tables, which must stay one line each."""
    return not text.isprintable() and any(
        unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def _no_unknown_keys(obj: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed_set = allowed if isinstance(allowed, set | frozenset) else set(allowed)
    if obj.keys() <= allowed_set:
        return
    for key in obj:
        if key not in allowed_set:
            raise InputError(
                f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed_set))})")
