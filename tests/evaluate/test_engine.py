"""`whetstone.evaluate` end to end on the shipped example tasks, checked by recomputation.

The fake model is a byte-level bigram table (`FakeModel.logprobs_`), so every log-likelihood,
prediction and metric here is recomputed from that table and the data files alone, with numpy,
scipy, scikit-learn and sacrebleu as the references, and compared with what the engine wrote
to results.json, samples.jsonl and the database.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sacrebleu
import yaml
from scipy import special, stats
from sklearn import metrics as skm

from tests.conftest import shared_data
from whetstone.data import examples_dir
from whetstone.evaluate.engine import Evaluation, evaluate
from whetstone.models.base import LoglikelihoodRequest
from whetstone.models.fake import BOS, EOS, FakeModel
from whetstone.records import TaskResult
from whetstone.store import Store

EXAMPLES = examples_dir()
SUITE = EXAMPLES / "suite.yaml"
TASKS = ["support_docs", "support_mc", "support_intents", "support_qa"]
REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- references


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def data(name: str) -> list[dict[str, Any]]:
    return read_jsonl(EXAMPLES / f"{name}.jsonl")


def bigram_sum(table: np.ndarray, ids: list[int], n_last: int) -> float:
    """Sum of log P(ids[j] | ids[j-1]) over the last `n_last` positions."""
    return float(sum(table[ids[j - 1], ids[j]] for j in range(len(ids) - n_last, len(ids))))


def reference_loglikelihood(
    table: np.ndarray, context: str, continuation: str, max_length: int = 2048
) -> tuple[float, bool, int]:
    """lm-evaluation-harness's definition on a byte-level bigram model, computed directly.

    Trailing whitespace of the context belongs to the continuation; an empty context is the
    BOS token; the sequence is cut to the last max_length + 1 tokens and only continuation
    tokens that still have a token before them are scored.
    """
    n_spaces = len(context.encode()) - len(context.rstrip().encode())
    ids = [BOS, *(context + continuation).encode()]
    ids = ids[-(max_length + 1) :]
    n = min(len(continuation.encode()) + n_spaces, len(ids) - 1)
    greedy = all(table[ids[j - 1]].argmax() == ids[j] for j in range(len(ids) - n, len(ids)))
    return bigram_sum(table, ids, n), greedy, n


def reference_greedy(table: np.ndarray, prompt: str, max_new_tokens: int, stop: list[str]) -> str:
    """Greedy bytes from the last prompt byte until EOS or the budget, decoded, cut at a stop."""
    prev = prompt.encode()[-1] if prompt else BOS
    out: list[int] = []
    for _ in range(max_new_tokens):
        prev = int(table[prev].argmax())
        if prev == EOS:
            break
        out.append(prev)
    text = bytes(b for b in out if b < 256).decode("utf-8", errors="replace")
    cuts = [text.find(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text


def squad_normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def ece_reference(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over equal-width bins (b/10, (b+1)/10]."""
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (confidence > lo) & (confidence <= hi) if b else confidence <= hi
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return total / confidence.size


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


# --------------------------------------------------------------------------- the run


@dataclass
class Recorder:
    """A Reporter that keeps what it was told."""

    totals: dict[str, int] = field(default_factory=dict)
    advanced: Counter[str] = field(default_factory=Counter)
    finished: list[str] = field(default_factory=list)
    current: str = ""

    def task_started(self, name: str, total: int) -> None:
        self.totals[name] = total
        self.current = name

    def advance(self, n: int) -> None:
        self.advanced[self.current] += n

    def task_finished(self, name: str, result: TaskResult) -> None:
        self.finished.append(name)


@dataclass
class SuiteRun:
    ev: Evaluation
    model: FakeModel
    out: Path
    db: str
    reporter: Recorder

    @property
    def results(self) -> dict[str, Any]:
        return json.loads((self.out / "results.json").read_text())

    @property
    def samples(self) -> list[dict[str, Any]]:
        return read_jsonl(self.out / "samples.jsonl")

    def task_samples(self, task: str) -> list[dict[str, Any]]:
        return [s for s in self.samples if s["task"] == task]

    def metric(self, task: str, name: str) -> dict[str, Any]:
        return dict(self.results["tasks"][task]["metrics"][name])


def expected_requests(limit: int | None = None) -> dict[str, int]:
    """How many model requests each example task makes, counted from the data files."""
    n_labels = len(yaml.safe_load((EXAMPLES / "support_intents.yaml").read_text())["labels"])
    cut = slice(0, limit)
    return {
        "support_docs": len(data("support_docs")[cut]),
        "support_mc": sum(len(r["choices"]) for r in data("support_mc")[cut]),
        "support_intents": n_labels * len(data("support_intents")[cut]),
        "support_qa": len(data("support_qa")[cut]),
    }


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    tmp = tmp_path_factory.mktemp("engine")
    db = f"sqlite:///{tmp / 'runs.db'}"
    model = FakeModel(seed=0)
    reporter = Recorder()
    ev = evaluate(model, [SUITE], db=db, out_dir=tmp / "out", reporter=reporter)
    return SuiteRun(ev, model, tmp / "out", db, reporter)


# --------------------------------------------------------------------------- outputs


def test_results_json_follows_the_design_schema(suite_run: SuiteRun) -> None:
    results = suite_run.results
    assert results["run_id"] == suite_run.ev.result.run_id
    assert re.fullmatch(r"[0-9a-f]{12}", results["run_id"])
    assert results["model"]["name"] == "fake-0" and results["model"]["backend"] == "fake"
    assert list(results["tasks"]) == TASKS
    expected_metrics = {
        "support_docs": {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"},
        "support_mc": {"acc", "acc_norm", "brier", "ece"},
        "support_intents": {"accuracy", "precision_macro", "recall_macro", "f1_macro", "ece"},
        "support_qa": {"exact_match", "token_f1", "bleu", "chrf", "rouge_l"},
    }
    for task in TASKS:
        metrics = results["tasks"][task]["metrics"]
        assert expected_metrics[task] <= set(metrics), task
        n_items = len(data(task))
        for name, m in metrics.items():
            assert set(m) == {"value", "ci_low", "ci_high", "n", "method", "too_few", "note"}
            assert m["method"], (task, name)
            if m["too_few"]:  # e.g. every item scored the same: no spread to resample
                assert m["ci_low"] is None and m["ci_high"] is None and m["note"], (task, name)
                continue
            assert m["n"] == n_items, (task, name)
            assert all(isinstance(m[k], float) for k in ("value", "ci_low", "ci_high")), (
                task,
                name,
            )
            assert m["ci_low"] <= m["value"] <= m["ci_high"], (task, name, m)


def test_samples_jsonl_has_one_record_per_item(suite_run: SuiteRun) -> None:
    samples = suite_run.samples
    assert [s["task"] for s in samples] == [t for t in TASKS for _ in data(t)]
    for task in TASKS:
        records = suite_run.task_samples(task)
        assert [s["id"] for s in records] == [row["id"] for row in data(task)]
        for s in records:
            assert {"task", "id", "prompt", "prediction", "gold", "metrics"} <= set(s)
            assert s["metrics"]
    mc = data("support_mc")
    for s, row in zip(suite_run.task_samples("support_mc"), mc, strict=True):
        assert len(s["loglikelihoods"]) == len(row["choices"])
        assert s["gold"] == row["answer"]
    n_labels = len(yaml.safe_load((EXAMPLES / "support_intents.yaml").read_text())["labels"])
    assert all(
        len(s["loglikelihoods"]) == n_labels for s in suite_run.task_samples("support_intents")
    )


def test_reporter_counts_every_request(suite_run: SuiteRun) -> None:
    expected = expected_requests()
    assert suite_run.reporter.totals == expected
    assert dict(suite_run.reporter.advanced) == expected
    assert suite_run.reporter.finished == TASKS


# --------------------------------------------------------------------------- metrics, recomputed


def test_multiple_choice_loglikelihoods_and_metrics_recomputed(suite_run: SuiteRun) -> None:
    table = suite_run.model.logprobs_
    rows = data("support_mc")
    samples = suite_run.task_samples("support_mc")
    lls = []
    for s, row in zip(samples, rows, strict=True):
        prompt = f"Question: {row['question']}\nAnswer:"
        assert s["prompt"] == prompt
        ref = [reference_loglikelihood(table, prompt, " " + c)[0] for c in row["choices"]]
        np.testing.assert_allclose(s["loglikelihoods"], ref, rtol=0, atol=1e-9)
        lls.append(ref)
    ll = np.array(lls)
    gold = np.array([row["answer"] for row in rows])
    lengths = np.array([[len(c) for c in row["choices"]] for row in rows])
    acc = ll.argmax(axis=1) == gold
    acc_norm = (ll / lengths).argmax(axis=1) == gold
    probs = special.softmax(ll, axis=1)
    brier = ((probs - np.eye(ll.shape[1])[gold]) ** 2).sum(axis=1)
    assert [s["prediction"] for s in samples] == list(ll.argmax(axis=1))
    assert [s["metrics"]["acc"] for s in samples] == list(acc.astype(float))

    assert suite_run.metric("support_mc", "acc")["value"] == pytest.approx(acc.mean(), abs=1e-12)
    assert suite_run.metric("support_mc", "acc_norm")["value"] == pytest.approx(
        acc_norm.mean(), abs=1e-12
    )
    assert suite_run.metric("support_mc", "brier")["value"] == pytest.approx(brier.mean(), rel=1e-9)
    assert suite_run.metric("support_mc", "ece")["value"] == pytest.approx(
        ece_reference(probs.max(axis=1), acc.astype(float)), rel=1e-9
    )
    low, high = wilson(int(acc.sum()), acc.size)
    assert suite_run.metric("support_mc", "acc")["ci_low"] == pytest.approx(low, rel=1e-9)
    assert suite_run.metric("support_mc", "acc")["ci_high"] == pytest.approx(high, rel=1e-9)


def _fewshot_blocks(prompt: str, k: int) -> tuple[list[str], str]:
    parts = prompt.split("\n\n")
    assert len(parts) == k + 1, prompt
    return parts[:k], parts[k]


def test_classification_predictions_and_metrics_recomputed(suite_run: SuiteRun) -> None:
    table = suite_run.model.logprobs_
    spec = yaml.safe_load((EXAMPLES / "support_intents.yaml").read_text())
    labels: dict[str, str] = spec["labels"]
    names = list(labels.values())
    train = {
        f"Customer message: {r['text']}\nCategory: {labels[r['label']]}"
        for r in data("support_intents_train")
    }
    rows = data("support_intents")
    samples = suite_run.task_samples("support_intents")
    gold, predicted = [], []
    for s, row in zip(samples, rows, strict=True):
        shots, own = _fewshot_blocks(s["prompt"], spec["fewshot"]["k"])
        assert own == f"Customer message: {row['text']}\nCategory:"
        assert set(shots) <= train and len(set(shots)) == len(shots)
        ref = [reference_loglikelihood(table, s["prompt"], " " + name)[0] for name in names]
        np.testing.assert_allclose(s["loglikelihoods"], ref, rtol=0, atol=1e-9)
        predicted.append(names[int(np.argmax(ref))])
        gold.append(labels[row["label"]])
    assert [s["prediction"] for s in samples] == predicted
    assert [s["gold"] for s in samples] == gold

    def value(name: str) -> float:
        return float(suite_run.metric("support_intents", name)["value"])

    assert value("accuracy") == pytest.approx(skm.accuracy_score(gold, predicted), abs=1e-12)
    for average in ("macro", "micro", "weighted"):
        suffix = f"_{average}"
        for name, fn in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            expected = fn(gold, predicted, labels=names, average=average, zero_division=0)
            assert value(name + suffix) == pytest.approx(expected, abs=1e-12), name + suffix


def test_perplexity_recomputed_from_the_bigram_table(suite_run: SuiteRun) -> None:
    table = suite_run.model.logprobs_
    rows = data("support_docs")
    samples = suite_run.task_samples("support_docs")
    logprobs, n_tokens, n_words, n_bytes = [], [], [], []
    for s, row in zip(samples, rows, strict=True):
        ids = [BOS, *row["text"].encode()]
        lp = bigram_sum(table, ids, len(ids) - 1)  # every byte given the one before it
        assert s["metrics"]["logprob"] == pytest.approx(lp, rel=1e-12)
        assert s["metrics"]["n_tokens"] == len(ids) - 1
        logprobs.append(lp)
        n_tokens.append(len(ids) - 1)
        n_words.append(len(re.split(r"\s+", row["text"])))
        n_bytes.append(len(row["text"].encode()))
    total = sum(logprobs)
    got = {
        m: suite_run.metric("support_docs", m)["value"]
        for m in suite_run.results["tasks"]["support_docs"]["metrics"]
    }
    assert got["perplexity"] == pytest.approx(math.exp(-total / sum(n_tokens)), rel=1e-12)
    assert got["byte_perplexity"] == pytest.approx(math.exp(-total / sum(n_bytes)), rel=1e-12)
    assert got["word_perplexity"] == pytest.approx(math.exp(-total / sum(n_words)), rel=1e-9)
    assert got["bits_per_byte"] == pytest.approx(-total / sum(n_bytes) / math.log(2), rel=1e-12)


def test_generation_predictions_and_corpus_metrics_recomputed(suite_run: SuiteRun) -> None:
    table = suite_run.model.logprobs_
    spec = yaml.safe_load((EXAMPLES / "support_qa.yaml").read_text())
    train = {f"Question: {r['question']}\nAnswer: {r['answer']}" for r in data("support_qa_train")}
    rows = data("support_qa")
    samples = suite_run.task_samples("support_qa")
    predictions, refs = [], []
    for s, row in zip(samples, rows, strict=True):
        shots, own = _fewshot_blocks(s["prompt"], spec["fewshot"]["k"])
        assert own == f"Question: {row['question']}\nAnswer:"
        assert set(shots) <= train and len(set(shots)) == len(shots)
        output = reference_greedy(table, s["prompt"], spec["max_new_tokens"], spec["stop"])
        assert s["prediction"] == output.strip()
        assert s["gold"] == [row["answer"]]
        predictions.append(output.strip())
        refs.append(row["answer"])
    chrf = sacrebleu.corpus_chrf(predictions, [refs]).score
    bleu = sacrebleu.corpus_bleu(predictions, [refs]).score
    em = np.mean(
        [squad_normalize(p) == squad_normalize(r) for p, r in zip(predictions, refs, strict=True)]
    )
    assert suite_run.metric("support_qa", "chrf")["value"] == pytest.approx(chrf, rel=1e-9)
    assert suite_run.metric("support_qa", "bleu")["value"] == pytest.approx(bleu, abs=1e-9)
    assert suite_run.metric("support_qa", "exact_match")["value"] == pytest.approx(em, abs=1e-12)


def test_exact_match_counts_the_items_whose_target_is_the_greedy_output(tmp_path: Path) -> None:
    """A generation task built so that exactly half the targets are what the model says."""
    model = FakeModel(seed=0)
    rows = data("support_qa")[:20]
    for i, row in enumerate(rows):
        out = reference_greedy(model.logprobs_, row["question"], 12, ["\n"]).strip()
        row["answer"] = out if i % 2 == 0 else "xyzzy plugh"
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "qa.yaml").write_text(
        "name: echo_qa\nkind: generation\ndata: {path: qa.jsonl, id: id}\n"
        'prompt: "{question}"\ntarget: answer\nmax_new_tokens: 12\nstop: ["\\n"]\n'
    )
    ev = evaluate(model, [tmp_path / "qa.yaml"], db=f"sqlite:///{tmp_path / 'w.db'}")
    metrics = ev.result.tasks["echo_qa"].metrics
    assert metrics["exact_match"].value == 0.5
    assert metrics["token_f1"].value == pytest.approx(0.5, abs=1e-12)
    hits = [s.metrics["exact_match"] for s in ev.samples]
    assert hits == [1.0 - i % 2 for i in range(20)]


# --------------------------------------------------------------------------- prompts and limits


def test_fewshot_prompts_are_deterministic_exclude_the_item_and_differ(tmp_path: Path) -> None:
    """Few-shot examples drawn from the task's own data file never show the item itself."""
    (tmp_path / "mc.yaml").write_text(
        "name: mc_fewshot\nkind: multiple_choice\n"
        f"data: {{path: {EXAMPLES / 'support_mc.jsonl'}, id: id}}\n"
        'prompt: "Question: {question}\\nAnswer:"\nchoices: choices\nanswer: answer\n'
        "fewshot: {k: 3, seed: 7}\n"
    )
    rows = data("support_mc")
    solved = {
        f"Question: {r['question']}\nAnswer: {r['choices'][r['answer']]}": r["id"] for r in rows
    }
    db = f"sqlite:///{tmp_path / 'w.db'}"
    full = evaluate(FakeModel(0), [tmp_path / "mc.yaml"], db=db)
    again = evaluate(FakeModel(0), [tmp_path / "mc.yaml"], db=db, limit=5)

    shot_sets = set()
    for s, row in zip(full.samples, rows, strict=True):
        shots, own = _fewshot_blocks(s.prompt, 3)
        assert own == f"Question: {row['question']}\nAnswer:"
        shot_ids = [solved[b] for b in shots]  # each block is a solved item of the data file
        assert row["id"] not in shot_ids and len(set(shot_ids)) == 3
        shot_sets.add(tuple(shot_ids))
    assert len(shot_sets) > len(rows) // 2  # the draw depends on the item
    assert [s.prompt for s in again.samples] == [s.prompt for s in full.samples[:5]]
    assert again.computed == 0  # same prompts, so every request was cached by the full run


def test_limit_takes_the_first_items_of_every_task(tmp_path: Path) -> None:
    ev = evaluate(
        FakeModel(0),
        [SUITE],
        limit=7,
        db=f"sqlite:///{tmp_path / 'w.db'}",
        out_dir=tmp_path / "out",
    )
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    samples = read_jsonl(tmp_path / "out" / "samples.jsonl")
    for task in TASKS:
        assert {m["n"] for m in results["tasks"][task]["metrics"].values()} == {7}
        ids = [s["id"] for s in samples if s["task"] == task]
        assert ids == [row["id"] for row in data(task)[:7]]
    assert ev.computed == sum(expected_requests(limit=7).values())
    assert ev.reused == 0


# --------------------------------------------------------------------------- cache and store


def test_second_identical_run_is_answered_from_the_cache(suite_run: SuiteRun) -> None:
    total = sum(expected_requests().values())
    assert (suite_run.ev.computed, suite_run.ev.reused) == (total, 0)
    reporter = Recorder()
    again = evaluate(FakeModel(seed=0), [SUITE], db=suite_run.db, reporter=reporter)
    assert (again.computed, again.reused) == (0, total)
    assert dict(reporter.advanced) == expected_requests()  # cached answers still move the bars
    assert again.result.run_id != suite_run.ev.result.run_id
    for task in TASKS:
        assert again.result.tasks[task].metrics == suite_run.ev.result.tasks[task].metrics


def test_use_cache_false_recomputes_everything(suite_run: SuiteRun) -> None:
    total = sum(expected_requests().values())
    again = evaluate(FakeModel(seed=0), [SUITE], db=suite_run.db, use_cache=False)
    assert (again.computed, again.reused) == (total, 0)
    for task in TASKS:
        assert again.result.tasks[task].metrics == suite_run.ev.result.tasks[task].metrics


def test_another_model_does_not_read_the_first_ones_cache(suite_run: SuiteRun) -> None:
    other = evaluate(FakeModel(seed=1), [SUITE], db=suite_run.db, limit=3)
    assert other.reused == 0 and other.computed == sum(expected_requests(limit=3).values())


def test_the_run_is_stored_finished_with_the_same_samples(suite_run: SuiteRun) -> None:
    store = Store(suite_run.db)
    run_id = suite_run.results["run_id"]
    row = store.get_run(run_id)
    assert row is not None and row.status == "finished"
    assert row.result is not None
    assert row.result.model_dump(mode="json")["tasks"] == suite_run.results["tasks"]
    stored = {(s.task, s.id): s.model_dump(mode="json") for s in store.get_samples(run_id)}
    written = {(s["task"], s["id"]): s for s in suite_run.samples}
    assert stored == written
    assert store.count_samples(run_id) == {t: len(data(t)) for t in TASKS}
    store.close()


# --------------------------------------------------------------------------- the fake model


def test_fake_loglikelihood_equals_a_direct_bigram_computation() -> None:
    model = FakeModel(seed=3)
    table = model.logprobs_
    requests = [
        ("Question: Which plan has SSO?\nAnswer:", " Teams"),
        ("Question: Which plan has SSO?\nAnswer: ", "Teams"),  # the space moves over
        ("", "Quillnote keeps your notes."),  # empty context: scored after BOS
        ("Caf", "é au lait ☕"),  # multi-byte characters are several tokens
        ("a", "e"),
        ("x" * 50, " y"),
    ]
    results = model.loglikelihood([LoglikelihoodRequest(c, x) for c, x in requests])
    for (context, continuation), res in zip(requests, results, strict=True):
        logprob, greedy, n = reference_loglikelihood(table, context, continuation)
        assert res.logprob == pytest.approx(logprob, rel=1e-12, abs=1e-12)
        assert (res.is_greedy, res.n_tokens) == (greedy, n)
    # a continuation that is greedy everywhere is reported greedy
    prompt = "Answer:"
    greedy_text = reference_greedy(table, prompt, 5, [])
    assert greedy_text.isascii()
    (res,) = model.loglikelihood([LoglikelihoodRequest(prompt, greedy_text)])
    assert res.is_greedy and res.n_tokens == 5


def test_fake_loglikelihood_of_a_continuation_longer_than_the_model() -> None:
    model = FakeModel(seed=0, max_length=8)
    context, continuation = "ab", "cdefghijklmnop"
    (res,) = model.loglikelihood([LoglikelihoodRequest(context, continuation)])
    logprob, _, n = reference_loglikelihood(model.logprobs_, context, continuation, max_length=8)
    assert n == 8 and res.n_tokens == 8
    assert res.logprob == pytest.approx(logprob, rel=1e-12)


# --------------------------------------------------------------------------- batch-size invariance


def _scores_by_batch_size(
    folder: Path,
    task_file: Path,
    limit: int,
    docs: list[str],
    batch_sizes: list[int | None],
    tmp_path: Path,
    max_length: int = 256,
) -> dict[Any, Any]:
    from whetstone.models.base import RollingRequest
    from whetstone.models.hf import HFModel
    from whetstone.models.tokenized import ScoreWindow

    out: dict[Any, Any] = {}
    for bs in batch_sizes:
        model = HFModel(folder, device="cpu", dtype="float32", batch_size=bs)
        ev = evaluate(
            model,
            [task_file],
            limit=limit,
            use_cache=False,
            db=f"sqlite:///{tmp_path / f'bs{bs}.db'}",
        )
        lls = np.array([s.loglikelihoods for s in ev.samples], dtype=float)
        rolling = model.loglikelihood_rolling(
            [RollingRequest(d, max_length, max_length // 2) for d in docs]
            + [RollingRequest(d, 2 * max_length, 2 * max_length) for d in docs]
        )
        ids = model.encode(docs[0])[:24]  # one target per window: per-token log-probs
        per_token = model.score([ScoreWindow(tuple(ids[: j + 1]), 1) for j in range(1, len(ids))])
        out[bs] = (
            lls,
            np.array([r.logprob for r in rolling]),
            [r.n_tokens for r in rolling],
            [s.prediction for s in ev.samples],
            np.array([t.logprob for t in per_token]),
        )
        model.close()
    return out


def test_hf_results_do_not_depend_on_batch_size(
    tiny_lm_dir: Path, tmp_path: Path, restore_grad_mode: None
) -> None:
    docs = [row["text"] for row in data("support_docs")[:3]]
    got = _scores_by_batch_size(
        tiny_lm_dir, EXAMPLES / "support_mc.yaml", 10, docs, [1, 3, 8, None], tmp_path
    )
    lls1, roll1, ntok1, pred1, tok1 = got[1]
    assert lls1.shape == (10, 4)
    assert min(ntok1) > 512  # the documents need more than one window
    for bs in (3, 8, None):
        lls, roll, ntok, pred, tok = got[bs]
        # float32: the random tiny model's log-probs reach -40 per token, where one ulp of the
        # logits it subtracts is already ~1e-5; so 1e-5 plus a few ulps, relative
        np.testing.assert_allclose(tok, tok1, rtol=2e-6, atol=1e-5, err_msg=f"batch size {bs}")
        np.testing.assert_allclose(lls, lls1, rtol=1e-6, atol=1e-5, err_msg=f"batch size {bs}")
        np.testing.assert_allclose(roll, roll1, rtol=1e-6, atol=1e-5, err_msg=f"batch size {bs}")
        assert ntok == ntok1 and pred == pred1


@pytest.mark.slow
def test_embedded_model_results_do_not_depend_on_batch_size(
    default_model_dir: Path, tmp_path: Path, restore_grad_mode: None
) -> None:
    shared_data("arc_easy_test.jsonl")
    docs = [row["text"][:700] for row in data("support_docs")[:2]]
    got = _scores_by_batch_size(
        default_model_dir,
        REPO / "benchmarks" / "arc_easy.yaml",
        5,
        docs,
        [1, 3, 8],
        tmp_path,
        max_length=64,
    )
    lls1, roll1, ntok1, pred1, tok1 = got[1]
    assert lls1.shape[0] == 5 and min(ntok1) > 128  # several windows per document
    for bs in (3, 8):
        lls, roll, ntok, pred, tok = got[bs]
        np.testing.assert_allclose(tok, tok1, rtol=0, atol=1e-4, err_msg=f"batch size {bs}")
        np.testing.assert_allclose(lls, lls1, rtol=1e-5, atol=1e-4, err_msg=f"batch size {bs}")
        np.testing.assert_allclose(roll, roll1, rtol=1e-5, atol=1e-4, err_msg=f"batch size {bs}")
        assert ntok == ntok1 and pred == pred1


def test_a_shorter_token_window_is_not_answered_from_the_full_windows_cache(
    tiny_lm_dir: Path, tmp_path: Path, restore_grad_mode: None
) -> None:
    """Scores depend on the window (contexts are cut from the left), so --max-length keys the
    response cache: the second run computes its answers and they differ."""
    from whetstone.models.hf import HFModel

    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    task = EXAMPLES / "support_mc.yaml"
    runs = []
    for window in (None, 8):
        model = HFModel(tiny_lm_dir, device="cpu", dtype="float32", max_length=window)
        runs.append(evaluate(model, [task], db=db, limit=5))
        model.close()
    full, short = runs
    assert short.reused == 0 and short.computed == full.computed
    lls = [[s.loglikelihoods for s in ev.samples] for ev in runs]
    assert lls[0] != lls[1]
