"""The SQLite store under $JOBBRIDGE_HOME: schema version, privacy, concurrent
processes, and a read-only or full disk (a clear error, never a corrupt database)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from functools import partial
from pathlib import Path

from jbcli import (
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
from jobbridge.store import SCHEMA_VERSION
from systems import unavailable


def _query(home: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(home / "jobbridge.db")) as db:
        return db.execute(sql).fetchall()


def _small(tmp_path: Path, name: str = "small", jobs: int = 2) -> Path:
    return write_json(tmp_path / f"{name}.json", {"name": name, "jobs": [
        job(f"j{i}", f"echo {i}") for i in range(jobs)]})


def test_schema_version_and_rows(tmp_path: Path, jobbridge_home: Path) -> None:
    """The database records its schema version, runs in WAL mode and stores jobs as rows
    with a JSON spec (no pickles)."""
    assert jb("run", str(_small(tmp_path))).returncode == 0
    assert _query(jobbridge_home, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)]
    assert _query(jobbridge_home, "PRAGMA journal_mode") == [("wal",)]
    rows = _query(jobbridge_home, "SELECT job_id, status, spec FROM jobs ORDER BY idx")
    assert [(r[0], r[1]) for r in rows] == [("j0", constants.DONE), ("j1", constants.DONE)]
    assert json.loads(str(rows[0][2]))["command"] == ["sh", "-c", "echo 0"]


def test_log_files_default_under_the_home(tmp_path: Path, jobbridge_home: Path) -> None:
    """Jobs without stdout/stderr files write to $JOBBRIDGE_HOME/logs/WF/ID.out|.err
    (derived when read, not stored); files the user names, or stored by an older
    version, are kept."""
    workflow = write_json(tmp_path / "logs.json", {"jobs": [
        job(".", "echo dot; echo err >&2"), job("mine", "echo mine", stdout_file="mine.txt")]})
    assert jb("run", str(workflow)).returncode == 0
    assert (jobbridge_home / "logs" / "1" / "..out").read_text() == "dot\n"
    assert (jobbridge_home / "logs" / "1" / "..err").read_text() == "err\n"
    assert (tmp_path / "mine.txt").read_text() == "mine\n"
    assert jb("logs", "1", ".").stdout == "dot\n"
    spec = json.loads(str(_query(jobbridge_home, "SELECT spec FROM jobs WHERE idx = 0")[0][0]))
    assert "stdout_file" not in spec
    with closing(sqlite3.connect(jobbridge_home / "jobbridge.db")) as db, db:
        db.execute("UPDATE jobs SET spec = ? WHERE idx = 0",
                   (json.dumps({**spec, "stdout_file": str(tmp_path / "old.out")}),))
    assert jb("logs", "1", ".").returncode != 0  # now read from the stored, missing file
    (tmp_path / "old.out").write_text("old\n")
    assert jb("logs", "1", ".").stdout == "old\n"


def test_newer_schema_is_refused(tmp_path: Path, jobbridge_home: Path) -> None:
    """A database written by a newer jobbridge is refused with one line, left untouched."""
    assert jb("run", str(_small(tmp_path))).returncode == 0
    with closing(sqlite3.connect(jobbridge_home / "jobbridge.db")) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                   (str(SCHEMA_VERSION + 1),))
        db.commit()
    line = error_line(jb("list"), 1)
    assert "written by a newer jobbridge" in line
    assert _query(jobbridge_home, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION + 1),)]


def _all_done(env: Mapping[str, str] | None = None) -> bool:
    return all(w["status"] == constants.WORKFLOW_DONE for w in listed(env))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_and_its_files_are_private(tmp_path: Path, jobbridge_home: Path) -> None:
    """Even with umask 022 and a home created 0755: the home and every folder in it are
    0700; the database, its -wal/-shm, jobbridge's own files and the jobs' logs 0600."""
    jobbridge_home.chmod(0o755)
    old_umask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "wf.json", {"jobs": [job("slow", "sleep 0.6")]})
        workflow_id = jb("submit", str(path)).stdout.strip()
        wait_for(lambda: (jobbridge_home / "jobbridge.db-wal").exists()
                 and (jobbridge_home / "jobbridge.db-shm").exists(), what="the WAL files")
        seen_while_running = {p.name: _mode(p) for p in jobbridge_home.glob("jobbridge.db*")}
        assert jb("wait", workflow_id).returncode == 0
    finally:
        os.umask(old_umask)
    assert seen_while_running == {"jobbridge.db": 0o600, "jobbridge.db-wal": 0o600,
                                  "jobbridge.db-shm": 0o600}
    assert _mode(jobbridge_home) == 0o700
    assert _mode(jobbridge_home / "logs") == 0o700
    assert _mode(jobbridge_home / "logs" / workflow_id) == 0o700
    files = 0
    for item in jobbridge_home.rglob("*"):
        if item.is_dir():
            assert _mode(item) == 0o700, item
        elif not item.is_symlink():  # job logs too: created 0600 whatever the umask
            files += 1
            assert _mode(item) == 0o600, item
    assert files >= 4  # the database, the engine's log and lock, the job's logs


def test_two_submits_at_once(tmp_path: Path) -> None:
    """Two submit processes started together on a fresh home both store their workflow."""
    path = _small(tmp_path)
    for round_number in range(2):
        env = {"JOBBRIDGE_HOME": str(tmp_path / f"home{round_number}")}
        results = [finish(p) for p in (jb_start("submit", str(path), env=env),
                                       jb_start("submit", str(path), env=env))]
        for result in results:
            assert (result.returncode, result.stderr) == (0, ""), result.stderr
        assert sorted(r.stdout for r in results) == ["1\n", "2\n"]
        wait_for(partial(_all_done, env), what="both workflows to end")
        assert [w["counts"] for w in listed(env)] == [{constants.DONE: 2}] * 2


_WORKER = textwrap.dedent('''
    import json, sys
    from jobbridge.api import Job, Workflow, WorkflowController
    worker, rounds = sys.argv[1], int(sys.argv[2])
    controller = WorkflowController()
    ids = []
    for n in range(rounds):
        jobs = [Job(["true"], id=f"w{worker}-{n}-{i}") for i in range(4)]
        sink = Job(["true"], id=f"w{worker}-{n}-sink")
        workflow = Workflow([*jobs, sink], name=f"w{worker}-{n}",
                            dependencies=[(j, sink) for j in jobs])
        ids.append(controller.submit(workflow))
        listed = {w["id"] for w in controller.list()}
        assert set(ids) <= listed, (ids, listed)
        status = controller.status(ids[-1])
        assert len(status["jobs"]) == 5, status
        controller.status()
    print(json.dumps(ids))
''')

_READER = textwrap.dedent('''
    import subprocess, sys, time
    deadline = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < deadline:
        for args in (["list", "--json"], ["status", "--json"], ["status", "1"]):
            result = subprocess.run([sys.executable, "-m", "jobbridge", *args],
                                    capture_output=True, text=True)
            if result.returncode != 0 or result.stderr:
                print(args, result.returncode, result.stderr, file=sys.stderr)
                sys.exit(1)
''')


def test_concurrent_clients_while_an_engine_runs(tmp_path: Path, jobbridge_home: Path) -> None:
    """3 processes submitting (listing, reading status) and 1 CLI reader against one home
    while the engine runs: no "database is locked", every workflow stored whole and run."""
    chains = [job(f"c{i}", "sleep 0.05") for i in range(30)]
    busy = write_json(tmp_path / "busy.json", {"name": "busy", "jobs": chains,
                                              "dependencies": [[f"c{i}", f"c{i + 1}"]
                                                               for i in range(29)]})
    assert jb("submit", str(busy)).stdout == "1\n"
    rounds = 6
    processes = [subprocess.Popen([sys.executable, "-c", _WORKER, str(n), str(rounds)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n in range(3)]
    processes.append(subprocess.Popen([sys.executable, "-c", _READER, "3"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = [finish(p) for p in processes]
    for result in results:
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
    submitted = [wf_id for result in results[:3] for wf_id in json.loads(result.stdout)]
    assert len(set(submitted)) == 3 * rounds
    wait_for(_all_done, timeout=60, what="every workflow to end")
    workflows = {w["id"]: w for w in listed()}
    assert set(workflows) == {"1", *submitted}
    assert workflows["1"]["counts"] == {constants.DONE: 30}
    for wf_id in submitted:
        assert workflows[wf_id]["counts"] == {constants.DONE: 5}, workflows[wf_id]
    assert stored_rows(jobbridge_home) == (1 + 3 * rounds, 30 + 5 * 3 * rounds,
                                           29 + 4 * 3 * rounds)
    assert _query(jobbridge_home, "SELECT status, exit_value, count(*) FROM jobs "
                  "WHERE ending_date IS NOT NULL GROUP BY status, exit_value") == [
        (constants.DONE, 0, 30 + 5 * 3 * rounds)]
    log = (jobbridge_home / "engine.log").read_text()
    assert "locked" not in log and "Traceback" not in log, log


# --- read-only and full disks ----------------------------------------------------------------


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        unavailable(f"cannot mount here ({result.stderr.strip() or 'not permitted'})")


@contextmanager
def _mounted(target: Path, *args: str) -> Iterator[Path]:
    _mount(*args, str(target))
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _integrity(home: Path) -> str:
    return str(_query(home, "PRAGMA integrity_check")[0][0])


def test_read_only_home(tmp_path: Path) -> None:
    """A home on a read-only file system: every command says so in one line (exit 1)
    and the database is intact afterwards."""
    base = tmp_path / "base"
    home = base / "home"
    assert jb("run", str(_small(tmp_path)), env={"JOBBRIDGE_HOME": str(home)}).returncode == 0
    view = tmp_path / "view"
    view.mkdir()
    with _mounted(view, "--bind", str(base)):
        _mount("-o", "remount,ro,bind", str(view))
        env = {"JOBBRIDGE_HOME": str(view / "home")}
        for args in (["submit", str(_small(tmp_path))], ["run", str(_small(tmp_path))],
                     ["list", "--json"], ["status", "1"]):
            line = error_line(jb(*args, env=env), 1)
            assert "read-only file system" in line.lower(), line
    assert _integrity(home) == "ok"
    assert [w["counts"] for w in listed({"JOBBRIDGE_HOME": str(home)})] == [{constants.DONE: 2}]


def test_full_disk(tmp_path: Path) -> None:
    """A home on a full file system: submit fails in one line (exit 1), nothing of that
    workflow is stored, earlier workflows stay readable, the database stays intact."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with _mounted(disk, "-t", "tmpfs", "-o", "size=256k", "tmpfs"):
        env = {"JOBBRIDGE_HOME": str(disk / "home")}
        assert jb("run", str(_small(tmp_path)), env=env).returncode == 0
        big = write_json(tmp_path / "big.json", {"jobs": [
            {"id": f"j{i}", "command": ["true"], "env": {"PAD": "x" * 2000}}
            for i in range(200)]})
        for command in ("submit", "run"):
            line = error_line(jb(command, str(big), env=env), 1)
            # the database, or (run) the engine's lock file once the database is full
            assert "database or disk is full" in line or "No space left on device" in line, line
        assert stored_rows(disk / "home") == (1, 2, 0)
        assert _integrity(disk / "home") == "ok"
        assert status_json("1", env)["status"] == constants.WORKFLOW_DONE
