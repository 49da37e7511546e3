"""Cheap Optuna objectives for the distributed-study tests (module-level, so they pickle)."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any


def quadratic(trial: Any, log: Path, delay: float = 0.0) -> float:
    """(x - 0.5)^2 + k; appends "NUMBER PID" to `log` when a call starts (one line per call)."""
    x = trial.suggest_float("x", -2.0, 2.0)
    k = trial.suggest_int("k", 0, 3)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{trial.number} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(delay)
    return reference(x, k)


def reference(x: float, k: int) -> float:
    """The objective's value, recomputed from the parameters."""
    return (x - 0.5) ** 2 + k


def failing(trial: Any) -> float:
    """An objective that always raises."""
    trial.suggest_float("x", 0.0, 1.0)
    raise ValueError("the objective cannot run here")


def calls(log: Path) -> list[tuple[int, int]]:
    """The (trial number, pid) of every call logged so far."""
    if not log.exists():
        return []
    return [(int(a), int(b)) for a, b in (line.split() for line in log.read_text().splitlines())]


def plain_worker(name: str, url: str, log: str, share: int, worker: int) -> None:
    """A worker process's share of study `name`: `quadratic` trials with a seeded sampler."""
    import optuna

    from whetstone.scale.ray_tune import run_study_worker

    objective = functools.partial(quadratic, log=Path(log), delay=0.05)
    run_study_worker(name, url, objective, share, worker, sampler=optuna.samplers.RandomSampler)
