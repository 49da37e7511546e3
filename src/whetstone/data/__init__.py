"""Data shipped with the package: example tasks for the quickstart."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["examples_dir"]


def examples_dir() -> Path:
    """The folder of the shipped example tasks (YAML task files, their data and `suite.yaml`)."""
    folder = resources.files("whetstone.data") / "examples"
    path = Path(str(folder))
    if not path.is_dir():  # only a zipped install would get here
        raise FileNotFoundError(f"the example tasks are not unpacked on disk ({folder})")
    return path
