"""Students made from a teacher: layer subsets reproduce the teacher's weights (and, with every
layer kept, its logits), per-layer settings follow the kept layers, and mismatched vocabularies
or labels are refused with one line naming both models."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.optimize.test_distill_support import one_thread, tiny_bert  # noqa: E402, F401
from whetstone.errors import ConfigError, ModelError  # noqa: E402
from whetstone.optimize.distill_config import StudentSpec  # noqa: E402
from whetstone.optimize.distill_student import (  # noqa: E402
    LoadedModel,
    check_compatible,
    layer_prefix,
    load_local,
    make_student,
    parameter_count,
    spread_layers,
    student_from_config,
    student_from_layers,
)


def _gemma_like(layers: int = 6) -> LoadedModel:
    """A random Gemma 3 text model whose layers alternate sliding and full attention."""
    config = transformers.Gemma3TextConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"] * (layers // 3),
        sliding_window=8,
    )
    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(config).eval()
    return LoadedModel(model, None, "gemma-like", None, "causal_lm")


def test_spread_layers_keeps_first_and_last() -> None:
    assert spread_layers(6, 3) == [0, 2, 5]
    assert spread_layers(18, 6) == [0, 3, 7, 10, 14, 17]
    assert spread_layers(12, 1) == [11]
    with pytest.raises(ConfigError, match="not fewer than the teacher's 6 layers"):
        spread_layers(6, 6)


def test_keeping_every_layer_reproduces_the_teacher(tiny_lm_dir: Path) -> None:
    teacher = load_local(str(tiny_lm_dir))
    student = student_from_layers(teacher, [0, 1])
    ids = torch.tensor([teacher.tokenizer.encode("The quick brown fox jumps over the lazy dog")])
    with torch.no_grad():
        torch.testing.assert_close(student(ids).logits, teacher.model(ids).logits)


def test_layer_subset_copies_the_chosen_teacher_layers(tmp_path: Path) -> None:
    teacher = load_local(str(tiny_bert(tmp_path / "bert", layers=4)))
    assert layer_prefix(teacher.model) == "bert.encoder.layer"
    student = student_from_layers(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2
    keep = {0: 1, 1: 3}
    t_state, s_state = teacher.model.state_dict(), student.state_dict()
    assert set(t_state) - set(s_state) == {
        k for k in t_state if re.match(r"bert\.encoder\.layer\.[23]\.", k)
    }
    for key, value in s_state.items():
        m = re.match(r"bert\.encoder\.layer\.(\d+)\.(.*)", key)
        source = f"bert.encoder.layer.{keep[int(m.group(1))]}.{m.group(2)}" if m else key
        torch.testing.assert_close(value, t_state[source], rtol=0, atol=0)
    assert parameter_count(student) < parameter_count(teacher.model)


def test_per_layer_attention_types_follow_the_kept_layers() -> None:
    teacher = _gemma_like(6)
    student = student_from_layers(teacher, [0, 2, 5])
    assert student.config.layer_types == ["sliding_attention", "full_attention", "full_attention"]
    assert student.config.num_hidden_layers == 3
    ids = torch.arange(1, 20).unsqueeze(0)
    with torch.no_grad():
        assert torch.isfinite(student(ids).logits).all()


def test_keeping_every_gemma_layer_reproduces_the_teacher() -> None:
    teacher = _gemma_like(6)
    student = student_from_layers(teacher, list(range(6)))
    ids = torch.arange(1, 20).unsqueeze(0)  # longer than the sliding window
    with torch.no_grad():
        torch.testing.assert_close(student(ids).logits, teacher.model(ids).logits)


def test_student_from_config_is_a_fresh_smaller_model(tiny_lm_dir: Path) -> None:
    teacher = load_local(str(tiny_lm_dir))
    student = student_from_config(teacher, {"num_hidden_layers": 1, "hidden_size": 16})
    assert student.config.hidden_size == 16 and student.config.num_hidden_layers == 1
    assert student.config.vocab_size == teacher.model.config.vocab_size
    with pytest.raises(ConfigError, match="unknown field 'hiden_size' for LlamaConfig"):
        student_from_config(teacher, {"hiden_size": 16})
    n = teacher.model.config.vocab_size
    with pytest.raises(ConfigError, match=f"vocab_size 100 differs from the teacher's .*{n}"):
        student_from_config(teacher, {"vocab_size": 100})


def test_keep_out_of_range_is_refused(tiny_lm_dir: Path) -> None:
    teacher = load_local(str(tiny_lm_dir))
    with pytest.raises(ConfigError, match="layer 5 does not exist"):
        make_student(teacher, StudentSpec(keep=[0, 5]), Path("."))


def _other_vocab_lm(folder: Path) -> Path:
    """A tiny Llama with a tokenizer trained on other text (a different vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["Completely different words for another vocabulary."] * 20, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    config = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_vocabulary_mismatch_is_one_line_naming_both(tiny_lm_dir: Path, tmp_path: Path) -> None:
    teacher = load_local(str(tiny_lm_dir))
    other = _other_vocab_lm(tmp_path / "other-lm")
    with pytest.raises(ConfigError) as err:
        make_student(teacher, StudentSpec(model=str(other)), Path("."))
    message = str(err.value)
    assert "\n" not in message
    n_teacher, n_student = len(teacher.tokenizer), len(load_local(str(other)).tokenizer)
    assert f"teacher '{tiny_lm_dir}'" in message and f"student '{other}'" in message
    assert f"{n_teacher} tokens" in message and f"{n_student} tokens" in message
    assert "different vocabularies" in message


def test_same_vocabulary_student_model_is_accepted(tiny_lm_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_lm_dir, copy)
    teacher = load_local(str(tiny_lm_dir))
    student = make_student(teacher, StudentSpec(model=str(copy)), Path("."))
    assert student.folder == copy


def test_classifier_label_mismatch_names_both_label_sets(tmp_path: Path) -> None:
    teacher = load_local(str(tiny_bert(tmp_path / "t")))
    other = load_local(str(tiny_bert(tmp_path / "s")))
    other.model.config.id2label = {0: "a", 1: "b", 2: "c"}
    with pytest.raises(ConfigError, match=r"labels \['sports', 'business', 'science'\].*\['a'"):
        check_compatible(teacher, other)


def test_a_bare_encoder_is_not_a_teacher(tmp_path: Path) -> None:
    folder = tmp_path / "encoder"
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    transformers.BertModel(config).save_pretrained(folder)
    with pytest.raises(ModelError, match="neither a causal LM nor a sequence classifier"):
        load_local(str(folder))


def test_layers_can_come_from_the_teachers_pretrained_base(tmp_path: Path) -> None:
    """`init`: the kept layers come from another model of the same vocabulary (a bare
    encoder here, as the teacher's base before fine-tuning); the classifier head is new."""
    teacher = load_local(str(tiny_bert(tmp_path / "teacher", layers=4, seed=0)))
    base_dir = tiny_bert(tmp_path / "base-clf", layers=4, seed=1)
    bare = transformers.BertForSequenceClassification.from_pretrained(base_dir).bert
    bare.save_pretrained(tmp_path / "base")  # a BertModel: no classification head
    teacher.tokenizer.save_pretrained(tmp_path / "base")
    student = make_student(teacher, StudentSpec(layers=2, init=str(tmp_path / "base")), Path("."))
    assert student.source.endswith("base layers [0, 3]")
    s_state, b_state = student.model.state_dict(), bare.state_dict()
    torch.testing.assert_close(
        s_state["bert.encoder.layer.1.output.dense.weight"],
        b_state["encoder.layer.3.output.dense.weight"],
    )
    assert student.model.config.id2label == teacher.model.config.id2label
    assert not torch.equal(
        s_state["classifier.weight"], teacher.model.state_dict()["classifier.weight"]
    )
    with pytest.raises(ValueError, match="init goes with layers or keep"):
        StudentSpec(config={"num_hidden_layers": 1}, init="x")
