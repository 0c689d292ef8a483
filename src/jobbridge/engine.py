"""The workflow engine: drives workflows' DAGs through their resources' Schedulers.

The engine knows nothing of any one backend: it submits ready jobs (by priority,
within ``max_job_in_queue`` / ``max_job_running``), follows them through the
Scheduler API (bulk status, change notifications) and records their ends.

Durability rule: every state change is committed to the store *before* the
engine acts on it. A job is marked ``submission_pending`` with a unique tag
before it is submitted; its scheduler id is committed right after. A restarted
engine re-attaches running jobs by scheduler id and asks the scheduler about
pending tags (``find_submitted``), so no job is lost and none runs twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import constants, retry
from .dynamic import ON_RESOURCE, NotReady, collect_outputs, prepare
from .errors import StoreError
from .model import EngineJob, ended_status, safe_name
from .scheduler import Scheduler, build_scheduler
from .store import AttemptRow, Store, WorkflowRow, epoch, iso_date, now_iso

log = logging.getLogger(__name__)

#: Statuses of a job that a scheduler holds (submitted, not ended).
_ACTIVE = frozenset(set(constants.JOB_STATUS) - {constants.NOT_SUBMITTED, constants.DONE,
                                                 constants.FAILED,
                                                 constants.SUBMISSION_PENDING})
#: How often the engine looks for requests and new workflows in the store.
STORE_CHECK_INTERVAL = 0.25
#: Longest wait for something to do when no resource has jobs to follow.
MAX_WAIT = 5.0
#: Most characters of a job's id in its submission tag (and so in its batch name).
TAG_ID_LIMIT = 32
#: Most jobs submitted in one cycle: a fan-out of 10,000 starts running after the
#: first chunk is committed and submitted, not after all of them.
SUBMIT_CHUNK = 500
#: How often an engine removes the temporary paths whose disposal time has passed.
DISPOSAL_INTERVAL = 600.0
#: After :meth:`Engine.interrupt`, how long the engine waits for the killed jobs' ends
#: before it returns anyway (a later engine records the rest): ``jobbridge run``
#: exits within 2 s of Ctrl-C whatever its jobs do with SIGTERM.
INTERRUPT_WAIT = 1.0


@dataclass(slots=True)
class _Job:
    idx: int
    spec: EngineJob
    status: str
    scheduler_job_id: str | None
    attempt: int
    hidden: bool
    preds: list[int] = field(default_factory=list)
    succs: list[int] = field(default_factory=list)
    preds_left: int = 0
    running_seen: bool = False
    #: a dynamic job's output parameters once it ended; its spec as submitted when
    #: ``spec`` is what it became when ready (links applied)
    outputs: dict[str, Any] | None = None
    base: EngineJob | None = None
    #: the current attempt's place in its series (0: first try) and, while a retry
    #: waits out its delay, when it may go (epoch seconds)
    retry: int = 0
    retry_at: float | None = None
    #: the current attempt's dates, recorded with its end
    submission_date: str | None = None
    execution_date: str | None = None
    #: what the scheduler last said of it beyond its status (shown as its reason)
    note: str | None = None
    #: why the engine killed it (``workflow stopped``), for the reason of its end
    killed_why: str | None = None

    def unprepare(self) -> None:
        """Back to its spec as submitted: its links are applied again when it is ready."""
        if self.base is not None:
            self.spec, self.base = self.base, None


class _Resource:
    """One scheduler instance and the limits of its resource, shared by workflows."""

    def __init__(self, scheduler: Scheduler, workflow: WorkflowRow) -> None:
        config = workflow.config
        self.scheduler = scheduler
        self.max_in_queue = config.get_int("max_job_in_queue", 0)
        self.max_running = config.get_int("max_job_running", 0)
        limit = scheduler.submission_limit()  # a site's own limit: submitting more fails
        if limit:
            self.max_running = min(self.max_running, limit) if self.max_running else limit
        self.limits = retry.limits(config)
        self.active: dict[str, tuple[_Run, int]] = {}
        self.running = 0
        self.next_full_poll = 0.0

    def room(self) -> int | None:
        """How many more jobs may be submitted now (None: no limit): within the
        resource's limits and what the scheduler can take without waiting."""
        limits = []
        budget = self.scheduler.submission_room()
        if budget is not None:
            limits.append(budget)
        if self.max_running:
            limits.append(self.max_running - len(self.active))
        if self.max_in_queue:
            limits.append(self.max_in_queue - (len(self.active) - self.running))
        return max(0, min(limits)) if limits else None


class _Run:
    """An in-memory workflow being driven, rebuilt from the store on (re)start."""

    def __init__(self, workflow: WorkflowRow, store: Store, resource: _Resource) -> None:
        self.id = workflow.id
        self.workflow = workflow
        self.resource = resource
        self.jobs: list[_Job] = []
        self.ready: list[tuple[int, int]] = []
        self.counts: Counter[str] = Counter()
        self.changes: list[tuple[int, dict[str, Any]]] = []
        self.attempts: list[AttemptRow] = []
        #: scheduler ids whose end (or return to not_submitted) is in ``changes``: the
        #: scheduler may forget them once the changes are committed
        self.released: list[str] = []
        #: jobs being killed when a restart came: run again once their end is in
        self.rerun: set[int] = set()
        self.unended = 0
        self.folder = store.home / "logs" / str(workflow.id)  # its jobs' files
        self._index: dict[str, int] | None = None
        for row in store.jobs(workflow.id, include_hidden=True):
            job = _Job(row.idx, row.spec, row.status, row.scheduler_job_id, row.attempt,
                       row.hidden, outputs=row.outputs, base=row.base, retry=row.retry,
                       retry_at=epoch(row.retry_at), submission_date=row.submission_date,
                       execution_date=row.execution_date)
            if row.status == constants.NOT_SUBMITTED:  # made ready, not submitted: again
                job.unprepare()
            self.jobs.append(job)
        for before, after in store.dependencies(workflow.id):
            self.jobs[before].succs.append(after)
            self.jobs[after].preds.append(before)
        for job in self.jobs:
            self.unended += job.status not in constants.ENDED_JOB_STATUS
            if not job.hidden:
                self.counts[job.status] += 1
        self.stopping = workflow.status == constants.WORKFLOW_STOPPED
        #: copied input transfers not on the resource yet, and the jobs waiting for them
        self.missing: set[str] = set()
        self.waiting: list[_Job] = []
        self.check_inputs(store)

    def check_inputs(self, store: Store) -> list[_Job]:
        """Read which input transfers are on the resource; the waiting jobs that may go."""
        if not any(job.spec.dynamic and "inputs" in job.spec.dynamic for job in self.jobs):
            return []
        self.missing = {row.transfer.name for row in store.transfers(self.id)
                        if row.transfer.copied and row.status not in ON_RESOURCE}
        ready = [job for job in self.waiting if not self.lacks_inputs(job)]
        self.waiting = [job for job in self.waiting if self.lacks_inputs(job)]
        return ready

    def lacks_inputs(self, job: _Job) -> bool:
        return bool(self.missing) and not self.missing.isdisjoint(
            (job.spec.dynamic or {}).get("inputs", ()))

    def set_status(self, job: _Job, status: str, **values: Any) -> None:
        if not job.hidden:
            self.counts[job.status] -= 1
            self.counts[status] += 1
        self.unended += ((job.status in constants.ENDED_JOB_STATUS)
                         - (status in constants.ENDED_JOB_STATUS))
        job.status = status
        if "submission_date" in values:
            job.submission_date = values["submission_date"]
        if "execution_date" in values:
            job.execution_date = values["execution_date"]
        self.changes.append((job.idx, {"status": status, **values}))

    @property
    def finished(self) -> bool:
        return self.unended == 0

    def outputs_of(self, job_id: str) -> dict[str, Any] | None:
        """A job's stored output parameters, by its id (what links read)."""
        if self._index is None:
            self._index = {job.spec.job_id: job.idx for job in self.jobs}
        return self.jobs[self._index[job_id]].outputs


@dataclass
class Progress:
    """What the engine reports after each cycle that changed a workflow."""

    workflow_id: int
    total: int
    counts: dict[str, int]

    @property
    def ended(self) -> int:
        return self.counts.get(constants.DONE, 0) + self.counts.get(constants.FAILED, 0)


class Engine:
    """Drives workflows until they end.

    ``workflow_ids`` restricts the engine to those workflows (``jobbridge run``);
    without it the engine serves every unfinished workflow of the home, and
    adopts new ones as they are submitted (``jobbridge engine``).
    """

    def __init__(self, store: Store, workflow_ids: Sequence[int] | None = None,
                 progress: Callable[[Progress], None] | None = None,
                 scheduler_factory: Callable[[WorkflowRow], Scheduler] | None = None) -> None:
        self.store = store
        self.only = None if workflow_ids is None else set(workflow_ids)
        self.progress = progress
        self.scheduler_factory = scheduler_factory or _build_scheduler
        self.engine_id = f"{os.uname().nodename}-{os.getpid()}-{os.urandom(3).hex()}"
        self.runs: dict[int, _Run] = {}
        self.resources: dict[str, _Resource] = {}
        self._wake = threading.Event()
        self._changed_lock = threading.Lock()
        self._changed: set[str] = set()
        self._stop_requested = False
        self._interrupted = False
        self._interrupt_deadline: float | None = None
        self._lock_fd: int | None = None
        self._data_version = -1
        self._next_store_check = 0.0
        self._next_disposal = 0.0
        #: retries waiting out their delay: (epoch seconds, workflow id, job index)
        self._retry_timers: list[tuple[float, int, int]] = []

    # --- life -------------------------------------------------------------------------------
    def start(self) -> None:
        """Announce this engine (a lock held for its life) before it claims workflows.

        The lock file also says who it is, for ``jobbridge engine --status``. It is
        locked and written before it appears under its name: :func:`live_engines`
        would take an unlocked one for a dead engine's leftover."""
        folder = self.store.home / "engines"
        path = folder / f"{self.engine_id}.lock"
        fresh = path.with_suffix(".new")  # not *.lock: live_engines must not see it
        fd = -1
        try:
            folder.mkdir(exist_ok=True, mode=0o700)
            fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            about = {"pid": os.getpid(), "since": now_iso(),
                     "kind": "background" if self.only is None else "run"}
            os.write(fd, json.dumps(about).encode())
            os.rename(fresh, path)
        except OSError as error:  # a full or read-only home: said in one line, no leftover
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                fresh.unlink()
            raise StoreError(f"{folder}: cannot start an engine: {error.strerror}") from error
        self._lock_fd = fd

    def run(self) -> None:
        """Drive the workflows until all have ended (or :meth:`shutdown`, or
        :meth:`interrupt`)."""
        if self._lock_fd is None:
            self.start()
        try:
            while not self._stop_requested:
                self._check_store()
                if self._interrupted and self._interrupting():
                    return
                self._release_due_retries()
                for run in list(self.runs.values()):
                    self._submit_ready(run)
                self._commit_and_report()
                if not self.runs:
                    if self._no_more_work():
                        return
                    continue
                self._wait()
                self._poll()
                self._release_due_retries()
                for run in list(self.runs.values()):  # ends and the submissions they
                    self._submit_ready(run)            # allow: one commit, not two
                self._commit_and_report()
        finally:
            self._close()

    def shutdown(self) -> None:
        """Stop driving (jobs keep running; a later engine resumes them).

        This and :meth:`interrupt` only set a flag, which the engine reads at least
        every STORE_CHECK_INTERVAL: safe from a signal handler, which must take no
        lock that the code it interrupted may hold."""
        self._stop_requested = True

    def interrupt(self) -> None:
        """Stop the workflows this engine drives, as ``jobbridge stop`` does, and return
        from :meth:`run` (``jobbridge run`` on Ctrl-C)."""
        self._interrupted = True

    def _interrupting(self) -> bool:
        """Stop every workflow at the first call; then whether to return: when the
        killed jobs' ends are recorded, or after INTERRUPT_WAIT whatever they do."""
        now = time.monotonic()
        if self._interrupt_deadline is None:
            self._interrupt_deadline = now + INTERRUPT_WAIT
            log.info("interrupted: stopping workflows %s", ", ".join(map(str, self.runs)))
            for run in list(self.runs.values()):
                self._stop(run)
            self._commit_and_report()
        return not self.runs or now > self._interrupt_deadline

    def _close(self) -> None:
        for run_id in list(self.runs):
            self.store.release(run_id, self.engine_id)
        for resource in self.resources.values():
            resource.scheduler.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            (self.store.home / "engines" / f"{self.engine_id}.lock").unlink(missing_ok=True)
            self._lock_fd = None

    def _no_more_work(self) -> bool:
        if self.only is not None:
            return all(wf_id not in self.runs for wf_id in self.only)
        self._next_store_check = 0.0
        self._check_store()
        return not self.runs

    # --- store: new workflows and requests ----------------------------------------------------
    def _check_store(self) -> None:
        now = time.monotonic()
        if now < self._next_store_check:
            return
        self._next_store_check = now + STORE_CHECK_INTERVAL
        if now >= self._next_disposal:
            self._next_disposal = now + DISPOSAL_INTERVAL
            self._dispose_temporaries()
        version = self.store.data_version()
        if version == self._data_version:
            return
        self._data_version = version
        candidates = self.store.unfinished_workflow_ids()
        if self.only is not None:
            candidates = [wf_id for wf_id in candidates if wf_id in self.only]
        new = [wf_id for wf_id in candidates if wf_id not in self.runs]
        if new:
            live = live_engines(self.store.home)
            for wf_id in new:
                if self.store.claim(wf_id, self.engine_id, live):
                    self._load(wf_id)
        for wf_id, action in self.store.requests(list(self.runs)).items():
            self._apply_request(self.runs[wf_id], action)
            self.store.clear_request(wf_id, action)
        for run in self.runs.values():  # inputs copied meanwhile
            if run.waiting:
                for job in run.check_inputs(self.store):
                    if job.status == constants.NOT_SUBMITTED:
                        self._make_ready(run, job)
        self._data_version = self.store.data_version()

    def _load(self, workflow_id: int) -> None:
        workflow = self.store.workflow(workflow_id)
        try:
            resource = self._resource(workflow)
        except Exception as error:  # one unusable resource must not stop other workflows
            log.error("workflow %s: cannot use resource %r: %s", workflow_id,
                      workflow.resource, error)
            self._fail_workflow(workflow, f"cannot use resource {workflow.resource!r} "
                                f"({workflow.scheduler_type}): {error}")
            return
        run = _Run(workflow, self.store, resource)
        self.runs[workflow_id] = run
        pending = [job for job in run.jobs if job.status == constants.SUBMISSION_PENDING]
        found = resource.scheduler.find_submitted(
            [str(job.spec.submission_tag) for job in pending]) if pending else {}
        for job in run.jobs:
            if job.status == constants.SUBMISSION_PENDING:
                job_id = found.get(str(job.spec.submission_tag))
                if job_id is None:  # it never reached the scheduler: submit it again
                    run.set_status(job, constants.NOT_SUBMITTED)
                else:
                    job.scheduler_job_id = job_id
                    run.set_status(job, constants.UNDETERMINED, scheduler_job_id=job_id)
            if job.status in _ACTIVE and job.scheduler_job_id is not None:
                resource.active[job.scheduler_job_id] = (run, job.idx)
        log.info("workflow %s: %s on %s (%s): %s", workflow_id,
                 "started" if workflow.status == constants.WORKFLOW_NOT_STARTED else "resumed",
                 workflow.resource, workflow.scheduler_type, _counts_text(run.counts))
        resource.next_full_poll = 0.0
        self._wake.set()
        if run.stopping:  # a stop that an engine began: finish it
            self._stop(run)
            return
        for job in run.jobs:
            if job.status == constants.NOT_SUBMITTED:
                self._release_or_abort(run, job)
        doomed = [job.scheduler_job_id for job in run.jobs  # jobs stopped alone
                  if job.status == constants.KILL_PENDING and job.scheduler_job_id]
        if doomed:
            resource.scheduler.kill_jobs(doomed)

    def _dispose_temporaries(self) -> None:
        """Remove the temporary paths of workflows ended longer ago than their disposal
        time (jobbridge has no daemon: engines do it as they run)."""
        try:
            removed = self.store.dispose_temporaries()
        except Exception:  # housekeeping must never stop the engine
            log.exception("removing expired temporary paths failed")
            return
        if removed:
            log.info("removed %d expired temporary paths", removed)

    def _fail_workflow(self, workflow: WorkflowRow, reason: str) -> None:
        """End every unended job of a workflow that cannot run at all (restartable)."""
        date = now_iso()
        changes = [(job.idx, {"status": constants.FAILED, "exit_status": constants.EXIT_ABORTED,
                              "exit_reason": reason, "ending_date": date})
                   for job in self.store.jobs(workflow.id, include_hidden=True)
                   if job.status not in constants.ENDED_JOB_STATUS]
        self.store.update_jobs(workflow.id, changes)
        self.store.set_workflow_status(workflow.id, constants.WORKFLOW_DONE, ended=True)
        self.store.release(workflow.id, self.engine_id)

    def _resource(self, workflow: WorkflowRow) -> _Resource:
        key = json.dumps([workflow.scheduler_type, workflow.options], sort_keys=True)
        resource = self.resources.get(key)
        if resource is None:
            scheduler = self.scheduler_factory(workflow)
            scheduler.set_change_notifier(self._notified)
            resource = self.resources[key] = _Resource(scheduler, workflow)
        return resource

    def _apply_request(self, run: _Run, request: str) -> None:
        log.info("workflow %s: %s requested", run.id, request)
        # "stop:3,4" / "restart:3,4": only the jobs of these indexes (soma-workflow's
        # stop_jobs / restart_jobs); the workflow goes on with its other jobs
        action, _, listed = request.partition(":")
        chosen = ([run.jobs[i] for i in sorted({int(i) for i in listed.split(",")})]
                  if listed else None)
        if action == "stop" and chosen is None:
            self._stop(run)
        elif action == "stop":
            self._halt(run, "job stopped", chosen)
        elif action == "delete":
            self._delete(run)
        elif action == "restart":
            self._restart(run, chosen)
        else:
            log.warning("workflow %s: unknown request %r ignored", run.id, request)

    def _stop(self, run: _Run) -> None:
        """Stop the workflow: recorded stopped first, so that an engine resuming it
        finishes the stop (see :meth:`_load`); its end is dated once the killed
        jobs' ends are in."""
        if run.finished and not run.stopping:
            log.info("workflow %s: nothing to stop (it has ended)", run.id)
            return
        if run.workflow.status != constants.WORKFLOW_STOPPED:
            run.workflow.status = constants.WORKFLOW_STOPPED
            self.store.set_workflow_status(run.id, constants.WORKFLOW_STOPPED)
        self._halt(run, "workflow stopped")

    def _halt(self, run: _Run, reason: str, jobs: list[_Job] | None = None) -> None:
        """Kill the active jobs (of ``jobs``, default all: then the workflow submits
        no more), end the others as never run; each step durable before the next."""
        if jobs is None:
            jobs = run.jobs
            run.stopping = True
            run.ready.clear()
            run.rerun.clear()
        else:
            chosen = {job.idx for job in jobs}
            run.ready = [entry for entry in run.ready if entry[1] not in chosen]
            heapq.heapify(run.ready)
            run.rerun.difference_update(chosen)
        for job in jobs:
            if job.status == constants.NOT_SUBMITTED:
                self._end(run, job, constants.EXIT_NOTRUN, reason=reason)
            elif job.status == constants.KILL_PENDING:  # a stop an earlier engine began
                job.killed_why = job.killed_why or reason
            elif job.status in _ACTIVE and job.scheduler_job_id is not None:
                self._running_changed(run.resource, job, False)
                job.killed_why = reason
                run.set_status(job, constants.KILL_PENDING)
        self._commit(run)
        # one call (scancel, qdel... take many ids); queued jobs first: a slot a killed
        # job frees must not start one of them
        doomed = sorted((job for job in jobs if job.status == constants.KILL_PENDING
                         and job.scheduler_job_id), key=lambda job: job.running_seen)
        if doomed:
            run.resource.scheduler.kill_jobs([str(job.scheduler_job_id) for job in doomed])

    def _delete(self, run: _Run) -> None:
        self._halt(run, "workflow deleted")
        ids = [job.scheduler_job_id for job in run.jobs if job.scheduler_job_id]
        for job_id in ids:
            run.resource.active.pop(job_id, None)
        del self.runs[run.id]
        self.store.delete_workflow(run.id)
        run.resource.scheduler.forget(ids)
        log.info("workflow %s: deleted", run.id)

    def _restart(self, run: _Run, jobs: list[_Job] | None = None) -> None:
        """Run again what failed or was stopped (``jobs``: these if they ended, even
        done), and what waits for it; jobs still being killed run again once their
        end is in."""
        again = ([job for job in run.jobs if job.status == constants.FAILED] if jobs is None
                 else [job for job in jobs if job.status in constants.ENDED_JOB_STATUS])
        killing = [job.idx for job in (run.jobs if jobs is None else jobs)
                   if job.status == constants.KILL_PENDING]
        if not again and not killing:
            log.info("workflow %s: nothing to restart", run.id)
            return
        run.stopping = False
        run.rerun.update(killing)
        for job in again:
            self._reset(run, job)
        run.workflow.status = constants.WORKFLOW_IN_PROGRESS
        run.workflow.ending_date = None
        self.store.set_workflow_status(run.id, constants.WORKFLOW_IN_PROGRESS)
        queued = {idx for _, idx in run.ready}  # a running workflow's: not twice
        for job in run.jobs:
            if job.status == constants.NOT_SUBMITTED and job.idx not in queued:
                self._release_or_abort(run, job)

    @staticmethod
    def _reset(run: _Run, job: _Job) -> None:
        """Back to not submitted, as the job was before its run (spec as submitted)."""
        run.set_status(job, constants.NOT_SUBMITTED, exit_status=None, exit_value=None,
                       term_sig=None, resource_usage=None, exit_reason=None,
                       scheduler_job_id=None, submission_date=None, execution_date=None,
                       ending_date=None, rendered=None, outputs=None, retry=0, retry_at=None)
        job.scheduler_job_id = None
        job.running_seen = False
        job.unprepare()
        job.outputs = None
        job.retry, job.retry_at = 0, None

    def _release_or_abort(self, run: _Run, job: _Job) -> None:
        """A not-submitted job: ready if its predecessors succeeded, aborted if one
        failed, else waiting for them."""
        job.preds_left = sum(run.jobs[p].status != constants.DONE for p in job.preds)
        failed = [run.jobs[p] for p in job.preds if run.jobs[p].status == constants.FAILED]
        if failed:
            self._abort_descendants(run, failed[0], start=[job])
        elif job.preds_left == 0:
            self._make_ready(run, job)

    # --- submission -----------------------------------------------------------------------
    def _make_ready(self, run: _Run, job: _Job) -> None:
        if run.lacks_inputs(job):  # its input files are not on the resource yet
            if job not in run.waiting:
                run.waiting.append(job)
                missing = [n for n in (job.spec.dynamic or {})["inputs"] if n in run.missing]
                run.changes.append((job.idx, {"exit_reason": "waiting for its input files "
                                              f"({', '.join(missing)})"}))
            return
        if job.retry_at is not None:  # a retry waiting out its delay
            if job.retry_at > time.time():
                heapq.heappush(self._retry_timers, (job.retry_at, run.id, job.idx))
                return
            job.retry_at = None
        if job.spec.dynamic is not None and not self._prepare(run, job):
            return
        if job.spec.is_barrier:  # nothing to run: it ends as soon as it is ready
            self._end(run, job, constants.FINISHED_REGULARLY, 0, 0)
            return
        heapq.heappush(run.ready, (-job.spec.priority, job.idx))

    def _release_due_retries(self) -> None:
        """Retries whose delay is over become ready (a timer whose job moved on since,
        stopped or restarted, is dropped)."""
        now = time.time()
        while self._retry_timers and self._retry_timers[0][0] <= now:
            at, run_id, idx = heapq.heappop(self._retry_timers)
            run = self.runs.get(run_id)
            if run is None:  # deleted meanwhile
                continue
            job = run.jobs[idx]
            if job.status == constants.NOT_SUBMITTED and job.retry_at == at:
                job.retry_at = None
                self._make_ready(run, job)

    def _prepare(self, run: _Run, job: _Job) -> bool:
        """Hook: a dynamic job becomes ready (jobbridge.dynamic.prepare): its links are
        applied and its command rendered; what changed is committed with its submission.
        An engine-side job runs here and ends. False if the job ended."""
        try:
            ready = prepare(job.base or job.spec, run.folder, run.outputs_of)
        except NotReady as error:
            self._end(run, job, constants.EXIT_ABORTED, reason=str(error))
            return False
        if ready.rendered:
            job.base = job.base or job.spec
            job.spec = ready.spec
            run.changes.append((job.idx, {"rendered": json.dumps(ready.rendered)}))
        if job.spec.dynamic is not None and "engine" in job.spec.dynamic:
            job.outputs = ready.outputs
            self._end(run, job, constants.FINISHED_REGULARLY, 0, 0)
            return False
        return True

    def _collect_outputs(self, run: _Run, job: _Job, values: dict[str, Any]) -> str:
        """Hook: a dynamic job ended well. Its output parameters (read from its file, or
        an engine-side job's result) go in ``values``: committed with its end, before
        any dependent is released. Its status: FAILED if it did not write the declared
        ones."""
        dynamic = job.spec.dynamic or {}
        if "engine" not in dynamic:
            if "outputs" not in dynamic:
                return constants.DONE
            job.outputs, problem = collect_outputs(job.spec, run.folder)
            if problem is not None:
                values.update(exit_status=constants.FINISHED_UNCLEAR_CONDITIONS,
                              exit_reason=problem)
                return constants.FAILED
        values["outputs"] = None if job.outputs is None else json.dumps(job.outputs)
        return constants.DONE

    def _submit_ready(self, run: _Run) -> None:
        if not run.ready or run.stopping or self._interrupted:
            return
        resource = run.resource
        room = resource.room()
        count = len(run.ready) if room is None else min(room, len(run.ready))
        count = min(count, SUBMIT_CHUNK)
        if count == 0:
            return
        batch = [run.jobs[heapq.heappop(run.ready)[1]] for _ in range(count)]
        for job in batch:  # durable first: a restarted engine will look for these tags
            job.attempt += 1
            job.spec.submission_tag = submission_tag(job.spec.job_id, self.store.home_token,
                                                     run.id, job.idx, job.attempt)
            run.set_status(job, constants.SUBMISSION_PENDING, attempt=job.attempt,
                           submission_tag=job.spec.submission_tag)
        if run.workflow.status == constants.WORKFLOW_NOT_STARTED:
            run.workflow.status = constants.WORKFLOW_IN_PROGRESS
            self.store.set_workflow_status(run.id, constants.WORKFLOW_IN_PROGRESS)
        self._commit(run)
        date = now_iso()  # handed over now: a local job may start before the call returns
        scheduler = resource.scheduler
        specs = [self._attempt_spec(run, job) for job in batch]
        try:
            ids = scheduler.job_submission(specs)
        except Exception as error:  # a broken scheduler fails these jobs, not the engine
            log.exception("workflow %s: submission failed", run.id)
            ids = [None] * len(batch)
            failure: str | None = f"submission failed: {error}"
        else:
            failure = None
        notes = scheduler.job_notes([job_id for job_id in ids if job_id is not None])
        for job, spec, job_id in zip(batch, specs, ids, strict=True):
            if job_id is None:
                reason = (failure or scheduler.refusal_reason(spec)
                          or "the scheduler refused the job")
                self._end(run, job, constants.EXIT_ABORTED, reason=reason)
                continue
            job.scheduler_job_id = job_id
            job.note = notes.get(job_id)
            resource.active[job_id] = (run, job.idx)
            run.set_status(job, constants.QUEUED_ACTIVE, scheduler_job_id=job_id,
                           submission_date=date, exit_reason=job.note)
        # ask soon about these jobs only: a full poll after every chunk would cost
        # O(active jobs) each time
        self._notified([job_id for job_id in ids if job_id is not None])

    # --- following jobs --------------------------------------------------------------------
    def _notified(self, scheduler_job_ids: Iterable[str] | None = None) -> None:
        """Called by schedulers (any thread) when jobs may have changed."""
        if scheduler_job_ids is not None:
            with self._changed_lock:
                self._changed.update(scheduler_job_ids)
        self._wake.set()

    def _wait(self) -> None:
        now = time.monotonic()
        deadline = min((r.next_full_poll for r in self.resources.values() if r.active),
                       default=now + MAX_WAIT)
        # ready jobs without room (a command budget) wait here too: asked again after
        # at most STORE_CHECK_INTERVAL, never blocking the engine in a submission
        timeout = min(max(0.0, deadline - now), STORE_CHECK_INTERVAL, MAX_WAIT)
        if self._retry_timers:
            timeout = min(timeout, max(0.0, self._retry_timers[0][0] - time.time()))
        if self._changed or any(run.ready and not run.stopping and run.resource.room() != 0
                                for run in self.runs.values()):
            timeout = 0.0
        if timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()

    def _poll(self) -> None:
        with self._changed_lock:
            changed, self._changed = self._changed, set()
        now = time.monotonic()
        for resource in self.resources.values():
            if not resource.active:
                continue
            if now >= resource.next_full_poll:  # the scheduler's interval holds, however long
                ids = list(resource.active)
                resource.next_full_poll = now + resource.scheduler.poll_interval()
            else:
                ids = [job_id for job_id in changed if job_id in resource.active]
            if not ids:
                continue
            try:
                statuses = resource.scheduler.get_jobs_status(ids)
            except Exception:  # keep the jobs; ask again next cycle
                log.exception("status query failed")
                continue
            for job_id, status in statuses.items():
                if job_id in resource.active:
                    self._follow(resource, job_id, status)
            self._take_notes(resource, [job_id for job_id in ids if job_id in resource.active])

    def _take_notes(self, resource: _Resource, scheduler_job_ids: list[str]) -> None:
        """Record what the scheduler says of unended jobs (``pending: Resources``) as
        their reason, when it changed."""
        if type(resource.scheduler).job_notes is Scheduler.job_notes:
            return  # it tells none: no loop over thousands of local jobs each cycle
        try:
            notes = resource.scheduler.job_notes(scheduler_job_ids)
        except Exception:  # a note is not worth a failing cycle
            log.exception("job notes failed")
            return
        for job_id in scheduler_job_ids:
            run, idx = resource.active[job_id]
            job = run.jobs[idx]
            note = notes.get(job_id)
            if note != job.note:
                job.note = note
                run.changes.append((idx, {"exit_reason": note}))

    def _follow(self, resource: _Resource, scheduler_job_id: str, status: str) -> None:
        run, idx = resource.active[scheduler_job_id]
        job = run.jobs[idx]
        if status in (job.status, constants.UNDETERMINED):
            return
        if status == constants.NOT_SUBMITTED:  # the scheduler dropped it before it ran
            del resource.active[scheduler_job_id]
            run.released.append(scheduler_job_id)
            self._running_changed(resource, job, False)
            job.scheduler_job_id = None
            run.rerun.discard(job.idx)
            if run.stopping:
                self._end(run, job, constants.EXIT_NOTRUN, reason="workflow stopped")
                return
            run.set_status(job, constants.NOT_SUBMITTED, scheduler_job_id=None)
            self._release_or_abort(run, job)
            return
        if status in constants.ENDED_JOB_STATUS:
            del resource.active[scheduler_job_id]
            run.released.append(scheduler_job_id)
            self._running_changed(resource, job, False)
            info = resource.scheduler.get_job_exit_info(scheduler_job_id)
            # the job's own dates where the scheduler kept them (truer than when the
            # engine saw it run, or end: it may have been down); else now
            started, ended = getattr(info, "started", None), getattr(info, "ended", None)
            if (started is None and ended is None and not job.running_seen
                    and getattr(info, "ran", None) is not False):  # never ran: no date
                started = time.time()
            reason = getattr(info, "reason", None)
            if info[0] == constants.USER_KILLED and job.killed_why:  # we killed it: why
                reason = f"{reason} ({job.killed_why})" if reason else job.killed_why
            self._end(run, job, info[0], info[1], info[2], info[3], reason=reason,
                      execution_date=None if started is None else iso_date(started),
                      ending_date=None if ended is None else iso_date(ended))
            return
        if job.status == constants.KILL_PENDING:  # stays so (stopping) until its end
            if status == constants.RUNNING and not job.running_seen:
                job.running_seen = True
                job.execution_date = now_iso()
                run.changes.append((idx, {"execution_date": job.execution_date}))
            return
        if status == constants.RUNNING and not job.running_seen:
            job.running_seen = True
            self._running_changed(resource, job, True)
            run.set_status(job, status, execution_date=now_iso())
            return
        self._running_changed(resource, job, status == constants.RUNNING)
        run.set_status(job, status)

    @staticmethod
    def _running_changed(resource: _Resource, job: _Job, running: bool) -> None:
        was = job.status == constants.RUNNING
        resource.running += int(running) - int(was)

    def _end(self, run: _Run, job: _Job, exit_status: str, exit_value: int | None = None,
             term_sig: int | None = None, resource_usage: str | None = None,
             reason: str | None = None, **dates: Any) -> None:
        """Record a job's end; release its dependents or abort them."""
        status = ended_status(exit_status, exit_value)
        values = {"exit_status": exit_status, "exit_value": exit_value, "term_sig": term_sig,
                  "resource_usage": resource_usage, "exit_reason": reason,
                  "ending_date": now_iso(), **{k: v for k, v in dates.items() if v}}
        if job.spec.dynamic is not None and status == constants.DONE:
            status = self._collect_outputs(run, job, values)
        if job.status != constants.NOT_SUBMITTED and self._attempt_ended(run, job, status, values):
            return
        run.set_status(job, status, **values)
        if job.idx in run.rerun:  # killed, then restarted: it runs again
            run.rerun.discard(job.idx)
            self._reset(run, job)
            self._release_or_abort(run, job)
            return
        if status != constants.DONE:
            self._abort_descendants(run, job)
            return
        for succ in job.succs:
            nxt = run.jobs[succ]
            nxt.preds_left -= 1
            if nxt.preds_left == 0 and nxt.status == constants.NOT_SUBMITTED and not run.stopping:
                self._make_ready(run, nxt)

    # --- retries ---------------------------------------------------------------------------
    def _attempt_ended(self, run: _Run, job: _Job, status: str, values: dict[str, Any]) -> bool:
        """Record the attempt that just ended (``values``: its end); True when the job
        is tried again (retry.py): it then waits, NOT_SUBMITTED, for its next attempt,
        and its dependents for the end of the last one. Durable: the retry number and
        date are committed with the attempt, so a restarted engine goes on alike."""
        again = (status != constants.DONE and not run.stopping
                 and job.status != constants.KILL_PENDING
                 and retry.retryable(job.spec, job.retry, values["exit_status"],
                                     values["exit_value"], values["term_sig"],
                                     values["exit_reason"]))
        resources = retry.attempt_resources(job.spec, job.retry, run.resource.limits)
        run.attempts.append(AttemptRow(
            run.id, job.idx, job.attempt, job.retry, retry.requested(job.spec, resources),
            job.scheduler_job_id, job.submission_date,
            values.get("execution_date", job.execution_date), values["ending_date"],
            values["exit_status"], values["exit_value"], values["term_sig"],
            values["resource_usage"], values["exit_reason"], again))
        if not again:
            return False
        job.retry += 1
        wait = retry.delay(job.spec, job.retry)
        job.retry_at = time.time() + wait if wait > 0 else None
        log.info("workflow %s: job %s failed (attempt %d), retry %d of %d%s", run.id,
                 job.spec.label, job.attempt, job.retry, job.spec.retries,
                 f" in {wait:g} s" if wait else "")
        run.set_status(job, constants.NOT_SUBMITTED, scheduler_job_id=None, exit_status=None,
                       exit_value=None, term_sig=None, resource_usage=None, exit_reason=None,
                       submission_date=None, execution_date=None, ending_date=None,
                       rendered=None, retry=job.retry,
                       retry_at=None if job.retry_at is None else iso_date(job.retry_at))
        job.scheduler_job_id = None
        job.running_seen = False
        job.unprepare()  # its links are applied again when it is ready
        self._make_ready(run, job)
        return True

    def _attempt_spec(self, run: _Run, job: _Job) -> EngineJob:
        """The job as this attempt submits it: escalated resources on a retry."""
        if not job.retry or not job.spec.escalate:
            return job.spec
        return replace(job.spec, resources=retry.attempt_resources(job.spec, job.retry,
                                                                   run.resource.limits))

    def _abort_descendants(self, run: _Run, failed: _Job, start: Sequence[_Job] = ()) -> None:
        """Jobs downstream of a failure end as aborted_before_running."""
        reason = f"{failed.spec.label} failed"
        stack = list(start) or [run.jobs[s] for s in failed.succs]
        date = now_iso()
        while stack:
            job = stack.pop()
            if job.status != constants.NOT_SUBMITTED:
                continue
            run.set_status(job, constants.FAILED, exit_status=constants.EXIT_NOTRUN,
                           exit_value=None, term_sig=None, resource_usage=None,
                           exit_reason=reason, ending_date=date)
            stack.extend(run.jobs[s] for s in job.succs)

    # --- commit and report -----------------------------------------------------------------
    def _commit(self, run: _Run) -> None:
        changes, run.changes = run.changes, []
        attempts, run.attempts = run.attempts, []
        self.store.update_jobs(run.id, changes, attempts)
        if run.released:  # recorded: the scheduler may forget them
            released, run.released = run.released, []
            try:
                run.resource.scheduler.forget(released)
            except Exception:  # its leftovers cost disk space, not correctness
                log.exception("workflow %s: the scheduler could not forget ended jobs", run.id)

    def _commit_and_report(self) -> None:
        for run in list(self.runs.values()):
            changed = bool(run.changes)
            if changed:
                self._commit(run)
            if run.finished:  # even unchanged: a request may have left nothing to do
                self._finish(run)
            if changed and self.progress is not None:
                visible = sum(run.counts.values())
                self.progress(Progress(run.id, visible, {k: v for k, v in run.counts.items() if v}))

    def _finish(self, run: _Run) -> None:
        """Every job has ended: the workflow is done, or stopped if it was stopped and
        a job did not succeed."""
        failed = run.counts[constants.FAILED]
        status = (constants.WORKFLOW_STOPPED if run.stopping and failed
                  else constants.WORKFLOW_DONE)
        if status != run.workflow.status or run.workflow.ending_date is None:
            self.store.set_workflow_status(run.id, status, ended=True)
            log.info("workflow %s: %s (%d jobs, %d failed)", run.id,
                     status.removeprefix("workflow_"), len(run.jobs), failed)
        self.store.release(run.id, self.engine_id)
        del self.runs[run.id]


def _counts_text(counts: Counter[str]) -> str:
    return ", ".join(f"{number} {status}" for status, number in sorted(counts.items()) if number)


def submission_tag(job_id: str, home_token: str, workflow_id: int, idx: int, attempt: int
                   ) -> str:
    """The unique tag of one submission attempt: the job's id first (sanitised,
    shortened), so that a batch job's name says which job it is in ``squeue`` and
    ``qstat``, then what makes it unique: the home, the workflow, the job's index and
    the attempt (``align_s01-jb-6cb8d6-12-27-1``)."""
    return f"{safe_name(job_id, TAG_ID_LIMIT)}-jb-{home_token}-{workflow_id}-{idx}-{attempt}"


def _build_scheduler(workflow: WorkflowRow) -> Scheduler:
    return build_scheduler(workflow.scheduler_type, workflow.config)


def live_engines(home: Path) -> set[str]:
    """Ids of engines alive on this home (each holds a lock on its file)."""
    alive: set[str] = set()
    folder = home / "engines"
    if not folder.is_dir():
        return alive
    for path in folder.glob("*.lock"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            alive.add(path.stem)
        else:
            path.unlink(missing_ok=True)  # a dead engine's leftover
        finally:
            os.close(fd)
    return alive

