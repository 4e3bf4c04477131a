"""Errors a user can fix: the CLI prints their one-line message and exits with code 2."""


class SymzooError(Exception):
    """Base of every expected, user-fixable problem."""


class ConfigError(SymzooError, ValueError):
    """A config field is missing, unknown or out of range; the message names the field and the allowed values."""


class ZooError(SymzooError):
    """A zoo directory is missing, belongs to another config, or holds a corrupt shard."""
