"""The conformance kit has teeth: run against deliberately broken schedulers, each of
its checks that matters catches the fault.

Each toy is the real local scheduler with one fault added. The same check first
passes on the honest scheduler, so a failure below is the fault's, not the harness's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from jobbridge import constants
from jobbridge.model import EngineJob, ExitInfo
from jobbridge.scheduler import job_list
from jobbridge.schedulers.local_basic import LocalScheduler
from jobbridge.testing import SchedulerConformance


class Honest(LocalScheduler):
    """The local scheduler as it is; kills whatever is left when closed."""

    def __init__(self) -> None:
        super().__init__(proc_nb=2)
        self.submitted: list[str] = []

    def job_submission(self, jobs: EngineJob | list[EngineJob], signal_end: bool = True
                       ) -> list[str | None]:
        ids = super().job_submission(self.prepare(job_list(jobs)), signal_end)
        self.submitted += [job_id for job_id in ids if job_id is not None]
        return ids

    def prepare(self, jobs: list[EngineJob]) -> list[EngineJob]:
        return jobs

    def close(self) -> None:
        for job_id in self.submitted:
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
    (RunsArgvThroughAShell, [KIT.test_hostile_argv_arrives_byte_exact,
                             KIT.test_env]),
    (RunsWhatItShouldRefuse, [KIT.test_failed_submission]),
    (BulkDisagrees, [KIT.test_bulk_equals_single]),
]


class _Kit(SchedulerConformance):
    job_timeout = 8.0  # the local machine: a hung check is a caught fault
    end_grace = 1.0


def _run_check(check: Callable[..., None], scheduler: LocalScheduler, job_dir: Path) -> None:
    """Call one of the kit's test methods as pytest would, with its fixtures."""
    names = check.__code__.co_varnames[1:check.__code__.co_argcount]
    arguments = {"scheduler": scheduler, "job_dir": job_dir}
    check(_Kit(), **{name: arguments[name] for name in names})


@pytest.mark.parametrize(("toy", "check"), [
    pytest.param(toy, check, id=f"{toy.__name__}-{check.__name__}")
    for toy, checks in CASES for check in checks])
def test_the_kit_catches_a_broken_scheduler(toy: type[Honest], check: Callable[..., None],
                                            tmp_path: Path) -> None:
    honest = Honest()
    try:
        (tmp_path / "honest").mkdir()
        _run_check(check, honest, tmp_path / "honest")  # the check itself works
    finally:
        honest.close()
    broken = toy()
    try:
        (tmp_path / "broken").mkdir()
        with pytest.raises((AssertionError, TimeoutError)):
            _run_check(check, broken, tmp_path / "broken")
    finally:
        broken.close()
