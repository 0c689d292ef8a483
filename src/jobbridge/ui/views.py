"""What the dashboard's pages show, read from the store: JSON-ready dicts.

Nothing here writes the store, and every query is a plain read in WAL mode, so
the dashboard never blocks an engine. The sizes that grow with a workflow are
kept off the hot path:

- the jobs table is filtered, sorted and paged by SQLite (one page of rows read);
- the graph is the DAG's quotient, jobs grouped by name pattern and depth, built
  once per workflow (its jobs and dependencies never change) and kept in a small
  cache; a refresh re-reads only statuses to count them per group;
- the summary figures and the timeline's counts are aggregated by SQLite, the
  figures again only when jobs ended.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

from .. import constants, report, retry
from ..engine import live_engines
from ..errors import InputError
from ..store import SQL_INT_MAX, Store, WorkflowRow

#: What the dashboard colours: each job status folded into one of these classes,
#: in the order the pages list them (the graph of ``jobbridge graph`` uses the same
#: colours).
CLASSES = ("failed", "running", "queued", "waiting", "done", "not_run")
_CLASS_OF_STATUS = {constants.DONE: "done", constants.FAILED: "failed",
                    constants.RUNNING: "running", constants.NOT_SUBMITTED: "waiting"}
_OTHER_CLASS = "queued"  # submitted and not running yet, held, being killed...
#: The class in SQL, for filtering and counting without reading rows into Python.
CLASS_SQL = (
    "CASE WHEN status = 'failed' AND exit_status = '" + constants.EXIT_NOTRUN
    + "' THEN 'not_run' "
    + " ".join(f"WHEN status = '{status}' THEN '{cls}'" for status, cls in _CLASS_OF_STATUS.items())
    + f" ELSE '{_OTHER_CLASS}' END")


def job_class(status: str, exit_status: str | None) -> str:
    """The class of CLASSES a job is drawn in (CLASS_SQL in Python)."""
    if status == constants.FAILED and exit_status == constants.EXIT_NOTRUN:
        return "not_run"
    return _CLASS_OF_STATUS.get(status, _OTHER_CLASS)


#: Workflows of at most this many jobs are drawn job by job; larger ones grouped.
JOBS_DRAWN_ONE_BY_ONE = 300
#: Most nodes a grouped graph may have before a coarser grouping is tried.
MAX_GROUPS = 400
#: Most layers of the coarsest grouping (jobs grouped by depth range only).
MAX_LAYERS = 40
#: Timelines of more jobs than this show one lane per graph node, not per job.
TIMELINE_JOBS = 1000
#: How much of the end of a job's stdout/stderr a job page shows.
TAIL_BYTES = 64 * 1024
#: Sort keys of the jobs table: column expressions (NULLs last whatever the order).
SORTS = {
    "order": "idx",
    "id": "job_id",
    "name": "coalesce(name, job_id)",
    "state": "status",
    "exit": "coalesce(exit_value, term_sig + 1000)",
    "start": "julianday(execution_date)",
    "end": "julianday(ending_date)",
    "duration": "julianday(ending_date) - julianday(execution_date)",
    "attempt": "attempt",
}
MAX_PAGE = 500
_SECONDS_PER_DAY = 86400.0


# --- workflows -----------------------------------------------------------------------------------


def workflows(store: Store) -> list[dict[str, Any]]:
    """The workflows page: every workflow with its counts per class, newest first."""
    with store.snapshot():
        rows = store.workflows()
        counts = _class_counts(store)
    live = live_engines(store.home)
    now = time.time()
    return [_workflow_summary(row, counts.get(row.id, {}), live, now) for row in reversed(rows)]


def workflow(store: Store, workflow_id: int) -> dict[str, Any]:
    """A workflow's header: its summary, as on the workflows page."""
    with store.snapshot():
        row = store.workflow(workflow_id)
        counts = _class_counts(store, workflow_id).get(workflow_id, {})
    return _workflow_summary(row, counts, live_engines(store.home), time.time())


def figures(store: Store, workflow_id: int) -> dict[str, Any]:
    """A workflow's figures (CPU time, memory, efficiency, wall time): apart from the
    header, which need not wait for them (they sum every job's usage)."""
    with store.snapshot():
        store.workflow(workflow_id)
        return _figures(store, workflow_id)


def _workflow_summary(row: WorkflowRow, counts: dict[str, int], live: set[str], now: float
                      ) -> dict[str, Any]:
    end = _epoch(row.ending_date) if row.ending_date else now
    return {"id": row.id, "name": row.name, "status": row.status,
            "resource": row.resource, "scheduler_type": row.scheduler_type,
            "submission_date": row.submission_date, "ending_date": row.ending_date,
            "elapsed_s": max(0.0, end - _epoch(row.submission_date)),
            "ended": row.status not in (constants.WORKFLOW_NOT_STARTED,
                                        constants.WORKFLOW_IN_PROGRESS),
            "request": row.request, "engine_alive": row.engine in live,
            "jobs": sum(counts.values()), "counts": {c: counts.get(c, 0) for c in CLASSES}}


def _class_counts(store: Store, workflow_id: int | None = None) -> dict[int, dict[str, int]]:
    where = "" if workflow_id is None else "AND workflow_id = ?"
    rows = store.db.execute(
        f"SELECT workflow_id, {CLASS_SQL}, count(*) FROM jobs WHERE hidden = 0 {where} "
        "GROUP BY 1, 2", () if workflow_id is None else (workflow_id,))
    counts: dict[int, dict[str, int]] = {}
    for wf_id, cls, number in rows:
        counts.setdefault(wf_id, {})[cls] = number
    return counts


# --- summary figures -----------------------------------------------------------------------------


def _after(key: str) -> str:
    """SQL: what follows ``KEY=`` in the usage ``t`` (NULL without it). CAST reads
    the leading number of it and ignores the rest."""
    return f"CASE WHEN instr(t, ' {key}=') THEN substr(t, instr(t, ' {key}=') + {len(key) + 2}) END"


def _seconds(value: str) -> str:
    """SQL: seconds of a value starting with ``HH:MM:SS`` (hours may have more digits)."""
    return (f"(CAST({value} AS INTEGER) * 3600 + CAST(substr({value}, instr({value}, ':') + 1) "
            f"AS INTEGER) * 60 + CAST(substr({value}, instr({value}, ':') + 4) AS INTEGER))")


#: A workflow's figures: the usage strings summed by SQLite in C, read as
#: jobbridge.report.parse_usage reads the forms the backends write (``HH:MM:SS``,
#: ``kb``; the exact ``cpu_s``/``wall_s`` first). Python takes about a second per
#: 100,000 jobs, at every refresh of a running workflow. ``LIMIT -1 OFFSET 0`` keeps
#: SQLite from flattening the subqueries, which would compute every ``instr`` several
#: times over.
_FIGURES_SQL = (
    "SELECT count(c), sum(c), max(CAST(m AS INTEGER)), "
    "sum(CASE WHEN c IS NOT NULL THEN w * coalesce(CAST(n AS INTEGER), 1) END) FROM ("
    f"SELECT coalesce(CAST(cs AS REAL), {_seconds('c')}) AS c, "
    f"coalesce(CAST(ws AS REAL), {_seconds('w')}) AS w, m, n "
    f"FROM (SELECT {_after('cput')} AS c, {_after('cpu_s')} AS cs, {_after('mem')} AS m, "
    f"{_after('walltime')} AS w, {_after('wall_s')} AS ws, {_after('ncpus')} AS n "
    "FROM (SELECT ' ' || resource_usage AS t FROM jobs WHERE workflow_id = ? AND hidden = 0 "
    "AND resource_usage IS NOT NULL LIMIT -1 OFFSET 0) LIMIT -1 OFFSET 0))")


#: While jobs run, how old the usage figures and the report may be before they are
#: computed again.
FIGURES_MAX_AGE = 5.0


class _SignedCache:
    """A value computed from each workflow's jobs (its usage sums, its report),
    computed again only when their records changed (``signature``: a job started or
    ended, an attempt was recorded, a restart), and while jobs run at most every
    FIGURES_MAX_AGE seconds, or five times what it took (the sums: half a second a
    100,000 jobs; a report: a few seconds)."""

    def __init__(self, size: int = 8) -> None:
        self._lock = threading.Lock()
        self._size = size
        #: (signature, when computed, value, how long it may be kept while jobs run)
        self._known: OrderedDict[tuple[str, int], tuple[tuple[Any, ...], float, Any, float]] = (
            OrderedDict())

    def get(self, store: Store, workflow_id: int, signature: tuple[Any, ...], running: bool,
            compute: Callable[[], Any]) -> Any:
        key = (str(store.path), workflow_id)
        with self._lock:
            known = self._known.get(key)
        now = time.monotonic()
        if known is not None and (known[0] == signature or (
                running and now - known[1] < known[3])):
            return known[2]
        value = compute()
        cost = time.monotonic() - now
        with self._lock:  # kept the longer, the costlier: at most a fifth of the time busy
            self._known[key] = (signature, now, value, max(FIGURES_MAX_AGE, 5 * cost))
            self._known.move_to_end(key)
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        return value


_FIGURES = _SignedCache()
_REPORTS = _SignedCache(size=4)


def _signature(store: Store, workflow_id: int) -> tuple[Any, ...]:
    """(first start, last end, jobs running, now: julian days) and what changes
    when a job starts or ends, an attempt is recorded or the workflow restarts."""
    first, last, running, now, *signature = store.db.execute(
        "SELECT min(julianday(coalesce(execution_date, submission_date))), "
        "max(julianday(ending_date)), sum(execution_date IS NOT NULL AND ending_date IS NULL), "
        "julianday('now'), count(resource_usage), max(ending_date), count(execution_date), "
        "count(submission_date), sum(attempt), "
        "(SELECT count(*) FROM attempts WHERE workflow_id = ?), "
        "(SELECT submission_date FROM workflows WHERE id = ?) "
        "FROM jobs WHERE workflow_id = ? AND hidden = 0",
        (workflow_id, workflow_id, workflow_id)).fetchone()
    return first, last, running, now, tuple(signature)


def _figures(store: Store, workflow_id: int) -> dict[str, Any]:
    """CPU time, peak memory, CPU efficiency (CPU time over wall time times CPUs) and
    wall time (first start to last end, or to now while jobs run)."""
    first, last, running, now, signature = _signature(store, workflow_id)
    measured, cpu, peak, core_seconds = _FIGURES.get(
        store, workflow_id, signature, bool(running),
        lambda: tuple(store.db.execute(_FIGURES_SQL, (workflow_id,)).fetchone()))
    end = now if running or last is None else last
    return {"cpu_s": cpu if measured else None, "peak_mem_kb": peak,
            "efficiency": cpu / core_seconds if measured and core_seconds else None,
            "measured_jobs": measured,
            "wall_s": None if first is None else (end - first) * _SECONDS_PER_DAY}


# --- the jobs table ------------------------------------------------------------------------------


def jobs_page(store: Store, workflow_id: int, state: str | None = None, search: str = "",
              sort: str = "order", descending: bool = False, offset: int = 0,
              limit: int = 100, group: int | None = None) -> dict[str, Any]:
    """One page of a workflow's jobs table, filtered, searched and sorted in SQL."""
    if state is not None and state not in CLASSES:
        raise InputError(f"state: must be one of {', '.join(CLASSES)}")
    if sort not in SORTS:
        raise InputError(f"sort: must be one of {', '.join(SORTS)}")
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    where = ["workflow_id = ?", "hidden = 0"]
    params: list[Any] = [workflow_id]
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(job_id LIKE ? ESCAPE '\\' OR name LIKE ? ESCAPE '\\')")
        params += [pattern, pattern]
    with store.snapshot():
        store.workflow(workflow_id)  # a clear error for an unknown workflow
        if group is not None:  # a Python test: portable (no JSON1 needed), 0.1 s a 100,000 jobs
            members = set(topology(store, workflow_id).members(group))
            store.db.create_function("jb_member", 1, members.__contains__, deterministic=True)
            where.append("jb_member(idx)")
        counts = dict.fromkeys(CLASSES, 0)
        for cls, number in store.db.execute(
                f"SELECT {CLASS_SQL}, count(*) FROM jobs WHERE {' AND '.join(where)} GROUP BY 1",
                params):
            counts[cls] = number
        if state is not None:
            where.append(f"{CLASS_SQL} = ?")
            params.append(state)
        order = "DESC" if descending else "ASC"
        expression = SORTS[sort]
        rows = store.db.execute(
            f"SELECT job_id, name, status, exit_status, exit_value, term_sig, exit_reason, "
            f"scheduler_job_id, attempt, submission_date, execution_date, ending_date, "
            f"(julianday(coalesce(ending_date, 'now')) - julianday(execution_date)) * 86400 "
            f"FROM jobs WHERE {' AND '.join(where)} "
            f"ORDER BY {expression} IS NULL, {expression} {order}, idx {order} "
            f"LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
    total = counts[state] if state is not None else sum(counts.values())
    return {"total": total, "offset": offset, "limit": limit, "counts": counts,
            "rows": [{"id": r[0], "name": r[1], "status": r[2], "class": job_class(r[2], r[3]),
                      "exit_status": r[3], "exit_value": r[4], "term_sig": r[5],
                      "exit_reason": r[6], "scheduler_job_id": r[7], "attempt": r[8],
                      "submission_date": r[9], "execution_date": r[10], "ending_date": r[11],
                      "duration_s": r[12]} for r in rows]}


# --- one job -------------------------------------------------------------------------------------


def job(store: Store, workflow_id: int, job_id: str, show_env: bool = False) -> dict[str, Any]:
    """A job page: its command as given, where it ran, how it ended, what it used
    against what it asked for, its neighbours and the tails of its output."""
    with store.snapshot():
        wf = store.workflow(workflow_id)
        row = store.job(workflow_id, job_id)
        preds, succs = _neighbours(store, workflow_id, row.idx)
        recorded = store.attempts(workflow_id, row.idx).get(row.idx, [])
    spec = row.spec
    history = report.job_report(row, recorded, retry.limits(wf.config),
                                report.scheduler_class(wf.scheduler_type))
    return {
        "id": row.job_id, "name": row.name, "workflow": {"id": wf.id, "name": wf.name,
                                                         "status": wf.status},
        "status": row.status, "class": job_class(row.status, row.exit_status),
        "exit_status": row.exit_status, "exit_value": row.exit_value, "term_sig": row.term_sig,
        "exit_reason": row.exit_reason, "scheduler_job_id": row.scheduler_job_id,
        "resource": wf.resource, "scheduler_type": wf.scheduler_type, "attempt": row.attempt,
        "submission_date": row.submission_date, "execution_date": row.execution_date,
        "ending_date": row.ending_date,
        "command": spec.command, "working_directory": spec.working_directory,
        "stdin": spec.stdin, "queue": spec.queue,
        "native_specification": spec.native_specification,
        "parallel_job_info": spec.parallel_job_info, "priority": spec.priority,
        "env": {name: value if show_env else None for name, value in sorted(spec.env.items())},
        "attempts": [attempt.as_json() for attempt in history.attempts],
        "resource_usage": row.resource_usage,
        "depends_on": preds, "needed_by": succs,
        "stdout": _tail(spec.stdout_file),
        "stderr": None if spec.join_stderrout else _tail(spec.stderr_file),
        "ended": row.status in constants.ENDED_JOB_STATUS,
    }


#: Most neighbours a job page lists on each side.
MAX_NEIGHBOURS = 50


def _neighbours(store: Store, workflow_id: int, idx: int
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The jobs a job waits for and those waiting for it, seen through hidden barriers
    (one barrier stands for a group-to-group dependency)."""
    def side(column: str, other: str) -> dict[str, Any]:
        query = (f"SELECT j.job_id, j.hidden, j.idx, j.status, j.exit_status FROM dependencies d "
                 f"JOIN jobs j ON j.workflow_id = d.workflow_id AND j.idx = d.{other} "
                 f"WHERE d.workflow_id = ? AND d.{column} = ?")
        found: list[dict[str, Any]] = []
        total = 0
        stack = [idx]
        seen = {idx}
        while stack:
            for job_id, hidden, next_idx, status, exit_status in store.db.execute(
                    query, (workflow_id, stack.pop())):
                if next_idx in seen:
                    continue
                seen.add(next_idx)
                if hidden:
                    stack.append(next_idx)
                    continue
                total += 1
                if len(found) < MAX_NEIGHBOURS:
                    found.append({"id": job_id, "class": job_class(status, exit_status)})
        return {"jobs": found, "total": total}

    return side("after_idx", "before_idx"), side("before_idx", "after_idx")


def _tail(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    file = Path(path)
    try:
        with file.open("rb") as stream:
            size = stream.seek(0, 2)
            start = max(0, size - TAIL_BYTES)
            stream.seek(start)
            data = stream.read(TAIL_BYTES)
    except FileNotFoundError:
        return {"path": path, "exists": False, "size": 0, "text": "", "truncated": False}
    except OSError as error:
        return {"path": path, "exists": False, "size": 0, "truncated": False,
                "text": "", "error": error.strerror}
    if start:  # from the first whole line
        data = data[data.find(b"\n") + 1:] if b"\n" in data else data
    return {"path": path, "exists": True, "size": size, "truncated": start > 0,
            "text": data.decode("utf-8", "replace")}


def output_path(store: Store, workflow_id: int, job_id: str, stream: str) -> Path:
    """The file of a job's ``stdout`` or ``stderr`` (what the download link sends)."""
    spec = store.job(workflow_id, job_id).spec
    path = spec.stdout_file if stream == "stdout" else spec.stderr_file
    if path is None or (stream == "stderr" and spec.join_stderrout):
        raise InputError(f"job {job_id!r} has no {stream} file")
    return Path(path)


# --- the efficiency report ----------------------------------------------------------------------

#: Most rows of the report's table one request returns.
REPORT_ROWS = 100


@dataclass
class _Drawn:
    """A workflow's report as the ui shows it: what ``jobbridge report`` computes
    (jobbridge.report), its figures drawn, and where each row of its table is (a
    job, its index, its row's number). The report itself is not kept (a 100,000-job
    one holds every job's record: 150 MB): a page's rows are made when asked for,
    from the records of its jobs alone."""

    summary: list[tuple[str, str]]
    usage_source: str
    figures: dict[str, str]
    rows: list[tuple[str, int, int]]

    def page(self, store: Store, workflow_id: int, offset: int, limit: int
             ) -> list[dict[str, Any]]:
        made: dict[str, list[tuple[list[str], str]]] = {}
        shown = []
        with store.snapshot():
            wf = store.workflow(workflow_id)
            caps, kind = retry.limits(wf.config), report.scheduler_class(wf.scheduler_type)
            for job_id, idx, number in self.rows[offset:offset + limit]:
                if job_id not in made:
                    recorded = store.attempts(workflow_id, idx).get(idx, [])
                    made[job_id] = report.job_rows(report.job_report(
                        store.job(workflow_id, job_id), recorded, caps, kind))
                if number < len(made[job_id]):  # else its attempts changed since: next time
                    cells, outcome = made[job_id][number]
                    shown.append({"job": job_id, "outcome": outcome, "cells": cells})
        return shown


def _draw_report(store: Store, workflow_id: int) -> _Drawn:
    built = report.build_report(store, workflow_id)
    rows = [(job.job_id, job.idx, number) for job in built.jobs
            for number in range(len(job.attempts) or 1)]
    return _Drawn(report.summary_items(built), built.usage_source, report.figures(built), rows)


def efficiency(store: Store, workflow_id: int, offset: int = 0, limit: int = REPORT_ROWS
               ) -> dict[str, Any]:
    """The report tab: `jobbridge report`'s summary, figures (efficiency histograms,
    timeline) and one page of its table (one row per attempt, with the source of
    each figure). Built by jobbridge.report, again only when jobs changed."""
    limit = max(1, min(limit, MAX_PAGE))
    offset = max(0, offset)
    with store.snapshot():
        store.workflow(workflow_id)
        _, _, running, _, signature = _signature(store, workflow_id)
    # read after the signature (in its own snapshot): a change between the two is
    # seen by the next signature
    drawn: _Drawn = _REPORTS.get(store, workflow_id, signature, bool(running),
                                 lambda: _draw_report(store, workflow_id))
    return {"summary": drawn.summary, "usage_source": drawn.usage_source,
            "figures": drawn.figures, "header": report.TABLE_HEADER, "total": len(drawn.rows),
            "offset": offset, "limit": limit,
            "rows": drawn.page(store, workflow_id, offset, limit)}


# --- the graph -----------------------------------------------------------------------------------


@dataclass
class Topology:
    """A workflow's drawn graph: nodes (jobs or groups of jobs), their edges and
    places. ``node_of[idx]`` is the node of each job (hidden barriers included)."""

    nodes: list[dict[str, Any]]
    edges: list[dict[str, int]]
    node_of: list[int]
    grouped: bool
    width: float
    height: float

    def members(self, node: int) -> list[int]:
        if not 0 <= node < len(self.nodes):
            raise InputError(f"group: no node {node} in this graph")
        return [idx for idx, owner in enumerate(self.node_of) if owner == node]

    def as_json(self) -> dict[str, Any]:
        return {"grouped": self.grouped, "nodes": self.nodes, "edges": self.edges,
                "width": self.width, "height": self.height, "classes": CLASSES}


NODE_W, GROUP_W, NODE_H, GAP_X, GAP_Y, MARGIN = 130, 200, 48, 26, 56, 30


class _TopologyCache:
    """Topologies of the last few workflows drawn: a workflow's jobs and dependencies
    never change once stored, only their statuses do. The key holds the database and
    the submission date too: ids are never reused within a database, but a home can
    be emptied and started again."""

    def __init__(self, size: int = 8) -> None:
        self._lock = threading.Lock()
        self._size = size
        self._known: OrderedDict[tuple[str, int, str], Topology] = OrderedDict()

    def get(self, store: Store, workflow_id: int) -> Topology:
        key = (str(store.path), workflow_id, store.workflow(workflow_id).submission_date)
        with self._lock:  # one build at a time: two pages opening a big workflow share it
            known = self._known.get(key)
            if known is None:
                known = self._known[key] = _build_topology(store, workflow_id)
                while len(self._known) > self._size:
                    self._known.popitem(last=False)
            self._known.move_to_end(key)
            return known


_TOPOLOGIES = _TopologyCache()


def topology(store: Store, workflow_id: int) -> Topology:
    """The drawn graph of a workflow (cached)."""
    return _TOPOLOGIES.get(store, workflow_id)


def graph(store: Store, workflow_id: int) -> dict[str, Any]:
    """The graph page: nodes, edges and places (fetched once), with the counts."""
    with store.snapshot():
        store.workflow(workflow_id)
        drawn = topology(store, workflow_id)
        counts = _node_counts(store, workflow_id, drawn)
    return {**drawn.as_json(), "counts": counts}


def graph_counts(store: Store, workflow_id: int) -> dict[str, Any]:
    """Each node's jobs per class (CLASSES order): what a live graph re-reads."""
    with store.snapshot():
        store.workflow(workflow_id)
        return {"counts": _node_counts(store, workflow_id, topology(store, workflow_id))}


def _node_counts(store: Store, workflow_id: int, drawn: Topology) -> list[list[int]]:
    index = {cls: i for i, cls in enumerate(CLASSES)}
    counts = [[0] * len(CLASSES) for _ in drawn.nodes]
    node_of = drawn.node_of
    rows = store.db.execute(f"SELECT idx, {CLASS_SQL} FROM jobs WHERE workflow_id = ?",
                            (workflow_id,))
    for idx, cls in rows:
        if idx < len(node_of):
            counts[node_of[idx]][index[cls]] += 1
    return counts


_DIGITS = re.compile(r"\d+")


def _build_topology(store: Store, workflow_id: int) -> Topology:
    jobs = store.db.execute("SELECT idx, job_id, hidden FROM jobs WHERE workflow_id = ? "
                            "ORDER BY idx", (workflow_id,)).fetchall()
    edges = store.db.execute("SELECT before_idx, after_idx FROM dependencies "
                             "WHERE workflow_id = ?", (workflow_id,)).fetchall()
    size = len(jobs)  # idx runs from 0 (Store.add_workflow)
    ids: list[str] = [job[1] for job in jobs]
    hidden: list[bool] = [bool(job[2]) for job in jobs]
    if size - sum(hidden) <= JOBS_DRAWN_ONE_BY_ONE:
        node_of = list(range(size))
        return _quotient(ids, hidden, node_of, _weights(node_of, edges), None)
    depth = _depths(size, edges)
    patterns: list[Hashable] = [("~", idx) if hide else _DIGITS.sub("#", job_id)
                                for idx, job_id, hide in jobs]
    step = max(1, -(-(max(depth, default=0) + 1) // MAX_LAYERS))
    candidates: list[Callable[[], list[Hashable]]] = [
        lambda: list(zip(patterns, depth, strict=True)),
        lambda: patterns,
        lambda: [(p, d // step) for p, d in zip(patterns, depth, strict=True)],
    ]
    for keys in candidates:
        node_of = _number(keys())
        if max(node_of, default=0) < MAX_GROUPS:
            weights = _weights(node_of, edges)
            if _acyclic(weights):
                return _quotient(ids, hidden, node_of, weights, patterns)
    # always acyclic (edges go down) and at most MAX_LAYERS nodes
    node_of = _number([d // step for d in depth])
    return _quotient(ids, hidden, node_of, _weights(node_of, edges), patterns)


def _number(keys: Sequence[Hashable]) -> list[int]:
    """Each key's node number, in order of first appearance."""
    numbers: dict[Hashable, int] = {}
    return [numbers.setdefault(key, len(numbers)) for key in keys]


def _depths(size: int, edges: Sequence[tuple[int, int]]) -> list[int]:
    """Each job's depth (longest dependency path to it), in one pass over a flat list
    of successors, each job's a slice of it (a list per job would cost 100,000
    lists)."""
    waiting = [0] * size
    start = [0] * (size + 1)
    for before, after in edges:
        waiting[after] += 1
        start[before + 1] += 1
    start = list(accumulate(start))
    free = start[:]
    afters = [0] * len(edges)
    for before, after in edges:
        afters[free[before]] = after
        free[before] += 1
    depth = [0] * size
    ready = [node for node in range(size) if not waiting[node]]
    while ready:
        node = ready.pop()
        below = depth[node] + 1
        for nxt in afters[start[node]:start[node + 1]]:
            if depth[nxt] < below:  # noqa: PLR1730 (max() is a call per edge)
                depth[nxt] = below
            waiting[nxt] -= 1
            if not waiting[nxt]:
                ready.append(nxt)
    return depth


def _weights(node_of: list[int], edges: Sequence[tuple[int, int]]) -> Counter[tuple[int, int]]:
    """How many job edges join each pair of distinct nodes (counted in C)."""
    lookup = node_of.__getitem__
    weights = Counter(zip(map(lookup, (e[0] for e in edges)), map(lookup, (e[1] for e in edges)),
                          strict=True))
    for pair in [pair for pair in weights if pair[0] == pair[1]]:
        del weights[pair]
    return weights


def _acyclic(weights: Counter[tuple[int, int]]) -> bool:
    succs: dict[int, list[int]] = {}
    waiting: Counter[int] = Counter()
    for before, after in weights:
        succs.setdefault(before, []).append(after)
        waiting[after] += 1
    ready = [n for n in succs if waiting[n] == 0]
    left = len(set(succs) | set(waiting))
    while ready:
        node = ready.pop()
        left -= 1
        for nxt in succs.get(node, ()):
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    return left == 0


def _quotient(ids: Sequence[str], hidden: Sequence[bool], node_of: list[int],
              weights: Counter[tuple[int, int]], patterns: Sequence[Hashable] | None
              ) -> Topology:
    """The graph whose nodes are the classes of ``node_of`` and edges ``weights``
    (``patterns``: each job's name pattern, when jobs are grouped), in layers."""
    count = max(node_of, default=-1) + 1
    members: list[list[int]] = [[] for _ in range(count)]
    for idx, node in enumerate(node_of):
        if not hidden[idx]:
            members[node].append(idx)
    rows = _ordered_rows(count, list(weights))
    widths = [_node_width(len(group), patterns is not None) for group in members]
    widest = max((sum(widths[n] + GAP_X for n in row) for row in rows), default=0)
    nodes: list[dict[str, Any]] = [{} for _ in range(count)]
    for layer, row in enumerate(rows):
        x = MARGIN + (widest - sum(widths[n] + GAP_X for n in row)) / 2
        for node in row:
            nodes[node] = {"id": node, "layer": layer, "x": round(x + widths[node] / 2, 1),
                           "y": MARGIN + layer * (NODE_H + GAP_Y) + NODE_H / 2,
                           "w": widths[node], "h": NODE_H, "count": len(members[node]),
                           **_node_label(members[node], ids, patterns)}
            x += widths[node] + GAP_X
    return Topology(nodes, [{"from": b, "to": a, "count": n} for (b, a), n in weights.items()],
                    node_of, patterns is not None, widest + 2 * MARGIN,
                    2 * MARGIN + len(rows) * (NODE_H + GAP_Y) - GAP_Y)


def _ordered_rows(count: int, edges: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Nodes in rows by depth, each row ordered by its nodes' predecessors' mean place
    (one barycenter pass, as `jobbridge graph` does) so that edges stay short."""
    preds: list[list[int]] = [[] for _ in range(count)]
    for before, after in edges:
        preds[after].append(before)
    depth = _depths(count, edges)
    rows: list[list[int]] = [[] for _ in range(max(depth, default=-1) + 1)]
    for node, level in enumerate(depth):
        rows[level].append(node)
    place = [0.0] * count
    for number, row in enumerate(rows):
        if number:  # below the first row, every node has a predecessor
            row.sort(key=lambda n: sum(place[p] for p in preds[n]) / len(preds[n]))
        for order, node in enumerate(row):
            place[node] = order - len(row) / 2
    return rows


def _node_width(members: int, grouped: bool) -> int:
    if not members:
        return 12  # a hidden barrier: a dot
    return GROUP_W if grouped and members > 1 else NODE_W


def _node_label(members: Sequence[int], ids: Sequence[str],
                patterns: Sequence[Hashable] | None) -> dict[str, Any]:
    if not members:
        return {"kind": "barrier", "label": ""}
    first, last = ids[members[0]], ids[members[-1]]
    if len(members) == 1:
        return {"kind": "job", "label": first, "job": first}
    assert patterns is not None
    shared = patterns[members[0]]
    same = all(patterns[m] == shared for m in members)
    return {"kind": "group", "label": str(shared) if same else f"{first} … {last}",
            "first": first, "last": last}


# --- the timeline --------------------------------------------------------------------------------


def timeline(store: Store, workflow_id: int, buckets: int = 200) -> dict[str, Any]:
    """Queue, start and end of the jobs, one lane each; past TIMELINE_JOBS jobs one
    lane per graph node (its first start to its last end). Times are seconds from
    the first submission; ``running`` counts the jobs running in each of ``buckets``
    equal slices of the whole span."""
    started = "(execution_date IS NOT NULL OR submission_date IS NOT NULL)"
    with store.snapshot():
        store.workflow(workflow_id)
        origin, last, now, count = store.db.execute(
            "SELECT min(julianday(coalesce(submission_date, execution_date))), "
            "max(julianday(ending_date)), julianday('now'), count(*) FROM jobs "
            f"WHERE workflow_id = ? AND hidden = 0 AND {started}", (workflow_id,)).fetchone()
        if not count:
            return {"mode": "jobs", "lanes": [], "span_s": 0, "running": [], "start": None}
        unended = store.db.execute(
            f"SELECT count(*) FROM jobs WHERE workflow_id = ? AND hidden = 0 AND {started} "
            "AND ending_date IS NULL", (workflow_id,)).fetchone()[0]
        end = now if unended or last is None else last
        span = max(0.0, (end - origin) * _SECONDS_PER_DAY)
        seconds = f"round((julianday({{}}) - {origin!r}) * 86400, 3)"
        running = _running_over_time(store, workflow_id, origin, end, buckets)
        result = {"span_s": span, "running": running, "start": _iso_of_julian(origin)}
        if count <= TIMELINE_JOBS:
            rows = store.db.execute(
                f"SELECT job_id, {CLASS_SQL}, {seconds.format('submission_date')}, "
                f"{seconds.format('execution_date')}, {seconds.format('ending_date')} FROM jobs "
                f"WHERE workflow_id = ? AND hidden = 0 AND {started} "
                "ORDER BY julianday(coalesce(execution_date, submission_date)), idx",
                (workflow_id,)).fetchall()
            return {**result, "mode": "jobs", "lanes": [
                {"id": r[0], "class": r[1], "queued": r[2], "start": r[3], "end": r[4]}
                for r in rows]}
        drawn = topology(store, workflow_id)
        rows = store.db.execute(
            f"SELECT idx, {CLASS_SQL}, {seconds.format('execution_date')}, "
            f"{seconds.format('ending_date')} FROM jobs WHERE workflow_id = ? AND hidden = 0 "
            f"AND {started}", (workflow_id,)).fetchall()
    lanes: dict[int, dict[str, Any]] = {}
    for idx, cls, start, stop in rows:
        node = drawn.node_of[idx]
        lane = lanes.get(node)
        if lane is None:
            lane = lanes[node] = {"node": node, "label": drawn.nodes[node]["label"],
                                  "start": start, "end": stop,
                                  "counts": dict.fromkeys(CLASSES, 0)}
        lane["counts"][cls] += 1
        if start is not None and (lane["start"] is None or start < lane["start"]):
            lane["start"] = start
        if stop is not None and (lane["end"] is None or stop > lane["end"]):
            lane["end"] = stop
    ordered = sorted(lanes.values(), key=lambda g: (g["start"] is None, g["start"] or 0))
    return {**result, "mode": "groups", "lanes": ordered}


def _running_over_time(store: Store, workflow_id: int, origin: float, end: float,
                       buckets: int) -> list[int]:
    """How many jobs ran at some moment of each slice of ``origin..end`` (julian
    days): each job counted from the slice of its start to that of its end."""
    width = (end - origin) / buckets
    if width <= 0:
        return [0] * buckets
    delta = [0] * (buckets + 1)
    for column, shift in (("execution_date", 0), (f"coalesce(ending_date, {end!r})", 1)):
        rows = store.db.execute(
            f"SELECT min({buckets - 1}, max(0, CAST((julianday({column}) - ?) / ? AS INTEGER))),"
            " count(*) FROM jobs WHERE workflow_id = ? AND hidden = 0 AND execution_date IS NOT"
            " NULL GROUP BY 1", (origin, width, workflow_id))
        for bucket, number in rows:
            delta[bucket + shift] += number if shift == 0 else -number
    running, level = [], 0
    for change in delta[:buckets]:
        level += change
        running.append(level)
    return running


# --- dates ---------------------------------------------------------------------------------------


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _iso_of_julian(day: float) -> str:
    """A julian day number (SQLite's julianday()) as an ISO 8601 date."""
    return datetime.fromtimestamp((day - 2440587.5) * _SECONDS_PER_DAY, UTC).isoformat()


# --- views by name -------------------------------------------------------------------------------


def job_id_param(params: Mapping[str, str]) -> str:
    job_id = params.get("id")
    if not job_id:
        raise InputError("id: the job id is required (?id=JOB)")
    return job_id


def int_param(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"{name}: must be an integer, not {text!r}") from None
    if abs(value) > SQL_INT_MAX:
        raise InputError(f"{name}: {text} is out of range")
    return value


def workflow_number(text: str) -> int:
    """The number of a workflow id from a URL (``12``): ASCII digits within SQLite's
    integers, else no such workflow."""
    if not (text.isascii() and text.isdigit()) or int(text) > SQL_INT_MAX:
        raise InputError(f"no workflow {text!r}")
    return int(text)


def _jobs_view(store: Store, workflow_id: int, params: Mapping[str, str]) -> dict[str, Any]:
    group = params.get("group")
    return jobs_page(
        store, workflow_id, state=params.get("state") or None, search=params.get("q", ""),
        sort=params.get("sort", "order"), descending=params.get("order") == "desc",
        offset=int_param(params, "offset", 0), limit=int_param(params, "limit", 100),
        group=None if group in (None, "") else int_param(params, "group", 0))


#: The views of one workflow, by the name of their API path (``/api/workflows/ID/NAME``;
#: ``""``: the workflow's header), each from the store, the workflow and the query.
WORKFLOW_VIEWS: dict[str, Callable[[Store, int, Mapping[str, str]], Any]] = {
    "": lambda store, wf, q: workflow(store, wf),
    "figures": lambda store, wf, q: figures(store, wf),
    "graph": lambda store, wf, q: graph(store, wf),
    "graph/counts": lambda store, wf, q: graph_counts(store, wf),
    "jobs": _jobs_view,
    "timeline": lambda store, wf, q: timeline(store, wf),
    "report": lambda store, wf, q: efficiency(store, wf, int_param(q, "offset", 0),
                                              int_param(q, "limit", REPORT_ROWS)),
    "job": lambda store, wf, q: job(store, wf, job_id_param(q), q.get("env") == "1"),
}


def read(store: Store, view: str, workflow_id: int | None, params: Mapping[str, str]) -> Any:
    """A view by name with its query's parameters: ``workflows`` (the list, no
    workflow) or one of WORKFLOW_VIEWS. What the HTTP API answers, and what a
    remote host answers a laptop's dashboard (the protocol's ``ui`` request)."""
    if view == "workflows":
        return workflows(store)
    show = WORKFLOW_VIEWS.get(view)
    if show is None or workflow_id is None:
        raise InputError(f"view {view!r}: one of workflows, "
                         f"{', '.join(repr(name) for name in WORKFLOW_VIEWS)} with a workflow")
    return show(store, workflow_id, params)
