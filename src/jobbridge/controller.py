"""What users do with workflows, for the command line and the Python API alike.

``submit`` stores a workflow and makes sure one background engine per
``$JOBBRIDGE_HOME`` drives it; ``run`` drives one in this process. Requests
(stop, restart, delete) are written to the store, where the workflow's engine
picks them up.

Signals: the first SIGINT, SIGTERM or SIGHUP makes ``run`` stop its workflow
(as ``stop`` does) and the background engine exit (its jobs keep running), each
in order and at once; a second one interrupts whatever they are doing. Both
leave the store consistent: what is written is written whole, before it is
acted on.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from . import constants, retry
from .configuration import Configuration
from .dynamic import Placement, TransferProgress
from .engine import Engine, Progress, live_engines
from .errors import InputError, JobbridgeError
from .model import WorkflowSpec, load_workflow_file, parse_workflow
from .report import job_attempts
from .scheduler import describe_schedulers, get_scheduler_implementation, known_config_keys
from .store import Store, WorkflowRow

REQUESTS = ("stop", "restart", "delete")
#: Signals that stop ``run``'s workflow, or the background engine, cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The background engine's log: rotated at this size, this many old files kept.
ENGINE_LOG_BYTES = 1 << 20
ENGINE_LOG_BACKUPS = 3
log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """A signal ended the command cleanly; its exit status is 128 + the signal's number."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


class WorkflowInterrupted(Interrupted):
    """A signal stopped the workflow that ``run`` drove: it is recorded stopped (its
    running jobs killed, the others never run); ``restart`` runs them again."""

    def __init__(self, workflow_id: str, signal_number: int) -> None:
        super().__init__(signal_number)
        self.workflow_id = workflow_id


def resolve_config(resource: str | None = None, scheduler_type: str | None = None
                   ) -> Configuration:
    """The configuration a workflow runs with: a resource's, a bare scheduler type's,
    or the default (``localhost``, local scheduler)."""
    if resource is None and scheduler_type is not None:
        config = Configuration.from_dict(scheduler_type, {"scheduler_type": scheduler_type})
    else:
        config = Configuration.load(resource)
        if scheduler_type is not None:
            options = config.options()
            options["scheduler_type"] = scheduler_type
            config = Configuration(config.resource_id, options, config.source, config.inherited)
    return check_config(config)


def check_config(config: Configuration) -> Configuration:
    """``config`` if its keys are its scheduler's, the scheduler can work here and the
    values are valid."""
    if config.get("host"):
        raise InputError(f"resource {config.resource_id!r} is remote (host = ...): its "
                         "workflows go through jobbridge.remote.client.RemoteController")
    kind = config.get_scheduler_type()
    implementation = get_scheduler_implementation(kind)
    config.check_keys(kind, implementation.CONFIG_KEYS, known_config_keys)
    enabled, reason = implementation.availability()
    if not enabled:
        raise InputError(f"scheduler {kind!r} cannot work here: {reason}")
    implementation.check_config(config)
    return config


def check_jobs_fit(spec: WorkflowSpec, config: Configuration) -> None:
    """Refuse a workflow with a job needing more CPUs than the resource can give one,
    or one its scheduler cannot take as written (``Scheduler.check_job``)."""
    implementation = get_scheduler_implementation(config.get_scheduler_type())
    limit = implementation.max_job_cpus(config)
    for job in spec.jobs:
        if limit is not None and job.cpu_count > limit:
            raise InputError(f"job {job.job_id!r} needs {job.cpu_count} cpus: resource "
                             f"{config.resource_id!r} has {limit}")
        try:
            implementation.check_job(job)
        except InputError as error:
            raise InputError(f"job {job.job_id!r}: {error}") from None


def as_spec(workflow: WorkflowSpec | str | os.PathLike[str] | dict[str, Any] | Any,
            placement: Placement | None = None) -> WorkflowSpec:
    """A validated workflow from a spec, a file path, a dict or an API ``Workflow``;
    ``placement``: where on its resource its temporary and shared paths are."""
    if isinstance(workflow, WorkflowSpec):
        return workflow
    if isinstance(workflow, str | os.PathLike):
        return load_workflow_file(Path(workflow), placement=placement)
    if hasattr(workflow, "to_dict"):
        workflow = workflow.to_dict()
    return parse_workflow(workflow, placement=placement)


class WorkflowController:
    """Submit, run, follow and control workflows of one ``$JOBBRIDGE_HOME``."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.store = Store(home)

    def close(self) -> None:
        self.store.close()

    # --- running -------------------------------------------------------------------------
    def submit(self, workflow: Any, resource: str | None = None,
               scheduler_type: str | None = None,
               copying: Callable[[TransferProgress], None] | None = None) -> str:
        """Store the workflow, make sure an engine drives it; its id. Its transfers are
        its client paths: nothing to copy (``copying``, for a remote resource's)."""
        config = resolve_config(resource, scheduler_type)
        spec = as_spec(workflow, Placement.for_resource(config, self.store.home))
        check_jobs_fit(spec, config)
        workflow_id = self.store.add_workflow(spec, config)
        ensure_engine(self.store.home)
        return str(workflow_id)

    def run(self, workflow: Any, resource: str | None = None, scheduler_type: str | None = None,
            progress: Callable[[Progress], None] | None = None,
            starting: Callable[[Configuration], None] | None = None,
            copying: Callable[[TransferProgress], None] | None = None) -> str:
        """Run the workflow to its end in this process; its id. ``starting`` is told
        the resource's configuration once the workflow is stored, before it runs.

        SIGINT, SIGTERM or SIGHUP (in the main thread) stop the workflow and raise
        :class:`WorkflowInterrupted` within about a second; a second signal raises
        it at once, the stop then finished by a background engine."""
        config = resolve_config(resource, scheduler_type)
        spec = as_spec(workflow, Placement.for_resource(config, self.store.home))
        check_jobs_fit(spec, config)
        engine = Engine(self.store, workflow_ids=(), progress=progress)
        with _on_stop_signals(lambda _: engine.interrupt()) as received:
            engine.start()
            workflow_id = self.store.add_workflow(spec, config, engine=engine.engine_id)
            if starting is not None:
                starting(config)
            engine.only = {workflow_id}
            try:
                engine.run()
            except KeyboardInterrupt:  # a second signal, or an interrupt without handlers
                self._stopped_in_background(workflow_id)
                raise WorkflowInterrupted(str(workflow_id), (received or [signal.SIGINT])[0]
                                          ) from None
            if received:
                self._stopped_in_background(workflow_id)
                raise WorkflowInterrupted(str(workflow_id), received[0])
        return str(workflow_id)

    def _stopped_in_background(self, workflow_id: int) -> None:
        """After an interrupted ``run``: what its engine could not finish of the stop
        (asking for it, recording the killed jobs' ends), a background engine does."""
        workflow = self.store.workflow(workflow_id)
        if workflow.status != constants.WORKFLOW_STOPPED:
            self.store.request(workflow_id, "stop")
        elif workflow.ended:
            return
        ensure_engine(self.store.home)

    def transfer(self, workflow_id: str, outputs: bool, folder: str | None = None,
                 copying: Callable[[TransferProgress], None] | None = None) -> list[str]:
        """Nothing to copy: this machine's resources share its file system, a transfer is
        its client path (a remote resource's controller copies)."""
        workflow = self.store.workflow(workflow_id)  # an unknown id is an error
        return [f"nothing to copy: resource {workflow.resource!r} shares this machine's "
                "files (each transfer is its client path)"]

    def request(self, workflow_id: str, action: str) -> str:
        """Ask for stop, restart or delete (an engine is started if none drives the
        workflow); what was done, for ``workflow N: ...``. A request with nothing to
        do is not made: it says so and changes nothing."""
        if action not in REQUESTS:
            raise InputError(f"unknown request {action!r}")
        with self.store.snapshot():
            workflow = self.store.workflow(workflow_id)
            counts = self.store.status_counts().get(workflow.id, {})
        nothing = _nothing_to_do(action, workflow, counts)
        if nothing is not None:
            if not workflow.ended:  # nothing to ask, but it must go on
                ensure_engine(self.store.home)
            return f"nothing to {action} ({nothing})"
        self.store.request(workflow_id, action)
        ensure_engine(self.store.home)
        return f"{action} requested"

    def kill_job(self, workflow_id: str, job_id: str) -> None:
        """Kill one job (one not started yet will not run): the engine's ``stop:IDX``;
        its dependents are not run, the rest of the workflow goes on."""
        job = self.store.job(workflow_id, job_id)
        if job.status in constants.ENDED_JOB_STATUS:
            raise InputError(f"job {job_id!r} has already ended ({job.status})")
        pending = self.store.request_stop_jobs(workflow_id, job.idx)
        if pending is not None:
            raise InputError(f"workflow {workflow_id} has a {pending} request pending")
        ensure_engine(self.store.home)

    def wait(self, workflow_id: str, timeout: float | None = None,
             progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        """Block until the workflow has ended; its status object."""
        deadline = None if timeout is None else time.monotonic() + timeout
        version = -1
        while True:
            workflow = self.store.workflow(workflow_id)
            if workflow.ended:
                return self.status(workflow_id)
            current = self.store.data_version()
            if current != version:
                version = current
                if progress is not None:
                    progress(self.progress(workflow_id))
                if workflow.engine not in live_engines(self.store.home):
                    ensure_engine(self.store.home)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"workflow {workflow_id} still running")
            time.sleep(0.1)

    # --- reading ---------------------------------------------------------------------------
    def status(self, workflow_id: str | None = None) -> dict[str, Any]:
        """The ``status --json`` object (docs/format.md)."""
        wf_id = workflow_id if workflow_id is not None else self.store.latest_workflow_id()
        with self.store.snapshot():
            workflow = self.store.workflow(wf_id)
            jobs = self.store.jobs(wf_id)
            recorded = self.store.attempts(wf_id)
            transfers = self.store.transfers(wf_id)
        caps = retry.limits(workflow.config)
        shown = {"id": str(workflow.id), "name": workflow.name, "status": workflow.status,
                 "resource": workflow.resource, "scheduler_type": workflow.scheduler_type,
                 "submission_date": workflow.submission_date, "ending_date": workflow.ending_date,
                 "jobs": [job.as_json() | {
                     "exit_reason": job.exit_reason, "retries": job.spec.retries,
                     "retry_at": job.retry_at if job.status == constants.NOT_SUBMITTED else None,
                     "attempts": [attempt.as_json() for attempt in
                                  job_attempts(job, recorded.get(job.idx, ()), caps)]}
                     for job in jobs]}
        if transfers:  # a workflow with file transfers: where they are
            shown["transfers"] = [transfer.as_json() for transfer in transfers]
        return shown

    def list(self) -> list[dict[str, Any]]:
        """The ``list --json`` array (docs/format.md)."""
        with self.store.snapshot():
            counts = self.store.status_counts()
            workflows = self.store.workflows()
        return [{"id": str(w.id), "name": w.name, "status": w.status,
                 "submission_date": w.submission_date, "counts": counts.get(w.id, {})}
                for w in workflows]

    def engines(self) -> builtins.list[EngineInfo]:
        """The engines running on this home: the background one and ``run``'s."""
        folder = self.store.home / "engines"
        found = []
        workflows = self.store.workflows()
        for engine_id in sorted(live_engines(self.store.home)):
            try:
                about = json.loads((folder / f"{engine_id}.lock").read_text() or "{}")
            except (OSError, ValueError):
                about = {}
            pid = int(about.get("pid") or engine_id.split("-")[-2])
            found.append(EngineInfo(engine_id, pid, about.get("since"),
                                    about.get("kind", "background"),
                                    [str(w.id) for w in workflows if w.engine == engine_id]))
        return found

    def unattended(self) -> builtins.list[str]:
        """Unfinished workflows no engine drives or will pick up (none runs)."""
        engines = self.engines()
        if any(engine.kind == "background" for engine in engines):
            return []
        live = {engine.engine_id for engine in engines}
        with self.store.snapshot():
            workflows = [self.store.workflow(wf_id)
                         for wf_id in self.store.unfinished_workflow_ids()]
        return [str(w.id) for w in workflows if w.engine not in live]

    def stop_engine(self, timeout: float = 60.0) -> builtins.list[EngineInfo]:
        """Ask the background engine to exit (SIGTERM: it ends cleanly, its jobs keep
        running); wait until it has. The engines stopped."""
        import psutil

        stopped = [info for info in self.engines() if info.kind == "background"]
        for info in stopped:
            with suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for info in stopped:
            while True:
                try:
                    if psutil.Process(info.pid).status() == psutil.STATUS_ZOMBIE:
                        break
                except psutil.NoSuchProcess:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the engine (pid {info.pid}) still runs after "
                                       f"{timeout:g} s")
                time.sleep(0.05)
        return stopped

    def progress(self, workflow_id: str) -> Progress:
        counts = self.store.status_counts().get(int(workflow_id), {})
        return Progress(int(workflow_id), sum(counts.values()), counts)

    def log_path(self, workflow_id: str, job_id: str, stderr: bool = False) -> Path:
        job = self.store.job(workflow_id, job_id)
        path = job.spec.stderr_file if stderr else job.spec.stdout_file
        if stderr and job.spec.join_stderrout:
            raise InputError(f"job {job_id!r} joins stderr into stdout: jobbridge logs without "
                             "--stderr")
        if path is None:
            raise InputError(f"job {job_id!r} has no {'stderr' if stderr else 'stdout'} file")
        return Path(path)

    def log_file(self, workflow_id: str, job_id: str, stderr: bool = False) -> Path:
        """The file ``jobbridge logs`` shows; JobbridgeError (exit 1) when the job has
        none (yet): it never ran, or has not started."""
        path = self.log_path(workflow_id, job_id, stderr)
        job = self.store.job(workflow_id, job_id)
        if job.execution_date is None and (job.exit_status == constants.EXIT_NOTRUN
                                           or not path.exists()):
            if job.status in constants.ENDED_JOB_STATUS:
                why = job.exit_reason or job.exit_status
                raise JobbridgeError(f"job {job_id!r} never ran ({why})")
            raise JobbridgeError(f"job {job_id!r} has not started yet ({job.status})")
        return path


@dataclass
class EngineInfo:
    """What ``jobbridge engine --status`` shows of one engine."""

    engine_id: str
    pid: int
    since: str | None
    kind: str  # "background" (jobbridge engine), "run" (jobbridge run)
    workflows: list[str]


def _nothing_to_do(action: str, workflow: WorkflowRow, counts: dict[str, int]) -> str | None:
    """Why ``action`` has nothing to do on ``workflow`` (None: it has)."""
    if workflow.request is not None:
        return None  # the engine decides once the pending request is applied
    if action == "stop":
        if workflow.status == constants.WORKFLOW_STOPPED:
            return "it is stopped"
        if workflow.ended:
            return "it has ended"
    elif action == "restart" and not counts.get(constants.FAILED) and not counts.get(
            constants.KILL_PENDING):
        if workflow.ended:
            return "all jobs succeeded"
        return "no job has failed or been stopped"
    return None


def schedulers_table() -> list[dict[str, object]]:
    return [info.as_dict() for info in describe_schedulers()]


@contextmanager
def _on_stop_signals(first: Callable[[int], None]) -> Iterator[list[int]]:
    """Call ``first(signal number)`` on the first SIGINT, SIGTERM or SIGHUP, which must
    only ask for a stop (it runs between any two bytecodes); raise KeyboardInterrupt
    on the next. Yields the signals received. Outside the main thread (where Python
    cannot handle signals) it does nothing.

    After SIGHUP the terminal is gone: standard output and error, if they were on
    it, go to /dev/null, so that the last messages and the progress bar do not fail.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    on_terminal = [fd for fd in (1, 2) if os.isatty(fd)]

    def handler(signal_number: int, _frame: FrameType | None) -> None:
        received.append(signal_number)
        if signal_number == signal.SIGHUP:
            _detach(on_terminal)
        if len(received) > 1:
            raise KeyboardInterrupt
        first(signal_number)

    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield received
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


def _detach(fds: list[int]) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in fds:
        os.dup2(null, fd)
    os.close(null)


# --- the background engine ---------------------------------------------------------------------


@contextmanager
def _engine_lock(home: Path, blocking: bool) -> Iterator[bool]:
    fd = os.open(home / "engine.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def ensure_engine(home: Path) -> None:
    """Start the home's background engine unless one runs.

    Race-free with an engine that is just exiting: the engine re-checks the
    store after releasing its lock, and this re-checks the lock after the
    caller's commit, so one of them always sees the other's work.
    """
    with _engine_lock(home, blocking=False) as free:
        if not free:
            return
    _started_engines[:] = [p for p in _started_engines if p.poll() is None]  # reaps them
    log = os.open(home / "engine.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        _started_engines.append(_BackgroundEngine(
            [sys.executable, "-m", "jobbridge", "engine", "--quiet"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            close_fds=True, env={**os.environ, "JOBBRIDGE_HOME": str(home)}))
    finally:
        os.close(log)


class _BackgroundEngine(subprocess.Popen[bytes]):
    """A background engine: it outlives this process by design."""

    def __del__(self) -> None:
        """Popen's warns "subprocess N is still running" (a ResourceWarning, shown under
        unittest: in soma-workflow's test suite) when this process ends before it."""


#: The background engines this process started, kept until seen ended (reaped).
_started_engines: list[_BackgroundEngine] = []


def run_background_engine(store: Store, progress: Callable[[Progress], None] | None = None
                          ) -> bool:
    """Serve every unfinished workflow until none is left; False if another engine runs.

    What it does goes to ``$JOBBRIDGE_HOME/engine.log``. SIGTERM (``jobbridge engine
    --stop``), SIGINT or SIGHUP make it exit cleanly, its jobs running on (a later
    engine resumes them): it raises :class:`Interrupted`.
    """
    served = False
    engines: list[Engine] = []

    def shut_down(_signal_number: int) -> None:
        for engine in engines:
            engine.shutdown()

    with _on_stop_signals(shut_down) as received:
        while not received:
            with _engine_lock(store.home, blocking=False) as acquired:
                if not acquired:
                    return served
                if not served:
                    attach_engine_log(store.home)
                    log.info("engine started (pid %d)", os.getpid())
                served = True
                engines[:] = [Engine(store, progress=progress)]
                if not received:  # a signal before the engine existed
                    engines[0].run()
            # lock released: work submitted meanwhile either sees the lock free (and
            # starts an engine) or is seen here
            live = live_engines(store.home)
            if not received and not any(store.workflow(wf_id).engine not in live
                                        for wf_id in store.unfinished_workflow_ids()):
                log.info("engine exits: every workflow has ended")
                return served
    log.info("engine stopped by %s; its jobs run on", signal.Signals(received[0]).name)
    raise Interrupted(received[0])


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Log files readable by their owner only: they name commands and paths."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


def attach_engine_log(home: Path, max_bytes: int = ENGINE_LOG_BYTES,
                      backups: int = ENGINE_LOG_BACKUPS) -> logging.Handler:
    """Log what this engine does (INFO and above) to ``HOME/engine.log``, rotated;
    the terminal, if any, keeps only warnings."""
    handler = _PrivateRotatingFileHandler(home / "engine.log", maxBytes=max_bytes,
                                          backupCount=backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    package = logging.getLogger("jobbridge")
    for other in logging.getLogger().handlers:
        if other.level == logging.NOTSET:
            other.setLevel(logging.WARNING)
    package.setLevel(logging.INFO)
    package.addHandler(handler)
    return handler
