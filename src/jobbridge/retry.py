"""Retry policy: which failed attempts of a job are tried again, when, with what.

A job's ``retries`` are further attempts after a failed one (docs/retries.md).
An end is retried when it matches ``retry_on`` (any failure when unset): an exit
code, or a word of the end's reason, case-insensitive (``TIMEOUT``,
``OUT_OF_MEMORY``, ``NODE_FAIL``, ``killed by signal``...). Ends the user asked
for (a kill, a stop) are never retried. Retry *k* waits ``retry_delay_s * 2**(k-1)``
seconds and asks for the job's resources times ``escalate[key] ** k``, capped by
the resource's ``max_memory_mb`` / ``max_walltime_s``.

Pure functions of a job's spec and its retry number, so that an engine restarted
between two attempts computes the same delay and resources again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from . import constants
from .configuration import Configuration
from .model import EngineJob, signal_name

#: The resource keys capping escalation (``0``/unset: no cap), by resource.
LIMIT_KEYS = {"memory_mb": "max_memory_mb", "walltime_s": "max_walltime_s"}
#: Configuration keys this module reads (every scheduler accepts them).
CONFIG_KEYS = frozenset(LIMIT_KEYS.values())
#: Ends never retried: they are what the user asked for, or no attempt at all.
_NEVER = frozenset({constants.USER_KILLED, constants.EXIT_NOTRUN})


def limits(config: Configuration) -> dict[str, int]:
    """The caps of escalated resources a resource's configuration sets."""
    found = {}
    for resource, key in LIMIT_KEYS.items():
        value = config.get_int(key, 0)
        if value > 0:
            found[resource] = value
    return found


def end_text(exit_status: str | None, exit_value: int | None, term_sig: int | None,
             reason: str | None) -> str:
    """What ``retry_on`` words are looked for in: the reason, and the signal if any."""
    parts = [reason or "", exit_status or ""]
    if term_sig:
        parts.append(f"killed by signal {signal_name(term_sig)}")
    return " ".join(parts).lower()


def retryable(job: EngineJob, retry: int, exit_status: str | None, exit_value: int | None,
              term_sig: int | None, reason: str | None) -> bool:
    """Whether a failed attempt of ``job`` (its ``retry``-th retry; 0: the first
    attempt) is tried again."""
    if retry >= job.retries or exit_status in _NEVER:
        return False
    if not job.retry_on:
        return True
    text = end_text(exit_status, exit_value, term_sig, reason)
    for item in job.retry_on:
        if isinstance(item, int):
            if exit_status == constants.FINISHED_REGULARLY and exit_value == item:
                return True
        elif item.lower() in text:
            return True
    return False


def delay(job: EngineJob, retry: int) -> float:
    """Seconds before retry number ``retry`` (1 for the first): exponential backoff."""
    return float(job.retry_delay_s) * 2 ** (retry - 1) if retry > 0 else 0.0


def attempt_resources(job: EngineJob, retry: int, caps: Mapping[str, int]) -> dict[str, int]:
    """The resources asked for by retry number ``retry`` (0: the job's own): each
    escalated one multiplied by its factor once per retry, rounded up, at most its
    cap (never less than the job's own request)."""
    if not retry or not job.escalate:
        return dict(job.resources)
    resources = dict(job.resources)
    for key, factor in job.escalate.items():
        base = resources.get(key)
        if base is None:
            continue
        grown = math.ceil(base * float(factor) ** retry)
        cap = caps.get(key)
        resources[key] = max(base, min(grown, cap)) if cap else grown
    return resources


def requested(job: EngineJob, resources: Mapping[str, int]) -> dict[str, int]:
    """What an attempt asked for, as the report shows it: CPUs always."""
    return {"cpus": job.cpu_count, **{k: v for k, v in resources.items() if k != "cpus"}}
