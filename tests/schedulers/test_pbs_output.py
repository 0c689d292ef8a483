"""pbspro layer (a): qstat parsers, state mapping and exit rules on real recorded output.

Every fixture in tests/data/pbs comes from a real PBS Pro, OpenPBS or Torque
server (tests/data/pbs/PROVENANCE.md); EXIT_CODES.md gives the rules checked here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobbridge import constants
from jobbridge.schedulers import pbs_output
from jobbridge.schedulers.pbs_output import PBSPRO, TORQUE, job_record
from jobbridge.schedulers.pbspro import PBSProScheduler

DATA = Path(__file__).resolve().parent.parent / "data" / "pbs"


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def only_job(jobs: dict[str, dict[str, object]]) -> dict[str, object]:
    assert len(jobs) == 1
    return next(iter(jobs.values()))


# --- versions ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("pbspro-qstat-version-1.txt", (PBSPRO, "PBSPro_11.1.0.111761")),
    ("pbspro-qstat-version-2.txt", (PBSPRO, "19.0.0")),
    ("pbspro-qstat-version-3.txt", (PBSPRO, "2025.2.0.20250702153105")),
    ("torque-qstat-version-1.txt", (TORQUE, "2.4.16")),
    ("torque-qstat-version-2.txt", (TORQUE, "6.1.2")),
    ("torque-qsub-version-1.txt", (TORQUE, "7.0.1")),
])
def test_versions(name: str, expected: tuple[str, str]) -> None:
    assert pbs_output.parse_version(read(name)) == expected


def test_slurm_wrapper_usage_is_no_version() -> None:
    usage = "Unknown option: version\nUsage:\n    qstat [-f] [-a|-i|-r] [job_id...]\n"
    assert pbs_output.parse_version(usage) is None


# --- PBS Pro JSON -----------------------------------------------------------------------------

def test_json_finished_job() -> None:
    jobs = pbs_output.parse_json(read("pbspro-qstat-json-F-1.json"))
    record = job_record(jobs["40.pbs"], PBSPRO)
    assert (record.state, record.exit_value, record.term_sig) == ("F", 0, None)
    assert record.resource_usage == ("cpupercent=0 cput=00:00:00 mem=5620kb ncpus=1 "
                                     "vmem=25632kb walltime=00:00:10")


def test_json_walltime_kill_is_aborted_with_its_reason() -> None:
    jobs = pbs_output.parse_json(read("pbspro-qstat-json-F-2.json"))
    killed = job_record(jobs["6617175.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"], PBSPRO)
    assert killed.exit_status == constants.EXIT_ABORTED
    assert killed.reason is not None
    assert killed.reason.startswith("TIMEOUT: Exit_status -29 JOB_EXEC_KILL_WALLTIME")
    assert len(killed.reason) < 250  # the comment listing 40 nodes is cut
    assert killed.resource_usage is not None and "cput=45682:59:56" in killed.resource_usage
    clean = job_record(jobs["6631289.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"], PBSPRO)
    assert (clean.exit_value, clean.exit_status) == (0, None)


def test_json_deleted_before_running_has_no_exit_status_and_is_aborted() -> None:
    jobs = pbs_output.parse_json(read("pbspro-qstat-json-mixed-2.json"))
    record = job_record(jobs["4846771.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"], PBSPRO)
    assert record.exit_status == constants.EXIT_ABORTED
    assert record.exit_value is None
    assert "before it ran" in str(record.reason) and "Not enough free nodes" in str(record.reason)


def test_json_leftover_exit_status_of_a_held_job_is_ignored() -> None:
    """Polaris: H with Exit_status -3 after failed starts: still held, not ended."""
    jobs = pbs_output.parse_json(read("pbspro-qstat-json-mixed-1.json"))
    states = {job_id.partition(".")[0]: job_record(attrs, PBSPRO) for job_id, attrs in jobs.items()}
    assert {k: r.state for k, r in states.items()} == {
        "359322": "Q", "412020": "H", "1147579": "R"}
    assert states["412020"].exit_status is None and states["412020"].exit_value is None


def test_json_subjob_of_a_held_array_is_held() -> None:
    """OpenPBS 23.06 shows each subjob of a held array (``qsub -h -J``) as Q, with the
    array's Hold_Types and substate 20 (held): it waits for a qrls, so H."""
    data = json.loads(read("pbspro-qstat-json-H-1.json"))
    [attrs] = data["Jobs"].values()
    subjob = {**attrs, "job_state": "Q", "Hold_Types": "u", "substate": 20}
    assert job_record(subjob, PBSPRO).state == "H"
    assert job_record({**subjob, "Hold_Types": "n", "substate": 10}, PBSPRO).state == "Q"


@pytest.mark.parametrize("name", ["pbspro-qstat-json-nojobs-1.json",
                                  "pbspro-qstat-json-nojobs-2.json"])
def test_json_envelope_without_jobs(name: str) -> None:
    assert pbs_output.parse_json(read(name)) == {}


def test_json_exit_status_as_string() -> None:
    data = json.loads(read("pbspro-qstat-json-F-1.json"))
    data["Jobs"]["40.pbs"]["Exit_status"] = "3"
    record = job_record(pbs_output.parse_json(json.dumps(data))["40.pbs"], PBSPRO)
    assert record.exit_value == 3


def test_invalid_json_raises_value_error() -> None:
    """openpbs #1255: a numeric-looking Variable_List value printed bare."""
    with pytest.raises(ValueError):
        pbs_output.parse_json('{"Jobs":{"1.pbs":{"Variable_List":{"FOO":005}}}}')


# --- text (qstat -f) --------------------------------------------------------------------------

def test_text_pbspro_tab_continuations() -> None:
    job = only_job(pbs_output.parse_text(read("pbspro-qstat-f-F-1.txt")))
    assert job["comment"] == ("Job run at Thu Aug 10 at 16:10 on "
                              "(k242:ncpus=1:mem=1048576kb:ngpus=0) and finished")
    variables = job["Variable_List"]
    assert isinstance(variables, dict)
    assert variables["PBS_O_PATH"].endswith("/usr/lib64/ccache:/usr/local/bin:/usr/bin:"
                                            "/usr/local/sbin:/usr/sbin:/opt/pbs/bin")
    assert job["Resource_List"] == {
        "ib": "no", "mem": "1gb", "ncpus": "1", "ngpus": "0", "nodect": "1",
        "place": "group=cse12", "select": "ncpus=1:mem=1gb", "walltime": "01:00:00"}
    record = job_record(job, PBSPRO)
    assert (record.state, record.exit_value) == ("F", 0)


def test_text_torque_8_space_continuations_escaped_commas_and_raw_newlines() -> None:
    jobs = pbs_output.parse_text(read("torque-qstat-f-C-2.txt"))
    job = jobs["48[1].torque01.bcgsc.ca"]
    assert job["comment"] == ("Job 48[].torque01.bcgsc.ca deleted because its dependency of "
                              "array 43[].torque01.bcgsc.ca can never be satisfied")
    variables = job["Variable_List"]
    assert isinstance(variables, dict)
    assert variables["SACCT_FORMAT"] == (
        "jobid%-18,jobname%45,user%-8,reqmem,elapsed,state,MaxRSS,AveRSS,Partition")
    assert variables["BASH_FUNC_module()"] == "() {  eval `/usr/bin/modulecmd bash $*`\\\n}"
    assert variables["SSH_CLIENT"] == "10.9.202.242 35994 22"
    assert job["euser"] == "creisle"  # the line after the raw newline is an attribute again
    record = job_record(job, TORQUE)
    assert (record.term_sig, record.exit_value) == (15, None)  # 271 = 256 + SIGTERM


def test_text_torque_tab_continuations_and_walltime_code() -> None:
    record = job_record(only_job(pbs_output.parse_text(read("torque-qstat-f-C-4.txt"))), TORQUE)
    assert record.exit_status == constants.EXIT_ABORTED
    assert str(record.reason).startswith("TIMEOUT: Exit_status -11 JOB_EXEC_OVERLIMIT_WT")
    assert record.resource_usage == "cput=00:00:00 mem=3500kb vmem=336264kb walltime=00:00:14"


@pytest.mark.parametrize(("name", "state", "exit_value"), [
    ("torque-qstat-f-C-1.txt", "C", 0), ("torque-qstat-f-C-3.txt", "C", 0),
    ("torque-qstat-f-C-5.txt", "C", 0), ("torque-qstat-f-Q-1.txt", "Q", None),
    ("torque-qstat-f-R-1.txt", "R", None),
])
def test_text_torque_states(name: str, state: str, exit_value: int | None) -> None:
    record = job_record(only_job(pbs_output.parse_text(read(name))), TORQUE)
    assert (record.state, record.exit_value) == (state, exit_value)


def test_text_of_slurm_torque_wrappers() -> None:
    """Slurm's wrappers indent attributes with a TAB, print no exit_status, end in C."""
    text = ("Job Id:\t28\n\tJob_Name = jbtest\n\tJob_Owner = root@localhost\n"
            "\tjob_state = C\n\tqueue = debug\n\tResource_List.walltime = 00:05:00\n"
            "\tResource_List.ncpus = 1\n\nJob Id:\t29\n\tJob_Name = other\n\tjob_state = R\n\n")
    jobs = pbs_output.parse_text(text)
    assert set(jobs) == {"28", "29"}
    assert jobs["28"]["Resource_List"] == {"walltime": "00:05:00", "ncpus": "1"}
    record = job_record(jobs["28"], TORQUE)
    assert (record.state, record.exit_value, record.exit_status) == ("C", None, None)


def test_empty_text_output() -> None:
    assert pbs_output.parse_text("") == {}


# --- Torque XML -------------------------------------------------------------------------------

def test_xml_mixed() -> None:
    jobs = pbs_output.parse_xml(read("torque-qstat-x-xml-mixed-1.xml"))
    records = {job_id.partition(".")[0]: job_record(attrs, TORQUE)
               for job_id, attrs in jobs.items()}
    assert {k: r.state for k, r in records.items()} == {
        "665199": "R", "667999": "Q", "673174": "C", "673175[]": "C", "673175[19]": "C",
        "673175[20]": "C"}
    assert records["665199"].exit_status is None  # -3 left over from a requeue
    assert records["673175[]"].exit_value is None  # array parent: no exit_status
    assert records["673175[19]"].exit_value == 0
    assert records["665199"].resource_usage == (
        "cput=00:15:23 mem=17592kb vmem=89780kb walltime=335:34:49")


@pytest.mark.parametrize(("name", "state", "exit_value"), [
    ("torque-qstat-x-xml-C-1.xml", "C", 0), ("torque-qstat-x-xml-C-2.xml", "C", 1),
    ("torque-qstat-x-xml-Q-1.xml", "Q", None),
])
def test_xml_states(name: str, state: str, exit_value: int | None) -> None:
    record = job_record(only_job(pbs_output.parse_xml(read(name))), TORQUE)
    assert (record.state, record.exit_value) == (state, exit_value)


def test_xml_variable_list_and_raw_newlines() -> None:
    job = only_job(pbs_output.parse_xml(read("torque-qstat-x-xml-C-1.xml")))
    assert isinstance(job["Variable_List"], dict)
    assert "PBS_O_WORKDIR" in job["Variable_List"]


def test_xml_empty() -> None:
    assert pbs_output.parse_xml(read("torque-qstat-x-xml-empty-1.xml")) == {}
    assert pbs_output.parse_xml("") == {}
    with pytest.raises(ValueError):
        pbs_output.parse_xml("<Data><Job><Job_Id>1</Job_Id><Variable_List>A=a&b</Variable_List>")


# --- states and exit rules ----------------------------------------------------------------

def test_one_table_maps_every_pbs_and_torque_state() -> None:
    assert set(PBSProScheduler.STATES) == set("BEFHMQRSTUWX") | set("CEHQRTWS")
    assert set(PBSProScheduler.STATES.values()) <= set(constants.JOB_STATUS)
    ended = {s for s, status in PBSProScheduler.STATES.items() if status == constants.DONE}
    assert ended == pbs_output.ENDED_STATES


@pytest.mark.parametrize(("value", "flavour", "expected"), [
    (0, PBSPRO, (0, None, None)),
    ("0", PBSPRO, (0, None, None)),
    (" 2 ", TORQUE, (2, None, None)),
    (265, PBSPRO, (None, 9, None)),
    (271, TORQUE, (None, 15, None)),
    (137, PBSPRO, (None, 9, None)),
    (128, PBSPRO, (128, None, None)),
    (-29, PBSPRO, (None, None, constants.EXIT_ABORTED)),
    (-11, TORQUE, (None, None, constants.EXIT_ABORTED)),
    (-99, PBSPRO, (None, None, constants.EXIT_ABORTED)),
])
def test_exit_rules(value: object, flavour: str,
                    expected: tuple[int | None, int | None, str | None]) -> None:
    record = job_record({"job_state": "F", "Exit_status": value}, flavour)
    assert (record.exit_value, record.term_sig, record.exit_status) == expected


def test_negative_codes_differ_per_flavour() -> None:
    pbs = job_record({"job_state": "F", "Exit_status": -11}, PBSPRO)
    torque = job_record({"job_state": "C", "exit_status": -11}, TORQUE)
    assert "JOB_EXEC_RERUN" in str(pbs.reason)
    assert "JOB_EXEC_OVERLIMIT_WT" in str(torque.reason)
    every = set(pbs_output.EXEC_CODES[PBSPRO]) | set(pbs_output.EXEC_CODES[TORQUE])
    assert every == set(range(-32, 0))


def test_unreadable_exit_status_is_kept_as_reason() -> None:
    record = job_record({"job_state": "F", "Exit_status": "\x0b"}, PBSPRO)
    assert record.exit_value is None and "unreadable" in str(record.reason)


@pytest.mark.parametrize(("used", "expected"), [
    ({"mem": "1gb", "vmem": "2048b", "cput": 75, "walltime": "01:02:03", "ncpus": 4,
      "cpupercent": "99"},
     "cpupercent=99 cput=00:01:15 mem=1048576kb ncpus=4 vmem=2kb walltime=01:02:03"),
    ({"mem": "12w", "cput": "garbage", "energy_used": 0}, None),
    (None, None),
])
def test_resource_usage(used: object, expected: str | None) -> None:
    assert pbs_output.resource_usage(used) == expected


@pytest.mark.parametrize(("name", "state"), [
    ("pbspro-qstat-json-H-1.json", constants.USER_SYSTEM_ON_HOLD),
    ("pbspro-qstat-json-R-1.json", constants.RUNNING),
])
def test_json_states(name: str, state: str) -> None:
    record = job_record(only_job(pbs_output.parse_json(read(name))), PBSPRO)
    assert PBSProScheduler.STATES[record.state] == state
    assert record.exit_value is None and record.exit_status is None


def test_every_recorded_job_maps_through_the_table() -> None:
    parsers = {".json": pbs_output.parse_json, ".xml": pbs_output.parse_xml,
               ".txt": pbs_output.parse_text}
    count = 0
    for path in sorted(DATA.glob("*-qstat-[fjx]*")):
        for attrs in parsers[path.suffix](path.read_text(encoding="utf-8")).values():
            assert PBSProScheduler.STATES[job_record(attrs, PBSPRO).state] in constants.JOB_STATUS
            count += 1
    assert count == 35  # 18 PBS Pro JSON, 1 PBS Pro text, 7 Torque text, 9 Torque XML

