"""``jobbridge remote-serve``: the cluster side of a remote resource.

Started over SSH by a laptop's command, it answers that command's requests
(:mod:`.protocol`) with this machine's own store, configuration and background
engine, then exits. The engine it starts (``submit``, ``restart``...) runs in
its own session: it keeps running when the SSH connection goes away.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from ..controller import WorkflowController, resolve_config
from ..dynamic import FILES_ON_CR, ON_RESOURCE, TRANSFER_STATUSES, Placement, Transfer
from ..engine import Progress
from ..errors import InputError, JobbridgeError
from ..model import workflow_from_data
from . import protocol
from .transfer import tree_size

#: Seconds between two progress messages of a ``wait`` even when nothing changes:
#: a client that went away is noticed (the write fails) and this process ends.
HEARTBEAT = 5.0
#: Bytes of a log file per ``data`` message.
CHUNK = 1 << 16

Emit = Callable[[dict[str, Any]], None]


def serve(home: str | None) -> int:
    """Answer requests on stdin/stdout until stdin closes."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (ours, a library's) must not corrupt the protocol
    requests = sys.stdin.buffer
    controller: WorkflowController | None = None
    broken: JobbridgeError | None = None
    if home:  # also for what reads the variable (the engine, the schedulers)
        os.environ["JOBBRIDGE_HOME"] = home = os.path.expanduser(home)
    try:
        controller = WorkflowController(home)
    except JobbridgeError as error:
        broken = error  # said in answer to each request
    protocol.send(channel, {"jobbridge": __version__, "protocol": protocol.PROTOCOL,
                            "home": str(controller.store.home) if controller else None})
    try:
        while (request := protocol.receive(requests)) is not None:
            protocol.send(channel, _answer(controller, broken, request,
                                           lambda event: protocol.send(channel, event)))
    except (BrokenPipeError, ConnectionResetError):
        return 1  # the client went away: what it asked for is stored, the engine goes on
    except protocol.ProtocolError as error:
        print(f"jobbridge remote-serve: {error}", file=sys.stderr)
        return 2
    finally:
        if controller is not None:
            controller.close()
    return 0


def _answer(controller: WorkflowController | None, broken: JobbridgeError | None,
            request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """The final message answering one request."""
    handler = _OPERATIONS.get(str(request.get("op")))
    try:
        if handler is None:
            raise InputError(f"unknown request {request.get('op')!r} (this jobbridge "
                             f"{__version__} speaks remote protocol {protocol.PROTOCOL})")
        if controller is None:
            assert broken is not None
            raise broken
        return {"ok": handler(controller, request, emit)}
    except InputError as error:
        return {"error": str(error), "kind": protocol.INPUT}
    except TimeoutError as error:
        return {"error": str(error), "kind": protocol.TIMEOUT}
    except JobbridgeError as error:
        return {"error": str(error), "kind": protocol.FAILED}
    except (KeyError, TypeError, ValueError) as error:  # a malformed request
        return {"error": f"bad request {request.get('op')!r}: {error!r}",
                "kind": protocol.INPUT}


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _submit(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> str:
    """Validate the workflow here: its paths are this machine's, relative ones
    relative to the directory the SSH session starts in (the home directory), its
    temporary paths under this resource's scratch directory. A soma-workflow
    document's env_builder_code runs here; the engine writes its parameters files
    here."""
    placement = Placement.for_resource(resolve_config(request.get("resource")),
                                       controller.store.home)
    client_dir = request.get("client_dir")
    if isinstance(client_dir, str):  # the client copies the transfers: here, in a folder
        placement.client_dir = client_dir  # of the workflow's (an older client: paths)
        placement.transfer_folder = (controller.store.home / "transfers"
                                     / placement.temporary_folder.name)
    spec = workflow_from_data(request["workflow"], str(request.get("source") or "workflow"),
                              Path.cwd(), placement=placement)
    return controller.submit(spec, resource=request.get("resource"))


def _list(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> Any:
    return controller.list()


def _status(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> Any:
    workflow = request.get("workflow")
    return controller.status(None if workflow is None else _text(request, "workflow"))


def _wait(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> Any:
    workflow = _text(request, "workflow")
    timeout = request.get("timeout")
    deadline = None if timeout is None else time.monotonic() + float(timeout)

    def progress(update: Progress) -> None:
        emit({"progress": {"workflow": str(update.workflow_id), "total": update.total,
                           "counts": update.counts}})

    while True:
        left = HEARTBEAT if deadline is None else min(HEARTBEAT, deadline - time.monotonic())
        try:
            return controller.wait(workflow, max(left, 0.0), progress=progress)
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise
        # each slice reports the progress again: the heartbeat


def _request(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> str:
    return controller.request(_text(request, "workflow"), _text(request, "action"))


def _logs(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> int:
    """Stream a job's stdout (or stderr) file; its size."""
    path = controller.log_file(_text(request, "workflow"), _text(request, "job"),
                               bool(request.get("stderr")))
    size = 0
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                emit({"data": base64.b64encode(chunk).decode("ascii")})
    except FileNotFoundError:
        raise JobbridgeError(f"{path} does not exist (yet)") from None
    except OSError as error:
        raise JobbridgeError(f"cannot read {path}: {error.strerror}") from None
    return size


def _transfers(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> Any:
    """The workflow's transfers (``status --json``'s), with the size of those here."""
    listed = []
    workflow = controller.store.workflow(_text(request, "workflow"))  # an unknown id: error
    for row in controller.store.transfers(workflow.id):
        item = row.as_json()
        if item["status"] in ON_RESOURCE:
            item["size"] = tree_size([row.transfer.path])
        listed.append(item)
    return listed


def _transfer_status(controller: WorkflowController, request: dict[str, Any], emit: Emit
                     ) -> None:
    """Record where transfers are; an input said to be here must be here, whole."""
    workflow, status = _text(request, "workflow"), _text(request, "status")
    controller.store.workflow(workflow)  # an unknown id: error
    if status not in TRANSFER_STATUSES:
        raise InputError(f"unknown transfer status {status!r}")
    rows = {row.transfer.name: row for row in controller.store.transfers(workflow)}
    names = request["names"]
    for name in names:
        if name not in rows:
            raise InputError(f"workflow {workflow} has no transfer {name!r}")
        transfer = rows[name].transfer
        if status == FILES_ON_CR:
            missing = [item for item in _resource_items(transfer)
                       if not os.path.lexists(item)]
            if missing:
                raise JobbridgeError(f"transfer {name!r}: {missing[0]!r} is not here")
    controller.store.set_transfer_status(workflow, names, status)


def _resource_items(transfer: Transfer) -> list[str]:
    if transfer.files is None:
        return [transfer.path]
    return [os.path.join(transfer.path, name) for name in transfer.files]


def _ui(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> Any:
    """A view of this machine's dashboard, for a laptop's ``jobbridge ui``: what
    this machine's own ``jobbridge ui`` would answer (jobbridge.ui.views, which
    needs no web server)."""
    from ..ui import views

    workflow = request.get("workflow")
    params = request.get("params") or {}
    if not isinstance(params, dict) or not all(
            isinstance(v, str) for v in params.values()):
        raise TypeError("params must be an object of strings")
    return views.read(controller.store, _text(request, "view"),
                      None if workflow is None else int(_text(request, "workflow")), params)


def _report(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> str:
    """``jobbridge report``'s text (``form``: table, tsv, json or html), built here,
    where the attempts are."""
    from .. import report

    form = _text(request, "form")
    if form not in report.FORMS:
        raise TypeError(f"form must be one of {', '.join(report.FORMS)}")
    workflow = request.get("workflow")
    store = controller.store
    return report.render(report.build_report(
        store, store.latest_workflow_id() if workflow is None else _text(request, "workflow")),
        form)


def _kill(controller: WorkflowController, request: dict[str, Any], emit: Emit) -> None:
    controller.kill_job(_text(request, "workflow"), _text(request, "job"))


_OPERATIONS: dict[str, Callable[[WorkflowController, dict[str, Any], Emit], Any]] = {
    "submit": _submit, "list": _list, "status": _status, "wait": _wait,
    "request": _request, "logs": _logs, "transfers": _transfers,
    "transfer_status": _transfer_status, "ui": _ui, "kill": _kill, "report": _report}

