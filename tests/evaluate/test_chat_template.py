"""--chat-template wraps each prompt in the model's own template, as transformers renders it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from whetstone.errors import ModelError
from whetstone.evaluate.engine import evaluate

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def chat_lm_dir(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a chat template added to its tokenizer."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("chat-lm")
    shutil.copytree(tiny_lm_dir, folder, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(folder)
    return folder


def _mc_task(tmp_path: Path) -> Path:
    data = tmp_path / "mc.jsonl"
    data.write_text(
        '{"q": "Which gas do plants take in?", "c": ["carbon dioxide", "oxygen"], "a": 0}\n'
    )
    task = tmp_path / "mc.yaml"
    task.write_text(
        "name: mc\nkind: multiple_choice\ndata: {path: mc.jsonl}\n"
        'prompt: "Question: {q}\\nAnswer:"\nchoices: c\nanswer: a\n'
    )
    return task


def test_chat_template_wraps_prompts_exactly_as_transformers(
    chat_lm_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from whetstone.models.hf import HFModel

    model = HFModel(chat_lm_dir, device="cpu", dtype="float32")
    ev = evaluate(model, [_mc_task(tmp_path)], chat_template=True, db=f"sqlite:///{tmp_path}/w.db")
    rendered = AutoTokenizer.from_pretrained(chat_lm_dir).apply_chat_template(
        [{"role": "user", "content": "Question: Which gas do plants take in?\nAnswer:"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    (sample,) = ev.samples
    # the BOS token is added by the tokenizer when the prompt is encoded, not twice
    assert "<s>" + sample.prompt == rendered
    plain = evaluate(model, [_mc_task(tmp_path)], db=f"sqlite:///{tmp_path}/w.db")
    assert plain.samples[0].loglikelihoods != sample.loglikelihoods


def test_chat_template_on_a_model_without_one_is_a_clear_error(
    tiny_lm_dir: Path, tmp_path: Path
) -> None:
    from whetstone.models.hf import HFModel

    model = HFModel(tiny_lm_dir, device="cpu", dtype="float32")
    with pytest.raises(ModelError, match="has no chat template"):
        evaluate(model, [_mc_task(tmp_path)], chat_template=True, db=f"sqlite:///{tmp_path}/w.db")
