"""Diagnosis at scale: a stored run with over 10,000 failures on real AG News text.

The fake model classifies all of AG News (dev 10,001 + test 7,600 headlines) so the run has
over 10,000 failures on real text; `whetstone diagnose` then runs every stage (detectors,
rules, MiniLM embeddings of every item, clusters, topic slices, slice tests). The slice tests
are also run the reference way (scipy's fisher_exact per slice, statsmodels' multipletests) to
time them side by side and check that the p-values agree. Writes results/diagnose_scale.md.

    .venv/bin/python bench/diagnose_scale.py [--items N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

import whetstone
from whetstone.diagnose import DiagnoseOptions, diagnose
from whetstone.diagnose.analysis import embed_texts
from whetstone.diagnose.clusters import choose_kmeans, ctfidf_terms
from whetstone.diagnose.failures import load_task_data, observations_from_samples
from whetstone.diagnose.slices import derive_attributes, find_slices
from whetstone.store import Store

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TASK = """name: {name}
kind: classification
data:
  path: {path}
  columns: [text, label]
prompt: "Article: {{text}}\\nQuestion: Is this article about world news, sports, business, or \
science and technology?\\nAnswer:"
label: label
labels: {{World: world news, Sports: sports, Business: business, Sci/Tech: science and technology}}
"""


class Timer:
    """Wall time of each diagnosis stage."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.current: str | None = None
        self.t0 = time.perf_counter()

    def start(self, stage: str, total: int) -> None:
        self._close()
        self.current, self.t0 = stage, time.perf_counter()
        print(f"  {stage} ({total})", flush=True)

    def advance(self, n: int) -> None:
        pass

    def _close(self) -> None:
        if self.current is not None:
            self.stages[self.current] = time.perf_counter() - self.t0

    def finish(self) -> None:
        self._close()
        self.current = None


def reference_slices(table, failed: np.ndarray, min_size: int) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    """Singles and pairs tested one by one with scipy, adjusted with statsmodels."""
    from scipy.stats import fisher_exact
    from statsmodels.stats.multitest import multipletests

    t0 = time.perf_counter()
    m, n = table.matrix, len(failed)
    total_fail = int(failed.sum())
    masks = [m[:, j] for j in range(m.shape[1])]
    attrs = [c.attribute for c in table.conditions]
    for a in range(m.shape[1]):
        for b in range(a + 1, m.shape[1]):
            both = m[:, a] & m[:, b]
            size = int(both.sum())
            if attrs[a] == attrs[b] or not min_size <= size <= n - min_size:
                continue
            if size in (int(m[:, a].sum()), int(m[:, b].sum())):
                continue
            masks.append(both)
    pvals = []
    for mask in masks:
        k, size = int(failed[mask].sum()), int(mask.sum())
        table2 = [[k, size - k], [total_fail - k, n - size - total_fail + k]]
        pvals.append(fisher_exact(table2, alternative="greater").pvalue)
    adjusted = multipletests(pvals, method="fdr_bh")[1]
    return np.sort(adjusted), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=None, help="items per file (default all)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="diagnose-bench-"))
    tasks = []
    for name, file in (("agnews_dev", "agnews_dev.tsv"), ("agnews_test", "agnews_test.tsv")):
        path = folder / f"{name}.yaml"
        path.write_text(TASK.format(name=name, path=DATA / file))
        tasks.append(path)
    db = f"sqlite:///{folder / 'db.sqlite'}"
    t0 = time.perf_counter()
    ev = whetstone.evaluate("fake", tasks, db=db, limit=args.items)
    eval_s = time.perf_counter() - t0
    timer = Timer()
    t0 = time.perf_counter()
    result = diagnose(
        [ev.result.run_id],
        db=db,
        tasks=tasks,
        options=DiagnoseOptions(),
        reporter=timer,
        out_dir=folder / "out",
    )
    timer.finish()
    total_s = time.perf_counter() - t0
    print(f"{result.inputs.failures} failures of {result.inputs.observations}; {total_s:.0f} s")

    # slice tests side by side on the biggest task
    store = Store(db)
    data = load_task_data(tasks[:1])
    obs = observations_from_samples(
        ev.result.run_id, store.get_samples(ev.result.run_id, "agnews_dev"), data=data
    )
    vectors = embed_texts([o.text for o in obs], store)  # from the diagnosis' cache
    choice = choose_kmeans(vectors, 10)
    names = [" / ".join(t) for t in ctfidf_terms([o.text for o in obs], choice.labels, 3)]
    table = derive_attributes(obs, choice.labels, names, min_size=20)
    failed = np.array([o.failed for o in obs])
    t0 = time.perf_counter()
    _, search = find_slices(table, failed, min_size=20, max_report=100_000)
    ours_s = time.perf_counter() - t0
    ref_adjusted, ref_s = reference_slices(table, failed, 20)
    ours_all = _all_adjusted(table, failed)
    diff = float(np.max(np.abs(ours_all - ref_adjusted)))

    k_by = result.cluster_search.by if result.cluster_search else "-"
    significant = result.slice_search.significant if result.slice_search else 0
    top = result.slices[0].description if result.slices else "-"
    lines = [
        f"# whetstone diagnose at scale ({date.today()}, {platform.machine()}, "
        f"{platform.processor() or 'cpu'}, 2 cores)",
        "",
        f"Load average of the shared machine at the end: {os.getloadavg()[0]:.1f} "
        "(other work ran alongside; the times are wall-clock).",
        "",
        f"Run: fake model on AG News dev + test ({result.inputs.observations} items, "
        f"{result.inputs.failures} failures); evaluation {eval_s:.0f} s.",
        "",
        "| stage | seconds |",
        "| --- | ---: |",
        *(f"| {stage} | {secs:.1f} |" for stage, secs in timer.stages.items()),
        f"| **whole diagnosis** (reading the run, writing the files) | **{total_s:.1f}** |",
        "",
        f"Slice tests on agnews_dev ({len(obs)} items, {search.tested} slices: singles and pairs):",
        "",
        "| | seconds | max abs. difference of BH-adjusted p |",
        "| --- | ---: | ---: |",
        f"| whetstone (hypergeometric tail, vectorized) | {ours_s:.2f} | |",
        f"| scipy fisher_exact per slice + statsmodels multipletests | {ref_s:.2f} | {diff:.1e} |",
        "",
        f"Discovered categories: {len(result.clusters)} (k by {k_by}); significant slices: "
        f"{significant}; top slice: {top}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / "diagnose_scale.md"
    out.write_text(text)


def _all_adjusted(table, failed: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Every tested slice's adjusted p-value from whetstone, sorted."""
    from whetstone.diagnose.slices import _candidates, fisher_greater
    from whetstone.evaluate.statistics import benjamini_hochberg

    tested = _candidates(0, table, failed, 20, True)
    k = np.array([t.failures for t in tested])
    n = np.array([t.size for t in tested])
    p = fisher_greater(k, n, int(failed.sum()), len(failed))
    return np.sort(benjamini_hochberg(p))


if __name__ == "__main__":
    main()
