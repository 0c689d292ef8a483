"""``mpi``: a whole workflow inside one MPI allocation.

Under ``mpirun -n N jobbridge run FILE --scheduler mpi`` every rank enters
:func:`run_ranks`: rank 0 runs the command (the usual engine and store, with
:class:`MPIScheduler` as its scheduler), ranks 1..N-1 are workers that run jobs
as local subprocesses, as ``local_basic`` does (:mod:`.process`: argv without a
shell, env, cwd, files, exact signal and rusage from ``wait4``).

A worker runs one job at a time: start one rank per job that should run at
once (typically one per core, plus rank 0); a job's cpus request is not
enforced, but a job asking for more cores than the node has, or than there are
workers, is refused. Its
``walltime_s`` and ``memory_mb`` are, as on ``local_basic`` (:mod:`.process`,
:mod:`.memory_limits`: the resource key ``enforce_memory``). Rank 0 keeps the
queue (by priority) and hands jobs to idle workers first, then one more to each
worker, which starts it the moment its running job ends: tiny jobs follow each
other without a round trip to rank 0. When the queue is empty and a worker
idles, rank 0 calls such a waiting job back for it, so no worker idles while a
job is ready. A failed job is run again, up to
``mpi_max_attempts`` runs in all (default 1), before its end is reported; a
killed job never is.

All MPI calls of a rank happen in one thread (on rank 0 a communication thread,
so MPI_THREAD_SERIALIZED is enough) and never block: Open MPI's blocking calls
spin on a core the jobs need, so ranks poll with a short backoff instead, and
sends are non-blocking so two ranks sending to each other cannot deadlock.
Messages are pickled tuples:

- rank 0 to a worker: ``("run", id, EngineJob, enforce_memory)``, ``("kill", id)``,
  ``("recall", id)``, ``("exit", code)``;
- a worker to rank 0: ``("start", id)`` (only for a job that runs over 10 ms),
  ``("end", id, exit_info, reason)``, ``("returned", id)`` (a recalled job that had not
  started), ``("bye",)``.

When rank 0's command ends, each worker kills a job left running, says bye and
exits with rank 0's exit status (so mpirun's is the same). If rank 0 dies,
mpirun kills the workers (SIGTERM), which kill their job's process tree first.
"""

from __future__ import annotations

import contextlib
import heapq
import importlib.util
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar

from .. import constants
from ..configuration import Configuration
from ..errors import JobbridgeError
from ..model import EngineJob
from ..scheduler import ChangeNotifier, ExitInfo, Scheduler, job_list
from .common import in_container, refuse
from .memory_limits import MemoryLimiter, configured_mode
from .process import (
    RunningJob,
    Spawner,
    kill_tree,
    report_start_failure,
)

log = logging.getLogger(__name__)

#: Variables through which MPI launchers tell a process the number of ranks (mpirun
#: of Open MPI, of MPICH or Intel MPI, of MVAPICH); srun with an MPI plugin
#: (``srun --mpi=pmix``) sets SLURM_STEP_NUM_TASKS and PMIX_RANK or PMI_RANK.
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
#: What MPI launchers tell each rank: jobs must not inherit it, or an MPI program run as
#: a job takes itself for a rank of the allocation (MPI_Init hangs, mpirun refuses to
#: nest). Users' own OMPI_MCA_* settings and OMPI_ALLOW_RUN_AS_ROOT* stay.
LAUNCHER_VARIABLES = ("PMIX_", "PMI_", "OMPI_COMM_WORLD_", "OMPI_MCA_ess", "OMPI_MCA_orte_",
                      "OMPI_MCA_pmix", "OMPI_MCA_initial_wdir", "OMPI_FILE_LOCATION",
                      "OMPI_UNIVERSE_SIZE", "OMPI_APP_CTX_NUM_PROCS", "OMPI_NUM_APP_CTX",
                      "OMPI_FIRST_RANKS", "OMPI_ARGV", "OMPI_COMMAND")
#: A rank with nothing to do polls again after BACKOFF times the time it has been
#: idle, within [MIN_DELAY, MAX_DELAY] seconds: a message is seen within ~10% of
#: the idle time (tiny jobs follow each other fast), and an idle rank wakes a few
#: dozen times a second at most.
BACKOFF, MIN_DELAY, MAX_DELAY = 0.1, 0.00005, 0.05
#: While rank 0 holds this many queued jobs per worker, the workers have work without
#: the engine: changes are then told to it every NOTIFY_BATCH_SECONDS, so that it
#: handles (and commits) thousands of ends in a few cycles, not one cycle per end.
BUSY_QUEUE_PER_WORKER, NOTIFY_BATCH_SECONDS = 2, 0.02
#: A worker tells a job's start once it has run this long (seconds): a shorter job
#: is told by its end alone, which halves the messages and the engine's work for
#: tiny jobs.
START_TOLD_AFTER = 0.01

_SERVED: MPIScheduler | None = None  # rank 0's scheduler while run_ranks runs


class MPISchedulerError(JobbridgeError):
    """The mpi scheduler cannot work: no MPI workers here."""


def run_ranks(main: Callable[[], int]) -> int:
    """Rank 0 runs ``main`` (which may build an :class:`MPIScheduler`); the other
    ranks run its jobs until it returns. Every rank returns ``main``'s result."""
    global _SERVED
    import mpi4py

    mpi4py.rc.thread_level = "serialized"
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_size() < 2 or MPI.Query_thread() < MPI.THREAD_SERIALIZED:
        raise MPISchedulerError("the mpi scheduler needs >= 2 ranks and MPI_THREAD_SERIALIZED")
    if comm.Get_rank() != 0:
        return _Worker(comm).serve()
    scheduler = _SERVED = MPIScheduler(comm)
    code = 1
    try:
        code = main()
    finally:
        _SERVED = None
        scheduler.shutdown(code)
    return code


def launched_size() -> int | None:
    """How many ranks the MPI launcher started, if one started this process."""
    srun = "PMIX_RANK" in os.environ or "PMI_RANK" in os.environ
    for name in (*SIZE_VARIABLES, "SLURM_STEP_NUM_TASKS") if srun else SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _delay(active: float) -> float:
    """How long a rank idle since ``active`` may wait before polling MPI again."""
    return min(max((time.monotonic() - active) * BACKOFF, MIN_DELAY), MAX_DELAY)


@dataclass(slots=True)
class _Job:
    spec: EngineJob
    key: tuple[int, int]  # queue order: (-priority, submission number)
    max_attempts: int
    status: str = constants.QUEUED_ACTIVE
    attempts: int = 0
    worker: int | None = None  # the rank running it
    killed: bool = False
    exit: ExitInfo | None = None


class MPIScheduler(Scheduler):
    """Rank 0's side: queues jobs, hands them to idle workers, follows their ends.

    One per rank 0, started by :func:`run_ranks`; ``build_scheduler`` configures
    and returns it, and ``close`` only detaches the engine (jobs keep running).
    """

    CONFIG_KEYS = Scheduler.CONFIG_KEYS | {"mpi_max_attempts", "enforce_memory"}

    usage_source: ClassVar[str] = "wait4 (MPI worker)"

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        self.max_attempts = 1
        self.container_command: list[str] = []
        self.enforce_memory = "auto"
        self.prefix = f"mpi.{os.urandom(3).hex()}."  # see _is_mpi_id
        self._lock = threading.Lock()
        self._notify: ChangeNotifier | None = None
        self._jobs: dict[str, _Job] = {}
        self._queue: list[tuple[tuple[int, int], str]] = []
        self._held: dict[int, list[str]] = {rank: [] for rank in range(1, comm.Get_size())}
        self._recalled: set[str] = set()
        self._outbox: list[tuple[int, tuple[Any, ...]]] = []
        self._count = 0
        self._exit_code: int | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._thread = threading.Thread(target=self._communicate, name="jobbridge-mpi",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("mpi4py") is None:
            return False, "mpi4py is not installed (pip install 'jobbridge[mpi]')"
        size = launched_size()
        if size is None:
            return False, ("not launched by mpirun: use `mpirun -n N jobbridge run FILE "
                           "--scheduler mpi` (or srun --mpi=pmix) with N >= 2")
        if size < 2:
            return False, ("launched with 1 MPI rank: needs >= 2 (rank 0 runs the engine, "
                           "the others run the jobs)")
        return True, ""

    @classmethod
    def build_scheduler(cls, config: Configuration) -> Scheduler:
        """Rank 0's scheduler, with ``mpi_max_attempts``, ``container_command`` and
        ``enforce_memory``; elsewhere (a later engine on an MPI workflow),
        :class:`_AllocationGone`."""
        if _SERVED is None:
            return _AllocationGone()
        _SERVED.max_attempts = max(1, config.get_int("mpi_max_attempts", 1))
        _SERVED.container_command = config.get_words("container_command")
        _SERVED.enforce_memory = configured_mode(config)
        return _SERVED

    @classmethod
    def check_config(cls, config: Configuration) -> None:
        super().check_config(config)
        config.get_int("mpi_max_attempts")
        configured_mode(config)

    @classmethod
    def max_job_cpus(cls, config: Configuration) -> int | None:
        """A worker's job runs on the worker's node: at most its cores (rank 0's node
        is one of the allocation's, which are alike as a rule)."""
        return os.cpu_count()

    @classmethod
    def run_command(cls, main: Callable[[], int]) -> int:
        """Every rank of ``mpirun -n N jobbridge run ...`` runs this: rank 0 the
        command, the others its jobs (:func:`run_ranks`)."""
        return run_ranks(main)

    # --- Scheduler API ---------------------------------------------------------------------
    def job_submission(self, jobs: EngineJob | list[EngineJob], signal_end: bool = True
                       ) -> list[str | None]:
        ids: list[str | None] = []
        workers = len(self._held)
        with self._lock:
            if self._exit_code is not None:
                raise MPISchedulerError("the MPI workers have exited")
            for given in job_list(jobs):
                if given.cpu_count > workers:
                    refuse(self, given, f"mpi refused the job: it needs {given.cpu_count} CPUs,"
                                        f" the allocation has {workers} workers")
                    ids.append(None)
                    continue
                self._count += 1
                job_id = f"{self.prefix}{self._count}"
                ids.append(job_id)
                spec = in_container(given, self.container_command)
                job = self._jobs[job_id] = _Job(spec, (-spec.priority, self._count),
                                                self.max_attempts)
                if spec.is_barrier:
                    self._end(job, ExitInfo(constants.FINISHED_REGULARLY, 0, 0, None))
                else:
                    heapq.heappush(self._queue, (job.key, job_id))
        self._wake()
        return ids

    def get_jobs_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        with self._lock:
            jobs = self._jobs
            return {job_id: jobs[job_id].status if job_id in jobs else constants.UNDETERMINED
                    for job_id in scheduler_job_ids}

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        """Called once per ended job: forgets it afterwards."""
        with self._lock:
            job = self._jobs.get(scheduler_job_id)
            if job is None or job.exit is None:
                return ExitInfo(constants.EXIT_UNDETERMINED, reason="unknown or unended job id")
            del self._jobs[scheduler_job_id]
            return job.exit

    def kill_job(self, scheduler_job_id: str) -> None:
        with self._lock:
            job = self._jobs.get(scheduler_job_id)
            if job is None or job.status in constants.ENDED_JOB_STATUS:
                return
            job.killed = True
            worker = job.worker
            if worker is None:  # still queued here
                self._queue.remove((job.key, scheduler_job_id))
                heapq.heapify(self._queue)
                self._end(job, ExitInfo(constants.USER_KILLED, None, None, None,
                                        reason="killed before it started"))
            else:
                self._outbox.append((worker, ("kill", scheduler_job_id)))
        self._wake()
        notify = self._notify
        if worker is None and notify is not None:
            notify([scheduler_job_id])

    def set_change_notifier(self, notify: ChangeNotifier) -> None:
        self._notify = notify

    def poll_interval(self) -> float:
        return 5.0  # every change is notified at once

    def close(self) -> None:
        self._notify = None

    def shutdown(self, code: int) -> None:
        """Make the workers exit with ``code`` (killing jobs left running); wait for them."""
        with self._lock:
            self._exit_code = code
        self._wake()
        self._thread.join()
        os.close(self._wake_read)
        os.close(self._wake_write)

    # --- the communication thread ----------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: the thread is awake anyway
            os.write(self._wake_write, b"\0")

    def _communicate(self) -> None:
        try:
            self._serve()
        except BaseException:
            log.exception("MPI communication failed: aborting the MPI job")
            self.comm.Abort(1)

    def _serve(self) -> None:
        from mpi4py import MPI

        status = MPI.Status()
        workers = self.comm.Get_size() - 1
        sending: list[Any] = []
        told, byes = False, 0  # workers told to exit, and how many said bye
        active = time.monotonic()  # when messages last came or went
        untold: list[str] = []  # changed jobs the engine was not told of yet
        untold_since = 0.0
        while not (told and byes == workers and not sending):
            with self._lock:
                if self._exit_code is None:
                    self._dispatch()
                outbox, self._outbox = self._outbox, []
                if not told and self._exit_code is not None:
                    outbox += [(rank, ("exit", self._exit_code)) for rank in range(1, workers + 1)]
                    told = True
                busy = len(self._queue) >= BUSY_QUEUE_PER_WORKER * workers
            sending += [self.comm.isend(message, dest=dest) for dest, message in outbox]
            received = []
            while self.comm.iprobe(source=MPI.ANY_SOURCE, status=status):
                source = status.Get_source()
                received.append((source, self.comm.recv(source=source)))
            sending = [request for request in sending if not request.Test()]
            now = time.monotonic()
            if received:
                if not untold:
                    untold_since = now
                byes += self._apply(received, untold)
            notify = self._notify
            if untold and (not busy or now - untold_since >= NOTIFY_BATCH_SECONDS):
                if notify is not None:
                    notify(untold)
                untold = []
            if outbox or received:
                active = now
                continue
            timeout = _delay(active)
            if untold:
                timeout = min(timeout, max(0.0, untold_since + NOTIFY_BATCH_SECONDS - now))
            if select.select([self._wake_read], [], [], timeout)[0]:
                os.read(self._wake_read, 4096)

    def _dispatch(self) -> None:
        """Hand queued jobs to idle workers, then a second one to each worker, to
        start as soon as its job ends; with the queue empty, call a second job back
        for an idle worker (lock held)."""
        for depth in range(2):
            for rank, held in self._held.items():
                if not self._queue:
                    break
                if len(held) == depth:
                    _, job_id = heapq.heappop(self._queue)
                    held.append(job_id)
                    job = self._jobs[job_id]
                    job.worker = rank
                    job.attempts += 1
                    self._outbox.append((rank, ("run", job_id, job.spec,
                                                self.enforce_memory)))
        if self._queue:
            return
        idle = sum(not held for held in self._held.values())
        for rank, held in self._held.items():
            if idle == 0:
                break
            if len(held) == 2 and held[1] not in self._recalled:
                self._recalled.add(held[1])
                self._outbox.append((rank, ("recall", held[1])))
                idle -= 1

    def _apply(self, received: list[tuple[int, tuple[Any, ...]]], changed: list[str]) -> int:
        """Apply the workers' messages, adding the jobs they change; how many said bye."""
        byes = 0
        with self._lock:
            for source, message in received:
                if message[0] == "bye":
                    byes += 1
                    continue
                job_id = message[1]
                job = self._jobs.get(job_id)
                if message[0] in ("end", "returned"):
                    self._held[source].remove(job_id)
                    self._recalled.discard(job_id)
                if job is None or job.status in constants.ENDED_JOB_STATUS:
                    continue
                changed.append(job_id)
                if message[0] == "start":
                    job.status = constants.RUNNING
                    continue
                if message[0] == "returned":  # called back before it started
                    job.attempts -= 1
                    job.worker = None
                    if job.killed:
                        self._end(job, ExitInfo(constants.USER_KILLED, None, None, None,
                                                reason="killed before it started"))
                    else:
                        heapq.heappush(self._queue, (job.key, job_id))
                    continue
                reason = message[3]
                if job.attempts > 1:
                    reason = "; ".join(filter(None, [
                        reason, f"run {job.attempts} of at most {job.max_attempts}"]))
                exit_status, exit_value, term_sig, usage = message[2]
                info = ExitInfo(exit_status, exit_value, term_sig, usage, reason)
                if (info.job_status == constants.DONE or job.killed
                        or job.attempts >= job.max_attempts or self._exit_code is not None):
                    self._end(job, info)
                else:  # run it again, ahead of jobs submitted after it
                    job.worker = None
                    job.status = constants.QUEUED_ACTIVE
                    heapq.heappush(self._queue, (job.key, job_id))
        return byes

    @staticmethod
    def _end(job: _Job, info: ExitInfo) -> None:
        job.status = info.job_status
        job.exit = info
        job.worker = None


class _AllocationGone(Scheduler):
    """What an engine outside mpirun sees of an MPI workflow whose allocation ended
    (killed, out of time): the jobs it ran ended with it, new ones cannot run. So
    that engine ends the workflow, and can stop or delete it, instead of failing.
    An id no MPI scheduler gave is undetermined, as everywhere."""

    def job_submission(self, jobs: EngineJob | list[EngineJob], signal_end: bool = True
                       ) -> list[str | None]:
        raise MPISchedulerError("no MPI workers here: run the workflow again under "
                                "`mpirun -n N jobbridge run FILE --scheduler mpi`")

    def get_job_status(self, scheduler_job_id: str) -> str:
        return constants.FAILED if _is_mpi_id(scheduler_job_id) else constants.UNDETERMINED

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        if not _is_mpi_id(scheduler_job_id):
            return ExitInfo(constants.EXIT_UNDETERMINED, reason="not a job id of an MPI scheduler")
        return ExitInfo(constants.FINISHED_UNCLEAR_CONDITIONS,
                        reason="its MPI allocation ended before the job did")

    def kill_job(self, scheduler_job_id: str) -> None:
        """Nothing left to kill."""

    @classmethod
    def build_scheduler(cls, config: Configuration) -> Scheduler:
        return cls()


def _is_mpi_id(scheduler_job_id: str) -> bool:
    """Whether an id has the shape MPIScheduler gives (``mpi.RANDOM.N``)."""
    prefix, _, number = scheduler_job_id.rpartition(".")
    return prefix.startswith("mpi.") and number.isdigit()


@dataclass(slots=True)
class _Running(RunningJob):
    job_id: str = ""
    told: bool = False  # its start, to rank 0


class _Worker:
    """A rank > 0: runs the jobs rank 0 hands it, one at a time, until told to exit."""

    def __init__(self, comm: Any) -> None:
        self.comm = comm
        for name in [name for name in os.environ if name.startswith(LAUNCHER_VARIABLES)]:
            del os.environ[name]  # read at MPI_Init only; a job's own MPI_Init needs them gone
        self.spawner = Spawner()
        self.memory: dict[str, MemoryLimiter] = {}  # by enforce_memory mode
        self.running: _Running | None = None
        #: to start once running has ended: (id, job, enforce_memory)
        self.waiting: list[tuple[str, EngineJob, str]] = []
        self.sending: list[Any] = []

    def serve(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)  # a job's end (SIGCHLD) wakes the loop at once
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._terminated)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is rank 0's to handle
        code: int | None = None
        active = time.monotonic()  # when messages last came or went
        while code is None or self.running is not None:
            busy = False
            while self.comm.iprobe(source=0):
                busy = True
                message = self.comm.recv(source=0)
                if message[0] == "exit":
                    code = message[1]
                    self.waiting.clear()
                    self._kill()
                else:
                    self._handle(message)
            busy |= self._reap()
            while self.running is None and self.waiting:
                self._start(*self.waiting.pop(0))
            self.sending = [request for request in self.sending if not request.Test()]
            timeout = self._timers()
            if self.running is None:  # a job may come at once; a running one's end
                timeout = min(timeout, _delay(active))  # wakes us (SIGCHLD)
            if busy:
                active = time.monotonic()
            elif select.select([wake_read], [], [], timeout)[0]:
                while True:
                    try:
                        os.read(wake_read, 4096)
                    except BlockingIOError:
                        break
        self._send(("bye",))
        for request in self.sending:
            request.Wait()
        return code

    def _send(self, message: tuple[Any, ...]) -> None:
        self.sending.append(self.comm.isend(message, dest=0))

    def _handle(self, message: tuple[Any, ...]) -> None:
        """``run`` a job (once the running one has ended), ``kill`` or ``recall`` one."""
        kind, job_id = message[0], message[1]
        if kind == "run":
            self.waiting.append((job_id, message[2], message[3]))
        elif self.running is not None and self.running.job_id == job_id:
            if kind == "kill":
                self._kill()
        elif any(waiting[0] == job_id for waiting in self.waiting):
            self.waiting = [item for item in self.waiting if item[0] != job_id]
            self._send(("returned", job_id) if kind == "recall" else (
                "end", job_id, (constants.USER_KILLED, None, None, None),
                "killed before it started"))

    def _start(self, job_id: str, job: EngineJob, enforce_memory: str) -> None:
        limiter = self.memory.get(enforce_memory)
        if limiter is None:
            limiter = self.memory[enforce_memory] = MemoryLimiter(
                enforce_memory, f"jobbridge-mpi-{os.getpid()}-{len(self.memory)}")
        memory = None
        try:
            memory = limiter.limit(job)
            pid, popen = self.spawner.spawn(job, None if memory is None else memory.preexec)
        except OSError as error:
            if memory is not None:
                memory.discard()
            reason = report_start_failure(job, error)
            self._send(("end", job_id, (constants.EXIT_ABORTED, None, None, None), reason))
            return
        self.running = _Running(job, pid, popen, time.monotonic(), memory, job_id=job_id)

    def _reap(self) -> bool:
        running = self.running
        if running is None:
            return False
        pid, status, rusage = os.wait4(running.pid, os.WNOHANG)
        if pid == 0:
            return False
        if running.popen is not None:
            running.popen.returncode = status  # tell Popen it was reaped
        info = running.exit_info(status, rusage, 1)
        self._send(("end", running.job_id, tuple(info), info.reason))
        self.running = None
        return True

    def _kill(self) -> None:
        running = self.running
        if running is not None:
            running.killed = True
            running.terminate()

    def _timers(self) -> float:
        """Tell the job's start once it has run START_TOLD_AFTER; end it at its walltime,
        SIGKILL it once killed for KILL_GRACE_SECONDS. Seconds until the next is due."""
        running = self.running
        if running is None:
            return MAX_DELAY
        now = time.monotonic()
        due = [MAX_DELAY]
        if not running.told:
            if now - running.started >= START_TOLD_AFTER:
                running.told = True
                self._send(("start", running.job_id))
            else:
                due.append(running.started + START_TOLD_AFTER - now)
        if (seconds := running.due(now)) is not None:
            due.append(seconds)
        return min(due)

    def _terminated(self, signum: int, _frame: FrameType | None) -> None:
        """mpirun is killing the MPI job (rank 0 died): take the running job along. Its
        process group first: Open MPI sends SIGKILL a few milliseconds after SIGTERM."""
        if self.running is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.running.pid, signal.SIGKILL)
            kill_tree(self.running.pid, signal.SIGKILL)
        os._exit(128 + signum)
