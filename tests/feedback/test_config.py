"""Campaign files: validation errors name the file, line and field; prompt sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from whetstone.errors import ConfigError, DataError
from whetstone.feedback import create_campaign, load_config
from whetstone.feedback.config import parse_config
from whetstone.feedback.prompts import load_prompts
from whetstone.store import Store
from whetstone.tasks import load_tasks

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "whetstone" / "data" / "examples"


def write(tmp_path: Path, text: str, name: str = "campaign.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_names_file_line_and_known_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: c\nmode: review\nmodels:\n  - spec: fake\n    tempreature: 1\n"
        "prompts: {items: [{prompt: hi}]}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:5: field 'models[0].tempreature': unknown key 'tempreature'")
    assert "expected one of: spec, name, base_url" in message


def test_misspelt_top_level_key_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "name: c\nmode: review\nmodels: [{spec: fake}]\noverlapp: 3\n")
    with pytest.raises(
        ConfigError,
        match=r":4: field 'overlapp': unknown key 'overlapp' \(did you mean 'overlap'\?",
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"mode": "arena", "models": [{"spec": "fake"}]}, "arena needs at least two models"),
        ({"mode": "review", "models": [{"spec": "fake"}]}, "needs 'prompts'"),
        ({"mode": "vote", "models": [{"spec": "fake"}]}, "field 'mode'"),
        (
            {"mode": "chat", "models": [{"spec": "fake"}, {"spec": "fake:1", "name": "fake"}]},
            "used twice",
        ),
        (
            {"mode": "chat", "models": [{"spec": "fake"}], "questions": ["stars"]},
            "field 'questions[0].type'",
        ),
        ({"mode": "chat", "models": [{"spec": "fake"}], "overlap": 0}, "field 'overlap'"),
        (
            {
                "mode": "review",
                "models": [{"spec": "fake"}],
                "prompts": {"jsonl": "a", "task": "b"},
            },
            "exactly one of",
        ),
    ],
)
def test_invalid_campaigns_are_refused_in_one_line(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"name": "c", **raw})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_default_questions_per_mode() -> None:
    review = parse_config(
        {
            "name": "r",
            "mode": "review",
            "models": [{"spec": "fake"}],
            "prompts": {"items": [{"prompt": "x"}]},
        }
    )
    arena = parse_config(
        {
            "name": "a",
            "mode": "arena",
            "models": [{"spec": "fake"}, {"spec": "fake:1"}],
            "prompts": {"items": [{"prompt": "x"}]},
        }
    )
    assert [q.type for q in review.questions] == ["thumbs", "likert", "comment", "tags"]
    assert [q.type for q in arena.questions] == ["comment"]
    assert review.question("likert").is_required and not review.question("comment").is_required  # type: ignore[union-attr]


def test_jsonl_prompts_and_their_errors(tmp_path: Path) -> None:
    write(
        tmp_path,
        '{"id": 7, "question": "Why?", "answer": ["Because."]}\n\n{"question": "How?"}\n',
        "p.jsonl",
    )
    cfg = parse_config(
        {
            "name": "j",
            "mode": "review",
            "models": [{"spec": "fake"}],
            "prompts": {
                "jsonl": "p.jsonl",
                "prompt_field": "question",
                "reference_field": "answer",
            },
        }
    )
    items = load_prompts(cfg.prompts, tmp_path)  # type: ignore[arg-type]
    assert [(i.item_id, i.prompt, i.reference) for i in items] == [
        ("7", "Why?", "Because."),
        ("1", "How?", None),
    ]
    write(tmp_path, '{"question": "ok"}\n{"text": "no prompt"}\n', "bad.jsonl")
    bad = cfg.prompts.model_copy(update={"jsonl": "bad.jsonl"})  # type: ignore[union-attr]
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'question' missing or empty"):
        load_prompts(bad, tmp_path)
    write(tmp_path, '{"question": "a", "id": 1}\n{"question": "b", "id": 1}\n', "dup.jsonl")
    with pytest.raises(DataError, match="occurs twice"):
        load_prompts(cfg.prompts.model_copy(update={"jsonl": "dup.jsonl"}), tmp_path)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="not found"):
        load_prompts(cfg.prompts.model_copy(update={"jsonl": "missing.jsonl"}), tmp_path)  # type: ignore[union-attr]


def test_task_file_prompts_are_what_the_evaluation_sends(tmp_path: Path) -> None:
    from whetstone import evaluate

    cfg = parse_config(
        {
            "name": "t",
            "mode": "review",
            "models": [{"spec": "fake"}],
            "prompts": {
                "task": str(EXAMPLES / "suite.yaml"),
                "task_name": "support_qa",
                "limit": 5,
            },
        }
    )
    items = load_prompts(cfg.prompts)  # type: ignore[arg-type]
    task = next(t for t in load_tasks(EXAMPLES / "suite.yaml") if t.name == "support_qa")
    run = evaluate("fake", [task], limit=5, db=f"sqlite:///{tmp_path / 'eval.db'}")
    samples = [s for s in run.samples if s.task == "support_qa"]
    assert [(i.item_id, i.prompt) for i in items] == [(s.id, s.prompt) for s in samples]
    assert [i.reference for i in items] == [
        s.gold if isinstance(s.gold, str) else s.gold[0] for s in samples
    ]
    with pytest.raises(ConfigError, match="name one"):
        load_prompts(cfg.prompts.model_copy(update={"task_name": None}))  # type: ignore[union-attr]


def test_tags_come_from_a_taxonomy_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        "extends: default\ncategories:\n  - name: tone\n    description: Rude or cold.\n",
        "tax.yaml",
    )
    cfg = parse_config(
        {
            "name": "x",
            "mode": "chat",
            "models": [{"spec": "fake"}],
            "questions": ["tags"],
            "taxonomy": "tax.yaml",
        }
    )
    with Store(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        campaign = create_campaign(store, cfg, base_dir=tmp_path)
        assert campaign.config.categories == [
            "semantic",
            "syntactic",
            "factual",
            "reasoning",
            "formatting",
            "tone",
        ]
        own = cfg.model_copy(update={"name": "own", "categories": ["too long", "rude"]})
        assert create_campaign(store, own).config.categories == ["too long", "rude"]
