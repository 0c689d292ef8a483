"""`jobbridge ui`: the dashboard as users meet it. The server runs as `jobbridge ui`
does, in its own process; HTTP checks use urllib; the pages are driven in the
system's headless Chromium (tests marked ``browser``), which write a screenshot of
each page to build/ui-screenshots/ (or $JOBBRIDGE_UI_SCREENSHOTS)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jbcli import error_line, jb, jb_start, job, status_json, wait_for, write_json
from jobbridge import constants, report
from jobbridge.configuration import Configuration
from jobbridge.errors import InputError
from jobbridge.model import parse_workflow
from jobbridge.store import Store
from jobbridge.ui import views
from systems import CHROMIUM

ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("JOBBRIDGE_UI_SCREENSHOTS", ROOT / "build" / "ui-screenshots"))
#: Chromium as the test command runs it: headless, no sandbox (root in a container),
#: nothing fetched from the network, a new empty profile each time.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


# --- the server ----------------------------------------------------------------------------------


class Dashboard:
    """A running `jobbridge ui`: its process, the URL it printed, and HTTP helpers."""

    def __init__(self, process: subprocess.Popen[str], printed: str) -> None:
        self.process = process
        self.printed = printed
        self.url = next(word for word in printed.split() if word.startswith("http://"))
        self.base = self.url.split("/?")[0]
        self.token = self.url.split("token=")[1]

    def get(self, path: str, token: str | None = None, **headers: str) -> tuple[int, str]:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return _request(urllib.request.Request(self.base + path, headers=headers))

    def api(self, path: str) -> Any:
        status, body = self.get(path, self.token)
        assert status == 200, (status, body)
        return json.loads(body)

    def post(self, path: str, **headers: str) -> tuple[int, str]:
        return _request(urllib.request.Request(self.base + path, data=b"", method="POST",
                                               headers=headers))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def _request(request: urllib.request.Request) -> tuple[int, str]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def dashboard(*args: str, env: dict[str, str] | None = None) -> Iterator[Dashboard]:
    """``jobbridge ui ARGS`` until the block ends; then Ctrl-C, which must stop it soon
    even with a browser's event stream open."""
    process = jb_start("ui", *args, env=env)
    assert process.stdout is not None
    lines = [process.stdout.readline(), process.stdout.readline()]
    if not lines[1]:
        raise AssertionError(f"jobbridge ui did not start: {lines} {process.communicate()}")
    if "over SSH" in lines[1] or (env or {}).get("SSH_CONNECTION"):
        lines += [process.stdout.readline(), process.stdout.readline()]
    try:
        yield Dashboard(process, "".join(lines))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("jobbridge ui did not stop on Ctrl-C") from None
        assert process.returncode in (0, 130), err
        assert "Traceback" not in err, err


@pytest.fixture
def ui() -> Iterator[Dashboard]:
    with dashboard() as running:
        yield running


@pytest.fixture(autouse=True)
def _no_engine_left(jobbridge_home: Path) -> Iterator[None]:
    """Stop what a test left running (its jobs sleep), and let the engine end."""
    yield
    with _store(jobbridge_home) as store:
        running = [w.id for w in store.workflows() if w.status != constants.WORKFLOW_DONE]
    for workflow_id in running:
        jb("stop", str(workflow_id))
        jb("wait", str(workflow_id), "--timeout", "30")


@contextmanager
def _store(home: Path) -> Iterator[Store]:
    store = Store(home)
    try:
        yield store
    finally:
        store.close()


def _submit(path: Path) -> str:
    submitted = jb("submit", str(path))
    assert submitted.returncode == 0, submitted.stderr
    return submitted.stdout.strip()


def _job_status(workflow_id: str, job_id: str) -> str:
    return str({j["id"]: j for j in status_json(workflow_id)["jobs"]}[job_id]["status"])


# --- security and the command line ---------------------------------------------------------------


def test_prints_one_url_and_the_ssh_hint() -> None:
    env = {"SSH_CONNECTION": "10.0.0.1 50000 10.0.0.2 22", "USER": "alice", "LOGNAME": "alice"}
    with dashboard(env=env) as running:
        assert running.url.startswith("http://127.0.0.1:")
        port = running.base.rsplit(":", 1)[1]
        assert f"ssh -N -L {port}:127.0.0.1:{port} alice@" in running.printed
        assert running.printed.count("http://") == 1


def test_every_request_needs_the_token(ui: Dashboard) -> None:
    """Without the token (or with a wrong one) every address is refused, the page and
    its assets too; the printed URL sets a cookie and drops the token from the address."""
    for path in ("/", "/static/app.js", "/api/workflows", "/api/events", "/workflows/1"):
        status, body = ui.get(path)
        assert status == 403 and "access token" in body, (path, status)
        assert ui.get(path, token="wrong-" + ui.token)[0] == 403
        assert ui.get(path, Cookie=f"jobbridge_ui_{ui.base.rsplit(':', 1)[1]}=nope")[0] == 403
    assert ui.get("/?token=wrong")[0] == 403
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(ui.url, timeout=30)
    assert redirect.value.code == 303
    assert redirect.value.headers["Location"] == "/"
    cookie = redirect.value.headers["Set-Cookie"]
    assert ui.token in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    status, page = ui.get("/", Cookie=cookie.split(";")[0])
    assert status == 200 and "<title>jobbridge</title>" in page
    assert ui.api("/api/workflows") == {"workflows": [], "remotes": []}


def test_actions_need_the_csrf_header(ui: Dashboard, tmp_path: Path) -> None:
    """A POST carrying only the cookie (what another site's form could send) is refused;
    the page's CSRF header, from the page's own origin, or the bearer token passes."""
    workflow_id = _submit(write_json(tmp_path / "wf.json", {"jobs": [
        {"id": "long", "command": ["sleep", "30.4411"]}]}))
    cookie = f"jobbridge_ui_{ui.base.rsplit(':', 1)[1]}={ui.token}"
    _, page = ui.get("/", Cookie=cookie)
    csrf = page.split('name="jb-csrf" content="')[1].split('"')[0]
    stop = f"/api/workflows/{workflow_id}/stop"
    assert ui.post(stop, Cookie=cookie)[0] == 403
    assert ui.post(stop, Cookie=cookie, **{"X-CSRF-Token": "forged"})[0] == 403
    assert ui.post(stop, Cookie=cookie, Origin="http://evil.example",
                   **{"X-CSRF-Token": csrf})[0] == 403
    assert status_json(workflow_id)["status"] != constants.WORKFLOW_DONE
    host = ui.base.removeprefix("http://")
    status, body = ui.post(stop, Cookie=cookie, Origin=f"http://{host}", **{"X-CSRF-Token": csrf})
    assert status == 200, body
    assert json.loads(body)["message"] == f"workflow {workflow_id}: stop requested"
    assert jb("wait", workflow_id, "--timeout", "30").returncode == 1
    assert ui.post("/api/workflows/999/stop", Authorization=f"Bearer {ui.token}")[0] == 404
    assert ui.post(f"/api/workflows/{workflow_id}/explode",
                   Authorization=f"Bearer {ui.token}")[0] == 400


def test_security_headers(ui: Dashboard) -> None:
    request = urllib.request.Request(ui.base + "/api/workflows",
                                     headers={"Authorization": f"Bearer {ui.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        headers = response.headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"


def test_a_non_loopback_host_needs_an_explicit_flag() -> None:
    line = error_line(jb("ui", "--host", "0.0.0.0"), 2)
    assert "--allow-remote" in line
    with dashboard("--host", "0.0.0.0", "--allow-remote") as running:
        warning = ""
        assert running.process.stderr is not None
        warning = running.process.stderr.readline()
        assert warning.startswith("jobbridge: warning:") and "0.0.0.0" in warning
        port = running.base.rsplit(":", 1)[1]
        local = Dashboard(running.process, f"http://127.0.0.1:{port}/?token={running.token}")
        assert local.api("/api/workflows") == {"workflows": [], "remotes": []}


def test_ctrl_c_as_soon_as_the_url_is_printed() -> None:
    """Ctrl-C at once (the server still starting) stops it quietly: exit 130, one line."""
    for _ in range(5):
        process = jb_start("ui")
        assert process.stdout is not None
        process.stdout.readline()
        process.stdout.readline()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert (process.returncode, err) == (130, "jobbridge: interrupted\n")


def test_a_closed_terminal_stops_it() -> None:
    """SIGHUP (its terminal closed), a page's event stream open: it ends at once,
    quietly, and `jobbridge ui --port` can have its port again at once."""
    process = jb_start("ui")
    assert process.stdout is not None
    process.stdout.readline()
    url = process.stdout.readline().strip()
    base, token = url.split("/?token=")
    events = urllib.request.urlopen(urllib.request.Request(
        base + "/api/events", headers={"Authorization": f"Bearer {token}"}), timeout=30)
    assert events.readline() == b"retry: 1000\n"
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=15)
    events.close()
    assert (process.returncode, err) == (-signal.SIGHUP, "")
    with dashboard("--port", base.rsplit(":", 1)[1]) as again:  # at once, on the same port
        assert again.base == base


def test_a_busy_port_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = error_line(jb("ui", "--port", str(port)), 2)
    assert f"--port {port}" in line
    assert "--port 70000: must be 1 to 65535" in error_line(jb("ui", "--port", "70000"), 2)
    # an address no interface of this machine has: the --host is wrong, not the port
    line = error_line(jb("ui", "--host", "192.0.2.1", "--allow-remote"), 2)
    assert line.startswith("jobbridge: error: --host 192.0.2.1: cannot listen there"), line


#: ``jobbridge ui`` as the console script starts it, with a real SIGINT sent to itself
#: once the command line's modules start loading (jobbridge.controller, a fifth of a
#: second before any handler of its own could be installed).
CTRL_C_WHILE_LOADING = '''
import os, signal, sys
def hook(event, args):
    if event == "import" and args[0] == "jobbridge.controller" and not hook.sent:
        hook.sent = True
        os.kill(os.getpid(), signal.SIGINT)
hook.sent = False
sys.addaudithook(hook)
sys.argv = ["jobbridge", "ui"]
from jobbridge.__main__ import main
sys.exit(main())
'''


def test_ctrl_c_while_the_command_loads() -> None:
    """Ctrl-C before the command line has loaded ends it like one later: one line,
    exit 130 (it was a traceback of the import)."""
    result = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_LOADING], capture_output=True,
                            text=True, timeout=60)
    assert (result.returncode, result.stderr, result.stdout) == (
        130, "jobbridge: interrupted\n", "")


# --- the JSON API on real workflows ------------------------------------------------------------


def test_api_follows_a_run_and_shows_a_failure(ui: Dashboard, tmp_path: Path) -> None:
    workflow_id = _submit(write_json(tmp_path / "wf.json", {"name": "api", "jobs": [
        job("ok", "echo fine"), job("bad", "echo 'no such input' >&2; exit 3"),
        job("after", "true")], "dependencies": [["bad", "after"]]}))
    assert jb("wait", workflow_id, "--timeout", "60").returncode == 1
    [listed] = ui.api("/api/workflows")["workflows"]
    assert listed["counts"] == {"failed": 1, "running": 0, "queued": 0, "waiting": 0,
                                "done": 1, "not_run": 1}
    bad = ui.api(f"/api/workflows/{workflow_id}/job?id=bad")
    assert (bad["exit_status"], bad["exit_value"]) == (constants.FINISHED_REGULARLY, 3)
    assert bad["stderr"]["text"] == "no such input\n"
    assert bad["command"] == ["sh", "-c", "echo 'no such input' >&2; exit 3"]
    after = ui.api(f"/api/workflows/{workflow_id}/job?id=after")
    assert (after["class"], after["exit_reason"]) == ("not_run", "bad failed")
    status, text = ui.get(f"/api/workflows/{workflow_id}/job/stderr?id=bad", ui.token)
    assert (status, text) == (200, "no such input\n")
    assert ui.get(f"/api/workflows/{workflow_id}/job?id=nope", ui.token)[0] == 404
    assert ui.get(f"/api/workflows/{workflow_id}/jobs?state=bogus", ui.token)[0] == 400
    # ids and numbers SQLite cannot hold, a digit str.isdigit knows but int() not ('²'):
    # a 404 or a 400 line, not a 500 with a traceback in the server's output
    huge = "9" * 25
    status, body = ui.get(f"/api/workflows/{huge}", ui.token)
    assert (status, json.loads(body)) == (404, {"error": f"no workflow '{huge}'"})
    assert ui.get("/api/workflows/%C2%B2/graph", ui.token)[0] == 404
    assert ui.get(f"/api/workflows/{huge}/job/stderr?id=bad", ui.token)[0] == 404
    assert ui.post(f"/api/workflows/{huge}/stop", Authorization=f"Bearer {ui.token}")[0] == 404
    status, body = ui.get(f"/api/workflows/{workflow_id}/jobs?offset={huge}", ui.token)
    assert (status, json.loads(body)) == (400, {"error": f"offset: {huge} is out of range"})
    figures = ui.api(f"/api/workflows/{workflow_id}/figures")
    assert figures["measured_jobs"] == 2 and figures["cpu_s"] is not None


def test_restart_and_delete_through_the_api(ui: Dashboard, tmp_path: Path,
                                           jobbridge_home: Path) -> None:
    """What the page's Restart and Delete buttons post, as a script would."""
    fixed = tmp_path / "fixed"
    workflow_id = _submit(write_json(tmp_path / "wf.json", {"jobs": [
        job("flaky", f"test -e {fixed}"), job("after", "true")],
        "dependencies": [["flaky", "after"]]}))
    assert jb("wait", workflow_id, "--timeout", "60").returncode == 1
    fixed.touch()
    bearer = {"Authorization": f"Bearer {ui.token}"}
    assert ui.post(f"/api/workflows/{workflow_id}/restart", **bearer)[0] == 200
    assert jb("wait", workflow_id, "--timeout", "60").returncode == 0
    assert ui.api(f"/api/workflows/{workflow_id}")["counts"]["done"] == 2
    assert ui.post(f"/api/workflows/{workflow_id}/delete", **bearer)[0] == 200
    wait_for(lambda: ui.api("/api/workflows")["workflows"] == [], what="the deletion")
    assert not (jobbridge_home / "logs" / workflow_id).exists()


def test_every_asset_ships_in_the_package() -> None:
    """Offline by construction: the page loads nothing from elsewhere (its CSP would
    refuse it anyway) and every file it names is in the package."""
    static = Path(views.__file__).parent / "static"
    page = (static / "index.html").read_text()
    for text in [page] + [f.read_text() for f in static.iterdir() if f.suffix in (".js", ".css")]:
        assert "https://" not in text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "@import" not in text and "url(" not in text.replace("url(#arrow)", "")
    for name in ("app.js", "app.css", "favicon.svg"):
        assert f"/static/{name}" in page and (static / name).is_file()


def test_env_values_are_hidden_unless_asked(ui: Dashboard, tmp_path: Path) -> None:
    workflow_id = _submit(write_json(tmp_path / "wf.json", {"jobs": [
        job("secret", "true", env={"API_KEY": "hunter2"})]}))
    assert jb("wait", workflow_id, "--timeout", "60").returncode == 0
    _, body = ui.get(f"/api/workflows/{workflow_id}/job?id=secret", ui.token)
    assert json.loads(body)["env"] == {"API_KEY": None} and "hunter2" not in body
    shown = ui.api(f"/api/workflows/{workflow_id}/job?id=secret&env=1")
    assert shown["env"] == {"API_KEY": "hunter2"}


# --- killing one job (the engine's "stop:IDX" request) ----------------------------------------


def test_kill_one_job_the_rest_goes_on(tmp_path: Path, jobbridge_home: Path) -> None:
    """kill: a running job ends killed, one not started yet never runs, their
    dependents are not run, and the other jobs finish."""
    from jobbridge.controller import WorkflowController

    gate = tmp_path / "gate"
    workflow_id = _submit(write_json(tmp_path / "wf.json", {"jobs": [
        {"id": "victim", "command": ["sleep", "30.5521"]}, job("heir", "true"),
        job("gate", f"while [ ! -e {gate} ]; do sleep 0.05; done"), job("later", "true"),
        job("other", "true")], "dependencies": [["victim", "heir"], ["gate", "later"]]}))
    wait_for(lambda: _job_status(workflow_id, "victim") == constants.RUNNING, what="running")
    controller = WorkflowController(jobbridge_home)
    controller.kill_job(workflow_id, "victim")
    controller.kill_job(workflow_id, "later")
    wait_for(lambda: _job_status(workflow_id, "other") == constants.DONE, what="other to end")
    with pytest.raises(InputError, match="'other' has already ended"):
        controller.kill_job(workflow_id, "other")
    gate.touch()
    assert jb("wait", workflow_id, "--timeout", "60").returncode == 1
    jobs = {j["id"]: j for j in status_json(workflow_id)["jobs"]}
    assert jobs["victim"]["exit_status"] == constants.USER_KILLED
    assert jobs["heir"]["exit_status"] == constants.EXIT_NOTRUN
    assert (jobs["later"]["exit_status"], jobs["later"]["exit_reason"]) == (
        constants.EXIT_NOTRUN, "job stopped")
    assert jobs["later"]["execution_date"] is None
    assert [jobs[j]["status"] for j in ("gate", "other")] == [constants.DONE] * 2
    controller.close()


def test_a_request_on_an_ended_workflow_lets_the_engine_end(tmp_path: Path,
                                                            jobbridge_home: Path) -> None:
    from jbcli import engine_pids

    path = write_json(tmp_path / "wf.json", {"jobs": [job("a", "true")]})
    assert jb("run", str(path)).returncode == 0
    assert jb("stop", "1").returncode == 0
    wait_for(lambda: not engine_pids(jobbridge_home), timeout=20, what="the engine to end")
    assert status_json("1")["status"] == constants.WORKFLOW_DONE


# --- views of large workflows (no server) ------------------------------------------------------


def _stored(home: Path, workflow: dict[str, Any]) -> tuple[Store, int]:
    store = Store(home)
    return store, store.add_workflow(parse_workflow(workflow), Configuration.from_dict(
        "localhost", {}))


def _layers_workflow(jobs: int, layers: int) -> dict[str, Any]:
    """join -> group -> join -> group ...: the shape of bench/engine.py (c)."""
    per = jobs // layers
    items: list[dict[str, Any]] = []
    deps: list[list[str]] = []
    groups = []
    for layer in range(layers):
        items.append(job(f"join_{layer}", "true"))
        members = [f"sim_{layer}_{i}" for i in range(per - 1)]
        items += [job(m, "true") for m in members]
        groups.append({"name": f"g{layer}", "elements": members})
        deps.append([f"join_{layer}", f"g{layer}"])
        if layer + 1 < layers:
            deps.append([f"g{layer}", f"join_{layer + 1}"])
    return {"jobs": items, "groups": groups, "dependencies": deps}


def test_a_large_workflow_is_drawn_grouped(jobbridge_home: Path) -> None:
    store, workflow_id = _stored(jobbridge_home, _layers_workflow(20_000, 4))
    drawn = views.graph(store, workflow_id)
    assert drawn["grouped"]
    labels = [(n["kind"], n["label"], n["count"]) for n in drawn["nodes"]]
    assert labels == [("job", "join_0", 1), ("group", "sim_#_#", 4999),
                      ("job", "join_1", 1), ("group", "sim_#_#", 4999),
                      ("job", "join_2", 1), ("group", "sim_#_#", 4999),
                      ("job", "join_3", 1), ("group", "sim_#_#", 4999)]
    assert sorted((e["from"], e["to"], e["count"]) for e in drawn["edges"]) == sorted(
        [(0, 1, 4999), (1, 2, 4999), (2, 3, 4999), (3, 4, 4999), (4, 5, 4999), (5, 6, 4999),
         (6, 7, 4999)])
    assert [sum(c) for c in drawn["counts"]] == [1, 4999] * 4
    failed = views.jobs_page(store, workflow_id, group=3, state="waiting", limit=5)
    assert failed["total"] == 4999 and failed["rows"][0]["id"] == "sim_1_0"
    store.close()


def test_chains_and_odd_names_stay_few_nodes(jobbridge_home: Path) -> None:
    """1,000 chains of 3 (a -> b -> c) and jobs whose names share no pattern."""
    chains = [job(f"{step}{i}", "true") for i in range(1000) for step in "abc"]
    deps = [[f"a{i}", f"b{i}"] for i in range(1000)] + [[f"b{i}", f"c{i}"] for i in range(1000)]
    store, workflow_id = _stored(jobbridge_home, {"jobs": chains, "dependencies": deps})
    drawn = views.graph(store, workflow_id)
    assert [(n["label"], n["count"]) for n in drawn["nodes"]] == [
        ("a#", 1000), ("b#", 1000), ("c#", 1000)]
    odd = [job("x" * (i % 7 + 1) + chr(0x41 + i % 26) * (i % 5 + 1), "true") for i in range(400)]
    odd = list({j["id"]: j for j in odd}.values())
    zigzag = [job(f"z{i}", "true") for i in range(400)]
    store2, second = _stored(jobbridge_home, {
        "jobs": odd + zigzag, "dependencies": [[f"z{i}", f"z{i + 1}"] for i in range(399)]})
    drawn = views.graph(store2, second)
    assert len(drawn["nodes"]) <= views.MAX_GROUPS
    assert sum(n["count"] for n in drawn["nodes"]) == len(odd) + 400
    store.close()
    store2.close()


def test_jobs_table_filters_searches_sorts_and_pages(jobbridge_home: Path) -> None:
    store, workflow_id = _stored(jobbridge_home, {"jobs": [
        job(f"t{i:04d}", "true", name=f"task {i}") for i in range(2000)]})
    changes = []
    for i in range(2000):
        if i % 10 == 3:
            changes.append((i, {"status": constants.FAILED, "exit_status": "finished_regularly",
                                "exit_value": i % 7 + 1, "exit_reason": f"reason {i}"}))
        elif i % 2 == 0:
            changes.append((i, {"status": constants.DONE, "exit_value": 0,
                                "exit_status": "finished_regularly",
                                "execution_date": f"2026-01-01T10:{i % 60:02d}:00+00:00",
                                "ending_date": f"2026-01-01T11:{i % 60:02d}:{i % 59:02d}+00:00"}))
    store.update_jobs(workflow_id, changes)
    page = views.jobs_page(store, workflow_id, state="failed", limit=50)
    assert page["total"] == 200 and page["counts"]["done"] == 1000
    assert [r["id"] for r in page["rows"][:2]] == ["t0003", "t0013"]
    last = views.jobs_page(store, workflow_id, state="failed", offset=190, limit=50)
    assert [r["id"] for r in last["rows"]][-1] == "t1993" and len(last["rows"]) == 10
    found = views.jobs_page(store, workflow_id, search="TASK 19")
    assert found["total"] == 111  # "task 19", "task 190".."task 199", "task 1900".."1999"
    assert views.jobs_page(store, workflow_id, search="%")["total"] == 0  # LIKE escaped
    by_exit = views.jobs_page(store, workflow_id, state="failed", sort="exit", descending=True)
    assert [r["exit_value"] for r in by_exit["rows"][:3]] == [7, 7, 7]
    ends = [r["ending_date"] for offset in range(0, 2000, views.MAX_PAGE) for r in
            views.jobs_page(store, workflow_id, sort="end", offset=offset, limit=5000)["rows"]]
    assert ends[:1000] == sorted(ends[:1000]) and ends[1000:] == [None] * 1000  # NULLs last
    with pytest.raises(Exception, match="sort"):
        views.jobs_page(store, workflow_id, sort="idx; DROP TABLE jobs")
    store.close()


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@st.composite
def _usage(draw: st.DrawFn) -> str:
    """A usage string as the backends write it, its items in any order."""
    cpu, wall = draw(st.integers(0, 400_000)), draw(st.integers(0, 400_000))
    mem = draw(st.integers(1, 10**8))
    items = [f"cput={_hms(cpu)}", f"mem={mem}kb", f"walltime={_hms(wall)}",
             f"ncpus={draw(st.integers(1, 64))}", f"vmem={2 * mem}kb", "cpupercent=12"]
    if draw(st.booleans()):  # the exact items, as the local scheduler adds them
        items += [f"cpu_s={cpu + draw(st.sampled_from([0.0, 0.004, 0.5]))}",
                  f"wall_s={wall + draw(st.sampled_from([0.0, 0.25, 0.712]))}"]
    return " ".join(draw(st.permutations(items)))


USAGES = _usage()


@settings(max_examples=40, deadline=None)
@given(st.lists(USAGES, min_size=1, max_size=20))
def test_figures_agree_with_the_usage_parser(usages: list[str]) -> None:
    """The SQL that sums usage strings reads them as jobbridge.report.parse_usage does
    (any key order, hours past 99, vmem beside mem, the exact cpu_s/wall_s preferred)."""
    import tempfile

    with tempfile.TemporaryDirectory() as home:
        store, workflow_id = _stored(Path(home), {"jobs": [
            job(f"j{i}", "true") for i in range(len(usages))]})
        store.update_jobs(workflow_id, [(i, {"resource_usage": u}) for i, u in enumerate(usages)])
        figures = views.figures(store, workflow_id)
        store.close()
    parsed = [report.parse_usage(u) for u in usages]
    ncpus = [int(u.split("ncpus=")[1].split()[0]) for u in usages]
    assert figures["cpu_s"] == pytest.approx(sum(p.cpu_s or 0 for p in parsed))
    assert figures["peak_mem_kb"] * 1024 == max(p.mem_bytes or 0 for p in parsed)
    core = sum((p.wall_s or 0) * n for p, n in zip(parsed, ncpus, strict=True))
    assert figures["efficiency"] == (pytest.approx(figures["cpu_s"] / core) if core else None)


# --- in the browser ----------------------------------------------------------------------------


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A new headless Chromium with an empty profile: the system's, never a download
    (the tests using it are marked ``browser``: systems.py skips them where it is
    missing, and fails them under CI)."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900})
        context.set_default_timeout(30_000)
        errors: list[str] = []
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page
        finally:
            context.close()
        assert not errors, errors


def _shot(page: Any, name: str, full_page: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)  # let the last refresh paint
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def _fill(page: Any, selector: str) -> str:
    return str(page.eval_on_selector(selector, "el => getComputedStyle(el).fill"))


def _pan_and_zoom(page: Any) -> None:
    """The wheel zooms the graph about the pointer, a drag pans it, and the click that
    ends a drag opens nothing."""
    from playwright.sync_api import expect

    viewport = page.locator("svg.graph g.viewport")
    expect(viewport).to_have_attribute("transform", re.compile("scale"))

    def view() -> list[float]:
        numbers = re.findall(r"-?[\d.]+", str(viewport.get_attribute("transform")))
        return [float(n) for n in numbers]

    box = page.locator("svg.graph").bounding_box()
    x, y = box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.8  # beside the jobs
    shown = str(viewport.get_attribute("transform"))
    before = view()
    page.mouse.move(x, y)
    page.mouse.wheel(0, -300)
    expect(viewport).not_to_have_attribute("transform", shown)
    zoomed = view()
    assert zoomed[2] > before[2], (before, zoomed)  # scale
    page.mouse.down()
    page.mouse.move(x - 120, y - 60, steps=5)
    page.mouse.up()
    panned = view()
    assert panned[2] == zoomed[2] and (panned[0], panned[1]) == pytest.approx(
        (zoomed[0] - 120, zoomed[1] - 60), abs=2), (zoomed, panned)
    assert "/job" not in page.url
    page.locator("button[title='all of the graph in view']").click()


RUNNING_FILL, DONE_FILL, FAILED_FILL = "rgb(47, 126, 216)", "rgb(58, 157, 93)", "rgb(209, 69, 59)"


@pytest.mark.browser
def test_dashboard_end_to_end(browser: Any, ui: Dashboard, tmp_path: Path) -> None:
    """Open the printed URL, see the workflows, open one, watch its graph change colour
    while it runs (no reload), click the failed job and read its stderr and reason."""
    from playwright.sync_api import expect

    page = browser
    page.goto(ui.base + "/")
    expect(page.locator("body")).to_contain_text("access token")  # no token: refused
    gate = tmp_path / "gate"
    workflow_id = _submit(write_json(tmp_path / "wf.json", {"name": "demo", "jobs": [
        job("prepare", "echo preparing"),
        job("simulate", f"while [ ! -e {gate} ]; do sleep 0.05; done; echo simulated"),
        job("analyse", "echo analysed"),
        job("convert", "echo 'convert: input.dat: no such file' >&2; exit 3"),
        job("report", "true")],
        "dependencies": [["prepare", "simulate"], ["simulate", "analyse"],
                         ["prepare", "convert"], ["convert", "report"]]}))
    page.goto(ui.url)
    assert "token" not in page.url  # the token left the address bar for a cookie
    row = page.locator(f"tr.wf[data-id='{workflow_id}']")
    expect(row).to_contain_text("demo")
    expect(row).to_have_class("wf link has-failed")  # the failure stands out, live
    expect(page.locator("#live")).to_have_text("live")
    cells = row.locator("td")
    expect(cells.nth(6)).to_have_text("1")  # failed, in red
    assert "failed-count" in str(cells.nth(6).get_attribute("class"))
    expect(cells.nth(8)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    expect(cells.nth(9)).to_have_text(re.compile(r"^[\d.]+ s$"))  # elapsed, running on
    _shot(page, "workflows")

    row.locator("a").first.click()
    simulate = page.locator("g.node[data-job='simulate']")
    expect(simulate).to_have_attribute("data-state", "running")
    assert _fill(page, "g.node[data-job='simulate'] rect") == RUNNING_FILL
    for figure in ("CPU time", "peak memory", "wall time", "CPU efficiency"):
        expect(page.locator(f"[data-figure='{figure}'] .value")).not_to_have_text("…")
    _pan_and_zoom(page)
    page.evaluate("window.__same_page = true")
    _shot(page, "workflow-graph")
    gate.touch()
    expect(simulate).to_have_attribute("data-state", "done")
    expect(page.locator("g.node[data-job='analyse']")).to_have_attribute("data-state", "done")
    assert _fill(page, "g.node[data-job='simulate'] rect") == DONE_FILL
    assert page.evaluate("window.__same_page") is True  # followed live, not reloaded
    expect(page.locator(".badge[data-status]")).to_contain_text("1 failed")
    assert _fill(page, "g.node[data-job='convert'] rect") == FAILED_FILL

    page.locator("g.node[data-job='convert']").click()
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.locator("#job-exit")).to_have_text("exit 3")
    expect(page.locator("#job-reason")).to_have_text("exited with code 3")
    expect(page.locator("#stderr pre")).to_contain_text("convert: input.dat: no such file")
    expect(page.locator("#job-argv code")).to_have_text(
        ["sh", "-c", "echo 'convert: input.dat: no such file' >&2; exit 3"])
    status = page.locator(".card", has=page.locator("#job-status"))
    expect(status).to_contain_text("localhost (local_basic)")  # its resource
    scheduler_id = status.locator("dt:text-is('scheduler id') + dd")
    expect(scheduler_id).to_have_text(re.compile(r"^\S+$"))
    expect(scheduler_id).not_to_have_text("\u2013")  # the page's "none"
    expect(page.locator("#job-usage tr", has_text="wall time")).to_contain_text("no limit")
    with page.expect_download() as download:
        page.locator("#stderr a[download]").click()
    assert Path(download.value.path()).read_text() == "convert: input.dat: no such file\n"
    _shot(page, "job")
    page.locator("a", has_text="report").click()
    expect(page.locator("#job-reason")).to_have_text("convert failed")

    page.goto(f"{ui.base}/workflows/{workflow_id}/jobs")
    expect(page.locator("tr.job")).to_have_count(5)
    page.locator("#state-filter button[data-state='failed']").click()
    expect(page.locator("tr.job")).to_have_count(1)
    expect(page.locator("tr.job td").nth(3)).to_be_empty()
    _shot(page, "workflow-jobs")
    page.goto(f"{ui.base}/workflows/{workflow_id}/timeline")
    expect(page.locator("svg.timeline g.lane-link")).to_have_count(4)  # report never ran
    _shot(page, "workflow-timeline")


@pytest.mark.browser
def test_stop_and_kill_from_the_page(browser: Any, ui: Dashboard, tmp_path: Path) -> None:
    """Kill one job from its page, then stop the workflow from its page (each after a
    confirmation): `jobbridge status` shows both; then restart it and delete it."""
    from playwright.sync_api import expect

    page = browser
    workflow_id = _submit(write_json(tmp_path / "wf.json", {"name": "long", "jobs": [
        {"id": "one", "command": ["sleep", "30.6612"]},
        {"id": "two", "command": ["sleep", "30.6613"]}, job("after", "true")],
        "dependencies": [["two", "after"]]}))
    wait_for(lambda: _job_status(workflow_id, "one") == constants.RUNNING, what="running")
    page.goto(ui.url)
    page.goto(f"{ui.base}/workflows/{workflow_id}/job?id=one")
    kill = page.locator("button[data-action='kill']")
    kill.click()
    expect(page.locator("#confirm")).to_be_visible()
    page.locator("#confirm-cancel").click()  # cancelled: nothing happens
    page.wait_for_timeout(500)
    assert _job_status(workflow_id, "one") == constants.RUNNING
    kill.click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#job-status")).to_have_text("failed")
    expect(page.locator("#job-exit")).to_have_text("killed")
    expect(kill).to_have_count(0)  # nothing left to kill
    assert _job_status(workflow_id, "two") == constants.RUNNING

    page.goto(f"{ui.base}/workflows/{workflow_id}")
    expect(page.locator("g.node[data-job='two']")).to_have_attribute("data-state", "running")
    page.locator("button[data-action='stop']").click()
    expect(page.locator("#confirm-title")).to_have_text(f"Stop workflow {workflow_id}?")
    _shot(page, "confirm-stop")
    page.locator("#confirm-ok").click()
    expect(page.locator("button[data-action='stop']")).to_be_disabled()
    status = jb("status", workflow_id)
    assert "in progress" not in status.stdout.splitlines()[0], status.stdout
    assert status_json(workflow_id)["status"] != constants.WORKFLOW_IN_PROGRESS
    jobs = {j["id"]: j for j in status_json(workflow_id)["jobs"]}
    assert [jobs[j]["exit_status"] for j in ("one", "two", "after")] == [
        constants.USER_KILLED, constants.USER_KILLED, constants.EXIT_NOTRUN]

    # Restart, then Delete (cancelled once): each asks first
    restart = page.locator("button[data-action='restart']")
    restart.click()
    expect(page.locator("#confirm-title")).to_have_text(f"Restart workflow {workflow_id}?")
    page.locator("#confirm-ok").click()
    expect(page.locator("g.node[data-job='one']")).to_have_attribute("data-state", "running")
    assert status_json(workflow_id)["status"] == constants.WORKFLOW_IN_PROGRESS
    delete = page.locator("button[data-action='delete']")
    delete.click()
    expect(page.locator("#confirm-title")).to_have_text(f"Delete workflow {workflow_id}?")
    page.locator("#confirm-cancel").click()
    page.wait_for_timeout(500)
    assert status_json(workflow_id)["status"] == constants.WORKFLOW_IN_PROGRESS
    delete.click()
    page.locator("#confirm-ok").click()
    expect(page).to_have_url(ui.base + "/")
    expect(page.locator(f"tr.wf[data-id='{workflow_id}']")).to_have_count(0)
    assert "no workflow" in error_line(jb("status", workflow_id), 2)


@pytest.mark.browser
def test_large_workflow_pages(browser: Any, ui: Dashboard, jobbridge_home: Path) -> None:
    """A stored 5,000-job workflow: the graph shows groups with counts, a group links to
    its jobs, the table filters, searches, sorts and pages."""
    from playwright.sync_api import expect

    store, workflow_id = _stored(jobbridge_home, _layers_workflow(5000, 5))
    ran = {"execution_date": "2026-01-01T10:00:00+00:00",
           "ending_date": "2026-01-01T10:05:00+00:00"}
    store.update_jobs(workflow_id, [(i, {"status": constants.DONE, "exit_value": 0,
                                         "exit_status": "finished_regularly", **ran})
                                    for i in range(0, 1200)] +
                      [(1100 + i, {"status": constants.FAILED, "exit_value": 1,
                                   "exit_status": "finished_regularly"}) for i in range(7)])
    page = browser
    page.goto(ui.url)
    page.goto(f"{ui.base}/workflows/{workflow_id}")
    groups = page.locator("g.node.group")
    expect(groups).to_have_count(5)
    expect(groups.nth(1)).to_have_attribute("data-state", "failed")
    expect(groups.nth(1).locator("text").first).to_have_text("sim_#_# \u00d7999")
    # live, without an engine: a change written to the store is drawn within a few
    # seconds (about one here; the bound is for a loaded machine)
    expect(groups.nth(2)).to_have_attribute("data-state", "waiting")
    written = time.monotonic()
    store.update_jobs(workflow_id, [(2500, {"status": constants.FAILED, "exit_value": 2,
                                            "exit_status": "finished_regularly"})])
    store.close()
    expect(groups.nth(2)).to_have_attribute("data-state", "failed")
    assert time.monotonic() - written < 10
    _shot(page, "large-graph")
    groups.nth(1).click()
    page.locator(".panel a", has_text="7 failed").click()
    expect(page.locator("tr.job")).to_have_count(7)
    expect(page.locator("tr.job").first).to_have_attribute("data-job", "sim_1_99")
    page.goto(f"{ui.base}/workflows/{workflow_id}/jobs")
    expect(page.locator(".pager")).to_contain_text("page 1 of 50")
    page.locator("button[data-page='next']").click()
    expect(page.locator("tr.job").first).to_have_attribute("data-job", "sim_0_99")
    page.locator("input[type=search]").fill("sim_4_12")
    expect(page.locator(".pager")).to_contain_text("of 11")  # sim_4_12, sim_4_120..129
    page.locator("th[data-sort='id']").click()
    page.locator("th[data-sort='id']").click()
    expect(page.locator("tr.job").first).to_have_attribute("data-job", "sim_4_129")
    _shot(page, "large-jobs")
    # past 1,000 jobs that ran, the timeline has a lane per graph group, not per job
    page.goto(f"{ui.base}/workflows/{workflow_id}/timeline")
    expect(page.locator("#wf-body")).to_contain_text("one lane per group of the graph")
    expect(page.locator("svg.timeline g.lane-link")).to_have_count(4)  # join_0, sim_0_#...
    lanes = ui.api(f"/api/workflows/{workflow_id}/timeline")
    assert lanes["mode"] == "groups" and lanes["span_s"] == pytest.approx(300, abs=0.01)
    assert sorted(sum(lane["counts"].values()) for lane in lanes["lanes"]) == [1, 1, 199, 999]
    _shot(page, "large-timeline")


@pytest.mark.browser
def test_a_job_killed_by_a_signal(browser: Any, ui: Dashboard, tmp_path: Path) -> None:
    """A job that died of a signal: its page says which, as its exit and as the reason."""
    from playwright.sync_api import expect

    workflow = write_json(tmp_path / "wf.json", {"jobs": [job("crash", "kill -SEGV $$")]})
    assert jb("run", str(workflow), timeout=120).returncode == 1
    page = browser
    page.goto(ui.url)
    page.goto(f"{ui.base}/workflows/1/job?id=crash")
    expect(page.locator("#job-exit")).to_have_text("signal 11")
    expect(page.locator("#job-reason")).to_have_text("killed by signal 11 (SIGSEGV)")


#: A job that fails until it has run ``$2`` times (a counter file ``$1``), then succeeds.
FLAKY = 'n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"; [ $n -ge "$2" ]'


def _report_workflow(tmp_path: Path) -> Path:
    """Retried once then done; done at once; failed with a message on stderr."""
    return write_json(tmp_path / "wf.json", {"name": "efficiency", "jobs": [
        {"id": "flaky", "command": ["sh", "-c", FLAKY, "flaky", str(tmp_path / "n"), "2"],
         "retries": 1, "resources": {"memory_mb": 64, "walltime_s": 60}},
        {"id": "busy", "command": ["python3", "-c", "x = bytearray(20 << 20)\n"
                                   "x[::4096] = b'x' * len(x[::4096])"],
         "resources": {"cpus": 2, "memory_mb": 100}},
        job("bad", "echo 'bad: cannot read input.dat' >&2; exit 3",
            resources={"memory_mb": 32, "walltime_s": 30})]})


@pytest.mark.browser
def test_report_tab_shows_the_reports_figures(browser: Any, ui: Dashboard, tmp_path: Path,
                                              jobbridge_home: Path) -> None:
    """A workflow's Report tab: `jobbridge report`'s summary, histograms, timeline and
    table (the same code: its rows are report.table_rows'), a retried job's attempts
    with who measured each figure, and a failed attempt's row leading to its stderr
    and reason."""
    from playwright.sync_api import expect

    assert jb("run", str(_report_workflow(tmp_path)), timeout=300).returncode == 1
    with _store(jobbridge_home) as store:
        expected = report.build_report(store, 1)
    data = ui.api("/api/workflows/1/report")
    assert [row["cells"] for row in data["rows"]] == report.table_rows(expected)
    assert data["summary"] == [list(item) for item in report.summary_items(expected)]
    page = browser
    page.goto(ui.url)
    page.goto(f"{ui.base}/workflows/1")
    page.locator(".tabs a[data-tab='report']").click()
    rows = page.locator("#report tr.attempt")
    expect(rows).to_have_count(4)
    assert [(r.get_attribute("data-job"), r.get_attribute("data-attempt"),
             r.get_attribute("data-outcome")) for r in rows.all()] == [
        ("flaky", "1", "retried"), ("flaky", "2", "done"), ("busy", "1", "done"),
        ("bad", "1", "failed")]
    for row in rows.all():  # every figure of the local runner measured by wait4
        expect(row.locator("td").last).to_have_text("wait4 (local runner)")
    expect(rows.nth(0).locator("td.exit")).to_contain_text("exit code 1 (retried)")
    expect(page.locator("#report-figures svg.jb-figure")).to_have_count(3)
    memory = page.locator("#report-figures svg[data-figure-name='memory_efficiency']")
    counts = [int(t) for t in memory.locator("text.count").all_text_contents()]
    assert sum(counts) == 4  # every attempt asked for memory and had its peak measured
    time_counts = page.locator("#report-figures svg[data-figure-name='time_efficiency'] "
                               "text.count").all_text_contents()
    assert sum(int(t) for t in time_counts) == 3  # busy asked for no walltime
    bars = page.locator("#report-timeline svg.jb-figure rect title")
    expect(bars.first).to_be_attached()
    assert "flaky attempt 1: exit code 1" in " ".join(bars.all_text_contents())
    # the figures' own styles apply (served as /report.css), not the page's defaults
    title = "#report-figures svg text.title"
    assert page.eval_on_selector(title, "el => getComputedStyle(el).textAnchor") == "middle"
    expect(page.locator("#report-summary")).to_contain_text("wait4 (local runner)")
    _shot(page, "workflow-report", full_page=True)

    rows.nth(3).locator("a.stderr-link").click()
    expect(page.locator("#job-reason")).to_have_text("exited with code 3")
    expect(page.locator("#stderr pre")).to_contain_text("bad: cannot read input.dat")
    expect(page.locator("#job-usage")).to_contain_text("wait4 (local runner)")
    page.go_back()
    rows.nth(0).locator("a").first.click()
    attempts = page.locator("#job-attempts tr.attempt")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("exit 1")
    expect(attempts.nth(0)).to_contain_text("(retried)")
    expect(attempts.nth(1)).to_contain_text("64.0 MB")  # asked, per attempt
    _shot(page, "job-attempts")


@pytest.mark.browser
def test_hostile_names_in_the_report_tab_stay_text(browser: Any, ui: Dashboard,
                                                   tmp_path: Path) -> None:
    """The server's SVG figures hold job ids and names escaped: markup in them shows
    as text, runs nothing and loads nothing."""
    from playwright.sync_api import expect

    hostile = "<img src=x onerror=alert(1)> & \"q\" 'a' <svg onload=alert(2)>"
    workflow = write_json(tmp_path / "wf.json", {"name": "<script>alert(3)</script>", "jobs": [
        job(hostile, "exit 2"), job("ok", "true")]})
    assert jb("run", str(workflow), timeout=120).returncode == 1
    dialogs: list[str] = []
    page = browser
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(ui.url)
    page.goto(f"{ui.base}/workflows/1/report")
    rows = page.locator("#report tr.attempt")
    expect(rows).to_have_count(2)
    expect(rows.first.locator("td a").first).to_have_text(hostile)
    expect(page.locator("#report-timeline svg.jb-figure text.label").first).to_contain_text(
        "<img src=x")  # its label, shortened
    tips = page.locator("#report-timeline svg rect title").all_text_contents()
    assert any(tip.startswith(f"{hostile} attempt 1") for tip in tips), tips
    expect(page.locator("h1")).to_contain_text("<script>alert(3)</script>")
    assert page.locator("main img, main script, main svg svg").count() == 0
    assert dialogs == []


@pytest.mark.browser
def test_the_html_report_renders_offline(browser: Any, tmp_path: Path) -> None:
    """`jobbridge report --html` opened from disk in the browser, every request
    beyond the file refused: its figures and table are all there."""
    from playwright.sync_api import expect

    assert jb("run", str(_report_workflow(tmp_path)), timeout=300).returncode == 1
    out = tmp_path / "report.html"
    assert jb("report", "1", "--html", str(out)).returncode == 0
    fetched: list[str] = []

    def refuse(route: Any) -> None:
        fetched.append(route.request.url)
        route.abort()

    page = browser
    page.route("http*://**/*", refuse)
    page.goto(out.as_uri())
    expect(page.locator("svg.jb-figure")).to_have_count(4)
    expect(page.locator("table").last.locator("tbody tr")).to_have_count(4)
    assert page.eval_on_selector("svg.jb-figure text.title",
                                 "el => getComputedStyle(el).textAnchor") == "middle"
    _shot(page, "report-html")
    assert fetched == []


#: Another site's page, opened in the browser that holds the dashboard's cookie: it
#: posts a stop to the dashboard as a form, and as a script's fetch with the cookie.
HOSTILE_PAGE = """<!doctype html><title>hostile</title>
<form id="f" method="POST" action="{target}"><input name="x" value="1"></form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",
                    body: "x=1"}}).finally(() => {{
  fetch("{target}", {{method: "POST", credentials: "include",
                      headers: {{"X-CSRF-Token": "guess"}}}}).catch(() => null)
    .finally(() => document.getElementById("f").submit());
}});
</script>"""


@contextmanager
def _hostile_site(target: str) -> Iterator[int]:
    """Serve HOSTILE_PAGE (aimed at ``target``) on a port of 127.0.0.1: its port."""
    import http.server
    import threading

    page = HOSTILE_PAGE.format(target=target).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_other_sites_cannot_act(browser: Any, ui: Dashboard, tmp_path: Path) -> None:
    """Logged in to the dashboard, the user opens another page: another user's on this
    login node (127.0.0.1, another port: the same site for the browser, so the cookie
    goes along) or another site (localhost). Its form and its scripts post a stop:
    each is refused, and the workflow runs on."""
    from playwright.sync_api import expect

    workflow_id = _submit(write_json(tmp_path / "wf.json", {"jobs": [
        {"id": "long", "command": ["sleep", "30.7713"]}]}))
    target = f"{ui.base}/api/workflows/{workflow_id}/stop"
    page = browser
    page.goto(ui.url)  # logged in: the cookie is set
    answers: list[tuple[str, int]] = []
    page.on("response", lambda r: answers.append((r.request.method, r.status))
            if r.url == target else None)
    with _hostile_site(target) as port:
        for origin, refusal in ((f"http://127.0.0.1:{port}", "CSRF check"),
                                (f"http://localhost:{port}", "access token")):
            answers.clear()
            page.goto(origin + "/")
            expect(page).to_have_url(target)  # the form was posted
            expect(page.locator("body")).to_contain_text(refusal)
            assert ("POST", 403) in answers and all(
                status == 403 for _, status in answers), (origin, answers)
    listed = ui.api(f"/api/workflows/{workflow_id}")
    assert (listed["status"], listed["request"]) == (constants.WORKFLOW_IN_PROGRESS, None)
    assert _job_status(workflow_id, "long") in (constants.RUNNING, constants.QUEUED_ACTIVE)
