"""Every test runs with its own private JOBBRIDGE_HOME and no user configuration.
Tests needing a real system say so by a marker (see systems.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ("pytester", "systems")


@pytest.fixture(autouse=True)
def jobbridge_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                   ) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("jobbridge-home")
    monkeypatch.setenv("JOBBRIDGE_HOME", str(home))
    monkeypatch.setenv("JOBBRIDGE_CONFIG", str(home / "no-config.cfg"))
    monkeypatch.delenv("JOBBRIDGE_CONFIG")
    monkeypatch.setenv("HOME", str(home / "user"))
    yield home
