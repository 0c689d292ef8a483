"""DRMAA 1: the ``drmaa`` scheduler, Grid Engine through its DRMAA 1.0 C library.

Built on the ``drmaa`` package (extra ``jobbridge[drmaa]``), imported only when
used; the library comes from ``DRMAA_LIBRARY_PATH`` or the resource's
``drmaa_library_path``. A :class:`.BatchScheduler` backend, the ``sge`` one's
subclass: the job wrapper and the watcher of its files (ends seen without
polling), one ``qstat -xml`` every ``scheduler_interval``, ``qacct`` for the jobs
that left the queue (abnormal ends: TIMEOUT, OUT_OF_MEMORY), job arrays, the
command budget, kills by one ``qdel`` and re-attach by name are the batch base's
and :mod:`.sge`'s. DRMAA 1 has no bulk status call: one ``jobStatus`` a job would
spend the budget once per job and poll. What is its own is how jobs reach the DRMS:

- **submission through DRMAA**: ``runJob``, and ``runBulkJobs`` for jobs alike (a
  bulk job, GE's array: elements ``ID.IDX``). The template runs the job wrapper
  on the job's private spec, so argv, env and paths arrive byte-exact (Grid
  Engine itself cuts an argument at a newline, an env value at ``=``, and expands
  ``$HOME`` in paths); a bulk job's element reads its spec from its standard
  input, the array folder's link named by its index through DRMAA's parametric
  index placeholder. Queue, slots, limits and native options are the template's
  native specification (qsub's words);
- **hold and release** through DRMAA's control;
- **one session** per process (the C library allows no more), shared by every
  instance and reopened when the DRMS was lost (qmaster restarted). Every DRMAA
  call that reaches the DRMS goes through the command budget
  (:meth:`.BatchScheduler.request`);
- **another DRMS** (its DRMAA 1 library, no Grid Engine ``qacct`` on PATH): DRMAA
  alone, as the seed's DrmaaScheduler did: one ``jobStatus`` a job every
  ``scheduler_interval`` (ends still come from the wrappers' files at once), exit
  information from ``wait`` for jobs that ended without their wrapper, kills
  through DRMAA's control, each job submitted alone (bulk job ids are the DRMS's
  own), no re-attachment after a crash (DRMAA 1 cannot list jobs).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import signal as signal_module
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .. import constants
from ..configuration import Configuration, configured_values
from ..errors import JobbridgeError
from ..model import EngineJob
from . import gridengine
from .batch import BatchScheduler, CommandError, JobRecord
from .jobwrap import SPEC_FILE
from .sge import SGEScheduler

log = logging.getLogger(__name__)
T = TypeVar("T")

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


class DrmaaScheduler(SGEScheduler):
    """Jobs on Grid Engine through DRMAA 1.0 (queues, ``-pe``, ``-l`` limits)."""

    name: ClassVar[str] = "drmaa"
    CONFIG_KEYS = SGEScheduler.CONFIG_KEYS | {"drmaa_library_path"}
    RESERVED_OPTIONS = {
        **SGEScheduler.RESERVED_OPTIONS,
        "-t": "jobbridge submits jobs alike as bulk jobs itself (array_submission)"}

    def __init__(self, *, library_path: str | None = None, **options: Any) -> None:
        load_drmaa(library_path)
        super().__init__(**options)
        #: Grid Engine's commands at hand (its ``qacct``): every state in one qstat,
        #: ends in accounting, kills by one qdel, bulk jobs, re-attachment by name;
        #: else DRMAA alone (see the module doc)
        self.grid_engine = shutil.which("qstat") is not None and shutil.which("qacct") is not None
        if not self.grid_engine:
            self.array_support = None
        self._closed = False
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
    def build_scheduler(cls, config: Configuration) -> DrmaaScheduler:
        """Keys: ``drmaa_library_path``, and those of the ``sge`` scheduler."""
        return cls(library_path=config.get("drmaa_library_path"),
                   parallel_environment=config.get("parallel_environment") or "smp",
                   memory_resource=config.get("memory_resource", "h_vmem") or "",
                   **cls.options_from_config(config))

    def close(self) -> None:
        super().close()
        if not self._closed:
            self._closed = True
            _SESSION.release()

    def submit_argv(self, job: EngineJob, script: Path, name: str) -> list[str]:
        """The template as qsub's words: ``-N NAME``, the job's queue, slots and
        limits, the native options, last the wrapper's script (its folder holds
        the job's spec): :meth:`send_submission` reads them."""
        return ["-N", name, *gridengine.resource_options(job, self.parallel_environment,
                                                         self.memory_resource),
                *self.native_specification, *job.native_args(), str(script)]

    def send_submission(self, argv: list[str]) -> str:
        """``runJob``, or ``runBulkJobs`` when the base inserted ``-t FIRST-LAST``
        before the script; the job's id, or the bulk job's (its elements' number)."""
        words, name, folder = argv[2:-1], argv[1], Path(argv[-1]).parent
        bulk: tuple[int, int] | None = None
        if len(words) >= 2 and words[-2] == "-t":  # ARRAY.option: ours (-t is reserved)
            first, _, last = words[-1].partition("-")
            bulk, words = (int(first), int(last)), words[:-2]

        def submit(session: Any) -> str:
            drmaa = load_drmaa()
            template = session.createJobTemplate()
            try:
                template.jobName = name
                template.remoteCommand, *wrapper = self.wrapper_command()
                template.workingDirectory = str(folder)
                template.outputPath = f":{self.batch_output_path(name)}"
                template.joinFiles = True
                if words:
                    template.nativeSpecification = " ".join(map(_quote, words))
                if bulk is None:
                    template.args = [*wrapper, str(folder / SPEC_FILE)]
                    job_id: str = session.runJob(template)
                    return job_id
                # the element's spec: the array folder's link named by its index
                template.args = [*wrapper, "/dev/stdin"]
                template.inputPath = f":{folder}/{drmaa.JobTemplate.PARAMETRIC_INDEX}"
                ids: list[str] = session.runBulkJobs(template, bulk[0], bulk[1], 1)
                return ids[0].partition(".")[0]
            finally:
                session.deleteJobTemplate(template)

        return self.request("submit", lambda: _call(submit), retries=0)

    # --- another DRMS than Grid Engine: DRMAA alone -----------------------------------------
    def query_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """Grid Engine: its one qstat; else one DRMAA ``jobStatus`` a job (DRMAA 1 has
        no bulk status), and ``wait``'s exit information once it ended."""
        if self.grid_engine:
            return super().query_status(scheduler_job_ids)
        records = {}
        for job_id in scheduler_job_ids:
            record = self.request("status", functools.partial(
                _call, functools.partial(_library_record, job_id=job_id)))
            if record is not None:
                records[job_id] = record
        return records

    def record_status(self, record: JobRecord) -> str | None:
        if record.state in LIBRARY_STATES:
            return LIBRARY_STATES[record.state]
        return super().record_status(record)

    def ended_records(self, scheduler_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        if self.grid_engine:
            return super().ended_records(scheduler_job_ids)
        return BatchScheduler.ended_records(self, scheduler_job_ids)  # no accounting

    def find_by_name(self, names: Sequence[str]) -> dict[str, str]:
        if self.grid_engine:
            return super().find_by_name(names)
        return BatchScheduler.find_by_name(self, names)  # DRMAA 1 cannot list jobs

    def send_cancel(self, job_ids: Sequence[str], retries: int | None = None) -> None:
        """Grid Engine: one qdel; else DRMAA's terminate, job by job (a job the DRMS
        no longer knows has ended)."""
        if self.grid_engine:
            super().send_cancel(job_ids, retries)
            return
        for job_id in job_ids:
            self._control(job_id, "terminate", retries)

    def hold_job(self, scheduler_job_id: str) -> None:
        """Keep a queued job from starting (``user_on_hold``) until :meth:`release_job`."""
        self._control(scheduler_job_id, "hold")

    def release_job(self, scheduler_job_id: str) -> None:
        """Let a job held by :meth:`hold_job` (or submitted held) start."""
        self._control(scheduler_job_id, "release")

    def _control(self, job_id: str, action: str, retries: int | None = None) -> None:
        """Act on a job through DRMAA; a job the DRMS no longer knows has ended. A
        kill the DRMS could not take raises CommandError (asked again later)."""
        def control(session: Any) -> None:
            with contextlib.suppress(load_drmaa().InvalidJobException):
                session.control(job_id, action)

        try:
            self.request("cancel" if action == "terminate" else action,
                         lambda: _call(control), retries=retries)
        except CommandError as error:
            if action == "terminate":
                raise
            log.warning("drmaa: cannot %s job %s: %s", action, job_id, error)


#: DRMAA 1's job states (the ``drmaa`` package's names) -> JOB_STATUS; ``done`` and
#: ``failed`` only say it ended: the exit information (``wait``) decides.
LIBRARY_STATES = {
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
    "failed": constants.DONE,
}


def _library_record(session: Any, job_id: str) -> JobRecord | None:
    """What DRMAA says of a job: its state, with ``wait``'s exit information once it
    ended (in this session); None when the DRMS does not know it (any more)."""
    drmaa = load_drmaa()
    try:
        state = str(session.jobStatus(job_id))
        if LIBRARY_STATES.get(state) != constants.DONE:
            return JobRecord(state)
        info = session.wait(job_id, drmaa.Session.TIMEOUT_NO_WAIT)
    except drmaa.InvalidJobException:
        return None
    except drmaa.errors.DrmaaException:  # ended, its exit information not ready yet
        return JobRecord("running")
    except Exception as error:  # the package raises a bare Exception for code 24
        if not str(error).startswith("code 24:"):  # no usage: it never ran
            raise
        return JobRecord(state, exit_status=constants.EXIT_ABORTED, ran=False,
                         reason="the DRMS ended the job before it ran")
    if info.wasAborted or not (info.hasExited or info.hasSignal):
        return JobRecord(state, exit_status=constants.EXIT_ABORTED, ran=False,
                         reason="the DRMS ended the job before it ran")
    signal_number = _signal_number(str(info.terminatedSignal)) if info.hasSignal else None
    return JobRecord(state, exit_value=int(info.exitStatus) if info.hasExited else None,
                     term_sig=signal_number)


def _signal_number(name: str) -> int | None:
    """DRMAA's signal name (``SIGKILL``) as its number."""
    try:
        return int(getattr(signal_module, name if name.startswith("SIG") else f"SIG{name}"))
    except (AttributeError, TypeError, ValueError):
        return None


def _call(action: Callable[[Any], T]) -> T:
    """A call on the process's session; its failures as CommandError, transient when
    the DRMS does not answer or asks to try later."""
    drmaa = load_drmaa()
    try:
        return _SESSION.call(action)
    except DrmaaUnavailable as error:
        raise CommandError(f"drmaa: {error}", True, program="drmaa") from None
    except drmaa.errors.DrmaaException as error:
        words = _ERROR_CODE.sub("", str(error).strip()) or type(error).__name__
        raise CommandError(words, isinstance(error, drmaa.TryLaterException),
                           program="drmaa") from None


def _quote(word: str) -> str:
    """A native-specification word as Grid Engine's DRMAA parser reads it (it knows
    quotes, not backslashes)."""
    if word and not re.search(r"[\s'\"]", word):
        return word
    return f"'{word}'" if '"' in word else f'"{word}"'
