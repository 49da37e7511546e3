"""A reduced run of bench/coverage.py: every interval keeps >= 0.90 coverage and every test
<= 0.075 size where it is meant to hold. Deterministic: each cell has its own fixed seed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "coverage.py"

CELLS = [
    ("ece_calibrated", 100),
    ("ece_miscalibrated", 100),
    ("recall_macro_rare", 100),
    ("f1_macro_rare", 100),
    ("bpb_interval", 10),
    ("bpb_interval", 30),
    ("ratio_test_null", 30),
    ("mean_test_null", 10),
    ("mcnemar_size", 30),
    ("mcnemar_disagreement", 30),
    ("paired_proportion", 30),
    ("contamination_null", 100),
    ("likert_share", 30),
    ("bleu", 30),
    ("gate_null", 30),
]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("coverage_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["coverage_bench"] = module  # its worker processes and dataclasses look it up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(("routine", "n"), CELLS)
def test_routine_keeps_its_promise(routine: str, n: int) -> None:
    bench = _bench()
    result = bench.simulate(routine, n, reps=100)
    kind = bench.ROUTINES[routine][1]
    assert result["runs"] >= 90, result  # at most a few runs flagged too_few
    if kind == "coverage":
        assert result["share"] >= 0.90, result
    else:
        assert result["share"] <= 0.075, result
