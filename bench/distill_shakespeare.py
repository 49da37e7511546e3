"""Distillation of a causal LM against reality: the embedded Gemma 3 270M on Tiny Shakespeare.

The teacher is the embedded Gemma 3 270M (18 layers). The student keeps 6 of its layers
(DistilBERT-style initialization: every other weight copied, the tied embedding/LM head frozen)
and is trained on the first characters of Tiny Shakespeare from the teacher's top-64 outputs,
cached once. The same student is trained on the same text without the teacher (next-token loss
only). Teacher, student and ablation are scored on held-out text from the end of the file
(rolling perplexity).

Claims checked:
  - the distilled student reaches a lower held-out perplexity than the same student trained
    without the teacher;
  - its perplexity ratio to the teacher is reported (DistilGPT2's on WikiText-103 is 1.29x,
    after far more training than this).

The split is deterministic: training text = the first `--train-chars` characters, held-out =
the last `--eval-chars` characters, cut into documents of about 2,000 characters at line ends.
Run it with `nice` on a shared machine:

    nice .venv/bin/python bench/distill_shakespeare.py
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from whetstone.optimize.distill_report import DistillResult

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
RESULTS = REPO / "bench" / "results"


def write_tasks(work: Path, train_chars: int, eval_chars: int) -> tuple[Path, Path]:
    """Perplexity tasks over the training head and the held-out tail of the file."""
    text = DATA.read_text(encoding="utf-8")
    head = text[:train_chars]
    tail = text[-eval_chars:]
    tail = tail[tail.index("\n") + 1 :]  # start the held-out text at a line
    (work / "train.txt").write_text(head)
    (work / "heldout.txt").write_text(tail)
    tasks = []
    for name, data, window in (
        ("shakespeare_train", "train.txt", 128),
        ("shakespeare_heldout", "heldout.txt", 256),
    ):
        path = work / f"{name}.yaml"
        path.write_text(
            f"name: {name}\nkind: perplexity\ndata: {{path: {data}, chunk_chars: 2000}}\n"
            f"window: {{max_length: {window}}}\n"
        )
        tasks.append(path)
    return tasks[0], tasks[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-chars", type=int, default=40_000)
    parser.add_argument("--eval-chars", type=int, default=30_000)
    parser.add_argument("--layers", type=int, default=6, help="student layers (teacher: 18)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--work", type=Path, default=Path.home() / ".cache/whetstone/bench/shakespeare"
    )
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"{DATA} is missing: this benchmark needs ../shared/data")

    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    train, heldout = write_tasks(args.work, args.train_chars, args.eval_chars)

    from whetstone.optimize.distill import distill
    from whetstone.optimize.distill_config import DistillConfig

    started = time.perf_counter()
    config = DistillConfig.model_validate(
        {
            "teacher": "default",
            "student": {"layers": args.layers},
            "data": {"task": str(train), "max_length": args.max_length},
            "mode": "offline",
            "top_k": args.top_k,
            "loss": {"temperature": args.temperature, "alpha": args.alpha},
            "training": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "learning_rate": args.lr,
                "warmup_ratio": 0.05,
                "freeze_embeddings": True,
                "weight_decay": 0.0,
            },
            "eval": {"tasks": [str(heldout)]},
            "speed": {
                "seq_len": args.max_length,
                "latency_runs": 5,
                "throughput_batch": 4,
                "throughput_runs": 2,
                "threads": args.threads,
            },
            "ablation": True,
            "output_dir": str(args.work / "distilled"),
            "name": "shakespeare-gemma",
            "cache_dir": str(args.work / "cache"),
            "db": f"sqlite:///{args.work / 'ws.db'}",
            "device": "cpu",
        }
    )
    result = distill(config)
    write_results(result, args, time.perf_counter() - started)


def write_results(result: DistillResult, args: argparse.Namespace, seconds: float) -> None:
    """Print the table and record it (Markdown and JSON) in bench/results/."""
    ppl = {
        m.role: m.metrics["shakespeare_heldout"]["perplexity"]
        for m in (result.teacher, result.student, result.ablation)
        if m
    }
    row = next(r for r in result.rows if r.metric == "perplexity")
    gain = row.gain
    lines = [
        "# Distillation of a causal LM: Gemma 3 270M on Tiny Shakespeare, CPU",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {result.machine.get('cpu')} ({result.machine.get('cores')} cores), "
        f"{platform.platform()}; shared with other jobs, run under `nice`, torch threads "
        f"{args.threads}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in result.versions.items())}",
        f"- data: training = the first {args.train_chars:,} characters of tinyshakespeare.txt "
        f"({result.training.examples} blocks of at most {args.max_length} tokens); held-out = "
        f"the last {args.eval_chars:,} characters, documents of ~2,000 characters, rolling "
        "windows of 256 tokens",
        f"- student: {result.student.name}, embeddings/LM head frozen (tied), offline top-"
        f"{args.top_k} teacher cache, forward KL at T={args.temperature:g}, alpha "
        f"{args.alpha:g}; {args.epochs:g} epochs, batch {args.batch_size}, lr {args.lr:g}: "
        f"{result.training.steps} steps in {result.training.seconds:.0f} s",
        f"- ablation: the same student (same initialization, data and schedule), next-token "
        f"loss only: {result.ablation_training.steps if result.ablation_training else 0} steps",
        f"- whole run: {seconds / 60:.1f} min",
        "",
        "| model | layers | parameters | size MB | latency ms | held-out perplexity [95% CI] "
        "| ratio to teacher |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for m in (result.teacher, result.student, result.ablation):
        if m is None:
            continue
        p = ppl[m.role]
        lines.append(
            f"| {m.role} | {m.layers} | {m.parameters:,} | {m.size_mb:.0f} | "
            f"{m.speed.latency_ms:.0f} | {p.value:.2f} [{p.ci_low:.2f}, {p.ci_high:.2f}] | "
            f"{p.value / ppl['teacher'].value:.2f}x |"
            if m.speed
            else ""
        )
    beats = gain is not None and gain.diff < 0
    lines += [
        "",
        "| claim | holds | measured |",
        "| --- | --- | --- |",
        f"| distilled student has a lower held-out perplexity than the same student without "
        f"the teacher | {'yes' if beats else 'NO'} | "
        + (
            f"{gain.diff:+.2f} perplexity [{gain.ci_low:.2f}, {gain.ci_high:.2f}], paired "
            f"bootstrap over documents p = {gain.p_value:.3g} |"
            if gain
            else "no ablation |"
        ),
        f"| ratio of the student's perplexity to the teacher's | - | {row.ratio:.2f}x "
        "(DistilGPT2 on WikiText-103: 1.29x) |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distill_shakespeare_cpu.md").write_text(text)
    (RESULTS / "distill_shakespeare_cpu.json").write_text(result.model_dump_json(indent=1))


if __name__ == "__main__":
    main()
