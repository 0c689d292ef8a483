"""soma-workflow users switch to jobbridge: its client API, its workflow files, its configuration.

Install the extra (``pip install 'jobbridge[soma]'``, which brings the real
soma-workflow), then either change one import::

    from jobbridge.compat.soma_workflow import WorkflowController

or keep soma-workflow code as it is and call, once, before it runs::

    import jobbridge.compat.soma_workflow
    jobbridge.compat.soma_workflow.install()

Workflows are still built with soma-workflow's own classes (``Job``,
``Workflow``, ``Group``, ``BarrierJob``, ``Helper``); jobbridge's store and
engine run them. See docs/soma-workflow.md for what differs and what is not
supported yet.

Reading soma-workflow's workflow files (:mod:`.workflow_file`) and configuration
files (:mod:`.config`) needs no soma-workflow: ``jobbridge run FILE.workflow``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WorkflowController", "install", "uninstall"]

_original: Any = None


def install() -> None:
    """Make ``soma_workflow.client.WorkflowController`` jobbridge's, for code that imports
    it afterwards (``from soma_workflow.client import WorkflowController``) and for code
    that looks it up on the module (``Helper`` calls, ``client.WorkflowController(...)``)."""
    global _original
    import soma_workflow.client

    from .controller import WorkflowController

    if soma_workflow.client.WorkflowController is not WorkflowController:
        _original = soma_workflow.client.WorkflowController
        soma_workflow.client.WorkflowController = WorkflowController


def uninstall() -> None:
    """Give soma-workflow its own ``WorkflowController`` back."""
    global _original
    import soma_workflow.client

    if _original is not None:
        soma_workflow.client.WorkflowController = _original
        _original = None


def __getattr__(name: str) -> Any:
    if name == "WorkflowController":  # imports soma-workflow: only when asked for
        from .controller import WorkflowController

        return WorkflowController
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
