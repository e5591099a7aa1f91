"""Errors that genlab reports to a user as one clear line (the CLI maps them to exit status 2)."""

from __future__ import annotations


class GenlabError(Exception):
    """Base class: bad input a user can fix. The message is the whole explanation."""


class ConfigError(GenlabError):
    """A configuration key or value is wrong."""


class DataError(GenlabError):
    """A data file is missing, unreadable, corrupt, or holds non-finite values."""


class TrainingDiverged(GenlabError):
    """The loss became NaN or infinite; the last good checkpoint is left intact."""
