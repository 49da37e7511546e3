"""The feedback of a campaign as FeedbackJudgment records: what diagnosis and reports read."""

from __future__ import annotations

from sqlalchemy import and_, select

from whetstone.feedback import db
from whetstone.feedback.campaigns import get_campaign
from whetstone.records import FeedbackJudgment
from whetstone.store import Store


def judgments(store: Store, campaign_id: str) -> list[FeedbackJudgment]:
    """One record per participant x item x judged answer, in the order they were given.

    ``campaign_id`` may also be the campaign's name. Each record carries the model and its
    version, the position the answer was shown at (arena: 0 left, 1 right), the opponent, and
    whichever of thumbs, Likert, comment, correction, tags and arena outcome were asked.
    """
    campaign = get_campaign(store, campaign_id)
    r, a, i, p = db.ratings, db.answers, db.items, db.participants
    query = (
        select(
            r.c.item_id,
            r.c.model,
            r.c.model_version,
            r.c.position,
            r.c.opponent,
            r.c.thumbs,
            r.c.likert,
            r.c.comment,
            r.c.correction,
            r.c.tags,
            r.c.arena_outcome,
            r.c.created_at,
            a.c.output,
            i.c.prompt,
            i.c.reference,
            p.c.name.label("participant"),
        )
        .join(a, a.c.id == r.c.answer_id)
        .join(i, and_(i.c.campaign_id == r.c.campaign_id, i.c.item_id == r.c.item_id))
        .join(p, p.c.id == r.c.participant_id)
        .where(r.c.campaign_id == campaign.id)
        .order_by(r.c.id)
    )
    with db.read(store) as conn:
        rows = conn.execute(query).all()
    return [
        FeedbackJudgment(
            campaign=campaign.id,
            mode=campaign.mode,
            item_id=row.item_id,
            participant=row.participant,
            model=row.model,
            model_version=row.model_version,
            prompt=row.prompt,
            output=row.output or "",
            reference=row.reference,
            position=row.position,
            thumbs=row.thumbs,
            likert=row.likert,
            comment=row.comment,
            correction=row.correction,
            tags=list(row.tags or []),
            arena_outcome=row.arena_outcome,
            opponent=row.opponent,
            created_at=db.as_utc(row.created_at),
        )
        for row in rows
    ]


def failure_cases(store: Store, campaign_id: str) -> list[FeedbackJudgment]:
    """The judgments that mark an answer as bad (``FeedbackJudgment.is_failure``)."""
    return [j for j in judgments(store, campaign_id) if j.is_failure]
