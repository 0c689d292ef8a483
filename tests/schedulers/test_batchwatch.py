"""The folder watcher of the batch schedulers: every wrapper's start and end is
reported, and an event costs what changed, not every job followed (10,000 jobs
in flight read again at each of their 20,000 events made the engine's CPU grow
with the square of the jobs)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from jobbridge.schedulers import batchwatch
from jobbridge.schedulers.batchwatch import EXIT_FILE, START_FILE, FolderWatcher


def test_each_end_is_reported_without_reading_every_job_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folders = {f"job{index}": tmp_path / f"job{index}" for index in range(2000)}
    for folder in folders.values():
        folder.mkdir()
    reads: list[float] = []
    reported: set[str] = set()
    lock = threading.Lock()

    def followed() -> dict[str, Path]:
        reads.append(time.monotonic())
        return folders

    def report(ids: list[str]) -> None:
        with lock:
            reported.update(ids)

    looks: Counter[str] = Counter()  # folders looked at (files_level), by name
    files_level = batchwatch.files_level

    def counted(folder: str, *known: int) -> int:
        looks[os.path.basename(folder)] += 1
        return files_level(folder, *known)

    monkeypatch.setattr(batchwatch, "files_level", counted)
    watcher = FolderWatcher("test", followed, list, report, lambda: False)
    watcher.start()
    try:
        time.sleep(0.5)  # watching
        ended = [f"job{index}" for index in range(0, 2000, 20)]
        for job_id in ended:
            for name in (START_FILE, EXIT_FILE):
                path = folders[job_id] / name
                path.with_suffix(".tmp").write_text("{}")
                os.replace(path.with_suffix(".tmp"), path)
            time.sleep(0.005)
        deadline = time.monotonic() + 30
        while not reported >= set(ended) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reported == set(ended)
        assert watcher.inotify_trusted
        # read at the start and at each 5 s backstop, not at each of the 200 events
        assert len(reads) <= 2 + (reads[-1] - reads[0]) / 4
        # an event's file name tells the level: the folder is looked at only by the
        # scans of all (the first, the backstops), once each, never for its events
        assert max(looks[job_id] for job_id in ended) <= len(reads), looks
    finally:
        watcher.stop()
        watcher.join(10)
