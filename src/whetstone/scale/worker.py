"""One evaluation worker: loads the model once and answers shards of requests.

A plain class, so it runs the same in this process and as a Ray actor (`ray.remote(ModelWorker)`)
on any node of a cluster; a restarted actor loads the model again on its first shard.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from whetstone.models import LanguageModel, load_model
from whetstone.records import ModelIdentity
from whetstone.scale.shards import METHODS


class WorkerInfo(BaseModel):
    """What a started worker reports: the model it loaded and where it runs."""

    identity: ModelIdentity
    has_chat_template: bool
    pid: int
    host: str


class ModelWorker:
    """Holds one loaded model (from a spec and `load_model` options) and computes shards."""

    def __init__(self, spec: str, options: dict[str, Any], num_cpus: float | None = None) -> None:
        self.spec = spec
        self.options = dict(options)
        self.num_cpus = num_cpus
        self.model_: LanguageModel | None = None

    def _model(self) -> LanguageModel:
        if self.model_ is None:
            self.model_ = load_model(self.spec, **self.options)
            if self.num_cpus and "torch" in sys.modules:
                import torch  # a worker uses the CPUs it was given, not every core of the node

                torch.set_num_threads(max(1, int(self.num_cpus)))
        return self.model_

    def start(self) -> WorkerInfo:
        """Load the model and say which one it is (the driver checks that all workers agree)."""
        model = self._model()
        return WorkerInfo(
            identity=model.identity,
            has_chat_template=model.has_chat_template,
            pid=os.getpid(),
            host=socket.gethostname(),
        )

    def compute(self, kind: str, requests: Sequence[Any]) -> list[Any]:
        """Answers to one shard of `kind` requests (loglikelihood, rolling or generation)."""
        return list(getattr(self._model(), METHODS[kind])(requests))

    def run_shard(self, kind: str, requests: Sequence[Any]) -> tuple[int, list[Any]]:
        """`compute`, with this process's id (the driver counts shards per worker process)."""
        return os.getpid(), self.compute(kind, requests)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        """The model's chat template applied to `messages`."""
        return self._model().chat_prompt(messages)

    def pid(self) -> int:
        """The process id of this worker."""
        return os.getpid()
