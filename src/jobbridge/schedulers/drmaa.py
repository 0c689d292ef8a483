"""DRMAA 1: the ``drmaa`` scheduler, on any DRMS through its DRMAA 1.0 C library.

Built on the ``drmaa`` package (extra ``jobbridge[drmaa]``), imported only when
used; the library comes from ``DRMAA_LIBRARY_PATH`` or the resource's
``drmaa_library_path``. Tested against Grid Engine 8.1.9, whose ways shape it:

- **one session** per process (the C library allows no more), shared by every
  instance and reopened when the DRMS was lost (qmaster restarted);
- **strings Grid Engine would change** go through a one-line Python stub that
  sets the env, opens the files and execs the argv: GE cuts an argument at a
  newline, an env value at ``=`` or after ~10 kB, and expands ``$HOME``,
  ``$JOB_ID``... in paths. Other jobs are plain templates; GE appends to output
  files, so they are emptied first (every jobbridge scheduler truncates them),
  and created 0600 as every job's output is;
- **exit info**: ``wait`` gives it for jobs ended in our session; a job of an
  earlier session (engine or DRMS restarted) vanishes from DRMAA once ended, so
  its end comes from Grid Engine's accounting (one ``qacct`` a poll, read by
  :mod:`.gridengine`, which the ``sge`` scheduler shares), as does the reason of
  a job Grid Engine ended at a limit (TIMEOUT, OUT_OF_MEMORY);
- a non-zero exit is DRMAA's ``done``: DONE or FAILED is decided from the exit info;
- **kills**: a job DRMAA already reports ended keeps its own end; several jobs are
  deleted by one ``qdel`` on Grid Engine (one library call each elsewhere). A job
  that leaves the queue before it ran (someone's ``qdel``) ends at once: DRMAA's
  wait says so in our session, the lack of an accounting record after GE's flush
  time otherwise (it writes none for jobs that never ran).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .. import constants
from ..configuration import Configuration, configured_values
from ..errors import JobbridgeError
from ..model import EngineJob
from ..scheduler import ExitInfo, Scheduler, job_list
from . import gridengine
from .common import LOST_AFTER, Absence, Rounding, in_container, job_name, refuse
from .gridengine import Limits, exit_info_from_accounting
from .process import OUTPUT_MODE

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Every DRMAA 1.0 job state (the ``drmaa`` package's names) -> JOB_STATUS. ``done``
#: and ``failed`` only mean "ended": DONE or FAILED then comes from the exit info.
STATES: Mapping[str, str] = {
    "undetermined": constants.UNDETERMINED,
    "queued_active": constants.QUEUED_ACTIVE,
    "system_on_hold": constants.SYSTEM_ON_HOLD,
    "user_on_hold": constants.USER_ON_HOLD,
    "user_system_on_hold": constants.USER_SYSTEM_ON_HOLD,
    "running": constants.RUNNING,
    "system_suspended": constants.SYSTEM_SUSPENDED,
    "user_suspended": constants.USER_SUSPENDED,
    "user_system_suspended": constants.USER_SYSTEM_SUSPENDED,
    "done": constants.DONE,
    "failed": constants.FAILED,
}

#: Run as ``python -I -S -c STUB SPEC`` when Grid Engine cannot carry the job's strings
#: (see the module doc); SPEC is ASCII JSON. Python ignores SIGPIPE and SIGXFSZ, and an
#: exec keeps ignored signals ignored: they get their default action back first.
EXEC_STUB = (
    "import json,os,signal,sys;j=json.loads(sys.argv[1]);"
    "[signal.signal(s,signal.SIG_DFL) for s in (signal.SIGPIPE,signal.SIGXFSZ)];"
    "os.chdir(j['cwd']);"
    "[os.dup2(os.open(p,f,384),d) for d,p,f in j['files']];"
    "j['join'] and os.dup2(1,2);"
    "os.environ.update(j['env']);"
    "os.execvp(j['argv'][0],j['argv'])"
)
#: Longest ``NAME=value`` Grid Engine passes whole (it cut 10 kB ones; margin kept).
_ENV_ITEM_LIMIT = 8000
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
_WAITING = {constants.QUEUED_ACTIVE, constants.SYSTEM_ON_HOLD, constants.USER_ON_HOLD,
            constants.USER_SYSTEM_ON_HOLD}
#: What a DRMAA error says before its message (``code 17: ...``).
_ERROR_CODE = re.compile(r"^code \d+: ")


class DrmaaUnavailable(JobbridgeError):
    """The drmaa package or the DRMAA library cannot be used, or the DRMS is down."""


# --- the drmaa package, imported on first use ------------------------------------------------

_drmaa: Any = None


def load_drmaa(library_path: str | None = None) -> Any:
    """The ``drmaa`` module, its C library loaded from ``library_path`` (else
    ``DRMAA_LIBRARY_PATH``, else the system's ``libdrmaa``).

    The package reads ``DRMAA_LIBRARY_PATH`` once, when first imported: a later
    different path cannot apply in the same process.
    """
    global _drmaa
    if _drmaa is not None:
        return _drmaa
    saved = os.environ.get("DRMAA_LIBRARY_PATH")
    if library_path:
        os.environ["DRMAA_LIBRARY_PATH"] = library_path
    try:
        import drmaa
    except ImportError:
        raise DrmaaUnavailable(
            "the drmaa package is not installed (pip install 'jobbridge[drmaa]')") from None
    except RuntimeError:  # the package found no library path
        raise DrmaaUnavailable(
            "no DRMAA library: set DRMAA_LIBRARY_PATH, or drmaa_library_path in the "
            "resource's configuration (Grid Engine: .../lib/libdrmaa.so.1.0)") from None
    except OSError as error:
        hint = (" (set GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 before "
                "starting Python)" if "static TLS" in str(error) else "")
        raise DrmaaUnavailable(f"cannot load the DRMAA library: {error}{hint}") from None
    finally:
        if library_path:
            if saved is None:
                del os.environ["DRMAA_LIBRARY_PATH"]
            else:
                os.environ["DRMAA_LIBRARY_PATH"] = saved
    _drmaa = drmaa
    return drmaa


# --- the process's session ------------------------------------------------------------------


class _Session:
    """The one DRMAA session of this process, shared by every DrmaaScheduler.

    ``call`` runs an action on it under a lock (the ``drmaa`` package keeps its
    error text in a global buffer); when the DRMS was lost (restarted qmaster), it
    exits and re-initializes the session, then retries once. While the DRMS stays
    unreachable, reopening is tried at most every few seconds.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users = 0
        self.session: Any = None
        self.retry_at = 0.0
        self.delay = 1.0
        self.error = ""

    def acquire(self) -> None:
        with self.lock:
            self.users += 1

    def release(self) -> None:
        with self.lock:
            self.users = max(0, self.users - 1)
            if self.users == 0:
                self._close()

    def call(self, action: Callable[[Any], T]) -> T:
        drmaa = load_drmaa()
        lost = (drmaa.DrmCommunicationException, drmaa.NoActiveSessionException,
                drmaa.DrmsExitException)
        with self.lock:
            if self.session is None:
                self._open()
            try:
                return action(self.session)
            except lost as error:
                log.warning("drmaa: lost the DRMS (%s): reopening the session", error)
            self._close()
            self._open()
            try:
                return action(self.session)
            except lost as error:
                raise DrmaaUnavailable(f"the DRMS does not answer: {error}") from None

    def _open(self) -> None:
        if time.monotonic() < self.retry_at:
            raise DrmaaUnavailable(self.error)
        drmaa = load_drmaa()
        session = drmaa.Session()
        try:
            session.initialize()
        except drmaa.AlreadyActiveSessionException:
            pass  # opened by someone else in this process: the C library has only one
        except drmaa.errors.DrmaaException as error:
            self.error = f"cannot open a DRMAA session: {error}"
            self.retry_at = time.monotonic() + self.delay
            self.delay = min(self.delay * 2, 30.0)
            raise DrmaaUnavailable(self.error) from None
        self.session, self.delay, self.retry_at = session, 1.0, 0.0

    def _close(self) -> None:
        if self.session is not None:
            with contextlib.suppress(load_drmaa().errors.DrmaaException):
                self.session.exit()
            self.session = None


_SESSION = _Session()


# --- the scheduler ----------------------------------------------------------------------------


@dataclass
class _Job:
    """What this scheduler knows of one job."""

    cpus: int = 1
    status: str = constants.UNDETERMINED
    info: ExitInfo | None = None  # once ended
    killed: bool = False
    #: submitted here, or DRMAA answered about it: a job the DRMS knew
    known: bool = False
    absence: Absence = field(default_factory=Absence)
    #: the limits it was submitted with (see :class:`Limits`), to tell why GE killed it
    limits: Limits | None = None
    #: limits rounded at submission (see Rounding)
    note: str | None = None
    #: the DRMS's last answer was that the job waits in the queue (not started)
    waiting: bool = False


class DrmaaScheduler(Scheduler):
    """Jobs on a DRMS through DRMAA 1.0 (Grid Engine: queues, ``-pe``, ``-l`` limits)."""

    usage_source: ClassVar[str] = "Grid Engine accounting (DRMAA, qacct)"
    #: h_vmem, the default memory_resource, bounds the job's virtual memory (and its
    #: ru_maxrss is one process's, not the job's)
    peak_memory_item: ClassVar[str] = "vmem"

    #: Seconds an id may be unknown to DRMAA and accounting before it counts as lost.
    LOST_AFTER = LOST_AFTER
    CONFIG_KEYS = Scheduler.CONFIG_KEYS | {"drmaa_library_path", "parallel_environment",
                                           "memory_resource", "job_python"}
    #: Grid Engine's job name option (other DRMSs' DRMAA take the name from the template).
    RESERVED_OPTIONS = {"-N": "jobbridge names the job itself (the workflow's job id and the "
                              "tag that finds it again after an engine crash)"}

    def __init__(self, *, library_path: str | None = None, interval: float = 1.0,
                 native_specification: str = "", parallel_environment: str = "smp",
                 memory_resource: str = "h_vmem", container_command: Sequence[str] = (),
                 job_python: str | None = None) -> None:
        load_drmaa(library_path)
        self.interval = interval
        self.native_specification = native_specification.strip()
        self.parallel_environment = parallel_environment
        self.memory_resource = memory_resource
        self.container_command = list(container_command)
        self.job_python = job_python or sys.executable
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._closed = False
        # when to read Grid Engine's accounting file again for jobs it has no record of yet
        self._accounting_wait = interval
        self._next_accounting_read = 0.0
        self._flush_seconds: float | None = None
        self.rounding = Rounding("drmaa")
        _SESSION.acquire()

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            load_drmaa(os.environ.get("DRMAA_LIBRARY_PATH")
                       or next(iter(configured_values("drmaa_library_path")), None))
        except DrmaaUnavailable as error:
            return False, str(error)
        return True, ""

    @classmethod
    def build_scheduler(cls, config: Configuration) -> Scheduler:
        """Options: ``drmaa_library_path``, ``native_specification``, ``parallel_environment``
        (default ``smp``), ``memory_resource`` (default ``h_vmem``, per slot; empty: none),
        ``scheduler_interval``, ``container_command``, ``job_python``."""
        return cls(library_path=config.get("drmaa_library_path"),
                   interval=config.get_float("scheduler_interval", 1.0),
                   native_specification=config.get("native_specification") or "",
                   parallel_environment=config.get("parallel_environment") or "smp",
                   memory_resource=config.get("memory_resource", "h_vmem") or "",
                   container_command=config.get_words("container_command"),
                   job_python=config.get("job_python"))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _SESSION.release()

    def poll_interval(self) -> float:
        return self.interval

    # --- submission -----------------------------------------------------------------------
    def job_submission(self, jobs: EngineJob | list[EngineJob], signal_end: bool = True
                       ) -> list[str | None]:
        return [self._submit(job) for job in job_list(jobs)]

    def _submit(self, job: EngineJob) -> str | None:
        notes: list[str] = []

        def run(session: Any) -> str:
            template = session.createJobTemplate()
            try:
                self.fill_template(template, job, notes)
                job_id: str = session.runJob(template)
                return job_id
            finally:
                session.deleteJobTemplate(template)

        problem = self.reserved_option(self.native_words(job))
        if problem:
            refuse(self, job, f"the DRMS refused the job: native_specification: {problem}")
            return None
        try:
            job_id = _SESSION.call(run)
        except (DrmaaUnavailable, load_drmaa().errors.DrmaaException) as error:
            words = _ERROR_CODE.sub("", str(error).strip())
            refuse(self, job, f"the DRMS refused the job: {words}")
            return None
        with self._lock:
            self._jobs[job_id] = _Job(cpus=job.cpu_count, status=constants.QUEUED_ACTIVE,
                                      known=True, limits=self.limits(job),
                                      note=self.rounding.said(notes))
        return job_id

    def native_words(self, job: EngineJob) -> list[str]:
        """The configured and the job's native options as words (for checks)."""
        try:
            return [*shlex.split(self.native_specification), *job.native_args()]
        except ValueError:  # unbalanced quotes: the DRMS says so
            return []

    def fill_template(self, template: Any, job: EngineJob, notes: list[str] | None = None
                      ) -> None:
        """Set a DRMAA job template's attributes from ``job``; limits it rounds go
        to ``notes``."""
        command = in_container(job, self.container_command).command
        # the submission tag when the engine gave one: find_submitted looks it up
        template.jobName = job_name(job.submission_tag or job.label)
        native = self.native_options(job, notes)
        if native:
            template.nativeSpecification = native
        cwd = job.working_directory or os.getcwd()
        if not carried_natively(command, job.env, cwd, job):
            template.remoteCommand = self.job_python
            template.args = ["-I", "-S", "-c", EXEC_STUB, stub_spec(command, job.env, cwd, job)]
            template.workingDirectory = "/"
            template.outputPath = template.errorPath = ":" + os.devnull
            return
        template.remoteCommand = command[0]
        template.args = command[1:]
        if job.env:
            template.jobEnvironment = job.env
        template.workingDirectory = cwd
        if job.stdin:
            template.inputPath = ":" + job.stdin
        outputs = [job.stdout_file] if job.join_stderrout else [job.stdout_file, job.stderr_file]
        for path in outputs:
            if path:  # Grid Engine appends: start the job's files empty, as elsewhere
                with contextlib.suppress(OSError):
                    os.close(os.open(path, _WRITE, OUTPUT_MODE))
        template.outputPath = ":" + (job.stdout_file or os.devnull)
        if job.join_stderrout:
            template.joinFiles = True
        else:
            template.errorPath = ":" + (job.stderr_file or os.devnull)

    def native_options(self, job: EngineJob, notes: list[str] | None = None) -> str:
        """The native specification: the configured one, queue, slots, limits (what
        they round said in ``notes``), the job's."""
        words = gridengine.resource_options(job, self.parallel_environment,
                                            self.memory_resource, notes)
        spec = job.native_specification
        if isinstance(spec, list):
            words += spec
        parts = [self.native_specification, *map(_quote, words)]
        if isinstance(spec, str):  # written for the DRMS: passed through as it is
            parts.append(spec)
        return " ".join(part for part in parts if part)

    def limits(self, job: EngineJob) -> Limits:
        """The job's walltime and memory as ``-l`` limits (:class:`.gridengine.Limits`)."""
        return Limits.of_job(job, self.memory_resource)

    # --- status ---------------------------------------------------------------------------
    def get_jobs_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        """DRMAA's state of each job (library calls, no process); the jobs DRMAA has
        forgotten are looked up in Grid Engine's accounting by one ``qacct`` call."""
        with self._lock:
            forgotten = []
            for job_id in scheduler_job_ids:
                job = self._jobs.setdefault(job_id, _Job())
                if job.info is None:
                    status = self._query(job_id, job)
                    if status is None:
                        forgotten.append(job_id)
                    else:
                        job.status, job.waiting = status, status in _WAITING
            if forgotten and time.monotonic() >= self._next_accounting_read:
                records = _accounting(forgotten)
                for job_id in forgotten:
                    job = self._jobs[job_id]
                    job.status = self._end_from_record(job, records.get(job_id))
                # a record not written yet: read the whole file again less and less often
                unended = any(self._jobs[job_id].info is None for job_id in forgotten)
                wait = self._accounting_wait if unended else 0.0
                self._accounting_wait = min(2 * wait, 30.0) if wait else self.interval
                self._next_accounting_read = time.monotonic() + wait
            return {job_id: self._jobs[job_id].status for job_id in scheduler_job_ids}

    def _query(self, job_id: str, job: _Job) -> str | None:
        """The job's status from DRMAA (its exit info once ended); None when DRMAA no
        longer knows it (ended out of our session's sight, or unknown)."""
        drmaa = load_drmaa()
        try:
            state = _SESSION.call(lambda session: session.jobStatus(job_id))
        except drmaa.InvalidJobException:
            return None
        except (DrmaaUnavailable, drmaa.errors.DrmaaException) as error:
            log.warning("drmaa: status of %s unknown, keeping %s: %s", job_id, job.status, error)
            return job.status
        job.known = True
        job.absence.seen()
        status = STATES.get(state, constants.UNDETERMINED)
        if status not in constants.ENDED_JOB_STATUS:
            return status
        try:
            job_info = _SESSION.call(
                lambda session: session.wait(job_id, drmaa.Session.TIMEOUT_NO_WAIT))
        except drmaa.InvalidJobException:
            return None
        except (DrmaaUnavailable, drmaa.errors.DrmaaException) as error:
            log.warning("drmaa: exit info of %s unknown yet: %s", job_id, error)
            return job.status  # asked again at the next poll
        except Exception as error:  # the package raises bare Exception for DRMAA_ERRNO_NO_RUSAGE
            if not str(error).startswith("code 24:"):
                raise
            job.info = ExitInfo(constants.USER_KILLED if job.killed else constants.EXIT_ABORTED,
                                reason="cancelled before it ran" if job.killed
                                else "removed from the queue before it ran", ran=False)
        else:
            job.info = exit_info_from_drmaa(job_info, job.cpus, job.killed, job.limits)
            if job.info.exit_status == constants.EXIT_ABORTED:  # accounting says why
                record = _accounting([job_id]).get(job_id)
                if record is not None:
                    job.info = exit_info_from_accounting(record, False, job.limits)
        return job.info.job_status

    def _end_from_record(self, job: _Job, record: Mapping[str, str] | None) -> str:
        """The status of a job DRMAA forgot, from its accounting record (if any yet)."""
        if record is not None:
            job.info = exit_info_from_accounting(record, job.killed and job.known, job.limits)
        elif job.killed and (job.known or job.absence.lost(self._accounting_flush()
                                                           + 2 * self.interval)):
            # deleted while queued (here, or by an earlier engine whose stop this one
            # finishes): GE keeps no record of it
            job.info = ExitInfo(constants.USER_KILLED, reason="cancelled before it ran", ran=False)
        elif (job.known and job.waiting
              and job.absence.lost(self._accounting_flush() + 2 * self.interval)):
            # last seen waiting, gone, and no record: GE writes none for a job that never ran
            job.info = ExitInfo(constants.EXIT_ABORTED,
                                reason="removed from the queue before it ran", ran=False)
        elif not job.absence.lost(self.LOST_AFTER):
            return constants.UNDETERMINED
        else:
            job.info = ExitInfo(constants.EXIT_UNDETERMINED,
                                reason="the DRMS knows no such job, and has no record of its end")
        return job.info.job_status

    def _accounting_flush(self) -> float:
        if self._flush_seconds is None:
            self._flush_seconds = _flush_seconds()
        return self._flush_seconds

    def job_notes(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        """The limits a job's submission rounded (DRMAA tells no pending reason)."""
        with self._lock:
            return {job_id: job.note for job_id in scheduler_job_ids
                    if (job := self._jobs.get(job_id)) is not None and job.note}

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        with self._lock:
            self.get_job_status(scheduler_job_id)
            job = self._jobs.pop(scheduler_job_id)
        if job.info is not None:
            if job.note:
                job.info.reason = "; ".join(filter(None, [job.info.reason, job.note]))
            return job.info
        return ExitInfo(constants.EXIT_UNDETERMINED, reason="the job has not ended"
                        if job.known else "the DRMS knows no such job")

    def find_submitted(self, submission_tags: Sequence[str]) -> dict[str, str]:
        """Jobs named after these tags, from Grid Engine's ``qstat -j`` (queued or
        running) then ``qacct -j`` (ended): DRMAA itself cannot list jobs."""
        names = {job_name(tag): tag for tag in submission_tags}
        if not names or shutil.which("qacct") is None:
            return {}  # not Grid Engine: DRMAA alone cannot tell
        answer = _grid_engine_command(["qstat", "-j", ",".join(names)])
        found = gridengine.named_job_numbers(answer, "job_name:", "job_number:")
        missing = set(names) - set(found)
        if missing:  # a job that ended a moment ago is in accounting after the next flush
            time.sleep(_flush_seconds() + 1)
            pattern = next(iter(missing)) if len(missing) == 1 else "*"  # one read
            ended = gridengine.named_job_numbers(_grid_engine_command(["qacct", "-j", pattern]))
            found.update((name, ended[name]) for name in missing if name in ended)
        return {names[name]: job_id for name, job_id in found.items() if name in names}

    # --- control --------------------------------------------------------------------------
    def kill_job(self, scheduler_job_id: str) -> None:
        self.kill_jobs([scheduler_job_id])

    def kill_jobs(self, scheduler_job_ids: Sequence[str]) -> None:
        """Terminate the jobs DRMAA does not report ended: an end it has (asked now,
        before the kill) stands. Only a job the DRMS took the kill for is
        ``killed_by_user``: one it no longer knows had ended."""
        with self._lock:
            doomed = []
            for job_id in scheduler_job_ids:
                job = self._jobs.setdefault(job_id, _Job())
                if job.info is None:
                    status = self._query(job_id, job)
                    job.status = job.status if status is None else status
                if job.info is None:
                    job.killed = True
                    doomed.append(job_id)
            if len(doomed) > 1 and shutil.which("qdel") and shutil.which("qacct"):
                unknown = _qdel(doomed)  # Grid Engine: one command for all
            else:
                unknown = {job_id for job_id in doomed if not self._control(job_id, "terminate")}
            for job_id in unknown:  # it had ended; or, never known here, an earlier
                # engine deleted it while it waited (no record will come): accounting says
                job = self._jobs[job_id]
                job.killed = not job.known

    def hold_job(self, scheduler_job_id: str) -> None:
        """Keep a queued job from starting (``user_on_hold``) until :meth:`release_job`."""
        self._control(scheduler_job_id, "hold")

    def release_job(self, scheduler_job_id: str) -> None:
        """Let a job held by :meth:`hold_job` (or submitted held) start."""
        self._control(scheduler_job_id, "release")

    def _control(self, job_id: str, action: str) -> bool:
        """Act on a job; False if the DRMS knows no such job (it ended, or never was)."""
        drmaa = load_drmaa()
        try:
            _SESSION.call(lambda session: session.control(job_id, action))
        except drmaa.InvalidJobException:
            return False  # already ended (or unknown): nothing left to act on
        except (DrmaaUnavailable, drmaa.errors.DrmaaException) as error:
            log.warning("drmaa: cannot %s job %s: %s", action, job_id, error)
        return True


def _qdel(job_ids: Sequence[str]) -> set[str]:
    """Delete jobs with one ``qdel``; the ids Grid Engine says do not exist."""
    try:
        result = subprocess.run(["qdel", *job_ids], capture_output=True, text=True,
                                errors="replace", timeout=60, stdin=subprocess.DEVNULL,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("drmaa: qdel failed: %s", error)
        return set()
    return set(re.findall(r'job "([^"]+)" does not exist', result.stdout + result.stderr))


# --- job templates ----------------------------------------------------------------------------


def carried_natively(command: Sequence[str], env: Mapping[str, str], cwd: str,
                     job: EngineJob) -> bool:
    """Whether Grid Engine passes every string of the job unchanged (see module doc)."""
    paths = (cwd, job.stdin, job.stdout_file, job.stderr_file)
    return (not any("\n" in arg for arg in command)
            and not any("=" in value or len(key) + len(value) >= _ENV_ITEM_LIMIT
                        for key, value in env.items())
            and not any(path and "$" in path for path in paths))


def stub_spec(command: Sequence[str], env: Mapping[str, str], cwd: str, job: EngineJob) -> str:
    """The JSON argument of :data:`EXEC_STUB` (ASCII: no byte of it needs care)."""
    files: list[tuple[int, str, int]] = []
    if job.stdin:
        files.append((0, job.stdin, os.O_RDONLY))
    files.append((1, job.stdout_file or os.devnull, _WRITE))
    if not job.join_stderrout:
        files.append((2, job.stderr_file or os.devnull, _WRITE))
    return json.dumps({"argv": list(command), "env": dict(env), "cwd": cwd, "files": files,
                       "join": job.join_stderrout})


def _quote(word: str) -> str:
    """A native-specification word as Grid Engine's DRMAA parser reads it (it knows
    quotes, not backslashes)."""
    if word and not re.search(r"[\s'\"]", word):
        return word
    return f"'{word}'" if '"' in word else f'"{word}"'


# --- exit information -------------------------------------------------------------------------


def exit_info_from_drmaa(job_info: Any, cpus: int, killed: bool, limits: Limits | None = None
                         ) -> ExitInfo:
    """Exit info from a DRMAA ``JobInfo`` (``session.wait``); ``limits``: the job's,
    to say which one GE killed it for."""
    rusage: Mapping[str, str] = job_info.resourceUsage or {}
    number = gridengine.number
    maxvmem, wallclock = number(rusage.get("maxvmem")), number(rusage.get("ru_wallclock"))
    usage = gridengine.resource_usage(number(rusage.get("cpu")), number(rusage.get("ru_maxrss")),
                                      maxvmem, wallclock, cpus)
    if job_info.hasSignal:
        sig = getattr(signal, job_info.terminatedSignal, None)
        code = number(rusage.get("exit_status"))
        term = int(sig) if sig is not None else int(code) - 128 if code and code > 128 else None
        if killed:
            return ExitInfo(constants.USER_KILLED, None, term, usage, ran=True)
        reason = limits.reason(maxvmem, wallclock) if limits is not None else None
        if reason is not None:  # as Slurm and the local scheduler report it
            return ExitInfo(constants.EXIT_ABORTED, None, term, usage, reason, ran=True)
        return ExitInfo(constants.FINISHED_TERM_SIG, None, term, usage, ran=True)
    if killed:
        return ExitInfo(constants.USER_KILLED, None, None, usage)
    if job_info.wasAborted:
        return ExitInfo(constants.EXIT_ABORTED, None, None, usage,
                        reason="the DRMS ended the job before or while it ran")
    if job_info.hasExited:
        return ExitInfo(constants.FINISHED_REGULARLY, int(job_info.exitStatus), 0, usage,
                        ran=True)
    return ExitInfo(constants.FINISHED_UNCLEAR_CONDITIONS, None, None, usage)


def _grid_engine_command(argv: list[str], timeout: float = 30.0) -> str:
    """The output of a Grid Engine command; "" when it fails or is not there."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                                timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("drmaa: %s failed: %s", " ".join(argv), error)
        return ""
    return result.stdout if result.returncode == 0 else ""


def _flush_seconds() -> float:
    """How long Grid Engine may keep an ended job out of its accounting file."""
    return gridengine.flush_seconds(_grid_engine_command(["qconf", "-sconf"]))


def _accounting(job_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """The last Grid Engine accounting record of each job, in one ``qacct`` call.

    Why: DRMAA forgets a job once it ended unless our session watched it; after an
    engine or DRMS restart, the accounting file is the only witness of its end.
    """
    argv = gridengine.accounting_query(job_ids)
    if argv is None:
        return {}
    return gridengine.accounting_records(_grid_engine_command(argv), job_ids)
