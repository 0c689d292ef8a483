"""The job wrapper and the batch system's kill: started as a batch system starts a
job script (a session of its own), then ended as each kind of system ends it, the
job's whole process tree is gone, and the exit record says what the system sent.

Before the wrapper knew how its system kills, it started every job in a session
of its own: Grid Engine's SIGKILL to the script's process group killed the wrapper
and left the job running (the first case below)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from jobbridge import constants
from jobbridge.model import EngineJob
from jobbridge.schedulers.jobwrap import SystemKill, read_exit_file
from jobbridge.schedulers.process import KILL_GRACE_SECONDS

#: A job with a child and a grandchild; it writes their pids, then "started".
TREE = ('sh -c \'sleep 600 & echo $! > grandchild; wait\' & echo $! > child; echo $$ > top; '
        "while [ ! -s grandchild ]; do sleep 0.05; done; touch started; wait")
#: The same, catching the warning signals: it exits 0 when one comes.
CATCHING = f'trap "exit 0" TERM USR1; {TREE}'


class Wrapped:
    """The wrapper running one job in ``folder``, in a session of its own."""

    def __init__(self, folder: Path, script: str, kill: SystemKill) -> None:
        self.folder = folder
        job = EngineJob("j", ["sh", "-c", script], working_directory=str(folder),
                        stdout_file=str(folder / "out"), stderr_file=str(folder / "err"))
        (folder / "job.json").write_text(json.dumps({
            "job": job.to_dict(), "exit_file": str(folder / "exit.json"),
            "kill": kill.to_spec()}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobbridge.schedulers.jobwrap", str(folder / "job.json")],
            start_new_session=True)
        deadline = time.monotonic() + 30
        while not (folder / "started").exists():
            assert self.process.poll() is None, (folder / "err").read_text()
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        self.tree = [int((folder / name).read_text()) for name in ("top", "child", "grandchild")]

    def session(self) -> list[int]:
        """Every process of the wrapper's session (what PBS signals)."""
        return [process.pid for process in psutil.process_iter(["pid"])
                if _session(process.pid) == self.process.pid]

    def ended(self, timeout: float = 15) -> int:
        """The wrapper's exit status, once its whole tree is gone."""
        status = self.process.wait(timeout)
        deadline = time.monotonic() + timeout
        while alive := [pid for pid in self.tree if psutil.pid_exists(pid)
                        and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]:
            assert time.monotonic() < deadline, f"processes of the job kept running: {alive}"
            time.sleep(0.05)
        return status

    def record(self) -> dict[str, object] | None:
        return read_exit_file(self.folder / "exit.json")


@pytest.fixture
def wrapped(tmp_path: Path) -> Iterator[Callable[[str, SystemKill], Wrapped]]:
    started: list[Wrapped] = []

    def start(script: str, kill: SystemKill) -> Wrapped:
        started.append(Wrapped(tmp_path, script, kill))
        return started[-1]

    yield start
    for one in started:  # nothing left running when a check fails
        for pid in [*one.tree, one.process.pid]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def test_grid_engine_sigkills_the_process_group(wrapped: Callable[..., Wrapped]) -> None:
    """qdel: SIGKILL to the script's process group, at once: the job was in it."""
    job = wrapped(TREE, SystemKill("process_group"))
    os.killpg(job.process.pid, signal.SIGKILL)
    assert job.ended() == -signal.SIGKILL
    assert job.record() is None  # the system's record tells the end


def test_slurm_warns_the_process_group(wrapped: Callable[..., Wrapped]) -> None:
    """scancel: SIGTERM to every process, SIGKILL later; the job ends of the warning
    and the wrapper, which outlived it, records it and ends the same way."""
    job = wrapped(TREE, SystemKill("process_group", warning=signal.SIGTERM))
    os.killpg(job.process.pid, signal.SIGTERM)
    assert job.ended() == -signal.SIGTERM
    record = job.record()
    assert record is not None
    assert record["exit"][:3] == [constants.FINISHED_TERM_SIG, None, signal.SIGTERM]
    assert record["signals"] == [signal.SIGTERM]


def test_pbs_signals_the_session(wrapped: Callable[..., Wrapped]) -> None:
    """qdel: SIGTERM to every process of the session, SIGKILL kill_delay later; a job
    catching the warning exits 0, and its record says a signal came first."""
    job = wrapped(CATCHING, SystemKill("session", warning=signal.SIGTERM))
    for pid in job.session():
        os.kill(pid, signal.SIGTERM)
    time.sleep(1)
    for pid in job.session():
        os.kill(pid, signal.SIGKILL)
    job.ended()
    record = job.record()
    assert record is not None and record["signals"] == [signal.SIGTERM]


def test_a_system_signalling_only_the_script(wrapped: Callable[..., Wrapped]) -> None:
    """The wrapper forwards the warning to the job's group; a job that outlives it is
    SIGKILLed by the wrapper before the system's SIGKILL of the script alone."""
    job = wrapped("trap '' TERM; " + TREE, SystemKill("script", warning=signal.SIGTERM))
    assert _session(job.tree[0]) != job.process.pid  # a group and session of its own
    os.kill(job.process.pid, signal.SIGTERM)
    time.sleep(KILL_GRACE_SECONDS + 1)
    job.process.kill()
    job.ended()


def test_a_job_ending_on_its_own_saw_no_signal(wrapped: Callable[..., Wrapped],
                                               tmp_path: Path) -> None:
    job = wrapped(f"{TREE.replace('; wait', '; kill $(cat grandchild); wait')}",
                  SystemKill("process_group"))
    assert job.ended() == 0
    record = job.record()
    assert record is not None and record["exit"][:2] == [constants.FINISHED_REGULARLY, 0]
    assert record["signals"] == []


def test_a_system_signalling_only_the_script_must_warn() -> None:
    with pytest.raises(ValueError, match="warning signal first"):
        SystemKill("script")
    with pytest.raises(ValueError, match="unknown value"):
        SystemKill("cgroup")  # type: ignore[arg-type]


def test_who_ended_a_killed_job() -> None:
    """A job we killed that ended with no signal recorded ended on its own only if
    it ended before the kill was asked: the system may signal the job, which
    catches the warning and exits 0, before its wrapper (Slurm signals one process
    after another)."""
    from jobbridge.schedulers.batch import _kill_reached

    asked = time.time()
    own = {"exit": ["finished_regularly", 0, None, None], "signals": []}
    assert not _kill_reached(None, {**own, "ended": asked})
    assert not _kill_reached(asked, {**own, "ended": asked - 1})
    assert _kill_reached(asked, {**own, "ended": asked + 0.01})
    assert _kill_reached(asked, {**own, "signals": [signal.SIGTERM], "ended": asked - 1})
    assert _kill_reached(asked, None)
