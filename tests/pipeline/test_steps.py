"""The loop with the other steps: error analysis of the baseline run, stored and reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.helpers import write_pipeline
from whetstone.errors import ConfigError
from whetstone.pipeline import load_pipeline, run_pipeline
from whetstone.report import write_report
from whetstone.store import Store

# no MiniLM clusters or topics: the analysis stays fast and needs no encoder
QUICK_DIAGNOSIS = {"clusters": False, "topics": False, "min_slice_size": 5}


def test_diagnosis_of_the_baseline_run_is_stored_reused_and_reported(tmp_path: Path) -> None:
    pytest.importorskip("whetstone.diagnose.analysis")
    from whetstone.diagnose import Diagnosis

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    config = load_pipeline(
        write_pipeline(tmp_path, limit=20, diagnose={"options": QUICK_DIAGNOSIS})
    )
    result = run_pipeline(config, store=store)
    [step] = result.steps
    assert step.kind == "diagnosis"
    row = store.get_artifact("diagnosis", step.key)
    assert row is not None and result.baseline.run_id in row.refs
    diagnosis = Diagnosis.model_validate(row.payload)
    # every wrong multiple-choice answer of the baseline run is a failure the analysis saw
    samples = store.get_samples(result.baseline.run_id or "", task="support_mc")
    wrong = sum(1 for s in samples if s.metrics["acc"] == 0)
    assert diagnosis.inputs.runs == [result.baseline.run_id]
    assert any(p.task == "support_intents" for p in diagnosis.confused_pairs)
    assert (config.workdir_path / "diagnosis" / "diagnosis.json").is_file()
    again = run_pipeline(config, store=store)
    assert "diagnose" in again.reused
    html, _ = write_report(store, again, tmp_path / "report.html")
    page = html.read_text(encoding="utf-8")
    section = page[page.index('<section id="diagnosis">') : page.index('<section id="audit">')]
    assert "ws-diagnosis" in section and "whetstone.diagnose.render_html_section" in section
    assert wrong > 0


def test_step_options_are_checked_by_the_step_before_any_work(tmp_path: Path) -> None:
    pytest.importorskip("whetstone.diagnose.analysis")
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    path = write_pipeline(tmp_path, diagnose={"options": {"clusterz": False}})
    with pytest.raises(ConfigError, match=r"diagnose\.options\.clusterz"):
        run_pipeline(load_pipeline(path), store=store)
    assert store.list_runs() == []


def rate_campaign(store: Store, campaign_id: str, people: list[str], thumbs_up: float) -> int:
    """Test participants judge every answer (thumbs up with a seeded probability)."""
    import random

    from whetstone.feedback import AnswerRating, Submission, get_campaign, invite, next_task, submit

    rng = random.Random(0)
    campaign = get_campaign(store, campaign_id)
    done = 0
    for name in people:
        person = invite(store, campaign.id, name).participant
        while (task := next_task(store, campaign, person)) is not None:
            rating = AnswerRating(thumbs=rng.random() < thumbs_up, likert=rng.randint(1, 5))
            submit(
                store,
                campaign,
                person,
                Submission(assignment_id=task.assignment_id, answers=[rating]),
            )
            done += 1
    return done


def test_feedback_campaign_is_summarized_diagnosed_and_reported(tmp_path: Path) -> None:
    pytest.importorskip("whetstone.feedback")
    from whetstone.feedback import create_campaign, generate_answers, judgments, parse_config

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    prompts = ["How do I share a notebook?", "Why did sync stop?", "Can I export a PDF?"]
    campaign = create_campaign(
        store,
        parse_config(
            {
                "name": "support-review",
                "mode": "review",
                "models": [{"spec": "fake", "name": "baseline"}],
                "prompts": {"items": [{"id": f"q{i}", "prompt": p} for i, p in enumerate(prompts)]},
                "questions": ["thumbs", "likert"],
                "overlap": 3,
                "generation": {"max_new_tokens": 8},
            }
        ),
    )
    generate_answers(store, campaign)
    assert rate_campaign(store, campaign.id, ["ann", "bob"], thumbs_up=0.3) == 6
    config = load_pipeline(
        write_pipeline(
            tmp_path,
            limit=10,
            feedback={"campaign": campaign.id},
            diagnose={"options": QUICK_DIAGNOSIS},
        )
    )
    result = run_pipeline(config, store=store)
    kinds = {s.kind: s.key for s in result.steps}
    assert kinds["feedback"] == campaign.id
    summary = store.get_artifact("feedback", campaign.id)
    assert summary is not None
    found = judgments(store, campaign.id)
    failures = sum(1 for j in found if j.is_failure)
    diagnosis = store.get_artifact("diagnosis", kinds["diagnosis"])
    assert diagnosis is not None and diagnosis.payload["inputs"]["campaigns"] == [campaign.id]
    fb_obs = diagnosis.payload["inputs"]
    assert failures > 0 and fb_obs["runs"] == [result.baseline.run_id]
    html, _ = write_report(store, result, tmp_path / "report.html")
    page = html.read_text(encoding="utf-8")
    section = page[page.index('<section id="feedback">') : page.index('<section id="diagnosis">')]
    assert "whetstone.feedback.render_html_section" in section
    # a new judgment changes the feedback stage's inputs: it runs again, the rest is reused
    assert rate_campaign(store, campaign.id, ["cy"], thumbs_up=0.3) == 3
    again = run_pipeline(config, store=store)
    assert "feedback" not in again.reused and "evaluate/baseline" in again.reused


def test_a_failed_optimization_fails_what_starts_from_it(tmp_path: Path) -> None:
    pytest.importorskip("whetstone.optimize")
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    missing = {"model": "minilm", "data": {"task": "no-such-task.yaml"}}
    config = load_pipeline(
        write_pipeline(
            tmp_path,
            limit=5,
            optimize=[
                {"name": "tuned", "method": "finetune", "config": missing},
                {"name": "small", "method": "quantize", "start_from": "tuned"},
            ],
        )
    )
    result = run_pipeline(config, store=store)
    errors = {c.name: c.error or "" for c in result.candidates}
    assert "no-such-task.yaml" in errors["tuned"]
    assert "starts from 'tuned', which failed" in errors["small"]
    failed = [s for s in result.stages if s.status == "failed"]
    assert [s.stage for s in failed] == ["optimize/tuned"]
    assert "db" not in failed[0].inputs["config"]  # store URLs (passwords) stay out of records
    # the attempt is marked in its output folder: a rerun with the same inputs may resume it
    marker = config.workdir_path / "optimize" / "tuned" / ".whetstone-stage"
    assert marker.read_text().strip() == failed[0].key
