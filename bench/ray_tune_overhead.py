"""Trials per second of an Optuna study: in this process, as Ray tasks (1 and 2 at a time), and
as 2 plain processes on one storage URL, with an objective that waits `--delay` seconds (as
training on a GPU or a remote job does), so the difference to `delay` is the cost per trial.

Checks that each run gives the study exactly the requested trials, each objective called once.

    .venv/bin/python bench/ray_tune_overhead.py [--trials 16] [--delay 0.5] [--db URL]
"""

from __future__ import annotations

import argparse
import functools
import logging
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))  # the objectives live in tests/scale (module-level: they pickle)


def check(url: str, name: str, log: Path, n: int) -> None:
    """Exactly `n` complete trials, each objective call logged once."""
    import optuna
    from optuna.trial import TrialState
    from tests.scale.study_objectives import calls

    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    assert sorted(t.number for t in trials) == list(range(n)), [t.number for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(number for number, _ in calls(log)) == list(range(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--db", help="storage URL (default: a SQLite file in a temp folder)")
    args = parser.parse_args()
    import optuna
    import ray
    from tests.scale.study_objectives import plain_worker, quadratic

    from whetstone.scale.ray_tune import optimize_on_ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    url = args.db or f"sqlite:///{tmp / 'study.db'}?timeout=60"
    n, rows = args.trials, []
    t0 = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)  # fmt: skip
    cluster_start = time.perf_counter() - t0

    def study(label: str) -> tuple[str, Path]:
        name = f"bench-{label}-{os.getpid()}"
        optuna.create_study(study_name=name, storage=url, direction="minimize")
        return name, tmp / f"{label}.log"

    def record(label: str, workers: int, seconds: float, name: str, log: Path) -> None:
        check(url, name, log, n)
        ideal = n * args.delay / workers
        rows.append([label, str(workers), f"{seconds:.1f}", f"{n / seconds:.2f}",
                     f"{(seconds - ideal) * workers / n:.2f}"])  # fmt: skip
        print(" | ".join(rows[-1]), flush=True)

    name, log = study("local")
    objective = functools.partial(quadratic, log=log, delay=args.delay)
    start = time.perf_counter()
    optuna.load_study(study_name=name, storage=url).optimize(objective, n_trials=n)
    record("in this process", 1, time.perf_counter() - start, name, log)

    for workers in (1, 2):
        name, log = study(f"ray{workers}")
        objective = functools.partial(quadratic, log=log, delay=args.delay)
        start = time.perf_counter()
        optimize_on_ray(name, url, objective, n, workers,
                        sampler=optuna.samplers.RandomSampler)  # fmt: skip
        record("Ray tasks", workers, time.perf_counter() - start, name, log)
    ray.shutdown()

    name, log = study("processes")
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    procs = [
        ctx.Process(target=plain_worker, args=(name, url, str(log), n // 2, i)) for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    record("plain processes (spawn)", 2, time.perf_counter() - start, name, log)
    write(rows, cluster_start, n, args.delay, url.split(":")[0])


def write(rows: list[list[str]], cluster_start: float, n: int, delay: float, db: str) -> None:
    """Print the table and write it to bench/results/ray_tune_overhead.md."""
    header = ["runner", "at a time", "wall s", "trials/s", "cost per trial s"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            "# Study trials: in process, on Ray, in plain processes",
            "",
            f"{now}, {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, load average {load:.1f} (a shared machine); "
            f"{n} trials of an objective that waits {delay} s; storage {db}",
            "",
            f"Local Ray cluster start: {cluster_start:.1f} s, once (not in the times below).",
            "cost per trial = (wall - trials x wait / at a time) x at a time / trials: start-up "
            "of workers, loading the study, sampling and recording, spread over the trials.",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows),
            "",
            "Each run: exactly the requested trials, each objective called once (checked).",
            "",
        ]
    )
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ray_tune_overhead.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
