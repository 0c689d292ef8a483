"""Grid Engine's output and exit rules (schedulers/gridengine.py), which the drmaa and
sge schedulers share, on output recorded from the real Grid Engine (tests/data/sge)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobbridge import constants
from jobbridge.model import EngineJob
from jobbridge.schedulers import gridengine
from jobbridge.schedulers.common import parse_duration, parse_size
from jobbridge.schedulers.gridengine import exit_info_from_accounting

DATA = Path(__file__).resolve().parents[1] / "data" / "sge"
#: ``qacct -j`` of jobs of the test cell: exit 3, killed by SIGKILL, a missing program.
QACCT = """==============================================================
qname        all.q
jobnumber    13
qsub_time    Wed Nov 25 08:56:47 2026
start_time   Wed Nov 25 08:56:48 2026
end_time     Wed Nov 25 08:56:48 2026
slots        2
failed       {failed}
exit_status  {code}
ru_wallclock 3s
cpu          1.010s
maxvmem      1.711MB
"""


def recorded() -> dict[str, dict[str, str]]:
    """The recorded qacct records, by job name."""
    return {record["jobname"]: record
            for record in gridengine.records((DATA / "qacct-limits.txt").read_text())}


def test_qstat_xml_and_state_letters() -> None:
    jobs = gridengine.parse_qstat_xml((DATA / "qstat.xml").read_text())
    assert {job_id: (state, gridengine.job_status(state))
            for job_id, (state, _) in jobs.items()} == {
        "343": ("dr", constants.RUNNING),  # being deleted, still running
        "553": ("r", constants.RUNNING),
        "359": ("Eqw", constants.SYSTEM_ON_HOLD),  # an error holds it until qmod -cj
        "357": ("hqw", constants.USER_ON_HOLD),
        "358": ("qw", constants.QUEUED_ACTIVE),  # a start time to come
    }
    assert jobs["553"][1] == "conformance-many10-18ecd893cf8cdb44"


@pytest.mark.parametrize(("state", "status"), [
    ("t", constants.RUNNING), ("Rr", constants.RUNNING), ("s", constants.USER_SUSPENDED),
    ("S", constants.SYSTEM_SUSPENDED), ("T", constants.SYSTEM_SUSPENDED),
    ("hRwq", constants.USER_ON_HOLD), ("dqw", constants.QUEUED_ACTIVE), ("", None),
    ("Z", None)])
def test_state_letters(state: str, status: str | None) -> None:
    assert gridengine.job_status(state) == status


@pytest.mark.parametrize(("failed", "code", "expected"), [
    ("0", "3", (constants.FINISHED_REGULARLY, 3, 0)),
    ("100 : assumedly after job", "137                  (Killed)",
     (constants.FINISHED_TERM_SIG, None, 9)),
    ("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "137",
     (constants.FINISHED_TERM_SIG, None, 9)),  # no category: which limit is unknown
])
def test_exit_info_from_accounting(failed: str, code: str,
                                   expected: tuple[str, int | None, int | None]) -> None:
    record = dict(line.split(None, 1) for line in
                  QACCT.format(failed=failed, code=code).splitlines()[1:])
    info = exit_info_from_accounting(record, killed=False)
    assert tuple(info)[:3] == expected
    assert info.resource_usage == ("cput=00:00:01 vmem=1752kb walltime=00:00:03 cpupercent=34 "
                                   "ncpus=2 cpu_s=1.010 wall_s=3.000")
    assert (info.reason is not None) == failed.startswith("37")
    assert info.ran is True
    assert exit_info_from_accounting(record, killed=True)[0] == constants.USER_KILLED


@pytest.mark.parametrize(("name", "reason"), [
    ("rt", "TIMEOUT: killed at its time limit (h_rt=3)"),
    ("vm3", "OUT_OF_MEMORY: killed at its memory limit (h_vmem=120M, maxvmem 193M)"),
])
def test_ends_at_a_limit(name: str, reason: str) -> None:
    """As on Slurm: aborted, with a reason retry_on matches (failed 37: its category's
    limits against its wall clock and maxvmem tell which)."""
    info = exit_info_from_accounting(recorded()[name], killed=False)
    assert (info.exit_status, info.term_sig, info.reason) == (constants.EXIT_ABORTED, 9, reason)
    assert info.ran is True


def test_a_kill_at_the_cpu_limit_is_a_signal() -> None:
    """The kernel's SIGKILL at h_cpu is failed 100: a signal, as Grid Engine says."""
    info = exit_info_from_accounting(recorded()["cpu"], killed=False)
    assert (info.exit_status, info.term_sig, info.reason) == (
        constants.FINISHED_TERM_SIG, 9, None)


@pytest.mark.parametrize(("category", "reason"), [
    ("-u root -l h_vmem=512K",  # per slot: 2 slots, 1 MB
     "OUT_OF_MEMORY: killed at its memory limit (h_vmem=512K, maxvmem 2M)"),
    ("-l h_rt=3,h_vmem=1G -pe smp 2", "TIMEOUT: killed at its time limit (h_rt=3)"),
    ("-l h_rt=0:1:0,h_vmem=1G", "Grid Engine: failed 37"),  # neither reached: as GE says
])
def test_a_limit_grid_engine_killed_a_job_for(category: str, reason: str) -> None:
    """failed 37 names no limit: the job's own (its category, for a job an earlier
    engine submitted) against its maxvmem and wall clock tell which."""
    record = dict(line.split(None, 1) for line in QACCT.format(
        failed="37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", code="137").splitlines()[1:])
    record["category"] = category
    info = exit_info_from_accounting(record, killed=False)
    assert info.reason is not None and info.reason.startswith(reason), info
    assert info.term_sig == 9
    limited = not reason.startswith("Grid Engine")
    assert info.exit_status == (constants.EXIT_ABORTED if limited else constants.FINISHED_TERM_SIG)


@pytest.mark.parametrize(("text", "size"), [
    ("150M", 150 * 2**20), ("150m", 150e6), ("1G", 2**30), ("2k", 2000), ("512", 512),
    ("x", None), ("", None)])
def test_grid_engine_sizes(text: str, size: float | None) -> None:
    """In limits, an upper-case unit is binary, a lower-case one decimal."""
    assert gridengine.size_bytes(text) == size


def test_exit_info_of_a_job_that_never_ran() -> None:
    info = exit_info_from_accounting(recorded()["err"], killed=False)
    assert info.exit_status == constants.EXIT_ABORTED
    assert info.reason == "Grid Engine: failed 28  : changing into working directory"
    assert info.ran is False  # no execution date
    never = {"start_time": "-/-", "failed": "27  : searching requested shell",
             "exit_status": "0"}
    assert exit_info_from_accounting(never, killed=True)[0] == constants.USER_KILLED


def test_accounting_queries_and_names() -> None:
    assert gridengine.accounting_query(["12"]) == ["qacct", "-j", "12"]
    assert gridengine.accounting_query(["12", "13", "name"]) == ["qacct", "-j", "*"]
    assert gridengine.accounting_query(["name"]) is None  # -j also takes names
    output = (DATA / "qacct-limits.txt").read_text()
    assert set(gridengine.accounting_records(output, ["341", "359", "1"])) == {"341", "359"}
    assert gridengine.named_job_numbers(output)["err"] == "359"


def test_limits_and_flush_time() -> None:
    limits = gridengine.Limits.from_category("-l h_rt=5,h_vmem=1G -pe smp 2", slots=2)
    assert (limits.walltime_s, limits.memory_bytes) == (5, 2 * 2**30)
    assert gridengine.flush_seconds("reporting_params  accounting=true \\\n"
                                    "   flush_time=00:00:01 joblog=false\n") == 1.0
    assert gridengine.flush_seconds("reporting_params accounting_flush_time=00:01:00 "
                                    "flush_time=00:00:15") == 60.0
    assert gridengine.flush_seconds("") == 15.0


def test_resource_options() -> None:
    job = EngineJob("p", ["true"], queue="long.q",
                    parallel_job_info={"nodes_number": 2, "cpu_per_node": 2},
                    resources={"memory_mb": 1000, "walltime_s": 90})
    notes: list[str] = []
    assert gridengine.resource_options(job, "mpi", "h_vmem", notes) == [
        "-q", "long.q", "-pe", "mpi", "4", "-l", "h_rt=90,h_vmem=250M"]
    assert notes == []  # 1000 MB over 4 slots: no rounding
    job.resources["memory_mb"] = 1001
    assert gridengine.resource_options(job, "mpi", "h_vmem", notes)[-1] == "h_rt=90,h_vmem=251M"
    assert notes == ["memory_mb 1001 rounded up to 251 MB a slot x 4 slots (h_vmem is per slot)"]
    assert gridengine.resource_options(EngineJob("s", ["true"]), "smp", "h_vmem") == []


@pytest.mark.parametrize(("text", "seconds"), [
    ("1-02:03:04", 93784.0), ("02:03:04", 7384.0), ("03:04", 184.0), ("4", 4.0),
    ("1.010s", 1.01), ("00:00:01.500", 1.5), ("x", None), ("", None), (None, None)])
def test_parse_duration(text: str | None, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [
    ("219816K", 219816 * 1024), ("1.5G", 1.5 * 1024**3), ("1.711MB", 1794114),
    ("13530kb", 13530 * 1024), ("2gb", 2 * 1024**3), ("0.000B", 0), ("123", 123),
    ("x", None), ("", None)])
def test_parse_size(text: str, size: float | None) -> None:
    assert parse_size(text) == size
    if size is not None and text.isdigit():
        assert parse_size(text, unit=1024) == size * 1024


def test_array_tasks_in_qstat_xml_and_qacct() -> None:
    """An array's tasks are ``NUMBER.TASK``: the running one's own line, the pending
    ones' range; qacct's records by ``taskid``."""
    jobs = gridengine.parse_qstat_xml((DATA / "qstat-array.xml").read_text())
    assert jobs["1919.1"] == ("r", "jbarrx")
    assert [jobs[f"1919.{task}"] for task in (2, 3, 4)] == [("qw", "jbarrx")] * 3
    assert "1919.5" not in jobs and jobs["1919"][1] == "jbarrx"  # the array, by name
    assert gridengine.task_ids("3,5-9:2") == [3, 5, 7, 9]
    assert gridengine.accounting_query(["1823.2", "1823.3"]) == ["qacct", "-j", "1823"]
    records = gridengine.accounting_records((DATA / "qacct-array.txt").read_text(),
                                            ["1823.1", "1823.2", "1823.3", "1823"])
    assert sorted(records) == ["1823.1", "1823.2"]  # 3: deleted while pending, no record
    assert [exit_info_from_accounting(records[f"1823.{task}"], killed=False)[:2]
            for task in (1, 2)] == [(constants.FINISHED_REGULARLY, 1),
                                    (constants.FINISHED_REGULARLY, 2)]
