"""Optimisers and LR schedules by name; schedule values."""

from __future__ import annotations

import pytest
import torch

from autoseg.core.errors import InvalidInputError
from autoseg.training.optim import (
    build_optimizer,
    build_schedule,
    cosine_restart_factor,
    poly_factor,
)


def test_defaults_are_nnunets_sgd() -> None:
    opt = build_optimizer("sgd", [torch.nn.Parameter(torch.ones(2))], lr=0.01, epochs=5)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.01, 0.99, True)
    assert group["weight_decay"] == 3e-5
    assert isinstance(build_optimizer("adamw", [torch.nn.Parameter(torch.ones(1))]),
                      torch.optim.AdamW)  # fmt: skip


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(InvalidInputError, match="adamw, sgd"):
        build_optimizer("lion", [])
    with pytest.raises(InvalidInputError, match="constant, cosine_warm_restarts, poly"):
        build_schedule("step", 10)


def test_poly_schedule_values() -> None:
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100) == pytest.approx(0.5**0.9)
    assert poly_factor(99, 100) == pytest.approx(0.01**0.9)
    opt = build_optimizer("sgd", [torch.nn.Parameter(torch.ones(1))], lr=0.01)
    schedule = build_schedule("poly", 10, poly_exponent=0.9)
    assert schedule.apply(opt, 5) == pytest.approx(0.01 * 0.5**0.9)
    assert schedule.apply(opt, 0) == pytest.approx(0.01)  # from the base LR, not compounded


def test_cosine_warm_restarts_values() -> None:
    factors = [cosine_restart_factor(e, 2, mult=2) for e in range(8)]
    # periods: [0, 2), [2, 6), [6, 14): each restarts at 1
    assert factors[0] == factors[2] == factors[6] == 1.0
    assert factors[1] == pytest.approx(0.5)
    assert factors[4] == pytest.approx(0.5) and factors[3] == pytest.approx(0.5 + 0.5 * 2**-0.5)
    schedule = build_schedule("cosine_warm_restarts", 14, restart_epochs=2, min_lr_fraction=0.1)
    assert schedule.factor(1) == pytest.approx(0.1 + 0.9 * 0.5)


def test_poly_schedule_follows_a_run_shortened_to_fit_a_budget() -> None:
    schedule = build_schedule("poly", 30, poly_exponent=1.0)
    assert schedule.factor(5) == pytest.approx(25 / 30)
    assert schedule.factor(5, epochs=10) == pytest.approx(0.5)  # fitted to 10 epochs
