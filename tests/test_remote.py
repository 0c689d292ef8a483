"""Remote resources: the "laptop" (this test, as root, with a private ssh config)
drives the jobbridge of the "cluster" account jbcluster through the real sshd that
scripts/clusters/sshd-up.sh starts on 127.0.0.1 (a login node, and a jump host
for ProxyJump). The cluster side runs the code under test: a copy of this
checkout's package, run by Debian's python3 as jbcluster.

Tests marked ``ssh`` need that sshd (tests/systems.py probes it: skipped saying
why without it, failed under CI).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import pty
import pwd
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import jobbridge
from jbcli import JOBBRIDGE, engine_pids, error_line, wait_for, write_json
from jobbridge.controller import WorkflowController
from jobbridge.errors import InputError, JobbridgeError
from jobbridge.remote import load_remote
from jobbridge.remote.ssh import SshConnection, control_dir, remote_command
from systems import SSH_JUMP_PORT, SSH_PORT, SSH_STATE, SSH_USER
from test_ui import browser  # noqa: F401 (a fixture)

STATE = SSH_STATE
CLIENT = STATE / "client"
PORT, JUMP_PORT, USER = SSH_PORT, SSH_JUMP_PORT, SSH_USER
#: What runs jobbridge as the cluster account (sshd-up.sh makes sure it can).
CLUSTER_PYTHON = "/usr/bin/python3"
PASSPHRASE = "jobbridge-passphrase"

#: Words no shell may touch: quotes, expansions, separators, newlines, non-ASCII...
HOSTILE = ["plain", "with space", "it's", '"double"', "$(touch PWNED)", "`touch PWNED`",
           "${HOME}", "$HOME", "new\nline", "tab\there", "ünïcødé ✓ 日本語", "back\\slash",
           "semi;colon && true || false", "*", "?", "[a]", "-n", "--", "", " ", "#hash",
           "x~/y", "~", "~root/x", "a\u2028b", "\x7f", "'\"'\"'", "\\", "!bang", "%s%n"]

@pytest.fixture(scope="session")
def remote_code() -> Iterator[Path]:
    """This checkout's package, copied where the cluster account can read it."""
    folder = STATE / f"code-{uuid.uuid4().hex[:12]}"
    shutil.copytree(Path(jobbridge.__file__).parent, folder / "jobbridge",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # its metadata too: the schedulers are found through its entry points
    installed = importlib.metadata.distribution("jobbridge")
    info = folder / f"jobbridge-{installed.version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(installed.read_text("METADATA") or "")
    (info / "entry_points.txt").write_text(installed.read_text("entry_points.txt") or "")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Laptop:
    """The laptop side of one test: its configuration and the cluster side's home."""

    home: Path
    ssh_config: Path
    config: Path
    remote_home: Path
    remote_jobbridge: str
    resources: dict[str, dict[str, str]]

    def jb(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``jobbridge ARGS`` with no terminal (stdin /dev/null): ssh must never ask."""
        return subprocess.run([*JOBBRIDGE, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def jb_json(self, *args: str) -> Any:
        result = self.jb(*args, "--json")
        assert result.returncode in (0, 1), result.stderr
        return json.loads(result.stdout)

    def add(self, name: str, **options: str) -> None:
        """Add (or replace) a resource of the laptop's configuration."""
        self.resources[name] = options
        self.config.write_text("".join(
            f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
            for section, keys in self.resources.items()), encoding="utf-8")

    def connection(self, resource: str = "cluster") -> SshConnection:
        return SshConnection(load_remote(resource), self.home, prompt=False)


@pytest.fixture
def laptop(remote_code: Path, jobbridge_home: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[Laptop]:
    # ssh reads ~/.ssh/config from the passwd entry's home, not $HOME: the test's
    # private ~/.ssh/config is given with -F (in ssh_options, as a user could)
    ssh_dir = Path(os.environ["HOME"]) / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    ssh_config = ssh_dir / "config"
    known = CLIENT / "known_hosts"
    ssh_config.write_text(f"""\
Host jb-jump
  Port {JUMP_PORT}
Host cluster-via-jump
  ProxyJump jb-jump
Host cluster-prompt
  IdentityFile {CLIENT}/id_ed25519_prompt
Host * !cluster-prompt
  IdentityFile {CLIENT}/id_ed25519
Host *
  HostName 127.0.0.1
  Port {PORT}
  User {USER}
  IdentitiesOnly yes
  UserKnownHostsFile {known}
  StrictHostKeyChecking yes
""", encoding="utf-8")
    cluster_home = Path(pwd.getpwnam(USER).pw_dir)
    # a name the remote shell would split, quote-mangle and expand, were it not quoted
    remote_home = cluster_home / f"jb test 'q' $(touch PWNED) ü-{uuid.uuid4().hex[:12]}"
    config = jobbridge_home / "jobbridge.cfg"
    monkeypatch.setenv("JOBBRIDGE_CONFIG", str(config))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # keys from files only
    remote_jobbridge = f"env PYTHONPATH={remote_code} {CLUSTER_PYTHON} -m jobbridge"
    setup = Laptop(jobbridge_home, ssh_config, config, remote_home, remote_jobbridge, {})
    common = {"ssh_options": f"-F {ssh_config}", "remote_jobbridge": remote_jobbridge,
              "remote_home": str(remote_home)}
    setup.add("cluster", host="cluster-direct", **common)
    setup.add("cluster-slurm", host="cluster-via-jump", remote_resource="slurm", **common)
    yield setup
    for name in setup.resources:  # no master connection left behind for 30 min
        with contextlib.suppress(JobbridgeError):  # a section made invalid on purpose
            setup.connection(name).close()
    for pid in engine_pids(remote_home):  # the engines this test started there
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(remote_home, ignore_errors=True)


def remote_status(laptop: Laptop, workflow_id: str) -> dict[str, Any]:
    value: dict[str, Any] = laptop.jb_json("status", workflow_id)
    return value


def job_status(laptop: Laptop, workflow_id: str, job: str) -> str:
    jobs = {j["id"]: j for j in remote_status(laptop, workflow_id)["jobs"]}
    return str(jobs[job]["status"])


# --- quoting: one function, byte-exact -------------------------------------------------------
@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_remote_command_words_reach_a_posix_shell_byte_exact(shell: str, tmp_path: Path
                                                             ) -> None:
    """What the remote login shell does with the command line, done by local shells."""
    script = "import json, sys; sys.stdout.write(json.dumps(sys.argv[1:]))"
    line = remote_command([sys.executable, "-c", script, *HOSTILE, "~/in-home"])
    done = subprocess.run([shell, "-c", line], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "HOME": "/home/someone"}, check=True)
    assert json.loads(done.stdout) == [*HOSTILE, "/home/someone/in-home"]
    assert not (tmp_path / "PWNED").exists()


def test_remote_command_quotes_each_word() -> None:
    assert remote_command(["a b", "it's", "$(x)", "~/p q"]) == \
        "'a b' 'it'\"'\"'s' '$(x)' ~/'p q'"
    assert remote_command(["~", "~/", "x~/y"]) == "'~' '~/' 'x~/y'"


@pytest.mark.ssh
def test_hostile_words_reach_the_remote_side_byte_exact(laptop: Laptop) -> None:
    connection = laptop.connection()
    connection.ensure_master()
    script = "import json, os, sys; sys.stdout.write(json.dumps(sys.argv[1:]))"
    done = subprocess.run(connection.session_argv(
        [CLUSTER_PYTHON, "-c", script, *HOSTILE, "~/in-home"]),
        capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    home = pwd.getpwnam(USER).pw_dir
    assert json.loads(done.stdout) == [*HOSTILE, f"{home}/in-home"]
    assert not Path(home, "PWNED").exists()


# --- submit, status, logs, wait, stop, restart, delete ---------------------------------------
@pytest.mark.ssh
def test_submit_status_logs_wait_on_the_cluster(laptop: Laptop, tmp_path: Path) -> None:
    """Hostile job ids, names, argv and env reach the cluster byte-exact; relative
    paths are the cluster account's; ids come back as cluster:N."""
    script = ("import json, os, sys; sys.stdout.write(json.dumps([sys.argv[1:], "
              "os.environ['HOSTILE'], os.getcwd(), os.getuid()]))")
    job_id = "id with space, 'quotes' \"and\" $(touch PWNED) ü"
    name = "\n".join(HOSTILE)
    marker = laptop.remote_home / "marker"
    workflow = write_json(tmp_path / "hostile.json", {
        "name": "hostile ✓ $(x)",
        "jobs": [{"id": job_id, "name": name, "env": {"HOSTILE": "\n".join(HOSTILE)},
                  "command": ["python3", "-c", script, *HOSTILE]},
                 {"id": "relative", "working_directory": laptop.remote_home.name,
                  "command": ["sh", "-c", 'pwd > "$1"', "sh", marker.name]}],
        "dependencies": [[job_id, "relative"]]})
    submitted = laptop.jb("submit", str(workflow), "--resource", "cluster")
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()
    assert re.fullmatch(r"cluster:\d+", workflow_id), workflow_id
    listed = laptop.jb_json("list", "--resource", "cluster")
    assert [w["id"] for w in listed] == [workflow_id]
    waited = laptop.jb("wait", workflow_id)
    assert waited.returncode == 0, waited.stderr
    assert f"workflow {workflow_id}: 2/2 jobs succeeded" in waited.stderr
    status = remote_status(laptop, workflow_id)
    assert status["id"] == workflow_id and status["name"] == "hostile ✓ $(x)"
    assert status["status"] == "workflow_done"
    assert [(j["id"], j["name"], j["status"]) for j in status["jobs"]] == [
        (job_id, name, "done"), ("relative", None, "done")]
    logs = laptop.jb("logs", workflow_id, job_id)
    assert logs.returncode == 0, logs.stderr
    argv, env, cwd, uid = json.loads(logs.stdout)
    assert argv == HOSTILE and env == "\n".join(HOSTILE)
    cluster = pwd.getpwnam(USER)
    assert (cwd, uid) == (cluster.pw_dir, cluster.pw_uid)  # ran as jbcluster, in its home
    assert marker.read_text().strip() == str(laptop.remote_home)
    assert not Path(cluster.pw_dir, "PWNED").exists()
    human = laptop.jb("status", workflow_id)
    assert human.returncode == 0 and f"workflow {workflow_id} " in human.stdout
    # the laptop keeps no workflow of its own: the cluster's store has it
    assert laptop.jb_json("list") == []
    assert (laptop.remote_home / "jobbridge.db").exists()
    missing = laptop.jb("logs", workflow_id, "nope")
    assert "cluster: workflow" in error_line(missing, 2) and "'nope'" in missing.stderr


@pytest.mark.ssh
def test_a_soma_workflow_file_is_built_on_the_cluster(laptop: Laptop, tmp_path: Path) -> None:
    """A soma-workflow file goes as it is: its env_builder_code runs on the cluster (as
    the cluster account), not on the laptop."""
    marker = laptop.remote_home / "built"
    builder = (f"import json, os; open({str(marker)!r}, 'w').close(); "
               "print(json.dumps({'BUILT_BY': str(os.getuid())}))")
    workflow = write_json(tmp_path / "pipeline.workflow", {
        "name": "soma", "jobs": [0], "dependencies": [], "env_builder_code": builder,
        "serialized_jobs": {"0": {"command": ["sh", "-c", "echo $BUILT_BY"], "name": "a"}}})
    submitted = laptop.jb("submit", str(workflow), "-r", "cluster")
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()
    assert laptop.jb("wait", workflow_id).returncode == 0
    job = remote_status(laptop, workflow_id)["jobs"][0]
    uid = pwd.getpwnam(USER).pw_uid
    assert laptop.jb("logs", workflow_id, job["id"]).stdout == f"{uid}\n"
    assert marker.stat().st_uid == uid


@pytest.mark.ssh
def test_a_dynamic_workflow_runs_on_the_cluster(laptop: Laptop, tmp_path: Path) -> None:
    """Outputs, links and temporary paths work there: the cluster's engine stores the
    outputs, its store the temporary paths (under the cluster account's home)."""
    workflow = write_json(tmp_path / "dynamic.json", {
        "temporary_paths": {"t": {}},
        "jobs": [{"id": "a", "command": ["sh", "-c", 'echo "$0" > "$SOMAWF_OUTPUT_PARAMS"',
                                         '{"v": "linked"}'], "outputs": ["v"]},
                 {"id": "b", "command": ["sh", "-c", 'printf "%s\\n" "$@"', "sh", "%(v)s",
                                         "%(t)s"], "parameters": {"v": None},
                  "links": {"v": {"job": "a", "output": "v"}}}]})
    submitted = laptop.jb("submit", str(workflow), "-r", "cluster")
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()
    assert laptop.jb("wait", workflow_id).returncode == 0
    value, temporary = laptop.jb("logs", workflow_id, "b").stdout.splitlines()
    assert value == "linked"
    assert Path(temporary).parent.parent == laptop.remote_home / "tmp"
    jobs = {job["id"]: job for job in remote_status(laptop, workflow_id)["jobs"]}
    assert jobs["a"]["outputs"] == {"v": "linked"} and jobs["b"]["parameters"] == {"v": "linked"}


@pytest.mark.ssh
def test_stop_restart_delete(laptop: Laptop, tmp_path: Path) -> None:
    once = laptop.remote_home / "ran-once"
    workflow = write_json(tmp_path / "stop.json", {"jobs": [{"id": "long", "command": [
        "sh", "-c", '[ -e "$1" ] && exit 0; touch "$1"; exec sleep 300', "sh", str(once)]}]})
    workflow_id = laptop.jb("submit", str(workflow), "-r", "cluster").stdout.strip()
    wait_for(lambda: job_status(laptop, workflow_id, "long") == "running", 120, "running")
    timed_out = laptop.jb("wait", workflow_id, "--timeout", "1")
    assert timed_out.returncode == 124, timed_out.stderr
    assert timed_out.stderr.endswith(f"cluster: workflow {workflow_id.split(':')[1]} still "
                                     "running after 1 s\n"), timed_out.stderr
    stopped = laptop.jb("stop", workflow_id)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"workflow {workflow_id}: stop requested"
    assert laptop.jb("wait", workflow_id).returncode == 1
    job = remote_status(laptop, workflow_id)["jobs"][0]
    assert (job["status"], job["exit_status"]) == ("failed", "killed_by_user")
    assert laptop.jb("restart", workflow_id).returncode == 0
    assert laptop.jb("wait", workflow_id).returncode == 0
    # the report is built there, where both attempts are recorded
    table = laptop.jb("report", workflow_id)
    assert table.returncode == 0, table.stderr
    assert [line.split()[:2] for line in table.stdout.splitlines()[1:3]] == [
        ["long", "1"], ["long", "2"]]
    assert f"workflow {workflow_id.split(':')[1]}" in table.stdout  # the host's own id
    report = laptop.jb_json("report", workflow_id, "--json")
    assert [(a["attempt"], a["exit_status"]) for a in report["jobs"][0]["attempts"]] == [
        (1, "killed_by_user"), (2, "finished_regularly")]
    page = tmp_path / "report.html"
    assert laptop.jb("report", workflow_id, "--html", str(page)).returncode == 0
    assert page.read_text().startswith("<!DOCTYPE html>")
    missing = laptop.jb("report", "cluster:999")
    assert "999" in error_line(missing, 2)
    assert laptop.jb("delete", workflow_id).returncode == 0
    wait_for(lambda: laptop.jb_json("list", "-r", "cluster") == [], 60, "deleted")


@pytest.mark.ssh
def test_run_waits_with_the_cluster(laptop: Laptop, tmp_path: Path) -> None:
    workflow = write_json(tmp_path / "fail.json", {"jobs": [
        {"id": "ok", "command": ["true"]}, {"id": "bad", "command": ["sh", "-c", "exit 3"]}]})
    ran = laptop.jb("run", str(workflow), "-r", "cluster", "--json")
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.startswith("jobbridge: running on resource 'cluster:localhost' "
                                 "(local_basic)\n"), ran.stderr
    status = json.loads(ran.stdout)
    assert status["id"].startswith("cluster:")
    assert {j["id"]: j["exit_value"] for j in status["jobs"]} == {"ok": 0, "bad": 3}


# --- file transfers ------------------------------------------------------------------------
#: File names no shell or option parser may touch, in a transfer's folder.
HOSTILE_FILES = ["with space.txt", "it's \"quoted\".txt", "new\nline.txt", "-leading-dash",
                 "$(touch PWNED).txt", "ünïcødé ✓.txt", "--", "a\\b *?[x]"]
#: The job of the transfer tests: copies each input file to the output folder, the
#: single input file to the output file, and prints where it found them.
COPY_JOB = """\
import json, os, shutil, sys
inputs, single, out_dir, out_file, names = sys.argv[1:5] + [sys.argv[5:]]
os.makedirs(out_dir, exist_ok=True)
for name in names:
    shutil.copyfile(os.path.join(inputs, name), os.path.join(out_dir, name))
shutil.copyfile(single, out_file)
print(json.dumps([inputs, single, out_dir, out_file]))
"""


def _transfer_workflow(tmp_path: Path) -> tuple[Path, dict[str, bytes], bytes]:
    """A workflow reading a folder of hostile names and one file, writing a folder and
    a file: its path, the folder's contents, the file's."""
    inputs = tmp_path / "in 'put' $(x) ü"
    inputs.mkdir()
    contents = {}
    for index, name in enumerate(HOSTILE_FILES):
        contents[name] = bytes(range(256)) * (index + 1) + os.urandom(1000) + name.encode()
        (inputs / name).write_bytes(contents[name])
    single = os.urandom(3 << 20)  # 3 MiB, behind a link: its content is sent
    (tmp_path / "real.bin").write_bytes(single)
    (tmp_path / "-single\nfile.bin").symlink_to("real.bin")
    workflow = write_json(tmp_path / "transfers.json", {
        "transfers": {"inputs": {"path": inputs.name, "files": HOSTILE_FILES},
                      "single": {"path": "-single\nfile.bin"},
                      "results": {"path": "results"}, "copy": {"path": "copy.bin"}},
        "jobs": [{"id": "copy", "command": [
            "python3", "-c", COPY_JOB, "%(inputs)s", "%(single)s", "%(results)s", "%(copy)s",
            *HOSTILE_FILES], "input_files": ["inputs", "single"],
            "output_files": ["results", "copy"]}]})
    return workflow, contents, single


@pytest.mark.ssh
def test_transfers_go_to_the_cluster_and_back_byte_exact(laptop: Laptop, tmp_path: Path
                                                        ) -> None:
    """Inputs with hostile names are copied into the workflow's folder under the
    cluster's JOBBRIDGE_HOME, the job reads them there, its outputs come back on
    request, byte-exact; statuses say where the files are."""
    workflow, contents, single = _transfer_workflow(tmp_path)
    submitted = laptop.jb("submit", str(workflow), "-r", "cluster")
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()
    assert laptop.jb("wait", workflow_id).returncode == 0
    inputs, single_there, results, copy = json.loads(laptop.jb("logs", workflow_id,
                                                               "copy").stdout)
    folder = Path(inputs).parent.parent
    assert folder.parent == laptop.remote_home / "transfers"
    assert {Path(path).parent.parent for path in (single_there, results, copy)} == {folder}
    assert Path(single_there).name == "-single\nfile.bin"
    assert not Path(single_there).is_symlink()
    cluster = pwd.getpwnam(USER)
    assert folder.stat().st_uid == cluster.pw_uid and folder.stat().st_mode & 0o077 == 0
    assert not Path(cluster.pw_dir, "PWNED").exists() and not (tmp_path / "PWNED").exists()
    statuses = {t["name"]: t["status"] for t in remote_status(laptop, workflow_id)["transfers"]}
    assert statuses == {"inputs": "on computing resource side",
                        "single": "on computing resource side",
                        "results": "on computing resource side",
                        "copy": "on computing resource side"}
    assert not (tmp_path / "results").exists()
    back = laptop.jb("transfer", workflow_id, "--outputs")
    assert back.returncode == 0, back.stderr
    assert back.stdout.count("\n") == 2 and "results: cluster:" in back.stdout
    for name, data in contents.items():
        assert (tmp_path / "results" / name).read_bytes() == data, name
    assert sorted(os.listdir(tmp_path / "results")) == sorted(HOSTILE_FILES)
    assert (tmp_path / "copy.bin").read_bytes() == single
    statuses = {t["name"]: t["status"] for t in remote_status(laptop, workflow_id)["transfers"]}
    assert statuses["results"] == statuses["copy"] == "on both sides"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = laptop.jb("transfer", workflow_id, "--outputs", str(elsewhere))
    assert again.returncode == 0, again.stderr
    assert (elsewhere / "copy.bin").read_bytes() == single
    assert (elsewhere / "results" / "new\nline.txt").read_bytes() == contents["new\nline.txt"]
    # deleting the workflow there removes its folder of transfers
    assert laptop.jb("delete", workflow_id).returncode == 0
    wait_for(lambda: not folder.exists(), 60, "the transfers' folder removed")


@pytest.mark.ssh
def test_a_job_waits_for_its_inputs(laptop: Laptop, tmp_path: Path) -> None:
    """While its input files are being copied the job is not submitted; the copy's
    progress is reported, then the job runs."""
    from jobbridge.remote.client import RemoteController

    workflow, _, _ = _transfer_workflow(tmp_path)
    seen: list[tuple[str, str]] = []
    controller = RemoteController(load_remote("cluster"), laptop.home, prompt=False)
    watcher = RemoteController(load_remote("cluster"), laptop.home, prompt=False)

    def copying(progress: Any) -> None:
        if not seen and progress.done > (1 << 20):  # mid-copy: what the cluster says
            status = watcher.status("cluster:")
            seen.append((status["jobs"][0]["status"],
                         {t["name"]: t["status"] for t in status["transfers"]}["single"]))

    try:
        workflow_id = controller.submit(str(workflow), copying=copying)
        assert seen == [("not_submitted", "transfering client->cr")]
        assert controller.wait(workflow_id)["jobs"][0]["status"] == "done"
    finally:
        controller.close()
        watcher.close()


@pytest.mark.ssh
def test_soma_workflow_file_transfers_go_to_the_cluster_and_back(laptop: Laptop,
                                                                 tmp_path: Path) -> None:
    """soma-workflow's FileTransfers (one with client_paths: its files in one folder
    there) are copied, the command gets their paths there, outputs come back."""
    from soma_workflow.client import FileTransfer, Helper, Job, Workflow

    image, header = tmp_path / "-scan 'one'.img", tmp_path / "-scan 'one'.hdr"
    image.write_bytes(os.urandom(5000))
    header.write_bytes(b"header\n\x00\xff")
    scan = FileTransfer(True, str(image), client_paths=[str(image), str(header)], name="scan")
    result = FileTransfer(False, str(tmp_path / "result\nfile.bin"), name="result")
    job = Job(["sh", "-c", 'cat "$0" "$(dirname "$0")/$1" > "$2"', scan, header.name, result],
              name="cat", referenced_input_files=[scan], referenced_output_files=[result])
    workflow = tmp_path / "scan.workflow"
    Helper.serialize(str(workflow), Workflow([job], name="soma transfers"))
    submitted = laptop.jb("submit", str(workflow), "-r", "cluster")
    assert submitted.returncode == 0, submitted.stderr
    workflow_id = submitted.stdout.strip()
    assert laptop.jb("wait", workflow_id).returncode == 0
    transfers = {Path(t["client_path"]).name: t
                 for t in remote_status(laptop, workflow_id)["transfers"]}
    assert transfers[tmp_path.name]["files"] == [image.name, header.name]
    assert transfers[tmp_path.name]["input"] and transfers["result\nfile.bin"]["output"]
    assert transfers["result\nfile.bin"]["status"] == "on computing resource side"
    # soma-workflow's own Helper brings the outputs back through a RemoteController
    from jobbridge.remote.client import RemoteController

    controller = RemoteController(load_remote("cluster"), laptop.home, prompt=False)
    try:
        Helper.transfer_input_files(workflow_id, controller)  # all there: nothing to do
        Helper.transfer_output_files(workflow_id, controller)
        _, listed, status, _, _ = controller.workflow_elements_status(workflow_id)
    finally:
        controller.close()
    assert (tmp_path / "result\nfile.bin").read_bytes() == image.read_bytes() + \
        header.read_bytes()
    assert status == "workflow_done"
    assert {Path(item[1][3]).name: item[1][0] for item in listed} == {
        image.name: "on computing resource side", "result\nfile.bin": "on both sides"}


@pytest.mark.ssh
def test_a_failed_copy_leaves_no_workflow_there(laptop: Laptop, tmp_path: Path) -> None:
    """The host's folder vanishes mid-copy: the copy fails saying so, and the workflow
    it was for is deleted there (no job waits forever for files that never come)."""
    from jobbridge.remote.client import RemoteController

    workflow, _, _ = _transfer_workflow(tmp_path)
    controller = RemoteController(load_remote("cluster"), laptop.home, prompt=False)

    def copying(progress: Any) -> None:
        if progress.done > (1 << 20):
            shutil.rmtree(laptop.remote_home / "transfers", ignore_errors=True)

    try:
        # tar fails there, or the host finds the file missing once tar is done
        with pytest.raises(JobbridgeError, match=r"^(copying '.*-single\\nfile\.bin' to "
                           r"cluster:.* failed: |cluster: transfer 'single': .* is not here)"):
            controller.submit(str(workflow), copying=copying)
    finally:
        controller.close()
    wait_for(lambda: laptop.jb_json("list", "-r", "cluster") == [], 60, "deleted there")


@pytest.mark.ssh
def test_an_output_link_does_not_come_back(laptop: Laptop, tmp_path: Path) -> None:
    """A job's output folder holding a link (to a file of the laptop's, once here): the
    copy back refuses it, saying so; the regular files before it are whole."""
    workflow = write_json(tmp_path / "link.json", {
        "transfers": {"out": {"path": "out"}},
        "jobs": [{"id": "a", "command": ["sh", "-c", 'mkdir "$0" && echo ok > "$0/a" && '
                                         'ln -s /etc/shadow "$0/b"', "%(out)s"],
                  "output_files": ["out"]}]})
    ran = laptop.jb("run", str(workflow), "-r", "cluster")
    assert ran.returncode == 0, ran.stderr
    workflow_id = re.search(r"workflow (cluster:\d+):", ran.stderr)
    assert workflow_id, ran.stderr
    line = error_line(laptop.jb("transfer", workflow_id[1], "--outputs"), 1)
    assert "failed: './out/b' is not a regular file or directory" in line, line
    regular = tmp_path / "out" / "a"  # before or after the link in the archive
    assert not regular.exists() or regular.read_text() == "ok\n"
    assert not (tmp_path / "out" / "b").exists() and not (tmp_path / "out" / "b").is_symlink()
    status = {t["name"]: t["status"] for t in remote_status(laptop, workflow_id[1])["transfers"]}
    assert status == {"out": "on computing resource side"}


@pytest.mark.ssh
def test_a_bad_transfer_path_is_refused_before_anything_is_sent(laptop: Laptop,
                                                                 tmp_path: Path) -> None:
    workflow = write_json(tmp_path / "missing.json", {
        "transfers": {"data": {"path": "nope dir", "files": ["a"]}},
        "jobs": [{"id": "a", "command": ["cat", "%(data)s/a"], "input_files": ["data"]}]})
    refused = laptop.jb("submit", str(workflow), "-r", "cluster")
    line = error_line(refused, 2)
    assert f"{workflow}: transfers.data.path: no such file or directory: " in line
    assert str(tmp_path / "nope dir" / "a") in line
    assert laptop.jb_json("list", "-r", "cluster") == []
    assert not (laptop.remote_home / "transfers").exists() or not any(
        (laptop.remote_home / "transfers").iterdir())
    escaping = write_json(tmp_path / "escape.json", {
        "transfers": {"data": {"path": ".", "files": ["../etc/passwd"]}},
        "jobs": [{"id": "a", "command": ["true"], "input_files": ["data"]}]})
    line = error_line(laptop.jb("submit", str(escaping), "-r", "cluster"), 2)
    assert "transfers.data.path: files: '../etc/passwd' must be a relative path" in line


# --- connections ---------------------------------------------------------------------------------
def _remote_serves(remote_home: Path) -> list[int]:
    """Pids of the remote-serve processes serving ``remote_home``."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"remote-serve" in words and os.fsencode(remote_home) in words:
            found.append(int(proc.name))
    return found


@pytest.mark.ssh
def test_one_master_connection_reused_and_private(laptop: Laptop, tmp_path: Path) -> None:
    assert laptop.jb("list", "-r", "cluster").returncode == 0
    master = laptop.connection().master_pid()
    assert master is not None
    for _ in range(3):
        assert laptop.jb("list", "-r", "cluster").returncode == 0
    assert laptop.connection().master_pid() == master
    sockets = control_dir(laptop.home)
    assert sockets == laptop.home / "ssh"
    assert sockets.stat().st_mode & 0o777 == 0o700


@pytest.mark.ssh
def test_connection_killed_mid_wait_is_established_again(laptop: Laptop, tmp_path: Path
                                                         ) -> None:
    workflow = write_json(tmp_path / "slow.json", {"jobs": [
        {"id": "slow", "command": ["sleep", "8"]}]})
    workflow_id = laptop.jb("submit", str(workflow), "-r", "cluster").stdout.strip()
    wait_for(lambda: not _remote_serves(laptop.remote_home), 60, "submit's server gone")
    waiting = subprocess.Popen([*JOBBRIDGE, "wait", workflow_id], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: bool(_remote_serves(laptop.remote_home)), 60, "the remote wait")
        master = laptop.connection().master_pid()
        assert master is not None
        os.kill(master, signal.SIGKILL)  # the connection drops
        _, stderr = waiting.communicate(timeout=180)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, stderr
    assert "lost the connection to cluster" in stderr and "connecting again" in stderr
    assert f"workflow {workflow_id}: 1/1 jobs succeeded" in stderr
    again = laptop.connection().master_pid()
    assert again is not None and again != master
    # the server of the dropped session noticed and ended (its heartbeat failed)
    wait_for(lambda: not _remote_serves(laptop.remote_home), 60, "no remote-serve left")


@pytest.mark.ssh
def test_dropped_master_is_established_again_by_the_next_command(laptop: Laptop) -> None:
    assert laptop.jb("list", "-r", "cluster").returncode == 0
    master = laptop.connection().master_pid()
    assert master is not None
    os.kill(master, signal.SIGKILL)
    listed = laptop.jb("list", "-r", "cluster")
    assert listed.returncode == 0 and listed.stderr == ""
    assert laptop.connection().master_pid() not in (None, master)


@pytest.mark.ssh
def test_remote_engine_killed_is_resumed(laptop: Laptop, tmp_path: Path) -> None:
    """The engine on the cluster SIGKILLed mid-job: the next command from the laptop
    starts one again, which resumes the workflow; every job ran exactly once."""
    ran = laptop.remote_home / "ran"
    workflow = write_json(tmp_path / "chain.json", {
        "jobs": [{"id": "a", "command": ["sh", "-c", 'echo a >> "$1"; sleep 4', "sh", str(ran)]},
                 {"id": "b", "command": ["sh", "-c", 'echo b >> "$1"', "sh", str(ran)]}],
        "dependencies": [["a", "b"]]})
    workflow_id = laptop.jb("submit", str(workflow), "-r", "cluster").stdout.strip()
    wait_for(lambda: job_status(laptop, workflow_id, "a") == "running", 120, "a running")
    engines = engine_pids(laptop.remote_home)
    assert engines
    for pid in engines:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not set(engines) & set(engine_pids(laptop.remote_home)), 30, "dead")
    waited = laptop.jb("wait", workflow_id)
    assert waited.returncode == 0, waited.stderr
    assert ran.read_text() == "a\nb\n"


@pytest.mark.ssh
def test_the_engine_keeps_running_without_the_laptop(laptop: Laptop, tmp_path: Path) -> None:
    """The laptop goes away (its master connection with it): the workflow goes on there,
    and a later command attaches to it."""
    workflow = write_json(tmp_path / "wf.json", {"jobs": [
        {"id": "a", "command": ["sleep", "3"]}, {"id": "b", "command": ["true"]}],
        "dependencies": [["a", "b"]]})
    workflow_id = laptop.jb("submit", str(workflow), "-r", "cluster").stdout.strip()
    laptop.connection().close()
    wait_for(lambda: _done_there(laptop, workflow_id), 120, "the workflow's end there")
    assert remote_status(laptop, workflow_id)["status"] == "workflow_done"


def _done_there(laptop: Laptop, workflow_id: str) -> bool:
    """Read the cluster's store directly (as root), not through ssh."""
    import sqlite3

    number = int(workflow_id.split(":")[1])
    with sqlite3.connect(laptop.remote_home / "jobbridge.db") as db:
        row = db.execute("SELECT status FROM workflows WHERE id = ?", (number,)).fetchone()
    return bool(row) and row[0] == "workflow_done"


# --- the cluster's Slurm, through the jump host ---------------------------------------------------
@pytest.mark.ssh
@pytest.mark.slurm
def test_remote_slurm_through_a_jump_host(laptop: Laptop, tmp_path: Path) -> None:
    jump_log = STATE / "jump" / "sshd.log"
    logins = jump_log.read_text().count("Accepted publickey")
    workflow = write_json(tmp_path / "slurm.json", {"name": "on slurm", "jobs": [
        {"id": "who", "command": ["sh", "-c", 'echo "$(id -un) job $SLURM_JOB_ID"']},
        {"id": "after", "command": ["echo", "after"]}], "dependencies": [["who", "after"]]})
    ran = laptop.jb("run", str(workflow), "--resource", "cluster-slurm", timeout=300)
    assert ran.returncode == 0, ran.stderr
    workflow_id = re.search(r"workflow (cluster-slurm:\d+):", ran.stderr)
    assert workflow_id, ran.stderr
    human = laptop.jb("status", workflow_id[1])
    assert f"workflow {workflow_id[1]} (on slurm): done on cluster-slurm:slurm (slurm)" \
        in human.stdout, human.stdout
    status = remote_status(laptop, workflow_id[1])
    ids = [job["scheduler_job_id"] for job in status["jobs"]]
    assert all(i and i.isdigit() for i in ids), ids
    logs = laptop.jb("logs", workflow_id[1], "who")
    assert logs.stdout == f"{USER} job {ids[0]}\n", logs.stderr
    assert jump_log.read_text().count("Accepted publickey") > logins  # went through it


@pytest.mark.ssh
@pytest.mark.slurm
def test_transfers_with_the_remote_slurm_through_a_jump_host(laptop: Laptop,
                                                            tmp_path: Path) -> None:
    """The laptop's files reach a Slurm job of the cluster account (through the jump
    host), and its outputs come back."""
    workflow, contents, single = _transfer_workflow(tmp_path)
    ran = laptop.jb("run", str(workflow), "--resource", "cluster-slurm", timeout=300)
    assert ran.returncode == 0, ran.stderr
    workflow_id = re.search(r"workflow (cluster-slurm:\d+):", ran.stderr)
    assert workflow_id, ran.stderr
    job = remote_status(laptop, workflow_id[1])["jobs"][0]
    assert job["scheduler_job_id"].isdigit()  # a Slurm job
    back = laptop.jb("transfer", workflow_id[1], "--outputs")
    assert back.returncode == 0, back.stderr
    assert (tmp_path / "copy.bin").read_bytes() == single
    for name, data in contents.items():
        assert (tmp_path / "results" / name).read_bytes() == data, name


# --- errors: one clear line, nothing waits for an answer -------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.ssh
def test_unreachable_host(laptop: Laptop) -> None:
    port = _free_port()
    laptop.add("down", host="127.0.0.1", ssh_options=f"-F {laptop.ssh_config} -p {port}")
    line = error_line(laptop.jb("list", "-r", "down"), 1)
    assert line == (f"jobbridge: cannot reach down (127.0.0.1): ssh: connect to host "
                    f"127.0.0.1 port {port}: Connection refused")


@pytest.mark.ssh
def test_jobbridge_not_installed_there(laptop: Laptop) -> None:
    laptop.add("bare", host="cluster-direct", ssh_options=f"-F {laptop.ssh_config}",
               remote_jobbridge="/opt/no-such/bin/jobbridge")
    line = error_line(laptop.jb("list", "-r", "bare"), 1)
    assert line.startswith("jobbridge: jobbridge is not installed on bare (cluster-direct): ")
    assert "pip install --user 'jobbridge==" in line and "remote_jobbridge" in line
    laptop.add("nomodule", host="cluster-direct", ssh_options=f"-F {laptop.ssh_config}",
               remote_jobbridge=f"{CLUSTER_PYTHON} -m jobbridge")
    line = error_line(laptop.jb("list", "-r", "nomodule"), 1)
    assert "not installed on nomodule" in line and "No module named jobbridge" in line


@pytest.mark.ssh
def test_version_mismatch(laptop: Laptop) -> None:
    hello = json.dumps({"jobbridge": "9.9", "protocol": 99, "home": "/x"})
    laptop.add("newer", host="cluster-direct", ssh_options=f"-F {laptop.ssh_config}",
               remote_jobbridge=f"{CLUSTER_PYTHON} -c {shlex.quote(f'print({hello!r})')}")
    line = error_line(laptop.jb("list", "-r", "newer"), 1)
    assert line.startswith("jobbridge: version mismatch: jobbridge 9.9 on newer speaks remote "
                           "protocol 99, this jobbridge ")
    old = ("import sys; sys.exit(\"jobbridge: error: argument command: invalid choice: "
           "'remote-serve'\")")
    laptop.add("older", host="cluster-direct", ssh_options=f"-F {laptop.ssh_config}",
               remote_jobbridge=f"{CLUSTER_PYTHON} -c {shlex.quote(old)}")
    line = error_line(laptop.jb("list", "-r", "older"), 1)
    assert line.startswith("jobbridge: version mismatch: the jobbridge on older has no "
                           "remote-serve")


@pytest.mark.ssh
def test_no_terminal_never_waits_for_an_answer(laptop: Laptop) -> None:
    """An unknown host key, with no terminal: ssh must not ask (BatchMode)."""
    laptop.add("unknown", host="cluster-direct", ssh_options=f"-F {laptop.ssh_config} "
               "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=ask")
    started = time.monotonic()
    line = error_line(laptop.jb("list", "-r", "unknown", timeout=60), 1)
    assert "Host key verification failed" in line and "ssh cluster-direct" in line
    assert time.monotonic() - started < 50


def _in_terminal(argv: list[str], answer: str | None, timeout: float = 90) -> tuple[int, str]:
    """Run ``argv`` on a new pseudo-terminal, typing ``answer`` when asked for a
    passphrase; (exit status, what the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.execvpe(argv[0], argv, os.environ)
    shown = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the terminal closed
                    break
                if not data:
                    break
                shown += data
            if not answered and b"passphrase" in shown.lower():
                assert answer is not None, shown
                os.write(fd, answer.encode() + b"\r")
                answered = True
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"still running after {timeout} s: {shown!r}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")


@pytest.mark.ssh
def test_a_terminal_is_asked_once_per_master_connection(laptop: Laptop) -> None:
    """ssh prompts on the terminal (a key's passphrase standing for a site's second
    factor) once; later commands, with or without a terminal, reuse the connection;
    once it is gone, a command without a terminal fails at once instead of asking."""
    laptop.add("prompted", host="cluster-prompt", ssh_options=f"-F {laptop.ssh_config}",
               remote_jobbridge=laptop.remote_jobbridge, remote_home=str(laptop.remote_home))
    code, shown = _in_terminal([*JOBBRIDGE, "list", "-r", "prompted"], PASSPHRASE)
    assert code == 0, shown
    assert "passphrase" in shown.lower() and "ID" in shown
    code, shown = _in_terminal([*JOBBRIDGE, "list", "-r", "prompted"], None)
    assert code == 0 and "passphrase" not in shown.lower(), shown
    assert laptop.jb("list", "-r", "prompted").returncode == 0
    laptop.connection("prompted").close()
    line = error_line(laptop.jb("list", "-r", "prompted", timeout=60), 1)
    assert "Permission denied" in line and "from a terminal" in line


# --- configuration ---------------------------------------------------------------------------
@pytest.mark.ssh
def test_bad_remote_sections_are_refused(laptop: Laptop) -> None:
    laptop.add("typo", host="cluster-direct", scheduler_type="slurm")
    line = error_line(laptop.jb("list", "-r", "typo"))
    assert line.endswith(f"{laptop.config}: [typo]: unknown key 'scheduler_type' (remote keys: "
                         "host, remote_home, remote_jobbridge, remote_resource, ssh_options, "
                         "user)")
    laptop.add("option", host="-oProxyCommand=sh -c 'touch /tmp/PWNED'")
    line = error_line(laptop.jb("list", "-r", "option"))
    assert "option host = " in line and "is not a host name" in line
    workflow = write_json(laptop.home / "bad.json", {"jobs": [{"id": "a"}]})
    line = error_line(laptop.jb("submit", str(workflow), "-r", "cluster"))
    assert f"{workflow}: jobs[0].command: required" in line  # checked here, before ssh
    line = error_line(laptop.jb("status", ":3"))
    assert "no resource before ':'" in line
    line = error_line(laptop.jb("list", "-r", "localhost"))
    assert "is not remote" in line
    with pytest.raises(InputError, match=r"resource 'cluster' is remote .*RemoteController"):
        WorkflowController().submit({"jobs": [{"id": "a", "command": ["true"]}]},
                                    resource="cluster")


@pytest.mark.ssh
def test_default_section_and_default_resource(laptop: Laptop, tmp_path: Path) -> None:
    """Remote keys may sit in [DEFAULT] (a local resource ignores them), a scheduler's
    key there does not trouble a remote resource, and the default resource may be
    remote: then a bare submit goes there."""
    laptop.resources.clear()
    laptop.add("DEFAULT", default_resource="cluster", ssh_options=f"-F {laptop.ssh_config}",
               remote_jobbridge=laptop.remote_jobbridge, remote_home=str(laptop.remote_home),
               max_job_running="2")
    laptop.add("cluster", host="cluster-direct")
    laptop.add("here", scheduler_type="local_basic")
    workflow = write_json(tmp_path / "wf.json", {"jobs": [{"id": "a", "command": ["true"]}]})
    submitted = laptop.jb("submit", str(workflow))
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.startswith("cluster:")
    assert laptop.jb("wait", submitted.stdout.strip()).returncode == 0
    here = laptop.jb("run", str(workflow), "-r", "here")
    assert here.returncode == 0, here.stderr
    assert [w["id"] for w in laptop.jb_json("list")] == ["1"]  # this machine's


def test_control_folder_falls_back_when_the_home_path_is_long(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 80)
    folder = control_dir(deep)
    assert folder.parent == Path(tempfile.gettempdir())
    assert folder.name == f"jobbridge-ssh-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700


@pytest.mark.ssh
def test_a_copy_shows_its_progress_on_a_terminal(laptop: Laptop, tmp_path: Path) -> None:
    """run on a terminal: the copy's line, drawn full and ended, then the workflow's."""
    workflow, _, _ = _transfer_workflow(tmp_path)
    code, shown = _in_terminal([*JOBBRIDGE, "run", str(workflow), "-r", "cluster"], None)
    assert code == 0, shown
    copy_line, rest = shown.split("\r\n", 1)
    total = f"{(3 << 20) / 2**20 + 0.0:.1f}"
    assert copy_line.rsplit("\r", 1)[-1].startswith(f"[{'#' * 30}] {total}/{total} MiB")
    assert rest.startswith("jobbridge: running on resource 'cluster:localhost'"), rest
    assert "1/1 jobs succeeded" in rest


# --- jobbridge ui on the laptop ----------------------------------------------------------------
@contextlib.contextmanager
def _silent_listener() -> Iterator[int]:
    """A port that accepts connections and never says a word (a host lost behind a
    firewall that still answers TCP): ssh waits there until its ConnectTimeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


@pytest.mark.ssh
@pytest.mark.browser
def test_ui_shows_the_clusters_workflows_and_unreachable_hosts(laptop: Laptop, tmp_path: Path,
                                                               browser: Any  # noqa: F811
                                                               ) -> None:
    """`jobbridge ui` on the laptop lists the cluster's workflows (ids cluster:N) beside
    its own, read through the remote protocol; its pages (graph, report, a failed job's
    stderr and reason, the download) come from the cluster, its Stop acts there. A host
    refusing connections and one that never answers are shown unreachable, and the
    page never waits for them."""
    from playwright.sync_api import expect

    from test_ui import _shot, dashboard

    failing = laptop.jb("submit", str(write_json(tmp_path / "fails.json", {
        "name": "on the cluster", "jobs": [
            {"id": "ok", "command": ["true"]},
            {"id": "bad", "command": ["sh", "-c", "echo 'bad: no input.dat here' >&2; exit 3"]},
            {"id": "after", "command": ["true"]}], "dependencies": [["bad", "after"]]})),
        "-r", "cluster")
    assert failing.returncode == 0, failing.stderr
    failed_id = failing.stdout.strip()
    assert laptop.jb("wait", failed_id).returncode == 1
    long = laptop.jb("submit", str(write_json(tmp_path / "long.json", {
        "name": "long", "jobs": [{"id": "sleeper", "command": ["sleep", "300.7719"]},
                                 {"id": "victim", "command": ["sleep", "300.7720"]}]})),
        "-r", "cluster")
    long_id = long.stdout.strip()
    wait_for(lambda: job_status(laptop, long_id, "sleeper") == "running", timeout=60,
             what="the sleeper to run")
    laptop.add("down", host="127.0.0.1", ssh_options=f"-F {laptop.ssh_config} -p {_free_port()}")
    laptop.add("cluster-again", **{**laptop.resources["cluster"], "remote_resource": "slurm"})
    with _silent_listener() as port:
        laptop.add("silent", host="127.0.0.1", ssh_options=f"-F {laptop.ssh_config} -p {port} "
                   "-o ConnectTimeout=10")
        with dashboard() as ui:
            began = time.monotonic()
            listed = ui.api("/api/workflows")
            assert time.monotonic() - began < 5  # nothing waits for a host
            assert {r["name"]: r["state"] for r in listed["remotes"]}["silent"] == "connecting"
            page = browser
            page.goto(ui.url)
            cluster = page.locator("section.remote[data-remote='cluster']")
            expect(cluster.locator("[data-host-state]")).to_have_attribute(
                "data-host-state", "ok")
            row = cluster.locator(f"tr.wf[data-id='{failed_id}']")
            expect(row).to_contain_text("on the cluster")
            expect(row).to_contain_text("cluster:localhost")
            # cluster-again reaches the same jobbridge there: listed once, under cluster
            # (cluster-slurm goes through the jump host: another host, as far as one knows)
            expect(cluster).to_contain_text("(also cluster-again)")
            expect(page.locator("section.remote[data-remote='cluster-again']")).to_have_count(0)
            expect(page.locator("section.remote[data-remote='cluster-slurm'] "
                                f"tr.wf[data-id='cluster-slurm:{failed_id.split(':')[1]}']")
                   ).to_contain_text("on the cluster")
            down = page.locator("section.remote[data-remote='down']")
            expect(down.locator("[data-host-state]")).to_have_attribute(
                "data-host-state", "unreachable")
            expect(down.locator(".host-error")).to_contain_text("Connection refused")
            silent = page.locator("section.remote[data-remote='silent']")
            status, body = ui.get("/api/workflows/silent:1", ui.token)
            assert status == 503 and "still connecting" in body, (status, body)
            expect(silent.locator("[data-host-state]")).to_have_attribute(
                "data-host-state", "unreachable", timeout=60_000)
            expect(silent.locator(".host-error")).to_contain_text("cannot reach silent")
            status, body = ui.get("/api/workflows/down:1", ui.token)
            assert status == 503 and "down is unreachable" in body, (status, body)
            _shot(page, "remote-workflows", full_page=True)

            row.locator("a").first.click()
            expect(page.locator("h1")).to_contain_text(f"Workflow {failed_id}")
            expect(page.locator("g.node[data-job='bad']")).to_have_attribute(
                "data-state", "failed")
            expect(page.locator("g.node[data-job='after']")).to_have_attribute(
                "data-state", "not_run")
            page.locator(".tabs a[data-tab='report']").click()
            expect(page.locator("#report tr.attempt")).to_have_count(3)
            expect(page.locator("#report tr[data-job='after']")).to_have_attribute(
                "data-attempt", "-")  # never ran: no attempt
            expect(page.locator("#report-figures svg.jb-figure")).to_have_count(3)
            page.locator("#report tr.attempt[data-job='bad'] a.stderr-link").click()
            expect(page.locator("#job-reason")).to_have_text("exited with code 3")
            expect(page.locator("#stderr pre")).to_contain_text("bad: no input.dat here")
            with page.expect_download() as download:
                page.locator("#stderr a[download]").click()
            assert Path(download.value.path()).read_text() == "bad: no input.dat here\n"
            status, body = ui.get(f"/api/workflows/{failed_id}/job/stdout?id=after", ui.token)
            assert (status, body) == (404, "cluster: job 'after' never ran (bad failed)\n")
            assert {r["name"]: r["state"] for r in ui.api("/api/workflows")["remotes"]}[
                "cluster"] == "ok"  # an answer of the host, not a lost host
            _shot(page, "remote-job")

            status, body = ui.post(f"/api/workflows/{long_id}/job/kill?id=victim",
                                   Authorization=f"Bearer {ui.token}")
            assert (status, json.loads(body)) == (200, {"ok": True,
                                                        "message": "job victim: kill requested"})
            wait_for(lambda: job_status(laptop, long_id, "victim") == "failed", timeout=60,
                     what="the kill on the cluster")
            page.goto(f"{ui.base}/workflows/{long_id}")
            expect(page.locator("g.node[data-job='sleeper']")).to_have_attribute(
                "data-state", "running")
            expect(page.locator("g.node[data-job='victim']")).to_have_attribute(
                "data-state", "failed")
            page.locator("button[data-action='stop']").click()
            page.locator("#confirm-ok").click()
            expect(page.locator("#toast")).to_contain_text(f"workflow {long_id}: stop requested")
            assert laptop.jb("wait", long_id, "--timeout", "120").returncode == 1
            for job in remote_status(laptop, long_id)["jobs"]:
                assert (job["status"], job["exit_status"]) == ("failed", "killed_by_user")
            expect(page.locator("g.node[data-job='sleeper']")).to_have_attribute(
                "data-state", "failed", timeout=30_000)  # followed from the laptop
