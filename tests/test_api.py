"""The Python API (jobbridge.api): its documented example runs as written, end to end,
on the local scheduler."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

import jobbridge.api
from jobbridge import constants
from jobbridge.api import BarrierJob, Group, Job, Workflow, WorkflowController
from jobbridge.errors import InputError

_SCRIPTS = {
    "split.py": "from pathlib import Path\n"
                "for i in range(4):\n    Path(f'in{i}').write_text(f'part {i}\\n')\n",
    "work.py": "import sys\nfrom pathlib import Path\ni = sys.argv[1]\n"
               "Path(f'out{i}').write_text(Path(f'in{i}').read_text().upper())\n",
    "merge.py": "from pathlib import Path\n"
                "Path('result').write_text(''.join(Path(f'out{i}').read_text() "
                "for i in range(4)))\n",
}


def _docstring_example() -> str:
    """The indented block after ``::`` in the module docstring."""
    lines = (jobbridge.api.__doc__ or "").split("::", 1)[1].splitlines()[1:]
    block = []
    for line in lines:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding the example's scripts, as the current directory."""
    for name, text in _SCRIPTS.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_docstring_example_runs_as_written(project: Path, jobbridge_home: Path) -> None:
    """The api docstring's code, executed verbatim: submit, background engine, wait."""
    code = _docstring_example()
    assert "controller.submit(workflow)" in code
    assert "python3" in code
    printed = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "jobbridge.api docstring", "exec"), namespace)
    controller = namespace["controller"]
    assert isinstance(controller, WorkflowController)
    controller.close()
    assert printed.getvalue() == f"{constants.WORKFLOW_DONE}\n"
    assert (project / "result").read_text() == "".join(f"PART {i}\n" for i in range(4))
    with contextlib.closing(sqlite3.connect(jobbridge_home / "jobbridge.db")) as db:
        names = db.execute("SELECT name FROM workflows").fetchall()
    assert names == [("pipeline",)]


def test_run_in_process_with_groups_and_barriers(project: Path) -> None:
    """controller.run drives the workflow here; groups and barriers order the jobs."""
    python = sys.executable
    log = project / "log"
    first = [Job(["sh", "-c", f"echo a >> {log}"], id=f"a{i}") for i in range(3)]
    gate = BarrierJob(id="gate")
    second = [Job([python, "-c", f"open({str(log)!r}, 'a').write('b\\n')"], id=f"b{i}")
              for i in range(3)]
    group_a, group_b = Group("A", first), Group("B", second)
    workflow = Workflow([*first, gate, *second], name="api",
                        dependencies=[(group_a, gate), (gate, group_b)],
                        groups=[group_a, group_b])
    controller = WorkflowController()
    try:
        workflow_id = controller.run(workflow)
        status = controller.status(workflow_id)
    finally:
        controller.close()
    assert status["name"] == "api" and status["status"] == constants.WORKFLOW_DONE
    assert {job["id"]: job["status"] for job in status["jobs"]} == dict.fromkeys(
        ["a0", "a1", "a2", "gate", "b0", "b1", "b2"], constants.DONE)
    assert log.read_text().split() == ["a"] * 3 + ["b"] * 3


def test_failure_and_bad_workflows(project: Path, jobbridge_home: Path) -> None:
    """wait reports a failed job; a bad workflow raises InputError before anything is
    stored."""
    controller = WorkflowController()
    try:
        bad = Job(["sh", "-c", "exit 7"], id="bad")
        after = Job(["true"], id="after")
        workflow_id = controller.submit(Workflow([bad, after], dependencies=[(bad, after)]))
        jobs = {j["id"]: j for j in controller.wait(workflow_id, timeout=60)["jobs"]}
        assert (jobs["bad"]["exit_value"], jobs["after"]["exit_status"]) == (
            7, constants.EXIT_NOTRUN)
        with pytest.raises(InputError, match=r"jobs\[1\]\.id: duplicate id 'x'"):
            controller.submit(Workflow([Job(["true"], id="x"), Job(["true"], id="x")]))
        with pytest.raises(InputError, match=r"cycle"):
            one, two = Job(["true"]), Job(["true"])
            controller.run(Workflow([one, two], dependencies=[(one, two), (two, one)]))
        assert [w["id"] for w in controller.list()] == [workflow_id]
    finally:
        controller.close()
    assert os.listdir(jobbridge_home / "logs") == [workflow_id]


def test_dependencies_given_by_id(project: Path) -> None:
    """A dependency end may be a job's id (or a group's name) instead of the object; an
    unknown id is refused like in a workflow file."""
    log = project / "log"
    first, second = (Job(["sh", "-c", f"echo {name} >> {log}"], id=name)
                     for name in ("first", "second"))
    third = Job(["sh", "-c", f"echo third >> {log}"], id="third")
    both = Group("both", [first, second])
    workflow = Workflow([third, second, first], groups=[both],
                        dependencies=[("first", "second"), ("both", third)])
    controller = WorkflowController()
    try:
        status = controller.status(controller.run(workflow))
        with pytest.raises(InputError, match=r"dependencies\[0\].*'nobody'"):
            controller.run(Workflow([first], dependencies=[("nobody", first)]))
    finally:
        controller.close()
    assert [job["status"] for job in status["jobs"]] == [constants.DONE] * 3
    assert log.read_text().split() == ["first", "second", "third"]
