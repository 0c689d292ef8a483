"""A picture of a workflow: its DAG as a self-contained SVG, jobs colored by status.

Layered layout without external tools: a job's level is the length of the longest
dependency path leading to it, and one barycenter pass orders each level to
shorten edges; a level wider than MAX_ROW jobs wraps onto several rows, so a wide
fan-out stays a readable picture. Hidden barriers (group-to-group dependencies)
are drawn as dots. A workflow file is drawn the same way before it is submitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Protocol

from . import constants
from .model import WorkflowSpec

COLORS = {
    constants.DONE: "#3a9d5d",
    constants.FAILED: "#d1453b",
    constants.RUNNING: "#2f7ed8",
    constants.QUEUED_ACTIVE: "#e3b341",
    constants.SUBMISSION_PENDING: "#e3b341",
    constants.NOT_SUBMITTED: "#b8bcc2",
}
NOT_RUN_COLOR = "#f0b3ae"
BOX_W, BOX_H, GAP_X, GAP_Y, WRAP_GAP, MARGIN = 120, 34, 24, 56, 24, 20
MAX_JOBS = 2000
#: Most boxes side by side: a wider level wraps onto more rows.
MAX_ROW = 8


class Node(Protocol):
    """What the picture shows of a job (a stored :class:`.store.JobRow` is one)."""

    @property
    def job_id(self) -> str: ...
    @property
    def hidden(self) -> bool: ...
    @property
    def status(self) -> str: ...
    @property
    def exit_status(self) -> str | None: ...
    @property
    def exit_value(self) -> int | None: ...
    @property
    def exit_reason(self) -> str | None: ...


@dataclass(frozen=True)
class PlannedJob:
    """A job of a workflow file that is not submitted yet."""

    job_id: str
    hidden: bool
    status: str = constants.NOT_SUBMITTED
    exit_status: str | None = None
    exit_value: int | None = None
    exit_reason: str | None = None


def spec_graph(spec: WorkflowSpec) -> tuple[list[PlannedJob], list[tuple[int, int]]]:
    """A workflow file's jobs and its edges (positions in that list), as stored."""
    index = {job.job_id: i for i, job in enumerate(spec.jobs)}
    return ([PlannedJob(job.job_id, job.job_id in spec.hidden_ids) for job in spec.jobs],
            [(index[before], index[after]) for before, after in spec.edges])


def workflow_svg(title: str, jobs: Sequence[Node], edges: Sequence[tuple[int, int]]) -> str:
    """The SVG text of a workflow's DAG (at most MAX_JOBS jobs); ``edges`` are
    (before, after) positions in ``jobs``."""
    if len(jobs) > MAX_JOBS:
        raise ValueError(f"{len(jobs)} jobs are too many to draw (at most {MAX_JOBS})")
    preds: list[list[int]] = [[] for _ in jobs]
    succs: list[list[int]] = [[] for _ in jobs]
    for before, after in edges:
        preds[after].append(before)
        succs[before].append(after)
    levels = _layers(preds, succs)
    position: dict[int, tuple[float, float]] = {}
    widest = max(min(len(level), MAX_ROW) for level in levels)
    width = max(widest * (BOX_W + GAP_X), 6 * 110) + 2 * MARGIN
    top = MARGIN + 30
    for depth, level in enumerate(levels):
        if depth:
            level.sort(key=lambda n: sum(position[p][0] for p in preds[n]) / max(len(preds[n]), 1))
        for start in range(0, len(level), MAX_ROW):
            row = level[start:start + MAX_ROW]
            offset = (width - len(row) * (BOX_W + GAP_X)) / 2 + GAP_X / 2
            for order, node in enumerate(row):
                position[node] = (offset + order * (BOX_W + GAP_X) + BOX_W / 2, top + BOX_H / 2)
            top += BOX_H + (GAP_Y if start + MAX_ROW >= len(level) else WRAP_GAP)
    height = top + MARGIN
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
             f'font-family="sans-serif" font-size="12">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
             'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker>'
             '</defs>',
             f'<text x="{MARGIN}" y="{MARGIN + 8}" font-size="15" font-weight="bold">'
             f'{escape(title)}</text>']
    for before, after in edges:
        (x1, y1), (x2, y2) = position[before], position[after]
        y1 += 4 if jobs[before].hidden else BOX_H / 2
        y2 -= 4 if jobs[after].hidden else BOX_H / 2
        parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
                     'stroke="#888" marker-end="url(#arrow)"/>')
    for node, job in enumerate(jobs):
        x, y = position[node]
        if job.hidden:
            parts.append(f'<circle cx="{x:.0f}" cy="{y:.0f}" r="4" fill="#666"/>')
            continue
        color = (NOT_RUN_COLOR if job.exit_status == constants.EXIT_NOTRUN
                 else COLORS.get(job.status, "#9b7fd1"))
        label = job.job_id if len(job.job_id) <= 16 else job.job_id[:15] + "…"
        tooltip = f"{job.job_id}: {job.status}"
        if job.exit_status:
            value = "" if job.exit_value is None else f" {job.exit_value}"
            tooltip += f" ({job.exit_status}{value})"
        if job.exit_reason:
            tooltip += f" - {job.exit_reason}"
        parts.append(f'<g><title>{escape(tooltip)}</title><rect x="{x - BOX_W / 2:.0f}" '
                     f'y="{y - BOX_H / 2:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6" '
                     f'fill="{color}"/><text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle" '
                     f'fill="white">{escape(label)}</text></g>')
    legend_y = height - MARGIN
    for i, (status, color) in enumerate([*((s, COLORS[s]) for s in (
            constants.DONE, constants.FAILED, constants.RUNNING, constants.QUEUED_ACTIVE,
            constants.NOT_SUBMITTED)), ("not run", NOT_RUN_COLOR)]):
        x = MARGIN + i * 110
        parts.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{x + 16}" y="{legend_y}">{escape(status.replace("_", " "))}</text>')
    parts.append("</svg>\n")
    return "\n".join(parts)


def _layers(preds: list[list[int]], succs: list[list[int]]) -> list[list[int]]:
    """Levels of nodes: each node one level below its deepest predecessor."""
    depth = [0] * len(preds)
    waiting = [len(p) for p in preds]
    ready = [n for n, count in enumerate(waiting) if count == 0]
    while ready:
        node = ready.pop()
        for nxt in succs[node]:
            depth[nxt] = max(depth[nxt], depth[node] + 1)
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    levels: list[list[int]] = [[] for _ in range(max(depth, default=0) + 1)]
    for node, level in enumerate(depth):
        levels[level].append(node)
    return levels
