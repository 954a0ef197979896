"""DDP on the CPU (gloo, 2 processes): deep supervision on, identical weights on both ranks."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from autoseg.training.distributed import (
    DistContext,
    context_from_env,
    init_distributed,
    rank_seed,
    shutdown_distributed,
    wrap_model,
)
from autoseg.training.losses import DeepSupervisionLoss, build_loss
from autoseg.training.optim import build_optimizer, build_schedule
from autoseg.training.trainer import Trainer, TrainSettings
from tests.networks.conftest import tiny_network
from tests.training.trainer_helpers import SyntheticBatches, synthetic_batch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_on_rank(rank: int, port: int, folder: str) -> None:
    """One rank: a tiny 2.5d_unet whose coarsest output has weight 0 (unused parameters)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    context = DistContext(rank=rank, world_size=2, local_rank=rank)
    device = init_distributed(context, torch.device("cpu"))
    network = tiny_network("2.5d_unet", seed=rank)  # different on purpose: DDP broadcasts
    model = wrap_model(network, context, find_unused=True)
    loss = DeepSupervisionLoss(build_loss("dice_ce"), [0.67, 0.33, 0.0])
    trainer = Trainer(
        model, loss, build_optimizer("sgd", network.parameters()), build_schedule("poly", 1),
        SyntheticBatches("2.5d_unet", seed=rank_seed(0, rank)),
        [synthetic_batch("2.5d_unet", 99 + i) for i in range(2)],
        TrainSettings(1, 3), device, context=context,
    )  # fmt: skip
    trainer.train()
    torch.save(network.state_dict(), Path(folder) / f"rank{rank}.pt")
    torch.save(trainer.state.history, Path(folder) / f"history{rank}.pt")
    shutdown_distributed()


def test_context_from_env() -> None:
    assert context_from_env({}) == DistContext(0, 1, 0)
    ctx = context_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (3, 4, 1, False)
    assert rank_seed(5, 0) == 5 and rank_seed(5, 1) != rank_seed(5, 0)


@pytest.mark.slow  # spawning two processes that import torch: ~10-20 s on 2 cores
@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_gloo_ranks_end_with_identical_weights(tmp_path: Path) -> None:
    mp.spawn(train_on_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    start = tiny_network("2.5d_unet", seed=0).state_dict()
    assert any(not torch.equal(weights[0][k], start[k]) for k in start)  # it trained
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    histories = [torch.load(tmp_path / f"history{r}.pt", weights_only=True) for r in (0, 1)]
    for row0, row1 in zip(*histories, strict=True):  # losses and Dice reduced over ranks
        del row0["epoch_seconds"], row1["epoch_seconds"]
        assert row0 == row1
