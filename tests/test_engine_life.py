"""The background engine seen from outside: ``engine --status`` and ``--stop``, its log,
what ``status``/``list`` say when no engine runs, the true dates of jobs that ended
while none ran, and the runner files left once everything is recorded."""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import psutil

from jbcli import (
    JOBBRIDGE,
    Terminal,
    engine_pids,
    jb,
    kill_engines,
    status_json,
    wait_for,
    write_json,
)
from jobbridge import constants
from jobbridge.controller import WorkflowController, attach_engine_log, resolve_config
from jobbridge.model import parse_workflow


def _sleepers(duration: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline", "status"])
            if p.info["cmdline"] == ["sleep", duration]
            and p.info["status"] != psutil.STATUS_ZOMBIE]


def _long_workflow(tmp_path: Path, duration: str) -> Path:
    return write_json(tmp_path / "wf.json", {"jobs": [
        {"id": "long", "command": ["sleep", duration]},
        {"id": "next", "command": ["true"]}], "dependencies": [["long", "next"]]})


def _running(workflow_id: str = "1") -> bool:
    return status_json(workflow_id)["jobs"][0]["status"] == constants.RUNNING


def test_status_without_an_engine_exits_3() -> None:
    result = jb("engine", "--status")
    assert result.returncode == 3, result
    assert result.stdout == "no engine is running\n"


def test_status_stop_log_and_resume(tmp_path: Path, jobbridge_home: Path) -> None:
    """--status names the engine's pid, start and workflows; a second engine names it;
    --stop ends it cleanly while the job runs on; status and list say nobody follows
    the workflow; wait resumes it; engine.log (0600) tells all of it."""
    duration = "12.3817"
    workflow_id = jb("submit", str(_long_workflow(tmp_path, duration))).stdout.strip()
    wait_for(_running, what="the job to run")
    [pid] = engine_pids(jobbridge_home)

    shown = jb("engine", "--status")
    assert shown.returncode == 0, shown
    assert shown.stdout.startswith(f"engine: pid {pid}, since 20"), shown.stdout
    assert shown.stdout.rstrip().endswith("drives workflow 1"), shown.stdout

    second = jb("engine")
    assert second.returncode == 0
    assert f"an engine already runs for this home (pid {pid}, since 20" in second.stderr

    stopped = jb("engine", "--stop")
    assert stopped.returncode == 0, stopped
    assert stopped.stdout.startswith(f"engine (pid {pid}) stopped\n"), stopped.stdout
    assert "no engine is running: `jobbridge engine` or `jobbridge wait 1`" in stopped.stdout
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert engine_pids(jobbridge_home) == []
    assert _sleepers(duration), "the job was killed with its engine"
    assert _running()

    for command in (["status", "1"], ["list"]):
        result = jb(*command)
        assert result.returncode == 0
        assert ("jobbridge: no engine is running: `jobbridge engine` or `jobbridge wait 1` "
                "resumes workflow 1\n") in result.stderr, (command, result.stderr)
    assert jb("engine", "--status").returncode == 3

    assert jb("wait", workflow_id, "--timeout", "60").returncode == 0
    wait_for(lambda: engine_pids(jobbridge_home) == [], what="the engine to exit")
    assert "no engine" not in jb("status", "1").stderr
    log = jobbridge_home / "engine.log"
    assert log.stat().st_mode & 0o777 == 0o600
    text = log.read_text()
    for expected in (f"[{pid}] jobbridge.controller: engine started (pid {pid})",
                     "workflow 1: started on localhost (local_basic)",
                     f"[{pid}] jobbridge.controller: engine stopped by SIGTERM",
                     "workflow 1: resumed on localhost (local_basic): 1 not_submitted, 1 running",
                     "workflow 1: done (2 jobs, 0 failed)",
                     "engine exits: every workflow has ended"):
        assert expected in text, (expected, text)


def test_stop_without_an_engine() -> None:
    result = jb("engine", "--stop")
    assert (result.returncode, result.stdout) == (0, "no engine is running\n")


def test_ctrl_c_on_a_foreground_engine_leaves_the_jobs_running(tmp_path: Path,
                                                                jobbridge_home: Path) -> None:
    duration = "8.3818"
    controller = WorkflowController()
    spec = parse_workflow({"jobs": [{"id": "long", "command": ["sleep", duration]}]})
    controller.store.add_workflow(spec, resolve_config())
    terminal = Terminal([*JOBBRIDGE, "engine"], dict(os.environ))
    wait_for(_running, what="the job to run")
    terminal.ctrl_c()
    terminal.wait(timeout=10)
    assert terminal.exit_code == 128 + signal.SIGINT, terminal.text
    assert "Traceback" not in terminal.text
    assert _sleepers(duration) and _running()
    assert jb("wait", "1", "--timeout", "60").returncode == 0


def test_engine_log_is_rotated_and_private(tmp_path: Path) -> None:
    handler = attach_engine_log(tmp_path, max_bytes=2000, backups=2)
    try:
        for number in range(200):
            logging.getLogger("jobbridge.engine").info("line %d of the engine's log", number)
    finally:
        logging.getLogger("jobbridge").removeHandler(handler)
        handler.close()
    logs = sorted(path.name for path in tmp_path.glob("engine.log*"))
    assert logs == ["engine.log", "engine.log.1", "engine.log.2"]
    for name in logs:
        path = tmp_path / name
        assert path.stat().st_size <= 2000
        assert path.stat().st_mode & 0o777 == 0o600
    assert "line 199 of" in (tmp_path / "engine.log").read_text()


def _date(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_jobs_that_ended_while_no_engine_ran_keep_their_true_dates(
        tmp_path: Path, jobbridge_home: Path) -> None:
    """The engine killed, the job ends; an engine resuming 3 s later dates its start
    and end from the runner's record, not from the moment it learns of them."""
    stamps = tmp_path / "stamps"
    path = write_json(tmp_path / "wf.json", {"jobs": [{"id": "j", "command": [
        "sh", "-c", f"date +%s.%N >> {stamps}; sleep 1; date +%s.%N >> {stamps}"]}]})
    assert jb("submit", str(path)).returncode == 0
    wait_for(stamps.exists, what="the job to start")
    assert kill_engines(jobbridge_home) == 1
    wait_for(lambda: len(stamps.read_text().split()) == 2, what="the job to end")
    time.sleep(3)
    resumed = time.time()
    assert jb("wait", "1", "--timeout", "60").returncode == 0
    began, ended = (float(t) for t in stamps.read_text().split())
    [job] = status_json("1")["jobs"]
    assert abs(_date(job["ending_date"]) - ended) < 0.5, (job, ended)
    assert _date(job["ending_date"]) < resumed - 2
    assert abs(_date(job["execution_date"]) - began) < 0.5, (job, began)


def _runner_files(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "local").glob("*") if p.suffix in (".journal", ".lock"))


def test_runner_files_go_once_everything_is_recorded(tmp_path: Path,
                                                     jobbridge_home: Path) -> None:
    """run leaves no journal or lock; nor does an engine killed mid-run once a later
    engine has recorded the ends its runner journaled."""
    quick = write_json(tmp_path / "quick.json", {"jobs": [
        {"id": f"j{i}", "command": ["true"]} for i in range(5)]})
    assert jb("run", str(quick)).returncode == 0
    assert _runner_files(jobbridge_home) == []

    duration = "1.3819"
    jb("submit", str(_long_workflow(tmp_path, duration)))
    wait_for(lambda: _running("2"), what="the job to run")
    assert kill_engines(jobbridge_home) == 1
    assert len(_runner_files(jobbridge_home)) == 2  # the orphaned runner's journal and lock
    wait_for(lambda: not _sleepers(duration), what="the job to end")
    assert jb("wait", "2", "--timeout", "60").returncode == 0
    wait_for(lambda: engine_pids(jobbridge_home) == [], what="the engine to exit")
    wait_for(lambda: _runner_files(jobbridge_home) == [], timeout=10,
             what=f"the runner files to go: {_runner_files(jobbridge_home)}")
