"""The configuration file: which resource is the default, what [DEFAULT] gives every
section, and keys each scheduler declares (an unknown one is an error naming it)."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from jobbridge.configuration import Configuration
from jobbridge.controller import resolve_config
from jobbridge.errors import ConfigurationError
from jobbridge.remote import is_remote, remote_resource
from jobbridge.scheduler import (
    Scheduler,
    describe_schedulers,
    get_scheduler_implementation,
    known_config_keys,
)

FILE = """
[DEFAULT]
scheduler_interval = 0.5

[cluster]
scheduler_type = slurm
job_python = /opt/python

[laptop]
scheduler_type = local_basic
cpu_nb = 2
scheduler_interval = 0.1
"""


def _write(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jobbridge.cfg"
    path.write_text(text)
    monkeypatch.setenv("JOBBRIDGE_CONFIG", str(path))
    return path


def test_without_a_resource_the_default_is_localhost_not_the_first_section(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, FILE, monkeypatch)
    config = Configuration.load()
    assert config.resource_id == "localhost"
    assert config.get_scheduler_type() == "local_basic"


def test_default_resource_in_the_default_section(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, FILE.replace("[DEFAULT]\n", "[DEFAULT]\ndefault_resource = laptop\n"),
           monkeypatch)
    config = Configuration.load()
    assert config.resource_id == "laptop"
    assert config.get("scheduler_interval") == "0.1"  # its own value wins
    assert "default_resource" not in config.options()  # a key of the file, not of resources
    cluster = Configuration.load("cluster")
    assert cluster.get("scheduler_interval") == "0.5"  # [DEFAULT] gives every section


def test_default_resource_naming_no_section(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "[DEFAULT]\ndefault_resource = gpu\n[laptop]\ncpu_nb = 1\n",
                  monkeypatch)
    with pytest.raises(ConfigurationError) as error:
        Configuration.load()
    assert str(error.value) == (f"{path}: [DEFAULT]: default_resource 'gpu' is not a resource "
                                "of the file (resources: laptop)")
    monkeypatch.setenv("JOBBRIDGE_CONFIG", str(_write(
        tmp_path, "[DEFAULT]\ndefault_resource = localhost\n[laptop]\n", monkeypatch)))
    assert Configuration.load().resource_id == "localhost"  # the built-in one


def test_every_scheduler_declares_its_keys() -> None:
    """The common keys everywhere, plus each backend's own (read by build_scheduler)."""
    common = Scheduler.CONFIG_KEYS
    assert {"scheduler_type", "cpu_nb", "max_cpu_nb", "scheduler_interval", "max_job_in_queue",
            "max_job_running", "native_specification", "queues", "container_command"} <= common
    own = {"local_basic": {"enforce_memory"}, "mpi": {"mpi_max_attempts", "enforce_memory"},
           "slurm": {"job_python", "job_wrapper", "min_scheduler_interval", "command_timeout"},
           "pbspro": {"job_python", "pbs_bin_dir", "pbs_host_command", "parallel_mpi",
                      "tmp_file_path"},
           "drmaa": {"drmaa_library_path", "parallel_environment", "memory_resource",
                     "job_python"}}
    for info in describe_schedulers():
        keys = get_scheduler_implementation(info.name).CONFIG_KEYS
        assert common <= keys, info.name
        assert own.get(info.name, set()) <= keys, info.name


def test_unknown_key_names_the_key_the_section_and_the_allowed_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, FILE.replace("cpu_nb = 2", "cpu_nbs = 2"), monkeypatch)
    with pytest.raises(ConfigurationError) as error:
        resolve_config("laptop")
    keys = ", ".join(sorted(get_scheduler_implementation("local_basic").CONFIG_KEYS))
    assert str(error.value) == (f"{path}: [laptop]: unknown key 'cpu_nbs' "
                                f"(local_basic keys: {keys})")
    assert resolve_config("cluster").get("job_python") == "/opt/python"


def test_a_default_key_of_another_scheduler_is_not_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[DEFAULT] job_python serves the batch sections; a local section ignores it."""
    _write(tmp_path, "[DEFAULT]\njob_python = /opt/python\n[laptop]\ncpu_nb = 1\n"
           "[cluster]\nscheduler_type = slurm\n", monkeypatch)
    assert resolve_config("laptop").get_int("cpu_nb") == 1
    assert resolve_config("cluster").get("job_python") == "/opt/python"


def _documented_ini_blocks() -> list[tuple[str, str]]:
    root = Path(__file__).resolve().parent.parent
    blocks = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for number, block in enumerate(doc.read_text().split("```ini\n")[1:]):
            blocks.append((f"{doc.name}#{number}", block.split("```")[0]))
    return blocks


@pytest.mark.parametrize(("where", "text"), _documented_ini_blocks(),
                         ids=[where for where, _ in _documented_ini_blocks()])
def test_documented_configurations_load_with_their_inline_comments(
        where: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``ini`` example of the docs loads: keys known to their scheduler, values
    checked, and ``# comments`` after a value not taken as part of it."""
    _write(tmp_path, text, monkeypatch)
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    for section in parser.sections():
        config = Configuration.load(section)
        if is_remote(config):  # its own keys, no scheduler (docs/remote.md)
            remote_resource(config)
            continue
        implementation = get_scheduler_implementation(config.get_scheduler_type())
        config.check_keys(config.get_scheduler_type(), implementation.CONFIG_KEYS,
                          known_config_keys)
        implementation.check_config(config)
        assert not any(" #" in value for value in config.options().values()), where
