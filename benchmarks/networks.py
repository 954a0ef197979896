"""Forward+backward speed and peak memory of the autoseg networks on this machine.

Usage: ``python benchmarks/networks.py [--full] [--iterations N] [--threads T]``

Each case runs in its own spawned process so its peak resident memory (``ru_maxrss``,
minus the process's RSS after building the network) belongs to that case alone. When
``dynamic-network-architectures`` is installed, nnU-Net's ``PlainConvUNet`` is measured at
the same patch and batch with its width scaled to the 3d_hybrid's parameter count, and
the time and memory ratios are printed (target: 3d_hybrid <= 1.3x the plain U-Net's time).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from typing import Any

HYBRID_2MM = {
    "stage_features": [16, 32, 64, 128, 192],
    "blocks_per_stage": [1, 2, 2, 2, 2],
    "transformer_depth": 1,
    "transformer_heads": 4,
}
HYBRID_1MM = {**HYBRID_2MM, "stage_features": [24, 48, 96, 192, 256], "transformer_depth": 2}
LCNN_SMALL = {"global_layers": [1, 1, 1, 1], "global_base_channels": 32, "num_slices": 3}

# (label, network name, kwargs, patch, batch); "2mm"/"1mm" = ATLAS-like T1w spacing.
QUICK = [
    ("3d_hybrid 2mm", "3d_hybrid", HYBRID_2MM, (32, 48, 48), 2),
    ("2.5d_unet b32", "2.5d_unet", {"base_features": 32}, (128, 128), 4),
    ("2d_lcnn small", "2d_lcnn", LCNN_SMALL, (128, 128), 4),
]
FULL = [
    ("3d_hybrid 2mm", "3d_hybrid", HYBRID_2MM, (64, 80, 64), 2),
    ("3d_hybrid 1mm", "3d_hybrid", HYBRID_1MM, (80, 96, 80), 2),
    ("2.5d_unet b64", "2.5d_unet", {"base_features": 64}, (256, 256), 4),
    ("2d_lcnn r50", "2d_lcnn", {"num_slices": 3}, (256, 256), 4),
]


def _rss_mb() -> float:
    """Current resident memory of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _build(name: str, kwargs: dict[str, Any], in_channels: int, params: int | None) -> Any:
    """An autoseg network, or (name == 'plain') a PlainConvUNet of ~``params`` parameters."""
    from autoseg.networks import build_network

    if name != "plain":
        return build_network(
            {"name": name, "kwargs": {"in_channels": in_channels, "num_classes": 2, **kwargs}}
        )
    return _plain_unet(kwargs, in_channels, params)


def _plain_unet(kwargs: dict[str, Any], in_channels: int, params: int) -> Any:
    """nnU-Net's PlainConvUNet with the hybrid's stages, width scaled to ``params``."""
    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    def make(scale: float) -> Any:
        feats = [max(4, round(f * scale)) for f in kwargs["stage_features"]]
        n = len(feats)
        return PlainConvUNet(
            in_channels,
            n,
            feats,
            torch.nn.Conv3d,
            3,
            [1] + [2] * (n - 1),
            2,
            2,
            1,
            conv_bias=True,
            norm_op=torch.nn.InstanceNorm3d,
            norm_op_kwargs={"affine": True},
            nonlin=torch.nn.LeakyReLU,
            nonlin_kwargs={"inplace": True},
            deep_supervision=True,
        )

    low, high = 0.25, 4.0
    for _ in range(20):  # bisection on the width multiplier
        mid = (low * high) ** 0.5
        count = sum(p.numel() for p in make(mid).parameters())
        low, high = (mid, high) if count < params else (low, mid)
    return make(low)


def _measure(case: tuple, iterations: int, threads: int, params: int | None, queue: Any) -> None:
    """Child process: time forward+backward and record peak RSS growth."""
    import torch

    torch.set_num_threads(threads)
    label, name, kwargs, patch, batch = case
    in_channels = 3 if name in ("2.5d_unet", "2d_lcnn") else 1
    net = _build(name, kwargs, in_channels, params).train()
    x = torch.randn(batch, in_channels, *patch)
    base = _rss_mb()
    times = []
    for i in range(iterations + 1):
        start = time.perf_counter()
        outputs = net(x)
        sum(o.float().mean() for o in outputs).backward()
        net.zero_grad(set_to_none=True)
        if i:  # the first iteration warms up allocators and kernels
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    count = sum(p.numel() for p in net.parameters())
    queue.put((label, count, 1000 * sum(times) / len(times), peak))


def run_case(case: tuple, iterations: int, threads: int, params: int | None = None) -> tuple:
    """Measure one case in a fresh process; returns (label, params, ms/iter, peak MB)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(case, iterations, threads, params, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="larger, plans-like patches")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        import dynamic_network_architectures  # noqa: F401

        have_plain = True
    except ImportError:
        have_plain = False
    print(f"{'case':<28}{'patch':>16}{'batch':>6}{'params':>12}{'ms/iter':>10}{'peak MB':>10}")
    for case in FULL if args.full else QUICK:
        _, name, kwargs, patch, batch = case
        row = run_case(case, args.iterations, args.threads)
        _print(row, patch, batch)
        if name == "3d_hybrid" and have_plain:
            plain = run_case(
                ("  PlainConvUNet (nnU-Net)", "plain", kwargs, patch, batch),
                args.iterations,
                args.threads,
                row[1],
            )
            _print(plain, patch, batch)
            print(
                f"  ratio hybrid/plain: time {row[2] / plain[2]:.2f}x, "
                f"memory per parameter {row[3] / row[1] / (plain[3] / plain[1]):.2f}x"
            )


def _print(row: tuple, patch: tuple, batch: int) -> None:
    label, params, ms, peak = row
    print(
        f"{label:<28}{'x'.join(map(str, patch)):>16}{batch:>6}{params:>12,}{ms:>10.0f}{peak:>10.0f}"
    )


if __name__ == "__main__":
    main()
