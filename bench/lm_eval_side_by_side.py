"""whetstone and lm-evaluation-harness side by side on the same model and data, in one go.

Workloads (data from ../shared/data):
  mc   200 ARC-Easy questions (799 log-likelihood requests), batch 8
  ppl  rolling perplexity on 30 Tiny Shakespeare documents of about 4,000 characters,
       max_length 1024, batch 4

Each tool runs in its own process (so peak RSS is its own), on the embedded Gemma 3 270M
loaded from the same safetensors folder, float32 on the CPU (or --device cuda --dtype ...).
The script checks that both agree (same predictions, per-choice log-likelihood within 1e-3,
bits per byte within 1e-4 relative), prints a table and writes it to bench/results/.

    .venv/bin/python bench/lm_eval_side_by_side.py [--workloads mc ppl] [--device cpu]

lm-evaluation-harness scores rolling perplexity with the tokenizer's default special tokens,
which for Gemma also scores the BOS token after the BOS prefix; it runs here with
add_bos_token=False for that workload, which is whetstone's definition (see README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
ARC_LIMIT, PPL_DOCS, PPL_CHARS, PPL_MAX_LENGTH = 200, 30, 4000, 1024
BATCH = {"mc": 8, "ppl": 4}


def peak_rss_gb() -> float:
    """Peak resident memory of this process in GB.

    Linux's VmHWM belongs to the process's own address space; ru_maxrss would also count the
    parent's resident memory at the fork before exec (the parent may hold a GGUF conversion).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def arc_items() -> list[dict]:
    with (DATA / "arc_easy_test.jsonl").open() as fh:
        return [json.loads(line) for line in fh][:ARC_LIMIT]


def ppl_docs() -> list[str]:
    from whetstone.tasks.loading import chunk_text

    text = (DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    return chunk_text(text, PPL_CHARS)[:PPL_DOCS]


def write_inputs(folder: Path) -> dict[str, Path]:
    """The same data for both tools: an ARC JSONL and a JSONL of documents."""
    arc = folder / "arc.jsonl"
    arc.write_text("".join(json.dumps(x) + "\n" for x in arc_items()))
    docs = folder / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"id": str(i), "text": d}) + "\n" for i, d in enumerate(ppl_docs()))
    )
    (folder / "mc.yaml").write_text(
        f"name: mc\nkind: multiple_choice\ndata: {{path: {json.dumps(str(arc))}, id: id}}\n"
        'prompt: "Question: {question}\\nAnswer:"\nchoices: choices\nanswer: answer\n'
        "answer_labels: labels\n"
    )
    (folder / "ppl.yaml").write_text(
        f"name: ppl\nkind: perplexity\ndata: {{path: {json.dumps(str(docs))}, id: id}}\n"
        f"text: text\nwindow: {{max_length: {PPL_MAX_LENGTH}}}\n"
    )
    return {"arc": arc, "docs": docs, "mc": folder / "mc.yaml", "ppl": folder / "ppl.yaml"}


def run_whetstone(
    workload: str,
    model_dir: str,
    inputs: dict[str, Path],
    device: str,
    dtype: str,
    batch: int | None,
) -> dict:
    from whetstone.evaluate.engine import evaluate
    from whetstone.models.hf import HFModel

    t0 = time.perf_counter()
    model = HFModel(
        model_dir,
        device=device,
        dtype=dtype,
        batch_size=batch,
        max_length=PPL_MAX_LENGTH if workload == "ppl" else None,
    )
    load = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        ev = evaluate(model, [inputs[workload]], db=f"sqlite:///{tmp}/b.db", use_cache=False)
        wall = time.perf_counter() - t1
    if workload == "mc":
        return {
            "load_s": load,
            "score_s": wall,
            "lls": [s.loglikelihoods for s in ev.samples],
            "pred": [s.prediction for s in ev.samples],
            "acc": ev.result.tasks["mc"].metrics["acc"].value,
        }
    logprobs = [s.metrics["logprob"] for s in ev.samples]
    tokens = sum(int(s.metrics["n_tokens"]) for s in ev.samples)
    return {
        "load_s": load,
        "score_s": wall,
        "logprobs": logprobs,
        "tokens": tokens,
        "bpb": ev.result.tasks["ppl"].metrics["bits_per_byte"].value,
    }


def run_lm_eval(
    workload: str, model_dir: str, inputs: dict[str, Path], device: str, dtype: str, batch: int
) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    t0 = time.perf_counter()
    kwargs: dict = (
        {"max_length": PPL_MAX_LENGTH, "add_bos_token": False} if workload == "ppl" else {}
    )
    lm = HFLM(pretrained=model_dir, batch_size=batch, device=device, dtype=dtype, **kwargs)
    load = time.perf_counter() - t0
    if workload == "mc":
        task = {
            "task": "ws_mc",
            "dataset_path": "json",
            "test_split": "test",
            "dataset_kwargs": {"data_files": {"test": str(inputs["arc"])}},
            "output_type": "multiple_choice",
            "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{labels.index(answer)}}",
            "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        }
    else:
        task = {
            "task": "ws_ppl",
            "dataset_path": "json",
            "test_split": "test",
            "dataset_kwargs": {"data_files": {"test": str(inputs["docs"])}},
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "{{text}}",
            "metric_list": [{"metric": "bits_per_byte"}, {"metric": "word_perplexity"}],
        }
    t1 = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=[task], log_samples=True, bootstrap_iters=0)
    wall = time.perf_counter() - t1
    name = task["task"]
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])  # type: ignore[index]
    if workload == "mc":
        lls = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
        return {
            "load_s": load,
            "score_s": wall,
            "lls": lls,
            "pred": [max(range(len(x)), key=x.__getitem__) for x in lls],
            "acc": out["results"][name]["acc,none"],
        }  # type: ignore[index]
    logprobs = [float(s["filtered_resps"][0]) for s in samples]
    return {
        "load_s": load,
        "score_s": wall,
        "logprobs": logprobs,
        "bpb": out["results"][name]["bits_per_byte,none"],
    }  # type: ignore[index]


def child(args: argparse.Namespace) -> None:
    inputs = {k: Path(v) for k, v in json.loads(args.inputs).items()}
    batch = None if args.batch == 0 else args.batch
    if args.tool == "whetstone":
        out = run_whetstone(args.workload, args.model_dir, inputs, args.device, args.dtype, batch)
    else:
        out = run_lm_eval(
            args.workload,
            args.model_dir,
            inputs,
            args.device,
            args.dtype,
            batch or BATCH[args.workload],
        )
    out["peak_rss_gb"] = peak_rss_gb()
    if args.device.startswith("cuda"):
        import torch

        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
    print("RESULT " + json.dumps(out))


def spawn(
    tool: str,
    workload: str,
    model_dir: str,
    inputs: dict[str, Path],
    args: argparse.Namespace,
    batch: int | None,
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--tool",
        tool,
        "--workload",
        workload,
        "--model-dir",
        model_dir,
        "--inputs",
        json.dumps({k: str(v) for k, v in inputs.items()}),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--batch",
        str(batch or 0),
    ]
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    total = time.perf_counter() - t0
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{tool} {workload} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["process_s"] = total
    return result


def check_agreement(workload: str, ours: dict, ref: dict) -> str:
    """A one-line verdict; raises when the two tools disagree beyond the tolerances."""
    if workload == "mc":
        diff = max(
            abs(a - b)
            for x, y in zip(ours["lls"], ref["lls"], strict=True)
            for a, b in zip(x, y, strict=True)
        )
        same = ours["pred"] == ref["pred"]
        if not same or diff > 1e-3:
            raise SystemExit(f"mc disagrees: same predictions {same}, max |dll| {diff:.2e}")
        return f"same predictions on {len(ours['pred'])} questions, max |d loglik| {diff:.1e}"
    rel = abs(ours["bpb"] - ref["bpb"]) / abs(ref["bpb"])
    if rel > 1e-4:
        raise SystemExit(f"ppl disagrees: bits per byte {ours['bpb']} vs {ref['bpb']}")
    return f"bits per byte {ours['bpb']:.6f} vs {ref['bpb']:.6f} (rel. diff {rel:.1e})"


def commit() -> str:
    """The checkout's commit, with `+` when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def table(rows: list[dict], args: argparse.Namespace) -> str:
    head = (
        "| workload | tool | batch | load s | scoring s | load + scoring s | "
        "requests or tokens/s | peak RSS GB | speed-up | memory ratio |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = ""
    for r in rows:
        body += (
            f"| {r['workload']} | {r['tool']} | {r['batch']} | {r['load_s']:.1f} | "
            f"{r['score_s']:.1f} | {r['load_s'] + r['score_s']:.1f} | {r['tps']:.0f} | "
            f"{r['peak_rss_gb']:.2f} | "
            f"{r.get('speedup', '')} | {r.get('mem_ratio', '')} |\n"
        )
    return head + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=["mc", "ppl"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--auto-batch", action="store_true", help="whetstone picks its batches")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tool", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: the benchmark needs the public data beside the checkout")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from whetstone.models.gguf import default_model_dir

    t0 = time.perf_counter()
    model_dir = str(default_model_dir()[0])
    print(f"embedded model ready in {time.perf_counter() - t0:.1f} s: {model_dir}")
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_inputs(Path(tmp))
        for workload in args.workloads:
            batch = None if args.auto_batch else BATCH[workload]
            ref = spawn("lm-eval", workload, model_dir, inputs, args, BATCH[workload])
            ours = spawn("whetstone", workload, model_dir, inputs, args, batch)
            notes.append(f"- {workload}: {check_agreement(workload, ours, ref)}")
            # throughput: log-likelihood requests per second (mc), tokens per second (ppl)
            units = ours["tokens"] if workload == "ppl" else sum(len(x) for x in ours["lls"])
            for tool, r in (("lm-eval", ref), ("whetstone", ours)):
                r |= {
                    "workload": workload,
                    "tool": tool,
                    "batch": (batch or "auto") if tool == "whetstone" else BATCH[workload],
                    "tps": units / r["score_s"],
                }
            ours["speedup"] = f"{ref['score_s'] / ours['score_s']:.1f}x"
            ours["mem_ratio"] = f"{ours['peak_rss_gb'] / ref['peak_rss_gb']:.2f}"
            rows += [ref, ours]
            print(table(rows[-2:], args), flush=True)
    from whetstone.optimize.distill_measure import machine as measured_on

    cpu = measured_on()["cpu"]
    machine = f"{cpu}, {os.cpu_count()} cores, {args.device} {args.dtype}"
    report = (
        f"# whetstone vs lm-evaluation-harness\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{machine}, Python {platform.python_version()}, whetstone at {commit()}\n\n"
        + table(rows, args)
        + "\nSpeed-up and memory ratio: whetstone's scoring time and peak RSS against "
        "lm-evaluation-harness's.\n\nAgreement:\n" + "\n".join(notes) + "\n"
    )
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = [args.device.split(":")[0], args.dtype]
    if args.device == "cpu":  # one record per CPU vendor: ratios differ between them
        parts.append(cpu.split()[0].lower())
    name = f"lm_eval_side_by_side_{'_'.join(parts)}.md"
    (RESULTS / name).write_text(report)
    print(f"written to {RESULTS / name}")


if __name__ == "__main__":
    main()
