"""Against reality: the embedded model on real AG News and ARC-Easy items, a planted weak slice,
false discoveries under permuted failures, and the judge with the embedded model."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

import whetstone
import whetstone.models
from tests.conftest import REPO, shared_data
from whetstone.diagnose import DiagnoseOptions, diagnose
from whetstone.diagnose.analysis import embed_texts
from whetstone.diagnose.clusters import choose_kmeans, ctfidf_terms
from whetstone.diagnose.failures import load_task_data, observations_from_samples
from whetstone.diagnose.judge import judge_failures, judge_prompt
from whetstone.diagnose.slices import derive_attributes, find_slices
from whetstone.diagnose.taxonomy import JudgeSpec, load_taxonomy
from whetstone.models.base import LoglikelihoodRequest
from whetstone.store import Store

pytestmark = pytest.mark.slow

N_ITEMS = 96
SOURCES = ["wire-a", "wire-b", "wire-c"]
PLANTED = "wire-c"
LABELS = {
    "World": "world news",
    "Sports": "sports",
    "Business": "business",
    "Sci/Tech": "science and technology",
}
TASK = """name: agnews
kind: classification
data:
  path: {path}
  columns: [text, label, source]
prompt: "Article: {{text}}\\nQuestion: Is this article about world news, sports, business, or \
science and technology?\\nAnswer:"
label: label
labels:
  World: world news
  Sports: sports
  Business: business
  Sci/Tech: science and technology
"""


@dataclass
class RealRuns:
    """Two runs of the embedded model on the same AG News items (gold labels of one source
    corrupted in the second) and one on ARC-Easy."""

    db: str
    clean: str
    planted: str
    clean_task: Path
    planted_task: Path
    planted_computed: int
    arc: str
    model: Any  # the embedded model, loaded once


def _write(folder: Path, name: str, rows: list[list[str]]) -> Path:
    data = folder / f"{name}.tsv"
    with data.open("w", newline="") as f:
        csv.writer(f, delimiter="\t").writerows(rows)
    task = folder / f"{name}.yaml"
    task.write_text(TASK.format(path=data.name))
    return task


def _corrupt(label: str, predicted: str) -> str:
    """The next label (in a fixed order) that is neither the gold one nor the model's answer."""
    order = list(LABELS)
    j = order.index(label)
    return next(order[(j + k) % 4] for k in range(1, 4) if LABELS[order[(j + k) % 4]] != predicted)


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> RealRuns:
    """The embedded model on the first AG News test items, each with a 'source' column; then
    the same items with the gold labels of one source corrupted to a label the model did not
    answer (its likelihood answers do not depend on the gold label, so that source's items all
    become failures while the model's answers stay the same)."""
    folder = tmp_path_factory.mktemp("diagnose-real")
    rows = list(csv.reader(shared_data("agnews_test.tsv").open(), delimiter="\t"))[:N_ITEMS]
    # sources dealt in turn within each label, so that no source differs in its mix of labels
    dealt: Counter[str] = Counter()
    clean_rows = []
    for text, label in rows:
        clean_rows.append([text, label, SOURCES[dealt[label] % len(SOURCES)]])
        dealt[label] += 1
    clean_task = _write(folder, "clean", clean_rows)
    db = f"sqlite:///{folder / 'db.sqlite'}"
    model = whetstone.models.load_model("default")
    clean = whetstone.evaluate(model, [clean_task], db=db)
    answer = {s.id: str(s.prediction) for s in clean.samples}
    planted_rows = [
        [text, _corrupt(label, answer[str(i)]) if source == PLANTED else label, source]
        for i, (text, label, source) in enumerate(clean_rows)
    ]
    planted_task = _write(folder, "planted", planted_rows)
    # the same prompts and labels: every model answer comes from the response cache
    planted = whetstone.evaluate(model, [planted_task], db=db)
    arc = whetstone.evaluate(model, [REPO / "benchmarks" / "arc_easy.yaml"], db=db, limit=30)
    return RealRuns(
        db,
        clean.result.run_id,
        planted.result.run_id,
        clean_task,
        planted_task,
        planted.computed,
        arc.result.run_id,
        model,
    )


def test_planted_weak_slice_is_found_first(real_runs: RealRuns, tmp_path: Path) -> None:
    assert real_runs.planted_computed == 0
    options = DiagnoseOptions(min_slice_size=15, clusters=False)
    result = diagnose(
        [real_runs.planted],
        db=real_runs.db,
        tasks=[real_runs.planted_task],
        options=options,
        out_dir=tmp_path,
    )
    top = result.slices[0]
    assert top.description == f"source = {PLANTED}" and top.significant
    planted_rows = list(
        csv.reader(real_runs.planted_task.with_suffix(".tsv").open(), delimiter="\t")
    )
    assert top.size == sum(r[2] == PLANTED for r in planted_rows) and top.failures == top.size
    # the same items without the corruption: no source is a weak slice
    clean = diagnose(
        [real_runs.clean],
        db=real_runs.db,
        tasks=[real_runs.clean_task],
        options=options.model_copy(update={"max_slices": 10_000}),
        save=False,
    )
    # (a pair such as 'source = wire-a AND label = business' is weak through its label)
    assert not any(
        s.significant and s.conditions[0]["attribute"] == "source" and len(s.conditions) == 1
        for s in clean.slices
    )
    assert f"source = {PLANTED}" in (tmp_path / "diagnosis.html").read_text()
    # the item embeddings were kept in the response cache for the second diagnosis
    from whetstone.diagnose.analysis import _encoder_key
    from whetstone.store import request_hash

    texts = {
        o.text
        for o in observations_from_samples(
            real_runs.clean,
            Store(real_runs.db).get_samples(real_runs.clean),
            data=load_task_data([real_runs.clean_task]),
        )
    }
    hashes = [request_hash(["embedding", t[:1000]]) for t in texts]
    assert len(Store(real_runs.db).cache_get(_encoder_key(), "embedding", hashes)) == len(texts)


def test_real_diagnosis_end_to_end(real_runs: RealRuns, tmp_path: Path) -> None:
    result = diagnose(
        [real_runs.clean, real_runs.arc],
        db=real_runs.db,
        tasks=[real_runs.clean_task],
        options=DiagnoseOptions(min_slice_size=15),
        out_dir=tmp_path,
    )
    store = Store(real_runs.db)
    samples = store.get_samples(real_runs.clean)
    wrong = [s for s in samples if s.metrics["accuracy"] == 0]
    assert result.inputs.tasks["agnews"]["failures"] == len(wrong)
    # every AG News failure is a label confusion; the pairs match sklearn's confusion matrix
    pairs = {(p.gold, p.predicted): p.count for p in result.confused_pairs if p.task == "agnews"}
    labels = sorted({s.gold for s in samples} | {s.prediction for s in samples})
    matrix = confusion_matrix(
        [s.gold for s in samples], [s.prediction for s in samples], labels=labels
    )
    for i, g in enumerate(labels):
        for j, p in enumerate(labels):
            if i != j and matrix[i, j]:
                assert pairs.get((g, p)) == matrix[i, j]
    semantic = next(c for c in result.categories if c.name == "semantic")
    assert semantic.by_task.get("agnews") == len(wrong)
    # ARC-Easy failures with knowledge or reasoning cues get those categories
    arc_fail = result.inputs.tasks["arc_easy"]["failures"]
    assert arc_fail > 0
    assert sum(c.by_task.get("arc_easy", 0) for c in result.categories) > 0
    # discovered categories cover every failure and carry distinctive terms
    assert sum(c.count for c in result.clusters) == result.inputs.failures
    assert all(c.terms and c.examples for c in result.clusters)
    html = (tmp_path / "diagnosis.html").read_text()
    assert "Discovered categories" in html and "Weak slices" in html


def test_false_discoveries_on_real_attributes(real_runs: RealRuns) -> None:
    """The real items' attributes (MiniLM topics, keywords, lengths, labels) with failures
    shuffled across items: there is nothing to find, and at most ~5% of shuffles find anything."""
    store = Store(real_runs.db)
    data = load_task_data([real_runs.clean_task])
    obs = observations_from_samples(real_runs.clean, store.get_samples(real_runs.clean), data=data)
    vectors = embed_texts([o.text for o in obs], store)
    choice = choose_kmeans(vectors, k_max=4, seed=0)
    names = [" / ".join(t) for t in ctfidf_terms([o.text for o in obs], choice.labels, 3)]
    table = derive_attributes(obs, choice.labels, names, min_size=15)
    failed = np.array([o.failed for o in obs])
    rng = np.random.default_rng(0)
    reps = 200
    found = 0
    for _ in range(reps):
        _, search = find_slices(table, rng.permutation(failed), min_size=15, fdr=0.05)
        found += search.significant > 0
    assert found / reps <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / reps)


def test_judge_with_the_embedded_model(real_runs: RealRuns) -> None:
    """The embedded model judges a handful of real failures: its choices are the calibrated
    argmax of its own log-likelihoods, recomputed here directly."""
    store = Store(real_runs.db)
    obs = observations_from_samples(real_runs.arc, store.get_samples(real_runs.arc))
    failures = [o for o in obs if o.failed][:4]
    taxonomy = load_taxonomy()
    model = real_runs.model
    spec = JudgeSpec(model="default", max_failures=4)
    judged = judge_failures(failures, taxonomy, spec, model=model, store=store)
    assert set(judged) == {o.uid for o in failures}
    names = taxonomy.names()
    null = judge_prompt(None, taxonomy)
    prompts = [null] + [judge_prompt(o, taxonomy, spec.max_chars) for o in failures]
    scores = np.array(
        [
            r.logprob
            for r in model.loglikelihood(
                [LoglikelihoodRequest(p, f" {n}") for p in prompts for n in names]
            )
        ]
    ).reshape(len(prompts), len(names))
    for o, row in zip(failures, scores[1:] - scores[0], strict=True):
        assert judged[o.uid] == names[int(np.argmax(row))]
