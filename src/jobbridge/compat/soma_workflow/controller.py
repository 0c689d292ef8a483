"""soma-workflow's ``WorkflowController`` on jobbridge's store and engine.

Same constructor, methods, return shapes and errors as soma-workflow 3.x/6.x's
``soma_workflow.client.WorkflowController`` for what jobbridge runs: integer
workflow and job ids, ``datetime`` dates, soma-workflow's constants and status
semantics (a job that exited with a non-zero code is ``done``, its exit value
tells the failure), ``UnknownObjectError`` for ids that do not exist (any more).

Workflows go to a jobbridge home (``$JOBBRIDGE_HOME`` layout) and a background
jobbridge engine runs them: unlike soma-workflow's light mode they go on when
the controller's process exits. The home is soma-workflow's database path with
``.jobbridge`` instead of ``.db`` (a fresh folder in ``isolated_light_mode``),
jobbridge's own home when the database path is soma-workflow's default one.

soma-workflow job ids are integers unique in a home: each workflow gets a range
of them (table ``soma_workflows``, created here in the home's database); a job's
id is the range's first id plus the job's index in the workflow.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

import soma_workflow.configuration as soma_configuration
import soma_workflow.constants as soma_constants
from soma_workflow.client_types import BarrierJob, EngineExecutionJob, Job
from soma_workflow.errors import (
    ConfigurationError as SomaConfigurationError,
)
from soma_workflow.errors import (
    SomaWorkflowError,
    UnknownObjectError,
    WorkflowError,
)
from soma_workflow.info import DB_VERSION

from ... import constants
from ...configuration import Configuration, jobbridge_home
from ...controller import check_config, check_jobs_fit, ensure_engine
from ...dynamic import Placement
from ...engine import live_engines
from ...errors import InputError
from ...store import JobRow, Store, WorkflowRow
from .workflow_file import soma_workflow_spec

#: How often waits look at the store.
POLL_INTERVAL = 0.1
#: How long delete_workflow(force=True) waits for the engine before deleting itself.
DELETE_TIMEOUT = 120.0
#: soma-workflow's default life of a workflow.
EXPIRATION = timedelta(days=7)

_TABLE = """CREATE TABLE IF NOT EXISTS soma_workflows (
    workflow_id INTEGER PRIMARY KEY REFERENCES workflows(id) ON DELETE CASCADE,
    first_job INTEGER NOT NULL UNIQUE,
    job_count INTEGER NOT NULL,
    expiration_date TEXT NOT NULL,
    queue TEXT)"""
_NEXT_ID = "soma_next_job_id"
#: soma-workflow's value of WORKFLOW_NOT_STARTED (sic), where jobbridge's is spelt right.
WORKFLOW_NOT_STARTED: Final = "worklflow_not_started"
#: soma-workflow has no stopped status: a workflow it stopped is done.
_WORKFLOW_STATUS = {constants.WORKFLOW_NOT_STARTED: WORKFLOW_NOT_STARTED,
                    constants.WORKFLOW_STOPPED: constants.WORKFLOW_DONE}
_REQUEST_STATUS = {"delete": constants.DELETE_PENDING, "stop": constants.KILL_PENDING}


class WorkflowController:
    """Submission, control and monitoring of soma-workflow workflows, run by jobbridge."""

    #: Class-wide default of ``isolated_light_mode`` (soma-workflow's).
    isolated_light_mode: Any = None

    def __init__(self, resource_id: str | None = None, login: str | None = None,
                 password: str | None = None, config: Any = None,
                 rsa_key_pass: str | None = None, isolated_light_mode: Any = None) -> None:
        del login, password, rsa_key_pass  # remote (ssh) resources are not supported
        if isolated_light_mode is None:
            isolated_light_mode = WorkflowController.isolated_light_mode
        home = None
        if isolated_light_mode is not None:
            folder = (tempfile.mkdtemp(prefix="soma_workflow_") if isolated_light_mode is True
                      else str(isolated_light_mode))
            resource_id = "localhost"
            os.environ["SOMA_WORKFLOW_CONFIG"] = os.path.join(folder, "soma_workflow.cfg")
            config = soma_configuration.Configuration(
                "localhost", soma_configuration.LIGHT_MODE, "local_basic",
                os.path.join(folder, "soma-workflow.db"),
                os.path.join(folder, "transfered_files"))
            home = Path(folder) / "jobbridge"
        if config is None:
            config = soma_configuration.Configuration.load_from_file(resource_id)
        if resource_id is None:
            resource_id = soma_configuration.Configuration.get_local_resource_id(config)
        if config.get_mode() == soma_configuration.REMOTE_MODE:
            raise SomaConfigurationError(
                f"resource {resource_id!r} is a remote soma-workflow resource: jobbridge "
                "does not connect to remote servers, run it on the resource's machine")
        self.config = config
        self.engine_config_proxy = config
        self._resource_id = resource_id
        self.scheduler_config = _local_scheduler_config(config)
        self._config = _jobbridge_configuration(config, str(resource_id),
                                                self.scheduler_config)
        self.home = home or _home(config)
        self._lock = threading.RLock()
        self.store: Store | None = Store(self.home)
        #: soma-workflow's tests read job files through it.
        self._engine_proxy = self
        with self._write() as db:
            db.execute(_TABLE)

    # --- life ---------------------------------------------------------------------------------
    def stop_engine(self) -> None:
        """Close this controller. Submitted workflows go on: jobbridge's engine runs them."""
        with self._lock:
            if self.store is not None:
                self.store.close()
                self.store = None

    def disconnect(self) -> None:
        self.stop_engine()

    def __del__(self) -> None:
        if getattr(self, "store", None) is not None:
            self.stop_engine()

    def get_scheduler_type(self) -> str:
        return self._config.get_scheduler_type()

    # --- submission ---------------------------------------------------------------------------
    def submit_workflow(self, workflow: Any, expiration_date: datetime | None = None,
                        name: str | None = None, queue: str | None = None) -> int:
        """Store the workflow and have jobbridge's engine run it; its id."""
        if self.get_scheduler_type() == "mpi":
            raise SomaWorkflowError("The MPI scheduler is configured for this resource: "
                                    "run the workflow with mpirun jobbridge run FILE")
        data = _workflow_dict(workflow)
        name = name if name is not None else workflow.name
        try:
            spec = soma_workflow_spec(data, source=f"workflow {name!r}" if name else "workflow",
                                      base_dir=Path.cwd(), name=name, queue=queue,
                                      placement=Placement.for_resource(self._config, self.home))
            check_jobs_fit(spec, self._config)
        except InputError as error:
            raise WorkflowError(str(error)) from None
        expiration = expiration_date or datetime.now() + EXPIRATION
        with self._lock:
            workflow_id = self._store.add_workflow(spec, self._config)
            self._register(workflow_id, len(spec.jobs), expiration, queue)
        ensure_engine(self.home)
        return workflow_id

    # --- reading ------------------------------------------------------------------------------
    def workflows(self, workflow_ids: Iterable[int] | None = None
                  ) -> dict[int, tuple[str | None, datetime | None]]:
        """``{workflow_id: (name, expiration_date)}``."""
        with self._lock:
            wanted = None if not workflow_ids else {int(i) for i in workflow_ids}
            result = {}
            for workflow in self._store.workflows():
                if wanted is None or workflow.id in wanted:
                    info = self._range(workflow.id)
                    result[workflow.id] = (workflow.name, _date(info[2]))
            return result

    def workflow_status(self, workflow_id: int) -> str:
        with self._lock:
            return _workflow_status(self._workflow(workflow_id))

    def workflow_elements_status(self, workflow_id: int, with_drms_id: bool = True
                                 ) -> tuple[list[tuple[Any, ...]], list[Any], str,
                                            str | None, list[Any]]:
        """``(jobs, transfers, workflow_status, workflow_queue, temporary_paths)``; a job is
        ``(job_id, status, queue, exit_info, (submission, execution, ending, queue)
        [, drms_id])``, a transfer ``(engine_path, (status, progression, engine_path,
        client_path, client_paths))``, a temporary path ``(name, path, status)``. The
        resource shares the client's file system: a transfer is its client path, on both
        sides once it exists (``Helper.transfer_*_files`` have nothing to copy)."""
        with self._lock:
            first, _, _, queue = self._range(self._workflow(workflow_id).id)
        with self._lock, self._snapshot():
            workflow = self._workflow(workflow_id)
            jobs = []
            for job in self._store.jobs(workflow.id, include_hidden=True):
                if job.hidden:
                    continue
                info: tuple[Any, ...] = (
                    first + job.idx, _job_status(job), job.spec.queue, _exit_info(job),
                    (_date(job.submission_date), _date(job.execution_date),
                     _date(job.ending_date), job.spec.queue))
                jobs.append((*info, job.scheduler_job_id) if with_drms_id else info)
            temporaries = [(t.name, t.path, soma_constants.FILES_ON_CR)
                           for t in self._store.temporary_paths(workflow.id)]
            transfers = [row.transfer.soma_status(row.status)
                         for row in self._store.transfers(workflow.id)]
            return jobs, transfers, _workflow_status(workflow), queue, temporaries

    def jobs(self, job_ids: Iterable[int] | None = None
             ) -> dict[int, tuple[str | None, str, datetime | None]]:
        """``{job_id: (name, command, submission_date)}``; soma-workflow lists here only
        jobs outside workflows, which jobbridge does not have."""
        if not job_ids:
            return {}
        with self._lock, self._snapshot():
            result = {}
            for job_id, job in self._jobs(job_ids, missing_ok=True):
                command = " ".join(repr(arg) for arg in job.spec.command)
                result[job_id] = (job.name, command, _date(job.submission_date))
            return result

    def job_status(self, job_id: int) -> str:
        with self._lock:
            return _job_status(self._job(job_id))

    def job_termination_status(self, job_id: int
                               ) -> tuple[str | None, int | None, str | None, str | None]:
        """``(exit_status, exit_value, terminating_signal, resource_usage)``."""
        with self._lock:
            return _exit_info(self._job(job_id))

    def stdouterr_file_path(self, job_id: int) -> tuple[str | None, str | None]:
        with self._lock:
            spec = self._job(job_id).spec
            return spec.stdout_file, spec.stderr_file

    def retrieve_job_stdouterr(self, job_id: int, stdout_file_path: str,
                               stderr_file_path: str | None = None,
                               buffer_size: int = 512 ** 2) -> None:
        """Copy the job's standard output and error to these files (empty when the job
        wrote none)."""
        del buffer_size
        out, err = self.stdouterr_file_path(job_id)
        for source, target in ((out, stdout_file_path), (err, stderr_file_path)):
            if target is None:
                continue
            if source is not None and os.path.exists(source):
                shutil.copyfile(source, target)
            else:
                Path(target).write_bytes(b"")

    def transfers(self, transfer_ids: Iterable[Any] | None = None) -> dict[Any, Any]:
        """``{engine_path: (client_path, expiration_date, client_paths)}`` of these
        transfers of the workflows (none outside workflows: ``register_transfer``
        gives the path itself)."""
        wanted = set(transfer_ids or ())
        found: dict[Any, Any] = {}
        with self._lock, self._snapshot():
            for workflow in self._store.workflows() if wanted else ():
                for row in self._store.transfers(workflow.id):
                    if row.transfer.path in wanted:
                        _, (_, _, _, client, paths) = row.transfer.soma_status(row.status)
                        found[row.transfer.path] = (client, None, paths)
        return found

    def transfer_files(self, transfer_ids: Any, buffer_size: int = 512 ** 2) -> None:
        """Nothing to copy: on a resource sharing the client's file system the jobs
        read and write the client's files themselves (a remote resource's transfers are
        jobbridge's: ``jobbridge transfer``)."""
        del transfer_ids, buffer_size

    # --- waiting ------------------------------------------------------------------------------
    def wait_workflow(self, workflow_id: int, timeout: float = -1) -> None:
        """Block until the workflow has ended (or ``timeout`` seconds, if >= 0)."""
        self._wait(lambda: _ended(self._workflow(workflow_id)), timeout, workflow_id)

    def wait_job(self, job_ids: Sequence[int], timeout: float = -1) -> None:
        """Block until all these jobs have ended (or ``timeout`` seconds, if >= 0)."""
        def ended() -> bool:
            return all(job.status in constants.ENDED_JOB_STATUS
                       for _, job in self._jobs(job_ids))
        with self._lock:
            workflows = {job.workflow_id for _, job in self._jobs(job_ids)}
        self._wait(ended, timeout, *workflows)

    # --- control ------------------------------------------------------------------------------
    def stop_workflow(self, workflow_id: int) -> bool:
        """Kill the running jobs, end the others as not run; True once done."""
        with self._lock:
            workflow = self._workflow(workflow_id)
            if _ended(workflow):
                return True
            self._request(workflow.id, "stop")
        self.wait_workflow(workflow.id)
        return True

    def restart_workflow(self, workflow_id: int, queue: str | None = None) -> bool:
        """Run again the jobs that failed (and what they block); True if there were some."""
        if queue is not None:
            raise SomaWorkflowError("restart_workflow(queue=...) is not supported by jobbridge:"
                                    " jobs keep the queue they were submitted with")
        with self._lock:
            workflow = self._workflow(workflow_id)
            failed = any(job.status == constants.FAILED
                         for job in self._store.jobs(workflow.id, include_hidden=True))
            if not failed:
                return False
            self._request(workflow.id, "restart")
        self._wait(lambda: self._workflow(workflow.id).request is None, -1, workflow.id)
        return True

    def delete_workflow(self, workflow_id: int, force: bool = True) -> bool:
        """Delete the workflow (killing its running jobs); with ``force``, wait for it.
        False if jobs may still be running when it had to be deleted without them."""
        with self._lock:
            workflow = self._workflow(workflow_id)
            if _ended(workflow) and workflow.engine not in live_engines(self.home):
                self._store.delete_workflow(workflow.id)  # no engine: nothing runs
                deleted = True
            else:
                self._request(workflow.id, "delete")
                deleted = not force
        if not deleted:
            self._wait(lambda: not self._exists(workflow.id), DELETE_TIMEOUT, workflow.id)
            with self._lock:
                deleted = not self._exists(workflow.id)
                if not deleted:  # soma-workflow's force: out of the database all the same
                    self._store.delete_workflow(workflow.id)
        return deleted

    def stop_jobs(self, workflow_id: int, job_ids: Sequence[int]) -> bool:
        """Kill these jobs (not run yet: they will not); the workflow goes on."""
        with self._lock:
            workflow = self._workflow(workflow_id)
            indexes = self._indexes(workflow.id, job_ids)
            if _ended(workflow) or not indexes:
                return True
            self._request(workflow.id, "stop:" + ",".join(map(str, sorted(indexes))))
        self.wait_job(job_ids)
        return True

    def restart_jobs(self, workflow_id: int, job_ids: Sequence[int]) -> bool:
        """Run these jobs again, and the jobs after them (stopped first if running)."""
        with self._lock:
            workflow = self._workflow(workflow_id)
            first = self._range(workflow.id)[0]
            indexes = _downstream(self._store, workflow.id,
                                  self._indexes(workflow.id, job_ids))
            if not indexes:
                return True
        every = [first + idx for idx in sorted(indexes)]
        self.stop_jobs(workflow.id, every)
        with self._lock:
            self._request(workflow.id, "restart:" + ",".join(map(str, sorted(indexes))))
        self._wait(lambda: self._workflow(workflow.id).request is None, -1, workflow.id)
        return True

    def change_workflow_expiration_date(self, workflow_id: int,
                                        new_expiration_date: datetime) -> bool:
        """jobbridge keeps workflows until they are deleted; the date is only shown."""
        if new_expiration_date < datetime.now():
            return False
        with self._lock, self._write() as db:
            self._workflow(workflow_id)
            db.execute("UPDATE soma_workflows SET expiration_date = ? WHERE workflow_id = ?",
                       (new_expiration_date.isoformat(), int(workflow_id)))
        return True

    def log_failed_workflow(self, workflow_id: int, file: IO[str] = sys.stderr) -> bool:
        """Print the failed jobs' commands, environments and outputs; True if none failed."""
        status = self.workflow_status(workflow_id)
        if status != constants.WORKFLOW_DONE:
            print(f"** Workflow did not finish regularly: {status}", file=file)
        else:
            print("** Workflow status OK", file=file)
        with self._lock:
            first = self._range(int(workflow_id))[0]
            failed = [job for job in self._store.jobs(workflow_id)
                      if job.status == constants.FAILED]
        shown = [job for job in failed if job.exit_status != constants.EXIT_NOTRUN]
        if failed:
            print("** Jobs failure, the following jobs ended with failed status:", file=file)
        for job in shown:
            exit_status, exit_value = _exit_info(job)[:2]
            print(f"+ job {first + job.idx}: {job.name}, status: {_job_status(job)}, "
                  f"exit: {exit_status}, value: {exit_value}", file=file)
            print("  commandline:", " ".join(repr(a) for a in job.spec.command), file=file)
            print("  environment:", job.spec.env, file=file)
            for label, path in (("standard output", job.spec.stdout_file),
                                ("standard error", job.spec.stderr_file)):
                text = Path(path).read_text(errors="replace") if path and os.path.exists(
                    path) else ""
                print(f"\n  {label}:\n  ----------------\n{text}", file=file)
        return status == constants.WORKFLOW_DONE and not failed

    def register_transfer(self, file_transfer: Any) -> Any:
        """The transfer, its engine path the client path itself (a shared file system):
        nothing to register or copy."""
        paths = file_transfer.client_paths
        file_transfer.engine_path = (os.path.dirname(file_transfer.client_path) if paths
                                     else file_transfer.client_path)
        return file_transfer

    # --- parameters -----------------------------------------------------------------------
    def get_job_output_params(self, job_id: int) -> dict[str, Any] | None:
        """The job's output parameters (None before it ended, or if it wrote none)."""
        with self._lock:
            return self._job(job_id).outputs

    def updated_job_parameters(self, job_id: int) -> dict[str, list[tuple[Any, str, Any]]]:
        """``{param: [(function, source output, value), ...]}``: what the job's links
        give it from the outputs of the jobs that ended (soma-workflow's shape)."""
        with self._lock:
            job = self._job(job_id)
            links = (job.spec.dynamic or {}).get("links") or []
            outputs = {}
            for _, upstream, _, _ in links:
                if upstream not in outputs:
                    outputs[upstream] = self._store.job(job.workflow_id, upstream).outputs or {}
        result: dict[str, list[tuple[Any, str, Any]]] = {}
        for param, upstream, output, function in links:
            if output in outputs[upstream]:
                shown = None if function is None else (
                    function[0] if len(function) == 1 else tuple(function))
                result.setdefault(param, []).append((shown, output, outputs[upstream][output]))
        return result

    # --- inside -----------------------------------------------------------------------------------
    @property
    def _store(self) -> Store:
        if self.store is None:
            raise SomaWorkflowError("this WorkflowController was stopped (stop_engine)")
        return self.store

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._lock, self._store.transaction() as db:
            yield db

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        with self._store.snapshot():
            yield

    def _workflow(self, workflow_id: Any) -> WorkflowRow:
        try:
            return self._store.workflow(int(workflow_id))
        except (InputError, ValueError, TypeError):
            raise UnknownObjectError(f"The workflow id {workflow_id!r} is not valid") from None

    def _exists(self, workflow_id: int) -> bool:
        query = "SELECT 1 FROM workflows WHERE id = ?"
        return self._store.db.execute(query, (workflow_id,)).fetchone() is not None

    def _register(self, workflow_id: int, count: int, expiration: datetime,
                  queue: str | None) -> int:
        """Give a workflow its range of job ids (never reused in this home)."""
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (_NEXT_ID,)).fetchone()
            first = int(row[0]) if row else 1
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_NEXT_ID, str(first + count)))
            db.execute("INSERT INTO soma_workflows (workflow_id, first_job, job_count, "
                       "expiration_date, queue) VALUES (?, ?, ?, ?, ?)",
                       (workflow_id, first, count, expiration.isoformat(), queue))
        return first

    def _range(self, workflow_id: int) -> tuple[int, int, str, str | None]:
        """``(first_job, job_count, expiration, queue)`` of a workflow; one is given to
        workflows submitted another way (``jobbridge submit``) when first seen."""
        query = ("SELECT first_job, job_count, expiration_date, queue "
                 "FROM soma_workflows WHERE workflow_id = ?")
        row = self._store.db.execute(query, (workflow_id,)).fetchone()
        if row is None:
            workflow = self._workflow(workflow_id)
            count = self._store.db.execute("SELECT count(*) FROM jobs WHERE workflow_id = ?",
                                           (workflow_id,)).fetchone()[0]
            submitted = _date(workflow.submission_date) or datetime.now()
            self._register(workflow_id, count, submitted + EXPIRATION, None)
            row = self._store.db.execute(query, (workflow_id,)).fetchone()
        return row[0], row[1], row[2], row[3]

    def _locate(self, job_id: Any) -> tuple[int, int] | None:
        """``(workflow_id, index)`` of a soma-workflow job id, None if there is none."""
        try:
            number = int(job_id)
        except (ValueError, TypeError):
            return None
        row = self._store.db.execute(
            "SELECT workflow_id, first_job, job_count FROM soma_workflows WHERE first_job <= ? "
            "ORDER BY first_job DESC LIMIT 1", (number,)).fetchone()
        if row is None or number >= row[1] + row[2]:
            return None
        return row[0], number - row[1]

    def _jobs(self, job_ids: Iterable[Any], missing_ok: bool = False
              ) -> list[tuple[int, JobRow]]:
        """``(job_id, row)`` of soma-workflow job ids (a workflow's rows read at once)."""
        wanted = list(job_ids)
        places = {job_id: self._locate(job_id) for job_id in wanted}
        many: dict[int, list[JobRow]] = {}
        if len(wanted) > 1:
            for workflow_id in {place[0] for place in places.values() if place is not None}:
                many[workflow_id] = self._store.jobs(workflow_id, include_hidden=True)
        found: list[tuple[int, JobRow]] = []
        for job_id, place in places.items():
            row = None
            if place is not None and place[0] in many:
                rows = many[place[0]]
                row = rows[place[1]] if place[1] < len(rows) else None
            elif place is not None:
                row = self._store.job_at(*place)
            if row is not None:
                found.append((int(job_id), row))
            elif not missing_ok:
                raise UnknownObjectError(f"The job id {job_id!r} is not valid")
        return found

    def _job(self, job_id: Any) -> JobRow:
        return self._jobs([job_id])[0][1]

    def _indexes(self, workflow_id: int, job_ids: Iterable[Any]) -> set[int]:
        """Indexes in ``workflow_id`` of these soma-workflow job ids (all must be its)."""
        indexes = set()
        for job_id, job in self._jobs(job_ids):
            if job.workflow_id != workflow_id:
                raise UnknownObjectError(f"The job {job_id} is not in workflow {workflow_id}")
            indexes.add(job.idx)
        return indexes

    def _request(self, workflow_id: int, action: str) -> None:
        self._store.request(workflow_id, action)
        ensure_engine(self.home)

    def _wait(self, done: Callable[[], bool], timeout: float, *workflow_ids: int) -> None:
        """Until ``done()`` (asked again each time the engine wrote), or ``timeout`` seconds
        if >= 0; an engine is started if none drives these workflows."""
        deadline = None if timeout < 0 else time.monotonic() + timeout
        version = -1
        while True:
            with self._lock:
                current = self._store.data_version()
                if current != version:
                    version = current
                    if done():
                        return
                    live = live_engines(self.home)
                    rows = [self._store.workflow(wf) for wf in workflow_ids if self._exists(wf)]
                    if any(row.engine not in live and not _ended(row) for row in rows):
                        ensure_engine(self.home)
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(POLL_INTERVAL)


# --- soma-workflow's views of jobbridge's rows -------------------------------------------------


def _ended(workflow: WorkflowRow) -> bool:
    return workflow.ended


def _workflow_status(workflow: WorkflowRow) -> str:
    pending = _REQUEST_STATUS.get((workflow.request or "").partition(":")[0])
    if pending is not None and ":" not in (workflow.request or ""):
        return pending
    return _WORKFLOW_STATUS.get(workflow.status, workflow.status)


def _job_status(job: JobRow) -> str:
    """soma-workflow's status: a job that ran to its end is ``done`` whatever its exit code."""
    if job.status == constants.FAILED and job.exit_status == constants.FINISHED_REGULARLY:
        return constants.DONE
    return job.status


def _exit_info(job: JobRow) -> tuple[str | None, int | None, str | None, str | None]:
    signal_name = None
    if job.term_sig:
        try:
            signal_name = signal.Signals(job.term_sig).name
        except ValueError:
            signal_name = str(job.term_sig)
    return job.exit_status, job.exit_value, signal_name, job.resource_usage


def _date(text: str | None) -> datetime | None:
    """A stored ISO 8601 date as soma-workflow gives dates: naive, local time."""
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value.astimezone().replace(tzinfo=None) if value.tzinfo else value


def _downstream(store: Store, workflow_id: int, indexes: set[int]) -> set[int]:
    """These jobs and every job after them."""
    successors: dict[int, list[int]] = {}
    for before, after in store.dependencies(workflow_id):
        successors.setdefault(before, []).append(after)
    result, stack = set(indexes), list(indexes)
    while stack:
        for nxt in successors.get(stack.pop(), ()):
            if nxt not in result:
                result.add(nxt)
                stack.append(nxt)
    return result


# --- soma-workflow objects -----------------------------------------------------------------------


def _workflow_dict(workflow: Any) -> dict[str, Any]:
    """``workflow.to_dict()``, each job's class said plainly: a subclass of ``Job`` is run
    as a job, of ``BarrierJob`` as a barrier; other engine execution jobs keep theirs (and
    are refused)."""
    jobs = list(dict.fromkeys(workflow.jobs))  # soma's engine: each job once,
    for dependency in workflow.dependencies:   # and the jobs only named by dependencies
        for element in dependency:
            if isinstance(element, Job) and element not in jobs:
                jobs.append(element)
    for job in jobs:
        if not isinstance(job, Job):
            raise WorkflowError(f"{job!r}: wrong type in the jobs attribute, an object of type "
                                "Job is required")
    plain = copy.copy(workflow)
    plain.jobs = jobs
    try:
        data: dict[str, Any] = plain.to_dict()
    except Exception as error:  # soma-workflow's own checks (unknown jobs in dependencies...)
        raise WorkflowError(f"invalid workflow: {error}") from None
    serialized = data["serialized_jobs"]
    for number, job in zip(data["jobs"], jobs, strict=True):
        raw = serialized[str(number)]
        if isinstance(job, BarrierJob):
            raw["class"] = "soma_workflow.client_types.BarrierJob"
        elif not isinstance(job, EngineExecutionJob):
            raw["class"] = "soma_workflow.client_types.Job"
    return data


def _home(config: Any) -> Path:
    """The jobbridge home of a soma-workflow configuration: its database path without
    ``.db``, plus ``.jobbridge``; jobbridge's own home for soma-workflow's default path."""
    database = config.get_database_file()
    default = os.path.join(soma_configuration.Configuration.get_home_dir(), ".soma-workflow",
                           f"soma_workflow-{DB_VERSION}.db")
    if not database or os.path.abspath(database) == os.path.abspath(default):
        return jobbridge_home()
    return Path(os.path.splitext(os.path.abspath(database))[0] + ".jobbridge")


def _local_scheduler_config(config: Any) -> Any:
    """soma-workflow's light-mode local scheduler settings (its scheduler_config)."""
    if config.get_scheduler_type() != soma_configuration.LOCAL_SCHEDULER:
        return None
    path = soma_configuration.LocalSchedulerCfg.search_config_path()
    if path is None:
        return soma_configuration.LocalSchedulerCfg(proc_nb=soma_configuration.cpu_count())
    return soma_configuration.LocalSchedulerCfg.load_from_file(path)


def _jobbridge_configuration(config: Any, resource_id: str, local: Any) -> Configuration:
    """The jobbridge resource of a soma-workflow configuration object."""
    from .config import soma_options

    options: dict[str, object] = {}
    parser = config.get_config_parser()
    try:
        if parser is not None and parser.has_section(resource_id):
            where = f"{config._config_path}: [{resource_id}]"
            options.update(soma_options(dict(parser.items(resource_id)), where))
        options["scheduler_type"] = config.get_scheduler_type()
        if local is not None:
            options.update(cpu_nb=local.get_proc_nb(), max_cpu_nb=local.get_max_proc_nb(),
                           scheduler_interval=local.get_interval())
        return check_config(Configuration.from_dict(resource_id, options))
    except InputError as error:
        raise SomaConfigurationError(str(error)) from None

