"""``python -m jobbridge.compat.soma_workflow.selftest``: soma-workflow's test suite on jobbridge.

Installs jobbridge's ``WorkflowController`` in soma-workflow (:func:`install`),
then runs soma-workflow's ``soma_workflow.test`` main unchanged, in an isolated
home: a fresh ``HOME`` (no soma-workflow or jobbridge configuration of the
user), ``TMPDIR`` and ``JOBBRIDGE_HOME``, all removed at the end. Exit status 0
iff every case passed.

``--case NAME`` (repeatable) runs only these cases, each through soma-workflow's
own ``WorkflowTest.run_test`` restricted to one test method and one path
management; ``--list`` shows them. ``WorkflowConf`` (``test_workflow_config``,
which soma-workflow's main leaves out) is a case too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import runpy
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...engine import live_engines

#: soma-workflow's main, in its order, then the test it leaves out.
MODULES = (
    "soma_workflow.test.job_tests.test_workflow_api",
    "soma_workflow.test.workflow_tests.test_exception1",
    "soma_workflow.test.workflow_tests.test_exception2",
    "soma_workflow.test.workflow_tests.test_fake_pipeline",
    "soma_workflow.test.workflow_tests.test_multiple",
    "soma_workflow.test.workflow_tests.test_native_spec",
    "soma_workflow.test.workflow_tests.test_njobs",
    "soma_workflow.test.workflow_tests.test_njobs_with_dependencies",
    "soma_workflow.test.workflow_tests.test_serial_jobs",
    "soma_workflow.test.workflow_tests.test_simple",
    "soma_workflow.test.workflow_tests.test_special_command",
    "soma_workflow.test.workflow_tests.test_special_transfer",
    "soma_workflow.test.workflow_tests.test_wrong_native_spec",
    "soma_workflow.test.workflow_tests.test_barrier_jobs",
    "soma_workflow.test.workflow_tests.test_workflow_env",
    "soma_workflow.test.test_serialization",
    "soma_workflow.test.workflow_tests.test_workflow_config",
)


@dataclass(frozen=True)
class Case:
    """One soma-workflow test: a unittest module, or one method of a WorkflowTest class
    in one path management (``file_system``) of the light mode."""

    name: str
    module: str
    test_class: str | None = None
    method: str | None = None
    file_system: str | None = None


def cases() -> list[Case]:
    """Every light-mode case of soma-workflow's suite, found in its modules as they are.
    Imports soma-workflow's tests: call after :func:`install`."""
    from soma_workflow.configuration import LIGHT_MODE
    from soma_workflow.test.workflow_tests import WorkflowTest

    found = []
    for name in MODULES:
        module = importlib.import_module(name)
        classes: list[Any] = [value for value in vars(module).values() if isinstance(value, type)
                   and issubclass(value, WorkflowTest) and value is not WorkflowTest]
        if not classes:  # a plain unittest module
            found.append(Case(name.rsplit(".", 1)[-1], name))
            continue
        for test_class in classes:
            methods = sorted(m for m in dir(test_class) if m.startswith("test_"))
            short = test_class.__name__.removesuffix("Test")
            for mode, file_system in test_class.allowed_config:
                if mode != LIGHT_MODE:
                    continue
                for method in methods:
                    label = short if len(methods) == 1 else f"{short}.{method}"
                    if file_system != WorkflowTest.LOCAL_PATH:
                        label += f"[{file_system}]"
                    found.append(Case(label, name, test_class.__name__, method, file_system))
    return found


def run_case(case: Case) -> bool:
    """Run one case with soma-workflow's own runner; True if it passed."""
    module = importlib.import_module(case.module)
    if case.test_class is None:
        return bool(module.test())
    from soma_workflow.configuration import LIGHT_MODE

    test_class = getattr(module, case.test_class)

    class OneTest(type):  # run_test runs the test_* names dir() shows: only this one
        def __dir__(cls) -> list[str]:
            return [n for n in super().__dir__() if not n.startswith("test_")
                    or n == case.method]

    only: Any = OneTest(test_class.__name__, (test_class,),
                   {"allowed_config": [(LIGHT_MODE, case.file_system)],
                    "__module__": test_class.__module__})
    return bool(only.run_test_function(debug=False))


def run_main() -> int:
    """soma-workflow's ``python -m soma_workflow.test``, as it is; its exit status."""
    try:
        runpy.run_module("soma_workflow.test", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


@contextlib.contextmanager
def isolated() -> Iterator[Path]:
    """A fresh HOME, TMPDIR and JOBBRIDGE_HOME, removed at the end (once the background
    engines started meanwhile have ended)."""
    root = Path(tempfile.mkdtemp(prefix="jobbridge-soma-selftest-"))
    saved = dict(os.environ)
    for folder in ("home", "tmp", "jobbridge"):
        (root / folder).mkdir(mode=0o700)
    os.environ.update(HOME=str(root / "home"), TMPDIR=str(root / "tmp"),
                      JOBBRIDGE_HOME=str(root / "jobbridge"))
    for variable in ("SOMA_WORKFLOW_CONFIG", "JOBBRIDGE_CONFIG"):
        os.environ.pop(variable, None)
    tempfile.tempdir = None
    try:
        yield root
    finally:
        _wait_for_engines(root)
        os.environ.clear()
        os.environ.update(saved)
        tempfile.tempdir = None
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_engines(root: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    homes = {path.parent.parent for path in root.glob("**/engines/*.lock")}
    while time.monotonic() < deadline and any(live_engines(home) for home in homes):
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jobbridge.compat.soma_workflow.selftest",
        description="soma-workflow's own test suite, run by jobbridge's WorkflowController")
    parser.add_argument("--case", action="append", default=[],
                        help="run only this case (repeatable; see --list)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)
    from . import install

    with isolated():
        install()
        sys.argv = [sys.argv[0]]  # soma-workflow's tests read their options there
        known = {case.name: case for case in cases()}
        if args.list:
            for case in known.values():
                print(case.name)
            return 0
        unknown = [name for name in args.case if name not in known]
        if unknown:
            print(f"unknown case {unknown[0]!r} (see --list)", file=sys.stderr)
            return 2
        if not args.case:
            return run_main()
        results = {name: run_case(known[name]) for name in args.case}
    for name, passed in results.items():
        print(f"{'ok  ' if passed else 'FAIL'}  {name}", file=sys.stderr)
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
