"""Diagnosis of the embedded model on real benchmarks: AG News, SST-2 and ARC-Easy.

Evaluates the embedded Gemma 3 270M on the first items of each benchmark task file (the
response cache in --db makes reruns cheap), diagnoses each run with the default settings and
writes what it found (failure rate, categories, top slices, discovered categories) to
results/diagnose_real.md, with each run's diagnosis.html beside it under --out.

    .venv/bin/python bench/diagnose_real.py --limit 200 --db sqlite:///bench-diagnose.db
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import whetstone
import whetstone.models
from whetstone.diagnose import DiagnoseOptions, Diagnosis, diagnose

ROOT = Path(__file__).resolve().parents[1]
TASKS = {
    "agnews": ROOT / "benchmarks" / "agnews.yaml",
    "sst2": ROOT / "benchmarks" / "sst2.yaml",
    "arc_easy": ROOT / "benchmarks" / "arc_easy.yaml",
}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary(name: str, d: Diagnosis, seconds: float) -> list[str]:
    """Markdown lines: what the diagnosis of one task found."""
    fr = d.inputs.failure_rate
    lines = [
        f"## {name}",
        "",
        f"{d.inputs.failures} failures of {d.inputs.observations} ({_pct(fr.value)} "
        f"[{_pct(fr.ci_low)}, {_pct(fr.ci_high)}]); diagnosis {seconds:.0f} s.",
        "",
        "| category | count | share [95% CI] |",
        "| --- | ---: | --- |",
    ]
    for c in d.categories:
        lines.append(
            f"| {c.name} | {c.count} | {_pct(c.share.value)} [{_pct(c.share.ci_low)}, "
            f"{_pct(c.share.ci_high)}] |"
        )
    lines += [
        "",
        "| top slices | size | error rate | rest | Cohen's h | BH-adjusted p |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in d.slices[:6]:
        lines.append(
            f"| {s.description} | {s.size} | {_pct(s.metric_value)} | {_pct(s.rest_value)} | "
            f"{s.effect_size:.2f} | {s.p_adjusted:.2g}{'' if s.significant else ' (n.s.)'} |"
        )
    search = d.slice_search
    if search is not None:
        lines += ["", f"{search.tested} slices tested, {search.significant} significant."]
    lines += [
        "",
        "Discovered categories: " + "; ".join(f"{c.name} ({c.count})" for c in d.clusters),
        "",
    ]
    if d.confused_pairs:
        top = d.confused_pairs[0]
        lines += [f"Most confused: {top.gold} as {top.predicted} ({top.count}).", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--db", default="sqlite:///bench-diagnose.db")
    parser.add_argument("--out", type=Path, default=Path("bench-diagnose"))
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    args = parser.parse_args()
    model = whetstone.models.load_model("default")
    lines = [
        f"# whetstone diagnose on real benchmarks ({date.today()}, {platform.machine()}, "
        f"embedded Gemma 3 270M, first {args.limit} items)",
        "",
    ]
    for name in args.tasks:
        ev = whetstone.evaluate(model, [TASKS[name]], db=args.db, limit=args.limit)
        t0 = time.perf_counter()
        d = diagnose(
            [ev.result.run_id],
            db=args.db,
            tasks=[TASKS[name]],
            options=DiagnoseOptions(),
            out_dir=args.out / name,
        )
        lines += summary(name, d, time.perf_counter() - t0)
        print("\n".join(lines[-30:]), flush=True)
    out = Path(__file__).parent / "results" / "diagnose_real.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
