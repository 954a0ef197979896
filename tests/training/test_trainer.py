"""The Trainer: learns, resumes to the same weights, survives crashes with a checkpoint."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from autoseg.core.checkpoint import load_checkpoint
from autoseg.training.callbacks import Callback, Checkpointer
from autoseg.training.metrics import confusion_counts, pseudo_dice, update_ema
from autoseg.training.trainer import Trainer
from tests.training.trainer_helpers import make_trainer


class StopAfter(Callback):
    """Ends the run after ``epochs`` epochs (like a killed run that finished those)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def after_epoch(self) -> None:
        if self.trainer.state.epoch >= self.epochs:
            self.trainer.state.stop = True


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.network.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", ["3d_hybrid", "2.5d_unet", "2d_lcnn"])
def test_a_few_iterations_lower_the_validation_loss(name: str) -> None:
    trainer = make_trainer(None, name, epochs=1, iterations=5)
    before = trainer.evaluate()["val_loss"]
    state = trainer.train()
    after = state.history[-1]["val_loss"]
    assert after < before - 0.02, (before, after)
    assert state.iteration == 5 and state.epoch == 1


def test_lcnn_auxiliary_loss_is_added() -> None:
    trainer = make_trainer(None, "2d_lcnn", epochs=1, iterations=1)
    from tests.training.trainer_helpers import synthetic_batch

    batch = synthetic_batch("2d_lcnn", 0)
    with_aux = trainer.train_step(batch)
    trainer = make_trainer(None, "2d_lcnn", epochs=1, iterations=1)
    trainer.settings = type(trainer.settings)(1, 1, auxiliary_weight=0.0)
    without = trainer.train_step(batch)
    aux = trainer.network.auxiliary_loss().item()
    assert with_aux == pytest.approx(without + 0.1 * aux, rel=1e-4, abs=1e-5)


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = make_trainer(tmp_path / "a", "2.5d_unet", epochs=4, iterations=2)
    straight.train()
    first = make_trainer(tmp_path / "b", "2.5d_unet", epochs=4, iterations=2,
                         callbacks=[StopAfter(2)])  # fmt: skip
    first.train()
    assert not torch.equal(*[next(iter(weights(t).values())) for t in (straight, first)])
    resumed = make_trainer(tmp_path / "b", "2.5d_unet", epochs=4, iterations=2)
    resumed.load_state_dict(load_checkpoint(tmp_path / "b" / "checkpoint_latest.pt"))
    assert resumed.state.epoch == 2 and resumed.state.iteration == 4
    resumed.train()
    assert_same_weights(weights(straight), weights(resumed))
    assert resumed.batches.requests == [(2, 4), (3, 6)]  # the sequence continued, not restarted
    assert [h["train_loss"] for h in resumed.state.history] == pytest.approx(
        [h["train_loss"] for h in straight.state.history], abs=1e-6
    )


def test_killed_run_leaves_a_loadable_checkpoint_and_resumes_mid_epoch(tmp_path: Path) -> None:
    crashing = make_trainer(tmp_path / "a", "2.5d_unet", epochs=3, iterations=3, fail_at=5)
    with pytest.raises(RuntimeError, match="synthetic failure"):
        crashing.train()
    latest = load_checkpoint(tmp_path / "a" / "checkpoint_latest.pt")
    assert (latest["epoch"], latest["iteration"], latest["epoch_step"]) == (1, 3, 0)
    assert not (tmp_path / "a" / "checkpoint_final.pt").exists()
    # with time-based checkpoints due at every step, the crash keeps the step before it
    timed = make_trainer(tmp_path / "b", "2.5d_unet", epochs=3, iterations=3, fail_at=5,
                         callbacks=[Checkpointer(tmp_path / "b", every_minutes=0)])  # fmt: skip
    with pytest.raises(RuntimeError):
        timed.train()
    mid = load_checkpoint(tmp_path / "b" / "checkpoint_latest.pt")
    assert (mid["epoch"], mid["iteration"], mid["epoch_step"]) == (1, 5, 2)
    resumed = make_trainer(tmp_path / "b", "2.5d_unet", epochs=3, iterations=3)
    resumed.load_state_dict(mid)
    resumed.train()
    straight = make_trainer(tmp_path / "c", "2.5d_unet", epochs=3, iterations=3)
    straight.train()
    assert_same_weights(weights(straight), weights(resumed))
    assert (tmp_path / "b" / "checkpoint_final.pt").is_file()


def test_best_checkpoint_follows_the_ema(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, "2.5d_unet", epochs=3, iterations=2)
    state = trainer.train()
    emas = [h["ema_dice"] for h in state.history]
    best = load_checkpoint(tmp_path / "checkpoint_best.pt")
    assert best["best_ema_dice"] == pytest.approx(max(emas))
    assert best["epoch"] == 1 + emas.index(max(emas))
    assert load_checkpoint(tmp_path / "checkpoint_final.pt")["epoch"] == 3
    dice = [h["pseudo_dice"] for h in state.history]
    assert emas[1] == pytest.approx(0.9 * dice[0] + 0.1 * dice[1])


def test_pseudo_dice_aggregates_counts_over_the_set() -> None:
    logits = torch.zeros(2, 2, 1, 4)  # (B, K, Y, X): predict class 1 at x < 2
    logits[:, 1, :, :2] = 1.0
    target = torch.tensor([[[[1, 1, 0, 0]]], [[[0, 0, 0, -1]]]])
    counts = confusion_counts(logits, target)
    assert counts.tolist() == [[2.0, 2.0, 0.0]]  # TP, FP, FN summed over both patches
    assert pseudo_dice(counts) == pytest.approx(4 / 6)
    assert math.isnan(pseudo_dice(torch.zeros(1, 3)))
    assert update_ema(None, 0.5) == 0.5 and update_ema(0.5, 1.0) == pytest.approx(0.55)
    assert update_ema(0.5, math.nan) == 0.5
