"""The job wrapper that batch scripts run on a job's private spec (:func:`command`).

Why: a batch script must carry no user string that a shell could misread, and
the batch system's own account of a job is often incomplete (Torque's wrappers
drop ``Exit_status``; Slurm without accounting forgets finished jobs; a shell
reports a signal as 128+n). So the script only runs a wrapper on a private spec
file; the wrapper starts the argv byte-exact with its env, directory and files,
and writes what happened (wait status, rusage, when it started and ended, the
signals the system sent it meanwhile; or which file, folder or program failed
to open, with its errno) to the spec's ``exit_file`` before ending the same way.

Two wrappers do this alike: the native one (``jobwrap.c``, built on first use by
:mod:`.nativewrap`), and this module, run by ``job_python`` where no C compiler
is. The native one starts in about 1 ms where a bare Python takes 10-20 ms, which
counts before each of an array's 10,000 elements on the compute nodes' cores.
Both read the spec of :func:`encode_spec` and write raw records; the engine words
them (:func:`read_exit_file`, with :mod:`.exits`: one definition of the words).

Both files are the scheduler's first source of truth (it watches their folder,
costing the batch system nothing): the spec's ``start_file`` is written as soon
as the wrapper runs, the ``exit_file`` just before it ends.

A forced end must reach the job's whole process tree, so the wrapper puts the
job where the batch system's kill reaches, as the backend declares it
(:class:`~.batch.SystemKill`, the spec's ``kill_reaches``): in the wrapper's own
process group when the system signals the script's process group (Grid Engine)
or its session (PBS, Torque; Slurm signals every process of the job), the signals
then reaching the job directly, once; in a session of its own, to which the
wrapper forwards every signal, when the system signals the script alone.

This module runs as ``python -I -S`` with built-in modules only (the spec's
fields split on NUL, the records written with the C encoder's string escaping,
the job started by ``fork`` + ``exec``); a test holds it to its import set.
"""

from __future__ import annotations

import os
import sys
import time

from .. import constants
from .exits import (
    KILL_GRACE_SECONDS,
    OUTPUT_FLAGS,
    OUTPUT_MODE,
    append_note,
    exit_fields,
    path_error,
    start_failure,
)

try:
    from _json import encode_basestring_ascii as _quoted
except ImportError:  # an interpreter without the C accelerator
    from json.encoder import encode_basestring_ascii as _quoted

TYPE_CHECKING = False
if TYPE_CHECKING:  # the same functions and constants, typed
    import signal as _signal
    from collections.abc import Mapping
    from typing import Any
else:
    import _signal

#: The spec's name in a job's folder.
SPEC_FILE = "job.spec"
#: The first field of a spec (:func:`encode_spec`).
SPEC_MAGIC = b"jobbridge-spec 2"
#: The spec's single-valued fields, in their order; ``command`` and ``env`` follow,
#: each as a count and its items (``env``'s as ``KEY=VALUE``).
SPEC_FIELDS = ("exit_file", "start_file", "kill_reaches", "kill_warning", "cpus", "stdin",
               "stdout_file", "stderr_file", "join_stderrout", "working_directory")
#: Signals a batch system sends to end, warn or signal a job: the wrapper outlives
#: them (to write the exit file) and notes them.
CAUGHT_SIGNALS = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGUSR1,
                  _signal.SIGUSR2, _signal.SIGCONT, _signal.SIGXCPU)
#: Signals Python ignores that a started program expects at their default action.
_RESTORED_SIGNALS = (_signal.SIGPIPE, _signal.SIGXFSZ)
#: Runs the wrapper from the package folder given as its first argument, without
#: site-packages (a bare start); a ``job_python`` with its own jobbridge finds it
#: there when that folder is not on the compute nodes. One line: Grid Engine's
#: DRMAA cuts an argument at its first newline.
_BOOT = ("import os, sys; root = sys.argv.pop(1); sys.path.insert(0, root) "
         "if os.path.isdir(os.path.join(root, 'jobbridge')) else __import__('site').main(); "
         "from jobbridge.schedulers.jobwrap import main; sys.exit(main(sys.argv[1:]))")


def command(python: str) -> list[str]:
    """The argv that runs this wrapper with the interpreter ``python``: the spec's
    path follows."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return [python, "-I", "-S", "-c", _BOOT, package_root]


# --- the spec -------------------------------------------------------------------------------
def encode_spec(spec: Mapping[str, Any]) -> bytes:
    """A spec's bytes: :data:`SPEC_MAGIC`, then each of :data:`SPEC_FIELDS` (None,
    False: empty; True: ``1``), ``command``'s count and items, ``env``'s count and
    ``KEY=VALUE`` items; every field ends with a NUL (docs/batch-backend.md says
    why: the native wrapper reads it without a parser)."""
    fields = [_field(spec.get(key)) for key in SPEC_FIELDS]
    argv, env = spec["command"], spec.get("env") or {}
    fields += [str(len(argv)), *argv, str(len(env)), *(f"{key}={value}"
                                                       for key, value in env.items())]
    if any("\0" in field for field in fields):
        raise ValueError("a job's spec cannot hold a NUL character")
    return b"\0".join([SPEC_MAGIC, *map(os.fsencode, fields)]) + b"\0"


def _field(value: object) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    return str(int(value)) if isinstance(value, int) else str(value)  # an IntEnum signal


def write_spec(path: str, spec: Mapping[str, Any]) -> None:
    """Write a job's spec (:func:`encode_spec`), private and atomically."""
    _write_atomically(path, encode_spec(spec))


def read_spec(path: str) -> dict[str, Any]:
    """The spec at ``path`` as :func:`encode_spec` takes it, or an earlier release's
    (a job queued before an upgrade: JSON, then :mod:`marshal`, with a ``job``).

    Raises ValueError when it is none of them."""
    with open(path, "rb") as stream:
        data = stream.read()
    if data.startswith(SPEC_MAGIC + b"\0"):
        return _decode_spec(data)
    if data[:2] == b'{"':  # never marshal's: '"' is none of its type codes
        import json

        old: dict[str, Any] = json.loads(data)
    else:
        import marshal

        old = marshal.loads(data)
    job, kill = old["job"], old.get("kill") or {}
    return {**{key: job.get(key) for key in ("command", "env", "stdin", "stdout_file",
                                             "stderr_file", "join_stderrout",
                                             "working_directory")},
            "exit_file": old["exit_file"], "start_file": old.get("start_file"),
            "cpus": old.get("cpus", 1), "kill_reaches": kill.get("reaches", "process_group"),
            "kill_warning": kill.get("warning")}


def _decode_spec(data: bytes) -> dict[str, Any]:
    fields = [os.fsdecode(field) for field in data.split(b"\0")]
    if fields[-1] != "":
        raise ValueError("bad spec (no NUL after its last field)")
    spec: dict[str, Any] = dict(zip(SPEC_FIELDS, fields[1:], strict=False))
    at = len(SPEC_FIELDS) + 1
    try:
        argc = int(fields[at])
        spec["command"] = fields[at + 1:at + 1 + argc]
        at += 1 + argc
        envc = int(fields[at])
        spec["env"] = dict(item.split("=", 1) for item in fields[at + 1:at + 1 + envc])
        complete = argc > 0 and len(spec["command"]) == argc and len(spec["env"]) == envc \
            and at + 1 + envc == len(fields) - 1
    except (IndexError, ValueError):
        complete = False
    if not complete:
        raise ValueError("bad spec (its fields do not add up)")
    spec["cpus"] = int(spec["cpus"] or 1)
    spec["kill_warning"] = int(spec["kill_warning"]) if spec["kill_warning"] else None
    spec["join_stderrout"] = spec["join_stderrout"] == "1"
    return spec


# --- the records ----------------------------------------------------------------------------
def write_exit_file(path: str, record: Mapping[str, Any]) -> None:
    """Atomically write a record (exit or start) as JSON, private (a reader never
    sees half of it; a watcher sees one rename)."""
    _write_atomically(path, _json(record).encode("ascii"))


def read_exit_file(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The exit record in the engine's words: ``exit`` (the exit info's 4 items),
    ``reason``, ``started``, ``ended``, ``signals`` (those the system sent while the
    job ran, SIGCONT aside); None before it exists. A wrapper's raw record is worded
    here (a failed start with the spec beside it); an earlier release's worded one
    is as it was."""
    import json

    try:
        with open(path, encoding="utf-8") as stream:
            record: dict[str, Any] = json.load(stream)
    except (OSError, ValueError):
        return None
    if "exit" in record:
        return record
    if "failed" in record:
        try:
            spec: dict[str, Any] | None = read_spec(os.path.join(os.path.dirname(path),
                                                                 SPEC_FILE))
        except (OSError, ValueError, KeyError):
            spec = None
        reason = failure_reason(record["failed"], record["errno"], spec)
        return {"exit": [constants.EXIT_ABORTED, None, None, None], "reason": reason,
                "started": None, "ended": record["ended"], "signals": record["signals"]}
    *info, why = exit_fields(record["status"], record["cpu"], record["maxrss"],
                             record["wall"], record["cpus"])
    return {"exit": info, "reason": why, "started": record["started"],
            "ended": record["ended"], "signals": record["signals"]}


def failure_reason(step: str, errno: int, spec: Mapping[str, Any] | None) -> str:
    """Why a job could not start, from the step that failed (``program``, or the
    spec's key of the file or folder: ``stdin``, ``stdout_file``, ``stderr_file``,
    ``working_directory``), its errno and the job's spec (None when it is gone)."""
    error = OSError(errno, os.strerror(errno)) if errno else OSError("unknown error")
    if step == "program":
        return start_failure(spec["command"][0] if spec else "the job's program", error)
    path = (spec.get(step) if spec else None) or (os.devnull if step != "working_directory"
                                                  else "its working directory")
    return path_error(step, path, error).reason


def _write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _json(value: object) -> str:
    """JSON of the records' values (None, bool, int, float, str, list, dict)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        quoted: str = _quoted(value)
        return quoted
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json(str(key))}:{_json(item)}"
                              for key, item in value.items()) + "}"
    raise TypeError(f"not in a record: {value!r}")


# --- the wrapper ----------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: jobwrap SPEC", file=sys.stderr)
        return 2
    try:
        spec = read_spec(argv[0])
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"jobwrap: {argv[0]}: bad spec ({error})", file=sys.stderr)
        return 2
    warning: int | None = spec["kill_warning"]
    forward = spec["kill_reaches"] == "script"
    received: list[int] = []
    running: list[int] = []  # the job's pid, from its fork on
    missed: list[int] = []  # signals to forward that found no job's group yet

    def caught(sig: int, _frame: object) -> None:
        if sig != _signal.SIGCONT and sig not in received:
            received.append(sig)
        if not forward:
            return
        if not running or not _kill_group(running[0], sig):
            missed.append(sig)
        elif sig == warning:  # SIGKILL for the script alone follows: end the job first
            _signal.signal(_signal.SIGALRM, lambda *_: _kill_group(running[0], _signal.SIGKILL))
            _signal.setitimer(_signal.ITIMER_REAL, KILL_GRACE_SECONDS)

    # before the job starts (an exec gives handlers back their default action)
    for sig in CAUGHT_SIGNALS:
        _signal.signal(sig, caught)
    if spec["start_file"]:  # older specs have none
        write_exit_file(spec["start_file"], {"host": os.uname().nodename, "pid": os.getpid()})
    try:
        pid = start(spec, new_session=forward, running=running)
    except _StartFailed as failure:
        step, errno = failure.args
        append_note(spec["stdout_file"] if spec["join_stderrout"] else spec["stderr_file"],
                    failure_reason(step, errno, spec))
        write_exit_file(spec["exit_file"], {"failed": step, "errno": errno,
                                            "cpus": spec["cpus"], "started": None,
                                            "ended": time.time(), "signals": received})
        return 127
    if forward and warning in missed:  # warned before the job's group existed
        _kill_group(pid, _signal.SIGKILL)
    started = time.monotonic()
    began = time.time()
    _, status, rusage = os.wait4(pid, 0)  # PEP 475: retried after each handler
    if forward and warning in received:  # the system SIGKILLs the script alone:
        _kill_group(pid, _signal.SIGKILL)  # what outlived the job's leader goes now
    write_exit_file(spec["exit_file"], {
        "status": status, "cpu": rusage.ru_utime + rusage.ru_stime,
        "maxrss": rusage.ru_maxrss, "wall": time.monotonic() - started, "cpus": spec["cpus"],
        "started": began, "ended": time.time(), "signals": received})
    if os.WIFSIGNALED(status):  # end the same way, so the batch system sees it too
        term_sig = os.WTERMSIG(status)
        if term_sig != _signal.SIGKILL:  # SIGPIPE: ignored by Python
            _signal.signal(term_sig, _signal.SIG_DFL)
        os.kill(os.getpid(), term_sig)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


class _StartFailed(Exception):
    """The job did not start: args ``(step, errno)`` (:func:`failure_reason`)."""


def start(spec: Mapping[str, Any], new_session: bool, running: list[int]) -> int:
    """Start the spec's job (argv searched on its env's ``PATH``, env merged over
    ours, its directory and files, only descriptors 0-2 inherited) as
    ``subprocess.Popen`` would; its pid, put in ``running`` as soon as it is forked
    (a signal to forward may come while the job runs but its exec is not yet known
    to have succeeded). ``new_session`` False keeps it in our process group.
    Raises _StartFailed."""
    for fd in (0, 1, 2):  # so that the job's files never land on them
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)
    read_end, write_end = os.pipe()  # close-on-exec: EOF once the exec succeeds
    pid = os.fork()
    if pid == 0:  # the child: never returns
        step, errno = "program", 0
        try:
            os.close(read_end)
            _exec(spec, new_session, write_end)
        except _StartFailed as failure:
            step, errno = failure.args
        except OSError as error:
            errno = error.errno or 0
        except BaseException:  # the parent must hear of anything
            pass
        try:
            os.write(write_end, f"{step} {errno}".encode())
        finally:
            os._exit(127)
    running.append(pid)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
    os.close(read_end)
    if chunks:
        os.waitpid(pid, 0)
        failed_step, _, number = b"".join(chunks).decode().partition(" ")
        raise _StartFailed(failed_step, int(number))
    return pid


def _exec(spec: Mapping[str, Any], new_session: bool, keep: int) -> None:
    for sig in (*CAUGHT_SIGNALS, *_RESTORED_SIGNALS):
        _signal.signal(sig, _signal.SIG_DFL)
    stdin = _open("stdin", spec["stdin"], os.O_RDONLY | os.O_CLOEXEC)
    stdout = _open("stdout_file", spec["stdout_file"], OUTPUT_FLAGS)
    stderr = stdout if spec["join_stderrout"] else _open(
        "stderr_file", spec["stderr_file"], OUTPUT_FLAGS)
    for target, fd in enumerate((stdin, stdout, stderr)):
        os.dup2(fd, target)  # inheritable
    if new_session:
        os.setsid()
    if spec["working_directory"]:
        try:
            os.chdir(spec["working_directory"])
        except OSError as error:
            raise _StartFailed("working_directory", error.errno) from None
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    argv: list[str] = spec["command"]
    if spec["env"]:
        os.execvpe(argv[0], argv, {**os.environ, **spec["env"]})
    os.execvp(argv[0], argv)


def _open(step: str, path: str | None, flags: int) -> int:
    try:
        return os.open(path or os.devnull, flags, OUTPUT_MODE)
    except OSError as error:
        raise _StartFailed(step, error.errno) from None


def _kill_group(pgid: int, sig: int) -> bool:
    """Whether ``sig`` reached the process group ``pgid``."""
    try:
        os.killpg(pgid, sig)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
