"""Segmentation losses, registered by name so plans can choose one.

Logits are ``(B, K, *spatial)``; targets are integer labels ``(B, 1, *spatial)`` where
``-1`` marks voxels outside the cropped body, which no loss term counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cc3d
import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from torch import nn

IGNORE_INDEX = -1
LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        LOSSES[name] = cls
        return cls

    return decorate


def build_loss(name: str, **kwargs: object) -> nn.Module:
    """Build a registered loss; an unknown name fails with the known ones."""
    if name not in LOSSES:
        raise KeyError(f"unknown loss '{name}'; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**kwargs)


def _one_hot_and_mask(target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 1, ...)`` labels -> one-hot ``(B, K, ...)`` and a valid-voxel mask ``(B, 1, ...)``."""
    valid = target != IGNORE_INDEX
    labels = torch.where(valid, target, torch.zeros_like(target)).long()
    one_hot = torch.zeros(
        (target.shape[0], num_classes, *target.shape[2:]), device=target.device
    ).scatter_(1, labels, 1.0)
    return one_hot, valid.float()


def soft_dice_per_class(
    probabilities: torch.Tensor, one_hot: torch.Tensor, valid: torch.Tensor, smooth: float = 1e-5
) -> torch.Tensor:
    """Soft Dice per class ``(K,)``, summed over the whole batch (batch Dice).

    Summing over the batch before dividing keeps patches with no lesion from producing
    a Dice of 0/0 that would dominate the gradient.
    """
    axes = [0, *range(2, probabilities.ndim)]
    intersection = (probabilities * one_hot * valid).sum(axes)
    total = (probabilities * valid).sum(axes) + (one_hot * valid).sum(axes)
    return (2 * intersection + smooth) / (total + smooth)


def _cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    return F.cross_entropy(logits, target[:, 0].long(), weight=weight, ignore_index=IGNORE_INDEX)


@register_loss("dice_ce")
class DiceCELoss(nn.Module):
    """Cross-entropy plus (1 - foreground soft Dice): nnU-Net's default, robust for small lesions.

    Args:
        class_weights: optional cross-entropy weight per class (e.g. ``[1, 3]``).
        dice_weight: weight of the Dice term relative to cross-entropy.
    """

    def __init__(self, class_weights: Sequence[float] | None = None, dice_weight: float = 1.0):
        super().__init__()
        weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float)
        self.register_buffer("class_weights", weights, persistent=False)
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot, valid = _one_hot_and_mask(target, logits.shape[1])
        dice = soft_dice_per_class(logits.float().softmax(1), one_hot, valid)[1:].mean()
        ce = _cross_entropy(logits.float(), target, self.class_weights)
        return ce + self.dice_weight * (1 - dice)


def lesion_labels(target: torch.Tensor) -> torch.Tensor:
    """Lesions (26-connected in 3D, 8 in 2D; any foreground class) of each sample,
    ``(B, 1, ...)`` int64: 0 outside lesions, 1..n inside (cc3d on the CPU)."""
    foreground = (target > 0).cpu().numpy()
    labels = np.zeros(foreground.shape, np.int64)
    connectivity = 26 if foreground.ndim == 5 else 8
    for b in range(foreground.shape[0]):
        labels[b, 0] = cc3d.connected_components(foreground[b, 0], connectivity=connectivity)
    return torch.from_numpy(labels).to(target.device)


def lesion_dice(
    foreground: torch.Tensor, lesions: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Mean soft Dice over the reference lesions of a batch, each scored on its own.

    Every lesion is compared with the prediction over its sample with the other lesions
    masked out (the "blob loss" of Kofler et al., 2023), so a 0.1 ml lesion weighs as
    much as a 40 ml one; batch Dice lets the large lesion decide. 1.0 without lesions.

    Args:
        foreground: foreground probability ``(B, 1, ...)``.
        lesions: :func:`lesion_labels` of the target.
        valid: 1 where the voxel counts, ``(B, 1, ...)``.
    """
    scores = []
    for b in range(lesions.shape[0]):
        ids = torch.unique(lesions[b])
        for lesion in ids[ids > 0]:
            inside = (lesions[b] == lesion).float()
            keep = valid[b] * ((lesions[b] == 0).float() + inside)
            p = foreground[b] * keep
            scores.append(2 * (p * inside).sum() / (p.sum() + inside.sum()).clamp(min=1e-5))
    if not scores:
        return foreground.new_ones(())
    return torch.stack(scores).mean()


@register_loss("dice_ce_lesion")
class DiceCELesionLoss(nn.Module):
    """Dice + CE plus a per-lesion Dice term (:func:`lesion_dice`) for small lesions.

    Args:
        lesion_weight: weight of ``1 - lesion Dice``.
        dice_ce: arguments of :class:`DiceCELoss`.
    """

    def __init__(self, lesion_weight: float = 1.0, **dice_ce: object):
        super().__init__()
        self.dice_ce = DiceCELoss(**dice_ce)
        self.lesion_weight = lesion_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target != IGNORE_INDEX).float()
        foreground = 1 - logits.float().softmax(1)[:, :1]
        lesions = lesion_labels(target)
        per_lesion = lesion_dice(foreground, lesions, valid)
        return self.dice_ce(logits, target) + self.lesion_weight * (1 - per_lesion)


@register_loss("focal")
class FocalLoss(nn.Module):
    """Focal loss (Lin et al.): down-weights easy voxels, which are nearly all background."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None):
        super().__init__()
        self.gamma, self.alpha = gamma, alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target[:, 0] != IGNORE_INDEX).float()
        labels = target[:, 0].clamp(min=0).long()
        log_p = F.log_softmax(logits.float(), 1).gather(1, labels.unsqueeze(1))[:, 0]
        focal = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.alpha is not None:
            focal = focal * torch.where(labels > 0, self.alpha, 1 - self.alpha)
        return (focal * valid).sum() / valid.sum().clamp(min=1)


@register_loss("generalized_dice")
class GeneralizedDiceLoss(nn.Module):
    """Generalised Dice (Sudre et al.): classes weighted by inverse squared volume."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot, valid = _one_hot_and_mask(target, logits.shape[1])
        probabilities = logits.float().softmax(1)
        axes = [0, *range(2, logits.ndim)]
        weights = 1.0 / ((one_hot * valid).sum(axes) ** 2).clamp(min=1.0)
        intersection = (weights * (probabilities * one_hot * valid).sum(axes)).sum()
        total = (weights * ((probabilities + one_hot) * valid).sum(axes)).sum()
        return 1 - 2 * intersection / total.clamp(min=1e-8)


def signed_distance_maps(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Signed distance to each class's boundary, ``(B, K, ...)``: negative inside.

    Computed on the CPU with scipy; the boundary loss multiplies it with the softmax.
    """
    labels = target[:, 0].cpu().numpy()
    maps = np.zeros((labels.shape[0], num_classes, *labels.shape[1:]), np.float32)
    for b in range(labels.shape[0]):
        for k in range(1, num_classes):
            inside = labels[b] == k
            if inside.any() and not inside.all():
                maps[b, k] = distance_transform_edt(~inside) - distance_transform_edt(inside)
    return torch.from_numpy(maps).to(target.device)


@register_loss("dice_ce_boundary")
class DiceCEBoundaryLoss(nn.Module):
    """Dice + CE plus the boundary loss (Kervadec et al.), which penalises far-off voxels."""

    def __init__(self, boundary_weight: float = 0.01, **dice_ce: object):
        super().__init__()
        self.dice_ce = DiceCELoss(**dice_ce)
        self.boundary_weight = boundary_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distances = signed_distance_maps(target, logits.shape[1])
        valid = (target != IGNORE_INDEX).float()
        boundary = (logits.float().softmax(1)[:, 1:] * distances[:, 1:] * valid).mean()
        return self.dice_ce(logits, target) + self.boundary_weight * boundary


def symmetry_loss(aligned_slices: torch.Tensor) -> torch.Tensor:
    """LCNN alignment loss: aligned heads should equal their own left-right mirror.

    Args:
        aligned_slices: ``(B, S, H, W)`` slices after the alignment network's transform;
            ``W`` is the left-right axis.
    """
    return F.l1_loss(aligned_slices, aligned_slices.flip(-1))


def deep_supervision_weights(num_outputs: int) -> list[float]:
    """Halving weights over scales (full resolution first), normalised to sum to 1."""
    raw = [0.5**i for i in range(num_outputs)]
    return [w / sum(raw) for w in raw]


def downsample_target(target: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour downsampling of labels to a deep-supervision output's shape."""
    if tuple(target.shape[2:]) == tuple(shape):
        return target
    return F.interpolate(target.float(), size=tuple(shape), mode="nearest").to(target.dtype)


class DeepSupervisionLoss(nn.Module):
    """Apply a loss at every decoder scale against a downsampled target, weighted 1, 1/2, ..."""

    def __init__(self, loss: nn.Module, weights: Sequence[float] | None = None):
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else list(weights)

    def forward(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        weights = self.weights or deep_supervision_weights(len(outputs))
        return sum(
            w * self.loss(out, downsample_target(target, out.shape[2:]))
            for w, out in zip(weights, outputs, strict=False)
            if w > 0
        )
