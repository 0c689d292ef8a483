"""File transfers of a remote resource: tar streams over the host's master SSH connection.

A workflow submitted to a remote resource names client files (its ``transfers``,
or soma-workflow's ``FileTransfer`` objects); the host places each in a folder of
the workflow's under its ``$JOBBRIDGE_HOME/transfers`` and renders the jobs'
commands with those paths. The laptop then streams the inputs there
(:func:`send`): a tar archive written here, read by ``tar -x`` on the host,
through the same master connection as every request, so an MFA site asks
nothing more. Outputs come back on request (:func:`receive`, ``jobbridge
transfer WF --outputs``): ``tar -c`` there, each member checked and written here
to a temporary name, renamed into place once whole.

The remote ``tar`` argv holds the host's own paths (from its answers); like every
remote command line it goes through :func:`.ssh.remote_command`, the one quoting
function. File names travel inside the archive, never on a command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from ..dynamic import Transfer, TransferProgress, check_transfer_name
from ..errors import InputError, JobbridgeError
from .ssh import SshConnection, stderr_tail

Copying = Callable[[TransferProgress], None]
#: Bytes read from the archive at a time.
CHUNK = 1 << 20


def check_inputs(transfers: Iterable[Transfer]) -> None:
    """Every input transfer's client files exist: InputError naming the first missing
    one's place, before anything is sent."""
    for transfer in transfers:
        if not transfer.sent:
            continue
        for item in transfer.client_items():
            if not os.path.lexists(item):
                raise InputError(f"{transfer.where}: no such file or directory: {item!r}")
            if not os.access(item, os.R_OK):
                raise InputError(f"{transfer.where}: cannot read {item!r}")


def tree_size(paths: Iterable[str]) -> int:
    """Bytes of the regular files under these paths (links followed, as sent)."""
    total = 0
    for path in paths:
        if os.path.isdir(path):
            for folder, _, names in os.walk(path, followlinks=True):
                total += sum(_size(os.path.join(folder, name)) for name in names)
        else:
            total += _size(path)
    return total


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size if os.path.isfile(path) else 0
    except OSError:
        return 0


class _Counting:
    """A write-only stream that counts what goes through it (the progress)."""

    def __init__(self, stream: IO[bytes], progress: TransferProgress, copying: Copying | None
                 ) -> None:
        self.stream, self.progress, self.copying = stream, progress, copying
        self.closed = False  # an abandoned archive's last flush goes nowhere

    def write(self, data: bytes) -> int:
        if self.closed:
            return len(data)
        self.stream.write(data)
        self.progress.done += len(data)
        if self.copying is not None:
            self.copying(self.progress)
        return len(data)


def send(connection: SshConnection, transfer: Transfer, progress: TransferProgress,
         copying: Copying | None = None) -> None:
    """Copy one transfer's client files to its place on the host (``path``, whose
    folder the host created when it stored the workflow)."""
    leaf = os.path.basename(transfer.path)
    argv = connection.session_argv(["tar", "-x", "-f", "-", "-C",
                                    os.path.dirname(transfer.path)])
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    assert process.stdin is not None and process.stderr is not None
    problem = None
    sink: Any = _Counting(process.stdin, progress, copying)  # a stream as tarfile takes it
    try:
        # links followed: a linked input's content goes there, not a link to nowhere
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT,
                          dereference=True) as archive:
            if transfer.files is None:
                archive.add(transfer.client_path, arcname=leaf)
            else:
                for name in transfer.files:
                    archive.add(os.path.join(transfer.client_path, name),
                                arcname=os.path.join(leaf, name))
    except (BrokenPipeError, ConnectionResetError):  # tar there ended: its stderr says why
        problem = ""
    except OSError as error:  # a client file that went away or became unreadable
        process.kill()
        problem = f"cannot read {error.filename!r}: {error.strerror}"
    except BaseException:  # interrupted: the host's half copy goes with the workflow
        process.kill()
        process.wait()
        raise
    finally:
        sink.closed = True
        with suppress(OSError):
            process.stdin.close()
    errors = process.stderr.read()
    code = process.wait()
    if (problem is None and code != 0) or problem == "":
        problem = stderr_tail(errors, 2) or (f"tar exit status {code}" if code else
                                          "the connection closed")
    if problem is not None:
        raise JobbridgeError(f"copying {transfer.client_path!r} to "
                             f"{connection.resource.name}:{transfer.path!r} failed: {problem}")


def receive(connection: SshConnection, transfer: Transfer, destination: str,
            progress: TransferProgress, copying: Copying | None = None) -> None:
    """Copy one transfer's files from the host to ``destination`` (its client path, or
    a path of the user's choice): each file is written to a temporary name next to
    its place and renamed there once whole."""
    leaf = os.path.basename(transfer.path)
    members = [leaf] if transfer.files is None else [os.path.join(leaf, name)
                                                     for name in transfer.files]
    argv = connection.session_argv(["tar", "-c", "-f", "-", "-C",
                                    os.path.dirname(transfer.path),
                                    *(f"./{member}" for member in members)])
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    problem = None
    try:
        with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
            for member in archive:
                _extract(archive, member, leaf, destination, progress, copying)
    except tarfile.TarError as error:
        problem = f"not a tar stream: {error}"
    except OSError as error:
        problem = f"cannot write {error.filename!r}: {error.strerror}"
    except _Refused as error:
        problem = str(error)
    except BaseException:  # interrupted: the file being written is removed (_extract)
        process.kill()
        process.wait()
        raise
    finally:
        if problem is not None:
            process.kill()
        process.stdout.close()
    errors = process.stderr.read()
    code = process.wait()
    if problem is None and code != 0:
        problem = stderr_tail(errors, 2) or f"tar exit status {code}"
    if problem is not None:
        raise JobbridgeError(f"copying {connection.resource.name}:{transfer.path!r} to "
                             f"{destination!r} failed: {problem}")


class _Refused(Exception):
    """A member of the archive that has no place here."""


def _extract(archive: tarfile.TarFile, member: tarfile.TarInfo, leaf: str, destination: str,
             progress: TransferProgress, copying: Copying | None) -> None:
    name = member.name.removeprefix("./")
    if name != leaf and not name.startswith(leaf + "/"):
        raise _Refused(f"unexpected member {member.name!r}")
    rest = name[len(leaf) + 1:]
    if rest:
        try:
            check_transfer_name(rest, "member")
        except InputError as error:
            raise _Refused(str(error)) from None
    target = os.path.join(destination, rest) if rest else destination
    if member.isdir():
        os.makedirs(target, exist_ok=True)
        return
    if not member.isfile():  # links, devices: not what a transfer brings back
        raise _Refused(f"{member.name!r} is not a regular file or directory")
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    source = archive.extractfile(member)
    assert source is not None
    fd, temporary = tempfile.mkstemp(prefix=".jobbridge-", dir=os.path.dirname(target) or ".")
    try:
        with os.fdopen(fd, "wb") as sink:
            while chunk := source.read(CHUNK):
                sink.write(chunk)
                progress.done += len(chunk)
                if copying is not None:
                    copying(progress)
        os.chmod(temporary, member.mode & 0o777)
        os.utime(temporary, (member.mtime, member.mtime))
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


def transfer_from(data: dict[str, Any]) -> Transfer:
    """A transfer as the host lists it (``status --json``'s transfer objects)."""
    return Transfer(data["name"], data["client_path"], data["path"], data.get("files"),
                    bool(data.get("input")), bool(data.get("output")))


def destination(transfer: Transfer, folder: str | None) -> str:
    """Where an output comes back: its client path, or under ``folder`` by its name."""
    if folder is None:
        return transfer.client_path
    return str(Path(folder) / os.path.basename(transfer.client_path))
