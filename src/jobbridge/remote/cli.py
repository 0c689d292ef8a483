"""The command line's hooks for remote resources (kept out of ``jobbridge.cli``).

``controller_for`` gives the commands a :class:`RemoteController` for a remote
id (``cluster:12``) or resource (``--resource cluster``), so that ``submit``,
``run``, ``list``, ``status``, ``wait``, ``stop``, ``restart`` and ``delete`` are the
same code, and the same output, as for this machine's workflows;
``remote_handler`` takes the commands that differ (``logs``, ``remote-serve``)
or make no sense on a remote workflow.
"""

from __future__ import annotations

import argparse
import atexit
import sys
from collections.abc import Callable
from pathlib import Path

from ..configuration import Configuration
from ..controller import WorkflowController
from ..errors import InputError
from . import RemoteResource, is_remote, load_remote, remote_resource, split_remote_id
from .client import RemoteController

Handler = Callable[[argparse.Namespace], int]


def extend_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``remote-serve`` and ``list --resource``."""
    what = ("answer a remote resource's requests on stdin/stdout (run over SSH by a "
            "laptop's jobbridge: docs/remote.md)")
    p = sub.add_parser("remote-serve", help=what, description=what[0].upper() + what[1:] + ".")
    p.add_argument("--home", help="the JOBBRIDGE_HOME to use (default: this account's)")
    sub.choices["list"].add_argument("--resource", "-r", help="list a remote resource's "
                                     "workflows (ids RESOURCE:ID)")


def controller_for(args: argparse.Namespace) -> WorkflowController | RemoteController:
    """The controller a command acts through: a remote resource's, or this machine's."""
    resource = _remote_target(args)
    if resource is None:
        return WorkflowController()
    controller = RemoteController(resource)
    atexit.register(controller.close)
    return controller


def remote_handler(args: argparse.Namespace) -> Handler | None:
    """The handler of a command on a remote resource when it is not the local one's."""
    if args.command == "remote-serve":
        return _serve
    if args.command not in ("logs", "graph", "check") or _remote_target(args) is None:
        return None
    if args.command == "logs":
        return _logs
    return _unsupported


def _remote_target(args: argparse.Namespace) -> RemoteResource | None:
    """The remote resource named by the command's id or resource; None if local."""
    workflow = getattr(args, "workflow", None)
    if workflow is not None and not (args.command == "graph" and Path(workflow).exists()):
        split = split_remote_id(workflow)
        return None if split is None else load_remote(split[0])
    if args.command == "list":
        return None if args.resource is None else load_remote(args.resource)
    if args.command in ("run", "submit", "check") and args.scheduler is None:
        config = Configuration.load(args.resource)  # the default resource may be remote
        return remote_resource(config) if is_remote(config) else None
    return None


def _serve(args: argparse.Namespace) -> int:
    from .server import serve

    return serve(args.home)


def _logs(args: argparse.Namespace) -> int:
    controller = controller_for(args)
    assert isinstance(controller, RemoteController)
    controller.logs(args.workflow, args.job, args.stderr, sys.stdout.buffer)
    return 0


def _unsupported(args: argparse.Namespace) -> int:
    where = getattr(args, "workflow", None) or args.resource
    raise InputError(f"jobbridge {args.command} does not work on remote {where!r}: run it on "
                     "the host")
