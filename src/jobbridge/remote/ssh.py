"""The SSH transport: the system's OpenSSH client, one master connection per host.

Why OpenSSH and not a Python SSH library: it honours the user's ``~/.ssh/config``
(ProxyJump, keys, agents, certificates, Kerberos), asks for a second factor the
way the site set it up, and is what users already debug with ``ssh -v``.
jobbridge never sees a password.

Every command of one host goes through one master connection
(``ControlMaster``), kept ``ControlPersist`` after the last use: an MFA site asks
once, and a command costs a channel, not a login. The control socket lives in a
private (0700) folder under ``$JOBBRIDGE_HOME``. With a terminal on stdin, ssh
may prompt there (password, second factor, host key); without one it runs with
``BatchMode=yes`` so that nothing ever waits for an answer no one can give.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from ..configuration import jobbridge_home, private_dir
from ..errors import JobbridgeError
from . import RemoteResource

#: Defaults placed after the user's ``ssh_options``: ssh keeps the first value of
#: an option, so ``ssh_options = -o ControlPersist=8h`` wins.
DEFAULT_OPTIONS = ("ControlPersist=30m", "ConnectTimeout=30", "ServerAliveInterval=15",
                   "ServerAliveCountMax=4")
#: Longest control socket path: a Unix socket path holds 107 bytes, and ssh
#: binds a temporary name (17 more characters) before renaming it.
MAX_SOCKET_PATH = 90
#: ssh's own exit status for its errors (connection, authentication...).
SSH_FAILED = 255


class RemoteError(JobbridgeError):
    """The remote host cannot be used: unreachable, jobbridge missing there, versions."""


class ConnectionLost(RemoteError):
    """The SSH connection failed or dropped: a new one may work (retryable)."""


def remote_command(argv: Sequence[str]) -> str:
    """The one command line sent to the remote shell: ``argv`` quoted word by word.

    ssh joins its arguments with spaces and the remote login shell parses the
    result again, so every word is quoted for a POSIX shell (``shlex.quote``):
    it arrives byte-exact, whatever spaces, quotes, ``$()``, newlines or
    non-ASCII it holds. One exception, for paths such as
    ``remote_jobbridge = ~/venv/bin/jobbridge``: a leading ``~/`` is left
    unquoted so that the remote shell makes it the remote home directory.
    Only configuration words come here: workflows and job data travel as JSON
    on the channel, never on a command line.
    """
    return " ".join("~/" + shlex.quote(word[2:]) if word.startswith("~/") and len(word) > 2
                    else shlex.quote(word) for word in argv)


def interactive() -> bool:
    """May ssh ask the user (password, second factor, new host key)? Only when
    stdin is a terminal: scripts, cron and pipes get BatchMode=yes."""
    try:
        return os.isatty(0)
    except OSError:
        return False


class SshConnection:
    """The master connection to one remote resource's host, and sessions over it."""

    def __init__(self, resource: RemoteResource, home: Path | None = None,
                 prompt: bool | None = None) -> None:
        self.resource = resource
        self.prompt = interactive() if prompt is None else prompt
        identity = "\0".join((resource.host, resource.user or "", *resource.ssh_options))
        digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        self.control_path = control_dir(home or jobbridge_home()) / f"{digest}.sock"

    def argv(self) -> list[str]:
        """``ssh`` with its options, before the destination."""
        options = ["ssh", *self.resource.ssh_options]
        if self.resource.user:
            options += ["-l", self.resource.user]
        for option in ("ControlMaster=auto", f"ControlPath={self.control_path}",
                       *DEFAULT_OPTIONS, *(() if self.prompt else ("BatchMode=yes",))):
            options += ["-o", option]
        return options

    def session_argv(self, remote_argv: Sequence[str]) -> list[str]:
        """The ssh argv running ``remote_argv`` on the host (no terminal, stdio as pipes)."""
        return [*self.argv(), "-T", "--", self.resource.host, remote_command(remote_argv)]

    def master_pid(self) -> int | None:
        """The pid of the live master connection, if any."""
        result = subprocess.run([*self.argv(), "-O", "check", "--", self.resource.host],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=30)
        found = re.search(r"pid=(\d+)", result.stderr)
        return int(found[1]) if result.returncode == 0 and found else None

    def ensure_master(self) -> None:
        """Make sure a master connection runs: reuse it, or log in once (this may
        prompt on a terminal). RemoteError saying why the host cannot be reached."""
        with self._lock():
            if self.master_pid() is not None:
                return
            argv = [*self.argv(), "-N", "-f", "--", self.resource.host]
            # on a terminal ssh talks to the user itself (MFA banners, prompts);
            # otherwise its last error line is ours to report
            try:
                # stdout: nothing to say with -N, and the master it forks must not keep
                # our caller's pipe open (jobbridge ui's, a script's) for ControlPersist
                result = subprocess.run(argv, stdin=subprocess.DEVNULL, text=True,
                                        stdout=subprocess.DEVNULL,
                                        stderr=None if self.prompt else subprocess.PIPE,
                                        timeout=None if self.prompt else 300)
            except FileNotFoundError:
                raise RemoteError("no ssh command here: install the OpenSSH client "
                                  "(e.g. apt-get install openssh-client)") from None
            except subprocess.TimeoutExpired:
                raise ConnectionLost(f"cannot reach {self.resource.name} "
                                     f"({self.resource.destination}): ssh did not log in "
                                     "within 300 s") from None
            if result.returncode != 0:
                raise ConnectionLost(self.unreachable(result.stderr))

    def unreachable(self, stderr: str | None) -> str:
        """One line for a failed login, from ssh's own messages."""
        where = f"cannot reach {self.resource.name} ({self.resource.destination})"
        lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
        if not lines:
            return f"{where}: ssh failed (its message is above)" if self.prompt else \
                f"{where}: ssh failed"
        why = lines[-1]
        if "Host key verification failed" in why:
            why += f" (log in once with: ssh {self.resource.destination}, to check and " \
                   "accept the host key)"
        elif "Permission denied" in why and not self.prompt:
            why += " (no usable key or agent, and no terminal to ask for a password or " \
                   "second factor: run one command from a terminal to log in)"
        return f"{where}: {why}"

    def close(self) -> None:
        """End the master connection (sessions still running over it end too)."""
        subprocess.run([*self.argv(), "-O", "exit", "--", self.resource.host],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One login at a time per host: two commands started together share one
        master (and one MFA prompt) instead of racing to create it."""
        fd = os.open(f"{self.control_path}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def control_dir(home: Path) -> Path:
    """The private folder of the control sockets: ``$JOBBRIDGE_HOME/ssh``, or, when
    that path is too long for a Unix socket, ``$TMPDIR/jobbridge-ssh-UID``."""
    folder = home / "ssh"
    if len(str(folder)) + 18 <= MAX_SOCKET_PATH:
        return _private(folder, private_dir)
    return _private(Path(tempfile.gettempdir()) / f"jobbridge-ssh-{os.getuid()}",
                    _own_dir)


def _private(folder: Path, make: Callable[[Path], Path]) -> Path:
    try:
        make(folder)
    except OSError as error:
        raise RemoteError(f"cannot create {folder}: {error.strerror}") from None
    return folder


def _own_dir(folder: Path) -> Path:
    """A 0700 folder of ours in a shared place: refuse one another user made (or a link)."""
    with suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RemoteError(f"{folder} is not a private folder of this user: remove it, or "
                          "use a shorter JOBBRIDGE_HOME")
    return folder


def stderr_tail(text: bytes | str, lines: int = 1) -> str:
    """The last non-empty lines of a process's stderr, as one line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(kept[-lines:])

