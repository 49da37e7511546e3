"""Sampled generation with `--repeats K`: simulations with known truth for the clustered
interval, the paired test and the sampling share, and the whole path on the fake model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as sps
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.data import examples_dir
from whetstone.evaluate.compare import compare_samples
from whetstone.evaluate.engine import evaluate
from whetstone.evaluate.kinds import repeat_seed
from whetstone.evaluate.metrics import mean_metric, sampled_generation_metrics
from whetstone.evaluate.rescore import rescore
from whetstone.evaluate.statistics import sampling_spread, wilson_ci
from whetstone.records import SampleRecord
from whetstone.store import Store

RUNNER = CliRunner()
SIMULATIONS = 400


def _upper(rate: float, trials: int) -> float:
    """The 99% binomial limit above `rate` over `trials` simulations."""
    return float(sps.binom.ppf(0.99, trials, rate) / trials)


def _draws(rng: np.random.Generator, p: np.ndarray, k: int) -> np.ndarray:
    return (rng.random((p.size, k)) < p[:, None]).astype(float)


def test_the_item_clustered_interval_keeps_95_percent_where_pooling_draws_does_not():
    """Items differ a lot (p_i ~ Beta(0.5, 0.5), mean 0.5), 4 outputs each: the BCa interval of
    item means (what a task with repeats reports) covers the true mean; a Wilson interval that
    treats the 400 outputs as independent does not."""
    rng = np.random.default_rng(1)
    n, k = 100, 4
    covered = pooled = 0
    for s in range(SIMULATIONS):
        x = _draws(rng, rng.beta(0.5, 0.5, n), k)
        m = mean_metric(x.mean(axis=1), seed=s)
        covered += m.ci_low <= 0.5 <= m.ci_high
        low, high = wilson_ci(int(x.sum()), n * k)
        pooled += low <= 0.5 <= high
    lower = sps.binom.ppf(0.01, SIMULATIONS, 0.95) / SIMULATIONS
    assert covered / SIMULATIONS >= lower - 0.01
    assert pooled / SIMULATIONS < 0.88  # the simulation can tell a wrong interval


def test_the_scorer_reports_that_interval_for_exact_match_over_outputs():
    rng = np.random.default_rng(2)
    x = _draws(rng, rng.beta(2, 2, 60), 5)
    outputs = [["right" if v else "wrong" for v in row] for row in x]
    values, per_item, draws = sampled_generation_metrics(outputs, [["right"]] * 60, seed=3)
    expected = mean_metric(x.mean(axis=1), seed=3)
    assert values["exact_match"] == expected
    assert [d["exact_match"] for d in per_item] == pytest.approx(x.mean(axis=1).tolist())
    np.testing.assert_array_equal(draws["exact_match"], x)
    # outputs that agree within each item keep the Wilson interval over items
    same = [[o[0]] * 5 for o in outputs]
    agreed, _, _ = sampled_generation_metrics(same, [["right"]] * 60)
    assert agreed["exact_match"].method == "wilson"


@pytest.mark.parametrize(("a", "b", "k"), [(0.5, 0.5, 4), (20.0, 20.0, 2), (2.0, 5.0, 8)])
def test_the_sampling_share_matches_the_known_variance_components(a, b, k):
    rng = np.random.default_rng(4)
    between = a * b / ((a + b) ** 2 * (a + b + 1))
    mean = a / (a + b)
    within = mean - (between + mean**2)  # E[p (1 - p)]
    truth = (within / k) / (between + within / k)
    spreads = [sampling_spread(_draws(rng, rng.beta(a, b, 200), k)) for _ in range(200)]
    assert np.mean([s["share"] for s in spreads]) == pytest.approx(truth, abs=0.03)
    assert np.mean([s["sampling_sd"] ** 2 for s in spreads]) == pytest.approx(within, rel=0.02)
    # the item variance is estimated as a difference (cut at 0): a looser check
    assert np.mean([s["item_sd"] ** 2 for s in spreads]) == pytest.approx(between, abs=0.01)


def test_the_paired_test_on_item_means_keeps_its_size():
    """Two runs of the same model (same p_i), different sampling seeds: compare's test of
    exact_match (item means, so a sign-flip test) rejects at most 5% of the time."""
    rng = np.random.default_rng(5)
    n, k, trials = 80, 4, 300
    rejected = 0
    for s in range(trials):
        p = rng.beta(0.7, 0.7, n)
        runs = [
            [
                SampleRecord(task="t", id=str(i), prompt="", metrics={"exact_match": v})
                for i, v in enumerate(_draws(rng, p, k).mean(axis=1))
            ]
            for _ in range(2)
        ]
        m = compare_samples(*runs, seed=s).metrics[0]
        assert m.test == "sign_flip"
        rejected += m.p_value < 0.05
    assert rejected / trials <= _upper(0.05, trials)


@pytest.fixture
def sampled_task(tmp_path: Path) -> Path:
    config = yaml.safe_load((examples_dir() / "support_qa.yaml").read_text())
    config["data"]["path"] = str(examples_dir() / config["data"]["path"])
    config["fewshot"]["path"] = str(examples_dir() / config["fewshot"]["path"])
    config |= {"temperature": 1.0, "name": "qa_sampled"}
    path = tmp_path / "qa_sampled.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_repeats_on_the_fake_model_share_the_first_output_and_cluster_by_item(
    tmp_path, sampled_task
):
    db = Store(f"sqlite:///{tmp_path}/w.db")
    once = evaluate("fake:4", [sampled_task], db=db, limit=20, seed=9)
    thrice = evaluate("fake:4", [sampled_task], db=db, limit=20, seed=9, repeats=3)
    assert (thrice.computed, thrice.reused) == (40, 20)  # the first outputs come from the cache
    for one, three in zip(once.samples, thrice.samples, strict=True):
        assert three.extra["outputs"][0] == one.extra["output"]
        assert len(three.extra["output_metrics"]["chrf"]) == 3
        assert three.metrics["chrf"] == pytest.approx(
            np.mean(three.extra["output_metrics"]["chrf"])
        )
    assert all(len(set(s.extra["outputs"])) == 3 for s in thrice.samples)  # seeds differ
    assert repeat_seed(9, 0) == 9 and len({repeat_seed(9, r) for r in range(3)}) == 3
    assert thrice.result.config["repeats"] == 3
    # compare recomputes chrF from every output: its value is the run's corpus chrF
    other = evaluate("fake:4", [sampled_task], db=db, limit=20, seed=10, repeats=3)
    chrf = compare_samples(thrice.samples, other.samples).find("qa_sampled/chrf")
    value = thrice.result.tasks["qa_sampled"].metrics["chrf"].value
    assert chrf is not None and chrf.a == pytest.approx(value)
    # answers that equal the first output of even items: exact match varies within items
    config = yaml.safe_load(sampled_task.read_text())
    rows = [json.loads(line) for line in Path(config["data"]["path"]).read_text().splitlines()]
    for i, (row, s) in enumerate(zip(rows, thrice.samples, strict=False)):
        row["answer"] = s.prediction if i % 2 == 0 else "none of these"
    config["data"]["path"] = str(tmp_path / "answers.jsonl")
    Path(config["data"]["path"]).write_text("\n".join(json.dumps(r) for r in rows[:20]))
    sampled_task.write_text(yaml.safe_dump(config))
    graded = evaluate("fake:4", [sampled_task], db=db, seed=9, repeats=3)
    assert graded.computed == 0  # the same prompts: every output from the cache
    result = graded.result.tasks["qa_sampled"]
    x = np.array([s.extra["output_metrics"]["exact_match"] for s in graded.samples])
    assert result.tables["sampling"]["exact_match"] == sampling_spread(x)
    assert result.metrics["exact_match"] == mean_metric(x.mean(axis=1), seed=9)
    # the report shows the share next to each interval
    from whetstone.report import write_report

    share = result.tables["sampling"]["exact_match"]["share"]
    assert share > 0
    page, _ = write_report(db, graded.result.run_id, tmp_path / "report.html")
    assert f"sampling {100 * share:.0f}% (K=3)" in page.read_text()
    # and rescoring replays the three outputs of each item in turn
    again, _ = rescore(graded.result.run_id, [sampled_task], db=db)
    assert again.result.tasks["qa_sampled"].metrics == result.metrics


def test_repeats_without_a_sampling_task_is_a_one_line_error(tmp_path):
    result = RUNNER.invoke(
        app,
        [
            "evaluate",
            "--model",
            "fake",
            "-t",
            str(examples_dir() / "support_qa.yaml"),
            "--repeats",
            "3",
            "--db",
            f"sqlite:///{tmp_path}/w.db",
        ],
    )
    assert result.exit_code == 2
    assert "temperature > 0" in " ".join(result.output.split())
