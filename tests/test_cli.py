"""The command line of docs/format.md, driven as a user does: real processes, exit codes,
one-line errors, JSON objects with exactly the documented keys."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from jbcli import (
    JOBBRIDGE,
    error_line,
    finish,
    jb,
    jb_start,
    job,
    listed,
    status_json,
    stored_rows,
    wait_for,
    write_json,
)
from jobbridge import constants

#: The keys of docs/format.md (what the Python API's status has too)
STATUS_KEYS = {"id", "name", "status", "jobs", "resource", "scheduler_type", "submission_date",
               "ending_date"}
JOB_KEYS = {"id", "name", "status", "exit_status", "exit_value", "term_sig", "resource_usage",
            "scheduler_job_id", "submission_date", "execution_date", "ending_date",
            "exit_reason", "attempts", "retries", "retry_at"}
LIST_KEYS = {"id", "name", "status", "submission_date", "counts"}


def _iso(text: str) -> datetime:
    """An ISO 8601 date with its UTC offset."""
    date = datetime.fromisoformat(text)
    assert date.tzinfo is not None, text
    return date


def _ok(tmp_path: Path, name: str = "ok") -> Path:
    return write_json(tmp_path / f"{name}.json", {"name": name, "jobs": [
        job("a", "echo out-a; echo err-a >&2", name="first job"), job("b", "echo b")],
        "dependencies": [["a", "b"]]})


def _failing(tmp_path: Path) -> Path:
    return write_json(tmp_path / "failing.json", {"jobs": [
        job("good", "true"), job("bad", "exit 3"), job("after", "true")],
        "dependencies": [["bad", "after"]]})


def _sleeper(seconds: str) -> list[psutil.Process]:
    """Live processes running ``sleep SECONDS`` (a unique duration marks a test's job)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if (process.info["cmdline"] == ["sleep", seconds]
                and process.info["status"] != psutil.STATUS_ZOMBIE):
            found.append(process)
    return found


def _job_status(workflow_id: str, job_id: str) -> str:
    jobs = {j["id"]: j for j in status_json(workflow_id)["jobs"]}
    return str(jobs[job_id]["status"])


# --- run -------------------------------------------------------------------------------------


def test_run_exit_codes(tmp_path: Path) -> None:
    """run: 0 when every job succeeds, 1 when one fails, 2 on bad input."""
    assert jb("run", str(_ok(tmp_path))).returncode == 0
    failed = jb("run", str(_failing(tmp_path)))
    assert failed.returncode == 1, failed.stderr
    assert "bad: exit code 3" in failed.stderr and "after: not run" in failed.stderr
    bad = write_json(tmp_path / "bad.json", {"jobs": [{"id": "x", "command": []}]})
    assert "jobs[0].command" in error_line(jb("run", str(bad)), 2)


def test_run_json_and_status_json_have_exactly_the_spec_keys(tmp_path: Path) -> None:
    """run --json prints the status object: the keys of docs/format.md only, string ids,
    ISO 8601 dates."""
    result = jb("run", str(_ok(tmp_path)), "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert set(printed) == STATUS_KEYS
    assert printed["id"] == "1" and printed["name"] == "ok"
    assert (printed["resource"], printed["scheduler_type"]) == ("localhost", "local_basic")
    assert _iso(printed["submission_date"]) <= _iso(printed["ending_date"])
    assert printed["status"] == constants.WORKFLOW_DONE
    assert [j["id"] for j in printed["jobs"]] == ["a", "b"]
    for entry in printed["jobs"]:
        assert set(entry) == JOB_KEYS
        assert entry["status"] == constants.DONE
        assert entry["exit_status"] == constants.FINISHED_REGULARLY and entry["exit_value"] == 0
        assert isinstance(entry["scheduler_job_id"], str)
        submitted, started, ended = (_iso(entry[k]) for k in
                                     ("submission_date", "execution_date", "ending_date"))
        assert submitted <= started <= ended
        assert entry["exit_reason"] is None
    assert printed["jobs"][0]["name"] == "first job"
    assert status_json("1") == printed
    assert status_json() == printed  # default: the latest workflow


def test_list_json_shape_and_counts(tmp_path: Path) -> None:
    """list --json: one object per workflow with the documented keys and job counts per status."""
    assert listed() == []
    jb("run", str(_ok(tmp_path)))
    jb("run", str(_failing(tmp_path)))
    workflows = listed()
    assert [w["id"] for w in workflows] == ["1", "2"]
    for entry in workflows:
        assert set(entry) == LIST_KEYS
        assert entry["status"] == constants.WORKFLOW_DONE
        _iso(entry["submission_date"])
    assert workflows[0]["name"] == "ok" and workflows[1]["name"] is None
    assert workflows[0]["counts"] == {constants.DONE: 2}
    assert workflows[1]["counts"] == {constants.DONE: 1, constants.FAILED: 2}
    human = jb("list")
    assert human.returncode == 0 and human.stdout.splitlines()[0].split()[:3] == [
        "ID", "NAME", "STATUS"]


def test_failures_are_easy_to_see(tmp_path: Path) -> None:
    """A workflow with failed jobs: list says how many failed, status exits 1 and says
    exit code 3 and why the dependent job did not run; a successful one exits 0."""
    assert jb("run", str(_ok(tmp_path))).returncode == 0
    assert jb("run", str(_failing(tmp_path))).returncode == 1
    header, *rows = jb("list").stdout.splitlines()
    column = slice(header.index("STATUS"), header.index("SUBMITTED"))
    assert [row[column].strip() for row in rows] == ["done", "done, 2 failed"], rows
    shown = jb("status", "2")
    assert shown.returncode == 1, shown.stderr
    table = {line.split()[0]: line for line in shown.stdout.splitlines()[1:]}
    assert "exit code 3" in table["bad"] and "exit code 0" in table["good"]
    assert "not run" in table["after"] and "bad failed" in table["after"]
    as_json = jb("status", "2", "--json")
    assert as_json.returncode == 1
    jobs = {j["id"]: j for j in json.loads(as_json.stdout)["jobs"]}
    assert jobs["after"]["exit_reason"] == "bad failed"
    assert (jobs["bad"]["exit_value"], jobs["bad"]["exit_reason"]) == (3, None)
    assert jb("status", "1").returncode == 0


def test_exit_codes_are_documented() -> None:
    """--help and the README list the exit codes: 1 a job failed, 124 wait ran out."""
    shown = jb("--help").stdout
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for text in (shown, readme):
        assert "124" in text and "130" in text and "a job failed" in text


# --- submit, wait, logs ----------------------------------------------------------------------


def test_submit_prints_the_id_and_wait_gives_the_outcome(tmp_path: Path) -> None:
    """submit prints only the new id; wait exits 0 when all succeeded, 1 otherwise."""
    first = jb("submit", str(_ok(tmp_path)))
    second = jb("submit", str(_failing(tmp_path)))
    assert (first.returncode, first.stdout, second.stdout) == (0, "1\n", "2\n"), first.stderr
    assert jb("wait", "1").returncode == 0
    failed = jb("wait", "2")
    assert failed.returncode == 1 and "bad: exit code 3" in failed.stderr
    assert "no workflow 7" in error_line(jb("wait", "7"), 2)
    assert "workflow ids are numbers" in error_line(jb("status", "abc"), 2)
    huge = "9" * 25  # past SQLite's integers: was an OverflowError's traceback
    assert f"no workflow {huge}" in error_line(jb("status", huge), 2)


def test_logs_prints_stdout_and_stderr(tmp_path: Path) -> None:
    """logs WF JOB prints the job's stdout byte for byte; --stderr its stderr."""
    jb("run", str(_ok(tmp_path)))
    out = jb("logs", "1", "a")
    assert (out.returncode, out.stdout) == (0, "out-a\n")
    err = jb("logs", "1", "a", "--stderr")
    assert (err.returncode, err.stdout) == (0, "err-a\n")
    assert "has no job 'zz'" in error_line(jb("logs", "1", "zz"), 2)


def test_wait_timeout_has_its_own_exit_code(tmp_path: Path) -> None:
    """wait --timeout SECONDS that runs out exits 124 (as timeout(1)), not 1 (a job
    failed), and leaves the workflow running."""
    duration = "30.4127"
    path = write_json(tmp_path / "wf.json", {"jobs": [{"id": "long",
                                                       "command": ["sleep", duration]}]})
    workflow_id = jb("submit", str(path)).stdout.strip()
    try:
        line = error_line(jb("wait", workflow_id, "--timeout", "0.5"), 124)
        assert "still running after 0.5 s" in line
        assert _job_status(workflow_id, "long") in (constants.QUEUED_ACTIVE, constants.RUNNING,
                                                    constants.SUBMISSION_PENDING,
                                                    constants.NOT_SUBMITTED)
    finally:
        jb("stop", workflow_id)
    assert jb("wait", workflow_id, "--timeout", "20").returncode == 1
    assert "seconds" in jb("wait", "--help").stdout


def test_logs_say_why_there_is_nothing(tmp_path: Path) -> None:
    """logs of a job that never ran says so (and why); of an unknown workflow, that there
    is no such workflow."""
    assert jb("run", str(_failing(tmp_path))).returncode == 1
    line = error_line(jb("logs", "1", "after"), 1)
    assert "job 'after' never ran" in line and "bad failed" in line
    assert "no workflow 99" in error_line(jb("logs", "99", "p1"), 2)


def test_logs_of_a_joined_job(tmp_path: Path) -> None:
    """join_stderrout: both streams in logs, and --stderr says why it has nothing."""
    path = write_json(tmp_path / "wf.json", {"jobs": [
        job("j", "echo one; echo two >&2", join_stderrout=True)]})
    jb("run", str(path))
    assert jb("logs", "1", "j").stdout == "one\ntwo\n"
    assert "joins stderr into stdout" in error_line(jb("logs", "1", "j", "--stderr"), 2)


# --- stop, restart, delete -------------------------------------------------------------------


def test_stop_kills_the_running_job_and_ends_the_workflow(tmp_path: Path) -> None:
    """stop: the running job ends killed_by_user, its dependents are not run, the workflow
    is stopped and its process is gone."""
    duration = "30.1731"
    path = write_json(tmp_path / "wf.json", {"jobs": [
        {"id": "long", "command": ["sleep", duration]}, job("next", "true")],
        "dependencies": [["long", "next"]]})
    workflow_id = jb("submit", str(path)).stdout.strip()
    wait_for(lambda: _job_status(workflow_id, "long") == constants.RUNNING, what="running")
    stopped = jb("stop", workflow_id)
    assert stopped.returncode == 0 and "stop requested" in stopped.stdout
    assert jb("wait", workflow_id, "--timeout", "20").returncode == 1
    status = status_json(workflow_id)
    assert status["status"] == constants.WORKFLOW_STOPPED
    jobs = {j["id"]: j for j in status["jobs"]}
    assert (jobs["long"]["status"], jobs["long"]["exit_status"]) == (
        constants.FAILED, constants.USER_KILLED)
    assert jobs["next"]["exit_status"] == constants.EXIT_NOTRUN
    wait_for(lambda: not _sleeper(duration), timeout=5, what="the job's process to end")


def test_restart_reruns_what_was_stopped_and_its_dependents(tmp_path: Path) -> None:
    """restart after stop: the stopped job and its dependents run again, to success."""
    runs = tmp_path / "runs"
    path = write_json(tmp_path / "wf.json", {"jobs": [
        job("first", "true"), job("slow", f"echo run >> {runs}; sleep 1.5"),
        job("last", f"echo last >> {runs}")],
        "dependencies": [["first", "slow"], ["slow", "last"]]})
    workflow_id = jb("submit", str(path)).stdout.strip()
    wait_for(lambda: _job_status(workflow_id, "slow") == constants.RUNNING, what="running")
    assert jb("stop", workflow_id).returncode == 0
    assert jb("wait", workflow_id).returncode == 1
    restarted = jb("restart", workflow_id)
    assert restarted.returncode == 0 and "restart requested" in restarted.stdout
    assert jb("wait", workflow_id, "--timeout", "30").returncode == 0
    assert runs.read_text().split() == ["run", "run", "last"]
    jobs = status_json(workflow_id)["jobs"]
    assert [j["status"] for j in jobs] == [constants.DONE] * 3


def test_restart_reruns_a_failed_job(tmp_path: Path) -> None:
    """restart after a failure: the failed job and the job it blocked run; the rest not."""
    count = tmp_path / "count"
    path = write_json(tmp_path / "wf.json", {"jobs": [
        job("ok", f"echo ok >> {count}"),
        job("flaky", f"echo flaky >> {count}; test -e {tmp_path}/fixed || exit 4"),
        job("after", f"echo after >> {count}")],
        "dependencies": [["ok", "flaky"], ["flaky", "after"]]})
    assert jb("run", str(path)).returncode == 1
    (tmp_path / "fixed").touch()
    assert jb("restart", "1").returncode == 0
    assert jb("wait", "1", "--timeout", "30").returncode == 0
    assert count.read_text().split() == ["ok", "flaky", "flaky", "after"]


def test_delete_a_running_workflow(tmp_path: Path, jobbridge_home: Path) -> None:
    """delete: the job is killed, the workflow and its logs are gone, status says so (2)."""
    duration = "30.2917"
    path = write_json(tmp_path / "wf.json", {"jobs": [
        {"id": "long", "command": ["sleep", duration]}]})
    workflow_id = jb("submit", str(path)).stdout.strip()
    wait_for(lambda: _job_status(workflow_id, "long") == constants.RUNNING, what="running")
    assert (jobbridge_home / "logs" / workflow_id).is_dir()
    assert jb("delete", workflow_id).returncode == 0
    wait_for(lambda: jb("status", workflow_id).returncode == 2, what="the workflow to go")
    assert f"no workflow {workflow_id}" in error_line(jb("status", workflow_id), 2)
    assert listed() == []
    assert stored_rows(jobbridge_home) == (0, 0, 0)
    assert not (jobbridge_home / "logs" / workflow_id).exists()
    wait_for(lambda: not _sleeper(duration), timeout=5, what="the job's process to end")


def test_requests_on_unknown_workflows() -> None:
    """stop/restart/delete of a workflow that does not exist: exit 2, one line."""
    for action in ("stop", "restart", "delete"):
        assert "no workflow 42" in error_line(jb(action, "42"), 2)


# --- schedulers, check, configuration ---------------------------------------------------------


def test_schedulers_json() -> None:
    """schedulers --json lists every built-in type with whether it can work here."""
    result = jb("schedulers", "--json")
    assert result.returncode == 0, result.stderr
    table = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert {"local_basic", "slurm", "pbspro", "drmaa", "mpi"} <= set(table)
    assert table["local_basic"]["enabled"] is True
    assert all(isinstance(entry["enabled"], bool) for entry in table.values())


def test_check_local_basic() -> None:
    """check --scheduler local_basic runs test jobs and says ok for each check."""
    result = jb("check", "--scheduler", "local_basic")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("ok") for line in lines), result.stdout
    assert "exit codes are reported" in result.stdout


def test_unknown_scheduler_type(tmp_path: Path, jobbridge_home: Path) -> None:
    """--scheduler nope: exit 2 and one line naming the known types, for every command."""
    path = _ok(tmp_path)
    processes = [jb_start(*args, "--scheduler", "nope")
                 for args in (["run", str(path)], ["submit", str(path)], ["check"])]
    for process in processes:
        line = error_line(finish(process), 2)
        assert "unknown scheduler type 'nope'" in line
        assert "local_basic" in line and "slurm" in line
    assert stored_rows(jobbridge_home) == (0, 0, 0)


def test_configuration_file_resource(tmp_path: Path) -> None:
    """A resource of $JOBBRIDGE_CONFIG (case-insensitive keys) is used by --resource."""
    config = tmp_path / "jobbridge.cfg"
    config.write_text("[other]\nscheduler_type = slurm\n\n"
                      "[here]\nScheduler_Type = local_basic\nMAX_JOB_RUNNING = 1\n")
    marks = tmp_path / "marks"
    path = write_json(tmp_path / "wf.json", {"jobs": [
        job(f"j{i}", f"echo start >> {marks}; sleep 0.2; echo end >> {marks}")
        for i in range(3)]})
    env = {"JOBBRIDGE_CONFIG": str(config)}
    result = jb("run", str(path), "--resource", "here", env=env)
    assert result.returncode == 0, result.stderr
    assert marks.read_text().split() == ["start", "end"] * 3  # max_job_running = 1
    shown = jb("status", "1").stdout.splitlines()[0]
    assert "on here (local_basic)" in shown
    assert jb("check", "-r", "here", env=env).returncode == 0


@pytest.mark.parametrize("config, resource, fragment", [
    ("[here]\nscheduler_type = local_basic\ncpu_nb = many\n", "here",
     "option cpu_nb = 'many' is not a whole number"),
    ("[here]\nmax_job_in_queue = -2\n", "here", "max_job_in_queue = '-2' is not a number >= 0"),
    ("[here]\nscheduler_interval = soon\n", "here", "scheduler_interval = 'soon'"),
    ("[here]\ncontainer_command = docker run 'unclosed\n", "here", "container_command"),
    ("[here]\nscheduler_type = nope\n", "here", "unknown scheduler type 'nope'"),
    ("[here]\nscheduler_type = local_basic\n", "there",
     "unknown resource 'there' (resources: here)"),
    ("scheduler_type = local_basic\n", "here",
     "jobbridge.cfg:1: no [resource] section header before 'scheduler_type = local_basic'"),
    ("[here]\nscheduler_type = local_basic\njunk line\n", "here",
     "jobbridge.cfg:3: cannot parse 'junk line'"),
    ("[here]\nscheduler_type = local_basic\nscheduler_type = slurm\n", "here",
     "option 'scheduler_type' in section 'here' already exists"),
    ("[here]\nscheduler_type = local_basic\ncpu_nbr = 2\n", "here",
     "jobbridge.cfg: [here]: unknown key 'cpu_nbr' (local_basic keys: container_command, "
     "cpu_nb, enforce_memory, max_cpu_nb, "),
    ("[here]\nscheduler_type = slurm\nmpi_max_attempts = 2\n", "here",
     "[here]: unknown key 'mpi_max_attempts' (slurm keys: "),
    ("[DEFAULT]\nschedulr_interval = 2\n[here]\nscheduler_type = local_basic\n", "here",
     "jobbridge.cfg: [DEFAULT]: unknown key 'schedulr_interval' (keys: "),
], ids=["int", "negative", "float", "words", "type", "resource", "no-section", "junk-line",
        "duplicate", "unknown-key", "other-scheduler-key", "unknown-default-key"])
def test_bad_configuration_is_refused(tmp_path: Path, jobbridge_home: Path, config: str,
                                      resource: str, fragment: str) -> None:
    """A bad configuration file or value: run and submit exit 2, one line, nothing stored."""
    path = tmp_path / "jobbridge.cfg"
    path.write_text(config)
    env = {"JOBBRIDGE_CONFIG": str(path)}
    workflow = str(_ok(tmp_path))
    processes = [jb_start(command, workflow, "--resource", resource, env=env)
                 for command in ("run", "submit")]
    for process in processes:
        line = error_line(finish(process), 2)
        assert fragment in line, line
    assert stored_rows(jobbridge_home) == (0, 0, 0)


def test_missing_configuration_file(tmp_path: Path) -> None:
    """$JOBBRIDGE_CONFIG naming no file is an error, not a silent default."""
    env = {"JOBBRIDGE_CONFIG": str(tmp_path / "none.cfg")}
    assert "does not exist" in error_line(jb("run", str(_ok(tmp_path)), env=env), 2)


def test_no_configuration_means_localhost(tmp_path: Path) -> None:
    """Without a configuration file, resource localhost runs on local_basic."""
    assert jb("run", str(_ok(tmp_path)), "--resource", "localhost").returncode == 0
    assert "on localhost (local_basic)" in jb("status").stdout
    assert "unknown resource 'cluster'" in error_line(
        jb("run", str(_ok(tmp_path)), "--resource", "cluster"), 2)


def test_run_says_which_resource_and_a_file_does_not_change_the_default(tmp_path: Path
                                                                       ) -> None:
    """With a configuration file, run without --resource uses localhost unless the
    file's [DEFAULT] section sets default_resource; run says which, on stderr."""
    config = tmp_path / "jobbridge.cfg"
    config.write_text("[first]\nscheduler_type = local_basic\ncpu_nb = 1\n\n"
                      "[here]\nscheduler_type = local_basic\n")
    env = {"JOBBRIDGE_CONFIG": str(config)}
    result = jb("run", str(_ok(tmp_path)), env=env)
    assert result.returncode == 0, result.stderr
    assert "jobbridge: running on resource 'localhost' (local_basic)\n" in result.stderr
    assert "on localhost (local_basic)" in jb("status", "1").stdout
    config.write_text("[DEFAULT]\ndefault_resource = here\nscheduler_interval = 0.1\n\n"
                      + config.read_text())
    result = jb("run", str(_ok(tmp_path)), env=env)
    assert result.returncode == 0, result.stderr
    assert "jobbridge: running on resource 'here' (local_basic)\n" in result.stderr
    assert "on here (local_basic)" in jb("status", "2").stdout
    result = jb("run", str(_ok(tmp_path)), "--resource", "first", env=env)
    assert "jobbridge: running on resource 'first' (local_basic)\n" in result.stderr
    config.write_text(config.read_text().replace("= here", "= nowhere"))
    line = error_line(jb("run", str(_ok(tmp_path)), env=env), 2)
    assert "default_resource 'nowhere' is not a resource of the file (resources: first, here)" \
        in line


def test_a_wrong_path_is_reported_with_its_key(tmp_path: Path) -> None:
    """stdout_file in a missing folder, a missing stdin: the reason names the key and
    the path (relative to the workflow file), not the program."""
    path = write_json(tmp_path / "paths.json", {"jobs": [
        {"id": "out", "command": ["echo", "hi"], "stdout_file": "nodir/out.txt"},
        {"id": "in", "command": ["cat"], "stdin": "missing.txt"}]})
    assert jb("run", str(path)).returncode == 1
    shown = jb("status").stdout
    assert f"stdout_file: cannot open {tmp_path}/nodir/out.txt: No such file or directory" \
        in shown, shown
    assert f"stdin: cannot open {tmp_path}/missing.txt: No such file or directory" in shown
    assert "cannot start" not in shown


def test_a_job_needing_more_cpus_than_the_resource_has_is_refused(
        tmp_path: Path, jobbridge_home: Path) -> None:
    """cpus: 64 on a 2-slot resource: refused at submission, one line naming the job
    and the numbers, exit 2, nothing stored."""
    config = tmp_path / "jobbridge.cfg"
    config.write_text("[localhost]\ncpu_nb = 2\n")
    path = write_json(tmp_path / "wide.json", {"jobs": [
        job("narrow", "true", resources={"cpus": 2}), job("wide", "true", resources={"cpus": 64})]})
    env = {"JOBBRIDGE_CONFIG": str(config)}
    for command in ("run", "submit"):
        line = error_line(jb(command, str(path), env=env), 2)
        assert "job 'wide' needs 64 cpus: resource 'localhost' has 2" in line, line
    assert stored_rows(jobbridge_home) == (0, 0, 0)


def test_two_runs_at_once_share_the_resource_slots(tmp_path: Path) -> None:
    """Two `jobbridge run` at once on one home and resource (cpu_nb = 2), 4 x sleep 2
    each: at most 2 jobs run at any moment (timestamps the jobs write themselves)."""
    config = tmp_path / "jobbridge.cfg"
    config.write_text("[localhost]\ncpu_nb = 2\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    script = 'date +%s.%N > "$1.start"; sleep 2; date +%s.%N > "$1.end"'
    runs = [jb_start("run", str(write_json(tmp_path / f"{name}.json", {"jobs": [
        {"id": f"j{i}", "command": ["sh", "-c", script, "sh", str(marks / f"{name}{i}")]}
        for i in range(4)]})), env={"JOBBRIDGE_CONFIG": str(config)}) for name in "ab"]
    for run in runs:
        result = finish(run)
        assert result.returncode == 0, result.stderr
    events = []
    for start in marks.glob("*.start"):
        events.append((float(start.read_text()), 1))
        events.append((float(start.with_suffix(".end").read_text()), -1))
    assert len(events) == 16
    running = most = 0
    for _, change in sorted(events):  # an end sorts before a start at the same instant
        running += change
        most = max(most, running)
    assert most == 2, sorted(events)


@pytest.mark.parametrize("args", [
    ["run"], ["bogus"], ["run", "f.json", "--resource", "a", "--scheduler", "b"],
    ["wait", "1", "--timeout", "soon"], ["logs", "1"], ["list", "--jsn"],
], ids=["run-no-file", "unknown-command", "exclusive", "bad-float", "logs-no-job",
        "unknown-option"])
def test_usage_errors(args: list[str]) -> None:
    """argparse errors: exit 2 and one line."""
    line = error_line(jb(*args), 2)
    assert line.startswith("jobbridge: error: ") and line.endswith("(see jobbridge --help)")


def test_bare_jobbridge_prints_usage() -> None:
    """jobbridge alone: its usage with every command, exit 2."""
    result = jb()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: jobbridge")
    for command in ("run", "submit", "status", "wait", "logs", "graph", "schedulers"):
        assert re.search(rf"^    {command}\b", result.stderr, re.MULTILINE), result.stderr


def test_every_command_and_option_is_described() -> None:
    """Each subcommand's --help starts with a one-line description; every option and
    argument has a help text."""
    from jobbridge.cli import _parser

    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        assert parser.description and "\n" not in parser.description, name
        for action in parser._actions:
            assert action.help, (name, action.dest)
        shown = jb(name, "--help")
        assert shown.returncode == 0, shown.stderr
        assert " ".join(shown.stdout.split("\n\n")[1].split()) == parser.description, name


# --- progress bar ----------------------------------------------------------------------------


def test_no_progress_bar_without_a_terminal(tmp_path: Path) -> None:
    """stderr that is not a terminal gets the summary only: no bar, no carriage return."""
    result = jb("run", str(_ok(tmp_path)))
    assert result.returncode == 0
    assert "\r" not in result.stderr and "[#" not in result.stderr and "] " not in result.stderr
    assert result.stderr == result.stderr.strip() + "\n"
    assert result.stderr.startswith("jobbridge: running on resource 'localhost' (local_basic)\n"
                                    "workflow 1: 2/2 jobs succeeded")


def _on_a_terminal(*args: str, env: dict[str, str] | None = None, timeout: float = 60
                   ) -> tuple[int, list[str]]:
    """Run ``jobbridge ARGS`` with a pty as its terminal: its exit status and the lines
    it drew (what it wrote, cut at each carriage return or newline)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its stdin, stdout and stderr
        try:
            os.execve(sys.executable, [*JOBBRIDGE, *args],
                      {**os.environ, "TERM": "dumb", **(env or {})})
        finally:
            os._exit(127)
    started = time.monotonic()
    lines: list[str] = []
    pending = ""
    while time.monotonic() - started < timeout:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096).decode()
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        *done, pending = re.split(r"[\r\n]", pending + chunk)
        lines.extend(text for text in done if text.strip())
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    if pending.strip():
        lines.append(pending)
    return os.waitstatus_to_exitcode(status), lines


def test_progress_on_a_terminal_shows_true_counts_and_time(tmp_path: Path) -> None:
    """On a terminal, run redraws one line: jobs that started count as running, and the
    elapsed time moves on while nothing else changes; the final line is full."""
    path = write_json(tmp_path / "two.json", {"jobs": [
        {"id": "a", "command": ["sleep", "3"]}, {"id": "b", "command": ["sleep", "3"]}]})
    config = tmp_path / "two-slots.cfg"
    config.write_text("[localhost]\nscheduler_type = local_basic\ncpu_nb = 2\n")
    status, lines = _on_a_terminal("run", str(path), "--resource", "localhost",
                                   env={"JOBBRIDGE_CONFIG": str(config)})
    assert status == 0, lines
    running = [text for text in lines if "running 2  queued 0  waiting 0" in text]
    assert running, lines
    assert all(len(text) < 80 for text in lines), lines  # never wraps an 80-column terminal
    # redrawn while the jobs sleep: the elapsed time (m:ss) takes several values
    elapsed = {re.search(r"\] 0/2  (\d+:\d\d)  done 0  failed 0", text) for text in running}
    assert None not in elapsed and len({m.group(1) for m in elapsed if m}) >= 2, running
    assert any(re.match(r"\[#+\] 2/2  \d+:\d\d  done 2  failed 0  running 0", text)
               for text in lines), lines
    assert any(text.startswith("workflow 1: 2/2 jobs succeeded") for text in lines), lines


def test_version() -> None:
    """--version prints the version and exits 0."""
    result = subprocess.run([sys.executable, "-m", "jobbridge", "--version"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("jobbridge ")
