"""Wall time and peak memory of ``autoseg_plan`` vs ``nnUNetv2_plan_and_preprocess``.

Makes synthetic ATLAS-like datasets (40 cases at 2 mm, 10 at 1 mm), converts them, then
times the whole planning step (verify + fingerprint + plans + caches) with 2 processes, as
a fresh subprocess each run so nothing is cached in memory. With ``--nnunet-python`` (a
Python with nnunetv2 installed) the same raw folder is planned and preprocessed by nnU-Net
(``-c 3d_fullres -np 2``). Finally it times reading one training patch from each cache.

    python benchmarks/plan_preprocess.py --runs 3 --nnunet-python /path/to/venv/bin/python

Peak memory is the largest sum of the resident memory of the command's process tree,
sampled every 50 ms from /proc (Linux).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DATASETS = {"atlas_2mm": ("small", 40), "atlas_1mm": ("full", 10)}
NNUNET_ID = 501
PATCH_READS = 200


def tree_rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parent, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
        rss[int(entry.name)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak tree RSS in GB)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.decode()[-2000:]}")
    return time.perf_counter() - start, peak / 1024**3


def make_raw_dataset(work: Path, name: str, size: str, cases: int) -> Path:
    """Synthesize ATLAS-like data and convert it to the raw layout (done once)."""
    from autoseg.data.convert import convert
    from autoseg.synthetic.generate import synthesize

    raw = work / "raw" / name
    if not (raw / "dataset.json").is_file():
        synthesize("atlas", work / "source" / name, cases=cases, seed=7, size=size)
        convert("atlas", work / "source" / name, raw, progress=False)
    return raw


def time_autoseg(work: Path, name: str) -> tuple[float, float]:
    """One fresh ``autoseg_plan`` run (its outputs removed first)."""
    shutil.rmtree(work / "preprocessed" / name, ignore_errors=True)
    command = [
        sys.executable,
        "-c",
        "from autoseg.cli import plan_main; raise SystemExit(plan_main())",
    ]
    args = ["-d", name, "--home", str(work), "-np", "2", "--no-progress"]
    return run_measured([*command, *args], dict(os.environ))


def time_nnunet(work: Path, name: str, python: str) -> tuple[float, float]:
    """One fresh ``nnUNetv2_plan_and_preprocess -c 3d_fullres -np 2`` on the same raw data."""
    nnunet = work / "nnunet"
    folder = f"Dataset{NNUNET_ID}_{name.replace('_', '')}"
    (nnunet / "raw").mkdir(parents=True, exist_ok=True)
    link = nnunet / "raw" / folder
    if not link.exists():
        link.symlink_to((work / "raw" / name).resolve())
    shutil.rmtree(nnunet / "preprocessed", ignore_errors=True)
    env = dict(os.environ)
    env.update(
        nnUNet_raw=str(nnunet / "raw"),
        nnUNet_preprocessed=str(nnunet / "preprocessed"),
        nnUNet_results=str(nnunet / "results"),
    )
    script = "from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import " \
        "plan_and_preprocess_entry as main; raise SystemExit(main())"  # fmt: skip
    args = ["-d", str(NNUNET_ID), "-c", "3d_fullres", "-np", "2", "-npfp", "2"]
    sys_argv = ["nnUNetv2_plan_and_preprocess", *args]
    command = [python, "-c", f"import sys; sys.argv = {sys_argv!r}; {script}"]
    result = run_measured(command, env)
    link.unlink()
    return result


def autoseg_patch_read_ms(work: Path, name: str, patch: tuple[int, int, int]) -> float:
    """Median ms to read one random training patch the way the training loader does.

    The loader's ``CaseReader`` memory-maps a case (and parses its JSON) once, then cuts
    every later patch straight out of the map; the first open of each case is included.
    """
    from autoseg.training.sampling import CaseReader

    caches = [p for p in (work / "preprocessed" / name).iterdir() if p.name.startswith("3d_")]
    case_ids = sorted(p.stem for p in caches[0].glob("*.npz"))
    reader = CaseReader(caches[0])
    rng = np.random.default_rng(0)
    times = []
    for _ in range(PATCH_READS):
        case_id = case_ids[rng.integers(len(case_ids))]
        start = time.perf_counter()
        shape = reader.case(case_id).data.shape[1:]
        corner = [
            int(rng.integers(0, max(1, s - p + 1))) for s, p in zip(shape, patch, strict=True)
        ]
        reader.region(case_id, corner, patch)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def nnunet_patch_read_ms(work: Path, python: str, patch: tuple[int, int, int]) -> float:
    """Median ms to read one random patch from nnU-Net's 3d_fullres cache (its own reader)."""
    folder = next((work / "nnunet" / "preprocessed").glob("Dataset*"))
    data_dir = next(folder.glob("nnUNetPlans_3d_fullres"))
    code = f"""
import time, statistics, numpy as np
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
folder = {str(data_dir)!r}
cls = infer_dataset_class(folder)
ids = cls.get_identifiers(folder)
ds = cls(folder, ids)
rng = np.random.default_rng(0)
times = []
for _ in range({PATCH_READS}):
    key = ids[rng.integers(len(ids))]
    start = time.perf_counter()
    data, seg, seg_prev, props = ds.load_case(key)
    patch = {list(patch)!r}
    sizes = zip(data.shape[1:], patch)
    corner = [int(rng.integers(0, max(1, s - p + 1))) for s, p in sizes]
    region = tuple(slice(c, c + p) for c, p in zip(corner, patch))
    np.ascontiguousarray(data[(slice(None),) + region])
    times.append((time.perf_counter() - start) * 1000)
print(statistics.median(times))
"""
    output = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return float(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--nnunet-python", help="a Python with nnunetv2 installed")
    parser.add_argument("--only", choices=sorted(DATASETS), help="one dataset only")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="autoseg_bench_"))
    names = [args.only] if args.only else list(DATASETS)
    print(f"work folder: {work}")
    print(f"{'dataset':10s} {'tool':8s} {'wall s (median)':>16s} {'peak GB':>8s} {'patch ms':>9s}")
    for name in names:
        size, cases = DATASETS[name]
        make_raw_dataset(work, name, size, cases)
        patch = (64, 80, 64) if size == "small" else (128, 128, 128)
        ours = [time_autoseg(work, name) for _ in range(args.runs)]
        wall, peak = statistics.median(t for t, _ in ours), max(m for _, m in ours)
        read = autoseg_patch_read_ms(work, name, patch)
        print(f"{name:10s} {'autoseg':8s} {wall:16.1f} {peak:8.2f} {read:9.2f}")
        if args.nnunet_python:
            theirs = [time_nnunet(work, name, args.nnunet_python) for _ in range(args.runs)]
            their_wall = statistics.median(t for t, _ in theirs)
            their_peak = max(m for _, m in theirs)
            their_read = nnunet_patch_read_ms(work, args.nnunet_python, patch)
            print(
                f"{name:10s} {'nnU-Net':8s} {their_wall:16.1f} {their_peak:8.2f} {their_read:9.2f}"
            )
            print(
                f"{name:10s} ratio autoseg/nnU-Net: time {wall / their_wall:.2f}, "
                f"peak memory {peak / their_peak:.2f}, patch read {read / their_read:.2f}"
            )


if __name__ == "__main__":
    main()
