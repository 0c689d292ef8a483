"""Workflow validation (docs/format.md) seen from the real command line.

Bad input is refused by ``run`` and ``submit`` alike with exit status 2, one
stderr line naming the file and the place, and nothing stored. Valid workflows
using groups, barriers and relative paths run as written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from jbcli import (
    error_line,
    finish,
    group_to_group,
    jb,
    jb_start,
    job,
    listed,
    status_json,
    stored_rows,
    write_json,
)
from jobbridge import constants
from jobbridge.errors import InputError
from jobbridge.model import load_workflow_file, parse_workflow


def _true(job_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "command": ["true"], **extra}


def _wf(*jobs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"jobs": list(jobs) or [_true("a")], **extra}


_FOUR = [_true(f"p{i}") for i in range(4)]
_GROUP_P = {"name": "P", "elements": [f"p{i}" for i in range(4)]}

#: (content of wf.json, fragments its one error line must contain)
BAD: dict[str, tuple[Any, list[str]]] = {
    "invalid-json": ('{"jobs": [\n  {"id": "a",}\n]}', ["wf.json:2:14: invalid JSON"]),
    "empty-file": ("", ["wf.json:1:1: invalid JSON"]),
    "not-utf8": (b'{"jobs": [{"id": "\xff"}]}', ["wf.json: cannot read"]),
    "too-deep": ("[" * 100_000 + "]" * 100_000, ["wf.json: invalid JSON: nested too deeply"]),
    "not-object": ([], ["the workflow must be a JSON object"]),
    "unknown-top-key": (_wf(dependancies=[]), ["unknown key 'dependancies'"]),
    "unknown-job-key": (_wf({"id": "a", "comand": ["true"]}),
                        ["jobs[0]: unknown key 'comand'"]),
    "unknown-resources-key": (_wf(_true("a", resources={"gpus": 1})),
                              ["jobs[0].resources: unknown key 'gpus'"]),
    "unknown-parallel-key": (_wf(_true("a", parallel_job_info={"nodes": 2})),
                             ["jobs[0].parallel_job_info: unknown key 'nodes'"]),
    "unknown-group-key": (_wf(groups=[{"name": "g", "members": ["a"]}]),
                          ["groups[0]: unknown key 'members'"]),
    "no-jobs": ({"jobs": []}, ["jobs: must be a non-empty list"]),
    "jobs-not-list": ({"jobs": {"a": ["true"]}}, ["jobs: must be a non-empty list"]),
    "name-type": (_wf(name=3), ["name: must be a string"]),
    "command-string": (_wf({"id": "a", "command": "echo hi"}),
                       ["jobs[0].command: must be a non-empty list"]),
    "command-int-arg": (_wf({"id": "a", "command": ["sleep", 1]}),
                        ["jobs[0].command: every argument must be a string"]),
    "missing-command": (_wf({"id": "a"}), ["jobs[0].command: required"]),
    "id-type": (_wf({"id": 1, "command": ["true"]}), ["jobs[0].id: required"]),
    "id-slash": (_wf(_true("a/b")), ["jobs[0].id: must not contain '/'"]),
    "id-control": (_wf(_true("a\x1bb")), ["jobs[0].id: must not contain"]),
    "priority-type": (_wf(_true("a"), _true("b", priority="high")),
                      ["jobs[1].priority: must be an integer"]),
    "priority-bool": (_wf(_true("a", priority=True)), ["jobs[0].priority"]),
    "env-type": (_wf(_true("a", env={"K": 1})), ["jobs[0].env: must be an object of string"]),
    "env-name": (_wf(_true("a", env={"A=B": "1"})), ["jobs[0].env: invalid variable name"]),
    "join-type": (_wf(_true("a", join_stderrout="yes")), ["jobs[0].join_stderrout"]),
    "cpus-zero": (_wf(_true("a", resources={"cpus": 0})),
                  ["jobs[0].resources.cpus: must be an integer >= 1"]),
    "parallel-config": (_wf(_true("a", parallel_job_info={"config_name": "PVM"})),
                        ["jobs[0].parallel_job_info.config_name: must be one of"]),
    "workdir-type": (_wf(_true("a", working_directory=3)), ["jobs[0].working_directory"]),
    "deps-not-list": (_wf(dependencies={"a": "b"}), ["dependencies: must be a list"]),
    "dep-triple": (_wf(_true("a"), _true("b"), dependencies=[["a", "b", "a"]]),
                   ["dependencies[0]: must be a pair"]),
    "duplicate-id": (_wf(_true("a"), _true("b"), _true("a")),
                     ["jobs[2].id: duplicate id 'a'"]),
    "unknown-dep-end": (_wf(_true("a"), dependencies=[["a", "zz"]]),
                        ["dependencies[0]: unknown job or group 'zz'"]),
    "cycle": (_wf(_true("a"), _true("b"), dependencies=[["a", "b"], ["b", "a"]]),
              ["dependencies: cycle "]),
    "self-dependency": (_wf(_true("a"), dependencies=[["a", "a"]]),
                        ["'a' depends on itself"]),
    "large-group-on-itself": (_wf(*_FOUR, groups=[_GROUP_P], dependencies=[["P", "P"]]),
                              ["dependencies: cycle p0 -> p0"]),
    "empty-command": (_wf({"id": "a", "command": []}),
                      ["jobs[0].command: must be a non-empty list"]),
    "empty-program": (_wf({"id": "a", "command": ["", "x"]}),
                      ["jobs[0].command: the program name is empty"]),
    "nul-in-arg": (_wf({"id": "a", "command": ["echo", "a\x00b"]}),
                   ["jobs[0].command: arguments cannot contain NUL"]),
    "nul-in-id": (_wf(_true("a\x00")), ["jobs[0].id: must not contain"]),
    "nul-in-env": (_wf(_true("a", env={"K": "v\x00"})), ["jobs[0].env"]),
    "nul-in-path": (_wf(_true("a", stdout_file="o\x00")), ["jobs[0].stdout_file"]),
    "lone-surrogate": ('{"jobs": [{"id": "a", "command": ["echo", "\\ud800"]}]}',
                       ["jobs[0].command[1]: not valid Unicode"]),
    "group-cycle": (_wf(groups=[{"name": "g", "elements": ["h"]},
                                {"name": "h", "elements": ["g"]}]),
                    ["groups: group cycle g -> h -> g"]),
    "group-named-like-job": (_wf(groups=[{"name": "a", "elements": ["a"]}]),
                             ["groups[0].name: 'a' is already a job id"]),
    "group-unknown-element": (_wf(groups=[{"name": "g", "elements": ["zz"]}]),
                              ["groups[0].elements: unknown job or group 'zz'"]),
    "duplicate-group": (_wf(groups=[{"name": "g", "elements": []}, {"name": "g"}]),
                        ["groups[1].name: duplicate group name 'g'"]),
    "barrier-with-command": (_wf({"id": "a", "barrier": True, "command": ["true"]}),
                             ["jobs[0].command: a barrier or engine-side job has no command"]),
}


@pytest.mark.parametrize("content, fragments", list(BAD.values()), ids=list(BAD))
def test_bad_workflow_is_refused_by_run_and_submit(tmp_path: Path, jobbridge_home: Path,
                                                   content: Any, fragments: list[str]) -> None:
    """``run`` and ``submit`` (at once) exit 2 with one line naming the file and place,
    and store nothing."""
    path = tmp_path / "wf.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        write_json(path, content)
    processes = [jb_start("run", str(path)), jb_start("submit", str(path))]
    for result in map(finish, processes):
        line = error_line(result, 2)
        assert line.startswith(f"jobbridge: error: {path}"), line
        for fragment in fragments:
            assert fragment in line, line
    assert stored_rows(jobbridge_home) == (0, 0, 0)
    assert not (jobbridge_home / "logs").exists() or not any((jobbridge_home / "logs").iterdir())


def test_cycle_message_names_the_cycle(tmp_path: Path) -> None:
    """A cycle is named as a closed path of the user's ids; hidden barriers are left out."""
    three = _wf(_true("a"), _true("b"), _true("c"), _true("d"),
                dependencies=[["d", "a"], ["a", "b"], ["b", "c"], ["c", "a"]])
    line = error_line(jb("run", str(write_json(tmp_path / "three.json", three))), 2)
    match = re.search(r"cycle (\w) -> (\w) -> (\w) -> (\w)$", line)
    assert match, line
    assert match[1] == match[4] and set(match.groups()) == {"a", "b", "c"}
    groups = _wf(*_FOUR, *[_true(f"q{i}") for i in range(4)],
                 groups=[_GROUP_P, {"name": "Q", "elements": [f"q{i}" for i in range(4)]}],
                 dependencies=[["P", "Q"], ["Q", "P"]])
    line = error_line(jb("submit", str(write_json(tmp_path / "groups.json", groups))), 2)
    match = re.search(r"cycle (\w+) -> (\w+) -> (\w+)$", line)
    assert match and match[1] == match[3] and "~" not in line, line
    assert {match[1][0], match[2][0]} == {"p", "q"}
    assert listed() == []


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A missing workflow file or a folder in its place: exit 2, one line."""
    assert "no such file" in error_line(jb("run", str(tmp_path / "nope.json")), 2)
    assert "cannot read" in error_line(jb("submit", str(tmp_path)), 2)
    assert listed() == []


def test_parse_errors_are_input_errors_with_the_place() -> None:
    """The Python entry point raises InputError with the same one-line message."""
    with pytest.raises(InputError, match=r"^workflow: jobs\[1\]\.id: duplicate id 'a'$"):
        parse_workflow(_wf(_true("a"), _true("a")))


def test_groups_as_dependency_ends_and_barriers(tmp_path: Path) -> None:
    """Jobs, nested groups and barriers as dependency ends run in the declared order."""
    log = tmp_path / "log"

    def step(job_id: str, **extra: Any) -> dict[str, Any]:
        return job(job_id, f"echo {job_id} >> {log}", **extra)

    workflow = {
        "name": "grouped",
        "jobs": [step("a1"), step("a2"), {"id": "gate", "barrier": True}, step("b1"),
                 step("b2"), step("c")],
        "groups": [{"name": "A", "elements": ["a1", "a2"]},
                   {"name": "B", "elements": ["b1"]},
                   {"name": "AB", "elements": ["B", "b2"]}],
        "dependencies": [["A", "gate"], ["gate", "AB"], ["AB", "c"]],
    }
    result = jb("run", str(write_json(tmp_path / "wf.json", workflow)), "--json")
    assert result.returncode == 0, result.stderr
    order = log.read_text().split()
    assert sorted(order[:2]) == ["a1", "a2"] and sorted(order[2:4]) == ["b1", "b2"]
    assert order[4:] == ["c"]
    jobs = {j["id"]: j for j in json.loads(result.stdout)["jobs"]}
    assert set(jobs) == {"a1", "a2", "gate", "b1", "b2", "c"}
    assert jobs["gate"]["status"] == constants.DONE
    assert jobs["gate"]["scheduler_job_id"] is None  # a barrier is never submitted


def test_large_group_dependency_goes_through_a_hidden_barrier(tmp_path: Path) -> None:
    """10 -> 10 jobs cost 20 edges through one hidden barrier, which ``status`` hides."""
    log = tmp_path / "log"
    firsts = [job(f"f{i}", f"echo f >> {log}") for i in range(10)]
    seconds = [job(f"s{i}", f"echo s >> {log}") for i in range(10)]
    workflow = group_to_group(firsts, seconds)
    path = write_json(tmp_path / "wf.json", workflow)
    spec = load_workflow_file(path)
    assert len(spec.hidden_ids) == 1 and len(spec.edges) == 20
    result = jb("run", str(path))
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["f"] * 10 + ["s"] * 10
    shown = status_json()["jobs"]
    assert len(shown) == 20 and not any(j["id"].startswith("~") for j in shown)
    assert listed()[0]["counts"] == {constants.DONE: 20}


def test_relative_paths_resolve_against_the_workflow_folder(tmp_path: Path) -> None:
    """working_directory, stdin and stdout_file are relative to the file's folder, not cwd."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "in.txt").write_text("hello input\n")
    workflow = {"jobs": [
        {"id": "copy", "command": ["cat"], "working_directory": "data", "stdin": "in.txt",
         "stdout_file": "copied.txt"},
        {"id": "where", "command": ["pwd"], "stdout_file": "where.txt"},
    ]}
    path = write_json(folder / "wf.json", workflow)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = jb("run", "../project/wf.json", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert (folder / "data" / "copied.txt").read_text() == "hello input\n"
    assert Path((folder / "where.txt").read_text().strip()).resolve() == folder.resolve()
    assert list(elsewhere.iterdir()) == []
    spec = load_workflow_file(path)
    assert spec.jobs[0].working_directory == str((folder / "data").resolve())
