"""File transfers in jobbridge's format on a resource sharing the client's file system
(this machine): a transfer is the client path itself, nothing is copied; a job reading
transfers that must be copied (a remote resource's) waits until they are there.
The copies over SSH are tested against the real sshd in test_remote.py."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from jbcli import error_line, jb, kill_engines, wait_for, write_json
from jobbridge.controller import WorkflowController, ensure_engine, resolve_config
from jobbridge.dynamic import FILES_ON_CR, Placement
from jobbridge.model import load_workflow_file

NAMES = ["with space.txt", "it's \"quoted\".txt", "new\nline.txt", "-leading-dash"]
#: Concatenates the listed files of a folder into a file.
CAT = 'd=$1; out=$2; shift 2; for f in "$@"; do cat "$d/$f"; done > "$out"'


def _workflow(tmp_path: Path) -> Path:
    folder = tmp_path / "in put"
    folder.mkdir()
    for index, name in enumerate(NAMES):
        (folder / name).write_bytes(f"{index}:{name}\n".encode())
    return write_json(tmp_path / "wf.json", {
        "transfers": {"data": {"path": "in put", "files": NAMES},
                      "result": {"path": "out/result.txt"},
                      "never": {"path": "never.txt"}},
        "jobs": [{"id": "cat", "command": ["sh", "-c", CAT, "sh", "%(data)s", "%(result)s",
                                           *NAMES],
                  "input_files": ["data"], "output_files": ["result", "never"]}]})


def test_a_transfer_is_the_client_path_on_a_shared_file_system(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    workflow = _workflow(tmp_path)
    ran = jb("run", str(workflow), "--json")
    assert ran.returncode == 0, ran.stderr
    status = json.loads(ran.stdout)
    expected = "".join(f"{index}:{name}\n" for index, name in enumerate(NAMES))
    assert (tmp_path / "out" / "result.txt").read_text() == expected
    transfers = {t["name"]: t for t in status["transfers"]}
    assert transfers["data"] == {
        "name": "data", "client_path": str(tmp_path / "in put"),
        "path": str(tmp_path / "in put"), "files": NAMES, "input": True, "output": False,
        "status": "on both sides"}
    assert transfers["result"]["path"] == str(tmp_path / "out" / "result.txt")
    assert transfers["result"]["status"] == "on both sides"
    assert transfers["never"]["status"] == "do not exist"  # no job wrote it
    copied = jb("transfer", status["id"], "--outputs")
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout == ("nothing to copy: resource 'localhost' shares this machine's "
                             "files (each transfer is its client path)\n")


@pytest.mark.parametrize(("change", "message"), [
    ({"transfers": []}, "wf.json: transfers: must be an object of file transfers by name"),
    ({"transfers": {"d": {"path": "x", "mode": 1}}},
     "wf.json: transfers.d: unknown key 'mode' (allowed: files, path)"),
    ({"transfers": {"d": {}}}, "wf.json: transfers.d.path: required, a client path"),
    ({"transfers": {"d": {"path": "x", "files": ["../up"]}}},
     "wf.json: transfers.d.path: files: '../up' must be a relative path inside the "
     "directory (no '..', not absolute)"),
    ({"transfers": {"d": {"path": "x", "files": []}}},
     "wf.json: transfers.d.files: must be a non-empty list of names in the directory path"),
    ({"input_files": ["nope"]},
     "wf.json: jobs[0].input_files[0]: unknown transfer 'nope' (transfers: d)"),
    ({"temporary_paths": {"d": {}}}, "wf.json: transfers.d: 'd' is a temporary path too"),
])
def test_bad_transfers_are_refused_naming_the_place(tmp_path: Path, change: dict[str, Any],
                                                    message: str) -> None:
    workflow: dict[str, Any] = {"transfers": {"d": {"path": "x"}},
                                "jobs": [{"id": "a", "command": ["cat", "%(d)s"]}]}
    for key, value in change.items():
        (workflow["jobs"][0] if key.endswith("_files") else workflow)[key] = value
    path = write_json(tmp_path / "wf.json", workflow)
    line = error_line(jb("submit", str(path)), 2)
    assert line == f"jobbridge: error: {tmp_path}/{message}"
    assert jb("list", "--json").stdout.strip() == "[]"


def test_a_job_waits_while_its_copied_inputs_are_not_there(tmp_path: Path,
                                                           jobbridge_home: Path) -> None:
    """Placed as a remote resource's host places them (in a folder of the workflow's),
    the job is not submitted until the transfer's status says the files are there;
    a job writing a transfer another one reads is not waited for."""
    workflow = _workflow(tmp_path)
    controller = WorkflowController()
    placement = Placement.for_resource(None, controller.store.home)
    placement.transfer_folder = jobbridge_home / "transfers" / "test"
    placement.client_dir = str(tmp_path)
    spec = load_workflow_file(workflow, placement=placement)
    assert spec.jobs[0].dynamic == {"inputs": ["data"]}
    data = {t.name: t for t in spec.transfers}["data"]
    workflow_id = controller.store.add_workflow(spec, resolve_config(None))
    assert oct(Path(data.path).parent.stat().st_mode & 0o777) == "0o700"
    ensure_engine(controller.store.home)
    time.sleep(3)  # the engine has long loaded it by now
    status = controller.status(str(workflow_id))
    assert status["jobs"][0]["status"] == "not_submitted"
    assert status["jobs"][0]["exit_reason"] == "waiting for its input files (data)"
    assert {t["name"]: t["status"] for t in status["transfers"]} == {
        "data": "on client side", "result": "do not exist", "never": "do not exist"}
    # an engine killed meanwhile: the next one keeps the job waiting, then runs it
    assert kill_engines(jobbridge_home) == 1
    ensure_engine(controller.store.home)
    time.sleep(2)
    assert controller.status(str(workflow_id))["jobs"][0]["status"] == "not_submitted"
    shutil.copytree(tmp_path / "in put", data.path)  # what the client's copy does
    controller.store.set_transfer_status(workflow_id, ["data"], FILES_ON_CR)
    done = controller.wait(str(workflow_id), timeout=120)
    assert (done["jobs"][0]["status"], done["jobs"][0]["exit_reason"]) == ("done", None)
    result = Path({t["name"]: t for t in done["transfers"]}["result"]["path"])
    assert result.parent.parent == jobbridge_home / "transfers" / "test"
    assert result.read_text().startswith("0:with space.txt\n")
    assert {t["name"]: t["status"] for t in done["transfers"]}["result"] == \
        "on computing resource side"
    controller.request(str(workflow_id), "delete")
    wait_for(lambda: not (jobbridge_home / "transfers" / "test").exists(), 60,
             "the transfers' folder removed with the workflow")
    controller.close()
    assert not os.path.exists(data.path)


def test_a_transfer_a_job_writes_is_not_waited_for(tmp_path: Path) -> None:
    """Read by one job, written by another: the dependency orders them, nothing is
    sent from the client (it need not exist there)."""
    placement = Placement.for_resource(None, tmp_path)
    placement.transfer_folder = tmp_path / "transfers"
    workflow = write_json(tmp_path / "wf.json", {
        "transfers": {"mid": {"path": "mid.txt"}, "in": {"path": "in.txt"}},
        "jobs": [{"id": "a", "command": ["cp", "%(in)s", "%(mid)s"], "input_files": ["in"],
                  "output_files": ["mid"]},
                 {"id": "b", "command": ["cat", "%(mid)s"], "input_files": ["mid"]}],
        "dependencies": [["a", "b"]]})
    spec = load_workflow_file(workflow, placement=placement)
    assert [job.dynamic for job in spec.jobs] == [{"inputs": ["in"]}, None]
    assert {t.name: t.sent for t in spec.transfers} == {"mid": False, "in": True}


def test_the_python_api_writes_transfers(tmp_path: Path) -> None:
    from jobbridge.api import Job, Workflow

    (tmp_path / "in.txt").write_text("api\n")
    job = Job(["cp", "%(in)s", "%(out)s"], id="cp", input_files=["in"], output_files=["out"])
    workflow = Workflow([job], transfers={"in": {"path": str(tmp_path / "in.txt")},
                                          "out": {"path": str(tmp_path / "out.txt")}})
    controller = WorkflowController()
    try:
        workflow_id = controller.run(workflow)
        assert controller.status(workflow_id)["jobs"][0]["status"] == "done"
    finally:
        controller.close()
    assert (tmp_path / "out.txt").read_text() == "api\n"


def test_a_copy_progress_line() -> None:
    from jobbridge.cli import _progress_line
    from jobbridge.dynamic import TransferProgress

    copying = TransferProgress("in\nput", total=10 << 20, done=5 << 20)
    assert _progress_line(copying, 3, 80) == \
        "[###############...............] 5.0/10.0 MiB  0:03  sending in\\nput"
    copying.sending = False
    assert _progress_line(copying, 3, 40) == "5.0/10.0 MiB  0:03  receiving in\\nput"
