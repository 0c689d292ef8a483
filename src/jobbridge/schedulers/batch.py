"""Shared base of the schedulers that drive a batch system through its commands.

Public as :mod:`jobbridge.backend`; docs/batch-backend.md is the guide, with a
whole backend. A backend (Slurm, PBS, Grid Engine...) is a small subclass. It
must define (abstract here):

- ``build_scheduler`` (the Scheduler API) and :meth:`BatchScheduler.submit_argv`,
  :meth:`~BatchScheduler.cancel_argv`: the argv of its submit and cancel commands
  (:meth:`~BatchScheduler.cancel_many_argv` when the cancel command takes many ids);
- :meth:`~BatchScheduler.query_status`: one status query for many ids, parsed
  into :class:`JobRecord` (native state, exit information once ended);

and may fill in the tables ``STATES`` (native state -> JOB_STATUS),
``ABNORMAL_ENDS`` (native ends that are not the job's own), ``KILL`` (how its
cancel ends a job: :class:`.SystemKill`), ``RESERVED_OPTIONS`` (native options it
sets itself), ``ARRAY`` (how it runs job arrays: :class:`ArraySupport`),
``CONFIG_KEYS``, and override the optional hooks:
``parse_submit_output``, ``send_submission`` and ``send_cancel`` (a submission or
a cancel through a library call instead of a command: DRMAA), ``record_status``,
``submitted_status`` (what a job shows until a query tells: held by its options),
``ended_records`` (finished-job history), ``answers_ended_jobs`` (whether the
status query itself shows ended jobs), ``find_by_name`` (re-attach a lost
submission), ``is_transient`` (which failures to retry), ``refusal_text`` (a
refusal in the system's words, cleaned), ``limit_notes`` (limits rounded to the
system's units), ``array_element_id`` and ``array_chunk``.
Commands run through :meth:`BatchScheduler.run` (timeout, retries, ``ok_codes``,
CommandError), library calls through :meth:`BatchScheduler.request` (the budget
and retries alike); ``submit_argv`` sends the script's own output to
:meth:`~BatchScheduler.batch_output_path`.
This base does the rest, the same way for every backend:

- **safe scripts**: the batch script holds no user string; it only runs
  :mod:`.jobwrap` on a private spec (argv, env, paths arrive byte-exact),
  which keeps the job where the system's kill reaches its whole process tree;
  queue, resources and native options go to the submit command as argv;
- **ends without polling**: the wrapper's start and exit files are the first
  source of truth; a :class:`~.batchwatch.FolderWatcher` sees them appear
  (inotify, else a scan) and wakes the engine at once;
- **bulk polling, rarely**: one status query for all tracked jobs every
  ``scheduler_interval`` (default 30 s; sooner after a kill, or when a wrapper
  ended by a signal and the system must say why), for ends without a wrapper
  (cancelled while queued, node failures) and waiting jobs' states; then one
  query of finished-job records for those that left the queue. When the state
  folder proves not shared with the compute nodes (the system says a job ran, no
  file of its wrapper ever appears), this is logged and the scheduler polls at
  an adaptive interval instead, fast while jobs change. An id this process
  has not asked about yet (a job of an earlier engine) is asked about before it
  is answered, all such ids of one call in one query; an id the system does not
  know is undetermined;
- **job arrays**: the ready jobs of one submission whose submit commands are the
  same but for name and script go as one array (``array_submission = auto``, the
  default, where the backend declares ``ARRAY``), chunked under the system's
  largest; each element runs its own spec (the array's folder links each index
  to its element's spec; the script picks its index from the system's variable)
  and is a job of its own: its id in the system's element form, its status,
  exit info and kill; its folder's ``array.json`` names the array and its index,
  so that ``find_submitted`` re-attaches it by the array's name;
- **a command budget**: every command (and library call: :meth:`request`) goes
  through one token bucket per engine
  and batch system (``max_commands_per_second``, default 1, bursts of
  :data:`~.batchwatch.BURST`): submissions, queries and cancels alike; the
  engine submits only what the budget lets through now (``submission_room``),
  keeping :data:`~.batchwatch.RESERVE` tokens for queries and cancels, so it never
  blocks on the budget while a large workflow trickles in;
- **faults**: every command runs with a timeout and is retried with backoff
  (exponential, with jitter);
  a failing status query never fails a job; a submission whose answer was lost
  is looked up by its tag before it is retried, so no job is submitted twice;
- **true exit info**: the wrapper's exit file (exact code, signal, rusage)
  merged with what the batch system says of abnormal ends (timeouts, memory);
  a kill never overrules an end the exit file or the system already recorded,
  and a job our kill ended is killed_by_user, whatever it exited with;
- **said, not silent**: a refusal's reason (the system's words), a limit rounded
  at submission and a pending job's reason are the job's notes (``job_notes``);
  a job that leaves the queue before it ran ends at once, not after LOST_AFTER.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Container, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from .. import constants
from ..configuration import Configuration, jobbridge_home, private_dir
from ..errors import ConfigurationError
from ..model import EngineJob, ended_status
from ..scheduler import ChangeNotifier, ExitInfo, Scheduler, job_list
from . import nativewrap
from .batchwatch import (
    EXIT_FILE,
    RESERVE,
    START_FILE,
    FolderWatcher,
    backoff_delays,
    files_level,
    shared_bucket,
)
from .common import (
    JOB_NAME_LIMIT,
    LOST_AFTER,
    Absence,
    Rounding,
    create_private,
    in_container,
    job_name,
    refuse,
    safe_name,
    write_private,
)
from .jobwrap import SPEC_FILE, command, read_exit_file, write_spec

log = logging.getLogger(__name__)
T = TypeVar("T")
#: In an array element's folder: the array's name and the element's index.
ARRAY_ENTRY = "array.json"
#: Statuses of a job waiting in the queue (not started yet).
WAITING = frozenset({constants.QUEUED_ACTIVE, constants.USER_ON_HOLD, constants.SYSTEM_ON_HOLD,
                     constants.USER_SYSTEM_ON_HOLD})


@dataclass
class JobRecord:
    """What a batch system says of one job: its native state (a key of ``STATES``)
    and, once ended, whatever exit information it has. The wrapper's exit file, when
    there is one, gives the exact code and signal: a record's are the fallback."""

    state: str
    exit_value: int | None = None
    term_sig: int | None = None
    #: ``key=value`` items (docs/format.md): :func:`.format_resource_usage` makes them.
    resource_usage: str | None = None
    #: The system's words on how it ended (kept in the exit info's reason).
    reason: str | None = None
    #: An abnormal end the system reports for this job alone (a JOB_EXIT_STATUS
    #: value, e.g. PBS's negative exit codes): treated like an ABNORMAL_ENDS state.
    exit_status: str | None = None
    #: False when the system says the job never started (its exit info then says so).
    ran: bool | None = None


@dataclass
class CommandResult:
    """A finished batch command (:meth:`BatchScheduler.run`)."""

    returncode: int
    stdout: str
    stderr: str


class CommandError(Exception):
    """A batch command failed (its last line of output is the message); ``transient``
    if retrying may help (:meth:`BatchScheduler.is_transient`); ``result``: what it
    printed, when it ran. A hook raises it too for output it cannot read."""

    def __init__(self, message: str, transient: bool, result: CommandResult | None = None,
                 program: str = "") -> None:
        super().__init__(message)
        self.transient = transient
        self.result = result
        self.program = program


@dataclass(frozen=True)
class SystemKill:
    """How a batch system ends a job it cancels (a backend's ``KILL``).

    ``reaches``: what the system's signals reach, ``"process_group"`` (the batch
    script's process group: Grid Engine, and Slurm, which signals every process of
    the job), ``"session"`` (every process of the script's session: PBS, Torque) or
    ``"script"`` (the script's process alone). ``warning``: the signal sent first,
    SIGKILL following after a grace time (Slurm's KillWait, PBS's kill_delay);
    None when SIGKILL comes at once. A system that signals only the script must
    warn first: the wrapper forwards the warning to the job's group, and SIGKILLs
    that group itself after :data:`~.exits.KILL_GRACE_SECONDS`.
    """

    reaches: Literal["process_group", "session", "script"] = "process_group"
    warning: int | None = None

    def __post_init__(self) -> None:
        if self.reaches not in ("process_group", "session", "script"):
            raise ValueError(f"SystemKill.reaches: unknown value {self.reaches!r}")
        if self.reaches == "script" and self.warning is None:
            raise ValueError("a system that signals only the batch script must send a "
                             "warning signal first: its SIGKILL would leave the job running")


def _hard_link(source: Path, link: Path) -> bool:
    """Whether ``link`` is now a hard link to ``source`` (no new inode: see
    :meth:`BatchScheduler._link`); False where the file system has none.
    FileNotFoundError when a folder is missing."""
    try:
        os.link(source, link)
    except FileNotFoundError:
        raise
    except OSError:
        return False
    return True


def wrapper_spec(job: EngineJob, folder: Path, kill: SystemKill) -> dict[str, Any]:
    """The job wrapper's spec of ``job`` (:func:`.jobwrap.encode_spec`), its records
    in ``folder``, put where ``kill`` reaches."""
    return {"command": job.command, "env": job.env, "stdin": job.stdin,
            "stdout_file": job.stdout_file, "stderr_file": job.stderr_file,
            "join_stderrout": job.join_stderrout, "working_directory": job.working_directory,
            "cpus": job.cpu_count, "exit_file": str(folder / EXIT_FILE),
            "start_file": str(folder / START_FILE), "kill_reaches": kill.reaches,
            "kill_warning": kill.warning}


@dataclass(frozen=True)
class ArraySupport:
    """How a batch system runs job arrays (a backend's ``ARRAY``): ready jobs of one
    submission with the same submit options go as one array, each element running
    its own job through the wrapper.

    ``option``: argv items inserted before the script, ``{first}`` and ``{last}``
    formatted (``("--array={first}-{last}",)``); ``index_variable``: the environment
    variable holding an element's index (``SLURM_ARRAY_TASK_ID``); ``element``: an
    element's id from the array's ``{id}`` and its ``{index}`` (``"{id}_{index}"``;
    :meth:`BatchScheduler.array_element_id` for other forms); ``first``: the first
    index; ``max_size``: the most elements of one array when the system does not say
    (:meth:`BatchScheduler.array_chunk`); ``alone``: submit options that keep a job
    out of arrays (PBS's ``-h``: a held subjob cannot be released by itself).
    """

    option: tuple[str, ...]
    index_variable: str
    element: str = "{id}_{index}"
    first: int = 0
    max_size: int = 1000
    alone: frozenset[str] = frozenset()


@dataclass
class _Tracked:
    files: Path
    #: submitted here, or else adopted by id (a job of an earlier engine)
    submitted: bool = True
    status: str = constants.QUEUED_ACTIVE
    record: JobRecord | None = None
    absence: Absence = field(default_factory=Absence)
    #: what of the wrapper's files was last applied (batchwatch.files_level)
    level: int = 0
    #: when a poll first said it runs (for telling an unshared state folder)
    running_since: float | None = None
    #: when its wrapper's end by a signal was seen (the system's word awaited)
    signal_end_seen: float | None = None
    #: seen running by a query of this process (its wrapper's files also tell it ran)
    ran: bool = False
    #: limits rounded at submission (see Rounding), for job_notes and the exit reason
    note: str | None = None
    #: the array folder and index of an array element
    array: tuple[Path, int] | None = None
    #: its wrapper's exit record once read (written once: never read twice)
    exit_record: dict[str, Any] | None = None


class BatchScheduler(Scheduler, abc.ABC):
    """Base of command-driven batch schedulers; subclasses fill in the hooks.

    ``max_interval``: seconds between status queries (``scheduler_interval``),
    ``min_interval`` the shortest (after a kill, or when polling); ``command_timeout``:
    seconds one command may take; ``retries``: how often a transient failure is
    retried by default; ``native_specification``: submit options of every job (a
    job's own come after); ``container_command``: see docs/format.md;
    ``job_wrapper``: ``auto`` (the native wrapper where it builds, else the Python
    one), ``native`` or ``python``; ``job_python``: the Python that runs the Python
    wrapper on the execution hosts;
    ``state_dir``: the jobs' private folders (default ``$JOBBRIDGE_HOME/batch/NAME``),
    which the execution hosts should see; ``commands_per_second``: the command
    budget; ``job_files``: ``watch`` the wrappers' files, or ``poll`` only.
    """

    #: Short backend name (file folder, messages).
    name: ClassVar[str] = "batch"
    #: The keys :meth:`options_from_config` reads, besides the common ones.
    CONFIG_KEYS = Scheduler.CONFIG_KEYS | {"min_scheduler_interval", "command_timeout",
                                           "job_python", "max_commands_per_second",
                                           "job_files", "array_submission", "job_wrapper"}
    #: Native state -> JOB_STATUS. Unknown states are logged and UNDETERMINED. Every
    #: terminal state maps to DONE: DONE or FAILED then comes from the exit info.
    STATES: ClassVar[Mapping[str, str]] = {}
    #: Native terminal states that are not the job's own end: state -> (exit_status,
    #: reason), e.g. ``"TIMEOUT": (EXIT_ABORTED, "TIMEOUT: killed at its time limit")``
    #: (a reason starting TIMEOUT or OUT_OF_MEMORY is what ``retry_on`` matches).
    ABNORMAL_ENDS: ClassVar[Mapping[str, tuple[str, str]]] = {}
    #: Seconds a job may be missing from every query before it is declared lost.
    LOST_AFTER: ClassVar[float] = LOST_AFTER
    #: Seconds a job may run, by the system's word, before its wrapper's start file
    #: must have appeared (else the state folder is not shared: polling instead).
    START_GRACE: ClassVar[float] = 20.0
    #: Most ids given to one cancel command (:meth:`cancel_many_argv`).
    CANCEL_CHUNK: ClassVar[int] = 500
    #: Seconds after a kill when a poll still showing the job active asks it again
    #: (PBS Pro drops a qdel of a subjob that is being started, and says nothing).
    KILL_REPEAT: ClassVar[float] = 5.0
    #: How the system's cancel ends a job: the job wrapper puts the job where that
    #: kill reaches its whole process tree (see :class:`.SystemKill`).
    KILL: ClassVar[SystemKill] = SystemKill("process_group")
    #: How the system runs job arrays; None: it does not (each job is submitted alone).
    ARRAY: ClassVar[ArraySupport | None] = None

    def __init__(self, *, min_interval: float = 0.5, max_interval: float = 30.0,
                 command_timeout: float = 30.0, retries: int = 4,
                 native_specification: Sequence[str] = (),
                 container_command: Sequence[str] = (),
                 job_python: str | None = None,
                 state_dir: str | os.PathLike[str] | None = None,
                 commands_per_second: float = 1.0, job_files: str = "watch",
                 array_submission: str = "auto", job_wrapper: str = "auto") -> None:
        self.min_interval = min_interval
        self.max_interval = max(max_interval, min_interval)
        self.command_timeout = command_timeout
        self.retries = retries
        self.native_specification = list(native_specification)
        self.container_command = list(container_command)
        self.job_python = job_python or sys.executable
        self.job_wrapper = job_wrapper
        self._wrapper: list[str] | None = None
        self.state_dir = Path(state_dir) if state_dir else jobbridge_home() / "batch" / self.name
        self._interval = min_interval
        self._lock = threading.RLock()
        self._jobs: dict[str, _Tracked] = {}
        #: jobs tracked since the watcher last took them (FolderWatcher's ``fresh``)
        self._fresh: dict[str, Path] = {}
        #: elements still tracked of each array this process submitted: its folder
        #: goes with the last one, without listing it at each element's end
        self._array_left: dict[Path, int] = {}
        #: adopted ids no status query has answered about yet: asked before answered
        self._unasked: set[str] = set()
        self._last_poll = 0.0
        #: jobs we asked to kill, with when (time.time(): exit records are dated so)
        self._killed: dict[str, float] = {}
        #: when each kill was last asked (a kill a poll shows unheeded is asked again)
        self._kill_asked: dict[str, float] = {}
        #: cancels the batch system could not take (down): asked again at each poll
        self._cancel_pending: set[str] = set()
        #: counts of commands run, by kind (benchmarks and tests read it)
        self.calls: dict[str, int] = {}
        self._budget = shared_bucket((self.name, str(self.state_dir)), commands_per_second)
        #: True once the state folder proved not shared (or ``job_files = poll``):
        #: poll as before, at an adaptive interval
        self.polling = job_files == "poll"
        self._next_poll = 0.0
        self._tick_sent = 0.0
        self._last_retry = 0.0
        self._watcher: FolderWatcher | None = None
        self._notify: ChangeNotifier | None = None
        self.rounding = Rounding(self.name)
        #: how this system runs arrays: ``ARRAY``, unless the backend finds its system
        #: (a flavour, a version) runs them otherwise or not at all
        self.array_support: ArraySupport | None = self.ARRAY
        self._array_setting = array_submission
        #: jobs a submit command carried in the last job_submission (arrays: many)
        self._per_command = 1

    @property
    def arrays(self) -> bool:
        """Whether ready jobs of one submission with the same options go as arrays
        (``array_submission = auto`` where the system runs them)."""
        return self._array_setting == "auto" and self.array_support is not None

    @classmethod
    def options_from_config(cls, config: Configuration) -> dict[str, object]:
        """Keyword arguments common to every batch backend, from a configuration."""
        max_interval = config.get_float("scheduler_interval", 30.0)
        return {
            "min_interval": min(config.get_float("min_scheduler_interval", 0.5), max_interval),
            "max_interval": max_interval,
            "command_timeout": config.get_float("command_timeout", 30.0),
            "native_specification": config.get_words("native_specification"),
            "container_command": config.get_words("container_command"),
            "job_python": config.get("job_python"),
            "commands_per_second": config.get_float("max_commands_per_second", 1.0),
            **cls._choices(config),
        }

    @classmethod
    def check_config(cls, config: Configuration) -> None:
        super().check_config(config)
        config.get_float("max_commands_per_second", 1.0)
        cls._choices(config)

    #: The options that name one of a few ways, the default first: ``job_files``:
    #: ``watch`` the wrappers' files, or ``poll`` (a state folder the compute nodes do
    #: not share); ``array_submission``: ``auto`` (jobs alike go as arrays where the
    #: system has them) or ``off``; ``job_wrapper``: ``auto`` (the native wrapper
    #: where a C compiler builds it), ``native`` or ``python``.
    CHOICES: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "job_files": ("watch", "poll"), "array_submission": ("auto", "off"),
        "job_wrapper": ("auto", "native", "python")}

    @classmethod
    def _choices(cls, config: Configuration) -> dict[str, str]:
        """The :data:`CHOICES` options' values; ConfigurationError names a wrong one."""
        values = {}
        for key, choices in cls.CHOICES.items():
            value = (config.get(key) or choices[0]).strip()
            if value not in choices:
                raise ConfigurationError(
                    f"resource {config.resource_id!r}: option {key} = {value!r} is not "
                    f"{', '.join(choices[:-1])} or {choices[-1]}")
            values[key] = value
        return values

    # --- hooks: what a backend defines ------------------------------------------------------
    @abc.abstractmethod
    def submit_argv(self, job: EngineJob, script: Path, name: str) -> list[str]:
        """argv submitting ``script`` for ``job``: ``name`` as the job's name (made from
        the submission tag: :meth:`find_by_name` looks jobs up by it), the script's
        own output to :meth:`batch_output_path` (the job's files are the wrapper's
        business), then the job's queue and resources, ``self.native_specification``
        and ``job.native_args()``, last the script. Run once, without retries (a
        transient failure is looked up by name before it is retried)."""

    @abc.abstractmethod
    def cancel_argv(self, scheduler_job_id: str) -> list[str]:
        """argv cancelling one job, queued, held or running. A failure is logged (a
        transient one asked again at the next polls): the job ends as the status
        queries then tell."""

    def cancel_many_argv(self, scheduler_job_ids: Sequence[str]) -> list[str] | None:
        """argv cancelling all these jobs in one command (``scancel a b``, ``qdel a
        b``), or None when the system's cancel takes one id (then one command each)."""
        return None

    @abc.abstractmethod
    def query_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """One status query for all these jobs (run with :meth:`run`, ``retries=0``:
        the next poll is the retry): a record for each job the system answered
        about; a job left out has left the queue (then :meth:`ended_records`, the
        wrapper's exit file, or in the end LOST_AFTER decide). Raise CommandError
        when the query failed: the jobs keep their states."""

    def send_submission(self, argv: list[str]) -> str:
        """Submit once (no retries) what :meth:`submit_argv` built, with the
        ``ARRAY.option`` items before the script for an array; the job's (or the
        array's) id. By default, runs it and reads :meth:`parse_submit_output`; a
        backend driving its system through a library (DRMAA) makes the call here,
        through :meth:`request`."""
        return self.parse_submit_output(self.run("submit", argv, retries=0).stdout)

    def parse_submit_output(self, stdout: str) -> str:
        """The job id in the submit command's output (default: its last line)."""
        return stdout.strip().splitlines()[-1].strip()

    def record_status(self, record: JobRecord) -> str | None:
        """The JOB_STATUS of a native record: ``STATES`` by default; a backend may
        refine it (Slurm tells holds by their reason). None for an unknown state."""
        return self.STATES.get(record.state)

    def ended_records(self, scheduler_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """Records of jobs that ended in or left the queue (accounting, job history),
        richer than the queue's (exit code, usage), in one query; may be empty (a
        system without history: the wrapper's exit file then tells the end)."""
        return {}

    def submitted_status(self, job: EngineJob) -> str:
        """A job's status from its submission until a query tells (queued, unless its
        options held it: what a user sees meanwhile)."""
        return constants.QUEUED_ACTIVE

    def answers_ended_jobs(self) -> bool:
        """Whether :meth:`query_status` itself answers for jobs that ended or left
        the queue (a job history): then a job missing from an answer has not left, so
        it is asked about again, never taken as removed before it ran."""
        return False

    def find_by_name(self, names: Sequence[str]) -> dict[str, str]:
        """Job ids of jobs submitted with these names (``{name: id}``, the latest of
        a name), queued, running or ended, if the system can tell; used to re-attach
        a submission whose answer was lost (a killed engine, a timed-out submit).
        Without it, such a job may be submitted twice."""
        return {}

    def array_element_id(self, array_id: str, index: int) -> str:
        """The id of an array's element (``ARRAY.element`` by default), from the
        array's id as :meth:`parse_submit_output` and :meth:`find_by_name` give it."""
        assert self.array_support is not None
        return self.array_support.element.format(id=array_id, index=index)

    def array_chunk(self) -> int:
        """The most elements one array may have (``ARRAY.max_size``; Slurm reads
        its ``MaxArraySize``)."""
        assert self.array_support is not None
        return self.array_support.max_size

    def refusal_text(self, error: CommandError) -> str:
        """A refused submission in the system's words: its messages without the
        command's name and ``error:`` prefixes, one line each, joined by ``; ``."""
        result = error.result
        text = (result.stderr.strip() or result.stdout.strip()) if result else str(error)
        prefixes = (f"{Path(error.program).name}:", "error:", "Error:", "ERROR:")
        lines: list[str] = []
        for raw in text.splitlines():
            line, before = raw.strip(), ""
            while line != before:  # "sbatch: error: ...", "qsub: ERROR: ..."
                before = line
                for prefix in prefixes:
                    line = line.removeprefix(prefix).strip()
            if line and line not in lines:
                lines.append(line)
        return "; ".join(lines) or str(error)

    def limit_notes(self, job: EngineJob) -> list[str]:
        """What the submission rounds of the job's limits to the system's units, one
        note each (see :class:`.Rounding`); a backend that rounds says it here."""
        return []

    def is_transient(self, result: CommandResult) -> bool:
        """Whether a failed command may succeed if retried (daemon down, timeout):
        by default, words of network and daemon failures in its output."""
        text = (result.stderr + result.stdout).lower()
        return any(word in text for word in (
            "timed out", "timeout", "unable to contact", "connection refused",
            "cannot connect", "try again", "temporarily", "socket", "communication",
            "not responding", "no route to host"))

    # --- the Scheduler API ------------------------------------------------------------------
    def job_submission(self, jobs: EngineJob | list[EngineJob], signal_end: bool = True
                       ) -> list[str | None]:
        """Jobs alike (the same submit options) as arrays when ``array_submission``
        is ``auto``, chunked under :meth:`array_chunk`; the others one by one. One
        id a job, an element's in the system's form (``ID_IDX``, ``ID[IDX]``)."""
        batch = job_list(jobs)
        groups = self._array_groups(batch) if self.arrays and len(batch) > 1 else [
            [index] for index in range(len(batch))]
        ids: list[str | None] = [None] * len(batch)
        self._per_command = max(1, len(batch) // max(1, len(groups)))

        def submit(group: list[int]) -> None:
            if len(group) == 1:
                ids[group[0]] = self._submit_one(batch[group[0]])
                return
            for index, job_id in zip(group, self._submit_array([batch[i] for i in group]),
                                     strict=True):
                ids[index] = job_id

        if len(groups) == 1:
            submit(groups[0])
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(groups))) as pool:
                list(pool.map(submit, groups))
        return ids

    def _array_groups(self, batch: Sequence[EngineJob]) -> list[list[int]]:
        """Indexes of jobs alike, chunked under the array size: alike when their
        submit commands are the same but for the name and script, and hold none of
        the options ``array_support.alone`` names."""
        alike: dict[tuple[str, ...], list[int]] = {}
        alone = self.array_support.alone if self.array_support else frozenset()
        for index, job in enumerate(batch):
            try:
                key = tuple(self.submit_argv(job, Path("/-/job.sh"), "-"))
            except ValueError:  # unbalanced quotes: refused by _submit_one
                key = ("", str(index))
            if not alone.isdisjoint(key):
                key = ("", str(index))
            alike.setdefault(key, []).append(index)
        size = max(1, self.array_chunk())
        return [group[start:start + size] for group in alike.values()
                for start in range(0, len(group), size)]

    def get_jobs_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        """The statuses the wrappers' files tell, else those of the last poll; a new
        poll when one is due (see the module's doc), or when an id has not been
        asked about yet."""
        with self._lock:
            for job_id in scheduler_job_ids:
                if job_id not in self._jobs:
                    self._adopt(job_id)
            if not self.polling:
                self._read_files(scheduler_job_ids)
            now = time.monotonic()
            due = (now - self._last_poll > min(self.min_interval, 0.2) if self.polling
                   else now >= self._next_poll)
            if due or not self._unasked.isdisjoint(scheduler_job_ids):
                self._poll()
            if self._cancel_pending and now - self._last_retry > min(self.min_interval, 0.2):
                self._last_retry = now
                for job_id in sorted(self._cancel_pending):
                    tracked = self._jobs.get(job_id)
                    if tracked is None or tracked.status in constants.ENDED_JOB_STATUS:
                        self._cancel_pending.discard(job_id)
                self._cancel(sorted(self._cancel_pending), retries=0)
            return {job_id: self._jobs[job_id].status for job_id in scheduler_job_ids}

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        with self._lock:
            if scheduler_job_id not in self._jobs:  # never asked about: ask first
                self.get_jobs_status([scheduler_job_id])
            self._unasked.discard(scheduler_job_id)
            tracked = self._jobs.pop(scheduler_job_id, None)
            killed = self._killed.pop(scheduler_job_id, None)
            self._kill_asked.pop(scheduler_job_id, None)
        if tracked is None:
            return ExitInfo(constants.EXIT_UNDETERMINED, reason="unknown job id")
        info = self._exit_info(tracked, killed)
        self._remove_files(scheduler_job_id, tracked)
        return info

    def kill_job(self, scheduler_job_id: str) -> None:
        self.kill_jobs([scheduler_job_id])

    def kill_jobs(self, scheduler_job_ids: Sequence[str]) -> None:
        """Cancel the jobs that have not ended, in one command when the system's
        cancel takes many ids. A job whose end the last poll saw, or whose wrapper
        wrote its exit file, has ended: that end stands, nothing is cancelled."""
        doomed = []
        with self._lock:
            for job_id in scheduler_job_ids:
                if job_id not in self._jobs:
                    self._adopt(job_id)
                tracked = self._jobs[job_id]
                if (tracked.status in constants.ENDED_JOB_STATUS
                        or self._exit_record(tracked) is not None):
                    continue
                self._killed[job_id] = time.time()
                self._kill_asked[job_id] = time.monotonic()
                doomed.append(job_id)
        self._cancel(doomed)
        with self._lock:  # a job cancelled while queued has no wrapper to tell its end
            self._interval = self.min_interval
            self._next_poll = min(self._next_poll, time.monotonic() + self.min_interval)

    def _cancel(self, job_ids: Sequence[str], retries: int | None = None) -> None:
        """Cancel jobs (CANCEL_CHUNK ids a command, or one each); those the batch
        system could not take (down) are asked again at the next polls: a kill asked
        during an outage is not lost."""
        many = len(job_ids) > 1 and self.cancel_many_argv(job_ids[:2]) is not None
        step = self.CANCEL_CHUNK if many else 1
        for start in range(0, len(job_ids), step):
            group = job_ids[start:start + step]
            try:
                self.send_cancel(group, retries)
            except CommandError as error:
                if error.transient:
                    self._cancel_pending.update(group)
                log.warning("%s: cannot cancel job %s%s: %s", self.name, ",".join(group),
                            " yet, will ask again" if error.transient else "", error)
            else:
                self._cancel_pending.difference_update(group)

    def send_cancel(self, job_ids: Sequence[str], retries: int | None = None) -> None:
        """Cancel these jobs (one, or as many as ``cancel_many_argv`` takes): by
        default, run the cancel command; a backend whose cancel is a library call
        overrides it. CommandError when the system could not take it."""
        argv = (self.cancel_many_argv(job_ids) if len(job_ids) > 1
                else self.cancel_argv(job_ids[0]))
        self.run("cancel", argv or [], retries=retries)

    def submission_room(self) -> int | None:
        """Commands the budget has now, less RESERVE, times the jobs a submit
        command carried in the last submission (arrays: many; jobs unalike: one),
        so that a submission of jobs unalike never waits on the budget."""
        available = self._budget.available()
        if available is None:
            return None
        return max(0, int(available) - RESERVE) * self._per_command

    def poll_interval(self) -> float:
        return self._interval if self.polling else self.max_interval

    def set_change_notifier(self, notify: ChangeNotifier) -> None:
        self._notify = notify

    def close(self) -> None:
        with self._lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    def submission_time(self, scheduler_job_ids: Sequence[str] = (),
                        names: Sequence[str] = ()) -> float | None:
        """When the earliest of these jobs (by id or batch name) was written for
        submission (its spec's mtime): the lower bound of a history query, which
        then never scans all of history. None when none of their files is left."""
        with self._lock:
            folders = [self._jobs[job_id].files for job_id in scheduler_job_ids
                       if job_id in self._jobs]
        folders += [self.state_dir / name for name in names]
        times = []
        for folder in folders:
            with contextlib.suppress(OSError, ValueError):  # a job's spec, an array's script
                times.append(min(path.stat().st_mtime for path in
                                 (folder / SPEC_FILE, folder / "job.sh") if path.exists()))
        return min(times, default=None)

    def find_submitted(self, submission_tags: Sequence[str]) -> dict[str, str]:
        """Looked up by name: a job's own, or for an array's element the array's
        (its folder's ``array.json`` names the array and the element's index)."""
        names = {job_name(tag): tag for tag in submission_tags}
        elements: dict[str, tuple[str, int]] = {}  # tag -> (array name, index)
        for name, tag in names.items():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                entry = json.loads((self.state_dir / name / ARRAY_ENTRY).read_text())
                elements[tag] = (str(entry["array"]), int(entry["index"]))
        wanted = {*names, *(array for array, _ in elements.values())}
        try:
            found = self.find_by_name(sorted(wanted))
        except CommandError as error:
            log.warning("%s: cannot look up earlier submissions: %s", self.name, error)
            return {}
        ids = {}
        for name, tag in names.items():
            if tag in elements:
                array, index = elements[tag]
                if array in found:
                    ids[tag] = self.array_element_id(found[array], index)
            elif name in found:
                ids[tag] = found[name]
            folder = self.state_dir / name
            if tag in ids and folder.is_dir() and not os.path.lexists(self._link_path(ids[tag])):
                with contextlib.suppress(OSError):  # the id's files: its wrapper's word
                    self._link(ids[tag], folder)
        return ids

    # --- commands ---------------------------------------------------------------------------
    def run(self, kind: str, argv: Sequence[str], *, retries: int | None = None,
            check: bool = True, ok_codes: Container[int] = (0,)) -> CommandResult:
        """Run a batch command (no shell) with ``command_timeout`` through
        :meth:`request`; CommandError when it fails for good.

        ``ok_codes``: exit statuses that still carry an answer (qstat's 153 when
        some of the ids asked about are unknown); ``check=False``: any status.
        """
        program = Path(argv[0]).name

        def command() -> CommandResult:
            result: CommandResult | None = None
            try:
                completed = subprocess.run(
                    list(argv), capture_output=True, text=True, errors="replace",
                    timeout=self.command_timeout, stdin=subprocess.DEVNULL, check=False)
                result = CommandResult(completed.returncode, completed.stdout, completed.stderr)
                if completed.returncode in ok_codes or not check:
                    return result
                transient = self.is_transient(result)
                message = (result.stderr.strip() or result.stdout.strip()
                           or f"exit status {result.returncode}").splitlines()[-1].strip()
            except subprocess.TimeoutExpired:
                transient, message = True, f"timed out after {self.command_timeout:g} s"
            except OSError as error:
                transient, message = False, f"cannot run {argv[0]}: {error.strerror}"
            if not message.startswith(f"{program}:"):  # sbatch says "sbatch: error: .."
                message = f"{program}: {message}"
            raise CommandError(message, transient, result, program)

        return self.request(kind, command, retries=retries)

    def request(self, kind: str, action: Callable[[], T], *, retries: int | None = None) -> T:
        """Send one request to the batch system (a command, or a library call such
        as DRMAA's) under the command budget; retry it when it raises a transient
        CommandError, with backoff, ``retries`` times (default ``self.retries``).

        ``kind`` counts each attempt in ``self.calls`` (tests and benchmarks read it).
        """
        attempts = (self.retries if retries is None else retries) + 1
        delays = backoff_delays()
        for attempt in range(attempts):
            self._budget.take()
            self.calls[kind] = self.calls.get(kind, 0) + 1
            try:
                return action()
            except CommandError as error:
                if not error.transient or attempt == attempts - 1:
                    raise
                delay = next(delays)
                log.info("%s: %s failed (%s), retrying in %.1f s", self.name,
                         error.program or kind, error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    # --- submission -------------------------------------------------------------------------
    def _submit_one(self, job: EngineJob) -> str | None:
        """Submit one job; its id, or None with the reason recorded (:func:`.refuse`)
        and no file left behind."""
        name = self._prepare(job)
        if name is None:
            return None
        try:
            files = self._write_files(job, name)
        except OSError as error:
            refuse(self, job, f"{self.name}: cannot write the job's batch script: {error}")
            return None
        argv = self.submit_argv(job, files / "job.sh", name)
        try:
            job_id = self._submit(argv, name)
        except CommandError as error:
            self._remove_folder(files)
            self._refused(job, error)
            return None
        self._track(job_id, job, files)
        return job_id

    def _prepare(self, job: EngineJob) -> str | None:
        """The job's name, or None when its native options are refused (said)."""
        try:
            problem = self.reserved_option([*self.native_specification, *job.native_args()])
        except ValueError as error:  # unbalanced quotes
            problem = f"cannot be split into words ({error})"
        if problem:
            refuse(self, job, f"{self.name} refused the job: native_specification: {problem}")
            return None
        return job_name(job.submission_tag or f"jb-{os.getpid()}-{time.time_ns():x}")

    def _submit(self, argv: list[str], name: str) -> str:
        """Run a submit command once; a transient failure is looked up by name before
        it is retried. The id it printed; CommandError when it fails for good."""
        try:
            return self.send_submission(argv)
        except CommandError as error:
            if not error.transient:
                raise
            return self._retry_submission(argv, name, error)

    def _refused(self, job: EngineJob, error: CommandError) -> None:
        refuse(self, job, f"{self.name} {'could not take' if error.transient else 'refused'}"
                          f" the job: {self.refusal_text(error)}")

    def _track(self, job_id: str, job: EngineJob, files: Path,
               array: tuple[Path, int] | None = None, wake: bool = True) -> None:
        """Follow a submitted job; ``wake``: the watcher now (an array's elements
        wake it once, after the last)."""
        self._link(job_id, files, element=array is not None)
        note = self.rounding.said(self.limit_notes(job))
        with self._lock:
            self._jobs[job_id] = _Tracked(files, status=self.submitted_status(job), note=note,
                                          array=array)
            self._fresh[job_id] = files
            self._interval = self.min_interval
            if wake:
                self._watch()

    def _submit_array(self, jobs: Sequence[EngineJob]) -> list[str | None]:
        """Submit jobs alike as one array: each element's folder as a lone job's,
        the array's folder holding its script and one link a index to the element's
        spec (the script runs the wrapper on ``FOLDER/$INDEX``), each element's
        ``array.json`` naming the array and its index (:meth:`find_submitted`)."""
        support = self.array_support
        assert support is not None
        ids: list[str | None] = [None] * len(jobs)
        elements: list[tuple[int, Path]] = []  # (position in jobs, folder)
        for position, job in enumerate(jobs):
            name = self._prepare(job)
            if name is None:
                continue
            try:
                elements.append((position, self._write_files(job, name, element=True)))
            except OSError as error:
                refuse(self, job, f"{self.name}: cannot write the job's batch script: {error}")
        if len(elements) < 2:  # nothing left to group
            for position, folder in elements:
                self._remove_folder(folder)
                ids[position] = self._submit_one(jobs[position])
            return ids
        array_name = job_name(f"{elements[0][1].name[:JOB_NAME_LIMIT - 6]}.array")
        first = support.first
        try:
            folder = self._write_array(array_name, [files for _, files in elements])
        except OSError as error:
            for position, files in elements:
                self._remove_folder(files)
                refuse(self, jobs[position], f"{self.name}: cannot write the array's batch "
                       f"script: {error}")
            return ids
        argv = self.submit_argv(jobs[elements[0][0]], folder / "job.sh", array_name)
        if str(folder / "job.sh") not in argv:  # one string for a remote shell: alone
            self._remove_array(folder, force=True)
            for position, _ in elements:
                ids[position] = self._submit_one(jobs[position])
            return ids
        at = argv.index(str(folder / "job.sh"))
        argv[at:at] = [item.format(first=first, last=first + len(elements) - 1)
                       for item in support.option]
        try:
            array_id = self._submit(argv, array_name)
        except CommandError as error:
            for position, files in elements:
                self._remove_folder(files)
                self._refused(jobs[position], error)
            self._remove_array(folder, force=True)
            return ids
        with self._lock:
            self._array_left[folder] = self._array_left.get(folder, 0) + len(elements)
        for index, (position, files) in enumerate(elements, first):
            job_id = self.array_element_id(array_id, index)
            self._track(job_id, jobs[position], files, (folder, index), wake=False)
            ids[position] = job_id
        with self._lock:
            self._watch()
        return ids

    def _write_array(self, name: str, elements: Sequence[Path]) -> Path:
        """The array's folder: its batch script, ``INDEX``: a hard link to the element's
        spec (no new inode: see :meth:`_link`), and each element's ``array.json``
        naming the array, its index and the element's folder (written before the
        array is submitted)."""
        support = self.array_support
        assert support is not None
        folder = self.state_dir / name
        private_dir(folder)
        for index, files in enumerate(elements, support.first):
            link = folder / str(index)
            link.unlink(missing_ok=True)
            if not _hard_link(files / SPEC_FILE, link):
                link.symlink_to(files / SPEC_FILE)
            write_private(files / ARRAY_ENTRY, json.dumps({"array": name, "index": index,
                                                           "folder": files.name}))
        self._write_script(folder, shlex.quote(f"{folder}/") + '"${' + support.index_variable
                           + '}"')
        create_private(self.batch_output_path(name))
        return folder

    def _remove_array(self, folder: Path, force: bool = False) -> None:
        """Remove an array's folder once no element's link is left in it (``force``:
        with its links)."""
        with contextlib.suppress(OSError):
            links = [entry.name for entry in os.scandir(folder) if entry.name.isdigit()]
            if links and not force:
                return
            for child in ("job.sh", "batch.out", *links):
                (folder / child).unlink(missing_ok=True)
            folder.rmdir()

    def _retry_submission(self, argv: list[str], name: str, error: CommandError) -> str:
        """Retry a submission whose outcome is unknown, unless it did go through;
        CommandError when it fails for good."""
        delays = backoff_delays(1.0)
        for _ in range(self.retries):
            time.sleep(next(delays))
            try:
                found = self.find_by_name([name])
                if name in found:
                    return found[name]
                return self.send_submission(argv)
            except CommandError as retry_error:
                if not retry_error.transient:
                    raise
                error = retry_error
        raise error

    def _write_files(self, job: EngineJob, name: str, element: bool = False) -> Path:
        """The job's private folder: its spec, the batch script (read by the submit
        command, never executed itself) and the batch output, all 0600; an array's
        ``element`` has its spec alone (the array's folder has the rest)."""
        folder = self.state_dir / name
        private_dir(folder)
        (folder / ARRAY_ENTRY).unlink(missing_ok=True)  # a lone job's now
        write_spec(str(folder / SPEC_FILE), wrapper_spec(in_container(job, self.container_command),
                                                         folder, self.KILL))
        for child in (EXIT_FILE, START_FILE):
            (folder / child).unlink(missing_ok=True)
        if not element:
            self._write_script(folder, shlex.quote(str(folder / SPEC_FILE)))
            create_private(self.batch_output_path(name))
        return folder

    def _write_script(self, folder: Path, spec: str) -> None:
        """``folder``'s batch script: it runs the wrapper on ``spec`` (shell words)."""
        write_private(folder / "job.sh", "\n".join([
            "#!/bin/sh", f"exec {shlex.join(self.wrapper_command())} {spec}", ""]))

    def wrapper_command(self) -> list[str]:
        """The argv that runs the job wrapper (the spec's path follows): the native
        one, built on first use, unless ``job_wrapper = python`` or it cannot be
        built here (a warning, once; with ``job_wrapper = native``, OSError saying
        why)."""
        with self._lock:  # submission threads: built once
            if self._wrapper is None:
                self._wrapper = self._build_wrapper()
            return self._wrapper

    def _build_wrapper(self) -> list[str]:
        if self.job_wrapper != "python":
            try:
                return [str(nativewrap.build(self.state_dir / ".wrapper"))]
            except nativewrap.BuildError as error:
                if self.job_wrapper == "native":
                    raise OSError(f"job_wrapper = native: {error}") from None
                log.warning("%s: %s: jobs start through the Python wrapper, 10-20 ms "
                            "more each (set job_wrapper = python to choose it without "
                            "this note)", self.name, error)
        return command(self.job_python)

    def batch_output_path(self, name: str) -> Path:
        """Where the batch system writes the script's own output (not the job's: the
        wrapper's errors, such as a missing ``job_python``), in the job's folder."""
        return self.state_dir / name / "batch.out"

    def _remove_files(self, job_id: str, tracked: _Tracked) -> None:
        self._link_path(job_id).unlink(missing_ok=True)
        entry = None if tracked.array else self._array_entry(tracked.files / ARRAY_ENTRY)
        array = tracked.array or (entry[0] if entry else None)
        self._remove_folder(tracked.files)
        if array is not None:
            folder, index = array
            (folder / str(index)).unlink(missing_ok=True)
            with self._lock:  # an array of this process: its folder goes with its last
                left = self._array_left.get(folder)
                if left is not None:
                    left -= 1
                    if left > 0:
                        self._array_left[folder] = left
                        return
                    del self._array_left[folder]
            self._remove_array(folder)

    def _array_entry(self, path: Path) -> tuple[tuple[Path, int], Path | None] | None:
        """The array folder and index an element's ``array.json`` (or its hard link
        in ``by-id``) names, and the element's folder (None in an earlier release's)."""
        try:
            entry = json.loads(path.read_text())
            array = self.state_dir / safe_name(str(entry["array"]), 255), int(entry["index"])
            folder = entry.get("folder")
            return array, None if folder is None else self.state_dir / safe_name(folder, 255)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    @staticmethod
    def _remove_folder(files: Path) -> None:
        for child in ("job.sh", SPEC_FILE, "job.json", EXIT_FILE, START_FILE, "batch.out",
                      ARRAY_ENTRY):  # job.json: an earlier release's spec
            (files / child).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            files.rmdir()

    # --- status -----------------------------------------------------------------------------
    def _link_path(self, job_id: str) -> Path:
        return self.state_dir / "by-id" / safe_name(job_id, 255)

    def _link(self, job_id: str, files: Path, element: bool = False) -> None:
        """Index the job's files by job id, so a restarted engine finds them: a
        symlink to its folder, or for an array's ``element`` a hard link to its
        ``array.json``, which names the array and its index (the array's link of
        that index names the element's spec): no new inode, which on a busy ext4
        without a journal costs 0.1-0.4 ms of CPU each. A symlink where hard links
        cannot be made."""
        link = self._link_path(job_id)
        link.unlink(missing_ok=True)
        try:
            self._make_link(link, files, element)
        except FileNotFoundError:  # the first job's: by-id made once, not at each job
            private_dir(link.parent)
            self._make_link(link, files, element)

    @staticmethod
    def _make_link(link: Path, files: Path, element: bool) -> None:
        if element:
            try:
                if _hard_link(files / ARRAY_ENTRY, link):
                    return
            except FileNotFoundError:
                if not link.parent.is_dir():
                    raise
        link.symlink_to(files)

    def _files_of(self, job_id: str) -> tuple[Path, tuple[Path, int] | None]:
        """The folder of a job this process did not submit, by its ``by-id`` entry
        (see :meth:`_link`), and its array's folder and index for an element; a
        path that does not exist when nothing says."""
        link = self._link_path(job_id)
        if link.is_symlink():
            return link.resolve(), None
        entry = self._array_entry(link)
        if entry is not None:
            element, files = entry
            if files is not None:
                return files, element
            folder, index = element
            with contextlib.suppress(OSError):  # an earlier release's: its link, a symlink
                return (folder / os.readlink(folder / str(index))).parent, element
        return link, None

    def _adopt(self, job_id: str) -> None:
        """Track a job this process did not submit (an earlier engine's, a script's):
        undetermined until a query answers about it."""
        files, array = self._files_of(job_id)
        self._jobs[job_id] = _Tracked(files, submitted=False, status=constants.UNDETERMINED,
                                      array=array)
        self._fresh[job_id] = files
        self._unasked.add(job_id)
        self._watch()

    # --- the wrappers' files ----------------------------------------------------------------
    def _watch(self) -> None:
        """Start the watcher of the job folders, unless it runs (called locked)."""
        if self.polling:
            return
        if self._watcher is None:
            self._watcher = FolderWatcher(self.name, self._followed, self._tick,
                                          self._report, self._idle, self._take_fresh)
            self._watcher.start()
        else:
            self._watcher.wake()

    def _followed(self) -> dict[str, Path]:
        with self._lock:
            self._fresh.clear()  # all of them now
            return {job_id: t.files for job_id, t in self._jobs.items()
                    if t.status not in constants.ENDED_JOB_STATUS}

    def _take_fresh(self) -> dict[str, Path]:
        """The jobs tracked since the watcher last took them."""
        with self._lock:
            fresh, self._fresh = self._fresh, {}
            return fresh

    def _tick(self) -> list[str]:
        """All followed ids once a poll is due (the engine then asks about them)."""
        with self._lock:
            if self.polling or time.monotonic() < self._next_poll:
                return []
            if self._tick_sent == self._next_poll:
                return []
            self._tick_sent = self._next_poll
            return [job_id for job_id, t in self._jobs.items()
                    if t.status not in constants.ENDED_JOB_STATUS]

    def _report(self, job_ids: list[str]) -> None:
        if self._notify is not None:
            self._notify(job_ids)

    def _idle(self) -> bool:
        """True (and the watcher forgotten) when no job is followed: it ends."""
        with self._lock:
            if any(t.status not in constants.ENDED_JOB_STATUS for t in self._jobs.values()):
                return False
            self._watcher = None
            return True

    def _read_files(self, job_ids: Sequence[str]) -> None:
        """Apply what the wrappers' files say: started (running), ended. An end by a
        signal waits for the system's word (a time or memory limit)."""
        for job_id in job_ids:
            tracked = self._jobs[job_id]
            if tracked.status in constants.ENDED_JOB_STATUS:
                continue
            level = files_level(tracked.files, tracked.level)
            if level <= tracked.level:
                continue
            tracked.level = level
            if level == 1:
                tracked.status = constants.RUNNING
                continue
            exit_record = self._exit_record(tracked)
            if exit_record is None:
                continue
            if job_id in self._killed or not exit_record["exit"][2]:
                tracked.status = self._wrapped_status(job_id, exit_record)
                tracked.absence.seen()
                self._unasked.discard(job_id)
            else:
                tracked.signal_end_seen = time.monotonic()
                self._next_poll = min(self._next_poll, time.monotonic() + self.min_interval)

    def _poll(self) -> None:
        active = [job_id for job_id, t in self._jobs.items()
                  if t.status not in constants.ENDED_JOB_STATUS]
        self._last_poll = time.monotonic()
        self._next_poll = self._last_poll + self.max_interval
        if not active:
            self._interval = self.max_interval
            return
        changed = False
        try:
            records = self.query_status(active)
        except CommandError as error:
            log.warning("%s: status query failed, keeping last states: %s", self.name, error)
            self._interval = min(self._interval * 2, self.max_interval)
            return
        self._unasked.difference_update(active)
        ended = [job_id for job_id in active if job_id not in records
                 or self.record_status(records[job_id]) == constants.DONE]
        if ended:
            try:
                history = self.ended_records(ended)
            except CommandError as error:
                log.warning("%s: finished-job query failed: %s", self.name, error)
                history = {}
            for job_id, final in history.items():
                # a history lagging behind the queue does not undo an end the queue saw
                if job_id not in records or self.record_status(final) == constants.DONE:
                    records[job_id] = final
        for job_id in active:
            tracked = self._jobs[job_id]
            record = records.get(job_id)
            status = self._status_of(job_id, tracked, record)
            if status == constants.DONE and job_id in self._killed:
                status = constants.FAILED  # as its exit info says: killed_by_user
            if status != tracked.status:
                changed = True
                tracked.status = status
            tracked.ran |= status == constants.RUNNING
            if record is not None:
                tracked.record = record
        self._interval = (self.min_interval if changed
                          else min(self._interval * 1.5, self.max_interval))
        self._kill_again(active)
        if not self.polling:
            self._check_shared(active)

    def _kill_again(self, active: Sequence[str]) -> None:
        """Cancel again the killed jobs this poll still shows active KILL_REPEAT
        seconds after their kill; the next poll comes when the next may be due."""
        now = time.monotonic()
        unheeded = [job_id for job_id in active if job_id in self._kill_asked
                    and self._jobs[job_id].status not in constants.ENDED_JOB_STATUS
                    and job_id not in self._cancel_pending]
        if not unheeded:
            return
        again = [job_id for job_id in unheeded if now - self._kill_asked[job_id] > self.KILL_REPEAT]
        if again:
            log.info("%s: jobs %s still active after their kill: cancelling again", self.name,
                     ",".join(again))
            for job_id in again:
                self._kill_asked[job_id] = now
            self._cancel(again, retries=0)
        soonest = min(self._kill_asked[job_id] for job_id in unheeded) + self.KILL_REPEAT
        self._next_poll = min(self._next_poll, max(soonest, now) + self.min_interval)

    def _check_shared(self, active: Sequence[str]) -> None:
        """Poll as before if the state folder proves not shared with the compute nodes
        (the system says a job of ours ran; no file of its wrapper appeared); ask soon
        about wrappers that ended by a signal the system has not confirmed yet."""
        now = time.monotonic()
        for job_id in active:
            tracked = self._jobs[job_id]
            waited = now - (tracked.signal_end_seen or now)
            if tracked.signal_end_seen is not None and tracked.status not in (
                    constants.ENDED_JOB_STATUS):
                exit_record = self._exit_record(tracked)
                if waited > 3 * self.START_GRACE and exit_record is not None:
                    # the system still says it runs (a long epilog): the wrapper's end stands
                    tracked.status = self._wrapped_status(job_id, exit_record)
                else:  # asked again, less and less often
                    self._next_poll = min(self._next_poll,
                                          now + max(self.min_interval, waited / 2))
            if not tracked.submitted or tracked.level:
                continue
            if tracked.status == constants.RUNNING and tracked.running_since is None:
                tracked.running_since = now
            record = tracked.record
            ran = ((tracked.running_since is not None
                    and now - tracked.running_since > self.START_GRACE)
                   or (record is not None and self.record_status(record) == constants.DONE
                       and record.exit_value == 0 and not record.term_sig))
            if ran and files_level(tracked.files) == 0:
                self.polling = True
                log.warning("%s: job %s ran but its wrapper wrote no file in %s: is this "
                            "folder not shared with the compute nodes? Polling every %g-%g s "
                            "instead", self.name, job_id, self.state_dir, self.min_interval,
                            self.max_interval)
                return

    def _status_of(self, job_id: str, tracked: _Tracked, record: JobRecord | None) -> str:
        if record is not None:
            tracked.absence.seen()
            status = self.record_status(record)
            if status is None:
                log.warning("%s: job %s in unknown state %r: treated as undetermined",
                            self.name, job_id, record.state)
                return constants.UNDETERMINED
            if status == constants.DONE:
                return self._ended_status(job_id, tracked, record)
            return status
        # in no query: the wrapper's exit file may still say how it ended
        exit_record = self._exit_record(tracked)
        if exit_record is not None:
            return self._wrapped_status(job_id, exit_record)
        if (job_id in self._killed and job_id not in self._cancel_pending
                and _proven(tracked, killed=True)):
            # deleted before it ran (maybe before any poll saw it, or by an earlier
            # engine whose stop this one finishes: its folder proves it was ours), on
            # a system keeping no history of such jobs
            return constants.FAILED
        last = tracked.record
        if (last is not None and not self._ran(tracked) and self.record_status(last) in WAITING
                and not self.answers_ended_jobs()
                and tracked.absence.lost(0.0)):  # missing from two polls in a row
            # it left the queue without running its wrapper, and no history says why
            # (a qdel/scancel of someone else, on a system keeping no history)
            tracked.record = JobRecord("GONE", exit_status=constants.EXIT_ABORTED,
                                       reason="removed from the queue before it ran", ran=False)
            return constants.FAILED
        if tracked.absence.lost(self.LOST_AFTER):
            tracked.record = JobRecord("LOST", reason=f"{self.name} lost track of the job")
            return constants.FAILED
        return constants.UNDETERMINED

    def _ended_status(self, job_id: str, tracked: _Tracked, record: JobRecord) -> str:
        """DONE or FAILED for a job whose native state is terminal."""
        if self._abnormal_end(record) is not None:
            return constants.FAILED
        exit_record = self._exit_record(tracked)
        if exit_record is not None:
            return self._wrapped_status(job_id, exit_record)
        ok = record.exit_value == 0 and not record.term_sig and job_id not in self._killed
        return constants.DONE if ok else constants.FAILED

    def _wrapped_status(self, job_id: str, exit_record: Mapping[str, Any]) -> str:
        """DONE or FAILED from the wrapper's exit record: a job our kill ended failed,
        even when it caught the system's warning signal and exited 0."""
        if _kill_reached(self._killed.get(job_id), exit_record):
            return constants.FAILED
        return ended_status(*exit_record["exit"][:2])

    def _abnormal_end(self, record: JobRecord) -> tuple[str, str] | None:
        """``(exit_status, reason)`` when the system says the job ended abnormally."""
        if record.exit_status is not None:
            return record.exit_status, record.reason or ""
        return self.ABNORMAL_ENDS.get(record.state)

    @staticmethod
    def _exit_record(tracked: _Tracked) -> dict[str, Any] | None:
        """The wrapper's exit record, None before it exists; read once (the wrapper
        writes it once, atomically), however many steps of a job's end look at it."""
        if tracked.exit_record is None:
            tracked.exit_record = read_exit_file(tracked.files / EXIT_FILE)
        return tracked.exit_record

    def _ran(self, tracked: _Tracked) -> bool:
        """Whether the job started: a poll saw it run, or its wrapper's files say so."""
        return tracked.ran or tracked.level > 0 or files_level(tracked.files) > 0

    def _exit_info(self, tracked: _Tracked, killed_at: float | None) -> ExitInfo:
        exit_record = self._exit_record(tracked)
        if exit_record is None and not _proven(tracked, killed=killed_at is not None):
            return ExitInfo(constants.EXIT_UNDETERMINED,
                            reason=f"{self.name} does not know this job")
        record = tracked.record or JobRecord("UNKNOWN")
        usage = record.resource_usage
        # a job killed by SIGKILL left no exit file: its wrapper's start file dates it
        dates: tuple[float | None, float | None] = (
            None if exit_record is not None else _start_time(tracked.files), None)
        killed = _kill_reached(killed_at, exit_record)
        if exit_record is not None:
            status, value, sig, wrapped_usage = exit_record["exit"]
            if self.record_status(record) not in constants.ENDED_JOB_STATUS:
                # the last poll saw it run: its usage then was a sample (PBS's
                # resources_used of a running job, mem=0kb at first), not the job's
                usage = None
            usage = _merge_usage(usage, wrapped_usage)
            reason = exit_record.get("reason")
            dates = (exit_record.get("started"), exit_record.get("ended"))
        else:
            status, value, sig, reason = _exit_from_record(record)
        abnormal = self._abnormal_end(record)
        if killed:  # even "exit 0": a shell's `wait` returns 0 once its children are killed
            status = constants.USER_KILLED
            reason = "killed while it ran" if self._ran(tracked) else "cancelled before it ran"
        elif abnormal is not None:
            status, reason = abnormal[0], record.reason or abnormal[1]
        elif exit_record is None and record.reason:
            reason = record.reason
        return ExitInfo(status, value, sig, usage,
                        "; ".join(filter(None, [reason, tracked.note])) or None, *dates,
                        ran=self._started(tracked, record, exit_record, killed))

    def _started(self, tracked: _Tracked, record: JobRecord,
                 exit_record: Mapping[str, Any] | None, killed: bool) -> bool | None:
        """Whether the job started: the system's word, else what this process saw (a
        job killed while it waited never ran); None when nobody can tell."""
        if record.ran is not None:
            return record.ran
        if exit_record is not None or self._ran(tracked):
            return True
        unseen = record.state == "UNKNOWN" and not self.polling  # no start file either
        if killed and (unseen or self.record_status(record) in WAITING):
            return False
        return None

    def job_notes(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        """A waiting job's reason in the last poll (``pending: Resources``), and the
        limits its submission rounded."""
        notes = {}
        with self._lock:
            for job_id in scheduler_job_ids:
                tracked = self._jobs.get(job_id)
                if tracked is None:
                    continue
                record, pending = tracked.record, None
                if (tracked.status in WAITING and record is not None and record.reason
                        and record.reason != record.state):
                    pending = f"pending: {record.reason}"
                text = "; ".join(filter(None, [pending, tracked.note]))
                if text:
                    notes[job_id] = text
        return notes


def _start_time(files: Path) -> float | None:
    """When the job's wrapper started (its start file's time); None if it did not."""
    try:
        return (files / START_FILE).stat().st_mtime
    except OSError:
        return None


def _proven(tracked: _Tracked, killed: bool) -> bool:
    """Whether a job is known to have existed though the system may not know it
    (any more): this process submitted it or saw it in a query, or, for a job we
    killed, its folder is here (an earlier engine submitted it)."""
    return (tracked.record is not None or tracked.submitted
            or (killed and tracked.files.is_dir()))


def _kill_reached(killed_at: float | None, exit_record: Mapping[str, Any] | None) -> bool:
    """Whether a kill we asked (at ``killed_at``) ended the job: yes unless the
    wrapper's record shows it ended on its own, before the system signalled it. A
    job that caught the warning may end before the signal reaches its wrapper (the
    system signals one process after another): an end after the kill was asked is
    the kill's."""
    if killed_at is None:
        return False
    if exit_record is None or exit_record.get("signals", True) != []:
        return True
    return float(exit_record.get("ended") or 0) >= killed_at


def _exit_from_record(record: JobRecord) -> tuple[str, int | None, int | None, str | None]:
    if record.term_sig:
        return constants.FINISHED_TERM_SIG, None, record.term_sig, record.reason
    if record.exit_value is None:
        return constants.EXIT_UNDETERMINED, None, None, record.reason
    return constants.FINISHED_REGULARLY, record.exit_value, 0, record.reason


def _merge_usage(system: str | None, wrapper: str | None) -> str | None:
    """The batch system's usage items, completed by the wrapper's for those it lacks
    (Slurm knows no MaxRSS of a job shorter than its sampling period); a last
    ``wrapper=KEY,...`` item names those, so that reports tell who measured what."""
    items = dict(item.split("=", 1) for item in (system or "").split() if "=" in item)
    filled = []
    for item in (wrapper or "").split():
        key, _, value = item.partition("=")
        if key not in items:
            items[key] = value
            filled.append(key)
    if filled:
        items["wrapper"] = ",".join(filled)
    return " ".join(f"{key}={value}" for key, value in items.items()) or None


