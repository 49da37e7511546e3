"""whetstone audit on real data, side by side with the peers for two of its checks.

Audits (../shared/data):
  sst2     sst2_train.tsv (60,614 phrases) against sst2_dev.tsv
  agnews   agnews_dev.tsv (10,000 articles) against agnews_test.tsv

Each audit runs every check (coverage on a sample of 3,000 training and 1,500 eval texts, so
the MiniLM embeddings stay affordable on a CPU); its findings and step timings are tabulated.
Peers on the same data:
  cleanlab Datalab   label issues from the same out-of-fold probabilities
                     (Datalab.find_issues(pred_probs=...)), compared with whetstone's set
  datasketch         text-dedup style MinHashLSH (threshold 0.7, 128 permutations, default
                     weights; sha1 per shingle) on the same character 5-grams, verified by
                     true Jaccard; its pairs compared with whetstone's

    .venv/bin/python bench/audit_real.py [--datasets sst2 agnews]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from whetstone.audit import Audit

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "bench"))

DATASETS = {
    "sst2": ("sst2_train.tsv", "sst2_dev.tsv", None),
    "agnews": ("agnews_dev.tsv", "agnews_test.tsv", ["text", "label"]),
}


def run_audit(name: str, out: Path) -> tuple[Audit, float]:
    from whetstone.audit import AuditConfig, audit

    train, dev, names = DATASETS[name]
    cfg = AuditConfig.model_validate(
        {"coverage": {"max_train": 3000, "max_eval": 1500}, "columns": {"names": names}}
    )
    start = time.perf_counter()
    result = audit(DATA / train, [DATA / dev], config=cfg, out_dir=out)
    return result, time.perf_counter() - start


def datalab_peer(name: str, result: Audit) -> dict:
    """cleanlab Datalab on out-of-fold probabilities computed as whetstone computes them."""
    import numpy as np
    from cleanlab import Datalab

    from whetstone.audit.config import ColumnSpec, LabelIssuesConfig
    from whetstone.audit.labels import oof_probabilities
    from whetstone.audit.loading import Dataset

    train, _dev, names = DATASETS[name]
    records = Dataset(DATA / train, ColumnSpec(names=names)).load().records
    issues = result.label_issues
    assert issues is not None
    labeled = [r for r in records if r.label in issues.classes and r.text.strip()]
    classes = issues.classes
    y = np.array([classes.index(r.label or "") for r in labeled])
    cfg = LabelIssuesConfig(features=issues.features)
    probs = oof_probabilities([r.text for r in labeled], y, cfg, seed=0)
    start = time.perf_counter()
    lab = Datalab(data={"label": y.tolist()}, label_name="label", verbosity=0)
    lab.find_issues(pred_probs=probs, issue_types={"label": {}})
    seconds = time.perf_counter() - start
    flagged = lab.get_issues("label")
    theirs = {labeled[i].id for i in np.flatnonzero(flagged["is_label_issue"].to_numpy())}
    ours = {i.id for i in issues.issues}
    return {"seconds": seconds, "n": len(theirs), "both": len(ours & theirs), "ours": len(ours)}


def datasketch_peer(name: str, result: Audit) -> dict:
    import audit_scale

    train, _dev, names = DATASETS[name]
    from whetstone.audit.config import ColumnSpec
    from whetstone.audit.loading import Dataset

    records = Dataset(DATA / train, ColumnSpec(names=names)).load().records
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        path.write_text(
            "".join(json.dumps({"id": r.id, "text": r.text}) + "\n" for r in records),
            encoding="utf-8",
        )
        peer = audit_scale.run_datasketch(path)
    assert result.duplicates is not None
    ours = {tuple(sorted([p.a, p.b])) for p in result.duplicates.near_pairs}
    theirs = {tuple(p) for p in peer["pairs"]}
    return {"seconds": peer["seconds"], "n": len(theirs), "both": len(ours & theirs),
            "ours": len(ours)}  # fmt: skip


def summary(name: str, r: Audit, seconds: float) -> list[str]:
    d, li, pii = r.duplicates, r.label_issues, r.pii
    assert d is not None and li is not None and pii is not None
    c = r.contamination[0]
    cov = r.coverage[0] if r.coverage else None
    counts = r.counts()
    steps = ", ".join(f"{k} {v:.0f}" for k, v in r.timings.items())
    rows = [
        f"| records | {r.train.n_records:,} |",
        f"| exact duplicate groups (extra copies) | {d.n_exact_groups:,} ({d.n_exact_extra:,}) |",
        f"| near-duplicate pairs / groups (LSH candidates) | {d.n_near_pairs:,} / "
        f"{d.n_near_groups:,} ({d.lsh.candidates:,}) |",
        f"| label conflicts (exact / near) | "
        f"{sum(g.kind == 'exact' for g in d.conflicts):,} / "
        f"{sum(g.kind == 'near' for g in d.conflicts):,} |",
        f"| likely label errors ({li.features}; out-of-fold accuracy) | {li.n_issues:,} "
        f"({li.oof_accuracy.value:.3f}) |",
        f"| eval items contaminated / partial / checked | {c.n_contaminated:,} / "
        f"{c.n_partial:,} / {c.n_checked:,} ({c.share_contaminated:.1%}) |",
        f"| training records containing contaminated eval items | {len(c.train_ids):,} |",
    ]
    if cov is not None:
        gaps = [t for t in cov.topics if t.gap]
        rows.append(f"| far eval items / gap topics (of {cov.n_eval:,} eval, {cov.n_train:,} "
                    f"train sampled) | {len(cov.far_items):,} / {len(gaps)} |")  # fmt: skip
    rows += [
        f"| records with PII | {pii.n_records:,} |",
        f"| representation / bias-association findings | {counts.get('representation', 0)} / "
        f"{counts.get('bias_association', 0)} |",
        f"| total seconds (steps: {steps}) | {seconds:.0f} |",
    ]
    return [f"## {name}", "", "| finding | value |", "| --- | ---: |", *rows, ""]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    args = parser.parse_args()
    lines = [
        "# whetstone audit on real data, with peers",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.processor() or platform.machine()}"
        f" · {os.cpu_count()} cores · a shared machine (load average at start "
        f"{os.getloadavg()[0]:.1f}); times are wall-clock",
        "",
    ]
    peers = ["| data | check | whetstone | peer | peer found | both | peer seconds |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]  # fmt: skip
    for name in args.datasets:
        with tempfile.TemporaryDirectory() as tmp:
            result, seconds = run_audit(name, Path(tmp))
        lines += summary(name, result, seconds)
        print("\n".join(lines[-14:]), flush=True)
        dl = datalab_peer(name, result)
        peers.append(f"| {name} | label issues | {dl['ours']:,} | cleanlab Datalab | "
                     f"{dl['n']:,} | {dl['both']:,} | {dl['seconds']:.1f} |")  # fmt: skip
        ds = datasketch_peer(name, result)
        peers.append(
            f"| {name} | near-duplicate pairs | {ds['ours']:,} | datasketch MinHashLSH "
            f"(text-dedup style) | {ds['n']:,} | {ds['both']:,} | {ds['seconds']:.1f} |"
        )
        print("\n".join(peers), flush=True)
    lines += ["## Peers", "", *peers, ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "audit_real.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
