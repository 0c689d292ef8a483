"""What keeps a batch scheduler light on its batch system: a command budget and a
watcher of the job wrappers' start and exit files.

Why: a site limits each user's RPC rate to its controller (Slurm's ``rl_*``),
and polling ``squeue``/``sacct`` often enough to react in a second floods it.
The wrapper of each job writes a start file and an exit file in the job's
folder; watching that folder (inotify where the file system reports changes,
else a directory scan) tells ends within a fraction of a second at no cost to
the batch system, which is then asked only every ``scheduler_interval``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import select
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Commands a budget lets through at once after an idle while (Slurm's own
#: ``rl_bucket_size`` default is 30).
BURST = 30
#: Tokens a submission leaves in the budget: a status query (squeue, then sacct)
#: or a cancel is never starved by a large workflow trickling in.
RESERVE = 2
#: Seconds between two scans of the job folders when nothing reports changes.
SCAN_INTERVAL = 0.5
#: Seconds between two full scans when inotify reports changes (a backstop: a
#: network file system does not report other hosts' writes).
BACKSTOP_INTERVAL = 5.0
#: Seconds the events of busy wrappers gather after a report before the next one:
#: thousands of ends a minute then cost a report (and an engine cycle, a commit)
#: every 20 ms, not one each; a lone end is reported at once.
GATHER_INTERVAL = 0.02
START_FILE = "start.json"
EXIT_FILE = "exit.json"


class TokenBucket:
    """At most ``rate`` commands a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int = BURST) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Wait for a token; return the seconds waited."""
        if self.rate <= 0:
            return 0.0
        with self._lock:  # callers queue up in order; each waits its turn
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            if wait:
                time.sleep(wait)
                self._tokens, self._stamp = 1.0, time.monotonic()
            self._tokens -= 1
            return wait

    def available(self) -> float | None:
        """Commands that can run now without waiting (None: no limit); 0 while a
        caller waits for its token (it is queued before whoever asks)."""
        if self.rate <= 0:
            return None
        if not self._lock.acquire(blocking=False):
            return 0.0
        try:
            return min(self.burst, self._tokens + (time.monotonic() - self._stamp) * self.rate)
        finally:
            self._lock.release()


_buckets: dict[tuple[str, str], TokenBucket] = {}
_buckets_lock = threading.Lock()


def shared_bucket(key: tuple[str, str], rate: float) -> TokenBucket:
    """The one budget of a batch system in this process (keyed by backend and state
    folder: one engine's); the slowest rate asked for wins."""
    with _buckets_lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = _buckets[key] = TokenBucket(rate)
        elif 0 < rate < bucket.rate or bucket.rate <= 0 < rate:
            bucket.rate = rate
        return bucket


def backoff_delays(first: float = 0.5, cap: float = 10.0) -> Any:
    """Exponential delays with jitter (0.5x-1.5x): retries of many clients spread out."""
    delay = first
    while True:
        yield delay * random.uniform(0.5, 1.5)
        delay = min(delay * 2, cap)


def files_level(folder: str | os.PathLike[str], known: int = 0) -> int:
    """0: the wrapper has not started; 1: started; 2: ended (its exit file exists).

    ``known``: the level already seen. The files only appear (a job's folder is
    new at each submission), so a started job needs its exit file alone looked
    at, and an ended one nothing: a scan of 10,000 followed jobs costs one or two
    ``access`` calls each, not pathlib's objects and exceptions."""
    if known >= 2:
        return 2
    base = os.fspath(folder)
    if os.access(f"{base}/{EXIT_FILE}", os.F_OK):
        return 2
    if known == 1:
        return 1
    return 1 if os.access(f"{base}/{START_FILE}", os.F_OK) else 0


def _inotify() -> Any:
    try:
        import inotify_simple  # optional: pip install 'jobbridge[inotify]'
    except ImportError:
        return None
    try:
        return inotify_simple.INotify()
    except OSError as error:
        log.info("inotify unavailable (%s): scanning job folders", error)
        return None


class FolderWatcher(threading.Thread):
    """Wakes its scheduler when a job's wrapper starts or ends, and when the next
    batch-system poll is due; ends by itself once no job is followed.

    ``folders()`` gives the followed jobs (id -> folder), read at the start and at
    each backstop; ``fresh()``, when given, the jobs followed since it was last
    called (or since ``folders()``), read at each :meth:`wake`: a submission of
    500 jobs then costs 500, not the jobs in flight (without it, a wake reads
    ``folders()``). ``tick()`` returns ids to report when a poll is due (else
    empty); ``report(ids)`` wakes the engine.
    """

    def __init__(self, name: str, folders: Callable[[], Mapping[str, Path]],
                 tick: Callable[[], list[str]], report: Callable[[list[str]], None],
                 done: Callable[[], bool],
                 fresh: Callable[[], Mapping[str, Path]] | None = None) -> None:
        super().__init__(name=f"jobbridge-{name}-watcher", daemon=True)
        self._name = name
        self._folders, self._tick, self._report, self._done = folders, tick, report, done
        self._fresh = fresh
        self._levels: dict[str, int] = {}
        self._watched_at: dict[str, float] = {}
        self.stopping = threading.Event()
        self.inotify_trusted = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._pipe_lock = threading.Lock()
        self._pipe_open = True

    def wake(self) -> None:
        """Look again now (a job was added, or :attr:`stopping` set)."""
        with self._pipe_lock, contextlib.suppress(OSError):  # full: a wake is pending
            if self._pipe_open:
                os.write(self._wake_write, b"x")

    def stop(self) -> None:
        self.stopping.set()
        self.wake()

    def run(self) -> None:
        """Each wake costs what changed, not what is followed: new jobs come from
        ``fresh()``, all of them are read again only at each backstop; an inotify
        event names the folder and the file written, which tells the wrapper's
        level without looking (10,000 jobs in flight would otherwise cost O(jobs)
        per event). Only the backstop's scan, every BACKSTOP_INTERVAL, looks at
        every followed folder: it tells whether inotify misses writes (a network
        file system, which does not report other hosts' writes)."""
        notifier = _inotify()
        self.inotify_trusted = notifier is not None
        watches: dict[int, str] = {}  # watch descriptor -> job id
        wds: dict[str, int] = {}  # job id -> watch descriptor
        folders: dict[str, str] = {}
        added: set[str] = set()
        last_full = last_report = -math.inf
        woken = False
        try:
            while not self.stopping.is_set() and not self._done():
                backstop = time.monotonic() - last_full >= BACKSTOP_INTERVAL
                if backstop:  # a full scan of what is followed now, after the wait
                    last_full = time.monotonic()
                new: set[str] = set()
                if backstop or (woken and self._fresh is None):
                    latest = {job_id: os.fspath(folder)
                              for job_id, folder in self._folders().items()}
                    new = latest.keys() - folders.keys()
                    folders = latest
                    for job_id in self._levels.keys() - folders.keys():
                        del self._levels[job_id]
                elif woken and self._fresh is not None:
                    taken = self._fresh()
                    new = taken.keys() - folders.keys()
                    folders.update((job_id, os.fspath(taken[job_id])) for job_id in new)
                woken = False
                if notifier is not None and (new or backstop):
                    self._watch(notifier, watches, wds, folders, new, prune=backstop)
                added |= new
                timeout = (BACKSTOP_INTERVAL if notifier is not None and self.inotify_trusted
                           else SCAN_INTERVAL)
                ready = select.select([self._wake_read, *([notifier] if notifier else [])],
                                      [], [], 0 if added else timeout)[0]
                if self._wake_read in ready:
                    os.read(self._wake_read, 4096)
                    woken = True
                overflow = False
                changed: list[str] = []
                if notifier is not None and notifier in ready:
                    gathered = time.monotonic() - last_report
                    if gathered < GATHER_INTERVAL:
                        time.sleep(GATHER_INTERVAL - gathered)
                    overflow, hinted = _read_events(notifier, watches)
                    changed = self._apply(hinted, folders)
                full = notifier is None or not self.inotify_trusted or overflow or backstop
                # after an overflow a file's lost event is no sign of a network file system
                changed += self._scan(folders, None if full else added,
                                      notifier is not None and not overflow)
                added = set()
                due = self._tick()
                if changed or due:
                    last_report = time.monotonic()
                    self._report(sorted(set(changed) | set(due)))
        finally:
            if notifier is not None:
                notifier.close()
            with self._pipe_lock:
                self._pipe_open = False
                os.close(self._wake_read)
                os.close(self._wake_write)

    def _watch(self, notifier: Any, watches: dict[int, str], wds: dict[str, int],
               folders: Mapping[str, str], new: set[str], prune: bool) -> None:
        """Watch the ``new`` folders; ``prune``: also drop the watches of jobs no
        longer followed and retry the folders not watched yet."""
        import inotify_simple

        if prune:
            for job_id in wds.keys() - folders.keys():
                wd = wds.pop(job_id)
                watches.pop(wd, None)
                self._watched_at.pop(job_id, None)
                with contextlib.suppress(OSError):  # a folder gone: its watch went too
                    notifier.rm_watch(wd)
            new = folders.keys() - wds.keys()
        mask = inotify_simple.flags.MOVED_TO | inotify_simple.flags.CLOSE_WRITE
        for job_id in new:
            try:
                wd = notifier.add_watch(folders[job_id], mask)
            except OSError:  # no such folder (yet), or no watches left: scans cover it
                continue
            watches[wd] = job_id
            wds[job_id] = wd
            self._watched_at[job_id] = time.time()

    def _apply(self, hinted: Mapping[str, int], folders: Mapping[str, str]) -> list[str]:
        """Ids whose wrapper started or ended by the events' word (files only
        appear: the event's file name is its level)."""
        changed = []
        for job_id, level in hinted.items():
            if job_id in folders and level > self._levels.get(job_id, 0):
                self._levels[job_id] = level
                changed.append(job_id)
        return changed

    def _scan(self, folders: Mapping[str, str], only: set[str] | None, watched: bool
              ) -> list[str]:
        """Ids whose wrapper started or ended since the last look, found by looking
        (``only`` these, else all); ``watched``: inotify should have reported it."""
        changed = []
        for job_id in folders if only is None else only:
            folder = folders.get(job_id)
            known = self._levels.get(job_id, 0)
            if folder is None or known >= 2:
                continue
            level = files_level(folder, known)
            if level > known:
                self._levels[job_id] = level
                changed.append(job_id)
                if watched and self.inotify_trusted and self._unreported(job_id, folder):
                    self.inotify_trusted = False
                    log.info("%s: inotify did not report a wrapper's file in %s (a network "
                             "file system?): scanning job folders every %g s",
                             self._name, os.path.dirname(folder), SCAN_INTERVAL)
        return changed

    def _unreported(self, job_id: str, folder: str) -> bool:
        """Whether a file inotify should have reported a while ago was written after
        its folder was watched (not one written before, nor one of an instant ago)."""
        since = self._watched_at.get(job_id)
        times = []
        for name in (START_FILE, EXIT_FILE):
            with contextlib.suppress(OSError):
                times.append(os.stat(f"{folder}/{name}").st_mtime)
        return since is not None and bool(times) and since < max(times) < time.time() - 1.0


#: The wrapper's files by the level their writing means (batchwatch.files_level).
_LEVELS = {START_FILE: 1, EXIT_FILE: 2}


def _read_events(notifier: Any, watches: Mapping[int, str]) -> tuple[bool, dict[str, int]]:
    """The pending inotify events: whether the kernel's queue overflowed (events
    were lost: a full scan is due), and each job's level by the files written (a
    temporary file's write, before its rename, tells nothing)."""
    import inotify_simple

    overflow = False
    hinted: dict[str, int] = {}
    for event in notifier.read(timeout=0):
        if event.mask & inotify_simple.flags.Q_OVERFLOW:
            overflow = True
            continue
        level = _LEVELS.get(event.name)
        job_id = watches.get(event.wd)
        if level is not None and job_id is not None and level > hinted.get(job_id, 0):
            hinted[job_id] = level
    return overflow, hinted
