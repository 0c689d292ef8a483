"""What users do with workflows, for the command line and the Python API alike.

``submit`` stores a workflow and makes sure one background engine per
``$JOBBRIDGE_HOME`` drives it; ``run`` drives one in this process. Requests
(stop, restart, delete) are written to the store, where the workflow's engine
picks them up.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import constants, retry
from .configuration import Configuration
from .dynamic import Placement
from .engine import Engine, Progress, live_engines
from .errors import InputError, JobbridgeError
from .model import WorkflowSpec, load_workflow_file, parse_workflow
from .report import job_attempts
from .scheduler import describe_schedulers, get_scheduler_implementation, known_config_keys
from .store import Store

REQUESTS = ("stop", "restart", "delete")


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
    """Refuse a workflow with a job needing more CPUs than the resource can give one."""
    limit = get_scheduler_implementation(config.get_scheduler_type()).max_job_cpus(config)
    if limit is None:
        return
    for job in spec.jobs:
        if job.cpu_count > limit:
            raise InputError(f"job {job.job_id!r} needs {job.cpu_count} cpus: resource "
                             f"{config.resource_id!r} has {limit}")


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
               scheduler_type: str | None = None) -> str:
        """Store the workflow, make sure an engine drives it; its id."""
        config = resolve_config(resource, scheduler_type)
        spec = as_spec(workflow, Placement.for_resource(config, self.store.home))
        check_jobs_fit(spec, config)
        workflow_id = self.store.add_workflow(spec, config)
        ensure_engine(self.store.home)
        return str(workflow_id)

    def run(self, workflow: Any, resource: str | None = None, scheduler_type: str | None = None,
            progress: Callable[[Progress], None] | None = None,
            starting: Callable[[Configuration], None] | None = None) -> str:
        """Run the workflow to its end in this process; its id. ``starting`` is told
        the resource's configuration once the workflow is stored, before it runs."""
        config = resolve_config(resource, scheduler_type)
        spec = as_spec(workflow, Placement.for_resource(config, self.store.home))
        check_jobs_fit(spec, config)
        engine = Engine(self.store, progress=progress)
        engine.start()
        workflow_id = self.store.add_workflow(spec, config, engine=engine.engine_id)
        if starting is not None:
            starting(config)
        engine.only = {workflow_id}
        try:
            engine.run()
        except KeyboardInterrupt:
            self.store.request(workflow_id, "stop")
            Engine(self.store, workflow_ids=[workflow_id], progress=progress).run()
            raise
        return str(workflow_id)

    def request(self, workflow_id: str, action: str) -> None:
        """Ask for stop, restart or delete; an engine is started if none drives it."""
        if action not in REQUESTS:
            raise InputError(f"unknown request {action!r}")
        self.store.request(workflow_id, action)
        ensure_engine(self.store.home)

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
            if workflow.status == constants.WORKFLOW_DONE and workflow.request is None:
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
        caps = retry.limits(workflow.config)
        return {"id": str(workflow.id), "name": workflow.name, "status": workflow.status,
                "resource": workflow.resource, "scheduler_type": workflow.scheduler_type,
                "submission_date": workflow.submission_date, "ending_date": workflow.ending_date,
                "jobs": [job.as_json() | {
                    "exit_reason": job.exit_reason, "retries": job.spec.retries,
                    "retry_at": job.retry_at if job.status == constants.NOT_SUBMITTED else None,
                    "attempts": [attempt.as_json() for attempt in
                                 job_attempts(job, recorded.get(job.idx, ()), caps)]}
                    for job in jobs]}

    def list(self) -> list[dict[str, Any]]:
        """The ``list --json`` array (docs/format.md)."""
        with self.store.snapshot():
            counts = self.store.status_counts()
            workflows = self.store.workflows()
        return [{"id": str(w.id), "name": w.name, "status": w.status,
                 "submission_date": w.submission_date, "counts": counts.get(w.id, {})}
                for w in workflows]

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


def schedulers_table() -> list[dict[str, object]]:
    return [info.as_dict() for info in describe_schedulers()]


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
    log = os.open(home / "engine.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        subprocess.Popen([sys.executable, "-m", "jobbridge", "engine", "--quiet"],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, close_fds=True,
                         env={**os.environ, "JOBBRIDGE_HOME": str(home)})
    finally:
        os.close(log)


def run_background_engine(store: Store, progress: Callable[[Progress], None] | None = None
                          ) -> bool:
    """Serve every unfinished workflow until none is left; False if another engine runs."""
    served = False
    while True:
        with _engine_lock(store.home, blocking=False) as acquired:
            if not acquired:
                return served
            served = True
            Engine(store, progress=progress).run()
        # lock released: work submitted meanwhile either sees the lock free (and
        # starts an engine) or is seen here
        live = live_engines(store.home)
        if not any(store.workflow(wf_id).engine not in live
                   for wf_id in store.unfinished_workflow_ids()):
            return served
