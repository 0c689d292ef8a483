"""The local runner: a small detached process that runs a LocalScheduler's jobs.

Why a separate process: jobs must outlive an engine killed with SIGKILL, and a
restarted engine must still learn their true exit status. The runner is the
jobs' parent, so it reaps them with ``wait4`` (exact signal and rusage). It
tells its engine over a pipe (the engine wakes at once) and appends the same
events to a journal file that any later engine can read.

Protocol, one JSON object a line. Engine to runner: ``{"submit": id, "job":
{...}, "cpus": n}``, ``{"kill": id}``. Runner to engine and journal: ``{"start":
id, "pid": p, "tag": t}``, ``{"end": id, "exit": [...], "reason": r, "started":
t0, "ended": t1}`` (POSIX times; ``started`` null for a job that never started),
``{"dropped": id}``. Every event goes to the journal at once; the engine is
told of a start only once the job has run START_REPORT_DELAY, so a job that ends
sooner costs it one event, not two. When the engine's pipe closes, queued jobs
are dropped (never started, so a new engine submits them again) and the runner
exits once its running jobs have ended.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import heapq
import json
import os
import selectors
import signal
import sys
import time
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from .. import constants
from ..model import EngineJob
from .memory_limits import MemoryLimiter
from .process import RunningJob, Spawner, report_start_failure

START_REPORT_DELAY = 0.01
#: Seconds between two tries at slots that other runners of the resource hold.
SLOT_RETRY_SECONDS = 0.05


@dataclass(order=True)
class _Queued:
    sort_key: tuple[int, int]
    job_id: str = field(compare=False)
    job: EngineJob = field(compare=False)
    cpus: int = field(compare=False)


@dataclass(slots=True)
class _Running(RunningJob):
    cpus: int = 1
    slots: list[int] = field(default_factory=list)


class SlotPool:
    """A resource's CPU slots, shared by every runner of the home (two engines running
    workflows on one resource at once): slot i is byte i of one file, locked (POSIX
    record lock) while a job uses it. The kernel releases the locks of a runner that
    dies; runners with fewer slots configured use the first ones only."""

    def __init__(self, path: str, size: int) -> None:
        self.size = size
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.mine: set[int] = set()
        self.shared = True  # False where the file system has no locks: own slots only

    def free(self) -> int:
        """Slots this runner does not use (others may use some)."""
        return self.size - len(self.mine)

    def take(self, count: int) -> list[int] | None:
        """``count`` slots, now held by this runner; None when fewer are free."""
        taken: list[int] = []
        for index in range(self.size):
            if len(taken) == count:
                break
            if index in self.mine:
                continue
            if self.shared:
                try:
                    fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, index)
                except OSError as error:
                    if error.errno in (errno.EACCES, errno.EAGAIN):
                        continue  # another runner's
                    self.shared = False
            taken.append(index)
        if len(taken) < count:
            self._unlock(taken)
            return None
        self.mine.update(taken)
        return taken

    def give_back(self, slots: list[int]) -> None:
        self.mine.difference_update(slots)
        self._unlock(slots)

    def _unlock(self, slots: list[int]) -> None:
        if self.shared:
            for index in slots:
                with contextlib.suppress(OSError):
                    fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, index)


class Runner:
    def __init__(self, journal_path: str, slots: int, enforce_memory: str, pool_path: str
                 ) -> None:
        self.slots = slots
        self.pool = SlotPool(pool_path, slots)
        self.blocked = False  # the next job waits for slots other runners hold
        self.queue: list[_Queued] = []
        self.running: dict[int, tuple[str, _Running]] = {}  # pid -> (id, job)
        self.by_id: dict[str, _Running] = {}
        # started, start not told to the engine yet (oldest first): its line
        self.untold: dict[str, tuple[_Running, str]] = {}
        self.sequence = 0
        self.out: list[str] = []  # events for the journal and the engine
        self.journal_only: list[str] = []
        self.engine_only: list[str] = []
        self.engine_alive = True
        self.journal = os.open(journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.spawner = Spawner()
        self.memory = MemoryLimiter(enforce_memory, f"jobbridge-{Path(journal_path).stem}")

    # --- requests from the engine -----------------------------------------------------
    def handle(self, message: dict[str, Any]) -> None:
        if "submit" in message:
            job = EngineJob(**message["job"])
            cpus = max(1, min(int(message.get("cpus", 1)), self.slots))
            self.sequence += 1
            heapq.heappush(self.queue, _Queued((-job.priority, self.sequence),
                                               message["submit"], job, cpus))
        elif "kill" in message:
            self.kill(message["kill"])

    def kill(self, job_id: str) -> None:
        running = self.by_id.get(job_id)
        if running is not None:
            running.killed = True
            running.terminate()
            return
        for index, queued in enumerate(self.queue):
            if queued.job_id == job_id:
                self.queue.pop(index)
                heapq.heapify(self.queue)
                self.emit({"end": job_id, "exit": [constants.EXIT_ABORTED, None, None, None],
                           "reason": "killed before it started", "started": None,
                           "ended": time.time()})
                return

    # --- job life -------------------------------------------------------------------
    def start_ready(self) -> None:
        self.blocked = False
        while self.queue and self.queue[0].cpus <= self.pool.free():
            slots = self.pool.take(self.queue[0].cpus)
            if slots is None:  # other runners of the resource use them: try again soon
                self.blocked = True
                return
            item = heapq.heappop(self.queue)
            memory = None
            try:
                memory = self.memory.limit(item.job)
                pid, process = self.spawner.spawn(
                    item.job, None if memory is None else memory.preexec)
            except OSError as error:
                if memory is not None:
                    memory.discard()
                self.pool.give_back(slots)
                reason = report_start_failure(item.job, error)
                self.emit({"end": item.job_id, "exit": [constants.EXIT_ABORTED, None, None, None],
                           "reason": reason, "started": None, "ended": time.time()})
                continue
            running = _Running(item.job, pid, process, time.monotonic(), memory,
                               cpus=item.cpus, slots=slots)
            self.running[pid] = (item.job_id, running)
            self.by_id[item.job_id] = running
            # the hot path: json.dumps of the same dict, written by hand
            line = (f'{{"start":{encode_basestring_ascii(item.job_id)},"pid":{pid},'
                    f'"tag":{_string(item.job.submission_tag)}}}\n')
            self.journal_only.append(line)
            self.untold[item.job_id] = (running, line)

    def next_start_report(self) -> float | None:
        """Seconds until the oldest start not told yet is due."""
        for running, _ in self.untold.values():
            return max(0.0, running.started + START_REPORT_DELAY - time.monotonic())
        return None

    def report_starts(self) -> None:
        """Tell the engine the starts of jobs running for START_REPORT_DELAY."""
        due = time.monotonic() - START_REPORT_DELAY
        while self.untold:
            job_id, (running, line) = next(iter(self.untold.items()))
            if running.started > due:
                return
            del self.untold[job_id]
            self.engine_only.append(line)

    def reap(self) -> None:
        while self.running:
            try:
                pid, status, rusage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.running.pop(pid, None)
            if entry is None:
                continue
            job_id, running = entry
            del self.by_id[job_id]
            if running.popen is not None:
                running.popen.returncode = status  # tell Popen it was reaped
            self.pool.give_back(running.slots)
            info = running.exit_info(status, rusage, running.cpus)
            self.untold.pop(job_id, None)  # ended first: the engine learns both at once
            ended = time.time()
            if info.reason is None and info.resource_usage is not None:
                # the hot path: json.dumps of the same dict, written by hand
                exit_value = "null" if info.exit_value is None else int(info.exit_value)
                term_sig = "null" if info.term_sig is None else int(info.term_sig)
                self.out.append(
                    f'{{"end":{encode_basestring_ascii(job_id)},"exit":['
                    f'{encode_basestring_ascii(info.exit_status)},{exit_value},{term_sig},'
                    f'{encode_basestring_ascii(info.resource_usage)}],"reason":null,'
                    f'"started":{running.began!r},"ended":{ended!r}}}\n')
            else:
                self.emit({"end": job_id, "exit": list(info), "reason": info.reason,
                           "started": running.began, "ended": ended})

    def enforce_limits(self) -> float | None:
        """End jobs over their walltime, SIGKILL killed jobs that outlived their grace;
        seconds until the next of these (or a retry at slots others hold) is due."""
        now = time.monotonic()
        due = [SLOT_RETRY_SECONDS] if self.blocked else []
        for running in self.by_id.values():
            if (seconds := running.due(now)) is not None:
                due.append(seconds)
        return min(due, default=None)

    def engine_gone(self) -> None:
        """Drop queued jobs: they never started, so a new engine resubmits them."""
        self.engine_alive = False
        self.blocked = False
        for queued in self.queue:
            self.emit({"dropped": queued.job_id})
        self.queue.clear()

    # --- output ---------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        self.out.append(_encode(event) + "\n")

    def flush(self) -> None:
        """Journal first: it must hold every event the engine may act on."""
        if self.journal_only or self.out:
            os.write(self.journal, "".join(self.journal_only + self.out).encode())
            self.journal_only.clear()
        if not (self.engine_only or self.out):
            return
        data = "".join(self.engine_only + self.out).encode()
        self.engine_only.clear()
        self.out.clear()
        if self.engine_alive:
            try:
                _write_all(sys.stdout.fileno(), data)
            except OSError:  # the engine died: the journal has it all
                self.engine_gone()
                self.flush()


_encode = json.JSONEncoder(separators=(",", ":")).encode


def _string(text: str | None) -> str:
    return "null" if text is None else encode_basestring_ascii(text)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def main(argv: list[str]) -> int:
    """``JOURNAL LOCK SLOTS ENFORCE_MEMORY SLOT_POOL``."""
    journal_path, lock_path, slots = argv[0], argv[1], int(argv[2])
    lock = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held for life: readers know we are alive
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on the engine must not kill jobs
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    runner = Runner(journal_path, slots, argv[3], argv[4])
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ, "engine")
    selector.register(wake_read, selectors.EVENT_READ, "signal")
    pending = b""
    while runner.engine_alive or runner.running:
        timeouts = [t for t in (runner.enforce_limits(), runner.next_start_report())
                    if t is not None]
        for key, _ in selector.select(min(timeouts, default=None)):
            if key.data == "signal":
                try:
                    while os.read(wake_read, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            try:
                chunk = os.read(stdin, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                selector.unregister(stdin)
                runner.engine_gone()
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if any(lines):  # one call decodes them all
                for message in json.loads(b"[" + b",".join(filter(None, lines)) + b"]"):
                    runner.handle(message)
        runner.reap()
        if runner.engine_alive:
            runner.start_ready()
        runner.report_starts()
        runner.flush()
    runner.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
