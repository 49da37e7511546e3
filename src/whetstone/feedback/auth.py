"""Owners: scrypt-hashed passwords, server-side sessions (only token hashes are stored) and
CSRF tokens bound to each session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import delete, select, update
from sqlalchemy import exc as sa_exc

from whetstone.errors import WhetstoneError, missing_extra
from whetstone.feedback import db
from whetstone.store import Store

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSWORD = 8


class Owner(BaseModel):
    """Someone who may create campaigns."""

    id: int
    name: str


class Session(BaseModel):
    """A signed-in owner and the CSRF token their forms must carry."""

    owner: Owner
    csrf: str
    expires_at: datetime


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` with a random 16-byte salt."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    enc = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${enc(salt).decode()}${enc(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


MIN_STRENGTH = 3
"""The least zxcvbn score (0-4) a password needs: "safely unguessable" against offline
guessing of a slow hash, which refuses common passwords, repeats and keyboard runs."""


def check_password(password: str) -> None:
    """Refuse a password shorter than MIN_PASSWORD or weaker than MIN_STRENGTH (zxcvbn's
    estimate, with its own list of common passwords), saying why."""
    if len(password) < MIN_PASSWORD:
        raise WhetstoneError(f"a password needs at least {MIN_PASSWORD} characters")
    try:
        from zxcvbn import zxcvbn
    except ImportError as err:
        raise missing_extra("zxcvbn", "feedback") from err
    verdict = zxcvbn(password[:100])  # its cost grows with the length; 100 characters suffice
    if verdict["score"] < MIN_STRENGTH:
        why = verdict["feedback"]["warning"] or "it is easy to guess"
        hint = " ".join(verdict["feedback"]["suggestions"][:1])
        raise WhetstoneError(f"that password is too weak: {why.rstrip('.')}. {hint}".strip())


def set_owner(store: Store, name: str, password: str) -> Owner:
    """Create an owner, or set the password of an existing one."""
    name = name.strip()
    if not name or len(name) > 64:
        raise WhetstoneError("an owner name has 1 to 64 characters")
    check_password(password)
    hashed = hash_password(password)
    with db.write(store) as conn:
        found = conn.execute(select(db.owners.c.id).where(db.owners.c.name == name)).first()
        if found is None:
            try:
                conn.execute(
                    db.owners.insert().values(name=name, password_hash=hashed, created_at=db.now())
                )
            except sa_exc.IntegrityError as err:  # created by someone else meanwhile
                raise WhetstoneError(f"owner {name!r} was just created elsewhere") from err
        else:
            conn.execute(
                update(db.owners).where(db.owners.c.id == found.id).values(password_hash=hashed)
            )
            conn.execute(delete(db.sessions).where(db.sessions.c.owner_id == found.id))
        row = conn.execute(select(db.owners).where(db.owners.c.name == name)).one()
    return Owner(id=int(row.id), name=row.name)


def has_owner(store: Store) -> bool:
    """Whether any owner exists."""
    with db.read(store) as conn:
        return conn.execute(select(db.owners.c.id).limit(1)).first() is not None


def authenticate(store: Store, name: str, password: str) -> Owner | None:
    """The owner when the password is right, else None."""
    with db.read(store) as conn:
        row = conn.execute(select(db.owners).where(db.owners.c.name == name.strip())).first()
    if row is None:
        hash_password(password)  # spend the same time as a real check
        return None
    if not verify_password(password, row.password_hash):
        return None
    return Owner(id=int(row.id), name=row.name)


def open_session(store: Store, owner: Owner, hours: float = 12.0) -> tuple[str, Session]:
    """A new session: the cookie token (returned once) and its record."""
    token = secrets.token_urlsafe(32)
    now = db.now()
    session = Session(
        owner=owner, csrf=secrets.token_urlsafe(24), expires_at=now + timedelta(hours=hours)
    )
    with db.write(store) as conn:
        conn.execute(delete(db.sessions).where(db.sessions.c.expires_at < now))
        conn.execute(
            db.sessions.insert().values(
                token_hash=_sha(token),
                owner_id=owner.id,
                csrf=session.csrf,
                created_at=now,
                expires_at=session.expires_at,
            )
        )
    return token, session


def get_session(store: Store, token: str | None) -> Session | None:
    """The live session of a cookie token, or None."""
    if not token or len(token) > 128:
        return None
    s, o = db.sessions, db.owners
    with db.read(store) as conn:
        row = conn.execute(
            select(s.c.csrf, s.c.expires_at, o.c.id, o.c.name)
            .join(o, o.c.id == s.c.owner_id)
            .where(s.c.token_hash == _sha(token))
        ).first()
    if row is None:
        return None
    expires = db.as_utc(row.expires_at)
    assert expires is not None
    if expires < db.now():
        return None
    return Session(owner=Owner(id=int(row.id), name=row.name), csrf=row.csrf, expires_at=expires)


def close_session(store: Store, token: str) -> None:
    """End a session."""
    with db.write(store) as conn:
        conn.execute(delete(db.sessions).where(db.sessions.c.token_hash == _sha(token)))


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted CSRF token."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())
