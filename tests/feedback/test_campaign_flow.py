"""The store-backed campaign flow with fake models (also run on PostgreSQL by test_postgres.py).

Coverage, blind arena sides, judgments, exports and the summary are checked against numbers
recomputed here from the raw submissions and the database (numpy, statsmodels, krippendorff,
scikit-learn as FastChat fits Bradley-Terry).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
import threading
from collections import Counter

import numpy as np
import pytest
from sqlalchemy import select

from whetstone.errors import WhetstoneError
from whetstone.feedback import (
    AnswerRating,
    Submission,
    campaign_summary,
    chat,
    create_campaign,
    db,
    failure_cases,
    generate_answers,
    get_campaign,
    invite,
    judgments,
    next_task,
    skip_task,
    submit,
)
from whetstone.feedback.assignment import get_task
from whetstone.feedback.export import to_csv, to_jsonl
from whetstone.feedback.generation import ModelPool, answer_progress, retry_failed
from whetstone.feedback.ratings import RatingError
from whetstone.models import GenerationRequest, load_model
from whetstone.store import Store

from .conftest import PROMPTS, config, stream_reply


def _rate_all_round_robin(store: Store, campaign_id: str, names: list[str], rate) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Participants take turns judging one unit each until nobody gets one; judged per person."""
    campaign = get_campaign(store, campaign_id)
    people = [invite(store, campaign.id, n).participant for n in names]
    done = Counter[str]()
    active = list(people)
    while active:
        for p in list(active):
            task = next_task(store, campaign, p)
            if task is None:
                active.remove(p)
                continue
            submit(store, campaign, p, rate(p, task))
            done[p.name] += 1
    return dict(done)


def test_review_campaign_end_to_end(store: Store) -> None:
    campaign = create_campaign(
        store,
        config(
            "review", questions=["thumbs", "likert", "comment", "correction", "tags"], overlap=2
        ),
    )
    assert campaign.config.categories == [
        "semantic",
        "syntactic",
        "factual",
        "reasoning",
        "formatting",
    ]
    assert generate_answers(store, campaign) == 12
    # the answers are what the models generate for the same requests
    for k in range(2):
        model = load_model(f"fake:{k}")
        with db.read(store) as conn:
            rows = conn.execute(
                select(db.answers.c.item_id, db.answers.c.output, db.answers.c.model_version).where(
                    db.answers.c.campaign_id == campaign.id, db.answers.c.model == f"m{k}"
                )
            ).all()
        prompts = {f"q{i}": p for i, p in enumerate(PROMPTS)}
        for item_id, output, version in rows:
            request = GenerationRequest(prompt=prompts[item_id], max_new_tokens=12)
            assert output == model.generate([request])[0]
            assert version == model.identity.key

    rng = random.Random(0)
    given: dict[tuple[str, int], AnswerRating] = {}

    def rate(p, task):  # type: ignore[no-untyped-def]
        r = AnswerRating(
            thumbs=rng.random() < 0.6,
            likert=rng.randint(1, 5),
            comment=rng.choice([None, "too vague", "<img src=x onerror=alert(1)>"]),
            correction=rng.choice([None, task.answers[0].output, "A better answer."]),
            tags=rng.sample(["factual", "reasoning"], rng.randint(0, 1)),
        )
        given[(p.name, task.answers[0].answer_id)] = r
        return Submission(assignment_id=task.assignment_id, answers=[r])

    per_person = _rate_all_round_robin(store, campaign.id, ["ann", "bob", "cy"], rate)
    # 12 units x overlap 2; people taking turns share them (near the end a person may find
    # only units they have already judged)
    assert sum(per_person.values()) == 24
    assert min(per_person.values()) >= 6

    records = judgments(store, campaign.id)
    assert len(records) == 24
    per_unit = Counter((j.item_id, j.model) for j in records)
    assert set(per_unit.values()) == {2} and len(per_unit) == 12
    assert len({(j.participant, j.item_id, j.model) for j in records}) == 24  # never twice
    with db.read(store) as conn:
        answer_ids = {
            (r.item_id, r.model): r.id
            for r in conn.execute(select(db.answers).where(db.answers.c.campaign_id == campaign.id))
        }
        outputs = {
            (r.item_id, r.model): r.output
            for r in conn.execute(select(db.answers).where(db.answers.c.campaign_id == campaign.id))
        }
    for j in records:
        r = given[(j.participant, answer_ids[(j.item_id, j.model)])]
        assert (j.thumbs, j.likert, j.tags) == (r.thumbs, r.likert, r.tags)
        assert j.comment == r.comment
        expected = None if r.correction in (None, outputs[(j.item_id, j.model)]) else r.correction
        assert j.correction == expected
        assert j.output == outputs[(j.item_id, j.model)]
        assert j.mode == "review" and j.position is None and j.arena_outcome is None
        failure = (not r.thumbs) or r.likert <= 2 or bool(r.tags) or expected is not None
        assert j.is_failure == failure
    assert len(failure_cases(store, campaign.id)) == sum(j.is_failure for j in records)

    # exports hold the same records
    lines = [json.loads(x) for x in to_jsonl(records).splitlines()]
    assert [x["likert"] for x in lines] == [j.likert for j in records]
    table = list(csv.DictReader(io.StringIO(to_csv(records))))
    assert [row["participant"] for row in table] == [j.participant for j in records]
    assert [row["tags"] for row in table] == [";".join(j.tags) for j in records]
    assert [row["is_failure"] == "True" for row in table] == [j.is_failure for j in records]

    summary = campaign_summary(store, campaign.id, n_boot=200)
    stored = store.get_artifact("feedback", campaign.id)
    assert stored is not None and stored.payload == summary.model_dump(mode="json")
    assert summary.coverage.units_complete == 12 and summary.coverage.judged_per_unit == {"2": 12}
    for mr in summary.model_ratings:
        mine = [j for j in records if j.model == mr.model]
        assert mr.likert_mean is not None and mr.thumbs_up is not None
        assert mr.likert_mean.value == pytest.approx(np.mean([j.likert for j in mine]))
        assert mr.likert_mean.ci_low <= mr.likert_mean.value <= mr.likert_mean.ci_high  # type: ignore[operator]
        assert mr.thumbs_up.value == pytest.approx(np.mean([j.thumbs for j in mine]))
        assert [lv.count for lv in mr.likert] == [
            sum(j.likert == k for j in mine) for k in range(1, 6)
        ]
    # agreement against statsmodels (Fleiss) and the krippendorff package, on data rebuilt here
    krippendorff = pytest.importorskip("krippendorff")
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    likert = next(a for a in summary.agreement if a.question == "likert")
    units = sorted(per_unit)
    table_counts = np.zeros((len(units), 5))
    raters = ["ann", "bob", "cy"]
    reliability = np.full((3, len(units)), np.nan)
    for j in records:
        u = units.index((j.item_id, j.model))
        table_counts[u, (j.likert or 0) - 1] += 1
        reliability[raters.index(j.participant), u] = j.likert
    assert likert.fleiss_kappa == pytest.approx(inter_rater.fleiss_kappa(table_counts))
    assert likert.krippendorff_alpha is not None
    assert likert.krippendorff_alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=reliability, level_of_measurement="ordinal")
    )
    assert {p.name: p.judgments for p in summary.participants} == per_person


def _judge_arena(rng: random.Random, strength: dict[str, float], names_by_answer: dict[int, str]):  # type: ignore[no-untyped-def]
    """Participants that prefer the stronger model, except 'lefty' who always picks left."""

    def rate(p, task):  # type: ignore[no-untyped-def]
        left, right = (names_by_answer[a.answer_id] for a in task.answers)
        if p.name == "lefty":
            choice = "left"
        else:
            prob = 1 / (1 + math.exp(strength[right] - strength[left]))
            u = rng.random()
            choice = (
                "left"
                if u < 0.8 * prob
                else "right"
                if u < 0.8
                else rng.choice(["tie", "both_bad"])
            )
        return Submission(
            assignment_id=task.assignment_id,
            choice=choice,
            comment="meh",
            answers=[AnswerRating(), AnswerRating(tags=["formatting"])],
        )

    return rate


def test_arena_sides_ranking_and_position_bias(store: Store) -> None:
    campaign = create_campaign(
        store,
        config(
            "arena", n_models=3, n_prompts=8, questions=["comment", "tags"], overlap=4, pairs="all"
        ),
    )
    generate_answers(store, campaign)
    with db.read(store) as conn:
        names_by_answer = {
            int(r.id): r.model
            for r in conn.execute(select(db.answers).where(db.answers.c.campaign_id == campaign.id))
        }
    # far apart, so that the order survives the random sides and the always-left participant
    rate = _judge_arena(random.Random(1), {"m0": 4.0, "m1": 0.0, "m2": -4.0}, names_by_answer)
    _rate_all_round_robin(store, campaign.id, ["ann", "bob", "cy", "lefty"], rate)
    records = judgments(store, campaign.id)
    assert len(records) == 8 * 3 * 4 * 2  # prompts x pairs x overlap x two answers

    # the side each model was shown on is recorded per battle and drawn at random
    with db.read(store) as conn:
        rows = conn.execute(
            select(
                db.assignments.c.left_model,
                db.units.c.model_a,
                db.units.c.model_b,
                db.participants.c.name,
                db.units.c.item_id,
            )
            .join(db.units, db.units.c.id == db.assignments.c.unit_id)
            .join(db.participants, db.participants.c.id == db.assignments.c.participant_id)
            .where(db.assignments.c.campaign_id == campaign.id)
        ).all()
    assert len(rows) == 96
    first_left = sum(r.left_model == r.model_a for r in rows)
    assert 20 < first_left < 76  # binomial(96, 1/2): both sides occur
    left_of = {(r.name, r.item_id, r.model_a, r.model_b): r.left_model for r in rows}
    battles = {}
    for j in records:
        a, b = sorted((j.model, j.opponent or ""))
        key = (j.participant, j.item_id, a, b)
        assert (j.position == 0) == (left_of[key] == j.model)
        battles.setdefault(key, {})[j.position] = j
    for pair in battles.values():
        left, right = pair[0], pair[1]
        assert (left.model, left.opponent) == (right.opponent, right.model)
        assert {
            ("win", "loss"): 1,
            ("loss", "win"): 1,
            ("tie", "tie"): 1,
            ("both_bad", "both_bad"): 1,
        }[
            (left.arena_outcome, right.arena_outcome)  # type: ignore[index]
        ]
        assert left.comment == right.comment == "meh"

    summary = campaign_summary(store, campaign.id, n_boot=100)
    assert summary.ranking is not None and summary.position_bias is not None
    assert [e.model for e in summary.ranking.entries] == ["m0", "m1", "m2"]

    # Bradley-Terry as FastChat's compute_mle_elo fits it (scikit-learn logistic regression)
    from sklearn.linear_model import LogisticRegression

    models = ["m0", "m1", "m2"]
    x_rows, y, w = [], [], []
    for pair in battles.values():
        left, right = pair[0], pair[1]
        row = np.zeros(3)
        row[models.index(left.model)], row[models.index(right.model)] = math.log(10), -math.log(10)
        win = {"win": 1.0, "loss": 0.0}.get(left.arena_outcome or "", 0.5)
        x_rows += [row, row]
        y += [1.0, 0.0]
        w += [win, 1.0 - win]
    lam = summary.ranking.l2
    lr = LogisticRegression(
        fit_intercept=False, C=1 / (lam * math.log(10) ** 2), tol=1e-12, max_iter=10_000
    )
    lr.fit(np.array(x_rows), np.array(y), sample_weight=np.array(w))
    elo = 400 * (lr.coef_[0] - lr.coef_[0].mean()) + 1000
    got = {e.model: e.rating for e in summary.ranking.entries}
    for m, value in zip(models, elo, strict=True):
        assert got[m] == pytest.approx(value, abs=1e-3)

    # position bias from the recorded sides: 'lefty' pushes left wins above one half
    decisive = [p for p in battles.values() if p[0].arena_outcome in ("win", "loss")]
    left_wins = sum(p[0].arena_outcome == "win" for p in decisive)
    assert (summary.position_bias.decisive, summary.position_bias.left_wins) == (
        len(decisive),
        left_wins,
    )
    lefty = next(p for p in summary.participants if p.name == "lefty")
    assert lefty.left_rate == 1.0
    arena_agreement = next(a for a in summary.agreement if a.question == "arena")
    assert arena_agreement.units == 24 and arena_agreement.raters == 4


def test_concurrent_participants_never_exceed_the_overlap(store: Store) -> None:
    campaign = create_campaign(
        store, config("review", n_prompts=4, questions=["likert"], overlap=2)
    )
    generate_answers(store, campaign)
    people = [invite(store, campaign.id, f"p{k}").participant for k in range(8)]
    taken: list[int] = []
    errors: list[BaseException] = []

    def work(p) -> None:  # type: ignore[no-untyped-def]
        try:
            while (task := next_task(store, campaign, p)) is not None:
                taken.append(task.unit_id)
                submit(
                    store,
                    campaign,
                    p,
                    Submission(assignment_id=task.assignment_id, answers=[AnswerRating(likert=3)]),
                )
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(p,)) for p in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(Counter(taken).values()) == [2] * 8  # 8 units, each judged exactly twice


def test_skip_cap_and_validation(store: Store) -> None:
    campaign = create_campaign(
        store,
        config(
            "review",
            n_models=1,
            n_prompts=3,
            questions=["thumbs", "likert"],
            overlap=1,
            per_participant=2,
        ),
    )
    generate_answers(store, campaign)
    ann = invite(store, campaign.id, "ann").participant
    first = next_task(store, campaign, ann)
    assert first is not None
    assert next_task(store, campaign, ann) == first  # an unfinished one comes back
    with pytest.raises(RatingError, match="likert"):
        submit(
            store,
            campaign,
            ann,
            Submission(assignment_id=first.assignment_id, answers=[AnswerRating(thumbs=True)]),
        )
    with pytest.raises(RatingError, match="does not ask"):
        submit(
            store,
            campaign,
            ann,
            Submission(
                assignment_id=first.assignment_id,
                answers=[AnswerRating(thumbs=True, likert=2, comment="x")],
            ),
        )
    skip_task(store, ann, first.assignment_id)
    second = next_task(store, campaign, ann)
    assert second is not None and second.unit_id != first.unit_id
    submit(
        store,
        campaign,
        ann,
        Submission(
            assignment_id=second.assignment_id, answers=[AnswerRating(thumbs=False, likert=1)]
        ),
    )
    third = next_task(store, campaign, ann)
    assert third is not None
    submit(
        store,
        campaign,
        ann,
        Submission(
            assignment_id=third.assignment_id, answers=[AnswerRating(thumbs=True, likert=5)]
        ),
    )
    assert next_task(store, campaign, ann) is None  # per_participant=2 reached
    # a skipped unit goes to someone else
    bob = invite(store, campaign.id, "bob").participant
    task = next_task(store, campaign, bob)
    assert task is not None and task.unit_id == first.unit_id


def test_campaigns_are_isolated(store: Store) -> None:
    a = create_campaign(store, config("review", n_prompts=2, questions=["likert"]))
    cfg_b = config("review", n_prompts=2, questions=["likert"]).model_copy(update={"name": "other"})
    b = create_campaign(store, cfg_b)
    generate_answers(store, a)
    generate_answers(store, b)
    ann_a = invite(store, a.id, "ann").participant
    ann_b = invite(store, b.id, "ann").participant  # the same name in another campaign
    task_b = next_task(store, b, ann_b)
    assert task_b is not None
    with pytest.raises(WhetstoneError):
        get_task(store, ann_a, task_b.assignment_id)
    with pytest.raises(WhetstoneError):
        submit(
            store,
            a,
            ann_a,
            Submission(assignment_id=task_b.assignment_id, answers=[AnswerRating(likert=4)]),
        )
    with pytest.raises(WhetstoneError):
        next_task(store, b, ann_a)
    submit(
        store,
        b,
        ann_b,
        Submission(assignment_id=task_b.assignment_id, answers=[AnswerRating(likert=4)]),
    )
    assert judgments(store, a.id) == []
    assert len(judgments(store, b.id)) == 1
    with pytest.raises(WhetstoneError, match="is taken; pick another name"):
        create_campaign(store, cfg_b)


def test_generation_resumes_and_reuses_the_cache(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from whetstone.models.fake import FakeModel

    calls: list[int] = []
    original = FakeModel.generate

    def counting(self, requests, progress=None):  # type: ignore[no-untyped-def]
        calls.append(len(requests))
        return original(self, requests, progress)

    monkeypatch.setattr(FakeModel, "generate", counting)
    items = [{"id": f"x{i}", "prompt": f"Question number {i}?"} for i in range(16)]
    cfg = config("review", n_models=1, questions=["likert"], prompts={"items": items})
    campaign = create_campaign(store, cfg)
    stops = iter([False, True])
    assert generate_answers(store, campaign, should_stop=lambda: next(stops, True)) == 8
    assert answer_progress(store, campaign)[0].pending == 8  # interrupted after one chunk
    assert generate_answers(store, campaign) == 8  # resumed: only the rest
    assert sum(calls) == 16
    again = create_campaign(store, cfg.model_copy(update={"name": "again"}))
    assert generate_answers(store, again) == 16
    assert sum(calls) == 16  # every answer came from the response cache


def test_unloadable_model_fails_its_answers_and_can_retry(store: Store) -> None:
    cfg = config("review", n_models=1, n_prompts=2, questions=["likert"])
    cfg = cfg.model_copy(update={"models": [cfg.models[0].model_copy(update={"spec": "fake:x"})]})
    campaign = create_campaign(store, cfg)
    assert generate_answers(store, campaign) == 0
    progress = answer_progress(store, campaign)[0]
    assert progress.failed == 2 and "expected fake[:SEED" in (progress.error or "")
    ann = invite(store, campaign.id, "ann").participant
    assert next_task(store, campaign, ann) is None  # nothing to judge without answers
    assert retry_failed(store, campaign) == 2
    assert answer_progress(store, campaign)[0].pending == 2


def test_chat_turns_are_streamed_stored_and_rated(store: Store) -> None:
    cfg = config(
        "chat",
        questions=["thumbs", "comment"],
        generation={"max_new_tokens": 16, "system_prompt": "Be brief."},
    )
    campaign = create_campaign(store, cfg)
    pool = ModelPool()
    ann = invite(store, campaign.id, "ann").participant
    bob = invite(store, campaign.id, "bob").participant
    conv_a = chat.start_conversation(store, campaign, ann)
    conv_b = chat.start_conversation(store, campaign, bob)
    with db.read(store) as conn:
        models = dict(conn.execute(select(db.conversations.c.id, db.conversations.c.model)).all())
    assert {models[conv_a], models[conv_b]} == {"m0", "m1"}  # balanced over the models

    pending = chat.begin_turn(store, campaign, ann, conv_a, "  How do I sync?  ")
    assert pending.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I sync?"},
    ]
    loaded = pool.get(campaign.config.model(pending.model))
    pieces = list(stream_reply(loaded, campaign.config.generation, pending.messages))
    reference = load_model("fake:0" if pending.model == "m0" else "fake:1")
    prompt = reference.chat_prompt(pending.messages)
    expected = reference.generate(
        [GenerationRequest(prompt=prompt, max_new_tokens=16, stop=("\nuser:",))]
    )[0]
    assert "".join(pieces) == expected
    assignment = chat.finish_turn(
        store, campaign, ann, pending, "".join(pieces), loaded.model.identity.key
    )
    with pytest.raises(WhetstoneError, match="rate the last answer"):
        chat.begin_turn(store, campaign, ann, conv_a, "next question")
    with pytest.raises(WhetstoneError):
        chat.begin_turn(store, campaign, bob, conv_a, "not my conversation")
    submit(
        store,
        campaign,
        ann,
        Submission(
            assignment_id=assignment, answers=[AnswerRating(thumbs=False, comment="too long")]
        ),
    )
    second = chat.begin_turn(store, campaign, ann, conv_a, "And on the phone?")
    assert second.turn == 2 and second.messages[2] == {"role": "assistant", "content": expected}
    records = judgments(store, campaign.id)
    assert len(records) == 1
    (j,) = records
    assert (j.mode, j.participant, j.thumbs, j.output) == ("chat", "ann", False, expected)
    assert j.prompt.endswith("user: How do I sync?") and j.is_failure
    conversation = chat.latest_conversation(store, ann)
    assert conversation is not None and [t.rated for t in conversation.turns] == [True]


def test_pairs_rotate_evenly_over_items(store: Store) -> None:
    campaign = create_campaign(
        store, config("arena", n_models=3, n_prompts=6, questions=["comment"])
    )
    with db.read(store) as conn:
        pairs = Counter(
            tuple(r)
            for r in conn.execute(
                select(db.units.c.model_a, db.units.c.model_b).where(
                    db.units.c.campaign_id == campaign.id
                )
            )
        )
    assert pairs == {p: 2 for p in itertools.combinations(["m0", "m1", "m2"], 2)}
    with db.read(store) as conn:
        answers = conn.execute(
            select(db.answers.c.id).where(db.answers.c.campaign_id == campaign.id)
        ).all()
    assert len(answers) == 12  # only the two models of each item's battle are generated
