"""FAKE PBS Pro commands (qsub, qstat, qdel, qselect) for jobbridge's tests. Not PBS.

Why: no PBS Pro server can be installed on the test machine, yet the ``pbspro``
scheduler's PBS Pro mode must be run end to end. This fake runs each job for
real, locally (the job script under bash, in its own session, with a PBS-like
environment), so exit codes, signals and files are real; and it answers
``qstat -x -f -F json`` by filling the job record recorded from a real OpenPBS
19.0.0 server (``tests/data/pbs/pbspro-qstat-json-F-1.json``) with the job's
real state. What it imitates of PBS Pro, from ``tests/data/pbs/EXIT_CODES.md``:

- ids ``N.pbs``; finished jobs are ``F`` (substate 92; 93 and ``Exit_status``
  -29 after a walltime kill; 91 and no ``Exit_status`` when deleted queued);
  ``Exit_status`` is 256 + signal for a job killed by a signal;
- exit statuses: qstat 153 (unknown id; the others still printed), 35 (a
  finished job without ``-x``); qsub 170 (unknown queue), 188 (over limits);
- ``qstat -F json ID1 ID2 ...`` prints only the first job, as a real OpenPBS
  does; with ``-E`` it prints them all and drops unknown ids silently (153 only
  when it knows none of them);
- ``qdel`` sends SIGTERM, then SIGKILL after a kill delay; ``-l walltime`` is
  enforced the same way; ``qsub -h`` holds a job (state H, Hold_Types u) for good;
- openpbs issue #1255: ``Variable_List`` values that look numeric are printed
  unquoted, so ``qsub -v X=005`` makes the JSON invalid (as on real servers).

With ``"flavour": "torque"`` in its config it is a FAKE Torque 6.1.2 instead
(no Torque server can run here either; Slurm's Torque wrappers have no arrays),
shaped by the recorded Torque output (``tests/data/pbs/torque-*``): ``qstat
--version`` says ``Version: 6.1.2``; ``qstat -x`` prints XML like
``torque-qstat-x-xml-mixed-1.xml``, ended jobs ``C`` with ``exit_status`` (256 +
signal, -11 over walltime, 271 deleted before it ran); ``qsub -t 0-N`` makes an
array ``N[].pbs`` whose elements ``N[I].pbs`` (named ``NAME-I``) run with
``PBS_ARRAYID=I``; ``qstat -t`` shows the elements, without it only the array.

Usage: ``fakepbs.py STATE_DIR COMMAND [ARGS...]``; tests install small
``qsub``/``qstat``/``qdel``/``qselect`` scripts that call it with their name.
STATE_DIR/config.json may set ``start_delay`` (seconds a job stays Q),
``kill_delay`` and ``flavour``.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent.parent / "data" / "pbs" / "pbspro-qstat-json-F-1.json"
SERVER = "pbs"
QUEUES = ("workq", "debug")
MAX_NCPUS = 64
VALUED = set("NoejqlAWvapSJrt")  # qsub options that take a value
#: Torque's exit_status for PBS Pro's ends: over walltime (JOB_EXEC_OVERLIMIT_WT)
TORQUE_WALLTIME = -11
#: Torque's exit_status of a job deleted before it ran (tests/data/pbs/EXIT_CODES.md)
TORQUE_NEVER_RAN = 271
_ID = re.compile(r"(\d+)(?:\[(\d*)\])?(\.\S+)?")


class Fail(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Server:
    def __init__(self, home: Path) -> None:
        self.home = home
        (home / "jobs").mkdir(parents=True, exist_ok=True)
        config_file = home / "config.json"
        self.config = json.loads(config_file.read_text()) if config_file.exists() else {}
        self.torque = self.config.get("flavour") == "torque"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.home / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def path(self, job_id: str) -> Path:
        return self.home / "jobs" / f"{job_id.partition('.')[0]}.json"

    def load(self, job_id: str) -> dict[str, Any] | None:
        path = self.path(job_id)
        if not _ID.fullmatch(job_id) or not path.exists():
            return None
        job: dict[str, Any] = json.loads(path.read_text())
        return job

    def save(self, job: dict[str, Any]) -> None:
        job["mtime"] = time.time()
        tmp = self.path(job["id"]).with_suffix(".tmp")
        tmp.write_text(json.dumps(job))
        tmp.replace(self.path(job["id"]))

    def all_jobs(self) -> list[dict[str, Any]]:
        def order(path: Path) -> tuple[int, int]:
            number, index, _ = _ID.fullmatch(path.stem).groups()  # type: ignore[union-attr]
            return int(number), -1 if index is None or index == "" else int(index)

        found = sorted((self.home / "jobs").glob("*.json"), key=order)
        return [json.loads(p.read_text()) for p in found]

    # --- commands -----------------------------------------------------------------------------
    def qsub(self, args: list[str]) -> str:
        options: dict[str, list[str]] = {}
        while args and args[0].startswith("-") and len(args[0]) == 2:
            flag = args.pop(0)[1]
            if flag in VALUED:
                if not args:
                    raise Fail(f"qsub: option requires an argument -- '{flag}'", 2)
                options.setdefault(flag, []).append(args.pop(0))
            elif flag in "Vh":
                options[flag] = []
            else:
                raise Fail(f"qsub: invalid option -- '{flag}'\nusage: qsub [...] script", 2)
        if len(args) != 1:
            raise Fail("usage: qsub [...] script", 2)
        queue = options.get("q", ["workq"])[-1]
        if queue not in QUEUES:
            raise Fail("qsub: Unknown queue", 170)
        resources = parse_resources(options.get("l", []))
        if int(resources.get("ncpus", 1)) > MAX_NCPUS:
            raise Fail("qsub: Job violates queue and/or server resource limits", 188)
        variables = dict(item.partition("=")[::2] for v in options.get("v", [])
                         for item in v.split(","))
        indices: list[int] = []
        if "t" in options:
            if not self.torque:
                raise Fail("qsub: invalid option -- 't'\nusage: qsub [...] script", 2)
            first, _, last = options["t"][-1].partition("-")
            indices = list(range(int(first), int(last or first) + 1))
        with self.locked():
            counter = self.home / "next_id"
            number = int(counter.read_text()) if counter.exists() else 1
            counter.write_text(str(number + 1))
            cwd = Path.cwd()
            name = options.get("N", ["STDIN"])[-1]
            job = {"id": f"{number}.{SERVER}", "name": name, "queue": queue,
                   "script": str(Path(args[0]).resolve()),
                   "out": options.get("o", [f"{cwd}/STDIN.o{number}"])[-1],
                   "join": options.get("j", ["n"])[-1] == "oe",
                   "err": options.get("e", [f"{cwd}/STDIN.e{number}"])[-1],
                   "resources": resources, "variables": variables,
                   "export_all": "V" in options, "workdir": str(cwd),
                   "submit_args": " ".join(sys.argv[3:]),
                   "state": "H" if "h" in options else "Q",
                   "substate": 20 if "h" in options else 10,
                   "hold_types": "u" if "h" in options else "n",
                   "ctime": time.time(), "env": dict(os.environ)}
            if not indices:
                self.save(job)
                self.start(job["id"])
                return str(job["id"])
            array_id = f"{number}[].{SERVER}"
            self.save({**job, "id": array_id, "array_request": options["t"][-1],
                       "elements": [f"{number}[{i}].{SERVER}" for i in indices]})
            for index in indices:
                self.save({**job, "id": f"{number}[{index}].{SERVER}", "name": f"{name}-{index}",
                           "array_index": index,
                           "variables": {**variables, "PBS_ARRAYID": str(index)}})
        for index in indices:
            self.start(f"{number}[{index}].{SERVER}")
        return array_id

    def start(self, job_id: str) -> None:
        """A runner of its own for the job (as a MOM would start it)."""
        subprocess.Popen([sys.executable, __file__, str(self.home), "_run", job_id],
                         start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def qstat(self, args: list[str]) -> tuple[str, str, int]:
        if "--version" in args:
            if self.torque:
                return "Version: 6.1.2\nCommit: 8eaf8f8e4bb21ad1a7e7d0a8d2d4cd1b7a3d2a9c\n", "", 0
            return "pbs_version = 19.0.0\n", "", 0
        if self.torque:
            return self.torque_qstat(args)
        flags = {a for a in args if a.startswith("-")}
        ids = [a for a in args if not a.startswith("-") and a != "json"]
        express = "-E" in flags
        jobs, errors, code = [], [], 0
        for job_id in ids:
            job = self.load(job_id)
            if job is None:
                if not express or (job_id == ids[-1] and not jobs):
                    errors.append(f"qstat: Unknown Job Id {job_id}")
                    code = 153
            elif job["state"] == "F" and "-x" not in flags:
                errors.append(f"qstat: {job_id} Job has finished, use -x or -H to obtain "
                              "historical job information")
                code = 35
            else:
                jobs.append(job)
        if not ids:
            jobs = [j for j in self.all_jobs() if j["state"] != "F" or "-x" in flags]
        if "-F" in flags and not express:
            jobs = jobs[:1]
        records = {job["id"]: self.record(job) for job in jobs}
        if "-F" in flags:
            out = to_json(records)
        else:
            out = "".join(to_text(job_id, record) for job_id, record in records.items())
        return out, "".join(f"{e}\n" for e in errors), code

    def torque_qstat(self, args: list[str]) -> tuple[str, str, int]:
        """Torque's ``qstat [-x] [-t] [IDS]``: XML with ``-x``; arrays summed up
        unless ``-t``; completed jobs stay (as for ``keep_completed``)."""
        ids = [a for a in args if not a.startswith("-")]
        jobs, errors = [], []
        for job_id in ids:
            job = self.load(job_id)
            if job is None:
                errors.append(f"qstat: Unknown Job Id Error {job_id}")
            else:
                jobs.append(job)
        if not ids:
            jobs = [j for j in self.all_jobs() if "-t" in args or "array_index" not in j]
        if "-x" not in args:
            raise Fail("fakepbs: this fake Torque answers qstat -x only", 2)
        data = ET.Element("Data")
        for job in jobs:
            data.append(self.torque_record(job))
        out = ET.tostring(data, encoding="unicode") if jobs else ""
        return out + "\n", "".join(f"{e}\n" for e in errors), 153 if errors else 0

    def torque_record(self, job: dict[str, Any]) -> ET.Element:
        """A ``<Job>`` of Torque's ``qstat -x``, as in torque-qstat-x-xml-mixed-1.xml."""
        user = job["env"].get("USER", "pbsuser")
        state = job["state"]
        items: list[tuple[str, Any]] = [
            ("Job_Id", job["id"]), ("Job_Name", job["name"]),
            ("Job_Owner", f"{user}@{SERVER}"), ("job_state", state), ("queue", job["queue"]),
            ("server", SERVER), ("ctime", int(job["ctime"])), ("mtime", int(job["mtime"])),
            ("Output_Path", f"{SERVER}:{job['out']}"), ("Error_Path", f"{SERVER}:{job['err']}"),
            ("Join_Path", "oe" if job["join"] else "n"), ("Hold_Types", job["hold_types"]),
            ("Resource_List", {"nodes": "1:ppn=1", **{k: v for k, v in job["resources"].items()
                                                      if k != "select"}}),
            ("Variable_List", ",".join(f"{k}={str(v).replace(',', chr(92) + ',')}"
                                       for k, v in {"PBS_O_WORKDIR": job["workdir"],
                                                    **job["variables"]}.items())),
            ("euser", user), ("submit_args", job["submit_args"])]
        if "elements" in job:  # the array: its state from its elements'
            states = {element["state"] for element_id in job["elements"]
                      if (element := self.load(element_id)) is not None}
            state = ("R" if "R" in states else "C" if states <= {"C", "F"} else "Q")
            items[3] = ("job_state", state)
            items.append(("job_array_request", job["array_request"]))
        if "array_index" in job:
            items.append(("job_array_id", job["array_index"]))
        if "stime" in job:
            used = job.get("usage") or {"cput": "00:00:00", "mem": "0kb", "vmem": "0kb",
                                        "walltime": hms(time.time() - job["stime"])}
            items += [("resources_used", {k: used[k] for k in ("cput", "mem", "vmem",
                                                               "walltime")}),
                      ("exec_host", f"{SERVER}/0"), ("session_id", job["pid"]),
                      ("start_time", int(job["stime"])), ("start_count", 1)]
        if state in ("F", "C") and "elements" not in job:
            items[3] = ("job_state", "C")
            exit_status = job.get("exit_status", TORQUE_NEVER_RAN)
            items += [("exit_status", TORQUE_WALLTIME if exit_status == -29 else exit_status),
                      ("comp_time", int(job["mtime"]))]
        record = ET.Element("Job")
        for key, value in items:
            child = ET.SubElement(record, key)
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    ET.SubElement(child, sub).text = str(sub_value)
            else:
                child.text = str(value)
        return record

    def qdel(self, args: list[str]) -> tuple[str, int]:
        errors, code = [], 0
        for job_id in args:
            with self.locked():
                job = self.load(job_id)
                if job is None:
                    errors.append(f"qdel: Unknown Job Id {job_id}")
                    code = 153
                elif job["state"] == "F":
                    errors.append(f"qdel: Job has finished {job_id}")
                    code = 35
                elif job["state"] in ("Q", "H"):
                    job.update(state="F", substate=91, comment="Job deleted before it ran")
                    self.save(job)
                elif not job.get("delete_at"):
                    job["delete_at"] = time.time()
                    self.save(job)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(job["pid"], signal.SIGTERM)
        return "".join(f"{e}\n" for e in errors), code

    def qselect(self, args: list[str]) -> str:
        name = args[args.index("-N") + 1] if "-N" in args else None
        return "".join(f"{j['id']}\n" for j in self.all_jobs()
                       if (name is None or j["name"] == name)
                       and (j["state"] != "F" or "-x" in args))

    def shutdown(self) -> None:
        """Kill every job still running (test teardown)."""
        for job in self.all_jobs():
            for key in ("pid", "runner"):
                if job["state"] != "F" and job.get(key):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(job[key], signal.SIGKILL)

    # --- running a job ------------------------------------------------------------------------
    def run(self, job_id: str) -> None:
        time.sleep(float(self.config.get("start_delay", 0.0)))
        with self.locked():
            job = self.load(job_id)
            if job is None or job["state"] != "Q":
                return
            home = os.path.expanduser("~")
            try:
                out = open(job["out"], "ab")  # noqa: SIM115 - handed to the job
                err = subprocess.STDOUT if job["join"] else open(job["err"], "ab")  # noqa: SIM115
                process = subprocess.Popen(
                    ["/bin/bash", job["script"]], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=err, cwd=home if os.path.isdir(home) else "/",
                    env=self.job_env(job), start_new_session=True)
            except OSError as error:  # as MOM: JOB_EXEC_FAIL1, the job never ran
                job.update(state="F", substate=93, exit_status=-1, comment=str(error))
                self.save(job)
                return
            job.update(state="R", substate=42, stime=time.time(), pid=process.pid,
                       runner=os.getpid())
            self.save(job)
        started = time.monotonic()
        limit = walltime_seconds(job["resources"].get("walltime"))
        kill_delay = float(self.config.get("kill_delay", 2.0))
        over_limit, killed_at = False, None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic()
            job = self.load(job_id) or job
            if limit is not None and now - started > limit and not over_limit:
                over_limit, killed_at = True, now
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            if job.get("delete_at") and killed_at is None:
                killed_at = now
            if killed_at is not None and now - killed_at > kill_delay:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        cput = usage.ru_utime + usage.ru_stime
        with self.locked():
            job = self.load(job_id) or job
            job.update(state="F", substate=92, usage={
                "cpupercent": int(100 * cput / max(elapsed, 0.01)), "cput": hms(cput),
                "mem": f"{usage.ru_maxrss}kb", "ncpus": int(job["resources"].get("ncpus", 1)),
                "vmem": f"{usage.ru_maxrss}kb", "walltime": hms(elapsed)})
            if over_limit:
                job.update(substate=93, exit_status=-29, comment=(
                    f"job killed: walltime {int(elapsed)} exceeded limit {limit}"))
            elif os.WIFSIGNALED(status):
                job["exit_status"] = 256 + os.WTERMSIG(status)
            else:
                job["exit_status"] = os.WEXITSTATUS(status)
            self.save(job)

    def job_env(self, job: dict[str, Any]) -> dict[str, str]:
        submitted = job["env"]
        env = dict(submitted) if job["export_all"] else {
            key: submitted[key] for key in ("HOME", "USER", "LOGNAME", "LANG") if key in submitted}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(job["variables"])
        env.update(PBS_JOBID=job["id"], PBS_JOBNAME=job["name"], PBS_QUEUE=job["queue"],
                   PBS_O_WORKDIR=job["workdir"], PBS_ENVIRONMENT="PBS_BATCH")
        return env

    # --- qstat record from the recorded template ---------------------------------------------
    def record(self, job: dict[str, Any]) -> dict[str, Any]:
        template = json.loads(TEMPLATE.read_text())
        record: dict[str, Any] = copy.deepcopy(next(iter(template["Jobs"].values())))
        user = job["env"].get("USER", "pbsuser")
        resources = {k: v for k, v in job["resources"].items() if k != "select"}
        if "select" in job["resources"]:
            resources["select"] = job["resources"]["select"]
        record.update(
            Job_Name=job["name"], Job_Owner=f"{user}@{SERVER}", job_state=job["state"],
            queue=job["queue"], server=SERVER, ctime=pbs_time(job["ctime"]),
            qtime=pbs_time(job["ctime"]), etime=pbs_time(job["ctime"]),
            mtime=pbs_time(job["mtime"]), Output_Path=f"{SERVER}:{job['out']}",
            Error_Path=f"{SERVER}:{job['err']}", Join_Path="oe" if job["join"] else "n",
            Resource_List={"ncpus": 1, "nodect": 1, "place": "pack", **resources},
            Hold_Types=job.get("hold_types", "n"),
            substate=job["substate"], Submit_arguments=job["submit_args"],
            Variable_List={**record["Variable_List"], "PBS_O_WORKDIR": job["workdir"],
                           "PBS_O_QUEUE": job["queue"], **job["variables"]},
            comment=job.get("comment") or record["comment"])
        started = "stime" in job
        for key in ("resources_used", "exec_host", "exec_vnode", "stime", "session_id",
                    "jobdir", "Exit_status", "Stageout_status", "history_timestamp"):
            record.pop(key, None)
        if started:
            record.update(stime=pbs_time(job["stime"]), session_id=job["pid"],
                          exec_host=f"{SERVER}/0", exec_vnode=f"({SERVER}:ncpus=1)",
                          jobdir=os.path.expanduser("~"))
            record["resources_used"] = job.get("usage") or {
                "cpupercent": 0, "cput": "00:00:00", "mem": "0kb", "ncpus": 1, "vmem": "0kb",
                "walltime": hms(time.time() - job["stime"])}
        if job["state"] == "F" and "exit_status" in job:
            record.update(Exit_status=job["exit_status"], Stageout_status=1,
                          history_timestamp=int(job["mtime"]))
        record["run_count"] = int(started)
        return record


def parse_resources(values: list[str]) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for value in values:
        for item in value.split(","):
            key, _, setting = item.partition("=")
            if key == "select":
                chunks, *parts = setting.split(":")
                resources["select"] = setting
                resources["nodect"] = int(chunks)
                for part in parts:
                    name, _, amount = part.partition("=")
                    resources[name] = amount
                resources["ncpus"] = int(chunks) * int(resources.get("ncpus", 1))
            else:
                resources[key] = setting
    return resources


def walltime_seconds(text: str | None) -> int | None:
    if not text:
        return None
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def pbs_time(stamp: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(stamp))


def to_json(records: dict[str, dict[str, Any]]) -> str:
    """qstat's own JSON printer: 4-space indent, ``"key":value``, and openpbs #1255."""
    envelope: dict[str, Any] = {"timestamp": int(time.time()), "pbs_version": "19.0.0",
                                "pbs_server": SERVER}
    if records:
        envelope["Jobs"] = records
    text = json.dumps(envelope, indent=4, separators=(",", ":"))
    for record in records.values():  # bare numbers, as qstat prints them (#1255)
        for name, value in record.get("Variable_List", {}).items():
            if isinstance(value, str) and re.fullmatch(r"\d+", value):
                text = text.replace(f'"{name}":"{value}"', f'"{name}":{value}')
    return text + "\n"


def to_text(job_id: str, record: dict[str, Any]) -> str:
    """``qstat -f`` text: wrapped at 79 columns with TAB continuation lines."""
    lines = [f"Job Id: {job_id}"]
    for key, value in record.items():
        if key == "Variable_List":  # one string, commas inside values escaped
            escaped = {k: str(v).replace(",", "\\,") for k, v in value.items()}
            items: Any = [(None, ",".join(f"{k}={v}" for k, v in escaped.items()))]
        else:
            items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, item in items:
            line = f"    {key}{'.' + sub if sub else ''} = {item}"
            lines.append(line[:79])
            lines.extend(f"\t{line[i:i + 70]}" for i in range(79, len(line), 70))
    return "\n".join(lines) + "\n\n"


def main(argv: list[str]) -> int:
    server, command, args = Server(Path(argv[0])), argv[1], argv[2:]
    try:
        if command == "qsub":
            print(server.qsub(args))
        elif command == "qstat":
            out, err, code = server.qstat(args)
            sys.stdout.write(out)
            sys.stderr.write(err)
            return code
        elif command == "qdel":
            err, code = server.qdel(args)
            sys.stderr.write(err)
            return code
        elif command == "qselect":
            sys.stdout.write(server.qselect(args))
        elif command == "_run":
            server.run(args[0])
        elif command == "_shutdown":
            server.shutdown()
        else:
            raise Fail(f"fakepbs: unknown command {command}", 2)
    except Fail as failure:
        print(failure, file=sys.stderr)
        return failure.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
