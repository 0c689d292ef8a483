"""The job wrapper and the batch system's kill: started as a batch system starts a
job script (a session of its own), then ended as each kind of system ends it, the
job's whole process tree is gone, and the exit record says what the system sent.

Before the wrapper knew how its system kills, it started every job in a session
of its own: Grid Engine's SIGKILL to the script's process group killed the wrapper
and left the job running (the first case below)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from jobbridge import constants
from jobbridge.model import EngineJob
from jobbridge.schedulers import nativewrap
from jobbridge.schedulers.batch import SystemKill, wrapper_spec
from jobbridge.schedulers.exits import KILL_GRACE_SECONDS
from jobbridge.schedulers.jobwrap import command, read_exit_file, write_spec
from systems import unavailable

#: A job with a child and a grandchild; it writes their pids, then "started".
TREE = ('sh -c \'sleep 600 & echo $! > grandchild; wait\' & echo $! > child; echo $$ > top; '
        "while [ ! -s grandchild ]; do sleep 0.05; done; touch started; wait")
#: The same, catching the warning signals: it exits 0 when one comes.
CATCHING = f'trap "exit 0" TERM USR1; {TREE}'


@pytest.fixture(scope="module", params=["native", "python"])
def wrapper(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> list[str]:
    """The argv running each wrapper (the spec's path follows): both behave alike."""
    if request.param == "python":
        return command(sys.executable)
    try:
        return [str(nativewrap.build(tmp_path_factory.mktemp("native")))]
    except nativewrap.BuildError as error:  # skipped saying why; under CI, failed
        unavailable(f"the native job wrapper: {error}")


class Wrapped:
    """The wrapper running one job in ``folder``, in a session of its own."""

    def __init__(self, wrapper: list[str], folder: Path, script: str, kill: SystemKill
                 ) -> None:
        self.folder = folder
        job = EngineJob("j", ["sh", "-c", script], working_directory=str(folder),
                        stdout_file=str(folder / "out"), stderr_file=str(folder / "err"))
        write_spec(str(folder / "job.spec"), wrapper_spec(job, folder, kill))
        self.process = subprocess.Popen([*wrapper, str(folder / "job.spec")],
                                        start_new_session=True)
        deadline = time.monotonic() + 30
        while not (folder / "started").exists():
            assert self.process.poll() is None, (folder / "err").read_text()
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        self.tree = [int((folder / name).read_text()) for name in ("top", "child", "grandchild")]

    def session(self) -> list[int]:
        """Every process of the wrapper's session (what PBS signals)."""
        return [process.pid for process in psutil.process_iter(["pid"])
                if _session(process.pid) == self.process.pid]

    def ended(self, timeout: float = 15) -> int:
        """The wrapper's exit status, once its whole tree is gone."""
        status = self.process.wait(timeout)
        deadline = time.monotonic() + timeout
        while alive := [pid for pid in self.tree if psutil.pid_exists(pid)
                        and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]:
            assert time.monotonic() < deadline, f"processes of the job kept running: {alive}"
            time.sleep(0.05)
        return status

    def record(self) -> dict[str, object] | None:
        return read_exit_file(self.folder / "exit.json")


@pytest.fixture
def wrapped(wrapper: list[str], tmp_path: Path
            ) -> Iterator[Callable[[str, SystemKill], Wrapped]]:
    started: list[Wrapped] = []

    def start(script: str, kill: SystemKill) -> Wrapped:
        started.append(Wrapped(wrapper, tmp_path, script, kill))
        return started[-1]

    yield start
    for one in started:  # nothing left running when a check fails
        for pid in [*one.tree, one.process.pid]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def test_grid_engine_sigkills_the_process_group(wrapped: Callable[..., Wrapped]) -> None:
    """qdel: SIGKILL to the script's process group, at once: the job was in it."""
    job = wrapped(TREE, SystemKill("process_group"))
    os.killpg(job.process.pid, signal.SIGKILL)
    assert job.ended() == -signal.SIGKILL
    assert job.record() is None  # the system's record tells the end


def test_slurm_warns_the_process_group(wrapped: Callable[..., Wrapped]) -> None:
    """scancel: SIGTERM to every process, SIGKILL later; the job ends of the warning
    and the wrapper, which outlived it, records it and ends the same way."""
    job = wrapped(TREE, SystemKill("process_group", warning=signal.SIGTERM))
    os.killpg(job.process.pid, signal.SIGTERM)
    assert job.ended() == -signal.SIGTERM
    record = job.record()
    assert record is not None
    assert record["exit"][:3] == [constants.FINISHED_TERM_SIG, None, signal.SIGTERM]
    assert record["signals"] == [signal.SIGTERM]


def test_pbs_signals_the_session(wrapped: Callable[..., Wrapped]) -> None:
    """qdel: SIGTERM to every process of the session, SIGKILL kill_delay later; a job
    catching the warning exits 0, and its record says a signal came first."""
    job = wrapped(CATCHING, SystemKill("session", warning=signal.SIGTERM))
    for pid in job.session():
        os.kill(pid, signal.SIGTERM)
    time.sleep(1)
    for pid in job.session():
        os.kill(pid, signal.SIGKILL)
    job.ended()
    record = job.record()
    assert record is not None and record["signals"] == [signal.SIGTERM]


def test_a_system_signalling_only_the_script(wrapped: Callable[..., Wrapped]) -> None:
    """The wrapper forwards the warning to the job's group; a job that outlives it is
    SIGKILLed by the wrapper before the system's SIGKILL of the script alone."""
    job = wrapped("trap '' TERM; " + TREE, SystemKill("script", warning=signal.SIGTERM))
    assert _session(job.tree[0]) != job.process.pid  # a group and session of its own
    os.kill(job.process.pid, signal.SIGTERM)
    time.sleep(KILL_GRACE_SECONDS + 1)
    job.process.kill()
    job.ended()


def test_a_system_signalling_only_the_script_leaves_nothing_behind(
        wrapped: Callable[..., Wrapped]) -> None:
    """The job's leader ends on the warning, its children ignore it: the wrapper
    SIGKILLs what is left of the job's group before it ends (the system's SIGKILL
    reaches the script alone)."""
    leader_ends = TREE.rsplit("; wait", 1)[0] + '; trap "exit 0" TERM; wait'
    job = wrapped(f"trap '' TERM; {leader_ends}", SystemKill("script", warning=signal.SIGTERM))
    os.kill(job.process.pid, signal.SIGTERM)
    assert job.ended() == 0
    record = job.record()
    assert record is not None and record["signals"] == [signal.SIGTERM]


def test_a_job_ending_on_its_own_saw_no_signal(wrapped: Callable[..., Wrapped],
                                               tmp_path: Path) -> None:
    job = wrapped(f"{TREE.replace('; wait', '; kill $(cat grandchild); wait')}",
                  SystemKill("process_group"))
    assert job.ended() == 0
    record = job.record()
    assert record is not None and record["exit"][:2] == [constants.FINISHED_REGULARLY, 0]
    assert record["signals"] == []


def test_a_system_signalling_only_the_script_must_warn() -> None:
    with pytest.raises(ValueError, match="warning signal first"):
        SystemKill("script")
    with pytest.raises(ValueError, match="unknown value"):
        SystemKill("cgroup")  # type: ignore[arg-type]


def test_who_ended_a_killed_job() -> None:
    """A job we killed that ended with no signal recorded ended on its own only if
    it ended before the kill was asked: the system may signal the job, which
    catches the warning and exits 0, before its wrapper (Slurm signals one process
    after another)."""
    from jobbridge.schedulers.batch import _kill_reached

    asked = time.time()
    own = {"exit": ["finished_regularly", 0, None, None], "signals": []}
    assert not _kill_reached(None, {**own, "ended": asked})
    assert not _kill_reached(asked, {**own, "ended": asked - 1})
    assert _kill_reached(asked, {**own, "ended": asked + 0.01})
    assert _kill_reached(asked, {**own, "signals": [signal.SIGTERM], "ended": asked - 1})
    assert _kill_reached(asked, None)


def _run(wrapper: list[str], folder: Path, command_argv: list[str], **job: object
         ) -> tuple[int, dict[str, object]]:
    """Run the wrapper on one job as a batch script does; its status and exit record."""
    engine_job = EngineJob("j", command_argv, **job)  # type: ignore[arg-type]
    write_spec(str(folder / "job.spec"), wrapper_spec(engine_job, folder,
                                                      SystemKill("process_group")))
    status = subprocess.run([*wrapper, str(folder / "job.spec")],
                            timeout=60, check=False).returncode
    record = read_exit_file(folder / "exit.json")
    assert record is not None
    return status, record


def test_the_wrapper_imports_built_in_modules_only() -> None:
    """It starts before every element of an array on the compute nodes' cores:
    ``json``, ``re``, ``enum``, ``typing``, ``subprocess``... cost 5-70 ms each time."""
    probe = ("import sys; before = set(sys.modules)\n"
             "from jobbridge.schedulers import jobwrap\n"
             "print(' '.join(sorted(set(sys.modules) - before)))")
    argv = command(sys.executable)
    argv[argv.index("-c") + 1] = f"import sys; sys.path.insert(0, sys.argv.pop(1))\n{probe}"
    loaded = set(subprocess.run(argv, capture_output=True, text=True, check=True)
                 .stdout.split())
    allowed = {"jobbridge", "jobbridge.constants", "jobbridge.schedulers",
               "jobbridge.schedulers.exits", "jobbridge.schedulers.jobwrap", "__future__",
               "_json", "os", "os.path", "posixpath", "genericpath", "stat", "_stat",
               "_collections_abc"}
    assert "jobbridge.schedulers.jobwrap" in loaded
    assert loaded <= allowed, f"the wrapper imports {sorted(loaded - allowed)}"


def test_a_job_that_cannot_start_says_why(wrapper: list[str], tmp_path: Path) -> None:
    """Each reason names the key and path at fault (or the program), in the exit
    record and in the job's stderr file; the wrapper exits 127 like a shell."""
    cases = {
        "program": (["no-such-program-jb"], {},
                    "cannot start 'no-such-program-jb': No such file or directory"),
        "folder": (["true"], {"working_directory": str(tmp_path / "missing")},
                   f"working_directory: cannot enter {tmp_path / 'missing'}: No such file"),
        "stdin": (["true"], {"stdin": str(tmp_path / "absent")},
                  f"stdin: cannot open {tmp_path / 'absent'}: No such file"),
        "stdout": (["true"], {"stdout_file": str(tmp_path / "no" / "out")},
                   f"stdout_file: cannot open {tmp_path / 'no' / 'out'}: No such file"),
    }
    for name, (argv, job, reason) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        status, record = _run(wrapper, folder, argv, stderr_file=str(folder / "err"), **job)
        assert status == 127, name
        assert record["exit"] == [constants.EXIT_ABORTED, None, None, None], name
        assert str(record["reason"]).startswith(reason), (name, record["reason"])
        assert (folder / "err").read_text().startswith(f"jobbridge: {reason}"), name


def test_the_job_gets_its_argv_env_files_and_a_clean_process(wrapper: list[str],
                                                            tmp_path: Path) -> None:
    """Byte-exact argv and env (merged over the wrapper's), private new output files,
    only descriptors 0-2, SIGPIPE at its default action (``yes | head`` ends)."""
    script = ('printf "%s|" "$@"; echo "$JB_VALUE $HOME"; ls /proc/self/fd | sort -n | xargs; '
              'grep SigIgn /proc/self/status; yes | head -c 2 >/dev/null; echo piped')
    inherited = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(inherited, True)
    try:
        status, record = _run(wrapper, tmp_path, ["sh", "-c", script, "sh", "a b", "*", "é\n"],
                              env={"JB_VALUE": "x;$y"}, stdout_file=str(tmp_path / "out"),
                              join_stderrout=True, working_directory=str(tmp_path))
    finally:
        os.close(inherited)
    lines = (tmp_path / "out").read_text().splitlines()
    assert status == 0 and record["exit"][:3] == [constants.FINISHED_REGULARLY, 0, 0]
    assert lines[0] == "a b|*|é"
    assert lines[1] == f"|x;$y {os.environ['HOME']}"
    assert lines[2] == "0 1 2 3"  # ls's own folder descriptor: nothing inherited
    assert int(lines[3].split()[1], 16) & (1 << (signal.SIGPIPE - 1)) == 0
    assert lines[4] == "piped"
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o600
    start = json.loads((tmp_path / "start.json").read_text())
    assert start["host"] == os.uname().nodename and start["pid"] > 0


def test_specs_of_earlier_releases_still_run(tmp_path: Path) -> None:
    """A job queued before an upgrade runs the new (Python) wrapper on its spec: the
    JSON one of the first releases, the marshal one of the next; the engine reads
    its raw record."""
    import marshal

    job = EngineJob("j", ["sh", "-c", "exit 3"]).to_dict()
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "job.json").write_text(json.dumps({
        "job": job, "exit_file": str(tmp_path / "json" / "exit.json")}))
    (tmp_path / "marshal").mkdir()
    (tmp_path / "marshal" / "job.spec").write_bytes(marshal.dumps({
        "job": job, "cpus": 1, "exit_file": str(tmp_path / "marshal" / "exit.json"),
        "start_file": str(tmp_path / "marshal" / "start.json"),
        "kill": {"reaches": "process_group", "warning": None}}, 4))
    for spec in (tmp_path / "json" / "job.json", tmp_path / "marshal" / "job.spec"):
        status = subprocess.run([*command(sys.executable), str(spec)], check=False).returncode
        record = read_exit_file(spec.with_name("exit.json"))
        assert status == 3 and record is not None and record["exit"][:2] == [
            constants.FINISHED_REGULARLY, 3], spec
    assert (tmp_path / "marshal" / "start.json").exists()


def test_a_record_of_an_earlier_release_still_reads(tmp_path: Path) -> None:
    """A wrapper of an earlier release, still running through an upgrade, words its
    record itself."""
    worded = {"exit": [constants.FINISHED_REGULARLY, 0, 0, "cput=00:00:00"], "reason": None,
              "started": 1.0, "ended": 2.0, "signals": []}
    (tmp_path / "exit.json").write_text(json.dumps(worded))
    assert read_exit_file(tmp_path / "exit.json") == worded


def test_the_wrapper_ends_by_the_signal_that_ended_its_job(wrapper: list[str],
                                                           tmp_path: Path) -> None:
    """So that the batch system sees it too: SIGKILL (which no handler may take) and
    SIGPIPE (which Python ignores) included."""
    for sig in (signal.SIGKILL, signal.SIGPIPE, signal.SIGTERM):
        folder = tmp_path / sig.name
        folder.mkdir()
        status, record = _run(wrapper, folder, ["sh", "-c", f"kill -{sig.name[3:]} $$"])
        assert status == -sig, sig.name
        assert record["exit"][:3] == [constants.FINISHED_TERM_SIG, None, sig], sig.name
        assert record["reason"] == f"killed by signal {int(sig)} ({sig.name})"


def test_a_job_python_with_its_own_jobbridge(tmp_path: Path) -> None:
    """Compute nodes that do not see jobbridge's folder: ``job_python``'s own
    jobbridge (found through its site-packages) runs the wrapper."""
    write_spec(str(tmp_path / "job.spec"), wrapper_spec(
        EngineJob("j", ["sh", "-c", "exit 4"]), tmp_path, SystemKill("process_group")))
    argv = command(sys.executable)
    argv[-1] = str(tmp_path / "not-on-this-node")
    status = subprocess.run([*argv, str(tmp_path / "job.spec")], check=False).returncode
    record = read_exit_file(tmp_path / "exit.json")
    assert status == 4 and record is not None and record["exit"][:2] == [
        constants.FINISHED_REGULARLY, 4]


def test_the_native_wrapper_is_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """Once per version of its source and machine type, private; a missing or failing
    compiler says so (the scheduler then keeps the Python wrapper)."""
    built = nativewrap.build(tmp_path / "a")
    assert [path.name for path in (tmp_path / "a").iterdir()] == [built.name]
    assert built.stat().st_mode & 0o777 == 0o700
    monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
    assert nativewrap.build(tmp_path / "a") == built  # not compiled again
    with pytest.raises(nativewrap.BuildError, match="no C compiler"):
        nativewrap.build(tmp_path / "b")
    monkeypatch.setenv("CC", "false")
    with pytest.raises(nativewrap.BuildError, match="failed: exit status 1"):
        nativewrap.build(tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []  # nothing half built


def test_a_spec_on_stdin(wrapper: list[str], tmp_path: Path) -> None:
    """DRMAA's bulk jobs give each element its spec as stdin (``/dev/stdin``): a file
    there, a pipe here; the job still gets its own stdin."""
    job = EngineJob("j", ["sh", "-c", "cat; exit 5"], stdout_file=str(tmp_path / "out"))
    write_spec(str(tmp_path / "job.spec"), wrapper_spec(job, tmp_path,
                                                        SystemKill("process_group")))
    spec = (tmp_path / "job.spec").read_bytes()
    argv = [*wrapper, "/dev/stdin"]
    for given in ("file", "pipe"):
        if given == "file":
            with open(tmp_path / "job.spec", "rb") as stream:
                status = subprocess.run(argv, stdin=stream, check=False, timeout=60).returncode
        else:
            status = subprocess.run(argv, input=spec, check=False, timeout=60).returncode
        record = read_exit_file(tmp_path / "exit.json")
        assert status == 5 and record is not None and record["exit"][:2] == [
            constants.FINISHED_REGULARLY, 5], given
        assert (tmp_path / "out").read_bytes() == b"", given  # /dev/null, not the spec
