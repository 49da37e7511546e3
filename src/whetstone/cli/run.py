"""`whetstone run PIPELINE.yaml`: the whole loop, with a regression gate for CI (`--gate`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from whetstone.cli.common import RichReporter, console, err_console, user_errors
from whetstone.cli.gating import (
    GateFlag,
    JunitOption,
    SummaryOption,
    gate_table,
    print_gate,
    write_gate_files,
)
from whetstone.errors import ConfigError

if TYPE_CHECKING:
    from whetstone.pipeline import PipelineResult
    from whetstone.pipeline.stages import StageRecord

#: Exit status when a stage failed (the gate's: 1 fail, 3 inconclusive; input errors: 2).
EXIT_GATE = 1


class StepBars:
    """A rich bar per part of a step (the error analysis' and the audit's stages)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
        )
        self.current: Any = None

    def start(self, stage: str, total: int | None) -> None:
        """A new bar (the previous one is filled)."""
        self.done()
        self.progress.start()
        self.current = self.progress.add_task(stage, total=total)

    def advance(self, n: int) -> None:
        """Move the current bar."""
        if self.current is not None:
            self.progress.advance(self.current, n)

    def done(self) -> None:
        """Fill the current bar."""
        if self.current is not None:
            task = self.progress.tasks[-1]
            total = task.total if task.total is not None else task.completed
            self.progress.update(self.current, total=total, completed=total)

    def stop(self) -> None:
        """End the display."""
        self.done()
        if self.progress.live.is_started:
            self.progress.stop()


class PipelineProgress(RichReporter):
    """A line per stage (run or reused), the evaluation progress bars, and the other steps'
    own progress displays."""

    def __init__(self) -> None:
        super().__init__()
        self.step_bars: list[StepBars] = []

    def step_kwargs(self, step: str) -> dict[str, Any]:
        """Progress displays for a step's own API, as its command shows them."""
        from whetstone.cli.optimize import TrainingBar, TrialLines

        if step in ("diagnose", "audit"):
            bars = StepBars()
            self.step_bars.append(bars)
            return {"reporter" if step == "diagnose" else "progress": bars}
        if step == "finetune":
            return {"progress": TrainingBar(), "reporter": RichReporter()}
        if step == "tune":
            return {"progress": TrialLines(), "reporter": RichReporter()}
        if step in ("distill", "quantize"):
            return {"reporter": RichReporter()}
        return {}

    def stage_started(self, stage: str) -> None:
        """Say which stage runs now."""
        err_console.print(f"[bold]→ {stage}[/]")

    def stage_finished(self, record: StageRecord, reused: bool) -> None:
        """Say how the stage ended and whether it was reused."""
        for bars in self.step_bars:
            bars.stop()
        self.step_bars.clear()
        if self.progress.live.is_started:
            self.progress.stop()
            self.progress = RichReporter().progress
        how = "reused (same inputs)" if reused else f"done in {record.seconds:.1f} s"
        err_console.print(f"[green]✓[/] {record.stage}: {how}")


def candidates_table(result: PipelineResult) -> Table:
    """One row per model: the headline metrics and, for candidates, B - baseline and p."""
    from whetstone.report.tables import overview

    columns, rows = overview(result)
    table = Table(title=f"pipeline {result.name}", title_justify="left")
    table.add_column("candidate")
    table.add_column("origin")
    for name in columns:
        table.add_column(name, justify="right")
    for row in rows:
        label = (
            row.name + (" ★" if row.selected else "") + (" [red](failed)[/]" if row.error else "")
        )
        table.add_row(label, row.origin, *row.cells)
    return table


def print_summary(result: PipelineResult) -> None:
    """The candidates table, the selection, the gate and failures."""
    console.print(candidates_table(result))
    for cand in result.candidates:
        if cand.error:
            console.print(f"[red]{cand.name}: {cand.error}[/]")
    for note in result.notes:
        console.print(f"[yellow]{note}[/]")
    if result.selection:
        sel = result.selection
        if sel.selected:
            console.print(f"selected: [bold]{sel.selected}[/] (objective {sel.rule.objective})")
        else:
            console.print("[yellow]no candidate meets the selection rule[/]")
    if result.gate:
        if result.gate.checks:
            console.print(gate_table(result.gate))
        print_gate(result.gate)
    reused = f", {len(result.reused)} stage(s) reused" if result.reused else ""
    console.print(f"pipeline {result.name}: {result.seconds:.1f} s{reused} · db {result.db}")


@user_errors
def run_command(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    gate: GateFlag = False,
    db: Annotated[
        str | None, typer.Option("--db", help="Database URL (default: the file's, $WHETSTONE_DB).")
    ] = None,
    rerun: Annotated[
        list[str],
        typer.Option(help="Run these stages again (prefix, e.g. evaluate, optimize/lora; all)."),
    ] = [],  # noqa: B006
    report: Annotated[
        Path | None, typer.Option(help="Also write the HTML report (and .md beside it) here.")
    ] = None,
    junit: JunitOption = None,
    summary: SummaryOption = None,
) -> None:
    """Run a pipeline: evaluate, diagnose, optimize, evaluate every candidate, compare, select."""
    from whetstone.pipeline import load_pipeline, run_pipeline
    from whetstone.store import Store

    config = load_pipeline(pipeline)
    if (gate or junit or summary) and config.gate is None:
        raise ConfigError(
            f"{pipeline}: --gate, --junit and --summary need a 'gate:' section naming the "
            "guarded metrics"
        )
    store = Store(db or config.db)
    progress = PipelineProgress()
    with progress:
        result = run_pipeline(
            config, store=store, reporter=progress, rerun=rerun, config_path=pipeline
        )
    print_summary(result)
    if report is not None:
        from whetstone.report import write_report

        html, md = write_report(store, result, report)
        console.print(f"report: {html} · summary: {md}", soft_wrap=True)
    failed = [s.stage for s in result.stages if s.status == "failed"]
    if result.gate is not None:
        write_gate_files(result.gate, junit, summary)
    if gate and result.gate is not None and not result.gate.passed:
        sys.exit(result.gate.exit_code)
    if failed:
        err_console.print(f"[red]{len(failed)} stage(s) failed: {', '.join(failed)}[/]")
        sys.exit(EXIT_GATE)
