"""PBS Pro / OpenPBS and Torque: the ``pbspro`` scheduler, driving qsub, qstat and qdel.

The seed's PBSProScheduler, on the shared :class:`.BatchScheduler` base (safe
scripts, bulk polling, retries, the job wrapper's exit file). What is PBS's own:

- **flavour**: ``qstat --version`` tells PBS Pro (``pbs_version = X``: status by
  ``qstat -E -t -x -f -F json``) from Torque (``Version: X``: ``qstat -x`` XML);
  output it does not recognize (Slurm's Torque wrappers print their usage) means
  the ``qstat -f`` text every flavour prints. Output that does not parse (PBS's
  known invalid-JSON bugs, Torque's unescaped XML) drops to that text format;
- **one query per cycle**: every tracked id goes to one ``qstat`` call; its exit
  status 153 (some ids unknown) still carries the others' answers. On PBS Pro
  that call needs ``-E`` (one batch request): without it a real server prints
  only the FIRST job of ``-F json ID1 ID2 ...``. ``-E`` drops unknown ids
  silently, so a job missing from the answer is simply asked about again.
  Releases before 18 (no ``-E``, no JSON; OpenPBS 18.1 was the first with both)
  get ``qstat -x -f`` text, as does a qstat that refuses ``-E`` with its usage;
- **no history**: a server without ``job_history_enable`` (PBS's default) answers
  nothing at all to ``-x``, only "not configured to maintain job history": then
  ``-x`` goes, and ended jobs, which vanish at once, end by their exit files;
- **exit rules**: :mod:`.pbs_output` (signals, negative ``JOB_EXEC_*`` codes,
  ``resources_used``). The wrapper's exit file, when there is one, gives the exact
  code: Slurm's Torque wrappers print no ``exit_status`` at all;
- **commands elsewhere**: ``pbs_bin_dir`` names the folder of qsub/qstat/qdel;
  ``pbs_host_command`` (or :meth:`out_of_container_command`) reaches them on the
  host from inside a container.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .. import constants
from ..configuration import Configuration, configured_values, private_dir
from ..errors import ConfigurationError, JobbridgeError
from ..model import PARALLEL_CONFIGS, EngineJob
from ..scheduler import ExitInfo
from . import pbs_output
from .batch import (
    ArraySupport,
    BatchScheduler,
    CommandError,
    CommandResult,
    JobRecord,
    SystemKill,
)
from .common import round_up
from .process import wrap_in_container

log = logging.getLogger(__name__)

#: qstat exit statuses that still answer: 153 = PBSE_UNKJOBID & 0xFF (some ids unknown).
QSTAT_ANSWERED = (0, 153)
#: qstat's exit status for options it does not know (it prints its usage).
QSTAT_USAGE = 2
#: What qstat and qselect say, and nothing else, to ``-x`` where no history is kept.
NO_HISTORY = "not configured to maintain job history"
#: The first PBS Pro release whose qstat has ``-E`` and ``-F json`` (both came to
#: OpenPBS between 14.1.2 and 18.1.1, -E first).
EXPRESS_SINCE = 18
#: First words of Grid Engine's ``qstat --version`` (it ships commands of the same names).
_GRID_ENGINE = re.compile(r"(SGE|OGS/GE|GE|UGE|Univa Grid Engine|Altair Grid Engine) \d")
#: What the shell of Slurm's Torque wrappers (``qstat`` printing no version) reads in a
#: path, and sbatch's ``%`` patterns.
_SHELL_READS = re.compile(r"[^\w./+,:@=-]")
#: qsub's option holding a job from its submission (until qrls).
HOLD = "-h"
#: Where a Singularity/Apptainer container shows itself (it shares the host's network).
_CONTAINER_MARKS = ("/.singularity.d", "/.apptainer.d")


#: Torque's ``qsub -t 0-N``: an array ``ID[].server``, elements ``ID[IDX].server``, the
#: index in ``$PBS_ARRAYID``.
TORQUE_ARRAY = ArraySupport(("-t", "{first}-{last}"), "PBS_ARRAYID", element="{id}[{index}]")


class PBSError(JobbridgeError):
    """The PBS commands cannot be used (not found, not answering)."""


class PBSProScheduler(BatchScheduler):
    """Jobs on a PBS Pro, OpenPBS or Torque cluster (or Slurm's Torque wrappers)."""

    name: ClassVar[str] = "pbspro"
    RESERVED_OPTIONS: ClassVar[Mapping[str, str]] = {
        "-N": "jobbridge names the job itself (the workflow's job id and the tag that finds "
              "it again after an engine crash)"}
    CONFIG_KEYS = BatchScheduler.CONFIG_KEYS | {
        "pbs_bin_dir", "pbs_host_command", "tmp_file_path",
        *(f"parallel_{name.lower()}" for name in PARALLEL_CONFIGS)}
    usage_source: ClassVar[str] = "PBS resources_used"
    #: qdel: SIGTERM to every process of the job's session, SIGKILL kill_delay later.
    KILL: ClassVar[SystemKill] = SystemKill("session", warning=signal.SIGTERM)
    #: PBS Pro's ``qsub -J 0-N`` (an array ``ID[].server``, elements ``ID[IDX].server``);
    #: Torque's is :data:`TORQUE_ARRAY`; Slurm's Torque wrappers submit each job alone.
    #: A job held at submission (``-h``) goes alone: qrls refuses a subjob ("Invalid
    #: request"), so its user could only release all its array's elements at once.
    ARRAY: ClassVar[ArraySupport | None] = ArraySupport(
        ("-J", "{first}-{last}"), "PBS_ARRAY_INDEX", element="{id}[{index}]",
        alone=frozenset({HOLD}))
    #: Every PBS Pro and Torque ``job_state`` letter. F, C and X are ends: DONE or
    #: FAILED is then decided from the exit information.
    STATES: ClassVar[Mapping[str, str]] = {
        "B": constants.RUNNING,  # PBS Pro array: at least one subjob has begun
        "C": constants.DONE,  # Torque: completed after having run (or deleted)
        "E": constants.RUNNING,  # exiting after having run: files still being staged
        "F": constants.DONE,  # PBS Pro: finished, failed or deleted (seen with -x)
        "H": constants.USER_SYSTEM_ON_HOLD,  # held; Hold_Types tells by whom
        "M": constants.UNDETERMINED,  # PBS Pro: moved to another server, out of sight
        "Q": constants.QUEUED_ACTIVE,
        "R": constants.RUNNING,
        "S": constants.SYSTEM_SUSPENDED,  # suspended by PBS (preemption, qsig)
        "T": constants.QUEUED_ACTIVE,  # being routed or moved
        # PBS Pro: cycle-harvesting host busy; Slurm's wrappers: any other state
        "U": constants.SYSTEM_SUSPENDED,
        "W": constants.QUEUED_ACTIVE,  # waiting for its start time (qsub -a)
        "X": constants.DONE,  # PBS Pro subjob: finished or deleted
    }

    def __init__(self, parallel_job_submission_info: Mapping[str, Sequence[str]] | None,
                 tmp_file_path: str | os.PathLike[str] | None = None,
                 configured_native_spec: str | Sequence[str] | None = None, *,
                 pbs_bin_dir: str | None = None, host_command: Sequence[str] = (),
                 **options: Any) -> None:
        """``parallel_job_submission_info``: extra qsub options per parallel
        ``config_name`` (``native``, ``MPI``, ``OpenMP``); ``tmp_file_path``: folder
        of :meth:`submit_simple_test_job`'s files; ``configured_native_spec``: qsub
        options of every job (a job's own come after, so they win); ``options``:
        those of :class:`.BatchScheduler`."""
        native = (shlex.split(configured_native_spec) if isinstance(configured_native_spec, str)
                  else list(configured_native_spec or ()))
        super().__init__(native_specification=native, **options)
        self.parallel_job_submission_info = {
            key: list(value) for key, value in (parallel_job_submission_info or {}).items()}
        self.tmp_file_path = Path(tmp_file_path) if tmp_file_path else self.state_dir / "test"
        self.pbs_bin_dir = pbs_bin_dir
        self.host_command = list(host_command) or self.out_of_container_command(
            self._program("qstat"))
        self.implementation, self.version, self.status_format = pbs_output.TORQUE, "", "text"
        #: PBS Pro's qstat takes ``-E``: all listed jobs in one batch request
        self.express = False
        #: the PBS Pro server keeps ended jobs: ``-x`` shows them
        self.history = True
        self.setup_pbs_variant()
        if self.implementation == pbs_output.TORQUE:  # Slurm's wrappers (no version):
            # their qsub -t prints no element ids, so each job goes alone
            self.array_support = TORQUE_ARRAY if self.version else None
        self._max_array_size: int | None = None
        if (self.implementation, self.version) == (pbs_output.TORQUE, "") and _SHELL_READS.search(
                str(self.state_dir)):
            raise ConfigurationError(
                f"pbspro: the state folder {self.state_dir} holds characters that Slurm's "
                "Torque wrappers (which run sbatch through a shell) would change: set "
                "JOBBRIDGE_HOME to a folder of letters, digits and ._+,:@=-/ only")

    @classmethod
    def build_scheduler(cls, config: Configuration) -> PBSProScheduler:
        """Keys: ``pbs_bin_dir``, ``pbs_host_command``, ``parallel_native`` /
        ``parallel_mpi`` / ``parallel_openmp``, ``tmp_file_path``,
        ``native_specification``, and the batch base's keys."""
        parallel = {name: config.get_words(f"parallel_{name.lower()}")
                    for name in PARALLEL_CONFIGS if config.get(f"parallel_{name.lower()}")}
        options = cls.options_from_config(config)
        options.pop("native_specification", None)  # given as configured_native_spec
        return cls(parallel, config.get("tmp_file_path"),
                   config.get_words("native_specification"),
                   pbs_bin_dir=config.get("pbs_bin_dir"),
                   host_command=config.get_words("pbs_host_command"), **options)

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """A PBS ``qstat`` must be at hand: on PATH or in a ``pbs_bin_dir`` of the
        configuration file (Grid Engine's, of the same name, does not count), or
        reached through a ``pbs_host_command`` (not tried here)."""
        if configured_values("pbs_host_command"):
            return True, ""
        found = [path for folder in configured_values("pbs_bin_dir")
                 if os.access(path := os.path.join(folder, "qstat"), os.X_OK)]
        found += filter(None, [shutil.which("qstat")])
        if not found:
            return False, ("qstat is not on PATH (set pbs_bin_dir to the folder of PBS's "
                           "commands)")
        for qstat in found:
            try:
                result = subprocess.run([qstat, "--version"], capture_output=True, text=True,
                                        timeout=10, stdin=subprocess.DEVNULL, check=False)
            except (OSError, subprocess.SubprocessError):
                return True, ""  # the scheduler, once built, says what is wrong
            if not _GRID_ENGINE.match(f"{result.stdout}\n{result.stderr}".strip()):
                return True, ""
        return False, (f"{found[0]} is Grid Engine's qstat, not PBS's (set pbs_bin_dir to "
                       "the folder of PBS's commands)")

    # --- flavour and commands --------------------------------------------------------------
    def get_pbs_version(self) -> tuple[str, str]:
        """``(implementation, version)``: ``("pbspro", "2022.1.1...")``, ``("torque",
        "6.1.2")``, or ``("torque", "")`` when qstat does not say (Slurm's wrappers)."""
        argv = self.command("qstat", "--version")
        try:
            result = self.run("version", argv, retries=0, check=False)
        except CommandError as error:
            raise PBSError(f"pbspro: cannot run qstat ({error}); set pbs_bin_dir or "
                           "pbs_host_command in the resource's configuration") from None
        text = f"{result.stdout}\n{result.stderr}".strip()
        if _GRID_ENGINE.match(text):  # same command names, other system (e.g. /usr/bin/qstat)
            raise PBSError(f"pbspro: {shlex.join(argv)} is Grid Engine's ({text.splitlines()[0]}),"
                           " not PBS's: set pbs_bin_dir to the folder of PBS's commands")
        return pbs_output.parse_version(text) or (pbs_output.TORQUE, "")

    def setup_pbs_variant(self) -> None:
        """Pick the status format from the flavour: PBS Pro JSON with ``-E`` (text
        before release 18), Torque XML, else text."""
        self.implementation, self.version = self.get_pbs_version()
        if self.implementation == pbs_output.PBSPRO:
            major = pbs_output.major_version(self.version)
            self.express = major is None or major >= EXPRESS_SINCE
            self.status_format = "json" if self.express else "text"
        else:
            self.status_format = "xml" if self.version else "text"
        log.info("pbspro: %s %s, status by qstat %s%s", self.implementation,
                 self.version or "(version unknown)", self.status_format,
                 " -E" if self.express else "")

    @staticmethod
    def out_of_container_command(qstat: str = "qstat") -> list[str]:
        """argv prefix reaching the host's PBS commands from inside a container (a
        staticmethod, as the seed documents it; ``qstat``: the command to look for).

        Inside Singularity/Apptainer (which shares the host's network) without a
        reachable qstat: ``ssh -o BatchMode=yes localhost``, back to the host that
        runs the container. Other containers (Docker, Podman) need
        ``pbs_host_command`` set.
        """
        in_container = any(os.path.exists(mark) for mark in _CONTAINER_MARKS) or any(
            name in os.environ for name in ("SINGULARITY_CONTAINER", "APPTAINER_CONTAINER"))
        if not in_container or shutil.which(qstat):
            return []
        return ["ssh", "-o", "BatchMode=yes", "localhost"]

    def _program(self, name: str) -> str:
        return os.path.join(self.pbs_bin_dir, name) if self.pbs_bin_dir else name

    def command(self, name: str, *args: str) -> list[str]:
        """argv of a PBS command, through the host command if any (ssh gets one
        shell-quoted string, since the remote shell splits it again)."""
        argv = [self._program(name), *args]
        if not self.host_command:
            return argv
        if os.path.basename(self.host_command[0]) == "ssh":
            return [*self.host_command, shlex.join(argv)]
        return wrap_in_container(argv, self.host_command)

    def is_transient(self, result: CommandResult) -> bool:
        # PBS clients report a server connection dropped mid-request as "End of File"
        return super().is_transient(result) or "end of file" in result.stderr.lower()

    # --- submission ------------------------------------------------------------------------
    def submit_argv(self, job: EngineJob, script: Path, name: str) -> list[str]:
        argv = ["-N", name, "-j", "oe", "-o", str(self.batch_output_path(name))]
        if job.queue:
            argv += ["-q", job.queue]
        argv += self.resource_args(job)
        argv += [*self.native_specification, *job.native_args(), str(script)]
        return self.command("qsub", *argv)

    def resource_args(self, job: EngineJob, notes: list[str] | None = None) -> list[str]:
        """qsub ``-l`` options: PBS Pro ``select=N:ncpus=C[:mem=Mmb]`` per node (the
        memory divided among the nodes, rounded up: said in ``notes``) and
        ``walltime``; Torque ``nodes=N:ppn=C,mem=..,walltime=..`` in one ``-l``
        (Slurm's wrappers keep only the last ``-l``)."""
        parallel = job.parallel_job_info
        nodes = int(parallel.get("nodes_number", 1)) if parallel else 1
        cpus = int(parallel.get("cpu_per_node", 1)) if parallel else job.resources.get("cpus")
        memory, walltime = job.resources.get("memory_mb"), job.resources.get("walltime_s")
        config_name = str(parallel.get("config_name", "native")) if parallel else ""
        extra = self.parallel_job_submission_info.get(config_name, []) if parallel else []
        hours, rest = divmod(walltime or 0, 3600)
        walltime_text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
        if self.implementation == pbs_output.PBSPRO:
            argv = []
            if cpus or memory:
                chunk = f"select={nodes}:ncpus={cpus or 1}"
                chunk += {"MPI": f":mpiprocs={cpus}", "OpenMP": f":ompthreads={cpus}"}.get(
                    config_name, "")
                if memory:
                    per_node = round_up(memory, nodes, notes, f"memory_mb {memory}",
                                        f"{{0}} MB a node x {nodes} nodes (select chunks)")
                    chunk += f":mem={per_node}mb"
                argv += ["-l", chunk]
            if walltime:
                argv += ["-l", f"walltime={walltime_text}"]
            return argv + extra
        items = [f"nodes={nodes}:ppn={cpus}"] if cpus else []
        items += [f"mem={memory}mb"] if memory else []
        items += [f"walltime={walltime_text}"] if walltime else []
        return (["-l", ",".join(items)] if items else []) + extra

    def array_element_id(self, array_id: str, index: int) -> str:
        """``12[].server`` -> ``12[3].server``."""
        head, brackets, tail = array_id.partition("[]")
        return f"{head}[{index}]{tail}" if brackets else super().array_element_id(array_id, index)

    def array_chunk(self) -> int:
        """The server's ``max_array_size`` (Torque: ``max_job_array_size``; ``qstat -B
        -f``), read once."""
        if self._max_array_size is None:
            try:
                text = self.run("config", self.command("qstat", "-B", "-f"), retries=0).stdout
            except CommandError as error:
                log.info("pbspro: max_array_size unknown: %s", error)
                return super().array_chunk()
            found = re.search(r"^\s*max_(?:job_)?array_size\s*=\s*(\d+)", text, re.MULTILINE)
            self._max_array_size = int(found.group(1)) if found else super().array_chunk()
        return self._max_array_size

    def cancel_argv(self, scheduler_job_id: str) -> list[str]:
        return self.command("qdel", scheduler_job_id)

    def cancel_many_argv(self, scheduler_job_ids: Sequence[str]) -> list[str]:
        return self.command("qdel", *scheduler_job_ids)

    def limit_notes(self, job: EngineJob) -> list[str]:
        notes: list[str] = []
        self.resource_args(job, notes)
        return notes

    # --- status ----------------------------------------------------------------------------
    def status_argv(self, scheduler_job_ids: Sequence[str]) -> list[str]:
        if self.implementation == pbs_output.PBSPRO:
            options = ["-E", "-t"] if self.express else []  # -t: subjobs of arrays too
            options += [*self._history_option(), "-f",
                        *(["-F", "json"] if self.status_format == "json" else [])]
        else:  # Torque: -t, arrays' subjobs too
            options = ["-x", "-t"] if self.status_format == "xml" else ["-f"]
        return self.command("qstat", *options, *scheduler_job_ids)

    def parse_jobs(self, stdout: str) -> dict[str, dict[str, Any]]:
        """Each job's attributes, in PBS Pro's JSON shape, from the current format."""
        parse = {"json": pbs_output.parse_json, "xml": pbs_output.parse_xml,
                 "text": pbs_output.parse_text}[self.status_format]
        return parse(stdout)

    def query_status(self, scheduler_job_ids: Sequence[str]) -> dict[str, JobRecord]:
        jobs = self._qstat(scheduler_job_ids)
        return {job_id: pbs_output.job_record(attrs, self.implementation)
                for job_id, attrs in jobs.items()}

    def _qstat(self, scheduler_job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """One qstat call; answers keyed by the ids asked for (a server may print
        ``12.server.domain`` for ``12.server``: the number then decides)."""
        result = self.run("status", self.status_argv(scheduler_job_ids),
                          ok_codes=(*QSTAT_ANSWERED, QSTAT_USAGE))
        if result.returncode == QSTAT_USAGE:
            if not (self.express and "usage" in result.stderr.lower()):
                message = (result.stderr.strip() or "exit status 2").splitlines()[-1]
                raise CommandError(f"qstat: {message}", transient=False)
            log.warning("pbspro: qstat refuses -E (PBS Pro %s): using qstat -x -f text, "
                        "one connection per job", self.version or "of unknown version")
            self.express, self.status_format = False, "text"
            return self._qstat(scheduler_job_ids)
        if self._history_refused(result):
            return self._qstat(scheduler_job_ids)
        try:
            jobs = self.parse_jobs(result.stdout)
        except ValueError as error:
            if self.status_format == "text":
                raise CommandError(f"qstat: unreadable output: {error}", transient=False
                                   ) from None
            log.warning("pbspro: qstat %s output unreadable (%s): using qstat -f text from now",
                        self.status_format, error)
            self.status_format = "text"
            return self._qstat(scheduler_job_ids)
        by_number = {job_id.partition(".")[0]: attrs for job_id, attrs in jobs.items()}
        answers = {}
        for job_id in scheduler_job_ids:
            attrs = jobs.get(job_id) or by_number.get(job_id.partition(".")[0])
            if attrs is not None:
                answers[job_id] = attrs
        return answers

    def submitted_status(self, job: EngineJob) -> str:
        """Held from the start when its options hold it (``qsub -h``), not shown
        queued until the first qstat (``scheduler_interval`` later)."""
        if HOLD in (*self.native_specification, *job.native_args()):
            return constants.USER_SYSTEM_ON_HOLD
        return super().submitted_status(job)

    def answers_ended_jobs(self) -> bool:
        """PBS Pro's ``-x`` shows every ended or deleted job (``F``, ``X``): there, a
        job missing from an ``-E`` answer, which drops ids silently, is not gone."""
        return self.implementation == pbs_output.PBSPRO and self.history

    def find_by_name(self, names: Sequence[str]) -> dict[str, str]:
        if self.implementation == pbs_output.PBSPRO:  # qselect, not a dump of all history
            found = {}
            for name in names:
                ids = self._qselect("-N", name).split()
                if ids:
                    found[name] = ids[-1]
            return found
        result = self.run("find", self.status_argv([]), ok_codes=QSTAT_ANSWERED)
        wanted = set(names)
        return {str(attrs.get("Job_Name")): job_id
                for job_id, attrs in self.parse_jobs(result.stdout).items()
                if attrs.get("Job_Name") in wanted}

    def _qselect(self, *args: str) -> str:
        result = self.run("find", self.command("qselect", *self._history_option(), *args))
        return self._qselect(*args) if self._history_refused(result) else result.stdout

    def _history_option(self) -> list[str]:
        return ["-x"] if self.history else []

    def _history_refused(self, result: CommandResult) -> bool:
        """Whether the server refused ``-x`` (it keeps no job history): then ask
        again without it, from now on."""
        if not (self.history and NO_HISTORY in result.stderr):
            return False
        log.info("pbspro: the server keeps no job history: asking qstat without -x")
        self.history = False
        return True

    # --- the seed's extras -----------------------------------------------------------------
    def get_job_extended_status(self, scheduler_job_id: str) -> dict[str, Any]:
        """The job's full qstat attributes as a dict (PBS Pro JSON shape); ``{}`` if
        the server does not know the id (any more)."""
        return self._qstat([scheduler_job_id]).get(scheduler_job_id, {})

    def wait_job(self, job_id: str, timeout: float = 0, poll_interval: float = 0.3) -> str:
        """Wait until the job ends (``timeout`` 0: forever); its final JOB_STATUS."""
        deadline = time.monotonic() + timeout if timeout > 0 else math.inf
        while (status := self.get_job_status(job_id)) not in constants.ENDED_JOB_STATUS:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pbspro: job {job_id} still {status} after {timeout:g} s")
            time.sleep(poll_interval)
        return status

    def submit_simple_test_job(self, outstr: str, out_o_file: str, out_e_file: str
                               ) -> ExitInfo:
        """Run ``echo outstr`` with its output in ``out_o_file`` / ``out_e_file``
        (relative to ``tmp_file_path``), wait for its end, return its exit info."""
        private_dir(self.tmp_file_path)
        job = EngineJob("pbs-test", ["echo", outstr], working_directory=str(self.tmp_file_path),
                        stdout_file=str(self.tmp_file_path / out_o_file),
                        stderr_file=str(self.tmp_file_path / out_e_file))
        [job_id] = self.job_submission([job])
        if job_id is None:
            raise PBSError("pbspro: qsub refused the test job (the log says why)")
        self.wait_job(job_id)
        return self.get_job_exit_info(job_id)
