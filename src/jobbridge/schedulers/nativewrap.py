"""The native job wrapper: ``jobwrap.c``, built on first use with the system's C
compiler into the state folder the compute nodes share.

Why: the wrapper runs before every batch job's command, 10,000 times for an
array of 10,000, on the compute nodes' cores. A Python start costs 10-20 ms
there, a small C program about 1 ms; on a full node that difference is the wall
time of the whole array. It is built here, not shipped, because clusters differ
in libc and architecture and nothing here may need a network; a site without a
compiler keeps the Python wrapper (:mod:`.jobwrap`), which does the same.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
from pathlib import Path

from ..configuration import private_dir

#: The wrapper's source, shipped in the package.
SOURCE = Path(__file__).with_name("jobwrap.c")
#: Seconds a compilation may take.
BUILD_TIMEOUT = 120.0


class BuildError(Exception):
    """The native wrapper cannot be built here (no compiler, or it failed): why."""


def build(folder: Path) -> Path:
    """The native wrapper for this machine's architecture in ``folder``, compiled
    once per version of its source (``$CC``, else ``cc``); raises BuildError.

    Safe when engines (or threads) build at once: each compiles to a name of its
    own, then renames."""
    try:
        source = SOURCE.read_bytes()
    except OSError as error:
        raise BuildError(f"its source is missing ({SOURCE}: {error.strerror})") from None
    target = folder / (f"jobwrap-{hashlib.sha256(source).hexdigest()[:12]}-"
                       f"{platform.machine() or 'unknown'}")
    if os.access(target, os.X_OK):
        return target
    compiler = shlex.split(os.environ.get("CC") or "cc")
    private_dir(folder)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=folder)
    os.close(fd)
    partial = Path(name)
    argv = [*compiler, "-O2", "-o", str(partial), str(SOURCE)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                                timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise BuildError(f"no C compiler ({compiler[0]}: {error.strerror})") from None
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise BuildError(f"{compiler[0]} took over {BUILD_TIMEOUT:g} s") from None
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        said = (result.stderr.strip() or f"exit status {result.returncode}").splitlines()
        raise BuildError(f"{shlex.join(argv)} failed: {said[0]}")
    partial.chmod(0o700)
    partial.replace(target)
    return target
