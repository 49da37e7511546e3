"""`whetstone quickstart`: the embedded model on the shipped example tasks, offline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from whetstone.cli.common import RichReporter, console, results_table, user_errors
from whetstone.data import examples_dir
from whetstone.evaluate.engine import evaluate


@user_errors
def quickstart_command(
    out: Annotated[Path, typer.Option(help="Folder for results, samples and the database.")] = Path(
        "whetstone-quickstart"
    ),
    model: Annotated[
        str, typer.Option(help="Model spec (default: embedded Gemma 3 270M).")
    ] = "default",
    fast: Annotated[bool, typer.Option(help="A few items per task, for a smoke test.")] = False,
) -> None:
    """Evaluate the embedded model on the example support-assistant tasks, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    console.print(
        f"whetstone quickstart: model [bold]{model}[/], example tasks in {examples_dir()}"
    )
    with RichReporter() as reporter:
        ev = evaluate(
            model,
            [examples_dir() / "suite.yaml"],
            limit=8 if fast else None,
            out_dir=out,
            db=f"sqlite:///{(out / 'whetstone.db').resolve()}",
            reporter=reporter,
        )
    console.print(results_table(ev.result))
    console.print(f"results: {out / 'results.json'}  samples: {out / 'samples.jsonl'}")
    console.print(f"next: whetstone show {ev.result.run_id} --db sqlite:///{out / 'whetstone.db'}")
