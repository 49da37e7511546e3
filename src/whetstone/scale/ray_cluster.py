"""Connecting to a Ray cluster and turning its errors into one-line whetstone errors."""

from __future__ import annotations

import logging
import os
import socket
from types import ModuleType
from typing import Any

from whetstone.errors import ModelError, WhetstoneError, missing_extra

FORWARDED_ENV = ("WHETSTONE_TRAINER_MODULES", "WHETSTONE_CACHE", "HF_HUB_OFFLINE")
"""Variables of the driver's environment that workers get too (trainer plugins, caches)."""


def runtime_env(*names: str) -> dict[str, Any]:
    """Ray `runtime_env` options giving workers the driver's value of `FORWARDED_ENV` and
    `names` (those that are set); empty when none is, so workers start as plain ones."""
    env = {k: os.environ[k] for k in (*FORWARDED_ENV, *names) if os.environ.get(k)}
    return {"runtime_env": {"env_vars": env}} if env else {}


def import_ray() -> ModuleType:
    """The `ray` module, or the error that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise missing_extra("ray", "ray") from exc
    return ray


def connect(address: str | None) -> bool:
    """Connect this process to Ray; True when this call connected (and so must disconnect).

    `address` is what `ray start --head` printed (`HOST:6379`), `auto`, or `ray://HOST:10001`
    (Ray Client). Without one, Ray's own rule applies: `$RAY_ADDRESS`, else a cluster started
    on this machine with `ray start`, else a new local cluster of this machine's CPUs and GPUs.
    A process that is already connected keeps its connection.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address:
        check_reachable(address)
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
        raise WhetstoneError(
            f"--address {address or os.environ.get('RAY_ADDRESS') or '(local)'}: cannot connect "
            f"to a Ray cluster ({first_line(exc)}); expected the address that `ray start --head` "
            "printed (HOST:6379), auto, or ray://HOST:10001"
        ) from exc
    return True


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT (or ray://HOST:PORT) that nothing listens on.

    Ray itself keeps retrying an unreachable head node for minutes.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # `auto`, `local`, or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise WhetstoneError(
            f"--address {address}: cannot connect to a Ray cluster ({exc.strerror or exc}); "
            "expected the address that `ray start --head` printed (HOST:6379), auto, "
            "or ray://HOST:10001"
        ) from exc


def disconnect(connected: bool) -> None:
    """Disconnect when `connect` connected (a local cluster it started stops with it)."""
    if connected:
        import_ray().shutdown()


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def worker_error(exc: BaseException) -> WhetstoneError:
    """A one-line error for what failed on a worker; whetstone's own errors pass through."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, WhetstoneError):
        return type(cause)(*cause.args)  # the plain error, without Ray's traceback
    shown = cause if isinstance(cause, BaseException) else exc
    return ModelError(f"a Ray worker failed: {type(shown).__name__}: {first_line(shown)}")


def cluster_resources() -> dict[str, float]:
    """CPUs, GPUs and memory of the whole cluster (of every node, busy or not)."""
    return {k: float(v) for k, v in import_ray().cluster_resources().items()}
