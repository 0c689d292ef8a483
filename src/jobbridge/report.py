"""Efficiency reports: what each attempt of each job asked for against what it used.

``jobbridge report WF`` prints them (a table, ``--tsv``, ``--json``, ``--html``);
``jobbridge ui`` shows the same figures. Here, in one place:

- :func:`parse_usage` reads every backend's ``resource_usage`` string (soma-workflow's
  ``cput``/``walltime``/``mem``/``vmem`` items and the exact ``cpu_s``/``wall_s``)
  into numbers, saying which item, hence which measurer, each figure came from;
- :func:`build_report` gathers a stored workflow's attempts into a :class:`Report`
  (rows, :class:`Summary`);
- :func:`histogram_svg`, :func:`timeline_svg` and :func:`html_page` draw it as
  self-contained SVG and HTML (no script, no font or style from the network).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from html import escape
from typing import Any

from . import constants, retry
from .model import describe_exit
from .scheduler import Scheduler, get_scheduler_implementation
from .store import AttemptRow, JobRow, Store, WorkflowRow, epoch
from .text_table import aligned

#: The three figures of a usage string, and the items each is read from, best first.
FIGURE_KEYS: Mapping[str, tuple[str, ...]] = {
    "cpu": ("cpu_s", "cput"),
    "mem": ("mem", "vmem"),
    "wall": ("wall_s", "walltime"),
}
#: Who measured an item that a batch job's wrapper supplied (``wrapper=`` item).
WRAPPER_SOURCE = "job wrapper (wait4)"
_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


# --- usage strings ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    """The figures of one usage string: CPU seconds, peak memory in bytes, wall
    seconds (None where unknown); ``keys``: for each figure ("cpu", "mem", "wall")
    the item it was read from; ``wrapper``: items the job wrapper supplied."""

    cpu_s: float | None = None
    mem_bytes: int | None = None
    wall_s: float | None = None
    keys: Mapping[str, str] = field(default_factory=dict)
    wrapper: frozenset[str] = frozenset()

    def source(self, figure: str, measurer: str) -> str | None:
        """Who measured ``figure``: the wrapper, else ``measurer`` (the scheduler's
        ``usage_source``); a peak read from ``vmem`` is said to be virtual memory."""
        key = self.keys.get(figure)
        if key is None:
            return None
        who = WRAPPER_SOURCE if key in self.wrapper else measurer
        return f"{who}, virtual memory" if key == "vmem" else who


def parse_usage(text: str | None, peak_memory_item: str = "mem") -> Usage:
    """A ``resource_usage`` string's figures. Exact items (``cpu_s``, ``wall_s``)
    win over the whole-second ones; the peak memory is ``peak_memory_item`` (the
    scheduler's: what its limits bound), else the other of ``mem`` and ``vmem``.
    Sizes may be ``13530kb``, ``512MB``, ``1.5G`` or bytes; durations
    ``[D-]HH:MM:SS`` or seconds. Unreadable items are left out, never guessed."""
    items: dict[str, str] = {}
    for item in (text or "").split():
        key, sep, value = item.partition("=")
        if sep:
            items[key.lower()] = value
    wrapper = frozenset(items.get("wrapper", "").split(",")) - {""}
    values: dict[str, float] = {}
    keys: dict[str, str] = {}
    for figure, keys_of_figure in FIGURE_KEYS.items():
        candidates = (sorted(keys_of_figure, key=lambda c: c != peak_memory_item)
                      if figure == "mem" else keys_of_figure)  # the scheduler's item first
        for key in candidates:
            if key not in items:
                continue
            number = _size(items[key]) if figure == "mem" else _seconds(items[key])
            if number is not None:
                values[figure], keys[figure] = number, key
                break
    mem = values.get("mem")
    return Usage(values.get("cpu"), None if mem is None else int(mem), values.get("wall"),
                 keys, wrapper)


def _seconds(text: str) -> float | None:
    match = _DURATION.match(text.strip())
    if match is None:
        return None
    days, first, second, last = match.groups()
    parts = [int(part) for part in (first, second) if part is not None]
    hours, minutes = [0, 0, *parts][-2:]
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + float(last)


def _size(text: str) -> float | None:
    match = _SIZE.match(text.strip())
    if match is None:
        return None
    return float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


# --- the report -------------------------------------------------------------------------------
@dataclass
class AttemptReport:
    """One attempt of a job: what it asked for, what it used, how it ended."""

    job_id: str
    name: str | None
    row: AttemptRow
    usage: Usage
    #: figure -> who measured it (None: unknown)
    sources: dict[str, str | None]

    @property
    def cpus(self) -> int:
        return int(self.row.requested.get("cpus", 1))

    @property
    def memory_mb(self) -> int | None:
        return self.row.requested.get("memory_mb")

    @property
    def walltime_s(self) -> int | None:
        return self.row.requested.get("walltime_s")

    @property
    def outcome(self) -> str:
        """``done``, ``retried`` (failed, tried again), ``failed``, or the status of
        an attempt that has not ended (``running``...)."""
        if self.row.ending_date is None and self.row.exit_status is None:
            return constants.RUNNING if self.row.execution_date else constants.QUEUED_ACTIVE
        if self.row.exit_status == constants.FINISHED_REGULARLY and self.row.exit_value == 0:
            return constants.DONE
        return "retried" if self.row.retried else constants.FAILED

    @property
    def exit(self) -> str:
        words = describe_exit(self.row.exit_status, self.row.exit_value, self.row.term_sig)
        return f"{words}: {self.row.exit_reason}" if self.row.exit_reason else words

    @property
    def cpu_efficiency(self) -> float | None:
        """CPU time used / (wall time x CPUs asked for)."""
        if self.usage.cpu_s is None or not self.usage.wall_s:
            return None
        return self.usage.cpu_s / (self.usage.wall_s * self.cpus)

    @property
    def memory_efficiency(self) -> float | None:
        """Peak memory / memory asked for."""
        if self.usage.mem_bytes is None or not self.memory_mb:
            return None
        return self.usage.mem_bytes / (self.memory_mb * 1024 * 1024)

    @property
    def time_efficiency(self) -> float | None:
        """Wall time / walltime asked for."""
        if self.usage.wall_s is None or not self.walltime_s:
            return None
        return self.usage.wall_s / self.walltime_s

    def as_json(self) -> dict[str, Any]:
        """The attempt as ``status --json`` gives it, with what the report adds."""
        stored = self.row.as_json()
        del stored["requested"], stored["retried"]  # replaced by the report's own figures
        return {**stored, "outcome": self.outcome,
                "requested": {"cpus": self.cpus, "memory_mb": self.memory_mb,
                              "walltime_s": self.walltime_s},
                "used": {"cpu_s": self.usage.cpu_s, "mem_bytes": self.usage.mem_bytes,
                         "wall_s": self.usage.wall_s},
                "sources": {"cpu_s": self.sources["cpu"], "mem_bytes": self.sources["mem"],
                            "wall_s": self.sources["wall"]},
                "efficiency": {"cpu": self.cpu_efficiency, "memory": self.memory_efficiency,
                               "time": self.time_efficiency}}


@dataclass
class JobReport:
    job_id: str
    name: str | None
    status: str
    attempts: list[AttemptReport]
    #: the job's index in its workflow (the store's key)
    idx: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"id": self.job_id, "name": self.name, "status": self.status,
                "attempts": [attempt.as_json() for attempt in self.attempts]}


@dataclass
class Summary:
    """Totals over every attempt of the workflow (hours are CPU-hours)."""

    jobs: int
    attempts: int
    retried_jobs: int
    failed_attempts: int
    cpu_hours: float
    #: CPU time of the attempts that did not succeed
    wasted_cpu_hours: float
    #: wall time x CPUs asked for, of the attempts whose usage is known
    allocated_cpu_hours: float
    cpu_efficiency: float | None
    #: sum of peak memory / sum of memory asked for, where both are known
    memory_efficiency: float | None
    #: attempts whose usage the scheduler did not give
    without_usage: int

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    workflow: WorkflowRow
    #: who measured the scheduler's usage figures (its ``usage_source``)
    usage_source: str
    jobs: list[JobReport]

    @cached_property
    def attempts(self) -> list[AttemptReport]:
        return [attempt for job in self.jobs for attempt in job.attempts]

    @cached_property
    def summary(self) -> Summary:
        """The totals, computed once (a built report does not change)."""
        attempts = [a for a in self.attempts if a.outcome in (constants.DONE, constants.FAILED,
                                                              "retried")]
        cpu = sum(a.usage.cpu_s or 0.0 for a in attempts)
        wasted = sum(a.usage.cpu_s or 0.0 for a in attempts if a.outcome != constants.DONE)
        allocated = sum(a.usage.wall_s * a.cpus for a in attempts
                        if a.usage.wall_s is not None and a.usage.cpu_s is not None)
        peaks = [(a.usage.mem_bytes, a.memory_mb) for a in attempts
                 if a.usage.mem_bytes is not None and a.memory_mb]
        asked = sum(mb * 1024 * 1024 for _, mb in peaks if mb)
        return Summary(
            jobs=len(self.jobs), attempts=len(attempts),
            retried_jobs=sum(any(a.row.retried for a in job.attempts) for job in self.jobs),
            failed_attempts=sum(a.outcome != constants.DONE for a in attempts),
            cpu_hours=cpu / 3600, wasted_cpu_hours=wasted / 3600,
            allocated_cpu_hours=allocated / 3600,
            cpu_efficiency=cpu / allocated if allocated else None,
            memory_efficiency=sum(p for p, _ in peaks if p) / asked if asked else None,
            without_usage=sum(a.row.resource_usage is None for a in attempts))

    def as_json(self) -> dict[str, Any]:
        workflow = self.workflow
        return {"id": str(workflow.id), "name": workflow.name, "status": workflow.status,
                "resource": workflow.resource, "scheduler_type": workflow.scheduler_type,
                "usage_source": self.usage_source, "summary": self.summary.as_json(),
                "jobs": [job.as_json() for job in self.jobs]}


def job_attempts(job: JobRow, recorded: Sequence[AttemptRow], caps: Mapping[str, int]
                 ) -> list[AttemptRow]:
    """A job's attempts: the recorded (ended) ones, then its current one if it was
    submitted and has no record yet (in flight; or ended in a home from before
    attempts were recorded)."""
    attempts = list(recorded)
    last = attempts[-1].attempt if attempts else 0
    if job.attempt > last and job.status != constants.NOT_SUBMITTED:
        resources = retry.attempt_resources(job.spec, job.retry, caps)
        attempts.append(AttemptRow(
            job.workflow_id, job.idx, job.attempt, job.retry,
            retry.requested(job.spec, resources), job.scheduler_job_id, job.submission_date,
            job.execution_date, job.ending_date, job.exit_status, job.exit_value,
            job.term_sig, job.resource_usage, job.exit_reason, False))
    return attempts


def scheduler_class(scheduler_type: str) -> type[Scheduler]:
    """The Scheduler subclass of a stored workflow (the base class for a plug-in
    uninstalled since: its old workflows still have a report)."""
    try:
        return get_scheduler_implementation(scheduler_type)
    except Exception:
        return Scheduler


def build_report(store: Store, workflow_id: int | str) -> Report:
    """The report of a stored workflow (visible jobs, every attempt)."""
    with store.snapshot():
        workflow = store.workflow(workflow_id)
        jobs = store.jobs(workflow.id)
        recorded = store.attempts(workflow.id)
    caps = retry.limits(workflow.config)
    kind = scheduler_class(workflow.scheduler_type)
    return Report(workflow, kind.usage_source,
                  [job_report(job, recorded.get(job.idx, ()), caps, kind) for job in jobs])


def job_report(job: JobRow, recorded: Sequence[AttemptRow], caps: Mapping[str, int],
               kind: type[Scheduler]) -> JobReport:
    """One job's attempts with their figures (the report's rows; a ui job page)."""
    attempts = []
    for row in job_attempts(job, recorded, caps):
        usage = parse_usage(row.resource_usage, kind.peak_memory_item)
        attempts.append(AttemptReport(job.job_id, job.name, row, usage,
                                      {figure: usage.source(figure, kind.usage_source)
                                       for figure in FIGURE_KEYS}))
    return JobReport(job.job_id, job.name, job.status, attempts, job.idx)


# --- text -------------------------------------------------------------------------------------
TABLE_HEADER = ["JOB", "ATTEMPT", "CPUS", "MEM", "TIME", "CPU TIME", "PEAK MEM", "WALL", "CPU EFF",
                "MEM EFF", "EXIT", "SOURCE"]
TSV_HEADER = ["job", "name", "attempt", "retry", "outcome", "cpus", "memory_mb", "walltime_s",
              "cpu_s", "mem_bytes", "wall_s", "cpu_efficiency", "memory_efficiency",
              "time_efficiency", "exit_status", "exit_value", "term_sig", "exit_reason",
              "cpu_source", "mem_source", "wall_source", "scheduler_job_id", "submission_date",
              "execution_date", "ending_date"]


def table_rows(report: Report) -> list[list[str]]:
    """The rows of the text table: one per attempt (a job never run: one row)."""
    return [cells for job in report.jobs for cells, _ in job_rows(job)]


def job_rows(job: JobReport) -> list[tuple[list[str], str]]:
    """A job's rows of the table (TABLE_HEADER's cells), each with its attempt's
    outcome (the text table, the HTML page, the ui's table)."""
    if not job.attempts:
        return [([job.job_id, "-", "", "", "", "", "", "", "", "", job.status, ""], job.status)]
    return [([job.job_id, str(a.row.attempt), str(a.cpus), _mb(a.memory_mb),
              _limit(a.walltime_s), _used_time(a.usage, "cpu"), _bytes(a.usage.mem_bytes),
              _used_time(a.usage, "wall"), _percent(a.cpu_efficiency),
              _percent(a.memory_efficiency), _exit_cell(a), _sources_cell(a.sources)],
             a.outcome) for a in job.attempts]


def tsv_rows(report: Report) -> list[list[str]]:
    """Rows of ``--tsv``: raw numbers (seconds, bytes, fractions), one per attempt."""
    rows = []
    for a in report.attempts:
        row = a.row
        values: list[object] = [
            a.job_id, a.name, row.attempt, row.retry, a.outcome, a.cpus, a.memory_mb,
            a.walltime_s, a.usage.cpu_s, a.usage.mem_bytes, a.usage.wall_s,
            _round(a.cpu_efficiency), _round(a.memory_efficiency), _round(a.time_efficiency),
            row.exit_status, row.exit_value, row.term_sig, row.exit_reason,
            a.sources["cpu"], a.sources["mem"], a.sources["wall"], row.scheduler_job_id,
            row.submission_date, row.execution_date, row.ending_date]
        rows.append(["" if v is None else _tsv_cell(str(v)) for v in values])
    return rows


#: The forms :func:`render` writes, as ``jobbridge report`` names them.
FORMS = ("table", "tsv", "json", "html")


def render(report: Report, form: str) -> str:
    """The report as ``jobbridge report`` prints it: ``table`` (with the summary
    lines), ``tsv``, ``json`` or ``html`` (a whole page)."""
    if form == "json":
        return json.dumps(report.as_json(), indent=2, ensure_ascii=False)
    if form == "tsv":
        return "\n".join("\t".join(row) for row in [TSV_HEADER, *tsv_rows(report)])
    if form == "html":
        return html_page(report)
    if form != "table":
        raise ValueError(f"no report form {form!r} (one of {', '.join(FORMS)})")
    return "\n".join([aligned(TABLE_HEADER, table_rows(report)), "", *summary_lines(report)])


def summary_lines(report: Report) -> list[str]:
    """The workflow summary under the table."""
    s = report.summary
    workflow = report.workflow
    title = f"workflow {workflow.id}{' (' + workflow.name + ')' if workflow.name else ''}"
    retried = f", {_plural(s.retried_jobs, 'job')} retried" if s.retried_jobs else ""
    lines = [
        f"{title}: {_plural(s.jobs, 'job')}, {_attempts(report)}{retried}, "
        f"{s.failed_attempts} failed, on {workflow.resource} ({workflow.scheduler_type})",
        f"CPU time {_hours(s.cpu_hours)}, wasted on failed attempts "
        f"{_hours(s.wasted_cpu_hours)}; allocated {_hours(s.allocated_cpu_hours)}",
        f"CPU efficiency {_percent(s.cpu_efficiency) or '-'} (CPU time / wall time x CPUs), "
        f"memory efficiency {_percent(s.memory_efficiency) or '-'} (peak / asked, where asked)",
        f"usage measured by {report.usage_source}"
        + (f"; {_plural(s.without_usage, 'attempt')} without usage" if s.without_usage else ""),
    ]
    return lines


def _attempts(report: Report) -> str:
    """``6 attempts``, or ``1 attempt ended (2 more in flight)``."""
    ended = report.summary.attempts
    in_flight = len(report.attempts) - ended
    more = f" ended ({in_flight} more in flight)" if in_flight else ""
    return _plural(ended, "attempt") + more


def _exit_cell(attempt: AttemptReport) -> str:
    outcome = attempt.outcome
    if outcome in (constants.DONE, constants.FAILED, "retried"):
        text = attempt.exit
        return f"{text} (retried)" if outcome == "retried" else text
    return outcome


def _sources_cell(sources: Mapping[str, str | None]) -> str:
    """``sacct`` when one measurer gave every figure, else per figure."""
    known = {figure: source for figure, source in sources.items() if source}
    if not known:
        return ""
    if len(set(known.values())) == 1:
        return next(iter(known.values()))
    by_source: dict[str, list[str]] = {}
    for figure, source in known.items():
        by_source.setdefault(source, []).append(figure)
    return "; ".join(f"{','.join(figures)}: {source}" for source, figures in by_source.items())


def _duration(seconds: float | None) -> str:
    """``0.42s``, ``12.3s``, ``1:02:03``: short times keep their decimals."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _used_time(usage: Usage, figure: str) -> str:
    """A time used: with decimals when measured exactly (``cpu_s``, ``wall_s``), in
    whole seconds when the item was (``cput``, ``walltime``: ``0s`` may be 0.4 s)."""
    seconds = usage.cpu_s if figure == "cpu" else usage.wall_s
    if seconds is not None and seconds < 60 and usage.keys.get(figure) in ("cput", "walltime"):
        return f"{seconds:.0f}s"
    return _duration(seconds)


def _limit(seconds: int | None) -> str:
    """A walltime asked for: ``90s``, ``1:00:00``."""
    if seconds is None:
        return ""
    return f"{seconds}s" if seconds < 60 else _duration(seconds)


def _hours(hours: float) -> str:
    """CPU-hours: ``12.345 h``, or seconds below a tenth of an hour (``42.1 s``)."""
    return f"{hours:.3f} h" if hours >= 0.1 else f"{hours * 3600:.1f} s"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _bytes(size: float | None) -> str:
    if size is None:
        return ""
    for unit, scale in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}"
    return f"{int(size)}B"


def _mb(megabytes: int | None) -> str:
    """Memory asked for: ``64M``, ``1.5G``."""
    if megabytes is None:
        return ""
    return f"{megabytes}M" if megabytes < 1024 else _bytes(megabytes * 1024 * 1024)


def _percent(fraction: float | None) -> str:
    return "" if fraction is None else f"{fraction * 100:.0f}%"


def _round(fraction: float | None) -> float | None:
    return None if fraction is None else round(fraction, 4)


def _tsv_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


# --- pictures ---------------------------------------------------------------------------------
COLORS = {constants.DONE: "#3a9d5d", constants.FAILED: "#d1453b", "retried": "#e8913a",
          constants.RUNNING: "#2f7ed8", constants.QUEUED_ACTIVE: "#e3b341"}
QUEUED_COLOR = "#d9dde3"
#: Bins of the efficiency histograms: tenths of 0-100 %, then over 100 %.
BINS = 11
#: Most jobs drawn in the timeline (the first ones by start); the rest are counted.
TIMELINE_ROWS = 300


def histogram_svg(title: str, values: Iterable[float], width: int = 360, height: int = 200
                  ) -> str:
    """A histogram of efficiencies (fractions): bars for 0-10 % ... 90-100 %, >100 %."""
    counts = [0] * BINS
    total = 0
    for value in values:
        counts[min(int(max(value, 0.0) * 10), BINS - 1) if value <= 1 else BINS - 1] += 1
        total += 1
    left, right, top, bottom = 36, 10, 40, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    bar_w = plot_w / BINS
    peak = max(counts) or 1
    parts = [_svg_open(width, height, title),
             f'<text x="{width / 2}" y="16" class="title">{escape(title)}</text>']
    if total == 0:
        parts.append(f'<text x="{width / 2}" y="{top + plot_h / 2}" class="none">'
                     "no figures (nothing asked or measured)</text>")
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        x = left + i * bar_w
        label = f"{i * 10}-{i * 10 + 10} %" if i < BINS - 1 else "over 100 %"
        color = "#d1453b" if i == BINS - 1 else "#2f7ed8"
        parts.append(f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                     f'height="{h:.1f}" fill="{color}"><title>{label}: {count}</title></rect>')
        if count:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - h - 3:.1f}" '
                         f'class="count">{count}</text>')
    axis_y = top + plot_h
    parts.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" '
                 'class="axis"/>')
    for i in range(0, BINS, 2):
        parts.append(f'<text x="{left + i * bar_w:.1f}" y="{axis_y + 14}" class="tick">'
                     f'{i * 10}%</text>')
    parts.append(f'<text x="{left + plot_w - bar_w / 2:.1f}" y="{axis_y + 26}" '
                 'class="tick">&gt;100%</text>')
    parts.append(f'<text x="12" y="{top + plot_h / 2}" class="tick" transform="rotate(-90 12 '
                 f'{top + plot_h / 2})">attempts</text>')
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(report: Report, width: int = 900) -> str:
    """Each job's attempts on one time axis: queued (grey) then running, colored by
    how the attempt ended (done, retried, failed); hover a bar for its details."""
    rows = []
    for job in report.jobs:
        spans = []
        for a in job.attempts:
            start = epoch(a.row.submission_date)
            run = epoch(a.row.execution_date)
            end = epoch(a.row.ending_date)
            if start is not None or run is not None:
                spans.append((a, start, run, end))
        if spans:
            rows.append((job, spans))
    times = [t for _, spans in rows for _, *moments in spans for t in moments if t is not None]
    title = f"timeline of workflow {report.workflow.id}"
    if not times:
        return (_svg_open(width, 60, title) + f'<text x="{width / 2}" y="34" class="none">'
                "no attempt ran yet</text></svg>")
    rows.sort(key=lambda item: min(t for _, *m in item[1] for t in m if t is not None))
    hidden = max(0, len(rows) - TIMELINE_ROWS)
    rows = rows[:TIMELINE_ROWS]
    origin, last = min(times), max(times)
    span = max(last - origin, 1e-3)
    label_w, right, top, row_h = 130, 20, 44, 16
    plot_w = width - label_w - right
    height = top + row_h * len(rows) + 40

    def x(moment: float) -> float:
        return label_w + plot_w * (moment - origin) / span

    parts = [_svg_open(width, height, title),
             f'<text x="{width / 2}" y="16" class="title">{escape(title)}</text>']
    legend = [("queued", QUEUED_COLOR), ("done", COLORS[constants.DONE]),
              ("retried", COLORS["retried"]), ("failed", COLORS[constants.FAILED]),
              ("running", COLORS[constants.RUNNING])]
    for i, (word, color) in enumerate(legend):
        parts.append(f'<rect x="{label_w + i * 90}" y="24" width="12" height="10" '
                     f'fill="{color}"/><text x="{label_w + i * 90 + 16}" y="33" '
                     f'class="legend">{word}</text>')
    for i, (job, spans) in enumerate(rows):
        y = top + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + row_h - 4}" class="label">'
                     f'{escape(_shorten(job.job_id, 18))}<title>{escape(job.job_id)}</title>'
                     "</text>")
        for attempt, start, run, end in spans:
            stop = end if end is not None else last
            tip = escape(f"{job.job_id} attempt {attempt.row.retry + 1}: "
                         f"{attempt.exit or attempt.outcome}")
            if start is not None and run is not None and run > start:
                parts.append(f'<rect x="{x(start):.1f}" y="{y + 3}" '
                             f'width="{max(x(run) - x(start), 0.5):.1f}" height="{row_h - 6}" '
                             f'fill="{QUEUED_COLOR}"><title>{tip} (queued)</title></rect>')
            begin = run if run is not None else start
            assert begin is not None
            color = COLORS.get(attempt.outcome, "#8a8f98")
            parts.append(f'<rect x="{x(begin):.1f}" y="{y + 2}" '
                         f'width="{max(x(stop) - x(begin), 1.0):.1f}" height="{row_h - 4}" '
                         f'fill="{color}"><title>{tip}</title></rect>')
    axis_y = top + row_h * len(rows) + 4
    parts.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" '
                 'class="axis"/>')
    for i in range(6):
        moment = origin + span * i / 5
        parts.append(f'<text x="{x(moment):.1f}" y="{axis_y + 14}" class="tick">'
                     f'{_duration(moment - origin) or "0"}</text>')
    if hidden:
        parts.append(f'<text x="{label_w}" y="{axis_y + 30}" class="label-left">'
                     f"and {hidden} more jobs (not drawn)</text>")
    parts.append("</svg>")
    return "".join(parts)


def figures(report: Report) -> dict[str, str]:
    """The report's pictures as SVG texts, by name (for the HTML page and the ui)."""
    attempts = report.attempts
    return {
        "cpu_efficiency": histogram_svg(
            "CPU efficiency (CPU time / wall time x CPUs)",
            [e for a in attempts if (e := a.cpu_efficiency) is not None]),
        "memory_efficiency": histogram_svg(
            "memory efficiency (peak / memory asked)",
            [e for a in attempts if (e := a.memory_efficiency) is not None]),
        "time_efficiency": histogram_svg(
            "time efficiency (wall time / walltime asked)",
            [e for a in attempts if (e := a.time_efficiency) is not None]),
        "timeline": timeline_svg(report),
    }


#: The figures' styles (their elements' classes), scoped to them: the HTML page
#: holds them, the ui serves them as /report.css.
SVG_STYLE = """
svg.jb-figure text { font-family: system-ui, sans-serif; font-size: 11px; fill: #333; }
svg.jb-figure .title { font-size: 13px; font-weight: 600; text-anchor: middle; }
svg.jb-figure .tick { text-anchor: middle; fill: #666; }
svg.jb-figure .count { text-anchor: middle; font-size: 10px; }
svg.jb-figure .label { text-anchor: end; }
svg.jb-figure .legend { text-anchor: start; }
svg.jb-figure .none { text-anchor: middle; fill: #888; }
svg.jb-figure .axis { stroke: #999; }
"""

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e5e8; padding: 4px 8px; text-align: left; }
th { background: #f4f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.retried td, tr.failed td { color: #b23a30; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; }
.summary td:first-child { font-weight: 600; }
.note { color: #666; font-size: 12px; }
"""


def summary_items(report: Report) -> list[tuple[str, str]]:
    """The summary as (label, text) pairs: the HTML page's and the ui's."""
    workflow = report.workflow
    s = report.summary
    return [
        ("status", f"{workflow.status} on {workflow.resource} ({workflow.scheduler_type})"),
        ("jobs, attempts", f"{_plural(s.jobs, 'job')}, {_attempts(report)}, "
                           f"{s.failed_attempts} failed, {_plural(s.retried_jobs, 'job')} "
                           "retried"),
        ("CPU time", f"{_hours(s.cpu_hours)}, of which {_hours(s.wasted_cpu_hours)} on "
                     "failed attempts"),
        ("allocated", f"{_hours(s.allocated_cpu_hours)} (wall time x CPUs asked)"),
        ("CPU efficiency", _percent(s.cpu_efficiency) or "-"),
        ("memory efficiency", _percent(s.memory_efficiency) or "-"),
        ("usage measured by", report.usage_source + (
            f" ({_plural(s.without_usage, 'attempt')} without usage)" if s.without_usage
            else "")),
    ]


def html_page(report: Report) -> str:
    """A self-contained page: summary, efficiency histograms, timeline, the table."""
    workflow = report.workflow
    title = (f"jobbridge report: workflow {workflow.id}"
             f"{' (' + workflow.name + ')' if workflow.name else ''}")
    pictures = figures(report)
    numeric = {2, 3, 4, 5, 6, 7, 8, 9}
    body_rows = []
    for job in report.jobs:
        for cells, outcome in job_rows(job):
            tds = "".join(f'<td class="num">{escape(c)}</td>' if i in numeric
                          else f"<td>{escape(c)}</td>" for i, c in enumerate(cells))
            body_rows.append(f'<tr class="{escape(outcome)}">{tds}</tr>')
    head = "".join(f"<th>{escape(h)}</th>" for h in TABLE_HEADER)
    summary = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>"
                      for k, v in summary_items(report))
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{PAGE_STYLE}{SVG_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<table class="summary">{summary}</table>',
        "<h2>Efficiency</h2>",
        '<div class="figures">' + pictures["cpu_efficiency"] + pictures["memory_efficiency"]
        + pictures["time_efficiency"] + "</div>",
        '<p class="note">Memory and time efficiency count only attempts that asked for '
        "memory_mb or walltime_s.</p>",
        "<h2>Timeline</h2>",
        pictures["timeline"],
        "<h2>Attempts</h2>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body_rows)}</tbody></table>",
        f'<p class="note">Generated {escape(_now())} by jobbridge report.</p>',
        "</body></html>",
        ""])


def _svg_open(width: int, height: float, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="jb-figure" width="{width}" '
            f'height="{height:.0f}" '
            f'viewBox="0 0 {width} {height:.0f}" role="img" aria-label="{escape(title)}">')


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


