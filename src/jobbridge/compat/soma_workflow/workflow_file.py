"""soma-workflow workflows (``Helper.serialize`` files and ``Workflow.to_dict()``) as jobbridge's.

soma-workflow writes a workflow as JSON: jobs and groups by number in
``serialized_jobs`` / ``serialized_groups``, dependencies as pairs of those
numbers, tuples and sets encoded as lists starting with ``"<tuple>"`` /
``"<set>"``. This module reads that form without soma-workflow installed and
builds the jobbridge workflow soma-workflow's engine would have run:

- a job's id is its number in the file, its name soma's name; a ``BarrierJob``
  is a barrier; a dependency end may be a job or a group;
- commands as soma-workflow's engine builds them: lists inside a command become
  their ``repr``, ``["<join>", ...]`` is joined, ``%(name)s`` is replaced from
  ``param_dict`` (and from ``configuration_dict``, the JSON of the job's
  ``configuration``);
- environment: the job's ``env`` over the workflow's ``env`` over what the
  workflow's ``env_builder_code`` prints (run once, now, with this Python);
- ``use_input_params_file``: the job's parameters are written to a JSON file
  named by ``SOMAWF_INPUT_PARAMS`` in its environment.

What jobbridge cannot run yet (parameter links, output parameters, engine
execution jobs, file transfers, shared resource and temporary paths) is
refused by name with one :class:`InputError` line, never ignored.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...configuration import jobbridge_home, private_dir
from ...errors import InputError
from ...model import EngineJob, WorkflowSpec, parse_workflow

#: Keys of a serialized workflow; any other is refused by name.
_TOP_KEYS = frozenset({
    "name", "jobs", "dependencies", "param_links", "groups", "root_group", "serialized_groups",
    "serialized_jobs", "serialized_barriers", "serialized_file_transfers",
    "serialized_shared_res_paths", "serialized_temporary_paths", "serialized_option_paths",
    "env", "env_builder_code", "uuid", "native_specification", "user_storage",
})
#: Keys of a serialized job; any other is refused by name.
_JOB_KEYS = frozenset({
    "class", "name", "command", "join_stderrout", "priority", "native_specification",
    "parallel_job_info", "disposal_timeout", "env", "use_input_params_file", "has_outputs",
    "configuration", "uuid", "referenced_input_files", "referenced_output_files", "stdin",
    "stdout_file", "stderr_file", "working_directory", "input_params_file",
    "output_params_file", "param_dict", "user_storage",
})
#: soma-workflow features jobbridge does not run yet: (key, what it is).
_UNSUPPORTED_TOP = (
    ("param_links", "parameter links (param_links)"),
    ("serialized_file_transfers", "file transfers (FileTransfer)"),
    ("serialized_shared_res_paths", "shared resource paths (SharedResourcePath)"),
    ("serialized_temporary_paths", "temporary paths (TemporaryPath)"),
    ("serialized_option_paths", "option paths (OptionPath)"),
)
_PLAIN_CLASSES = frozenset({"Job", "soma_workflow.client_types.Job", "soma_workflow.client.Job"})
_BARRIER_CLASSES = frozenset({"BarrierJob", "soma_workflow.client_types.BarrierJob",
                              "soma_workflow.custom_jobs.BarrierJob",
                              "soma_workflow.client.BarrierJob"})
#: soma-workflow's engine substitution pattern (greedy, as soma-workflow's own).
_PARAMETER = re.compile(r"%\((.+)\)[dsf]")
#: How long a workflow's env_builder_code may run.
ENV_BUILDER_TIMEOUT = 120.0
#: Environment variable naming a job's input parameters file (soma-workflow's name).
INPUT_PARAMS_VARIABLE = "SOMAWF_INPUT_PARAMS"


def is_soma_workflow(data: object) -> bool:
    """Whether a decoded JSON document is a soma-workflow serialized workflow."""
    return isinstance(data, dict) and "serialized_jobs" in data


def soma_workflow_spec(data: Mapping[str, Any], source: str = "workflow",
                       base_dir: Path | None = None, *, name: str | None = None,
                       queue: str | None = None, params_dir: Path | None = None,
                       to_run: bool = True) -> WorkflowSpec:
    """The jobbridge workflow of a soma-workflow workflow dict; InputError naming the place.

    ``name`` and ``queue`` are ``submit_workflow``'s (``queue`` goes to every job).
    Input parameters files go to ``params_dir`` (default: a new folder under
    ``$JOBBRIDGE_HOME/soma-params``), written only once the workflow is valid, and
    ``env_builder_code`` runs then; neither with ``to_run=False`` (to draw it).
    """
    files: dict[Path, str] = {}
    converter = _Converter(source, queue, params_dir)
    converted = converter.workflow(_decode(data), files)
    if name is not None:
        converted["name"] = name
    spec = parse_workflow(converted, source=source, base_dir=base_dir)
    if not to_run:
        return spec
    if converter.env_builder_code is not None:  # run only once all the rest is valid
        built = converter.run_env_builder(converter.env_builder_code)
        for job in spec.jobs:
            if not job.is_barrier:
                job.env = {**built, **job.env}
    for path, text in files.items():
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
    return spec


def _decode(value: Any) -> Any:
    """soma-workflow's ``utils.from_json``: ``["<tuple>", ...]`` -> tuple, ``["<set>", ...]``
    -> list, ``["<undefined>"]`` -> None; plain Python values (``to_dict()``) unchanged."""
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if isinstance(value, list) and value and isinstance(value[0], str):
            code = value[0]
            if code == "<tuple>":
                return tuple(_decode(item) for item in value[1:])
            if code == "<set>":
                return [_decode(item) for item in value[1:]]
            if code == "<undefined>":
                return None
        items = [_decode(item) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def _encode(value: Any) -> Any:
    """soma-workflow's ``utils.to_json`` (how it writes input parameters files)."""
    if isinstance(value, tuple):
        return ["<tuple>", *(_encode(item) for item in value)]
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    return value


def _is_special(value: object) -> bool:
    """A reference to a FileTransfer, SharedResourcePath, TemporaryPath or OptionPath."""
    return isinstance(value, tuple) and len(value) == 2 and value[0] == "<id>"


class _Converter:
    def __init__(self, source: str, queue: str | None, params_dir: Path | None) -> None:
        self.source = source
        self.queue = queue
        self.params_dir = params_dir
        self.env_builder_code: str | None = None

    def error(self, where: str, message: str) -> InputError:
        return InputError(f"{self.source}: {where}: {message}" if where
                          else f"{self.source}: {message}")

    def unsupported(self, where: str, what: str) -> InputError:
        return self.error(where, f"{what} are not supported by jobbridge yet")

    def workflow(self, data: Any, files: dict[Path, str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.error("", "a soma-workflow workflow must be a JSON object")
        for key in data:
            if key not in _TOP_KEYS:
                raise self.error("", f"unknown key {key!r} of a soma-workflow workflow")
        for key, what in _UNSUPPORTED_TOP:
            if data.get(key):
                raise self.unsupported(key, what)
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise self.error("name", "must be a string or null")
        serialized = self.mapping(data, "serialized_jobs")
        barriers = self.mapping(data, "serialized_barriers")  # soma-workflow < 3 files
        order = data.get("jobs")
        if order is None:
            order = [*serialized, *barriers]
        if not isinstance(order, list | tuple):
            raise self.error("jobs", "must be a list of job numbers")
        env = self.environment(data)
        workflow_native = data.get("native_specification")
        jobs: list[dict[str, Any]] = []
        for number in order:
            key = str(number)
            if key in barriers:
                jobs.append(self.barrier(key, barriers[key], "serialized_barriers"))
            elif key in serialized:
                jobs.append(self.job(key, serialized[key], env, workflow_native, files))
            else:
                raise self.error("jobs", f"job {number!r} is not in serialized_jobs")
        ids = {job["id"] for job in jobs}
        groups, group_names = self.groups(data, ids)
        converted: dict[str, Any] = {"jobs": jobs, "groups": groups,
                                     "dependencies": self.dependencies(data, ids, group_names)}
        if name is not None:
            converted["name"] = name
        return converted

    def mapping(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, "must be an object")
        return value

    def environment(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The workflow's ``env`` (what ``env_builder_code`` prints comes under it, later)."""
        code = data.get("env_builder_code")
        if code is not None and not isinstance(code, str):
            raise self.error("env_builder_code", "must be a string of Python code")
        self.env_builder_code = code
        given = data.get("env") or {}
        if not isinstance(given, dict):
            raise self.error("env", "must be an object of string values")
        return given

    def run_env_builder(self, code: str) -> dict[str, str]:
        """What soma-workflow's engine does at submission: run the code in a separate
        Python, read a JSON object of variables on its stdout."""
        where = "env_builder_code"
        try:
            result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, timeout=ENV_BUILDER_TIMEOUT,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise self.error(where, f"still running after {ENV_BUILDER_TIMEOUT:.0f} s") from None
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or ["no error message"]
            raise self.error(where, f"failed (exit status {result.returncode}): {lines[-1]}")
        try:
            value = json.loads(result.stdout)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise self.error(where, "must print a JSON object of environment variables, "
                             f"printed {result.stdout.strip()[:80]!r}")
        # checked as a job's env is
        return EngineJob.from_dict({"id": "env", "barrier": True, "env": value},
                                   f"{self.source}: {where} printed").env

    def barrier(self, key: str, raw: Any, table: str) -> dict[str, Any]:
        where = f"{table}[{key!r}]"
        if not isinstance(raw, dict):
            raise self.error(where, "must be an object")
        for field in ("referenced_input_files", "referenced_output_files"):
            if any(_is_special(item) for item in raw.get(field) or ()):
                raise self.unsupported(f"{where}.{field}", "file transfers (FileTransfer)")
        job: dict[str, Any] = {"id": key, "barrier": True}
        if raw.get("name") is not None:
            job["name"] = self.text(raw["name"], f"{where}.name")
        return job

    def job(self, key: str, raw: Any, workflow_env: Mapping[str, Any],
            workflow_native: Any, files: dict[Path, str]) -> dict[str, Any]:
        where = f"serialized_jobs[{key!r}]"
        if not isinstance(raw, dict):
            raise self.error(where, "must be an object")
        for field in raw:
            if field not in _JOB_KEYS:
                raise self.error(where, f"unknown key {field!r} of a soma-workflow job")
        kind = raw.get("class", "Job")
        if kind in _BARRIER_CLASSES:
            return self.barrier(key, raw, "serialized_jobs")
        if kind not in _PLAIN_CLASSES:
            if isinstance(kind, str) and kind.startswith("soma_workflow."):
                raise self.unsupported(f"{where}.class", "engine execution jobs "
                                       f"({kind.rsplit('.', 1)[-1]})")
            raise self.error(f"{where}.class", f"unknown job class {kind!r}")
        if raw.get("has_outputs") or raw.get("output_params_file"):
            raise self.unsupported(f"{where}.has_outputs", "output parameters (has_outputs)")
        for field in ("referenced_input_files", "referenced_output_files"):
            if any(_is_special(item) for item in raw.get(field) or ()):
                raise self.unsupported(f"{where}.{field}", "file transfers (FileTransfer)")
        configuration = raw.get("configuration") or {}
        if not isinstance(configuration, dict):
            raise self.error(f"{where}.configuration", "must be an object")
        params = raw.get("param_dict") or {}
        if not isinstance(params, dict):
            raise self.error(f"{where}.param_dict", "must be an object")
        for name, value in params.items():
            self.structure(value, f"{where}.param_dict[{name!r}]")
        use_params_file = raw.get("use_input_params_file", False)
        if not isinstance(use_params_file, bool):
            raise self.error(f"{where}.use_input_params_file", "must be true or false")
        substitutions = dict(params)
        if configuration and not use_params_file:
            substitutions["configuration_dict"] = json.dumps(configuration)
        command = raw.get("command")
        if not isinstance(command, list | tuple) or not command:
            raise self.error(f"{where}.command", "must be a non-empty list")
        argv = [_substitute(self.argument(item, f"{where}.command[{index}]"), substitutions)
                for index, item in enumerate(command)]
        job: dict[str, Any] = {"id": key, "command": argv}
        env = {**workflow_env, **(self.env(raw.get("env"), f"{where}.env"))}
        if use_params_file:
            path = self.params_file(key, raw.get("input_params_file"), where)
            env[INPUT_PARAMS_VARIABLE] = str(path)
            content: dict[str, Any] = {"parameters": _encode(params)}
            if configuration:
                content["configuration_dict"] = _encode(configuration)
            files[path] = json.dumps(content)
        if env:
            job["env"] = env
        name = raw.get("name")
        if name is not None:
            job["name"] = self.text(name, f"{where}.name")
        for field in ("stdin", "stdout_file", "stderr_file", "working_directory"):
            value = raw.get(field)
            if value is not None:
                job[field] = self.path(value, f"{where}.{field}")
        native = raw.get("native_specification") or workflow_native
        for field, value in (("join_stderrout", raw.get("join_stderrout")),
                             ("priority", raw.get("priority")),
                             ("native_specification", native),
                             ("parallel_job_info", raw.get("parallel_job_info")),
                             ("queue", self.queue)):
            if value is not None and value is not False:
                job[field] = value
        return job

    def env(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(where, "must be an object of string values")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.error(where, "must be a string")
        return value

    def path(self, value: Any, where: str) -> str:
        if _is_special(value) or isinstance(value, tuple):
            raise self.unsupported(where, "file transfers and special paths")
        return self.text(os.fspath(value) if isinstance(value, os.PathLike) else value, where)

    def params_file(self, key: str, given: Any, where: str) -> Path:
        if given is not None:
            return Path(self.path(given, f"{where}.input_params_file")).absolute()
        if self.params_dir is None:
            self.params_dir = jobbridge_home() / "soma-params" / os.urandom(6).hex()
        return self.params_dir / f"{key}.json"

    def argument(self, item: Any, where: str) -> str:
        """One command element as soma-workflow's engine writes it (``generate_command``):
        a list or tuple becomes its ``repr``, ``["<join>", ...]`` its items joined."""
        value = self.structure(item, where)
        if value is None:
            raise self.error(where, "a command element cannot be null")
        return value if isinstance(value, str) else repr(value) if isinstance(
            value, list | tuple | dict) else str(value)

    def structure(self, item: Any, where: str) -> Any:
        if _is_special(item) or (isinstance(item, tuple) and item and _is_special(item[0])):
            raise self.unsupported(where, "file transfers and special paths")
        if isinstance(item, list | tuple):
            parts = [self.structure(part, f"{where}[{i}]") for i, part in enumerate(item)]
            if isinstance(item, list) and parts and parts[0] == "<join>":
                return "".join(str(part) for part in parts[1:])
            return tuple(parts) if isinstance(item, tuple) else parts
        if item is None or isinstance(item, str | bool | int | float | dict):
            return item
        if isinstance(item, os.PathLike):  # in memory (to_dict()): soma's Popen takes them
            return os.fspath(item)
        raise self.error(where, f"unsupported command element {item!r}")

    def groups(self, data: Mapping[str, Any], ids: set[str]
               ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """jobbridge groups (unique names: soma's, numbered where they repeat) and each
        soma group number's jobbridge name."""
        serialized = self.mapping(data, "serialized_groups")
        names: dict[str, str] = {}
        taken = set(ids)
        for key, raw in serialized.items():
            where = f"serialized_groups[{key!r}]"
            if not isinstance(raw, dict):
                raise self.error(where, "must be an object")
            name = raw.get("name")
            label = self.text(name, f"{where}.name") if name is not None else f"group {key}"
            if label in taken or not label:
                label = f"{label} ({key})"
            taken.add(label)
            names[key] = label
        groups = []
        for key, raw in serialized.items():
            elements = raw.get("elements") or []
            if not isinstance(elements, list | tuple):
                raise self.error(f"serialized_groups[{key!r}].elements", "must be a list")
            members = []
            for element in elements:
                member = names.get(str(element), str(element))
                if member not in ids and str(element) not in names:
                    raise self.error(f"serialized_groups[{key!r}].elements",
                                     f"unknown job or group {element!r}")
                members.append(member)
            groups.append({"name": names[key], "elements": members})
        return groups, names

    def dependencies(self, data: Mapping[str, Any], ids: set[str],
                     group_names: Mapping[str, str]) -> list[list[str]]:
        raw = data.get("dependencies") or []
        if not isinstance(raw, list | tuple):
            raise self.error("dependencies", "must be a list of pairs")
        pairs = []
        for index, pair in enumerate(raw):
            where = f"dependencies[{index}]"
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise self.error(where, "must be a pair (before, after)")
            ends = []
            for end in pair:
                key = str(end)
                if key in ids:
                    ends.append(key)
                elif key in group_names:
                    ends.append(group_names[key])
                else:
                    raise self.error(where, f"unknown job or group {end!r}")
            pairs.append(ends)
        return pairs


def _substitute(argument: str, values: Mapping[str, Any]) -> str:
    """soma-workflow's ``Job.commandline_repl`` on one argument: ``%(name)s`` replaced by
    the parameter's text; an argument naming no known parameter is left as it is."""
    if not values or "%(" not in argument:
        return argument
    parts = _PARAMETER.split(argument)
    replaced = False
    for index in range(1, len(parts), 2):
        value = values.get(parts[index])
        if value is None:
            parts[index] = f"%({parts[index]})s"
        else:
            replaced = True
            parts[index] = value if isinstance(value, str) else str(value)
    return "".join(parts) if replaced else argument

