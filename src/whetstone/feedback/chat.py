"""Chat mode: a participant talks with a hidden model and rates each reply.

Each conversation is held with one model, picked so that models get equal numbers of
conversations. Every reply becomes an item (the transcript so far as its prompt), an answer and
a unit of the participant, with an open assignment that the participant rates like a review;
a new message waits until the last reply is rated.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Connection, and_, func, select

from whetstone.errors import WhetstoneError
from whetstone.feedback import db
from whetstone.feedback.campaigns import Campaign, unit_key
from whetstone.feedback.participants import Participant
from whetstone.store import Store


class ChatTurn(BaseModel):
    """One exchange: the participant's message, the reply, and its assignment."""

    turn: int
    user: str
    reply: str
    assignment_id: int
    rated: bool


class Conversation(BaseModel):
    """A participant's conversation as shown (the model stays hidden)."""

    id: str
    created_at: datetime
    turns: list[ChatTurn]


class PendingTurn(BaseModel):
    """A message accepted for a reply: what the model is asked, and where the reply goes."""

    conversation_id: str
    model: str
    turn: int
    user: str
    messages: list[dict[str, str]]


def _least_used_model(conn: Connection, campaign: Campaign) -> str:
    """The model with the fewest conversations so far (the first such in config order)."""
    c = db.conversations
    counts: dict[str, int] = dict(
        conn.execute(
            select(c.c.model, func.count())
            .where(c.c.campaign_id == campaign.id)
            .group_by(c.c.model)
        ).all()
    )
    least = min(int(counts.get(m, 0)) for m in campaign.models)
    tied = [m for m in campaign.models if int(counts.get(m, 0)) == least]
    return secrets.choice(tied)


def start_conversation(store: Store, campaign: Campaign, participant: Participant) -> str:
    """A new conversation of the participant with a model; returns its id."""
    _check(campaign, participant)
    if campaign.status != "open":
        raise WhetstoneError("this campaign is closed")
    conversation_id = secrets.token_hex(8)
    with db.write(store, lock=f"chat:{campaign.id}") as conn:
        conn.execute(
            db.conversations.insert().values(
                id=conversation_id,
                campaign_id=campaign.id,
                participant_id=participant.id,
                model=_least_used_model(conn, campaign),
                created_at=db.now(),
            )
        )
    return conversation_id


def _check(campaign: Campaign, participant: Participant) -> None:
    if campaign.mode != "chat":
        raise WhetstoneError("this campaign has no chat")
    if participant.campaign_id != campaign.id:
        raise WhetstoneError("this participant belongs to another campaign")


def _turns(conn: Connection, participant: Participant, conversation_id: str) -> list[ChatTurn]:
    """The conversation's exchanges, oldest first."""
    i, a, u, asg = db.items, db.answers, db.units, db.assignments
    rows = conn.execute(
        select(i.c.data, a.c.output, asg.c.id.label("assignment_id"), asg.c.status)
        .join(a, and_(a.c.campaign_id == i.c.campaign_id, a.c.item_id == i.c.item_id))
        .join(u, and_(u.c.campaign_id == i.c.campaign_id, u.c.item_id == i.c.item_id))
        .join(asg, asg.c.unit_id == u.c.id)
        .where(
            i.c.campaign_id == participant.campaign_id,
            u.c.participant_id == participant.id,
            i.c.item_id.startswith(f"chat-{conversation_id}-", autoescape=True),
        )
        .order_by(i.c.seq)
    ).all()
    return [
        ChatTurn(
            turn=int(r.data["turn"]),
            user=str(r.data["user"]),
            reply=r.output or "",
            assignment_id=int(r.assignment_id),
            rated=r.status == "done",
        )
        for r in rows
    ]


def _conversation_row(conn: Connection, participant: Participant, conversation_id: str) -> object:
    c = db.conversations
    row = conn.execute(
        select(c).where(c.c.id == conversation_id, c.c.participant_id == participant.id)
    ).first()
    if row is None:
        raise WhetstoneError("no such conversation for this participant")
    return row


def latest_conversation(store: Store, participant: Participant) -> Conversation | None:
    """The participant's newest conversation, or None."""
    c = db.conversations
    with db.read(store) as conn:
        row = conn.execute(
            select(c)
            .where(c.c.participant_id == participant.id)
            .order_by(c.c.created_at.desc(), c.c.id)
            .limit(1)
        ).first()
        if row is None:
            return None
        created = db.as_utc(row.created_at)
        assert created is not None
        return Conversation(id=row.id, created_at=created, turns=_turns(conn, participant, row.id))


def begin_turn(
    store: Store, campaign: Campaign, participant: Participant, conversation_id: str, message: str
) -> PendingTurn:
    """Check a new message and return what to ask the model; WhetstoneError when refused."""
    _check(campaign, participant)
    if campaign.status != "open":
        raise WhetstoneError("this campaign is closed")
    message = message.strip()
    limits = campaign.config.chat
    if not message:
        raise WhetstoneError("write a message first")
    if len(message) > limits.max_message_chars:
        raise WhetstoneError(f"a message may hold at most {limits.max_message_chars} characters")
    with db.read(store) as conn:
        row = _conversation_row(conn, participant, conversation_id)
        turns = _turns(conn, participant, conversation_id)
    if turns and not turns[-1].rated:
        raise WhetstoneError("rate the last answer before you send another message")
    if len(turns) >= limits.max_turns:
        raise WhetstoneError(
            f"this conversation has reached {limits.max_turns} turns; start a new one"
        )
    system = campaign.config.generation.system_prompt
    messages = [{"role": "system", "content": system}] if system else []
    for t in turns:
        messages += [{"role": "user", "content": t.user}, {"role": "assistant", "content": t.reply}]
    messages.append({"role": "user", "content": message})
    return PendingTurn(
        conversation_id=conversation_id,
        model=row.model,  # type: ignore[attr-defined]
        turn=len(turns) + 1,
        user=message,
        messages=messages,
    )


def transcript(messages: list[dict[str, str]]) -> str:
    """A chat as text: one ``role: content`` block per message."""
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def finish_turn(
    store: Store,
    campaign: Campaign,
    participant: Participant,
    pending: PendingTurn,
    reply: str,
    model_version: str,
) -> int:
    """Store the exchange (item, answer, unit, open assignment); returns the assignment id."""
    item_id = f"chat-{pending.conversation_id}-{pending.turn}"
    now = db.now()
    with db.write(store, lock=f"chat:{campaign.id}") as conn:
        seq = conn.execute(
            select(func.coalesce(func.max(db.items.c.seq), -1)).where(
                db.items.c.campaign_id == campaign.id
            )
        ).scalar_one()
        conn.execute(
            db.items.insert().values(
                campaign_id=campaign.id,
                item_id=item_id,
                seq=int(seq) + 1,
                prompt=transcript(pending.messages),
                reference=None,
                data={
                    "conversation": pending.conversation_id,
                    "turn": pending.turn,
                    "user": pending.user,
                    "messages": pending.messages,
                },
                created_at=now,
            )
        )
        conn.execute(
            db.answers.insert().values(
                campaign_id=campaign.id,
                item_id=item_id,
                model=pending.model,
                model_version=model_version,
                output=reply,
                status="done",
                error=None,
                created_at=now,
                finished_at=now,
            )
        )
        conn.execute(
            db.units.insert().values(
                campaign_id=campaign.id,
                key=unit_key(item_id, pending.model),
                item_id=item_id,
                model_a=pending.model,
                model_b=None,
                seq=int(seq) + 1,
                participant_id=participant.id,
            )
        )
        unit_id = conn.execute(
            select(db.units.c.id).where(
                db.units.c.campaign_id == campaign.id,
                db.units.c.key == unit_key(item_id, pending.model),
            )
        ).scalar_one()
        conn.execute(
            db.assignments.insert().values(
                campaign_id=campaign.id,
                participant_id=participant.id,
                unit_id=unit_id,
                left_model=None,
                status="open",
                created_at=now,
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
