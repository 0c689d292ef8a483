"""``drmaa2``: the scheduler type the seed lists for DRMAA 2 libraries, registered so
that ``jobbridge schedulers`` says whether it can work here and why not.

Honestly: jobbridge has no DRMAA 2 backend yet. No DRMAA 2 C library was at hand
to build and test one against (Grid Engine 8.1 and Slurm's drmaa ship DRMAA 1, which
the ``drmaa`` scheduler drives; Debian packages none), and soma-workflow stopped its
own attempt for the same reason. So this type is never usable: its availability
says whether a DRMAA 2 library was found and that the backend is missing, and
building it fails with that reason instead of pretending.
"""

from __future__ import annotations

import ctypes.util
import os
from typing import NoReturn

from ..configuration import Configuration
from ..errors import ConfigurationError
from ..scheduler import Scheduler


def find_library(config: Configuration | None = None) -> str | None:
    """A DRMAA 2 C library: ``drmaa2_library_path`` of the resource, else
    ``DRMAA2_LIBRARY_PATH``, else the system's ``libdrmaa2``."""
    configured = config.get("drmaa2_library_path") if config is not None else None
    path = configured or os.environ.get("DRMAA2_LIBRARY_PATH")
    if path:
        return path if os.path.exists(path) else None
    return ctypes.util.find_library("drmaa2")


class Drmaa2Scheduler(Scheduler):
    """A placeholder for DRMAA 2: reports why it cannot be used (see the module doc)."""

    @classmethod
    def availability(cls, config: Configuration | None = None) -> tuple[bool, str]:
        library = find_library(config)
        if library is None:
            return False, ("no DRMAA 2 library found (set DRMAA2_LIBRARY_PATH); for a DRMS "
                           "with a DRMAA 1 library, such as Grid Engine, use the drmaa scheduler")
        return False, (f"found the DRMAA 2 library {library}, but jobbridge has no DRMAA 2 "
                       "backend yet (none could be tested): use the drmaa scheduler with the "
                       "DRMS's DRMAA 1 library")

    @classmethod
    def build_scheduler(cls, config: Configuration) -> NoReturn:
        raise ConfigurationError(f"scheduler 'drmaa2' cannot work: {cls.availability(config)[1]}")
