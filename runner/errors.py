"""Errors a user can fix. Every layer raises a subclass of :class:`UserError`; the command-line
entry points print its message as one line on stderr and exit with status 2, without a traceback."""


class UserError(Exception):
    """A problem with the user's input (config, data file, flag, path) and how to fix it."""

    exit_code = 2


class DataError(UserError):
    """An ARC data file or task is malformed or missing."""


class EncoderSpecError(UserError):
    """A grid encoder specification cannot be parsed or names an unknown encoder."""


class ConfigError(UserError):
    """A run configuration or flag value is invalid."""


class ModelError(UserError):
    """A model folder is missing or does not hold a usable model and tokenizer."""
