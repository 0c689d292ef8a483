"""Retries, resource escalation and efficiency reports (issue 20): the workflow keys,
the policy, usage strings of every backend, then real workflows on the local
scheduler through the command line (a flaky job, a job over its walltime, an
engine killed between two attempts, stop during a retry's delay, the reports).
Slurm's OUT_OF_MEMORY and Grid Engine's h_vmem cases are in tests/schedulers."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from contextlib import closing
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from jbcli import error_line, jb, kill_engines, status_json, stored_rows, wait_for, write_json
from jobbridge import constants, retry
from jobbridge.configuration import Configuration
from jobbridge.model import EngineJob, parse_workflow
from jobbridge.report import parse_usage
from jobbridge.schedulers.batch import _merge_usage
from jobbridge.store import SCHEMA_VERSION, Store

#: A job that fails until it has run ``n`` times (a counter file), then succeeds.
FLAKY = ('n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"; '
         'echo "start $n" >> "$2"; sleep 0.3; echo "end $n" >> "$2"; [ $n -ge "$3" ]')


def flaky(job_id: str, tmp_path: Path, succeed_at: int, **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "command": ["sh", "-c", FLAKY, "flaky", str(tmp_path / f"{job_id}.n"),
                                      str(tmp_path / f"{job_id}.log"), str(succeed_at)], **extra}


def _iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _jobs(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {job["id"]: job for job in status["jobs"]}


# --- the workflow format -----------------------------------------------------------------------
def test_defaults_apply_to_every_job_and_a_job_key_wins() -> None:
    spec = parse_workflow({
        "defaults": {"retries": 2, "retry_on": ["TIMEOUT", 3], "retry_delay_s": 1.5},
        "jobs": [{"id": "a", "command": ["true"], "resources": {"memory_mb": 100},
                  "escalate": {"memory_mb": 2}},
                 {"id": "b", "command": ["true"], "retries": 0, "retry_on": [1]},
                 {"id": "gate", "barrier": True}]})
    a, b, gate = spec.jobs
    assert (a.retries, a.retry_on, a.retry_delay_s, a.escalate) == (
        2, ["TIMEOUT", 3], 1.5, {"memory_mb": 2})
    assert (b.retries, b.retry_on, b.retry_delay_s, b.escalate) == (0, [1], 1.5, None)
    assert (gate.retries, gate.retry_on) == (0, None)  # a barrier never runs


@pytest.mark.parametrize(("workflow", "place"), [
    ({"defaults": {"retries": -1}}, "defaults.retries: must be an integer from 0 to 100"),
    ({"defaults": {"retries": True}}, "defaults.retries"),
    ({"defaults": {"retry": 3}}, "defaults: unknown key 'retry'"),
    ({"defaults": ["retries"]}, "defaults: must be an object"),
    ({"defaults": {"retry_on": []}}, "defaults.retry_on: must be a non-empty list"),
    ({"jobs": [{"id": "a", "command": ["x"], "retry_on": [256]}]}, "jobs[0].retry_on"),
    ({"jobs": [{"id": "a", "command": ["x"], "retry_on": ["TIMEOUT", 1.5]}]}, "jobs[0].retry_on"),
    ({"jobs": [{"id": "a", "command": ["x"], "retry_delay_s": "5"}]}, "jobs[0].retry_delay_s"),
    ({"jobs": [{"id": "a", "command": ["x"], "retry_delay_s": -1}]}, "jobs[0].retry_delay_s"),
    ({"jobs": [{"id": "a", "command": ["x"], "escalate": 2}]}, "jobs[0].escalate: must be an"),
    ({"jobs": [{"id": "a", "command": ["x"], "resources": {"cpus": 2},
                "escalate": {"cpus": 2}}]}, "jobs[0].escalate: unknown key 'cpus'"),
    ({"jobs": [{"id": "a", "command": ["x"], "resources": {"memory_mb": 9},
                "escalate": {"memory_mb": 0.5}}]}, "jobs[0].escalate.memory_mb: must be a factor"),
    ({"jobs": [{"id": "a", "command": ["x"], "escalate": {"walltime_s": 2}}]},
     "jobs[0].escalate.walltime_s: the job sets no resources.walltime_s to escalate"),
])
def test_bad_retry_keys_are_refused_naming_the_place(tmp_path: Path, jobbridge_home: Path,
                                                      workflow: dict[str, Any], place: str
                                                      ) -> None:
    workflow.setdefault("jobs", [{"id": "a", "command": ["true"]}])
    path = write_json(tmp_path / "bad.json", workflow)
    line = error_line(jb("submit", str(path)), 2)
    assert f"{path}: {place}" in line, line
    assert stored_rows(jobbridge_home) == (0, 0, 0)


def test_unknown_resource_caps_are_refused(tmp_path: Path, jobbridge_home: Path) -> None:
    config = tmp_path / "jobbridge.cfg"
    config.write_text("[here]\nscheduler_type = local_basic\nmax_memory_mb = lots\n")
    path = write_json(tmp_path / "ok.json", {"jobs": [{"id": "a", "command": ["true"]}]})
    line = error_line(jb("submit", str(path), "-r", "here", env={"JOBBRIDGE_CONFIG": str(config)}))
    assert "max_memory_mb" in line and "lots" in line, line
    assert stored_rows(jobbridge_home) == (0, 0, 0)


# --- the policy --------------------------------------------------------------------------------
def test_which_ends_are_retried() -> None:
    job = EngineJob("j", ["x"], retries=2)
    ran = constants.FINISHED_REGULARLY
    assert retry.retryable(job, 0, ran, 1, 0, None)  # no retry_on: any failure
    assert retry.retryable(job, 1, constants.EXIT_ABORTED, None, None, "submission failed: x")
    assert not retry.retryable(job, 2, ran, 1, 0, None)  # retries used up
    assert not retry.retryable(job, 0, constants.USER_KILLED, None, 15, None)
    assert not retry.retryable(job, 0, constants.EXIT_NOTRUN, None, None, "a failed")
    job.retry_on = [3, "TIMEOUT", "node_fail", "killed by signal 9"]
    assert retry.retryable(job, 0, ran, 3, 0, None)
    assert not retry.retryable(job, 0, ran, 4, 0, None)
    assert retry.retryable(job, 0, constants.EXIT_ABORTED, None, None,
                           "TIMEOUT: killed at its time limit")
    assert retry.retryable(job, 0, constants.EXIT_ABORTED, None, None,
                           "NODE_FAIL: one of its nodes failed")  # words: any case
    assert not retry.retryable(job, 0, constants.EXIT_ABORTED, None, None,
                               "OUT_OF_MEMORY: killed for exceeding its memory")
    assert retry.retryable(job, 0, constants.FINISHED_TERM_SIG, None, 9, None)  # no reason given
    assert not retry.retryable(job, 0, constants.FINISHED_TERM_SIG, None, 15, None)
    job.retry_on = ["killed by signal"]
    assert retry.retryable(job, 0, constants.FINISHED_TERM_SIG, None, 15, None)
    assert not retry.retryable(job, 0, ran, 1, 0, None)


def test_escalation_and_backoff() -> None:
    job = EngineJob("j", ["x"], resources={"cpus": 2, "memory_mb": 1000, "walltime_s": 60},
                    retries=5, retry_delay_s=2, escalate={"memory_mb": 2, "walltime_s": 1.5})
    assert retry.attempt_resources(job, 0, {}) == job.resources
    assert retry.attempt_resources(job, 1, {}) == {"cpus": 2, "memory_mb": 2000,
                                                   "walltime_s": 90}
    assert retry.attempt_resources(job, 3, {"memory_mb": 5000}) == {
        "cpus": 2, "memory_mb": 5000, "walltime_s": 203}  # capped; 60 * 1.5**3 rounded up
    assert retry.attempt_resources(job, 1, {"memory_mb": 500})["memory_mb"] == 1000  # never less
    assert [retry.delay(job, k) for k in (1, 2, 3)] == [2, 4, 8]
    config = Configuration.from_dict("c", {"max_memory_mb": "5000", "max_walltime_s": "0"})
    assert retry.limits(config) == {"memory_mb": 5000}


# --- usage strings -------------------------------------------------------------------------------
def test_usage_of_every_backend_in_numbers_with_their_measurer() -> None:
    local = parse_usage("cput=00:01:02 mem=15616kb walltime=01:00:00 cpupercent=2 ncpus=1")
    assert (local.cpu_s, local.mem_bytes, local.wall_s) == (62, 15616 * 1024, 3600)
    exact = parse_usage("cput=00:00:01 mem=3256kb walltime=00:00:01 cpupercent=71 ncpus=1 "
                        "cpu_s=0.712 wall_s=0.830")
    assert (exact.cpu_s, exact.wall_s, exact.keys["cpu"]) == (0.712, 0.830, "cpu_s")
    # Slurm: sacct's figures, MaxRSS from the job wrapper (too short for sacct's sampling)
    slurm = _merge_usage("cput=00:00:03 walltime=00:00:04 ncpus=2 cpu_s=3.250 wall_s=4.100",
                         "cput=00:00:03 mem=2048kb walltime=00:00:04 cpupercent=80 ncpus=2 "
                         "cpu_s=3.200 wall_s=4.000")
    assert slurm is not None and slurm.endswith("wrapper=mem,cpupercent")
    usage = parse_usage(slurm)
    assert (usage.cpu_s, usage.mem_bytes, usage.wall_s) == (3.25, 2048 * 1024, 4.1)
    assert usage.source("cpu", "sacct") == usage.source("wall", "sacct") == "sacct"
    assert usage.source("mem", "sacct") == "job wrapper (wait4)"
    # PBS resources_used, and days in a duration
    pbs = parse_usage("cpupercent=0 cput=1-02:00:00 mem=3256kb ncpus=1 vmem=12mb "
                      "walltime=26:00:00")
    assert (pbs.cpu_s, pbs.mem_bytes, pbs.wall_s) == (93600, 3256 * 1024, 93600)
    # Grid Engine: h_vmem bounds virtual memory, ru_maxrss is one process's
    ge = parse_usage("cput=00:00:00 mem=4972kb walltime=00:00:01 ncpus=1 vmem=200064kb",
                     peak_memory_item="vmem")
    assert ge.mem_bytes == 200064 * 1024
    assert ge.source("mem", "qacct") == "qacct, virtual memory"
    assert parse_usage(None) == parse_usage("") == parse_usage("mem=lots cput=soon")
    assert parse_usage("mem=1.5G").mem_bytes == 1.5 * 1024**3


# --- the local machine ---------------------------------------------------------------------------
def test_a_job_failing_twice_then_succeeding_with_retries_3(tmp_path: Path) -> None:
    """Three attempts, each recorded; the dependent runs once, after the third."""
    done = tmp_path / "after.ran"
    workflow = write_json(tmp_path / "wf.json", {
        "name": "flaky", "jobs": [
            flaky("flaky", tmp_path, 3, retries=3),
            {"id": "after", "command": ["sh", "-c", f'date +%s.%N >> "{done}"']}],
        "dependencies": [["flaky", "after"]]})
    result = jb("run", str(workflow), timeout=300)
    assert result.returncode == 0, result.stderr
    jobs = _jobs(status_json("1"))
    attempts = jobs["flaky"]["attempts"]
    assert [a["exit_value"] for a in attempts] == [1, 1, 0]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["retried"] for a in attempts] == [True, True, False]
    assert len({a["scheduler_job_id"] for a in attempts}) == 3
    assert jobs["flaky"]["status"] == constants.DONE
    assert jobs["flaky"]["scheduler_job_id"] == attempts[-1]["scheduler_job_id"]
    for earlier, later in itertools.pairwise(attempts):
        assert _iso(earlier["ending_date"]) <= _iso(later["submission_date"])
    # never two attempts at once; the dependent ran once, after the last attempt
    assert (tmp_path / "flaky.log").read_text().split("\n")[:-1] == [
        "start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]
    assert len(done.read_text().split()) == 1
    assert _iso(jobs["after"]["execution_date"]) >= _iso(attempts[-1]["ending_date"])
    assert [a["attempt"] for a in jobs["after"]["attempts"]] == [1]
    table = jb("status", "1").stdout.splitlines()
    assert table[1].split()[:4] == ["JOB", "STATUS", "EXIT", "ATTEMPTS"]
    assert table[2].split()[:5] == ["flaky", "done", "exit", "code", "0"]
    assert table[2].split()[5] == "3"
    report = jb("report", "1")
    assert report.returncode == 0, report.stderr
    rows = [line.split() for line in report.stdout.splitlines()]
    assert [row[:2] for row in rows[1:5]] == [["flaky", "1"], ["flaky", "2"], ["flaky", "3"],
                                              ["after", "1"]]
    assert "(retried)" in report.stdout.splitlines()[1]
    assert "2 jobs, 4 attempts, 1 job retried, 2 failed" in report.stdout
    assert "workflow 1: 2/2 jobs succeeded, 1 retried in " in result.stderr


def test_a_job_over_its_walltime_is_retried_with_twice_the_time(tmp_path: Path) -> None:
    workflow = write_json(tmp_path / "wf.json", {"jobs": [{
        "id": "slow", "command": ["sleep", "5"], "resources": {"walltime_s": 3},
        "retries": 2, "retry_on": ["TIMEOUT"], "escalate": {"walltime_s": 2}}]})
    result = jb("run", str(workflow), timeout=300)
    assert result.returncode == 0, result.stderr
    attempts = _jobs(status_json("1"))["slow"]["attempts"]
    assert len(attempts) == 2
    first, second = attempts
    assert first["exit_reason"].startswith("TIMEOUT"), first
    assert first["requested"]["walltime_s"] == 3 and second["requested"]["walltime_s"] == 6
    assert (second["exit_status"], second["exit_value"]) == (constants.FINISHED_REGULARLY, 0)
    report = json.loads(jb("report", "1", "--json").stdout)
    used = [a["used"]["wall_s"] for a in report["jobs"][0]["attempts"]]
    assert 2.5 <= used[0] < 5 <= used[1] + 0.6, used  # killed near 3 s, then ran its 5 s


def test_retries_from_the_python_api(tmp_path: Path) -> None:
    from jobbridge.api import Job, Workflow, WorkflowController

    again = Job(flaky("again", tmp_path, 2)["command"], id="again")
    once = Job(flaky("once", tmp_path, 2)["command"], id="once", retries=0)
    controller = WorkflowController()
    try:
        workflow_id = controller.run(Workflow([again, once], defaults={"retries": 1}))
        jobs = _jobs(controller.status(workflow_id))
    finally:
        controller.close()
    assert [a["exit_value"] for a in jobs["again"]["attempts"]] == [1, 0]
    assert [a["exit_value"] for a in jobs["once"]["attempts"]] == [1]


def test_retries_used_up_fail_the_job_and_abort_its_dependents(tmp_path: Path) -> None:
    workflow = write_json(tmp_path / "wf.json", {
        "defaults": {"retries": 2},
        "jobs": [flaky("never", tmp_path, 99), flaky("other", tmp_path, 99, retry_on=[7]),
                 {"id": "after", "command": ["true"]}],
        "dependencies": [["never", "after"]]})
    result = jb("run", str(workflow), timeout=300)
    assert result.returncode == 1
    jobs = _jobs(status_json("1"))
    assert [a["exit_value"] for a in jobs["never"]["attempts"]] == [1, 1, 1]
    assert (tmp_path / "never.n").read_text().strip() == "3"
    assert [a["exit_value"] for a in jobs["other"]["attempts"]] == [1]  # 1 is not in retry_on
    assert jobs["after"]["exit_status"] == constants.EXIT_NOTRUN
    assert jobs["after"]["attempts"] == []


def test_an_engine_killed_between_attempts_resumes_with_the_next_one(
        tmp_path: Path, jobbridge_home: Path) -> None:
    """The retry's delay is stored: a new engine waits out the rest of it, submits
    attempt 2 (its tag says so) and the job never runs twice at once."""
    workflow = write_json(tmp_path / "wf.json", {"jobs": [
        flaky("flaky", tmp_path, 2, retries=2, retry_delay_s=8)]})
    submitted = jb("submit", str(workflow))
    assert submitted.returncode == 0, submitted.stderr

    def waiting() -> bool:
        job = status_json("1")["jobs"][0]
        return job["status"] == constants.NOT_SUBMITTED and job["retry_at"] is not None

    wait_for(waiting, timeout=120, what="the first attempt to fail")
    assert kill_engines(jobbridge_home) == 1
    job = status_json("1")["jobs"][0]
    retry_at = _iso(job["retry_at"])
    table = jb("status", "1").stdout.splitlines()
    assert table[2].split()[:3] == ["flaky", "not_submitted", "2/3"], table
    assert f"retry 1 of 2 at {job['retry_at'][11:19]} after exit code 1" in table[2]
    result = jb("wait", "1", "--timeout", "240", timeout=300)  # starts an engine
    assert result.returncode == 0, result.stderr
    first, second = status_json("1")["jobs"][0]["attempts"]
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert (first["exit_value"], second["exit_value"]) == (1, 0)
    assert _iso(second["submission_date"]) >= retry_at - 0.01
    assert _iso(second["submission_date"]) - _iso(first["ending_date"]) >= 7.9
    assert (tmp_path / "flaky.log").read_text().split("\n")[:-1] == [
        "start 1", "end 1", "start 2", "end 2"]
    with closing(sqlite3.connect(jobbridge_home / "jobbridge.db")) as db:
        tag = db.execute("SELECT submission_tag FROM jobs").fetchone()[0]
    assert tag.endswith("-2")


def test_stop_during_a_retry_delay_ends_the_job_and_restart_starts_a_new_series(
        tmp_path: Path) -> None:
    workflow = write_json(tmp_path / "wf.json", {"jobs": [
        flaky("flaky", tmp_path, 2, retries=1, retry_delay_s=600),
        {"id": "after", "command": ["true"]}], "dependencies": [["flaky", "after"]]})
    assert jb("submit", str(workflow)).returncode == 0
    wait_for(lambda: status_json("1")["jobs"][0]["retry_at"] is not None, timeout=120,
             what="the retry's delay")
    started = time.monotonic()
    assert jb("stop", "1").returncode == 0
    stopped = jb("wait", "1", "--timeout", "60", timeout=120)
    assert stopped.returncode == 1, stopped.stderr
    assert time.monotonic() - started < 60  # not the 600 s of the delay
    job = status_json("1")["jobs"][0]
    assert (job["status"], job["exit_status"]) == (constants.FAILED, constants.EXIT_NOTRUN)
    assert [a["exit_value"] for a in job["attempts"]] == [1]
    assert jb("restart", "1").returncode == 0
    time.sleep(0.3)
    result = jb("wait", "1", "--timeout", "120", timeout=180)
    assert result.returncode == 0, result.stderr
    job = status_json("1")["jobs"][0]
    assert [(a["attempt"], a["retry"], a["exit_value"]) for a in job["attempts"]] == [
        (1, 0, 1), (2, 0, 0)]


# --- reports -------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """What a check of the page needs: tags seen, open tags left, outside references."""

    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.open: list[str] = []
        self.references: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.references += [value or "" for name, value in attrs
                            if name in ("src", "href", "xlink:href")]
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_table_tsv_json_and_html(tmp_path: Path) -> None:
    workflow = write_json(tmp_path / "wf.json", {"name": "report <demo>", "jobs": [
        flaky("flaky", tmp_path, 2, retries=1, resources={"memory_mb": 64, "walltime_s": 60}),
        {"id": "busy", "command": ["python3", "-c", "x = bytearray(20 << 20)\n"
                                   "x[::4096] = b'x' * len(x[::4096])\nimport time\n"
                                   "while time.process_time() < 1: pass"],  # 1 s of CPU
         "resources": {"cpus": 2, "memory_mb": 100}},
        {"id": "bad", "command": ["sh", "-c", "exit 3"]},
        {"id": "never", "command": ["true"]}],
        "dependencies": [["bad", "never"]]})
    assert jb("run", str(workflow), timeout=300).returncode == 1
    tsv = jb("report", "1", "--tsv")
    assert tsv.returncode == 0, tsv.stderr
    header, *lines = [line.split("\t") for line in tsv.stdout.splitlines()]
    rows = [dict(zip(header, line, strict=True)) for line in lines]
    assert [(r["job"], r["attempt"], r["outcome"]) for r in rows] == [
        ("flaky", "1", "retried"), ("flaky", "2", "done"), ("busy", "1", "done"),
        ("bad", "1", "failed")]  # "never" never ran: no attempt
    busy = rows[2]
    assert (busy["cpus"], busy["memory_mb"]) == ("2", "100")
    assert float(busy["wall_s"]) >= 1 and float(busy["cpu_s"]) >= 1
    assert 20 << 20 <= int(busy["mem_bytes"]) < 100 << 20
    assert 0.05 < float(busy["cpu_efficiency"]) <= 0.51  # one busy CPU of 2 asked for
    assert 0.2 < float(busy["memory_efficiency"]) < 1
    assert busy["mem_source"] == "wait4 (local runner)"
    data = json.loads(jb("report", "1", "--json").stdout)
    summary = data["summary"]
    assert (summary["jobs"], summary["attempts"], summary["retried_jobs"],
            summary["failed_attempts"]) == (4, 4, 1, 2)
    assert summary["cpu_hours"] >= summary["wasted_cpu_hours"] >= 0
    assert data["usage_source"] == "wait4 (local runner)"
    never = next(job for job in data["jobs"] if job["id"] == "never")
    assert never["attempts"] == [] and never["status"] == constants.FAILED
    text = jb("report", "1").stdout
    assert "never" in text and "CPU efficiency" in text and "usage measured by wait4" in text
    page = tmp_path / "out" / "report.html"
    page.parent.mkdir()
    written = jb("report", "1", "--html", str(page))
    assert written.returncode == 0 and written.stdout.strip() == str(page), written.stderr
    html = page.read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(html)
    parser.close()
    assert html.startswith("<!DOCTYPE html>") and parser.open == []
    assert parser.tags.count("svg") == 4  # three histograms and the timeline
    assert parser.tags.count("rect") > 11 * 3
    assert "script" not in parser.tags and parser.references == []
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "report &lt;demo&gt;" in html
    assert "flaky attempt 1: exit code 1" in "".join(parser.text)  # a timeline bar's tooltip
    unwritable = jb("report", "1", "--html", str(tmp_path / "no" / "such" / "dir.html"))
    assert "--html" in error_line(unwritable, 2)


def test_a_home_from_before_retries_is_migrated(tmp_path: Path, jobbridge_home: Path) -> None:
    """Schema 2 (no attempts table, no retry columns): opened, migrated, and its jobs
    shown with their one attempt. (Schema 1 -> 2: tests/test_dynamic.py.)"""
    workflow = write_json(tmp_path / "wf.json", {"jobs": [{"id": "a", "command": ["true"]}]})
    assert jb("run", str(workflow)).returncode == 0
    with closing(sqlite3.connect(jobbridge_home / "jobbridge.db")) as db:
        db.executescript("DROP TABLE attempts; ALTER TABLE jobs DROP COLUMN retry_at; "
                         "ALTER TABLE jobs DROP COLUMN retry; "
                         "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    Store(jobbridge_home).close()
    with closing(sqlite3.connect(jobbridge_home / "jobbridge.db")) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),) == ("3",)
        assert db.execute("SELECT retry, retry_at FROM jobs").fetchall() == [(0, None)]
    job = status_json("1")["jobs"][0]
    assert [(a["attempt"], a["exit_value"]) for a in job["attempts"]] == [(1, 0)]
    assert jb("report", "1").returncode == 0
    assert jb("run", str(workflow)).returncode == 0  # and it keeps working
    assert [a["attempt"] for a in status_json("2")["jobs"][0]["attempts"]] == [1]


def test_a_home_with_columns_ahead_of_its_version_opens(tmp_path: Path,
                                                         jobbridge_home: Path) -> None:
    """A home a development build left at schema 2 with the retry columns but without
    schema 2's own (seen on a developer's machine: every command failed on "duplicate
    column name: retry", then on "no column named rendered") opens, migrates and runs."""
    workflow = write_json(tmp_path / "wf.json", {"jobs": [{"id": "a", "command": ["true"]}]})
    assert jb("run", str(workflow)).returncode == 0
    with closing(sqlite3.connect(jobbridge_home / "jobbridge.db")) as db:
        db.executescript("DROP TABLE attempts; ALTER TABLE jobs DROP COLUMN rendered; "
                         "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    assert jb("run", str(workflow)).returncode == 0
    with closing(sqlite3.connect(jobbridge_home / "jobbridge.db")) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "3",)
    assert [a["attempt"] for a in status_json("2")["jobs"][0]["attempts"]] == [1]
