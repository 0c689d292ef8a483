"""The native job wrapper (jobwrap.c), built with the system's C compiler and run
on spec-2 files as a batch script runs it: what a user sees of a job (its exit
code or signal, its files, argv, env, folder) and what the engine reads (the
start and exit records), for jobs that run, jobs that cannot start and jobs a
batch system signals (docs/job-wrapper.md, sections 1-3)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from jobbridge.schedulers import jobwrap
from jobbridge.schedulers.exits import KILL_GRACE_SECONDS
from systems import unavailable

from .test_jobwrap import TREE

SOURCE = Path(jobwrap.__file__).with_name("jobwrap.c")
#: The exit record's keys when the job ran, and when it could not start.
RAN_KEYS = {"status", "cpu", "maxrss", "wall", "cpus", "started", "ended", "signals"}
FAILED_KEYS = {"failed", "errno", "cpus", "started", "ended", "signals"}


def spec_bytes(**fields: Any) -> bytes:
    """A spec (jobwrap.encode_spec) of ``true`` in process_group mode but for ``fields``."""
    return jobwrap.encode_spec({"exit_file": "{exit}", "start_file": "{start}",
                                "kill_reaches": "process_group", "cpus": 1,
                                "command": ["true"], **fields})


@dataclass(frozen=True)
class Built:
    path: Path
    warnings: str


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Built]:
    """Compiles jobwrap.c as jobbridge builds it (``$CC`` or ``cc``), with extra
    ``-D`` options if any, once per module and options."""
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        unavailable(f"no C compiler ({compiler}) to build the native job wrapper")
    folder = tmp_path_factory.mktemp("native")
    builds: dict[tuple[str, ...], Built] = {}

    def built(*defines: str) -> Built:
        if defines not in builds:
            binary = folder / "-".join(("jobwrap", *defines))
            done = subprocess.run([compiler, "-O2", "-Wall", "-Wextra", *defines, "-o",
                                   str(binary), str(SOURCE)],
                                  capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
            builds[defines] = Built(binary, done.stderr)
        return builds[defines]

    return built


@pytest.fixture
def wrapper(build: Callable[..., Built]) -> Path:
    return build().path


class Job:
    """One job's folder: its spec (written by :meth:`spec`), files and records."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.spec_file = folder / "job.spec"
        self.exit_file = folder / "exit.json"
        self.start_file = folder / "start.json"
        self.out = folder / "out"
        self.err = folder / "err"

    def spec(self, argv: list[str], *, kill_reaches: str = "process_group",
             kill_warning: int | None = None, cpus: int = 1, stdin: str | None = None,
             stdout_file: str | None = "out", stderr_file: str | None = "err",
             join_stderrout: bool = False, working_directory: str | None = None,
             env: Mapping[str, str] | None = None) -> Path:
        """Write the spec (jobwrap.encode_spec); file names are the folder's (None:
        /dev/null)."""

        def here(name: str | None) -> str | None:
            return None if name is None else str(self.folder / name)

        self.spec_file.write_bytes(jobwrap.encode_spec({
            "exit_file": str(self.exit_file), "start_file": str(self.start_file),
            "kill_reaches": kill_reaches, "kill_warning": kill_warning, "cpus": cpus,
            "stdin": here(stdin), "stdout_file": here(stdout_file),
            "stderr_file": here(stderr_file), "join_stderrout": join_stderrout,
            "working_directory": working_directory, "command": argv, "env": env}))
        return self.spec_file

    def record(self) -> dict[str, Any] | None:
        try:
            loaded: dict[str, Any] = json.loads(self.exit_file.read_bytes())
        except FileNotFoundError:
            return None
        return loaded

    def wait_for(self, name: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """Until the job made the file ``name`` in its folder."""
        deadline = time.monotonic() + timeout
        while not (self.folder / name).exists():
            assert process.poll() is None, self.err.read_bytes()
            assert time.monotonic() < deadline, f"the job made no {name}"
            time.sleep(0.02)


@pytest.fixture
def job(tmp_path: Path) -> Job:
    return Job(tmp_path)


@pytest.fixture
def started(wrapper: Path, job: Job) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts the wrapper on the job's spec as a batch system does (in the job's
    folder, a session of its own); whatever it left running is SIGKILLed at the end."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(**options: Any) -> subprocess.Popen[bytes]:
        processes.append(subprocess.Popen([str(wrapper), str(job.spec_file)],
                                          cwd=job.folder, start_new_session=True,
                                          **options))
        return processes[-1]

    yield start
    for process in processes:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
    for name in ("top", "child", "grandchild"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((job.folder / name).read_text()), signal.SIGKILL)


def run(wrapper: Path, job: Job, argv: list[str], **spec: Any) -> int:
    """Run the wrapper in the job's folder on one job to its end; its exit status
    (-N: signal N)."""
    job.spec(argv, **spec)
    return subprocess.run([str(wrapper), str(job.spec_file)], cwd=job.folder, timeout=60,
                          check=False).returncode


def test_it_builds_without_a_warning(build: Callable[..., Built]) -> None:
    assert build().warnings == ""


def test_a_job_ends_with_its_code_files_and_records(wrapper: Path, job: Job) -> None:
    before = time.time()
    status = run(wrapper, job, ["sh", "-c", "echo out; echo err >&2; exit 3"], cpus=4)
    assert status == 3
    assert job.out.read_bytes() == b"out\n" and job.err.read_bytes() == b"err\n"
    record = job.record()
    assert record is not None and set(record) == RAN_KEYS
    assert os.WIFEXITED(record["status"]) and os.WEXITSTATUS(record["status"]) == 3
    assert record["cpus"] == 4 and record["signals"] == []
    assert before <= record["started"] <= record["ended"] <= time.time()
    for path in (job.out, job.err, job.exit_file, job.start_file):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert sorted(path.name for path in job.folder.iterdir()) == [
        "err", "exit.json", "job.spec", "out", "start.json"]  # no temporary file left


def test_joined_output_and_no_files(wrapper: Path, job: Job) -> None:
    assert run(wrapper, job, ["sh", "-c", "echo 1; echo 2 >&2"], join_stderrout=True) == 0
    assert job.out.read_bytes() == b"1\n2\n" and not job.err.exists()
    assert run(wrapper, job, ["sh", "-c", "echo lost"], stdout_file=None, stderr_file=None) == 0


def test_the_start_record_names_the_wrapper(wrapper: Path, job: Job) -> None:
    """As a batch script runs it (``exec``): its pid is the script's."""
    job.spec(["true"])
    process = subprocess.Popen(["sh", "-c", 'exec "$0" "$1"', str(wrapper), str(job.spec_file)])
    assert process.wait(30) == 0
    start = json.loads(job.start_file.read_bytes())
    assert start == {"host": os.uname().nodename, "pid": process.pid}


def test_argv_is_byte_exact(wrapper: Path, job: Job) -> None:
    odd = ["a b", "*", "é\n", "", "x=y", os.fsdecode(b"\xff\xfe-not-utf8"), "$HOME"]
    assert run(wrapper, job, ["sh", "-c", 'printf "%s\\0" "$@"', "sh", *odd]) == 0
    assert job.out.read_bytes() == b"".join(os.fsencode(item) + b"\0" for item in odd)


def test_env_is_merged_byte_exact_over_the_wrappers(wrapper: Path, job: Job) -> None:
    """Same key: replaced where it was; new keys after; bytes and '=' kept."""
    job.spec(["env"], env={"HOME": "/over", "JB_EQ": "a=b=c", "JB_RAW": os.fsdecode(b"\xff\x01")})
    outer = {"PATH": os.environ["PATH"], "HOME": "/home", "KEEP": "1"}
    done = subprocess.run([str(wrapper), str(job.spec_file)], env=outer, check=False)
    assert done.returncode == 0
    assert job.out.read_bytes() == (f"PATH={os.environ['PATH']}\n".encode()
                                    + b"HOME=/over\nKEEP=1\nJB_EQ=a=b=c\nJB_RAW=\xff\x01\n")
    job.spec(["env"])  # no env: the wrapper's, unchanged
    done = subprocess.run([str(wrapper), str(job.spec_file)], env=outer, check=False)
    assert job.out.read_bytes() == f"PATH={os.environ['PATH']}\nHOME=/home\nKEEP=1\n".encode()


def test_big_argv_env_and_long_paths(wrapper: Path, job: Job) -> None:
    """Nothing of a spec's size is fixed: a 100 kB argument, 2000 variables, a long
    PATH and file paths near PATH_MAX."""
    deep = job.folder
    for index in range(15):
        deep = deep / (f"{index:02d}" + "d" * 240)
    deep.mkdir(parents=True)
    big = "x" * 100_000
    env = {f"JB_{index}": str(index) * 20 for index in range(2000)}
    env["PATH"] = ":".join(["/nonexistent" * 20] * 100 + [os.environ["PATH"]])
    job.spec(["sh", "-c", 'printf "%s" "$1" | wc -c; echo "$JB_1999"', "sh", big],
             stdout_file=str(deep / "out"), env=env)
    assert len(str(deep / "out")) > 3700
    assert subprocess.run([str(wrapper), str(job.spec_file)], check=False).returncode == 0
    assert (deep / "out").read_text().split() == ["100000", "1999" * 20]


def test_the_program_is_searched_on_the_jobs_path(wrapper: Path, job: Job) -> None:
    """As os.execvpe: the new env's PATH; an empty entry is the bare name (in the
    job's folder); the first error other than ENOENT/ENOTDIR is the one told;
    without PATH, /bin:/usr/bin."""
    mine, locked = job.folder / "bin", job.folder / "locked"
    for folder, mode in ((mine, 0o755), (locked, 0o644)):
        folder.mkdir()
        (folder / "jbprog").write_text(f"#!/bin/sh\necho {folder.name}\n")
        (folder / "jbprog").chmod(mode)
    assert run(wrapper, job, ["jbprog"], env={"PATH": f"/nonexistent:{locked}:{mine}"}) == 0
    assert job.out.read_text() == "bin\n"
    assert run(wrapper, job, ["jbprog"], env={"PATH": f"/nonexistent:{locked}:/etc/hostname"}) \
        == 127
    record = job.record()
    assert record is not None and (record["failed"], record["errno"]) == ("program", errno.EACCES)
    assert run(wrapper, job, ["jbprog"], env={"PATH": ""}, working_directory=str(mine)) == 0
    assert job.out.read_text() == "bin\n"
    job.spec(["true"])
    assert subprocess.run([str(wrapper), str(job.spec_file)], env={}, check=False).returncode == 0


def test_stdin_and_working_directory(wrapper: Path, job: Job) -> None:
    (job.folder / "in").write_bytes(b"given\n")
    (job.folder / "sub").mkdir()
    assert run(wrapper, job, ["sh", "-c", "cat; pwd"], stdin="in",
               working_directory=str(job.folder / "sub")) == 0
    assert job.out.read_text() == f"given\n{job.folder / 'sub'}\n"
    job.spec(["cat"])  # no stdin: /dev/null, not the wrapper's
    done = subprocess.run([str(wrapper), str(job.spec_file)], input=b"not for the job",
                          check=False)
    assert done.returncode == 0 and job.out.read_bytes() == b""


def test_the_wrapper_ends_by_the_signal_that_ended_its_job(wrapper: Path, job: Job) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGPIPE):
        assert run(wrapper, job, ["sh", "-c", f"kill -{sig.name[3:]} $$"]) == -sig, sig.name
        record = job.record()
        assert record is not None and set(record) == RAN_KEYS
        assert os.WIFSIGNALED(record["status"]) and os.WTERMSIG(record["status"]) == sig


def test_rusage_of_a_busy_job(wrapper: Path, job: Job) -> None:
    assert run(wrapper, job, ["sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"]) \
        == 0
    record = job.record()
    assert record is not None
    assert record["cpu"] > 0 and record["maxrss"] > 0 and record["wall"] > 0


@pytest.mark.parametrize(("argv", "spec", "what", "code", "note"), [
    (["no-such-program-jb"], {}, "program", errno.ENOENT,
     "cannot start 'no-such-program-jb': No such file or directory"),
    (["./locked"], {}, "program", errno.EACCES, "cannot start './locked': Permission denied"),
    (["./plain"], {}, "program", errno.ENOEXEC, "cannot start './plain': Exec format error"),
    (["true"], {"stdin": "absent"}, "stdin", errno.ENOENT,
     "stdin: cannot open {folder}/absent: No such file or directory"),
    (["true"], {"stdout_file": "no/out"}, "stdout_file", errno.ENOENT,
     "stdout_file: cannot open {folder}/no/out: No such file or directory"),
    (["true"], {"stderr_file": "no/err"}, "stderr_file", errno.ENOENT, None),
    (["true"], {"working_directory": "/nonexistent/jb"}, "working_directory", errno.ENOENT,
     "working_directory: cannot enter /nonexistent/jb: No such file or directory"),
])
def test_a_job_that_cannot_start_says_why(wrapper: Path, job: Job, argv: list[str],
                                          spec: dict[str, str], what: str, code: int,
                                          note: str | None) -> None:
    """Exit 127 like a shell, the failed step and errno in the record, the reason in
    the job's stderr file (worded as exits.py words it)."""
    for name, mode in (("plain", 0o755), ("locked", 0o644)):
        (job.folder / name).write_text("echo no shebang\n")
        (job.folder / name).chmod(mode)
    assert run(wrapper, job, argv, **spec) == 127
    record = job.record()
    assert record is not None and set(record) == FAILED_KEYS
    assert (record["failed"], record["errno"], record["started"]) == (what, code, None)
    assert record["signals"] == [] and record["cpus"] == 1
    if note is not None:
        assert job.err.read_text() == f"jobbridge: {note.format(folder=job.folder)}\n"
        assert job.err.stat().st_mode & 0o777 == 0o600


def test_the_start_failure_note_goes_to_joined_output(wrapper: Path, job: Job) -> None:
    assert run(wrapper, job, ["no-such-program-jb"], join_stderrout=True) == 127
    assert job.out.read_text().startswith("jobbridge: cannot start 'no-such-program-jb'")
    assert not job.err.exists()


@pytest.mark.parametrize("defines", [(), ("-DJOBWRAP_NO_CLOSE_RANGE",),
                                     ("-DJOBWRAP_NO_CLOSE_RANGE", "-DJOBWRAP_NO_PROC_FD")],
                         ids=["close_range", "proc", "every-fd"])
def test_a_clean_process_only_fds_0_to_2_default_signals(
        build: Callable[..., Built], job: Job, defines: tuple[str, ...]) -> None:
    """Nothing inherited from the wrapper's caller: descriptors >= 3 (closed by
    close_range, or by the fallbacks of a kernel before 5.9), ignored SIGPIPE
    (Python's own) and SIGCHLD (the wrapper would see no child to wait for), a
    blocked signal."""
    wrapper = build(*defines).path
    script = "ls /proc/self/fd | sort -n | xargs; grep -E 'SigIgn|SigBlk' /proc/self/status"
    job.spec(["sh", "-c", script])

    def inherited_signals() -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})

    extra = os.open(os.devnull, os.O_RDONLY)
    high = os.dup2(extra, 1000)  # below the soft limit, above any open fd
    try:
        done = subprocess.run([str(wrapper), str(job.spec_file)], pass_fds=(extra, high),
                              restore_signals=False, preexec_fn=inherited_signals, check=False)
    finally:
        os.close(extra)
        os.close(high)
    assert done.returncode == 0
    record = job.record()
    assert record is not None and record["status"] == 0
    fds, ignored, blocked = job.out.read_text().splitlines()
    assert fds == "0 1 2 3"  # ls's own folder descriptor
    for sig in (signal.SIGPIPE, signal.SIGCHLD):
        assert int(ignored.split()[1], 16) & (1 << (sig - 1)) == 0, sig.name
    assert int(blocked.split()[1], 16) == 0


def test_a_wrapper_started_with_0_1_2_closed(wrapper: Path, job: Job) -> None:
    """Its spec, records and the job's files never land on 0-2 (a job's stdout in
    the wrapper's record, or the job's stdin on its spec)."""
    job.spec(["sh", "-c", "ls /proc/self/fd | sort -n | xargs; cat"])

    def close_standard_fds() -> None:
        for fd in (0, 1, 2):
            os.close(fd)

    done = subprocess.run([str(wrapper), str(job.spec_file)], preexec_fn=close_standard_fds,
                          check=False)
    assert done.returncode == 0
    assert job.out.read_text() == "0 1 2 3\n"
    record = job.record()
    assert record is not None and os.WEXITSTATUS(record["status"]) == 0
    assert json.loads(job.start_file.read_bytes())["host"] == os.uname().nodename


def _wait_handled(pid: int) -> None:
    """Until ``pid`` has no signal pending: the one just sent is being handled, and
    the next is noted after it (pending signals go lowest number first)."""
    deadline = time.monotonic() + 10
    while True:
        status = Path(f"/proc/{pid}/status").read_text()
        pending = {line.split(":")[0]: int(line.split()[1], 16) for line in status.splitlines()
                   if line.startswith(("SigPnd", "ShdPnd"))}
        if not any(pending.values()):
            return
        assert time.monotonic() < deadline, "the signal stayed pending"
        time.sleep(0.01)


def test_signals_are_noted_once_each_in_order_sigcont_aside(
        started: Callable[..., subprocess.Popen[bytes]], job: Job) -> None:
    job.spec(["sh", "-c", "touch running; while [ ! -e go ]; do sleep 0.02; done"])
    process = started()
    job.wait_for("running", process)
    for sig in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP):
        process.send_signal(sig)  # the wrapper alone: its job is not told
        _wait_handled(process.pid)
    (job.folder / "go").touch()
    assert process.wait(30) == 0
    record = job.record()
    assert record is not None
    assert record["signals"] == [signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP]


def _stat(pid: int) -> tuple[int, int]:
    """``(process group, session)`` of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[2]), int(fields[3])


def test_the_job_stays_in_the_wrappers_group_unless_the_system_signals_the_script(
        started: Callable[..., subprocess.Popen[bytes]], job: Job) -> None:
    for reaches in ("process_group", "session", "script"):
        job.spec(["sh", "-c", "cat /proc/$$/stat"], kill_reaches=reaches,
                 kill_warning=signal.SIGTERM if reaches == "script" else None)
        process = started()
        assert process.wait(30) == 0
        stat = job.out.read_text()
        fields = stat.rsplit(")", 1)[1].split()
        group, session, pid = int(fields[2]), int(fields[3]), int(stat.split()[0])
        if reaches == "script":
            assert group == session == pid, reaches
        else:
            assert group == session == process.pid, reaches


def test_the_system_signals_the_process_group(
        started: Callable[..., subprocess.Popen[bytes]], job: Job) -> None:
    """Slurm's scancel: SIGTERM to every process; the job ends of it, once (no
    forwarding), and the wrapper, having noted it, ends the same way."""
    job.spec(["sh", "-c", TREE], kill_warning=signal.SIGTERM)
    process = started()
    job.wait_for("started", process)
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(30) == -signal.SIGTERM
    record = job.record()
    assert record is not None and record["signals"] == [signal.SIGTERM]
    assert os.WTERMSIG(record["status"]) == signal.SIGTERM


def test_a_signal_to_the_script_alone_is_forwarded(
        started: Callable[..., subprocess.Popen[bytes]], job: Job) -> None:
    """A job catching SIGTERM hears it through the wrapper, in a session of its own."""
    job.spec(["sh", "-c", "trap 'echo caught; exit 5' TERM; sleep 600 & echo $$ > top; wait"],
             kill_reaches="script", kill_warning=signal.SIGTERM)
    process = started()
    job.wait_for("top", process)
    top = int((job.folder / "top").read_text())
    assert _stat(top) == (top, top)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 5
    assert job.out.read_text() == "caught\n"
    record = job.record()
    assert record is not None and record["signals"] == [signal.SIGTERM]
    assert os.WEXITSTATUS(record["status"]) == 5


def test_a_job_ignoring_the_warning_is_killed_after_the_grace(
        started: Callable[..., subprocess.Popen[bytes]], job: Job) -> None:
    """The warning reaches the job's group, SIGKILL follows KILL_GRACE_SECONDS later
    (before the system's SIGKILL of the script alone): the whole tree is gone."""
    job.spec(["sh", "-c", "trap '' TERM; " + TREE], kill_reaches="script",
             kill_warning=signal.SIGTERM)
    process = started()
    job.wait_for("started", process)
    tree = [int((job.folder / name).read_text()) for name in ("top", "child", "grandchild")]
    warned = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == -signal.SIGKILL
    assert time.monotonic() - warned >= KILL_GRACE_SECONDS - 0.1
    record = job.record()
    assert record is not None and record["signals"] == [signal.SIGTERM]
    assert os.WTERMSIG(record["status"]) == signal.SIGKILL
    deadline = time.monotonic() + 15
    while alive := [pid for pid in tree if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, f"processes of the job kept running: {alive}"
        time.sleep(0.05)


def test_a_job_warned_before_it_started_is_killed_at_once(
        started: Callable[..., subprocess.Popen[bytes]], job: Job) -> None:
    """The warning came while the job was starting (held here on opening its stdin,
    a FIFO, before it has a group to signal): the system's SIGKILL of the script
    may be near, so the job is SIGKILLed as it starts, with no grace."""
    os.mkfifo(job.folder / "fifo")
    job.spec(["sh", "-c", "sleep 60"], stdin="fifo", kill_reaches="script",
             kill_warning=signal.SIGTERM)
    process = started()
    job.wait_for("start.json", process)
    process.send_signal(signal.SIGTERM)
    _wait_handled(process.pid)
    with open(job.folder / "fifo", "wb"):  # lets the job start
        assert process.wait(30) == -signal.SIGKILL  # not sleep 60 ending
    record = job.record()
    assert record is not None and record["signals"] == [signal.SIGTERM]
    assert os.WTERMSIG(record["status"]) == signal.SIGKILL


@pytest.mark.parametrize(("spec", "what"), [
    (b"jobbridge-spec 2\0/x/exit\0/x/start\0process", "truncated at kill_reaches"),
    (b"jobbridge-spec 1\0", "not \"jobbridge-spec 2\""),
    (b"", "empty"),
    (spec_bytes(command=[]), "argc"),
    (spec_bytes(kill_reaches="cgroup"), "kill_reaches"),
    (spec_bytes(kill_reaches="script", kill_warning="TERM"), "kill_warning"),
    (spec_bytes(cpus=0), "cpus"),
    (spec_bytes().replace(b"\x001\x00true", b"\x0099999\x00true"), "argc"),
    (spec_bytes(env={"A": "1"}).replace(b"A=1", b"A-1"), "env entry without KEY="),
    (spec_bytes() + b"more\0", "bytes after the last field"),
])
def test_a_bad_spec_exits_2_saying_why_and_writes_no_record(
        wrapper: Path, job: Job, spec: bytes, what: str) -> None:
    job.spec_file.write_bytes(spec.replace(b"{exit}", bytes(job.exit_file))
                              .replace(b"{start}", bytes(job.start_file)))
    done = subprocess.run([str(wrapper), str(job.spec_file)], capture_output=True, check=False)
    assert done.returncode == 2
    assert done.stderr.decode() == f"jobwrap: {job.spec_file}: bad spec ({what})\n"
    assert not job.exit_file.exists() and not job.start_file.exists()


def test_records_that_cannot_be_written(wrapper: Path, job: Job) -> None:
    """No start record: the job does not run (the engine would never see it). No
    exit record: the wrapper still ends like its job (the batch system then tells)."""
    job.start_file = job.folder / "gone" / "start.json"
    job.spec(["sh", "-c", "echo ran"])
    done = subprocess.run([str(wrapper), str(job.spec_file)], capture_output=True, text=True,
                          check=False)
    assert (done.returncode, done.stderr) == (
        2, f"jobwrap: {job.start_file}: No such file or directory\n")
    assert not job.out.exists() and not job.exit_file.exists()
    job.start_file, job.exit_file = job.folder / "start.json", job.folder / "gone" / "exit.json"
    job.spec(["sh", "-c", "echo ran; exit 4"])
    done = subprocess.run([str(wrapper), str(job.spec_file)], capture_output=True, text=True,
                          check=False)
    assert (done.returncode, done.stderr) == (
        4, f"jobwrap: {job.exit_file}: No such file or directory\n")
    assert job.out.read_text() == "ran\n"
    assert sorted(path.name for path in job.folder.iterdir()) == [
        "err", "job.spec", "out", "start.json"]


def test_usage(wrapper: Path, job: Job) -> None:
    for argv in ([str(wrapper)], [str(wrapper), "a", "b"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert (done.returncode, done.stderr) == (2, "usage: jobwrap SPEC\n")
    done = subprocess.run([str(wrapper), str(job.folder / "none")], capture_output=True,
                          text=True, check=False)
    assert (done.returncode, done.stderr) == (
        2, f"jobwrap: {job.folder / 'none'}: No such file or directory\n")
