"""Exceptions users see as one clear line (the CLI prints them and exits 2)."""


class JobbridgeError(Exception):
    """Base of the errors jobbridge reports to users without a traceback."""


class InputError(JobbridgeError):
    """Bad user input (workflow file, configuration, command line): exit status 2."""


class ConfigurationError(InputError):
    """The configuration file or a resource's options are invalid."""


class UnknownSchedulerError(InputError):
    """A scheduler type that no installed package provides."""


class StoreError(JobbridgeError):
    """The state database cannot be read or written (disk full, read-only home...)."""
