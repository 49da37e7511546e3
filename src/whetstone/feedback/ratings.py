"""Ratings: a participant's answers to the campaign's questions, checked and stored.

One judged answer is one row of ``feedback_ratings``; an arena battle stores two rows (the
chosen side wins, the other loses; a tie or both-bad gives both rows that outcome), each with
the position the answer was shown at and the opponent. Submitting again replaces the rows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select, update

from whetstone.errors import WhetstoneError
from whetstone.feedback import db
from whetstone.feedback.assignment import Task, _task
from whetstone.feedback.campaigns import Campaign
from whetstone.feedback.config import MAX_TEXT_CHARS
from whetstone.feedback.participants import Participant
from whetstone.store import Store

Choice = Literal["left", "right", "tie", "both_bad"]
CHOICES: tuple[str, ...] = ("left", "right", "tie", "both_bad")


class RatingError(WhetstoneError):
    """A submission that does not answer the campaign's questions as asked."""


class AnswerRating(BaseModel):
    """The questions' answers for one shown answer (None: not answered)."""

    thumbs: bool | None = None
    likert: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = None
    correction: str | None = None
    tags: list[str] = Field(default_factory=list)


class Submission(BaseModel):
    """A participant's judgment of one assignment: one AnswerRating per shown answer
    (in display order) and, in arena, the choice and one comment on the battle."""

    assignment_id: int
    answers: list[AnswerRating]
    choice: Choice | None = None
    comment: str | None = None
    """Arena: the comment on the battle (stored with both answers)."""


def _clean(text: str | None, field: str) -> str | None:
    """Stripped text or None; RatingError when it is too long."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_TEXT_CHARS:
        raise RatingError(f"{field}: at most {MAX_TEXT_CHARS} characters")
    return text.strip()


def check_submission(campaign: Campaign, task: Task, sub: Submission) -> list[AnswerRating]:
    """The cleaned ratings, or RatingError naming the first question not answered as asked."""
    config = campaign.config
    if len(sub.answers) != len(task.answers):
        raise RatingError(f"expected a rating for each of the {len(task.answers)} answers")
    if campaign.mode == "arena" and sub.choice is None:
        raise RatingError("choose the better answer (left, right, tie or both bad)")
    if campaign.mode != "arena" and (sub.choice is not None or sub.comment is not None):
        raise RatingError("a choice and a battle comment are asked only in arena campaigns")
    if campaign.mode == "arena" and any(a.comment for a in sub.answers):
        raise RatingError("arena: comment on the battle (Submission.comment), not on one answer")
    categories = set(config.categories or [])
    cleaned = []
    sides = zip(_sides(len(task.answers)), task.answers, sub.answers, strict=True)
    for side, shown, rating in sides:
        correction = _clean(rating.correction, f"{side}correction")
        kept = correction is not None and correction == shown.output.strip()
        if kept:
            correction = None  # the prefilled answer left as it was: nothing corrected
        r = AnswerRating(
            thumbs=rating.thumbs,
            likert=rating.likert,
            comment=_clean(sub.comment if campaign.mode == "arena" else rating.comment, "comment"),
            correction=correction,
            tags=list(dict.fromkeys(rating.tags)),
        )
        for kind in ("thumbs", "likert", "comment", "correction", "tags"):
            question = config.question(kind)
            value = getattr(r, kind)
            if question is None and value not in (None, []):
                raise RatingError(f"{side}{kind}: this campaign does not ask it")
            answered = value not in (None, []) or (kind == "correction" and kept)
            if question is not None and question.is_required and not answered:
                raise RatingError(f"{side}{kind}: please answer '{question.text}'")
        unknown = [t for t in r.tags if t not in categories]
        if unknown:
            raise RatingError(f"{side}tags: unknown category {unknown[0]!r}")
        cleaned.append(r)
    return cleaned


def _sides(n: int) -> list[str]:
    """Field-name prefixes for error messages: none for one answer, left/right for two."""
    return [""] if n == 1 else ["left ", "right "]


def _outcomes(choice: Choice | None) -> list[str | None]:
    """The arena outcome of the left and the right answer."""
    if choice is None:
        return [None, None]
    if choice in ("left", "right"):
        return ["win", "loss"] if choice == "left" else ["loss", "win"]
    return [choice, choice]


def submit(store: Store, campaign: Campaign, participant: Participant, sub: Submission) -> Task:
    """Check and store a submission; the assignment becomes done. Returns the judged task."""
    if participant.campaign_id != campaign.id:
        raise RatingError("this participant belongs to another campaign")
    if campaign.status != "open":
        raise RatingError("this campaign is closed and accepts no more ratings")
    with db.write(store) as conn:
        task = _task(conn, participant, sub.assignment_id)
        if task.status == "skipped":
            raise RatingError("this assignment was skipped")
        cleaned = check_submission(campaign, task, sub)
        models = {
            int(r.id): (r.model, r.model_version)
            for r in conn.execute(
                select(db.answers.c.id, db.answers.c.model, db.answers.c.model_version).where(
                    db.answers.c.id.in_([a.answer_id for a in task.answers])
                )
            )
        }
        outcomes = _outcomes(sub.choice) if len(task.answers) == 2 else [None]
        now = db.now()
        rows = []
        for i, (shown, rating) in enumerate(zip(task.answers, cleaned, strict=True)):
            model, version = models[shown.answer_id]
            opponent = None
            if len(task.answers) == 2:
                opponent = models[task.answers[1 - i].answer_id][0]
            rows.append(
                {
                    "campaign_id": campaign.id,
                    "assignment_id": task.assignment_id,
                    "participant_id": participant.id,
                    "answer_id": shown.answer_id,
                    "item_id": task.item_id,
                    "model": model,
                    "model_version": version,
                    "position": shown.position,
                    "opponent": opponent,
                    **rating.model_dump(),
                    "arena_outcome": outcomes[i],
                    "created_at": now,
                }
            )
        stmt = db.insert(store, db.ratings)
        keep = ("created_at", "assignment_id", "answer_id", "campaign_id", "participant_id")
        stmt = stmt.on_conflict_do_update(
            index_elements=["assignment_id", "answer_id"],
            set_={k: stmt.excluded[k] for k in rows[0] if k not in keep},
        )
        conn.execute(stmt, rows)
        conn.execute(
            update(db.assignments)
            .where(db.assignments.c.id == task.assignment_id)
            .values(status="done", done_at=now)
        )
        conn.execute(
            update(db.participants)
            .where(db.participants.c.id == participant.id)
            .values(last_seen_at=now)
        )
    return task
