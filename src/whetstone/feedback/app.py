"""The feedback studio's web app: owner pages, participant pages, chat streaming, exports.

Server-rendered Jinja2 pages (autoescaped) with one small script for progress polling and
streamed chat; no build step. Owners sign in with a password (scrypt hash) and get a
server-side session; every form carries a CSRF token (the session's, or the participant's).
Participants need only their personal link, which is scoped to one campaign. Request bodies are
size-limited, submissions rate-limited per participant and sign-ins per client address, and a
content security policy admits only the app's own script.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from markupsafe import Markup
from pydantic import BaseModel, ValidationError

from whetstone.errors import WhetstoneError, missing_extra

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import (
        HTMLResponse,
        JSONResponse,
        PlainTextResponse,
        RedirectResponse,
        Response,
        StreamingResponse,
    )
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import FormData, UploadFile
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise missing_extra("fastapi", "feedback") from exc

from whetstone.feedback import auth, chat
from whetstone.feedback.assignment import (
    judged_count,
    next_task,
    participant_progress,
    skip_task,
)
from whetstone.feedback.campaigns import Campaign, create_campaign, get_campaign, list_campaigns
from whetstone.feedback.campaigns import set_status as set_campaign_status
from whetstone.feedback.config import QUESTION_TYPES, CampaignConfig, PromptSource, parse_config
from whetstone.feedback.export import render as render_export
from whetstone.feedback.generation import (
    LoadedModel,
    ModelBusy,
    ModelPool,
    ModelProgress,
    Reply,
    answer_progress,
    retry_failed,
)
from whetstone.feedback.html import environment, render_html_section
from whetstone.feedback.judgments import judgments
from whetstone.feedback.participants import (
    INVITE_DAYS,
    Participant,
    invite,
    participant_for_token,
    revoke,
)
from whetstone.feedback.prompts import parse_jsonl_lines
from whetstone.feedback.ratings import AnswerRating, RatingError, Submission, submit
from whetstone.feedback.security import (
    HEADERS,
    BodyLimit,
    CatchAll,
    InFlight,
    OriginCheck,
    RateLimiter,
    SecurityHeaders,
)
from whetstone.feedback.summary import CampaignSummary, campaign_summary
from whetstone.feedback.worker import GenerationWorker
from whetstone.store import Store

STATIC_DIR = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "ws_session"
LOGIN_COOKIE = "ws_login"
NEW_CAMPAIGN_PATH = "/owner/new"


class AppSettings(BaseModel):
    """Limits and switches of the web app."""

    secure_cookies: bool = False
    """Send cookies only over HTTPS (turn on behind a TLS proxy)."""
    session_hours: float = 12.0
    max_body_bytes: int = 256 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024
    submissions_per_minute: float = 120.0
    submission_burst: int = 30
    logins_per_minute: float = 10.0
    generate: bool = True
    """Generate pending answers in a background thread."""
    public_url: str | None = None
    """Base of the invitation links (default: the address the owner's browser used)."""
    n_boot: int = 1000
    """Bootstrap resamples for the dashboard's intervals."""
    data_root: Path | None = None
    """The folder whose files owners may name in the campaign form (task files, JSONL,
    taxonomies); outside it, and without it, no file is read."""


class PageError(Exception):
    """A request answered with an error page (status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A template rendered to an HTML response that no cache keeps."""
    html = environment().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


def _redirect(url: str) -> RedirectResponse:
    """A 303 redirect (after a POST, the browser GETs the new page)."""
    return RedirectResponse(url, status_code=303)


def _client(request: Request) -> str:
    """The client address (for rate-limiting sign-ins): the socket's peer, since the server
    trusts no forwarding header unless started with --trusted-proxy."""
    return request.client.host if request.client else "unknown"


# -- form parsing ------------------------------------------------------------------------------


def _text(form: FormData, key: str) -> str:
    """A text field ('' when absent or a file)."""
    value = form.get(key)
    return value if isinstance(value, str) else ""


def _answer_rating(form: FormData, prefix: str) -> AnswerRating:
    """The question fields of one shown answer (``left_``/``right_`` prefixed in arena)."""
    thumbs = _text(form, prefix + "thumbs")
    likert = _text(form, prefix + "likert")
    try:
        return AnswerRating(
            thumbs={"up": True, "down": False}.get(thumbs),
            likert=int(likert) if likert else None,
            comment=_text(form, prefix + "comment") or None,
            correction=_text(form, prefix + "correction") or None,
            tags=[t for t in form.getlist(prefix + "tags") if isinstance(t, str)],
        )
    except (ValueError, ValidationError) as err:
        raise RatingError(f"{prefix}likert: expected a whole number from 1 to 5") from err


def row_id(text: str) -> int:
    """A database row id from a form field: a whole number from 1 to 2**63 - 1."""
    value = int(text)
    if not 0 < value < 2**63:
        raise ValueError(f"row id {text!r} out of range")
    return value


def _submission(form: FormData, mode: str) -> Submission:
    """A Submission from a rating form."""
    try:
        assignment_id = row_id(_text(form, "assignment_id"))
    except ValueError as err:
        raise RatingError("the form lacks its assignment") from err
    if mode == "arena":
        choice = _text(form, "choice") or None
        if choice not in (None, "left", "right", "tie", "both_bad"):
            raise RatingError("choice: expected left, right, tie or both_bad")
        answers = [_answer_rating(form, p) for p in ("left_", "right_")]
        comment = _text(form, "comment") or None
        return Submission(
            assignment_id=assignment_id, answers=answers, choice=choice, comment=comment
        )
    return Submission(assignment_id=assignment_id, answers=[_answer_rating(form, "")])


def _parse_models(text: str) -> list[dict[str, str]]:
    """Models from the form: one per line, ``[name=]spec [base_url]``."""
    models = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        entry: dict[str, str] = {}
        first = parts[0]
        if "=" in first:
            entry["name"], entry["spec"] = first.split("=", 1)
        else:
            entry["spec"] = first
        if len(parts) > 1:
            entry["base_url"] = parts[1]
        models.append(entry)
    return models


async def _upload_text(form: FormData, key: str) -> str | None:
    """The UTF-8 text of an uploaded file field, or None when no file was sent."""
    upload = form.get(key)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    data = await upload.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise WhetstoneError(f"{upload.filename}: expected a UTF-8 text file") from err


async def _config_from_form(form: FormData) -> CampaignConfig:
    """A campaign configuration from the new-campaign form (or its uploaded YAML file)."""
    yaml_text = await _upload_text(form, "config_file")
    if yaml_text is not None:
        try:
            loaded = yaml.safe_load(yaml_text)
        except yaml.YAMLError as err:
            raise WhetstoneError(f"uploaded campaign file: invalid YAML ({err})") from err
        return parse_config(loaded, "uploaded campaign file")
    mode = _text(form, "mode")
    raw: dict[str, Any] = {
        "name": _text(form, "name").strip(),
        "mode": mode,
        "description": _text(form, "description"),
        "models": _parse_models(_text(form, "models")),
        "questions": [q for q in form.getlist("questions") if q in QUESTION_TYPES],
        "overlap": _text(form, "overlap") or 2,
        "show_reference": _text(form, "show_reference") == "on",
        "generation": {
            "max_new_tokens": _text(form, "max_new_tokens") or 128,
            "temperature": _text(form, "temperature") or 0,
            "chat_template": _text(form, "chat_template") == "on",
        },
    }
    if _text(form, "per_participant"):
        raw["per_participant"] = _text(form, "per_participant")
    if _text(form, "system_prompt").strip():
        raw["generation"]["system_prompt"] = _text(form, "system_prompt")
    categories = [c.strip() for c in _text(form, "categories").split(",") if c.strip()]
    if categories:
        raw["categories"] = categories
    limit = _text(form, "limit") or None
    source = _text(form, "source")
    if source == "task":
        raw["prompts"] = {"task": _text(form, "task_path"), "limit": limit}
        if _text(form, "task_name").strip():
            raw["prompts"]["task_name"] = _text(form, "task_name").strip()
    elif source == "jsonl":
        upload = await _upload_text(form, "prompts_file")
        if upload is None:
            raise WhetstoneError("field 'prompts_file': choose a JSONL file to upload")
        spec = PromptSource(items=[], prompt_field=_text(form, "prompt_field") or "prompt")
        items = parse_jsonl_lines(upload.splitlines(), "uploaded prompts", spec)
        raw["prompts"] = {
            "items": [
                {"id": i.item_id, "prompt": i.prompt, "reference": i.reference} for i in items
            ],
            "limit": limit,
        }
    elif source == "lines":
        lines = [x for x in _text(form, "prompts_text").splitlines() if x.strip()]
        raw["prompts"] = {"items": [{"prompt": x} for x in lines], "limit": limit}
    return parse_config(raw, "form")


# -- the app -----------------------------------------------------------------------------------


class Studio:
    """What the request handlers share: the store, the model pool, limits and the worker."""

    def __init__(self, store: Store, settings: AppSettings, pool: ModelPool) -> None:
        self.store = store
        self.settings = settings
        self.pool = pool
        self.submissions = RateLimiter(settings.submissions_per_minute, settings.submission_burst)
        self.logins = RateLimiter(
            settings.logins_per_minute, max(1, int(settings.logins_per_minute))
        )
        self.worker = GenerationWorker(store, pool) if settings.generate else None
        self.replies = InFlight()

    # -- owners --

    def session(self, request: Request) -> auth.Session | None:
        """The signed-in owner's session, if any."""
        return auth.get_session(self.store, request.cookies.get(SESSION_COOKIE))

    def owned(self, session: auth.Session, campaign_id: str) -> Campaign:
        """A campaign the owner may see (theirs, or one created from the command line)."""
        try:
            campaign = get_campaign(self.store, campaign_id)
        except WhetstoneError as err:
            raise PageError(404, "no such campaign") from err
        if campaign.id != campaign_id or campaign.owner_id not in (None, session.owner.id):
            raise PageError(404, "no such campaign")
        return campaign

    # -- participants --

    def participant(self, token: str) -> tuple[Participant, Campaign]:
        """The participant of a link and their campaign (404 for unknown links)."""
        participant = participant_for_token(self.store, token)
        if participant is None:
            raise PageError(404, "This invitation link is not valid.")
        return participant, get_campaign(self.store, participant.campaign_id)

    def allow_submission(self, participant: Participant) -> None:
        """Refuse a participant who submits faster than the rate limit."""
        if not self.submissions.allow(f"p{participant.id}"):
            raise PageError(429, "Too many submissions in a short time; wait a moment.")


def create_app(
    store: Store | str | None = None,
    settings: AppSettings | None = None,
    pool: ModelPool | None = None,
) -> FastAPI:
    """The feedback studio over a store (a Store, a database URL, or $WHETSTONE_DB)."""
    settings = settings or AppSettings()
    opened = store if isinstance(store, Store) else Store(store)
    studio = Studio(opened, settings, pool or ModelPool())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if studio.worker is not None:
            studio.worker.start()
        yield
        if studio.worker is not None:
            studio.worker.stop()

    app = FastAPI(
        title="whetstone feedback studio", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.studio = studio
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(PageError)
    async def page_error(request: Request, err: PageError) -> Response:
        if request.url.path.endswith(".json") or request.url.path.endswith("/send"):
            return JSONResponse({"error": err.message}, status_code=err.status)
        return _render("message.html", err.status, title="Sorry", message=err.message)

    _owner_routes(app, studio)
    _participant_routes(app, studio)
    app.add_middleware(CatchAll)
    app.add_middleware(OriginCheck, public_url=settings.public_url)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        upload_limit=settings.max_upload_bytes,
        upload_paths=(NEW_CAMPAIGN_PATH,),
        headers=HEADERS,
    )
    return app


def _set_cookie(response: Response, studio: Studio, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=studio.settings.secure_cookies,
        path="/",
    )


def _owner_routes(app: FastAPI, studio: Studio) -> None:
    """Sign-in, campaign list and creation, dashboard, invitations, exports."""
    store = studio.store

    def require(request: Request) -> auth.Session:
        session = studio.session(request)
        if session is None:
            raise PageError(401, "Sign in first.")
        return session

    async def checked_form(request: Request, session: auth.Session, files: int = 0) -> FormData:
        form = await request.form(max_files=files, max_fields=500)
        if not auth.same_token(_text(form, "csrf"), session.csrf):
            raise PageError(403, "The form has expired or did not come from this site; reload it.")
        return form

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        return _redirect("/owner" if studio.session(request) else "/login")

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = _render("login.html", csrf=token, error=None)
        _set_cookie(response, studio, LOGIN_COOKIE, token, 3600)
        return response

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10)
        cookie = request.cookies.get(LOGIN_COOKIE) or ""
        if not cookie or not auth.same_token(_text(form, "csrf"), cookie):
            raise PageError(403, "The sign-in form has expired; reload it.")
        # failed sign-ins are limited per address and per account name: a right password
        # costs nothing, and guessing one account from many addresses is limited too
        keys = (f"ip:{_client(request)}", f"account:{_text(form, 'name').strip().lower()}")
        if not all(studio.logins.has_room(k) for k in keys):
            raise PageError(429, "Too many failed sign-ins; wait a minute.")
        owner = await run_in_threadpool(
            auth.authenticate, store, _text(form, "name"), _text(form, "password")
        )
        if owner is None:
            for key in keys:
                studio.logins.allow(key)
            return _render("login.html", 401, csrf=cookie, error="Wrong name or password.")
        token, _ = await run_in_threadpool(
            auth.open_session, store, owner, studio.settings.session_hours
        )
        response = _redirect("/owner")
        _set_cookie(
            response, studio, SESSION_COOKIE, token, int(studio.settings.session_hours * 3600)
        )
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = require(request)
        await checked_form(request, session)
        auth.close_session(store, request.cookies.get(SESSION_COOKIE, ""))
        response = _redirect("/login")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/owner", response_class=HTMLResponse)
    def owner_home(request: Request) -> Response:
        session = studio.session(request)
        if session is None:
            return _redirect("/login")
        campaigns = [c for c in list_campaigns(store) if c.owner_id in (None, session.owner.id)]
        return _render("owner_home.html", session=session, campaigns=campaigns)

    @app.get(NEW_CAMPAIGN_PATH, response_class=HTMLResponse)
    def new_campaign_page(request: Request) -> Response:
        session = studio.session(request)
        if session is None:
            return _redirect("/login")
        return _render("new_campaign.html", session=session, error=None, values={})

    @app.post(NEW_CAMPAIGN_PATH, response_class=HTMLResponse)
    async def new_campaign(request: Request) -> Response:
        session = require(request)
        form = await checked_form(request, session, files=2)
        try:
            config = await _config_from_form(form)
            campaign = await run_in_threadpool(
                lambda: create_campaign(
                    store,
                    config,
                    base_dir=studio.settings.data_root,
                    owner_id=session.owner.id,
                    confined=True,
                )
            )
        except WhetstoneError as err:
            values = {k: _text(form, k) for k in form if isinstance(form.get(k), str)}
            values["questions"] = form.getlist("questions")  # type: ignore[assignment]
            return _render("new_campaign.html", 400, session=session, error=str(err), values=values)
        if studio.worker is not None:
            studio.worker.wake()
        return _redirect(f"/owner/campaigns/{campaign.id}")

    @app.get("/owner/campaigns/{campaign_id}", response_class=HTMLResponse)
    def dashboard(request: Request, campaign_id: str) -> Response:
        session = studio.session(request)
        if session is None:
            return _redirect("/login")
        campaign = studio.owned(session, campaign_id)
        summary = campaign_summary(store, campaign.id, n_boot=studio.settings.n_boot)
        return _render(
            "dashboard.html",
            session=session,
            campaign=campaign,
            summary=summary,
            section=Markup(render_html_section(summary)),
            progress=answer_progress(store, campaign),
            invitations=None,
        )

    @app.get("/owner/campaigns/{campaign_id}/summary.json", response_model=CampaignSummary)
    def summary_json(request: Request, campaign_id: str) -> CampaignSummary:
        campaign = studio.owned(require(request), campaign_id)
        return campaign_summary(store, campaign.id, n_boot=studio.settings.n_boot)

    @app.get("/owner/campaigns/{campaign_id}/progress.json", response_model=list[ModelProgress])
    def progress_json(request: Request, campaign_id: str) -> list[ModelProgress]:
        campaign = studio.owned(require(request), campaign_id)
        return answer_progress(store, campaign)

    @app.get("/owner/campaigns/{campaign_id}/export.{fmt}")
    def export(request: Request, campaign_id: str, fmt: str) -> Response:
        campaign = studio.owned(require(request), campaign_id)
        if fmt not in ("jsonl", "csv"):
            raise PageError(404, "export as .jsonl or .csv")
        body = render_export(judgments(store, campaign.id), fmt)  # type: ignore[arg-type]
        media = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return PlainTextResponse(
            body,
            media_type=f"{media}; charset=utf-8",
            headers={
                "content-disposition": f'attachment; filename="feedback-{campaign.id}.{fmt}"',
                "cache-control": "no-store",
            },
        )

    @app.post("/owner/campaigns/{campaign_id}/invite", response_class=HTMLResponse)
    async def invite_people(request: Request, campaign_id: str) -> Response:
        session = require(request)
        campaign = studio.owned(session, campaign_id)
        form = await checked_form(request, session)
        names = [n.strip() for n in _text(form, "names").splitlines() if n.strip()]
        if not names:
            raise PageError(400, "Give at least one participant name.")
        base = studio.settings.public_url or str(request.base_url)
        try:
            days = float(_text(form, "valid_days") or INVITE_DAYS)
        except ValueError as err:
            raise PageError(400, "valid_days: expected a number of days") from err
        links: list[tuple[str, str | None, str | None]] = []
        for name in names[:500]:
            try:
                inv = await run_in_threadpool(invite, store, campaign.id, name, days)
            except WhetstoneError as err:
                links.append((name, None, str(err)))
                continue
            links.append((inv.participant.name, inv.link(base), None))
        return _render("invitations.html", session=session, campaign=campaign, links=links)

    @app.post("/owner/campaigns/{campaign_id}/revoke", response_class=HTMLResponse)
    async def revoke_link(request: Request, campaign_id: str) -> Response:
        session = require(request)
        campaign = studio.owned(session, campaign_id)
        form = await checked_form(request, session)
        name = _text(form, "name").strip()
        if not await run_in_threadpool(revoke, store, campaign.id, name):
            raise PageError(400, "No participant of this campaign has that name and a live link.")
        return _redirect(f"/owner/campaigns/{campaign.id}")

    @app.post("/owner/campaigns/{campaign_id}/status")
    async def change_status(request: Request, campaign_id: str) -> Response:
        session = require(request)
        campaign = studio.owned(session, campaign_id)
        form = await checked_form(request, session)
        status = _text(form, "status")
        if status not in ("open", "closed"):
            raise PageError(400, "status: expected open or closed")
        set_campaign_status(store, campaign.id, status)  # type: ignore[arg-type]
        if studio.worker is not None:
            studio.worker.wake()
        return _redirect(f"/owner/campaigns/{campaign.id}")

    @app.post("/owner/campaigns/{campaign_id}/retry")
    async def retry(request: Request, campaign_id: str) -> Response:
        session = require(request)
        campaign = studio.owned(session, campaign_id)
        await checked_form(request, session)
        retry_failed(store, campaign)
        if studio.worker is not None:
            studio.worker.wake()
        return _redirect(f"/owner/campaigns/{campaign.id}")


def _participant_routes(app: FastAPI, studio: Studio) -> None:
    """The participant's page, rating, skipping and chat."""
    store = studio.store

    def page(
        token: str,
        participant: Participant,
        campaign: Campaign,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        common = {"token": token, "participant": participant, "campaign": campaign, "error": error}
        if campaign.status != "open":
            return _render("participant_done.html", status, closed=True, progress=None, **common)
        if campaign.mode == "chat":
            conversation = chat.latest_conversation(store, participant)
            if conversation is None:
                conversation_id = chat.start_conversation(store, campaign, participant)
                conversation = chat.latest_conversation(store, participant)
                assert conversation is not None and conversation.id == conversation_id
            suggestions = (
                [i.prompt for i in (campaign.config.prompts.items or [])]
                if campaign.config.prompts
                else []
            )
            return _render(
                "participant_chat.html",
                status,
                conversation=conversation,
                suggestions=suggestions[:8],
                **common,
            )
        task = next_task(store, campaign, participant)
        if task is None:
            progress = participant_progress(store, campaign, participant)
            return _render(
                "participant_done.html", status, closed=False, progress=progress, **common
            )
        done = judged_count(store, participant)
        return _render("participant_task.html", status, task=task, done=done, **common)

    @app.get("/p/{token}", response_class=HTMLResponse)
    def participant_home(token: str) -> Response:
        participant, campaign = studio.participant(token)
        return page(token, participant, campaign)

    async def participant_form(
        request: Request, token: str
    ) -> tuple[Participant, Campaign, FormData]:
        participant, campaign = await run_in_threadpool(studio.participant, token)
        form = await request.form(max_files=0, max_fields=200)
        if not auth.same_token(_text(form, "csrf"), participant.csrf):
            raise PageError(403, "The form has expired; reload the page.")
        studio.allow_submission(participant)
        return participant, campaign, form

    @app.post("/p/{token}/rate", response_class=HTMLResponse)
    async def rate(request: Request, token: str) -> Response:
        participant, campaign, form = await participant_form(request, token)
        try:
            submission = _submission(form, campaign.mode)
            await run_in_threadpool(submit, store, campaign, participant, submission)
        except WhetstoneError as err:
            return await run_in_threadpool(page, token, participant, campaign, str(err), 400)
        return _redirect(f"/p/{token}")

    @app.post("/p/{token}/skip")
    async def skip(request: Request, token: str) -> Response:
        participant, campaign, form = await participant_form(request, token)
        if campaign.mode == "chat":  # the next message waits for this rating: never skipped
            raise PageError(400, "A chat reply is rated, not skipped.")
        try:
            assignment_id = row_id(_text(form, "assignment_id"))
            await run_in_threadpool(skip_task, store, participant, assignment_id)
        except (ValueError, WhetstoneError) as err:
            raise PageError(400, "That item cannot be skipped.") from err
        return _redirect(f"/p/{token}")

    @app.post("/p/{token}/chat/new")
    async def new_conversation(request: Request, token: str) -> Response:
        participant, campaign, _ = await participant_form(request, token)
        try:
            await run_in_threadpool(chat.start_conversation, store, campaign, participant)
        except WhetstoneError as err:
            raise PageError(400, str(err)) from err
        return _redirect(f"/p/{token}")

    @app.post("/p/{token}/chat/send")
    async def send(request: Request, token: str) -> Response:
        participant, campaign = await run_in_threadpool(studio.participant, token)
        if not auth.same_token(request.headers.get("x-csrf-token"), participant.csrf):
            raise PageError(403, "The page has expired; reload it.")
        studio.allow_submission(participant)
        try:
            body = json.loads(await request.body())
            conversation_id, message = str(body["conversation"]), str(body["message"])
        except (ValueError, KeyError, TypeError, RecursionError) as err:
            raise PageError(400, "expected JSON with 'conversation' and 'message'") from err
        # one reply at a time per conversation: the turn checks and the stored turn agree
        if not studio.replies.claim(conversation_id):
            raise PageError(409, "the last reply in this conversation is still being written")
        try:
            pending = await run_in_threadpool(
                chat.begin_turn, store, campaign, participant, conversation_id, message
            )
            loaded = await run_in_threadpool(studio.pool.get, campaign.config.model(pending.model))
        except BaseException as err:  # the stream that would free the claim never starts
            studio.replies.release(conversation_id)
            if isinstance(err, WhetstoneError):
                raise PageError(409, str(err)) from err
            raise
        return StreamingResponse(
            _chat_events(studio, campaign, participant, pending, loaded),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )


def _event(name: str, data: dict[str, Any]) -> str:
    """One server-sent event."""
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _chat_events(
    studio: Studio,
    campaign: Campaign,
    participant: Participant,
    pending: chat.PendingTurn,
    loaded: LoadedModel,
) -> AsyncIterator[str]:
    """The reply as it is generated, then the stored turn's assignment (or an error).

    When the client leaves, the server closes this generator at its next await: the reply is
    cancelled there and the model freed, and the conversation takes a new message again.
    """
    pieces: list[str] = []
    reply: Reply | None = None
    try:
        reply = Reply(loaded, campaign.config.generation, pending.messages)
        async for piece in reply.pieces():
            pieces.append(piece)
            yield _event("token", {"text": piece})
        assignment_id = await run_in_threadpool(
            chat.finish_turn,
            studio.store,
            campaign,
            participant,
            pending,
            "".join(pieces),
            loaded.model.identity.key,
        )
    except Exception as err:  # the stream is under way: report in band
        busy = isinstance(err, ModelBusy)
        yield _event(
            "error", {"message": str(err) if busy else f"the model failed: {type(err).__name__}"}
        )
        return
    finally:
        if reply is not None:
            reply.cancel()
        studio.replies.release(pending.conversation_id)
    yield _event("done", {"assignment_id": assignment_id})
