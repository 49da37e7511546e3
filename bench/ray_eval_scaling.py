"""Evaluation on Ray against the local executor: items per second for 1 and 2 workers, the
overhead of Ray on small runs, and agreement with the local numbers, in one go.

Workloads:
  small     the example suite, 20 items per task (220 requests), `fake:0`: an instant model, so
            the time is all overhead (worker start, shipping shards, committing them)
  slow-10ms the whole example suite (272 items, 932 requests) with `fake:0:0.01`, a model that
            takes 10 ms per scored window or generation and leaves the CPU idle (as a remote
            server or a GPU does): what parallel workers can win
  gemma     ARC-Easy questions (--arc-limit, default 40: 160 requests), the embedded Gemma 3
            270M in float32 on the CPU: a compute-bound model on this machine's cores

Each workload runs with the local executor, then with Ray: 1 worker holding every CPU (the
same compute as local, so the difference is Ray's cost) and 2 workers of half the CPUs each,
with the default shards (a local run's chunks: bit-identical numbers) and with finer shards
(`--shard-size`, which spreads a small task over both workers). A local Ray cluster of this
machine's CPUs starts once; its start-up is reported on its own.

    .venv/bin/python bench/ray_eval_scaling.py [--workloads small slow-10ms gemma] [--arc-limit N]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SUITE = REPO / "src" / "whetstone" / "data" / "examples" / "suite.yaml"
ARC = REPO / "benchmarks" / "arc_easy.yaml"


@dataclass
class Workload:
    """A model and tasks, and the finer shard size that splits its tasks over 2 workers."""

    model: str
    tasks: list[Path]
    limit: int | None
    shard_size: int


WORKLOADS = {
    "small": Workload("fake:0", [SUITE], 20, 16),
    "slow-10ms": Workload("fake:0:0.01", [SUITE], None, 32),
    "gemma": Workload("default", [ARC], 40, 32),
}


class Clock:
    """A reporter that notes when the first task starts: setup (model, workers) ends there."""

    def __init__(self) -> None:
        self.first_task: float | None = None

    def task_started(self, name: str, total: int) -> None:
        if self.first_task is None:
            self.first_task = time.perf_counter()

    def advance(self, n: int) -> None:
        pass

    def task_finished(self, name: str, result: Any) -> None:
        pass


def run(workload: Workload, executor: Any, db: Path) -> dict[str, Any]:
    """One evaluation: setup and scoring seconds, items per second, the samples."""
    from whetstone.evaluate.engine import evaluate

    clock = Clock()
    t0 = time.perf_counter()
    ev = evaluate(
        workload.model,
        workload.tasks,
        limit=workload.limit,
        db=f"sqlite:///{db}",
        use_cache=True,  # a fresh database per run: nothing is reused, every shard is committed
        reporter=clock,
        executor=executor,
        device="cpu",
        dtype="float32",
    )
    end = time.perf_counter()
    assert clock.first_task is not None
    scoring = end - clock.first_task
    return {
        "setup": clock.first_task - t0,
        "scoring": scoring,
        "total": end - t0,
        "items": len(ev.samples),
        "requests": ev.computed,
        "samples": ev.samples,
        "summary": executor.summary() if executor is not None else "",
    }


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's CPU threads set to `n` in this process for the block (nothing when None)."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def agreement(samples: list[Any], reference: list[Any]) -> str:
    """`identical`, or the largest log-likelihood difference and whether predictions agree."""
    if samples == reference:
        return "identical"
    diffs = [
        abs(a - b)
        for s, r in zip(samples, reference, strict=True)
        for a, b in zip(s.loglikelihoods or [], r.loglikelihoods or [], strict=True)
    ]
    same = all(s.prediction == r.prediction for s, r in zip(samples, reference, strict=True))
    largest = max(diffs, default=0.0)
    return f"max abs d loglik {largest:.1e}, predictions {'same' if same else 'DIFFER'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/whetstone-ray-bench"))
    parser.add_argument("--arc-limit", type=int, default=40, help="ARC-Easy questions (gemma)")
    args = parser.parse_args()
    WORKLOADS["gemma"].limit = args.arc_limit
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from whetstone.scale.ray_eval import RayExecutor

    cpus = os.cpu_count() or 2
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    cluster_start = time.perf_counter() - t0
    args.tmp.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    try:
        for name in args.workloads:
            w = WORKLOADS[name]
            half = max(1, cpus // 2)
            configs: list[tuple[str, int, int, str, Any]] = [
                ("local", 1, cpus, "", None),
                ("ray", 1, cpus, "chunk", RayExecutor(workers=1, cpus_per_worker=cpus)),
                ("ray", 2, half, "chunk", RayExecutor(workers=2, cpus_per_worker=half)),
                (
                    "ray",
                    2,
                    half,
                    str(w.shard_size),
                    RayExecutor(workers=2, cpus_per_worker=half, shard_size=w.shard_size),
                ),
            ]
            if name == "gemma":  # the same compute as one worker of the 2-worker rows
                configs.insert(1, ("local", 1, half, "", None))
            reference: dict[str, Any] = {}
            for executor, workers, threads, shards, runner in configs:
                db = args.tmp / f"{name}-{executor}-{workers}-{threads}-{shards or 'local'}.db"
                db.unlink(missing_ok=True)
                load = os.getloadavg()[0]
                with torch_threads(threads if runner is None else None):
                    got = run(w, runner, db)
                reference = reference or got
                speed = got["items"] / got["scoring"]
                rows.append(
                    [
                        name,
                        executor,
                        str(workers) if executor == "ray" else "",
                        str(threads),
                        shards,
                        f"{got['setup']:.1f}",
                        f"{got['scoring']:.1f}",
                        f"{got['total']:.1f}",
                        f"{speed:.1f}",
                        f"{speed / (reference['items'] / reference['scoring']):.2f}x",
                        f"{load:.1f}",
                        agreement(got["samples"], reference["samples"])
                        if got is not reference
                        else "(reference)",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    finally:
        ray.shutdown()
    write_table(rows, cluster_start, cpus, load_before, os.getloadavg())


def write_table(
    rows: list[list[str]],
    cluster_start: float,
    cpus: int,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    """Print the table and write it to bench/results/ray_eval_scaling.md."""
    header = [
        "workload",
        "executor",
        "workers",
        "threads each",
        "shards",
        "setup s",
        "scoring s",
        "total s",
        "items/s",
        "vs local",
        "load avg",
        "agreement with local",
    ]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Evaluation on Ray vs the local executor",
        "",
        f"{now}, {platform.machine()}, {cpus} cores, Python {platform.python_version()}; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (a shared "
        "machine: other work ran at the same time)",
        "",
        f"Local Ray cluster start (`ray.init`, {cpus} CPUs): {cluster_start:.1f} s, once.",
        "setup = model load (local) or worker start and model load on every worker (Ray); "
        "scoring = first task start to results written; items/s over scoring. load avg: "
        "the machine's 1-minute load when the row started (2 = both cores busy); rows run "
        "under different loads do not compare well, above all for the compute-bound gemma "
        "workload, where torch's threads slow down badly on oversubscribed cores.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ray_eval_scaling.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
