"""Build and submit workflows from Python.

::

    from jobbridge.api import Job, Workflow, WorkflowController

    split = Job(["python3", "split.py"], id="split")
    parts = [Job(["python3", "work.py", str(i)], id=f"part{i}") for i in range(4)]
    merge = Job(["python3", "merge.py"], id="merge")
    workflow = Workflow([split, *parts, merge], name="pipeline",
                        dependencies=[(split, p) for p in parts] + [(p, merge) for p in parts])
    controller = WorkflowController()
    workflow_id = controller.submit(workflow)          # a background engine runs it
    print(controller.wait(workflow_id)["status"])

Everything goes through the same validation as workflow files: a bad
workflow raises :class:`jobbridge.errors.InputError` before anything is stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .controller import WorkflowController

__all__ = ["BarrierJob", "Group", "Job", "Link", "Workflow", "WorkflowController"]

_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    """A job of the workflow format (docs/format.md); ``id`` defaults to ``job<N>``."""

    command: list[str] | None
    id: str = field(default_factory=lambda: f"job{next(_ids)}")
    name: str | None = None
    working_directory: str | None = None
    env: dict[str, str] | None = None
    stdin: str | None = None
    stdout_file: str | None = None
    stderr_file: str | None = None
    join_stderrout: bool = False
    priority: int = 0
    queue: str | None = None
    native_specification: str | list[str] | None = None
    parallel_job_info: dict[str, Any] | None = None
    resources: dict[str, int] | None = None
    #: dynamic workflows (docs/format.md, "Parameters, outputs and links"); ``engine``
    #: with no command: an engine-side job
    parameters: dict[str, Any] | None = None
    outputs: list[str] | None = None
    links: Mapping[str, Link | Sequence[Link]] | None = None
    parameters_file: bool = False
    engine: str | None = None
    #: retry policy (docs/retries.md); None: the workflow's ``defaults``
    retries: int | None = None
    retry_on: list[int | str] | None = None
    retry_delay_s: float | None = None
    escalate: dict[str, float] | None = None
    #: names of the workflow's ``transfers`` the job reads and writes
    input_files: list[str] | None = None
    output_files: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id}
        if self.command is not None:
            data["command"] = self.command
        elif self.engine is None:
            data["barrier"] = True
        if self.links:
            data["links"] = {param: link.to_dict() if isinstance(link, Link)
                             else [item.to_dict() for item in link]
                             for param, link in self.links.items()}
        if self.parameters_file:
            data["parameters_file"] = True
        for key in ("name", "working_directory", "env", "stdin", "stdout_file", "stderr_file",
                    "queue", "native_specification", "parallel_job_info", "resources",
                    "parameters", "outputs", "engine", "retries", "retry_on", "retry_delay_s",
                    "escalate", "input_files", "output_files"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.join_stderrout:
            data["join_stderrout"] = True
        if self.priority:
            data["priority"] = self.priority
        return data


@dataclass
class Link:
    """A parameter's value from another job's output, optionally through one of
    soma-workflow's link functions (``function(*args, ...)``)."""

    job: Job | str
    output: str
    function: str | None = None
    args: Sequence[Any] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"job": _end(self.job), "output": self.output}
        if self.function is not None:
            data.update(function=self.function, args=list(self.args))
        return data


def BarrierJob(id: str | None = None, name: str | None = None) -> Job:
    """A job with no command: a synchronization point between groups of jobs."""
    return Job(None, id=id or f"barrier{next(_ids)}", name=name)


@dataclass(eq=False)
class Group:
    """Named jobs (and groups): a dependency end may be a group."""

    name: str
    elements: Sequence[Job | Group | str]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "elements": [_end(e) for e in self.elements]}


@dataclass
class Workflow:
    """Jobs, and dependencies ``(before, after)`` between jobs or groups, given as the
    objects or by their ids and names (checked like a workflow file's)."""

    jobs: Sequence[Job]
    dependencies: Sequence[tuple[Job | Group | str, Job | Group | str]] = ()
    groups: Sequence[Group] = ()
    name: str | None = None
    #: ``{name: {"suffix": ..., "directory": ..., "disposal_hours": ...}}``
    temporary_paths: Mapping[str, Mapping[str, Any]] | None = None
    #: retry keys given to every job (``{"retries": 2, ...}``), as a file's ``defaults``
    defaults: dict[str, Any] | None = None
    #: file transfers ``{name: {"path": ..., "files": [...]}}`` (client files: copied
    #: to a remote resource, the paths themselves elsewhere)
    transfers: Mapping[str, Mapping[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The workflow file object (docs/format.md)."""
        data: dict[str, Any] = {"jobs": [job.to_dict() for job in self.jobs],
                                "dependencies": [[_end(a), _end(b)] for a, b in self.dependencies],
                                "groups": [group.to_dict() for group in self.groups]}
        if self.name is not None:
            data["name"] = self.name
        if self.temporary_paths is not None:
            data["temporary_paths"] = {k: dict(v) for k, v in self.temporary_paths.items()}
        if self.defaults is not None:
            data["defaults"] = self.defaults
        if self.transfers is not None:
            data["transfers"] = {k: dict(v) for k, v in self.transfers.items()}
        return data


def _end(element: Job | Group | str) -> str:
    if isinstance(element, str):
        return element
    return element.id if isinstance(element, Job) else element.name

