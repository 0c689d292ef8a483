"""The engine on the real local scheduler: DAG order, failures, limits, requests, resume."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jbcli import group_to_group, job
from jobbridge import constants
from jobbridge.controller import WorkflowController, resolve_config
from jobbridge.model import load_workflow_file


def _run(workflow: dict[str, Any], tmp_path: Path, config: str | None = None) -> dict[str, Any]:
    if config is not None:
        path = tmp_path / "jobbridge.cfg"
        path.write_text(config)
        os.environ["JOBBRIDGE_CONFIG"] = str(path)
    controller = WorkflowController()
    try:
        workflow_id = controller.run(workflow, resource="here" if config else None)
        return controller.status(workflow_id)
    finally:
        os.environ.pop("JOBBRIDGE_CONFIG", None)
        controller.close()


def _by_id(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["id"]: job for job in status["jobs"]}


def test_dependencies_run_in_order_and_failures_abort_descendants(tmp_path: Path) -> None:
    log = tmp_path / "log"
    workflow = {"jobs": [job("a", f"echo a >> {log}"), job("b", f"echo b >> {log}; exit 5"),
                         job("c", f"echo c >> {log}"), job("d", f"echo d >> {log}"),
                         job("e", f"echo e >> {log}"), {"id": "gate", "barrier": True},
                         job("f", f"echo f >> {log}")],
                "dependencies": [["a", "b"], ["a", "c"], ["b", "d"], ["d", "e"], ["c", "gate"],
                                 ["gate", "f"]]}
    jobs = _by_id(_run(workflow, tmp_path))
    assert log.read_text().split()[0] == "a"
    assert sorted(log.read_text().split()) == ["a", "b", "c", "f"]
    assert (jobs["b"]["status"], jobs["b"]["exit_value"]) == (constants.FAILED, 5)
    for aborted in ("d", "e"):
        assert jobs[aborted]["status"] == constants.FAILED
        assert jobs[aborted]["exit_status"] == constants.EXIT_NOTRUN
        assert jobs[aborted]["scheduler_job_id"] is None
    assert jobs["gate"]["status"] == constants.DONE
    assert jobs["f"]["status"] == constants.DONE


def test_group_ends_wait_for_every_member(tmp_path: Path) -> None:
    log = tmp_path / "log"
    firsts = [job(f"p{i}", f"sleep 0.{i}; echo p >> {log}") for i in range(5)]
    seconds = [job(f"q{i}", f"echo q >> {log}") for i in range(5)]
    workflow = group_to_group(firsts, seconds)
    status = _run(workflow, tmp_path)
    assert log.read_text().split() == ["p"] * 5 + ["q"] * 5
    assert len(status["jobs"]) == 10  # the hidden barrier is not shown


def test_priority_and_max_job_running(tmp_path: Path) -> None:
    log = tmp_path / "log"
    jobs = [job(f"j{p}", f"echo start {p} >> {log}; sleep 0.1; echo end {p} >> {log}",
                 priority=p) for p in (1, 5, 3, 4, 2)]
    _run({"jobs": jobs}, tmp_path,
         config="[here]\nscheduler_type = local_basic\ncpu_nb = 4\nmax_job_running = 1\n")
    lines = log.read_text().splitlines()
    assert [line for line in lines if line.startswith("start")] == [
        f"start {p}" for p in (5, 4, 3, 2, 1)]
    for i in range(0, len(lines), 2):  # never two at once
        assert lines[i].split()[1] == lines[i + 1].split()[1]


def test_job_files_default_under_home(tmp_path: Path, jobbridge_home: Path) -> None:
    status = _run({"jobs": [job("talk", "echo out; echo err >&2")]}, tmp_path)
    controller = WorkflowController()
    assert controller.log_path(status["id"], "talk").read_text() == "out\n"
    assert controller.log_path(status["id"], "talk", stderr=True).read_text() == "err\n"
    assert str(controller.log_path(status["id"], "talk")).startswith(str(jobbridge_home))


def _start_engine(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "jobbridge", "engine"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_done(controller: WorkflowController, workflow_id: str, timeout: float = 60
               ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = controller.status(workflow_id)
        if status["status"] == constants.WORKFLOW_DONE:
            return status
        time.sleep(0.05)
    raise TimeoutError(controller.status(workflow_id))


def test_engine_killed_at_random_moments_resumes_without_loss_or_rerun(
        tmp_path: Path, jobbridge_home: Path) -> None:
    """SIGKILL the engine repeatedly mid-workflow: every job runs exactly once."""
    log = tmp_path / "ran"
    layers = [[f"l{layer}-{i}" for i in range(6)] for layer in range(4)]
    jobs = [job(job_id, f"echo {job_id} >> {log}; sleep 0.{random.randint(1, 4)}; "
                         f"exit {1 if job_id == 'l1-3' else 0}")
            for layer in layers for job_id in layer]
    deps = [[a, b] for upper, lower in itertools.pairwise(layers)
            for a, b in zip(upper, lower, strict=True)]
    deps += [[layers[0][0], b] for b in layers[1]]
    (tmp_path / "wf.json").write_text(json.dumps({"jobs": jobs, "dependencies": deps}))
    env = {**os.environ, "JOBBRIDGE_HOME": str(jobbridge_home)}
    controller = WorkflowController()
    controller.store.add_workflow(load_workflow_file(tmp_path / "wf.json"), resolve_config())
    rng = random.Random(int(os.environ.get("JOBBRIDGE_TEST_SEED", "7")))
    for _ in range(8):
        engine = _start_engine(env)
        time.sleep(rng.uniform(0.05, 0.5))
        engine.send_signal(signal.SIGKILL)
        engine.wait()
    engine = _start_engine(env)
    status = _wait_done(controller, "1")
    engine.wait(timeout=30)
    ran = Counter(log.read_text().split())
    assert all(count == 1 for count in ran.values()), ran
    jobs_by_id = _by_id(status)
    assert jobs_by_id["l1-3"]["exit_value"] == 1
    assert jobs_by_id["l2-3"]["exit_status"] == constants.EXIT_NOTRUN
    assert jobs_by_id["l3-3"]["exit_status"] == constants.EXIT_NOTRUN
    for job_id, row in jobs_by_id.items():
        if job_id in ("l1-3", "l2-3", "l3-3"):
            continue
        assert row["status"] == constants.DONE, row
        assert ran[job_id] == 1
    assert "l2-3" not in ran and "l3-3" not in ran


def test_stop_kills_running_jobs_and_restart_reruns_what_did_not_succeed(
        tmp_path: Path, jobbridge_home: Path) -> None:
    flag = tmp_path / "second-time"
    script = f'if [ -e "{flag}" ]; then exit 0; fi; touch "{flag}"; exec sleep 60'
    controller = WorkflowController()
    workflow_id = controller.submit({"jobs": [job("ok", "true"), job("slow", script),
                                              job("after", "true")],
                                     "dependencies": [["slow", "after"]]})
    deadline = time.monotonic() + 30
    while not flag.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    controller.request(workflow_id, "stop")
    jobs = _by_id(controller.wait(workflow_id, timeout=30))
    assert jobs["slow"]["exit_status"] == constants.USER_KILLED
    assert jobs["after"]["exit_status"] == constants.EXIT_NOTRUN
    assert jobs["ok"]["status"] == constants.DONE
    controller.request(workflow_id, "restart")
    time.sleep(0.3)
    jobs = _by_id(controller.wait(workflow_id, timeout=30))
    assert all(job["status"] == constants.DONE for job in jobs.values()), jobs


def test_delete_kills_and_forgets(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    controller = WorkflowController()
    workflow_id = controller.submit({"jobs": [job("long", f"echo $$ > {pid_file}; exec sleep 60")]})
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    controller.request(workflow_id, "delete")
    while any(w["id"] == workflow_id for w in controller.list()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    while _alive(pid):
        assert time.monotonic() < deadline, "the deleted workflow's job still runs"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
