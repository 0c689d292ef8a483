"""Resource configuration: an INI file with one section per computing resource.

Same shape as soma-workflow's server configuration (``scheduler_type = pbspro``),
so existing files keep working. Keys are case-insensitive. A ``[DEFAULT]``
section gives its keys to every resource, and may name the resource used when
none is asked for (``default_resource``; else ``localhost``).
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path

from .constants import DEFAULT_RESOURCE, DEFAULT_SCHEDULER_TYPE
from .errors import ConfigurationError


def jobbridge_home() -> Path:
    """The state directory: ``$JOBBRIDGE_HOME`` or ``~/.local/share/jobbridge``."""
    home = os.environ.get("JOBBRIDGE_HOME")
    return Path(home) if home else Path.home() / ".local" / "share" / "jobbridge"


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, each 0700: state is private to the user
    (``mkdir(parents=True, mode=...)`` would leave the parents 0755)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path


def default_config_path() -> Path:
    """``$JOBBRIDGE_CONFIG`` or ``~/.config/jobbridge/jobbridge.cfg``."""
    path = os.environ.get("JOBBRIDGE_CONFIG")
    return Path(path) if path else Path.home() / ".config" / "jobbridge" / "jobbridge.cfg"


#: The section whose keys every resource gets, and the key of it naming the default resource.
DEFAULT_SECTION = "DEFAULT"
DEFAULT_RESOURCE_KEY = "default_resource"


class Configuration:
    """The options of one computing resource; ``source`` is the file it was read
    from, ``inherited`` the keys it got from the file's ``[DEFAULT]`` section."""

    def __init__(self, resource_id: str, options: Mapping[str, object],
                 source: Path | None = None, inherited: frozenset[str] = frozenset()) -> None:
        self.resource_id = resource_id
        self.source = source
        self.inherited = inherited
        self._options: dict[str, str] = {}
        for key, value in options.items():
            self._options[key.lower()] = _as_option_text(key, value)

    @classmethod
    def from_dict(cls, resource_id: str, options: Mapping[str, object]) -> Configuration:
        """Build a configuration in code (tests, plug-ins, the Python API)."""
        return cls(resource_id, options)

    @classmethod
    def load(cls, resource_id: str | None = None, path: str | os.PathLike[str] | None = None
             ) -> Configuration:
        """Read ``resource_id``'s section from the configuration file.

        Without ``resource_id``: the file's ``default_resource``, else ``localhost``.
        Resource ``localhost``, unless the file has a section of that name, is the
        local machine with all cores.
        """
        file = Path(path) if path is not None else default_config_path()
        if not file.exists():
            if path is not None or "JOBBRIDGE_CONFIG" in os.environ:
                raise ConfigurationError(f"configuration file {file} does not exist")
            if resource_id in (None, DEFAULT_RESOURCE):
                return cls(DEFAULT_RESOURCE, {"scheduler_type": DEFAULT_SCHEDULER_TYPE})
            raise ConfigurationError(
                f"unknown resource {resource_id!r}: no configuration file at {file}")
        # [DEFAULT] read as a plain section: its keys are told apart from a resource's own
        parser = _ini_parser(default_section="\0")
        try:
            with file.open(encoding="utf-8") as stream:
                parser.read_file(stream)
        except configparser.MissingSectionHeaderError as error:
            raise ConfigurationError(f"{file}:{error.lineno}: no [resource] section header "
                                     f"before {error.line.strip()!r}") from None
        except configparser.ParsingError as error:  # name the first bad line, not just the file
            lineno, line = error.errors[0]  # line: repr() of the text, with its newline
            line = line[:-3] + line[-1] if line.endswith("\\n'") else line
            raise ConfigurationError(f"{file}:{lineno}: cannot parse {line}") from None
        except (configparser.Error, UnicodeDecodeError) as error:
            first_line = str(error).splitlines()[0]
            raise ConfigurationError(f"{file}: {first_line}") from None
        except OSError as error:
            raise ConfigurationError(f"{file}: {error.strerror}") from None
        defaults = (dict(parser.items(DEFAULT_SECTION)) if parser.has_section(DEFAULT_SECTION)
                    else {})
        default_resource = defaults.pop(DEFAULT_RESOURCE_KEY, "").strip()
        sections = [name for name in parser.sections() if name != DEFAULT_SECTION]
        known = ", ".join(_shown(name) for name in sections) or "none"
        if resource_id is None:
            resource_id = default_resource or DEFAULT_RESOURCE
            if resource_id not in sections and resource_id != DEFAULT_RESOURCE:
                raise ConfigurationError(
                    f"{file}: [{DEFAULT_SECTION}]: {DEFAULT_RESOURCE_KEY} {resource_id!r} is "
                    f"not a resource of the file (resources: {known})")
        if resource_id not in sections:
            if resource_id == DEFAULT_RESOURCE:
                return cls(DEFAULT_RESOURCE, {"scheduler_type": DEFAULT_SCHEDULER_TYPE})
            raise ConfigurationError(
                f"{file}: unknown resource {resource_id!r} (resources: {known})")
        own = dict(parser.items(resource_id))
        from .compat.soma_workflow.config import is_soma_section, soma_options

        if is_soma_section(own):  # soma-workflow's server configuration: its keys mapped
            own = soma_options(own, f"{file}: [{_shown(resource_id)}]")
        return cls(resource_id, {**defaults, **own}, source=file,
                   inherited=frozenset(defaults) - set(own))

    def check_keys(self, scheduler_type: str, allowed: frozenset[str],
                   known: Callable[[], frozenset[str]]) -> None:
        """Refuse a key ``scheduler_type`` does not read (``allowed``); a key of the
        ``[DEFAULT]`` section only when no scheduler reads it (``known()``)."""
        for key in sorted(set(self._options) - allowed - self.inherited):
            keys = ", ".join(sorted(allowed))
            raise ConfigurationError(f"{self._place()}: unknown key {key!r} "
                                     f"({scheduler_type} keys: {keys})")
        unknown = sorted(self.inherited - allowed)
        if unknown and (unknown := sorted(set(unknown) - known())):
            raise ConfigurationError(f"{self.source}: [{DEFAULT_SECTION}]: unknown key "
                                     f"{unknown[0]!r} (keys: {', '.join(sorted(known()))})")

    def _place(self) -> str:
        """Where this configuration's keys are written, for error messages."""
        if self.source is None:
            return f"resource {self.resource_id!r}"
        return f"{self.source}: [{_shown(self.resource_id)}]"

    # --- typed access ----------------------------------------------------------
    def get_scheduler_type(self) -> str:
        return self._options.get("scheduler_type", DEFAULT_SCHEDULER_TYPE).strip()

    def get(self, key: str, default: str | None = None) -> str | None:
        return self._options.get(key.lower(), default)

    def get_int(self, key: str, default: int = 0) -> int:
        text = self._options.get(key.lower())
        if text is None or not text.strip():
            return default
        try:
            value = int(text)
        except ValueError:
            raise self._bad(key, text, "a whole number") from None
        if value < 0:
            raise self._bad(key, text, "a number >= 0")
        return value

    def get_float(self, key: str, default: float) -> float:
        text = self._options.get(key.lower())
        if text is None or not text.strip():
            return default
        try:
            value = float(text)
        except ValueError:
            raise self._bad(key, text, "a number") from None
        if not value >= 0:  # also refuses nan
            raise self._bad(key, text, "a number >= 0")
        return value

    def get_words(self, key: str) -> list[str]:
        """An option holding words, split as a shell would (``queues``,
        ``native_specification``, ``container_command``)."""
        text = self._options.get(key.lower()) or ""
        try:
            return shlex.split(text)
        except ValueError as error:
            raise self._bad(key, text, f"a list of words ({error})") from None

    def options(self) -> dict[str, str]:
        return dict(self._options)

    def _bad(self, key: str, text: str, expected: str) -> ConfigurationError:
        return ConfigurationError(
            f"resource {self.resource_id!r}: option {key.lower()} = {text!r} is not {expected}")

    def __repr__(self) -> str:
        return f"Configuration({self.resource_id!r}, {self._options!r})"


def _shown(name: str) -> str:
    """A section name in a one-line message (quoted when it holds control characters)."""
    return name if name.isprintable() else repr(name)


def _as_option_text(key: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return shlex.join(value)
    raise ConfigurationError(f"option {key}: unsupported value {value!r}")


def configured_values(key: str) -> list[str]:
    """Every value the configuration file gives ``key``, in any section: what a
    scheduler's ``availability`` (which has no resource) may look at. An unreadable
    file gives none; loading a resource reports what is wrong with it."""
    return [value for _, value in _configured(key)]


def configured_sections(key: str) -> list[str]:
    """The sections of the configuration file that set ``key`` themselves (the
    remote resources, for ``host``: what ``jobbridge ui`` also shows)."""
    return [section for section, _ in _configured(key)]


def _configured(key: str) -> list[tuple[str, str]]:
    parser = _ini_parser()
    with contextlib.suppress(configparser.Error, OSError, UnicodeDecodeError):
        parser.read(default_config_path(), encoding="utf-8")
    return [(section, parser.get(section, key)) for section in parser.sections()
            if parser.has_option(section, key)]


def _ini_parser(default_section: str = configparser.DEFAULTSECT) -> configparser.ConfigParser:
    """soma-workflow's INI dialect: no interpolation; ``# ...`` or ``; ...`` after a
    blank ends a value (as in the README's examples), while ``{#command}`` stays."""
    return configparser.ConfigParser(interpolation=None, default_section=default_section,
                                     inline_comment_prefixes=("#", ";"))
