"""Weak slices: the tests against scipy/statsmodels, a planted slice, and false discoveries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import fisher_exact
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from whetstone.diagnose.schema import Observation
from whetstone.diagnose.slices import (
    AttributeTable,
    Condition,
    SliceGroup,
    cohen_h,
    derive_attributes,
    find_slices,
    find_slices_grouped,
    fisher_greater,
    question_form,
)


def _table(columns: dict[str, np.ndarray], min_size: int) -> AttributeTable:
    """An attribute table from categorical columns (as derive_attributes builds it)."""
    conditions, cols, values = [], [], {}
    for name, col in columns.items():
        values[name] = sorted(set(map(str, col)))
        for v in values[name]:
            mask = col.astype(str) == v
            if min_size <= mask.sum() <= len(col) - min_size:
                conditions.append(Condition(name, v))
                cols.append(mask)
    return AttributeTable(conditions, np.stack(cols, axis=1), values)


def test_fisher_greater_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        total = int(rng.integers(20, 400))
        failures = int(rng.integers(1, total))
        n = int(rng.integers(1, total))
        k_low, k_high = max(0, n - (total - failures)), min(n, failures)
        k = int(rng.integers(k_low, k_high + 1))
        table = [[k, n - k], [failures - k, total - n - failures + k]]
        expected = fisher_exact(table, alternative="greater").pvalue
        assert fisher_greater(k, n, failures, total) == pytest.approx(
            expected, rel=1e-9, abs=1e-300
        )


def test_slice_statistics_match_references() -> None:
    """Each reported slice: Wilson interval (statsmodels), Fisher p (scipy), BH (statsmodels)."""
    rng = np.random.default_rng(7)
    n = 600
    region = rng.choice(["north", "south", "east", "west"], n)
    channel = rng.choice(["web", "mail", "phone"], n)
    p_fail = np.where(region == "north", 0.55, 0.3)
    failed = rng.random(n) < p_fail
    table = _table({"region": region, "channel": channel}, min_size=20)
    slices, search = find_slices(table, failed, min_size=20, fdr=0.05, max_report=100)
    assert search.tested > len(table.conditions)  # pairs were tested too
    assert slices[0].description == "region = north"
    # recompute every tested p-value to check the BH adjustment of the reported ones
    all_p = []
    for j, cond in enumerate(table.conditions):
        mask = table.matrix[:, j]
        all_p.append((cond.describe(), mask))
    for a in range(len(table.conditions)):
        for b in range(a + 1, len(table.conditions)):
            ca, cb = table.conditions[a], table.conditions[b]
            mask = table.matrix[:, a] & table.matrix[:, b]
            parts = (table.matrix[:, a].sum(), table.matrix[:, b].sum())
            if (
                ca.attribute != cb.attribute
                and 20 <= mask.sum() <= n - 20
                and mask.sum() not in parts
            ):
                all_p.append((f"{ca.describe()} AND {cb.describe()}", mask))
    assert len(all_p) == search.tested
    pvals = []
    for _, mask in all_p:
        k, size = int(failed[mask].sum()), int(mask.sum())
        rest_k, rest = int(failed[~mask].sum()), int((~mask).sum())
        pvals.append(fisher_exact([[k, size - k], [rest_k, rest - rest_k]], "greater").pvalue)
    adjusted = multipletests(pvals, method="fdr_bh")[1]
    by_name = {
        name: (p, q, mask) for (name, mask), p, q in zip(all_p, pvals, adjusted, strict=True)
    }
    for s in slices:
        p, q, mask = by_name[s.description]
        assert s.p_value == pytest.approx(p, rel=1e-9, abs=1e-300)
        assert s.p_adjusted == pytest.approx(q, rel=1e-9, abs=1e-300)
        assert s.significant == (q <= 0.05)
        k, size = int(failed[mask].sum()), int(mask.sum())
        low, high = proportion_confint(k, size, method="wilson")
        assert (s.size, s.failures) == (size, k)
        assert (s.error_rate.ci_low, s.error_rate.ci_high) == pytest.approx((low, high))
        rest_rate = failed[~mask].mean()
        assert s.rest_error_rate == pytest.approx(rest_rate)
        assert s.effect_size == pytest.approx(
            2 * np.arcsin(np.sqrt(k / size)) - 2 * np.arcsin(np.sqrt(rest_rate))
        )


def test_cohen_h_known_values() -> None:
    # Cohen (1988), table 6.2.1: h between 0.5 and 0.65 is about 0.30
    assert float(cohen_h(0.65, 0.5)) == pytest.approx(0.30, abs=0.01)
    assert float(cohen_h(0.9, 0.1)) == pytest.approx(1.85, abs=0.01)
    assert float(cohen_h(0.5, 0.5)) == 0.0


def test_conjunction_reported_only_when_worse_than_its_parts() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    a = rng.choice(["x", "y"], n)
    b = rng.choice(["u", "v"], n)
    c = rng.choice(["p", "q", "r"], n)
    p_fail = np.full(n, 0.1)
    p_fail[(a == "x") & (b == "u")] = 0.6  # only the conjunction is weak
    failed = rng.random(n) < p_fail
    table = _table({"a": a, "b": b, "c": c}, min_size=30)
    slices, _ = find_slices(table, failed, min_size=30)
    assert slices[0].description == "a = x AND b = u"
    singles = {s.description: s for s in slices if len(s.conditions) == 1}
    assert list(singles)[:2] == ["a = x", "b = u"]  # found, but after the conjunction
    for s in slices:
        for part in s.conditions if len(s.conditions) == 2 else []:
            name = f"{part['attribute']} = {part['value']}"
            if name in singles:
                assert s.error_rate.ci_low > singles[name].metric_value
    # slices of c alone are pure noise here and must not be significant
    assert not any(s.significant and s.description.startswith("c =") for s in slices)


def test_minimum_size_is_kept() -> None:
    rng = np.random.default_rng(5)
    n = 300
    tiny = np.array(["rare"] * 8 + ["common"] * (n - 8))
    failed = np.zeros(n, dtype=bool)
    failed[:8] = True  # the tiny group fails completely
    failed[8:40] = True
    table = _table({"group": tiny, "other": rng.choice(["a", "b"], n)}, min_size=10)
    slices, _ = find_slices(table, failed, min_size=10)
    assert all(s.size >= 10 for s in slices)
    assert not any("rare" in s.description for s in slices)


@pytest.mark.parametrize("reps", [300])
def test_false_discoveries_stay_within_the_rate_under_the_null(reps: int) -> None:
    """No attribute affects failures: the chance of any discovery (= the FDR here) <= 5%."""
    rng = np.random.default_rng(11)
    n = 400
    columns = {
        "a": rng.choice(list("abcd"), n),
        "b": rng.choice(list("xyz"), n),
        "c": rng.choice(["yes", "no"], n),
        "d": rng.choice(list("pqrst"), n),
    }
    table = _table(columns, min_size=20)
    any_discovery = 0
    for _ in range(reps):
        failed = rng.random(n) < 0.3
        _, search = find_slices(table, failed, min_size=20, fdr=0.05)
        any_discovery += search.significant > 0
    rate = any_discovery / reps
    assert rate <= 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / reps)


def test_false_discovery_proportion_with_true_effects() -> None:
    """Two attributes matter, three do not: the mean share of false discoveries stays <= 5%.

    A slice is a false discovery when its true failure probability is not above the rest's.
    """
    rng = np.random.default_rng(12)
    n, reps = 600, 150
    columns = {name: rng.choice(list("abc"), n) for name in ("m1", "m2", "n1", "n2", "n3")}
    p_true = 0.25 + 0.2 * (columns["m1"] == "a") + 0.15 * (columns["m2"] == "b")
    table = _table(columns, min_size=25)
    fdp = []
    for _ in range(reps):
        failed = rng.random(n) < p_true
        slices, _search = find_slices(table, failed, min_size=25, fdr=0.05, max_report=10_000)
        found = [s for s in slices if s.significant]
        if not found:
            fdp.append(0.0)
            continue
        false = 0
        for s in found:
            mask = np.logical_and.reduce(
                [columns[c["attribute"]] == c["value"] for c in s.conditions]
            )
            false += p_true[mask].mean() <= p_true[~mask].mean() + 1e-12
        fdp.append(false / len(found))
    assert np.mean(fdp) <= 0.05 + 2.5 * np.std(fdp) / np.sqrt(reps)


def test_groups_share_one_adjustment_and_compare_within_their_task() -> None:
    rng = np.random.default_rng(2)
    groups = []
    for task, base in (("easy", 0.1), ("hard", 0.6)):
        n = 300
        col = rng.choice(["a", "b"], n)
        p = np.where(col == "a", base + 0.3, base)
        groups.append(SliceGroup(_table({"col": col}, 20), rng.random(n) < p, None, scope=task))
    slices, _search = find_slices_grouped(groups, min_size=20)
    names = [s.description for s in slices if s.significant]
    assert "easy: col = a" in names and "hard: col = a" in names
    hard = next(s for s in slices if s.description == "hard: col = a")
    assert hard.rest_size + hard.size == 300  # compared with the rest of its own task


def _obs(i: int, text: str, failed: bool, **kw: object) -> Observation:
    return Observation(
        uid=f"r:t:{i}",
        source="sample",
        origin="r",
        task="t",
        kind="classification",
        item_id=str(i),
        prompt=text,
        text=text,
        failed=failed,
        **kw,  # type: ignore[arg-type]
    )


def test_derived_attributes() -> None:
    texts = [
        "How many moons does Mars have?",
        "Who wrote Hamlet?",
        "Is the sky blue?",
        "Oil prices rose 5% on Monday.",
        "What is the capital of France?",
        "Name a prime number.",
    ] * 10
    obs = [
        _obs(i, t, i % 2 == 0, gold_label="A" if i % 3 else "B", columns={"source": f"s{i % 2}"})
        for i, t in enumerate(texts)
    ]
    table = derive_attributes(obs, min_size=5, keywords=5)
    attrs = {c.attribute for c in table.conditions}
    assert {"length", "question form", "has a number", "label", "source"} <= attrs
    forms = set(table.values["question form"])
    assert forms == {"how many/much", "who", "yes/no", "not a question", "what"}
    # every condition's column is exactly the observations with that value
    j = table.conditions.index(Condition("source", "s1"))
    assert list(table.matrix[:, j]) == [i % 2 == 1 for i in range(len(obs))]
    j = table.conditions.index(Condition("has a number", "yes"))
    assert table.matrix[:, j].sum() == 10


@pytest.mark.parametrize(
    ("text", "form"),
    [
        ("Question: How much does Plus cost per month?", "how many/much"),
        ("A student heats water. Which change happens first?", "which"),
        ("Does sync work offline?", "yes/no"),
        ("Why is the sky blue", "why"),
        ("Reset my password please.", "not a question"),
        ("Tell me, please?", "other question"),
    ],
)
def test_question_form(text: str, form: str) -> None:
    assert question_form(text) == form
