"""results.json and samples.jsonl, written atomically so a crash leaves no half-written file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from whetstone.records import RunResult, SampleRecord


def _atomic_write(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(out_dir: Path, run: RunResult, samples: list[SampleRecord]) -> None:
    """Write `results.json` and `samples.jsonl` (one record per item) into `out_dir`."""
    _atomic_write(out_dir / "samples.jsonl", (s.model_dump_json() + "\n" for s in samples))
    _atomic_write(out_dir / "results.json", [run.model_dump_json(indent=2) + "\n"])


def read_samples(path: Path) -> list[SampleRecord]:
    """A samples.jsonl file, or the one inside a folder."""
    path = path / "samples.jsonl" if path.is_dir() else path
    with path.open(encoding="utf-8") as fh:
        return [SampleRecord.model_validate_json(line) for line in fh if line.strip()]
