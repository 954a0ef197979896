"""The tiny world the docs' commands run in: placeholder paths, synthetic sources, budget.

The docs write user data under ``/data/...`` and the user's home as ``~``; here ``/data``
becomes ``<tmp>/data`` and ``~`` becomes ``<tmp>/user``. Each source folder a page reads
(``/data/Atlas_2``, ``/data/ct_png`` ...) is written on first use with ``autoseg_synth
--size tiny`` (see :data:`SOURCES`).

Budget: the test changes how much work a command does, never which flags it is given.
Every flag written in the docs is parsed and run; the test only adds or lowers these:

The ISLES'22 sources (``/data/ISLES-2022``, ``/data/isles22_sample``) are the real cases of
``../shared/realdata`` linked in (the page is skipped where they are absent), not
synthetic ones.

- ``autoseg_synth``: ``--size tiny``, at most 5 training and 1 test case, and coarse voxels
  (:data:`SPACING`) so that sliding-window prediction needs few windows;
- ``autoseg_plan``: ``--no-progress``; the planner's CPU compute cap is lowered
  (:data:`CPU_GFLOPS_PER_ITERATION`) so it picks its small patches and networks, as it
  would for a much slower CPU;
- ``autoseg_train``: ``--epochs 1 --iters-per-epoch 2 -nw 0 --no-progress`` appended
  (last flag wins, so they replace any written in the docs);
- ``autoseg_benchmark``: ``--iterations 2 --warmup 1 -nw 0 --prediction-cases 1
  --no-progress`` appended, and ``torch.compile`` fails at once (:func:`failing_compile`):
  compiling takes minutes on a CPU, so ``--compile`` runs take the eager fallback.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from autoseg.cli import synth_main
from autoseg.data.convert import convert
from tests.conftest import REALDATA_DIR
from tests.data.convert_helpers import release_tree

CPU_GFLOPS_PER_ITERATION = 4.0
TRAIN_BUDGET = ("--epochs", "1", "--iters-per-epoch", "2", "-nw", "0", "--no-progress")
BENCHMARK_BUDGET = ("--iterations", "2", "--warmup", "1", "-nw", "0", "--prediction-cases", "1",
                    "--no-progress")  # fmt: skip
MAX_CASES, MAX_TEST_CASES = 5, 1
# Coarse voxels per synthetic kind: small volumes, and DWI with thick slices (12 mm over
# 3.5 mm pixels), the planner's 2.5d_unet case as dwi-adc.md says.
SPACING = {"atlas": ("8", "8", "8"), "ct-png": ("20", "6", "6"), "dwi": ("12", "3.5", "3.5")}
DATA = re.compile(r"(^|=)/data(?=/|$)")


def localize(word: str, root: Path) -> str:
    """``/data/x`` -> ``<root>/data/x`` (also after ``--flag=``)."""
    return DATA.sub(lambda m: m.group(1) + str(root / "data"), word)


def _synth(kind: str, dest: Path, *flags: str) -> None:
    if synth_main([kind, str(dest), "--size", "tiny", "--spacing", *SPACING[kind], *flags]):
        raise RuntimeError(f"autoseg_synth {kind} {dest} failed")


def _drop(root: Path, pattern: str) -> None:
    for path in sorted(root.rglob(pattern), reverse=True):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def atlas(cases: int, seed: int, tests: int = 0) -> Callable[[Path], None]:
    return lambda dest: _synth("atlas", dest, "--cases", str(cases), "--seed", str(seed),
                               "--test-cases", str(tests))  # fmt: skip


def ct_png(cases: int, seed: int, tests: int = 0, masks: bool = True) -> Callable[[Path], None]:
    def make(dest: Path) -> None:
        _synth("ct-png", dest, "--cases", str(cases), "--seed", str(seed),
               "--test-cases", str(tests))  # fmt: skip
        if not masks:
            _drop(dest, "masks")

    return make


def dwi(
    cases: int, seed: int, layout: str = "npy", tests: int = 0, masks: bool = True
) -> Callable[[Path], None]:
    """Synthetic DWI without spacing sidecars (the docs give ``--spacing``)."""

    def make(dest: Path) -> None:
        _synth("dwi", dest, "--cases", str(cases), "--seed", str(seed), "--layout", layout,
               "--test-cases", str(tests))  # fmt: skip
        if layout == "npy":
            _drop(dest, "*.json")
        if not masks:
            _drop(dest, "*_msk.*")

    return make


def nnunet_raw(dest: Path) -> None:
    """An nnU-Net v2 raw dataset with labelled test cases (imagesTs + labelsTs)."""
    source = dest.parent / ".atlas_source"
    _synth("atlas", source, "--cases", "7", "--seed", "1")
    convert("atlas", source, dest)
    for case in sorted(p.name[: -len(".nii.gz")] for p in (dest / "labelsTr").iterdir())[5:]:
        for kind, name in (("images", f"{case}_0000.nii.gz"), ("labels", f"{case}.nii.gz")):
            (dest / f"{kind}Ts").mkdir(exist_ok=True)
            (dest / f"{kind}Tr" / name).rename(dest / f"{kind}Ts" / name)
    meta = json.loads((dest / "dataset.json").read_text())
    meta["numTraining"] = 5
    (dest / "dataset.json").write_text(json.dumps(meta, indent=2))


def evaluation_pair(dest: Path) -> None:
    """``labels/`` and ``predictions/`` (the labels shifted by one voxel) of 3 cases."""
    import nibabel as nib

    raw = dest / ".raw"
    source = dest / ".source"
    _synth("atlas", source, "--cases", "3", "--seed", "5")
    convert("atlas", source, raw)
    shutil.copytree(raw / "labelsTr", dest / "labels")
    (dest / "predictions").mkdir()
    for path in sorted((raw / "labelsTr").glob("*.nii.gz")):
        image = nib.load(path)
        shifted = np.roll(np.asarray(image.dataobj), 1, axis=0).astype(np.uint8)
        nib.save(
            nib.Nifti1Image(shifted, image.affine, image.header), dest / "predictions" / path.name
        )


def isles22_release(dest: Path) -> None:
    """The ISLES'22 release layout (``dwi/``, ``anat/``) of the two real cases."""
    release_tree(dest, _realdata())


def isles22_sample(dest: Path) -> None:
    """The challenge repository's flattened sample, as shipped."""
    dest.symlink_to(_realdata() / "isles22_sample", target_is_directory=True)


def _realdata() -> Path:
    if not REALDATA_DIR.is_dir():
        pytest.skip("../shared/realdata is not available")
    return REALDATA_DIR


SOURCES: dict[str, Callable[[Path], None]] = {
    "Atlas_2": atlas(5, 1, tests=1),
    "Atlas_2_holdout": atlas(2, 2),
    "ct_png": ct_png(5, 1, tests=1),
    "ct_png_new": ct_png(1, 2, masks=False),
    "ct_png_labelled_new": ct_png(2, 3),
    "dwi_npy": dwi(5, 1, tests=1),
    "dwi_nifti": dwi(2, 2, layout="nifti"),
    "dwi_npy_new": dwi(1, 3, masks=False),
    "dwi_npy_labelled_new": dwi(2, 4),
    "nnUNet_raw/Dataset501_ATLAS": nnunet_raw,
    "eval": evaluation_pair,
    "ISLES-2022": isles22_release,
    "isles22_sample": isles22_sample,
}


def ensure_sources(words: list[str], root: Path) -> None:
    """Write every source folder named in ``words`` (or inside one named) not written yet."""
    data = root / "data"
    for name, make in SOURCES.items():
        dest = data / name
        if dest.exists():
            continue
        named = (w.rstrip("/") for w in words if w.startswith(str(data)))
        if any(w == str(dest) or f"{w}/".startswith(f"{dest}/") or f"{dest}/".startswith(f"{w}/")
               for w in named if w != str(data)):  # fmt: skip
            dest.parent.mkdir(parents=True, exist_ok=True)
            make(dest)


def budget_argv(program: str, argv: list[str]) -> list[str]:
    """The command's arguments with the test's budget applied (module docstring)."""
    if program == "autoseg_synth":
        argv = _cap(_cap(argv, "--cases", MAX_CASES), "--test-cases", MAX_TEST_CASES)
        spacing = [] if "--spacing" in argv else ["--spacing", *SPACING[argv[0]]]
        return [*argv, "--size", "tiny", *spacing]
    if program == "autoseg_plan":
        return [*argv, "--no-progress"]
    if program == "autoseg_train":
        return [*argv, *TRAIN_BUDGET]
    if program == "autoseg_benchmark":
        return [*argv, *BENCHMARK_BUDGET]
    return argv


def failing_compile(model: object, *args: object, **kwargs: object) -> object:
    """Stands in for ``torch.compile``: the compiled model fails at its first call."""

    def compiled(*call_args: object, **call_kwargs: object) -> object:
        raise RuntimeError("torch.compile is switched off in the docs test (minutes on a CPU)")

    return compiled


def _cap(argv: list[str], flag: str, most: int) -> list[str]:
    out = list(argv)
    for i, word in enumerate(out[:-1]):
        if word == flag:
            out[i + 1] = str(min(int(out[i + 1]), most))
    return out
