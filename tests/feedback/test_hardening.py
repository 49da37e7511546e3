"""Attacks on the studio that used to succeed: formula cells in CSV exports, weak owner
passwords, and inputs that made the server answer a plain-text 500."""

from __future__ import annotations

import csv
import io
import re
import shutil
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
