"""PyTorch DDP under ``torchrun``: process-group set-up, model wrapping, per-rank seeds.

``torchrun`` starts one process per device and describes it in ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Library code never reads the
environment itself: the CLI passes ``os.environ`` to :func:`context_from_env`, and
``init_process_group`` reads the rendezvous address through its ``env://`` method.
Only rank 0 writes files (checkpoints, logs, plots, trackers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

RANK_SEED_STRIDE = 1_000_003  # a prime: per-rank batch sequences never coincide


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: global rank (0 writes files).
        world_size: number of processes.
        local_rank: rank on this node (picks the CUDA device).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def context_from_env(environ: Mapping[str, str]) -> DistContext:
    """The context ``torchrun`` describes in ``environ`` (single process when absent)."""
    return DistContext(
        rank=int(environ.get("RANK", 0)),
        world_size=int(environ.get("WORLD_SIZE", 1)),
        local_rank=int(environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(context: DistContext, device: torch.device) -> torch.device:
    """Join the process group (gloo on CPU, nccl on CUDA); returns this rank's device.

    A single-process context does nothing, so callers need no special case.
    """
    if not context.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, init_method="env://", rank=context.rank, world_size=context.world_size
        )
    return device


def shutdown_distributed() -> None:
    """Leave the process group (safe when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, context: DistContext, find_unused: bool) -> nn.Module:
    """Wrap in DDP so gradients are all-reduced; identity for one process.

    Args:
        model: the network, already on its device.
        context: this process's place in the run.
        find_unused: needed when some outputs get no loss (e.g. a deep-supervision
            weight of 0 leaves that head without gradient); costs a graph traversal.
    """
    if not context.enabled:
        return model
    device_ids = None
    if next(model.parameters()).device.type == "cuda":
        device_ids = [context.local_rank]
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (checkpoints store its plain state dict)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s batch sequence: each rank sees different patches."""
    return seed + RANK_SEED_STRIDE * rank


def all_reduce_sum(tensor: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over ranks (a copy; unchanged for one process)."""
    if not context.enabled:
        return tensor
    on_gpu = dist.get_backend() == "nccl"  # nccl reduces CUDA tensors only
    total = tensor.detach().clone().to("cuda" if on_gpu else tensor.device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def any_rank(flag: bool, context: DistContext) -> bool:
    """True on every rank when it is true on any: ranks must stop at the same step, or
    the ones still training would wait forever for the others' gradients."""
    if not context.enabled:
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)]), context).item() > 0)
