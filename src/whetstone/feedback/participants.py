"""Participants: personal invitation links, stored only as hashes, each scoped to one campaign."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update

from whetstone.errors import WhetstoneError
from whetstone.feedback import db
from whetstone.store import Store

TOKEN_BYTES = 24
"""Random bytes of an invitation token (192 bits, URL-safe base64)."""
INVITE_DAYS = 30.0
"""How long an invitation link works unless the owner says otherwise."""


class Participant(BaseModel):
    """A participant of one campaign (the token itself is never stored)."""

    id: int
    campaign_id: str
    name: str
    csrf: str
    created_at: datetime
    last_seen_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def valid(self, now: datetime) -> bool:
        """Whether the link still opens the campaign (not revoked, not expired)."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class Invitation(BaseModel):
    """A new participant and their personal token, shown once."""

    participant: Participant
    token: str

    def link(self, base_url: str) -> str:
        """The participant's personal link on the server at ``base_url``."""
        return f"{base_url.rstrip('/')}/p/{self.token}"


def token_hash(token: str) -> str:
    """The sha256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _participant(row: object) -> Participant:
    m = row._mapping  # type: ignore[attr-defined]
    created = db.as_utc(m["created_at"])
    assert created is not None
    return Participant(
        id=int(m["id"]),
        campaign_id=m["campaign_id"],
        name=m["name"],
        csrf=m["csrf"],
        created_at=created,
        last_seen_at=db.as_utc(m["last_seen_at"]),
        expires_at=db.as_utc(m["expires_at"]),
        revoked_at=db.as_utc(m["revoked_at"]),
    )


def invite(
    store: Store, campaign_id: str, name: str, valid_days: float | None = INVITE_DAYS
) -> Invitation:
    """Add a participant to a campaign and return their one-time-shown token, valid for
    ``valid_days`` (None: until revoked)."""
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise WhetstoneError("a participant needs a name of 1 to 200 characters")
    if valid_days is not None and not 0 < valid_days <= 3650:
        raise WhetstoneError(f"an invitation is valid for 0 to 3650 days, not {valid_days}")
    now = db.now()
    expires = None if valid_days is None else now + timedelta(days=valid_days)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        with db.write(store) as conn:
            conn.execute(
                db.participants.insert().values(
                    campaign_id=campaign_id,
                    name=name,
                    token_hash=token_hash(token),
                    csrf=secrets.token_urlsafe(24),
                    created_at=now,
                    last_seen_at=None,
                    expires_at=expires,
                )
            )
            row = conn.execute(
                select(db.participants).where(db.participants.c.token_hash == token_hash(token))
            ).one()
    except sa_exc.IntegrityError as err:
        raise WhetstoneError(
            f"campaign {campaign_id!r} already has a participant named {name!r}"
        ) from err
    return Invitation(participant=_participant(row), token=token)


def participant_for_token(store: Store, token: str) -> Participant | None:
    """The participant whose token this is, or None (also for malformed, revoked or expired
    tokens)."""
    if not token or len(token) > 128:
        return None
    with db.read(store) as conn:
        row = conn.execute(
            select(db.participants).where(db.participants.c.token_hash == token_hash(token))
        ).first()
    if row is None:
        return None
    found = _participant(row)
    return found if found.valid(db.now()) else None


def revoke(store: Store, campaign_id: str, name: str) -> bool:
    """Revoke the participant's link (their judgments stay); False when no such participant
    has a valid link."""
    p = db.participants
    with db.write(store) as conn:
        result = conn.execute(
            update(p)
            .where(p.c.campaign_id == campaign_id, p.c.name == " ".join(name.split()))
            .where(p.c.revoked_at.is_(None))
            .values(revoked_at=db.now())
        )
    return bool(result.rowcount)


def list_participants(store: Store, campaign_id: str) -> list[Participant]:
    """A campaign's participants in the order they were invited."""
    with db.read(store) as conn:
        rows = conn.execute(
            select(db.participants)
            .where(db.participants.c.campaign_id == campaign_id)
            .order_by(db.participants.c.id)
        ).all()
    return [_participant(r) for r in rows]


def touch(store: Store, participant_id: int) -> None:
    """Record that the participant was just active."""
    with db.write(store) as conn:
        conn.execute(
            update(db.participants)
            .where(db.participants.c.id == participant_id)
            .values(last_seen_at=db.now())
        )
