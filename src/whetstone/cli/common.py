"""What every command shares: one-line errors with exit code 2, the console, result tables."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from whetstone.errors import WhetstoneError

if TYPE_CHECKING:
    from whetstone.records import MetricValue, RunResult, TaskResult

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn WhetstoneError into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WhetstoneError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def fmt(x: float | None) -> str:
    """A number with four significant digits, or an empty cell."""
    if x is None:
        return ""
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.4e}"


def metric_cell(m: MetricValue) -> tuple[str, str]:
    """The value and its interval as table cells."""
    if m.too_few:
        return fmt(m.value), "too few"
    ci = f"[{fmt(m.ci_low)}, {fmt(m.ci_high)}]" if m.ci_low is not None else ""
    return fmt(m.value), ci


def results_table(run: RunResult) -> Table:
    """One row per task and metric: value, 95% interval, n; with sampled repeats, the share
    of each interval's variance that is sampling."""
    table = Table(title=f"run {run.run_id} · {run.model.name}", title_justify="left")
    sampled = any(t.tables.get("sampling") for t in run.tasks.values())
    columns = ["task", "metric", "value", "95% CI", "n"] + (["sampling"] if sampled else [])
    for col in columns:
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    for name, task in run.tasks.items():
        spread = task.tables.get("sampling") or {}
        for i, (metric, m) in enumerate(task.metrics.items()):
            value, ci = metric_cell(m)
            row = [name if i == 0 else "", metric, value, ci, str(m.n)]
            if sampled:
                s = spread.get(metric)
                row.append(f"{s['share']:.0%} of var (K={int(s['repeats'])})" if s else "")
            table.add_row(*row)
        table.add_section()
    return table


class RichReporter:
    """A rich progress bar per task."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        self.current: Any = None

    def __enter__(self) -> RichReporter:
        return self  # the bars start with the first task: an input error prints only its line

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def task_started(self, name: str, total: int) -> None:
        """Add a bar for the task."""
        self.progress.start()
        self.current = self.progress.add_task(name, total=total)

    def advance(self, n: int) -> None:
        """Move the current bar."""
        self.progress.advance(self.current, n)

    def task_finished(self, name: str, result: TaskResult) -> None:
        """Fill the bar."""
        task = self.progress.tasks[-1]
        self.progress.update(self.current, completed=task.total)
