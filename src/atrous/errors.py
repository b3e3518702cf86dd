"""Errors atrous raises for bad input: one clear message naming the file, key or shape."""


class AtrousError(Exception):
    """Base class; the CLI prints these as one line instead of a traceback."""


class DataError(AtrousError, ValueError):
    """A data file or folder is missing, unreadable or inconsistent."""


class ConfigError(AtrousError, ValueError):
    """A config file or override names an unknown key or a value of the wrong type."""


class CheckpointError(AtrousError, ValueError):
    """A checkpoint is unreadable or belongs to a different model."""
