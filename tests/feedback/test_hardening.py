"""Attacks on the studio that used to succeed: formula cells in CSV exports, weak owner
passwords, and inputs that made the server answer a plain-text 500."""

from __future__ import annotations

import csv
import io
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from whetstone.data import examples_dir
from whetstone.errors import WhetstoneError
from whetstone.feedback import auth
from whetstone.feedback.export import to_csv
from whetstone.records import FeedbackJudgment
from whetstone.store import Store

from .conftest import make_client
from .test_app import create, csrf_of, invite_links, sign_in

FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


def judgment(**fields: object) -> FeedbackJudgment:
    base = {"campaign": "c", "mode": "review", "item_id": "1", "participant": "ann"}
    return FeedbackJudgment.model_validate(
        {**base, "model": "m", "prompt": "p", "output": "o", **fields}
    )


@pytest.mark.parametrize("text", FORMULAS)
def test_a_cell_a_spreadsheet_would_run_is_quoted(text: str) -> None:
    records = [
        judgment(comment=text, output=text, prompt=text, tags=[text.strip(), "ok"], likert=2),
        judgment(comment="fine - really", output="-", likert=4),
    ]
    rows = list(csv.DictReader(io.StringIO(to_csv(records), newline="")))
    for field in ("comment", "output", "prompt", "tags"):
        assert rows[0][field].startswith("'"), (field, rows[0][field])
    # the text itself survives after the quote; numbers and ordinary text are untouched
    assert rows[0]["comment"] == "'" + text and rows[0]["likert"] == "2"
    assert rows[1]["comment"] == "fine - really" and rows[1]["likert"] == "4"
    assert rows[1]["output"] == "'-"


@pytest.mark.parametrize(
    "password", [" " * 8, "12345678", "password1", "qwertyuiop", "aaaaaaaaaaaa", "iloveyou99"]
)
def test_weak_passwords_are_refused(store: Store, password: str) -> None:
    with pytest.raises(WhetstoneError, match="too weak"):
        auth.set_owner(store, "olga", password)


def test_a_strong_password_is_accepted(store: Store) -> None:
    assert auth.set_owner(store, "olga", "correct horse battery").name == "olga"


def test_out_of_range_ids_and_deep_json_get_clear_answers(
    app_store: Store, client: TestClient
) -> None:
    csrf = sign_in(client)
    campaign_id = create(client, csrf)
    (link,) = invite_links(client, csrf, campaign_id, "ann")
    page = client.get(link)
    token = csrf_of(page.text)
    for path in ("rate", "skip"):
        answer = client.post(
            f"{link}/{path}", data={"csrf": token, "assignment_id": str(10**30), "thumbs": "up"}
        )
        assert answer.status_code == 400, (path, answer.status_code)
        assert "content-security-policy" in answer.headers
    chat_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert chat_csrf
    deep = client.post(
        f"{link}/chat/send",
        content="[" * 100000,
        headers={"x-csrf-token": chat_csrf.group(1), "content-type": "application/json"},
    )
    assert deep.status_code == 400 and "expected JSON" in deep.json()["error"]


def test_an_unexpected_error_is_a_page_with_the_protections(
    app_store: Store, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from whetstone.feedback import app as studio_app

    sign_in(client)

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(studio_app, "list_campaigns", broken)
    answer = client.get("/owner")
    assert answer.status_code == 500
    assert "Something went wrong" in answer.text and "a bug" not in answer.text
    assert "content-security-policy" in answer.headers


def _studio(store: Store, data_root: Path | None) -> TestClient:
    return make_client(store, data_root=data_root)


def _task_form(csrf: str, task_path: str) -> dict[str, object]:
    return {
        "csrf": csrf,
        "name": f"from {task_path}"[:60],
        "mode": "review",
        "models": "m0=fake:0",
        "questions": ["thumbs"],
        "source": "task",
        "task_path": task_path,
        "limit": "3",
        "max_new_tokens": "8",
    }


def test_owners_read_files_only_inside_the_data_folder(app_store: Store, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    for name in ("support_qa.yaml", "support_qa.jsonl", "support_qa_train.jsonl"):
        shutil.copy(examples_dir() / name, root / name)
    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"question": "root:x:0:0", "answer": "s3cr3t-answer"}\n')
    (root / "link.yaml").symlink_to(Path("/etc/passwd"))
    (root / "leak.yaml").write_text(
        (root / "support_qa.yaml").read_text().replace("support_qa.jsonl", str(secret))
    )
    with _studio(app_store, root) as client:
        csrf = sign_in(client)
        ok = client.post("/owner/new", data=_task_form(csrf, "support_qa.yaml"))
        assert ok.status_code == 200 and "/owner/campaigns/" in ok.url.path
        refused = {
            "/etc/passwd": "is outside the studio",
            "../secret.jsonl": "is outside the studio",
            "link.yaml": "is outside the studio",
            "leak.yaml": "is outside the studio",
            "~/.bashrc": "not found in the data folder",  # no home folder: a name in the root
        }
        for path, words in refused.items():
            answer = client.post("/owner/new", data=_task_form(csrf, path))
            assert answer.status_code == 400 and words in answer.text, path
            assert "root:x" not in answer.text and "s3cr3t" not in answer.text, path
        upload = client.post(
            "/owner/new",
            data={"csrf": csrf},
            files={
                "config_file": (
                    "c.yaml",
                    f"name: up\nmode: review\nmodels: [{{spec: fake:0}}]\n"
                    f"prompts: {{jsonl: {secret}}}\n",
                    "text/yaml",
                )
            },
        )
        assert upload.status_code == 400 and "is outside the studio" in upload.text


def test_without_a_data_folder_no_file_is_read(app_store: Store) -> None:
    with _studio(app_store, None) as client:
        csrf = sign_in(client)
        answer = client.post("/owner/new", data=_task_form(csrf, "/etc/passwd"))
        assert answer.status_code == 400 and "reads no files" in answer.text
        assert "root:" not in answer.text


def _login(client: TestClient, name: str, password: str, **headers: str) -> int:
    page = client.get("/login")
    form = {"name": name, "password": password, "csrf": csrf_of(page.text)}
    return client.post("/login", data=form, headers=headers).status_code


def test_failed_sign_ins_are_limited_per_address_and_account(app_store: Store) -> None:
    with make_client(app_store, logins_per_minute=3) as client:
        # the app keys on the socket peer, so a forged X-Forwarded-For buys no fresh address
        # (and `feedback serve` starts uvicorn with proxy_headers off unless --trusted-proxy)
        guesses = [
            _login(client, "olga", f"wrong {i}", **{"x-forwarded-for": f"10.0.0.{i}"})
            for i in range(5)
        ]
        assert guesses == [401, 401, 401, 429, 429]
    with make_client(app_store, logins_per_minute=3) as client:
        # failures on one account do not block another, and a right password costs nothing
        assert [_login(client, "olga", "correct horse battery") for _ in range(5)] == [200] * 5
        assert [_login(client, "other", f"wrong {i}") for i in range(3)] == [401] * 3
        assert _login(client, "other", "correct horse battery") == 429


def test_a_revoked_or_expired_link_no_longer_opens_the_campaign(
    app_store: Store, client: TestClient
) -> None:
    from sqlalchemy import update

    from whetstone.feedback import db

    csrf = sign_in(client)
    campaign_id = create(client, csrf)
    ann, bob, cat = invite_links(client, csrf, campaign_id, "ann", "bob", "cat")
    assert all(client.get(link).status_code == 200 for link in (ann, bob, cat))
    revoked = client.post(
        f"/owner/campaigns/{campaign_id}/revoke", data={"csrf": csrf, "name": "ann"}
    )
    assert revoked.status_code == 200
    assert client.get(ann).status_code == 404
    token = csrf_of(client.get(bob).text)
    # a hand-made POST with the revoked link is refused too
    assert client.post(f"{ann}/skip", data={"csrf": token, "assignment_id": "1"}).status_code == 404
    again = client.post(
        f"/owner/campaigns/{campaign_id}/revoke", data={"csrf": csrf, "name": "ann"}
    )
    assert again.status_code == 400
    # bob's link expires: its time is set into the past
    with db.write(app_store) as conn:
        conn.execute(
            update(db.participants)
            .where(db.participants.c.name == "bob")
            .values(expires_at=db.now() - timedelta(seconds=1))
        )
    assert client.get(bob).status_code == 404 and client.get(cat).status_code == 200


def test_the_cli_revokes_and_sets_the_validity(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tests.feedback.conftest import config
    from whetstone.cli.main import app
    from whetstone.feedback import create_campaign
    from whetstone.feedback.participants import participant_for_token

    url = f"sqlite:///{tmp_path / 'f.db'}"
    with Store(url) as store:
        campaign = create_campaign(store, config())
    runner = CliRunner()
    made = runner.invoke(
        app, ["feedback", "invite", campaign.id, "ann", "--days", "2", "--db", url]
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().rsplit("/p/", 1)[1]
    with Store(url) as store:
        found = participant_for_token(store, token)
        assert found is not None and found.expires_at is not None
        left = found.expires_at - found.created_at
        assert timedelta(days=2) - timedelta(seconds=5) < left <= timedelta(days=2)
    gone = runner.invoke(app, ["feedback", "revoke", campaign.id, "ann", "--db", url])
    assert gone.exit_code == 0 and "revoked ann" in gone.stdout
    with Store(url) as store:
        assert participant_for_token(store, token) is None
    twice = runner.invoke(app, ["feedback", "revoke", campaign.id, "ann", "--db", url])
    assert twice.exit_code == 2 and "with a live link" in twice.stderr


def test_a_post_from_another_site_is_refused(app_store: Store, client: TestClient) -> None:
    csrf = sign_in(client)
    campaign_id = create(client, csrf)
    form = {"csrf": csrf, "names": "mallory"}
    path = f"/owner/campaigns/{campaign_id}/invite"
    foreign = client.post(path, data=form, headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403 and "another site" in foreign.text
    assert "content-security-policy" in foreign.headers
    own = client.post(path, data=form, headers={"origin": "http://testserver"})
    assert own.status_code == 200 and "mallory" in own.text


def test_a_chat_reply_cannot_be_skipped_by_hand(app_store: Store, client: TestClient) -> None:
    csrf = sign_in(client)
    campaign_id = create(
        client, csrf, mode="chat", source="none", models="m0=fake:3", questions=["thumbs"]
    )
    (link,) = invite_links(client, csrf, campaign_id, "ann")
    token = csrf_of(client.get(link).text)
    refused = client.post(f"{link}/skip", data={"csrf": token, "assignment_id": "1"})
    assert refused.status_code == 400 and "rated, not skipped" in refused.text
