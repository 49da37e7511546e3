"""Transfer learning on real data: the MiniLM encoder fine-tuned on SST-2 (or AG News) against
its untrained head and against a zero-shot prompt of the embedded Gemma, paired item by item.

    .venv/bin/python bench/finetune_transfer.py --task sst2 --train 2000 --eval 500
    .venv/bin/python bench/finetune_transfer.py --task agnews --train 2000 --eval 500

The training and evaluation items are fixed random samples (seed 0) of the public files in
../shared/data (SST-2: train split for training, held-out split for evaluation; AG News: the
"dev" file for training, the test file for evaluation). The classifier reads the bare text; the
Gemma baseline reads lm-evaluation-harness's prompt with verbalized labels (benchmarks/). The
table goes to bench/results/finetune_transfer_TASK.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from whetstone.evaluate.compare import compare_samples
from whetstone.evaluate.engine import evaluate
from whetstone.optimize import finetune

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SPECS = {
    "sst2": {
        "train": ("sst2_train.tsv", True),
        "eval": ("sst2_dev.tsv", True),
        "text": "sentence",
        "labels": {"0": "negative", "1": "positive"},
        "prompt": "{sentence}\nQuestion: Is this sentence positive or negative?\nAnswer:",
    },
    "agnews": {
        "train": ("agnews_dev.tsv", False),
        "eval": ("agnews_test.tsv", False),
        "text": "text",
        "labels": {
            "World": "world news",
            "Sports": "sports",
            "Business": "business",
            "Sci/Tech": "science and technology",
        },
        "prompt": "Article: {text}\nQuestion: Is this article about world news, sports, "
        "business, or science and technology?\nAnswer:",
    },
}


def read_rows(name: str, header: bool, text: str) -> list[dict[str, str]]:
    """Rows of a TSV file with their 0-based row number as id."""
    with (DATA / name).open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = list(reader)[1 if header else 0 :]
    return [{"id": f"r{i}", text: r[0], "label": r[1]} for i, r in enumerate(rows) if len(r) >= 2]


def sample(rows: list[dict[str, str]], n: int, seed: int) -> list[dict[str, str]]:
    """A fixed random sample of ``n`` rows."""
    order = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [rows[i] for i in sorted(order)]


def write_task(folder: Path, name: str, spec: dict, data: str, prompt: str) -> Path:
    """A classification task file over ``data``."""
    task = {
        "name": name,
        "kind": "classification",
        "data": {"path": data, "id": "id"},
        "prompt": prompt,
        "label": "label",
        "labels": spec["labels"],
    }
    path = folder / f"{name}_{'prompt' if 'Question' in prompt else 'text'}.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    """Run the three models on the same items and write the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", choices=sorted(SPECS), default="sst2")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--eval", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--no-gemma", action="store_true", help="Skip the zero-shot baseline.")
    args = parser.parse_args()
    spec = SPECS[args.task]
    work = Path(tempfile.mkdtemp(prefix=f"ws-transfer-{args.task}-"))
    train = sample(read_rows(*spec["train"], spec["text"]), args.train, 0)
    held = sample(read_rows(*spec["eval"], spec["text"]), args.eval, 0)
    for name, rows in (("train", train), ("eval", held)):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text_task = write_task(work, args.task, spec, "eval.jsonl", "{" + spec["text"] + "}")
    prompt_task = write_task(work, args.task, spec, "eval.jsonl", spec["prompt"])
    config = {
        "model": "minilm",
        "data": {"task": str(text_task), "path": "train.jsonl", "max_length": 128},
        "training": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "warmup_ratio": 0.1,
        },
        "eval": {"tasks": [str(text_task)]},
        "output_dir": str(work / "minilm"),
        "db": f"sqlite:///{work}/db.sqlite",
    }
    (work / "finetune.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    t0 = time.perf_counter()
    result = finetune(work / "finetune.yaml")
    total = time.perf_counter() - t0
    from whetstone.store import Store

    store = Store(config["db"])
    tuned = store.get_samples(result.tuned_run)
    rows = [("MiniLM, untrained head", result.base_metrics, None, None)]
    rows.append(("MiniLM fine-tuned", result.tuned_metrics, result.comparison, None))
    gemma_seconds = None
    if not args.no_gemma:
        t1 = time.perf_counter()
        gemma = evaluate("default", [prompt_task], db=store)
        gemma_seconds = time.perf_counter() - t1
        vs = compare_samples(gemma.samples, tuned, run_a="gemma", run_b="minilm")
        rows.insert(
            1,
            (
                "Gemma 3 270M zero-shot",
                {args.task: gemma.result.tasks[args.task].metrics},
                None,
                vs,
            ),
        )
    report = render(args, result, rows, total, gemma_seconds)
    print(report)
    out = REPO / "bench" / "results" / f"finetune_transfer_{args.task}.md"
    out.write_text(report, encoding="utf-8")


def _acc(metrics: dict, task: str) -> str:
    m = metrics[task]["accuracy"]
    return f"{m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]"


def _diff(cmp) -> str:  # type: ignore[no-untyped-def]
    if cmp is None:
        return ""
    m = next(m for m in cmp.metrics if m.metric == "accuracy")
    return f"{m.diff:+.3f} [{m.ci_low:+.3f}, {m.ci_high:+.3f}], p = {m.p_value:.2g}"


def render(args, result, rows, total: float, gemma_seconds: float | None) -> str:  # type: ignore[no-untyped-def]
    """The markdown table."""
    t = result.training
    lines = [
        f"# Transfer learning on {args.task}: MiniLM fine-tuned vs its untrained head and a "
        "zero-shot Gemma",
        "",
        f"{datetime.now(UTC):%Y-%m-%d} · {platform.machine()}, {platform.processor() or 'cpu'} · "
        f"torch CPU float32 · the machine was shared with other jobs (times are upper bounds)",
        "",
        f"Training: {t.train_examples} items (seed-0 sample), {t.epochs:g} epoch(s), batch "
        f"{args.batch_size}, lr {args.learning_rate:g}, {t.steps} steps, full fine-tune of "
        f"{t.trainable_parameters:,} parameters in {t.train_seconds:.0f} s "
        f"(whole run with both evaluations: {total:.0f} s). Evaluation: {args.eval} held-out "
        "items (seed-0 sample), paired; McNemar's exact test.",
        "",
        "| model | accuracy [95% CI] | macro F1 | fine-tuned minus this model |",
        "| --- | --- | --- | --- |",
    ]
    for name, metrics, _cmp, vs in rows:
        f1 = metrics[args.task]["f1"].value
        diff = ""
        if name.startswith("MiniLM, untrained"):
            diff = _diff(result.comparison)
        elif vs is not None:
            diff = _diff(vs)
        lines.append(f"| {name} | {_acc(metrics, args.task)} | {f1:.3f} | {diff} |")
    if gemma_seconds is not None:
        lines += ["", f"Gemma zero-shot evaluation took {gemma_seconds:.0f} s."]
    lines += [
        "",
        f"Runs: untrained head {result.base_run}, fine-tuned {result.tuned_run} "
        f"(`whetstone compare {result.base_run} {result.tuned_run}` in the bench database).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
