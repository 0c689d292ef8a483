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


def files_level(folder: Path) -> int:
    """0: the wrapper has not started; 1: started; 2: ended (its exit file exists)."""
    if (folder / EXIT_FILE).exists():
        return 2
    return 1 if (folder / START_FILE).exists() else 0


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

    ``folders()`` gives the followed jobs (id -> folder); ``tick()`` returns ids to
    report when a poll is due (else empty); ``report(ids)`` wakes the engine.
    """

    def __init__(self, name: str, folders: Callable[[], Mapping[str, Path]],
                 tick: Callable[[], list[str]], report: Callable[[list[str]], None],
                 done: Callable[[], bool]) -> None:
        super().__init__(name=f"jobbridge-{name}-watcher", daemon=True)
        self._name = name
        self._folders, self._tick, self._report, self._done = folders, tick, report, done
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
        """Each wake costs what changed, not what is followed: the followed jobs are
        read again only when the scheduler says they changed (:meth:`wake`) and at
        each backstop, and an inotify event's folder alone is looked at (10,000 jobs
        in flight would otherwise cost O(jobs) per event)."""
        notifier = _inotify()
        self.inotify_trusted = notifier is not None
        watches: dict[int, str] = {}
        folders: dict[str, Path] = {}
        added: set[str] = set()
        last_full = 0.0
        reread = True
        try:
            while not self.stopping.is_set() and not self._done():
                if reread or time.monotonic() - last_full >= BACKSTOP_INTERVAL:
                    reread = False
                    latest = dict(self._folders())
                    added |= latest.keys() - folders.keys()
                    folders = latest
                    for job_id in self._levels.keys() - folders.keys():
                        del self._levels[job_id]
                    if notifier is not None:
                        self._watch(notifier, watches, folders)
                hinted: set[str] | None = None
                timeout = (BACKSTOP_INTERVAL if notifier is not None and self.inotify_trusted
                           else SCAN_INTERVAL)
                ready = select.select([self._wake_read, *([notifier] if notifier else [])],
                                      [], [], 0 if added else timeout)[0]
                if self._wake_read in ready:
                    os.read(self._wake_read, 4096)
                    reread = True
                if notifier is not None:
                    events = notifier.read(timeout=0) if notifier in ready else []
                    hinted = {watches[e.wd] for e in events if e.wd in watches}
                now = time.monotonic()
                full = (hinted is None or not self.inotify_trusted
                        or now - last_full >= BACKSTOP_INTERVAL)
                if full:
                    last_full = now
                only = None if full or hinted is None else hinted | added
                changed = self._scan(folders, only, hinted)
                added = set()
                due = self._tick()
                if changed or due:
                    self._report(sorted(set(changed) | set(due)))
        finally:
            if notifier is not None:
                notifier.close()
            with self._pipe_lock:
                self._pipe_open = False
                os.close(self._wake_read)
                os.close(self._wake_write)

    def _watch(self, notifier: Any, watches: dict[int, str], folders: Mapping[str, Path]
               ) -> None:
        import inotify_simple

        known = set(watches.values())
        for job_id in self._watched_at.keys() - folders.keys():
            del self._watched_at[job_id]
        for wd, job_id in list(watches.items()):
            if job_id not in folders:
                del watches[wd]
                with contextlib.suppress(OSError):  # a folder gone: its watch went too
                    notifier.rm_watch(wd)
        mask = inotify_simple.flags.MOVED_TO | inotify_simple.flags.CLOSE_WRITE
        for job_id, folder in folders.items():
            if job_id in known:
                continue
            try:
                watches[notifier.add_watch(str(folder), mask)] = job_id
                self._watched_at[job_id] = time.time()
            except OSError:  # no such folder (yet), or no watches left: scans cover it
                continue

    def _scan(self, folders: Mapping[str, Path], only: set[str] | None,
              hinted: set[str] | None) -> list[str]:
        """Ids whose wrapper started or ended since the last scan."""
        changed = []
        for job_id in folders if only is None else only:
            folder = folders.get(job_id)
            if folder is None:
                continue
            level = files_level(folder)
            if level > self._levels.get(job_id, 0):
                self._levels[job_id] = level
                changed.append(job_id)
                if (hinted is not None and job_id not in hinted and self.inotify_trusted
                        and self._unreported(job_id, folder)):
                    self.inotify_trusted = False
                    log.info("%s: inotify did not report a wrapper's file in %s (a network "
                             "file system?): scanning job folders every %g s",
                             self._name, os.path.dirname(folder), SCAN_INTERVAL)
        return changed

    def _unreported(self, job_id: str, folder: Path) -> bool:
        """Whether a file inotify should have reported a while ago was written after
        its folder was watched (not one written before, nor one of an instant ago)."""
        since = self._watched_at.get(job_id)
        try:
            written = max(p.stat().st_mtime for p in (folder / START_FILE, folder / EXIT_FILE)
                          if p.exists())
        except (OSError, ValueError):
            return False
        return since is not None and since < written < time.time() - 1.0
