"""The evaluation engine, scorers, metric aggregation and statistics.

``whetstone.evaluate`` is this package and, called, the engine's `evaluate`: importing a
submodule binds the package to that name in ``whetstone``, so the package itself is callable.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    """A package that, called, runs `whetstone.evaluate.engine.evaluate`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``whetstone.evaluate(model, tasks, ...)``: see `whetstone.evaluate.engine.evaluate`."""
        from whetstone.evaluate.engine import evaluate

        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
