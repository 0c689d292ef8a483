"""The laptop side of a remote resource: a controller whose workflows live on
another machine.

:class:`RemoteController` offers the methods of
:class:`jobbridge.controller.WorkflowController` that the command line uses
(``submit``, ``run``, ``list``, ``status``, ``wait``, ``request``) plus ``logs``,
so that every command works the same on ``cluster:12`` as on ``12``. Each method
is one request to ``jobbridge remote-serve`` on the host, over the host's
master SSH connection. A connection that drops is opened again: at once for a
request that cannot have been acted on, and several times, backing off, for
``wait``, which then picks up where it was.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from .. import __version__
from ..configuration import Configuration
from ..dynamic import (
    FILES_ON_CLIENT,
    FILES_ON_CLIENT_AND_CR,
    FILES_ON_CR,
    ON_RESOURCE,
    TRANSFERING_FROM_CLIENT_TO_CR,
    TRANSFERING_FROM_CR_TO_CLIENT,
    Placement,
    Transfer,
    TransferProgress,
)
from ..engine import Progress
from ..errors import InputError, JobbridgeError
from ..model import gc_paused, read_workflow_json, workflow_from_data
from . import RemoteResource, protocol
from .ssh import SSH_FAILED, ConnectionLost, RemoteError, SshConnection, stderr_tail
from .transfer import Copying, check_inputs, destination, receive, send, transfer_from, tree_size

log = logging.getLogger("jobbridge")

#: How many times ``wait`` reconnects, and the pause before each attempt (seconds).
WAIT_RECONNECTS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0)
#: The same for the other requests that are safe to repeat.
RECONNECTS = (1.0,)
#: The install command suggested when jobbridge is missing on the host.
INSTALL = f"python3 -m pip install --user 'jobbridge=={__version__}'"


class _Lost(ConnectionLost):
    """The connection dropped; ``sent``: after the request was written."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class Session:
    """One ``jobbridge remote-serve`` process on the host, over the master connection."""

    def __init__(self, connection: SshConnection) -> None:
        self.connection = connection
        resource = connection.resource
        argv = [*resource.remote_jobbridge, "remote-serve",
                *(["--home", resource.remote_home] if resource.remote_home else [])]
        self.process = subprocess.Popen(connection.session_argv(argv), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self.requests, self.answers = self.process.stdin, self.process.stdout
        self.errors = bytearray()
        self._drain = threading.Thread(target=self._read_stderr, args=(self.process.stderr,),
                                       daemon=True)
        self._drain.start()
        hello = self._receive(sent=False)
        if hello is None:
            raise self._failed_start()
        if hello.get("protocol") != protocol.PROTOCOL:
            self.close()
            raise RemoteError(
                f"version mismatch: jobbridge {hello.get('jobbridge', '?')} on {resource.name} "
                f"speaks remote protocol {hello.get('protocol', '?')}, this jobbridge "
                f"{__version__} speaks {protocol.PROTOCOL}: install the same version on both "
                f"({INSTALL} on {resource.host})")
        self.home = hello.get("home")

    def _read_stderr(self, stream: IO[bytes]) -> None:
        while chunk := stream.read1(65536):  # type: ignore[attr-defined]
            self.errors += chunk[-65536:]
            del self.errors[:-65536]

    def request(self, message: dict[str, Any],
                on_event: Callable[[dict[str, Any]], None] | None = None) -> Any:
        """Send one request; the value of its ``ok`` answer (events go to ``on_event``)."""
        try:
            protocol.send(self.requests, message)
        except (BrokenPipeError, ConnectionResetError):
            raise self._lost(sent=False) from None
        while True:
            answer = self._receive(sent=True)
            if answer is None:
                raise self._lost(sent=True)
            if "ok" in answer:
                return answer["ok"]
            if "error" in answer:
                raise _remote_error(self.connection.resource, answer)
            if on_event is not None:
                on_event(answer)

    def _receive(self, sent: bool) -> dict[str, Any] | None:
        try:
            return protocol.receive(self.answers)
        except protocol.ProtocolError as error:
            self.close()
            raise RemoteError(f"{self.connection.resource.name}: {error} (does a startup file "
                              "there, such as ~/.bashrc, print to stdout? is remote_jobbridge "
                              "a jobbridge?)") from None
        except OSError:
            raise self._lost(sent) from None

    def _ended(self) -> tuple[int, str]:
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._drain.join(timeout=5)
        return code, bytes(self.errors).decode("utf-8", "replace")

    def _lost(self, sent: bool) -> _Lost:
        code, errors = self._ended()
        resource = self.connection.resource
        why = stderr_tail(errors) or f"it closed (ssh exit status {code})"
        return _Lost(f"lost the connection to {resource.name} ({resource.destination}): {why}",
                     sent)

    def _failed_start(self) -> RemoteError:
        """Why no hello came: ssh failed, jobbridge is missing there, or too old."""
        code, errors = self._ended()
        resource = self.connection.resource
        command = " ".join(resource.remote_jobbridge)
        if code == SSH_FAILED or code < 0:  # the master connection was up a moment ago
            return self._lost(sent=False)
        if code in (126, 127) or "No module named jobbridge" in errors:
            return RemoteError(
                f"jobbridge is not installed on {resource.name} ({resource.destination}): "
                f"{stderr_tail(errors) or f'{command!r} cannot run'}; install it there "
                f"({INSTALL}) or set remote_jobbridge in [{resource.name}] to the command "
                "that runs it")
        if "remote-serve" in errors:
            return RemoteError(
                f"version mismatch: the jobbridge on {resource.name} has no remote-serve "
                f"(older than this jobbridge {__version__}): install the same version there "
                f"({INSTALL})")
        return RemoteError(f"{command} remote-serve failed on {resource.name} "
                           f"(exit status {code}): {stderr_tail(errors) or 'no message'}")

    def close(self) -> None:
        """Close stdin (the server exits) and reap ssh."""
        with contextlib.suppress(OSError):
            self.requests.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.answers.close()


def _remote_error(resource: RemoteResource, answer: dict[str, Any]) -> Exception:
    """The exception a final ``error`` answer stands for, as a local call would raise."""
    text = f"{resource.name}: {answer['error']}"
    kind = answer.get("kind")
    if kind == protocol.TIMEOUT:
        return TimeoutError(text)
    return (InputError if kind == protocol.INPUT else JobbridgeError)(text)


class RemoteController:
    """The workflows of one remote resource, with ids shown as ``NAME:ID``."""

    def __init__(self, resource: RemoteResource, home: Path | None = None,
                 prompt: bool | None = None) -> None:
        self.resource = resource
        self.connection = SshConnection(resource, home, prompt)
        self._session: Session | None = None
        self._connected = False  # the host was reached: a later failure is a dropped connection
        self._soma_workflow: str | None = None  # what soma-workflow's transfer_files acts on

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # --- ids -------------------------------------------------------------------------------
    def local_id(self, workflow_id: str) -> str:
        """``12`` for ``cluster:12`` (or ``12``)."""
        number = workflow_id.removeprefix(f"{self.resource.name}:")
        if not number:
            raise InputError(f"workflow {workflow_id!r}: no id after ':' (RESOURCE:ID)")
        return number

    def shown_id(self, workflow_id: object) -> str:
        return f"{self.resource.name}:{workflow_id}"

    # --- requests ---------------------------------------------------------------------------
    def submit(self, workflow: Any, resource: str | None = None,
               scheduler_type: str | None = None, copying: Copying | None = None) -> str:
        """Send the workflow (a file, a dict, an API ``Workflow``) to the host's engine,
        then its input files (``copying`` is told the progress); its id. Checked here
        first, input files included, so a bad file fails before any connection. A copy
        that fails deletes the workflow there: nothing is left half done."""
        data, source, surrogates = _workflow_data(workflow)
        client_dir = (str(Path(source).parent.resolve()) if isinstance(workflow, str | os.PathLike)
                      else os.getcwd())
        placement = Placement(Path("/"), client_dir=client_dir)  # transfers: client paths
        with gc_paused():
            spec = workflow_from_data(data, source, Path(client_dir), check_unicode=surrogates,
                                      to_run=False, placement=placement)
        check_inputs(spec.transfers)
        number = self._call({"op": "submit", "workflow": data, "source": source,
                             "resource": self.resource.remote_resource,
                             "client_dir": client_dir}, repeat=False)
        workflow_id = self.shown_id(number)
        if any(transfer.sent for transfer in spec.transfers):
            try:
                self.transfer(workflow_id, outputs=False, copying=copying)
            except BaseException:
                with contextlib.suppress(JobbridgeError):
                    self.close()  # an interrupted copy may have left the session mid-request
                    self.request(workflow_id, "delete")
                raise
        return workflow_id

    def transfer(self, workflow_id: str, outputs: bool, folder: str | None = None,
                 copying: Copying | None = None, paths: Collection[str] | None = None
                 ) -> list[str]:
        """Copy the workflow's input files to the host (those not there yet), or its
        outputs the jobs wrote back here (to their client paths, or into ``folder``);
        what was copied, one line each. ``paths``: only the transfers at these paths
        on the host."""
        number = self.local_id(workflow_id)
        listed = self._call({"op": "transfers", "workflow": number})
        sending = (FILES_ON_CLIENT, TRANSFERING_FROM_CLIENT_TO_CR)
        wanted = [item for item in listed if (paths is None or item["path"] in paths) and (
            item.get("output") and item["status"] in ON_RESOURCE if outputs
            else item.get("input") and not item.get("output") and item["status"] in sending)]
        chosen = [transfer_from(item) for item in wanted]
        total = (sum(int(item.get("size") or 0) for item in wanted) if outputs
                 else tree_size(item for t in chosen for item in t.client_items()))
        progress = TransferProgress("", total, sending=not outputs)
        said = []
        for transfer in chosen:
            progress.name = transfer.name
            if outputs:
                target = destination(transfer, folder)
                self._mark(number, transfer, TRANSFERING_FROM_CR_TO_CLIENT)
                try:
                    receive(self.connection, transfer, target, progress, copying)
                except BaseException:  # failed or interrupted: still (only) there
                    with contextlib.suppress(JobbridgeError):
                        self._mark(number, transfer, FILES_ON_CR)
                    raise
                self._mark(number, transfer, FILES_ON_CLIENT_AND_CR)
                said.append(f"{transfer.name}: {self.resource.name}:{transfer.path} -> {target}")
            else:
                self._mark(number, transfer, TRANSFERING_FROM_CLIENT_TO_CR)
                send(self.connection, transfer, progress, copying)
                self._mark(number, transfer, FILES_ON_CR)
                said.append(f"{transfer.name}: {transfer.client_path} -> "
                            f"{self.resource.name}:{transfer.path}")
        if chosen and copying is not None:
            progress.finished = True
            copying(progress)
        if not chosen:
            what = "output files written" if outputs else "input files to send"
            said.append(f"nothing to copy: no {what} on {self.resource.name} yet"
                        if outputs else f"nothing to copy: no {what}")
        return said

    # --- soma-workflow's Helper.transfer_input_files / transfer_output_files ----------------
    def workflow_elements_status(self, workflow_id: str) -> tuple[list[Any], list[Any], str,
                                                                   None, list[Any]]:
        """What soma-workflow's ``Helper`` reads to copy a workflow's files: its
        transfers, as soma-workflow's controller lists them (no jobs)."""
        status = self.status(workflow_id)
        transfers = [transfer_from(item).soma_status(item["status"])
                     for item in status.get("transfers", ())]
        self._soma_workflow = workflow_id
        return [], transfers, status["status"], None, []

    def transfer_files(self, transfer_ids: Iterable[str] | str, buffer_size: int = 0) -> None:
        """soma-workflow's: copy these transfers (their paths on the host) of the
        workflow ``workflow_elements_status`` last read, the inputs there, the outputs
        back to their client paths."""
        del buffer_size
        if self._soma_workflow is None:
            raise InputError("transfer_files: call workflow_elements_status first (soma-"
                             "workflow's Helper does)")
        wanted = {transfer_ids} if isinstance(transfer_ids, str) else set(transfer_ids)
        for outputs in (False, True):
            self.transfer(self._soma_workflow, outputs, paths=wanted)

    def _mark(self, number: str, transfer: Transfer, status: str) -> None:
        self._call({"op": "transfer_status", "workflow": number, "names": [transfer.name],
                    "status": status})

    def run(self, workflow: Any, resource: str | None = None, scheduler_type: str | None = None,
            progress: Callable[[Progress], None] | None = None,
            starting: Callable[[Configuration], None] | None = None,
            copying: Copying | None = None) -> str:
        """Submit, then wait for the end; Ctrl-C stops the workflow there. ``starting``
        is told the resource it runs on there (``cluster:slurm``)."""
        workflow_id = self.submit(workflow, copying=copying)
        try:
            if starting is not None:
                status = self.status(workflow_id)
                starting(Configuration.from_dict(status["resource"],
                                                 {"scheduler_type": status["scheduler_type"]}))
            self.wait(workflow_id, progress=progress)
        except KeyboardInterrupt:
            self.close()  # the session died with the interrupted ssh
            self.request(workflow_id, "stop")
            raise
        return workflow_id

    def list(self) -> list[dict[str, Any]]:
        workflows: list[dict[str, Any]] = self._call({"op": "list"})
        for workflow in workflows:
            workflow["id"] = self.shown_id(workflow["id"])
        return workflows

    def status(self, workflow_id: str | None = None) -> dict[str, Any]:
        """``cluster:12``'s status object; ``cluster:`` (or None) the latest workflow's."""
        latest = workflow_id is None or workflow_id == f"{self.resource.name}:"
        status: dict[str, Any] = self._call({
            "op": "status", "workflow": None if latest else self.local_id(workflow_id or "")})
        return self._shown(status)

    def wait(self, workflow_id: str, timeout: float | None = None,
             progress: Callable[[Progress], None] | None = None) -> dict[str, Any]:
        """Block until the workflow has ended there; its status object. Survives a
        dropped connection (reconnects several times, backing off)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def on_event(event: dict[str, Any]) -> None:
            update = event.get("progress")
            if progress is not None and isinstance(update, dict):
                progress(Progress(int(update["workflow"]), int(update["total"]),
                                  dict(update["counts"])))

        def message() -> dict[str, Any]:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            return {"op": "wait", "workflow": self.local_id(workflow_id), "timeout": left}

        status: dict[str, Any] = self._call(message, on_event, pauses=WAIT_RECONNECTS)
        return self._shown(status)

    def request(self, workflow_id: str, action: str) -> str:
        """What the host did: ``stop requested``, ``nothing to restart (...)``."""
        said = self._call({"op": "request", "workflow": self.local_id(workflow_id),
                           "action": action})
        return str(said or f"{action} requested")  # an older host answers nothing

    def logs(self, workflow_id: str, job_id: str, stderr: bool, sink: IO[bytes]) -> None:
        """Copy a job's stdout (or stderr) file from the host to ``sink``."""
        def on_event(event: dict[str, Any]) -> None:
            if "data" in event:
                sink.write(base64.b64decode(event["data"]))

        self._call({"op": "logs", "workflow": self.local_id(workflow_id), "job": job_id,
                    "stderr": stderr}, on_event, repeat=False)
        sink.flush()

    def report(self, workflow_id: str | None, form: str) -> str:
        """``jobbridge report``'s text for a workflow there (``cluster:`` or None: the
        latest), built by the host."""
        latest = workflow_id is None or workflow_id == f"{self.resource.name}:"
        return str(self._call({"op": "report", "form": form,
                               "workflow": None if latest else self.local_id(workflow_id or "")}))

    # --- the dashboard (jobbridge ui) ------------------------------------------------------
    def ui_view(self, view: str, workflow_id: str | None, params: Mapping[str, str]) -> Any:
        """A view of the host's dashboard (``jobbridge.ui.views.read`` there): what
        its own ``jobbridge ui`` answers, ids as the host has them."""
        return self._call({"op": "ui", "view": view, "params": dict(params),
                           "workflow": None if workflow_id is None
                           else self.local_id(workflow_id)})

    def kill_job(self, workflow_id: str, job_id: str) -> None:
        """Kill one job of a workflow there (the dashboard's Kill)."""
        self._call({"op": "kill", "workflow": self.local_id(workflow_id), "job": job_id},
                   repeat=False)

    # --- plumbing ---------------------------------------------------------------------------
    def _shown(self, status: dict[str, Any]) -> dict[str, Any]:
        status["id"] = self.shown_id(status["id"])
        status["resource"] = f"{self.resource.name}:{status['resource']}"
        return status

    def _call(self, message: dict[str, Any] | Callable[[], dict[str, Any]],
              on_event: Callable[[dict[str, Any]], None] | None = None,
              repeat: bool = True, pauses: tuple[float, ...] = RECONNECTS) -> Any:
        """One request. After a connection that worked dropped, connect again (a host
        that cannot be reached at all is reported at once): when the request was not
        sent yet, or when asking again is harmless (``repeat``)."""
        attempt = 0
        while True:
            try:
                if self._session is None:
                    self.connection.ensure_master()
                    self._connected = True
                    self._session = Session(self.connection)
                return self._session.request(message() if callable(message) else message,
                                             on_event)
            except ConnectionLost as error:
                self.close()
                sent = isinstance(error, _Lost) and error.sent
                if sent and not repeat:
                    raise RemoteError(f"{error} (the request may or may not have been "
                                      "carried out: see jobbridge list --resource "
                                      f"{self.resource.name})") from None
                if not self._connected or attempt >= len(pauses):
                    raise
                log.warning("%s; connecting again in %g s", error, pauses[attempt])
                time.sleep(pauses[attempt])
                attempt += 1
            except RemoteError:
                self.close()
                raise


def _workflow_data(workflow: Any) -> tuple[Any, str, bool]:
    """The workflow as JSON data, where it comes from (for messages), and whether
    its strings need the lone-surrogate check."""
    if isinstance(workflow, str | os.PathLike):
        data, surrogates = read_workflow_json(Path(workflow))
        return data, str(workflow), surrogates
    if hasattr(workflow, "to_dict"):
        return workflow.to_dict(), "workflow", True
    if isinstance(workflow, dict):
        return workflow, "workflow", True
    raise InputError("a remote resource takes a workflow file, a dict or a Workflow "
                     f"(not {type(workflow).__name__}): its paths are the host's")
