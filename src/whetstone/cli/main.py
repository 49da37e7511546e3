"""The `whetstone` application: one typer app, commands registered from their modules."""

from __future__ import annotations

import typer

from whetstone.cli.audit import audit_command
from whetstone.cli.diagnose import diagnose_command
from whetstone.cli.distill import distill_command, quantize_command
from whetstone.cli.evaluate import (
    compare_command,
    evaluate_command,
    plan_command,
    rescore_command,
    runs_command,
    show_command,
)
from whetstone.cli.feedback import feedback_app
from whetstone.cli.optimize import finetune_command, tune_command
from whetstone.cli.quickstart import quickstart_command
from whetstone.cli.report import report_command
from whetstone.cli.run import run_command
from whetstone.cli.serve import serve_command

app = typer.Typer(
    name="whetstone",
    no_args_is_help=True,
    add_completion=False,
    help="Evaluate, diagnose and optimize language models.",
)
app.command("evaluate")(evaluate_command)
app.command("rescore")(rescore_command)
app.command("compare")(compare_command)
app.command("plan")(plan_command)
app.command("diagnose")(diagnose_command)
app.command("runs")(runs_command)
app.command("show")(show_command)
app.command("serve")(serve_command)
app.command("quickstart")(quickstart_command)
app.command("audit")(audit_command)
app.command("run")(run_command)
app.command("report")(report_command)
app.command("finetune")(finetune_command)
app.command("tune")(tune_command)
app.command("distill")(distill_command)
app.command("quantize")(quantize_command)
app.add_typer(feedback_app, name="feedback")

if __name__ == "__main__":
    app()
