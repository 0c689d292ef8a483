"""Remote resources: drive the jobbridge of another machine (a cluster's login
node) over SSH, with the system's OpenSSH client (docs/remote.md).

A resource section with a ``host`` key is remote. The laptop runs
:mod:`.client` (through :mod:`.ssh`); the cluster runs ``jobbridge
remote-serve`` (:mod:`.server`), which speaks the JSON protocol of
:mod:`.protocol` on the SSH channel and uses that machine's own store,
configuration and background engine. Workflow ids of a remote resource are
shown as ``RESOURCE:ID`` (``cluster:12``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..configuration import Configuration
from ..errors import ConfigurationError, InputError
from ..scheduler import known_config_keys

#: The keys of a remote resource section; ``host`` makes a section remote. Declared
#: here, in one place, for the configuration's check of unknown keys.
REMOTE_KEYS = ("host", "user", "ssh_options", "remote_jobbridge", "remote_home",
               "remote_resource")

#: What runs jobbridge on the remote host unless ``remote_jobbridge`` says.
DEFAULT_REMOTE_JOBBRIDGE = ("jobbridge",)

#: A host or user name as ssh takes it: no option (leading "-"), space or control.
_SSH_NAME = re.compile(r"[^\s\x00-\x1f\x7f-][^\s\x00-\x1f\x7f]*")


@dataclass(frozen=True)
class RemoteResource:
    """A remote resource's section, validated."""

    name: str
    host: str
    user: str | None
    ssh_options: tuple[str, ...]
    remote_jobbridge: tuple[str, ...]
    remote_home: str | None
    remote_resource: str | None

    @property
    def destination(self) -> str:
        """``user@host`` or ``host``, for messages."""
        return f"{self.user}@{self.host}" if self.user else self.host


def is_remote(config: Configuration) -> bool:
    return bool((config.get("host") or "").strip())


def remote_resource(config: Configuration) -> RemoteResource:
    """The remote resource a configuration describes; ConfigurationError naming
    the first bad key (a scheduler's keys have no place here: the host's own
    configuration chooses how its jobs run, see ``remote_resource``)."""
    config.check_keys("remote", frozenset(REMOTE_KEYS), known_config_keys)

    def name(key: str) -> str | None:
        value = (config.get(key) or "").strip()
        if value and not _SSH_NAME.fullmatch(value):
            raise ConfigurationError(
                f"resource {config.resource_id!r}: option {key} = {value!r} is not a "
                f"{key} name (no spaces, control characters or leading '-')")
        return value or None

    host = name("host")
    assert host is not None  # is_remote
    remote_jobbridge = tuple(config.get_words("remote_jobbridge")) or DEFAULT_REMOTE_JOBBRIDGE
    return RemoteResource(
        name=config.resource_id, host=host, user=name("user"),
        ssh_options=tuple(config.get_words("ssh_options")),
        remote_jobbridge=remote_jobbridge,
        remote_home=(config.get("remote_home") or "").strip() or None,
        remote_resource=(config.get("remote_resource") or "").strip() or None)


def load_remote(resource: str) -> RemoteResource:
    """The remote resource ``resource`` of the configuration file."""
    config = Configuration.load(resource)
    if not is_remote(config):
        raise InputError(f"resource {resource!r} is not remote (it has no host = ...)")
    return remote_resource(config)


def split_remote_id(workflow_id: str) -> tuple[str, str] | None:
    """``("cluster", "12")`` for ``"cluster:12"``; None for a local id."""
    resource, colon, number = workflow_id.rpartition(":")
    if not colon:
        return None
    if not resource:
        raise InputError(f"workflow {workflow_id!r}: no resource before ':' (RESOURCE:ID)")
    return resource, number
