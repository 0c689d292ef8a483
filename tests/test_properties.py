"""Property-based tests (hypothesis) of everything users write: workflow objects and
configuration files. Valid input is accepted with the dependencies it declares;
invalid input is refused with one line (and through the CLI: exit 2, no traceback,
nothing stored)."""

from __future__ import annotations

import copy
import graphlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jbcli import error_line, jb, stored_rows
from jobbridge.configuration import Configuration
from jobbridge.controller import resolve_config
from jobbridge.errors import ConfigurationError, InputError
from jobbridge.model import parse_workflow

SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])
CLI_SETTINGS = settings(SETTINGS, max_examples=8)

# the workflow format of docs/format.md, written out here independently of the model's tables
TOP_KEYS = {"name", "jobs", "dependencies", "groups"}
JOB_KEYS = {"id", "command", "name", "working_directory", "env", "stdin", "stdout_file",
            "stderr_file", "join_stderrout", "priority", "queue", "native_specification",
            "parallel_job_info", "resources", "barrier"}
RESOURCE_KEYS = {"cpus", "memory_mb", "walltime_s"}
PARALLEL_KEYS = {"config_name", "nodes_number", "cpu_per_node"}
GROUP_KEYS = {"name", "elements"}

Draw = Callable[[st.SearchStrategy[Any]], Any]

ids = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"),
                            blacklist_characters="/"), min_size=1, max_size=6)
args = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
               max_size=8)
texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=8)
paths = args.filter(bool)
env_keys = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00="),
                   min_size=1, max_size=6)
positive = st.integers(1, 10**6)

job_options = st.fixed_dictionaries({}, optional={
    "name": st.none() | texts,
    "env": st.dictionaries(env_keys, args, max_size=2),
    "priority": st.integers(-10**9, 10**9),
    "join_stderrout": st.booleans(),
    "queue": st.none() | ids,
    "native_specification": st.none() | args | st.lists(args, max_size=2),
    "working_directory": st.none() | paths,
    "stdin": st.none() | paths,
    "stdout_file": st.none() | paths,
    "stderr_file": st.none() | paths,
    "resources": st.fixed_dictionaries({}, optional={k: positive for k in RESOURCE_KEYS}),
    "parallel_job_info": st.fixed_dictionaries({}, optional={
        "config_name": st.sampled_from(["native", "MPI", "OpenMP"]),
        "nodes_number": st.integers(1, 64), "cpu_per_node": st.integers(1, 64)}),
})


@st.composite
def valid_workflows(draw: Draw) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A valid workflow object and its groups' member jobs.

    Jobs get a hidden rank; a dependency is kept only if every job of its first end
    ranks before every job of its second, so the DAG is acyclic by construction.
    """
    job_ids: list[str] = draw(st.lists(ids, min_size=1, max_size=10, unique=True))
    rank = {job_id: index for index, job_id in enumerate(job_ids)}
    jobs = []
    for job_id in job_ids:
        job = {"id": job_id, **draw(job_options)}
        if draw(st.integers(0, 5)) == 0:
            job["barrier"] = True
        else:
            job["command"] = [draw(paths), *draw(st.lists(args, max_size=3))]
        jobs.append(job)
    members: dict[str, list[str]] = {}
    groups = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(ids.filter(lambda n: n not in rank and n not in members))
        elements = draw(st.lists(st.sampled_from([*job_ids, *members]), max_size=5,
                                 unique=True))
        groups.append({"name": name, "elements": elements})
        members[name] = sorted({job for e in elements for job in members.get(e, [e])},
                               key=rank.__getitem__)
    dependencies = []
    ends = st.sampled_from([*job_ids, *members])
    for before, after in draw(st.lists(st.tuples(ends, ends), max_size=8)):
        first, second = members.get(before, [before]), members.get(after, [after])
        if not first or not second or (max(rank[j] for j in first)
                                       < min(rank[j] for j in second)):
            dependencies.append([before, after])
    data: dict[str, Any] = {"jobs": draw(st.permutations(jobs))}
    if groups or draw(st.booleans()):
        data["groups"] = groups
    if dependencies or draw(st.booleans()):
        data["dependencies"] = dependencies
    if draw(st.booleans()):
        data["name"] = draw(texts)
    return data, members


def _reach(edges: list[tuple[str, str]], nodes: set[str]) -> dict[str, set[str]]:
    """For each node, the nodes reachable from it (in ``nodes``)."""
    succ: dict[str, list[str]] = {}
    for before, after in edges:
        succ.setdefault(before, []).append(after)
    result = {}
    for start in nodes:
        seen: set[str] = set()
        stack = list(succ.get(start, []))
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(succ.get(node, []))
        result[start] = seen & nodes
    return result


@SETTINGS
@given(valid_workflows())
def test_valid_workflows_are_accepted_with_their_dependencies(
        case: tuple[dict[str, Any], dict[str, list[str]]]) -> None:
    """parse_workflow accepts every valid workflow; its edges are acyclic and order
    exactly the job pairs the dependencies declare (hidden barriers included)."""
    data, members = case
    spec = parse_workflow(copy.deepcopy(data))
    job_ids = [job["id"] for job in data["jobs"]]
    assert [job.job_id for job in spec.jobs[:len(job_ids)]] == job_ids
    hidden = spec.jobs[len(job_ids):]
    assert {job.job_id for job in hidden} == spec.hidden_ids
    assert all(job.is_barrier and job.job_id not in job_ids for job in hidden)
    sorter = graphlib.TopologicalSorter({job.job_id: set() for job in spec.jobs})
    for before, after in spec.edges:
        sorter.add(after, before)
    sorter.prepare()  # raises CycleError on a cycle
    declared = [(b, a) for before, after in data.get("dependencies", [])
                for b in members.get(before, [before]) for a in members.get(after, [after])]
    visible = set(job_ids)
    assert _reach(spec.edges, visible) == _reach(declared, visible)
    for job, raw in zip(spec.jobs, data["jobs"], strict=False):
        if not raw.get("barrier"):
            assert job.working_directory and os.path.isabs(job.working_directory)


# --- invalid workflows ------------------------------------------------------------------------


def _fresh(draw: Draw, taken: set[str]) -> str:
    return str(draw(ids.filter(lambda name: name not in taken)))


@st.composite
def invalid_workflows(draw: Draw) -> tuple[dict[str, Any], str]:
    """A valid workflow with one mistake; the pattern its error line must match."""
    data, members = draw(valid_workflows())
    jobs: list[dict[str, Any]] = data["jobs"]
    job_ids = [job["id"] for job in jobs]
    taken = set(job_ids) | set(members)
    i = draw(st.integers(0, len(jobs) - 1))
    kind = draw(st.sampled_from([
        "unknown-key", "duplicate-id", "wrong-type", "dangling", "cycle", "group-cycle",
        "bad-command", "group-like-job", "surrogate"]))
    if kind == "unknown-key":
        where = draw(st.sampled_from(["top", "job", "resources", "parallel", "group"]))
        allowed = {"top": TOP_KEYS, "job": JOB_KEYS, "resources": RESOURCE_KEYS,
                   "parallel": PARALLEL_KEYS, "group": GROUP_KEYS}[where]
        key = draw(texts.filter(lambda k: k not in allowed))
        if where == "top":
            data[key] = 1
        elif where == "job":
            jobs[i][key] = 1
        elif where == "resources":
            jobs[i]["resources"] = {key: 1}
        elif where == "parallel":
            jobs[i]["parallel_job_info"] = {key: 1}
        else:
            data.setdefault("groups", []).insert(0, {"name": _fresh(draw, taken),
                                                     "elements": [], key: 1})
        return data, "unknown key"
    if kind == "duplicate-id":
        if len(jobs) == 1:
            jobs.append(copy.deepcopy(jobs[0]))
        else:
            j = draw(st.integers(0, len(jobs) - 1).filter(lambda j: j != i))
            jobs[max(i, j)]["id"] = jobs[min(i, j)]["id"]
        return data, "duplicate id"
    if kind == "wrong-type":
        top = {"name": 5, "jobs": {}, "dependencies": "a", "groups": {"g": []}}
        job_values = {"id": 7, "command": "echo hi", "env": ["K"], "priority": 1.5,
                      "join_stderrout": "no", "working_directory": 5, "queue": 3,
                      "native_specification": 5, "resources": [1], "name": 1,
                      "parallel_job_info": "MPI", "barrier": "yes"}
        if draw(st.booleans()):
            key = draw(st.sampled_from(sorted(top)))
            data[key] = top[key]
            return data, re.escape(f": {key}: must")
        key = draw(st.sampled_from(sorted(job_values)))
        jobs[i][key] = job_values[key]
        return data, re.escape(f"jobs[{i}]")
    if kind == "dangling":
        fresh = _fresh(draw, taken)
        pair = [job_ids[i], fresh] if draw(st.booleans()) else [fresh, job_ids[i]]
        data.setdefault("dependencies", []).append(pair)
        return data, re.escape(f"unknown job or group {fresh!r}")
    if kind == "cycle":
        other = job_ids[draw(st.integers(0, len(jobs) - 1))]
        data.setdefault("dependencies", []).extend([[job_ids[i], other], [other, job_ids[i]]])
        return data, "dependencies: (cycle |.* depends on itself)"
    if kind == "group-cycle":
        first = _fresh(draw, taken)
        second = _fresh(draw, taken | {first})
        data.setdefault("groups", []).extend([{"name": first, "elements": [second]},
                                              {"name": second, "elements": [first]}])
        return data, "group cycle"
    if kind == "bad-command":
        jobs[i].pop("barrier", None)
        jobs[i]["command"] = draw(st.sampled_from([[], [""], ["x", "a\x00b"], [None]]))
        return data, re.escape(f"jobs[{i}].command")
    if kind == "group-like-job":
        data.setdefault("groups", []).append({"name": job_ids[i], "elements": []})
        return data, "is already a job id"
    jobs[i]["name"] = "bad \ud800 name"
    return data, re.escape(f"jobs[{i}].name: not valid Unicode")


def _assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message, message
    assert len(message.splitlines()) == 1, message


@SETTINGS
@given(invalid_workflows())
def test_invalid_workflows_are_refused_in_one_line(case: tuple[dict[str, Any], str]) -> None:
    """Every mutation of a valid workflow is refused with one line naming the place."""
    data, pattern = case
    with pytest.raises(InputError) as caught:
        parse_workflow(data)
    message = str(caught.value)
    _assert_one_line(message)
    assert message.startswith("workflow: ")
    assert re.search(pattern, message), (pattern, message)


@CLI_SETTINGS
@given(case=invalid_workflows(), command=st.sampled_from(["run", "submit"]))
def test_invalid_workflows_through_the_cli(jobbridge_home: Path, case: tuple[dict[str, Any], str],
                                           command: str) -> None:
    """The same through ``jobbridge run|submit``: exit 2, one line, nothing stored."""
    data, pattern = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wf.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        line = error_line(jb(command, str(path)), 2)
    assert re.search(pattern, line), (pattern, line)
    assert stored_rows(jobbridge_home) == (0, 0, 0)


# --- configuration files ----------------------------------------------------------------------

KNOWN_OPTIONS = ["scheduler_type", "cpu_nb", "max_cpu_nb", "scheduler_interval",
                 "max_job_in_queue", "max_job_running", "native_specification", "queues",
                 "container_command", "Scheduler_Type", "CPU_NB"]
line_text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n\r"),
                    max_size=12)
option_values = st.sampled_from(["local_basic", "slurm", "nope", "4", "0", "-1", "abc", "1.5",
                                 "nan", "inf", "'unclosed", "a 'b c'", "", "%(x)s"]) | line_text
sections = st.sampled_from(["here", "there", "localhost", "DEFAULT"]) | line_text
ini_lines = st.one_of(
    sections.map(lambda name: f"[{name}]"),
    st.tuples(st.sampled_from(KNOWN_OPTIONS) | line_text, st.sampled_from(["=", ":", " = "]),
              option_values).map("".join),
    line_text,
    line_text.map(lambda text: "  " + text),
    st.sampled_from(["", "# comment", "; comment"]),
)
ini_files = st.lists(ini_lines, max_size=10).map("\n".join)
resources = st.sampled_from([None, "here", "there", "localhost"])


def _use_typed_options(config: Configuration) -> None:
    config.get_scheduler_type()
    for key in ("cpu_nb", "max_cpu_nb", "max_job_in_queue", "max_job_running"):
        config.get_int(key)
    config.get_float("scheduler_interval", 0.05)
    for key in ("native_specification", "queues", "container_command"):
        config.get_words(key)


@SETTINGS
@given(text=ini_files, resource=resources)
def test_configuration_files_load_or_fail_in_one_line(tmp_path: Path, text: str,
                                                      resource: str | None) -> None:
    """Configuration.load and resolve_config on any INI text: a configuration, or a
    ConfigurationError / InputError of one line; typed options likewise."""
    path = tmp_path / "jobbridge.cfg"
    path.write_text(text, encoding="utf-8")
    try:
        config = Configuration.load(resource, path)
        _use_typed_options(config)
    except ConfigurationError as error:
        _assert_one_line(str(error))
    old = os.environ.get("JOBBRIDGE_CONFIG")
    os.environ["JOBBRIDGE_CONFIG"] = str(path)
    try:
        resolve_config(resource)
    except InputError as error:
        _assert_one_line(str(error))
    finally:
        if old is None:
            del os.environ["JOBBRIDGE_CONFIG"]
        else:
            os.environ["JOBBRIDGE_CONFIG"] = old


@SETTINGS
@given(data=st.binary(max_size=40))
def test_configuration_files_of_any_bytes(tmp_path: Path, data: bytes) -> None:
    """Arbitrary bytes (bad UTF-8 included) never escape as anything but one line."""
    path = tmp_path / "jobbridge.cfg"
    path.write_bytes(data)
    try:
        Configuration.load(None, path)
    except ConfigurationError as error:
        _assert_one_line(str(error))


@CLI_SETTINGS
@given(text=ini_files, resource=resources)
def test_configuration_files_through_the_cli(jobbridge_home: Path, text: str,
                                             resource: str | None) -> None:
    """``jobbridge run`` with any configuration: it runs (0) or says why in one line (2);
    a refused one stores nothing."""
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "jobbridge.cfg"
        config.write_text(text, encoding="utf-8")
        workflow = Path(folder) / "wf.json"
        workflow.write_text(json.dumps({"jobs": [{"id": "a", "command": ["true"]}]}))
        before = stored_rows(jobbridge_home)
        result = jb("run", str(workflow), *(["--resource", resource] if resource else []),
                    env={"JOBBRIDGE_CONFIG": str(config)}, timeout=60)
    if result.returncode == 0:
        assert "Traceback" not in result.stderr
        assert stored_rows(jobbridge_home)[0] == before[0] + 1
    else:
        error_line(result, 2)
        assert stored_rows(jobbridge_home) == before
