"""`whetstone quickstart`: the whole loop on the embedded models and the example data, offline.

It runs the example pipeline shipped with the package (`data/examples/quickstart.yaml`, or
`quickstart_fast.yaml` with `--fast`): evaluate the embedded Gemma on the example suite,
analyse its errors, audit the training data, train and shrink intent classifiers, evaluate
every candidate on the same items, compare, select, gate, and write the report.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from whetstone.cli.common import console, user_errors
from whetstone.cli.run import PipelineProgress, print_summary

#: Setting this environment variable to 1 makes `whetstone quickstart` run as with --fast.
FAST_ENV = "WHETSTONE_QUICKSTART_FAST"


def quickstart_pipeline(fast: bool) -> Path:
    """The example pipeline file the quickstart runs."""
    from whetstone.data import examples_dir

    return examples_dir() / ("quickstart_fast.yaml" if fast else "quickstart.yaml")


@user_errors
def quickstart_command(
    out: Annotated[
        Path, typer.Option(help="Folder for the runs, the models, the database and the report.")
    ] = Path("whetstone-quickstart"),
    model: Annotated[
        str, typer.Option(help="The model to start from (default: embedded Gemma 3 270M).")
    ] = "default",
    fast: Annotated[
        bool, typer.Option(help=f"The same loop on less data (also: {FAST_ENV}=1).")
    ] = False,
) -> None:
    """Run the whole loop on the embedded models and the example data, then write the report."""
    from whetstone.pipeline import load_pipeline, run_pipeline
    from whetstone.store import Store

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    fast = fast or os.environ.get(FAST_ENV) == "1"
    t0 = time.perf_counter()
    path = quickstart_pipeline(fast)
    out = out.absolute()
    config = load_pipeline(path).model_copy(
        update={"model": model, "workdir": str(out / "runs"), "db": None}
    )
    console.print(
        f"whetstone quickstart{' --fast' if fast else ''}: pipeline {path}\n"
        f"model [bold]{model}[/], outputs in {out}"
    )
    out.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{out / 'whetstone.db'}")
    progress = PipelineProgress()
    with progress:
        result = run_pipeline(config, store=store, reporter=progress, config_path=path)
    from whetstone.report import write_report

    html, md = write_report(store, result, out / "report.html")
    print_summary(result)
    console.print(f"summary: {md}", soft_wrap=True)
    console.print(f"quickstart finished in {time.perf_counter() - t0:.0f} s")
    # last, whole on one line (a path to copy): the report
    console.print(
        f"report: [bold]{html}[/] (open it in a browser; it needs no network)", soft_wrap=True
    )
