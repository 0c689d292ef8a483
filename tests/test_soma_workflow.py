"""soma-workflow users switch: its client API on jobbridge (jobbridge.compat.soma_workflow), its
workflow files run by ``jobbridge run``, its configuration files read by ``jobbridge --config``.

Workflows are built with soma-workflow's own classes; where it matters the same workflow is
also run by soma-workflow itself (in a subprocess) and the results compared.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import soma_workflow.constants as soma_constants
from soma_workflow.client import BarrierJob, Group, Helper, Job, Workflow
from soma_workflow.errors import UnknownObjectError, WorkflowError

from jbcli import error_line, jb
from jobbridge.compat import soma_workflow as compat
from jobbridge.compat.soma_workflow.controller import WORKFLOW_NOT_STARTED, WorkflowController

#: A folder whose ``soma_workflow`` fails to import: first on PYTHONPATH, soma-workflow is not
#: installed for the command and every process it starts (the background engine included).
NO_SOMA = Path(__file__).parent / "data" / "no_soma"
#: Run a serialized workflow with soma-workflow itself; print {job name: [status, exit status,
#: exit value]} as JSON.
SOMA_RUN = textwrap.dedent("""
    import contextlib, json, sys
    from soma_workflow.client import Helper, WorkflowController
    with contextlib.redirect_stdout(sys.stderr):
        controller = WorkflowController(isolated_light_mode=sys.argv[2])
        workflow_id = controller.submit_workflow(Helper.unserialize(sys.argv[1]))
        controller.wait_workflow(workflow_id)
        jobs = controller.workflow_elements_status(workflow_id)[0]
        names = controller.jobs([j[0] for j in jobs])
        result = {names[j[0]][0]: [j[1], j[3][0], j[3][1]] for j in jobs}
        controller.stop_engine()
    print("RESULT", json.dumps(result))
""")


@pytest.fixture
def controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkflowController]:
    monkeypatch.setenv("SOMA_WORKFLOW_CONFIG", str(tmp_path / "none.cfg"))  # restored after
    ctrl = WorkflowController(isolated_light_mode=str(tmp_path / "soma"))
    yield ctrl
    ctrl.stop_engine()


def _shell(script: str, name: str, **options: Any) -> Job:
    return Job(["sh", "-c", script], name=name, **options)


def _sample(folder: Path) -> Workflow:
    """A workflow using what jobbridge runs of soma-workflow: param_dict, env, env_builder_code,
    configuration, an input parameters file, groups as dependency ends, a failing job."""
    folder.mkdir(parents=True, exist_ok=True)
    where = {"working_directory": str(folder)}
    one = _shell("echo one $X > one.txt", "one", env={"X": "job"}, **where)
    two = Job(["echo", "%(greeting)s", "%(who)s!"], name="two", stdout_file=str(folder / "two.txt"),
              param_dict={"greeting": "hello", "who": "world"}, **where)
    three = _shell("echo three; exit 3", "three", **where)
    after_three = _shell("echo never > never.txt", "after three", **where)
    five = _shell("echo $W $B $X $Y > five.txt", "five", env={"X": "five"}, **where)
    conf = Job(["sh", "-c", "cat $SOMAWF_INPUT_PARAMS > params.json; "
                "echo '%(configuration_dict)s' > conf.txt"], name="conf", configuration={"a": 1},
               param_dict={"p": ["x", "y"], "t": ("a", "b"), "s": {"c"}},
               use_input_params_file=True, **where)
    group = Group([one, two], name="first")
    return Workflow([one, two, three, after_three, five, conf], name="sample",
                    dependencies=[(three, after_three), (group, five)],
                    root_group=[group, three, after_three, five, conf],
                    env={"W": "workflow", "B": "overridden"},
                    env_builder_code=("import json; "
                                      "print(json.dumps({'B': 'b', 'W': 'w', 'Y': 'built'}))"))


def _no_soma_env() -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(filter(None, (str(NO_SOMA),
                                                        os.environ.get("PYTHONPATH"))))}


def without_soma(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``jobbridge ARGS`` where soma-workflow cannot be imported."""
    return jb(*args, env=_no_soma_env(), cwd=cwd, timeout=300)


def test_no_soma_means_soma_workflow_is_not_importable() -> None:
    tried = subprocess.run([sys.executable, "-c", "import soma_workflow.client"],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, **_no_soma_env()})
    assert tried.returncode == 1 and "soma-workflow is not installed" in tried.stderr


def _outputs(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.iterdir())
            if path.suffix in (".txt", ".json") and path.name != "sample.workflow"}


# --- workflow files -----------------------------------------------------------------------------


def test_serialized_workflow_runs_as_soma_workflow_runs_it(tmp_path: Path) -> None:
    """Helper.serialize's file: ``jobbridge run`` (soma-workflow not importable) gives the
    statuses, exit values and files that soma-workflow itself gives."""
    results = {}
    for runner in ("soma", "jobbridge"):
        folder = tmp_path / runner
        path = folder / "sample.workflow"
        Helper.serialize(str(path), _sample(folder))
        if runner == "soma":
            run = subprocess.run([sys.executable, "-c", SOMA_RUN, str(path), str(tmp_path / "s")],
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr
            [line] = [li for li in run.stdout.splitlines() if li.startswith("RESULT ")]
            results[runner] = json.loads(line.removeprefix("RESULT "))
        else:
            run = without_soma("run", str(path), "--json")
            assert run.returncode == 1, run.stderr  # "three" failed
            jobs = json.loads(run.stdout)["jobs"]
            soma_status = {(soma_constants.FAILED, soma_constants.FINISHED_REGULARLY):
                           soma_constants.DONE}
            results[runner] = {j["name"]: [soma_status.get((j["status"], j["exit_status"]),
                                                           j["status"]),
                                           j["exit_status"], j["exit_value"]] for j in jobs}
    assert results["jobbridge"] == results["soma"]
    assert results["jobbridge"]["three"] == ["done", "finished_regularly", 3]
    assert results["jobbridge"]["after three"][:2] == ["failed", "aborted_before_running"]
    assert results["jobbridge"]["first_input"] == ["done", "finished_regularly", 0]  # barrier
    assert _outputs(tmp_path / "jobbridge") == _outputs(tmp_path / "soma")
    files = _outputs(tmp_path / "jobbridge")
    assert files["one.txt"] == "one job\n"
    assert files["two.txt"] == "hello world!\n"
    assert files["five.txt"] == "workflow overridden five built\n"  # job > workflow > builder
    assert json.loads(files["params.json"]) == {  # soma-workflow's tuples and sets
        "parameters": {"p": ["x", "y"], "t": ["<tuple>", "a", "b"], "s": ["<set>", "c"]},
        "configuration_dict": {"a": 1}}
    assert files["conf.txt"] == "%(configuration_dict)s\n"  # a params file: no substitution


def test_submit_a_serialized_workflow(tmp_path: Path) -> None:
    path = tmp_path / "sample.workflow"
    Helper.serialize(str(path), _sample(tmp_path / "out"))
    submitted = without_soma("submit", str(path))  # its background engine: no soma either
    assert submitted.returncode == 0, submitted.stderr
    waited = without_soma("wait", submitted.stdout.strip(), "--timeout", "120")
    assert waited.returncode == 1, waited.stderr
    # a soma job's id is its number: its name is shown too
    assert "  2 (three): exit code 3\n  3 (after three): not run - three failed" in waited.stderr
    table = jb("status", submitted.stdout.strip()).stdout.splitlines()
    assert table[1].split()[:3] == ["JOB", "NAME", "STATUS"]
    assert table[4].split()[:4] == ["2", "three", "failed", "exit"], table
    assert (tmp_path / "out" / "five.txt").read_text() == "workflow overridden five built\n"


def _serialized(tmp_path: Path, workflow: Workflow) -> Path:
    path = tmp_path / "w.workflow"
    Helper.serialize(str(path), workflow)
    return path


def _refused(path: Path) -> str:
    return error_line(without_soma("run", str(path)))


#: Job scripts of the dynamic workflow: list files (outputs), upper-case one (input and
#: output parameters), concatenate some (input parameters).
LISTER = ("import json, os, sys; files = [os.path.join(sys.argv[1], n + '.txt') for n in 'abc'];"
          " json.dump({'files': files}, open(os.environ['SOMAWF_OUTPUT_PARAMS'], 'w'))")
UPPER = ("import json, os; p = json.load(open(os.environ['SOMAWF_INPUT_PARAMS']))['parameters'];"
         " out = p['input'] + '.up'; open(out, 'w').write(open(p['input']).read().upper());"
         " json.dump({'output': out}, open(os.environ['SOMAWF_OUTPUT_PARAMS'], 'w'))")
CAT = ("import json, os, sys; p = json.load(open(os.environ['SOMAWF_INPUT_PARAMS']))['parameters'];"
       " open(sys.argv[1], 'w').write(''.join(open(f).read() for f in p['inputs']))")


def _dynamic(folder: Path) -> Workflow:
    """Output parameters, links (with a link function), MapJob and ReduceJob, a temporary
    path shared by two jobs."""
    from soma_workflow.client import MapJob, ReduceJob, TemporaryPath

    folder.mkdir(parents=True, exist_ok=True)
    for name in "abc":
        (folder / f"{name}.txt").write_text(f"{name * 3}\n")
    python = sys.executable
    lister = Job([python, "-c", LISTER, str(folder)], name="lister", has_outputs=True)
    mapper, reducer = MapJob(name="map"), ReduceJob(name="reduce")
    uppers = [Job([python, "-c", UPPER], name=f"upper {i}", param_dict={"input": ""},
                  has_outputs=True, use_input_params_file=True) for i in range(3)]
    cat = Job([python, "-c", CAT, str(folder / "all.txt")], name="cat",
              param_dict={"inputs": []}, use_input_params_file=True)
    second = Job(["sh", "-c", "basename %(one)s > second.txt"], name="second",
                 param_dict={"one": "none"}, working_directory=str(folder))
    # a tuple and a set in param_dict, substituted once a link gave the job its value
    shapes = Job(["sh", "-c", 'basename "$0"; echo "$1" "$2" "$3"', "%(one)s", "%(t)s", "%(s)s",
                  "pre%(t)s"], name="shapes", param_dict={"one": "", "t": ("x", "y"), "s": {"q"}},
                 stdout_file=str(folder / "shapes.txt"))
    temporary = TemporaryPath(name="scratch", suffix=".txt")
    writer = Job(["sh", "-c", 'echo in a temporary > "$0"', temporary], name="writer",
                 referenced_output_files=[temporary])
    reader = Job(["sh", "-c", 'cat "$0" > from_temporary.txt', temporary], name="reader",
                 referenced_input_files=[temporary], working_directory=str(folder))
    links: dict[Any, Any] = {
        mapper: {"inputs": [(lister, "files")]},
        **{upper: {"input": [(mapper, f"output_{i}")]} for i, upper in enumerate(uppers)},
        reducer: {**{f"input_{i}": [(upper, "output")] for i, upper in enumerate(uppers)},
                  "lengths": [(mapper, "lengths")]},
        cat: {"inputs": [(reducer, "outputs")]},
        second: {"one": [(lister, "files", ("list_to_sequence", 1))]},
        shapes: {"one": [(lister, "files", ("list_to_sequence", 1))]}}
    return Workflow([lister, mapper, *uppers, reducer, cat, second, shapes, writer, reader],
                    dependencies=[(writer, reader)], param_links=links, name="dynamic")


def test_dynamic_file_runs_as_soma_workflow_runs_it(tmp_path: Path) -> None:
    """Outputs, links, engine execution jobs and temporary paths: ``jobbridge run`` (soma-workflow
    not importable) gives soma-workflow's statuses and files."""
    results, files = {}, {}
    for runner in ("soma", "jobbridge"):
        folder = tmp_path / runner
        path = tmp_path / f"{runner}.workflow"
        Helper.serialize(str(path), _dynamic(folder))
        if runner == "soma":
            run = subprocess.run([sys.executable, "-c", SOMA_RUN, str(path), str(tmp_path / "s")],
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr
            [line] = [li for li in run.stdout.splitlines() if li.startswith("RESULT ")]
            results[runner] = {name: status for name, (status, *_) in json.loads(
                line.removeprefix("RESULT ")).items()}
        else:
            run = without_soma("run", str(path), "--json")
            assert run.returncode == 0, run.stderr
            jobs = {job["name"]: job for job in json.loads(run.stdout)["jobs"]}
            results[runner] = {name: job["status"] for name, job in jobs.items()}
        files[runner] = {p.name: p.read_text() for p in sorted(folder.iterdir())}
    assert results["jobbridge"] == results["soma"]
    assert set(results["soma"].values()) == {"done"}
    assert files["jobbridge"] == files["soma"]
    assert files["jobbridge"]["all.txt"] == "AAA\nBBB\nCCC\n"
    assert files["jobbridge"]["second.txt"] == "b.txt\n"
    assert files["jobbridge"]["shapes.txt"] == "b.txt\n('x', 'y') {'q'} pre('x', 'y')\n"
    assert files["jobbridge"]["from_temporary.txt"] == "in a temporary\n"
    folder = tmp_path / "jobbridge"
    assert jobs["map"]["outputs"] == {"output_0": str(folder / "a.txt"),
                                      "output_1": str(folder / "b.txt"),
                                      "output_2": str(folder / "c.txt"), "lengths": [3]}
    assert jobs["reduce"]["outputs"]["outputs"] == [str(folder / f"{n}.txt.up") for n in "abc"]
    assert jobs["second"]["parameters"] == {"one": str(folder / "b.txt")}


def test_outputs_links_and_temporaries_through_the_controller(
        controller: WorkflowController, tmp_path: Path) -> None:
    """get_job_output_params, updated_job_parameters, the temporary paths of
    workflow_elements_status; delete_workflow removes them."""
    from soma_workflow.client import FileTransfer, OptionPath, TemporaryPath

    source = tmp_path / "in.txt"
    source.write_text("transferred\n")
    transfer = FileTransfer(True, str(source), name="in")
    temporary = TemporaryPath(name="scratch", suffix=".txt")
    first = Job(["sh", "-c", 'cp "$0" "$1"; echo "{\\"copy\\": \\"$1\\"}" > '
                 '"$SOMAWF_OUTPUT_PARAMS"', transfer, temporary], name="first",
                has_outputs=True, referenced_input_files=[transfer],
                referenced_output_files=[temporary])
    second = Job(["sh", "-c", 'cat "$0" > "$1"; echo "$2" >> "$1"', "%(copy)s",
                  str(tmp_path / "out.txt"), OptionPath(temporary, uri="?x=1")], name="second",
                 param_dict={"copy": "nothing"}, referenced_input_files=[temporary])
    workflow_id = controller.submit_workflow(Workflow(
        [first, second], param_links={second: {"copy": [(first, "copy")]}}))
    Helper.transfer_input_files(workflow_id, controller)  # nothing to copy: the same files
    controller.wait_workflow(workflow_id)
    Helper.transfer_output_files(workflow_id, controller)
    jobs, transfers, status, _, temporaries = controller.workflow_elements_status(workflow_id)
    # a shared file system: the transfer is the client file itself, on both sides
    assert status == soma_constants.WORKFLOW_DONE and transfers == [
        (str(source), (soma_constants.FILES_ON_CLIENT_AND_CR, None, str(source), str(source),
                       None))]
    assert controller.transfers([str(source)]) == {str(source): (str(source), None, None)}
    registered = controller.register_transfer(FileTransfer(False, str(tmp_path / "x.txt")))
    assert registered.engine_path == str(tmp_path / "x.txt")
    [(_, path, transfer_status)] = temporaries
    assert transfer_status == soma_constants.FILES_ON_CR and path.endswith(".txt")
    assert Path(path).read_text() == "transferred\n"
    first_id, second_id = (job[0] for job in jobs)
    assert controller.get_job_output_params(first_id) == {"copy": path}
    assert controller.get_job_output_params(second_id) is None
    assert controller.updated_job_parameters(second_id) == {"copy": [(None, "copy", path)]}
    assert (tmp_path / "out.txt").read_text() == f"transferred\n{path}?x=1\n"
    assert controller.delete_workflow(workflow_id)
    assert not Path(path).exists() and not Path(path).parent.exists()


def test_shared_resource_paths_are_translated(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the resource's PATH_TRANSLATION_FILES; one without a translation is refused
    by name."""
    from soma_workflow.client import SharedResourcePath
    from soma_workflow.configuration import Configuration

    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("shared\n")
    translation = tmp_path / "translation.sjtr"
    translation.write_text(f"inputs {data}\n")
    config_file = tmp_path / "soma.cfg"
    config_file.write_text(f"[here]\nSCHEDULER_TYPE = local_basic\n"
                           f"DATABASE_FILE = {tmp_path / 'db' / 'soma.db'}\n"
                           f"PATH_TRANSLATION_FILES = project{{{translation}}}\n")
    monkeypatch.setenv("SOMA_WORKFLOW_CONFIG", str(config_file))
    ctrl = WorkflowController("here", config=Configuration.load_from_file("here"))
    try:
        shared = SharedResourcePath("in.txt", "project", "inputs")
        workflow_id = ctrl.submit_workflow(Workflow([Job(
            ["cp", shared, str(tmp_path / "out.txt")], name="copy")]))
        ctrl.wait_workflow(workflow_id)
        assert (tmp_path / "out.txt").read_text() == "shared\n"
        missing = SharedResourcePath("x", "project", "outputs")
        with pytest.raises(WorkflowError, match="no translation for 'outputs' in namespace "
                                                "'project'"):
            ctrl.submit_workflow(Workflow([Job(["ls", missing])]))
    finally:
        ctrl.stop_engine()


@pytest.mark.parametrize(("edit", "place"), [
    (lambda d: d.update(serialized_jobs=[]), "serialized_jobs: must be an object"),
    (lambda d: d.update(dependencies=[["<tuple>", 0, 7]]), "dependencies[0]: unknown job"),
    (lambda d: d["serialized_jobs"]["0"].update(command=[]), "['0'].command: must be a non-empty"),
    (lambda d: d["serialized_jobs"]["0"].update(colour="red"), "unknown key 'colour'"),
    (lambda d: d.update(colour="red"), "unknown key 'colour' of a soma-workflow workflow"),
    (lambda d: d["serialized_jobs"]["0"].update({"class": "my.Job"}), "unknown job class"),
    (lambda d: d["serialized_jobs"]["0"].update(env={"A": 1}), "env: must be an object of str"),
    (lambda d: d.update(env_builder_code="raise SystemExit(4)"), "env_builder_code: failed"),
    (lambda d: d.update(env_builder_code="print(3)"), "must print a JSON object"),
    (lambda d: d.update(env_builder_code="import json; print(json.dumps({'A': 1}))"),
     "env_builder_code printed.env: must be an object of string values"),
    (lambda d: d.update(dependencies=[["<tuple>", 0, 1], ["<tuple>", 1, 0]]), "cycle"),
    (lambda d: d["serialized_jobs"]["0"].update({"class": []}),
     "serialized_jobs['0'].class: must be the name of a job class"),
    # checked by jobbridge's own format: the place named is the file's, not jobs[0]
    (lambda d: (d.update(jobs=[1, 0]), d["serialized_jobs"]["1"].update(priority="high")),
     "serialized_jobs['1'].priority: must be an integer"),
    (lambda d: d.update(env={"A": 1}), "w.workflow: env: must be an object of string values"),
])
def test_bad_files_get_one_line_naming_the_place(tmp_path: Path, edit: Any, place: str) -> None:
    a, b = Job(["true"], name="a"), Job(["true"], name="b")
    path = _serialized(tmp_path, Workflow([a, b]))
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    line = _refused(path)
    assert place in line and str(path) in line, line


def test_env_builder_code_runs_only_for_a_valid_file(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    a, b = Job(["true"], name="a"), Job(["true"], name="b")
    path = _serialized(tmp_path, Workflow([a, b], env_builder_code=(
        f"open({str(marker)!r}, 'w'); print('{{}}')")))
    data = json.loads(path.read_text())
    data["dependencies"] = [["<tuple>", 0, 1], ["<tuple>", 1, 0]]
    path.write_text(json.dumps(data))
    assert "cycle" in _refused(path)
    assert not marker.exists()


def test_graph_of_a_file_runs_nothing(tmp_path: Path) -> None:
    """``jobbridge graph FILE.workflow`` draws it: no env_builder_code run, no file written."""
    marker = tmp_path / "ran"
    one = Job(["true"], name="only job", use_input_params_file=True, param_dict={"a": "b"})
    path = _serialized(tmp_path, Workflow([one], env_builder_code=(
        f"open({str(marker)!r}, 'w'); print('{{}}')")))
    drawn = without_soma("graph", str(path), "-o", str(tmp_path / "g.svg"), cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "g.svg").read_text().startswith("<svg")
    assert not marker.exists()
    assert not (Path(os.environ["JOBBRIDGE_HOME"]) / "soma-params").exists()


def test_a_file_with_group_dependencies_and_old_barriers(tmp_path: Path) -> None:
    """Dependencies naming groups (files of other tools) and soma-workflow 2's
    serialized_barriers are read too."""
    data = {"name": "old", "jobs": [0, 1, 2], "groups": [3], "root_group": [3, 2],
            "serialized_jobs": {"0": {"command": ["sh", "-c", "echo 0 > 0.txt"], "name": "a"},
                                "1": {"command": ["sh", "-c", "echo 1 > 1.txt"], "name": "b"}},
            "serialized_barriers": {"2": {"name": "hub"}},
            "serialized_groups": {"3": {"name": "g", "elements": [0, 1]}},
            "dependencies": [["<tuple>", 3, 2]]}
    path = tmp_path / "old.workflow"
    path.write_text(json.dumps(data))
    run = without_soma("run", str(path), "--json")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "0.txt").read_text() == "0\n"  # the file's folder: working directory
    statuses = {j["name"]: j["status"] for j in json.loads(run.stdout)["jobs"]}
    assert statuses == {"a": "done", "b": "done", "hub": "done"}


# --- configuration files ---------------------------------------------------------------------


SOMA_CONFIG = """\
[{host}]
LIGHT_MODE = 1
SOMA_WORKFLOW_DIR = {tmp}/swf
ENGINE_LOG_LEVEL = DEBUG
CPU_NB = 1
MAX_JOB_IN_QUEUE = {{1}}

[titan]
CLUSTER_ADDRESS = titan.example.org
SUBMITTING_MACHINES = titan0
SCHEDULER_TYPE = slurm
"""


def test_soma_configuration_file(tmp_path: Path) -> None:
    """A soma-workflow server configuration: its keys mapped (CPU_NB = 1: jobs one at a
    time), its own machinery's keys dropped, what jobbridge cannot do named."""
    import socket

    config = tmp_path / "soma-workflow.cfg"
    config.write_text(SOMA_CONFIG.format(host=socket.gethostname(), tmp=tmp_path))
    jobs = [{"id": str(i), "command": ["sh", "-c", f"date +%s.%N > {i}.start; sleep 0.5"]}
            for i in range(3)]
    workflow = tmp_path / "w.json"
    workflow.write_text(json.dumps({"jobs": jobs}))
    run = jb("--config", str(config), "run", str(workflow), "-r", socket.gethostname())
    assert run.returncode == 0, run.stderr
    starts = sorted(float((tmp_path / f"{i}.start").read_text()) for i in range(3))
    assert starts[2] - starts[0] >= 1.0  # one slot: one after the other
    line = error_line(jb("--config", str(config), "run", str(workflow), "-r", "titan"))
    assert "remote soma-workflow resource" in line and "titan0" in line


@pytest.mark.parametrize(("text", "expected"), [
    ("MAX_JOB_RUNNING = long{5}\n", "limits per queue (long{...}) are not supported"),
    ("MAX_JOB_IN_QUEUE = {x}\n", "expected {N} or a number"),
    ("MPI = -pe mpi\n", "MPI: soma-workflow's parallel job settings are not supported"),
    ("CONTAINER_COMMAND = ['docker', 1]\n", "expected a list of strings"),
    ("DATABSE_FILE = /tmp/x.db\n", "unknown key 'databse_file'"),  # jobbridge's own check
])
def test_soma_configuration_refused(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "soma-workflow.cfg"
    config.write_text(f"[r]\nLIGHT_MODE = 1\n{text}")
    workflow = tmp_path / "w.json"
    workflow.write_text(json.dumps({"jobs": [{"id": "a", "command": ["true"]}]}))
    line = error_line(jb("--config", str(config), "run", str(workflow), "-r", "r"))
    assert expected in line and "[r]" in line, line


def test_soma_configuration_values_mapped(tmp_path: Path) -> None:
    from jobbridge.configuration import Configuration

    config = tmp_path / "soma-workflow.cfg"
    config.write_text("[r]\nSCHEDULER_TYPE = local_basic\nSUBMITTING_MACHINES = localhost\n"
                      "MAX_JOB_IN_QUEUE = {15}\nCONTAINER_COMMAND = ['docker', 'run', "
                      "'{#command}']\nQUEUES = long short\nSERVER_NAME = swf\n")
    options = Configuration.load("r", config).options()
    assert options == {"scheduler_type": "local_basic", "max_job_in_queue": "15",
                       "container_command": "docker run '{#command}'", "queues": "long short"}


# --- the controller ------------------------------------------------------------------------------


def test_install_makes_soma_code_use_jobbridge(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from soma_workflow import client

    original = client.WorkflowController
    compat.install()
    try:
        assert client.WorkflowController is WorkflowController
        assert compat.WorkflowController is WorkflowController
        monkeypatch.setattr(WorkflowController, "isolated_light_mode", str(tmp_path / "iso"))
        monkeypatch.setenv("SOMA_WORKFLOW_CONFIG", str(tmp_path / "none.cfg"))
        ctrl = client.WorkflowController()
        workflow_id = ctrl.submit_workflow(Workflow([Job(["true"], name="t")]))
        Helper.wait_workflow(workflow_id, ctrl)
        assert Helper.list_failed_jobs(workflow_id, ctrl, include_aborted_jobs=True) == []
        assert ctrl.home == tmp_path / "iso" / "jobbridge"
        ctrl.stop_engine()
    finally:
        compat.uninstall()
    assert client.WorkflowController is original


def test_soma_return_shapes_and_status_semantics(controller: WorkflowController) -> None:
    failing = _shell("echo out; echo err >&2; exit 3", "failing")
    after = Job(["true"], name="after")
    barrier = BarrierJob(name="hub")
    workflow = Workflow([failing, after, barrier], dependencies=[(failing, after)], name="w")
    workflow_id = controller.submit_workflow(workflow)
    assert isinstance(workflow_id, int)
    assert controller.workflow_status(workflow_id) in (
        WORKFLOW_NOT_STARTED, soma_constants.WORKFLOW_IN_PROGRESS, soma_constants.WORKFLOW_DONE)
    assert WORKFLOW_NOT_STARTED == soma_constants.WORKFLOW_NOT_STARTED == "worklflow_not_started"
    controller.wait_workflow(workflow_id)
    assert controller.workflow_status(workflow_id) == soma_constants.WORKFLOW_DONE
    jobs, transfers, status, queue, temporary = controller.workflow_elements_status(workflow_id)
    assert (transfers, status, queue, temporary) == ([], soma_constants.WORKFLOW_DONE, None, [])
    by_name = {controller.jobs([j[0]])[j[0]][0]: j for j in jobs}
    job_id, job_status, job_queue, exit_info, dates, drms_id = by_name["failing"]
    assert isinstance(job_id, int) and job_queue is None and isinstance(drms_id, str)
    assert job_status == soma_constants.DONE  # soma-workflow: it ran to its end
    assert exit_info[:3] == (soma_constants.FINISHED_REGULARLY, 3, None)
    assert all(isinstance(d, datetime) and d.tzinfo is None for d in dates[:3])
    assert controller.job_status(job_id) == soma_constants.DONE
    assert controller.job_termination_status(job_id)[:2] == (soma_constants.FINISHED_REGULARLY, 3)
    assert by_name["after"][1] == soma_constants.FAILED
    assert by_name["after"][3][0] == soma_constants.EXIT_NOTRUN
    assert by_name["hub"][1] == soma_constants.DONE
    name, command, submitted = controller.jobs([job_id])[job_id]
    assert (name, command) == ("failing", "'sh' '-c' 'echo out; echo err >&2; exit 3'")
    assert isinstance(submitted, datetime)
    assert Helper.list_failed_jobs(workflow_id, controller) == [job_id]
    assert len(Helper.list_failed_jobs(workflow_id, controller, include_aborted_jobs=True)) == 2
    [(name, expiration)] = controller.workflows().values()
    assert name == "w" and isinstance(expiration, datetime)
    out, err = controller.home / "o", controller.home / "e"
    controller.retrieve_job_stdouterr(job_id, str(out), str(err))
    assert (out.read_text(), err.read_text()) == ("out\n", "err\n")
    log = io.StringIO()
    assert controller.log_failed_workflow(workflow_id, log) is False
    assert "'sh' '-c' 'echo out; echo err >&2; exit 3'" in log.getvalue()
    assert controller.delete_workflow(workflow_id) is True
    with pytest.raises(UnknownObjectError):
        controller.workflow_status(workflow_id)
    with pytest.raises(UnknownObjectError):
        controller.job_status(job_id)


def test_path_objects_in_jobs(controller: WorkflowController, tmp_path: Path) -> None:
    """soma-workflow runs pathlib paths in commands and as files (Popen takes them)."""
    job = Job([Path("/bin/echo"), tmp_path / "x"], name="p", stdout_file=tmp_path / "out")
    workflow_id = controller.submit_workflow(Workflow([job]))
    controller.wait_workflow(workflow_id)
    assert (tmp_path / "out").read_text() == f"{tmp_path / 'x'}\n"


def test_job_ids_are_unique_in_a_home(controller: WorkflowController) -> None:
    ids = []
    for _ in range(2):
        workflow_id = controller.submit_workflow(Workflow([Job(["true"]), Job(["true"])]))
        controller.wait_workflow(workflow_id)
        ids += [j[0] for j in controller.workflow_elements_status(workflow_id)[0]]
        controller.delete_workflow(workflow_id)
    assert len(set(ids)) == 4


def test_stop_restart_workflow(controller: WorkflowController, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    slow = _shell(f"test -e {flag} || sleep 600", "slow")
    workflow_id = controller.submit_workflow(Workflow([slow, Job(["true"], name="quick")],
                                                      dependencies=[]))
    slow_id = controller.workflow_elements_status(workflow_id)[0][0][0]
    _wait_for(lambda: controller.job_status(slow_id) == soma_constants.RUNNING)
    assert controller.stop_workflow(workflow_id) is True
    assert controller.workflow_status(workflow_id) == soma_constants.WORKFLOW_DONE
    assert controller.job_status(slow_id) == soma_constants.FAILED
    assert controller.job_termination_status(slow_id)[0] == soma_constants.USER_KILLED
    flag.touch()
    assert controller.restart_workflow(workflow_id) is True
    controller.wait_workflow(workflow_id)
    assert controller.job_status(slow_id) == soma_constants.DONE
    assert controller.restart_workflow(workflow_id) is False  # nothing failed


def test_stop_jobs_and_restart_jobs(controller: WorkflowController, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    slow = _shell(f"test -e {flag} || sleep 600", "slow")
    after = _shell("echo after >> after.txt", "after", working_directory=str(tmp_path))
    other = _shell(f"test -e {flag}.other || sleep 600", "other")
    workflow_id = controller.submit_workflow(Workflow([slow, after, other],
                                                      dependencies=[(slow, after)]))
    ids = {controller.jobs([j[0]])[j[0]][0]: j[0]
           for j in controller.workflow_elements_status(workflow_id)[0]}
    _wait_for(lambda: controller.job_status(ids["slow"]) == soma_constants.RUNNING)
    assert controller.stop_jobs(workflow_id, [ids["slow"]]) is True
    assert controller.job_termination_status(ids["slow"])[0] == soma_constants.USER_KILLED
    assert controller.job_termination_status(ids["after"])[0] == soma_constants.EXIT_NOTRUN
    assert controller.job_status(ids["other"]) == soma_constants.RUNNING  # the rest goes on
    flag.touch()
    assert controller.restart_jobs(workflow_id, [ids["slow"]]) is True
    controller.wait_job([ids["slow"], ids["after"]], timeout=60)
    assert controller.job_status(ids["after"]) == soma_constants.DONE
    controller.stop_jobs(workflow_id, [ids["other"]])
    controller.wait_workflow(workflow_id, timeout=60)
    assert controller.workflow_status(workflow_id) == soma_constants.WORKFLOW_DONE
    assert (tmp_path / "after.txt").read_text() == "after\n"


def test_waits_with_a_timeout_return(controller: WorkflowController, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    workflow_id = controller.submit_workflow(Workflow([_shell(
        f"test -e {flag} || sleep 600", "slow")]))
    started = time.monotonic()
    controller.wait_workflow(workflow_id, timeout=1)
    job_id = controller.workflow_elements_status(workflow_id)[0][0][0]
    controller.wait_job([job_id], timeout=1)
    assert time.monotonic() - started < 30
    assert controller.workflow_status(workflow_id) != soma_constants.WORKFLOW_DONE
    assert controller.delete_workflow(workflow_id) is True  # kills it
    with pytest.raises(UnknownObjectError):
        controller.job_status(job_id)


def test_a_bad_link_raises_workflow_error(controller: WorkflowController) -> None:
    first = Job(["echo"], name="first", has_outputs=True)
    second = Job(["echo", "%(x)s"], name="second", param_dict={"x": ""})
    with pytest.raises(WorkflowError, match=r"link function 'mine\.f' is not supported"):
        controller.submit_workflow(Workflow([first, second], param_links={
            second: {"x": [(first, "y", "mine.f")]}}))
    assert controller.workflows() == {}


def test_each_database_path_is_its_own_home(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller's home follows the configuration's database file (soma-workflow's
    tests give each run its own); soma-workflow's default database: jobbridge's home."""
    from soma_workflow.configuration import Configuration

    monkeypatch.setenv("SOMA_WORKFLOW_CONFIG", str(tmp_path / "none.cfg"))
    homes = []
    for name in ("a", "b"):
        config = Configuration.load_from_file()
        config._database_file = str(tmp_path / f"{name}.db")
        ctrl = WorkflowController(config=config)
        workflow_id = ctrl.submit_workflow(Workflow([Job(["true"])]))
        ctrl.wait_workflow(workflow_id)
        homes.append(ctrl.home)
        assert list(ctrl.workflows()) == [1]
        ctrl.stop_engine()
    assert homes == [tmp_path / "a.jobbridge", tmp_path / "b.jobbridge"]
    default = WorkflowController(config=Configuration.load_from_file())
    assert default.home == Path(os.environ["JOBBRIDGE_HOME"])
    assert default.scheduler_config.get_proc_nb() >= 1
    default.stop_engine()
    # isolated_light_mode=True: a fresh folder each time (soma-workflow's mkdtemp)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    isolated = [WorkflowController(isolated_light_mode=True) for _ in range(2)]
    assert isolated[0].home != isolated[1].home
    assert all(ctrl.home.parent.parent == tmp_path and ctrl.home.name == "jobbridge"
               and ctrl.home.parent.name.startswith("soma_workflow_") for ctrl in isolated)
    for ctrl in isolated:
        ctrl.stop_engine()


def test_a_remote_resource_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from soma_workflow.configuration import Configuration
    from soma_workflow.errors import ConfigurationError

    config_file = tmp_path / "soma.cfg"
    config_file.write_text("[titan]\nCLUSTER_ADDRESS = titan\nSUBMITTING_MACHINES = titan0\n"
                           "SCHEDULER_TYPE = slurm\n")
    monkeypatch.setenv("SOMA_WORKFLOW_CONFIG", str(config_file))
    with pytest.raises(ConfigurationError, match="remote"):
        WorkflowController("titan", config=Configuration.load_from_file("titan"))


def _wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_jobbridge_commands_see_soma_workflows(controller: WorkflowController) -> None:
    workflow_id = controller.submit_workflow(Workflow([Job(["echo", "hi"], name="hi")],
                                                      name="from soma"))
    controller.wait_workflow(workflow_id)
    env = {"JOBBRIDGE_HOME": str(controller.home)}
    status = json.loads(jb("status", str(workflow_id), "--json", env=env).stdout)
    assert (status["name"], status["jobs"][0]["name"]) == ("from soma", "hi")
    assert jb("logs", str(workflow_id), "0", env=env).stdout == "hi\n"
