"""Answers for review and arena, generated in the background; chat replies streamed.

Pending answers are generated model by model in chunks; each chunk is committed as soon as it
is done (and its responses go to the store's response cache), so an interrupted run resumes
where it stopped and a second campaign over the same prompts and model reuses the answers.
A model that cannot be loaded or fails marks its answers failed with the error, which the
dashboard shows; ``retry_failed`` puts them back in the queue.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, bindparam, func, select, update

from whetstone.errors import WhetstoneError
from whetstone.evaluate.cache import CachedModel
from whetstone.feedback import db
from whetstone.feedback.campaigns import Campaign
from whetstone.feedback.config import GenerationSettings, ModelEntry
from whetstone.models import GenerationRequest, LanguageModel, TokenModel, load_model
from whetstone.store import Store

CHUNK = 8
"""Answers generated between two commits."""
TRANSCRIPT_STOP = "\nuser:"
"""Where a reply ends for a model without a chat template (its next line would be the user's)."""
REPLY_WAIT_S = 60.0
"""How long a chat reply waits for its model while another call uses it."""
MAX_WAITING = 16
"""Chat replies that may wait for one model at a time; more are refused as busy."""


@dataclass
class LoadedModel:
    """A loaded model, the lock that lets one call use it at a time, and the bounded queue of
    chat replies waiting for it."""

    model: LanguageModel
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(MAX_WAITING)
    )


class ModelPool:
    """Models loaded once per spec and kept for the life of the server."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, ...], LoadedModel] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(entry: ModelEntry) -> tuple[str, ...]:
        return (entry.spec, entry.base_url or "", entry.device, entry.dtype, entry.api_key_env)

    def get(self, entry: ModelEntry) -> LoadedModel:
        """The loaded model of ``entry`` (loading it the first time)."""
        key = self._key(entry)
        with self._lock:
            if key not in self._models:
                model = load_model(
                    entry.spec,
                    device=entry.device,
                    dtype=entry.dtype,
                    base_url=entry.base_url,
                    api_key_env=entry.api_key_env,
                )
                self._models[key] = LoadedModel(model)
            return self._models[key]

    def close(self) -> None:
        """Release every model."""
        with self._lock:
            for loaded in self._models.values():
                loaded.model.close()
            self._models.clear()


class ModelProgress(BaseModel):
    """Answers of one model: generated, waiting and failed (with the first error)."""

    model: str
    done: int = 0
    pending: int = 0
    failed: int = 0
    error: str | None = None

    @property
    def total(self) -> int:
        """All answers of the model."""
        return self.done + self.pending + self.failed


def answer_progress(store: Store, campaign: Campaign) -> list[ModelProgress]:
    """Per model: how many answers are done, pending and failed."""
    a = db.answers
    out = {m: ModelProgress(model=m) for m in campaign.models}
    with db.read(store) as conn:
        for model, status, n in conn.execute(
            select(a.c.model, a.c.status, func.count())
            .where(a.c.campaign_id == campaign.id)
            .group_by(a.c.model, a.c.status)
        ):
            if model in out:
                setattr(out[model], status, int(n))
        for model, error in conn.execute(
            select(a.c.model, func.min(a.c.error))
            .where(a.c.campaign_id == campaign.id, a.c.status == "failed")
            .group_by(a.c.model)
        ):
            if model in out:
                out[model].error = error
    return list(out.values())


def _request(
    settings: GenerationSettings, prompt: str, stop: Sequence[str] = ()
) -> GenerationRequest:
    """The generation request of a prompt under the campaign's settings."""
    return GenerationRequest(
        prompt=prompt,
        max_new_tokens=settings.max_new_tokens,
        stop=(*settings.stop, *stop),
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=settings.seed,
    )


def _messages(settings: GenerationSettings, user: str) -> list[dict[str, str]]:
    """A one-turn chat, after the system prompt if there is one."""
    system = (
        [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []
    )
    return [*system, {"role": "user", "content": user}]


def _generate(
    store: Store, model: LanguageModel, settings: GenerationSettings, prompts: list[str]
) -> list[str]:
    """Answers to ``prompts``: through the chat template when asked, cached where possible."""
    from whetstone.models.openai_http import OpenAIModel

    if settings.chat_template and isinstance(model, OpenAIModel):
        return [model.chat(_messages(settings, p), _request(settings, p)) for p in prompts]
    stop: tuple[str, ...] = ()
    if settings.chat_template:
        prompts = [model.chat_prompt(_messages(settings, p)) for p in prompts]
        if not model.has_chat_template:
            stop = (TRANSCRIPT_STOP,)
    return CachedModel(model, store).generate([_request(settings, p, stop) for p in prompts])


def _one_line(err: BaseException) -> str:
    """An exception as one line for the dashboard."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:500]


def _pending(store: Store, campaign_id: str, model: str) -> list[tuple[int, str]]:
    """(answer id, prompt) of the model's pending answers, in item order."""
    a, i = db.answers, db.items
    with db.read(store) as conn:
        rows = conn.execute(
            select(a.c.id, i.c.prompt)
            .join(i, and_(i.c.campaign_id == a.c.campaign_id, i.c.item_id == a.c.item_id))
            .where(a.c.campaign_id == campaign_id, a.c.model == model, a.c.status == "pending")
            .order_by(i.c.seq)
        ).all()
    return [(int(r.id), r.prompt) for r in rows]


def _mark_failed(store: Store, answer_ids: Sequence[int], error: str) -> None:
    with db.write(store) as conn:
        conn.execute(
            update(db.answers)
            .where(db.answers.c.id.in_(list(answer_ids)), db.answers.c.status == "pending")
            .values(status="failed", error=error, finished_at=db.now())
        )


def _mark_done(store: Store, answers: dict[int, str], version: str) -> None:
    now = db.now()
    stmt = (
        update(db.answers)
        .where(db.answers.c.id == bindparam("answer_id"))
        .values(
            status="done",
            output=bindparam("text"),
            model_version=version,
            error=None,
            finished_at=now,
        )
    )
    with db.write(store) as conn:
        conn.execute(stmt, [{"answer_id": k, "text": v} for k, v in answers.items()])


def generate_answers(
    store: Store,
    campaign: Campaign,
    pool: ModelPool | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Generate every pending answer of the campaign; returns how many were generated.

    ``progress(model, done_now, pending_total)`` is called after each committed chunk.
    """
    own_pool = pool is None
    pool = pool or ModelPool()
    generated = 0
    try:
        for entry in campaign.config.models:
            pending = _pending(store, campaign.id, entry.label)
            if not pending:
                continue
            if progress:
                progress(entry.label, 0, len(pending))
            try:
                loaded = pool.get(entry)
            except Exception as err:  # a bad spec or an unreachable server: shown to the owner
                _mark_failed(store, [a for a, _ in pending], _one_line(err))
                continue
            for lo in range(0, len(pending), CHUNK):
                if should_stop is not None and should_stop():
                    return generated
                chunk = pending[lo : lo + CHUNK]
                try:
                    with loaded.lock:
                        outputs = _generate(
                            store, loaded.model, campaign.config.generation, [p for _, p in chunk]
                        )
                except Exception as err:
                    _mark_failed(store, [a for a, _ in chunk], _one_line(err))
                    continue
                version = loaded.model.identity.key
                _mark_done(store, {a: o for (a, _), o in zip(chunk, outputs, strict=True)}, version)
                generated += len(chunk)
                if progress:
                    progress(entry.label, len(chunk), len(pending))
            db.analyze(store, db.answers)
    finally:
        if own_pool:
            pool.close()
    return generated


def retry_failed(store: Store, campaign: Campaign) -> int:
    """Put the campaign's failed answers back in the queue; returns how many."""
    with db.write(store) as conn:
        result = conn.execute(
            update(db.answers)
            .where(db.answers.c.campaign_id == campaign.id, db.answers.c.status == "failed")
            .values(status="pending", error=None, finished_at=None)
        )
    return int(result.rowcount)


def campaigns_with_pending(store: Store) -> list[str]:
    """Ids of open campaigns that still have answers to generate."""
    a, c = db.answers, db.campaigns
    with db.read(store) as conn:
        rows = conn.execute(
            select(a.c.campaign_id)
            .join(c, c.c.id == a.c.campaign_id)
            .where(a.c.status == "pending", c.c.status == "open")
            .group_by(a.c.campaign_id)
        ).scalars()
        return [str(r) for r in rows]


class ModelBusy(WhetstoneError):
    """The model has more replies waiting for it than it may queue."""


class Reply:
    """A chat reply generated on a thread of its own and read piece by piece on the event loop.

    The thread holds the model's lock only while it generates. ``cancel()`` (the client left)
    stops it at the next piece, closes the model's stream (an HTTP stream for ``openai:``)
    and frees the model. Pieces reach the loop through an asyncio queue, so a reader that
    waits holds no worker thread.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        settings: GenerationSettings,
        messages: list[dict[str, str]],
        wait_s: float = REPLY_WAIT_S,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancelled = threading.Event()
        if not loaded.waiting.acquire(blocking=False):
            raise ModelBusy("the model is busy; try again in a moment")
        thread = threading.Thread(
            target=self._run, args=(loaded, settings, messages, wait_s), daemon=True
        )
        thread.start()

    def cancel(self) -> None:
        """Stop generating at the next piece (a no-op once the reply is complete)."""
        self._cancelled.set()

    async def pieces(self) -> AsyncIterator[str]:
        """The reply's pieces as they come; the model's error is raised here."""
        while True:
            kind, value = await self._queue.get()
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value

    def _put(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: the server stopped, nobody reads
            self._cancelled.set()

    def _run(
        self,
        loaded: LoadedModel,
        settings: GenerationSettings,
        messages: list[dict[str, str]],
        wait_s: float,
    ) -> None:
        try:
            acquired = loaded.lock.acquire(timeout=wait_s)
        finally:
            loaded.waiting.release()
        if not acquired:
            self._put("error", ModelBusy("the model is busy; try again in a moment"))
            return
        try:
            pieces = _reply_pieces(loaded.model, settings, messages)
            try:
                for piece in pieces:
                    if self._cancelled.is_set():
                        break
                    self._put("piece", piece)
            finally:
                pieces.close()
        except Exception as err:  # reported to the reader, in band
            self._put("error", err)
        else:
            self._put("end", None)
        finally:
            loaded.lock.release()


def _reply_pieces(
    model: LanguageModel, settings: GenerationSettings, messages: list[dict[str, str]]
) -> Generator[str, None, None]:
    """The model's reply to a chat, piece by piece."""
    from whetstone.models.openai_http import OpenAIModel

    if isinstance(model, OpenAIModel):
        yield from model.stream_chat(messages, _request(settings, ""))
        return
    prompt = model.chat_prompt(messages)
    stop = () if model.has_chat_template else (TRANSCRIPT_STOP,)
    request = _request(settings, prompt, stop)
    if isinstance(model, TokenModel):
        yield from model.stream(request)
    else:
        yield model.generate([request])[0]


def check_model_spec(entry: ModelEntry) -> None:
    """Refuse specs that cannot name a model before anything is stored."""
    if entry.spec.startswith("openai:") and not entry.base_url:
        raise WhetstoneError(f"model {entry.label!r}: an openai: model needs base_url")
