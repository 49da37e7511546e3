"""`whetstone evaluate`, `compare`, `runs` and `show`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from whetstone.cli.common import RichReporter, console, fmt, results_table, user_errors

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default $WHETSTONE_DB or ./whetstone.db).")
]


@user_errors
def evaluate_command(
    model: Annotated[
        str,
        typer.Option(help="default, a HF folder or hub id, a .gguf file, openai:NAME, or fake."),
    ] = "default",
    task: Annotated[list[Path], typer.Option("--task", "-t", help="Task or suite YAML file.")] = [],  # noqa: B006
    out: Annotated[
        Path | None, typer.Option(help="Write results.json and samples.jsonl here.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Items per task (first N).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Windows per batch (default: by token budget).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16.")] = "auto",
    db: DbOption = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and bootstrap intervals.")] = 0,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")] = None,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable with the API key.")
    ] = "OPENAI_API_KEY",
    max_length: Annotated[int | None, typer.Option(help="Longest token window.")] = None,
    chat_template: Annotated[
        bool, typer.Option(help="Wrap prompts in the model's chat template.")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue the unfinished run with the same settings.")
    ] = False,
    cache: Annotated[bool, typer.Option(help="Reuse cached model responses.")] = True,
    executor: Annotated[
        str, typer.Option(help="local (this process) or ray (shards on Ray workers).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster (HOST:6379, auto, ray://HOST:10001); default $RAY_ADDRESS."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Ray workers, each loading the model (default: per GPU/CPU).")
    ] = None,
    cpus_per_worker: Annotated[float | None, typer.Option(help="CPUs per Ray worker.")] = None,
    gpus_per_worker: Annotated[float | None, typer.Option(help="GPUs per Ray worker.")] = None,
    shard_size: Annotated[
        int | None,
        typer.Option(help="Requests per Ray shard (default: a local chunk, bit-identical)."),
    ] = None,
) -> None:
    """Evaluate a model on task files and print metrics with 95% intervals."""
    from whetstone.evaluate.engine import evaluate
    from whetstone.evaluate.executor import make_executor

    runner = make_executor(
        executor,
        address=address,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        shard_size=shard_size,
    )
    with RichReporter() as reporter:
        ev = evaluate(
            model,
            task,
            limit=limit,
            seed=seed,
            db=db,
            out_dir=out,
            resume=resume,
            use_cache=cache,
            chat_template=chat_template,
            reporter=reporter,
            executor=runner,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            base_url=base_url,
            api_key_env=api_key_env,
            max_length=max_length,
        )
    console.print(results_table(ev.result))
    console.print(
        f"run [bold]{ev.result.run_id}[/] · {ev.computed} requests computed, "
        f"{ev.reused} from cache" + (f" · written to {out}" if out else "")
    )
    if runner.summary():
        console.print(runner.summary())


@user_errors
def compare_command(
    run_a: Annotated[str, typer.Argument(help="Baseline run id (or prefix).")],
    run_b: Annotated[str, typer.Argument(help="Candidate run id (or prefix).")],
    db: DbOption = None,
    seed: int = 0,
) -> None:
    """Pair the items of two runs and test each metric's difference (B - A)."""
    from whetstone.evaluate.compare import compare_samples
    from whetstone.store import Store

    store = Store(db)
    a, b = store.resolve_run_id(run_a) or run_a, store.resolve_run_id(run_b) or run_b
    cmp = compare_samples(store.get_samples(a), store.get_samples(b), run_a=a, run_b=b, seed=seed)
    table = Table(title=f"{b} minus {a}", title_justify="left")
    for col in ("task", "metric", "A", "B", "B - A", "95% CI", "p", "test", "n"):
        table.add_column(col)
    for m in cmp.metrics:
        table.add_row(
            m.task,
            m.metric,
            fmt(m.a),
            fmt(m.b),
            fmt(m.diff),
            f"[{fmt(m.ci_low)}, {fmt(m.ci_high)}]",
            f"{m.p_value:.3g}",
            m.test,
            str(m.n),
        )
    console.print(table)
    for task, n in cmp.unpaired.items():
        console.print(f"[yellow]{task}: {n} items are in only one run and were left out[/]")


@user_errors
def runs_command(db: DbOption = None, limit: int = 50) -> None:
    """List stored runs, newest first."""
    from whetstone.store import Store

    table = Table()
    for col in ("run", "status", "model", "dtype", "tasks", "created"):
        table.add_column(col)
    for r in Store(db).list_runs(limit):
        tasks = ", ".join(r.task_hashes)
        table.add_row(
            r.run_id,
            r.status,
            r.model.name,
            r.model.dtype,
            tasks,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@user_errors
def show_command(
    run: Annotated[str, typer.Argument(help="Run id or prefix.")], db: DbOption = None
) -> None:
    """Print one stored run's results."""
    from whetstone.store import Store

    row = Store(db).get_run(run)
    assert row is not None
    if row.result is None:
        console.print(f"run {row.run_id} is {row.status}: no results yet (use --resume)")
        return
    console.print(results_table(row.result))
