"""The `whetstone` application: one typer app, commands registered from their modules."""

from __future__ import annotations

import typer

from whetstone.cli.evaluate import compare_command, evaluate_command, runs_command, show_command
from whetstone.cli.quickstart import quickstart_command
from whetstone.cli.serve import serve_command

app = typer.Typer(
    name="whetstone",
    no_args_is_help=True,
    add_completion=False,
    help="Evaluate, diagnose and optimize language models.",
)
app.command("evaluate")(evaluate_command)
app.command("compare")(compare_command)
app.command("runs")(runs_command)
app.command("show")(show_command)
app.command("serve")(serve_command)
app.command("quickstart")(quickstart_command)

if __name__ == "__main__":
    app()
