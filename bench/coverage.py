"""Coverage and size of every interval and test, by Monte Carlo simulation with known truth.

Each routine draws data sets from a process whose true value is known, calls whetstone's own
functions, and records whether the 95% interval covered the truth (coverage) or whether a test
rejected a true null at alpha 0.05 (size). Runs the routine flagged ``too_few`` (no interval)
are counted apart, and coverage is over the runs that gave an interval. Writes a Markdown table
with the Monte Carlo standard error of each figure.

    .venv/bin/python bench/coverage.py [--reps 400] [--sizes 5,10,30,100,1000]
        [--routines ece_calibrated,...] [--workers 2] [--out bench/results/coverage.md]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
Outcome = tuple[bool | None, bool]  # (hit: covered / rejected, or None when flagged; flagged)
Routine = Callable[[np.random.Generator, int], Outcome]


def _covers(m: object, truth: float) -> Outcome:
    """Outcome of a MetricValue-like result against the truth."""
    low, high = getattr(m, "ci_low", None), getattr(m, "ci_high", None)
    if low is None or high is None:
        return None, True
    return bool(low <= truth <= high), False


# --------------------------------------------------------------------------- calibration


def _mc_from_confidence(p_top: np.ndarray, correct: np.ndarray) -> dict[str, object]:
    from whetstone.evaluate.metrics import multiple_choice_metrics

    lls = [[math.log(p), math.log(1 - p)] for p in p_top]
    gold = [0 if c else 1 for c in correct]
    aggregates, _ = multiple_choice_metrics(lls, [[1, 1]] * len(gold), gold)
    return aggregates  # type: ignore[return-value]


def ece_calibrated(rng: np.random.Generator, n: int) -> Outcome:
    """Calibrated two-choice model (correct ~ Bernoulli(confidence)): true ECE 0."""
    p = rng.uniform(0.5, 0.99, n)
    return _covers(_mc_from_confidence(p, rng.random(n) < p)["ece"], 0.0)


def _miscalibrated(p: np.ndarray) -> np.ndarray:
    return 0.5 + 0.8 * (p - 0.5)  # overconfident


_BINS = np.arange(1, 10) / 10


def _true_ece() -> float:
    """Population ECE of the overconfident model, 10 bins, by a large sample of confidences."""
    p = np.random.default_rng(99).uniform(0.5, 0.99, 2_000_000)
    bins = np.digitize(p, _BINS, right=True)
    gap = np.bincount(bins, weights=_miscalibrated(p) - p, minlength=10)
    return float(np.abs(gap).sum() / p.size)


TRUE_ECE = _true_ece()


def ece_miscalibrated(rng: np.random.Generator, n: int) -> Outcome:
    """Overconfident model (accuracy 0.5 + 0.8 (c - 0.5)): truth is its population ECE."""
    p = rng.uniform(0.5, 0.99, n)
    return _covers(_mc_from_confidence(p, rng.random(n) < _miscalibrated(p))["ece"], TRUE_ECE)


# --------------------------------------------------------------------------- classification

_PRIOR = np.array([0.57, 0.40, 0.03])
_CONFUSION = np.array([[0.85, 0.075, 0.075], [0.1, 0.8, 0.1], [0.15, 0.15, 0.7]])
_JOINT = _PRIOR[:, None] * _CONFUSION
TRUE_MACRO = {
    "recall_macro": float(np.diag(_CONFUSION).mean()),
    "precision_macro": float(np.mean(np.diag(_JOINT) / _JOINT.sum(axis=0))),
    "f1_macro": float(np.mean(2 * np.diag(_JOINT) / (_JOINT.sum(axis=0) + _JOINT.sum(axis=1)))),
}


def _macro(metric: str) -> Routine:
    def routine(rng: np.random.Generator, n: int) -> Outcome:
        from whetstone.evaluate.metrics import classification_metrics

        gold = rng.choice(3, size=n, p=_PRIOR)
        pred = np.array([rng.choice(3, p=_CONFUSION[g]) for g in gold])
        aggregates, _, _ = classification_metrics(
            [str(g) for g in gold], [str(p) for p in pred], ["0", "1", "2"]
        )
        key = metric if metric in aggregates else metric.split("_")[0]
        return _covers(aggregates[key], TRUE_MACRO[metric])

    routine.__doc__ = f"{metric} with one class at 3% of items: population truth"
    return routine


# --------------------------------------------------------------------------- perplexity

TRUE_BPB = 1.1 / math.log(2)


def _documents(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Heterogeneous documents: lognormal lengths, gamma difficulty (mean 1), 1.1 nats/byte."""
    size = np.maximum(50, rng.lognormal(math.log(4000), 0.8, n)).round()
    nll = size * 1.1 * rng.gamma(4, 0.25, n) + rng.normal(0, 1, n) * np.sqrt(size)
    return -nll, size


def bpb_interval(rng: np.random.Generator, n: int) -> Outcome:
    """bits per byte of n documents: truth E[nll] / E[bytes] / ln 2."""
    from whetstone.evaluate.metrics import perplexity_metrics

    lp, size = _documents(rng, n)
    m = perplexity_metrics(list(lp), list((size / 4).round()), list(size / 5), list(size))
    return _covers(m["bits_per_byte"], TRUE_BPB)


def _samples(task: str, ids: list[str], **columns: np.ndarray) -> list[object]:
    from whetstone.records import SampleRecord

    return [
        SampleRecord(
            task=task,
            id=i,
            prompt="",
            metrics={k: float(v[j]) for k, v in columns.items()},
        )
        for j, i in enumerate(ids)
    ]


def _p_value(a: list[object], b: list[object], metric: str) -> object:
    from whetstone.evaluate.compare import compare_samples

    rows = compare_samples(a, b).metrics  # type: ignore[arg-type]
    return next(m for m in rows if m.metric == metric)


def ratio_test_null(rng: np.random.Generator, n: int) -> Outcome:
    """Paired bits-per-byte difference, two exchangeable runs on the same documents: size."""
    _, size = _documents(rng, n)
    hard = rng.gamma(4, 0.25, n)
    runs = [-(size * 1.1 * hard + rng.normal(0, 3, n) * np.sqrt(size)) for _ in "ab"]
    ids = [str(i) for i in range(n)]
    a, b = (
        _samples("p", ids, logprob=lp, n_tokens=(size / 4).round(), n_bytes=size) for lp in runs
    )
    return _p_value(a, b, "bits_per_byte").p_value < 0.05, False  # type: ignore[attr-defined]


def mean_test_null(rng: np.random.Generator, n: int) -> Outcome:
    """Paired ROUGE-L-like scores in [0, 1] with ties at 0 and 1, true null: size."""
    item = rng.beta(0.5, 0.5, n)
    x, y = (np.clip(item + rng.normal(0, 0.2, n), 0, 1) for _ in "ab")
    ids = [str(i) for i in range(n)]
    row = _p_value(_samples("g", ids, rouge_l=x), _samples("g", ids, rouge_l=y), "rouge_l")
    return row.p_value < 0.05, False  # type: ignore[attr-defined]


def mean_diff_coverage(rng: np.random.Generator, n: int) -> Outcome:
    """Paired mean difference of skewed scores, B better by 0.05 on average: coverage."""
    item = rng.beta(0.5, 0.5, n)
    x = np.clip(item + rng.normal(0, 0.2, n), 0, 1)
    shift = rng.exponential(0.05, n)  # mean 0.05, skewed
    ids = [str(i) for i in range(n)]
    row = _p_value(_samples("g", ids, score=x), _samples("g", ids, score=x + shift), "score")
    return _covers(row, 0.05)


_CELLS = np.array([0.6, 0.1, 0.1, 0.2])  # both right, only A, only B, neither


def _paired_binary(rng: np.random.Generator, n: int, cells: np.ndarray) -> object:
    kind = rng.choice(4, size=n, p=cells)
    a, b = np.isin(kind, (0, 1)).astype(float), np.isin(kind, (0, 2)).astype(float)
    ids = [str(i) for i in range(n)]
    return _p_value(_samples("t", ids, acc=a), _samples("t", ids, acc=b), "acc")


def mcnemar_size(rng: np.random.Generator, n: int) -> Outcome:
    """Exact McNemar under a true null (10% discordant each way): size."""
    return _paired_binary(rng, n, _CELLS).p_value < 0.05, False  # type: ignore[attr-defined]


def mcnemar_disagreement(rng: np.random.Generator, n: int) -> Outcome:
    """Share of null data sets where p < 0.05 and 'interval excludes 0' disagree."""
    row = _paired_binary(rng, n, _CELLS)
    excludes = row.ci_low > 0 or row.ci_high < 0  # type: ignore[attr-defined]
    return bool((row.p_value < 0.05) != excludes), False  # type: ignore[attr-defined]


def paired_proportion_coverage(rng: np.random.Generator, n: int) -> Outcome:
    """Newcombe interval of p(B) - p(A) = 0.06: coverage."""
    return _covers(_paired_binary(rng, n, np.array([0.6, 0.07, 0.13, 0.2])), 0.06)


def contamination_null(rng: np.random.Generator, n: int) -> Outcome:
    """Audit: 5 contaminated items among n + 5, same accuracy 0.85 (true null): size."""
    from whetstone.audit.config import ContaminationConfig
    from whetstone.audit.contamination import score_split

    total = n + 5
    coverage = {f"i{k}": (1.0 if k < 5 else 0.0) for k in range(total)}
    values = {f"i{k}": float(c) for k, c in enumerate(rng.random(total) < 0.85)}
    split = score_split(coverage, values, ContaminationConfig(), run_id="r", task="t", metric="acc")
    return bool(split.p_value is not None and split.p_value < 0.05), False


def likert_share(rng: np.random.Generator, n: int) -> Outcome:
    """Share of "5" ratings, three judges per item correlated within items: truth 1/3."""
    from whetstone.feedback.summary import _share

    item_p = rng.beta(0.8, 1.6, n)
    hits = [bool(h) for p in item_p for h in rng.random(3) < p]
    return _covers(_share(hits, [str(i) for i in range(n) for _ in range(3)]), 1 / 3)


def likert_mean(rng: np.random.Generator, n: int) -> Outcome:
    """Mean rating 1-5, three judges per item around the item's quality: truth 3.2."""
    from whetstone.feedback.summary import _mean_ci

    quality = rng.normal(3.2, 0.8, n)
    ratings = np.clip(np.rint(quality[:, None] + rng.normal(0, 0.7, (n, 3))), 1, 5)
    # the clipping moves the truth: use the population mean of the same process
    return _covers(
        _mean_ci(list(ratings.ravel()), [str(i) for i in range(n) for _ in range(3)], 1000),
        TRUE_LIKERT_MEAN,
    )


def _true_likert_mean() -> float:
    rng = np.random.default_rng(98)
    q = rng.normal(3.2, 0.8, 1_000_000)
    return float(np.clip(np.rint(q + rng.normal(0, 0.7, q.size)), 1, 5).mean())


TRUE_LIKERT_MEAN = _true_likert_mean()

# a finite population of sentence pairs; the truth is the corpus score of all of it
_WORDS = [f"w{i}" for i in range(60)]


def _population(size: int = 3000) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(97)
    refs, hyps = [], []
    for _ in range(size):
        ref = list(rng.choice(_WORDS, size=rng.integers(5, 15)))
        quality = rng.beta(2, 2)
        hyp = [w if rng.random() < quality else str(rng.choice(_WORDS)) for w in ref]
        hyp = hyp[: max(1, len(hyp) - int(rng.integers(0, 3)))]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    return hyps, refs


POPULATION = _population()


def _true_corpus(name: str) -> float:
    import sacrebleu

    scorer = sacrebleu.corpus_bleu if name == "bleu" else sacrebleu.corpus_chrf
    return float(scorer(POPULATION[0], [POPULATION[1]]).score)


TRUE_CORPUS = {name: _true_corpus(name) for name in ("bleu", "chrf")}


def _corpus(name: str) -> Routine:
    def routine(rng: np.random.Generator, n: int) -> Outcome:
        from whetstone.evaluate.metrics import generation_metrics

        pick = rng.integers(0, len(POPULATION[0]), n)
        preds = [POPULATION[0][i] for i in pick]
        refs = [[POPULATION[1][i]] for i in pick]
        aggregates, _ = generation_metrics(preds, refs)
        return _covers(aggregates[name], TRUE_CORPUS[name])

    routine.__doc__ = f"corpus {name} of n pairs from a finite population: its corpus score"
    return routine


def gate_null(rng: np.random.Generator, n: int) -> Outcome:
    """The gate with 3 candidates x 3 metrics, none worse than the baseline: false failures."""
    from whetstone.evaluate.compare import compare_samples
    from whetstone.pipeline.schema import GateSpec
    from whetstone.pipeline.selection import apply_gate

    ids = [str(i) for i in range(n)]

    def run() -> list[object]:
        item = rng.random(n)
        return _samples(
            "t",
            ids,
            acc=(rng.random(n) < 0.7).astype(float),
            token_f1=np.clip(item + rng.normal(0, 0.2, n), 0, 1),
            rouge_l=np.clip(item + rng.normal(0, 0.2, n), 0, 1),
        )

    base = run()
    cmps = {f"c{k}": compare_samples(base, run()) for k in range(3)}  # type: ignore[arg-type]
    spec = GateSpec(metrics=["t/acc", "t/token_f1", "t/rouge_l"], candidates="all")
    return not apply_gate(spec, cmps, list(cmps)).passed, False


def mean_metric_skewed(rng: np.random.Generator, n: int) -> Outcome:
    """mean_metric of lognormal values (a skewed per-item score): truth exp(1/2)."""
    from whetstone.evaluate.metrics import mean_metric

    return _covers(mean_metric(rng.lognormal(size=n)), math.exp(0.5))


def wilson(rng: np.random.Generator, n: int) -> Outcome:
    """Wilson interval of a 0/1 mean with p = 0.1: coverage."""
    from whetstone.evaluate.metrics import mean_metric

    return _covers(mean_metric((rng.random(n) < 0.1).astype(float), binary=True), 0.1)


# name -> (routine, "coverage" or "size", the sizes from which the target must hold)
ROUTINES: dict[str, tuple[Routine, str, int]] = {
    "ece_calibrated": (ece_calibrated, "coverage", 5),
    "ece_miscalibrated": (ece_miscalibrated, "coverage", 30),
    "recall_macro_rare": (_macro("recall_macro"), "coverage", 100),
    "precision_macro_rare": (_macro("precision_macro"), "coverage", 100),
    "f1_macro_rare": (_macro("f1_macro"), "coverage", 100),
    "bpb_interval": (bpb_interval, "coverage", 10),
    "ratio_test_null": (ratio_test_null, "size", 5),
    "mean_test_null": (mean_test_null, "size", 5),
    "mean_diff_coverage": (mean_diff_coverage, "coverage", 30),
    "mcnemar_size": (mcnemar_size, "size", 5),
    "mcnemar_disagreement": (mcnemar_disagreement, "size", 5),
    "paired_proportion": (paired_proportion_coverage, "coverage", 10),
    "contamination_null": (contamination_null, "size", 5),
    "likert_share": (likert_share, "coverage", 10),
    "likert_mean": (likert_mean, "coverage", 10),
    "bleu": (_corpus("bleu"), "coverage", 30),
    "chrf": (_corpus("chrf"), "coverage", 30),
    "gate_null": (gate_null, "size", 10),
    "mean_metric_skewed": (mean_metric_skewed, "coverage", 30),
    "wilson": (wilson, "coverage", 10),
}


def simulate(name: str, n: int, reps: int, seed: int = 0) -> dict[str, float]:
    """Run one routine ``reps`` times at size n; share of hits, its Monte Carlo SE, flags."""
    routine = ROUTINES[name][0]
    rng = np.random.default_rng([seed, n, sum(map(ord, name))])
    hits, flagged = [], 0
    for _ in range(reps):
        try:
            hit, flag = routine(rng, n)
        except Exception as e:  # an older whetstone without this routine's API
            print(f"{name} n={n}: {type(e).__name__}: {e}", file=sys.stderr)
            return {"share": math.nan, "se": math.nan, "flagged": 0.0, "runs": 0}
        flagged += flag
        if hit is not None:
            hits.append(hit)
    share = float(np.mean(hits)) if hits else math.nan
    se = math.sqrt(share * (1 - share) / len(hits)) if hits else math.nan
    return {"share": share, "se": se, "flagged": flagged / reps, "runs": len(hits)}


def _job(args: tuple[str, int, int, int]) -> tuple[str, int, dict[str, float]]:
    name, n, reps, seed = args
    return name, n, simulate(name, n, reps, seed)


def run_all(
    names: list[str], sizes: list[int], reps: int, workers: int, seed: int = 0
) -> dict[tuple[str, int], dict[str, float]]:
    """Every (routine, n), fewer reps at n >= 1000, side by side in worker processes."""
    jobs = [
        (name, n, reps if n < 1000 else max(50, reps // 4), seed) for name in names for n in sizes
    ]
    out: dict[tuple[str, int], dict[str, float]] = {}
    with ProcessPoolExecutor(workers) as pool:
        for k, (name, n, res) in enumerate(pool.map(_job, jobs), 1):
            out[(name, n)] = res
            print(f"[{k}/{len(jobs)}] {name} n={n}: {res['share']:.3f}", file=sys.stderr)
    return out


def table(results: dict[tuple[str, int], dict[str, float]], sizes: list[int]) -> str:
    """Markdown: one row per routine, a cell per n with share ± SE and the flagged share."""
    lines = [
        "| routine | measures | target | " + " | ".join(f"n={n}" for n in sizes) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in sizes) + " |",
    ]
    for name in dict.fromkeys(k[0] for k in results):
        _, what, start = ROUTINES[name]
        target = f"<= 0.055 from n={start}" if what == "size" else f">= 0.93 from n={start}"
        cells = []
        for n in sizes:
            r = results[(name, n)]
            cell = "flagged" if math.isnan(r["share"]) else f"{r['share']:.3f} ± {r['se']:.3f}"
            if r["flagged"]:
                cell += f" ({r['flagged']:.0%} flagged)"
            cells.append(cell)
        lines.append(f"| {name} | {what} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _header(reps: int) -> str:
    sys.path.insert(0, str(REPO / "src"))
    from whetstone.optimize.distill_measure import machine

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    info = machine()
    return (
        f"# Coverage and size by simulation\n\nMachine: {info['cpu']}, {info['cores']} cores. "
        f"Commit {commit}. Date {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. {reps} data sets per "
        "cell (a quarter at n = 1000); the ± is the Monte Carlo standard error. Coverage is over "
        "the runs that gave an interval; 'flagged' runs said too_few instead.\n"
    )


def main() -> None:
    """Parse the options, simulate, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--sizes", default="5,10,30,100,1000")
    parser.add_argument("--routines", default=",".join(ROUTINES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "coverage.md")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    names = args.routines.split(",")
    start = time.perf_counter()
    results = run_all(names, sizes, args.reps, args.workers)
    wall = time.perf_counter() - start
    text = f"{_header(args.reps)}\n{table(results, sizes)}\n\nWall time: {wall:.0f} s.\n"
    print(text)
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
