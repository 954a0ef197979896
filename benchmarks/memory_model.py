"""Check the planner's memory model against measured peak memory of real training steps.

For each (configuration, patch, batch) point a fresh subprocess builds the network on
the CPU, records its peak RSS after building the model and the batch, runs two SGD
iterations (forward, Dice+CE-like loss, backward, step) and records the peak again. The
measured training memory is that increase plus the weights (they were in the baseline);
it is compared with ``estimate_training_memory(..., amp=False)``. glibc is told to
return freed memory at once (see MEASURE_ENV) so RSS measures live tensors. On a CUDA machine
(``--cuda``) ``torch.cuda.max_memory_allocated`` is used instead, with AMP.

Usage: ``python benchmarks/memory_model.py [--cuda]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from autoseg.planning.topology import hybrid_kwargs, lcnn_kwargs, unet25d_kwargs

POINTS = [
    ("3d_hybrid L2", hybrid_kwargs(2, [1, 1, 1], [64, 64, 64], 1, 2), (64, 64, 64), 2, False),
    ("3d_hybrid L4", hybrid_kwargs(4, [1, 1, 1], [80, 96, 80], 1, 2), (80, 96, 80), 2, False),
    ("3d_hybrid L3 aniso", hybrid_kwargs(3, [4, 1, 1], [16, 160, 128], 1, 2), (16, 160, 128),
     2, False),
    ("3d_hybrid L4 ckpt", hybrid_kwargs(4, [1, 1, 1], [80, 96, 80], 1, 2), (80, 96, 80), 2, True),
    ("2.5d_unet b32", unet25d_kwargs(4, [192, 160], 5, 2), (192, 160), 8, False),
    ("2.5d_unet b16", unet25d_kwargs(2, [256, 256], 5, 2), (256, 256), 12, False),
    ("2d_lcnn L2", lcnn_kwargs(2, 1, 5, 2), (192, 160), 4, False),
]  # fmt: skip
# glibc keeps freed blocks below a dynamic mmap threshold (up to 32 MB) in the heap, so
# RSS would count tensors long freed; a fixed small threshold returns them at once and
# makes peak RSS track live tensors, as CUDA's max_memory_allocated does.
MEASURE_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
NAMES = {"3d": "3d_hybrid", "2.": "2.5d_unet", "2d": "2d_lcnn"}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def spec_of(index: int, checkpointing: bool = False) -> dict:
    label, kwargs = POINTS[index][0], dict(POINTS[index][1])
    if checkpointing:
        kwargs["checkpointing"] = True
    return {"name": NAMES[label[:2]], "kwargs": kwargs}


def measure(index: int, cuda: bool) -> dict:
    """Run in a fresh process: peak training memory of one point, in bytes."""
    import torch

    from autoseg.networks import build_network
    from autoseg.planning.memory import _proxy_loss

    torch.set_num_threads(2)
    _, kwargs, patch, batch, ckpt = POINTS[index]
    device = "cuda" if cuda else "cpu"
    model = build_network(spec_of(index, ckpt)).to(device).train()
    x = torch.randn(batch, kwargs["in_channels"], *patch, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99, nesterov=True)
    weights = sum(p.numel() * 4 for p in model.parameters())
    baseline = peak_rss_bytes()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", enabled=cuda):
            loss = _proxy_loss(model(x))
        loss.backward()
        optimizer.step()
    seconds = (time.perf_counter() - start) / 2
    if cuda:
        return {"measured": torch.cuda.max_memory_allocated(), "seconds": seconds}
    return {"measured": peak_rss_bytes() - baseline + weights, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true")
    parser.add_argument("--point", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point is not None:
        print(json.dumps(measure(args.point, args.cuda)))
        return
    from autoseg.planning.memory import estimate_training_memory

    print(f"{'point':22s} {'patch':>15s} {'batch':>5s} {'est GB':>7s} {'meas GB':>7s} "
          f"{'ratio':>6s} {'s/iter':>6s}")  # fmt: skip
    for index, (label, _, patch, batch, ckpt) in enumerate(POINTS):
        estimate = estimate_training_memory(spec_of(index), patch, batch, args.cuda, ckpt)
        command = [sys.executable, __file__, "--point", str(index)] + (["--cuda"] * args.cuda)
        run = subprocess.run(command, capture_output=True, check=True, env=MEASURE_ENV)
        result = json.loads(run.stdout)
        ratio = estimate.total / result["measured"]
        print(f"{label:22s} {'x'.join(map(str, patch)):>15s} {batch:5d} "
              f"{estimate.total_gb:7.2f} {result['measured'] / 2**30:7.2f} {ratio:6.2f} "
              f"{result['seconds']:6.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
