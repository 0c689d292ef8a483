"""Remote resources in ``jobbridge ui``: the workflows of each remote resource of
the configuration, read through the remote protocol's ``ui`` request
(docs/remote.md), ids shown as ``cluster:12``.

The dashboard never waits on a host to show its workflows page: one thread per
host asks for its list every few seconds and keeps the last answer, or why the
host cannot be reached, which the page shows. A remote workflow's own pages are
asked for when opened (one channel of the host's master connection), and
refused at once while the host is unreachable. Nothing here prompts: ssh runs
in BatchMode (on a site with a second factor, open the master connection first
with any command in a terminal, e.g. ``jobbridge list -r cluster``).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..configuration import configured_sections
from ..errors import InputError, JobbridgeError
from . import load_remote
from .client import RemoteController
from .ssh import ConnectionLost, RemoteError

#: Seconds between two reads of a reachable host's workflows, and of one that was not.
POLL_INTERVAL = 5.0
RETRY_INTERVAL = 15.0
#: Longest wait for a host busy answering another page (one request at a time), and
#: for one still being connected to (a silent host keeps ssh until its ConnectTimeout).
BUSY_TIMEOUT = 20.0
CONNECTING_TIMEOUT = 2.0

T = TypeVar("T")


class HostUnavailable(JobbridgeError):
    """The host cannot answer now (unreachable, busy, or its jobbridge unusable)."""


@dataclass
class _Host:
    """One remote resource: its connection and what was last learnt of it."""

    name: str
    controller: RemoteController | None
    destination: str = ""
    #: connecting (not asked yet), ok, unreachable, error (configuration, version)
    state: str = "connecting"
    error: str | None = None
    workflows: list[dict[str, Any]] = field(default_factory=list)
    checked: float | None = None
    #: the other resources reaching the same jobbridge there
    also: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "destination": self.destination, "state": self.state,
                "error": self.error, "checked": self.checked, "also": self.also,
                "workflows": self.workflows}


class RemoteDashboards:
    """The remote resources of the configuration file, as the dashboard shows them;
    ``on_change`` is called (from a poller thread) when a host's list or state
    changed, so that open pages refresh."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        self.hosts: dict[str, _Host] = {}
        #: the other names of a host's jobbridge (sections differing in remote_resource
        #: only, say): the same workflows, listed once under the first name
        self.aliases: dict[str, str] = {}
        self._stop = threading.Event()
        seen: dict[tuple[Any, ...], str] = {}
        for name in configured_sections("host"):
            try:
                resource = load_remote(name)
            except JobbridgeError as error:  # said on the page; the others still work
                self.hosts[name] = _Host(name, None, state="error", error=str(error))
                continue
            same = (resource.host, resource.user, resource.ssh_options,
                    resource.remote_jobbridge, resource.remote_home)
            if same in seen:
                self.aliases[name] = seen[same]
                self.hosts[seen[same]].also.append(name)
                continue
            seen[same] = name
            self.hosts[name] = _Host(name, RemoteController(resource, prompt=False),
                                     resource.destination)

    def start(self) -> None:
        for host in self.hosts.values():
            if host.controller is not None:
                threading.Thread(target=self._poll, args=(host,), daemon=True,
                                 name=f"jobbridge-ui-{host.name}").start()

    def stop(self) -> None:
        """Stop polling and end the sessions (the master connections persist)."""
        self._stop.set()
        for host in self.hosts.values():
            if host.controller is not None and host.lock.acquire(timeout=1):
                try:
                    host.controller.close()
                finally:
                    host.lock.release()

    def summary(self) -> list[dict[str, Any]]:
        """Each host: its state, why it is not reachable, its workflows when it was."""
        return [host.summary() for host in self.hosts.values()]

    # --- a remote workflow's pages and actions ------------------------------------------------
    def view(self, resource: str, number: int, view: str, params: Mapping[str, str]) -> Any:
        """A view of one of the host's workflows, its ids shown as ``RESOURCE:ID``."""
        host = self._host(resource)
        shown = f"{resource}:{number}"
        answer = self._call(host, lambda c: c.ui_view(view, shown, params))
        if view == "":
            _shown(resource, answer)
        elif view == "job":
            answer["workflow"]["id"] = shown
            answer["resource"] = f"{resource}:{answer['resource']}"
        return answer

    def request(self, resource: str, number: int, action: str) -> str:
        return self._call(self._host(resource),
                          lambda c: c.request(f"{resource}:{number}", action))

    def kill_job(self, resource: str, number: int, job_id: str) -> None:
        self._call(self._host(resource), lambda c: c.kill_job(f"{resource}:{number}", job_id))

    def output(self, resource: str, number: int, job_id: str, stderr: bool) -> bytes:
        """A job's whole stdout or stderr file, from the host."""
        sink = io.BytesIO()
        self._call(self._host(resource),
                   lambda c: c.logs(f"{resource}:{number}", job_id, stderr, sink))
        return sink.getvalue()

    # --- plumbing ---------------------------------------------------------------------------
    def _host(self, resource: str) -> _Host:
        host = self.hosts.get(self.aliases.get(resource, resource))
        if host is None:
            raise InputError(f"no workflow of {resource!r}: no remote resource of that name "
                             "in the configuration")
        if host.state in ("unreachable", "error"):
            raise HostUnavailable(f"{resource} is unreachable: {host.error}"
                                  if host.state == "unreachable" else str(host.error))
        return host

    def _call(self, host: _Host, request: Callable[[RemoteController], T]) -> T:
        """One request to the host, after the one it is answering; a host that cannot
        be reached is marked so (the next pages are refused at once)."""
        assert host.controller is not None
        connecting = host.state == "connecting"
        if not host.lock.acquire(timeout=CONNECTING_TIMEOUT if connecting else BUSY_TIMEOUT):
            raise HostUnavailable(
                f"{host.name}: still connecting to {host.destination}" if connecting else
                f"{host.name} is busy: no answer to an earlier request within "
                f"{BUSY_TIMEOUT:g} s")
        try:
            return request(host.controller)
        except ConnectionLost as error:
            self._set(host, "unreachable", str(error), host.workflows)
            raise HostUnavailable(str(error)) from None
        except RemoteError as error:  # reached, but unusable: jobbridge missing, versions
            self._set(host, "error", str(error), [])
            raise HostUnavailable(str(error)) from None
        finally:  # any other error is the host's answer (no such job, no file yet...)
            host.lock.release()

    def _poll(self, host: _Host) -> None:
        while not self._stop.is_set():
            self._refresh(host)
            self._stop.wait(POLL_INTERVAL if host.state == "ok" else RETRY_INTERVAL)

    def _refresh(self, host: _Host) -> None:
        try:
            listed = self._call(host, lambda c: c.ui_view("workflows", None, {}))
        except HostUnavailable:
            return  # marked unreachable by _call (or busy: asked again later)
        except InputError as error:  # an older jobbridge there: no "ui" request
            self._set(host, "error", f"{error} (install the same jobbridge version there "
                                     "to see its workflows here)", [])
            return
        except JobbridgeError as error:  # its jobbridge failed to answer (its store...)
            self._set(host, "error", str(error), [])
            return
        self._set(host, "ok", None, [_shown(host.name, workflow) for workflow in listed])

    def _set(self, host: _Host, state: str, error: str | None,
             workflows: list[dict[str, Any]]) -> None:
        changed = (host.state, host.error, host.workflows) != (state, error, workflows)
        host.state, host.error, host.workflows = state, error, workflows
        host.checked = time.time()
        if changed:
            self.on_change()


def _shown(resource: str, workflow: dict[str, Any]) -> dict[str, Any]:
    """A workflow summary of the host as the laptop shows it (``cluster:12``, on
    ``cluster:slurm``)."""
    workflow["id"] = f"{resource}:{workflow['id']}"
    workflow["resource"] = f"{resource}:{workflow['resource']}"
    workflow["remote"] = resource
    return workflow
