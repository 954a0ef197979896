"""CPU prediction cost on a noisy-background set against a clean one of the same size, for
networks trained briefly and longer, with the old and the new code (issue 16, part 5).

    python benchmarks/cpu_predict_cost.py --work-dir /tmp/cpu_cost            # 2 mm, 3 cases
    python benchmarks/cpu_predict_cost.py --size tiny --cases 1 --iterations 1 2 \\
        --subnormal-windows 1                                                  # dry run

Two synthetic ATLAS-like sets share seed, anatomy and grid (``--size small``: 2 mm,
99x117x95 voxels) and differ only in the air around the head: ``--clean-background`` (``rician``,
the scan's own magnitude noise) against ``--noisy-background`` (``gaussian``: zero-mean
noise, a template with noise added). The noisy set is planned (``3d_hybrid``) and
preprocessed, and one network is trained on it; its weights are copied after each of
``--iterations`` steps (2 and 200 by default: "trained 2 iterations" against "trained a
while"). Each network predicts every case of both sets through the user's path (read and
preprocess, sliding window, revert, write), timed per stage; rows give medians.

Modes: ``after`` is this tree; ``before`` puts back what the fix changed, in this process
only (:func:`old_behaviour`): the denormal flush in the calling thread alone, no cap on
torch's threads, and the crop's first air rule alone (the zero-mean-noise rule off).

``subnormal %`` is the share of every module's output values (and of the weights) that
are float32 subnormals, counted from the bit pattern on ``--subnormal-windows`` windows of
the first case: a property of the values, not of the machine's load. It is counted three
ways: without any flush (what the arithmetic would meet), under the old flush and under
the new one (non-zero there means a thread computed unflushed).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import autoseg.core.cpu as base
import autoseg.inference.case_prediction as predict_module
import autoseg.pipeline.fold_trainer as training_module
import autoseg.preprocessing.crop as crop
from autoseg.core.workspace import Workspace
from autoseg.data.convert import convert
from autoseg.data.io import write_label
from autoseg.data.layout import RawDataset
from autoseg.inference.case_prediction import predict_case
from autoseg.inference.postprocess import postprocess
from autoseg.inference.settings import InferenceSettings
from autoseg.inference.tiles import tile_positions
from autoseg.pipeline.fold_data import load_fold
from autoseg.pipeline.fold_trainer import TrainOptions, build_trainer
from autoseg.planning.planner import plan_dataset
from autoseg.plans.preprocessing import PreprocessingSpec
from autoseg.preprocessing.case import preprocess_case, revert_prediction
from autoseg.preprocessing.dataset import preprocess_dataset
from autoseg.synthetic.generate import synthesize

CONFIGURATION = "3d_hybrid"
MODES = ("before", "after")


@contextlib.contextmanager
def old_behaviour() -> Iterator[None]:
    """The code before the fix (0f68f32), patched into this process for the block: the
    flush in the calling thread only, torch's own thread count, the first air rule only."""

    def main_thread_flush(enabled: bool) -> bool:
        torch.set_flush_denormal(enabled)
        return False

    def no_cap(reserve: int = 0, busy_elsewhere: float = 0.0) -> int:
        return torch.get_num_threads()

    saved = (base.set_flush_denormal_everywhere, predict_module.cpu_threads,
             training_module.cpu_threads, crop.AIR_CONTRAST)  # fmt: skip
    base.set_flush_denormal_everywhere = main_thread_flush
    predict_module.cpu_threads = training_module.cpu_threads = no_cap
    crop.AIR_CONTRAST = math.inf
    try:
        yield
    finally:
        (base.set_flush_denormal_everywhere, predict_module.cpu_threads,
         training_module.cpu_threads, crop.AIR_CONTRAST) = saved  # fmt: skip


def behaviour(mode: str) -> contextlib.AbstractContextManager:
    """``before``: :func:`old_behaviour`; ``after``: this tree as it is."""
    return old_behaviour() if mode == "before" else contextlib.nullcontext()


@dataclass(frozen=True)
class CaseSet:
    """One synthetic set in the raw layout: its background and ``(case_id, files)``."""

    background: str
    cases: list[tuple[str, list[Path]]]


def make_set(work: Path, background: str, cases: int, size: str) -> tuple[Workspace, CaseSet]:
    """Synthetic ATLAS-like cases (small: 2 mm) with the given air, converted to the raw layout."""
    workspace = Workspace.under(work / background)
    raw = workspace.raw / "Cost"
    if not (raw / "dataset.json").is_file():
        source = work / f"source_{background}"
        synthesize("atlas", source, cases, seed=0, size=size, background=background,
                   progress=False)  # fmt: skip
        convert("atlas", source, raw, progress=False)
    found = [(c.case_id, list(c.image_files)) for c in RawDataset.open(raw).training_cases()]
    return workspace, CaseSet(background, found)


def plan_and_preprocess(workspace: Workspace) -> dict:
    """Plans (CPU) and the training cache of the configuration; returns its plans entry."""
    plans = plan_dataset(workspace, "Cost", device="cpu", progress=False)
    entry = plans.configurations[CONFIGURATION]
    raw = RawDataset.open(workspace.raw / "Cost")
    preprocess_dataset(raw, workspace.preprocessed / "Cost", entry.preprocessing_spec,
                       num_processes=1, progress=False)  # fmt: skip
    return entry


def train_snapshots(
    workspace: Workspace, iterations: list[int], work: Path
) -> dict[str, torch.nn.Module]:
    """One network trained on the set, copied after each of ``iterations`` steps (0: the
    initialisation). No loader workers: the steps are what this figure is about."""
    data = load_fold(workspace, "Cost", CONFIGURATION, "all")
    longest = max(iterations)
    options = TrainOptions(epochs=1, iterations_per_epoch=max(1, longest), device="cpu",
                           num_workers=0, progress=False)  # fmt: skip
    trainer = build_trainer(workspace, data, "all", work / "train", options)
    snapshots = {}
    if 0 in iterations:
        snapshots["0 it"] = copy.deepcopy(trainer.network).eval()
    batches = trainer.batches.for_epoch(0, 0)
    with base.flushed_denormals("cpu"):
        for step in range(1, longest + 1):
            trainer.train_step(next(batches))
            if step in iterations:
                snapshots[f"{step} it"] = copy.deepcopy(trainer.network).eval()
    trainer.batches.close()
    return snapshots


def subnormal_share(values: torch.Tensor) -> tuple[int, int]:
    """(subnormal count, value count) of a float32 tensor, read from the bits (zero
    exponent, non-zero mantissa), so a DAZ flag in the reading thread cannot hide them."""
    if values.dtype != torch.float32:
        return 0, 0
    bits = values.detach().contiguous().view(torch.int32)
    subnormal = ((bits & 0x7F800000) == 0) & ((bits & 0x007FFFFF) != 0)
    return int(subnormal.sum()), bits.numel()


def count_subnormals(network: torch.nn.Module, windows: torch.Tensor, flush: str) -> float:
    """Percent of all module outputs that are subnormal for ``windows`` ``(N, C, *patch)``.

    Args:
        flush: ``none`` (no flush at all), ``before`` (the old flush) or ``after`` (this tree's).
    """
    totals = [0, 0]

    def hook(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        for tensor in output if isinstance(output, list | tuple) else [output]:
            if isinstance(tensor, torch.Tensor):
                count, size = subnormal_share(tensor)
                totals[0] += count
                totals[1] += size

    handles = [m.register_forward_hook(hook) for m in network.modules()]
    flushing = contextlib.nullcontext() if flush == "none" else base.flushed_denormals("cpu")
    try:
        with behaviour(flush if flush != "none" else "after"), flushing, torch.inference_mode():
            network = base.to_channels_last(network)
            for window in windows:
                network(base.channels_last(window[None]))
    finally:
        for handle in handles:
            handle.remove()
    return 100.0 * totals[0] / max(1, totals[1])


def weight_subnormals(network: torch.nn.Module) -> float:
    """Percent of the network's parameters and buffers that are subnormal."""
    counts = [subnormal_share(t) for t in [*network.parameters(), *network.buffers()]]
    return 100.0 * sum(c for c, _ in counts) / max(1, sum(n for _, n in counts))


def padded_shape(spatial: tuple[int, ...], patch: tuple[int, ...]) -> tuple[int, ...]:
    """The grid the sliding window tiles: axes shorter than the patch padded to it."""
    return tuple(max(int(s), int(p)) for s, p in zip(spatial, patch, strict=True))


def sample_windows(image: np.ndarray, patch: tuple[int, ...], count: int) -> torch.Tensor:
    """``count`` windows ``(N, C, *patch)`` spread evenly over the case's sliding-window
    tiles (air corners and head centre alike)."""
    shape = padded_shape(image.shape[1:], patch)
    padded = np.zeros((image.shape[0], *shape), np.float32)
    padded[(slice(None), *(slice(0, s) for s in image.shape[1:]))] = image
    tiles = tile_positions(shape, patch, 0.5)
    picks = np.linspace(0, len(tiles) - 1, min(count, len(tiles))).round().astype(int)
    regions = [tuple(slice(a, a + p) for a, p in zip(tiles[i], patch, strict=True)) for i in picks]
    return torch.stack([torch.from_numpy(padded[(slice(None), *r)]) for r in regions])


@dataclass(frozen=True)
class CaseTiming:
    """Seconds of one case per stage, its sliding-window tile count and crop size."""

    read_s: float
    network_s: float
    write_s: float
    windows: int
    voxels_kept: int
    voxels_total: int

    @property
    def total_s(self) -> float:
        return self.read_s + self.network_s + self.write_s


def time_case(
    case: tuple[str, list[Path]], network: torch.nn.Module, spec: PreprocessingSpec,
    settings: InferenceSettings, out: Path,
) -> CaseTiming:  # fmt: skip
    """The user's per-case path, stage by stage: read + preprocess, networks, revert +
    postprocess (26-connected components) + write."""
    start = time.perf_counter()
    loaded = preprocess_case(case[1], None, spec, case[0])
    read = time.perf_counter()
    probabilities = predict_case([network], loaded.data, settings)
    predicted = time.perf_counter()
    labels = postprocess(revert_prediction(probabilities, loaded.properties),
                         {"min_component_voxels": 10})  # fmt: skip
    write_label(out / f"{case[0]}.nii.gz", labels, loaded.properties.meta)
    written = time.perf_counter()
    box = loaded.properties.crop_box
    padded = padded_shape(loaded.data.shape[1:], settings.patch_size)
    return CaseTiming(read - start, predicted - read, written - predicted,
                      len(tile_positions(padded, settings.patch_size, settings.step)),
                      math.prod(box.shape), math.prod(box.original_shape))  # fmt: skip


def median_timing(timings: list[CaseTiming]) -> dict[str, float]:
    """Median of every stage over cases (and repeats)."""
    fields = ("total_s", "read_s", "network_s", "write_s", "windows", "voxels_kept", "voxels_total")
    return {f: statistics.median(getattr(t, f) for t in timings) for f in fields}


def run_set(
    case_set: CaseSet, network: torch.nn.Module, spec: PreprocessingSpec,
    settings: InferenceSettings, mode: str, repeats: int, out: Path,
) -> dict[str, float]:  # fmt: skip
    """Median per-case figures of one network on one set under one mode."""
    out.mkdir(parents=True, exist_ok=True)
    with behaviour(mode):
        timings = [time_case(case, network, spec, settings, out)
                   for _ in range(repeats) for case in case_set.cases]  # fmt: skip
    return median_timing(timings)


def print_subnormals(
    snapshots: dict[str, torch.nn.Module], sets: list[CaseSet], spec: PreprocessingSpec,
    patch: tuple[int, ...], windows: int,
) -> None:  # fmt: skip
    """The subnormal table: per network and set, unflushed / old flush / new flush."""
    print("\n| network | set | weights subnormal % | activations subnormal %: no flush "
          "| old flush | new flush |\n|---|---|---|---|---|---|")  # fmt: skip
    for label, network in snapshots.items():
        for case_set in sets:
            with behaviour("after"):
                image = preprocess_case(case_set.cases[0][1], None, spec).data
            sample = sample_windows(np.asarray(image, np.float32), patch, windows)
            shares = [count_subnormals(network, sample, f) for f in ("none", "before", "after")]
            print(
                f"| {label} | {case_set.background} | {weight_subnormals(network):.4f} | "
                + " | ".join(f"{s:.4f}" for s in shares)
                + " |",
                flush=True,
            )


def run(args: argparse.Namespace, work: Path) -> None:
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"TTA {'on' if args.tta else 'off'}, {args.cases} cases x {args.repeats} repeats"
    )
    noisy_ws, noisy = make_set(work, args.noisy_background, args.cases, args.size)
    _, clean = make_set(work, args.clean_background, args.cases, args.size)
    entry = plan_and_preprocess(noisy_ws)
    spec = entry.preprocessing_spec
    num_classes = int(entry.network.kwargs["num_classes"])
    settings = InferenceSettings.from_configuration(entry, num_classes, device="cpu",
                                                    tta=args.tta)  # fmt: skip
    patch = tuple(int(p) for p in entry.patch_size)
    print(f"{CONFIGURATION} patch {patch}; training on the {noisy.background} set")
    snapshots = train_snapshots(noisy_ws, sorted(set(args.iterations)), work)
    if args.subnormal_windows:
        print_subnormals(snapshots, [clean, noisy], spec, patch, args.subnormal_windows)
    print("\n| mode | network | set | s/case | read | network | write | windows | voxels "
          "kept / grid | noisy/clean |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for mode in args.modes:
        for label, network in snapshots.items():
            rows = {s.background: run_set(s, network, spec, settings, mode, args.repeats,
                                          work / "out" / mode / s.background)
                    for s in (clean, noisy)}  # fmt: skip
            ratio = rows[noisy.background]["total_s"] / rows[clean.background]["total_s"]
            for background, row in rows.items():
                shown = f"{ratio:.2f}" if background == noisy.background else ""
                print(format_row(mode, label, background, row, shown), flush=True)


def format_row(mode: str, label: str, background: str, row: dict, ratio: str) -> str:
    """One markdown row of the timing table."""
    stages = " | ".join(f"{row[k]:.2f}" for k in ("total_s", "read_s", "network_s", "write_s"))
    return (f"| {mode} | {label} | {background} | {stages} | {row['windows']:.0f} | "
            f"{row['voxels_kept']:.0f} / {row['voxels_total']:.0f} | {ratio} |")  # fmt: skip


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="cases per set")
    parser.add_argument("--repeats", type=int, default=1, help="passes over each set")
    parser.add_argument("--size", default="small", help="small: 2 mm; tiny: 4 mm (dry run)")
    parser.add_argument("--iterations", type=int, nargs="+", default=[2, 200],
                        help="training steps of each network timed (0: fresh weights)")  # fmt: skip
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--tta", action="store_true", help="mirroring TTA (8 passes)")
    parser.add_argument("--clean-background", default="rician")
    parser.add_argument("--noisy-background", default="gaussian")
    parser.add_argument("--subnormal-windows", type=int, default=8,
                        help="windows of case 1 counted for subnormals (0: skip)")  # fmt: skip
    parser.add_argument("--work-dir", type=Path, help="keep data between runs")
    return parser.parse_args()


def main() -> None:
    args = parse()
    if args.work_dir is not None:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        run(args, args.work_dir)
        return
    with tempfile.TemporaryDirectory(prefix="autoseg-cpu-cost-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
