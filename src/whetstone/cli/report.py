"""`whetstone report RUN|PIPELINE --out report.html`: one self-contained HTML file and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from whetstone.cli.common import console, user_errors


@user_errors
def report_command(
    target: Annotated[
        str, typer.Argument(help="A run id (or prefix), a pipeline YAML file or a pipeline name.")
    ],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    markdown: Annotated[
        Path | None, typer.Option(help="The Markdown summary (default: beside --out, .md).")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL (default: the pipeline file's, $WHETSTONE_DB or ./whetstone.db).",
        ),
    ] = None,
) -> None:
    """Write the report of an evaluation run or of a pipeline's last run."""
    from whetstone.pipeline import load_pipeline
    from whetstone.report import write_report
    from whetstone.store import Store

    if db is None and target.endswith((".yaml", ".yml")) and Path(target).is_file():
        db = load_pipeline(target).db  # the pipeline file's own store, if it names one
    store = Store(db)
    html, md = write_report(store, target, out, markdown)
    console.print(f"report: {html.resolve()}", soft_wrap=True)
    console.print(f"summary: {md.resolve()}", soft_wrap=True)
