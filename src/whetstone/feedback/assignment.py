"""Assignment: which unit a participant judges next, so that coverage stays even.

Each unit (an answer in review, a pair of answers in arena) should be judged by ``overlap``
different participants. The next unit for a participant is one they have not seen, whose
answers are ready, among those with the fewest judgments so far (finished ones plus open ones
younger than the lease). Ties are broken in an order of its own for each participant, so
people see the prompts in different orders. Assignment runs under a per-campaign lock, so two
participants asking at once cannot both take the last place of a unit. In arena, the side each
model is shown on is drawn at random and recorded with the assignment.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, and_, func, or_, select, update

from whetstone.errors import WhetstoneError
from whetstone.feedback import db
from whetstone.feedback.campaigns import Campaign
from whetstone.feedback.participants import Participant
from whetstone.store import Store

LEASE = timedelta(minutes=30)
"""How long an unfinished assignment keeps its place in a unit's count."""


class ShownAnswer(BaseModel):
    """An answer as a participant sees it: no model name, only its place on the page."""

    answer_id: int
    output: str
    position: int | None = None
    """0 for the left answer and 1 for the right one in arena; None otherwise."""


class Task(BaseModel):
    """One assignment ready to be judged: the prompt and the answers in display order."""

    assignment_id: int
    unit_id: int
    item_id: str
    prompt: str
    reference: str | None = None
    answers: list[ShownAnswer]
    status: str


class Progress(BaseModel):
    """How far a participant is: units judged and units still open to them."""

    done: int
    available: int


_PRIME = 1_000_003


def _tiebreak(participant_id: int) -> tuple[int, int]:
    """Multiplier and offset of a per-participant order of unit ids: (id * m + o) mod prime."""
    digest = hashlib.sha256(f"order:{participant_id}".encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % (_PRIME - 1), int.from_bytes(digest[4:8], "big")


def _judged(campaign_id: str) -> Any:
    """Subquery: judgments per unit (finished assignments plus open ones within the lease)."""
    a = db.assignments
    fresh = db.now() - LEASE
    return (
        select(a.c.unit_id, func.count().label("n"))
        .where(
            a.c.campaign_id == campaign_id,
            or_(a.c.status == "done", and_(a.c.status == "open", a.c.created_at > fresh)),
        )
        .group_by(a.c.unit_id)
        .subquery()
    )


def _open_units(campaign: Campaign, participant: Participant) -> Any:
    """Query of (unit id, judgments) for the shared units whose answers are all generated,
    that this participant has not seen and that have fewer than ``overlap`` judgments."""
    u, a = db.units, db.assignments
    ans_a, ans_b = db.answers.alias("ans_a"), db.answers.alias("ans_b")
    judged = _judged(campaign.id)
    count = func.coalesce(judged.c.n, 0)
    seen = select(a.c.id).where(a.c.participant_id == participant.id, a.c.unit_id == u.c.id)
    return (
        select(u.c.id, count.label("n"))
        .join(
            ans_a,
            and_(
                ans_a.c.campaign_id == u.c.campaign_id,
                ans_a.c.item_id == u.c.item_id,
                ans_a.c.model == u.c.model_a,
            ),
        )
        .outerjoin(
            ans_b,
            and_(
                ans_b.c.campaign_id == u.c.campaign_id,
                ans_b.c.item_id == u.c.item_id,
                ans_b.c.model == u.c.model_b,
            ),
        )
        .outerjoin(judged, judged.c.unit_id == u.c.id)
        .where(
            u.c.campaign_id == campaign.id,
            u.c.participant_id.is_(None),
            ans_a.c.status == "done",
            or_(u.c.model_b.is_(None), ans_b.c.status == "done"),
            ~seen.exists(),
            count < campaign.config.overlap,
        )
    )


def _open_assignment(conn: Connection, participant: Participant) -> int | None:
    """The participant's oldest unfinished assignment of a shared unit, if any."""
    a, u = db.assignments, db.units
    found = conn.execute(
        select(a.c.id)
        .join(u, u.c.id == a.c.unit_id)
        .where(
            a.c.participant_id == participant.id,
            a.c.status == "open",
            u.c.participant_id.is_(None),
        )
        .order_by(a.c.id)
        .limit(1)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def _done_count(conn: Connection, participant: Participant) -> int:
    a = db.assignments
    return int(
        conn.execute(
            select(func.count()).where(a.c.participant_id == participant.id, a.c.status == "done")
        ).scalar_one()
    )


def next_task(store: Store, campaign: Campaign, participant: Participant) -> Task | None:
    """The participant's next unit to judge (an unfinished one first), or None when done."""
    if participant.campaign_id != campaign.id:
        raise WhetstoneError("this participant belongs to another campaign")
    with db.write(store, lock=f"assign:{campaign.id}") as conn:
        open_id = _open_assignment(conn, participant)
        if open_id is None:
            open_id = _assign(conn, campaign, participant)
        if open_id is None:
            return None
        return _task(conn, participant, open_id)


def _assign(conn: Connection, campaign: Campaign, participant: Participant) -> int | None:
    """Create an assignment of the least-covered unit this participant has not seen."""
    cap = campaign.config.per_participant
    if cap is not None and _done_count(conn, participant) >= cap:
        return None
    mult, offset = _tiebreak(participant.id)
    candidates = _open_units(campaign, participant).subquery()
    order = (candidates.c.id * mult + offset) % _PRIME
    unit_id = conn.execute(
        select(candidates.c.id).order_by(candidates.c.n, order, candidates.c.id).limit(1)
    ).scalar_one_or_none()
    if unit_id is None:
        return None
    unit = conn.execute(
        select(db.units.c.model_a, db.units.c.model_b).where(db.units.c.id == unit_id)
    ).one()
    left = None if unit.model_b is None else secrets.choice([unit.model_a, unit.model_b])
    conn.execute(
        db.assignments.insert().values(
            campaign_id=campaign.id,
            participant_id=participant.id,
            unit_id=unit_id,
            left_model=left,
            status="open",
            created_at=db.now(),
            done_at=None,
        )
    )
    return int(
        conn.execute(
            select(db.assignments.c.id).where(
                db.assignments.c.participant_id == participant.id,
                db.assignments.c.unit_id == unit_id,
            )
        ).scalar_one()
    )


def get_task(store: Store, participant: Participant, assignment_id: int) -> Task:
    """An assignment of this participant (WhetstoneError if it is someone else's)."""
    with db.read(store) as conn:
        return _task(conn, participant, assignment_id)


def _task(conn: Connection, participant: Participant, assignment_id: int) -> Task:
    """The Task view of an assignment, checked to belong to the participant."""
    a, u, i = db.assignments, db.units, db.items
    row = conn.execute(
        select(
            a.c.id,
            a.c.status,
            a.c.left_model,
            u.c.id.label("unit_id"),
            u.c.item_id,
            u.c.model_a,
            u.c.model_b,
            i.c.prompt,
            i.c.reference,
        )
        .join(u, u.c.id == a.c.unit_id)
        .join(i, and_(i.c.campaign_id == u.c.campaign_id, i.c.item_id == u.c.item_id))
        .where(
            a.c.id == assignment_id,
            a.c.participant_id == participant.id,
            a.c.campaign_id == participant.campaign_id,
        )
    ).first()
    if row is None:
        raise WhetstoneError(f"no assignment {assignment_id} for this participant")
    if row.model_b is None:
        shown = [row.model_a]
    else:
        right = row.model_b if row.left_model == row.model_a else row.model_a
        shown = [row.left_model, right]
    found = {
        r.model: r
        for r in conn.execute(
            select(db.answers.c.id, db.answers.c.model, db.answers.c.output).where(
                db.answers.c.campaign_id == participant.campaign_id,
                db.answers.c.item_id == row.item_id,
                db.answers.c.model.in_(shown),
            )
        )
    }
    answers = [
        ShownAnswer(
            answer_id=int(found[m].id),
            output=found[m].output or "",
            position=pos if row.model_b is not None else None,
        )
        for pos, m in enumerate(shown)
    ]
    return Task(
        assignment_id=int(row.id),
        unit_id=int(row.unit_id),
        item_id=row.item_id,
        prompt=row.prompt,
        reference=row.reference,
        answers=answers,
        status=row.status,
    )


def skip_task(store: Store, participant: Participant, assignment_id: int) -> None:
    """Give an open assignment back unjudged; the participant will not see that unit again."""
    with db.write(store) as conn:
        result = conn.execute(
            update(db.assignments)
            .where(
                db.assignments.c.id == assignment_id,
                db.assignments.c.participant_id == participant.id,
                db.assignments.c.status == "open",
            )
            .values(status="skipped", done_at=db.now())
        )
        if result.rowcount == 0:
            raise WhetstoneError(f"no open assignment {assignment_id} for this participant")


def judged_count(store: Store, participant: Participant) -> int:
    """How many units the participant has judged."""
    with db.read(store) as conn:
        return _done_count(conn, participant)


def participant_progress(store: Store, campaign: Campaign, participant: Participant) -> Progress:
    """Units this participant has judged, and units still open to them."""
    with db.read(store) as conn:
        done = _done_count(conn, participant)
        open_units = _open_units(campaign, participant).subquery()
        available = int(conn.execute(select(func.count()).select_from(open_units)).scalar_one())
    cap = campaign.config.per_participant
    if cap is not None:
        available = min(available, max(0, cap - done))
    return Progress(done=done, available=available)
