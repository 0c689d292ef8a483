"""The durable store: one SQLite database under ``$JOBBRIDGE_HOME``.

Why SQLite in WAL mode: readers (``status``, ``list``) never block the engine
and the engine never blocks them; two submitters serialize on a short write
lock. Every state change is committed before the engine acts on it, so an
engine killed at any moment resumes from the database alone.
"""

from __future__ import annotations

import json
import operator
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from . import constants
from .configuration import Configuration, jobbridge_home, private_dir
from .dynamic import (
    FILES_DO_NOT_EXIST,
    FILES_ON_CLIENT,
    FILES_ON_CLIENT_AND_CR,
    FILES_ON_CR,
    Temporary,
    Transfer,
    create_temporaries,
)
from .errors import InputError, StoreError
from .model import EngineJob, WorkflowSpec, gc_paused

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT,
    resource TEXT NOT NULL,
    scheduler_type TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    submission_date TEXT NOT NULL,
    ending_date TEXT,
    engine TEXT,
    request TEXT
);
CREATE INDEX IF NOT EXISTS workflows_status ON workflows(status);
CREATE TABLE IF NOT EXISTS jobs (
    workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    name TEXT,
    hidden INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    exit_status TEXT,
    exit_value INTEGER,
    term_sig INTEGER,
    resource_usage TEXT,
    exit_reason TEXT,
    scheduler_job_id TEXT,
    submission_tag TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    submission_date TEXT,
    execution_date TEXT,
    ending_date TEXT,
    rendered TEXT,
    outputs TEXT,
    retry INTEGER NOT NULL DEFAULT 0,
    retry_at TEXT,
    PRIMARY KEY (workflow_id, idx)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_id ON jobs(workflow_id, job_id);
CREATE TABLE IF NOT EXISTS attempts (
    workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    retry INTEGER NOT NULL,
    requested TEXT NOT NULL,
    scheduler_job_id TEXT,
    submission_date TEXT,
    execution_date TEXT,
    ending_date TEXT,
    exit_status TEXT,
    exit_value INTEGER,
    term_sig INTEGER,
    resource_usage TEXT,
    exit_reason TEXT,
    retried INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, idx, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dependencies (
    workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    before_idx INTEGER NOT NULL,
    after_idx INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dependencies_by_workflow ON dependencies(workflow_id);
CREATE TABLE IF NOT EXISTS temporary_paths (
    workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    is_directory INTEGER NOT NULL DEFAULT 0,
    disposal_hours REAL NOT NULL,
    PRIMARY KEY (workflow_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transfers (
    workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    client_path TEXT NOT NULL,
    path TEXT NOT NULL,
    files TEXT,
    is_input INTEGER NOT NULL,
    is_output INTEGER NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (workflow_id, name)
) WITHOUT ROWID;
"""

#: The columns later schema versions added to ``jobs`` (new tables come from the
#: schema itself, created if missing). Every open adds whichever of them a home
#: lacks, whatever its version says: a home written by a development build between
#: two versions opens instead of failing on "duplicate column" or "no such column".
_ADDED_JOB_COLUMNS: list[tuple[str, str]] = [
    # 2: a job's fields set when it became ready (links applied), its output parameters
    ("rendered", "TEXT"), ("outputs", "TEXT"),
    # 3: retries (the attempts table; a job's retry number and the date of its next try)
    ("retry", "INTEGER NOT NULL DEFAULT 0"), ("retry_at", "TEXT"),
]

_SPEC_FIELDS = [f.name for f in fields(EngineJob) if f.name not in ("job_id", "submission_tag")]
_spec_values = operator.attrgetter(*_SPEC_FIELDS)
#: Each spec field's default: a stored spec leaves out the fields at their default
#: (EngineJob(**spec) gives them back), a third of the size of a typical job.
_SPEC_DEFAULTS = tuple(EngineJob("-").__dict__[name] for name in _SPEC_FIELDS)


def _compact_json_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, separators=(",", ":"))`` with one C encoder made once:
    ``dumps`` makes a new one at every call, half the cost of a small job's spec."""
    base = json.JSONEncoder(separators=(",", ":"))
    if c_make_encoder is None:  # no C accelerator (not CPython)
        return base.encode
    encoder = c_make_encoder(None, base.default, encode_basestring_ascii, None, ":", ",",
                             False, False, True)
    return lambda value: "".join(encoder(value, 0))


_dumps = _compact_json_encoder()


def now_iso() -> str:
    """Now, ISO 8601 with the UTC offset (what ``status --json`` shows)."""
    return datetime.now(UTC).astimezone().isoformat(timespec="milliseconds")


def iso_date(timestamp: float) -> str:
    """A POSIX timestamp as :func:`now_iso` writes dates."""
    return datetime.fromtimestamp(timestamp, UTC).astimezone().isoformat(timespec="milliseconds")


def epoch(date: str | None) -> float | None:
    """A stored date as a POSIX timestamp (None stays None)."""
    return None if date is None else datetime.fromisoformat(date).timestamp()


@dataclass
class JobRow:
    """A job as stored: its spec and its state.

    ``spec`` is what the job runs: for a job made ready with links, its command and
    parameters then; ``base`` its spec as submitted (None when the same). ``outputs``:
    its output parameters once it ended.
    """

    workflow_id: int
    idx: int
    job_id: str
    name: str | None
    hidden: bool
    spec: EngineJob
    status: str
    exit_status: str | None
    exit_value: int | None
    term_sig: int | None
    resource_usage: str | None
    exit_reason: str | None
    scheduler_job_id: str | None
    submission_tag: str | None
    attempt: int
    submission_date: str | None
    execution_date: str | None
    ending_date: str | None
    outputs: dict[str, Any] | None = None
    base: EngineJob | None = None
    #: retries made in the current series of attempts (a restart starts a new one)
    retry: int = 0
    #: when a retry waits out its delay: the date it may be submitted
    retry_at: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The job object of ``status --json`` (docs/format.md), with the parameters and outputs
        of a job that has them."""
        shown: dict[str, Any] = {"id": self.job_id, "name": self.name, "status": self.status,
                                 "exit_status": self.exit_status, "exit_value": self.exit_value,
                                 "term_sig": self.term_sig,
                                 "resource_usage": self.resource_usage,
                                 "scheduler_job_id": self.scheduler_job_id,
                                 "submission_date": self.submission_date,
                                 "execution_date": self.execution_date,
                                 "ending_date": self.ending_date}
        dynamic = self.spec.dynamic
        if dynamic is not None:
            shown["parameters"] = dynamic.get("parameters", {})
            if "outputs" in dynamic or "engine" in dynamic:
                shown["outputs"] = self.outputs
        return shown


@dataclass
class AttemptRow:
    """One ended attempt of a job: what it asked for, where it ran, how it ended."""

    workflow_id: int
    idx: int
    attempt: int
    #: its place in its series of attempts: 0 the first, k the k-th retry
    retry: int
    #: resources asked for (escalated ones grown): cpus, memory_mb, walltime_s
    requested: dict[str, int]
    scheduler_job_id: str | None
    submission_date: str | None
    execution_date: str | None
    ending_date: str | None
    exit_status: str | None
    exit_value: int | None
    term_sig: int | None
    resource_usage: str | None
    exit_reason: str | None
    #: whether the engine tried the job again after this attempt
    retried: bool

    def as_json(self) -> dict[str, Any]:
        """An item of a job's ``attempts`` in ``status --json``."""
        return {"attempt": self.attempt, "retry": self.retry, "requested": self.requested,
                "scheduler_job_id": self.scheduler_job_id,
                "submission_date": self.submission_date,
                "execution_date": self.execution_date, "ending_date": self.ending_date,
                "exit_status": self.exit_status, "exit_value": self.exit_value,
                "term_sig": self.term_sig, "resource_usage": self.resource_usage,
                "exit_reason": self.exit_reason, "retried": self.retried}


@dataclass
class WorkflowRow:
    id: int
    name: str | None
    resource: str
    scheduler_type: str
    options: dict[str, str]
    status: str
    submission_date: str
    ending_date: str | None
    engine: str | None
    request: str | None

    @property
    def config(self) -> Configuration:
        return Configuration.from_dict(self.resource, self.options)

    @property
    def ended(self) -> bool:
        """Done, or stopped with every job's end recorded, and no request pending."""
        return self.ending_date is not None and self.request is None


_JOB_COLUMNS = ("workflow_id, idx, job_id, name, hidden, spec, status, exit_status, exit_value, "
                "term_sig, resource_usage, exit_reason, scheduler_job_id, submission_tag, "
                "attempt, submission_date, execution_date, ending_date, rendered, outputs, "
                "retry, retry_at")
_ATTEMPT_COLUMNS = ("workflow_id, idx, attempt, retry, requested, scheduler_job_id, "
                    "submission_date, execution_date, ending_date, exit_status, exit_value, "
                    "term_sig, resource_usage, exit_reason, retried")
_WORKFLOW_COLUMNS = ("id, name, resource, scheduler_type, options, status, submission_date, "
                     "ending_date, engine, request")


def _workflow_from_row(row: Sequence[Any]) -> WorkflowRow:
    return WorkflowRow(row[0], row[1], row[2], row[3], json.loads(row[4]), *row[5:])


class Store:
    """Access to one ``$JOBBRIDGE_HOME``'s database (one connection per Store)."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = Path(home) if home is not None else jobbridge_home()
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.home, 0o700)
        except OSError as error:
            raise StoreError(f"cannot use {self.home}: {error.strerror}") from None
        self.path = self.home / "jobbridge.db"
        old_umask = os.umask(0o077)  # the database and its WAL files are private
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                      check_same_thread=False)
            _set_wal(self.db)
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=60000")
            self._migrate()
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the database {self.path}: {error}") from None
        finally:
            os.umask(old_umask)
        self.home_token = self._meta("home_token")

    def close(self) -> None:
        self.db.close()

    # --- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is taken at once (no upgrade deadlock)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise StoreError(f"cannot write {self.path}: {error}") from None
        try:
            yield self.db
        except BaseException as error:
            self._rollback()
            if isinstance(error, sqlite3.Error):  # e.g. disk full: one clear line
                raise StoreError(f"cannot write {self.path}: {error}") from None
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            raise StoreError(f"cannot write {self.path}: {error}") from None

    def _rollback(self) -> None:
        """Roll back unless SQLite already did (a failed COMMIT may end the transaction)."""
        if self.db.in_transaction:
            with suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read of several tables (WAL: never blocks the engine)."""
        self.db.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def data_version(self) -> int:
        """Changes when another connection commits: how the engine notices requests."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def _migrate(self) -> None:
        with self.transaction() as db:
            _execute_script(db, _SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else SCHEMA_VERSION
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer jobbridge "
                                 f"(schema {version} > {SCHEMA_VERSION})")
            present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            for column, declaration in _ADDED_JOB_COLUMNS:
                if column not in present:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {declaration}")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('home_token', ?)",
                       (os.urandom(3).hex(),))

    def _meta(self, key: str) -> str:
        return str(self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])

    # --- workflows -------------------------------------------------------------------------
    def add_workflow(self, spec: WorkflowSpec, config: Configuration, engine: str | None = None
                     ) -> int:
        """Store a validated workflow, all or nothing; its id. Its temporary paths, and
        the folders its copied transfers go to, are created first (a scratch directory
        that cannot be written stores nothing)."""
        logs = self.home / "logs"
        made = [*spec.temporaries, *_transfer_folders(spec.transfers)]
        try:
            create_temporaries(made)
        except OSError as error:
            _remove_temporaries(made)
            raise StoreError(f"cannot create {error.filename}: {error.strerror}") from None
        try:
            workflow_id = self._insert_workflow(spec, config, engine)
        except BaseException:
            _remove_temporaries(made)
            raise
        folder = logs / str(workflow_id)
        try:
            private_dir(folder)
        except OSError as error:
            raise StoreError(f"cannot create {folder}: {error.strerror}") from None
        return workflow_id

    def _insert_workflow(self, spec: WorkflowSpec, config: Configuration, engine: str | None
                         ) -> int:
        with gc_paused(), self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO workflows (name, resource, scheduler_type, options, status, "
                "submission_date, engine) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (spec.name, config.resource_id, config.get_scheduler_type(),
                 json.dumps(config.options()), constants.WORKFLOW_NOT_STARTED, now_iso(), engine))
            workflow_id = int(cursor.lastrowid or 0)
            index = {job.job_id: i for i, job in enumerate(spec.jobs)}
            db.executemany(
                f"INSERT INTO jobs ({_JOB_COLUMNS.replace('workflow_id, ', '', 1)}, workflow_id,"
                " priority) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
                " 0, NULL, NULL, NULL, NULL, NULL, 0, NULL, ?, ?)",
                ((i, job.job_id, job.name, job.job_id in spec.hidden_ids,
                  _spec_json(job), constants.NOT_SUBMITTED, workflow_id,
                  job.priority)
                 for i, job in enumerate(spec.jobs)))
            db.executemany(
                "INSERT INTO dependencies VALUES (?, ?, ?)",
                ((workflow_id, index[before], index[after]) for before, after in spec.edges))
            db.executemany(
                "INSERT INTO temporary_paths VALUES (?, ?, ?, ?, ?)",
                ((workflow_id, t.name, t.path, t.is_directory, t.disposal_hours)
                 for t in spec.temporaries))
            db.executemany(
                "INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ((workflow_id, t.name, t.client_path, t.path,
                  None if t.files is None else json.dumps(t.files), t.is_input, t.is_output,
                  _initial_status(t)) for t in spec.transfers))
        return workflow_id

    def workflow(self, workflow_id: int | str) -> WorkflowRow:
        row = self.db.execute(f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE id = ?",
                              (_as_id(workflow_id),)).fetchone()
        if row is None:
            raise InputError(f"no workflow {workflow_id}")
        return _workflow_from_row(row)

    def workflows(self) -> list[WorkflowRow]:
        rows = self.db.execute(f"SELECT {_WORKFLOW_COLUMNS} FROM workflows ORDER BY id")
        return [_workflow_from_row(r) for r in rows]

    def latest_workflow_id(self) -> int:
        row = self.db.execute("SELECT max(id) FROM workflows").fetchone()
        if row[0] is None:
            raise InputError("no workflow yet (jobbridge submit FILE)")
        return int(row[0])

    def unfinished_workflow_ids(self) -> list[int]:
        """Workflows an engine must drive: not ended (a stopped workflow has ended once
        its killed jobs' ends are recorded), or with a pending request."""
        rows = self.db.execute("SELECT id FROM workflows WHERE ending_date IS NULL "
                               "OR request IS NOT NULL ORDER BY id")
        return [r[0] for r in rows]

    def claim(self, workflow_id: int, engine: str, live_engines: Iterable[str]) -> bool:
        """Take a workflow for ``engine`` unless another live engine drives it."""
        live = set(live_engines)
        query = "SELECT engine FROM workflows WHERE id = ?"
        row = self.db.execute(query, (workflow_id,)).fetchone()
        if row is None or row[0] == engine or (row[0] is not None and row[0] in live):
            return row is not None and row[0] == engine  # no write lock for a foregone answer
        with self.transaction() as db:
            row = db.execute(query, (workflow_id,)).fetchone()
            if row is None:
                return False
            owner = row[0]
            if owner not in (None, engine) and owner in live:
                return False
            db.execute("UPDATE workflows SET engine = ? WHERE id = ?", (engine, workflow_id))
            return True

    def release(self, workflow_id: int, engine: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE workflows SET engine = NULL WHERE id = ? AND engine = ?",
                       (workflow_id, engine))

    def request(self, workflow_id: int | str, action: str) -> WorkflowRow:
        """Ask the workflow's engine to stop, restart or delete it."""
        wf_id = _as_id(workflow_id)
        with self.transaction() as db:
            updated = db.execute("UPDATE workflows SET request = ? WHERE id = ?",
                                 (action, wf_id)).rowcount
        if not updated:
            raise InputError(f"no workflow {workflow_id}")
        return self.workflow(wf_id)

    def request_stop_jobs(self, workflow_id: int | str, idx: int) -> str | None:
        """Ask the workflow's engine to stop one job (the request ``stop:IDX,...``,
        which collects jobs until the engine takes it). Another request pending (a
        whole stop, restart or delete) is kept, not overwritten: it is returned."""
        wf_id = _as_id(workflow_id)
        with self.transaction() as db:
            row = db.execute("SELECT request FROM workflows WHERE id = ?", (wf_id,)).fetchone()
            if row is None:
                raise InputError(f"no workflow {workflow_id}")
            pending = row[0]
            if pending is not None and not pending.startswith("stop:"):
                return str(pending)
            db.execute("UPDATE workflows SET request = ? WHERE id = ?",
                       (f"{pending},{idx}" if pending else f"stop:{idx}", wf_id))
        return None

    def requests(self, workflow_ids: Iterable[int]) -> dict[int, str]:
        """The pending requests of these workflows (see :meth:`clear_request`)."""
        ids = list(workflow_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT id, request FROM workflows WHERE request IS NOT NULL "
                               f"AND id IN ({marks})", ids)
        return {r[0]: r[1] for r in rows}

    def clear_request(self, workflow_id: int, action: str) -> None:
        """Forget a request once it is applied (not before: a reader must never see a
        restart neither pending nor applied, as a finished workflow)."""
        with self.transaction() as db:
            db.execute("UPDATE workflows SET request = NULL WHERE id = ? AND request = ?",
                       (workflow_id, action))

    def set_workflow_status(self, workflow_id: int, status: str, ended: bool = False) -> None:
        """``ended``: the workflow's jobs have all ended (its ending date is now)."""
        ending = now_iso() if ended else None
        with self.transaction() as db:
            db.execute("UPDATE workflows SET status = ?, ending_date = ? WHERE id = ?",
                       (status, ending, workflow_id))

    def delete_workflow(self, workflow_id: int) -> None:
        temporaries = self.temporary_paths(workflow_id)
        temporaries += _transfer_folders(row.transfer for row in self.transfers(workflow_id))
        with self.transaction() as db:
            db.execute("DELETE FROM temporary_paths WHERE workflow_id = ?", (workflow_id,))
            db.execute("DELETE FROM transfers WHERE workflow_id = ?", (workflow_id,))
            db.execute("DELETE FROM dependencies WHERE workflow_id = ?", (workflow_id,))
            db.execute("DELETE FROM attempts WHERE workflow_id = ?", (workflow_id,))
            db.execute("DELETE FROM jobs WHERE workflow_id = ?", (workflow_id,))
            db.execute("DELETE FROM workflows WHERE id = ?", (workflow_id,))
        folder = self.home / "logs" / str(workflow_id)
        if folder.is_dir():
            for path in folder.iterdir():
                path.unlink(missing_ok=True)
            folder.rmdir()
        _remove_temporaries(temporaries)

    # --- file transfers --------------------------------------------------------------------
    def transfers(self, workflow_id: int | str) -> list[TransferRow]:
        rows = self.db.execute(
            "SELECT name, client_path, path, files, is_input, is_output, status FROM transfers "
            "WHERE workflow_id = ?", (_as_id(workflow_id),))
        return [TransferRow(Transfer(r[0], r[1], r[2], None if r[3] is None else json.loads(r[3]),
                                     bool(r[4]), bool(r[5])), r[6]) for r in rows]

    def set_transfer_status(self, workflow_id: int | str, names: Iterable[str], status: str
                            ) -> None:
        """Record where a workflow's transfers are (their engine notices: a job waiting
        for its inputs is released)."""
        with self.transaction() as db:
            db.executemany("UPDATE transfers SET status = ? WHERE workflow_id = ? AND name = ?",
                           ((status, _as_id(workflow_id), name) for name in names))

    # --- temporary paths -------------------------------------------------------------------
    def temporary_paths(self, workflow_id: int) -> list[Temporary]:
        rows = self.db.execute("SELECT name, path, is_directory, disposal_hours FROM "
                               "temporary_paths WHERE workflow_id = ?", (workflow_id,))
        return [Temporary(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    def dispose_temporaries(self, now: datetime | None = None) -> int:
        """Remove the temporary paths of workflows ended longer ago than their disposal
        time (and not restarted since); how many."""
        now = now or datetime.now(UTC)
        rows = self.db.execute(
            "SELECT t.workflow_id, t.name, t.path, t.is_directory, t.disposal_hours, "
            "w.ending_date FROM temporary_paths t JOIN workflows w ON w.id = t.workflow_id "
            "WHERE w.request IS NULL AND w.ending_date IS NOT NULL").fetchall()  # done, stopped
        expired = [row for row in rows
                   if datetime.fromisoformat(row[5]) + timedelta(hours=row[4]) <= now]
        if not expired:
            return 0
        with self.transaction() as db:
            db.executemany("DELETE FROM temporary_paths WHERE workflow_id = ? AND name = ?",
                           ((row[0], row[1]) for row in expired))
        _remove_temporaries([Temporary(row[1], row[2], bool(row[3]), row[4]) for row in expired])
        return len(expired)

    # --- jobs ------------------------------------------------------------------------------
    def jobs(self, workflow_id: int | str, include_hidden: bool = False) -> list[JobRow]:
        hidden = "" if include_hidden else "AND hidden = 0"
        with gc_paused():  # a workflow's rows become objects that all stay alive
            rows = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE workflow_id = ? "
                                   f"{hidden} ORDER BY idx", (_as_id(workflow_id),)).fetchall()
            return self._job_rows(rows)

    def job(self, workflow_id: int | str, job_id: str) -> JobRow:
        row = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE workflow_id = ? AND "
                              "job_id = ?", (_as_id(workflow_id), job_id)).fetchone()
        if row is None:
            self.workflow(workflow_id)  # "no workflow N" when that is what is missing
            raise InputError(f"workflow {workflow_id} has no job {job_id!r}")
        return self._job_rows([row])[0]

    def job_at(self, workflow_id: int, idx: int) -> JobRow | None:
        """The job of this index (soma-workflow's job ids are indexes), None if none."""
        row = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE workflow_id = ? AND "
                              "idx = ?", (workflow_id, idx)).fetchone()
        return None if row is None else self._job_rows([row])[0]

    def _job_rows(self, rows: Sequence[Sequence[Any]]) -> list[JobRow]:
        """Jobs from their rows. A job's stdout/stderr, unless the user set them, are
        files under ``$JOBBRIDGE_HOME/logs/WF/``: derived here, not stored (they
        would be a third of the row)."""
        specs = json.loads("[" + ",".join([r[5] for r in rows]) + "]")  # one call, not one a row
        logs = f"{self.home}/logs"
        jobs = []
        for row, spec in zip(rows, specs, strict=True):
            if not spec.get("is_barrier"):
                stem = f"{logs}/{row[0]}/{row[2]}"
                spec.setdefault("stdout_file", stem + ".out")
                if not spec.get("join_stderrout"):
                    spec.setdefault("stderr_file", stem + ".err")
            job = EngineJob(job_id=row[2], submission_tag=row[13], **spec)
            base = None
            if row[18] is not None:  # the fields set when it became ready
                base, job = job, replace(job, **json.loads(row[18]))
            outputs = None if row[19] is None else json.loads(row[19])
            values: tuple[Any, ...] = (*row[:4], bool(row[4]), job, *row[6:18], outputs, base,
                                       *row[20:22])
            jobs.append(JobRow(*values))  # positional: a workflow's rows at C speed
        return jobs

    def dependencies(self, workflow_id: int) -> list[tuple[int, int]]:
        rows = self.db.execute("SELECT before_idx, after_idx FROM dependencies "
                               "WHERE workflow_id = ?", (workflow_id,))
        return [(r[0], r[1]) for r in rows]

    def status_counts(self) -> dict[int, dict[str, int]]:
        """Per workflow, how many (visible) jobs are in each status."""
        counts: dict[int, dict[str, int]] = {}
        rows = self.db.execute("SELECT workflow_id, status, count(*) FROM jobs WHERE hidden = 0 "
                               "GROUP BY workflow_id, status")
        for workflow_id, status, number in rows:
            counts.setdefault(workflow_id, {})[status] = number
        return counts

    def attempts(self, workflow_id: int | str, idx: int | None = None
                 ) -> dict[int, list[AttemptRow]]:
        """The ended attempts of a workflow's jobs (or of its job ``idx``), by job
        index, in order."""
        one = "" if idx is None else "AND idx = ? "
        rows = self.db.execute(f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE workflow_id = ? "
                               f"{one}ORDER BY idx, attempt",
                               (_as_id(workflow_id), *(() if idx is None else (idx,))))
        found: dict[int, list[AttemptRow]] = {}
        for row in rows:
            (wf_id, idx, number, retry, requested, scheduler_job_id, submitted, executed, ended,
             exit_status, exit_value, term_sig, usage, reason, retried) = row
            attempt = AttemptRow(wf_id, idx, number, retry, json.loads(requested),
                                 scheduler_job_id, submitted, executed, ended, exit_status,
                                 exit_value, term_sig, usage, reason, bool(retried))
            found.setdefault(attempt.idx, []).append(attempt)
        return found

    def update_jobs(self, workflow_id: int, changes: Sequence[tuple[int, dict[str, Any]]],
                    attempts: Sequence[AttemptRow] = ()) -> None:
        """Apply ``(idx, {column: value})`` changes, and record ended ``attempts``, in
        one transaction (an attempt's end and the job's next state are one step).

        A job's changes are merged first (a later value of a column wins, as if they
        were applied in order), then jobs changing the same columns are updated by
        one statement: a cycle's thousands of changes cost a few calls into SQLite.
        """
        if attempts:
            with self.transaction() as db:
                db.executemany(
                    f"INSERT OR REPLACE INTO attempts ({_ATTEMPT_COLUMNS}) VALUES "
                    f"({', '.join('?' * 15)})",
                    ((workflow_id, a.idx, a.attempt, a.retry, _dumps(a.requested),
                      a.scheduler_job_id, a.submission_date, a.execution_date, a.ending_date,
                      a.exit_status, a.exit_value, a.term_sig, a.resource_usage, a.exit_reason,
                      int(a.retried)) for a in attempts))
                self._update_jobs(db, workflow_id, changes)
            return
        if not changes:
            return
        with self.transaction() as db:
            self._update_jobs(db, workflow_id, changes)

    @staticmethod
    def _update_jobs(db: sqlite3.Connection, workflow_id: int,
                     changes: Sequence[tuple[int, dict[str, Any]]]) -> None:
        merged: dict[int, dict[str, Any]] = {}
        for idx, values in changes:
            known = merged.get(idx)
            merged[idx] = values if known is None else {**known, **values}
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for idx, values in merged.items():
            groups.setdefault(tuple(values), []).append((*values.values(), workflow_id, idx))
        for columns, rows in groups.items():
            assignments = ", ".join(f"{column} = ?" for column in columns)
            db.executemany(f"UPDATE jobs SET {assignments} WHERE workflow_id = ? AND idx = ?",
                           rows)


def _spec_json(job: EngineJob) -> str:
    """The job's spec: the fields not at their default (``EngineJob(**spec)`` gives
    them back)."""
    return _dumps({name: value for name, value, default
                   in zip(_SPEC_FIELDS, _spec_values(job), _SPEC_DEFAULTS, strict=True)
                   if value != default})


@dataclass
class TransferRow:
    """A stored transfer and its recorded status (see :meth:`status`)."""

    transfer: Transfer
    recorded: str

    @property
    def status(self) -> str:
        """Where the files are now: a transfer of a shared file system is on both sides
        once it exists; a copied output is on the resource once a job wrote it."""
        exists = os.path.lexists(self.transfer.path)
        if not self.transfer.copied:
            return FILES_ON_CLIENT_AND_CR if exists else FILES_DO_NOT_EXIST
        if self.recorded == FILES_DO_NOT_EXIST and exists:
            return FILES_ON_CR
        return self.recorded

    def as_json(self) -> dict[str, Any]:
        """The transfer object of ``status --json`` (docs/format.md)."""
        t = self.transfer
        return {"name": t.name, "client_path": t.client_path, "path": t.path,
                "files": t.files, "input": t.is_input, "output": t.is_output,
                "status": self.status}


def _initial_status(transfer: Transfer) -> str:
    if not transfer.copied:
        return FILES_ON_CLIENT_AND_CR
    return FILES_ON_CLIENT if transfer.sent else FILES_DO_NOT_EXIST


def _transfer_folders(transfers: Iterable[Transfer]) -> list[Temporary]:
    """The private folder each copied transfer goes in (removed with its workflow)."""
    return [Temporary(f"transfer {t.name}", os.path.dirname(t.path), is_directory=True)
            for t in transfers if t.copied]


def _remove_temporaries(temporaries: Iterable[Temporary]) -> None:
    """Remove temporary paths, and their workflow's folder once empty."""
    for temporary in temporaries:
        path = Path(temporary.path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with suppress(OSError):
                path.unlink(missing_ok=True)
        with suppress(OSError):
            path.parent.rmdir()


def _set_wal(db: sqlite3.Connection, timeout: float = 60.0) -> None:
    """Switch to WAL mode, retrying while another process creates the same database:
    on a fresh file SQLite refuses the switch at once (SQLITE_BUSY) without waiting
    on the busy timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005 + os.urandom(1)[0] % 20 / 1000)


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    """Run statements inside the current transaction (executescript would commit)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


#: SQLite's largest integer: an id past it names no workflow (in a query, an
#: OverflowError).
SQL_INT_MAX = 2**63 - 1


def _as_id(workflow_id: int | str) -> int:
    try:
        number = int(workflow_id)
    except ValueError:
        raise InputError(f"no workflow {workflow_id!r} (workflow ids are numbers)") from None
    if abs(number) > SQL_INT_MAX:
        raise InputError(f"no workflow {workflow_id}")
    return number
