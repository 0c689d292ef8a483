"""The conformance kit has teeth: run against deliberately broken schedulers, each of
its checks that matters catches the fault.

Each toy is the real local scheduler with one fault added. The same check first
passes on the honest scheduler, so a failure below is the fault's, not the harness's.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from jobbridge import constants
from jobbridge.errors import ConfigurationError
from jobbridge.model import EngineJob, ExitInfo
from jobbridge.scheduler import Scheduler, job_list
from jobbridge.schedulers.local_basic import LocalScheduler
from jobbridge.testing import SchedulerConformance

#: native_specification the toys read as "submit held" and "keep queued".
HOLD, QUEUE = ["HOLD"], ["QUEUE"]


class Honest(LocalScheduler):
    """The local scheduler as it is, plus jobs submitted held or kept queued (they
    wait until killed); kills whatever is left when closed."""

    def __init__(self) -> None:
        super().__init__(proc_nb=2)
        self.submitted: list[str] = []
        #: ids of jobs kept waiting -> their status
        self.waiting: dict[str, str] = {}

    def job_submission(self, jobs: EngineJob | list[EngineJob], signal_end: bool = True
                       ) -> list[str | None]:
        batch = self.prepare(job_list(jobs))
        ids = iter(super().job_submission(
            [job for job in batch if job.native_specification not in (HOLD, QUEUE)],
            signal_end))
        result: list[str | None] = []
        for job in batch:
            if job.native_specification in (HOLD, QUEUE):
                job_id = f"waiting-{len(self.waiting)}"
                self.waiting[job_id] = (constants.USER_ON_HOLD if job.native_specification == HOLD
                                        else constants.QUEUED_ACTIVE)
                result.append(job_id)
            else:
                result.append(next(ids))
        self.submitted += [job_id for job_id in result if job_id is not None]
        return result

    def prepare(self, jobs: list[EngineJob]) -> list[EngineJob]:
        return jobs

    def get_jobs_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        others = [job_id for job_id in scheduler_job_ids if job_id not in self.waiting]
        statuses = super().get_jobs_status(others) if others else {}
        return {job_id: self.waiting.get(job_id) or statuses[job_id]
                for job_id in scheduler_job_ids}

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        if scheduler_job_id in self.waiting:
            return ExitInfo(constants.USER_KILLED, ran=False)
        return super().get_job_exit_info(scheduler_job_id)

    def kill_job(self, scheduler_job_id: str) -> None:
        if scheduler_job_id in self.waiting:
            self.kill_waiting(scheduler_job_id)
        else:
            super().kill_job(scheduler_job_id)

    def kill_waiting(self, scheduler_job_id: str) -> None:
        self.waiting[scheduler_job_id] = constants.FAILED

    def close(self) -> None:
        for job_id in self.submitted:
            if job_id not in self.waiting:
                LocalScheduler.kill_job(self, job_id)
        super().close()


class InventsStatuses(Honest):
    """Answers "queued" for an id it has never heard of (a cache's default)."""

    def get_jobs_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        return {job_id: constants.QUEUED_ACTIVE if status == constants.UNDETERMINED else status
                for job_id, status in super().get_jobs_status(scheduler_job_ids).items()}


class LosesExitCodes(Honest):
    """Reports every end as a regular exit 0."""

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        info = super().get_job_exit_info(scheduler_job_id)
        return ExitInfo(constants.FINISHED_REGULARLY, 0, 0, info.resource_usage)


class IgnoresKill(Honest):
    """Says nothing and does nothing when asked to kill."""

    def kill_job(self, scheduler_job_id: str) -> None:
        pass


class KillOverrulesEnds(Honest):
    """Calls every job it was asked to kill killed, even one that had ended."""

    def __init__(self) -> None:
        super().__init__()
        self.kills: set[str] = set()

    def kill_job(self, scheduler_job_id: str) -> None:
        self.kills.add(scheduler_job_id)
        super().kill_job(scheduler_job_id)

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        info = super().get_job_exit_info(scheduler_job_id)
        if scheduler_job_id in self.kills:
            return ExitInfo(constants.USER_KILLED, *info[1:])
        return info


class KillsOnlyOne(Honest):
    """Kills the first of many jobs it is asked to kill."""

    def kill_jobs(self, scheduler_job_ids: Sequence[str]) -> None:
        super().kill_jobs(scheduler_job_ids[:1])


class RunsArgvThroughAShell(Honest):
    """Joins the argv into one ``sh -c`` string: quoting and expansion break it."""

    def prepare(self, jobs: list[EngineJob]) -> list[EngineJob]:
        return [replace(job, command=["sh", "-c", " ".join(job.command)]) for job in jobs]


class RunsWhatItShouldRefuse(Honest):
    """Drops what a job asks for (queue, CPUs) and runs it anyway."""

    def prepare(self, jobs: list[EngineJob]) -> list[EngineJob]:
        return [replace(job, queue=None, resources={}) for job in jobs]


class KillsOnlyTheTopProcess(Honest):
    """Kills the job's own process, not its children (as a batch system signalling
    the script's process group does when the job left that group)."""

    def kill_job(self, scheduler_job_id: str) -> None:
        with self._lock:
            pid = self._pids.get(scheduler_job_id)
            self._killed.add(scheduler_job_id)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


class ReportsKillsItDoesNotDo(Honest):
    """Says a killed job ended killed_by_user while its processes run on."""

    def __init__(self) -> None:
        super().__init__()
        self.said_killed: set[str] = set()

    def kill_job(self, scheduler_job_id: str) -> None:
        self.said_killed.add(scheduler_job_id)

    def get_jobs_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        return {job_id: constants.FAILED if job_id in self.said_killed else status
                for job_id, status in super().get_jobs_status(scheduler_job_ids).items()}

    def get_job_exit_info(self, scheduler_job_id: str) -> ExitInfo:
        if scheduler_job_id in self.said_killed:
            return ExitInfo(constants.USER_KILLED)
        return super().get_job_exit_info(scheduler_job_id)


class SendsOnlyTheWarning(Honest):
    """Sends SIGTERM and forgets the kill: a job that catches it and exits 0 is done."""

    def kill_job(self, scheduler_job_id: str) -> None:
        with self._lock:
            pid = self._pids.get(scheduler_job_id)
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)


class ForgetsKilledWaitingJobs(Honest):
    """A job killed before it ran vanishes: undetermined until declared lost, much
    later (Grid Engine keeps no record of a job deleted while queued)."""

    def kill_waiting(self, scheduler_job_id: str) -> None:
        self.waiting[scheduler_job_id] = constants.UNDETERMINED


class ExpandsVariablesInPaths(Honest):
    """Expands ``$HOME``, ``$JOB_ID``... in the job's paths, as Grid Engine does in
    ``-o``/``-e``/``-wd``."""

    def prepare(self, jobs: list[EngineJob]) -> list[EngineJob]:
        def expand(path: str | None) -> str | None:
            return None if path is None else os.path.expandvars(path)

        return [replace(job, working_directory=expand(job.working_directory),
                        stdin=expand(job.stdin), stdout_file=expand(job.stdout_file),
                        stderr_file=expand(job.stderr_file)) for job in jobs]


class RefusesAHomeVaguely(Honest):
    """Refuses a JOBBRIDGE_HOME holding a '$' without saying which folder."""

    def __init__(self) -> None:
        if "$" in os.environ["JOBBRIDGE_HOME"]:
            raise ConfigurationError("bad configuration")
        super().__init__()


class BulkDisagrees(Honest):
    """Answers in bulk from another table than one at a time: failures look done."""

    def get_jobs_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, str]:
        statuses = super().get_jobs_status(scheduler_job_ids)
        if len(scheduler_job_ids) == 1:
            return statuses
        return {job_id: constants.DONE if status == constants.FAILED else status
                for job_id, status in statuses.items()}


KIT = SchedulerConformance
#: (toy, the kit's checks that must catch it)
CASES: list[tuple[type[Honest], list[Callable[..., None]]]] = [
    (InventsStatuses, [KIT.test_unknown_id]),
    (LosesExitCodes, [KIT.test_exit_code, KIT.test_signal, KIT.test_many_jobs_at_once]),
    (IgnoresKill, [KIT.test_kill_running, KIT.test_kill_kills_process_tree,
                   KIT.test_kill_many]),
    (KillOverrulesEnds, [KIT.test_kill_after_the_end_keeps_the_end]),
    (KillsOnlyOne, [KIT.test_kill_many]),
    (KillsOnlyTheTopProcess, [KIT.test_kill_kills_process_tree]),
    (ReportsKillsItDoesNotDo, [KIT.test_kill_running, KIT.test_kill_kills_process_tree]),
    (SendsOnlyTheWarning, [KIT.test_kill_a_job_that_catches_signals]),
    (ForgetsKilledWaitingJobs, [KIT.test_kill_queued, KIT.test_kill_held]),
    (ExpandsVariablesInPaths, [KIT.test_paths_batch_systems_read]),
    (RefusesAHomeVaguely, [KIT.test_state_folder_batch_systems_read]),
    (RunsArgvThroughAShell, [KIT.test_hostile_argv_arrives_byte_exact,
                             KIT.test_env]),
    (RunsWhatItShouldRefuse, [KIT.test_failed_submission]),
    (BulkDisagrees, [KIT.test_bulk_equals_single]),
]


class _Kit(SchedulerConformance):
    job_timeout = 8.0  # the local machine: a hung check is a caught fault
    end_grace = 1.0
    held_specification = HOLD
    queued_specification = QUEUE

    def __init__(self, toy: type[Honest]) -> None:
        self.toy = toy

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return self.toy()


def _run_check(check: Callable[..., None], toy: type[Honest], job_dir: Path,
               monkeypatch: pytest.MonkeyPatch) -> None:
    """Call one of the kit's test methods as pytest would, with its fixtures."""
    job_dir.mkdir()
    kit = _Kit(toy)
    with monkeypatch.context() as patch:
        (job_dir / "jobbridge-home").mkdir(mode=0o700)  # as the kit's own fixture does
        patch.setenv("JOBBRIDGE_HOME", str(job_dir / "jobbridge-home"))
        scheduler = toy()
        try:
            names = check.__code__.co_varnames[1:check.__code__.co_argcount]
            arguments = {"scheduler": scheduler, "job_dir": job_dir, "tmp_path": job_dir,
                         "monkeypatch": patch}
            check(kit, **{name: arguments[name] for name in names})
        finally:
            scheduler.close()


@pytest.mark.parametrize(("toy", "check"), [
    pytest.param(toy, check, id=f"{toy.__name__}-{check.__name__}")
    for toy, checks in CASES for check in checks])
def test_the_kit_catches_a_broken_scheduler(toy: type[Honest], check: Callable[..., None],
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    _run_check(check, Honest, tmp_path / "honest", monkeypatch)  # the check itself works
    with pytest.raises((AssertionError, TimeoutError)):
        _run_check(check, toy, tmp_path / "broken", monkeypatch)


def test_each_check_has_a_private_home(pytester: pytest.Pytester) -> None:
    """The kit gives every test a fresh JOBBRIDGE_HOME of its own, in ``job_dir``."""
    pytester.makepyfile(test_home='''
        import os, stat
        from jobbridge.schedulers.local_basic import LocalScheduler
        from jobbridge.testing import SchedulerConformance

        HOMES = []

        class TestHome(SchedulerConformance):
            def make_scheduler(self, tmp_path):
                home = os.environ["JOBBRIDGE_HOME"]
                assert home == str(tmp_path / "jobbridge-home")
                assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
                assert home not in HOMES
                HOMES.append(home)
                return LocalScheduler(proc_nb=1)
    ''')
    result = pytester.runpytest("-k", "test_success or test_exit_code", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
