"""stop, restart and delete in every state of a workflow, through the command line.

Whatever the state, a request either does its work or says there is nothing to
do (exit 0, the workflow unchanged), and never leaves a workflow ``in progress``
with nothing to do or an engine running for nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from jbcli import engine_pids, error_line, jb, kill_engines, listed, status_json, wait_for
from jobbridge import constants
from jobbridge.controller import WorkflowController, resolve_config
from jobbridge.model import parse_workflow

_durations = itertools.count()


class Case:
    """A workflow of two jobs (``first``, then ``second``), brought to one state."""

    def __init__(self, tmp_path: Path, home: Path) -> None:
        self.tmp_path = tmp_path
        self.home = home
        self.runs = tmp_path / "runs"
        self.duration = f"7.{6100 + next(_durations)}"

    def workflow(self, first: str = "true") -> dict[str, object]:
        return {"jobs": [{"id": "first", "command": ["sh", "-c", f"echo first >> {self.runs}; "
                                                                  f"{first}"]},
                         {"id": "second", "command": ["sh", "-c",
                                                      f"echo second >> {self.runs}"]}],
                "dependencies": [["first", "second"]]}

    def slow(self) -> dict[str, object]:
        return self.workflow(f"sleep {self.duration}")

    def ran(self) -> list[str]:
        return self.runs.read_text().split() if self.runs.exists() else []

    def submit(self, workflow: dict[str, object]) -> None:
        controller = WorkflowController()
        assert controller.submit(workflow) == "1"
        controller.close()

    def running(self) -> None:
        wait_for(lambda: self.ran() == ["first"] and status_json("1")["jobs"][0]["status"]
                 == constants.RUNNING, timeout=30, what="the first job to run")

    def ended(self) -> None:
        assert jb("wait", "1", "--timeout", "60").returncode in (0, 1)

    # --- the states -----------------------------------------------------------------------
    def not_started(self) -> None:
        """Stored, no engine ever ran it (e.g. the engine died right after submit)."""
        controller = WorkflowController()
        controller.store.add_workflow(parse_workflow(self.slow()), resolve_config())
        controller.close()

    def in_progress(self) -> None:
        self.submit(self.slow())
        self.running()

    def done(self) -> None:
        self.submit(self.workflow())
        self.ended()

    def done_with_failures(self) -> None:
        self.submit(self.workflow("exit 3"))
        self.ended()

    def stopped(self) -> None:
        self.in_progress()
        assert jb("stop", "1").returncode == 0
        self.ended()

    def no_engine(self) -> None:
        """In progress, its engine killed: the job runs on, nobody follows it."""
        self.in_progress()
        assert kill_engines(self.home) == 1

    def deleted(self) -> None:
        self.done()
        assert jb("delete", "1").returncode == 0
        wait_for(lambda: listed() == [], what="the workflow to go")


STATES = ["not_started", "in_progress", "done", "done_with_failures", "stopped", "no_engine",
          "deleted"]

#: (state, action) -> (what the command prints, the workflow's status once it settled
#: (None: it is gone), the jobs that have run once it settled (None: those that had)).
EXPECTED: dict[tuple[str, str], tuple[str, str | None, list[str] | None]] = {
    ("not_started", "stop"): ("stop requested", constants.WORKFLOW_STOPPED, []),
    ("in_progress", "stop"): ("stop requested", constants.WORKFLOW_STOPPED, ["first"]),
    ("done", "stop"): ("nothing to stop", constants.WORKFLOW_DONE, ["first", "second"]),
    ("done_with_failures", "stop"): ("nothing to stop", constants.WORKFLOW_DONE, ["first"]),
    ("stopped", "stop"): ("nothing to stop", constants.WORKFLOW_STOPPED, ["first"]),
    ("no_engine", "stop"): ("stop requested", constants.WORKFLOW_STOPPED, ["first"]),
    ("not_started", "restart"): ("nothing to restart", constants.WORKFLOW_DONE,
                                 ["first", "second"]),
    ("in_progress", "restart"): ("nothing to restart", constants.WORKFLOW_DONE,
                                 ["first", "second"]),
    ("done", "restart"): ("nothing to restart (all jobs succeeded)", constants.WORKFLOW_DONE,
                          ["first", "second"]),
    ("done_with_failures", "restart"): ("restart requested", constants.WORKFLOW_DONE,
                                        ["first", "first"]),
    ("stopped", "restart"): ("restart requested", constants.WORKFLOW_DONE,
                             ["first", "first", "second"]),
    ("no_engine", "restart"): ("nothing to restart", constants.WORKFLOW_DONE,
                               ["first", "second"]),
}
for _state in STATES[:-1]:
    EXPECTED[(_state, "delete")] = ("delete requested", None, None)


def _settled(case: Case, gone: bool) -> Callable[[], bool]:
    def check() -> bool:
        workflows = listed()
        if gone:
            return workflows == []
        return bool(workflows) and workflows[0]["status"] in (constants.WORKFLOW_DONE,
                                                               constants.WORKFLOW_STOPPED)
    return check


@pytest.mark.parametrize("action", ["stop", "restart", "delete"])
@pytest.mark.parametrize("state", STATES)
def test_request_in_every_state(tmp_path: Path, jobbridge_home: Path, state: str,
                                action: str) -> None:
    case = Case(tmp_path, jobbridge_home)
    getattr(case, state)()
    before, ran_before = listed(), case.ran()
    result = jb(action, "1")
    if state == "deleted":
        assert "no workflow 1" in error_line(result, 2)
        return
    said, status, ran = EXPECTED[(state, action)]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"workflow 1: {said}"), result.stdout
    if said.startswith("nothing to") and state not in ("not_started", "in_progress",
                                                      "no_engine"):
        assert listed() == before, "a request with nothing to do changed the workflow"
    wait_for(_settled(case, status is None), timeout=60, what="the workflow to settle")
    if status is not None:
        assert jb("wait", "1", "--timeout", "30").returncode in (0, 1)
        assert listed()[0]["status"] == status
        if status == constants.WORKFLOW_STOPPED:
            jobs = status_json("1")["jobs"]
            assert jobs[1]["exit_status"] == constants.EXIT_NOTRUN, jobs
    wait_for(lambda: engine_pids(jobbridge_home) == [], timeout=30,
             what="the engine to exit once there is nothing to do")
    assert sorted(case.ran()) == sorted(ran_before if ran is None else ran)


@pytest.mark.parametrize("action", ["stop", "restart"])
def test_a_request_reaching_the_engine_after_the_end_changes_nothing(
        tmp_path: Path, jobbridge_home: Path, action: str) -> None:
    """The race the command's own check cannot close (the workflow ended between the
    check and the request): the engine applies nothing, and exits."""
    case = Case(tmp_path, jobbridge_home)
    case.done()
    before = listed()
    controller = WorkflowController()
    controller.store.request("1", action)
    controller.close()
    engine = jb("engine", timeout=60)
    assert engine.returncode == 0, engine.stderr
    assert jb("wait", "1", "--timeout", "10").returncode == 0
    assert listed() == before
    assert case.ran() == ["first", "second"]
