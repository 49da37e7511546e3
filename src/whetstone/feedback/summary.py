"""What the owner's dashboard shows, as one JSON-able record, also stored as an artifact.

``campaign_summary`` computes, from the campaign's judgments: per-model rating distributions
with 95% intervals (items are the unit, since several people judge the same item: shares get
a Wilson interval on the items' effective sample size, means a BCa bootstrap over items), the
Bradley-Terry ranking with bootstrap intervals over items and the win-rate matrix, the
position-bias test, agreement (Cohen's and Fleiss' kappa, Krippendorff's alpha with a
bootstrap interval over items),
per-participant statistics, comments, counts and coverage. It stores the result with
``store.put_artifact("feedback", campaign_id, summary)``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select

from whetstone.evaluate.statistics import bootstrap_ci
from whetstone.feedback import db
from whetstone.feedback.agreement import Agreement, Level, agreement
from whetstone.feedback.assignment import LEASE
from whetstone.feedback.campaigns import Campaign, get_campaign
from whetstone.feedback.generation import ModelProgress, answer_progress
from whetstone.feedback.judgments import judgments as load_judgments
from whetstone.feedback.proportions import share_by_cluster
from whetstone.feedback.ranking import (
    Battle,
    PositionBias,
    Ranking,
    battles_from_judgments,
    position_bias,
    rank_models,
)
from whetstone.records import FeedbackJudgment, MetricValue
from whetstone.store import Store

ARTIFACT_KIND = "feedback"
MAX_COMMENTS = 200


class LikertLevel(BaseModel):
    """How many judgments gave this Likert level, and their share with a Wilson interval on
    the items' effective sample size (judgments of one item correlate)."""

    level: int
    count: int
    share: MetricValue | None


class ArenaRecord(BaseModel):
    """A model's battles: wins, losses, ties, both bad, and its win rate (ties as half)."""

    battles: int
    wins: int
    losses: int
    ties: int
    both_bad: int
    win_rate: MetricValue | None


class ModelRatings(BaseModel):
    """One model's judgments: thumbs-up share, Likert distribution and mean, failures, tags."""

    model: str
    model_versions: list[str]
    judgments: int
    items: int
    thumbs_up: MetricValue | None = None
    likert_mean: MetricValue | None = None
    likert: list[LikertLevel] = Field(default_factory=list)
    failure_rate: MetricValue | None = None
    arena: ArenaRecord | None = None
    tags: dict[str, int] = Field(default_factory=dict)


class ParticipantStats(BaseModel):
    """One participant's activity and habits."""

    name: str
    judgments: int
    units_done: int
    units_skipped: int
    mean_likert: float | None = None
    thumbs_up_rate: float | None = None
    left_rate: float | None = None
    """Arena: share of decisive verdicts that chose the left answer."""
    agreement: float | None = None
    """Share of their verdicts equal to another participant's on the same unit."""
    comments: int
    median_seconds: float | None = None
    last_seen_at: datetime | None = None


class Coverage(BaseModel):
    """How far the campaign is: units judged by ``overlap`` participants, answers generated."""

    items: int
    units: int
    overlap: int
    units_complete: int
    units_started: int
    judged_per_unit: dict[str, int]
    """Number of units judged 0, 1, 2, ... times (keys are the counts)."""
    answers: list[ModelProgress]


class Counts(BaseModel):
    """Totals of the campaign."""

    participants: int
    active_participants: int
    judgments: int
    failures: int
    comments: int
    battles: int


class CommentEntry(BaseModel):
    """A comment or correction with the verdict it came with."""

    item_id: str
    model: str
    opponent: str | None = None
    """Arena: the other model of the battle (the comment is on the battle)."""
    participant: str
    comment: str | None
    correction: str | None
    thumbs: bool | None
    likert: int | None
    arena_outcome: str | None
    tags: list[str]
    created_at: datetime | None


class CampaignSummary(BaseModel):
    """Everything the dashboard shows for one campaign."""

    campaign_id: str
    name: str
    mode: str
    status: str
    computed_at: datetime
    models: list[str]
    questions: list[str]
    categories: list[str]
    counts: Counts
    coverage: Coverage
    model_ratings: list[ModelRatings]
    ranking: Ranking | None = None
    position_bias: PositionBias | None = None
    agreement: list[Agreement] = Field(default_factory=list)
    participants: list[ParticipantStats] = Field(default_factory=list)
    comments: list[CommentEntry] = Field(default_factory=list)


#: Fewest distinct items for an interval of a mean over judgments (items are the unit). Shares
#: need only two (see ``proportions``): Wilson needs no spread.
MIN_ITEMS = 5


def _mean_ci(values: Sequence[float], clusters: Sequence[str], n_boot: int) -> MetricValue | None:
    """The mean with a BCa interval that resamples whole items; flagged too_few below
    MIN_ITEMS items or when every judgment agrees (no spread: never a point interval)."""
    if not values:
        return None
    value, n, items = float(np.mean(values)), len(values), len(set(clusters))
    if items < MIN_ITEMS or np.ptp(values) == 0:
        note = f"{items} item(s) judged: an interval needs {MIN_ITEMS} items with some spread"
        return MetricValue(value=value, n=n, method="bca", too_few=True, note=note)
    lo, hi = bootstrap_ci(np.asarray(values, dtype=float), clusters=list(clusters), n_boot=n_boot)
    return MetricValue(value=value, ci_low=lo, ci_high=hi, n=n, method="bca")


def _model_ratings(model: str, js: list[FeedbackJudgment], n_boot: int) -> ModelRatings:
    """The rating distributions of one model."""
    out = ModelRatings(
        model=model,
        model_versions=sorted({j.model_version for j in js if j.model_version}),
        judgments=len(js),
        items=len({j.item_id for j in js}),
    )
    thumbs = [j for j in js if j.thumbs is not None]
    out.thumbs_up = share_by_cluster([bool(j.thumbs) for j in thumbs], [j.item_id for j in thumbs])
    likert = [j for j in js if j.likert is not None]
    out.likert_mean = _mean_ci(
        [float(j.likert or 0) for j in likert], [j.item_id for j in likert], n_boot
    )
    if likert:
        counts = Counter(j.likert for j in likert)
        out.likert = [
            LikertLevel(
                level=k,
                count=counts.get(k, 0),
                share=share_by_cluster(
                    [j.likert == k for j in likert], [j.item_id for j in likert]
                ),
            )
            for k in range(1, 6)
        ]
    out.failure_rate = share_by_cluster([j.is_failure for j in js], [j.item_id for j in js])
    arena = [j for j in js if j.arena_outcome is not None]
    if arena:
        outcome = Counter(j.arena_outcome for j in arena)
        score = [{"win": 1.0, "loss": 0.0}.get(j.arena_outcome or "", 0.5) for j in arena]
        out.arena = ArenaRecord(
            battles=len(arena),
            wins=outcome.get("win", 0),
            losses=outcome.get("loss", 0),
            ties=outcome.get("tie", 0),
            both_bad=outcome.get("both_bad", 0),
            win_rate=_mean_ci(score, [j.item_id for j in arena], n_boot),
        )
    out.tags = dict(Counter(t for j in js for t in j.tags).most_common())
    return out


def agreement_data(
    campaign: Campaign, js: Sequence[FeedbackJudgment], battles: Sequence[Battle]
) -> list[tuple[str, Level, dict[Hashable, dict[str, Hashable]]]]:
    """(question, level, unit -> {participant: value}) for each question agreement is measured on.

    Review and chat units are (item, model); an arena unit is (item, pair of models) and its
    value the verdict seen from the pair's first model (in name order): a, b, tie, both_bad.
    """
    out: list[tuple[str, Level, dict[Hashable, dict[str, Hashable]]]] = []
    if campaign.mode == "arena":
        data: dict[Hashable, dict[str, Hashable]] = {}
        for b in battles:
            first, second = sorted((b.model_a, b.model_b))
            verdict: str = b.winner
            if b.winner in ("a", "b"):
                winner = b.model_a if b.winner == "a" else b.model_b
                verdict = "a" if winner == first else "b"
            data.setdefault((b.item_id, first, second), {})[b.participant] = verdict
        if data:
            out.append(("arena", "nominal", data))
    for question, level in (("thumbs", "nominal"), ("likert", "ordinal")):
        units: dict[Hashable, dict[str, Hashable]] = {}
        for j in js:
            value = getattr(j, question)
            if value is not None:
                units.setdefault((j.item_id, j.model), {})[j.participant] = (
                    ("up" if value else "down") if question == "thumbs" else int(value)
                )
        if units:
            out.append((question, level, units))  # type: ignore[arg-type]
    return out


def _items_of(units: dict[Hashable, dict[str, Hashable]]) -> dict[Hashable, Hashable]:
    """The item of each agreement unit ((item, model) or (item, first, second)): units of one
    item share its prompt, so the item is the independent unit alpha is resampled by."""
    return {u: u[0] if isinstance(u, tuple) else u for u in units}


@dataclass
class _Activity:
    """What the assignments table tells about one participant."""

    name: str
    last_seen_at: datetime | None
    done: int = 0
    skipped: int = 0
    seconds: list[float] = field(default_factory=list)


def _activity(store: Store, campaign_id: str) -> list[_Activity]:
    """Per participant: units done and skipped, seconds per unit, last activity."""
    a, p = db.assignments, db.participants
    with db.read(store) as conn:
        people = {
            int(r.id): _Activity(r.name, db.as_utc(r.last_seen_at))
            for r in conn.execute(select(p).where(p.c.campaign_id == campaign_id).order_by(p.c.id))
        }
        rows = conn.execute(
            select(a.c.participant_id, a.c.status, a.c.created_at, a.c.done_at).where(
                a.c.campaign_id == campaign_id, a.c.status != "open"
            )
        ).all()
    for r in rows:
        info = people.get(int(r.participant_id))
        if info is None:
            continue
        if r.status == "skipped":
            info.skipped += 1
            continue
        info.done += 1
        start, end = db.as_utc(r.created_at), db.as_utc(r.done_at)
        if start is not None and end is not None:
            info.seconds.append((end - start).total_seconds())
    return list(people.values())


def _participants(
    store: Store,
    campaign: Campaign,
    js: Sequence[FeedbackJudgment],
    battles: Sequence[Battle],
    main: Agreement | None,
) -> list[ParticipantStats]:
    """Per-participant statistics."""
    by_name: dict[str, list[FeedbackJudgment]] = {}
    for j in js:
        by_name.setdefault(j.participant, []).append(j)
    agree = {r.rater: r.agreement for r in (main.per_rater if main else [])}
    out = []
    for info in _activity(store, campaign.id):
        mine = by_name.get(info.name, [])
        likert = [j.likert for j in mine if j.likert is not None]
        thumbs = [j.thumbs for j in mine if j.thumbs is not None]
        decisive = [b for b in battles if b.participant == info.name and b.winner in ("a", "b")]
        out.append(
            ParticipantStats(
                name=info.name,
                judgments=len(mine),
                units_done=info.done,
                units_skipped=info.skipped,
                mean_likert=float(np.mean(likert)) if likert else None,
                thumbs_up_rate=float(np.mean(thumbs)) if thumbs else None,
                left_rate=(
                    sum(b.winner == "a" for b in decisive) / len(decisive) if decisive else None
                ),
                agreement=agree.get(info.name),
                comments=sum(1 for j in mine if j.comment),
                median_seconds=statistics.median(info.seconds) if info.seconds else None,
                last_seen_at=info.last_seen_at,
            )
        )
    return out


def _coverage(store: Store, campaign: Campaign) -> Coverage:
    """Units judged by enough participants, and the answers generated."""
    u, a = db.units, db.assignments
    fresh = db.now() - LEASE
    with db.read(store) as conn:
        n_items = conn.execute(
            select(func.count()).where(db.items.c.campaign_id == campaign.id)
        ).scalar_one()
        done: dict[int, int] = dict(
            conn.execute(
                select(a.c.unit_id, func.count())
                .where(a.c.campaign_id == campaign.id, a.c.status == "done")
                .group_by(a.c.unit_id)
            ).all()
        )
        started = conn.execute(
            select(func.count(func.distinct(a.c.unit_id))).where(
                a.c.campaign_id == campaign.id,
                or_(a.c.status == "done", and_(a.c.status == "open", a.c.created_at > fresh)),
            )
        ).scalar_one()
        unit_ids = list(
            conn.execute(select(u.c.id).where(u.c.campaign_id == campaign.id)).scalars()
        )
    histogram = Counter(int(done.get(uid, 0)) for uid in unit_ids)
    return Coverage(
        items=int(n_items),
        units=len(unit_ids),
        overlap=campaign.config.overlap,
        units_complete=sum(done.get(uid, 0) >= campaign.config.overlap for uid in unit_ids),
        units_started=int(started),
        judged_per_unit={str(k): histogram[k] for k in sorted(histogram)},
        answers=answer_progress(store, campaign),
    )


def summarize(
    store: Store,
    campaign: Campaign,
    js: Sequence[FeedbackJudgment],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> CampaignSummary:
    """The summary of a campaign from its judgments (not stored)."""
    by_model: dict[str, list[FeedbackJudgment]] = {m: [] for m in campaign.models}
    for j in js:
        by_model.setdefault(j.model, []).append(j)
    battles = battles_from_judgments(js)
    agreements = [
        agreement(question, data, level, n_boot=n_boot, seed=seed, clusters=_items_of(data))
        for question, level, data in agreement_data(campaign, js, battles)
    ]
    agreements = [a for a in agreements if a.units > 0]
    main = agreements[0] if agreements else None
    participants = _participants(store, campaign, js, battles, main)
    comments = [
        CommentEntry(
            item_id=j.item_id,
            model=j.model,
            opponent=j.opponent,
            participant=j.participant,
            comment=j.comment,
            correction=j.correction,
            thumbs=j.thumbs,
            likert=j.likert,
            arena_outcome=j.arena_outcome,
            tags=j.tags,
            created_at=j.created_at,
        )
        for j in reversed(js)
        if j.correction or (j.comment and j.position != 1)  # a battle's comment once
    ]
    return CampaignSummary(
        campaign_id=campaign.id,
        name=campaign.name,
        mode=campaign.mode,
        status=campaign.status,
        computed_at=db.now(),
        models=campaign.models,
        questions=[q.type for q in campaign.config.questions],
        categories=list(campaign.config.categories or []),
        counts=Counts(
            participants=len(participants),
            active_participants=sum(1 for p in participants if p.judgments),
            judgments=len(js),
            failures=sum(1 for j in js if j.is_failure),
            comments=len(comments),
            battles=len(battles),
        ),
        coverage=_coverage(store, campaign),
        model_ratings=[_model_ratings(m, mj, n_boot) for m, mj in by_model.items()],
        ranking=rank_models(battles, n_boot=n_boot, seed=seed),
        position_bias=position_bias(battles),
        agreement=agreements,
        participants=participants,
        comments=comments[:MAX_COMMENTS],
    )


def campaign_summary(
    store: Store, campaign_id: str, *, n_boot: int = 1000, seed: int = 0
) -> CampaignSummary:
    """Compute the dashboard's summary of a campaign and store it as the artifact
    ``feedback``/``campaign_id``."""
    campaign = get_campaign(store, campaign_id)
    summary = summarize(
        store, campaign, load_judgments(store, campaign.id), n_boot=n_boot, seed=seed
    )
    store.put_artifact(ARTIFACT_KIND, campaign.id, summary.model_dump(mode="json"))
    return summary
