"""Dynamic int8 quantization: outputs close to the float model (checked against a direct
int8 matmul in numpy), a save/load round trip, the report, and the causal LM head kept float."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.optimize.test_distill_support import (  # noqa: E402
    one_thread,  # noqa: F401
    tiny_bert,
    write_topic_task,
)
from whetstone.optimize.distill_config import QuantizeConfig  # noqa: E402
from whetstone.optimize.distill_student import load_local  # noqa: E402
from whetstone.optimize.quantize import (  # noqa: E402
    load_quantized,
    quantizable,
    quantize,
    quantize_model,
    render_html_section,
    save_quantized,
)
from whetstone.store import Store  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao")


def test_int8_linear_is_a_per_tensor_int8_matmul() -> None:
    """A quantized Linear computes x @ dequant(int8 W).T + b, with x quantized per batch
    (dynamic): recomputed in numpy from the int8 weights and scales the module holds."""
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Linear(64, 32))
    q = quantize_model(linear, ["0"])
    weight = q[0].weight()
    assert weight.dtype == torch.qint8
    w = weight.int_repr().numpy().astype(np.float64) * weight.q_scale()
    x = torch.randn(5, 64)
    ref = x.double().numpy() @ w.T + linear[0].bias.detach().double().numpy()
    with torch.no_grad():
        out = q(x).double().numpy()
        exact = linear(x).double().numpy()
    # activations are quantized to 8 bits on the fly: close to the int8-weight reference
    np.testing.assert_allclose(out, ref, atol=0.05)
    assert np.abs(out - exact).max() < 0.1 and not np.allclose(out, exact, atol=1e-6)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    teacher = load_local(str(tiny_bert(tmp_path / "bert")))
    names = quantizable(teacher.model, [], causal=False)
    assert "classifier" in names and all("embeddings" not in n for n in names)
    q = quantize_model(teacher.model, names)
    save_quantized(q, teacher.tokenizer, names, tmp_path / "int8")
    again, tokenizer = load_quantized(tmp_path / "int8")
    enc = tokenizer(["team won the match"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(again(**enc).logits, q(**enc).logits)
    meta = json.loads((tmp_path / "int8" / "quantization.json").read_text())
    assert meta["modules"] == names and meta["scheme"] == "dynamic_int8"


def test_causal_head_stays_float_and_skips_apply(tiny_lm_dir: Path) -> None:
    lm = load_local(str(tiny_lm_dir))
    names = quantizable(lm.model, ["mlp.down_proj"], causal=True)
    assert "lm_head" not in names and not any(n.endswith("down_proj") for n in names)
    assert any(n.endswith("q_proj") for n in names)


def test_quantize_reports_size_speed_and_quality(tmp_path: Path) -> None:
    task = write_topic_task(tmp_path, "topics", 60, seed=3)
    model = tiny_bert(tmp_path / "bert")
    config = QuantizeConfig.model_validate(
        {
            "model": str(model),
            "eval": {"tasks": [str(task)]},
            "speed": {
                "seq_len": 16,
                "latency_runs": 2,
                "throughput_batch": 4,
                "throughput_runs": 1,
            },
            "output_dir": str(tmp_path / "q"),
            "db": f"sqlite:///{tmp_path / 'ws.db'}",
        }
    )
    result = quantize(config)
    assert result.quantized.size_mb < result.original.size_mb
    assert result.size_ratio == pytest.approx(
        result.quantized.size_mb / result.original.size_mb, abs=1e-4
    )
    store = Store(f"sqlite:///{tmp_path / 'ws.db'}")
    assert result.original.run_id and result.quantized.run_id
    float_acc = np.mean([s.metrics["accuracy"] for s in store.get_samples(result.original.run_id)])
    int8_acc = np.mean([s.metrics["accuracy"] for s in store.get_samples(result.quantized.run_id)])
    row = next(r for r in result.rows if r.metric == "accuracy")
    assert (row.reference, row.candidate) == pytest.approx((float_acc, int8_acc))
    stored = store.get_artifact("quantize", "q")
    assert stored is not None and stored.payload["size_ratio"] == result.size_ratio
    assert (tmp_path / "q" / "quantize.json").is_file()
    assert "int8" in render_html_section(result)
