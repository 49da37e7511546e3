"""One local Ray cluster of 2 CPUs shared by every Ray test of the session (start-up is slow)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[ModuleType]:
    """A new local cluster (never one already running on this machine), shut down at the end."""
    ray = pytest.importorskip("ray")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    yield ray
    ray.shutdown()
