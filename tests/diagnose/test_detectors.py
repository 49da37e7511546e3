"""Detectors that need no model: each fires on what it names and stays quiet otherwise."""

from __future__ import annotations

import pytest

from whetstone.diagnose.detectors import DETECTORS, TaskOutputs, detect, numbers, run_detectors
from whetstone.diagnose.schema import Observation


def _gen(
    output: str, reference: str | None = "Paris", text: str = "What is the capital?", **kw: object
) -> Observation:
    refs = [reference] if reference is not None else []
    return Observation(
        uid=f"r:qa:{abs(hash((output, reference)))}",
        source="sample",
        origin="r",
        task="qa",
        kind="generation",
        item_id="1",
        prompt=text,
        text=text,
        output=output,
        generated=True,
        reference=reference,
        references=refs,
        failed=True,
        **kw,  # type: ignore[arg-type]
    )


_PLAIN = TaskOutputs(max_words=40, generated=50, label_set=frozenset())


@pytest.mark.parametrize(
    ("output", "reference", "fires", "quiet"),
    [
        ("", "Paris", {"empty"}, {"refusal", "repetition", "length_mismatch"}),
        ("   \n", "Paris", {"empty"}, set()),
        ("I'm sorry, but I cannot help with that request.", "Paris", {"refusal"}, {"empty"}),
        ("As an AI language model, I do not have opinions.", "Paris", {"refusal"}, set()),
        ("Paris is the capital.", "Paris", set(), {"refusal", "empty", "repetition"}),
        ("the the the the the the the the the", "Paris", {"repetition"}, set()),
        (
            "Paris is nice. Paris is nice. Paris is nice. Paris is nice.",
            "Paris",
            {"repetition"},
            set(),
        ),
        ("hahahahahahahahaha", "ha", {"repetition"}, set()),
        ("It is 42.", "The answer is 41", {"numeric_mismatch"}, set()),
        ("It is 1,200 in total.", "1200", set(), {"numeric_mismatch", "format_failure"}),
        ("twelve", "12", set(), {"numeric_mismatch", "format_failure"}),
        ("I think it is a lot.", "$96", {"format_failure"}, set()),
        ('{"name": "x"', '{"name": "y"}', {"format_failure"}, set()),
        ('```json\n{"name": "x"}\n```', '{"name": "y"}', set(), {"format_failure"}),
        ("Paris " + "and many other words that go on " * 4, "Paris", {"length_mismatch"}, set()),
        ("Ok", "A long reference answer with many words in it", {"length_mismatch"}, set()),
    ],
)
def test_generation_detectors(
    output: str, reference: str, fires: set[str], quiet: set[str]
) -> None:
    verdicts = detect(_gen(output, reference), _PLAIN)
    fired = {k for k, v in verdicts.items() if v}
    assert fires <= fired
    assert not (quiet & fired)


def test_truncated_needs_the_task_limit() -> None:
    cut = "The sync icon shows a red mark when the app could not reach the server and"
    long_task = TaskOutputs(max_words=15, generated=20, label_set=frozenset())
    assert detect(_gen(cut, None), long_task)["truncated"] is True
    assert detect(_gen(cut + " stopped.", None), long_task)["truncated"] is False
    short = "The sync icon"
    assert detect(_gen(short, None), long_task)["truncated"] is False  # far below the limit


def test_wrong_language_with_langdetect() -> None:
    ref = "The meeting was moved to Thursday because the manager is travelling."
    german = "Das Treffen wurde auf Donnerstag verschoben, weil der Chef auf Reisen ist."
    english = "The meeting moved to Thursday since the manager is away on a trip."
    assert detect(_gen(german, ref), _PLAIN)["wrong_language"] is True
    assert detect(_gen(english, ref), _PLAIN)["wrong_language"] is False
    # too short to tell: not applicable
    assert "wrong_language" not in detect(_gen("Ja.", ref), _PLAIN)


def test_label_set_format_failure() -> None:
    labels = TaskOutputs(max_words=3, generated=40, label_set=frozenset({"positive", "negative"}))
    assert detect(_gen("Positive!", "negative"), labels)["format_failure"] is False
    assert detect(_gen("It is a movie review", "negative"), labels)["format_failure"] is True


def test_classification_detectors() -> None:
    def obs(pred: str) -> Observation:
        return Observation(
            uid=f"r:c:{pred}",
            source="sample",
            origin="r",
            task="c",
            kind="classification",
            item_id="1",
            output=pred,
            predicted_label=pred,
            gold_label="sports",
            failed=True,
        )

    assert detect(obs("business"), _PLAIN) == {"format_failure": False, "label_confusion": True}
    assert detect(obs("<unparsed>"), _PLAIN) == {"format_failure": True, "label_confusion": False}
    assert detect(obs("sports"), _PLAIN)["label_confusion"] is False


def test_run_detectors_sets_names_and_derives_task_limits() -> None:
    group = [_gen("word " * 20 + "end.", None) for _ in range(5)]
    group.append(_gen("word " * 19 + "and then", None))
    group = [o.model_copy(update={"uid": f"u{i}"}) for i, o in enumerate(group)]
    verdicts = run_detectors(group)
    assert "truncated" in group[-1].detectors
    assert "truncated" not in group[0].detectors
    assert all(set(v) <= set(DETECTORS.names()) for v in verdicts)
    assert group[0].detectors == ["repetition"]  # 'word word word word' loops


def test_numbers() -> None:
    assert numbers("It costs $1,299.50 or 12 euros, eleven items") == {1299.5, 12.0, 11.0}
    assert numbers("no digits here") == set()
