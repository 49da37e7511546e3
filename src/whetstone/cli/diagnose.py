"""`whetstone diagnose`: error categories, discovered clusters and weak slices of stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from whetstone.cli.common import console, err_console, user_errors
from whetstone.errors import ConfigError

if TYPE_CHECKING:
    from whetstone.diagnose.schema import Diagnosis


class _StageReporter:
    """One rich progress bar per stage of the diagnosis."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
        )
        self.current: object = None

    def __enter__(self) -> _StageReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, stage: str, total: int) -> None:
        """A new bar for the stage."""
        if self.current is not None:
            done = self.progress.tasks[-1]
            self.progress.update(self.current, completed=done.total)  # type: ignore[arg-type]
        self.current = self.progress.add_task(stage, total=max(total, 1))

    def advance(self, n: int) -> None:
        """Move the current bar."""
        if self.current is not None:
            self.progress.advance(self.current, n)  # type: ignore[arg-type]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


@user_errors
def diagnose_command(
    runs: Annotated[list[str], typer.Argument(help="Run ids (or unique prefixes).")] = [],  # noqa: B006
    feedback: Annotated[
        list[str], typer.Option("--feedback", help="Feedback campaign id (repeatable).")
    ] = [],  # noqa: B006
    taxonomy: Annotated[
        Path | None, typer.Option(help="Error taxonomy YAML (default: the seed categories).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write diagnosis.json and diagnosis.html here.")
    ] = None,
    task: Annotated[
        list[Path],
        typer.Option("--task", "-t", help="Task file whose data columns become slice attributes."),
    ] = [],  # noqa: B006
    fail_when: Annotated[
        list[str],
        typer.Option(help="Failure criterion, e.g. 'token_f1<0.3' or 'bits_per_byte>p80'."),
    ] = [],  # noqa: B006
    judge: Annotated[
        str | None, typer.Option(help="Model that assigns a category to each failure.")
    ] = None,
    judge_base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server of an openai:NAME judge.")
    ] = None,
    judge_method: Annotated[
        str, typer.Option(help="likelihood (score each category name) or generate.")
    ] = "likelihood",
    judge_max: Annotated[int, typer.Option(help="Failures the judge looks at, at most.")] = 200,
    min_slice_size: Annotated[int, typer.Option(help="Smallest slice tested.")] = 20,
    fdr: Annotated[float, typer.Option(help="False discovery rate for slices.")] = 0.05,
    pairs: Annotated[bool, typer.Option(help="Also test pairs of attribute values.")] = True,
    clusters: Annotated[bool, typer.Option(help="Discover categories by clustering.")] = True,
    topics: Annotated[bool, typer.Option(help="Topic clusters as a slice attribute.")] = True,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (default $WHETSTONE_DB or ./whetstone.db)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for clustering and sampling.")] = 0,
) -> None:
    """Find what kinds of mistakes a model makes and where they concentrate."""
    from pydantic import ValidationError

    from whetstone.diagnose.analysis import DiagnoseOptions, diagnose
    from whetstone.diagnose.taxonomy import JudgeSpec

    if judge_method not in ("likelihood", "generate"):
        raise ConfigError(f"--judge-method: expected likelihood or generate, got {judge_method!r}")
    method: Literal["likelihood", "generate"] = judge_method  # type: ignore[assignment]
    try:
        options = DiagnoseOptions(
            fail_when=fail_when,
            judge=JudgeSpec(
                model=judge, base_url=judge_base_url, method=method, max_failures=judge_max
            )
            if judge
            else None,
            clusters=clusters,
            topics=topics,
            min_slice_size=min_slice_size,
            fdr=fdr,
            pairs=pairs,
            seed=seed,
        )
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"--{field.replace('_', '-')}: {err['msg']}") from e
    with _StageReporter() as reporter:
        result = diagnose(
            runs,
            feedback=feedback,
            db=db,
            taxonomy=taxonomy,
            tasks=task,
            options=options,
            out_dir=out,
            reporter=reporter,
        )
    inp = result.inputs
    console.print(
        f"[bold]{inp.failures}[/] failures of {inp.observations} answers "
        f"({_pct(inp.failure_rate.value)}, 95% CI [{_pct(inp.failure_rate.ci_low)}, "
        f"{_pct(inp.failure_rate.ci_high)}])"
    )
    console.print(_categories_table(result))
    if result.slices:
        console.print(_slices_table(result))
    if result.clusters:
        console.print(_clusters_table(result))
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")
    where = f" · written to {out}/diagnosis.json and diagnosis.html" if out else ""
    console.print(f"diagnosis [bold]{result.key}[/] stored{where}")


def _categories_table(result: Diagnosis) -> Table:
    table = Table(title="error categories", title_justify="left")
    for col in ("category", "count", "share", "95% CI"):
        table.add_column(col, justify="left" if col == "category" else "right")
    rows = [(c.name, c.count, c.share) for c in result.categories]
    rows += [(f"detector: {d.name}", d.failures, d.share) for d in result.detectors if d.failures]
    for name, count, share in rows:
        table.add_row(
            name, str(count), _pct(share.value), f"[{_pct(share.ci_low)}, {_pct(share.ci_high)}]"
        )
    return table


def _slices_table(result: Diagnosis) -> Table:
    table = Table(title="weak slices", title_justify="left")
    table.add_column("slice", ratio=1, overflow="fold")
    for col in ("size", "error rate", "rest", "effect h", "adj. p", ""):
        table.add_column(col, justify="right", no_wrap=True)
    for s in result.slices[:10]:
        table.add_row(
            s.description,
            str(s.size),
            _pct(s.metric_value),
            _pct(s.rest_value),
            f"{s.effect_size:.2f}",
            f"{s.p_adjusted:.2g}",
            "✓" if s.significant else "[dim]n.s.[/]",
        )
    return table


def _clusters_table(result: Diagnosis) -> Table:
    table = Table(title="discovered categories", title_justify="left")
    table.add_column("cluster", ratio=1, overflow="fold")
    for col in ("count", "share"):
        table.add_column(col, justify="right", no_wrap=True)
    for c in result.clusters:
        table.add_row(c.name, str(c.count), _pct(c.share.value))
    return table
