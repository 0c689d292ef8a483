"""Dynamic workflows in jobbridge's format: parameters, output parameters, links, engine-side
jobs, temporary paths; their durability when the engine is SIGKILLed between a job's end and
its dependent's start."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jbcli import error_line, jb, kill_engines, status_json, wait_for, write_json
from jobbridge import constants
from jobbridge.store import SCHEMA_VERSION, Store

#: A job writing its output parameters: ``sh -c SCRIPT`` then JSON to $SOMAWF_OUTPUT_PARAMS.
WRITE = 'printf "%s" "$1" > "$SOMAWF_OUTPUT_PARAMS"'


def _outputs_job(job_id: str, outputs: dict[str, Any], before: str = "true",
                 **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "command": ["sh", "-c", f"{before}; {WRITE}", "sh",
                                      json.dumps(outputs)],
            "outputs": sorted(outputs), **extra}


def _run(tmp_path: Path, workflow: dict[str, Any], *args: str,
         status: int = 0) -> dict[str, Any]:
    path = write_json(tmp_path / "wf.json", workflow)
    result = jb("run", str(path), "--json", *args, timeout=300)
    assert result.returncode == status, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def _jobs(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["id"]: job for job in status["jobs"]}


def test_parameters_are_substituted_in_commands(tmp_path: Path) -> None:
    """``%(name)s``: a string as it is, anything else as JSON; a whole argument of a list
    becomes one argument per item."""
    out = tmp_path / "out.txt"
    workflow = {"jobs": [{"id": "a", "command": [
        "python3", "-c", "import sys; open(sys.argv[1], 'w').write(repr(sys.argv[2:]))",
        str(out), "%(word)s", "n=%(n)s", "%(files)s", "all=%(files)s", "%(flag)s"],
        "parameters": {"word": "hello world", "n": 3, "files": ["x", "y z"], "flag": True}}]}
    _run(tmp_path, workflow)
    assert out.read_text() == repr(["hello world", "n=3", "x", "y z", 'all=["x", "y z"]',
                                    "true"])


def test_outputs_links_and_engine_side_jobs(tmp_path: Path, jobbridge_home: Path) -> None:
    """A job's outputs reach the jobs linked to them (link functions included) and an
    engine-side map job; ``status --json`` shows parameters and outputs."""
    out = tmp_path / "out"
    workflow = {"jobs": [
        _outputs_job("list", {"files": ["a", "b", "c"], "count": 3}),
        {"id": "show", "command": ["sh", "-c", 'echo "$@" > "$0"', str(out / "show.txt"),
                                   "%(files)s", "n=%(n)s", "second=%(second)s",
                                   "all-but=%(rest)s"],
         "parameters": {"files": [], "n": 0, "second": None, "rest": None},
         "links": {"files": {"job": "list", "output": "files"},
                   "n": {"job": "list", "output": "count"},
                   "second": {"job": "list", "output": "files", "function": "list_to_sequence",
                              "args": [1]},
                   "rest": [{"job": "list", "output": "files", "function": "list_all_but_one",
                             "args": [0]}]}},
        {"id": "split", "engine": "map", "parameters": {"inputs": []},
         "links": {"inputs": {"job": "list", "output": "files"}}},
        {"id": "third", "command": ["sh", "-c", 'cat "$SOMAWF_INPUT_PARAMS" > "$0"',
                                    str(out / "third.json")],
         "parameters": {"item": None, "kept": {"k": [1]}}, "parameters_file": True,
         "links": {"item": {"job": "split", "output": "output_2"}}},
        {"id": "first", "engine": "reduce", "parameters": {"lengths": [1], "input_0": None},
         "links": {"input_0": {"job": "split", "output": "output_0"}}},
    ]}
    out.mkdir()
    status = _run(tmp_path, workflow)
    jobs = _jobs(status)
    assert (out / "show.txt").read_text() == "a b c n=3 second=b all-but=[\"b\", \"c\"]\n"
    assert json.loads((out / "third.json").read_text()) == {
        "parameters": {"item": "c", "kept": {"k": [1]}}}
    assert jobs["list"]["outputs"] == {"files": ["a", "b", "c"], "count": 3}
    assert jobs["show"]["parameters"]["second"] == "b" and "outputs" not in jobs["show"]
    assert jobs["split"]["outputs"] == {"output_0": "a", "output_1": "b", "output_2": "c",
                                        "lengths": [3]}
    assert jobs["first"]["outputs"]["outputs"] == ["a"]
    assert {job["status"] for job in jobs.values()} == {constants.DONE}
    written = jobbridge_home / "logs" / status["id"] / "list.outputs.json"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600  # private, as all the home's files


@pytest.mark.slurm
def test_outputs_and_links_on_slurm(tmp_path: Path) -> None:
    """The same on the real Slurm: jobs on its nodes write and read the files the engine
    reads and writes in the home."""
    workflow = {"jobs": [
        _outputs_job("a", {"files": ["p", "q"]}),
        {"id": "b", "command": ["echo", "%(second)s"], "parameters": {"second": None},
         "parameters_file": True,
         "links": {"second": {"job": "a", "output": "files", "function": "list_to_sequence",
                              "args": [1]}}}]}
    status = _run(tmp_path, workflow, "--scheduler", "slurm")
    jobs = _jobs(status)
    assert jobs["a"]["outputs"] == {"files": ["p", "q"]}
    assert all(job["scheduler_job_id"].isdigit() for job in jobs.values())  # Slurm's ids
    assert jb("logs", status["id"], "b").stdout == "q\n"


def test_temporary_paths(tmp_path: Path, jobbridge_home: Path) -> None:
    """Created private when the workflow is stored, given to the commands naming them,
    removed when it is deleted; under the resource's scratch directory if it has one."""
    workflow = {"temporary_paths": {"scratch": {"suffix": ".txt"},
                                    "work": {"directory": True}},
                "jobs": [{"id": "w", "command": ["sh", "-c", 'echo temp > "$0"; ls -d "$1"',
                                                 "%(scratch)s", "%(work)s"]},
                         {"id": "r", "command": ["cat", "%(scratch)s"]}],
                "dependencies": [["w", "r"]]}
    status = _run(tmp_path, workflow)
    assert jb("logs", status["id"], "r").stdout == "temp\n"
    work = Path(jb("logs", status["id"], "w").stdout.strip())
    scratch = work.parent / (work.name.replace("work-1", "scratch-0") + ".txt")
    assert work.parent.parent == jobbridge_home / "tmp"
    assert stat.S_IMODE(work.stat().st_mode) == 0o700 and work.is_dir()
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o600 and scratch.read_text() == "temp\n"
    assert jb("delete", status["id"]).returncode == 0
    wait_for(lambda: not work.parent.exists(), 120, "the temporary paths removed")

    config = tmp_path / "jobbridge.cfg"
    config.write_text(f"[scratchy]\nscheduler_type = local_basic\n"
                      f"scratch_directory = {tmp_path / 'scratch'}\n")
    path = write_json(tmp_path / "wf.json", workflow)
    result = jb("--config", str(config), "run", str(path), "--resource", "scratchy", "--json")
    assert result.returncode == 0, result.stderr
    [folder] = (tmp_path / "scratch").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["scratch-0.txt", "work-1"]


def test_an_unwritable_scratch_directory_stores_nothing(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    config = tmp_path / "jobbridge.cfg"
    config.write_text(f"[r]\nscheduler_type = local_basic\nscratch_directory = {blocked}\n")
    path = write_json(tmp_path / "wf.json", {"temporary_paths": {"t": {}},
                                             "jobs": [{"id": "a", "command": ["ls", "%(t)s"]}]})
    line = error_line(jb("--config", str(config), "submit", str(path), "-r", "r"), 1)
    assert line.startswith(f"jobbridge: cannot create {blocked}/jobbridge-"), line
    assert jb("list", "--json").stdout.strip() == "[]"


def test_temporary_paths_disposed_of_after_their_time(tmp_path: Path) -> None:
    workflow = {"temporary_paths": {"t": {"disposal_hours": 1}},
                "jobs": [{"id": "a", "command": ["true", "%(t)s"]}]}
    status = _run(tmp_path, workflow)
    store = Store()
    [temporary] = store.temporary_paths(int(status["id"]))
    assert Path(temporary.path).exists()
    assert store.dispose_temporaries(datetime.now(UTC) + timedelta(minutes=50)) == 0
    assert store.dispose_temporaries(datetime.now(UTC) + timedelta(minutes=70)) == 1
    assert not Path(temporary.path).exists() and store.temporary_paths(int(status["id"])) == []
    store.close()


def test_missing_outputs_fail_the_job(tmp_path: Path) -> None:
    """A job that does not write the outputs it declares fails (its command exited 0: the
    end is unclear); its dependents do not run."""
    workflow = {"jobs": [{"id": "a", "command": ["true"], "outputs": ["x"]},
                         _outputs_job("b", {"y": 1}),
                         {"id": "c", "command": ["echo", "%(v)s"], "parameters": {"v": 0},
                          "links": {"v": {"job": "a", "output": "x"}}},
                         {**_outputs_job("d", {"y": 1}), "outputs": ["y", "z"]}],
                "dependencies": [["b", "d"]]}
    status = _run(tmp_path, workflow, status=1)
    jobs = _jobs(status)
    assert "unclear, exit code 0" in jb("status", status["id"]).stdout
    assert (jobs["a"]["status"], jobs["a"]["exit_status"], jobs["a"]["exit_value"]) == (
        constants.FAILED, constants.FINISHED_UNCLEAR_CONDITIONS, 0)
    assert jobs["a"]["exit_reason"].startswith("it wrote no output parameters ($SOMAWF_OUTPUT")
    assert "output 'z' is missing from its output parameters file" in jobs["d"]["exit_reason"]
    assert jobs["c"]["exit_status"] == constants.EXIT_NOTRUN
    assert jobs["b"]["status"] == constants.DONE


def test_a_failing_link_fails_its_job(tmp_path: Path) -> None:
    workflow = {"jobs": [_outputs_job("a", {"x": [1, 2]}),
                         {"id": "b", "command": ["echo", "%(v)s"], "parameters": {"v": 0},
                          "links": {"v": {"job": "a", "output": "x",
                                          "function": "list_to_sequence", "args": [5]}}},
                         {"id": "c", "command": ["true"]}],
                "dependencies": [["b", "c"]]}
    jobs = _jobs(_run(tmp_path, workflow, status=1))
    assert (jobs["b"]["status"], jobs["b"]["exit_status"]) == (constants.FAILED,
                                                                constants.EXIT_ABORTED)
    assert jobs["b"]["exit_reason"] == ("link v <- a.x (list_to_sequence): IndexError: list "
                                        "index out of range")
    assert jobs["c"]["exit_status"] == constants.EXIT_NOTRUN


def test_restart_links_again_from_the_first_values(tmp_path: Path) -> None:
    """A restarted job gets its links applied to its initial parameters, not to the values
    of its first run (an append is not made twice)."""
    marker = tmp_path / "second time"
    workflow = {"jobs": [_outputs_job("a", {"x": "item"}),
                         {"id": "b", "command": ["sh", "-c", f'echo "$0" >> "{tmp_path}/b"; '
                                                 f'[ -e "{marker}" ]', "v=%(v)s"],
                          "parameters": {"v": ["first"]},
                          "links": {"v": {"job": "a", "output": "x",
                                          "function": "append_to_list"}}}]}
    status = _run(tmp_path, workflow, status=1)
    marker.touch()
    assert jb("restart", status["id"]).returncode == 0
    assert jb("wait", status["id"], "--timeout", "120").returncode == 0
    assert (tmp_path / "b").read_text() == 'v=["first", "item"]\n' * 2
    assert _jobs(status_json(status["id"]))["b"]["parameters"] == {"v": ["first", "item"]}


@pytest.mark.parametrize(("edit", "message"), [
    ({"command": ["echo", "%(x)s"], "parameters": {}},
     "jobs[1].command[1]: unknown parameter 'x' (parameters: none; temporary paths: t)"),
    ({"parameters": [1]}, "jobs[1].parameters: must be an object of values by name"),
    ({"parameters": {"a(b": 1}}, "jobs[1].parameters.a(b: a name must be non-empty"),
    ({"outputs": "x"}, "jobs[1].outputs: must be a list of distinct output names"),
    ({"parameters_file": "yes"}, "jobs[1].parameters_file: must be true or false"),
    ({"parameters": {"v": 0}, "links": {"v": {"job": "zz", "output": "v"}}},
     "jobs[1].links.v: unknown job 'zz'"),
    ({"parameters": {"v": 0}, "links": {"v": {"job": "plain", "output": "v"}}},
     "jobs[1].links.v: job 'plain' has no outputs"),
    ({"parameters": {"v": 0}, "links": {"v": {"job": "a", "output": "nope"}}},
     "jobs[1].links.v: job 'a' has no output 'nope' (outputs: v)"),
    ({"links": {"v": {"job": "a", "output": "v"}}},
     "jobs[1].links.v: 'v' is not a parameter of the job"),
    ({"parameters": {"v": 0}, "links": {"v": {"job": "a", "output": "v", "function": "f"}}},
     "jobs[1].links.v.function: unknown link function 'f'"),
    ({"parameters": {"v": 0}, "links": {"v": [{"job": "a", "output": "v", "colour": 1}]}},
     "jobs[1].links.v[0]: unknown key 'colour'"),
    ({"parameters": {"v": 0}, "outputs": ["v"], "links": {"v": {"job": "b", "output": "v"}}},
     "jobs[1].links.v: a job cannot link to its own outputs"),
    ({"engine": "zap"}, "jobs[1].engine: unknown engine-side job 'zap'"),
    ({"engine": "map", "command": ["true"]},
     "jobs[1].command: a barrier or engine-side job has no command"),
    ({"parameters": {"t": 1}}, "jobs[1].parameters.t: 't' is a temporary path"),
])
def test_bad_input_is_one_line_naming_the_place(tmp_path: Path, edit: dict[str, Any],
                                                message: str) -> None:
    job = {"id": "b", "command": ["true"], **edit}
    if "engine" in edit and "command" not in edit:
        del job["command"]
    workflow = {"temporary_paths": {"t": {}},
                "jobs": [_outputs_job("a", {"v": 1}), job, {"id": "plain", "command": ["true"]}]}
    path = write_json(tmp_path / "wf.json", workflow)
    line = error_line(jb("run", str(path)))
    assert f"{path}: {message}" in line, line


def test_links_make_dependencies_and_cycles_are_refused(tmp_path: Path) -> None:
    workflow = {"jobs": [{**_outputs_job("a", {"v": 1}), "parameters": {"w": 0},
                          "links": {"w": {"job": "b", "output": "w"}}},
                         {**_outputs_job("b", {"w": 1}), "parameters": {"v": 0},
                          "links": {"v": {"job": "a", "output": "v"}}}]}
    path = write_json(tmp_path / "wf.json", workflow)
    assert "dependencies: cycle" in error_line(jb("run", str(path)))
    workflow["temporary_paths"] = {"t": {"colour": 1}}
    write_json(path, workflow)
    assert "temporary_paths.t: unknown key 'colour'" in error_line(jb("run", str(path)))


# --- durability ----------------------------------------------------------------------------


def _submit(tmp_path: Path, workflow: dict[str, Any], config: str) -> str:
    (tmp_path / "jobbridge.cfg").write_text(config)
    path = write_json(tmp_path / "wf.json", workflow)
    result = jb("--config", str(tmp_path / "jobbridge.cfg"), "submit", str(path),
                "--resource", "one")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _linked_pair(tmp_path: Path, a_waits: str = "true") -> list[dict[str, Any]]:
    """``a`` (after ``a_waits``) outputs ``value``; ``b`` writes it to b.txt; both log a line."""
    log = tmp_path / "log"
    return [_outputs_job("a", {"value": "linked-42"}, f'echo a >> "{log}"; {a_waits}',
                         priority=10),
            {"id": "b", "command": ["sh", "-c", f'echo b >> "{log}"; echo "$0" > '
                                    f'"{tmp_path}/b.txt"', "%(value)s"],
             "parameters": {"value": None}, "links": {"value": {"job": "a", "output": "value"}}}]


def _job_status(workflow_id: str) -> dict[str, str]:
    return {job["id"]: job["status"] for job in status_json(workflow_id)["jobs"]}


def _stored(home: Path, workflow_id: str) -> dict[str, tuple[str, str | None]]:
    with closing(sqlite3.connect(home / "jobbridge.db")) as db:
        rows = db.execute("SELECT job_id, status, outputs FROM jobs WHERE workflow_id = ?",
                          (int(workflow_id),)).fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def test_engine_killed_between_a_jobs_end_and_its_dependents_start(
        tmp_path: Path, jobbridge_home: Path) -> None:
    """``a`` ended and its outputs are stored while ``b`` waits for room (one job at a time,
    a blocker running): the engine is SIGKILLed; the next engine gives ``b`` the linked
    value, and ``b`` runs exactly once."""
    release = tmp_path / "release"
    blocker = {"id": "blocker", "priority": 5, "command": [
        "sh", "-c", f'echo blocker >> "{tmp_path}/log"; '
        f'while [ ! -e "{release}" ]; do sleep 0.1; done']}
    workflow_id = _submit(tmp_path, {"jobs": [*_linked_pair(tmp_path), blocker]},
                          "[one]\nscheduler_type = local_basic\nmax_job_running = 1\n")
    wait_for(lambda: _job_status(workflow_id)["blocker"] == constants.RUNNING, 180,
             "a done, the blocker running")
    assert _job_status(workflow_id)["b"] == constants.NOT_SUBMITTED
    assert kill_engines(jobbridge_home) == 1
    stored = _stored(jobbridge_home, workflow_id)  # as the next engine finds it
    assert stored["a"][0] == constants.DONE
    assert json.loads(stored["a"][1] or "null") == {"value": "linked-42"}
    assert stored["b"] == (constants.NOT_SUBMITTED, None)
    release.touch()
    assert jb("wait", workflow_id, "--timeout", "180", timeout=240).returncode == 0
    assert (tmp_path / "b.txt").read_text() == "linked-42\n"
    assert Counter((tmp_path / "log").read_text().split()) == {"a": 1, "blocker": 1, "b": 1}


def test_engine_killed_before_a_job_ends(tmp_path: Path, jobbridge_home: Path) -> None:
    """The engine dies while ``a`` runs; ``a`` ends meanwhile: the next engine reads its
    outputs file, and ``b`` gets the value, once."""
    release = tmp_path / "release"
    workflow_id = _submit(tmp_path, {"jobs": _linked_pair(
        tmp_path, f'while [ ! -e "{release}" ]; do sleep 0.1; done')},
        "[one]\nscheduler_type = local_basic\n")
    wait_for(lambda: _job_status(workflow_id)["a"] == constants.RUNNING, 180, "a running")
    assert kill_engines(jobbridge_home) == 1
    release.touch()
    outputs = jobbridge_home / "logs" / workflow_id / "a.outputs.json"
    wait_for(outputs.exists, 120, "a's outputs file")
    assert _stored(jobbridge_home, workflow_id)["a"] == (constants.RUNNING, None)
    assert jb("wait", workflow_id, "--timeout", "180", timeout=240).returncode == 0
    assert (tmp_path / "b.txt").read_text() == "linked-42\n"
    assert Counter((tmp_path / "log").read_text().split()) == {"a": 1, "b": 1}


def test_a_home_of_schema_1_is_migrated(jobbridge_home: Path) -> None:
    """A home written before output parameters existed gets their columns; its workflows
    read as before."""
    path = jobbridge_home / "jobbridge.db"
    with closing(sqlite3.connect(path)) as db:
        db.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1'), ('home_token', 'abcdef');
            CREATE TABLE workflows (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT,
                resource TEXT NOT NULL, scheduler_type TEXT NOT NULL, options TEXT NOT NULL,
                status TEXT NOT NULL, submission_date TEXT NOT NULL, ending_date TEXT,
                engine TEXT, request TEXT);
            CREATE TABLE jobs (workflow_id INTEGER NOT NULL, idx INTEGER NOT NULL,
                job_id TEXT NOT NULL, name TEXT, hidden INTEGER NOT NULL DEFAULT 0,
                spec TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL,
                exit_status TEXT, exit_value INTEGER, term_sig INTEGER, resource_usage TEXT,
                exit_reason TEXT, scheduler_job_id TEXT, submission_tag TEXT,
                attempt INTEGER NOT NULL DEFAULT 0, submission_date TEXT, execution_date TEXT,
                ending_date TEXT, PRIMARY KEY (workflow_id, idx)) WITHOUT ROWID;
            CREATE TABLE dependencies (workflow_id INTEGER NOT NULL, before_idx INTEGER NOT NULL,
                after_idx INTEGER NOT NULL);
            INSERT INTO workflows VALUES (1, 'old', 'localhost', 'local_basic', '{}',
                'workflow_done', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:01+00:00',
                NULL, NULL);
            INSERT INTO jobs (workflow_id, idx, job_id, spec, status, exit_status, exit_value)
                VALUES (1, 0, 'a', '{"command":["true"]}', 'done', 'finished_regularly', 0);
        """)
    store = Store()
    [job] = store.jobs(1)
    assert (job.job_id, job.status, job.spec.command, job.outputs) == ("a", "done", ["true"],
                                                                       None)
    assert store.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[
        0] == str(SCHEMA_VERSION) == "3"  # 2 -> 3: retries (test_retry.py)
    store.close()
    assert status_json("1")["jobs"][0]["status"] == constants.DONE


def test_the_python_api(tmp_path: Path) -> None:
    """jobbridge.api: parameters, outputs, links (to Job objects), engine-side jobs and
    temporary paths."""
    from jobbridge.api import Job, Link, Workflow, WorkflowController

    listing = Job(["sh", "-c", WRITE, "sh", json.dumps({"files": ["p", "q"]})],
                  outputs=["files"])
    split = Job(None, engine="leave_one_out", parameters={"inputs": [], "index": 0},
                links={"inputs": Link(listing, "files")})
    use = Job(["sh", "-c", 'echo "$@" > "$0"', str(tmp_path / "use.txt"), "%(test)s",
               "%(train)s", "%(t)s"], parameters={"test": None, "train": []},
              links={"test": [Link(split, "test")], "train": Link(split, "train")})
    controller = WorkflowController()
    workflow_id = controller.submit(Workflow([listing, split, use],
                                             temporary_paths={"t": {"suffix": ".x"}}))
    status = controller.wait(workflow_id, timeout=180)
    assert {job["status"] for job in status["jobs"]} == {constants.DONE}
    test, train, temporary = (tmp_path / "use.txt").read_text().split()
    assert (test, train) == ("p", "q") and temporary.endswith("t-0.x")
    controller.close()


def test_the_example(tmp_path: Path) -> None:
    """examples/dynamic runs as its README says."""
    import shutil

    example = tmp_path / "dynamic"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "dynamic", example)
    result = jb("run", str(example / "pipeline.json"), timeout=300)
    assert result.returncode == 0, result.stderr
    words = len((example / "input.txt").read_text().split())
    assert (example / "result.txt").read_text() == f"{words} words in 3 chunks\n"
