"""local_basic: the conformance kit plus what is specific to the local machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from jobbridge import constants
from jobbridge.configuration import Configuration
from jobbridge.errors import ConfigurationError
from jobbridge.model import EngineJob
from jobbridge.scheduler import Scheduler, build_scheduler
from jobbridge.schedulers import memory_limits
from jobbridge.schedulers.local_basic import ConfiguredLocalScheduler, LocalScheduler
from jobbridge.testing import SchedulerConformance, run_to_end, wait_for_status
from systems import unavailable


class TestLocalConformance(SchedulerConformance):
    job_timeout = 30.0

    def make_scheduler(self, tmp_path: Path) -> Scheduler:
        return LocalScheduler(proc_nb=2)


@pytest.fixture
def local() -> Iterator[LocalScheduler]:
    scheduler = LocalScheduler(proc_nb=2)
    yield scheduler
    scheduler.close()


def test_configured_from_resource_options() -> None:
    config = Configuration.from_dict("here", {"scheduler_type": "local_basic", "CPU_NB": "3",
                                              "max_cpu_nb": 2, "scheduler_interval": "0.1"})
    scheduler = build_scheduler("local_basic", config)
    assert isinstance(scheduler, ConfiguredLocalScheduler)
    assert scheduler.slots == 2
    assert scheduler.interval == 0.1


def test_cpu_slots_limit_concurrency(local: LocalScheduler, tmp_path: Path) -> None:
    """Two slots: three 1-s jobs need two rounds; a 2-cpu job runs alone."""
    log = tmp_path / "log"
    jobs = [EngineJob(str(i), ["sh", "-c", f"echo start >> {log}; sleep 0.5; echo end >> {log}"])
            for i in range(3)]
    results = run_to_end(local, jobs, timeout=30)
    assert all(status == constants.DONE for status, _ in results)
    lines = log.read_text().split()
    assert lines[:2] == ["start", "start"]  # two at once, then the third
    assert lines[2] == "end"


def test_higher_priority_starts_first(tmp_path: Path) -> None:
    scheduler = LocalScheduler(proc_nb=1)
    try:
        order = tmp_path / "order"
        blocker = EngineJob("block", ["sleep", "0.3"])
        low = EngineJob("low", ["sh", "-c", f"echo low >> {order}"], priority=1)
        high = EngineJob("high", ["sh", "-c", f"echo high >> {order}"], priority=10)
        run_to_end(scheduler, [blocker, low, high], timeout=30)
        assert order.read_text().split() == ["high", "low"]
    finally:
        scheduler.close()


def test_parallel_job_takes_its_cpus(local: LocalScheduler, tmp_path: Path) -> None:
    log = tmp_path / "log"
    wide = EngineJob("wide", ["sh", "-c", f"echo wide >> {log}; sleep 0.4; echo wide-end >> {log}"],
                     parallel_job_info={"config_name": "native", "nodes_number": 1,
                                        "cpu_per_node": 2})
    narrow = EngineJob("narrow", ["sh", "-c", f"echo narrow >> {log}"])
    run_to_end(local, [wide, narrow], timeout=30)
    assert log.read_text().split() == ["wide", "wide-end", "narrow"]


def test_end_wakes_the_caller_at_once(local: LocalScheduler) -> None:
    woke: list[float] = []
    local.set_change_notifier(lambda *_: woke.append(time.monotonic()))
    [job_id] = local.job_submission([EngineJob("quick", ["true"])])
    assert job_id is not None
    assert local.wait_for([job_id], timeout=10)
    assert woke, "the scheduler must notify the engine when a job ends"


def test_resource_usage_reports_cpu_and_memory(local: LocalScheduler) -> None:
    burn = EngineJob("burn", ["python3", "-c",
                              "b = bytearray(60 * 2**20); x = sum(range(3 * 10**7))"])
    [(status, info)] = run_to_end(local, [burn], timeout=60)
    assert status == constants.DONE
    usage = dict(item.split("=") for item in str(info[3]).split())
    assert int(usage["mem"].removesuffix("kb")) > 60 * 1024
    assert {"cput", "walltime", "cpupercent", "ncpus"} <= set(usage)  # soma-workflow's items
    # and exact seconds, which a fast CPU does not round to zero
    assert 0 < float(usage["cpu_s"]) <= float(usage["wall_s"]) * 2


def test_killing_a_queued_job_reports_aborted(tmp_path: Path) -> None:
    scheduler = LocalScheduler(proc_nb=1)
    try:
        ids = scheduler.job_submission([EngineJob("busy", ["sleep", "5"]),
                                        EngineJob("waiting", ["true"])])
        assert None not in ids
        busy, waiting = str(ids[0]), str(ids[1])
        assert scheduler.get_job_status(waiting) == constants.QUEUED_ACTIVE
        scheduler.kill_job(waiting)
        scheduler.kill_job(busy)
        wait_for_status(scheduler, [busy, waiting], timeout=10)
        assert scheduler.get_job_exit_info(waiting)[0] in (constants.EXIT_ABORTED,
                                                          constants.USER_KILLED)
        assert scheduler.get_job_exit_info(busy)[0] == constants.USER_KILLED
    finally:
        scheduler.close()


def test_container_command_wraps_the_job(tmp_path: Path) -> None:
    config = Configuration.from_dict(
        "box", {"container_command": ["env", "IN_CONTAINER=yes", "{#command}"]})
    scheduler = ConfiguredLocalScheduler(config)
    try:
        out = tmp_path / "out"
        job = EngineJob("c", ["sh", "-c", "echo $IN_CONTAINER"], stdout_file=str(out))
        [(status, _)] = run_to_end(scheduler, [job], timeout=30)
        assert status == constants.DONE
        assert out.read_text() == "yes\n"
    finally:
        scheduler.close()


def test_jobs_survive_their_scheduler_and_a_new_one_reads_their_end(tmp_path: Path) -> None:
    """What engine resume rests on: a new scheduler instance re-attaches by id."""
    first = LocalScheduler(proc_nb=2)
    out = tmp_path / "out"
    script = f"sleep 1; echo done > {out}; exit 4"
    [job_id] = first.job_submission([EngineJob("long", ["sh", "-c", script])])
    assert job_id is not None
    wait_for_status(first, [job_id], {constants.RUNNING}, timeout=10)
    first.close()  # as if the engine died: the runner keeps the running job
    second = LocalScheduler(proc_nb=2)
    try:
        assert second.get_job_status(job_id) == constants.RUNNING
        wait_for_status(second, [job_id], timeout=10)
        info = second.get_job_exit_info(job_id)
        assert (info[0], info[1]) == (constants.FINISHED_REGULARLY, 4)
        assert out.read_text() == "done\n"
    finally:
        second.close()


def test_runner_drops_queued_jobs_when_its_engine_dies() -> None:
    """Queued jobs never started: a new engine may safely submit them again."""
    first = LocalScheduler(proc_nb=1)
    ids = first.job_submission([EngineJob("busy", ["sleep", "1"]), EngineJob("queued", ["true"])])
    first.close()
    second = LocalScheduler(proc_nb=1)
    try:
        statuses = wait_for_status(second, [str(ids[1])], {constants.NOT_SUBMITTED}, timeout=10)
        assert statuses[str(ids[1])] == constants.NOT_SUBMITTED
    finally:
        second.close()


def test_state_files_are_private(local: LocalScheduler) -> None:
    [job_id] = local.job_submission([EngineJob("p", ["true"])])
    wait_for_status(local, [str(job_id)], timeout=10)
    assert os.stat(local.state_dir).st_mode & 0o077 == 0
    for path in local.state_dir.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


def test_a_crashed_runner_fails_its_running_jobs_and_a_new_one_takes_over(tmp_path: Path
                                                                          ) -> None:
    import signal

    scheduler = LocalScheduler(proc_nb=1)
    try:
        ids = scheduler.job_submission([EngineJob("running", ["sleep", "30.0173"]),
                                        EngineJob("queued", ["true"])])
        running, queued = str(ids[0]), str(ids[1])
        wait_for_status(scheduler, [running], {constants.RUNNING}, timeout=10)
        assert scheduler._runner is not None
        os.kill(scheduler._runner.pid, signal.SIGKILL)
        statuses = wait_for_status(scheduler, [running, queued],
                                   {constants.FAILED, constants.NOT_SUBMITTED}, timeout=10)
        assert statuses == {running: constants.FAILED, queued: constants.NOT_SUBMITTED}
        info = scheduler.get_job_exit_info(running)
        assert info[0] == constants.EXIT_UNDETERMINED
        assert "runner died" in str(getattr(info, "reason", ""))
        [again] = scheduler.job_submission([EngineJob("again", ["true"])])
        assert wait_for_status(scheduler, [str(again)], timeout=10)[str(again)] == constants.DONE
    finally:
        scheduler.close()
        subprocess.run(["pkill", "-f", "^sleep 30.0173$"], check=False)


def test_an_unusable_resource_fails_its_workflow_not_the_engine(tmp_path: Path) -> None:
    from jobbridge.configuration import Configuration
    from jobbridge.controller import WorkflowController
    from jobbridge.model import parse_workflow

    controller = WorkflowController()
    broken = controller.store.add_workflow(
        parse_workflow({"jobs": [{"id": "x", "command": ["true"]}]}),
        Configuration.from_dict("gone", {"scheduler_type": "no-such-scheduler"}))
    fine = controller.submit({"jobs": [{"id": "y", "command": ["true"]}]})
    assert controller.wait(fine, timeout=30)["jobs"][0]["status"] == constants.DONE
    job = controller.wait(str(broken), timeout=30)["jobs"][0]
    assert job["status"] == constants.FAILED
    assert "no-such-scheduler" in job["exit_reason"]


def test_create_process_starts_the_job_as_a_child(tmp_path: Path) -> None:
    """The seed's ``LocalScheduler.create_process``: argv without a shell, env merged
    over ours, working directory and files; a Popen the caller waits on."""
    job = EngineJob("p", ["sh", "-c", 'echo "$1 $JB_X $(pwd)"; echo oops >&2; exit 3', "sh",
                          "$(not run)"],
                    env={"JB_X": "x y"}, working_directory=str(tmp_path),
                    stdout_file=str(tmp_path / "out"), stderr_file=str(tmp_path / "err"))
    process = LocalScheduler.create_process(job)
    assert process.wait(timeout=30) == 3
    assert (tmp_path / "out").read_text() == f"$(not run) x y {tmp_path}\n"
    assert (tmp_path / "err").read_text() == "oops\n"


# --- resources enforced: walltime, memory; wrong paths named ----------------------------------
ALLOCATE_400_MB = [sys.executable, "-c", "b = bytearray(400 * 2**20); print(len(b))"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_walltime_kills_the_job_tree_and_says_timeout(local: LocalScheduler, tmp_path: Path
                                                      ) -> None:
    """walltime_s: 2 on a 10-s job: failed within a few seconds, reason TIMEOUT as on
    Slurm, and the job's own child process is gone too."""
    pid_file = tmp_path / "pid"
    job = EngineJob("long", ["sh", "-c", f"sleep 10 & echo $! > {pid_file}; wait"],
                    resources={"walltime_s": 2})
    started = time.monotonic()
    [(status, info)] = run_to_end(local, [job], timeout=30)
    elapsed = time.monotonic() - started
    assert status == constants.FAILED
    assert info.exit_status == constants.EXIT_ABORTED
    assert str(info.reason).startswith("TIMEOUT: "), info
    assert "walltime_s=2" in str(info.reason)
    assert 1.5 < elapsed < 8, elapsed
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while not _gone(child):
        assert time.monotonic() < deadline, f"the job's child {child} still runs"
        time.sleep(0.05)


def test_walltime_leaves_a_quicker_job_alone(local: LocalScheduler) -> None:
    [(status, info)] = run_to_end(
        local, [EngineJob("quick", ["sleep", "0.2"], resources={"walltime_s": 5})], timeout=30)
    assert (status, info.reason) == (constants.DONE, None)


@pytest.mark.parametrize("enforce", ["auto", "cgroup", "rlimit"])
def test_memory_limit_ends_a_greedy_job_out_of_memory(enforce: str, tmp_path: Path) -> None:
    """memory_mb: 100 on a job allocating 400 MB: failed, OUT_OF_MEMORY; a job within
    its limit is untouched. ``enforce_memory`` picks the mechanism (auto: a cgroup
    when this process may create one, else RLIMIT_AS)."""
    if enforce == "cgroup" and (why := memory_limits.cgroup_unusable()):
        unavailable(f"no cgroup can be created here: {why}")
    scheduler = build_scheduler("local_basic", Configuration.from_dict(
        "here", {"cpu_nb": 2, "enforce_memory": enforce}))
    try:
        greedy = EngineJob("greedy", ALLOCATE_400_MB, resources={"memory_mb": 100},
                           stderr_file=str(tmp_path / "greedy.err"))
        modest = EngineJob("modest", ALLOCATE_400_MB, resources={"memory_mb": 1000},
                           stdout_file=str(tmp_path / "modest.out"))
        [(status, info), (modest_status, _)] = run_to_end(scheduler, [greedy, modest],
                                                          timeout=60)
        assert status == constants.FAILED
        assert info.exit_status == constants.EXIT_ABORTED
        assert str(info.reason).startswith("OUT_OF_MEMORY: "), info
        assert "memory_mb=100" in str(info.reason)
        assert modest_status == constants.DONE
        assert (tmp_path / "modest.out").read_text() == f"{400 * 2**20}\n"
    finally:
        scheduler.close()


def test_an_unknown_enforce_memory_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="enforce_memory = 'sometimes'"):
        build_scheduler("local_basic", Configuration.from_dict(
            "here", {"enforce_memory": "sometimes"}))


@pytest.mark.parametrize("key", ["stdout_file", "stderr_file", "stdin", "working_directory"])
@pytest.mark.parametrize("spawn", ["posix_spawn", "popen"])
def test_a_wrong_path_is_named_with_its_key(local: LocalScheduler, tmp_path: Path, key: str,
                                            spawn: str) -> None:
    """A missing folder or file is reported as such, not as a missing program (both
    ways of starting a job: posix_spawn, and Popen when env changes PATH)."""
    missing = str(tmp_path / "nodir" / ("in.txt" if key == "stdin" else "out.txt"))
    if key == "working_directory":
        missing = str(tmp_path / "nodir")
    env = {"PATH": f"/nowhere:{os.environ['PATH']}"} if spawn == "popen" else {}
    job = EngineJob("p", ["echo", "hi"], env=env, **{key: missing})  # type: ignore[arg-type]
    [(status, info)] = run_to_end(local, [job], timeout=30)
    assert status == constants.FAILED
    verb = "enter" if key == "working_directory" else "open"
    assert info.reason == f"{key}: cannot {verb} {missing}: No such file or directory", info
