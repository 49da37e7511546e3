"""Scale-out: evaluation shards and tuning trials on a Ray cluster, studies on a shared database.

Ray is imported only when a Ray executor connects (`pip install 'whetstone[ray]'`).
"""

from whetstone.evaluate.executor import EXECUTORS, Executor, LocalExecutor, make_executor

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "make_executor"]
