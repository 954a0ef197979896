"""Optimisers and learning-rate schedules, chosen by name from a plans ``training`` entry.

A schedule is a pure function of the epoch (a factor on each parameter group's base LR),
so a resumed run needs no scheduler state beyond the epoch it restarts at, and the LR
curve of a resumed run is the curve of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autoseg.core.errors import InvalidInputError
from autoseg.plans import TrainingSchedule

SCHEDULE = TrainingSchedule()  # the plans' defaults, declared in autoseg.plans
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {}
SCHEDULES: dict[str, Callable[..., LRSchedule]] = {}


def _known(kind: str, name: str, registry: dict) -> None:
    if name not in registry:
        raise InvalidInputError(f"unknown {kind} '{name}'; known: {', '.join(sorted(registry))}")


def build_optimizer(
    name: str, groups: Iterable[dict[str, Any]] | Iterable[nn.Parameter], **settings: Any
) -> torch.optim.Optimizer:
    """A registered optimiser (``sgd``, ``adamw``) over parameters or parameter groups.

    Args:
        name: registered name; an unknown one fails with the known names.
        groups: parameters, or groups ``{"params": [...], "lr": ...}``.
        settings: the plans' ``lr``, ``momentum``, ``weight_decay``, ``nesterov``...
            Keys an optimiser does not take are ignored, so one ``training`` entry serves all.
    """
    _known("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name](groups, **settings)


def _sgd(
    groups: Iterable,
    lr: float = SCHEDULE.lr,
    momentum: float = SCHEDULE.momentum,
    weight_decay: float = SCHEDULE.weight_decay,
    nesterov: bool = SCHEDULE.nesterov,
    fused: bool | None = None,
    **_: Any,
) -> torch.optim.Optimizer:
    """nnU-Net's choice: SGD with high Nesterov momentum, robust across datasets
    (``fused``: one CUDA kernel for all parameters, the ``fused_optimizer`` lever)."""
    return torch.optim.SGD(
        groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
        fused=fused,
    )  # fmt: skip


def _adamw(
    groups: Iterable,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
    **_: Any,
) -> torch.optim.Optimizer:
    """AdamW: usually preferred for transformer-heavy networks and fine-tuning."""
    return torch.optim.AdamW(
        groups, lr=lr, weight_decay=weight_decay, betas=tuple(betas), fused=fused
    )


OPTIMIZERS.update(sgd=_sgd, adamw=_adamw)


@dataclass(frozen=True)
class LRSchedule:
    """LR factor per epoch of a run of ``epochs`` epochs.

    The curve is a function of ``(epoch, epochs)`` so that a run whose length changes
    while it trains (fitted to a ``--max-minutes`` budget) still decays to its end.

    Attributes:
        name: registered schedule name (recorded in checkpoints).
        curve: ``(epoch, epochs) -> multiplier`` of the base LR.
        epochs: the run's planned epochs.
    """

    name: str
    curve: Callable[[int, int], float]
    epochs: int

    def factor(self, epoch: int, epochs: int | None = None) -> float:
        """The multiplier at ``epoch`` of a run of ``epochs`` (default: the planned ones)."""
        return self.curve(epoch, epochs or self.epochs)

    def apply(
        self, optimizer: torch.optim.Optimizer, epoch: int, epochs: int | None = None
    ) -> float:
        """Set every group's LR for ``epoch``; returns the first group's LR (for the log)."""
        scale = self.factor(epoch, epochs)
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
            group["lr"] = group["base_lr"] * scale
        return optimizer.param_groups[0]["lr"]


def build_schedule(name: str, epochs: int, **settings: Any) -> LRSchedule:
    """A registered LR schedule (``poly``, ``cosine_warm_restarts``, ``constant``).

    Args:
        name: registered name; an unknown one fails with the known names.
        epochs: total epochs of the run.
        settings: the plans' ``poly_exponent``, ``restart_epochs``, ``restart_mult``,
            ``min_lr_fraction``; others are ignored.
    """
    _known("schedule", name, SCHEDULES)
    return SCHEDULES[name](epochs, **settings)


def poly_factor(epoch: int, epochs: int, exponent: float = 0.9) -> float:
    """``(1 - epoch / epochs) ** exponent``: nnU-Net's poly decay, reaching 0 at the end."""
    return (1 - min(epoch, epochs) / max(epochs, 1)) ** exponent


def cosine_restart_factor(
    epoch: int, first_period: int, mult: int = 2, min_fraction: float = 0.0
) -> float:
    """Cosine annealing with warm restarts (SGDR): periods ``T0, T0*mult, ...`` epochs."""
    period, start = max(1, first_period), 0
    while epoch >= start + period:
        start, period = start + period, period * max(1, mult)
    progress = (epoch - start) / period
    return min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def _poly(epochs: int, poly_exponent: float = SCHEDULE.poly_exponent, **_: Any) -> LRSchedule:
    return LRSchedule("poly", lambda e, total: poly_factor(e, total, poly_exponent), epochs)


def _cosine(
    epochs: int,
    restart_epochs: int | None = SCHEDULE.restart_epochs,
    restart_mult: int = SCHEDULE.restart_mult,
    min_lr_fraction: float = SCHEDULE.min_lr_fraction,
    **_: Any,
) -> LRSchedule:
    def curve(epoch: int, total: int) -> float:
        first = restart_epochs or max(1, total // 7)  # 1 + 2 + 4 periods fill the run
        return cosine_restart_factor(epoch, first, restart_mult, min_lr_fraction)

    return LRSchedule("cosine_warm_restarts", curve, epochs)


def _constant(epochs: int, **_: Any) -> LRSchedule:
    return LRSchedule("constant", lambda e, total: 1.0, epochs)


SCHEDULES.update(poly=_poly, cosine_warm_restarts=_cosine, constant=_constant)


def encoder_prefixes(model: nn.Module) -> list[str]:
    """Parameter-name prefixes of the network's encoder (what ``--freeze encoder`` freezes).

    A network may say so itself with an ``encoder_prefixes`` attribute; otherwise every
    module whose own name starts with ``encoder``, ``stem``, ``down`` or ``trunk`` (the
    ResNeXt trunk of the LCNN's global path) counts, outermost match only.
    """
    declared = getattr(model, "encoder_prefixes", None)
    if declared is not None:
        return [p.rstrip(".") + "." for p in declared]
    prefixes: list[str] = []
    for name, _ in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        inside = any(name.startswith(p) for p in prefixes)
        if leaf.startswith(("encoder", "stem", "down", "trunk")) and not inside:
            prefixes.append(name + ".")
    return prefixes


def freeze(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Stop gradients to parameters under ``prefixes``; returns the frozen names.

    Raises:
        InvalidInputError: no parameter matched (freezing nothing would silently
            fine-tune everything).
    """
    frozen = [n for n, p in model.named_parameters() if n.startswith(tuple(prefixes))]
    if not frozen:
        raise InvalidInputError(f"--freeze: no parameter starts with any of {prefixes}")
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return frozen


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters the optimiser should update (frozen ones are left out)."""
    return [p for p in model.parameters() if p.requires_grad]
