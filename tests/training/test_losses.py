"""Losses: right values on hand-made cases, ignore label respected, registry by name."""

from __future__ import annotations

import pytest
import torch

from autoseg.training.losses import (
    LOSSES,
    DeepSupervisionLoss,
    build_loss,
    deep_supervision_weights,
    soft_dice_per_class,
    symmetry_loss,
)


def _target() -> torch.Tensor:
    target = torch.zeros(2, 1, 6, 6, dtype=torch.long)
    target[:, :, 1:4, 2:5] = 1
    return target


def _logits_for(target: torch.Tensor, confidence: float = 20.0) -> torch.Tensor:
    one_hot = torch.cat([(target == 0), (target == 1)], 1).float()
    return (one_hot * 2 - 1) * confidence


def test_registry_lists_known_names_on_error() -> None:
    assert {"dice_ce", "focal", "generalized_dice", "dice_ce_boundary"} <= set(LOSSES)
    with pytest.raises(KeyError, match="known: dice_ce"):
        build_loss("nope")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_perfect_prediction_beats_inverted_prediction(name: str) -> None:
    loss = build_loss(name)
    target = _target()
    perfect = loss(_logits_for(target), target)
    inverted = loss(_logits_for(1 - target), target)
    assert perfect.item() < 0.05 < inverted.item()


def test_soft_dice_matches_hand_count() -> None:
    probabilities = torch.tensor([[[0.0, 1.0, 1.0, 0.0]]]).repeat(1, 2, 1)
    probabilities[:, 0] = 1 - probabilities[:, 1]
    one_hot = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]]).repeat(1, 2, 1)
    one_hot[:, 0] = 1 - one_hot[:, 1]
    dice = soft_dice_per_class(probabilities, one_hot, torch.ones(1, 1, 4), smooth=0.0)
    assert dice[1].item() == pytest.approx(0.5)  # 2*1 / (2 + 2)


def test_ignored_voxels_do_not_count() -> None:
    loss = build_loss("dice_ce")
    target = _target()
    right = _logits_for(target)
    partly_wrong = right.clone()
    partly_wrong[:, :, 5, :] = _logits_for(1 - target)[:, :, 5, :]
    ignoring_row = target.clone()
    ignoring_row[:, :, 5, :] = -1
    assert loss(partly_wrong, target).item() > 1.0
    assert loss(partly_wrong, ignoring_row).item() == pytest.approx(
        loss(right, target).item(), abs=1e-4
    )


def test_deep_supervision_halves_weights_and_downsamples() -> None:
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    target = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    target[..., :4, :] = 1
    outputs = [_logits_for(target), _logits_for(target[..., ::2, ::2])]
    wrong = [_logits_for(target), _logits_for(1 - target[..., ::2, ::2])]
    loss = DeepSupervisionLoss(build_loss("dice_ce"))
    assert loss(outputs, target).item() < 0.05 < loss(wrong, target).item()


def test_symmetry_loss_is_zero_only_for_mirror_symmetric_slices() -> None:
    symmetric = torch.tensor([[[[1.0, 2.0, 2.0, 1.0]]]])
    assert symmetry_loss(symmetric).item() == 0.0
    assert symmetry_loss(torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])).item() == pytest.approx(2.0)


def test_lesion_dice_weighs_a_missed_small_lesion_like_a_found_large_one() -> None:
    from autoseg.training.losses import lesion_dice, lesion_labels

    target = torch.zeros(1, 1, 12, 12, 12, dtype=torch.long)
    target[0, 0, 1:7, 1:7, 1:7] = 1  # 216 voxels, found
    target[0, 0, 10:11, 10:11, 10:11] = 1  # 1 voxel, missed
    foreground = (target > 0).float()
    foreground[0, 0, 10, 10, 10] = 0.0
    lesions = lesion_labels(target)
    assert int(lesions.max()) == 2
    valid = torch.ones_like(foreground)
    assert lesion_dice(foreground, lesions, valid).item() == pytest.approx(0.5, abs=1e-4)
    one_hot = torch.cat([1 - foreground, foreground], 1)
    batch = soft_dice_per_class(one_hot, torch.cat([1 - target, target], 1).float(), valid)[1]
    assert batch.item() > 0.99  # the batch Dice barely notices the missed lesion
    assert lesion_dice(foreground, torch.zeros_like(lesions), valid).item() == 1.0
