"""`whetstone feedback ...`: serve the studio, manage campaigns, export judgments."""

from __future__ import annotations

import getpass
import json
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from whetstone.cli.common import console, err_console, fmt, user_errors
from whetstone.errors import WhetstoneError

if TYPE_CHECKING:
    from whetstone.store import Store

feedback_app = typer.Typer(
    name="feedback",
    no_args_is_help=True,
    add_completion=False,
    help="The feedback studio: people use the model and judge it.",
)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Database URL (default $WHETSTONE_DB or ./whetstone.db).")
]
CampaignArg = Annotated[str, typer.Argument(help="Campaign id or name.")]


def _generate_with_progress(store: Store, campaign_id: str) -> int:
    """Generate the campaign's pending answers with a progress bar per model."""
    from whetstone.feedback.campaigns import get_campaign
    from whetstone.feedback.generation import generate_answers

    campaign = get_campaign(store, campaign_id)
    bars: dict[str, object] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:

        def report(model: str, done: int, total: int) -> None:
            if model not in bars:
                bars[model] = progress.add_task(f"answers of {model}", total=total)
            progress.advance(bars[model], done)  # type: ignore[arg-type]

        return generate_answers(store, campaign, progress=report)


@feedback_app.command("serve")
@user_errors
def serve_command(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8600,
    public_url: Annotated[
        str | None, typer.Option(help="Base of invitation links (default: the browser's address).")
    ] = None,
    generate: Annotated[
        bool, typer.Option(help="Generate pending answers in the background.")
    ] = True,
    secure_cookies: Annotated[
        bool, typer.Option(help="Send cookies over HTTPS only (behind a TLS proxy).")
    ] = False,
    submissions_per_minute: Annotated[
        float, typer.Option(help="Rating submissions allowed per participant and minute.")
    ] = 120.0,
    data_root: Annotated[
        Path | None,
        typer.Option(help="The folder whose task and JSONL files owners may use in the form."),
    ] = None,
    trusted_proxy: Annotated[
        str | None,
        typer.Option(help="Address of a reverse proxy whose X-Forwarded-For is believed."),
    ] = None,
) -> None:
    """Serve the feedback studio (owner pages, participant links, chat, exports)."""
    import uvicorn

    from whetstone.feedback import auth
    from whetstone.feedback.app import AppSettings, create_app
    from whetstone.store import Store

    if data_root is not None and not data_root.is_dir():
        raise WhetstoneError(f"--data-root {data_root}: not a folder")
    store = Store(db)
    if not auth.has_owner(store):
        password = secrets.token_urlsafe(12)
        auth.set_owner(store, "owner", password)
        console.print(
            "No owner yet: created [bold]owner[/] with password "
            f"[bold]{password}[/] (change it with `whetstone feedback owner owner`)."
        )
    settings = AppSettings(
        public_url=public_url,
        generate=generate,
        secure_cookies=secure_cookies,
        submissions_per_minute=submissions_per_minute,
        data_root=data_root,
    )
    app = create_app(store, settings)
    console.print(f"Feedback studio on http://{host}:{port}/ (database {store.url})")
    # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: only from a named proxy here
    proxy = (
        {"proxy_headers": True, "forwarded_allow_ips": trusted_proxy}
        if trusted_proxy
        else {"proxy_headers": False}
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", **proxy)


@feedback_app.command("owner")
@user_errors
def owner_command(
    name: Annotated[str, typer.Argument(help="Owner name to create or update.")],
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Create an owner (who signs in to create campaigns) or change their password."""
    from whetstone.feedback import auth
    from whetstone.store import Store

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise WhetstoneError("the two passwords differ")
    owner = auth.set_owner(Store(db), name, password)
    console.print(f"owner {owner.name} saved")


@feedback_app.command("create")
@user_errors
def create_command(
    config: Annotated[Path, typer.Argument(help="Campaign YAML file.")],
    db: DbOption = None,
    generate: Annotated[
        bool, typer.Option(help="Generate the answers now (else the server does it).")
    ] = False,
) -> None:
    """Create a campaign from a YAML file; prints its id."""
    from whetstone.feedback.campaigns import count_rows, create_campaign
    from whetstone.feedback.config import load_config
    from whetstone.store import Store

    cfg = load_config(config)
    store = Store(db)
    campaign = create_campaign(store, cfg, base_dir=config.resolve().parent)
    counts = count_rows(store, campaign.id)
    console.print(
        f"campaign [bold]{campaign.id}[/] ({campaign.name}): {campaign.mode}, "
        f"{len(campaign.models)} models, {counts['items']} prompts, {counts['units']} units"
    )
    if generate:
        n = _generate_with_progress(store, campaign.id)
        console.print(f"{n} answers generated")


@feedback_app.command("generate")
@user_errors
def generate_command(
    campaign: CampaignArg,
    db: DbOption = None,
    retry_failed: Annotated[bool, typer.Option(help="Try failed answers again.")] = False,
) -> None:
    """Generate a campaign's pending answers (resumable: finished ones are kept)."""
    from whetstone.feedback.campaigns import get_campaign
    from whetstone.feedback.generation import answer_progress
    from whetstone.feedback.generation import retry_failed as retry
    from whetstone.store import Store

    store = Store(db)
    found = get_campaign(store, campaign)
    if retry_failed:
        console.print(f"{retry(store, found)} failed answers queued again")
    n = _generate_with_progress(store, found.id)
    console.print(f"{n} answers generated")
    for p in answer_progress(store, found):
        if p.failed:
            err_console.print(f"[red]{p.model}: {p.failed} failed[/] ({p.error})")


@feedback_app.command("invite")
@user_errors
def invite_command(
    campaign: CampaignArg,
    names: Annotated[list[str], typer.Argument(help="Participant names.")],
    base_url: Annotated[
        str, typer.Option(help="Address of the feedback server.")
    ] = "http://127.0.0.1:8600",
    db: DbOption = None,
    days: Annotated[float, typer.Option(help="Days each link stays valid.")] = 30.0,
) -> None:
    """Create personal invitation links (each is shown only now)."""
    from whetstone.feedback.campaigns import get_campaign
    from whetstone.feedback.participants import invite
    from whetstone.store import Store

    store = Store(db)
    found = get_campaign(store, campaign)
    for name in names:
        invitation = invite(store, found.id, name, days)
        console.print(f"{invitation.participant.name}\t{invitation.link(base_url)}", soft_wrap=True)


@feedback_app.command("revoke")
@user_errors
def revoke_command(
    campaign: CampaignArg,
    names: Annotated[list[str], typer.Argument(help="Participants whose links end now.")],
    db: DbOption = None,
) -> None:
    """Revoke participants' invitation links (their judgments stay)."""
    from whetstone.feedback.campaigns import get_campaign
    from whetstone.feedback.participants import revoke
    from whetstone.store import Store

    store = Store(db)
    found = get_campaign(store, campaign)
    for name in names:
        if not revoke(store, found.id, name):
            raise WhetstoneError(
                f"campaign {found.name!r} has no participant {name!r} with a live link"
            )
        console.print(f"revoked {name}")


@feedback_app.command("list")
@user_errors
def list_command(db: DbOption = None) -> None:
    """Campaigns in the database, newest first."""
    from whetstone.feedback.campaigns import count_rows, list_campaigns
    from whetstone.store import Store

    store = Store(db)
    table = Table(title="feedback campaigns", title_justify="left")
    for col in ("id", "name", "mode", "status", "models", "prompts", "participants", "ratings"):
        table.add_column(col)
    for c in list_campaigns(store):
        counts = count_rows(store, c.id)
        table.add_row(
            c.id,
            c.name,
            c.mode,
            c.status,
            ", ".join(c.models),
            str(counts["items"]),
            str(counts["participants"]),
            str(counts["ratings"]),
        )
    console.print(table)


@feedback_app.command("status")
@user_errors
def status_command(
    campaign: CampaignArg,
    status: Annotated[str, typer.Argument(help="open or closed.")],
    db: DbOption = None,
) -> None:
    """Open or close a campaign (a closed one accepts no more ratings)."""
    from whetstone.feedback.campaigns import get_campaign, set_status
    from whetstone.store import Store

    if status not in ("open", "closed"):
        raise WhetstoneError(f"status must be open or closed, got {status!r}")
    store = Store(db)
    found = get_campaign(store, campaign)
    set_status(store, found.id, status)  # type: ignore[arg-type]
    console.print(f"campaign {found.id} is {status}")


@feedback_app.command("summary")
@user_errors
def summary_command(
    campaign: CampaignArg,
    db: DbOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the summary JSON.")] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write the summary as an HTML page.")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for intervals.")] = 1000,
) -> None:
    """Ranking, ratings with intervals and agreement; stored as the 'feedback' artifact."""
    from whetstone.feedback.export import write_atomic
    from whetstone.feedback.html import render_html_section
    from whetstone.feedback.summary import campaign_summary
    from whetstone.store import Store

    summary = campaign_summary(Store(db), campaign, n_boot=n_boot)
    _print_summary(summary)
    if json_out is not None:
        write_atomic(json_out, json.dumps(summary.model_dump(mode="json"), indent=2) + "\n")
    if html_out is not None:
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>Feedback</title></head><body>{render_html_section(summary)}</body></html>\n"
        )
        write_atomic(html_out, page)


def _ci(m: object) -> str:
    """A MetricValue as ``value [low, high]``."""
    if m is None:
        return ""
    value, low, high = m.value, m.ci_low, m.ci_high  # type: ignore[attr-defined]
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]" if low is not None else fmt(value)


def _print_summary(summary: object) -> None:
    """The summary's main tables on the console."""
    from whetstone.feedback.summary import CampaignSummary

    assert isinstance(summary, CampaignSummary)
    c = summary.counts
    console.print(
        f"[bold]{summary.name}[/] ({summary.mode}): {c.judgments} judgments from "
        f"{c.active_participants} participants, {c.failures} failure cases, "
        f"{summary.coverage.units_complete}/{summary.coverage.units} units judged "
        f"{summary.coverage.overlap}x"
    )
    ratings = Table(title="ratings (95% intervals)", title_justify="left")
    for col in ("model", "judgments", "thumbs up", "Likert mean", "win rate", "failure rate"):
        ratings.add_column(col)
    for r in summary.model_ratings:
        ratings.add_row(
            r.model,
            str(r.judgments),
            _ci(r.thumbs_up),
            _ci(r.likert_mean),
            _ci(r.arena.win_rate if r.arena else None),
            _ci(r.failure_rate),
        )
    console.print(ratings)
    if summary.ranking is not None:
        ranking = Table(title="Bradley-Terry ranking (Elo scale)", title_justify="left")
        for col in ("#", "model", "rating", "95% CI", "battles"):
            ranking.add_column(col)
        for e in summary.ranking.entries:
            ranking.add_row(
                str(e.rank),
                e.model,
                f"{e.rating:.0f}",
                f"[{e.ci_low:.0f}, {e.ci_high:.0f}]" if e.ci_low is not None else "too few",
                str(e.battles),
            )
        console.print(ranking)
    if summary.position_bias is not None and summary.position_bias.p_value is not None:
        pb = summary.position_bias
        console.print(
            f"position bias: left won {pb.left_wins}/{pb.decisive} decisive battles "
            f"(p = {pb.p_value:.3g})"
        )
    if summary.agreement:
        table = Table(title="agreement", title_justify="left")
        for col in ("question", "units", "raters", "Cohen κ", "Fleiss κ", "Krippendorff α"):
            table.add_column(col)
        for a in summary.agreement:
            table.add_row(
                a.question,
                str(a.units),
                str(a.raters),
                fmt(a.cohen_kappa),
                fmt(a.fleiss_kappa),
                _ci(a.krippendorff_alpha),
            )
        console.print(table)


@feedback_app.command("export")
@user_errors
def export_command(
    campaign: CampaignArg,
    db: DbOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="File to write (default: standard output).")
    ] = None,
    format: Annotated[str | None, typer.Option(help="jsonl or csv (default: from --out).")] = None,
) -> None:
    """Export the campaign's judgments (the records diagnosis reads) as JSONL or CSV."""
    from whetstone.feedback.export import export_judgments, render
    from whetstone.feedback.judgments import judgments
    from whetstone.store import Store

    if format not in (None, "jsonl", "csv"):
        raise WhetstoneError(f"--format must be jsonl or csv, got {format!r}")
    store = Store(db)
    if out is None:
        sys.stdout.write(render(judgments(store, campaign), format or "jsonl"))  # type: ignore[arg-type]
        return
    n = export_judgments(store, campaign, out, format)  # type: ignore[arg-type]
    err_console.print(f"{n} judgments written to {out}")
