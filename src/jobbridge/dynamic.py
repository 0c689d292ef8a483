"""Dynamic workflows: parameters, output parameters, links, engine-side jobs, temporary paths.

Most jobs are fully known at submission, parameters included: their command is
rendered then (:func:`render_command`). What is only known while the workflow
runs goes in a job's ``EngineJob.dynamic``, a JSON object the engine resolves:

- when the job becomes ready (:func:`prepare`): its parameter links are applied
  from the upstream jobs' stored outputs, its command is rendered again, its input
  parameters file (``SOMAWF_INPUT_PARAMS``) written, a stale output parameters file
  removed; an engine-side job (map, reduce...) computes its outputs there;
- when the job ends (:func:`collect_outputs`): its output parameters file
  (``SOMAWF_OUTPUT_PARAMS``) is read; the engine stores the outputs in the same
  transaction as the job's end, before any dependent is released, so an engine
  killed in between loses nothing and a restarted one links the same values.

``dynamic`` keys (all optional): ``parameters`` (initial values), ``command`` (the
template, kept for link destinations), ``links`` (``[param, job, output,
function]``, function ``None`` or ``[name, *args]``), ``outputs`` (names the job
must write; soma-workflow's ``[]``: any), ``output_file`` / ``input_file`` (a path;
``input_file: true``: the job's own), ``configuration`` (soma-workflow's),
``engine`` (an engine-side job's kind), ``style`` (``"soma-workflow"``: its
substitution rules, missing outputs ignored).

Temporary paths are placed at submission (:class:`Placement`): a folder of their
own under the resource's ``scratch_directory`` or ``$JOBBRIDGE_HOME/tmp``, created
when the workflow is stored, removed when it is deleted or its disposal time has
passed. Shared resource paths are translated through the resource's
``path_translation_files`` (soma-workflow's translation files).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .configuration import Configuration, jobbridge_home, private_dir
from .errors import InputError

if TYPE_CHECKING:  # model imports this module to read workflows
    from .model import EngineJob

#: Environment variables naming a job's parameters files (soma-workflow's names).
INPUT_PARAMS_VARIABLE = "SOMAWF_INPUT_PARAMS"
OUTPUT_PARAMS_VARIABLE = "SOMAWF_OUTPUT_PARAMS"
#: ``dynamic["style"]`` of jobs read from soma-workflow workflows.
SOMA_STYLE = "soma-workflow"
#: How long temporary paths stay after their workflow ended, by default (soma-workflow's).
DISPOSAL_HOURS = 168.0
#: ``%(name)s`` in a command of jobbridge's format.
PLACEHOLDER = re.compile(r"%\(([^()]*)\)s")
#: soma-workflow's substitution pattern (greedy, as its own ``Job.commandline_repl``).
_SOMA_PLACEHOLDER = re.compile(r"%\((.+)\)[dsf]")
#: Largest output parameters file read (a job writing more is failed, not the engine).
MAX_OUTPUTS_BYTES = 64 * 1024 * 1024


# --- link functions (soma-workflow's param_link_functions) -------------------------------------
# Called as f(*args, src_param=, value=, dst_param=, dst_value=): a link's value from the
# upstream output ``value`` and the destination's current value.


def list_to_sequence(item: int, src_param: str, value: Any, dst_param: str,
                     dst_value: Any) -> Any:
    """The item-th element of a list."""
    return value[item]


def sequence_to_list(item: int, src_param: str, value: Any, dst_param: str,
                     dst_value: Any) -> Any:
    """The destination list with ``value`` as its item-th element (grown with nulls)."""
    result = list(dst_value) if isinstance(dst_value, list) else []
    result.extend([None] * (item + 1 - len(result)))
    result[item] = value
    return result


def append_to_list(src_param: str, value: Any, dst_param: str, dst_value: Any) -> Any:
    return [*(dst_value or []), value]


def list_all_but_one(item: int, src_param: str, value: Any, dst_param: str,
                     dst_value: Any) -> Any:
    """The list without its item-th element (leave-one-out)."""
    return value[:item] + value[item + 1:]


def _fold(nitems: int, fold: int, nfolds: int) -> tuple[int, int]:
    size, extra = divmod(nitems, nfolds)
    begin, end = size * fold, size * (fold + 1)
    return begin + min(begin, extra), end + min(end, extra)


def list_cv_train_fold(fold: int, nfolds: int, src_param: str, value: Any, dst_param: str,
                       dst_value: Any) -> Any:
    """All but the fold-th of ``nfolds`` folds of the list (cross-validation training)."""
    begin, end = _fold(len(value), fold, nfolds)
    return value[:begin] + value[end:]


def list_cv_test_fold(fold: int, nfolds: int, src_param: str, value: Any, dst_param: str,
                      dst_value: Any) -> Any:
    """The fold-th of ``nfolds`` folds of the list (cross-validation test)."""
    begin, end = _fold(len(value), fold, nfolds)
    return value[begin:end]


def list_cat(item: Any, src_param: str, value: Any, dst_param: str, dst_value: Any) -> Any:
    """The destination list extended by ``value``."""
    return [*(dst_value or []), *value]


def sequence_max(shift: Any, src_param: str, value: Any, dst_param: str, dst_value: Any) -> Any:
    return value + shift if dst_value is None else max(dst_value, value + shift)


def sequence_min(shift: Any, src_param: str, value: Any, dst_param: str, dst_value: Any) -> Any:
    return value + shift if dst_value is None else min(dst_value, value + shift)


def sequence_sum(shift: Any, src_param: str, value: Any, dst_param: str, dst_value: Any) -> Any:
    return (shift if dst_value is None else dst_value) + value


LINK_FUNCTIONS: dict[str, Callable[..., Any]] = {function.__name__: function for function in (
    list_to_sequence, sequence_to_list, append_to_list, list_all_but_one, list_cv_train_fold,
    list_cv_test_fold, list_cat, sequence_max, sequence_min, sequence_sum)}


# --- engine-side jobs (soma-workflow's custom_jobs) --------------------------------------------
# Each takes the job's parameters (links applied) and returns its outputs.


def _map(params: Mapping[str, Any]) -> dict[str, Any]:
    """Lists split into items: ``inputs`` -> ``output_0``, ``output_1``... and ``lengths``;
    other parameters pass through."""
    inputs = params.get("input_names", ["inputs"])
    outputs = params.get("output_names", ["output_%d"])
    result = {k: v for k, v in params.items()
              if k not in {"input_names", "output_names", *inputs, *outputs}}
    lengths = []
    for name, pattern in zip(inputs, outputs, strict=False):
        for index, item in enumerate(params[name]):
            result[pattern % index] = item
        lengths.append(len(params[name]))
    result["lengths"] = lengths
    return result


def _reduce(params: Mapping[str, Any]) -> dict[str, Any]:
    """Series joined into lists: ``input_0``... (``lengths`` of them) -> ``outputs``."""
    inputs = params.get("input_names", ["input_%d"])
    outputs = params.get("output_names", ["outputs"])
    lengths = params["lengths"]
    result = {k: v for k, v in params.items()
              if k not in {"input_names", "output_names", "lengths", *inputs, *outputs}}
    for pattern, name, length in zip(inputs, outputs, lengths, strict=False):
        result[name] = [params[pattern % index] for index in range(length)]
    return result


def _list_cat(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"outputs": [item for items in params["inputs"] for item in items]}


def _leave_one_out(params: Mapping[str, Any]) -> dict[str, Any]:
    inputs, index = params["inputs"], params["index"]
    return {"train": inputs[:index] + inputs[index + 1:], "test": inputs[index]}


def _cross_validation_fold(params: Mapping[str, Any]) -> dict[str, Any]:
    inputs = params["inputs"]
    begin, end = _fold(len(inputs), params["fold"], params["nfolds"])
    return {"train": inputs[:begin] + inputs[end:], "test": inputs[begin:end]}


def _str_cat(params: Mapping[str, Any]) -> dict[str, Any]:
    parts = params.get("input_names", ["inputs"])
    return {params.get("output_name", "output"): "".join(
        "".join(value) if isinstance(value, list) else str(value)
        for value in (params[name] for name in parts))}


def _identity(params: Mapping[str, Any]) -> dict[str, Any]:
    return dict(params)


#: Engine-side jobs by kind, and soma-workflow's class of each.
ENGINE_JOBS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "map": _map, "reduce": _reduce, "list_cat": _list_cat, "leave_one_out": _leave_one_out,
    "cross_validation_fold": _cross_validation_fold, "str_cat": _str_cat,
    "identity": _identity}
SOMA_ENGINE_CLASSES = {
    "MapJob": "map", "ReduceJob": "reduce", "ListCatJob": "list_cat",
    "LeaveOneOutJob": "leave_one_out", "CrossValidationFoldJob": "cross_validation_fold",
    "StrCatJob": "str_cat", "EngineExecutionJob": "identity"}


# --- rendering ---------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """A parameter value in a command: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def placeholders(argument: str) -> list[str]:
    """The parameter names an argument of jobbridge's format refers to."""
    return PLACEHOLDER.findall(argument) if "%(" in argument else []


def render_command(command: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """jobbridge's substitution: ``%(name)s`` becomes the value's text; an argument that
    is exactly ``%(name)s`` of a list value becomes one argument per item. Every name
    must be in ``values`` (KeyError)."""
    argv: list[str] = []
    for argument in command:
        if "%(" not in argument:
            argv.append(argument)
            continue
        whole = PLACEHOLDER.fullmatch(argument)
        if whole is not None and isinstance(values[whole[1]], list):
            argv.extend(as_text(item) for item in values[whole[1]])
        else:
            argv.append(PLACEHOLDER.sub(lambda match: as_text(values[match[1]]), argument))
    return argv


def soma_substitute(argument: str, values: Mapping[str, Any]) -> str:
    """soma-workflow's ``Job.commandline_repl`` on one argument: ``%(name)s`` replaced by the
    parameter's text; an argument naming no known parameter is left as it is."""
    if not values or "%(" not in argument:
        return argument
    parts = _SOMA_PLACEHOLDER.split(argument)
    replaced = False
    for index in range(1, len(parts), 2):
        value = values.get(parts[index])
        if value is None:
            parts[index] = f"%({parts[index]})s"
        else:
            replaced = True
            parts[index] = value if isinstance(value, str) else str(value)
    return "".join(parts) if replaced else argument


def soma_values(params: Mapping[str, Any], dynamic: Mapping[str, Any]) -> dict[str, Any]:
    """What soma-workflow substitutes in a command: the parameters, and the job's
    configuration as ``configuration_dict`` unless it goes to the parameters file."""
    configuration = dynamic.get("configuration")
    if configuration and not dynamic.get("input_file"):
        return {**params, "configuration_dict": json.dumps(configuration)}
    return dict(params)


def soma_encode(value: Any) -> Any:
    """soma-workflow's ``utils.to_json`` (how it writes parameters files, how its
    parameters are kept here): tuples as ``["<tuple>", ...]``, sets as ``["<set>", ...]``."""
    if isinstance(value, tuple):
        return ["<tuple>", *(soma_encode(item) for item in value)]
    if isinstance(value, set | frozenset):
        return ["<set>", *(soma_encode(item) for item in value)]
    if isinstance(value, list):
        return [soma_encode(item) for item in value]
    if isinstance(value, dict):
        return {key: soma_encode(item) for key, item in value.items()}
    return value


def soma_decode(value: Any, sets: bool = False) -> Any:
    """soma-workflow's ``utils.from_json``: ``["<tuple>", ...]`` -> tuple, ``["<set>", ...]``
    -> set (a list unless ``sets``: a value stored as JSON), ``["<undefined>"]`` -> None."""
    if isinstance(value, dict):
        return {key: soma_decode(item, sets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        if isinstance(value, list) and value and isinstance(value[0], str):
            code = value[0]
            if code == "<tuple>":
                return tuple(soma_decode(item, sets) for item in value[1:])
            if code == "<set>":
                members = [soma_decode(item, sets) for item in value[1:]]
                if sets:
                    with suppress(TypeError):  # unhashable members (not soma's): a list
                        return set(members)
                return members
            if code == "<undefined>":
                return None
        items = [soma_decode(item, sets) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


# --- placement: temporary and shared resource paths ------------------------------------------


@dataclass
class Temporary:
    """A temporary path of a workflow: created when it is stored, removed with it."""

    name: str
    path: str
    is_directory: bool = False
    disposal_hours: float = DISPOSAL_HOURS


@dataclass
class Transfer:
    """A file transfer of a workflow: a client file or directory (with ``files``: only
    these, relative to the directory ``client_path``) and where it is on the resource
    (``path``: the client path itself on a resource sharing the client's files).
    ``where`` names it in messages (the place in the workflow file)."""

    name: str
    client_path: str
    path: str
    files: list[str] | None = None
    is_input: bool = False
    is_output: bool = False
    where: str = ""

    @property
    def sent(self) -> bool:
        """Sent from the client at submission: read by jobs, written by none."""
        return self.is_input and not self.is_output

    @property
    def copied(self) -> bool:
        """Copied between client and resource (not the same file system)."""
        return self.path != self.client_path

    def client_items(self) -> list[str]:
        """The client paths copied: the path itself, or each of its ``files``."""
        if self.files is None:
            return [self.client_path]
        return [os.path.join(self.client_path, name) for name in self.files]

    def soma_status(self, status: str) -> tuple[str, tuple[Any, ...]]:
        """soma-workflow's ``workflow_elements_status`` item: ``(engine_path, (status,
        progression, engine_path, client_path, client_paths))``, with files the first
        one and all of them."""
        items = None if self.files is None else self.client_items()
        client = self.client_path if items is None else items[0]
        return self.path, (status, None, self.path, client, items)


@dataclass
class TransferProgress:
    """A copy under way, for a progress display: bytes done of ``total``."""

    name: str
    total: int
    done: int = 0
    sending: bool = True
    #: the copy is over: its line is drawn a last time and ended
    finished: bool = False


#: A transfer's status (soma-workflow's constants' values, shown as they are).
FILES_DO_NOT_EXIST = "do not exist"
FILES_ON_CLIENT = "on client side"
FILES_ON_CR = "on computing resource side"
FILES_ON_CLIENT_AND_CR = "on both sides"
TRANSFERING_FROM_CLIENT_TO_CR = "transfering client->cr"
TRANSFERING_FROM_CR_TO_CLIENT = "transfering cr->client"
TRANSFER_STATUSES = (FILES_DO_NOT_EXIST, FILES_ON_CLIENT, FILES_ON_CR, FILES_ON_CLIENT_AND_CR,
                     TRANSFERING_FROM_CLIENT_TO_CR, TRANSFERING_FROM_CR_TO_CLIENT)
#: Statuses in which a job may read a transfer on the resource.
ON_RESOURCE = frozenset({FILES_ON_CR, FILES_ON_CLIENT_AND_CR})


def check_transfer_name(name: str, where: str) -> None:
    """A relative name inside a transfer's directory: no way out of it."""
    parts = name.split("/")
    if (not name or "\0" in name or name.startswith("/") or ".." in parts
            or all(part in ("", ".") for part in parts)):
        raise InputError(f"{where}: {name!r} must be a relative path inside the directory "
                         "(no '..', not absolute)")


@dataclass
class Placement:
    """Where a workflow's paths go on its resource, decided at submission.

    Temporary paths go in a folder of the workflow's own (created when it is
    stored). Shared resource paths ``(namespace, uuid, relative_path)`` are
    translated through the resource's ``path_translation_files``: ``namespace{file}``
    items, each file holding ``uuid path`` lines (soma-workflow's translation files).
    File transfers are the client paths themselves on a resource sharing the
    client's file system (``transfer_folder`` None); on a remote resource they go
    in ``transfer_folder`` (one folder per workflow, one per transfer in it), where
    the client copies them (jobbridge.remote.transfer). Relative client paths are
    relative to ``client_dir`` (the workflow file's folder on the client).
    """

    temporary_folder: Path
    translation_files: str = ""
    where: str = "the resource"
    temporaries: list[Temporary] = field(default_factory=list)
    _translation: dict[str, dict[str, str]] | None = None
    transfer_folder: Path | None = None
    client_dir: str | None = None
    transfers: list[Transfer] = field(default_factory=list)

    def transfer(self, key: str, client_path: str, files: list[str] | None, where: str,
                 base_dir: Path | None = None) -> Transfer:
        """The transfer ``key`` (the same for every use), placed on the resource."""
        for known in self.transfers:
            if known.name == key:
                return known
        base = self.client_dir or str(base_dir or Path.cwd())
        client = os.path.normpath(os.path.join(base, client_path))  # as the client has it
        for name in files or ():
            check_transfer_name(name, f"{where}: files")
        if self.transfer_folder is None:
            path = client
        else:
            leaf = os.path.basename(client) or "root"
            path = str(self.transfer_folder / str(len(self.transfers)) / leaf)
        transfer = Transfer(key, client, path, None if files is None else list(files),
                            where=where)
        self.transfers.append(transfer)
        return transfer

    @classmethod
    def for_resource(cls, config: Configuration | None, home: Path | None = None
                     ) -> Placement:
        home = home if home is not None else jobbridge_home()
        scratch = config.get("scratch_directory") if config is not None else None
        root = Path(os.path.expanduser(os.path.expandvars(scratch))) if scratch else home / "tmp"
        folder = root / f"jobbridge-{os.urandom(6).hex()}"
        if config is None:
            return cls(folder)
        return cls(folder, config.get("path_translation_files") or "",
                   f"resource {config.resource_id!r}")

    def temporary(self, key: str, name: str, suffix: str = "", is_directory: bool = False,
                  disposal_hours: float = DISPOSAL_HOURS) -> str:
        """The path of a workflow's temporary path ``key`` (the same for every use)."""
        for known in self.temporaries:
            if known.name == key:
                return known.path
        stem = re.sub(r"[^\w.-]", "_", name)[:60] or "temporary"
        path = str(self.temporary_folder / f"{stem}-{len(self.temporaries)}{suffix}")
        self.temporaries.append(Temporary(key, path, is_directory, disposal_hours))
        return path

    def translate(self, namespace: str, uuid: str, relative_path: str) -> str:
        """A shared resource path on this resource; InputError naming what is missing."""
        table = self._load_translation()
        what = f"shared resource path {namespace}:{uuid}"
        if namespace not in table:
            raise InputError(f"{what}: {self.where} has no translation for namespace "
                             f"{namespace!r} (path_translation_files)")
        if uuid not in table[namespace]:
            raise InputError(f"{what}: {self.where} has no translation for {uuid!r} in "
                             f"namespace {namespace!r}")
        return os.path.join(table[namespace][uuid], relative_path)

    def _load_translation(self) -> dict[str, dict[str, str]]:
        if self._translation is not None:
            return self._translation
        table: dict[str, dict[str, str]] = {}
        for item in self.translation_files.split():
            namespace, _, rest = item.partition("{")
            if not namespace or not rest.endswith("}"):
                raise InputError(f"{self.where}: path_translation_files: {item!r} is not "
                                 "namespace{file}")
            file = os.path.expanduser(os.path.expandvars(rest[:-1]))
            try:
                lines = Path(file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as error:
                why = getattr(error, "strerror", None) or error
                raise InputError(f"{self.where}: path_translation_files: cannot read {file}: "
                                 f"{why}") from None
            for line in lines:
                parts = line.split(None, 1)
                if len(parts) == 2:
                    table.setdefault(namespace, {})[parts[0]] = os.path.expandvars(
                        parts[1].rstrip())
        self._translation = table
        return table


def create_temporaries(temporaries: Iterable[Temporary]) -> None:
    """Create a workflow's temporary paths, private (as ``mkstemp`` / ``mkdtemp`` would)."""
    for temporary in temporaries:
        path = Path(temporary.path)
        private_dir(path.parent)
        if temporary.is_directory:
            private_dir(path)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


# --- jobbridge's format ------------------------------------------------------------------------

DYNAMIC_KEYS = frozenset({"parameters", "outputs", "links", "parameters_file", "engine"})
_LINK_KEYS = frozenset({"job", "output", "function", "args"})
_TEMPORARY_KEYS = frozenset({"suffix", "directory", "disposal_hours"})


def _named_objects(raw: Any, where: str, what: str, keys: frozenset[str]
                   ) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(name, item, place)`` of a workflow's object of ``what`` by name, each
    item an object of ``keys``: the checks both temporary paths and transfers need."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise InputError(f"{where}: must be an object of {what} by name")
    for name, item in raw.items():
        place = f"{where}.{name}"
        _check_name(name, place)
        if not isinstance(item, dict):
            raise InputError(f"{place}: must be an object ({', '.join(sorted(keys))})")
        _no_unknown(item, keys, place)
        yield name, item, place


def parse_temporaries(raw: Any, source: str, placement: Placement) -> dict[str, str]:
    """A workflow's ``temporary_paths``: ``{name: path}``, placed."""
    paths = {}
    for name, item, place in _named_objects(raw, f"{source}: temporary_paths",
                                            "temporary paths", _TEMPORARY_KEYS):
        suffix = item.get("suffix", "")
        if not isinstance(suffix, str) or "/" in suffix or "\0" in suffix:
            raise InputError(f"{place}.suffix: must be a string without '/'")
        directory = item.get("directory", False)
        if not isinstance(directory, bool):
            raise InputError(f"{place}.directory: must be true or false")
        hours = item.get("disposal_hours", DISPOSAL_HOURS)
        if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
            raise InputError(f"{place}.disposal_hours: must be a number > 0")
        paths[name] = placement.temporary(name, name, suffix, directory, float(hours))
    return paths


_TRANSFER_KEYS = frozenset({"path", "files"})
#: A job's keys naming the workflow's transfers it reads and writes.
TRANSFER_JOB_KEYS = ("input_files", "output_files")


def parse_transfers(raw: Any, source: str, placement: Placement, base_dir: Path | None
                    ) -> dict[str, str]:
    """A workflow's ``transfers``: ``{name: path on the resource}``, placed."""
    paths = {}
    for name, item, place in _named_objects(raw, f"{source}: transfers", "file transfers",
                                            _TRANSFER_KEYS):
        path = item.get("path")
        if not isinstance(path, str) or not path or "\0" in path:
            raise InputError(f"{place}.path: required, a client path")
        files = item.get("files")
        if files is not None and (not isinstance(files, list) or not files or not all(
                isinstance(f, str) for f in files)):
            raise InputError(f"{place}.files: must be a non-empty list of names in the "
                             "directory path")
        paths[name] = placement.transfer(name, path, files, f"{place}.path", base_dir).path
    return paths


def parse_job_transfers(raw: Mapping[str, Any], job: EngineJob, where: str,
                        placement: Placement) -> None:
    """A job's ``input_files`` / ``output_files``: the transfers it reads and writes.
    A job reading copied files waits for them (``dynamic["inputs"]``)."""
    known = {transfer.name: transfer for transfer in placement.transfers}
    waits = []
    for key in TRANSFER_JOB_KEYS:
        names = raw.get(key)
        if names is None:
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{where}.{key}: must be a list of transfer names")
        for index, name in enumerate(names):
            transfer = known.get(name)
            if transfer is None:
                raise InputError(f"{where}.{key}[{index}]: unknown transfer {name!r} "
                                 f"(transfers: {', '.join(known) or 'none'})")
            if key == "input_files":
                transfer.is_input = True
                if transfer.copied and name not in waits:
                    waits.append(name)
            else:
                transfer.is_output = True
    if waits:  # see settle_inputs: a transfer some job writes is not waited for
        job.dynamic = {**(job.dynamic or {}), "inputs": waits}


def settle_inputs(jobs: Iterable[EngineJob], transfers: Iterable[Transfer]) -> None:
    """Once every job is read: jobs wait only for the transfers sent from the client,
    not for those a job of the workflow writes (the dependencies order those)."""
    produced = {transfer.name for transfer in transfers if transfer.is_output}
    if not produced:
        return
    for job in jobs:
        if job.dynamic is not None and "inputs" in job.dynamic:
            waits = [name for name in job.dynamic["inputs"] if name not in produced]
            job.dynamic = {k: v for k, v in job.dynamic.items() if k != "inputs"}
            if waits:
                job.dynamic["inputs"] = waits
            job.dynamic = job.dynamic or None


def parse_job_dynamic(raw: Mapping[str, Any], job: EngineJob, where: str,
                      temporaries: Mapping[str, str]) -> None:
    """A job's parameters, outputs, links, parameters file and engine kind (jobbridge's
    format): its command rendered with its parameters and the workflow's temporary
    paths, what the engine resolves later in ``job.dynamic``. Links are checked
    against the other jobs by :func:`link_edges`."""
    params = raw.get("parameters")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise InputError(f"{where}.parameters: must be an object of values by name")
    for name in params:
        _check_name(name, f"{where}.parameters.{name}")
        if name in temporaries:
            raise InputError(f"{where}.parameters.{name}: {name!r} is a temporary path of the "
                             "workflow")
        if "\0" in json.dumps(params[name]):
            raise InputError(f"{where}.parameters.{name}: must not contain NUL bytes")
    engine = raw.get("engine")
    if engine is not None and engine not in ENGINE_JOBS:
        raise InputError(f"{where}.engine: unknown engine-side job {engine!r} (kinds: "
                         f"{', '.join(ENGINE_JOBS)})")
    outputs = raw.get("outputs")
    if outputs is not None:
        if engine is not None:
            raise InputError(f"{where}.outputs: an engine-side job's outputs are its result")
        if (not isinstance(outputs, list) or not all(isinstance(o, str) and o for o in outputs)
                or len(set(outputs)) != len(outputs)):
            raise InputError(f"{where}.outputs: must be a list of distinct output names")
    params_file = raw.get("parameters_file", False)
    if not isinstance(params_file, bool) or (params_file and engine is not None):
        raise InputError(f"{where}.parameters_file: must be true or false (and not for an "
                         "engine-side job)")
    links = _parse_links(raw.get("links"), params, where)
    values = {**temporaries, **params}
    template = job.command
    for index, argument in enumerate(template):
        for name in placeholders(argument):
            if name not in values:
                known = ", ".join(sorted(params)) or "none"
                if temporaries:
                    known += f"; temporary paths: {', '.join(sorted(temporaries))}"
                raise InputError(f"{where}.command[{index}]: unknown parameter {name!r} "
                                 f"(parameters: {known})")
    if temporaries and links:  # the template the engine renders again: temporaries in
        template = render_command(template, {**{n: f"%({n})s" for n in params}, **temporaries})
    job.command = render_command(job.command, values)
    dynamic: dict[str, Any] = {}
    if links or outputs is not None or params_file or engine is not None:
        dynamic["parameters"] = params
    if links:
        dynamic["links"] = links
        if template != job.command:
            dynamic["command"] = template
    if outputs is not None:
        dynamic["outputs"] = outputs
    if params_file:
        dynamic["input_file"] = True
    if engine is not None:
        dynamic["engine"] = engine
    job.dynamic = dynamic or None


def _parse_links(raw: Any, params: Mapping[str, Any], where: str) -> list[list[Any]]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise InputError(f"{where}.links: must be an object: parameter -> link or list of links")
    links = []
    for param, items in raw.items():
        place = f"{where}.links.{param}"
        if param not in params:
            raise InputError(f"{place}: {param!r} is not a parameter of the job (give it in "
                             "parameters, with its value before the link)")
        for index, link in enumerate(items if isinstance(items, list) else [items]):
            here = f"{place}[{index}]" if isinstance(items, list) else place
            if not isinstance(link, dict):
                raise InputError(f"{here}: must be an object {{\"job\": ..., \"output\": ...}}")
            _no_unknown(link, _LINK_KEYS, here)
            job, output = link.get("job"), link.get("output")
            if not isinstance(job, str) or not job:
                raise InputError(f"{here}.job: required, a job id")
            if not isinstance(output, str) or not output:
                raise InputError(f"{here}.output: required, an output name")
            function = link.get("function")
            args = link.get("args", [])
            if function is None:
                if "args" in link:
                    raise InputError(f"{here}.args: only with a function")
                links.append([param, job, output, None])
                continue
            if function not in LINK_FUNCTIONS:
                raise InputError(f"{here}.function: unknown link function {function!r} "
                                 f"(functions: {', '.join(LINK_FUNCTIONS)})")
            if not isinstance(args, list):
                raise InputError(f"{here}.args: must be a list")
            links.append([param, job, output, [function, *args]])
    return links


def link_edges(jobs: Sequence[EngineJob], source: str,
               place: Callable[[int], str] | None = None) -> list[tuple[str, str]]:
    """Check every link's source job and output; the (source, destination) dependencies
    links imply."""
    by_id = {job.job_id: job for job in jobs}
    edges = []
    for number, job in enumerate(jobs):
        if job.dynamic is None or not job.dynamic.get("links"):
            continue
        where = place(number) if place is not None else f"{source}: jobs[{number}]"
        for param, job_id, output, _ in job.dynamic["links"]:
            here = f"{where}.links.{param}"
            upstream = by_id.get(job_id)
            if upstream is None:
                raise InputError(f"{here}: unknown job {job_id!r}")
            if upstream is job:
                raise InputError(f"{here}: a job cannot link to its own outputs")
            declared = None if upstream.dynamic is None else upstream.dynamic.get("outputs")
            engine = upstream.dynamic is not None and "engine" in upstream.dynamic
            if not engine and declared is None:
                raise InputError(f"{here}: job {job_id!r} has no outputs (declare them: "
                                 "\"outputs\": [...])")
            if declared and output not in declared:
                raise InputError(f"{here}: job {job_id!r} has no output {output!r} (outputs: "
                                 f"{', '.join(declared)})")
            edges.append((job_id, job.job_id))
    return edges


def _check_name(name: str, where: str) -> None:
    if not name or not isinstance(name, str) or "(" in name or ")" in name or not (
            name.isprintable()):
        raise InputError(f"{where}: a name must be non-empty, printable, without parentheses")


def _no_unknown(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise InputError(f"{where}: unknown key {key!r} (allowed: "
                             f"{', '.join(sorted(allowed))})")


# --- in the engine -------------------------------------------------------------------------------


class NotReady(Exception):
    """A job cannot start: a link or an engine-side job failed (the reason)."""


@dataclass
class Ready:
    """A job made ready: what to submit, the spec fields that changed (stored with its
    submission), an engine-side job's outputs."""

    spec: EngineJob
    rendered: dict[str, Any]
    outputs: dict[str, Any] | None = None


def prepare(job: EngineJob, folder: Path,
            outputs_of: Callable[[str], Mapping[str, Any] | None]) -> Ready:
    """Make a dynamic job ready (see the module's docstring); NotReady with the reason.

    ``folder`` is the workflow's folder of job files; ``outputs_of(job_id)`` gives an
    upstream job's stored outputs. Deterministic: a restarted engine preparing the
    job again writes the same files and submits the same command.
    """
    dynamic = job.dynamic or {}
    soma = dynamic.get("style") == SOMA_STYLE
    stored = dynamic.get("parameters") or {}
    # soma-workflow's parameters are kept encoded: its tuples and sets are what it substitutes
    params: dict[str, Any] = soma_decode(stored, sets=True) if soma else copy.deepcopy(stored)
    changes: dict[str, Any] = {}
    links = dynamic.get("links") or ()
    for param, upstream, output, function in links:
        values = outputs_of(upstream) or {}
        if output not in values:
            if soma:  # soma-workflow: the link is not applied
                continue
            raise NotReady(f"job {upstream!r} gave no output {output!r}")
        value = copy.deepcopy(values[output])
        if function:
            name, *args = function
            try:
                value = LINK_FUNCTIONS[name](*args, src_param=output, value=value,
                                             dst_param=param, dst_value=params.get(param))
            except Exception as error:  # a user's link on a user's value
                raise NotReady(f"link {param} <- {upstream}.{output} ({name}): "
                               f"{type(error).__name__}: {error}") from None
        params[param] = value
    if links:
        changes["dynamic"] = {**dynamic, "parameters": soma_encode(params) if soma else params}
        template = dynamic.get("command", job.command)
        try:
            if soma:
                values = soma_values(params, dynamic)
                changes["command"] = [soma_substitute(arg, values) for arg in template]
            else:
                changes["command"] = render_command(template, params)
        except KeyError as error:
            raise NotReady(f"cannot render the command: {error}") from None
        if any("\0" in argument for argument in changes["command"]):
            raise NotReady("a linked value puts a NUL byte in the command")
    engine = dynamic.get("engine")
    if engine is not None:
        try:
            outputs = ENGINE_JOBS[engine](params)
        except Exception as error:  # the user's parameters, not the engine, are wrong
            raise NotReady(f"engine-side job {engine}: {type(error).__name__}: {error}"
                           ) from None
        return Ready(replace(job, **changes), changes, outputs)
    env: dict[str, str] = {}
    try:
        if dynamic.get("input_file"):
            path = _job_file(job, folder, dynamic["input_file"], "params")
            content: dict[str, Any] = {"parameters": soma_encode(params)}
            if dynamic.get("configuration"):
                content["configuration_dict"] = soma_encode(dynamic["configuration"])
            _write_private(path, json.dumps(content))
            env[INPUT_PARAMS_VARIABLE] = str(path)
        if "outputs" in dynamic:
            path = output_file(job, folder)
            if path.parent == folder:  # created empty and private: the job fills it
                _write_private(path, "")
            else:  # the user's: a rerun's outputs are its own, never a stale file
                path.unlink(missing_ok=True)
            env[OUTPUT_PARAMS_VARIABLE] = str(path)
    except OSError as error:
        raise NotReady(f"cannot write the parameters file: {error}") from None
    if env:
        changes["env"] = {**job.env, **env}
    return Ready(replace(job, **changes), changes)


def output_file(job: EngineJob, folder: Path) -> Path:
    """Where a job writes its output parameters."""
    return _job_file(job, folder, (job.dynamic or {}).get("output_file", True), "outputs")


def _job_file(job: EngineJob, folder: Path, given: Any, kind: str) -> Path:
    if isinstance(given, str):
        return Path(given)
    return folder / f"{job.job_id}.{kind}.json"


def _write_private(path: Path, text: str) -> None:
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write(text)


def collect_outputs(job: EngineJob, folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A job's outputs once it ended well: ``(outputs, None)``, or ``(None, why the job
    failed)`` when it did not write the declared ones. soma-workflow's jobs may write
    none: ``(None, None)``."""
    dynamic = job.dynamic or {}
    soma = dynamic.get("style") == SOMA_STYLE
    path = output_file(job, folder)
    problem = None
    outputs: Any = None
    try:
        size = path.stat().st_size
        if size == 0:
            problem = f"it wrote no output parameters (${OUTPUT_PARAMS_VARIABLE}: {path})"
        elif size > MAX_OUTPUTS_BYTES:
            problem = f"its output parameters file {path} is larger than {MAX_OUTPUTS_BYTES} bytes"
        else:
            outputs = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem = f"it wrote no output parameters (${OUTPUT_PARAMS_VARIABLE}: {path})"
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        problem = f"cannot read its output parameters file {path}: {error}"
    if problem is None and not isinstance(outputs, dict):
        problem = f"its output parameters file {path} is not a JSON object"
    if soma:
        return (soma_decode(outputs) or None, None) if problem is None else (None, None)
    if problem is None:
        missing = [name for name in dynamic.get("outputs", ()) if name not in outputs]
        if missing:
            problem = f"output {missing[0]!r} is missing from its output parameters file {path}"
    return (None, problem) if problem is not None else (outputs, None)
