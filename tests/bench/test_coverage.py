"""A reduced run of bench/coverage.py: every interval keeps >= 0.90 coverage and every test
<= 0.075 size at the sizes where its routine promises to hold them, the p-value and the
interval beside it agree, and no output of one item is a point interval.

One run of all cells (two worker processes, about a minute on two cores), then one test per
cell. Deterministic: each cell draws from its own fixed seed. The cells are the cheap ones;
the full table (and Bradley-Terry, BLEU seeds, n = 1000) is `bench/coverage.py`.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "coverage.py"

#: (routine, n, data sets). Sizes from which each routine promises its target: macro metrics
#: from 100 items, bits per byte from 10 documents, the paired tests from 5 or 10 items.
CELLS = [
    ("ece_calibrated", 100, 200),
    ("ece_calibrated_skewed", 30, 200),
    ("ece_miscalibrated", 100, 200),
    ("macro_rare", 100, 200),
    ("macro_balanced", 100, 200),
    ("bpb_moderate", 10, 300),
    ("bpb_heavy", 30, 300),
    ("ratio_null_iid", 10, 400),
    ("ratio_null_swapped", 10, 300),
    ("mean_null_iid", 10, 400),
    ("mean_null_swapped", 10, 400),
    ("mean_alt", 30, 200),
    ("mcnemar_null", 30, 400),
    ("mcnemar_null_rare", 100, 300),
    ("mcnemar_alt", 30, 200),
    ("contamination_binary", 30, 400),
    ("contamination_score", 30, 300),
    ("likert_items", 30, 300),
    ("likert_skewed", 30, 300),
    ("bleu_noisy", 30, 120),
    ("gate_null", 10, 300),
    ("benjamini_hochberg", 30, 300),
    ("wilson", 30, 300),
    ("skewed_means", 30, 200),
    ("too_few", 1, 30),
]
MIN_COVERAGE = 0.90
MAX_SIZE = 0.075
MAX_DISAGREE = 0.01


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coverage_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["coverage_bench"] = module  # its worker processes and dataclasses look it up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _bench()


@pytest.fixture(scope="module")
def results(bench: ModuleType) -> Any:
    return bench.run_cells(CELLS, workers=2)


@pytest.mark.slow
@pytest.mark.parametrize(("routine", "n", "reps"), CELLS, ids=[f"{c[0]}-n{c[1]}" for c in CELLS])
def test_routine_keeps_its_promise(
    bench: ModuleType, results: Any, routine: str, n: int, reps: int
) -> None:
    rows = results[(routine, n)]
    problems = []
    for row in bench.ROUTINES[routine].rows:
        r = rows[row.name]
        if r["errors"] or r["missing"] > 0:
            problems.append(f"{row.name}: errors {r['errors']:.0%}, missing {r['missing']:.0%}")
            continue
        if n < row.holds_from:
            continue
        if row.kind == "flag":
            if r["point"] > 0:
                problems.append(f"{row.name}: a point interval in {r['point']:.0%} of runs")
            continue
        if r["runs"] < 0.9 * reps:
            problems.append(f"{row.name}: only {r['runs']} of {reps} runs gave a result")
            continue
        share = r["share"]
        if row.kind == "coverage" and not share >= MIN_COVERAGE:
            problems.append(f"{row.name}: coverage {share:.3f} < {MIN_COVERAGE}")
        elif row.kind == "size" and not share <= MAX_SIZE:
            problems.append(f"{row.name}: size {share:.3f} > {MAX_SIZE}")
        elif row.kind == "disagree" and not share <= MAX_DISAGREE:
            problems.append(f"{row.name}: p and interval disagree in {share:.3f} of data sets")
        assert not math.isnan(share)
    assert not problems, f"{routine} n={n}: " + "; ".join(problems)
