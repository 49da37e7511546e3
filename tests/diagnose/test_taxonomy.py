"""The taxonomy contract: seed categories, rules, user files and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from whetstone.diagnose import load_taxonomy
from whetstone.diagnose.schema import Observation
from whetstone.errors import ConfigError

SEED = ["semantic", "syntactic", "factual", "reasoning", "formatting"]


def _obs(**fields: object) -> Observation:
    base: dict[str, object] = {
        "uid": "r:t:1",
        "source": "sample",
        "origin": "r",
        "task": "t",
        "kind": "generation",
        "item_id": "1",
        "failed": True,
    }
    return Observation.model_validate({**base, **fields})


def test_seed_taxonomy_names_and_descriptions() -> None:
    tax = load_taxonomy()
    assert tax.names() == SEED
    assert all(c.description and c.rules for c in tax.categories)
    assert tax.resolve("Knowledge") == "factual"
    assert tax.resolve("factual/knowledge") == "factual"
    assert tax.resolve("nonsense") is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"detectors": ["empty"]}, ["formatting"]),
        ({"detectors": ["repetition"]}, ["syntactic"]),
        ({"detectors": ["label_confusion"], "kind": "classification"}, ["semantic"]),
        ({"detectors": ["numeric_mismatch"], "prompt": "What is 17 + 25?"}, ["reasoning"]),
        (
            {"detectors": ["numeric_mismatch"], "prompt": "In what year was Rome founded?"},
            ["factual"],
        ),
        ({"comment": "This is a hallucination, the setting does not exist"}, ["factual"]),
        ({"metrics": {"token_f1": 0.05}}, ["semantic"]),
        ({"metrics": {"token_f1": 0.5}}, []),
        ({"detectors": ["wrong_language", "truncated"]}, ["syntactic", "formatting"]),
    ],
)
def test_seed_rules_assign(fields: dict[str, object], expected: list[str]) -> None:
    assert load_taxonomy().assign(_obs(**fields)) == expected


def test_user_taxonomy_extends_default(tmp_path: Path) -> None:
    path = tmp_path / "tax.yaml"
    path.write_text(
        "extends: default\n"
        "categories:\n"
        "  - name: made_up_api\n"
        "    description: names a function that does not exist\n"
        "    rules:\n"
        "      - output: 'settings\\.\\w+\\('\n"
        "        task: [support_*]\n"
        "  - name: formatting\n"
        "    description: only empty answers\n"
        "    rules: [{detector: empty}]\n"
    )
    tax = load_taxonomy(path)
    assert tax.names() == [*SEED, "made_up_api"]
    assert tax.get("formatting").description == "only empty answers"
    hit = _obs(task="support_qa", output="call settings.sync(True)")
    assert tax.assign(hit) == ["made_up_api"]
    assert tax.assign(hit.model_copy(update={"task": "other"})) == []
    assert tax.assign(_obs(detectors=["truncated"])) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "categories:\n  - name: a\n    description: d\n    colour: red\n",
            "tax.yaml:4: field 'categories[0].colour': unknown key 'colour'",
        ),
        (
            "categories:\n  - name: a\n    description: d\n    rules:\n      - detector: nope\n",
            "tax.yaml:5: field 'categories[0].rules[0].detector': unknown detector 'nope'",
        ),
        (
            "categories:\n  - name: a\n    description: d\n    rules:\n"
            "      - output: '(unclosed'\n",
            "tax.yaml:5: field 'categories[0].rules[0].output': invalid regular expression",
        ),
        (
            "categories:\n  - name: Bad Name\n    description: d\n",
            "tax.yaml:2: field 'categories[0].name': category name 'Bad Name'",
        ),
        ("categories:\n  - name: a\n", "tax.yaml:2: field 'categories[0].description': required"),
        (
            "categories:\n  - name: a\n    description: d\n    aliases: [b]\n"
            "  - name: b\n    description: e\n",
            "already a name or alias",
        ),
        ("categories: [\n", "tax.yaml:2: invalid YAML"),
        ("- a\n", "expected a mapping"),
    ],
)
def test_bad_taxonomy_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tax.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_taxonomy(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_taxonomy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="taxonomy file not found"):
        load_taxonomy(tmp_path / "none.yaml")
