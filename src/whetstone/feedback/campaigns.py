"""Campaigns: creating one (its items, pending answers and units), finding and listing them."""

from __future__ import annotations

import itertools
import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, update

from whetstone.errors import ConfigError, WhetstoneError
from whetstone.feedback import db
from whetstone.feedback.config import CampaignConfig, Mode, PromptItem, PromptSource
from whetstone.feedback.prompts import CampaignItem, inside, load_prompts
from whetstone.store import Store

CampaignStatus = Literal["open", "closed"]
MAX_SUGGESTIONS = 50
"""Chat: most starter prompts kept to suggest."""


class Campaign(BaseModel):
    """A stored campaign: its id, validated configuration and status."""

    id: str
    name: str
    mode: Mode
    status: CampaignStatus
    config: CampaignConfig
    owner_id: int | None = None
    created_at: datetime

    @property
    def models(self) -> list[str]:
        """The model labels, in the order of the configuration."""
        return [m.label for m in self.config.models]


def unit_key(item_id: str, model_a: str, model_b: str | None = None) -> str:
    """The unique key of a unit within its campaign."""
    return json.dumps([item_id, model_a, model_b], ensure_ascii=False)


def resolve_categories(
    config: CampaignConfig, base_dir: Path | None, confined: bool = False
) -> list[str]:
    """The error-category tags offered: the config's list, else the diagnosis taxonomy's names."""
    if config.categories is not None:
        names = [c.strip() for c in config.categories if c.strip()]
        if not names:
            raise ConfigError("field 'categories': give at least one category name")
        return list(dict.fromkeys(names))
    from whetstone.diagnose.taxonomy import load_taxonomy

    path: Path | None = None
    if config.taxonomy is not None:
        path = Path(config.taxonomy).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if confined:
            path = inside(path, base_dir, "taxonomy", str(config.taxonomy))
    return load_taxonomy(path).names()


def _units(config: CampaignConfig, items: list[CampaignItem]) -> list[tuple[str, str, str | None]]:
    """(item, model_a, model_b) of every unit: one per answer in review, pairs in arena."""
    labels = [m.label for m in config.models]
    if config.mode == "review":
        return [(item.item_id, m, None) for item in items for m in labels]
    if config.mode == "chat":
        return []
    pairs = list(itertools.combinations(labels, 2))
    if config.pairs == "all":
        return [(item.item_id, a, b) for item in items for a, b in pairs]
    # rotate: item i battles pair i mod P, so every pair gets the same number of prompts
    return [(item.item_id, *pairs[i % len(pairs)]) for i, item in enumerate(items)]


def create_campaign(
    store: Store,
    config: CampaignConfig,
    *,
    base_dir: Path | str | None = None,
    owner_id: int | None = None,
    confined: bool = False,
) -> Campaign:
    """Store a new campaign with its items, pending answers and units; returns it.

    Paths in ``config`` (task, JSONL, taxonomy) are relative to ``base_dir`` (and, when
    ``confined``, must stay inside it: the web app's owners read only its data folder). The
    answers are generated afterwards (``generate_answers`` or the server's background worker).
    """
    base = Path(base_dir) if base_dir is not None else None
    config = config.model_copy(deep=True)
    if config.question("tags") is not None:
        config.categories = resolve_categories(config, base, confined)
    prompts = config.prompts
    items = load_prompts(prompts, base, confined=confined) if prompts is not None else []
    if config.mode == "chat":
        # chat prompts are only suggestions: a few kept in the config, not items to answer
        if items:
            config.prompts = PromptSource(
                items=[PromptItem(id=i.item_id, prompt=i.prompt) for i in items[:MAX_SUGGESTIONS]]
            )
        items = []
    elif config.prompts is not None and config.prompts.items:
        # inline prompts live in the items table; the stored config stays small
        config.prompts = config.prompts.model_copy(update={"items": []})
    units = _units(config, items)
    needed = {(item, m) for item, a, b in units for m in (a, b) if m is not None}
    created = db.now()
    campaign_id = secrets.token_hex(5)
    try:
        with db.write(store) as conn:
            conn.execute(
                db.campaigns.insert().values(
                    id=campaign_id,
                    name=config.name,
                    mode=config.mode,
                    status="open",
                    config=config.model_dump(mode="json"),
                    owner_id=owner_id,
                    created_at=created,
                )
            )
            if items:
                conn.execute(
                    db.items.insert(),
                    [
                        {
                            "campaign_id": campaign_id,
                            "item_id": it.item_id,
                            "seq": seq,
                            "prompt": it.prompt,
                            "reference": it.reference,
                            "data": None,
                            "created_at": created,
                        }
                        for seq, it in enumerate(items)
                    ],
                )
            labels = [m.label for m in config.models]
            rows = [
                {
                    "campaign_id": campaign_id,
                    "item_id": it.item_id,
                    "model": m,
                    "model_version": "",
                    "output": None,
                    "status": "pending",
                    "error": None,
                    "created_at": created,
                    "finished_at": None,
                }
                for it in items
                for m in labels
                if (it.item_id, m) in needed
            ]
            if rows:
                conn.execute(db.answers.insert(), rows)
            if units:
                conn.execute(
                    db.units.insert(),
                    [
                        {
                            "campaign_id": campaign_id,
                            "key": unit_key(item, a, b),
                            "item_id": item,
                            "model_a": a,
                            "model_b": b,
                            "seq": seq,
                            "participant_id": None,
                        }
                        for seq, (item, a, b) in enumerate(units)
                    ],
                )
    except sa_exc.IntegrityError as err:
        # names are global (the command line finds a campaign by name); the message names
        # neither the database nor whose campaign holds the name
        raise WhetstoneError(
            f"the campaign name {config.name!r} is taken; pick another name"
        ) from err
    db.analyze(store, db.items, db.answers, db.units)
    return get_campaign(store, campaign_id)


def _campaign(row: object) -> Campaign:
    """A Campaign from a row of the campaigns table."""
    m = row._mapping  # type: ignore[attr-defined]
    created = db.as_utc(m["created_at"])
    assert created is not None
    return Campaign(
        id=m["id"],
        name=m["name"],
        mode=m["mode"],
        status=m["status"],
        config=CampaignConfig.model_validate(m["config"]),
        owner_id=m["owner_id"],
        created_at=created,
    )


def get_campaign(store: Store, ref: str) -> Campaign:
    """The campaign with this id or name; WhetstoneError when there is none."""
    with db.read(store) as conn:
        row = conn.execute(select(db.campaigns).where(db.campaigns.c.id == ref)).first()
        if row is None:
            row = conn.execute(select(db.campaigns).where(db.campaigns.c.name == ref)).first()
    if row is None:
        raise WhetstoneError(f"no feedback campaign with id or name {ref!r} in {store.url!r}")
    return _campaign(row)


def list_campaigns(store: Store, owner_id: int | None = None) -> list[Campaign]:
    """Every campaign (of one owner if given), newest first."""
    query = select(db.campaigns).order_by(db.campaigns.c.created_at.desc())
    if owner_id is not None:
        query = query.where(db.campaigns.c.owner_id == owner_id)
    with db.read(store) as conn:
        return [_campaign(row) for row in conn.execute(query).all()]


def set_status(store: Store, campaign_id: str, status: CampaignStatus) -> None:
    """Open or close a campaign (a closed one accepts no more ratings)."""
    with db.write(store) as conn:
        conn.execute(
            update(db.campaigns).where(db.campaigns.c.id == campaign_id).values(status=status)
        )


def count_rows(store: Store, campaign_id: str) -> dict[str, int]:
    """How many items, units, participants and ratings a campaign holds."""
    out = {}
    with db.read(store) as conn:
        for name, table in (
            ("items", db.items),
            ("units", db.units),
            ("participants", db.participants),
            ("ratings", db.ratings),
        ):
            out[name] = int(
                conn.execute(
                    select(func.count())
                    .select_from(table)
                    .where(table.c.campaign_id == campaign_id)
                ).scalar_one()
            )
    return out
