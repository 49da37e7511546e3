"""Load on the feedback studio: simulated participants rate answers over HTTP for a minute.

Starts the real app (`whetstone feedback serve`, one uvicorn process) on loopback, once on a
SQLite file and once on PostgreSQL (a schema of its own, dropped afterwards), with a review
campaign over the `fake` model. Each participant has their own invitation link and HTTP client
(its own connection and cookie jar) and, until `--duration` is over, fetches their next item,
reads the form's CSRF token and assignment and submits a thumbs, a Likert rating and a comment.

Reports acknowledged ratings per second (a 303 after the POST), the p50/p99 latency of the
submissions and of the next-item pages, and checks against the database that every
acknowledged rating is stored with the values that were sent (count and assignment ids), that
no unit got more than `overlap` judgments, and what was stored without an acknowledgement.

    nice .venv/bin/python bench/feedback_load.py [--duration 60] [--participants 200]
        [--items 2000] [--databases sqlite,postgres] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psutil
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from whetstone.feedback import db
from whetstone.feedback.campaigns import create_campaign
from whetstone.feedback.config import parse_config
from whetstone.feedback.generation import generate_answers
from whetstone.feedback.participants import invite
from whetstone.store import Store

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "feedback_load.md"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ASSIGNMENT = re.compile(r'name="assignment_id" value="(\d+)"')
TOPICS = [
    "share a notebook with my team",
    "get my notes syncing again",
    "export a page as PDF",
    "change my password",
    "find the trash folder",
    "work offline on a train",
    "add a tag to a note",
    "edit a note together with a colleague",
    "restore an older version of a page",
    "move notes between workspaces",
]


@dataclass
class Campaign:
    """The campaign under load: its id, size and the participants' invitation tokens."""

    id: str
    units: int
    overlap: int
    tokens: list[str]


@dataclass
class Sent:
    """What one submission carried (to compare with the stored rating)."""

    participant: int
    thumbs: bool
    likert: int
    comment: str


@dataclass
class Tally:
    """What the simulated participants saw, shared by all of them (one event loop)."""

    submit_ms: list[float] = field(default_factory=list)
    fetch_ms: list[float] = field(default_factory=list)
    acked: dict[int, Sent] = field(default_factory=dict)
    unanswered: set[int] = field(default_factory=set)
    """Assignments whose submission got no response (timeout or broken connection)."""
    refused: Counter[str] = field(default_factory=Counter)
    fetch_errors: Counter[str] = field(default_factory=Counter)
    ran_out: int = 0


@dataclass
class Outcome:
    """One database's run: the measurements and the database check."""

    database: str
    version: str
    load_start: float
    elapsed: float
    tally: Tally
    server_cpu: float
    client_cpu: float
    stored: int = 0
    lost: int = 0
    wrong_values: int = 0
    duplicates: int = 0
    stored_unacked: int = 0
    unexplained: int = 0
    max_per_unit: int = 0

    @property
    def submissions(self) -> int:
        """Submissions that got a response or failed in flight."""
        return len(self.tally.submit_ms) + len(self.tally.unanswered)

    @property
    def per_second(self) -> float:
        """Acknowledged ratings per second of wall time."""
        return len(self.tally.acked) / self.elapsed


# -- the campaign ------------------------------------------------------------------------------


def prepare(url: str, items: int, overlap: int, participants: int) -> Campaign:
    """A review campaign over two fake models with generated answers, and invitation tokens."""
    rng = random.Random(0)
    prompts = [
        {"id": f"q{i:05d}", "prompt": f"Ticket {i}: how do I {rng.choice(TOPICS)}?"}
        for i in range(items)
    ]
    config = parse_config(
        {
            "name": "load-bench",
            "mode": "review",
            "models": [{"spec": "fake:0", "name": "m0"}, {"spec": "fake:1", "name": "m1"}],
            "questions": ["thumbs", "likert", "comment"],
            "prompts": {"items": prompts},
            "overlap": overlap,
            "generation": {"max_new_tokens": 24},
        }
    )
    with Store(url) as store:
        campaign = create_campaign(store, config)
        generate_answers(store, campaign)
        tokens = [invite(store, campaign.id, f"rater-{k:03d}").token for k in range(participants)]
        with db.read(store) as conn:
            units = conn.execute(
                select(func.count()).where(db.units.c.campaign_id == campaign.id)
            ).scalar_one()
    return Campaign(id=campaign.id, units=int(units), overlap=overlap, tokens=tokens)


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(url: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`whetstone feedback serve` in a subprocess, ready to answer; stopped on exit."""
    command = [sys.executable, "-m", "whetstone.cli.main", "feedback", "serve"]
    command += ["--db", url, "--port", str(port), "--no-generate"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}):\n{log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not start in 120 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(proc: psutil.Process) -> float:
    """User plus system CPU time of a process."""
    times = proc.cpu_times()
    return float(times.user + times.system)


# -- the participants --------------------------------------------------------------------------


async def participant(
    index: int, base: str, token: str, deadline: float, timeout: float, tally: Tally
) -> None:
    """Fetch the next item and rate it, again and again, until the deadline."""
    rng = random.Random(index)
    async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                page = await client.get(f"/p/{token}")
            except httpx.HTTPError as err:
                tally.fetch_errors[type(err).__name__] += 1
                continue
            tally.fetch_ms.append((time.perf_counter() - start) * 1000)
            if page.status_code != 200:
                tally.fetch_errors[f"HTTP {page.status_code}"] += 1
                await asyncio.sleep(0.1)
                continue
            csrf, assignment = CSRF.search(page.text), ASSIGNMENT.search(page.text)
            if csrf is None or assignment is None:
                tally.ran_out += 1  # the "nothing is waiting for you" page
                return
            assignment_id = int(assignment.group(1))
            likert = rng.randint(1, 5)
            sent = Sent(index, likert >= 3, likert, f"rater {index} on {assignment_id}")
            form = {
                "csrf": csrf.group(1),
                "assignment_id": str(assignment_id),
                "thumbs": "up" if sent.thumbs else "down",
                "likert": str(likert),
                "comment": sent.comment,
            }
            start = time.perf_counter()
            try:
                response = await client.post(f"/p/{token}/rate", data=form)
            except httpx.HTTPError as err:
                tally.unanswered.add(assignment_id)
                tally.refused[type(err).__name__] += 1
                continue
            tally.submit_ms.append((time.perf_counter() - start) * 1000)
            if response.status_code == 303:
                tally.acked[assignment_id] = sent
            else:
                tally.refused[f"HTTP {response.status_code}"] += 1


async def load(base: str, tokens: list[str], duration: float, timeout: float) -> Tally:
    """All participants at once for `duration` seconds (in-flight requests are awaited)."""
    tally = Tally()
    deadline = time.monotonic() + duration
    await asyncio.gather(
        *(participant(i, base, t, deadline, timeout, tally) for i, t in enumerate(tokens))
    )
    return tally


# -- the check ---------------------------------------------------------------------------------


def check(url: str, campaign: Campaign, outcome: Outcome) -> None:
    """Compare the acknowledged ratings with the stored ones (ids, count and values)."""
    r, p, a = db.ratings, db.participants, db.assignments
    with Store(url) as store, db.read(store) as conn:
        rows = conn.execute(
            select(r.c.assignment_id, r.c.thumbs, r.c.likert, r.c.comment, p.c.name, a.c.status)
            .join(p, p.c.id == r.c.participant_id)
            .join(a, a.c.id == r.c.assignment_id)
            .where(r.c.campaign_id == campaign.id)
        ).all()
        per_unit = conn.execute(
            select(func.count().label("n"))
            .where(a.c.campaign_id == campaign.id, a.c.status == "done")
            .group_by(a.c.unit_id)
        ).scalars()
        outcome.max_per_unit = max(per_unit, default=0)
    acked = outcome.tally.acked
    stored = {int(row.assignment_id): row for row in rows}
    outcome.stored = len(rows)
    outcome.duplicates = len(rows) - len(stored)
    outcome.lost = len(acked.keys() - stored.keys())
    extra = stored.keys() - acked.keys()
    outcome.stored_unacked = len(extra)
    outcome.unexplained = len(extra - outcome.tally.unanswered)
    outcome.wrong_values = sum(
        1
        for aid, sent in acked.items()
        if aid in stored
        and (
            stored[aid].likert != sent.likert
            or bool(stored[aid].thumbs) != sent.thumbs
            or stored[aid].comment != sent.comment
            or stored[aid].name != f"rater-{sent.participant:03d}"
            or stored[aid].status != "done"
        )
    )


# -- one database ------------------------------------------------------------------------------


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """The URL of a fresh schema on the PostgreSQL server; dropped with its tables on exit."""
    url = make_url(base_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    schema = f"ws_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
                hide_password=False
            )
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()


def postgres_version(url: str) -> str:
    """The server's version string."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            version = str(conn.execute(text("SHOW server_version")).scalar_one())
            return f"PostgreSQL {version.split()[0]}"
    finally:
        engine.dispose()


def run_one(name: str, url: str, args: argparse.Namespace, workdir: Path) -> Outcome:
    """Set up the campaign, start the server, run the participants, check the database."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"[{name}] campaign: {args.items} prompts x 2 models, {args.participants} links")
    campaign = prepare(url, args.items, args.overlap, args.participants)
    version = postgres_version(url) if name == "postgresql" else f"SQLite {sqlite3.sqlite_version}"
    with server(url, port, workdir / f"server-{name}.log") as proc:
        server_proc, client_proc = psutil.Process(proc.pid), psutil.Process()
        load_start = os.getloadavg()[0]
        cpu0 = cpu_seconds(server_proc), cpu_seconds(client_proc)
        print(f"[{name}] {args.participants} participants for {args.duration:.0f} s")
        t0 = time.perf_counter()
        tally = asyncio.run(load(base, campaign.tokens, args.duration, args.timeout))
        elapsed = time.perf_counter() - t0
        cpu1 = cpu_seconds(server_proc), cpu_seconds(client_proc)
    outcome = Outcome(
        database=name,
        version=version,
        load_start=load_start,
        elapsed=elapsed,
        tally=tally,
        server_cpu=cpu1[0] - cpu0[0],
        client_cpu=cpu1[1] - cpu0[1],
    )
    check(url, campaign, outcome)
    outcome_line = (
        f"[{name}] {len(tally.acked)} acknowledged in {elapsed:.1f} s, "
        f"{outcome.stored} stored, {outcome.lost} lost"
    )
    print(outcome_line)
    if outcome.max_per_unit > campaign.overlap:
        print(f"[{name}] a unit has {outcome.max_per_unit} judgments > overlap {campaign.overlap}")
    return outcome


# -- the record --------------------------------------------------------------------------------


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 (NaN when there are none)."""
    if not values:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(values), [50, 99])
    return float(p50), float(p99)


def counts(counter: Counter[str]) -> str:
    """'HTTP 400: 3, ReadTimeout: 1' or 'none'."""
    return ", ".join(f"{k}: {v}" for k, v in counter.most_common()) or "none"


def table(outcomes: list[Outcome]) -> str:
    """The results as a Markdown table, one row per database."""
    head = (
        "| database | load avg at start | submissions | acknowledged | ratings/s "
        "| submit p50 ms | submit p99 ms | next item p50 ms | next item p99 ms "
        "| stored | lost | wrong values | server CPU s | client CPU s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for o in outcomes:
        s50, s99 = percentiles(o.tally.submit_ms)
        f50, f99 = percentiles(o.tally.fetch_ms)
        lines.append(
            f"| {o.version} | {o.load_start:.1f} | {o.submissions} | {len(o.tally.acked)} "
            f"| {o.per_second:.1f} | {s50:.0f} | {s99:.0f} | {f50:.0f} | {f99:.0f} "
            f"| {o.stored} | {o.lost} | {o.wrong_values} | {o.server_cpu:.0f} "
            f"| {o.client_cpu:.0f} |"
        )
    return "\n".join(lines)


def details(outcomes: list[Outcome], overlap: int) -> list[str]:
    """One line per database: refusals, errors, unacknowledged rows, coverage."""
    lines = []
    for o in outcomes:
        t = o.tally
        lines.append(
            f"- {o.database}: {o.elapsed:.1f} s wall; refused or failed submissions: "
            f"{counts(t.refused)}; next-item errors: {counts(t.fetch_errors)}; participants "
            f"who ran out of items: {t.ran_out}; stored without an acknowledgement: "
            f"{o.stored_unacked} ({o.unexplained} not explained by a submission that got no "
            f"response); duplicate rows: {o.duplicates}; most judgments of one unit: "
            f"{o.max_per_unit} (overlap {overlap})."
        )
    return lines


def machine(load_start: tuple[float, float, float]) -> str:
    """Date, CPU, cores and load average, for the record."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [x for x in lines if x.startswith("model name")]
    if names:
        cpu = names[0].split(":", 1)[1].strip()
    one, five, fifteen = load_start
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu}, {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"uvicorn {_version('uvicorn')}, httpx {httpx.__version__}, run at niceness "
        f"{os.nice(0)}; load average at start "
        f"{one:.1f} / {five:.1f} / {fifteen:.1f} (1 / 5 / 15 min; a shared machine, other "
        "jobs ran at the same time)"
    )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def write_record(text_: str) -> None:
    """Write the record atomically (temp file, then rename)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text_, encoding="utf-8")
    os.replace(tmp, RESULTS)


def record(outcomes: list[Outcome], args: argparse.Namespace, header: str) -> str:
    """The Markdown record: setup, table, details, how to read it."""
    parts = [
        "# Feedback studio under load",
        "",
        header,
        "",
        "`whetstone feedback serve` (one uvicorn process, default limits: 120 submissions "
        "per participant and minute, bursts of 30) on loopback; a review "
        f"campaign of {args.items} prompts x 2 `fake` models = {2 * args.items} units, overlap "
        f"{args.overlap}, questions thumbs + Likert + comment. {args.participants} simulated "
        f"participants (asyncio + httpx in one process on the same machine, each with its own "
        f"invitation link and client) fetch their next item and submit a rating, over and over, "
        f"for {args.duration:.0f} s; requests in flight at the end are awaited.",
        "",
        table(outcomes),
        "",
        *details(outcomes, args.overlap),
        "",
        "ratings/s: acknowledged ratings (the POST answered 303) per second of wall time. "
        "Latencies are client-side round trips: submit = the rating POST, next item = the "
        "participant's page (it assigns the next unit under the campaign's lock). stored / "
        "lost / wrong values: the ratings table after the run, compared by assignment id with "
        "every acknowledged submission (thumbs, Likert, comment and participant as sent). "
        "CPU seconds are over the load phase (server: the uvicorn process; PostgreSQL's own "
        "processes, on the same machine, are not counted); the server, the clients and the "
        "database share the machine's cores with each other and with other jobs.",
        "",
    ]
    return "\n".join(parts)


def main() -> None:
    """Run the load on each database, print the table and write the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--items", type=int, default=2000, help="prompts (x 2 models = units)")
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout, seconds")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("WHETSTONE_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL server URL (a schema of its own is created and dropped)",
    )
    parser.add_argument("--no-record", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args()
    wanted = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = set(wanted) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"--databases: expected sqlite and/or postgresql, got {sorted(unknown)}")
    header = machine(os.getloadavg())
    print(header)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="feedback-load-") as tmp:
        workdir = Path(tmp)
        for name in wanted:
            if name == "sqlite":
                outcomes.append(run_one(name, f"sqlite:///{workdir / 'load.db'}", args, workdir))
            else:
                with postgres_schema(args.postgres) as url:
                    outcomes.append(run_one(name, url, args, workdir))
    print()
    print(table(outcomes))
    for line in details(outcomes, args.overlap):
        print(line)
    if not args.no_record:
        write_record(record(outcomes, args, header))
        print(f"\nwritten to {RESULTS.relative_to(REPO)}")
    if any(o.lost or o.wrong_values or o.duplicates or o.unexplained for o in outcomes):
        raise SystemExit("acknowledged ratings are missing or differ in the database")


if __name__ == "__main__":
    main()
