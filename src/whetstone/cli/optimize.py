"""`whetstone finetune` and `whetstone tune`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from whetstone.cli.common import RichReporter, console, err_console, fmt, user_errors

if TYPE_CHECKING:
    from whetstone.evaluate.compare import Comparison

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default $WHETSTONE_DB or ./whetstone.db).")
]


class TrainingBar:
    """A rich progress bar over optimizer steps, showing the latest loss and eval metric."""

    def __init__(self, label: str = "training") -> None:
        self.label = label
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=err_console,
        )
        self.task: Any = None

    def __enter__(self) -> TrainingBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def training_started(self, total_steps: int) -> None:
        """Start the bar."""
        self.progress.start()
        self.task = self.progress.add_task(self.label, total=total_steps, info="")

    def training_step(self, step: int, logs: dict[str, float]) -> None:
        """Move the bar; show the newest loss or evaluation value."""
        watched = next((k for k in logs if k.startswith("eval_")), None)  # the monitored metric
        shown = {k.removeprefix("eval_"): v for k, v in logs.items() if k in ("loss", watched)}
        info = ", ".join(f"{k} {fmt(v)}" for k, v in shown.items())
        fields: dict[str, Any] = {"info": info[:60]} if info else {}
        self.progress.update(self.task, completed=step, **fields)

    def training_finished(self) -> None:
        """Stop the bar."""
        if self.progress.live.is_started:
            self.progress.stop()


def comparison_table(cmp: Comparison, title: str, new: str = "tuned") -> Table:
    """Paired differences (B - A) with intervals and p-values, one row per task and metric."""
    table = Table(title=title, title_justify="left")
    for col in ("task", "metric", "base", new, f"{new} - base", "95% CI", "p", "test", "n"):
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
    return table


@user_errors
def finetune_command(
    config: Annotated[Path, typer.Argument(help="Fine-tune config (YAML).")],
    db: DbOption = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from the newest checkpoint in the output folder.")
    ] = False,
) -> None:
    """Fine-tune a model (full or LoRA) and evaluate it against its base, paired."""
    from whetstone.optimize.finetuning import finetune

    with TrainingBar() as bar, RichReporter() as reporter:
        result = finetune(config, db=db, resume=resume, progress=bar, reporter=reporter)
    t = result.training
    console.print(
        f"[bold]{result.name}[/]: {t.method} {t.task_type} fine-tune of {t.base_model} · "
        f"{t.steps} steps, {t.epochs:.3g} epochs, {t.train_seconds:.1f} s · "
        f"{t.trainable_parameters:,} of {t.total_parameters:,} parameters trained"
    )
    if t.monitor:
        stop = " (stopped early)" if t.stopped_early else ""
        console.print(f"best {t.monitor} = {fmt(t.best_metric)} at step {t.best_step}{stop}")
    console.print(f"model saved to {t.model_path}")
    if result.comparison is not None:
        title = f"{result.tuned_run} (tuned) minus {result.base_run} (base)"
        console.print(comparison_table(result.comparison, title))


def _value(v: Any) -> str:
    return fmt(v) if isinstance(v, float) else str(v)


class TrialLines:
    """Prints one line per finished trial."""

    def study_started(self, name: str, done: int, total: int) -> None:
        """Say where the study stands."""
        console.print(f"study [bold]{name}[/]: {done} of {total} trials done")

    def trial_finished(self, trial: Any) -> None:
        """One line: number, state, value(s), parameters."""
        values = ", ".join(fmt(v) for v in trial.values or [])
        params = ", ".join(f"{k}={_value(v)}" for k, v in trial.params.items())
        colour = {"COMPLETE": "green", "PRUNED": "yellow"}.get(trial.state, "red")
        console.print(
            f"trial {trial.number:>3} [{colour}]{trial.state:<8}[/] {values:>10}  {params}"
        )


@user_errors
def tune_command(
    config: Annotated[Path, typer.Argument(help="Study config (YAML).")],
    n_trials: Annotated[
        int | None, typer.Option(help="Trials the study should have in total (default: config).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Worker processes (or Ray trials at once) sharing the study.")
    ] = 1,
    db: DbOption = None,
    executor: Annotated[
        str, typer.Option(help="local (worker processes here) or ray (trials as Ray tasks).")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster (HOST:6379, auto); default $RAY_ADDRESS.")
    ] = None,
    cpus_per_trial: Annotated[float | None, typer.Option(help="CPUs per Ray trial.")] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(help="GPUs per Ray trial.")] = None,
) -> None:
    """Search hyperparameters with an Optuna study stored in the whetstone database."""
    from whetstone.scale.ray_tune import tune_runner

    tune = tune_runner(
        executor, address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial
    )
    with RichReporter() as reporter:
        result = tune(
            config,
            n_trials=n_trials,
            workers=workers,
            db=db,
            progress=TrialLines(),
            reporter=reporter,
        )
    states: dict[str, int] = {}
    for t in result.trials:
        states[t.state] = states.get(t.state, 0) + 1
    console.print(", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
    if result.best_trials:
        values = ", ".join(
            f"{k} {fmt(v)}" for k, v in zip(result.objectives, result.best_values, strict=True)
        )
        params = ", ".join(f"{k}={_value(v)}" for k, v in result.best_params.items())
        console.print(f"best trial {result.best_trials[0]}: {values} · {params}")
        console.print(f"best model: {result.best_model}")
    for objective, imp in result.importances.items():
        ranked = sorted(imp.items(), key=lambda kv: -kv[1])
        console.print(
            f"importance for {objective}: " + ", ".join(f"{k} {v:.2f}" for k, v in ranked)
        )
    if result.comparison is not None:
        title = f"{result.best_run} (best trial) minus {result.base_run} (base)"
        console.print(comparison_table(result.comparison, title, "best"))
    console.print(f"storage: {result.storage} (optuna-dashboard reads it)")
