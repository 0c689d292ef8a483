"""soma-workflow workflows (``Helper.serialize`` files and ``Workflow.to_dict()``) as jobbridge's.

soma-workflow writes a workflow as JSON: jobs and groups by number in
``serialized_jobs`` / ``serialized_groups``, dependencies as pairs of those
numbers, tuples and sets encoded as lists starting with ``"<tuple>"`` /
``"<set>"``, file transfers, shared resource, temporary and option paths by
number (``["<id>", n]``) in their own tables. This module reads that form without
soma-workflow installed and builds the jobbridge workflow soma-workflow's engine
would have run:

- a job's id is its number in the file, its name soma's name; a ``BarrierJob``
  is a barrier, soma-workflow's engine execution jobs (``MapJob``, ``ReduceJob``,
  ``ListCatJob``, ``LeaveOneOutJob``, ``CrossValidationFoldJob``, ``StrCatJob``,
  ``EngineExecutionJob``) engine-side jobs; a dependency end may be a job or a group;
- commands as soma-workflow's engine builds them: lists inside a command become
  their ``repr``, ``["<join>", ...]`` is joined, ``%(name)s`` is replaced from
  ``param_dict`` (and from ``configuration_dict``, the JSON of the job's
  ``configuration``) at submission, and again when the job becomes ready for a
  job that parameter links (``param_links``, with soma-workflow's link functions)
  give values;
- paths: a file transfer is its client path on a resource sharing the client's
  file system, its copy's path on a remote one (jobbridge.remote.transfer), where
  the jobs naming it in ``referenced_input_files`` wait for it; a shared resource
  path is translated through the resource's ``path_translation_files``, a
  temporary path is placed by :class:`jobbridge.dynamic.Placement`, an option path
  is its parent's path and URI;
- environment: the job's ``env`` over the workflow's ``env`` over what the
  workflow's ``env_builder_code`` prints (run once, now, with this Python);
- ``use_input_params_file``, ``has_outputs``: the engine writes the parameters file
  named by ``SOMAWF_INPUT_PARAMS`` and reads the outputs file named by
  ``SOMAWF_OUTPUT_PARAMS`` (:mod:`jobbridge.dynamic`).
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

from ...dynamic import FILES_ON_CLIENT as _FILES_ON_CLIENT
from ...dynamic import (
    LINK_FUNCTIONS,
    SOMA_ENGINE_CLASSES,
    SOMA_STYLE,
    Placement,
    soma_decode,
    soma_encode,
    soma_substitute,
    soma_values,
)
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
_MODULES = ("soma_workflow.client_types", "soma_workflow.client", "soma_workflow.custom_jobs")
_PLAIN_CLASSES = frozenset({"Job", *(f"{module}.Job" for module in _MODULES)})
_BARRIER_CLASSES = frozenset({"BarrierJob", *(f"{module}.BarrierJob" for module in _MODULES)})
#: soma-workflow's engine execution job classes, as they are written: their kind.
_ENGINE_CLASSES = {prefix + name: kind for name, kind in SOMA_ENGINE_CLASSES.items()
                   for prefix in ("", *(f"{module}." for module in _MODULES))}
_LINK_MODULE = "soma_workflow.param_link_functions."
#: Tables of special paths, by the kind of path they hold.
_SPECIAL_TABLES = (("serialized_file_transfers", "transfer"),
                   ("serialized_shared_res_paths", "shared"),
                   ("serialized_temporary_paths", "temporary"),
                   ("serialized_option_paths", "option"))
#: How long a workflow's env_builder_code may run.
ENV_BUILDER_TIMEOUT = 120.0


def is_soma_workflow(data: object) -> bool:
    """Whether a decoded JSON document is a soma-workflow serialized workflow."""
    return isinstance(data, dict) and "serialized_jobs" in data


def soma_workflow_spec(data: Mapping[str, Any], source: str = "workflow",
                       base_dir: Path | None = None, *, name: str | None = None,
                       queue: str | None = None, to_run: bool = True,
                       placement: Placement | None = None) -> WorkflowSpec:
    """The jobbridge workflow of a soma-workflow workflow dict; InputError naming the place.

    ``name`` and ``queue`` are ``submit_workflow``'s (``queue`` goes to every job).
    ``placement``: where temporary paths go and how shared resource paths translate.
    ``env_builder_code`` runs once the rest is valid; not with ``to_run=False`` (to draw
    it), which shows shared resource paths untranslated.
    """
    placement = placement or Placement.for_resource(None)
    converter = _Converter(source, queue, placement, to_run, base_dir or Path.cwd())
    converted, dynamics = converter.workflow(soma_decode(data, sets=True))
    if name is not None:
        converted["name"] = name
    try:
        spec = parse_workflow(converted, source=source, base_dir=base_dir, placement=placement)
    except InputError as error:  # the place in the file, not in its jobbridge form
        place = re.compile(rf"^{re.escape(source)}: jobs\[(\d+)\]")
        raise InputError(place.sub(lambda m: f"{source}: {converter.places[int(m[1])]}",
                                   str(error))) from None
    by_id = {job.job_id: job for job in spec.jobs}
    for key, dynamic in dynamics.items():  # with what the jobbridge form gave (inputs)
        by_id[key].dynamic = {**(by_id[key].dynamic or {}), **dynamic}
    if to_run and converter.env_builder_code is not None:  # only once all the rest is valid
        built = converter.run_env_builder(converter.env_builder_code)
        for job in spec.jobs:
            if not job.is_barrier:
                job.env = {**built, **job.env}
    return spec


def _is_special(value: object) -> bool:
    """A reference to a FileTransfer, SharedResourcePath, TemporaryPath or OptionPath."""
    return isinstance(value, tuple) and len(value) == 2 and value[0] == "<id>"


class _Converter:
    def __init__(self, source: str, queue: str | None, placement: Placement,
                 to_run: bool, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.queue = queue
        self.placement = placement
        self.to_run = to_run
        self.env_builder_code: str | None = None
        #: Each jobbridge job's place in the file, in their order.
        self.places: list[str] = []
        self.specials: dict[str, tuple[str, Any]] = {}
        self.paths: dict[str, tuple[str, str]] = {}

    def error(self, where: str, message: str) -> InputError:
        return InputError(f"{self.source}: {where}: {message}" if where
                          else f"{self.source}: {message}")

    def workflow(self, data: Any) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The jobbridge workflow, and the dynamic part of its jobs by id."""
        if not isinstance(data, dict):
            raise self.error("", "a soma-workflow workflow must be a JSON object")
        for key in data:
            if key not in _TOP_KEYS:
                raise self.error("", f"unknown key {key!r} of a soma-workflow workflow")
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise self.error("name", "must be a string or null")
        for table, kind in _SPECIAL_TABLES:
            for key, value in self.mapping(data, table).items():
                self.specials[str(key)] = (kind, value)
        serialized = self.mapping(data, "serialized_jobs")
        barriers = self.mapping(data, "serialized_barriers")  # soma-workflow < 3 files
        order = data.get("jobs")
        if order is None:
            order = [*serialized, *barriers]
        if not isinstance(order, list | tuple):
            raise self.error("jobs", "must be a list of job numbers")
        links = self.links(data, {str(number) for number in order})
        env = self.environment(data)
        workflow_native = data.get("native_specification")
        jobs: list[dict[str, Any]] = []
        dynamics: dict[str, dict[str, Any]] = {}
        for number in order:
            key = str(number)
            table = "serialized_barriers" if key in barriers else "serialized_jobs"
            self.places.append(f"{table}[{key!r}]")
            if key in barriers:
                jobs.append(self.barrier(key, barriers[key], "serialized_barriers"))
            elif key in serialized:
                job, dynamic = self.job(key, serialized[key], env, workflow_native,
                                        links.get(key, []))
                jobs.append(job)
                if dynamic is not None:
                    dynamics[key] = dynamic
            else:
                raise self.error("jobs", f"job {number!r} is not in serialized_jobs")
        ids = {job["id"] for job in jobs}
        groups, group_names = self.groups(data, ids)
        dependencies = self.dependencies(data, ids, group_names)
        known = {tuple(pair) for pair in dependencies}
        for key, items in links.items():  # a link is a dependency too (soma-workflow adds it)
            for _, upstream, _, _ in items:
                if (upstream, key) not in known:
                    known.add((upstream, key))
                    dependencies.append([upstream, key])
        converted: dict[str, Any] = {"jobs": jobs, "groups": groups,
                                     "dependencies": dependencies}
        if name is not None:
            converted["name"] = name
        return converted, dynamics

    def mapping(self, data: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, "must be an object")
        return value

    def links(self, data: Mapping[str, Any], ids: set[str]) -> dict[str, list[list[Any]]]:
        """``param_links`` (``{dest: {param: [(source, output, function)...]}}``) as each
        destination job's links ``[param, source, output, function]``."""
        raw = self.mapping(data, "param_links")
        links: dict[str, list[list[Any]]] = {}
        for dest, params in raw.items():
            where = f"param_links[{dest!r}]"
            if str(dest) not in ids:
                raise self.error(where, f"unknown job {dest!r}")
            if not isinstance(params, dict):
                raise self.error(where, "must be an object: parameter -> links")
            for param, items in params.items():
                if not isinstance(items, list | tuple):
                    raise self.error(f"{where}[{param!r}]", "must be a list of links")
                for index, link in enumerate(items):
                    here = f"{where}[{param!r}][{index}]"
                    if not isinstance(link, list | tuple) or len(link) not in (2, 3):
                        raise self.error(here, "must be (source job, output[, function])")
                    source = str(link[0])
                    if source not in ids:
                        raise self.error(here, f"unknown job {link[0]!r}")
                    if not isinstance(link[1], str):
                        raise self.error(here, "the output name must be a string")
                    function = self.link_function(link[2] if len(link) == 3 else None, here)
                    links.setdefault(str(dest), []).append([param, source, link[1], function])
        return links

    def link_function(self, raw: Any, where: str) -> list[Any] | None:
        """soma-workflow's ``"name"`` or ``("name", *args)``, a function of its
        param_link_functions."""
        if raw is None:
            return None
        name, *args = raw if isinstance(raw, list | tuple) and raw else [raw]
        if not isinstance(name, str):
            raise self.error(where, f"the link function must be a name, not {name!r}")
        short = name.removeprefix(_LINK_MODULE)
        if short not in LINK_FUNCTIONS:
            raise self.error(where, f"link function {name!r} is not supported by jobbridge "
                             f"(soma-workflow's: {', '.join(LINK_FUNCTIONS)})")
        return [short, *args]

    def environment(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The workflow's ``env`` (what ``env_builder_code`` prints comes under it, later)."""
        code = data.get("env_builder_code")
        if code is not None and not isinstance(code, str):
            raise self.error("env_builder_code", "must be a string of Python code")
        self.env_builder_code = code
        return self.env(data.get("env"), "env")

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
        self.referenced(raw, where)
        job: dict[str, Any] = {"id": key, "barrier": True}
        if raw.get("name") is not None:
            job["name"] = self.text(raw["name"], f"{where}.name")
        return job

    def referenced(self, raw: Mapping[str, Any], where: str) -> dict[str, list[str]]:
        """Referenced input and output files: checked, their temporary paths placed
        (created with the workflow, as soma-workflow's engine does); the file transfers
        among them as jobbridge's ``input_files`` / ``output_files``."""
        named: dict[str, list[str]] = {}
        for field, key in (("referenced_input_files", "input_files"),
                           ("referenced_output_files", "output_files")):
            items = raw.get(field) or ()
            if not isinstance(items, list | tuple):
                raise self.error(f"{where}.{field}", "must be a list")
            for index, item in enumerate(items):
                self.structure(item, f"{where}.{field}[{index}]")
                special = item[0] if isinstance(item, tuple) and item and _is_special(
                    item[0]) else item
                if _is_special(special) and self.specials[str(special[1])][0] == "transfer":
                    named.setdefault(key, []).append(str(special[1]))
        return named

    def job(self, key: str, raw: Any, workflow_env: Mapping[str, Any],
            workflow_native: Any, links: list[list[Any]]
            ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        where = f"serialized_jobs[{key!r}]"
        if not isinstance(raw, dict):
            raise self.error(where, "must be an object")
        for field in raw:
            if field not in _JOB_KEYS:
                raise self.error(where, f"unknown key {field!r} of a soma-workflow job")
        kind = raw.get("class", "Job")
        if not isinstance(kind, str):
            raise self.error(f"{where}.class", "must be the name of a job class")
        if kind in _BARRIER_CLASSES:
            return self.barrier(key, raw, "serialized_jobs"), None
        engine = _ENGINE_CLASSES.get(kind)
        if engine is None and kind not in _PLAIN_CLASSES:
            raise self.error(f"{where}.class", f"unknown job class {kind!r} (jobbridge runs "
                             f"soma-workflow's Job, BarrierJob, {', '.join(SOMA_ENGINE_CLASSES)})")
        transfers = self.referenced(raw, where)
        configuration = raw.get("configuration") or {}
        if not isinstance(configuration, dict):
            raise self.error(f"{where}.configuration", "must be an object")
        params = raw.get("param_dict") or {}
        if not isinstance(params, dict):
            raise self.error(f"{where}.param_dict", "must be an object")
        params = {name: self.structure(value, f"{where}.param_dict[{name!r}]")
                  for name, value in params.items()}
        use_params_file = raw.get("use_input_params_file", False)
        has_outputs = raw.get("has_outputs", False)
        for field, value in (("use_input_params_file", use_params_file),
                             ("has_outputs", has_outputs)):
            if not isinstance(value, bool):
                raise self.error(f"{where}.{field}", "must be true or false")
        dynamic: dict[str, Any] = {"style": SOMA_STYLE, "parameters": soma_encode(params)}
        if configuration:
            dynamic["configuration"] = configuration
        if use_params_file:
            given = raw.get("input_params_file")
            dynamic["input_file"] = (True if given is None else
                                     self.job_file(given, f"{where}.input_params_file"))
        if has_outputs and engine is None:  # an engine-side job's outputs are its result
            dynamic["outputs"] = []
            given = raw.get("output_params_file")
            if given is not None:
                dynamic["output_file"] = self.job_file(given, f"{where}.output_params_file")
        if links:
            dynamic["links"] = links
        job: dict[str, Any] = {"id": key, **transfers}
        name = raw.get("name")
        if name is not None:
            job["name"] = self.text(name, f"{where}.name")
        if engine is not None:  # runs in the engine: no command, no files
            dynamic["engine"] = engine
            return {"id": key, **({"name": job["name"]} if "name" in job else {}),
                    "barrier": True}, dynamic
        command = raw.get("command")
        if not isinstance(command, list | tuple) or not command:
            raise self.error(f"{where}.command", "must be a non-empty list")
        template = [self.argument(item, f"{where}.command[{index}]")
                    for index, item in enumerate(command)]
        values = soma_values(params, dynamic)
        job["command"] = [soma_substitute(argument, values) for argument in template]
        if links and template != job["command"]:
            dynamic["command"] = template
        env = {**workflow_env, **(self.env(raw.get("env"), f"{where}.env"))}
        if env:
            job["env"] = env
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
        ready_work = links or use_params_file or has_outputs
        return job, dynamic if ready_work else None

    def env(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.error(where, "must be an object of string values")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.error(where, "must be a string")
        return value

    def path(self, value: Any, where: str) -> str:
        if _is_special(value):
            return self.special(value, where)[0]
        return self.text(os.fspath(value) if isinstance(value, os.PathLike) else value, where)

    def job_file(self, value: Any, where: str) -> str:
        """A parameters file the job names: relative to the workflow's folder, as its
        other paths (the engine writes or reads it, wherever it runs)."""
        return str(self.base_dir / self.path(value, where))

    def special(self, value: Any, where: str) -> tuple[str, str]:
        """A special path's ``(main path, directory)`` on the resource (the directory is
        what ``(transfer, relative_path)`` tuples join to)."""
        key = str(value[1])
        if key in self.paths:
            return self.paths[key]
        if key not in self.specials:
            raise self.error(where, f"unknown special path {value[1]!r} (not in the "
                             "serialized file transfers, shared resource, temporary or "
                             "option paths)")
        kind, raw = self.specials[key]
        place = f"{where}: {kind} path {key}"
        if not isinstance(raw, dict):
            raise self.error(place, "must be an object")
        pattern = raw.get("pattern") or "%s"
        if not isinstance(pattern, str) or pattern.count("%s") != 1 or "%" in pattern.replace(
                "%s", ""):
            raise self.error(place, f"invalid pattern {pattern!r}")
        self.paths[key] = ("", "")  # an option path naming itself must not loop
        if kind == "transfer":  # the client path itself, or its copy on the resource
            main, directory = self.transfer(key, raw, place)
        elif kind == "shared":
            parts = [self.text(raw.get(k), f"{place}.{k}")
                     for k in ("namespace", "uuid", "relative_path")]
            main = directory = (self.placement.translate(*parts) if self.to_run
                                else ":".join(parts))
        elif kind == "temporary":
            suffix = raw.get("suffix") or ""
            hours = raw.get("disposal_timeout")
            main = directory = self.placement.temporary(
                key, self.text(raw.get("name") or "temporary", f"{place}.name"),
                self.text(suffix, f"{place}.suffix").replace("/", "_"),
                bool(raw.get("is_directory")),
                float(hours) if isinstance(hours, int | float) and hours > 0 else 168.0)
        else:  # option: its parent's path and a URI
            parent = raw.get("parent_path")
            base = (self.special(parent, place)[0] if _is_special(parent)
                    else self.text(parent, f"{place}.parent_path"))
            main = directory = base + self.text(raw.get("uri") or "", f"{place}.uri")
        self.paths[key] = (pattern % main, pattern % directory)
        return self.paths[key]

    def transfer(self, key: str, raw: Mapping[str, Any], place: str) -> tuple[str, str]:
        """A FileTransfer's ``(main path, directory)`` on the resource: with
        ``client_paths``, all of them go in one directory there (soma-workflow's), the
        main path being the client path's name in it."""
        client = self.text(raw.get("client_path"), f"{place}.client_path")
        paths = raw.get("client_paths")
        if paths:
            if not isinstance(paths, list | tuple):
                raise self.error(f"{place}.client_paths", "must be a list of paths")
            folder = os.path.dirname(client) or "."
            files = [os.path.relpath(self.text(path, f"{place}.client_paths[{index}]"), folder)
                     for index, path in enumerate(paths)]
            transfer = self.placement.transfer(key, folder, files, f"{self.source}: {place}",
                                               self.base_dir)
            main, directory = os.path.join(transfer.path, os.path.basename(client)), transfer.path
        else:
            transfer = self.placement.transfer(key, client, None, f"{self.source}: {place}",
                                               self.base_dir)
            main = directory = transfer.path
        if raw.get("initial_status") == _FILES_ON_CLIENT:
            transfer.is_input = True
        return main, directory

    def argument(self, item: Any, where: str) -> str:
        """One command element as soma-workflow's engine writes it (``generate_command``):
        a list or tuple becomes its ``repr``, ``["<join>", ...]`` its items joined."""
        value = self.structure(item, where)
        if value is None:
            raise self.error(where, "a command element cannot be null")
        return value if isinstance(value, str) else repr(value) if isinstance(
            value, list | tuple | dict) else str(value)

    def structure(self, item: Any, where: str) -> Any:
        """A value with its special paths replaced by their paths (soma-workflow's
        ``generate_command(..., "PathOnly")``)."""
        if _is_special(item):
            return self.special(item, where)[0]
        if (isinstance(item, tuple) and len(item) == 2 and _is_special(item[0])
                and isinstance(item[1], str)):  # (transfer, file in it)
            return os.path.join(self.special(item[0], where)[1], item[1])
        if isinstance(item, list | tuple):
            parts = [self.structure(part, f"{where}[{i}]") for i, part in enumerate(item)]
            if isinstance(item, list) and parts and parts[0] == "<join>":
                return "".join(str(part) for part in parts[1:])
            return tuple(parts) if isinstance(item, tuple) else parts
        if isinstance(item, dict):
            return {key: self.structure(value, f"{where}[{key!r}]")
                    for key, value in item.items()}
        if isinstance(item, set | frozenset):  # a param_dict value: substituted as a set
            return {self.structure(part, f"{where}[{part!r}]") for part in item}
        if item is None or isinstance(item, str | bool | int | float):
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
