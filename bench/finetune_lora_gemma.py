"""LoRA on the embedded Gemma 3 270M with part of Tiny Shakespeare: held-out perplexity before
and after, paired over documents.

    .venv/bin/python bench/finetune_lora_gemma.py --steps 40

The text is split once: its first 90% (by characters, cut at a blank line) is the training
part, the rest is held out. Training reads blocks of 128 tokens from documents of about 1,000
characters of the training part; the evaluation scores the first --docs documents of about
2,000 characters of the held-out part (rolling windows of 512 tokens) with the base and the
fine-tuned model. The table goes to bench/results/finetune_lora_gemma_shakespeare.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from whetstone.optimize import finetune

REPO = Path(__file__).resolve().parents[1]
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def split(work: Path) -> tuple[Path, Path]:
    """train.txt (the first 90%, cut at a blank line) and heldout.txt (the rest)."""
    text = TEXT.read_text(encoding="utf-8")
    cut = text.index("\n\n", int(len(text) * 0.9)) + 2
    (work / "train.txt").write_text(text[:cut], encoding="utf-8")
    (work / "heldout.txt").write_text(text[cut:], encoding="utf-8")
    return work / "train.txt", work / "heldout.txt"


def task(work: Path, name: str, data: Path, chunk: int, limit: int | None) -> Path:
    """A perplexity task over a text file."""
    spec = {
        "name": name,
        "kind": "perplexity",
        "data": {"path": str(data), "chunk_chars": chunk, **({"limit": limit} if limit else {})},
        "text": "text",
        "window": {"max_length": 512},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    """Fine-tune, evaluate both models, write the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--docs", type=int, default=12)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ws-lora-gemma-"))
    train, heldout = split(work)
    config = {
        "model": "default",
        "data": {
            "task": str(task(work, "shakespeare_train", train, 1000, None)),
            "max_length": 128,
        },
        "lora": {"r": args.rank, "alpha": 2 * args.rank, "dropout": 0.0},
        "training": {
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": 2e-4,
            "warmup_ratio": 0.1,
            "logging_steps": 5,
        },
        "eval": {"tasks": [str(task(work, "shakespeare_heldout", heldout, 2000, args.docs))]},
        "output_dir": str(work / "gemma-lora"),
        "db": f"sqlite:///{work}/db.sqlite",
        "device": "cpu",
    }
    path = work / "finetune.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    t0 = time.perf_counter()
    result = finetune(path)
    total = time.perf_counter() - t0
    t = result.training
    rows = [m for m in result.comparison.metrics if m.metric in ("perplexity", "bits_per_byte")]
    lines = [
        "# LoRA on the embedded Gemma 3 270M, Tiny Shakespeare: held-out perplexity",
        "",
        f"{datetime.now(UTC):%Y-%m-%d} · {platform.machine()} · torch CPU float32 · shared "
        "machine (times are upper bounds)",
        "",
        f"LoRA r={args.rank}, alpha={2 * args.rank} on every linear layer: "
        f"{t.trainable_parameters:,} of {t.total_parameters:,} parameters; {t.steps} steps of "
        f"{args.batch_size} blocks of 128 tokens ({t.train_tokens:,} tokens) from the first 90% "
        f"of the text, {t.train_seconds:.0f} s of training ({total:.0f} s with both "
        f"evaluations). Held out: the first {args.docs} documents of ~2,000 characters of the "
        "last 10%, rolling windows of 512 tokens; difference bootstrapped over documents.",
        "",
        "| metric | base | LoRA | LoRA - base | 95% CI | p |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in rows:
        lines.append(
            f"| {m.metric} | {m.a:.3f} | {m.b:.3f} | {m.diff:+.3f} | "
            f"[{m.ci_low:+.3f}, {m.ci_high:+.3f}] | {m.p_value:.2g} |"
        )
    losses = [h["loss"] for h in t.history if "loss" in h]
    lines += ["", f"Training loss: {losses[0]:.3f} at the start, {losses[-1]:.3f} at the end.", ""]
    report = "\n".join(lines)
    print(report)
    (REPO / "bench" / "results" / "finetune_lora_gemma_shakespeare.md").write_text(report)


if __name__ == "__main__":
    main()
