"""Stage records: every stage of a pipeline is keyed by a hash of its inputs and stored.

A stage whose inputs hash to a finished record is not run again: its stored outputs are reused
(after a check that what they point to, such as a run or a model folder, still exists). A
failed stage is recorded with its error and runs again next time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from whetstone.store import Store, request_hash

#: Artifact kind of stage records.
STAGE_KIND = "stage"


class StageRecord(BaseModel):
    """One stage of one pipeline: its inputs, what it produced, when and how long it took."""

    pipeline: str
    stage: str
    key: str
    inputs: dict[str, Any]
    status: Literal["finished", "failed"]
    started_at: datetime
    finished_at: datetime
    seconds: float
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    refs: list[str] = Field(default_factory=list)


class StageReporter(Protocol):
    """Hears when stages start and end (the CLI prints a line for each)."""

    def stage_started(self, stage: str) -> None:
        """A stage begins to run (not called for a reused stage)."""

    def stage_finished(self, record: StageRecord, reused: bool) -> None:
        """A stage is done, or was found finished with the same inputs."""


def stage_key(pipeline: str, stage: str, inputs: dict[str, Any]) -> str:
    """The artifact key of a stage: `pipeline/stage/` and a hash of its inputs."""
    return f"{pipeline}/{stage}/{request_hash(_jsonable(inputs))[:20]}"


def _jsonable(obj: Any) -> Any:
    import pydantic_core

    return pydantic_core.to_jsonable_python(obj, fallback=str)


class StageLedger:
    """Runs stages once: a stage with a finished record for the same inputs is reused."""

    def __init__(
        self,
        store: Store,
        pipeline: str,
        reporter: StageReporter | None = None,
        rerun: Callable[[str], bool] = lambda stage: False,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.reporter = reporter
        self.rerun = rerun
        self.records: list[StageRecord] = []
        self.reused: list[str] = []

    def find(self, stage: str, inputs: dict[str, Any]) -> StageRecord | None:
        """The finished record of this stage with these inputs, if one is stored."""
        row = self.store.get_artifact(STAGE_KIND, stage_key(self.pipeline, stage, inputs))
        if row is None:
            return None
        record = StageRecord.model_validate(row.payload)
        return record if record.status == "finished" else None

    def run(
        self,
        stage: str,
        inputs: dict[str, Any],
        work: Callable[[], dict[str, Any]],
        *,
        still_valid: Callable[[dict[str, Any]], bool] = lambda outputs: True,
        refs: Callable[[dict[str, Any]], list[str]] = lambda outputs: [],
    ) -> StageRecord:
        """The stage's record: reused when finished with the same inputs, else `work()` runs.

        `work` returns the stage's outputs (JSON values). An exception from it is recorded as
        a failed stage (with its message) and raised again.
        """
        inputs = _jsonable(inputs)
        key = stage_key(self.pipeline, stage, inputs)
        found = None if self.rerun(stage) else self.find(stage, inputs)
        if found is not None and still_valid(found.outputs):
            self._done(found, reused=True)
            return found
        if self.reporter:
            self.reporter.stage_started(stage)
        started, t0 = datetime.now(UTC), time.perf_counter()
        try:
            outputs = _jsonable(work())
        except Exception as err:
            self._save(stage, key, inputs, started, t0, {}, "failed", str(err), [])
            raise
        record = self._save(
            stage, key, inputs, started, t0, outputs, "finished", None, refs(outputs)
        )
        self._done(record, reused=False)
        return record

    def _save(
        self,
        stage: str,
        key: str,
        inputs: dict[str, Any],
        started: datetime,
        t0: float,
        outputs: dict[str, Any],
        status: Literal["finished", "failed"],
        error: str | None,
        refs: list[str],
    ) -> StageRecord:
        record = StageRecord(
            pipeline=self.pipeline,
            stage=stage,
            key=key,
            inputs=inputs,
            status=status,
            started_at=started,
            finished_at=datetime.now(UTC),
            seconds=round(time.perf_counter() - t0, 3),
            outputs=outputs,
            error=error,
            refs=refs,
        )
        self.store.put_artifact(STAGE_KIND, key, record.model_dump(mode="json"), refs=refs)
        if status == "failed":
            self.records.append(record)
        return record

    def _done(self, record: StageRecord, reused: bool) -> None:
        self.records.append(record)
        if reused:
            self.reused.append(record.stage)
        if self.reporter:
            self.reporter.stage_finished(record, reused)
