"""Mirroring TTA and fold ensembling of one case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from autoseg.inference import case_prediction
from autoseg.inference.case_prediction import predict_case
from autoseg.inference.settings import InferenceSettings
from autoseg.inference.sliding_window import sliding_window_inference
from autoseg.inference.tta import mirror_combinations, mirrored
from tests.inference.test_sliding_window import random_conv


def symmetric_conv(channels: int, classes: int) -> nn.Module:
    """A 3x3x3 convolution whose kernels are mirror-symmetric along every axis."""
    conv = random_conv(channels, classes, seed=3)
    with torch.no_grad():
        weight = conv.weight.clone()
        for axes in mirror_combinations((2, 3, 4))[1:]:
            weight += conv.weight.flip(list(axes))
        conv.weight.copy_(weight)
    return conv


def test_mirror_combinations_are_all_subsets_identity_first() -> None:
    combinations = mirror_combinations((2, 0, 1))
    assert combinations[0] == () and len(combinations) == 8
    assert set(combinations) == {
        (),
        (0,),
        (1,),
        (2,),
        (0, 1),
        (0, 2),
        (1, 2),
        (0, 1, 2),
    }


def test_mirrored_network_averages_flipped_back_predictions() -> None:
    net = random_conv(1, 2, seed=4)
    x = torch.randn(2, 1, 6, 7, 8)
    with torch.no_grad():
        expected = (net(x) + net(x.flip(2)).flip(2) + net(x.flip(4)).flip(4)) / 3
        result = mirrored(net, [(), (0,), (2,)])(x)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-6)


def test_mirror_symmetric_network_is_tta_invariant() -> None:
    net = symmetric_conv(1, 2)
    image = torch.randn(1, 11, 14, 9)
    plain = sliding_window_inference(net, image, (6, 8, 6), 2)
    tta = sliding_window_inference(
        mirrored(net, mirror_combinations((0, 1, 2))), image, (6, 8, 6), 2
    )
    torch.testing.assert_close(tta, plain, rtol=1e-4, atol=1e-5)


def test_tta_changes_an_asymmetric_network() -> None:
    net = random_conv(1, 2, seed=5)
    image = torch.randn(1, 11, 14, 9)
    plain = sliding_window_inference(net, image, (6, 8, 6), 2)
    tta = sliding_window_inference(
        mirrored(net, mirror_combinations((0, 1, 2))), image, (6, 8, 6), 2
    )
    assert (tta - plain).abs().max() > 1e-3


def settings(**changes: object) -> InferenceSettings:
    base = {"patch_size": (6, 8, 6), "num_classes": 2, "mirror_axes": (0, 1, 2)}
    return InferenceSettings(**{**base, **changes})


def test_ensemble_of_identical_folds_equals_one_fold() -> None:
    net = random_conv(1, 2, seed=6)
    image = np.random.default_rng(0).normal(size=(1, 9, 10, 8)).astype(np.float32)
    one = predict_case([net], image, settings())
    three = predict_case([net, net, net], image, settings())
    assert one.shape == (2, 9, 10, 8) and one.dtype == np.float32
    np.testing.assert_allclose(one.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(three, one, atol=1e-6)


def test_folds_are_averaged_as_probabilities() -> None:
    nets = [random_conv(1, 2, seed=7), random_conv(1, 2, seed=8)]
    image = torch.randn(1, 9, 10, 8)
    both = predict_case(nets, image, settings(tta=False))
    with torch.no_grad():
        single = [torch.softmax(sliding_window_inference(n, image, (6, 8, 6), 2), 0) for n in nets]
    np.testing.assert_allclose(both, ((single[0] + single[1]) / 2).numpy(), atol=1e-6)


def test_predict_case_runs_2d_networks_slice_by_slice() -> None:
    net = random_conv(3, 2, dim=2, seed=9)
    image = torch.randn(1, 4, 10, 9)
    result = predict_case([net], image, settings(patch_size=(8, 8), slices=3, mirror_axes=(0, 1)))
    manual = sliding_window_inference(
        mirrored(net, mirror_combinations((0, 1))), image, (8, 8), 2, slices=3
    )
    np.testing.assert_allclose(result, torch.softmax(manual, 0).numpy(), atol=1e-6)


def test_predict_case_restores_training_mode() -> None:
    net = random_conv(1, 2).train()
    predict_case([net], torch.randn(1, 6, 8, 6), settings())
    assert net.training


def test_settings_read_a_plans_configuration_with_flag_overrides() -> None:
    entry = {
        "patch_size": [96, 80],
        "slice_context": {"slices": 5, "context": 2, "axis": "z"},
        "inference": {"step": 0.5, "gaussian": True, "gaussian_sigma_scale": 0.125,
                      "mirror_axes": [0, 1]},
    }  # fmt: skip
    read = InferenceSettings.from_configuration(entry, 2, tta=False, step=0.75)
    assert (read.patch_size, read.slices, read.dim, read.mirror_axes) == ((96, 80), 5, 2, (0, 1))
    assert read.step == 0.75 and not read.tta
    with pytest.raises(ValueError, match="mirror_axes"):
        InferenceSettings(patch_size=(8, 8), num_classes=2, mirror_axes=(2,))


@pytest.mark.parametrize("amx", [True, False])
def test_amp_on_a_cpu_predicts_in_bf16_only_where_it_is_faster(
    monkeypatch: pytest.MonkeyPatch, amx: bool
) -> None:
    monkeypatch.setattr(case_prediction, "cpu_bf16_faster", lambda purpose: amx)
    net, image = random_conv(1, 2, seed=4), torch.randn(1, 6, 8, 6)
    seen: list[torch.dtype] = []
    net.register_forward_hook(lambda _module, _inputs, output: seen.append(output.dtype))
    full = predict_case([net], image, settings())
    rounded = predict_case([net], image, settings(amp=True))
    assert seen[-1] == (torch.bfloat16 if amx else torch.float32)
    if amx:
        assert not np.array_equal(rounded, full)  # autocast ran
    np.testing.assert_allclose(rounded, full, atol=0.02)
