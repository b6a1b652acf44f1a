"""Linear layers on oneDNN-packed weights (tunesafe.models.packed_linear): the fp32 product of the
current weights, packs reused only while a weight is unchanged, and every forward put back."""

from __future__ import annotations

import gc
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tunesafe.models import packed_linear  # noqa: E402
from tunesafe.models.packed_linear import packed_linears  # noqa: E402

pytestmark = pytest.mark.skipif(not packed_linear.onednn_works(),
                                reason="this torch has no oneDNN packed linear")


class Net(torch.nn.Module):
    """Two projections, a layer that is not plain Linear, and an output layer, as a causal LM has."""

    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(24, 40)
        self.down = torch.nn.Linear(40, 24, bias=False)
        self.norm = torch.nn.LayerNorm(24)
        self.head = torch.nn.Linear(24, 30, bias=False)
        for p in self.parameters():
            p.requires_grad_(False)

    def get_output_embeddings(self) -> Any:
        return self.head

    def forward(self, x: Any) -> Any:
        return self.head(self.norm(self.down(torch.relu(self.up(x)))))


def rows(n: int = 16, seed: int = 1) -> Any:
    return torch.randn(n, 3, 24, generator=torch.Generator().manual_seed(seed))


def test_the_product_is_the_fp32_one_and_the_forwards_come_back() -> None:
    net, x = Net(), rows()
    expected = net(x)
    with torch.inference_mode(), packed_linears(net) as count:
        got = net(x)
        assert count == 2  # up and down; the output layer is the screen's
        assert "forward" in net.up.__dict__ and "forward" not in net.head.__dict__
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not any("forward" in m.__dict__ for m in net.modules())
    with pytest.raises(RuntimeError, match="inside"), packed_linears(net):
        raise RuntimeError("inside")
    assert not any("forward" in m.__dict__ for m in net.modules())


def test_a_pack_is_reused_while_its_weight_is_unchanged_and_rebuilt_when_it_changes() -> None:
    net, x = Net(), rows()
    with torch.inference_mode():
        with packed_linears(net):
            first = net.up.forward.packed
        with packed_linears(net):
            assert net.up.forward.packed is first
        net.up.weight.mul_(2.0)  # in place, as an optimiser step
        with packed_linears(net):
            assert net.up.forward.packed is not first
            assert torch.allclose(net(x), _plain(net, x), rtol=1e-5, atol=1e-5)
        # A LoRA merge swaps a new tensor in at each probe; a freed one's address can come back for the
        # next, and its pack must not be taken for the new values.
        original = net.up.weight.data
        for step in range(6):
            net.up.weight.data = original + 0.01 * (step + 1)
            with packed_linears(net):
                assert torch.allclose(net(x), _plain(net, x), rtol=1e-5, atol=1e-5), step
        net.up.weight.data = original


def _plain(net: Net, x: Any) -> Any:
    saved = [m.__dict__.pop("forward", None) for m in (net.up, net.down)]
    try:
        return net(x)
    finally:
        for module, forward in zip((net.up, net.down), saved, strict=True):
            if forward is not None:
                module.forward = forward


def test_a_forward_that_needs_gradients_takes_the_plain_product() -> None:
    net = Net()
    net.up.weight.requires_grad_(True)
    x = rows()
    with packed_linears(net) as count:
        assert count == 2
        net(x).sum().backward()
    assert net.up.weight.grad is not None and net.up.weight.grad.abs().sum() > 0


def test_nothing_is_packed_over_the_memory_bound_or_without_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    net = Net()
    with packed_linears(net, max_bytes=1000) as count:
        assert count == 0 and not any("forward" in m.__dict__ for m in net.modules())
    monkeypatch.setattr(packed_linear, "_WORKS", [False])
    with packed_linears(net) as count:
        assert count == 0


def test_a_patched_or_non_fp32_layer_keeps_its_own_forward() -> None:
    net = Net()
    patched = net.up.forward
    net.up.forward = patched  # an instance-level forward, as an accelerate hook installs
    net.down.to(torch.float64)
    with packed_linears(net) as count:
        assert count == 0
        assert net.up.forward is patched
    assert net.up.forward is patched


def test_packs_go_with_their_model() -> None:
    net = Net()
    with torch.inference_mode(), packed_linears(net):
        pass
    ids = {id(net.up.weight), id(net.down.weight)}
    assert ids <= set(packed_linear._PACKS)
    del net
    gc.collect()
    assert not ids & set(packed_linear._PACKS)


def test_a_layer_that_cannot_be_packed_leaves_every_layer_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = Net(), rows()
    expected = net(x)

    def refuse(*args: Any) -> Any:
        raise RuntimeError("no oneDNN layout for this weight")

    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", refuse)
    with torch.inference_mode(), packed_linears(net) as count:
        assert count == 0 and not any("forward" in m.__dict__ for m in net.modules())
        assert torch.equal(net(x), expected)
