"""`whetstone distill` and `whetstone quantize`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from whetstone.cli.common import RichReporter, console, fmt, user_errors

if TYPE_CHECKING:
    from whetstone.optimize.distill_report import MetricRow, ModelReport


def models_table(models: list[ModelReport]) -> Table:
    """One row per model: parameters, size on disk, layers, CPU latency and throughput."""
    table = Table(title="models", title_justify="left")
    for col in ("model", "parameters", "size MB", "layers", "latency ms (p90)", "throughput"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for m in models:
        speed = m.speed
        table.add_row(
            f"{m.role}: {m.name}",
            f"{m.parameters:,}",
            fmt(m.size_mb),
            "" if m.layers is None else str(m.layers),
            f"{fmt(speed.latency_ms)} ({fmt(speed.latency_p90_ms)})" if speed else "",
            f"{fmt(speed.throughput)} {speed.throughput_unit}" if speed else "",
        )
    return table


def rows_table(rows: list[MetricRow], ref: str, cand: str, extra: bool) -> Table:
    """Each task metric: reference, candidate, retention with its interval, paired tests."""
    table = Table(title="quality", title_justify="left")
    cols = ["task", "metric", ref, cand, "retention", "95% CI", f"{cand} - {ref} (p)"]
    if extra:
        cols += ["no teacher", "gain (95% CI) p", "int8"]
    for col in cols:
        table.add_column(col)
    for r in rows:
        ci = r.retention_ci
        vs = r.vs_reference
        cells = [
            r.task,
            r.metric,
            fmt(r.reference),
            fmt(r.candidate),
            fmt(r.retention),
            f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "",
            f"{fmt(vs.diff)} ({vs.p_value:.3g})" if vs else "",
        ]
        if extra:
            g = r.gain
            gain = f"{fmt(g.diff)} [{fmt(g.ci_low)}, {fmt(g.ci_high)}] {g.p_value:.3g}" if g else ""
            cells += [fmt(r.ablation), gain, fmt(r.quantized)]
        table.add_row(*cells)
    return table


def _headline(rows: list[MetricRow]) -> list[MetricRow]:
    """The metrics worth a line: the registry's headline metrics (every metric is in the JSON)."""
    from whetstone.metrics import headline_metrics

    keep = set(headline_metrics())
    return [r for r in rows if r.metric in keep] or rows


@user_errors
def distill_command(
    config: Annotated[Path, typer.Argument(help="Distillation config (YAML).")],
    resume: Annotated[
        bool, typer.Option(help="Continue training from the newest checkpoint of a killed run.")
    ] = False,
    all_metrics: Annotated[
        bool, typer.Option(help="Print every metric, not the main ones.")
    ] = False,
) -> None:
    """Distill a teacher into a smaller student; report size, speed and retained quality."""
    from whetstone.optimize.distill import distill

    with RichReporter() as reporter:
        result = distill(config, reporter=reporter, resume=resume)
    models = [result.teacher, result.student]
    models += [m for m in (result.ablation, result.quantized) if m is not None]
    console.print(models_table(models))
    extra = result.ablation is not None or result.quantized is not None
    if result.rows:
        rows = result.rows if all_metrics else _headline(result.rows)
        console.print(rows_table(rows, "teacher", "student", extra))
    cache = result.cache
    cached = (
        f" · teacher cache {cache.folder} ({cache.computed} of {cache.examples} examples computed)"
        if cache
        else ""
    )
    console.print(
        f"[bold]{result.key}[/]: student {fmt(result.parameter_ratio)}x the parameters, "
        f"{fmt(result.size_ratio)}x the size, {fmt(result.speedup_latency)}x faster (latency), "
        f"{fmt(result.speedup_throughput)}x the throughput · {result.training.steps} steps in "
        f"{result.training.seconds:.1f} s{cached}"
    )
    console.print(f"student saved to {result.student_dir}")


@user_errors
def quantize_command(
    config: Annotated[Path, typer.Argument(help="Quantization config (YAML).")],
    all_metrics: Annotated[
        bool, typer.Option(help="Print every metric, not the main ones.")
    ] = False,
) -> None:
    """Quantize a model to dynamic int8 for CPU; report size, speed and retained quality."""
    from whetstone.optimize.quantize import quantize

    with RichReporter() as reporter:
        result = quantize(config, reporter=reporter)
    console.print(models_table([result.original, result.quantized]))
    if result.rows:
        rows = result.rows if all_metrics else _headline(result.rows)
        console.print(rows_table(rows, "original", "int8", False))
    console.print(
        f"[bold]{result.key}[/]: int8 {fmt(result.size_ratio)}x the size, "
        f"{fmt(result.speedup_latency)}x faster (latency), "
        f"{fmt(result.speedup_throughput)}x the throughput · saved to "
        f"{Path(result.output_dir) / 'model'}"
    )
