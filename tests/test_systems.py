"""CI cannot pass by skipping: a test marked for a real system that is missing is
skipped with the reason on a laptop, fails with it under CI, and the run says which
systems it used (tests/systems.py, run here in a pytest of its own)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MARKED = '''
import pytest

@pytest.mark.slurm
def test_on_slurm():
    pass

@pytest.mark.pbspro
def test_on_pbspro():
    pass

def test_anywhere():
    pass
'''


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None
         ) -> pytest.RunResult:
    """The marked tests where neither Slurm nor OpenPBS can be found (empty PATH)."""
    pytester.makepyfile(test_marked=MARKED)
    pytester.makeini("[pytest]\nmarkers =\n  slurm: x\n  pbspro: x\n")
    monkeypatch.setenv("PATH", str(pytester.path / "no-bin"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")]))
    monkeypatch.delenv("CI", raising=False)
    if ci is not None:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_subprocess("-p", "systems", "-rs")


def test_a_missing_system_skips_with_its_reason(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, ci=None)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*slurm: Slurm is not installed*",
                                 "SKIPPED*pbspro: *jbpbs*"])
    result.stdout.fnmatch_lines(["systems used: none; missing: pbspro (*); slurm (*)"])
    _ends_with_the_systems_line(result)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_missing_system_fails_naming_it(pytester: pytest.Pytester,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  ci: str) -> None:
    result = _run(pytester, monkeypatch, ci=ci)
    result.assert_outcomes(passed=1, errors=2)  # failed in setup: the run fails
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*needed under CI, but unavailable: slurm: Slurm is not installed*"])
    result.stdout.fnmatch_lines(["*needed under CI, but unavailable: pbspro: *jbpbs*"])
    _ends_with_the_systems_line(result)


def test_ci_false_is_not_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(pytester, monkeypatch, ci="false").assert_outcomes(passed=1, skipped=2)


@pytest.mark.slurm
def test_the_summary_names_the_systems_used(pytester: pytest.Pytester,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With Slurm there, it is listed as used."""
    pytester.makepyfile(test_marked=MARKED)
    pytester.makeini("[pytest]\nmarkers =\n  slurm: x\n  pbspro: x\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get(
        "PYTHONPATH", "")]))
    monkeypatch.delenv("CI", raising=False)
    result = pytester.runpytest_subprocess("-p", "systems", "-k", "slurm or anywhere")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["systems used: slurm"])
    _ends_with_the_systems_line(result)


def _ends_with_the_systems_line(result: pytest.RunResult) -> None:
    """The systems line is the last before pytest's count: after the short summary."""
    lines = [line for line in result.outlines if line.strip()]
    assert lines[-2].startswith("systems used: "), lines[-6:]


def test_no_test_skips_a_system_its_own_way() -> None:
    """The marker is the one mechanism: no skipif/importorskip left in the tests."""
    offenders = []
    for path in TESTS.rglob("*.py"):
        if path.name in ("systems.py", Path(__file__).name):
            continue
        text = path.read_text(encoding="utf-8")
        for word in ("importorskip", "mark.skipif", "pytest.skip("):
            if word in text:
                offenders.append(f"{path.relative_to(TESTS)}: {word}")
    assert offenders == []
