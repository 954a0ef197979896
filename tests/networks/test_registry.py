"""Contract tests run on every registered network (tiny sizes)."""

from __future__ import annotations

import io
import itertools

import pytest
import torch

from autoseg.core.errors import InvalidInputError
from autoseg.networks import build_network, list_networks, register_network
from tests.networks.conftest import TINY, tiny_input, tiny_network


def test_registry_names_and_unknown_name() -> None:
    assert list_networks() == sorted(TINY)
    with pytest.raises(InvalidInputError, match=r"2\.5d_unet, 2d_lcnn, 3d_hybrid"):
        build_network({"name": "unet9000", "kwargs": {}})
    with pytest.raises(InvalidInputError, match="3d_hybrid"):
        build_network({"name": "3d_hybrid", "kwargs": {"in_channels": 1, "bogus": 2}})
    with pytest.raises(ValueError, match="already registered"):
        register_network("3d_hybrid")(lambda: None)


def test_train_and_eval_outputs(name: str) -> None:
    net = tiny_network(name)
    kwargs, patch, _ = TINY[name]
    x = tiny_input(name)
    outputs = net(x)
    assert isinstance(outputs, list) and len(outputs) >= 2
    assert outputs[0].shape == (2, kwargs["num_classes"], *patch)
    for finer, coarser in itertools.pairwise(outputs):
        assert all(c <= f for f, c in zip(finer.shape[2:], coarser.shape[2:], strict=True))
        assert coarser.shape[2:] != finer.shape[2:]
    net.eval()
    with torch.no_grad():
        logits = net(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == outputs[0].shape
    assert torch.isfinite(logits).all()


def test_without_deep_supervision_one_output(name: str) -> None:
    net = tiny_network(name, deep_supervision=False)
    outputs = net(tiny_input(name))
    assert len(outputs) == 1 and outputs[0].shape[2:] == TINY[name][1]


def test_indivisible_and_wrong_channel_input_rejected(name: str) -> None:
    kwargs, _, bad_patch = TINY[name]
    net = tiny_network(name)
    with pytest.raises(InvalidInputError, match="not divisible"):
        net(torch.zeros(1, kwargs["in_channels"], *bad_patch))
    with pytest.raises(InvalidInputError, match="expected input"):
        net(torch.zeros(1, kwargs["in_channels"] + 1, *TINY[name][1]))


def test_gradients_reach_every_parameter(name: str) -> None:
    net = tiny_network(name)
    torch.manual_seed(0)
    with torch.no_grad():  # move zero-initialised read-outs (alignment) off zero
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    outputs = net(tiny_input(name))
    loss = sum((o * torch.randn_like(o)).mean() for o in outputs)
    if hasattr(net, "auxiliary_loss"):
        loss = loss + net.auxiliary_loss()
    loss.backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead


def test_state_dict_round_trip(name: str) -> None:
    net = tiny_network(name, seed=1).eval()
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    other = tiny_network(name, seed=2).eval()
    x = tiny_input(name)
    with torch.no_grad():
        assert not torch.allclose(other(x), net(x))
        other.load_state_dict(torch.load(buffer, weights_only=True))
        torch.testing.assert_close(other(x), net(x), rtol=0, atol=0)


def test_seeded_initialisation(name: str) -> None:
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = tiny_network(name, seed=5), tiny_network(name, seed=5), tiny_network(name, seed=6)
    assert torch.equal(torch.rand(3), expected_draw)  # the global RNG is left alone
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_feature_maps_describe_the_activations(name: str) -> None:
    net = tiny_network(name)
    patch = TINY[name][1]
    maps = net.feature_maps(patch)
    assert maps and all(all(s > 0 for s in m.shape) for m in maps)
    convs = [m for m in maps if m.kind.startswith("Conv")]
    assert any(m.shape[-len(patch) :] == patch for m in convs)  # full-resolution convs
    doubled = (*patch[:-1], 2 * patch[-1])
    ratio = sum(m.elements for m in net.feature_maps(doubled)) / sum(m.elements for m in maps)
    assert 1.8 < ratio <= 2.0  # activations grow with the patch (weights-sized ones do not)
    assert net.feature_map_shapes(patch) == [m.shape for m in maps]
    assert next(net.parameters()).device.type == "cpu"  # meta sizing left the weights alone
