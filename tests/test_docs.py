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
