"""diagnose end to end with the fake model: files, artifact, HTML, CLI, bad input, feedback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import whetstone
from whetstone.cli.main import app
from whetstone.diagnose import DiagnoseOptions, Diagnosis, diagnose, render_html_section
from whetstone.diagnose.analysis import diagnose_observations
from whetstone.diagnose.failures import observations_from_feedback
from whetstone.diagnose.taxonomy import JudgeSpec, load_taxonomy
from whetstone.models.fake import FakeModel
from whetstone.records import FeedbackJudgment
from whetstone.store import Store

from .test_clusters import hashing_embed

EXAMPLES = Path(whetstone.__file__).parent / "data" / "examples"
FAST = {"min_slice_size": 10, "keywords": 10}


@pytest.fixture(scope="module")
def example_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A database holding one run of the fake model on the example suite."""
    url = f"sqlite:///{tmp_path_factory.mktemp('diagnose') / 'db.sqlite'}"
    ev = whetstone.evaluate("fake", [EXAMPLES / "suite.yaml"], db=url)
    return url, ev.result.run_id


def test_diagnose_run_writes_and_stores(example_db: tuple[str, str], tmp_path: Path) -> None:
    url, run_id = example_db
    out = tmp_path / "out"
    result = diagnose(
        [run_id[:6]],
        db=url,
        tasks=[EXAMPLES / "suite.yaml"],
        out_dir=out,
        options=DiagnoseOptions(**FAST),
        embed=hashing_embed,
    )
    store = Store(url)
    samples = store.get_samples(run_id)
    # failures recounted from the samples' own metrics
    wrong = sum(
        s.metrics.get("acc", 1) == 0
        or s.metrics.get("accuracy", 1) == 0
        or s.metrics.get("token_f1", 1) < 0.5
        for s in samples
    )
    docs = np.array([s.metrics["bits_per_byte"] for s in samples if s.task == "support_docs"])
    wrong += int((docs > np.percentile(docs, 90)).sum())
    assert result.inputs.failures == wrong
    assert result.inputs.observations == len(samples)
    assert result.key == run_id and result.inputs.runs == [run_id]
    # the files hold exactly the result, and the store holds it with the run as ref
    on_disk = Diagnosis.model_validate_json((out / "diagnosis.json").read_text())
    assert on_disk == result
    artifact = store.get_artifact("diagnosis", run_id)
    assert artifact is not None and artifact.refs == [run_id]
    assert Diagnosis.model_validate(artifact.payload) == result
    raw = json.loads((out / "diagnosis.json").read_text())
    for c in raw["categories"]:
        assert {"name", "count", "share", "examples"} <= set(c)
    for s in raw["slices"]:
        assert {"description", "size", "metric_value", "rest_value", "p_adjusted"} <= set(s)
    # categories: the rules' assignments recounted
    tax = load_taxonomy()
    by_name = {c.name: c for c in result.categories}
    assert list(by_name) == tax.names()
    assert by_name["semantic"].count == sum(
        1 for s in samples if s.task == "support_intents" and s.metrics["accuracy"] == 0
    ) + sum(1 for s in samples if s.task == "support_qa" and s.metrics["token_f1"] < 0.2)
    # the fake model answers 'billing' to everything: the confused pairs say so
    pairs = [p for p in result.confused_pairs if p.task == "support_intents"]
    assert pairs and all(p.predicted == "billing" for p in pairs)
    gold = [s.gold for s in samples if s.task == "support_intents"]
    for p in pairs:
        assert p.count == gold.count(p.gold)
    # the task files' own column 'topic' was sliced on
    assert any(a.endswith("topic") for a in result.slice_search.attributes)  # type: ignore[union-attr]


def test_two_runs_of_one_task(tmp_path: Path) -> None:
    """Two models on the same task: the run is a slice attribute; a repeated id counts once."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    task = EXAMPLES / "support_intents.yaml"
    a = whetstone.evaluate("fake:0", [task], db=url).result.run_id
    b = whetstone.evaluate("fake:1", [task], db=url).result.run_id
    result = diagnose(
        [a, b, a[:6]],
        db=url,
        save=False,
        options=DiagnoseOptions(clusters=False, topics=False, min_slice_size=10),
    )
    assert result.inputs.runs == [a, b]
    assert result.inputs.observations == 240 and result.inputs.tasks["support_intents"]["n"] == 240
    assert sorted(result.slice_search.attributes["run"]) == sorted([a, b])  # type: ignore[union-attr]


def _self_contained(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "<script" not in html and "@import" not in html


def test_html_section_and_page(example_db: tuple[str, str], tmp_path: Path) -> None:
    url, run_id = example_db
    before = Store(url).get_artifact("diagnosis", run_id)
    result = diagnose(
        [run_id],
        db=url,
        out_dir=tmp_path,
        options=DiagnoseOptions(**FAST),
        embed=hashing_embed,
        save=False,
    )
    section = render_html_section(result)
    assert section.startswith('<section class="ws-diagnosis">') and section.endswith("</section>")
    _self_contained(section)
    page = (tmp_path / "diagnosis.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and section.split("\n", 3)[1] in page
    _self_contained(page)
    for c in result.categories:
        assert f"<b>{c.name}</b>" in section
    assert "Weak slices" in section and "Error categories" in section
    assert Store(url).get_artifact("diagnosis", run_id) == before  # save=False stores nothing


def test_html_escapes_what_the_data_says() -> None:
    judgments = [
        j.model_copy(update={"output": '<img src=x onerror="alert(1)">', "comment": "<b>bad"})
        if j.is_failure
        else j
        for j in _judgments(120)
    ]
    result = diagnose_observations(
        observations_from_feedback(judgments), options=DiagnoseOptions(clusters=False, topics=False)
    )
    html = render_html_section(result)
    assert "<img" not in html and "&lt;img src=x" in html and "&lt;b&gt;bad" in html
    _self_contained(html)


def test_cli_diagnose(example_db: tuple[str, str], tmp_path: Path) -> None:
    url, run_id = example_db
    out = tmp_path / "cli"
    res = CliRunner().invoke(
        app,
        [
            "diagnose",
            run_id[:5],
            "--db",
            url,
            "--out",
            str(out),
            "--no-clusters",
            "--no-topics",
            "--min-slice-size",
            "10",
            "-t",
            str(EXAMPLES / "suite.yaml"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "error categories" in res.output and f"diagnosis {run_id}" in res.output
    result = Diagnosis.model_validate_json((out / "diagnosis.json").read_text())
    assert result.clusters == [] and (out / "diagnosis.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no run with id or prefix 'nope'"),
        ([], "give at least one run id or a feedback campaign"),
        (["RUN", "--taxonomy", "missing.yaml"], "missing.yaml: taxonomy file not found"),
        (["RUN", "--fail-when", "f1 = 3"], "failure criterion 'f1 = 3'"),
        (["RUN", "--fail-when", "rouge<0.2"], "no task has that metric"),
        (["RUN", "--fdr", "2"], "--fdr"),
        (["RUN", "--judge-method", "vote"], "--judge-method"),
        (["RUN", "-t", "none.yaml"], "none.yaml: task file not found"),
    ],
)
def test_cli_bad_input(
    example_db: tuple[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    url, run_id = example_db
    args = [run_id if a == "RUN" else a for a in args]
    out = tmp_path / "never"
    res = CliRunner().invoke(app, ["diagnose", *args, "--db", url, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert message in res.output.replace("\n", " ")
    assert not out.exists()  # nothing half-written


def test_out_is_a_file(example_db: tuple[str, str], tmp_path: Path) -> None:
    url, run_id = example_db
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(
        app,
        ["diagnose", run_id, "--db", url, "--out", str(blocker), "--no-clusters", "--no-topics"],
    )
    assert res.exit_code == 2 and "not a folder" in res.output
    assert blocker.read_text() == "x"


def _judgments(n: int = 240) -> list[FeedbackJudgment]:
    """Review judgments where model version v2 gets thumbs down far more often than v1."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        version = "v2" if i % 3 == 0 else "v1"
        bad = rng.random() < (0.7 if version == "v2" else 0.2)
        tag = ["factual"] if bad and i % 2 else (["reasoning"] if bad else [])
        out.append(
            FeedbackJudgment(
                campaign="camp",
                mode="review",
                item_id=f"q{i % 60}",
                participant=f"p{i % 4}",
                model="assistant",
                model_version=version,
                prompt=f"Question {i % 60}: how do I {['sync', 'export', 'share'][i % 3]} notes?",
                output="Open settings." if bad else "Use the share button in the toolbar.",
                thumbs=not bad,
                comment="wrong menu name" if bad else None,
                tags=tag,
            )
        )
    return out


def test_feedback_judgments_in_core_functions() -> None:
    judgments = _judgments()
    obs = observations_from_feedback(judgments)
    options = DiagnoseOptions(
        min_slice_size=20, judge=JudgeSpec(model="fake", max_failures=40), topics=False
    )
    result = diagnose_observations(
        obs, options=options, judge_model=FakeModel(seed=2), embed=hashing_embed
    )
    assert result.inputs.failures == sum(j.is_failure for j in judgments)
    top = result.slices[0]
    assert top.description in ("model = assistant@v2", "mentions 'sync'")  # v2 answers 'sync'
    assert any(s.description == "model = assistant@v2" and s.significant for s in result.slices)
    assert result.judge is not None and result.judge.judged == 40
    agreement = result.judge.agreement
    assert agreement is not None and agreement.n == 40  # tagged failures are judged first
    by_name = {c.name: c for c in result.categories}
    assert by_name["factual"].by_judge + by_name["reasoning"].by_judge <= 40
    # 'wrong menu name' matches no seed rule, so rules assign nothing; the judge assigns 40
    assert result.uncategorized == result.inputs.failures - 40
    html = render_html_section(result)
    assert "LLM judge" in html and "Agreement with human tags on 40 failures" in html


def test_feedback_campaign_through_the_studio(tmp_path: Path) -> None:
    """A real campaign: answers from fake models, ratings submitted, read by judgments()."""
    from sqlalchemy import select

    from whetstone.feedback import (
        AnswerRating,
        Submission,
        create_campaign,
        generate_answers,
        invite,
        judgments,
        next_task,
        parse_config,
        submit,
    )
    from whetstone.feedback import db as fdb

    store = Store(f"sqlite:///{tmp_path / 'fb.db'}")
    config = parse_config(
        {
            "name": "support-review",
            "mode": "review",
            "models": [{"spec": "fake:0", "name": "m0"}, {"spec": "fake:1", "name": "m1"}],
            "generation": {"max_new_tokens": 12},
            "questions": ["thumbs", "comment", "tags"],
            "overlap": 1,
            "prompts": {
                "items": [{"id": f"q{i}", "prompt": f"How do I do task {i}?"} for i in range(30)]
            },
        }
    )
    campaign = create_campaign(store, config)
    generate_answers(store, campaign)
    with fdb.read(store) as conn:
        model_of = dict(conn.execute(select(fdb.answers.c.id, fdb.answers.c.model)).all())
    people = [invite(store, campaign.id, name).participant for name in ("ann", "bob")]
    for p in people:
        while (task := next_task(store, campaign, p)) is not None:
            answer = task.answers[0].answer_id
            bad = model_of[answer] == "m1" or answer % 7 == 0  # m1 is the weak model
            rating = AnswerRating(thumbs=not bad, tags=["formatting"] if bad else [])
            submit(
                store, campaign, p, Submission(assignment_id=task.assignment_id, answers=[rating])
            )
    records = judgments(store, campaign.id)
    result = diagnose(
        [],
        feedback=[campaign.id],
        db=store,
        options=DiagnoseOptions(min_slice_size=10),
        embed=hashing_embed,
    )
    assert result.inputs.campaigns == [campaign.id]
    assert result.inputs.observations == len(records) == 60
    assert result.inputs.failures == sum(j.is_failure for j in records)
    assert Store(store.url).get_artifact("diagnosis", f"feedback:{campaign.id}") is not None
    weak = next(s for s in result.slices if s.description.startswith("model = m1"))
    assert weak.significant and weak.size == 30
    assert weak.failures == sum(j.is_failure for j in records if j.model == "m1")
    formatting = next(c for c in result.categories if c.name == "formatting")
    assert formatting.count == 0  # the seed rules do not read tags; the judge did not run
