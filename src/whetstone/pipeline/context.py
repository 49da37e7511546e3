"""What the stages of one pipeline pass share, and the models they evaluate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from whetstone.evaluate.engine import PreparedTask, Reporter
from whetstone.pipeline.schema import ModelOptions, PipelineConfig
from whetstone.pipeline.selection import CandidateResult
from whetstone.pipeline.stages import StageLedger, StageReporter
from whetstone.store import Store


class PipelineReporter(StageReporter, Reporter, Protocol):
    """Progress of a pipeline: stage lines and the evaluation progress bars."""


@dataclass
class PipelineContext:
    """The configuration, store, stage ledger and prepared tasks of one pipeline pass."""

    config: PipelineConfig
    store: Store
    ledger: StageLedger
    tasks: list[PreparedTask]
    reporter: PipelineReporter | None
    notes: list[str] = field(default_factory=list)
    failed: list[CandidateResult] = field(default_factory=list)

    @property
    def workdir(self) -> Path:
        """The pipeline's output folder."""
        return self.config.workdir_path

    @property
    def names(self) -> list[str]:
        """The task names, in order."""
        return [t.config.name for t in self.tasks]

    def task(self, name: str) -> PreparedTask:
        """The prepared task of this name."""
        return next(t for t in self.tasks if t.config.name == name)


@dataclass
class ModelToEvaluate:
    """A model to evaluate: its name in the comparison, origin, spec and load options, the
    stage it came from, and the tasks it answers (None: all)."""

    name: str
    origin: str
    spec: str
    options: ModelOptions
    upstream: str = ""
    tasks: list[str] | None = None
    artifact: str | None = None


def fingerprint(spec: str) -> str:
    """A cheap identity of a model spec: for local files, their sizes and modification times."""
    path = Path(spec).expanduser()
    if not path.exists():
        return spec
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(str(p.relative_to(path) if path.is_dir() else p.name), p.stat()) for p in files]
    return spec + "|" + ";".join(f"{n}:{s.st_size}:{s.st_mtime_ns}" for n, s in stats)
