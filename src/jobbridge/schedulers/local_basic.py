"""``local_basic``: run jobs on this machine, within a number of CPU slots.

Jobs are started by a detached runner process (see :mod:`.local_runner`), so
they survive an engine killed at any moment and their exit status is never
lost. The runner pushes each start and end over a pipe: the engine learns of a
job's end at once, with no polling tick (while the runner has a long queue of
its own, notifications are gathered for a few milliseconds, so that the engine
handles thousands of ends in few cycles).

The CPU slots of a resource are shared by all the runners of the home (a slot
file, see :class:`.local_runner.SlotPool`); the runner ends a job at its
``walltime_s`` and puts it under its ``memory_mb`` (:mod:`.memory_limits`).
See docs/local.md.

A runner's journal (and lock file) is deleted once nobody needs it: the runner
has exited and the engine has recorded every job it journaled (the engine calls
:meth:`LocalScheduler.forget`, which notes it in the journal, so that any later
engine can tell).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import IO, Any, ClassVar
from urllib.parse import quote

from .. import constants
from ..configuration import Configuration, jobbridge_home, private_dir
from ..errors import JobbridgeError
from ..model import EngineJob
from ..scheduler import ChangeNotifier, ExitInfo, Scheduler, job_list
from .common import in_container, refuse
from .memory_limits import configured_mode
from .process import kill_tree, start_process

log = logging.getLogger(__name__)


def _new_runner_id() -> str:
    """Unique and sortable: a runner's id prefixes its jobs' ids and names its journal."""
    return f"{time.strftime('%Y%m%d%H%M%S')}-{os.urandom(3).hex()}"


class LocalSchedulerError(JobbridgeError):
    """The local runner could not be started or talked to."""


#: While the runner holds at least this many queued jobs per CPU slot, it has work
#: enough for its slots without the engine: notifications of job changes are then
#: gathered for up to NOTIFY_BATCH_SECONDS, so the engine handles (and commits) them
#: in a few large cycles rather than one cycle per job. Below it, every change is
#: notified at once.
BUSY_QUEUE_PER_SLOT = 2
NOTIFY_BATCH_SECONDS = 0.02
#: How long :meth:`LocalScheduler.close` waits for a runner with nothing left to run.
RUNNER_EXIT_SECONDS = 5.0

_JOB_FIELDS = tuple(f.name for f in fields(EngineJob))


def cpu_slots(proc_nb: int = 0, max_proc_nb: int = 0) -> int:
    """CPU slots: ``proc_nb`` (0: all cores), at most ``max_proc_nb`` when set."""
    slots = proc_nb or os.cpu_count() or 1
    return min(slots, max_proc_nb) if max_proc_nb else slots


class LocalScheduler(Scheduler):
    """Run jobs on this machine: ``proc_nb`` CPU slots (0: all cores, at most
    ``max_proc_nb`` when set), shared by every engine running jobs of the same
    ``resource`` in this home; ``interval`` is how often jobs left by an earlier
    engine are checked; ``enforce_memory``: see :mod:`.memory_limits`."""

    CONFIG_KEYS = Scheduler.CONFIG_KEYS | {"enforce_memory"}

    usage_source: ClassVar[str] = "wait4 (local runner)"

    def __init__(self, proc_nb: int = 0, interval: float = 0.05, max_proc_nb: int = 0,
                 container_command: Sequence[str] | None = None,
                 state_dir: str | os.PathLike[str] | None = None,
                 resource: str = constants.DEFAULT_RESOURCE, enforce_memory: str = "auto"
                 ) -> None:
        self.slots = cpu_slots(proc_nb, max_proc_nb)
        self.interval = interval
        self.container_command = list(container_command or [])
        self.state_dir = Path(state_dir) if state_dir else jobbridge_home() / "local"
        self.resource = resource
        self.enforce_memory = enforce_memory
        self.runner_id = _new_runner_id()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._notify: ChangeNotifier | None = None
        self._runner: subprocess.Popen[bytes] | None = None
        self._runner_stdin: IO[bytes] | None = None
        self._next = 0
        self._status: dict[str, str] = {}
        self._exit: dict[str, ExitInfo] = {}
        self._pids: dict[str, int] = {}
        self._killed: set[str] = set()
        self._journals: dict[str, _Journal] = {}
        self._queued = 0  # own jobs the runner holds, not started yet
        self._unforgotten: dict[str, set[str]] = {}  # per own runner: ids not forgotten

    @classmethod
    def build_scheduler(cls, config: Configuration) -> Scheduler:
        return ConfiguredLocalScheduler(config)

    @classmethod
    def check_config(cls, config: Configuration) -> None:
        super().check_config(config)
        configured_mode(config)

    @classmethod
    def max_job_cpus(cls, config: Configuration) -> int:
        return cpu_slots(config.get_int("cpu_nb"), config.get_int("max_cpu_nb"))

    # --- seed API ------------------------------------------------------------------------
    @staticmethod
    def create_process(engine_job: EngineJob) -> subprocess.Popen[bytes]:
        """Start ``engine_job`` as a child process of the caller (no shell)."""
        return start_process(engine_job)

    def job_submission(self, jobs: EngineJob | list[EngineJob], signal_end: bool = True
                       ) -> list[str | None]:
        batch = job_list(jobs)
        if not batch:
            return []
        lines = []
        ids: list[str | None] = []
        with self._lock:
            self._ensure_runner()
            for job in batch:
                if job.cpu_count > self.slots:
                    refuse(self, job, f"local_basic refused the job: it needs {job.cpu_count} "
                                      f"CPUs, this machine has {self.slots} slots")
                    ids.append(None)
                    continue
                self._next += 1
                job_id = f"{self.runner_id}.{self._next}"
                ids.append(job_id)
                if job.is_barrier:
                    self._status[job_id] = constants.DONE
                    self._exit[job_id] = ExitInfo(constants.FINISHED_REGULARLY, 0, 0, None)
                    continue
                wrapped = in_container(job, self.container_command)
                self._status[job_id] = constants.QUEUED_ACTIVE
                self._unforgotten.setdefault(self.runner_id, set()).add(job_id)
                self._queued += 1
                # the fields as they are (JSON copies them): to_dict's deep copy costs more
                lines.append({"submit": job_id, "cpus": job.cpu_count,
                              "job": {name: getattr(wrapped, name) for name in _JOB_FIELDS}})
            self._send(lines)
        return ids

    def get_jobs_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        with self._lock:
            result = {}
            own = self.runner_id + "."
            for job_id in scheduler_job_ids:
                if job_id.startswith(own):
                    result[job_id] = self._status.get(job_id, constants.UNDETERMINED)
                else:
                    result[job_id] = self._foreign_status(job_id)
            return result

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        """Called once per ended job: forgets it afterwards."""
        with self._lock:
            info = self._exit.pop(scheduler_job_id, None)
            if info is None:
                self._foreign_status(scheduler_job_id)
                info = self._exit.pop(scheduler_job_id, None)
            self._status.pop(scheduler_job_id, None)
            self._pids.pop(scheduler_job_id, None)
            killed = scheduler_job_id in self._killed
            self._killed.discard(scheduler_job_id)
        if info is None:
            return ExitInfo(constants.EXIT_UNDETERMINED, None, None, None,
                            reason="unknown job id")
        if killed and info.exit_status in (constants.FINISHED_TERM_SIG, constants.EXIT_ABORTED):
            never_ran = info.exit_status == constants.EXIT_ABORTED  # "killed before it started"
            return ExitInfo(constants.USER_KILLED, info.exit_value, info.term_sig,
                            info.resource_usage, info.reason if never_ran else None,
                            info.started, info.ended)
        return info

    def kill_job(self, scheduler_job_id: str) -> None:
        with self._lock:
            status = self._status.get(scheduler_job_id)
            if status is None:
                status = self._foreign_status(scheduler_job_id)
            if status in constants.ENDED_JOB_STATUS or status == constants.UNDETERMINED:
                return  # ended before the kill (that end stands), or unknown
            self._killed.add(scheduler_job_id)
            if scheduler_job_id.startswith(self.runner_id + "."):
                self._send([{"kill": scheduler_job_id}])
                return
            pid = self._pids.get(scheduler_job_id)
        if pid is not None:  # a job of an earlier engine's runner: kill it directly
            kill_tree(pid)

    # --- extras --------------------------------------------------------------------------
    def set_change_notifier(self, notify: ChangeNotifier) -> None:
        """The engine is about to submit: start the runner now, while it loads the
        workflow (a runner takes ~0.1 s to start). A failure shows at submission."""
        self._notify = notify
        with self._lock, contextlib.suppress(LocalSchedulerError):
            self._ensure_runner()

    def poll_interval(self) -> float:
        # own jobs notify at once; only jobs of an earlier engine need polling
        return self.interval if self._journals else 5.0

    def find_submitted(self, submission_tags: Sequence[str]) -> dict[str, str]:
        wanted = set(submission_tags)
        found: dict[str, str] = {}
        if not wanted or not self.state_dir.is_dir():
            return found
        with self._lock:
            for path in self.state_dir.glob("*.journal"):
                journal = self._journal(path.stem)
                for job_id, tag in journal.tags.items():
                    if tag in wanted:
                        found[tag] = job_id
        return found

    def wait_for(self, scheduler_job_ids: Sequence[str], timeout: float | None = None) -> bool:
        """Block until these jobs ended (True) or ``timeout`` passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            statuses = self.get_jobs_status(scheduler_job_ids)
            if all(s in constants.ENDED_JOB_STATUS for s in statuses.values()):
                return True
            with self._lock:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(min(remaining or self.interval * 10, self.poll_interval()))

    def forget(self, scheduler_job_ids: Sequence[str]) -> None:
        """Note in their runners' journals that these jobs are recorded; delete the
        journals of exited runners whose every job is."""
        by_runner: dict[str, list[str]] = {}
        for job_id in scheduler_job_ids:
            runner_id = job_id.rpartition(".")[0]
            if runner_id:
                by_runner.setdefault(runner_id, []).append(job_id)
        with self._lock:
            for runner_id, job_ids in by_runner.items():
                for job_id in job_ids:
                    self._status.pop(job_id, None)
                self._unforgotten.get(runner_id, set()).difference_update(job_ids)
                _append(self.state_dir / f"{runner_id}.journal", {"forgotten": job_ids})
                if runner_id != self.runner_id:
                    self._remove_journal_if_unneeded(runner_id)

    def close(self) -> None:
        """Let the runner finish the running jobs and exit; queued jobs are dropped.
        If every job it ran is forgotten, its journal goes once it has exited."""
        with self._lock:
            if self._runner_stdin is not None:
                with contextlib.suppress(OSError):
                    self._runner_stdin.close()
                self._runner_stdin = None
            runner, runner_id = self._runner, self.runner_id
            unneeded = runner is not None and not self._unforgotten.get(runner_id)
            for other in list(self._journals):  # runners that were still exiting at forget
                self._remove_journal_if_unneeded(other)
        if runner is not None and unneeded:
            try:  # nothing left to run: it exits at once
                runner.wait(timeout=RUNNER_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                return
            _remove_journal(self.state_dir / runner_id)

    # --- the runner ------------------------------------------------------------------------
    def _ensure_runner(self) -> None:
        if self._runner is not None:
            if self._runner.poll() is None:
                return
            raise LocalSchedulerError(f"the local runner exited ({self._runner.returncode})")
        private_dir(self.state_dir)
        base = self.state_dir / self.runner_id
        try:
            self._runner = subprocess.Popen(
                [sys.executable, "-m", "jobbridge.schedulers.local_runner",
                 f"{base}.journal", f"{base}.lock", str(self.slots), self.enforce_memory,
                 str(self.state_dir / f"{quote(self.resource, safe='')}.slots")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
                close_fds=True,
                # detached: it must not hold the user's terminal open (a closed ssh
                # session would wait for it); a log file it may share
                stderr=subprocess.DEVNULL if os.isatty(2) else None)
        except OSError as error:
            raise LocalSchedulerError(f"cannot start the local runner: {error}") from error
        self._runner_stdin = self._runner.stdin
        reader = threading.Thread(target=self._read_events, args=(self._runner.stdout,),
                                  name="jobbridge-local-events", daemon=True)
        reader.start()

    def _send(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        if self._runner_stdin is None:
            raise LocalSchedulerError("the local scheduler is closed")
        data = "".join(_encode(m) + "\n" for m in messages)
        try:
            self._runner_stdin.write(data.encode())
            self._runner_stdin.flush()
        except OSError as error:
            raise LocalSchedulerError(f"the local runner is gone: {error}") from error

    def _read_events(self, stream: IO[bytes]) -> None:
        """Apply the runner's events as they come, a whole read at a time (one lock,
        one wake-up for all the events of a read)."""
        fd = stream.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        pending = b""
        held: list[str] = []  # changed ids not notified yet
        deadline: float | None = None
        while True:
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0 or not poller.poll(timeout * 1000):
                    self._notify_changes(held)
                    held, deadline = [], None
                    continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            if not lines:
                continue
            events = json.loads(b"[" + b",".join(line for line in lines if line) + b"]")
            with self._lock:
                for event in events:
                    job_id = event.get("start") or event.get("end") or event.get("dropped")
                    if self._status.get(job_id) == constants.QUEUED_ACTIVE:
                        self._queued -= 1
                    self._apply(event, self._status, self._exit, self._pids)
                    held.append(job_id)
                busy = self._queued >= BUSY_QUEUE_PER_SLOT * self.slots
            if not busy:
                self._notify_changes(held)
                held, deadline = [], None
            elif deadline is None:
                deadline = time.monotonic() + NOTIFY_BATCH_SECONDS
        stream.close()
        runner = self._runner
        if runner is not None:
            runner.wait()
        held.extend(self._runner_gone(runner.returncode if runner is not None else None))
        self._notify_changes(held)

    def _runner_gone(self, returncode: int | None) -> list[str]:
        """The runner's pipe closed: jobs it never started are submitted again; jobs it
        ran and did not report have an unknown end (only a crashed runner leaves any)."""
        lost: list[str] = []
        with self._lock:
            own = self.runner_id + "."
            told = self._catch_up_from_journal(own)
            for job_id, status in self._status.items():
                if not job_id.startswith(own) or status in constants.ENDED_JOB_STATUS:
                    continue
                lost.append(job_id)
                if status == constants.RUNNING:
                    self._status[job_id] = constants.FAILED
                    self._exit[job_id] = ExitInfo(
                        constants.EXIT_UNDETERMINED, reason=f"the local runner died "
                        f"(exit status {returncode}) while the job ran")
                else:
                    self._status[job_id] = constants.NOT_SUBMITTED
            self._queued = 0
            if lost:
                log.error("local runner %s ended (exit status %s) with %d jobs unfinished",
                          self.runner_id, returncode, len(lost))
            # the next submission starts a new runner, with ids of its own
            self._runner = None
            self.runner_id = _new_runner_id()
        return told + lost

    def _catch_up_from_journal(self, own: str) -> list[str]:
        """Apply what the runner journaled but did not tell over the pipe (lock held):
        starts of jobs younger than its START_REPORT_DELAY, events written just
        before it died. Without this, a job started a moment before a crash would
        look never started and be submitted again. The ids whose end it tells."""
        unended = {job_id for job_id, status in self._status.items()
                   if job_id.startswith(own) and status not in constants.ENDED_JOB_STATUS}
        if not unended:
            return []

        def apply(event: dict[str, Any], *tables: dict[str, Any]) -> None:
            if (event.get("start") or event.get("end") or event.get("dropped")) in unended:
                self._apply(event, *tables)

        _Journal(self.state_dir / self.runner_id).refresh(apply, self._status, self._exit,
                                                          self._pids)
        return [job_id for job_id in unended
                if self._status.get(job_id) in constants.ENDED_JOB_STATUS]

    def _notify_changes(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        with self._lock:
            self._changed.notify_all()
        if self._notify is not None:
            self._notify(job_ids)

    @staticmethod
    def _apply(event: dict[str, Any], status: dict[str, str], exits: dict[str, ExitInfo],
               pids: dict[str, int]) -> None:
        if "start" in event:
            job_id = event["start"]
            if status.get(job_id) not in constants.ENDED_JOB_STATUS:
                status[job_id] = constants.RUNNING
            pids[job_id] = event["pid"]
        elif "end" in event:
            job_id = event["end"]
            exit_status, value, sig, usage = event["exit"]
            info = ExitInfo(exit_status, value, sig, usage, event.get("reason"),
                            event.get("started"), event.get("ended"))
            exits[job_id] = info
            status[job_id] = info.job_status
            pids.pop(job_id, None)
        elif "dropped" in event:
            status[event["dropped"]] = constants.NOT_SUBMITTED

    # --- jobs of earlier engines' runners ----------------------------------------------------
    def _remove_journal_if_unneeded(self, runner_id: str) -> None:
        """Delete an exited runner's journal once every job in it is forgotten (lock
        held). A queued job its runner never journaled (it crashed) needs no journal:
        it never ran."""
        if not (self.state_dir / f"{runner_id}.journal").exists():
            return
        journal = self._journal(runner_id)
        if journal.runner_alive() or not journal.mentioned <= journal.forgotten:
            return
        _remove_journal(self.state_dir / runner_id)
        del self._journals[runner_id]
        self._unforgotten.pop(runner_id, None)
        prefix = runner_id + "."
        for table in (self._status, self._exit, self._pids):
            for job_id in [job_id for job_id in table if job_id.startswith(prefix)]:
                del table[job_id]

    def _journal(self, runner_id: str) -> _Journal:
        journal = self._journals.get(runner_id)
        if journal is None:
            journal = self._journals[runner_id] = _Journal(self.state_dir / runner_id)
        journal.refresh(self._apply, self._status, self._exit, self._pids)
        return journal

    def _foreign_status(self, job_id: str) -> str:
        """Status of a job another runner ran, from its journal (lock held)."""
        runner_id, _, _ = job_id.rpartition(".")
        if not runner_id or runner_id == self.runner_id:
            return constants.UNDETERMINED
        journal = self._journal(runner_id)
        status = self._status.get(job_id)
        if status is not None:
            return status
        if not journal.exists or journal.runner_alive():
            # an alive runner journals a job once started: until then, queued there or
            # never submitted, its journal cannot tell
            return constants.UNDETERMINED
        journal.refresh(self._apply, self._status, self._exit, self._pids)
        # a dead runner that never started it: not submitted (the engine submits it again)
        return self._status.get(job_id, constants.NOT_SUBMITTED)


_encode = json.JSONEncoder(separators=(",", ":")).encode


def _append(path: Path, event: dict[str, Any]) -> None:
    """Add one event to an existing journal (O_APPEND: whole, after the runner's)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except FileNotFoundError:
        return
    try:
        os.write(fd, (_encode(event) + "\n").encode())
    finally:
        os.close(fd)


def _remove_journal(base: Path) -> None:
    """A runner's journal, then its lock (a journal without lock: a runner gone)."""
    base.with_suffix(".journal").unlink(missing_ok=True)
    base.with_suffix(".lock").unlink(missing_ok=True)


class _Journal:
    """Reads an earlier runner's journal incrementally."""

    def __init__(self, base: Path) -> None:
        self.path = base.with_suffix(".journal")
        self.lock_path = base.with_suffix(".lock")
        self.offset = 0
        self.tags: dict[str, str] = {}
        self.mentioned: set[str] = set()  # jobs the runner journaled
        self.forgotten: set[str] = set()  # jobs an engine recorded (see forget)

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def refresh(self, apply: Callable[..., None], *tables: dict[str, Any]) -> None:
        try:
            with self.path.open("rb") as stream:
                stream.seek(self.offset)
                data = stream.read()
        except FileNotFoundError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            event = json.loads(line)
            if "forgotten" in event:
                self.forgotten.update(event["forgotten"])
                continue
            self.mentioned.add(event.get("start") or event.get("end") or event.get("dropped"))
            if "start" in event and event.get("tag"):
                self.tags[event["start"]] = event["tag"]
            apply(event, *tables)

    def runner_alive(self) -> bool:
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


class ConfiguredLocalScheduler(LocalScheduler):
    """Local scheduler parameterized by a resource's configuration (``cpu_nb``,
    ``max_cpu_nb``, ``scheduler_interval``, ``container_command``, ``enforce_memory``)."""

    def __init__(self, config: Configuration) -> None:
        self.config = config
        super().__init__(
            proc_nb=config.get_int("cpu_nb", 0),
            interval=config.get_float("scheduler_interval", 0.05),
            max_proc_nb=config.get_int("max_cpu_nb", 0),
            container_command=config.get_words("container_command"),
            resource=config.resource_id,
            enforce_memory=configured_mode(config),
        )

    @classmethod
    def build_scheduler(cls, config: Configuration) -> Scheduler:
        return cls(config)
