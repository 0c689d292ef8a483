"""docs/batch-backend.md is enough to write a backend: its example module and kit
test, copied out of the page as an outside package would have them, import nothing
of jobbridge but its public ``jobbridge.backend`` and ``jobbridge.testing``, make a
complete scheduler, and pass the conformance kit on the real Slurm."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import jobbridge.backend
from jobbridge.configuration import Configuration
from jobbridge.errors import ConfigurationError
from jobbridge.schedulers.batch import BatchScheduler

DOC = Path(__file__).resolve().parents[1] / "docs" / "batch-backend.md"
PUBLIC = {"jobbridge.backend", "jobbridge.testing"}


def blocks() -> tuple[str, str]:
    """The page's two Python blocks: the backend module and its kit test."""
    module, test = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    return module, test


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page's files in a folder of their own, importable."""
    module, test = blocks()
    (tmp_path / "mybatch.py").write_text(module)
    (tmp_path / "test_mybatch.py").write_text(test)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _imported(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_example_uses_only_the_public_api() -> None:
    for source in blocks():
        jobbridge = {name for name in _imported(source) if name.split(".")[0] == "jobbridge"}
        assert jobbridge <= PUBLIC, f"the page's code imports {sorted(jobbridge - PUBLIC)}"


def test_the_public_api_exports_what_it_says() -> None:
    for name in jobbridge.backend.__all__:
        assert getattr(jobbridge.backend, name) is not None
    assert jobbridge.backend.BatchScheduler is BatchScheduler
    doc = DOC.read_text()
    for name in ("hms", "parse_duration", "parse_size", "SystemKill", "CommandError",
                 "JobRecord", "format_resource_usage"):
        assert f"`{name}" in doc, f"docs/batch-backend.md does not describe {name}"


def test_every_hook_is_documented() -> None:
    """The page's table names every hook a backend may override, and the base's
    abstract ones are exactly those it calls required."""
    doc = DOC.read_text()
    hooks = ["submit_argv", "cancel_argv", "cancel_many_argv", "query_status",
             "parse_submit_output", "record_status", "ended_records", "find_by_name",
             "is_transient", "refusal_text", "limit_notes", "batch_output_path",
             "build_scheduler", "availability"]
    for hook in hooks:
        assert hasattr(BatchScheduler, hook)
        assert f"`{hook}(" in doc, f"docs/batch-backend.md does not describe {hook}"
    for table in ("STATES", "ABNORMAL_ENDS", "KILL", "CONFIG_KEYS", "LOST_AFTER", "name",
                  "RESERVED_OPTIONS"):
        assert f"| `{table}` |" in doc
    assert BatchScheduler.__abstractmethods__ == {
        "build_scheduler", "submit_argv", "cancel_argv", "query_status"}


def test_the_example_is_a_complete_scheduler(package: Path) -> None:
    mybatch: ModuleType = importlib.import_module("mybatch")
    scheduler_class = mybatch.MySlurm
    assert not inspect.isabstract(scheduler_class)
    config = Configuration.from_dict("c", {"scheduler_type": "myslurm", "account": "lab",
                                           "scheduler_interval": "3"})
    config.check_keys("myslurm", scheduler_class.CONFIG_KEYS, frozenset)
    scheduler = scheduler_class.build_scheduler(config)
    assert (scheduler.account, scheduler.max_interval) == ("lab", 3.0)
    argv = scheduler.submit_argv(
        jobbridge.backend.EngineJob("a", ["true"], queue="debug",
                                    resources={"walltime_s": 90, "memory_mb": 100}),
        scheduler.state_dir / "n" / "job.sh", "n")
    assert argv[-1].endswith("job.sh")
    assert {"--account=lab", "--partition=debug", "--time=00:01:30", "--mem=100M"} <= set(argv)
    with pytest.raises(ConfigurationError, match="typo"):
        Configuration.from_dict("c", {"scheduler_type": "myslurm", "typo": "1"}).check_keys(
            "myslurm", scheduler_class.CONFIG_KEYS, frozenset)


@pytest.mark.slurm
@pytest.mark.timeout(3600)
def test_the_example_passes_the_kit_on_slurm(package: Path) -> None:
    """The page's test, run by pytest as its author would, outside jobbridge's suite."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env["PYTHONPATH"] = str(package)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
         str(package / "tmp"), "test_mybatch.py"],
        cwd=package, env=env, capture_output=True, text=True, check=False)
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.fullmatch(r"\d+ passed in .*", summary), summary
