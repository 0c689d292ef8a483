"""The ``jobbridge`` command line (docs/format.md: Command line JSON).

Exit status (also in ``--help`` and the README):

- 0: success (``run``/``wait``: every job succeeded; ``status``: no job failed);
- 1: a job failed (or a ``check`` did not pass, or ``logs`` has nothing to show);
- 2: bad input, with one clear line on stderr and never a traceback;
- 3: ``engine --status`` found no engine running;
- 124: ``wait --timeout`` ran out (as timeout(1); the workflow goes on);
- 128 + a signal's number: a signal stopped ``run`` (its workflow is then stopped)
  or ``engine``: 130 Ctrl-C (SIGINT), 143 SIGTERM, 129 SIGHUP (terminal closed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__, constants
from .configuration import Configuration
from .controller import (
    Interrupted,
    WorkflowController,
    WorkflowInterrupted,
    resolve_config,
    schedulers_table,
)
from .dynamic import TransferProgress
from .engine import Progress
from .errors import InputError, JobbridgeError
from .model import EngineJob, describe_exit, load_workflow_file
from .scheduler import Scheduler, build_scheduler, get_scheduler_implementation, run_to_end
from .text_table import aligned, one_line

if TYPE_CHECKING:
    from .remote.client import RemoteController

log = logging.getLogger("jobbridge")

#: ``wait --timeout`` ran out: timeout(1)'s code, distinct from 1 (a job failed)
EXIT_TIMEOUT = 124

EPILOG = """exit status: 0 success (run, wait: every job succeeded; status: no job failed),
1 a job failed (check: a check did not pass), 2 bad input, 3 engine --status: no engine
runs, 124 wait --timeout ran out, 128+N signal N stopped run (its workflow) or engine:
130 Ctrl-C, 143 SIGTERM, 129 SIGHUP"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"jobbridge: error: {message} (see jobbridge --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jobbridge", description="Run workflows of command-line jobs on "
                     "this machine, a Slurm, PBS or Grid Engine\ncluster, or in an MPI "
                     "allocation.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"jobbridge {__version__}")
    parser.add_argument("--config", metavar="FILE", help="the resources' configuration file "
                        "(jobbridge's or soma-workflow's; default: $JOBBRIDGE_CONFIG)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    def command(name: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=description, description=description[0].upper()
                              + description[1:] + ".")

    def target(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--resource", "-r", help="a resource (section) of the configuration "
                           "file (default: localhost, this machine)")
        group.add_argument("--scheduler", "-s", help="a scheduler type, with its default "
                           "settings (see jobbridge schedulers)")

    def workflow(p: argparse.ArgumentParser,
                 help: str = "the workflow's id (RESOURCE:ID on a remote resource)",
                 nargs: str | None = None) -> None:
        p.add_argument("workflow", metavar="WF", help=help, nargs=nargs)

    def json_flag(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--json", action="store_true", help=f"print {what} as JSON")

    file_help = "the workflow file (JSON: jobbridge's, or soma-workflow's Helper.serialize)"
    p = command("run", "run a workflow to its end here, with a progress bar")
    p.add_argument("file", metavar="FILE", help=file_help)
    target(p)
    json_flag(p, "the status object at the end (as status --json)")
    p = command("submit", "store a workflow and let the background engine run it")
    p.add_argument("file", metavar="FILE", help=file_help)
    target(p)
    p = command("engine", "run the engine in the foreground until all work is done")
    p.description = (f"{p.description} What it does goes to $JOBBRIDGE_HOME/engine.log. "
                     "With an option, show or stop the engine that runs.")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true",
                      help="show the running engines (pid, since when, workflows they "
                      "drive); exit 0 if one runs, 3 if none")
    what.add_argument("--stop", action="store_true",
                      help="ask the background engine to exit cleanly; its jobs keep "
                      "running and a later engine resumes them")
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    p = command("list", "list the workflows with their job counts")
    json_flag(p, "the list")
    p = command("status", "show the jobs of a workflow; exit 1 if one failed")
    workflow(p, "the workflow's id, RESOURCE:ID on a remote resource (default: the latest "
             "here)", nargs="?")
    json_flag(p, "the status object")
    p = command("wait", "wait for a workflow's end; exit 0 iff all jobs succeeded")
    workflow(p)
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help=f"give up after this many seconds (exit {EXIT_TIMEOUT}; the "
                   "workflow goes on)")
    for action, description in (
            ("stop", "stop a workflow: kill its running jobs, run no more"),
            ("restart", "restart a workflow: re-run what failed or was stopped"),
            ("delete", "delete a workflow: kill its running jobs and forget it")):
        workflow(command(action, description))
    p = command("transfer", "copy a remote workflow's input files there, or its output "
                "files back here")
    workflow(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--outputs", nargs="?", const=True, metavar="DEST",
                      help="bring back the output files its jobs wrote: to their client "
                      "paths, or into the existing folder DEST")
    what.add_argument("--inputs", action="store_true", help="send the input files not "
                      "there yet (submit sends them)")
    p = command("report", "what each job asked for against what it used, with efficiencies")
    workflow(p, "the workflow's id, RESOURCE:ID on a remote resource (default: the latest "
             "here)", nargs="?")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--tsv", action="store_true", help="print one tab-separated row per "
                     "attempt (raw numbers: seconds, bytes, fractions)")
    fmt.add_argument("--json", action="store_true", help="print the report as JSON")
    fmt.add_argument("--html", metavar="FILE", help="write a self-contained page with charts "
                     "(efficiency histograms, a timeline) to FILE")
    p = command("logs", "print a job's stdout (or stderr)")
    workflow(p)
    p.add_argument("job", metavar="JOB", help="the job's id in the workflow")
    p.add_argument("--stderr", action="store_true", help="print its stderr instead")
    p = command("graph", "draw a workflow (stored, or a file) as an SVG picture")
    p.add_argument("workflow", metavar="WF|FILE",
                   help="a workflow's id, or a workflow file to draw before submitting it")
    p.add_argument("--output", "-o", default=None, metavar="SVG",
                   help="the file to write (default: workflow-WF.svg, or FILE's name "
                   "with .svg, in the current folder)")
    p = command("ui", "serve a web dashboard of the workflows (needs jobbridge[ui])")
    p.add_argument("--port", type=int, default=0, metavar="N",
                   help="the port to listen on (default: a free one)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: "
                   "127.0.0.1, this machine only)")
    p.add_argument("--allow-remote", action="store_true", help="allow a --host reachable from "
                   "other machines (anyone with the printed URL can act on your workflows)")
    p = command("schedulers", "list the scheduler types installed, and which can work here")
    json_flag(p, "the table")
    p = command("check", "submit test jobs and say what works")
    target(p)
    from .remote.cli import extend_parser

    extend_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare ``jobbridge``: what it can do
        parser.print_help(sys.stderr)
        return 2
    if args.config is not None:
        os.environ["JOBBRIDGE_CONFIG"] = args.config
    logging.basicConfig(level=logging.WARNING, format="jobbridge: %(message)s")
    return _runner(args).run_command(lambda: _main(args))


def _runner(args: argparse.Namespace) -> type[Scheduler]:
    """The scheduler type that says how ``run`` or ``check`` runs in this process
    (``Scheduler.run_command``: MPI's runs on every rank); the plain way otherwise."""
    if args.command in ("run", "check"):
        try:
            config = resolve_config(args.resource, args.scheduler)
            return get_scheduler_implementation(config.get_scheduler_type())
        except JobbridgeError:
            pass  # _main reports it
    return Scheduler


def _main(args: argparse.Namespace) -> int:
    try:
        from .remote.cli import remote_handler

        return int((remote_handler(args) or _COMMANDS[args.command])(args))
    except InputError as error:
        print(f"jobbridge: error: {error}", file=sys.stderr)
        return 2
    except JobbridgeError as error:
        print(f"jobbridge: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jobbridge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


# --- commands ------------------------------------------------------------------------------------


def _controller(args: argparse.Namespace) -> WorkflowController | RemoteController:
    """This machine's workflows, or a remote resource's (``cluster:12``, ``--resource
    cluster``: see jobbridge.remote)."""
    from .remote.cli import controller_for

    return controller_for(args)


def _run(args: argparse.Namespace) -> int:
    controller = _controller(args)
    started = time.monotonic()
    interrupted: WorkflowInterrupted | None = None
    with ProgressBar() as bar:
        try:
            workflow_id = controller.run(args.file, args.resource, args.scheduler,
                                         progress=bar.update, starting=_say_resource,
                                         copying=bar.update)
        except WorkflowInterrupted as error:
            interrupted, workflow_id = error, error.workflow_id
    status = controller.status(workflow_id)
    _summary(status, time.monotonic() - started)
    if interrupted is not None:
        name = signal.Signals(interrupted.signal_number).name
        print(f"jobbridge: interrupted ({name}): workflow {workflow_id} stopped; "
              f"`jobbridge restart {workflow_id}` runs what did not succeed", file=sys.stderr)
    if args.json:
        _print_json(status)
    return _exit_code(status) if interrupted is None else 128 + interrupted.signal_number


def _say_resource(config: Configuration) -> None:
    print(f"jobbridge: running on resource {config.resource_id!r} "
          f"({config.get_scheduler_type()})", file=sys.stderr, flush=True)


def _submit(args: argparse.Namespace) -> int:
    controller = _controller(args)
    with ProgressBar() as bar:  # a remote resource's input files are copied
        workflow_id = controller.submit(args.file, args.resource, args.scheduler,
                                        copying=bar.update)
    print(workflow_id)
    return 0


def _transfer(args: argparse.Namespace) -> int:
    folder = args.outputs if isinstance(args.outputs, str) else None
    if folder is not None and not os.path.isdir(folder):
        raise InputError(f"{folder}: not a folder (DEST must exist)")
    controller = _controller(args)
    with ProgressBar() as bar:
        said = controller.transfer(args.workflow, outputs=args.outputs is not None,
                                   folder=folder, copying=bar.update)
    for line in said:
        print(line)
    return 0


def _engine(args: argparse.Namespace) -> int:
    from .controller import run_background_engine

    controller = WorkflowController()
    if args.status:
        return _engine_status(controller)
    if args.stop:
        stopped = controller.stop_engine()
        if not stopped:
            print("no background engine is running" if controller.engines()
                  else "no engine is running")
        for info in stopped:
            print(f"engine (pid {info.pid}) stopped")
        _engine_hint(controller, sys.stdout)
        return 0
    if args.quiet:  # the background engine: its stderr is its log already
        logging.getLogger().handlers.clear()
    try:
        served = run_background_engine(controller.store)
    except Interrupted as interrupted:
        return 128 + interrupted.signal_number
    if not served and not args.quiet:
        running = [info for info in controller.engines() if info.kind == "background"]
        which = f" (pid {running[0].pid}, since {running[0].since})" if running else ""
        print(f"jobbridge: an engine already runs for this home{which}", file=sys.stderr)
    return 0


def _engine_status(controller: WorkflowController) -> int:
    engines = controller.engines()
    for info in engines:
        what = "engine" if info.kind == "background" else "jobbridge run"
        driven = (f"drives workflow{'s' if len(info.workflows) > 1 else ''} "
                  f"{', '.join(info.workflows)}" if info.workflows else "drives no workflow")
        print(f"{what}: pid {info.pid}, since {info.since or '?'}, {driven}")
    if not engines:
        print("no engine is running")
    _engine_hint(controller, sys.stdout)
    return 0 if engines else 3


def _engine_hint(controller: WorkflowController | RemoteController, stream: Any = None,
                 only: str | None = None) -> None:
    """Say so when unfinished workflows of this machine (or workflow ``only``) have no
    engine, and how to resume them."""
    if not isinstance(controller, WorkflowController):
        return  # a remote host's engine: its wait resumes it
    unattended = [wf for wf in controller.unattended() if only in (None, wf)]
    if unattended:
        print(f"{'' if stream is sys.stdout else 'jobbridge: '}no engine is running: "
              f"`jobbridge engine` or `jobbridge wait {unattended[0]}` resumes "
              f"workflow{'s' if len(unattended) > 1 else ''} {', '.join(unattended)}",
              file=stream or sys.stderr)


def _list(args: argparse.Namespace) -> int:
    controller = _controller(args)
    workflows = controller.list()
    if args.json:
        _print_json(workflows)
        return 0
    rows = [[w["id"], w["name"] or "", _workflow_status(w["status"], w["counts"]),
             w["submission_date"][:19],
             str(sum(w["counts"].values())), str(w["counts"].get(constants.DONE, 0)),
             str(w["counts"].get(constants.FAILED, 0)),
             str(w["counts"].get(constants.RUNNING, 0))] for w in workflows]
    _table(["ID", "NAME", "STATUS", "SUBMITTED", "JOBS", "DONE", "FAILED", "RUNNING"], rows)
    _engine_hint(controller)
    return 0


def _status(args: argparse.Namespace) -> int:
    controller = _controller(args)
    status = controller.status(args.workflow)
    failed = any(job["status"] == constants.FAILED for job in status["jobs"])
    if args.json:
        _print_json(status)
        return int(failed)
    counts = Counter(job["status"] for job in status["jobs"])
    print(f"workflow {status['id']}{' (' + status['name'] + ')' if status['name'] else ''}: "
          f"{_workflow_status(status['status'], counts)} on {status['resource']} "
          f"({status['scheduler_type']})")
    rows = [[job["id"], _job_status_text(job["status"]), _exit_text(job),
             job["scheduler_job_id"] or "", job["exit_reason"] or _retry_text(job)]
            for job in status["jobs"]]
    header = ["JOB", "STATUS", "EXIT", "SCHEDULER ID", "REASON"]
    if any(job.get("retries") or len(job.get("attempts", ())) > 1 for job in status["jobs"]):
        header.insert(3, "ATTEMPTS")
        for row, job in zip(rows, status["jobs"], strict=True):
            row.insert(3, _attempts_text(job))
    if any(_other_name(job) for job in status["jobs"]):  # soma-workflow files: ids are numbers
        header.insert(1, "NAME")
        for row, job in zip(rows, status["jobs"], strict=True):
            row.insert(1, _other_name(job) or "")
    _table(header, rows)
    if status.get("transfers"):  # a remote host's older jobbridge has none
        print()
        _table(["TRANSFER", "STATUS", "CLIENT PATH", "PATH THERE"],
               [[t["name"], t["status"], t["client_path"],
                 "(the same)" if t["path"] == t["client_path"] else t["path"]]
                for t in status["transfers"]])
    _engine_hint(controller, only=status["id"])
    return int(failed)


def _pending_retry(job: dict[str, Any]) -> dict[str, Any] | None:
    """The failed attempt a job waits to retry, if it does (the status of a remote
    host's older jobbridge has no attempts: None)."""
    attempts = job.get("attempts") or ()
    if job["status"] == constants.NOT_SUBMITTED and attempts and attempts[-1]["retried"]:
        return dict(attempts[-1])
    return None


def _attempts_text(job: dict[str, Any]) -> str:
    """``2`` attempts so far, ``2/4`` while more may come (retries left)."""
    attempts = job.get("attempts") or ()
    retries = job.get("retries") or 0
    if job["status"] in constants.ENDED_JOB_STATUS or not retries:
        return str(len(attempts))
    pending = _pending_retry(job)
    if pending is not None:
        return f"{pending['retry'] + 2}/{retries + 1}"
    current = attempts[-1]["retry"] + 1 if attempts and attempts[-1]["ending_date"] is None else 1
    return f"{current}/{retries + 1}"


def _retry_text(job: dict[str, Any]) -> str:
    """Why a job waits: the retry it waits for, after what."""
    last = _pending_retry(job)
    if last is None:
        return ""
    after = describe_exit(last["exit_status"], last["exit_value"], last["term_sig"])
    when = f" at {job['retry_at'][11:19]}" if job.get("retry_at") else ""
    return (f"retry {last['retry'] + 1} of {job['retries']}{when} after "
            f"{after}{' - ' + last['exit_reason'] if last['exit_reason'] else ''}")


def _report(args: argparse.Namespace) -> int:
    from . import report

    form = "json" if args.json else "tsv" if args.tsv else "html" if args.html else "table"
    controller = _controller(args)
    if isinstance(controller, WorkflowController):
        store = controller.store
        text = report.render(report.build_report(store, args.workflow
                                                 or store.latest_workflow_id()), form)
    else:  # the host builds it: its store has the attempts
        text = controller.report(args.workflow, form)
    if not args.html:
        print(text)
        return 0
    output = Path(args.html)
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InputError(f"--html {args.html}: cannot write: {error.strerror}") from None
    print(output)
    return 0


def _wait(args: argparse.Namespace) -> int:
    controller = _controller(args)
    since = _submitted(controller, args.workflow)
    with ProgressBar(since) as bar:
        try:
            status = controller.wait(args.workflow, args.timeout, progress=bar.update)
        except TimeoutError as error:
            timed_out = str(error)
        else:
            timed_out = ""
            counts = Counter(job["status"] for job in status["jobs"])
            number = int(status["id"].rpartition(":")[2])  # a remote id is RESOURCE:N
            bar.update(Progress(number, len(status["jobs"]), dict(counts)))
    if timed_out:
        print(f"jobbridge: {timed_out} after {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    ended = status["ending_date"]
    _summary(status, ended and _epoch(ended) - since)
    return _exit_code(status)


def _submitted(controller: WorkflowController | RemoteController, workflow_id: str) -> float:
    """When the workflow was submitted: the progress bar's elapsed time counts from it."""
    if isinstance(controller, WorkflowController):  # the one row, not the jobs
        return _epoch(controller.store.workflow(workflow_id).submission_date)
    return _epoch(controller.status(workflow_id)["submission_date"])


def _request(args: argparse.Namespace) -> int:
    print(f"workflow {args.workflow}: {_controller(args).request(args.workflow, args.command)}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    path = WorkflowController().log_file(args.workflow, args.job, args.stderr)
    try:
        with path.open("rb") as stream:
            shutil.copyfileobj(stream, sys.stdout.buffer)
    except FileNotFoundError:
        print(f"jobbridge: {path} does not exist (yet)", file=sys.stderr)
        return 1
    return 0


def _graph(args: argparse.Namespace) -> int:
    """A stored workflow (an id) in its current state, or a workflow file as planned."""
    from . import graph

    nodes: Sequence[graph.Node]
    if args.workflow.isdigit():
        store = WorkflowController().store
        with store.snapshot():
            workflow = store.workflow(args.workflow)
            jobs = store.jobs(workflow.id, include_hidden=True)
            stored_edges = store.dependencies(workflow.id)
        position = {job.idx: i for i, job in enumerate(jobs)}
        nodes, edges = jobs, [(position[a], position[b]) for a, b in stored_edges]
        title = (f"workflow {workflow.id}{' ' + workflow.name if workflow.name else ''} - "
                 f"{_short_status(workflow.status)}")
        default = f"workflow-{workflow.id}.svg"
    else:
        file = Path(args.workflow)
        spec = load_workflow_file(file, to_run=False)
        nodes, edges = graph.spec_graph(spec)
        title = f"{spec.name or file.name} - not submitted"
        default = file.with_suffix(".svg").name
    try:
        svg = graph.workflow_svg(title, nodes, edges)
    except ValueError as error:
        raise InputError(str(error)) from None
    output = Path(args.output or default)
    output.write_text(svg, encoding="utf-8")
    print(output)
    return 0


def _ui(args: argparse.Namespace) -> int:
    from .configuration import jobbridge_home

    try:
        from .ui.server import serve
    except ImportError as error:
        raise JobbridgeError(f"jobbridge ui needs its extra ({error.name} is missing): "
                             "pip install 'jobbridge[ui]'") from None
    return serve(jobbridge_home(), args.host, args.port, args.allow_remote)


def _schedulers(args: argparse.Namespace) -> int:
    table = schedulers_table()
    if args.json:
        _print_json(table)
        return 0
    _table(["SCHEDULER", "ENABLED", "WHY NOT"],
           [[str(s["name"]), "yes" if s["enabled"] else "no", str(s["reason"])] for s in table])
    return 0


def _check(args: argparse.Namespace) -> int:
    """Submit a few test jobs through the scheduler and say what works."""
    config = resolve_config(args.resource, args.scheduler)
    kind = config.get_scheduler_type()
    print(f"ok    scheduler {kind!r} is installed and available (resource {config.resource_id!r})")
    try:
        scheduler = build_scheduler(kind, config)
    except JobbridgeError as error:
        print(f"FAIL  cannot build the scheduler: {error}")
        return 1
    passed = True
    with tempfile.TemporaryDirectory(prefix="check-", dir=_check_dir()) as folder:
        out = Path(folder) / "out"
        jobs = [EngineJob("hello", ["sh", "-c", "echo hello from $(hostname)"],
                          stdout_file=str(out), stderr_file=str(out) + ".err",
                          working_directory=folder, submission_tag=f"check-{time.time_ns():x}"),
                EngineJob("exit3", ["sh", "-c", "exit 3"], working_directory=folder,
                          submission_tag=f"check3-{time.time_ns():x}")]
        started = time.monotonic()
        try:
            (status, info), (_, info3) = run_to_end(scheduler, jobs, timeout=300)
        except (TimeoutError, JobbridgeError, OSError) as error:
            print(f"FAIL  test jobs did not end: {error}")
            return 1
        finally:
            scheduler.close()
        seconds = time.monotonic() - started
        checks = [
            (status == constants.DONE, f"a test job ran and ended {status} in {seconds:.1f} s"),
            (out.exists() and out.read_text().startswith("hello"),
             f"its output reached {out.name}: {out.read_text().strip() if out.exists() else '-'}"),
            (info3[0] == constants.FINISHED_REGULARLY and info3[1] == 3,
             f"exit codes are reported ({info3[0]}, {info3[1]})"),
            (info[3] is not None, f"resource usage: {info[3] or 'not reported'}"),
        ]
        for ok, text in checks:
            print(f"{'ok  ' if ok else 'FAIL'}  {text}")
            passed &= ok or text.startswith("resource usage")
    return 0 if passed else 1


def _check_dir() -> str:
    from .configuration import jobbridge_home

    folder = jobbridge_home() / "check"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(folder)


_COMMANDS = {"run": _run, "submit": _submit, "engine": _engine, "list": _list,
             "status": _status, "wait": _wait, "stop": _request, "restart": _request,
             "delete": _request, "report": _report, "logs": _logs, "graph": _graph,
             "schedulers": _schedulers, "check": _check, "ui": _ui, "transfer": _transfer}


# --- output ----------------------------------------------------------------------------------


class ProgressBar:
    """A workflow's progress, one line on stderr redrawn in place, when stderr is a
    terminal (elsewhere the summary that follows is the one final line).

    The engine's reports only record the latest counts; a thread draws them every
    REDRAW seconds, so the elapsed time moves on while long jobs run and no state
    is dropped (a throttle on the reports once hid the jobs' starts: ``running 0``
    for a whole run). Dependency-free on purpose: a one-line bar did not justify
    ``rich`` and the two packages it pulls in, imported by every command.
    """

    WIDTH = 30
    REDRAW = 0.5

    def __init__(self, since: float | None = None) -> None:
        """``since``: the epoch second the elapsed time counts from (default: now)."""
        self.enabled = sys.stderr.isatty()
        self.since = time.time() if since is None else since
        self.progress: Progress | TransferProgress | None = None
        self.width = 0  # of the line on screen, to blank a longer one's rest
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._ticker = threading.Thread(target=self._tick, name="jobbridge-progress",
                                            daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, progress: Progress | TransferProgress) -> None:
        """The engine's latest counts, or a copy's bytes, drawn by the next tick (or by
        close). A finished copy's line is drawn and ended now: what follows (the
        workflow's progress, its id) goes on the next line."""
        with self._lock:
            self.progress = progress
            if isinstance(progress, TransferProgress) and progress.finished:
                if self.enabled:
                    self._draw()
                    sys.stderr.write("\n")
                    sys.stderr.flush()
                self.progress, self.width = None, 0

    def close(self) -> None:
        """Draw the last state and end the line (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.enabled and self.progress is not None:
                self._draw()
                sys.stderr.write("\n")
                sys.stderr.flush()

    def _tick(self) -> None:
        while True:
            with self._lock:
                self._draw()
            if self._closed.wait(self.REDRAW):
                return

    def _draw(self) -> None:
        """Draw the line (lock held), cut to the terminal's width so it never wraps."""
        if self.progress is None:
            return
        try:
            columns = os.get_terminal_size(sys.stderr.fileno()).columns
        except OSError:
            columns = 0
        # one column short of the edge (no auto-wrap); an unsized terminal says 0
        line = _progress_line(self.progress, time.time() - self.since, (columns or 80) - 1)
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()
        self.width = len(line)


def _progress_line(progress: Progress | TransferProgress, seconds: float, columns: int) -> str:
    """``[###...] 1/4  0:07  done 1  failed 0  running 2  queued 0  waiting 1`` in at
    most ``columns`` characters (the bar shrinks, then the end is cut): running jobs
    have started, queued ones are submitted and not started yet, waiting ones are
    not submitted yet (their dependencies, the resource's limits, or their input
    files). A copy: ``[##....] 3.0/12.5 MiB  0:02  sending data``."""
    if isinstance(progress, TransferProgress):  # a sent archive's headers count too: capped
        text = (f"{min(progress.done, progress.total) / 2**20:.1f}/"
                f"{progress.total / 2**20:.1f} MiB  "
                f"{_elapsed(seconds)}  {'sending' if progress.sending else 'receiving'} "
                f"{one_line(progress.name)}")
        ended, total = progress.done, progress.total
    else:
        counts = progress.counts
        done, failed = counts.get(constants.DONE, 0), counts.get(constants.FAILED, 0)
        running = counts.get(constants.RUNNING, 0)
        waiting = counts.get(constants.NOT_SUBMITTED, 0)
        queued = sum(counts.values()) - done - failed - running - waiting
        text = (f"{progress.ended}/{progress.total}  {_elapsed(seconds)}  done {done}  "
                f"failed {failed}  running {running}  queued {queued}  waiting {waiting}")
        ended, total = progress.ended, progress.total
    width = min(ProgressBar.WIDTH, columns - len(text) - 3)
    if width < 10:
        return text[:columns]
    filled = width * min(ended, total) // max(total, 1)
    return f"[{'#' * filled}{'.' * (width - filled)}] {text}"


def _elapsed(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _summary(status: dict[str, Any], seconds: float | None) -> None:
    """The final lines of run and wait: how many succeeded (and were retried), then
    each failure."""
    jobs = status["jobs"]
    unsuccessful = [j for j in jobs if j["status"] != constants.DONE]
    failed = sum(j["status"] == constants.FAILED for j in jobs)
    stopping = sum(j["status"] == constants.KILL_PENDING for j in jobs)
    retried = sum(any(a["retried"] for a in j.get("attempts", ())) for j in jobs)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    print(f"workflow {status['id']}: {len(jobs) - len(unsuccessful)}/{len(jobs)} jobs succeeded"
          f"{f', {failed} failed' if failed else ''}{f', {stopping} stopping' if stopping else ''}"
          f"{f', {retried} retried' if retried else ''}{took}", file=sys.stderr)
    for job in unsuccessful[:10]:
        name = _other_name(job)
        print(f"  {job['id']}{f' ({one_line(name)})' if name else ''}: "
              f"{_exit_text(job) or _job_status_text(job['status'])}"
              f"{' - ' + job['exit_reason'] if job['exit_reason'] else ''}", file=sys.stderr)
    if len(unsuccessful) > 10:
        print(f"  ... and {len(unsuccessful) - 10} more (jobbridge status {status['id']})",
              file=sys.stderr)


def _exit_code(status: dict[str, Any]) -> int:
    return 0 if all(job["status"] == constants.DONE for job in status["jobs"]) else 1


def _exit_text(job: dict[str, Any]) -> str:
    """How a job ended, in words: ``exit code 3``, ``signal 9 (SIGKILL)``, ``not run``."""
    return describe_exit(job["exit_status"], job["exit_value"], job["term_sig"])


def _other_name(job: dict[str, Any]) -> str | None:
    """The job's name when it says more than its id (a soma-workflow job's id is a number)."""
    name = job.get("name")
    return name if name and name != job["id"] else None


def _job_status_text(status: str) -> str:
    """A job's status as the table shows it: ``kill_pending`` is a job being stopped
    (cancelled, still ending in its system: Slurm's COMPLETING)."""
    return "stopping" if status == constants.KILL_PENDING else status


def _workflow_status(status: str, counts: Mapping[str, int]) -> str:
    """``done``, or ``done, 2 failed``: failures show in the status itself."""
    failed = counts.get(constants.FAILED, 0)
    return _short_status(status) + (f", {failed} failed" if failed else "")


def _short_status(status: str) -> str:
    return str(status).removeprefix("workflow_").replace("_", " ")


def _epoch(iso_date: str) -> float:
    return datetime.fromisoformat(iso_date).timestamp()


def _table(header: list[str], rows: list[list[str]]) -> None:
    print(aligned(header, rows))


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
