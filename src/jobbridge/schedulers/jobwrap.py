"""The job wrapper that batch scripts run on a job's private spec (:func:`command`).

Why: a batch script must carry no user string that a shell could misread, and
the batch system's own account of a job is often incomplete (Torque's wrappers
drop ``Exit_status``; Slurm without accounting forgets finished jobs; a shell
reports a signal as 128+n). So the script only runs this wrapper on a private
spec file; the wrapper starts the argv byte-exact with its env, directory and
files, and writes the true exit info (code or signal, rusage, when it started
and ended, and the signals the system sent it meanwhile) to the spec's
``exit_file`` before ending the same way.

Both files are the scheduler's first source of truth (it watches their folder,
costing the batch system nothing): the spec's ``start_file`` is written as soon
as the wrapper runs, the ``exit_file`` just before it ends.

A forced end must reach the job's whole process tree, so the wrapper puts the
job where the batch system's kill reaches, as the backend declares it
(:class:`~.batch.SystemKill`, in the spec's ``kill``): in the wrapper's own
process group when the system signals the script's process group (Grid Engine)
or its session (PBS, Torque; Slurm signals every process of the job), the signals
then reaching the job directly, once; in a group of its own, to which the wrapper
forwards every signal, when the system signals the script alone.

It runs before every job's command, on the compute node's cores, so it costs
about a bare interpreter's start (``python -I -S``, built-in modules only): the
spec is :mod:`marshal` (written by the same user in a private folder), the
records are JSON written with the C encoder's string escaping, and the job
starts by ``fork`` + ``exec``. A test holds it to its import set.
"""

from __future__ import annotations

import marshal
import os
import sys
import time

from .. import constants
from .exits import (
    KILL_GRACE_SECONDS,
    OUTPUT_FLAGS,
    OUTPUT_MODE,
    StartError,
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
    """The argv that runs the wrapper with the interpreter ``python``: the spec's
    path follows."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return [python, "-I", "-S", "-c", _BOOT, package_root]


def write_spec(path: str, spec: Mapping[str, Any]) -> None:
    """Write a job's spec (``job``: :meth:`.EngineJob.to_dict`, ``cpus``: its
    :attr:`~.EngineJob.cpu_count`, ``exit_file``, ``start_file``, ``kill``: a
    :class:`~.batch.SystemKill`'s fields), private and atomically."""
    _write_atomically(path, marshal.dumps(_plain(spec), 4))


def _plain(value: Any) -> Any:
    """``value`` in exact built-in types, which marshal takes (an IntEnum signal, a
    str subclass: as JSON would write them)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if value is None:
        return None
    raise TypeError(f"not in a job's spec: {value!r}")


def read_spec(path: str) -> dict[str, Any]:
    """A spec written by :func:`write_spec`, or an earlier release's JSON one (a job
    queued before an upgrade)."""
    with open(path, "rb") as stream:
        data = stream.read()
    if data[:2] == b'{"':  # never marshal's: '"' is none of its type codes
        import json

        spec: dict[str, Any] = json.loads(data)
        return spec
    loaded: dict[str, Any] = marshal.loads(data)
    return loaded


def write_exit_file(path: str, record: Mapping[str, Any]) -> None:
    """Atomically write a record (exit or start) as JSON, private (a reader never
    sees half of it; a watcher sees one rename)."""
    _write_atomically(path, _json(record).encode("ascii"))


def read_exit_file(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The exit record: ``exit`` (the exit info's 4 items), ``reason``, ``signals``
    (those the system sent while the job ran, SIGCONT aside); None before it exists."""
    import json

    try:
        with open(path, encoding="utf-8") as stream:
            record: dict[str, Any] = json.load(stream)
            return record
    except (OSError, ValueError):
        return None


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


def main(argv: list[str]) -> int:
    spec = read_spec(argv[0])
    job: dict[str, Any] = spec["job"]
    kill: dict[str, Any] = spec.get("kill") or {}
    warning: int | None = kill.get("warning")
    forward = kill.get("reaches") == "script"
    exit_file: str = spec["exit_file"]
    received: list[int] = []
    pid = 0  # the job's, once it runs

    def caught(sig: int, _frame: object) -> None:
        if sig != _signal.SIGCONT and sig not in received:
            received.append(sig)
        if forward and pid:
            _kill_group(pid, sig)
            if sig == warning:  # SIGKILL for the script alone follows: end the job first
                _signal.signal(_signal.SIGALRM, lambda *_: _kill_group(pid, _signal.SIGKILL))
                _signal.setitimer(_signal.ITIMER_REAL, KILL_GRACE_SECONDS)

    # before the job starts (an exec gives handlers back their default action)
    for sig in CAUGHT_SIGNALS:
        _signal.signal(sig, caught)
    if spec.get("start_file"):  # older specs have none
        write_exit_file(spec["start_file"], {"host": os.uname().nodename, "pid": os.getpid()})
    try:
        pid = start(job, new_session=forward)
    except StartError as error:
        reason = str(error)
        append_note(job["stdout_file"] if job.get("join_stderrout") else job.get("stderr_file"),
                    reason)
        write_exit_file(exit_file, {"exit": [constants.EXIT_ABORTED, None, None, None],
                                    "reason": reason, "started": None, "ended": time.time(),
                                    "signals": received})
        return 127
    if forward and warning in received:  # warned before the job existed
        _kill_group(pid, _signal.SIGKILL)
    started = time.monotonic()
    began = time.time()
    _, status, rusage = os.wait4(pid, 0)  # PEP 475: retried after each handler
    *info, why = exit_fields(status, rusage, time.monotonic() - started, spec.get("cpus", 1))
    write_exit_file(exit_file, {"exit": info, "reason": why, "started": began,
                                "ended": time.time(), "signals": received})
    if os.WIFSIGNALED(status):  # end the same way, so the batch system sees it too
        term_sig = os.WTERMSIG(status)
        if term_sig != _signal.SIGKILL:  # SIGPIPE: ignored by Python
            _signal.signal(term_sig, _signal.SIG_DFL)
        os.kill(os.getpid(), term_sig)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def start(job: Mapping[str, Any], new_session: bool) -> int:
    """Start ``job`` (argv searched on its env's ``PATH``, env merged over ours, its
    directory and files, only descriptors 0-2 inherited) as ``subprocess.Popen``
    would; its pid. ``new_session`` False keeps it in our process group.

    Raises StartError, saying which file, folder or program failed.
    """
    for fd in (0, 1, 2):  # so that the job's files never land on them
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)
    argv: list[str] = job["command"]
    env = {**os.environ, **job["env"]} if job.get("env") else None
    read_end, write_end = os.pipe()  # close-on-exec: EOF once the exec succeeds
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_end)
            _exec(job, argv, env, new_session, write_end)
        except OSError as error:
            message = start_failure(argv[0], error)
        except BaseException as error:  # the parent must hear of anything
            message = f"cannot start {argv[0]!r}: {error}"
        try:
            os.write(write_end, message.encode("utf-8", "surrogateescape"))
        finally:
            os._exit(127)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
    os.close(read_end)
    if chunks:
        os.waitpid(pid, 0)
        raise StartError(b"".join(chunks).decode("utf-8", "surrogateescape"))
    return pid


def _exec(job: Mapping[str, Any], argv: list[str], env: dict[str, str] | None,
          new_session: bool, keep: int) -> None:
    for sig in (*CAUGHT_SIGNALS, *_RESTORED_SIGNALS):
        _signal.signal(sig, _signal.SIG_DFL)
    stdin = _open("stdin", job.get("stdin"), os.O_RDONLY | os.O_CLOEXEC)
    stdout = _open("stdout_file", job.get("stdout_file"), OUTPUT_FLAGS)
    stderr = stdout if job.get("join_stderrout") else _open(
        "stderr_file", job.get("stderr_file"), OUTPUT_FLAGS)
    for target, fd in enumerate((stdin, stdout, stderr)):
        os.dup2(fd, target)  # inheritable
    if new_session:
        os.setsid()
    directory = job.get("working_directory")
    if directory:
        try:
            os.chdir(directory)
        except OSError as error:
            raise path_error("working_directory", directory, error) from None
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
    if env is None:
        os.execvp(argv[0], argv)
    os.execvpe(argv[0], argv, env)


def _open(key: str, path: str | None, flags: int) -> int:
    try:
        return os.open(path or os.devnull, flags, OUTPUT_MODE)
    except OSError as error:
        raise path_error(key, path or os.devnull, error) from None


def _kill_group(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105 - contextlib is not a built-in module
        os.killpg(pgid, sig)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
