"""Ctrl-C, SIGTERM and a closed terminal during ``jobbridge run``, through a real pty.

What a user sees: the first signal stops the workflow as ``jobbridge stop`` does
(running jobs killed, the others never run, the workflow recorded stopped) and
``run`` exits 128 + the signal's number within 2 s, saying how to restart; nothing
runs later unless the user restarts it. A second Ctrl-C exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from jbcli import JOBBRIDGE, Terminal, jb, listed, status_json, wait_for, write_json
from jobbridge import constants


def _workflow(tmp_path: Path, duration: str, script: str = "") -> tuple[Path, Path]:
    """Four jobs of ``sleep DURATION`` on a 2-slot local resource; each notes its start."""
    runs = tmp_path / "runs"
    jobs = [{"id": name, "command": ["sh", "-c", f"{script}echo {name} >> {runs}; "
                                                  f"sleep {duration}; true"]}
            for name in "abcd"]
    return write_json(tmp_path / "four.json", {"name": "four", "jobs": jobs}), runs


def _config(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "jobbridge.cfg"
    path.write_text("[localhost]\nscheduler_type = local_basic\ncpu_nb = 2\n")
    return {**os.environ, "JOBBRIDGE_CONFIG": str(path), "TERM": "dumb"}


def _jobs_of(duration: str) -> list[psutil.Process]:
    """Live processes of this test's jobs (their unique sleep duration marks them)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if (cmdline[:1] == ["sleep"] and cmdline[1:] == [duration]
                and process.info["status"] != psutil.STATUS_ZOMBIE):
            found.append(process)
    return found


def _start_run(tmp_path: Path, duration: str, script: str = ""
               ) -> tuple[Terminal, Path, dict[str, str]]:
    path, runs = _workflow(tmp_path, duration, script)
    env = _config(tmp_path)
    terminal = Terminal([*JOBBRIDGE, "run", str(path), "--resource", "localhost"], env)
    wait_for(lambda: runs.exists() and len(runs.read_text().split()) == 2, timeout=30,
             what="two jobs to start")
    time.sleep(0.3)  # a moment into their run, as in the report (1.5 s after start)
    return terminal, runs, env


def _assert_stopped(runs: Path, duration: str) -> dict[str, Any]:
    """The workflow is recorded stopped; 2 jobs ran and were killed, 2 never ran."""
    assert listed()[0]["status"] == constants.WORKFLOW_STOPPED
    jobs = status_json("1")["jobs"]
    assert all(job["status"] == constants.FAILED for job in jobs), jobs
    ran = sorted(runs.read_text().split())
    assert len(ran) == 2, ran
    for job in jobs:
        if job["id"] in ran:
            assert job["exit_status"] == constants.USER_KILLED, job
        else:
            assert job["exit_status"] in (constants.EXIT_NOTRUN, constants.USER_KILLED), job
            assert job["execution_date"] is None, job
    wait_for(lambda: not _jobs_of(duration), timeout=10, what="the killed jobs to end")
    return {job["id"]: job for job in jobs}


def _assert_nothing_runs_later(runs: Path, env: dict[str, str]) -> None:
    """A later engine does not run the stopped workflow's other jobs."""
    engine = jb("engine", env=env, timeout=60)
    assert engine.returncode == 0, engine.stderr
    time.sleep(0.5)
    assert len(runs.read_text().split()) == 2
    assert listed()[0]["status"] == constants.WORKFLOW_STOPPED


@pytest.mark.parametrize("how", ["ctrl-c", "SIGTERM"])
def test_first_signal_stops_the_workflow_and_exits_within_2_s(tmp_path: Path, how: str
                                                              ) -> None:
    duration = "5.4171" if how == "ctrl-c" else "5.4172"
    terminal, runs, env = _start_run(tmp_path, duration)
    if how == "ctrl-c":
        terminal.ctrl_c()
    else:
        os.killpg(terminal.pid, signal.SIGTERM)
    took = terminal.wait(timeout=30)
    expected = 130 if how == "ctrl-c" else 128 + signal.SIGTERM
    assert terminal.exit_code == expected, terminal.text
    assert took < 2.0, f"{took:.2f} s\n{terminal.text}"
    assert "Traceback" not in terminal.text
    assert "workflow 1 stopped" in terminal.text, terminal.text
    assert "jobbridge restart 1" in terminal.text, terminal.text
    _assert_stopped(runs, duration)
    _assert_nothing_runs_later(runs, env)


def test_closed_terminal_stops_the_workflow(tmp_path: Path) -> None:
    """SIGHUP (the terminal closed): the same stop, exit 129, no error writing to the
    terminal that is gone."""
    duration = "5.4173"
    terminal, runs, env = _start_run(tmp_path, duration)
    terminal.hang_up()
    took = terminal.wait(timeout=30)
    assert terminal.exit_code == 128 + signal.SIGHUP
    assert took < 2.0, f"{took:.2f} s"
    _assert_stopped(runs, duration)
    _assert_nothing_runs_later(runs, env)


def test_second_ctrl_c_exits_at_once_leaving_a_consistent_store(tmp_path: Path) -> None:
    """Jobs that ignore SIGTERM take the kill's grace period to die: a second Ctrl-C
    does not wait for them; their ends are recorded later, and nothing else runs."""
    duration = "30.4174"
    terminal, runs, env = _start_run(tmp_path, duration, script="trap '' TERM; ")
    terminal.ctrl_c()
    time.sleep(0.4)
    second = time.monotonic()
    terminal.ctrl_c()
    terminal.wait(timeout=30)
    assert time.monotonic() - second < 1.0, terminal.text
    assert terminal.exit_code == 130, terminal.text
    assert "jobbridge restart 1" in terminal.text, terminal.text
    assert listed()[0]["status"] == constants.WORKFLOW_STOPPED
    waited = jb("wait", "1", "--timeout", "30", env=env)
    assert waited.returncode == 1, waited.stderr
    jobs = _assert_stopped(runs, duration)
    assert all(job["ending_date"] for job in jobs.values())
    _assert_nothing_runs_later(runs, env)


def test_restart_after_ctrl_c_runs_what_was_stopped(tmp_path: Path) -> None:
    duration = "2.4175"
    terminal, runs, env = _start_run(tmp_path, duration)
    terminal.ctrl_c()
    terminal.wait(timeout=30)
    assert terminal.exit_code == 130
    restarted = jb("restart", "1", env=env)
    assert restarted.returncode == 0, restarted.stderr
    assert jb("wait", "1", "--timeout", "60", env=env).returncode == 0
    assert sorted(runs.read_text().split()) == sorted("ababcd")
    assert listed()[0]["status"] == constants.WORKFLOW_DONE


def test_python_api_run_interrupted(tmp_path: Path) -> None:
    """``WorkflowController.run`` in a Python program: Ctrl-C stops the workflow and
    raises KeyboardInterrupt (a ``WorkflowInterrupted`` naming the workflow)."""
    path, runs = _workflow(tmp_path, "5.4176")
    program = (
        "import sys\n"
        "from jobbridge.controller import WorkflowController, WorkflowInterrupted\n"
        "try:\n"
        f"    WorkflowController().run({str(path)!r}, resource='localhost')\n"
        "except WorkflowInterrupted as interrupted:\n"
        "    print('interrupted', interrupted.workflow_id, interrupted.signal_number)\n"
        "    sys.exit(7)\n")
    terminal = Terminal([sys.executable, "-c", program], _config(tmp_path))
    wait_for(lambda: runs.exists() and len(runs.read_text().split()) == 2, timeout=30,
             what="two jobs to start")
    terminal.ctrl_c()
    terminal.wait(timeout=30)
    assert terminal.exit_code == 7, terminal.text
    assert "interrupted 1 2" in terminal.text
    _assert_stopped(runs, "5.4176")
