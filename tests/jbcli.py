"""Helpers for tests that drive the real ``jobbridge`` command line in subprocesses."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

#: How the tests start the command line: the interpreter of the test run, like a user's venv.
JOBBRIDGE = [sys.executable, "-m", "jobbridge"]


def jb(*args: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``jobbridge ARGS`` to its end (the test's JOBBRIDGE_HOME unless ``env`` says)."""
    return subprocess.run([*JOBBRIDGE, *args], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env}, cwd=cwd)


def jb_start(*args: str, env: Mapping[str, str] | None = None,
             cwd: str | Path | None = None) -> subprocess.Popen[str]:
    """Start ``jobbridge ARGS`` without waiting (use :func:`finish`)."""
    return subprocess.Popen([*JOBBRIDGE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=None if env is None else {**os.environ, **env},
                            cwd=cwd)


def finish(process: subprocess.Popen[str], timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def error_line(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """Assert the command failed with ``status`` and exactly one stderr line; that line."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr
    assert "\r" not in result.stderr, result.stderr
    line = result.stderr.rstrip("\n")
    assert line.startswith("jobbridge: "), line
    return line


def listed(env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """``jobbridge list --json``."""
    result = jb("list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    value = json.loads(result.stdout)
    assert isinstance(value, list)
    return value


def status_json(workflow_id: str | None = None, env: Mapping[str, str] | None = None
                ) -> dict[str, Any]:
    """``jobbridge status [WF] --json`` (which exits 1 iff a job failed)."""
    result = jb("status", *([workflow_id] if workflow_id else []), "--json", env=env)
    assert result.returncode in (0, 1), result.stderr
    value = json.loads(result.stdout)
    assert isinstance(value, dict)
    failed = any(job["status"] == "failed" for job in value["jobs"])
    assert result.returncode == int(failed), (result.returncode, value)
    return value


def write_json(path: Path, value: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def wait_for(condition: Callable[[], bool], timeout: float = 20, what: str = "condition"
             ) -> None:
    """Poll ``condition`` every 50 ms until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def job(job_id: str, script: str, **extra: Any) -> dict[str, Any]:
    """A job running ``sh -c SCRIPT``."""
    return {"id": job_id, "command": ["sh", "-c", script], **extra}


def group_to_group(firsts: list[dict[str, Any]], seconds: list[dict[str, Any]]
                   ) -> dict[str, Any]:
    """A workflow whose group ``second`` (the jobs ``seconds``) waits for the whole
    group ``first`` (``firsts``): one dependency between two groups."""
    return {"jobs": firsts + seconds,
            "groups": [{"name": "first", "elements": [j["id"] for j in firsts]},
                       {"name": "second", "elements": [j["id"] for j in seconds]}],
            "dependencies": [["first", "second"]]}


def stored_rows(home: Path) -> tuple[int, int, int]:
    """(workflows, jobs, dependencies) rows in the home's database, read directly."""
    path = home / "jobbridge.db"
    if not path.exists():
        return (0, 0, 0)
    with closing(sqlite3.connect(path)) as db:
        workflows, jobs, dependencies = (
            int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("workflows", "jobs", "dependencies"))
    return workflows, jobs, dependencies


def engine_pids(home: Path) -> list[int]:
    """Live engines of this home: their lock files are named host-PID-token."""
    pids = []
    for lock in (home / "engines").glob("*.lock"):
        pid = int(lock.stem.split("-")[-2])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"jobbridge" in cmdline:
            pids.append(pid)
    return pids


def kill_engines(home: Path) -> int:
    """SIGKILL every engine of this home; how many there were."""
    pids = engine_pids(home)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return len(pids)


#: ``python MEMORY_HOG N MB SECONDS``: N processes (this one and N-1 forked) each
#: touch MB megabytes and hold them SECONDS; exit 0 iff all of them could.
MEMORY_HOG = """import os, sys, time
count, size, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
children = []
for _ in range(count - 1):
    pid = os.fork()
    if pid == 0:
        children = None  # this is a child
        break
    children.append(pid)
block = bytearray(size << 20)
block[::4096] = b"x" * len(block[::4096])
time.sleep(hold)
if children is None:
    os._exit(0)
codes = [os.waitpid(pid, 0)[1] for pid in children]
print("held", count, "x", size, "MB:", "ok" if not any(codes) else codes)
sys.exit(1 if any(codes) else 0)
"""


def memory_retry(tmp_path: Path, resource: str, config: str, processes: int, size_mb: int,
                 memory_mb: int, hold: float = 2.0, timeout: float = 600
                 ) -> dict[str, Any]:
    """Run (``jobbridge run -r RESOURCE``) a job of ``processes`` x ``size_mb`` MB asking
    for ``memory_mb``, retried once on OUT_OF_MEMORY with twice the memory; its
    ``report --json`` once it succeeded."""
    hog = tmp_path / "memory_hog.py"
    hog.write_text(MEMORY_HOG)
    (tmp_path / "jobbridge.cfg").write_text(config)
    workflow = write_json(tmp_path / "wf.json", {"name": "memory", "jobs": [{
        "id": "hog", "command": [sys.executable, str(hog), str(processes), str(size_mb),
                                 str(hold)],
        "resources": {"memory_mb": memory_mb}, "retries": 1, "retry_on": ["OUT_OF_MEMORY"],
        "escalate": {"memory_mb": 2}}]})
    env = {"JOBBRIDGE_CONFIG": str(tmp_path / "jobbridge.cfg")}
    result = jb("run", str(workflow), "-r", resource, env=env, timeout=timeout)
    report = json.loads(jb("report", "1", "--json", env=env).stdout)
    assert result.returncode == 0, (result.stderr, report)
    assert isinstance(report, dict)
    return report


class Terminal:
    """A command run on a new pseudo-terminal, as from a user's shell: it leads its
    own session and process group, the terminal's foreground group."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the command
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self._output = bytearray()
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.exit_code: int | None = None

    def _read(self) -> None:
        while not self._closing.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EIO: the command and its terminal are gone
                return
            if not data:
                return
            self._output += data

    @property
    def text(self) -> str:
        return self._output.decode(errors="replace").replace("\r\n", "\n")

    def ctrl_c(self) -> None:
        """Type Ctrl-C: the terminal sends SIGINT to its foreground process group."""
        os.write(self.fd, b"\x03")

    def hang_up(self) -> None:
        """Close the terminal (as closing its window does): SIGHUP to the session."""
        self._closing.set()
        self._reader.join()
        os.close(self.fd)

    def wait(self, timeout: float) -> float:
        """Wait for the command's exit (its code in ``exit_code``); the seconds it took."""
        started = time.monotonic()
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                self._reader.join(timeout=5)
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                os.killpg(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError(f"still running after {timeout} s:\n{self.text}")
            time.sleep(0.01)
