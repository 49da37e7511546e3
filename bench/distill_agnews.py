"""Distillation against reality: AG News topic classification on this CPU.

A MiniLM teacher (all-MiniLM-L6-v2, 6 layers, fine-tuned here with `whetstone finetune` on the
first N rows of AG News dev) is distilled by `whetstone distill` into a student with half of its
layers, from the teacher's outputs cached once. As DistilBERT, the student is initialized from
the pre-trained model (layers 0, 2 and 5 of all-MiniLM-L6-v2, with a new
classifier head); `--init teacher` takes the fine-tuned teacher's layers and head instead.
The same student is also trained without the teacher (hard labels only: the ablation), and the
distilled student is quantized to dynamic int8. All four models are scored on the same AG News
test items with the same task file.

Claims checked (the DistilBERT anchor: 97% of the teacher's quality, 60% faster):
  - the student keeps >= 97% of the teacher's accuracy;
  - the student runs >= 1.8x faster (batch-1 latency on CPU);
  - the student trained with the teacher beats the same student trained without it.

The fine-tuned teacher is cached in the work folder (it is this benchmark's input, not what it
measures); delete the folder to start from scratch. Run it with `nice` on a shared machine:

    nice .venv/bin/python bench/distill_agnews.py
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from whetstone.optimize.distill_report import DistillResult

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
LABELS = {
    "World": "world news",
    "Sports": "sports",
    "Business": "business",
    "Sci/Tech": "science and technology",
}


def task_file(folder: Path, name: str, data: Path) -> Path:
    """A classifier task over an AG News TSV: the article is the classifier's input."""
    labels = "".join(f"  {k}: {v}\n" for k, v in LABELS.items())
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nkind: classification\n"
        f"data:\n  path: {data}\n  columns: [text, label]\n"
        f'prompt: "{{text}}"\nlabel: label\nlabels:\n{labels}'
    )
    return path


def teacher(work: Path, train: Path, args: argparse.Namespace) -> tuple[Path, float]:
    """The fine-tuned MiniLM teacher (trained once, then reused)."""
    from whetstone.optimize.finetune_config import FinetuneConfig
    from whetstone.optimize.finetuning import finetune

    settings = {
        "n": args.train,
        "epochs": args.teacher_epochs,
        "lr": args.teacher_lr,
        "max_length": args.max_length,
    }
    folder = work / "teacher"
    marker = folder / "settings.json"
    done = (folder / "model" / "config.json").is_file() and marker.is_file()
    if done and json.loads(marker.read_text()) == settings:
        return folder / "model", 0.0
    started = time.perf_counter()
    config = FinetuneConfig.model_validate(
        {
            "model": "minilm",
            "task": "classification",
            "data": {"task": str(train), "limit": args.train, "max_length": args.max_length},
            "training": {
                "epochs": args.teacher_epochs,
                "batch_size": 32,
                "learning_rate": args.teacher_lr,
                "warmup_ratio": 0.1,
            },
            "output_dir": str(folder),
            "db": f"sqlite:///{work / 'ws.db'}",
            "device": "cpu",
        }
    )
    finetune(config)
    marker.write_text(json.dumps(settings))
    return folder / "model", time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=1500, help="training rows (AG News dev)")
    parser.add_argument("--eval", type=int, default=1000, help="test rows scored per model")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--teacher-epochs", type=float, default=2.0)
    parser.add_argument("--teacher-lr", type=float, default=1e-4)
    parser.add_argument("--layers", type=int, default=3, help="student layers (teacher: 6)")
    parser.add_argument(
        "--init",
        choices=["minilm", "teacher"],
        default="minilm",
        help="take the student's layers from the pre-trained MiniLM (default) or from the "
        "fine-tuned teacher",
    )
    parser.add_argument("--epochs", type=float, default=3.0, help="student epochs")
    parser.add_argument("--lr", type=float, default=2e-4, help="student learning rate")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--hidden-weight", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache/whetstone/bench/agnews")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    for name in ("agnews_dev.tsv", "agnews_test.tsv"):
        if not (DATA / name).is_file():
            sys.exit(f"{DATA / name} is missing: this benchmark needs ../shared/data")
    args.work.mkdir(parents=True, exist_ok=True)
    train = task_file(args.work, "agnews_train", DATA / "agnews_dev.tsv")
    test = task_file(args.work, "agnews_test", DATA / "agnews_test.tsv")
    started = time.perf_counter()
    teacher_dir, teacher_seconds = teacher(args.work, train, args)

    from whetstone.optimize.distill import distill
    from whetstone.optimize.distill_config import DistillConfig

    config = DistillConfig.model_validate(
        {
            "teacher": str(teacher_dir),
            "student": {"layers": args.layers}
            | ({"init": "minilm"} if args.init == "minilm" else {}),
            "data": {"task": str(train), "limit": args.train, "max_length": args.max_length},
            "mode": "offline",
            "loss": {
                "temperature": args.temperature,
                "alpha": args.alpha,
                "hidden_weight": args.hidden_weight,
            },
            "training": {
                "epochs": args.epochs,
                "batch_size": 32,
                "learning_rate": args.lr,
                "warmup_ratio": 0.1,
            },
            "eval": {"tasks": [str(test)], "limit": args.eval},
            "speed": {
                "seq_len": args.max_length,
                "latency_runs": 40,
                "throughput_batch": 32,
                "throughput_runs": 5,
                "threads": args.threads,
            },
            "ablation": True,
            "quantize": True,
            "output_dir": str(args.work / "distilled"),
            "name": "agnews-minilm",
            "cache_dir": str(args.work / "cache"),
            "db": f"sqlite:///{args.work / 'ws.db'}",
            "device": "cpu",
        }
    )
    result = distill(config)
    seconds = time.perf_counter() - started
    write_results(result, args, seconds, teacher_seconds)


def write_results(
    result: DistillResult, args: argparse.Namespace, seconds: float, teacher_s: float
) -> None:
    """Print the table and record it (Markdown and JSON) in bench/results/."""
    row = next(r for r in result.rows if r.metric == "accuracy")
    f1 = next(r for r in result.rows if r.metric == "f1")
    acc = {
        m.role: m.metrics["agnews_test"]["accuracy"]
        for m in (result.teacher, result.student, result.ablation, result.quantized)
        if m
    }
    t_speed = result.teacher.speed
    lines = [
        "# Distillation on AG News (MiniLM teacher, half-depth student), CPU",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {result.machine.get('cpu')} ({result.machine.get('cores')} cores), "
        f"{platform.platform()}; shared with other jobs, run under `nice`, torch threads "
        f"{args.threads}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in result.versions.items())}",
        f"- data: first {args.train} rows of AG News dev for training (teacher and students), "
        f"first {args.eval} rows of AG News test for scoring; max_length {args.max_length}",
        f"- teacher: all-MiniLM-L6-v2 + classification head, `whetstone finetune` "
        f"{args.teacher_epochs:g} epochs, lr {args.teacher_lr:g}"
        + (f" ({teacher_s:.0f} s)" if teacher_s else " (cached from an earlier run)"),
        f"- student: {result.student.name} (its classifier head "
        + ("new" if args.init == "minilm" else "the teacher's")
        + "), "
        f"offline top-k cache, {result.config['loss']['divergence']} at T="
        f"{args.temperature:g}, alpha {args.alpha:g}, hidden-state weight "
        f"{args.hidden_weight:g}; {args.epochs:g} epochs, lr {args.lr:g}, "
        f"{result.training.steps} steps in {result.training.seconds:.0f} s; ablation: same "
        f"student, same data and schedule, hard labels only "
        f"({result.ablation_training.seconds:.0f} s)"
        if result.ablation_training
        else "",
        f"- speed: forward pass on one real input of {t_speed.seq_len} tokens (latency, median "
        f"of 40 runs, models interleaved) and batches of {t_speed.throughput_batch} "
        "(throughput)",
        f"- whole run: {seconds / 60:.1f} min",
        "",
        "| model | layers | parameters | size MB | latency ms | speed-up | throughput ex/s "
        "| accuracy [95% CI] | retention |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for m in (result.teacher, result.student, result.ablation, result.quantized):
        if m is None:
            continue
        a = acc[m.role]
        speedup = t_speed.latency_ms / m.speed.latency_ms if m.speed else float("nan")
        retention = a.value / acc["teacher"].value
        lines.append(
            f"| {m.role} | {m.layers} | {m.parameters:,} | {m.size_mb:.1f} | "
            f"{m.speed.latency_ms:.2f} | {speedup:.2f}x | {m.speed.throughput:.1f} | "
            f"{a.value:.4f} [{a.ci_low:.4f}, {a.ci_high:.4f}] | {retention:.4f} |"
        )
    gain = row.gain
    checks = [
        (
            "student keeps >= 97% of the teacher's accuracy",
            row.retention >= 0.97,
            f"retention {row.retention:.4f}, 95% CI [{row.retention_ci[0]:.4f}, "
            f"{row.retention_ci[1]:.4f}]"
            if row.retention_ci
            else f"{row.retention:.4f}",
        ),
        (
            "student >= 1.8x faster (latency)",
            (result.speedup_latency or 0) >= 1.8,
            f"{result.speedup_latency:.2f}x latency, {result.speedup_throughput:.2f}x throughput",
        ),
        (
            "distilled student beats the same student without the teacher",
            gain is not None and gain.diff > 0,
            f"+{gain.diff:.4f} accuracy [{gain.ci_low:.4f}, {gain.ci_high:.4f}], "
            f"McNemar p = {gain.p_value:.3g}"
            if gain
            else "no ablation",
        ),
    ]
    lines += [
        "",
        f"Macro F1: teacher {f1.reference:.4f}, student {f1.candidate:.4f} "
        f"(retention {f1.retention:.4f}), without teacher {f1.ablation:.4f}.",
        "",
        "| claim | holds | measured |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {c} | {'yes' if ok else 'NO'} | {m} |" for c, ok, m in checks]
    if gain is not None and gain.p_value >= 0.05:
        lines[-1] = lines[-1].replace("| yes |", "| yes (not significant at 5%) |")
    lines += [
        "",
        "Anchor: DistilBERT keeps 97% of BERT's GLUE score with 40% fewer parameters "
        "and runs 60% faster.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.init == "minilm" else "_teacher_init"
    (RESULTS / f"distill_agnews_cpu{suffix}.md").write_text(text)
    (RESULTS / f"distill_agnews_cpu{suffix}.json").write_text(result.model_dump_json(indent=1))


if __name__ == "__main__":
    main()
