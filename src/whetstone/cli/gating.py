"""What `whetstone compare` and `whetstone run --gate` share: the gate's options, its table on
the terminal, and its JUnit XML and Markdown files for CI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from whetstone.cli.common import console, fmt

if TYPE_CHECKING:
    from whetstone.evaluate.gate import GateResult

JunitOption = Annotated[
    Path | None, typer.Option("--junit", help="Write the gate's checks as JUnit XML here.")
]
SummaryOption = Annotated[
    Path | None,
    typer.Option(
        "--summary", help="Write a Markdown summary here (a CI step summary, a PR comment)."
    ),
]
GateFlag = Annotated[
    bool,
    typer.Option("--gate", help="Exit with the gate's verdict: 0 pass, 1 fail, 3 inconclusive."),
]

_COLOUR = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def gate_table(gate: GateResult) -> Table:
    """One row per check: the difference, its interval, the margin, the verdict."""
    level = f"{100 * (1 - gate.alpha):g}%"
    table = Table(title=f"gate: {gate.verdict}", title_justify="left")
    heads = ("candidate", "metric", "B - A", f"{level} CI", "margin", "detectable", "n", "verdict")
    for col in heads:
        table.add_column(col)
    for c in gate.checks:
        ci = f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]" if c.ci_low is not None else ""
        table.add_row(
            c.candidate,
            c.metric,
            fmt(c.diff),
            ci,
            c.margin,
            fmt(c.detectable),
            str(c.n),
            f"[{_COLOUR[c.verdict]}]{c.verdict}[/]",
        )
    return table


def print_gate(gate: GateResult) -> None:
    """The gate's message in its verdict's colour."""
    console.print(f"[{_COLOUR[gate.verdict]}]{gate.message}[/]", soft_wrap=True)


def write_gate_files(gate: GateResult, junit: Path | None, summary: Path | None) -> None:
    """The JUnit XML and the Markdown summary, each written whole or not at all."""
    from whetstone.report.ci import gate_junit, gate_markdown
    from whetstone.report.render import atomic_write

    if junit is not None:
        atomic_write(junit, gate_junit(gate))
        console.print(f"JUnit XML: {junit}")
    if summary is not None:
        atomic_write(summary, gate_markdown(gate))
        console.print(f"summary: {summary}")
