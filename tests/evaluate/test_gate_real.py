"""The gate on the embedded model and the example tasks: a candidate degraded on purpose fails,
an unchanged one passes where the data can show it and is inconclusive where it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from whetstone.data import examples_dir
from whetstone.evaluate.engine import evaluate
from whetstone.evaluate.gate import Guard, Margin, judge, sample_comparer

EXAMPLES = examples_dir()
BPB = "support_docs/bits_per_byte"
ACC = "support_mc/acc"


@pytest.mark.slow
def test_degraded_unchanged_and_underpowered_candidates_on_real_outputs(
    default_model_dir: Path, tmp_path: Path, restore_grad_mode: None
) -> None:
    from whetstone.models.hf import HFModel

    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    tasks = [EXAMPLES / "support_docs.yaml", EXAMPLES / "support_mc.yaml"]
    samples = {}
    # the baseline; the same model recomputed in batches of two (unchanged up to float
    # rounding); and the same weights seeing only 64 tokens of context (degraded on purpose)
    model = HFModel(default_model_dir, device="cpu", dtype="float32")
    samples["base"] = evaluate(model, tasks, db=db, limit=8, use_cache=False).samples
    model.batch_size = 2
    samples["same"] = evaluate(model, tasks, db=db, limit=8, use_cache=False).samples
    model.close()
    short = HFModel(default_model_dir, device="cpu", dtype="float32", max_length=64)
    samples["short"] = evaluate(short, tasks, db=db, limit=8, use_cache=False).samples
    short.close()
    runs = {k: (k, v) for k, v in samples.items() if k != "base"}
    compare = sample_comparer(samples["base"], runs)
    bpb, acc = Margin.model_validate("2%"), Margin(value=0.05)

    unchanged = judge([Guard("same", BPB, bpb)], compare)
    assert unchanged.verdict == "pass", unchanged.message
    check = unchanged.checks[0]
    assert check.n == 8 and abs(check.diff or 1) < 1e-3 and (check.pass_power or 0) > 0.99

    degraded = judge([Guard("short", BPB, bpb), Guard("same", BPB, bpb)], compare)
    assert [c.verdict for c in degraded.checks] == ["fail", "pass"], degraded.message
    assert degraded.verdict == "fail" and degraded.exit_code == 1 and degraded.tests == 2
    assert (degraded.checks[0].diff or 0) > 0.1  # bits per byte: higher is worse

    # 8 questions cannot show that identical answers are within 5 points of accuracy
    few = judge([Guard("same", ACC, acc)], compare)
    assert few.verdict == "inconclusive" and few.exit_code == 3, few.message
    assert few.checks[0].n == 8 and (few.checks[0].pass_power or 1) < 0.8
    assert "whetstone plan" in few.checks[0].reason
