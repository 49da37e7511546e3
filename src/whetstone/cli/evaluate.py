"""`whetstone evaluate`, `rescore`, `compare`, `plan`, `runs` and `show`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from whetstone.cli.common import (
    RichReporter,
    console,
    err_console,
    fmt,
    results_table,
    user_errors,
)
from whetstone.cli.gating import (
    GateFlag,
    JunitOption,
    SummaryOption,
    gate_table,
    print_gate,
    write_gate_files,
)

if TYPE_CHECKING:
    from whetstone.evaluate.compare import Comparison
    from whetstone.evaluate.gate import GateResult
    from whetstone.records import SampleRecord
    from whetstone.store import Store

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
    repeats: Annotated[
        int,
        typer.Option(
            min=1,
            help="Sampled outputs per item of generation tasks with temperature > 0 "
            "(intervals and tests clustered by item; the table shows the sampling share).",
        ),
    ] = 1,
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
            repeats=repeats,
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
def rescore_command(
    run: Annotated[str, typer.Argument(help="Stored run id (or prefix) whose outputs to score.")],
    task: Annotated[
        list[Path], typer.Option("--task", "-t", help="Task file with the metrics to compute.")
    ] = [],  # noqa: B006
    out: Annotated[
        Path | None, typer.Option(help="Write results.json and samples.jsonl here.")
    ] = None,
    db: DbOption = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the bootstrap intervals (default: the run's).")
    ] = None,
) -> None:
    """Recompute a stored run's metrics from its outputs, without calling the model, as a new
    run that records where its outputs came from."""
    from whetstone.evaluate.rescore import rescore

    with RichReporter() as reporter:
        ev, notes = rescore(run, task, db=db, seed=seed, out_dir=out, reporter=reporter)
    console.print(results_table(ev.result))
    for note in notes:
        console.print(f"[yellow]{note}[/]")
    source = ev.result.config["rescored_from"]
    console.print(
        f"run [bold]{ev.result.run_id}[/] · {ev.reused} items rescored from run {source}, "
        "no model calls" + (f" · written to {out}" if out else "")
    )


@user_errors
def compare_command(
    run_a: Annotated[str, typer.Argument(help="Baseline run id (or prefix).")],
    run_b: Annotated[str, typer.Argument(help="Candidate run id (or prefix).")],
    db: DbOption = None,
    seed: int = 0,
    margin: Annotated[
        list[str],
        typer.Option(
            help="Non-inferiority margin: 0.02 or 3% for every metric, METRIC=0.02 or "
            "TASK/METRIC=3% for one (repeatable). Metrics with a margin get a verdict."
        ),
    ] = [],  # noqa: B006
    alpha: Annotated[
        float, typer.Option(min=1e-6, max=0.5, help="Two-sided level of the intervals.")
    ] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    gate: GateFlag = False,
    junit: JunitOption = None,
    summary: SummaryOption = None,
    html: Annotated[
        Path | None,
        typer.Option(help="Write one page with the verdicts and the items that differ."),
    ] = None,
    task: Annotated[
        list[Path],
        typer.Option("--task", "-t", help="Task file whose data columns become slices (--html)."),
    ] = [],  # noqa: B006
    all_items: Annotated[
        bool, typer.Option(help="List unchanged items on the --html page too.")
    ] = False,
) -> None:
    """Pair the items of two runs and test each metric's difference (B - A); with margins,
    say for each whether B is no worse than A (pass), worse (fail) or the data cannot tell."""
    from whetstone.errors import ConfigError
    from whetstone.evaluate.compare import compare_samples
    from whetstone.evaluate.gate import (
        Guard,
        judge,
        margin_for,
        parse_margins,
        sample_comparer,
        unmatched_margins,
    )
    from whetstone.store import Store

    default, named = parse_margins(margin)
    if (gate or junit or summary) and not margin:
        raise ConfigError("--gate, --junit and --summary need a --margin for the gated metrics")
    store = Store(db)
    a, b = store.resolve_run_id(run_a) or run_a, store.resolve_run_id(run_b) or run_b
    samples_a, samples_b = store.get_samples(a), store.get_samples(b)
    confidence = 1 - alpha
    cmp = compare_samples(samples_a, samples_b, run_a=a, run_b=b, seed=seed, confidence=confidence)
    guards = [
        Guard(b, m.name, found)
        for m in cmp.metrics
        if (found := margin_for(m.name, default, named)) is not None
    ]
    measured = [m.name for m in cmp.metrics]
    for name in unmatched_margins(named, measured):
        raise ConfigError(
            f"--margin {name}=...: no compared metric is called {name!r}; "
            f"compared: {', '.join(measured)}"
        )
    result = None
    if guards:
        compare = sample_comparer(
            samples_a, {b: (b, samples_b)}, baseline_run=a, seed=seed, known={b: cmp}
        )
        result = judge(guards, compare, alpha=alpha)
    if as_json:
        verdicts = {c.metric: c for c in result.checks} if result else {}
        payload = cmp.model_dump(mode="json")
        for m in payload["metrics"]:
            check = verdicts.get(f"{m['task']}/{m['metric']}")
            m["verdict"] = check.verdict if check else None
            m["margin"] = check.margin if check else None
        payload["gate"] = result.model_dump(mode="json") if result else None
        typer.echo(json.dumps(payload, indent=2))
    else:
        _print_comparison(cmp, confidence)
        if result is not None:
            console.print(gate_table(result))
            print_gate(result)
    if html is not None:
        _write_item_page(html, store, cmp, samples_a, samples_b, result, task, all_items)
    if result is not None:
        write_gate_files(result, junit, summary)
        if gate:
            raise typer.Exit(result.exit_code)


def _write_item_page(
    path: Path,
    store: Store,
    cmp: Comparison,
    samples_a: list[SampleRecord],
    samples_b: list[SampleRecord],
    gate: GateResult | None,
    tasks: list[Path],
    keep_same: bool,
) -> None:
    from whetstone.diagnose.failures import load_task_data
    from whetstone.report.itemwise import compare_items
    from whetstone.report.render import atomic_write, render_items_html

    row = store.get_run(cmp.run_a, missing_ok=True)
    hashes = {k: str(v) for k, v in row.task_hashes.items()} if row else {}
    data = load_task_data(tasks, hashes) if tasks else None
    items = compare_items(
        samples_a, samples_b, columns=data.columns if data else None, keep_same=keep_same
    )
    atomic_write(path, render_items_html(cmp, items, gate, kept_same=keep_same))
    counts = ", ".join(f"{status} {n:,}" for status, n in items.total.most_common())
    for note in data.notes if data else []:
        err_console.print(f"[yellow]{note}[/]")
    err_console.print(f"{len(items.rows):,} items listed in {path} ({counts})")


def _print_comparison(cmp: Comparison, confidence: float) -> None:
    table = Table(title=f"{cmp.run_b} minus {cmp.run_a}", title_justify="left")
    level = f"{100 * confidence:g}% CI"
    for col in ("task", "metric", "A", "B", "B - A", level, "p", "detectable", "test", "n"):
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
            fmt(m.mdd),
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
    if source := row.config.get("rescored_from"):
        console.print(f"metrics rescored from the outputs of run {source}")


@user_errors
def plan_command(
    run_a: Annotated[str, typer.Argument(help="Pilot run id (or prefix): the baseline.")],
    run_b: Annotated[
        str | None, typer.Argument(help="A pilot candidate run, for the paired spread.")
    ] = None,
    drop: Annotated[
        str, typer.Option(help="The drop to detect: 0.02 (metric units) or 3% (of the value).")
    ] = "0.02",
    metric: Annotated[
        list[str], typer.Option(help="TASK/METRIC or METRIC (default: each task's headline).")
    ] = [],  # noqa: B006
    alpha: Annotated[float, typer.Option(min=1e-6, max=0.5, help="Two-sided level.")] = 0.05,
    power: Annotated[float, typer.Option(min=0.5, max=0.999, help="Power to detect it.")] = 0.8,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """How many items each task needs for a drop to be detected (and for a gate with that
    margin to pass a model equal to the baseline), from a pilot run or two."""
    from whetstone.errors import ConfigError
    from whetstone.evaluate.compare import compare_samples
    from whetstone.evaluate.gate import Margin
    from whetstone.evaluate.planning import plan_items
    from whetstone.store import Store

    try:
        margin = Margin.model_validate(drop)
    except ValueError:
        raise ConfigError(
            f"--drop {drop!r}: expected a number (0.02) or a percentage (3%)"
        ) from None
    store = Store(db)
    row = store.get_run(run_a)
    assert row is not None
    if row.result is None:
        raise ConfigError(f"run {row.run_id} is {row.status}: it has no results to plan from")
    paired = None
    if run_b is not None:
        b = store.resolve_run_id(run_b) or run_b
        paired = compare_samples(store.get_samples(row.run_id), store.get_samples(b))
    rows = plan_items(row.result, margin, paired=paired, metrics=metric, alpha=alpha, power=power)
    if not rows:
        raise ConfigError(f"run {row.run_id} has none of the metrics {', '.join(metric)}")
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return
    table = Table(
        title=f"items to detect a drop of {margin} at {power:.0%} power", title_justify="left"
    )
    for col in (
        "task",
        "metric",
        "value",
        "items now",
        "detectable now",
        "drop",
        "items needed",
        "spread from",
    ):
        table.add_column(col)
    for r in rows:
        needed = "" if r.needed is None else f"{r.needed:,}"
        table.add_row(
            r.task,
            r.metric,
            fmt(r.value),
            str(r.n),
            fmt(r.detectable_now),
            fmt(r.drop),
            needed,
            r.source,
        )
    console.print(table)
