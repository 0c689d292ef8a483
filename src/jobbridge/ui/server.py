"""The dashboard's HTTP side: access token, JSON API, live events, actions.

Starlette routes the requests and uvicorn serves them (docs/ui.md says why these
two). Handlers that read the store are plain functions, which Starlette runs in
its thread pool, each borrowing one of a few store connections; the one coroutine
that matters is the event stream, woken by :class:`StoreWatcher` when another
connection (an engine, a submit, an action) commits.

Security (docs/ui.md): every request needs the random token, given once in the
printed URL and then kept in a cookie; actions are POSTs that also need a CSRF
header only the page can know, or the token as a bearer header (scripts).
"""

from __future__ import annotations

import asyncio
import errno
import getpass
import hashlib
import hmac
import ipaddress
import mimetypes
import os
import queue
import secrets
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import controller as control
from ..errors import InputError, JobbridgeError
from ..remote import split_remote_id
from ..remote.dashboard import HostUnavailable, RemoteDashboards
from ..report import SVG_STYLE
from . import views

STATIC = Path(__file__).parent / "static"
#: How often the store is asked whether another connection committed.
WATCH_INTERVAL = 0.25
#: A comment line on idle event streams, so that proxies and ssh keep them open.
KEEPALIVE = 15.0
_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
REFUSED = ("jobbridge ui: this address needs its access token: open the URL that "
           "`jobbridge ui` printed (it ends with ?token=...)\n")


# --- access --------------------------------------------------------------------------------------


class TokenGuard:
    """Refuses every request without the token (cookie or ``Authorization: Bearer``),
    and every unsafe method without the CSRF header or the bearer token.

    ``?token=`` in a URL sets the cookie and redirects to the same URL without it,
    so the token leaves the address bar and the history."""

    def __init__(self, app: ASGIApp, token: str, cookie: str) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie = cookie
        self.csrf = csrf_token(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        send = _with_headers(send)
        given = request.query_params.get("token")
        if given is not None:
            await self._login(request, given)(scope, receive, send)
            return
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        by_bearer = self._valid(bearer)
        if not (by_bearer or self._valid(request.cookies.get(self.cookie, ""))):
            await PlainTextResponse(REFUSED, 403)(scope, receive, send)
            return
        if request.method not in ("GET", "HEAD") and not by_bearer and not self._same_site(
                request):
            await PlainTextResponse("jobbridge ui: refused: an action must come from the "
                                    "dashboard's own page (CSRF check)\n", 403)(
                scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _valid(self, token: str) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), self.token)

    def _same_site(self, request: Request) -> bool:
        header = request.headers.get("x-csrf-token", "")
        origin = request.headers.get("origin")
        host = request.headers.get("host", "")
        return (hmac.compare_digest(header.encode(), self.csrf.encode())
                and origin in (None, f"{request.url.scheme}://{host}"))

    def _login(self, request: Request, given: str) -> Response:
        if not self._valid(given) or request.method != "GET":
            return PlainTextResponse(REFUSED, 403)
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = request.url.path + ("?" + urlencode(query) if query else "")
        response = RedirectResponse(target, 303)
        response.set_cookie(self.cookie, self.token.decode(), httponly=True, samesite="strict",
                            path="/")
        return response


def _with_headers(send: Send) -> Send:
    """``send`` adding the security headers, and ``no-store`` unless a response says."""
    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            headers += [h for h in _SECURITY_HEADERS if h[0] not in names]
            if b"cache-control" not in names:
                headers.append((b"cache-control", b"no-store"))
            message["headers"] = headers
        await send(message)

    return sending


def csrf_token(token: str) -> str:
    """The value POSTs from the page carry in ``X-CSRF-Token``: derived from the
    token, written into the page, unreadable to other sites."""
    return hmac.new(token.encode(), b"jobbridge-ui-csrf", hashlib.sha256).hexdigest()


# --- live events ---------------------------------------------------------------------------------


class StoreWatcher:
    """Counts the commits of other connections to the store (``PRAGMA data_version``)
    and wakes the event streams: one cheap poll for all open pages. :meth:`stop` ends
    the streams, so that Ctrl-C does not wait on the browsers still open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = 0
        self.stopped = False
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        """End the event streams (from any thread, a signal handler's included)."""
        def wake() -> None:
            self.stopped = True
            self._changed.set()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(wake)

    def poke(self) -> None:
        """Wake the event streams from another thread: what a page shows changed
        elsewhere (a remote host's workflows)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        db = sqlite3.connect(self.path)
        try:
            last = None
            while True:
                current = db.execute("PRAGMA data_version").fetchone()[0]
                if current != last:
                    last = current
                    self._bump()
                await asyncio.sleep(WATCH_INTERVAL)
        finally:
            db.close()

    async def next_change(self, seen: int, timeout: float) -> int:
        """The version after ``seen``, or ``seen`` after ``timeout`` without a change."""
        if self.version == seen and not self.stopped:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        return self.version


# --- the application -----------------------------------------------------------------------------


class _ControllerPool:
    """A few controllers (store connections) made as the server starts, each lent to
    one request at a time. Not one per thread of Starlette's pool: opening a store
    checks its schema in a write transaction, and every commit wakes the engines and
    the open pages (which would then open more)."""

    def __init__(self, home: Path, size: int = 4) -> None:
        self._free: queue.SimpleQueue[control.WorkflowController] = queue.SimpleQueue()
        for _ in range(size):
            self._free.put(control.WorkflowController(home))

    @contextmanager
    def lend(self) -> Iterator[control.WorkflowController]:
        controller = self._free.get()
        try:
            yield controller
        finally:
            self._free.put(controller)


def create_app(home: Path, token: str, cookie: str = "jobbridge_ui",
               watcher: StoreWatcher | None = None) -> ASGIApp:
    """The dashboard of ``home``, guarded by ``token``."""
    pool = _ControllerPool(home)
    watcher = watcher or StoreWatcher(home / "jobbridge.db")
    remotes = RemoteDashboards(on_change=watcher.poke)  # polled once the server runs
    mimetypes.init()  # now, not on the first page's first file
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace(
        "{{csrf}}", csrf_token(token))

    def reading(view: str) -> Callable[[Request], Response]:
        """A JSON endpoint of a view (views.read), of this machine's store or, for an
        id ``RESOURCE:ID``, of a remote host; bad input is a 400/404 line, a host
        that cannot answer a 503."""
        def endpoint(request: Request) -> Response:
            params = dict(request.query_params)
            try:
                remote = _remote_workflow(request)
                if remote is not None:
                    return JSONResponse(remotes.view(*remote, view, params))
                with pool.lend() as controller:
                    return JSONResponse(views.read(controller.store, view, _workflow(request),
                                                   params))
            except InputError as error:
                return _error(error)
            except HostUnavailable as error:
                return JSONResponse({"error": str(error)}, 503)
            except JobbridgeError as error:  # the host's own failure to answer
                return JSONResponse({"error": str(error)}, 502)
        return endpoint

    def acting(act: Callable[[control.WorkflowController, Request], str],
               remote_act: Callable[[RemoteDashboards, str, int, Request], str]
               ) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                remote = _remote_workflow(request)
                if remote is not None:
                    message = remote_act(remotes, *remote, request)
                else:
                    with pool.lend() as controller:
                        message = act(controller, request)
                return JSONResponse({"ok": True, "message": message})
            except InputError as error:
                return _error(error)
            except JobbridgeError as error:
                return JSONResponse({"error": str(error)}, 500)
        return endpoint

    def workflow_list(request: Request) -> Response:
        with pool.lend() as controller:
            local = views.workflows(controller.store)
        return JSONResponse({"workflows": local, "remotes": remotes.summary()})

    def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8")

    def download(request: Request) -> Response:
        stream = request.path_params["stream"]
        if stream not in ("stdout", "stderr"):
            return PlainTextResponse("not found: stdout or stderr\n", 404)
        try:
            remote = _remote_workflow(request)
            if remote is not None:
                data = remotes.output(*remote, _job_id(request), stream == "stderr")
                return Response(data, media_type="text/plain; charset=utf-8", headers={
                    "content-disposition": _attachment(f"{_job_id(request)}.{stream}.txt")})
        except InputError as error:
            return _error(error)
        except HostUnavailable as error:
            return PlainTextResponse(f"{error}\n", 503)
        except JobbridgeError as error:  # the host's answer: no such file (yet)
            return PlainTextResponse(f"{error}\n", 404)
        try:
            with pool.lend() as controller:
                path = views.output_path(controller.store, _workflow(request),
                                         _job_id(request), stream)
        except InputError as error:
            return _error(error)
        if not path.is_file():
            return PlainTextResponse(f"{path} does not exist (yet)\n", 404)
        return FileResponse(path, media_type="text/plain; charset=utf-8",
                            filename=f"{_job_id(request)}.{stream}.txt",
                            headers={"cache-control": "no-store"})

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            seen = watcher.version
            yield f"retry: 1000\nevent: change\ndata: {seen}\n\n"
            while True:
                version = await watcher.next_change(seen, KEEPALIVE)
                if watcher.stopped:
                    return
                if version == seen:
                    yield ": keep-alive\n\n"
                else:
                    seen = version
                    yield f"event: change\ndata: {seen}\n\n"
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store",
                                          "x-accel-buffering": "no"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(watcher.run())
        threading.Thread(target=_prepare_graphs, args=(pool,), daemon=True).start()
        remotes.start()
        try:
            yield
        finally:
            task.cancel()
            remotes.stop()

    workflow = "/api/workflows/{workflow:str}"
    routes = [
        Route("/api/workflows", workflow_list),
        *(Route(workflow + (f"/{name}" if name else ""), reading(name))
          for name in views.WORKFLOW_VIEWS),
        Route(workflow + "/job/{stream:str}", download),
        Route("/api/events", events),
        Route(workflow + "/{action:str}", acting(_workflow_action, _remote_workflow_action),
              methods=["POST"]),
        Route(workflow + "/job/kill", acting(_kill, _remote_kill), methods=["POST"]),
        Route("/report.css", lambda r: Response(SVG_STYLE, media_type="text/css")),
        Route("/", index),
        Route("/workflows/{workflow:str}", index),
        Route("/workflows/{workflow:str}/{tab:str}", index),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return TokenGuard(app, token, cookie)


def _prepare_graphs(pool: _ControllerPool, count: int = 3) -> None:
    """Build the graphs of the workflows most likely opened first (the running ones,
    else the latest) while the user is still on the workflows page: a 100,000-job
    graph takes a second."""
    with pool.lend() as controller:
        store = controller.store
        ids = store.unfinished_workflow_ids() or [w.id for w in store.workflows()]
        for workflow_id in ids[-count:]:
            with suppress(JobbridgeError):  # deleted meanwhile: nothing to prepare
                views.topology(store, workflow_id)


def _workflow(request: Request) -> int:
    """The id of a workflow of this machine (``12``)."""
    return views.workflow_number(request.path_params["workflow"])


def _remote_workflow(request: Request) -> tuple[str, int] | None:
    """``("cluster", 12)`` for a remote resource's workflow ``cluster:12``."""
    split = split_remote_id(request.path_params["workflow"])
    if split is None:
        return None
    try:
        return split[0], views.workflow_number(split[1])
    except InputError:
        raise InputError(f"no workflow {request.path_params['workflow']!r}") from None


def _job_id(request: Request) -> str:
    return views.job_id_param(request.query_params)


def _attachment(name: str) -> str:
    """A Content-Disposition naming a download (RFC 6266, any characters)."""
    return f"attachment; filename*=utf-8''{quote(name, safe='')}"


def _workflow_action(controller: control.WorkflowController, request: Request) -> str:
    action = request.path_params["action"]
    if action not in control.REQUESTS:
        raise InputError(f"unknown action {action!r} (one of {', '.join(control.REQUESTS)})")
    workflow_id = str(_workflow(request))
    return f"workflow {workflow_id}: {controller.request(workflow_id, action)}"


def _kill(controller: control.WorkflowController, request: Request) -> str:
    workflow_id, job_id = str(_workflow(request)), _job_id(request)
    controller.kill_job(workflow_id, job_id)
    return f"job {job_id}: kill requested"


def _remote_workflow_action(remotes: RemoteDashboards, resource: str, number: int,
                            request: Request) -> str:
    action = request.path_params["action"]
    if action not in control.REQUESTS:
        raise InputError(f"unknown action {action!r} (one of {', '.join(control.REQUESTS)})")
    return f"workflow {resource}:{number}: {remotes.request(resource, number, action)}"


def _remote_kill(remotes: RemoteDashboards, resource: str, number: int,
                 request: Request) -> str:
    job_id = _job_id(request)
    remotes.kill_job(resource, number, job_id)
    return f"job {job_id}: kill requested"


def _error(error: InputError) -> Response:
    text = str(error)
    status = 404 if "no workflow " in text or " has no job " in text else 400
    return JSONResponse({"error": str(error)}, status)


# --- serving -------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is printed: a busy port is one
    clear error, and ``--port 0`` picks a free port we can then print."""
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port}: must be 1 to 65535, or 0 for a free one")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise InputError(f"--host {host}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRNOTAVAIL:  # not an address of this machine
            raise InputError(f"--host {host}: cannot listen there: {error.strerror}") from None
        raise InputError(f"--port {port}: cannot listen on {host}: {error.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _host_name() -> str:
    """This machine's name as another machine would use it (not ``localhost``)."""
    name = socket.getfqdn()
    return socket.gethostname() if name.startswith("localhost") else name


def serve(home: Path, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False,
          out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Serve the dashboard of ``home`` until interrupted; print the URL to open."""
    import uvicorn

    if not is_loopback(host) and not allow_remote:
        raise InputError(f"--host {host} is not a loopback address: anyone who can reach it "
                         "could try the dashboard; add --allow-remote if you mean it")
    sock = listen(host, port)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(24)
    watcher = StoreWatcher(home / "jobbridge.db")
    app = create_app(home, token, cookie=f"jobbridge_ui_{port}", watcher=watcher)

    class Server(uvicorn.Server):
        interrupted = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.interrupted |= sig == signal.SIGINT
            watcher.stop()  # open pages' event streams end: nothing to wait for
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=3, server_header=False)
    config.load()  # ready before the URL is printed
    server = Server(config)
    # Ctrl-C from now on stops the server the same way, even before uvicorn has
    # installed its own handler (Python's default, raised while asyncio builds its
    # loop, would leave a traceback)
    signal.signal(signal.SIGINT, server.handle_exit)
    # A thread building a large graph holds the GIL for 5 ms at a time by default:
    # the event loop, which needs it back after each read and write, would answer
    # every other request (files, events) that much later.
    sys.setswitchinterval(0.0005)
    shown = host if ":" not in host else f"[{host}]"
    if not is_loopback(host):
        shown = _host_name() if host in ("0.0.0.0", "::") else shown
        print(f"jobbridge: warning: the dashboard listens on {host}, beyond this machine: "
              "anyone who has its URL can stop or delete your workflows", file=err)
    url = f"http://{shown}:{port}/?token={token}"
    print(f"jobbridge ui: the dashboard of {home} (Ctrl-C stops it); open:\n  {url}", file=out)
    if is_loopback(host) and (os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_CLIENT")):
        print(f"over SSH, first forward the port from your own machine:\n"
              f"  ssh -N -L {port}:{shown}:{port} {getpass.getuser()}@{_host_name()}", file=out)
    out.flush()
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if server.interrupted:
        raise KeyboardInterrupt  # exit 130, as any command interrupted
    return 0
