"""Resource configuration: an INI file with one section per computing resource.

Same shape as soma-workflow's server configuration (``scheduler_type = pbspro``),
so existing files keep working. Keys are case-insensitive.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shlex
from collections.abc import Mapping
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


class Configuration:
    """The options of one computing resource."""

    def __init__(self, resource_id: str, options: Mapping[str, object]) -> None:
        self.resource_id = resource_id
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

        Without a file, resource ``localhost`` is the local machine with all cores.
        Without ``resource_id``, the file's only (or first) section is used.
        """
        file = Path(path) if path is not None else default_config_path()
        if not file.exists():
            if path is not None or "JOBBRIDGE_CONFIG" in os.environ:
                raise ConfigurationError(f"configuration file {file} does not exist")
            if resource_id in (None, DEFAULT_RESOURCE):
                return cls(DEFAULT_RESOURCE, {"scheduler_type": DEFAULT_SCHEDULER_TYPE})
            raise ConfigurationError(
                f"unknown resource {resource_id!r}: no configuration file at {file}")
        parser = configparser.ConfigParser(interpolation=None)
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
        sections = parser.sections()
        if resource_id is None:
            if not sections:
                return cls(DEFAULT_RESOURCE, {"scheduler_type": DEFAULT_SCHEDULER_TYPE})
            resource_id = sections[0]
        if not parser.has_section(resource_id):
            if resource_id == DEFAULT_RESOURCE:
                return cls(DEFAULT_RESOURCE, {"scheduler_type": DEFAULT_SCHEDULER_TYPE})
            known = ", ".join(s if s.isprintable() else repr(s) for s in sections) or "none"
            raise ConfigurationError(
                f"{file}: unknown resource {resource_id!r} (resources: {known})")
        return cls(resource_id, dict(parser.items(resource_id)))

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
    parser = configparser.ConfigParser(interpolation=None)
    with contextlib.suppress(configparser.Error, OSError, UnicodeDecodeError):
        parser.read(default_config_path(), encoding="utf-8")
    return [parser.get(section, key) for section in parser.sections()
            if parser.has_option(section, key)]
