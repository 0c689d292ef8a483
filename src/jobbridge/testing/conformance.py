"""The scheduler conformance kit: what every Scheduler must do, as pytest tests.

Each test submits real jobs through the scheduler under test and asserts what a
user sees: exit codes, signals, files, statuses, and processes (a killed job's
whole process tree is gone). Each test has a private ``JOBBRIDGE_HOME`` (a fresh
folder in ``job_dir``), so schedulers keeping state there start clean. Jobs only
need ``/bin/sh`` and coreutils on the execution hosts. Every check can fail:
jobbridge's own suite runs the kit against deliberately broken schedulers and
expects each to be caught (tests/test_conformance_kit.py).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .. import constants
from ..errors import JobbridgeError
from ..model import EngineJob
from ..scheduler import Scheduler, run_to_end, wait_for_status

#: Arguments that break naive quoting: each must reach the job byte-exact.
HOSTILE_STRINGS = [
    "it's", 'say "hi"', "$(touch pwned)", "`touch pwned`", "a\nb", "tab\there", "*",
    "?[ab]", "~", "€ ünïcode ✓", " lead and trail ", "", "-n", "\\", "$HOME", "a;b|c&d",
    "!bang", "%j %x %%",
]
#: What batch systems read in paths: variables Grid Engine and PBS expand in
#: ``-o``/``-e``/``-wd``, ``host:`` before a colon, Slurm's ``%`` patterns.
HOSTILE_PATH = "p$HOME-$JOB_ID-${USER}-h:p-%j-%%"
#: Statuses of a job that waits to start.
WAITING = frozenset({constants.QUEUED_ACTIVE, constants.USER_ON_HOLD,
                     constants.SYSTEM_ON_HOLD, constants.USER_SYSTEM_ON_HOLD})
_USAGE_ITEM = re.compile(
    r"^(cpupercent=\d+|cput=\d+:\d\d:\d\d|walltime=\d+:\d\d:\d\d|mem=\d+kb|vmem=\d+kb"
    r"|ncpus=\d+|cpu_s=\d+(\.\d+)?|wall_s=\d+(\.\d+)?"
    r"|wrapper=[a-z_]+(,[a-z_]+)*)$")  # wrapper=: the items the job wrapper measured


class SchedulerConformance:
    """Mix into a test class that defines :meth:`make_scheduler` (or, when the
    scheduler needs other fixtures, a ``scheduler`` fixture of its own)."""

    #: Seconds one job may take from submission to its end.
    job_timeout: float = 120.0
    #: How many jobs the "many jobs at once" test submits.
    many_jobs: int = 12
    #: A job id the system under test does not know.
    unknown_id: str = "99999999"
    #: Seconds a job's system may take to know that a job has ended (the kill-after-
    #: the-end check waits this long after the job's last command).
    end_grace: float = 5.0
    #: ``native_specification`` that submits a job held (qsub ``-h``, sbatch
    #: ``--hold``); None: the scheduler cannot hold jobs, the held-job check is skipped.
    held_specification: list[str] | None = None
    #: ``native_specification`` that keeps a job queued, unheld (a start time far
    #: ahead: qsub ``-a 210001010000``, sbatch ``--begin=2100-01-01``); None: the
    #: queued-job check kills its job right after submitting it.
    queued_specification: list[str] | None = None

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        """A new instance of the scheduler under test (``tmp_path``: a private folder)."""
        raise NotImplementedError("define make_scheduler(self, tmp_path) in your test class")

    @pytest.fixture(autouse=True)
    def private_jobbridge_home(self, job_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        """A private ``JOBBRIDGE_HOME`` for each test, in ``job_dir`` (which the
        execution hosts see, as batch schedulers' state folders must be)."""
        home = job_dir / "jobbridge-home"
        home.mkdir(mode=0o700)
        monkeypatch.setenv("JOBBRIDGE_HOME", str(home))
        return home

    @pytest.fixture
    def scheduler(self, tmp_path: Path, private_jobbridge_home: Path) -> Iterator[Scheduler]:
        """The scheduler of one test (built with its private home); after the test,
        the jobs it left unended are killed (a failed check leaves nothing in a
        shared queue) and the scheduler is closed."""
        scheduler = self.make_scheduler(tmp_path)
        submitted: list[str] = []
        submit = scheduler.job_submission

        def recorded(jobs: EngineJob | list[EngineJob], signal_end: bool = True
                     ) -> list[str | None]:
            ids = submit(jobs, signal_end)
            submitted.extend(job_id for job_id in ids if job_id is not None)
            return ids

        scheduler.job_submission = recorded  # type: ignore[method-assign]
        yield scheduler
        try:
            if submitted:
                for job_id, status in scheduler.get_jobs_status(submitted).items():
                    if status not in constants.ENDED_JOB_STATUS:
                        scheduler.kill_job(job_id)
        finally:
            scheduler.close()

    @pytest.fixture
    def job_dir(self, tmp_path: Path) -> Path:
        """A folder that the jobs' execution hosts see (override on real clusters)."""
        return tmp_path

    def run(self, scheduler: Scheduler, *jobs: EngineJob
            ) -> list[tuple[str, tuple[str, int | None, int | None, str | None]]]:
        return run_to_end(scheduler, jobs, timeout=self.job_timeout)

    def job(self, job_dir: Path, name: str, command: list[str], **options: object
            ) -> EngineJob:
        options.setdefault("working_directory", str(job_dir))
        options.setdefault("stdout_file", str(job_dir / f"{name}.out"))
        options.setdefault("stderr_file", str(job_dir / f"{name}.err"))
        return EngineJob(job_id=name, command=command, submission_tag=f"conformance-{name}-"
                         f"{time.time_ns():x}", **options)  # type: ignore[arg-type]

    # --- the seed's API --------------------------------------------------------------------
    def test_submission_takes_one_job_and_signal_end(self, scheduler: Scheduler,
                                                     job_dir: Path) -> None:
        """soma-workflow's call: ``job_submission(job, signal_end=True)``."""
        ids = scheduler.job_submission(self.job(job_dir, "seed", ["true"]), signal_end=True)
        assert len(ids) == 1 and ids[0] is not None
        assert wait_for_status(scheduler, [ids[0]], timeout=self.job_timeout) == {
            ids[0]: constants.DONE}
        assert scheduler.get_job_exit_info(ids[0])[:2] == (constants.FINISHED_REGULARLY, 0)

    # --- exit codes and signals ----------------------------------------------------------
    def test_success(self, scheduler: Scheduler, job_dir: Path) -> None:
        [(status, info)] = self.run(scheduler, self.job(job_dir, "ok", ["true"]))
        assert status == constants.DONE
        assert info[0] == constants.FINISHED_REGULARLY
        assert info[1] == 0
        assert not info[2]

    def test_exit_code(self, scheduler: Scheduler, job_dir: Path) -> None:
        [(status, info)] = self.run(scheduler, self.job(job_dir, "three", ["sh", "-c", "exit 3"]))
        assert status == constants.FAILED
        assert (info[0], info[1]) == (constants.FINISHED_REGULARLY, 3)

    def test_signal(self, scheduler: Scheduler, job_dir: Path) -> None:
        [(status, info)] = self.run(
            scheduler, self.job(job_dir, "sig", ["sh", "-c", "kill -KILL $$"]))
        assert status == constants.FAILED
        assert (info[0], info[2]) == (constants.FINISHED_TERM_SIG, 9)

    def test_exit_info_shape(self, scheduler: Scheduler, job_dir: Path) -> None:
        [(_, info)] = self.run(scheduler, self.job(job_dir, "shape", ["sleep", "0.2"]))
        assert len(tuple(info)) == 4
        assert info[0] in constants.JOB_EXIT_STATUS
        usage = info[3]
        if usage is not None:
            assert isinstance(usage, str)
            for item in usage.split():
                assert _USAGE_ITEM.match(item), f"bad resource_usage item {item!r} in {usage!r}"

    # --- kill ----------------------------------------------------------------------------
    def test_kill_running(self, scheduler: Scheduler, job_dir: Path) -> None:
        """Killed while running: failed, killed_by_user, and its process is gone."""
        marker, top = job_dir / "started", job_dir / "top.pid"
        job = self.job(job_dir, "victim", ["sh", "-c", f'{_WRITE_HOST}; echo $$ > "{top}"; '
                                                       f'touch "{marker}"; exec sleep 600'],
                       env={"JB_HOST_FILE": str(job_dir / "host")})
        [job_id] = scheduler.job_submission([job])
        assert job_id is not None
        _wait_for_file(marker, timeout=self.job_timeout)
        processes = _processes(job_dir, top)
        scheduler.kill_job(job_id)
        statuses = wait_for_status(scheduler, [job_id], timeout=self.job_timeout)
        assert statuses[job_id] == constants.FAILED
        assert scheduler.get_job_exit_info(job_id)[0] == constants.USER_KILLED
        _wait_until_gone(processes, "the killed job", self.job_timeout)

    def test_kill_kills_process_tree(self, scheduler: Scheduler, job_dir: Path) -> None:
        """The job's children and grandchildren die with it (checked where the job
        runs on this host)."""
        marker, pids = job_dir / "started", [job_dir / f"{name}.pid" for name in
                                             ("top", "child", "grandchild")]
        script = (f'{_WRITE_HOST}; sh -c \'sleep 600 & echo $! > "$1"; touch "$2"; wait\' '
                  f'sh "{pids[2]}" "{marker}" & echo $! > "{pids[1]}"; echo $$ > "{pids[0]}"; '
                  "wait")
        [job_id] = scheduler.job_submission([self.job(
            job_dir, "tree", ["sh", "-c", script], env={"JB_HOST_FILE": str(job_dir / "host")})])
        assert job_id is not None
        _wait_for_file(marker, timeout=self.job_timeout)
        processes = _processes(job_dir, *pids)
        scheduler.kill_job(job_id)
        wait_for_status(scheduler, [job_id], timeout=self.job_timeout)
        assert scheduler.get_job_exit_info(job_id)[0] == constants.USER_KILLED
        _wait_until_gone(processes, "a process of the killed job's tree", self.job_timeout)

    def test_kill_a_job_that_catches_signals(self, scheduler: Scheduler, job_dir: Path
                                             ) -> None:
        """A job that catches the system's warning signal (SIGTERM before SIGKILL, as
        Slurm and PBS send) and exits 0 was still killed: failed, killed_by_user."""
        marker = job_dir / "started"
        script = (f'trap "exit 0" TERM INT HUP USR1 USR2 XCPU; touch "{marker}"; '
                  "while :; do sleep 1; done")
        [job_id] = scheduler.job_submission([self.job(job_dir, "trap", ["sh", "-c", script])])
        assert job_id is not None
        _wait_for_file(marker, timeout=self.job_timeout)
        scheduler.kill_job(job_id)
        assert wait_for_status(scheduler, [job_id], timeout=self.job_timeout) == {
            job_id: constants.FAILED}
        assert scheduler.get_job_exit_info(job_id)[0] == constants.USER_KILLED

    def test_kill_queued(self, scheduler: Scheduler, job_dir: Path) -> None:
        """A job killed before it started ends at once (within ``job_timeout``, not
        after some lost-job delay): failed, killed_by_user; kept queued by
        ``queued_specification``, it never runs."""
        self._kill_waiting(scheduler, job_dir, "queued", self.queued_specification)

    def test_kill_held(self, scheduler: Scheduler, job_dir: Path) -> None:
        """A held job killed: failed, killed_by_user, at once; it never runs."""
        if self.held_specification is None:
            pytest.skip("held_specification is not set: the scheduler cannot hold jobs")
        self._kill_waiting(scheduler, job_dir, "held", self.held_specification)

    def _kill_waiting(self, scheduler: Scheduler, job_dir: Path, name: str,
                      native: list[str] | None) -> None:
        """Without options that keep it waiting, the job may start before the kill:
        it then runs long enough to be killed, and only a job the options kept
        waiting must never have run."""
        ran = job_dir / f"{name}-ran"
        job = self.job(job_dir, name, ["sh", "-c", f'touch "{ran}"; exec sleep 300'],
                       native_specification=native)
        [job_id] = scheduler.job_submission([job])
        assert job_id is not None
        before = scheduler.get_job_status(job_id)
        if native is not None:
            assert before in WAITING, f"a {name} job is {before}"
        scheduler.kill_job(job_id)
        assert wait_for_status(scheduler, [job_id], timeout=self.job_timeout) == {
            job_id: constants.FAILED}
        assert scheduler.get_job_exit_info(job_id)[0] == constants.USER_KILLED
        if native is not None:
            assert not ran.exists(), f"a job killed while {before} ran"

    def test_kill_after_the_end_keeps_the_end(self, scheduler: Scheduler, job_dir: Path
                                              ) -> None:
        """A kill asked once the job has ended, before any poll saw the end, changes
        nothing: the job's own end stands (``finished_regularly``, 0), never
        ``killed_by_user`` (a stop racing a natural end must not fail a success)."""
        marker = job_dir / "ended"
        job = self.job(job_dir, "ended", ["sh", "-c", f'touch "{marker}"'])
        [job_id] = scheduler.job_submission([job])
        assert job_id is not None
        _wait_for_file(marker, timeout=self.job_timeout)
        time.sleep(self.end_grace)  # the job has ended, and its system knows it
        scheduler.kill_job(job_id)
        assert wait_for_status(scheduler, [job_id], timeout=self.job_timeout) == {
            job_id: constants.DONE}
        info = scheduler.get_job_exit_info(job_id)
        assert (info[0], info[1]) == (constants.FINISHED_REGULARLY, 0), info

    def test_kill_many(self, scheduler: Scheduler, job_dir: Path) -> None:
        """``kill_jobs`` (what ``stop`` calls) kills every job it is given, queued or
        running, and no other."""
        markers = [job_dir / f"many-started{i}" for i in range(3)]
        jobs = [self.job(job_dir, f"kill{i}", ["sh", "-c", f'touch "{marker}"; exec sleep 600'])
                for i, marker in enumerate(markers)]
        spared = self.job(job_dir, "spared", ["sh", "-c", "sleep 2"])
        ids = scheduler.job_submission([*jobs, spared])
        assert None not in ids
        doomed = [str(job_id) for job_id in ids[:3]]
        # one runs, the others may be queued: whichever the system started (submissions
        # may reach it in any order, and a 2-slot Grid Engine runs the first two it got)
        _wait_for_file(*markers, timeout=self.job_timeout)
        scheduler.kill_jobs(doomed)
        statuses = wait_for_status(scheduler, [str(job_id) for job_id in ids],
                                   timeout=self.job_timeout)
        assert [statuses[job_id] for job_id in doomed] == [constants.FAILED] * 3, statuses
        assert [scheduler.get_job_exit_info(job_id)[0] for job_id in doomed] == [
            constants.USER_KILLED] * 3
        assert statuses[str(ids[3])] == constants.DONE

    # --- files, environment, directory ----------------------------------------------------
    def test_stdout_stderr_files(self, scheduler: Scheduler, job_dir: Path) -> None:
        job = self.job(job_dir, "files", ["sh", "-c", "echo out; echo err >&2"])
        [(status, _)] = self.run(scheduler, job)
        assert status == constants.DONE
        assert Path(str(job.stdout_file)).read_text() == "out\n"
        assert Path(str(job.stderr_file)).read_text() == "err\n"

    def test_join_stderr_stdout(self, scheduler: Scheduler, job_dir: Path) -> None:
        job = self.job(job_dir, "joined", ["sh", "-c", "echo out; echo err >&2"],
                       join_stderrout=True)
        self.run(scheduler, job)
        assert Path(str(job.stdout_file)).read_text() == "out\nerr\n"

    def test_stdin(self, scheduler: Scheduler, job_dir: Path) -> None:
        source = job_dir / "input with space.txt"
        source.write_bytes(b"line 1\nline \xc3\xa9 2\n")
        job = self.job(job_dir, "stdin", ["cat"], stdin=str(source))
        self.run(scheduler, job)
        assert Path(str(job.stdout_file)).read_bytes() == source.read_bytes()

    def test_env(self, scheduler: Scheduler, job_dir: Path) -> None:
        values = {f"JB_VAR_{i}": value for i, value in enumerate(HOSTILE_STRINGS)}
        script = "; ".join(f'printf "%s\\000" "${name}"' for name in values)
        job = self.job(job_dir, "env", ["sh", "-c", script], env=values)
        [(status, _)] = self.run(scheduler, job)
        assert status == constants.DONE
        got = Path(str(job.stdout_file)).read_bytes().split(b"\0")[:-1]
        assert got == [v.encode() for v in values.values()]

    def test_hostile_argv_arrives_byte_exact(self, scheduler: Scheduler, job_dir: Path) -> None:
        job = self.job(job_dir, "argv", ["printf", "%s\\000", *HOSTILE_STRINGS])
        [(status, _)] = self.run(scheduler, job)
        assert status == constants.DONE
        got = Path(str(job.stdout_file)).read_bytes().split(b"\0")[:-1]
        assert got == [s.encode() for s in HOSTILE_STRINGS]
        assert not (job_dir / "pwned").exists(), "a string of the job was run by a shell"

    def test_working_directory(self, scheduler: Scheduler, job_dir: Path) -> None:
        workdir = job_dir / "a dir with 'quotes' and $(x)"
        workdir.mkdir()
        job = self.job(job_dir, "cwd", ["pwd", "-P"], working_directory=str(workdir))
        self.run(scheduler, job)
        assert Path(str(job.stdout_file)).read_text() == f"{workdir.resolve()}\n"

    def test_paths_batch_systems_read(self, scheduler: Scheduler, job_dir: Path) -> None:
        """Paths holding ``$HOME``, ``$JOB_ID``, ``:`` and ``%`` (which batch systems
        expand or split in their path options) are the job's exact paths."""
        folder = job_dir / HOSTILE_PATH
        folder.mkdir()
        (folder / f"in-{HOSTILE_PATH}").write_text("input\n")
        job = self.job(job_dir, "paths", ["sh", "-c", "cat; pwd -P; echo err >&2"],
                       working_directory=str(folder), stdin=str(folder / f"in-{HOSTILE_PATH}"),
                       stdout_file=str(folder / f"out-{HOSTILE_PATH}"),
                       stderr_file=str(folder / f"err-{HOSTILE_PATH}"))
        [(status, info)] = self.run(scheduler, job)
        assert (status, info[0], info[1]) == (constants.DONE, constants.FINISHED_REGULARLY, 0)
        assert Path(str(job.stdout_file)).read_text() == f"input\n{folder.resolve()}\n"
        assert Path(str(job.stderr_file)).read_text() == "err\n"
        assert sorted(path.name for path in folder.iterdir()) == sorted(
            f"{kind}-{HOSTILE_PATH}" for kind in ("in", "out", "err"))

    def test_state_folder_batch_systems_read(self, tmp_path: Path, job_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """A ``JOBBRIDGE_HOME`` holding the same characters: the scheduler runs jobs
        there, or refuses it at once with a clear error naming it."""
        if type(self).make_scheduler is SchedulerConformance.make_scheduler:
            pytest.skip("this class defines a scheduler fixture, not make_scheduler")
        home = job_dir / f"home-{HOSTILE_PATH}"
        home.mkdir(mode=0o700)
        monkeypatch.setenv("JOBBRIDGE_HOME", str(home))
        try:
            scheduler = self.make_scheduler(tmp_path)
        except JobbridgeError as error:
            assert str(home) in str(error), f"the refusal does not name the folder: {error}"
            return
        try:
            [(status, info)] = self.run(scheduler, self.job(job_dir, "home", ["true"]))
        finally:
            scheduler.close()
        assert (status, info[0], info[1]) == (constants.DONE, constants.FINISHED_REGULARLY, 0)

    # --- failures, many jobs, unknown ids ---------------------------------------------------
    def test_unstartable_command_fails_the_job(self, scheduler: Scheduler, job_dir: Path
                                               ) -> None:
        jobs = [self.job(job_dir, "missing", ["/no/such/program-jobbridge"]),
                self.job(job_dir, "fine", ["true"])]
        [(bad_status, bad_info), (good_status, _)] = self.run(scheduler, *jobs)
        assert bad_status == constants.FAILED
        assert not (bad_info[0] == constants.FINISHED_REGULARLY and bad_info[1] == 0)
        assert good_status == constants.DONE

    def test_failed_submission(self, scheduler: Scheduler, job_dir: Path) -> None:
        """A job no system can run (an unknown queue, 100000 CPUs) is refused: None, or
        an id that ends FAILED, never DONE; the jobs around it still run."""
        jobs = [self.job(job_dir, "before", ["true"]),
                self.job(job_dir, "refused", ["true"], queue="no-such-queue-jobbridge",
                         resources={"cpus": 100000}),
                self.job(job_dir, "after", ["true"])]
        results = self.run(scheduler, *jobs)  # a None id ends FAILED, aborted
        assert results[0][0] == constants.DONE
        assert results[2][0] == constants.DONE
        status, info = results[1]
        assert status == constants.FAILED, f"a refused job ended {status} {info}"
        assert not (info[0] == constants.FINISHED_REGULARLY and info[1] == 0)

    def test_many_jobs_at_once(self, scheduler: Scheduler, job_dir: Path) -> None:
        jobs = [self.job(job_dir, f"many{i}", ["sh", "-c", f"echo {i}; exit {i % 3}"])
                for i in range(self.many_jobs)]
        results = self.run(scheduler, *jobs)
        for i, (job, (status, info)) in enumerate(zip(jobs, results, strict=True)):
            assert info[1] == i % 3
            assert status == (constants.DONE if i % 3 == 0 else constants.FAILED)
            assert Path(str(job.stdout_file)).read_text() == f"{i}\n"

    def test_unknown_id(self, scheduler: Scheduler) -> None:
        """An id the system does not know is exactly undetermined, alone, in bulk and
        after a kill (which must not raise); its exit info says so too."""
        unknown = self.unknown_id
        assert scheduler.get_job_status(unknown) == constants.UNDETERMINED
        assert scheduler.get_jobs_status([unknown]) == {unknown: constants.UNDETERMINED}
        scheduler.kill_job(unknown)
        assert scheduler.get_job_status(unknown) == constants.UNDETERMINED
        assert scheduler.get_job_exit_info(unknown)[0] == constants.EXIT_UNDETERMINED

    def test_bulk_equals_single(self, scheduler: Scheduler, job_dir: Path) -> None:
        """The same jobs followed in bulk and one id at a time end the same way, with
        the same exit info; once ended, both ways of asking agree."""
        commands = [["true"], ["sh", "-c", "exit 3"], ["sh", "-c", "kill -KILL $$"]]
        bulk_ids = self._submit_all(scheduler, [
            self.job(job_dir, f"bulk{i}", command) for i, command in enumerate(commands)])
        single_ids = self._submit_all(scheduler, [
            self.job(job_dir, f"single{i}", command) for i, command in enumerate(commands)])
        bulk = wait_for_status(scheduler, bulk_ids, timeout=self.job_timeout)
        single = {job_id: self._wait_alone(scheduler, job_id) for job_id in single_ids}
        expected = [constants.DONE, constants.FAILED, constants.FAILED]
        assert [bulk[job_id] for job_id in bulk_ids] == expected
        assert [single[job_id] for job_id in single_ids] == expected
        every = bulk_ids + single_ids
        assert scheduler.get_jobs_status(every) == {
            job_id: scheduler.get_job_status(job_id) for job_id in every}
        for bulk_id, single_id in zip(bulk_ids, single_ids, strict=True):
            bulk_info = scheduler.get_job_exit_info(bulk_id)
            single_info = scheduler.get_job_exit_info(single_id)
            assert bulk_info[:3] == single_info[:3], (bulk_info, single_info)

    def _submit_all(self, scheduler: Scheduler, jobs: list[EngineJob]) -> list[str]:
        ids = scheduler.job_submission(jobs)
        assert len(ids) == len(jobs) and None not in ids, ids
        return [str(job_id) for job_id in ids]

    def _wait_alone(self, scheduler: Scheduler, job_id: str) -> str:
        """Poll one id with ``get_job_status`` until it ended."""
        deadline = time.monotonic() + self.job_timeout
        while (status := scheduler.get_job_status(job_id)) not in constants.ENDED_JOB_STATUS:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {status} after {self.job_timeout:g} s")
            time.sleep(min(max(scheduler.poll_interval(), 0.02), 1.0))
        return status


#: Shell words writing the job's host name to the file ``$JB_HOST_FILE`` names.
_WRITE_HOST = 'uname -n > "$JB_HOST_FILE"'


def _processes(job_dir: Path, *pid_files: Path) -> list[tuple[int, str]]:
    """The processes whose pids a job wrote (after its host, by :data:`_WRITE_HOST`),
    each with its start time (a pid may be reused); none when the job ran on
    another host, where they cannot be checked."""
    host = job_dir / "host"
    for path in (host, *pid_files):
        _wait_for_file(path, timeout=30)
    if host.read_text().strip() != socket.gethostname():
        return []
    processes = [(int(path.read_text()), _start_time(int(path.read_text())))
                 for path in pid_files]
    assert all(start for _, start in processes), "a process of the job ended before its kill"
    return processes


def _wait_until_gone(processes: list[tuple[int, str]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while left := [pid for pid, start in processes if _start_time(pid) == start]:
        assert time.monotonic() < deadline, f"{what} kept running (pids {left})"
        time.sleep(0.1)


def _start_time(pid: int) -> str:
    """A running process's start time ("" when it ended or is not on this host)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def _wait_for_file(*paths: Path, timeout: float) -> None:
    """Until one of the paths exists."""
    deadline = time.monotonic() + timeout
    while not any(path.exists() for path in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{paths[0]} did not appear within {timeout:g} s")
        time.sleep(0.05)
