"""Conformance checks for plug-ins, shipped with whetstone (as ``optuna.testing`` and
scikit-learn's ``check_estimator`` are): the project runs them over every registered backend,
metric, detector, executor and step, and a plug-in author runs them over theirs.

Each ``check_*`` raises ``AssertionError`` naming the entry and the broken promise; checks of a
capability the entry does not offer (a classifier that scores no log-likelihoods) are skipped
when the entry refuses it with a ``ModelError``.
"""

from whetstone.testing.checks import (
    check_backend,
    check_detector,
    check_executor,
    check_metric,
    check_step,
)

__all__ = ["check_backend", "check_detector", "check_executor", "check_metric", "check_step"]
