"""The Scheduler API: the link between the workflow engine and a job manager.

A scheduler for a new kind of cluster is a small :class:`Scheduler` subclass
(four methods and ``build_scheduler``) registered under the entry-point group
``jobbridge.schedulers``; :mod:`jobbridge.testing` proves it honours the API.
Built-in schedulers are registered the same way.

Every status a scheduler gives comes from its system: an id that no query of
this process has seen is asked about before it is answered, and an id the
system does not know is ``undetermined`` (its exit info
``exit_status_undetermined``), never a guess.

Beyond the four methods, a scheduler may offer *extras* the engine uses when
present (the defaults below keep a minimal scheduler correct):

- :meth:`Scheduler.get_jobs_status`: the status of many jobs in one query (a
  scheduler whose system answers in bulk defines it instead of
  ``get_job_status``, which then asks it about one id);
- :meth:`Scheduler.set_change_notifier`: wake the engine as soon as a job ends;
- :meth:`Scheduler.poll_interval`: how long the engine may wait between polls;
- :meth:`Scheduler.submission_room`: how many jobs can be submitted now without
  waiting (a command budget): the engine submits no more, and asks again shortly;
- :meth:`Scheduler.find_submitted`: re-attach submissions a killed engine made;
- :meth:`Scheduler.forget`: the engine has recorded these jobs; their traces may go;
- :meth:`Scheduler.kill_jobs`: kill many jobs in one call to the system (``stop``);
- :meth:`Scheduler.refusal_reason`: why a submission was refused, in the system's
  words (the scheduler records it with :meth:`Scheduler.refuse`);
- :meth:`Scheduler.job_notes`: what the system says of a job beyond its status (why
  it is pending, a limit rounded at submission), shown as the job's reason;
- :meth:`Scheduler.run_command`: how a command using the scheduler runs (MPI's
  runs on every rank of the allocation).

A scheduler also declares what a resource using it may say: the configuration
keys it reads (:attr:`Scheduler.CONFIG_KEYS`: any other key is refused, naming
it), the values it accepts (:meth:`Scheduler.check_config`) and the most CPUs a
job can have (:meth:`Scheduler.max_job_cpus`), all checked before a workflow is
stored. :attr:`Scheduler.RESERVED_OPTIONS` names the native options it sets itself,
which a job's or a resource's ``native_specification`` may not give
(:meth:`Scheduler.check_job`).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from . import constants
from .errors import ConfigurationError, InputError, UnknownSchedulerError
from .model import EngineJob, ExitInfo
from .retry import CONFIG_KEYS as RETRY_CONFIG_KEYS

if TYPE_CHECKING:
    from importlib import metadata

    from .configuration import Configuration

__all__ = [
    "ChangeNotifier",
    "EngineJob",
    "ExitInfo",
    "Scheduler",
    "SchedulerInfo",
    "build_scheduler",
    "describe_schedulers",
    "get_scheduler_implementation",
    "get_schedulers_list",
    "job_list",
    "known_config_keys",
    "run_to_end",
    "wait_for_status",
]

ENTRY_POINT_GROUP = "jobbridge.schedulers"
#: ``notify(scheduler_job_ids=None)``: see :meth:`Scheduler.set_change_notifier`.
ChangeNotifier = Callable[..., None]
log = logging.getLogger(__name__)
#: Refusals kept for :meth:`Scheduler.refusal_reason` per scheduler, at most: a caller
#: that never asks (a script, a test) must not make them pile up.
MAX_REFUSALS = 1000
_refusals_lock = threading.Lock()


def job_list(jobs: EngineJob | Sequence[EngineJob]) -> list[EngineJob]:
    """The jobs of a ``job_submission`` call as a list (it takes one job or several)."""
    return [jobs] if isinstance(jobs, EngineJob) else list(jobs)


class Scheduler(abc.ABC):
    """Submits, follows and kills jobs on one computing resource."""

    #: The keys a resource section of this type may hold: the common ones (the engine
    #: reads ``max_job_*``, submission ``scratch_directory`` and ``path_translation_files``),
    #: plus those the subclass's ``build_scheduler`` reads.
    CONFIG_KEYS: ClassVar[frozenset[str]] = frozenset({
        "scheduler_type", "cpu_nb", "max_cpu_nb", "scheduler_interval", "max_job_in_queue",
        "max_job_running", "native_specification", "queues", "container_command",
        "scratch_directory", "path_translation_files", *RETRY_CONFIG_KEYS})
    #: Native options this scheduler sets itself, which a ``native_specification``
    #: may not give: ``{option: why}`` (``--job-name``: the batch job's name carries
    #: the tag that finds the job again after an engine crash). A long option also
    #: matches as ``--option=value`` and abbreviated; a short one as ``-Xvalue``.
    RESERVED_OPTIONS: ClassVar[Mapping[str, str]] = {}

    #: Who measured the figures of this scheduler's ``resource_usage`` (reports say
    #: it; items a batch job's wrapper supplied are named by a ``wrapper=`` item).
    usage_source: ClassVar[str] = "the scheduler"
    #: The usage item (``mem`` resident, ``vmem`` virtual) its memory limits bound:
    #: reports compare that peak with ``memory_mb``.
    peak_memory_item: ClassVar[str] = "mem"

    @abc.abstractmethod
    def job_submission(self, jobs: EngineJob | list[EngineJob], signal_end: bool = True
                       ) -> list[str | None]:
        """Submit jobs; one scheduler job id per job, in order, None where it failed.

        ``signal_end``: soma-workflow's request that the jobs' ends be signalled;
        jobbridge's schedulers signal every end through :meth:`set_change_notifier`
        when one is set, so they accept it and change nothing.
        """

    def get_job_status(self, scheduler_job_id: str) -> str:
        """A ``constants.JOB_STATUS`` value; UNDETERMINED for an id it does not know.

        By default, :meth:`get_jobs_status` asked about this one id: a scheduler
        defines one of the two.
        """
        if type(self).get_jobs_status is Scheduler.get_jobs_status:
            raise NotImplementedError(
                f"{type(self).__name__} defines neither get_job_status nor get_jobs_status")
        return self.get_jobs_status([scheduler_job_id])[scheduler_job_id]

    @abc.abstractmethod
    def get_job_exit_info(self, scheduler_job_id: str
                          ) -> tuple[str, int | None, int | None, str | None]:
        """``(exit_status, exit_value, term_sig, resource_usage)``, once, after DONE/FAILED."""

    @abc.abstractmethod
    def kill_job(self, scheduler_job_id: str) -> None:
        """Kill a queued or running job; its exit status becomes killed_by_user.

        A job that has already ended keeps its own end (the batch system's record,
        the job wrapper's exit file or DRMAA's wait say so): a kill never turns a
        success into ``killed_by_user``.
        """

    @classmethod
    @abc.abstractmethod
    def build_scheduler(cls, config: Configuration) -> Scheduler:
        """Create an instance parameterized by a resource's configuration."""

    # --- extras: optional, with defaults that keep a minimal scheduler correct -----------
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Whether this scheduler can work here, and if not, why (shown by the CLI)."""
        return True, ""

    @classmethod
    def check_config(cls, config: Configuration) -> None:
        """Refuse bad option values now (ConfigurationError): ``build_scheduler`` runs in
        the engine, once the workflow is stored, too late for a one-line exit 2."""
        for key in ("cpu_nb", "max_cpu_nb", "max_job_in_queue", "max_job_running",
                    *sorted(RETRY_CONFIG_KEYS)):
            config.get_int(key)
        config.get_float("scheduler_interval", 0.0)
        for key in ("native_specification", "queues", "container_command"):
            config.get_words(key)
        problem = cls.reserved_option(config.get_words("native_specification"))
        if problem:
            raise ConfigurationError(f"resource {config.resource_id!r}: option "
                                     f"native_specification: {problem}")

    @classmethod
    def check_job(cls, job: EngineJob) -> None:
        """Refuse (InputError) a job this scheduler cannot take as written, before the
        workflow is stored: by default, one whose ``native_specification`` gives a
        :attr:`RESERVED_OPTIONS` option."""
        if cls.RESERVED_OPTIONS and job.native_specification:
            try:
                words = job.native_args()
            except ValueError:  # unbalanced quotes: the system says so at submission
                return
            problem = cls.reserved_option(words)
            if problem:
                raise InputError(f"native_specification: {problem}")

    @classmethod
    def reserved_option(cls, words: Sequence[str]) -> str | None:
        """What is wrong with native options ``words`` giving a reserved option, or
        None (see :attr:`RESERVED_OPTIONS`)."""
        for word in words:
            for option, why in cls.RESERVED_OPTIONS.items():
                if _is_option(word, option):
                    return f"{word} is not allowed: {why}"
        return None

    @classmethod
    def max_job_cpus(cls, config: Configuration) -> int | None:
        """The most CPUs one job can have on this resource (None: no known bound). A
        job asking for more is refused at submission, rather than waiting for ever or
        silently getting fewer."""
        return None

    def get_jobs_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        """Status of many jobs, each as :meth:`get_job_status` gives it; batch
        schedulers answer with one query to the system."""
        return {job_id: self.get_job_status(job_id) for job_id in scheduler_job_ids}

    def set_change_notifier(self, notify: ChangeNotifier) -> None:
        """Give the scheduler a callable to call when jobs may have changed state.

        Schedulers that learn of job ends as they happen (local, MPI) call
        ``notify([scheduler_job_id, ...])`` (or ``notify()`` when they cannot say
        which) so the engine reacts at once, asking only about those jobs; others
        are polled every :meth:`poll_interval`.
        """

    def poll_interval(self) -> float:
        """Seconds the engine may wait before asking for statuses again."""
        return 1.0

    def submission_room(self) -> int | None:
        """How many jobs :meth:`job_submission` can take now without waiting (a
        budget of commands to the system). The engine submits at most that many,
        and asks again within a fraction of a second when it is 0, so it never
        blocks in a submission while ends and requests wait. None: no limit."""
        return None

    def submission_limit(self) -> int | None:
        """The most jobs the system lets this user have submitted at once (Slurm's
        ``MaxSubmitJobs``), when it says so cheaply: the engine keeps its own jobs
        within it, as with ``max_job_running``. None: no known limit."""
        return None

    def find_submitted(self, submission_tags: Sequence[str]) -> dict[str, str]:
        """Scheduler job ids of earlier submissions made with these tags.

        The engine records a submission as pending before submitting; if it was
        killed before it could record the job id, a restarted engine asks here
        instead of submitting again. Return ``{}`` when the system cannot tell.
        """
        return {}

    def forget(self, scheduler_job_ids: Sequence[str]) -> None:
        """The engine has durably recorded the ends of these jobs (or that they must be
        submitted again): nobody will ask about them any more, so what the scheduler
        kept to answer (journals, exit files) may be deleted."""

    def kill_jobs(self, scheduler_job_ids: Sequence[str]) -> None:
        """Kill many jobs (``jobbridge stop``), as :meth:`kill_job` does each; a
        scheduler whose system takes many ids at once does it in one call."""
        for job_id in scheduler_job_ids:
            self.kill_job(job_id)

    def refusal_reason(self, job: EngineJob) -> str | None:
        """Why the latest :meth:`job_submission` gave None for ``job`` (the very
        object it was given), in the system's words (``slurm refused the job:
        invalid partition specified: x``); None when not known. Asked once per
        refused job, right after the call; the engine shows it as the job's reason.
        A scheduler records it with :meth:`refuse`."""
        with _refusals_lock:
            refusals: dict[int, tuple[EngineJob, str]] = self.__dict__.get("_refusals", {})
            entry = refusals.pop(id(job), None)
        return entry[1] if entry is not None and entry[0] is job else None

    def refuse(self, job: EngineJob, reason: str) -> None:
        """Record why ``job`` was refused (its id None), for :meth:`refusal_reason`,
        and log it. The job object is kept until asked about, so its ``id()`` stays
        its own; only the latest MAX_REFUSALS are kept."""
        log.error("%s: %s", job.label, reason)
        with _refusals_lock:
            refusals = self.__dict__.setdefault("_refusals", {})
            refusals[id(job)] = (job, reason)
            while len(refusals) > MAX_REFUSALS:
                del refusals[next(iter(refusals))]

    def job_notes(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        """What the system says of these jobs beyond their status, for those it says
        something of: why a job is pending (``pending: Resources``), a limit rounded
        at submission (said once, here and in the log). The engine shows a note as the
        job's reason until the job ends. Answered from the last poll: no query."""
        return {}

    def close(self) -> None:
        """Release resources (sessions, threads); jobs keep running."""

    @classmethod
    def run_command(cls, main: Callable[[], int]) -> int:
        """Run ``main``, a command (``jobbridge run``, ``check``) that uses this
        scheduler type, in this process; its exit status. A scheduler whose jobs
        need the command's process to be arranged differently says so here (MPI:
        rank 0 runs the command, the other ranks the jobs)."""
        return main()


def _is_option(word: str, option: str) -> bool:
    """Whether native word ``word`` gives ``option`` (see RESERVED_OPTIONS)."""
    if option.startswith("--"):
        name = word.partition("=")[0]
        return name == option or (len(name) >= 5 and option.startswith(name))
    return word.startswith(option)


# --- using a scheduler directly (checks, tests, benchmarks) -----------------------------------


def wait_for_status(scheduler: Scheduler, scheduler_job_ids: Sequence[str],
                    wanted: frozenset[str] | set[str] = constants.ENDED_JOB_STATUS,
                    timeout: float = 60.0) -> dict[str, str]:
    """Poll (in bulk) until every job is in one of ``wanted``; the last statuses."""
    changed = threading.Event()
    scheduler.set_change_notifier(lambda *_: changed.set())
    deadline = time.monotonic() + timeout
    while True:
        changed.clear()
        statuses = scheduler.get_jobs_status(list(scheduler_job_ids))
        if all(status in wanted for status in statuses.values()):
            return statuses
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"jobs not in {sorted(wanted)} after {timeout:g} s: {statuses}")
        changed.wait(min(max(scheduler.poll_interval(), 0.02), remaining, 2.0))


def run_to_end(scheduler: Scheduler, jobs: Sequence[EngineJob], timeout: float = 60.0
               ) -> list[tuple[str, tuple[str, int | None, int | None, str | None]]]:
    """Submit jobs, wait for their ends, return ``(status, exit_info)`` per job."""
    ids = scheduler.job_submission(list(jobs))
    assert len(ids) == len(jobs), "job_submission must return one id per job"
    submitted = [job_id for job_id in ids if job_id is not None]
    statuses = wait_for_status(scheduler, submitted, timeout=timeout)
    results: list[tuple[str, tuple[str, int | None, int | None, str | None]]] = []
    for job_id in ids:
        if job_id is None:
            results.append((constants.FAILED, (constants.EXIT_ABORTED, None, None, None)))
        else:
            results.append((statuses[job_id], scheduler.get_job_exit_info(job_id)))
    scheduler.forget(submitted)
    return results


# --- registry ----------------------------------------------------------------------------------


class SchedulerInfo:
    """What ``jobbridge schedulers`` shows of one registered scheduler type."""

    def __init__(self, name: str, target: str, enabled: bool, reason: str) -> None:
        self.name, self.target, self.enabled, self.reason = name, target, enabled, reason

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "enabled": self.enabled, "reason": self.reason,
                "class": self.target}


def _entry_points() -> dict[str, metadata.EntryPoint]:
    """The registered scheduler types, read once per ``sys.path`` (scanning every
    installed distribution costs ~10 ms, and a command asks several times)."""
    return _entry_points_on(tuple(sys.path))


@functools.cache
def _entry_points_on(path: tuple[str, ...]) -> dict[str, metadata.EntryPoint]:
    from importlib import metadata  # here: importing it costs every process (the local
    #                                 runner too) tens of milliseconds at start

    found: dict[str, metadata.EntryPoint] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point)
    return found


def get_scheduler_implementation(scheduler_type: str) -> type[Scheduler]:
    """The Scheduler subclass registered as ``scheduler_type``."""
    entry_points = _entry_points()
    entry_point = entry_points.get(scheduler_type)
    if entry_point is None:
        known = ", ".join(sorted(entry_points)) or "none (is jobbridge installed?)"
        raise UnknownSchedulerError(f"unknown scheduler type {scheduler_type!r} (known: {known})")
    implementation = entry_point.load()
    if not (isinstance(implementation, type) and issubclass(implementation, Scheduler)):
        raise UnknownSchedulerError(
            f"scheduler type {scheduler_type!r}: {entry_point.value} is not a Scheduler subclass")
    return implementation


def build_scheduler(scheduler_type: str, config: Configuration) -> Scheduler:
    """An instance of ``scheduler_type``, parameterized by ``config``."""
    return get_scheduler_implementation(scheduler_type).build_scheduler(config)


def known_config_keys() -> frozenset[str]:
    """Every key some registered scheduler, or a remote resource, reads: what a
    ``[DEFAULT]`` section (given to every resource) may hold."""
    from .remote import REMOTE_KEYS

    keys = set(Scheduler.CONFIG_KEYS) | set(REMOTE_KEYS)
    for name in _entry_points():
        with contextlib.suppress(Exception):  # a broken plug-in must not break the others
            keys |= get_scheduler_implementation(name).CONFIG_KEYS
    return frozenset(keys)


def describe_schedulers() -> list[SchedulerInfo]:
    """Every registered scheduler type, whether it can work here, and why not."""
    infos = []
    for name, entry_point in sorted(_entry_points().items()):
        try:
            implementation = get_scheduler_implementation(name)
            enabled, reason = implementation.availability()
        except Exception as error:  # a broken plug-in must not break the list
            enabled, reason = False, f"cannot load {entry_point.value}: {error}"
        infos.append(SchedulerInfo(name, entry_point.value, enabled, reason))
    return infos


def get_schedulers_list() -> list[tuple[str, bool]]:
    """``(name, enabled)`` for every registered scheduler type."""
    return [(info.name, info.enabled) for info in describe_schedulers()]
