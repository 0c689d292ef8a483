"""The docs the code cites exist and say what the code does: docstrings cite
docs/format.md (not a SPEC the repository does not ship), which documents every key
of the workflow format and of the command line's JSON."""

from __future__ import annotations

import re
from pathlib import Path

from jobbridge import model
from jobbridge.store import JobRow

ROOT = Path(__file__).resolve().parents[1]
FORMAT = ROOT / "docs" / "format.md"
#: A citation of a product document (the section sign, a possessive, "the" before
#: it); argument names such as jobwrap's ``SPEC`` file do not count.
CITATION = re.compile(r"\bSPEC\b(?:\s*§|'s|\s+keys)|\bthe SPEC\b")


def test_no_docstring_cites_a_spec_the_repository_lacks() -> None:
    cited = [f"{path.relative_to(ROOT)}:{number}"
             for folder in ("src", "tests", "bench", "examples")
             for path in sorted((ROOT / folder).rglob("*.py")) if path != Path(__file__)
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if CITATION.search(line)]
    assert cited == []
    assert "docs/format.md" in (ROOT / "src" / "jobbridge" / "model.py").read_text()


def test_the_format_documents_every_key() -> None:
    text = FORMAT.read_text(encoding="utf-8")
    keys = (model._JOB_KEYS | model._TOP_KEYS | set(model._RESOURCE_KEYS)
            | set(model._PARALLEL_KEYS))
    status_keys = set(JobRow.__dataclass_fields__) & {
        "exit_status", "exit_value", "term_sig", "resource_usage", "scheduler_job_id",
        "submission_date", "execution_date", "ending_date", "exit_reason"}
    missing = sorted(key for key in keys | status_keys | {"counts", "enabled", "reason"}
                     if f'`{key}`' not in text and f'"{key}"' not in text)
    assert missing == []


def _words(text: str) -> str:
    """Prose without markup or line breaks: ``x`` and `x` read alike."""
    return " ".join(text.replace("``", "`").split())


def test_the_kit_says_what_the_readme_says() -> None:
    """The README's list of the conformance kit's checks is the kit's own docstring's,
    and each check the kit has is in it."""
    import jobbridge.testing
    from jobbridge.testing import SchedulerConformance

    doc = _words(jobbridge.testing.__doc__ or "")
    checks = doc[doc.index("The kit checks, against the real system:"):doc.index(
        "JOBBRIDGE_HOME`.") + len("JOBBRIDGE_HOME`.")]
    readme = _words((ROOT / "README.md").read_text(encoding="utf-8"))
    assert checks.replace("The kit checks", "It checks") in readme
    covered = {"exit_code": "exit codes", "signal": "signals", "stdout_stderr": "stdout",
               "join": "stdout", "stdin": "stdin", "env": "environment",
               "working_directory": "working directory", "hostile_argv": "hostile arguments",
               "paths_batch": "paths", "state_folder": "a state folder",
               "failed_submission": "a refused submission", "many_jobs": "many jobs",
               "bulk_equals": "bulk statuses", "unknown_id": "unknown ids",
               "kill_running": "kills of a running job", "process_tree": "process tree",
               "catches_signals": "catching the warning signal", "kill_queued": "a queued",
               "kill_held": "held job", "kill_many": "many jobs at once (`kill_jobs`)",
               "kill_after_the_end": "a kill after the job's end",
               "success": "exit codes", "shape": "exit codes",
               "unstartable": "cannot start", "signal_end": "exit codes"}
    for name in dir(SchedulerConformance):
        if name.startswith("test_"):
            words = [covered[key] for key in covered if key in name]
            assert words and all(word in checks for word in words), name


def test_reliability_names_only_tests_that_exist() -> None:
    """Each claim of RELIABILITY.md names tests (``file.py::name``, then ``::other``
    in the same file): every one is a test function or class method there."""
    tests = ROOT / "tests"
    missing = []
    for line in (ROOT / "RELIABILITY.md").read_text().splitlines():
        current = None
        for path, name in re.findall(r"`([\w/]+\.py)?::(\w+)(?:\[[^\]]*\])?`", line):
            current = path or current
            assert current, f"a test without its file in: {line}"
            source = (tests / current).read_text()
            if not re.search(rf"^\s*(def {name}\(|class {name}\b)", source, re.MULTILINE):
                missing.append(f"{current}::{name}")
    assert not missing, f"RELIABILITY.md names tests that do not exist: {missing}"
