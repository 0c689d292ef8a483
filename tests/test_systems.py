"""CI cannot pass by skipping: a test marked for a real system that is missing is
skipped with the reason on a laptop, fails with it under CI, and the run says which
systems it used (tests/systems.py, run here in a pytest of its own)."""

from __future__ import annotations

import os
import shutil
import subprocess
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


# --- the scripts that start the systems (copies run with stub steps: the real
# daemons are never touched) ----------------------------------------------------------------

ROOT = TESTS.parent
STEPS = ["slurm", "sge", "torque-wrappers", "mpi", "openpbs", "sshd"]


def _script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + text)
    path.chmod(0o755)


def _up_all(tmp_path: Path, exits: dict[str, int]) -> tuple[subprocess.CompletedProcess[str],
                                                             list[str]]:
    """up-all.sh beside stub steps, each noting that it ran and exiting as told
    (silently: as a step stopped by ``set -e`` on an unforeseen error)."""
    clusters = tmp_path / "scripts" / "clusters"
    clusters.mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "clusters" / "up-all.sh", clusters)
    for name in STEPS:
        _script(clusters / f"{name}-up.sh", f'echo {name} >> "{tmp_path}/ran"\n'
                                            f"exit {exits.get(name, 0)}\n")
    done = subprocess.run(["bash", str(clusters / "up-all.sh")], capture_output=True,
                          text=True, timeout=60)
    ran = (tmp_path / "ran").read_text().split()
    return done, ran


def test_up_all_names_a_system_that_did_not_start_and_starts_the_others(tmp_path: Path
                                                                        ) -> None:
    done, ran = _up_all(tmp_path, {"slurm": 3})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "up-all: ERROR: slurm-up.sh failed (exit status 3): slurm is not started",
        "up-all: ERROR: torque-wrappers-up.sh not run: it needs slurm, which did not start",
        "up-all: ERROR: not started: slurm torque-wrappers"]
    assert ran == ["slurm", "sge", "mpi", "openpbs", "sshd"]


def test_up_all_is_quiet_when_everything_starts(tmp_path: Path) -> None:
    done, ran = _up_all(tmp_path, {})
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert ran == STEPS


@pytest.mark.parametrize("ci", ["true", None])
def test_the_test_command_stops_under_ci_when_a_system_did_not_start(
        tmp_path: Path, ci: str | None) -> None:
    """scripts/test.sh with Grid Engine not started: under CI it fails naming it
    before any test; elsewhere pytest runs (and skips Grid Engine's tests)."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", scripts)
    (scripts / "venv.sh").write_text(f'VENV="{tmp_path}/venv"\n')
    for tool in ("python", "ruff", "mypy"):
        _script(tmp_path / "venv" / "bin" / tool, "true\n")
    _script(tmp_path / "venv" / "bin" / "pytest", 'echo "pytest $*"\n')
    _script(scripts / "clusters" / "up-all.sh",
            'echo "up-all: ERROR: not started: sge" >&2; exit 1\n')
    (scripts / "clusters" / "env.sh").write_text("")
    _script(scripts / "browser-up.sh", "true\n")
    env = {key: value for key, value in os.environ.items()
           if key not in ("CI", "JOBBRIDGE_TEST_WORKERS")}
    done = subprocess.run(["bash", str(scripts / "test.sh"), "-k", "x"], capture_output=True,
                          text=True, timeout=60, env=env | ({"CI": ci} if ci else {}))
    assert "up-all: ERROR: not started: sge" in done.stderr
    if ci:
        assert done.returncode == 1
        assert done.stderr.endswith("test.sh: ERROR: under CI every system must start "
                                    "(see above)\n")
        assert "pytest" not in done.stdout
    else:
        assert done.returncode == 0, done.stderr
        assert "some systems did not start (see above): their tests are skipped" in done.stderr
        assert done.stdout.endswith("pytest -n 4 --dist loadgroup -k x\n")
