"""A study whose trials really fine-tune: memory is given back between trials, only the best
models stay, and the best model is compared with the untrained one."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import yaml

from whetstone.optimize import tune
from whetstone.optimize.memory import rss_bytes

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

MB = 1 << 20


@pytest.fixture(scope="module")
def small_bert_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A 4-layer BERT of 11M parameters: a trial holds ~200 MB (weights, gradients, Adam)."""
    folder = tmp_path_factory.mktemp("small-bert")
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return folder


class RssAfterTrials:
    """Resident memory after each finished trial."""

    def __init__(self) -> None:
        self.rss: list[int] = []

    def study_started(self, name: str, done: int, total: int) -> None:
        """Nothing to do."""

    def trial_finished(self, trial: Any) -> None:
        """Measure."""
        self.rss.append(rss_bytes())


def training_objects() -> list[Any]:
    """Every live model, optimizer and trainer in this process."""
    kinds = (transformers.PreTrainedModel, torch.optim.Optimizer, transformers.Trainer)
    return [o for o in gc.get_objects() if isinstance(o, kinds)]


@pytest.mark.slow
def test_trials_give_their_memory_back(tmp_path, small_bert_dir, sentiment_dir):
    finetune = {
        "model": str(small_bert_dir),
        "data": {
            "task": str(sentiment_dir / "sent.yaml"),
            "path": str(sentiment_dir / "sent_train.jsonl"),
            "limit": 32,
            "max_length": 16,
        },
        "training": {"epochs": 1, "batch_size": 16},
    }
    config = {
        "study": "memory",
        "trainer": {"kind": "finetune", "config": finetune},
        "search_space": {
            "training.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
        },
        "objectives": [{"task": "sent", "metric": "accuracy"}],
        "validation": {"tasks": [str(sentiment_dir / "sent.yaml")]},
        "sampler": {"type": "random"},
        "n_trials": 5,
        "keep_best": 2,
        "output_dir": str(tmp_path / "study"),
        "db": f"sqlite:///{tmp_path}/db.sqlite",
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    earlier = {id(o) for o in training_objects()}  # e.g. an encoder cached by another test
    before = rss_bytes()
    probe = RssAfterTrials()
    result = tune(path, progress=probe)

    assert [t.state for t in result.trials] == ["COMPLETE"] * 5
    # no model, optimizer or trainer outlives its trial
    assert [o for o in training_objects() if id(o) not in earlier] == []
    # after the first trial (one-time costs: imports, allocator pools) memory stays flat,
    # while one trial alone holds far more than the allowed drift
    assert max(probe.rss[1:]) - probe.rss[1] < 60 * MB, [r // MB for r in probe.rss]
    assert probe.rss[0] - before < 400 * MB

    kept = sorted(p.name for p in (tmp_path / "study").iterdir() if p.name.startswith("trial-"))
    ranked = sorted(result.trials, key=lambda t: (-(t.values or [0])[0], t.number))
    assert kept == sorted(f"trial-{t.number}" for t in ranked[:2])
    for name in kept:  # a kept trial is a normal model folder and nothing else
        assert sorted(p.name for p in (tmp_path / "study" / name).iterdir()) == ["model"]
    acc = next(m for m in result.comparison.metrics if m.metric == "accuracy")
    assert result.best_values == [pytest.approx(acc.b)]
    assert result.total_compute["train_samples"] == 5 * 32
