"""`distill` end to end on tiny models: a trained BERT topic classifier and the tiny Llama.

Checked against independent computations: the saved student reloads through `load_model` and
gives the in-memory student's probabilities; retention is recomputed from the stored runs;
the offline cache holds the teacher's own top-k log-softmax; a second run never runs the
teacher again, and a run killed while caching resumes with the missing shards only; distilled
causal students end closer to the teacher (KL recomputed with torch) than where they started.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.optimize.test_distill_support import (  # noqa: E402
    one_thread,  # noqa: F401
    topic_teacher,
    write_config,
)
from whetstone.optimize import distill_cache  # noqa: E402
from whetstone.optimize.config_files import load_config  # noqa: E402
from whetstone.optimize.distill import distill, prepare, render_html_section  # noqa: E402
from whetstone.optimize.distill_cache import TeacherCache  # noqa: E402
from whetstone.optimize.distill_config import DistillConfig  # noqa: E402
from whetstone.store import Store  # noqa: E402


@pytest.fixture(scope="module")
def topic_setup() -> dict[str, Path]:
    """The trained tiny topic teacher and its tasks."""
    return topic_teacher()


def _classifier_config(setup: dict[str, Path], tmp_path: Path, **extra: str) -> Path:
    lines = {
        "teacher": str(setup["teacher"]),
        "student": "{layers: 2}",
        "data": f"{{task: {setup['train']}, max_length: 32}}",
        "loss": "{temperature: 2.0, alpha: 0.7, hidden_weight: 0.5}",
        "training": "{epochs: 2, batch_size: 16, learning_rate: 2.0e-3}",
        "eval": f"{{tasks: [{setup['eval']}]}}",
        "speed": "{seq_len: 16, latency_runs: 3, throughput_batch: 4, throughput_runs: 1}",
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "db": f"sqlite:///{tmp_path / 'ws.db'}",
        "device": "cpu",
        **extra,
    }
    return write_config(tmp_path, "".join(f"{k}: {v}\n" for k, v in lines.items()))


def test_classifier_distillation_end_to_end(topic_setup: dict[str, Path], tmp_path: Path) -> None:
    from whetstone.models import load_model

    path = _classifier_config(topic_setup, tmp_path, ablation="true", quantize="true")
    result = distill(path)

    # the student is a normal HF folder that whetstone loads as a classifier
    student_dir = Path(result.student_dir)
    assert (student_dir / "config.json").is_file()
    reloaded = load_model(str(student_dir))
    texts = ["team won the match after the goal", "bank shares and stock price today"]
    from whetstone.optimize.distill_student import load_local

    direct = load_local(str(student_dir)).model
    enc = reloaded.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(direct(**enc).logits, -1).numpy()
    np.testing.assert_allclose(reloaded.probabilities(texts), expected, rtol=1e-5, atol=1e-6)
    assert direct.config.num_hidden_layers == 2

    # sizes and parameters measured, retention recomputed from the stored runs' values
    assert result.student.parameters < result.teacher.parameters
    assert result.parameter_ratio == pytest.approx(
        result.student.parameters / result.teacher.parameters, abs=1e-4
    )
    assert 0 < result.size_ratio < 1
    assert result.quantized is not None and result.quantized.size_mb < result.student.size_mb
    store = Store(f"sqlite:///{tmp_path / 'ws.db'}")
    acc = {}
    for role in ("teacher", "student", "ablation", "student-int8"):
        report = {
            "teacher": result.teacher,
            "student": result.student,
            "ablation": result.ablation,
            "student-int8": result.quantized,
        }[role]
        assert report is not None and report.run_id
        samples = store.get_samples(report.run_id)
        assert len(samples) == 120
        acc[role] = float(np.mean([s.metrics["accuracy"] for s in samples]))
    row = next(r for r in result.rows if r.metric == "accuracy")
    assert row.reference == pytest.approx(acc["teacher"])
    assert row.candidate == pytest.approx(acc["student"])
    assert row.retention == pytest.approx(acc["student"] / acc["teacher"])
    assert row.ablation == pytest.approx(acc["ablation"])
    assert row.quantized == pytest.approx(acc["student-int8"])
    assert row.gain is not None and row.gain.diff == pytest.approx(acc["student"] - acc["ablation"])
    assert acc["teacher"] >= 0.9 and acc["student"] >= 0.8

    # stored artifact == the JSON file; HTML is one self-contained fragment
    stored = store.get_artifact("distill", "out")
    assert stored is not None
    on_disk = json.loads((tmp_path / "out" / "distill.json").read_text())
    assert stored.payload == on_disk
    assert set(stored.refs) == {
        result.teacher.run_id,
        result.student.run_id,
        result.ablation.run_id,
        result.quantized.run_id,
    }
    html = render_html_section(result)
    assert html.startswith("<section") and html.endswith("</section>")
    assert not re.search(r"<script|<link|<img|src=|href=\"(?!#)|url\((?!#)", html)
    assert "student" in html and "retention" in html.lower()
    assert html.count("<svg") == 1  # latency against accuracy, inline
    assert result.config["hidden_loss_used"] is True


def test_offline_cache_holds_the_teachers_distribution(tiny_lm_dir: Path, tmp_path: Path) -> None:
    """The cached top-k are the teacher's own top-k log-softmax at the scored positions."""
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "\n".join(json.dumps({"text": t}) for t in ["To be, or not to be.", "The quick fox."])
    )
    (tmp_path / "docs.yaml").write_text("name: docs\nkind: perplexity\ndata: {path: docs.jsonl}\n")
    cfg = DistillConfig.model_validate(
        {
            "teacher": str(tiny_lm_dir),
            "student": {"layers": 1},
            "data": {"task": str(tmp_path / "docs.yaml"), "max_length": 16},
            "top_k": 5,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    from whetstone.optimize.distill import teacher_source

    prep = prepare(cfg)
    source, report = teacher_source(prep)
    assert report is not None and report.computed == len(prep.training_set.examples)
    ex = prep.training_set.examples[0]
    with torch.no_grad():
        logits = prep.teacher.model(torch.tensor([ex["input_ids"]])).logits[0, :-1]
    expected = torch.log_softmax(logits, -1).topk(5, -1)
    top = source.cache.top_k(torch.tensor([0]))
    torch.testing.assert_close(top.logprobs, expected.values)
    torch.testing.assert_close(top.ids, expected.indices)
    probs = torch.softmax(logits.double(), -1)  # the rest: 1 - top-k mass, in float64
    rest = torch.log(1 - probs.gather(-1, expected.indices).sum(-1)).float()
    torch.testing.assert_close(top.rest, rest, rtol=1e-5, atol=1e-5)


def _count_teacher_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = TeacherCache._teacher_outputs

    def counting(self: TeacherCache, teacher: Any, batch: Any, pad_id: int) -> Any:
        calls.append(len(batch))
        return original(self, teacher, batch, pad_id)

    monkeypatch.setattr(TeacherCache, "_teacher_outputs", counting)
    return calls


def test_second_run_reads_the_cache_and_never_runs_the_teacher(
    topic_setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _classifier_config(topic_setup, tmp_path, eval="{tasks: []}")
    calls = _count_teacher_calls(monkeypatch)
    first = distill(path)
    assert first.cache is not None and first.cache.computed == 300 and sum(calls) == 300
    calls.clear()
    changed = path.read_text().replace("temperature: 2.0", "temperature: 4.0")
    path.write_text(changed)  # tuning the student's loss reuses the teacher's outputs
    second = distill(path)
    assert calls == [] and second.cache is not None and second.cache.computed == 0
    assert second.cache.folder == first.cache.folder


def test_a_run_killed_while_caching_resumes_with_the_missing_shards(
    topic_setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(distill_cache, "SHARD_EXAMPLES", 64)
    path = _classifier_config(topic_setup, tmp_path, eval="{tasks: []}")
    calls = _count_teacher_calls(monkeypatch)
    original = TeacherCache._teacher_outputs  # the counting wrapper

    def crash_on_third_shard(self: TeacherCache, teacher: Any, batch: Any, pad_id: int) -> Any:
        if sum(calls) >= 128:
            raise KeyboardInterrupt
        return original(self, teacher, batch, pad_id)

    monkeypatch.setattr(TeacherCache, "_teacher_outputs", crash_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        distill(path)
    shards = sorted(p.name for p in (tmp_path / "cache").glob("*/shard-*"))
    assert shards == ["shard-00000.safetensors", "shard-00001.safetensors"]
    monkeypatch.setattr(TeacherCache, "_teacher_outputs", original)
    calls.clear()
    result = distill(path)
    assert result.cache is not None and result.cache.computed == 300 - 128 == sum(calls)


def _kl_to_teacher(teacher: Any, student: Any, examples: list[dict[str, Any]]) -> float:
    """Mean KL(teacher || student) per scored token, recomputed with torch."""
    total, n = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex["input_ids"]])
            t = torch.log_softmax(teacher(ids).logits[0, :-1], -1)
            s = torch.log_softmax(student(ids).logits[0, :-1], -1)
            total += float((t.exp() * (t - s)).sum())
            n += t.shape[0]
    return total / n


@pytest.mark.parametrize(
    ("mode", "divergence"), [("online", "forward_kl"), ("offline", "jsd"), ("online", "reverse_kl")]
)
def test_causal_student_moves_towards_the_teacher(
    tiny_lm_dir: Path, tmp_path: Path, mode: str, divergence: str
) -> None:
    from tests.conftest import SENTENCES

    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"text": s}) for s in SENTENCES * 3))
    (tmp_path / "docs.yaml").write_text("name: docs\nkind: perplexity\ndata: {path: docs.jsonl}\n")
    config = {
        "teacher": str(tiny_lm_dir),
        "student": {"config": {"num_hidden_layers": 1}},
        "data": {"task": str(tmp_path / "docs.yaml"), "max_length": 32},
        "mode": mode,
        "top_k": 400,
        "loss": {"divergence": divergence, "alpha": 1.0, "temperature": 1.0},
        "training": {"epochs": 15, "batch_size": 6, "learning_rate": 1e-2},
        "speed": {"enabled": False},
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "db": f"sqlite:///{tmp_path / 'ws.db'}",
        "device": "cpu",
    }
    cfg = DistillConfig.model_validate(config)
    prep = prepare(cfg)
    before = _kl_to_teacher(prep.teacher.model, prep.student.model, prep.training_set.examples)
    result = distill(cfg)
    from whetstone.optimize.distill_student import load_local

    student = load_local(result.student_dir).model
    after = _kl_to_teacher(prep.teacher.model, student, prep.training_set.examples)
    assert after < 0.6 * before
    assert (result.cache is None) == (mode == "online")


def test_perplexity_retention_is_the_inverse_ratio(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from tests.conftest import SENTENCES

    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"text": s}) for s in SENTENCES))
    task = tmp_path / "docs.yaml"
    task.write_text("name: docs\nkind: perplexity\ndata: {path: docs.jsonl}\n")
    cfg = DistillConfig.model_validate(
        {
            "teacher": str(tiny_lm_dir),
            "student": {"layers": 1},
            "data": {"task": str(task), "max_length": 32},
            "training": {"max_steps": 2, "batch_size": 4},
            "eval": {"tasks": [str(task)]},
            "speed": {"seq_len": 8, "latency_runs": 2, "throughput_batch": 2, "throughput_runs": 1},
            "output_dir": str(tmp_path / "out"),
            "cache_dir": str(tmp_path / "cache"),
            "db": f"sqlite:///{tmp_path / 'ws.db'}",
            "device": "cpu",
        }
    )
    result = distill(cfg)
    row = next(r for r in result.rows if r.metric == "perplexity")
    assert not row.higher_is_better
    assert row.ratio == pytest.approx(row.candidate / row.reference)
    assert row.retention == pytest.approx(row.reference / row.candidate)
    low, high = row.retention_ci or (None, None)
    assert low is not None and low <= row.retention <= high
    assert result.student.speed is not None and result.student.speed.throughput_unit == "tokens/s"


def test_config_errors_name_the_file_line_and_field(tmp_path: Path) -> None:
    from whetstone.errors import ConfigError

    path = write_config(
        tmp_path, "teacher: t\nstudent: {layers: 2}\ndata: {task: x.yaml}\nlos: {alpha: 2}\n"
    )
    with pytest.raises(
        ConfigError, match=r"distill.yaml:4: unknown key 'los' \(did you mean 'loss'"
    ):
        load_config(path, DistillConfig)
    path.write_text("teacher: t\nstudent: {layers: 2, model: m}\ndata: {task: x.yaml}\n")
    with pytest.raises(ConfigError, match=r":2: field 'student': expected exactly one of"):
        load_config(path, DistillConfig)
    path.write_text("teacher: t\nstudent: {layers: 2}\ndata: {task: x.yaml}\nloss: {beta: 2}\n")
    with pytest.raises(ConfigError, match=r":4: field 'loss.beta': .*less than or equal to 1"):
        load_config(path, DistillConfig)


def test_resume_continues_training_from_the_last_checkpoint(
    topic_setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed in its second epoch resumes from the end-of-epoch-1 checkpoint: the
    second run computes only the remaining steps, and ends where an uninterrupted run ends."""
    from whetstone.optimize import distill_train

    path = _classifier_config(
        topic_setup,
        tmp_path,
        eval="{tasks: []}",
        speed="{enabled: false}",
        training="{epochs: 2, batch_size: 50, learning_rate: 2.0e-3}",
    )
    steps: list[int] = []
    original = distill_train.distill_loss

    def counted(*args: Any, **kwargs: Any) -> Any:
        steps.append(1)
        if len(steps) == 8 and crash:  # 6 steps per epoch: die in the second epoch
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(distill_train, "distill_loss", counted)
    crash = True
    with pytest.raises(KeyboardInterrupt):
        distill(path)
    assert sorted(p.name for p in (tmp_path / "out" / "work" / "checkpoints").iterdir()) == [
        "checkpoint-6"
    ]
    crash, steps[:] = False, []
    resumed = distill(path, resume=True)
    assert len(steps) == 6 and resumed.training.steps == 12
    assert not (tmp_path / "out" / "work").exists()
    straight = tmp_path / "straight"
    straight.mkdir()
    text = path.read_text().replace(str(tmp_path / "out"), str(straight / "out"))
    whole = distill(write_config(straight, text))
    from safetensors.torch import load_file

    a = load_file(Path(resumed.student_dir) / "model.safetensors")
    b = load_file(Path(whole.student_dir) / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
