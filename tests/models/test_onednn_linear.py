"""Float32 linear layers through oneDNN, against a float64 `F.linear`."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from whetstone.models import onednn_linear  # noqa: E402
from whetstone.models.onednn_linear import install, linear  # noqa: E402

needs_onednn = pytest.mark.skipif(
    not onednn_linear.available(), reason="this PyTorch build has no oneDNN linear op"
)


def reference(x, weight, bias):
    out = x.double() @ weight.double().T
    return (out + bias.double() if bias is not None else out).float()


@needs_onednn
@pytest.mark.parametrize(
    ("shape", "out_features", "with_bias"),
    [((64, 40), 24, False), ((3, 50, 40), 72, True), ((2, 4, 9, 40), 8, True)],
)
def test_linear_matches_float64(shape, out_features, with_bias, monkeypatch):
    calls = []
    op = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(onednn_linear.torch.ops.mkldnn, "_linear_pointwise", _spy(op, calls))
    gen = torch.Generator().manual_seed(len(shape))
    x = torch.randn(*shape, generator=gen)
    w = torch.randn(out_features, shape[-1], generator=gen)
    b = torch.randn(out_features, generator=gen) if with_bias else None
    with torch.no_grad():
        got = linear(x, w, b)
    assert got.shape == (*shape[:-1], out_features)
    torch.testing.assert_close(got, reference(x, w, b), rtol=1e-5, atol=1e-4)
    assert calls, "the oneDNN op ran"


def _spy(op, calls):
    def spy(*args):
        calls.append(args[0].shape)
        return op(*args)

    return spy


def test_gradients_and_few_rows_stay_with_torch(monkeypatch):
    calls = []
    if onednn_linear.available():
        op = torch.ops.mkldnn._linear_pointwise
        monkeypatch.setattr(onednn_linear.torch.ops.mkldnn, "_linear_pointwise", _spy(op, calls))
    w = torch.randn(8, 40, requires_grad=True)
    x = torch.randn(32, 40)
    out = linear(x, w)
    out.sum().backward()  # autograd works: F.linear ran
    torch.testing.assert_close(w.grad, x.sum(0).expand(8, 40))
    with torch.no_grad():
        linear(torch.randn(2, 40), w)  # decoding a token at a time
        linear(torch.randn(32, 40, dtype=torch.float64), w.double())
    assert calls == []


@needs_onednn
def test_install_routes_plain_linear_layers_only():
    class Adapter(torch.nn.Linear):
        pass

    model = torch.nn.Sequential(torch.nn.Linear(40, 30), torch.nn.GELU(), Adapter(30, 20))
    x = torch.randn(4, 32, 40)
    with torch.no_grad():
        want = model(x)
        assert install(model) == 1
        got = model(x)
    assert "forward" in vars(model[0]) and "forward" not in vars(model[2])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
