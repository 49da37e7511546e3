"""`whetstone feedback ...` in process: create, generate, invite, export and summary agree with
the Python API; bad input gives one line and exit code 2; `serve` runs as a real process."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.feedback import (
    AnswerRating,
    Submission,
    get_campaign,
    judgments,
    next_task,
    submit,
)
from whetstone.feedback.participants import participant_for_token
from whetstone.store import Store

RUNNER = CliRunner()
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}


def invoke(*args: str | Path, code: int = 0, stdin: str | None = None) -> Any:
    result = RUNNER.invoke(app, ["feedback", *map(str, args)], env=ENV, input=stdin)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def campaign_file(tmp_path: Path, **extra: str) -> Path:
    (tmp_path / "prompts.jsonl").write_text(
        "".join(
            json.dumps({"id": f"p{i}", "prompt": f"Prompt number {i}?"}) + "\n" for i in range(4)
        ),
        encoding="utf-8",
    )
    lines = [
        "name: cli-arena",
        "mode: arena",
        "models:",
        "  - {spec: 'fake:0', name: zero}",
        "  - {spec: 'fake:1', name: one}",
        "questions: [comment]",
        "prompts: {jsonl: prompts.jsonl}",
        "overlap: 1",
        "generation: {max_new_tokens: 8}",
        *[f"{k}: {v}" for k, v in extra.items()],
    ]
    path = tmp_path / "campaign.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_campaign_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    created = invoke("create", campaign_file(tmp_path), "--db", url, "--generate")
    campaign_id = re.search(r"campaign (\w+) \(cli-arena\)", created.stdout).group(1)  # type: ignore[union-attr]
    assert "4 prompts, 4 units" in created.stdout and "8 answers generated" in created.stdout
    assert "0 answers generated" in invoke("generate", "cli-arena", "--db", url).stdout  # resumable
    invited = invoke(
        "invite", campaign_id, "ann", "bob", "--db", url, "--base-url", "http://host:9000/"
    )
    links = re.findall(r"http://host:9000/p/(\S+)", invited.stdout)
    assert len(links) == 2
    with Store(url) as store:
        campaign = get_campaign(store, campaign_id)
        for token in links:
            person = participant_for_token(store, token)
            assert person is not None and person.campaign_id == campaign_id
            while (task := next_task(store, campaign, person)) is not None:
                submit(
                    store,
                    campaign,
                    person,
                    Submission(
                        assignment_id=task.assignment_id,
                        choice="left",
                        answers=[AnswerRating(), AnswerRating()],
                    ),
                )
        records = judgments(store, campaign_id)
    assert len(records) == 8

    out = tmp_path / "export" / "judgments.csv"
    invoke("export", campaign_id, "--db", url, "--out", out)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["participant"], r["model"], r["arena_outcome"]) for r in rows] == [
        (j.participant, j.model, j.arena_outcome) for j in records
    ]
    printed = invoke("export", campaign_id, "--db", url).stdout
    assert [json.loads(x) for x in printed.splitlines()] == [
        {**j.model_dump(mode="json"), "is_failure": j.is_failure} for j in records
    ]

    summary_json, summary_html = tmp_path / "s.json", tmp_path / "s.html"
    shown = invoke(
        "summary",
        campaign_id,
        "--db",
        url,
        "--json",
        summary_json,
        "--html",
        summary_html,
        "--n-boot",
        "50",
    )
    data = json.loads(summary_json.read_text())
    assert data["counts"]["battles"] == 4
    assert "position bias: left won 4/4" in shown.stdout
    for entry in data["ranking"]["entries"]:
        assert re.search(
            rf"{entry['rank']}\s*│\s*{entry['model']}\s*│\s*{entry['rating']:.0f}", shown.stdout
        )
    assert "<section" in summary_html.read_text() and "<script" not in summary_html.read_text()
    with Store(url) as store:
        artifact = store.get_artifact("feedback", campaign_id)
    assert artifact is not None and artifact.payload["counts"] == data["counts"]
    listed = invoke("list", "--db", url).stdout
    assert campaign_id in listed and "cli-arena" in listed
    invoke("status", campaign_id, "closed", "--db", url)
    with Store(url) as store:
        assert get_campaign(store, campaign_id).status == "closed"


def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    bad = campaign_file(tmp_path, overlapp="2")
    result = invoke("create", bad, "--db", url, code=2)
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert f"{bad}:10: field 'overlapp': unknown key 'overlapp'" in message
    missing = invoke("export", "nope", "--db", url, code=2)
    assert "no feedback campaign with id or name 'nope'" in missing.stderr
    short = invoke("owner", "olga", "--password-stdin", "--db", url, code=2, stdin="short\n")
    assert "at least 8 characters" in short.stderr
    assert (
        "owner olga saved"
        in invoke("owner", "olga", "--password-stdin", "--db", url, stdin="long enough pw\n").stdout
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # a fresh interpreter imports the whole CLI (seconds on a busy machine)
def test_serve_runs_as_a_process_and_creates_an_owner(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    port = _free_port()
    env = {**os.environ, **ENV}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "whetstone.cli.main",
            "feedback",
            "serve",
            "--db",
            url,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        password = None
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while password is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            found = re.search(r"created owner with password (\S+)", line)
            password = found.group(1) if found else None
        assert password, "serve did not print the new owner's password"
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                login = httpx.get(f"{base}/login")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        with httpx.Client(base_url=base, cookies=login.cookies) as client:
            csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
            signed = client.post(
                "/login",
                data={"name": "owner", "password": password, "csrf": csrf},
                follow_redirects=True,
            )
            assert signed.status_code == 200 and "Campaigns" in signed.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
