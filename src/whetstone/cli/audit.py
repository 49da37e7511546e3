"""`whetstone audit`: inspect training data (against eval sets) and say what to change."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from whetstone.cli.common import console, err_console, user_errors


class RichAuditProgress:
    """One rich progress line per audit step."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=False,
        )
        self.current: Any = None

    def __enter__(self) -> RichAuditProgress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # an error is reported as its one line, without the bars
            for task_id in list(self.progress.task_ids):
                self.progress.remove_task(task_id)
        if self.progress.live.is_started:
            self.progress.stop()

    def start(self, step: str, total: int | None) -> None:
        """Add a line for the step."""
        self.progress.start()
        self.current = self.progress.add_task(step, total=total)

    def advance(self, n: int) -> None:
        """Move the current line."""
        if self.current is not None:
            self.progress.advance(self.current, n)

    def done(self) -> None:
        """Fill the current line."""
        if self.current is not None:
            task = self.progress.tasks[-1]
            total = task.total if task.total is not None else task.completed
            self.progress.update(self.current, total=total, completed=total)


def _columns(names: str | None) -> list[str] | None:
    if names is None:
        return None
    parts = [p.strip() for p in names.split(",")]
    if not all(parts):
        raise typer.BadParameter("expected column names separated by commas, e.g. text,label")
    return parts


@user_errors
def audit_command(
    train: Annotated[Path, typer.Argument(help="Training data: .jsonl .json .csv .tsv .parquet")],
    eval_files: Annotated[
        list[Path],
        typer.Option("--eval", "-e", help="Eval data to check for contamination and coverage."),
    ] = [],  # noqa: B006
    out: Annotated[
        Path | None, typer.Option(help="Write audit.json and audit.html (and the cleaned copy).")
    ] = None,
    text_column: Annotated[str | None, typer.Option(help="Column with the text.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Column with the label.")] = None,
    id_column: Annotated[str | None, typer.Option(help="Column with a record id.")] = None,
    prompt_column: Annotated[str | None, typer.Option(help="Prompt column of pairs.")] = None,
    response_column: Annotated[str | None, typer.Option(help="Response column of pairs.")] = None,
    columns: Annotated[
        str | None, typer.Option(help="Names for a header-less CSV/TSV, e.g. text,label.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Audit settings (YAML).")] = None,
    only: Annotated[
        list[str],
        typer.Option(
            help="Run only these checks (repeatable): stats, labels, duplicates, label_issues, "
            "contamination, coverage, bias, pii."
        ),
    ] = [],  # noqa: B006
    skip: Annotated[list[str], typer.Option(help="Skip these checks (repeatable).")] = [],  # noqa: B006
    features: Annotated[
        str | None, typer.Option(help="Label-issue features: auto, tfidf or embeddings.")
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            help="Evaluation run (folder, samples.jsonl or id): score clean vs contaminated items."
        ),
    ] = None,
    run_task: Annotated[str | None, typer.Option(help="Task of the run to use.")] = None,
    metric: Annotated[str | None, typer.Option(help="Per-item metric of the run.")] = None,
    clean: Annotated[
        bool, typer.Option(help="Also write a cleaned copy, weights.jsonl and removed.jsonl.")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Stop at the first malformed row.")] = False,
    resume: Annotated[
        bool, typer.Option(help="Reuse the finished steps of an interrupted audit.")
    ] = False,
    db: Annotated[
        str | None, typer.Option(help="Database URL (default $WHETSTONE_DB or ./whetstone.db).")
    ] = None,
    store: Annotated[bool, typer.Option(help="Keep the audit in the database.")] = True,
    seed: Annotated[
        int | None, typer.Option(help="Seed for sampling, folds and clustering.")
    ] = None,
) -> None:
    """Audit training data: duplicates, label errors, contamination, coverage, bias, PII."""
    from whetstone.audit import ColumnSpec, audit
    from whetstone.audit.config import AuditConfig, load_config
    from whetstone.store import Store

    cfg = load_config(config) if config is not None else AuditConfig()
    spec = ColumnSpec(
        text=text_column,
        label=label_column,
        id=id_column,
        prompt=prompt_column,
        response=response_column,
        names=_columns(columns),
    )
    cfg = cfg.with_checks(only or None, skip or None)
    update: dict[str, Any] = {"strict": strict or cfg.strict}
    if seed is not None:
        update["seed"] = seed
    if features is not None:
        if features not in ("auto", "tfidf", "embeddings"):
            raise typer.BadParameter("--features must be auto, tfidf or embeddings")
        update["label_issues"] = cfg.label_issues.model_copy(update={"features": features})
    cfg = cfg.model_copy(update=update)
    database = Store(db) if store or (run is not None and not Path(run).exists()) else None
    with RichAuditProgress() as progress:
        result = audit(
            train,
            eval_files,
            config=cfg,
            columns=spec,
            run=run,
            run_task=run_task,
            metric=metric,
            out_dir=out,
            clean=clean,
            store=database if store else None,
            resume=resume,
            progress=progress,
        )
    _print_summary(result)
    if out is not None:
        console.print(f"written to {out}/audit.json and {out}/audit.html")
    if result.outputs.cleaned:
        console.print(
            f"cleaned copy {result.outputs.cleaned}: {result.outputs.n_kept:,} records kept, "
            f"{result.outputs.n_removed:,} removed (see removed.jsonl, weights in weights.jsonl)"
        )
    if store and database is not None:
        console.print(f"stored as artifact audit/{result.audit_id} in {database.url}")


def _print_summary(result: Any) -> None:
    table = Table(
        title=f"audit {result.audit_id} · {result.train.name} · {result.train.n_records:,} records",
        title_justify="left",
    )
    for col in ("finding", "count", "high", "medium", "low", "example"):
        table.add_column(
            col, justify="right" if col in ("count", "high", "medium", "low") else "left"
        )
    groups: dict[str, list[Any]] = {}
    for f in result.findings:
        groups.setdefault(f.kind, []).append(f)
    for kind, items in groups.items():
        sev = [sum(f.severity == s for f in items) for s in ("high", "medium", "low")]
        example = items[0].title
        table.add_row(
            kind, str(len(items)), *map(str, sev), example[:70] + ("…" if len(example) > 70 else "")
        )
    if not groups:
        table.add_row("no findings", "0", "0", "0", "0", "")
    console.print(table)
    for i, rec in enumerate(result.recommendations, start=1):
        console.print(f"{i}. [bold]{rec.title}[/] ({rec.action}): {rec.detail}", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
