"""The local runner: a small detached process that runs a LocalScheduler's jobs.

Why a separate process: jobs must outlive an engine killed with SIGKILL, and a
restarted engine must still learn their true exit status. The runner is the
jobs' parent, so it reaps them with ``wait4`` (exact signal and rusage). It
tells its engine over a pipe (the engine wakes at once) and appends the same
events to a journal file that any later engine can read.

Protocol, one JSON object a line. Engine to runner: ``{"submit": id, "job":
{...}, "cpus": n}``, ``{"kill": id}``. Runner to engine and journal: ``{"start":
id, "pid": p, "tag": t}``, ``{"end": id, "exit": [...], "reason": r}``,
``{"dropped": id}``. Every event goes to the journal at once; the engine is
told of a start only once the job has run START_REPORT_DELAY, so a job that ends
sooner costs it one event, not two. When the engine's pipe closes, queued jobs
are dropped (never started, so a new engine submits them again) and the runner
exits once its running jobs have ended.
"""

from __future__ import annotations

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
from subprocess import Popen
from typing import Any

from .. import constants
from ..model import EngineJob
from .process import Spawner, exit_info_from_wait, kill_tree, report_start_failure

KILL_GRACE_SECONDS = 2.0
START_REPORT_DELAY = 0.01


@dataclass(order=True)
class _Queued:
    sort_key: tuple[int, int]
    job_id: str = field(compare=False)
    job: EngineJob = field(compare=False)
    cpus: int = field(compare=False)


@dataclass(slots=True)
class _Running:
    pid: int
    process: Popen[bytes] | None  # only for the rare jobs Popen starts (Spawner.spawn)
    cpus: int
    started: float
    tag: str | None
    killed: bool = False
    kill_deadline: float | None = None


class Runner:
    def __init__(self, journal_path: str, slots: int) -> None:
        self.slots = slots
        self.free = slots
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
            if not running.killed:
                running.killed = True
                running.kill_deadline = time.monotonic() + KILL_GRACE_SECONDS
                kill_tree(running.pid, signal.SIGTERM)
            return
        for index, queued in enumerate(self.queue):
            if queued.job_id == job_id:
                self.queue.pop(index)
                heapq.heapify(self.queue)
                self.emit({"end": job_id, "exit": [constants.EXIT_ABORTED, None, None, None],
                           "reason": "killed before it started"})
                return

    # --- job life -------------------------------------------------------------------
    def start_ready(self) -> None:
        while self.queue and self.queue[0].cpus <= self.free:
            item = heapq.heappop(self.queue)
            try:
                pid, process = self.spawner.spawn(item.job)
            except OSError as error:
                reason = report_start_failure(item.job, error)
                self.emit({"end": item.job_id, "exit": [constants.EXIT_ABORTED, None, None, None],
                           "reason": reason})
                continue
            running = _Running(pid, process, item.cpus, time.monotonic(),
                               item.job.submission_tag)
            self.running[pid] = (item.job_id, running)
            self.by_id[item.job_id] = running
            self.free -= item.cpus
            # the hot path: json.dumps of the same dict, written by hand
            line = (f'{{"start":{encode_basestring_ascii(item.job_id)},"pid":{pid},'
                    f'"tag":{_string(running.tag)}}}\n')
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
            if running.process is not None:
                running.process.returncode = status  # tell Popen it was reaped
            self.free += running.cpus
            info = exit_info_from_wait(status, rusage, time.monotonic() - running.started,
                                       running.cpus, running.killed)
            self.untold.pop(job_id, None)  # ended first: the engine learns both at once
            if info.reason is None and info.resource_usage is not None:
                # the hot path: json.dumps of the same dict, written by hand
                exit_value = "null" if info.exit_value is None else int(info.exit_value)
                term_sig = "null" if info.term_sig is None else int(info.term_sig)
                self.out.append(
                    f'{{"end":{encode_basestring_ascii(job_id)},"exit":['
                    f'{encode_basestring_ascii(info.exit_status)},{exit_value},{term_sig},'
                    f'{encode_basestring_ascii(info.resource_usage)}],"reason":null}}\n')
            else:
                self.emit({"end": job_id, "exit": list(info), "reason": info.reason})

    def enforce_kills(self) -> float | None:
        """SIGKILL jobs that outlived their grace period; the next deadline."""
        now = time.monotonic()
        deadline = None
        for running in self.by_id.values():
            if running.kill_deadline is None:
                continue
            if running.kill_deadline <= now:
                kill_tree(running.pid, signal.SIGKILL)
                running.kill_deadline = None
            elif deadline is None or running.kill_deadline < deadline:
                deadline = running.kill_deadline
        return None if deadline is None else max(0.0, deadline - now)

    def engine_gone(self) -> None:
        """Drop queued jobs: they never started, so a new engine resubmits them."""
        self.engine_alive = False
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
    runner = Runner(journal_path, slots)
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ, "engine")
    selector.register(wake_read, selectors.EVENT_READ, "signal")
    pending = b""
    while runner.engine_alive or runner.running:
        timeouts = [t for t in (runner.enforce_kills(), runner.next_start_report())
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
