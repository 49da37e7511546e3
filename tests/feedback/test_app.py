"""The web app through FastAPI's TestClient with fake models: sign-in, CSRF, forms, scoping,
escaping, limits, streamed chat and exports."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from whetstone.feedback import db, judgments
from whetstone.feedback.campaigns import get_campaign
from whetstone.feedback.generation import answer_progress
from whetstone.models import GenerationRequest, load_model
from whetstone.store import Store

from .conftest import PASSWORD, make_client

XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def sign_in(client: TestClient, name: str = "olga", password: str = PASSWORD) -> str:
    """Sign in and return the session's CSRF token."""
    page = client.get("/login")
    response = client.post(
        "/login", data={"name": name, "password": password, "csrf": csrf_of(page.text)}
    )
    assert response.status_code == 200 and response.url.path == "/owner", response.text[:300]
    return csrf_of(client.get("/owner/new").text)


def create(client: TestClient, csrf: str, **fields: Any) -> str:
    """Create a campaign through the form; returns its id once its answers are generated."""
    data = {
        "csrf": csrf,
        "name": "support",
        "mode": "review",
        "models": "m0=fake:0\nm1=fake:1",
        "questions": ["thumbs", "likert", "comment"],
        "source": "lines",
        "prompts_text": "How do I sync?\nWhere is the trash?\n",
        "overlap": "2",
        "max_new_tokens": "10",
        **fields,
    }
    response = client.post("/owner/new", data=data)
    assert response.status_code == 200, response.text[:500]
    campaign_id = response.url.path.rsplit("/", 1)[1]
    store = client.app.state.studio.store  # type: ignore[attr-defined]
    campaign = get_campaign(store, campaign_id)
    deadline = time.monotonic() + 20
    while any(p.pending for p in answer_progress(store, campaign)):
        assert time.monotonic() < deadline, "background generation did not finish"
        time.sleep(0.05)
    return campaign_id


def invite_links(client: TestClient, csrf: str, campaign_id: str, *names: str) -> list[str]:
    page = client.post(
        f"/owner/campaigns/{campaign_id}/invite", data={"csrf": csrf, "names": "\n".join(names)}
    )
    links = re.findall(
        r'class="invite-link" readonly value="http://testserver(/p/[^"]+)"', page.text
    )
    assert len(links) == len(names), page.text[:800]
    return links


def test_owner_pages_need_a_signed_in_owner(client: TestClient) -> None:
    assert client.get("/owner", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/owner/campaigns/x/summary.json").status_code == 401
    page = client.get("/login")
    wrong = client.post(
        "/login", data={"name": "olga", "password": "nope", "csrf": csrf_of(page.text)}
    )
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
    no_csrf = client.post("/login", data={"name": "olga", "password": PASSWORD, "csrf": "forged"})
    assert no_csrf.status_code == 403
    csrf = sign_in(client)
    assert client.post("/owner/new", data={"csrf": "forged", "name": "x"}).status_code == 403
    client.post("/logout", data={"csrf": csrf})
    assert client.get("/owner", follow_redirects=False).status_code == 303


def test_passwords_and_sessions_are_stored_hashed(app_store: Store, client: TestClient) -> None:
    sign_in(client)
    token = client.cookies.get("ws_session")
    assert token
    with db.read(app_store) as conn:
        stored = conn.execute(db.owners.select()).all()
        sessions = conn.execute(db.sessions.select()).all()
    assert all(
        PASSWORD not in row.password_hash and row.password_hash.startswith("scrypt$")
        for row in stored
    )
    assert [s.token_hash for s in sessions] != [token] and len(sessions[0].token_hash) == 64


def test_review_flow_through_the_forms(app_store: Store, client: TestClient) -> None:
    csrf = sign_in(client)
    campaign_id = create(client, csrf)
    ann, bob = invite_links(client, csrf, campaign_id, "ann", "bob")
    for link, likert in ((ann, "2"), (bob, "4")):
        for _ in range(10):
            page = client.get(link)
            if 'id="rate-form"' not in page.text:
                assert "nothing is waiting for you" in page.text
                break
            assignment = re.search(r'name="assignment_id" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
            missing = client.post(
                f"{link}/rate",
                data={"csrf": csrf_of(page.text), "assignment_id": assignment, "thumbs": "up"},
            )
            assert missing.status_code == 400 and "Overall quality" in missing.text
            done = client.post(
                f"{link}/rate",
                data={
                    "csrf": csrf_of(page.text),
                    "assignment_id": assignment,
                    "thumbs": "down",
                    "likert": likert,
                    "comment": XSS,
                },
            )
            assert done.status_code == 200 and done.url.path == link
    records = judgments(app_store, campaign_id)
    assert len(records) == 8 and {j.comment for j in records} == {XSS}
    assert sorted(j.likert for j in records) == [2] * 4 + [4] * 4
    dashboard = client.get(f"/owner/campaigns/{campaign_id}")
    assert dashboard.status_code == 200
    assert (
        XSS not in dashboard.text
        and "&lt;script&gt;window.pwned=1&lt;/script&gt;" in dashboard.text
    )
    summary = client.get(f"/owner/campaigns/{campaign_id}/summary.json").json()
    assert summary["counts"]["judgments"] == 8
    likert = next(a for a in summary["agreement"] if a["question"] == "likert")
    assert likert["units"] == 4 and likert["raters"] == 2
    exported = client.get(f"/owner/campaigns/{campaign_id}/export.csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [int(r["likert"]) for r in rows] == [j.likert for j in records]
    lines = client.get(f"/owner/campaigns/{campaign_id}/export.jsonl").text.splitlines()
    assert [json.loads(x)["participant"] for x in lines] == [j.participant for j in records]


def test_model_output_is_escaped_for_participants(app_store: Store, client: TestClient) -> None:
    csrf = sign_in(client)
    campaign_id = create(client, csrf, models="m0=fake:0", prompts_text=XSS)
    with db.write(app_store) as conn:
        conn.execute(
            update(db.answers).where(db.answers.c.campaign_id == campaign_id).values(output=XSS)
        )
    (link,) = invite_links(client, csrf, campaign_id, 'eve"><script>x()</script>')
    page = client.get(link)
    assert XSS not in page.text
    assert page.text.count("&lt;script&gt;window.pwned=1&lt;/script&gt;") == 2  # prompt and answer
    csp = page.headers["content-security-policy"]
    assert (
        "script-src 'self'" in csp
        and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    )
    assert page.headers["referrer-policy"] == "no-referrer"


def test_arena_form_records_the_sides(app_store: Store, client: TestClient) -> None:
    csrf = sign_in(client)
    campaign_id = create(
        client, csrf, mode="arena", questions=["comment"], overlap="1", models="a=fake:0\nb=fake:1"
    )
    (link,) = invite_links(client, csrf, campaign_id, "ann")
    page = client.get(link)
    assert (
        "Answer A" in page.text
        and "Answer B" in page.text
        and "fake" not in page.text.split("<main>")[1]
    )
    assignment = re.search(r'name="assignment_id" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
    no_choice = client.post(
        f"{link}/rate", data={"csrf": csrf_of(page.text), "assignment_id": assignment}
    )
    assert no_choice.status_code == 400 and "choose the better answer" in no_choice.text
    client.post(
        f"{link}/rate",
        data={
            "csrf": csrf_of(page.text),
            "assignment_id": assignment,
            "choice": "right",
            "comment": "B is clearer",
        },
    )
    records = judgments(app_store, campaign_id)
    by_pos = {j.position: j for j in records}
    assert by_pos[1].arena_outcome == "win" and by_pos[0].arena_outcome == "loss"
    assert {j.comment for j in records} == {"B is clearer"}
    assert by_pos[0].opponent == by_pos[1].model


def test_links_are_scoped_to_their_campaign(app_store: Store, client: TestClient) -> None:
    csrf = sign_in(client)
    first = create(client, csrf, name="first")
    second = create(client, csrf, name="second")
    (ann_first,) = invite_links(client, csrf, first, "ann")
    (ann_second,) = invite_links(client, csrf, second, "ann")
    page_second = client.get(ann_second)
    foreign = re.search(r'name="assignment_id" value="(\d+)"', page_second.text).group(1)  # type: ignore[union-attr]
    page_first = client.get(ann_first)
    response = client.post(
        f"{ann_first}/rate",
        data={
            "csrf": csrf_of(page_first.text),
            "assignment_id": foreign,
            "thumbs": "up",
            "likert": "5",
        },
    )
    assert response.status_code == 400
    # the other participant's form token does not work here either
    forged = client.post(
        f"{ann_first}/rate", data={"csrf": csrf_of(page_second.text), "assignment_id": foreign}
    )
    assert forged.status_code == 403
    assert judgments(app_store, first) == [] and judgments(app_store, second) == []
    assert client.get("/p/not-a-real-token").status_code == 404
    # another owner cannot open this owner's campaign
    with make_client(app_store) as other:
        sign_in(other, "other")
        assert other.get(f"/owner/campaigns/{first}").status_code == 404
        assert other.get(f"/owner/campaigns/{first}/export.csv").status_code == 404


def test_size_and_rate_limits(app_store: Store) -> None:
    with make_client(
        app_store, submissions_per_minute=1, submission_burst=2, max_body_bytes=4096
    ) as client:
        csrf = sign_in(client)
        campaign_id = create(client, csrf, models="m0=fake:0")
        (link,) = invite_links(client, csrf, campaign_id, "ann")
        page = client.get(link)
        token = csrf_of(page.text)
        big = client.post(f"{link}/rate", data={"csrf": token, "comment": "x" * 10_000})
        assert big.status_code == 413
        statuses = [
            client.post(f"{link}/skip", data={"csrf": token, "assignment_id": "0"}).status_code
            for _ in range(3)
        ]
        assert statuses == [400, 400, 429]
        # uploads may be larger on the campaign form (but not beyond their own limit)
        upload = "\n".join(json.dumps({"prompt": f"Prompt {i} " + "y" * 40}) for i in range(100))
        response = client.post(
            "/owner/new",
            data={
                "csrf": csrf,
                "name": "upload",
                "mode": "review",
                "models": "fake",
                "source": "jsonl",
                "questions": ["likert"],
            },
            files={"prompts_file": ("p.jsonl", upload.encode(), "application/x-ndjson")},
        )
        assert response.status_code == 200 and "/owner/campaigns/" in str(response.url)


def test_form_errors_are_shown_with_the_form(client: TestClient) -> None:
    csrf = sign_in(client)
    response = client.post(
        "/owner/new",
        data={
            "csrf": csrf,
            "name": "bad",
            "mode": "arena",
            "models": "only=fake",
            "source": "lines",
            "prompts_text": "x",
        },
    )
    assert response.status_code == 400 and "arena needs at least two models" in response.text
    assert 'value="bad"' in response.text  # what was typed is kept


def test_streamed_chat_turn(app_store: Store, client: TestClient) -> None:
    csrf = sign_in(client)
    campaign_id = create(
        client,
        csrf,
        mode="chat",
        source="none",
        models="m0=fake:3",
        questions=["thumbs"],
        max_new_tokens="24",
    )
    (link,) = invite_links(client, csrf, campaign_id, "ann")
    page = client.get(link)
    chat_div = re.search(r'data-csrf="([^"]+)" data-conversation="([^"]+)"', page.text)
    assert chat_div
    token, conversation = chat_div.groups()
    body = {"conversation": conversation, "message": "Hello <b>there</b>"}
    assert client.post(f"{link}/chat/send", json=body).status_code == 403  # no CSRF header
    with client.stream(
        "POST", f"{link}/chat/send", json=body, headers={"x-csrf-token": token}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    events = [
        (
            block.split("\n")[0].removeprefix("event: "),
            json.loads(block.split("\n")[1].removeprefix("data: ")),
        )
        for block in raw.strip().split("\n\n")
    ]
    assert events[-1][0] == "done" and all(name == "token" for name, _ in events[:-1])
    reply = "".join(data["text"] for _, data in events[:-1])
    model = load_model("fake:3")
    prompt = model.chat_prompt([{"role": "user", "content": "Hello <b>there</b>"}])
    assert (
        reply
        == model.generate([GenerationRequest(prompt=prompt, max_new_tokens=24, stop=("\nuser:",))])[
            0
        ]
    )
    again = client.post(f"{link}/chat/send", json=body, headers={"x-csrf-token": token})
    assert again.status_code == 409 and "rate the last answer" in again.json()["error"]
    page = client.get(link)
    assert "&lt;b&gt;there&lt;/b&gt;" in page.text and 'id="rate-turn"' in page.text
    assignment = re.search(r'name="assignment_id" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
    client.post(f"{link}/rate", data={"csrf": token, "assignment_id": assignment, "thumbs": "up"})
    (record,) = judgments(app_store, campaign_id)
    assert (record.mode, record.thumbs, record.output) == ("chat", True, reply)


def test_cli_created_campaigns_are_visible_and_owner_campaigns_private(
    app_store: Store, client: TestClient
) -> None:
    from whetstone.feedback import create_campaign

    from .conftest import config

    shared = create_campaign(app_store, config("review", questions=["likert"]))
    csrf = sign_in(client)
    mine = create(client, csrf, name="mine")
    listing = client.get("/owner").text
    assert shared.name in listing and "mine" in listing
    with make_client(app_store) as other:
        sign_in(other, "other")
        text = other.get("/owner").text
        assert shared.name in text and f"/owner/campaigns/{mine}" not in text
