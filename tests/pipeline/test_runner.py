"""The loop on fake models: stages recorded and reused, paired comparisons checked with scipy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.pipeline.helpers import oracle_mc_task, write_pipeline
from whetstone.evaluate.outputs import read_samples
from whetstone.pipeline import STAGE_KIND, load_pipeline, load_result, run_pipeline
from whetstone.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")


def two_candidates(tmp_path: Path, **fields: object) -> Path:
    task = oracle_mc_task(tmp_path, "fake:0")
    return write_pipeline(
        tmp_path,
        tasks=[task.name],
        limit=None,
        candidates=[{"name": "one", "model": "fake:1"}, {"name": "two", "model": "fake:2"}],
        **fields,
    )


def test_every_candidate_is_evaluated_on_the_same_items_and_compared(
    tmp_path: Path, store: Store
) -> None:
    config = load_pipeline(two_candidates(tmp_path))
    result = run_pipeline(config, store=store)
    assert [c.name for c in result.candidates] == ["one", "two"]
    # the oracle task: the baseline (fake:0) is right on every item by construction
    assert result.baseline.metrics["oracle_mc/acc"] == 1.0
    base = read_samples(config.workdir_path / "eval" / "baseline")
    for cand in result.candidates:
        samples = read_samples(config.workdir_path / "eval" / cand.name)
        assert [s.id for s in samples] == [s.id for s in base]
        a = np.array([s.metrics["acc"] for s in base])
        b = np.array([s.metrics["acc"] for s in samples])
        cmp = next(m for m in result.comparisons[cand.name].metrics if m.metric == "acc")
        assert cmp.diff == pytest.approx(b.mean() - a.mean())
        # McNemar's exact test is a two-sided binomial test on the discordant pairs
        only_a, only_b = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
        ref = stats.binomtest(only_b, only_a + only_b, 0.5).pvalue
        assert cmp.p_value == pytest.approx(ref)
        assert cmp.p_value < 1e-4  # a random model agrees with the oracle about 1 time in 4
        # costs were measured
        assert cand.metrics["latency_ms"] > 0 and cand.costs["latency_items"] == 2
    stored = load_result(store, "loop")
    assert stored is not None and stored.model_dump() == result.model_dump()


def test_a_second_run_reuses_every_stage(tmp_path: Path, store: Store) -> None:
    config = load_pipeline(two_candidates(tmp_path))
    first = run_pipeline(config, store=store)
    assert first.reused == []
    runs = {r.run_id for r in store.list_runs()}
    second = run_pipeline(config, store=store)
    assert sorted(second.reused) == ["evaluate/baseline", "evaluate/one", "evaluate/two"]
    assert {r.run_id for r in store.list_runs()} == runs  # nothing evaluated again
    assert second.baseline.run_id == first.baseline.run_id
    assert second.comparisons == first.comparisons
    stages = store.list_artifacts(STAGE_KIND)
    assert len(stages) == 3 and all(s.payload["status"] == "finished" for s in stages)


def test_changed_inputs_and_missing_outputs_run_a_stage_again(tmp_path: Path, store: Store) -> None:
    path = two_candidates(tmp_path)
    config = load_pipeline(path)
    first = run_pipeline(config, store=store)
    # a stored run that disappeared cannot be reused
    assert first.candidates[0].run_id is not None
    store.delete_run(first.candidates[0].run_id)
    again = run_pipeline(config, store=store)
    assert sorted(again.reused) == ["evaluate/baseline", "evaluate/two"]
    # asking for a rerun by prefix
    rerun = run_pipeline(config, store=store, rerun=["evaluate/two"])
    assert "evaluate/two" not in rerun.reused and "evaluate/one" in rerun.reused
    # fewer items: different inputs for every evaluation
    text = path.read_text().replace("limit: null", "limit: 10")
    path.write_text(text)
    smaller = run_pipeline(load_pipeline(path), store=store)
    assert smaller.reused == []
    assert smaller.comparisons["one"].metrics[0].n == 10


def test_an_unreachable_candidate_fails_alone(tmp_path: Path, store: Store) -> None:
    task = oracle_mc_task(tmp_path, "fake:0")
    config = load_pipeline(
        write_pipeline(
            tmp_path,
            tasks=[task.name],
            candidates=[
                {"name": "missing", "model": "openai:gone"},
                {"name": "one", "model": "fake:1"},
            ],
        )
    )
    result = run_pipeline(config, store=store)
    missing = result.candidate("missing")
    assert missing is not None and missing.error and "needs --base-url" in missing.error
    assert "one" in result.comparisons and "missing" not in result.comparisons
    failed = [s for s in result.stages if s.status == "failed"]
    assert [s.stage for s in failed] == ["evaluate/missing"]


def test_results_files_match_the_comparison_input(tmp_path: Path, store: Store) -> None:
    config = load_pipeline(two_candidates(tmp_path))
    result = run_pipeline(config, store=store)
    results = json.loads((config.workdir_path / "eval" / "one" / "results.json").read_text())
    one = result.candidate("one")
    assert one is not None and results["run_id"] == one.run_id
    assert one.metrics["oracle_mc/acc"] == results["tasks"]["oracle_mc"]["metrics"]["acc"]["value"]
