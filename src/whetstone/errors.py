"""Errors that whetstone reports to the user as one line with exit code 2."""

from __future__ import annotations


class WhetstoneError(Exception):
    """A problem with the user's input (file, field, model, server): shown as one line, exit 2."""

    exit_code = 2


class ConfigError(WhetstoneError):
    """A task, suite or pipeline file that does not match the contract."""


class DataError(WhetstoneError):
    """A data file that is missing, empty or lacks a column the task needs."""


class ModelError(WhetstoneError):
    """A model that cannot be loaded or a server that does not answer."""


def missing_extra(package: str, extra: str) -> WhetstoneError:
    """The error raised when an optional dependency is not installed."""
    return WhetstoneError(f"this needs the '{package}' package: pip install 'whetstone[{extra}]'")
