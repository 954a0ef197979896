"""autoseg_verify: every problem of a raw dataset listed at once, naming its file."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.data import verify_case
from autoseg.data.io import read_volume, write_volume
from autoseg.data.records import ImageMeta, matrix_to_tuple
from autoseg.data.verify import (
    VerificationReport,
    default_num_processes,
    format_report,
    require_valid,
    verify_dataset,
)
from autoseg.data.verify_case import CaseCheckError, CaseJob
from tests.conftest import tiny_meta


def run(root: Path, **kwargs: object) -> VerificationReport:
    kwargs.setdefault("num_processes", 1)
    return verify_dataset(root, progress=False, **kwargs)


def lines_naming(lines: list[str], path: Path) -> list[str]:
    """The report lines about ``path`` (each line starts with the file it is about)."""
    return [line for line in lines if line.startswith(f"{path}:")]


def edit_json(root: Path, remove: tuple[str, ...] = (), **changes: object) -> None:
    path = root / "dataset.json"
    payload = json.loads(path.read_text())
    payload.update(changes)
    for key in remove:
        del payload[key]
    path.write_text(json.dumps(payload))


def shifted(meta: ImageMeta, offset_mm: float) -> ImageMeta:
    affine = meta.affine_array.copy()
    affine[:3, 3] += offset_mm
    return ImageMeta(meta.shape, meta.spacing_mm, matrix_to_tuple(affine))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in sorted(root.rglob("*"))
    }


# --- a valid dataset ------------------------------------------------------------------


def test_valid_dataset_passes(dataset_factory: Callable[..., Path]) -> None:
    root = dataset_factory(cases=3, channels=2)
    report = run(root)
    assert report.errors == []
    assert report.warnings == []
    assert report.ok
    assert (report.num_training, report.num_test, report.name) == (3, 0, "Tiny")
    assert format_report(report) == "Tiny: 3 training cases, 0 test cases: 0 errors, 0 warnings"
    assert require_valid(root, num_processes=1, progress=False) == report


def test_verify_writes_nothing_and_pool_matches_serial(tiny_dataset: Path) -> None:
    write_volume(
        tiny_dataset / "imagesTr" / "case001_0000.nii.gz",
        np.full((8, 12, 10), np.nan, np.float32),
        tiny_meta(),
    )
    (tiny_dataset / "labelsTr" / "case002.nii.gz").unlink()
    before = snapshot(tiny_dataset.parent)
    serial = run(tiny_dataset)
    pooled = run(tiny_dataset, num_processes=2)
    assert snapshot(tiny_dataset.parent) == before
    assert pooled == serial
    assert len(serial.errors) == 2


# --- dataset.json ---------------------------------------------------------------------


def test_missing_dataset_json_still_checks_files(tiny_dataset: Path) -> None:
    (tiny_dataset / "dataset.json").unlink()
    (tiny_dataset / "labelsTr" / "case001.nii.gz").unlink()
    report = run(tiny_dataset)
    assert lines_naming(report.errors, tiny_dataset / "dataset.json") == [
        f"{tiny_dataset / 'dataset.json'}: missing (a raw dataset needs dataset.json)"
    ]
    assert lines_naming(report.errors, tiny_dataset / "labelsTr" / "case001.nii.gz")
    assert report.num_training == 3


def test_invalid_json_is_named(tiny_dataset: Path) -> None:
    (tiny_dataset / "dataset.json").write_text('{"labels": {')
    report = run(tiny_dataset)
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"{tiny_dataset / 'dataset.json'}: not valid JSON")


def test_schema_errors_and_num_training_mismatch(tiny_dataset: Path) -> None:
    changes = {"labels": {"background": 0, "lesion": "1"}, "numTraining": 5}
    edit_json(tiny_dataset, remove=("file_ending",), **changes)
    errors = lines_naming(run(tiny_dataset).errors, tiny_dataset / "dataset.json")
    assert len(errors) == 3
    assert "'labels' values must be integers" in errors[0]
    assert "'file_ending' must be a string" in errors[1]
    assert errors[2].endswith("numTraining is 5 but imagesTr holds 3 training case(s)")


# --- missing, extra, unpaired, misnamed files ------------------------------------------


def test_missing_channel_and_channel_beyond_count(dataset_factory: Callable[..., Path]) -> None:
    root = dataset_factory(cases=2, channels=2)
    images = root / "imagesTr"
    (images / "case001_0001.nii.gz").unlink()
    (images / "case000_0002.nii.gz").write_bytes((images / "case000_0000.nii.gz").read_bytes())
    report = run(root)
    assert lines_naming(report.errors, images / "case001_0001.nii.gz") == [
        f"{images / 'case001_0001.nii.gz'}: missing (case case001 needs 2 channel(s))"
    ]
    assert lines_naming(report.errors, images / "case000_0002.nii.gz") == [
        f"{images / 'case000_0002.nii.gz'}: channel 2 but dataset.json declares 2 channel(s)"
    ]
    assert len(report.errors) == 2


def test_unpaired_files(tiny_dataset: Path) -> None:
    labels = tiny_dataset / "labelsTr"
    (labels / "case002.nii.gz").rename(labels / "case099.nii.gz")
    report = run(tiny_dataset)
    assert lines_naming(report.errors, labels / "case002.nii.gz") == [
        f"{labels / 'case002.nii.gz'}: missing (case case002 has images but no label)"
    ]
    [orphan] = lines_naming(report.errors, labels / "case099.nii.gz")
    assert "label without images" in orphan and "case099_0000.nii.gz" in orphan
    assert len(report.errors) == 2


def test_misnamed_files_are_errors_and_partial_files_ignored(tiny_dataset: Path) -> None:
    images, labels = tiny_dataset / "imagesTr", tiny_dataset / "labelsTr"
    payload = (images / "case000_0000.nii.gz").read_bytes()
    (images / "case007.nii.gz").write_bytes(payload)
    (images / "notes.txt").write_text("x")
    (images / "case000_0000.nii").write_bytes(payload)
    (labels / "case000.mha").write_bytes(payload)
    (images / ".partial-1234abcd-case005_0000.nii.gz").write_bytes(b"")
    (labels / ".partial-1234abcd-case005.nii.gz").write_bytes(b"")
    (images / ".DS_Store").write_bytes(b"\0")
    report = run(tiny_dataset)
    assert report.warnings == [f"{images / '.DS_Store'}: hidden file ignored"]
    assert "lacks the channel suffix" in lines_naming(report.errors, images / "case007.nii.gz")[0]
    for path in (images / "notes.txt", images / "case000_0000.nii", labels / "case000.mha"):
        [line] = lines_naming(report.errors, path)
        assert "file ending is not '.nii.gz'" in line
    assert len(report.errors) == 4
    assert not any(".partial-" in line for line in report.errors + report.warnings)
    assert report.num_training == 3


def test_no_training_cases(tiny_dataset: Path) -> None:
    for folder in ("imagesTr", "labelsTr"):
        for path in (tiny_dataset / folder).iterdir():
            path.unlink()
    edit_json(tiny_dataset, numTraining=0)
    report = run(tiny_dataset)
    assert report.errors == [
        f"{tiny_dataset / 'imagesTr'}: no training cases (no <case>_0000.nii.gz files)"
    ]
    assert format_report(report).endswith("0 training cases, 0 test cases: 1 error, 0 warnings")


def test_missing_folders(tmp_path: Path, tiny_dataset: Path) -> None:
    for path in (tiny_dataset / "labelsTr").iterdir():
        path.unlink()
    (tiny_dataset / "labelsTr").rmdir()
    report = run(tiny_dataset)
    assert report.errors == [
        f"{tiny_dataset / 'labelsTr'}: missing folder (training labels go here)"
    ]
    assert run(tmp_path / "nowhere").errors == [f"{tmp_path / 'nowhere'}: dataset folder not found"]


# --- unreadable files -----------------------------------------------------------------


def test_unreadable_truncated_and_empty_files(tiny_dataset: Path) -> None:
    images = tiny_dataset / "imagesTr"
    (images / "case000_0000.nii.gz").write_bytes(b"")
    truncated = (images / "case001_0000.nii.gz").read_bytes()
    (images / "case001_0000.nii.gz").write_bytes(truncated[: len(truncated) // 2])
    (tiny_dataset / "labelsTr" / "case002.nii.gz").write_bytes(gzip.compress(b"not a nifti"))
    report = run(tiny_dataset)
    assert lines_naming(report.errors, images / "case000_0000.nii.gz") == [
        f"{images / 'case000_0000.nii.gz'}: empty file (0 bytes)"
    ]
    [line] = lines_naming(report.errors, images / "case001_0000.nii.gz")
    assert "truncated" in line or "unreadable" in line
    [line] = lines_naming(report.errors, tiny_dataset / "labelsTr" / "case002.nii.gz")
    assert "unreadable" in line
    assert len(report.errors) == 3


def test_multichannel_file_is_rejected(tiny_dataset: Path) -> None:
    path = tiny_dataset / "imagesTr" / "case000_0000.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((10, 12, 8, 2), np.float32), np.eye(4)), str(path))
    [line] = run(tiny_dataset).errors
    assert line.startswith(f"{path}: expected a 3D volume")


# --- voxel content --------------------------------------------------------------------


def test_nan_and_inf_voxels_are_counted(tiny_dataset: Path) -> None:
    path = tiny_dataset / "imagesTr" / "case001_0000.nii.gz"
    array, meta = read_volume(path)
    array.flat[[0, 5, 9]] = np.nan
    array.flat[[1, 2]] = [np.inf, -np.inf]
    write_volume(path, array, meta)
    assert run(tiny_dataset).errors == [
        f"{path}: 3 NaN and 2 Inf voxels (of 960); replace them before use"
    ]


def test_channel_shape_and_label_geometry_mismatch(dataset_factory: Callable[..., Path]) -> None:
    root = dataset_factory(cases=3, channels=2)
    images, labels = root / "imagesTr", root / "labelsTr"
    meta = tiny_meta()
    small = tiny_meta(shape_zyx=(8, 12, 9))
    signal = np.arange(np.prod(small.shape), dtype=np.float32).reshape(small.shape)
    write_volume(images / "case000_0001.nii.gz", signal, small)
    write_volume(labels / "case001.nii.gz", np.ones(small.shape, np.uint8), small)
    write_volume(labels / "case002.nii.gz", np.ones(meta.shape, np.uint8), shifted(meta, 0.5))
    report = run(root)
    assert lines_naming(report.errors, images / "case000_0001.nii.gz") == [
        f"{images / 'case000_0001.nii.gz'}: not on the grid of case000_0000.nii.gz: "
        "shape [8, 12, 9] != [8, 12, 10] (z, y, x)"
    ]
    assert "shape [8, 12, 9]" in lines_naming(report.errors, labels / "case001.nii.gz")[0]
    [line] = lines_naming(report.errors, labels / "case002.nii.gz")
    assert "affine differs by up to 0.5 mm" in line
    assert len(report.errors) == 3


def test_spacing_mismatch_named_and_float_noise_tolerated(tiny_dataset: Path) -> None:
    labels = tiny_dataset / "labelsTr"
    label = np.zeros((8, 12, 10), np.uint8)
    label[2, 2, 2] = 1
    write_volume(labels / "case000.nii.gz", label, shifted(tiny_meta(), 1e-6))
    write_volume(labels / "case001.nii.gz", label, tiny_meta(spacing_zyx=(3.0, 1.5, 1.0)))
    [line] = run(tiny_dataset).errors
    assert line.startswith(f"{labels / 'case001.nii.gz'}: not on the grid of case001_0000.nii.gz")
    assert "spacing [3.0, 1.5, 1.0] != [3.0, 1.5, 1.25] mm (z, y, x)" in line


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        (
            [0, 255],
            np.uint8,
            "label values {0,255} include {255}, not declared in dataset.json "
            "labels {0,1}: convert with binarisation (autoseg_convert binarises masks)",
        ),
        ([0, 1, 2], np.uint8, "include {2}, not declared in dataset.json labels {0,1}: declare"),
        ([0, 0.5, 1], np.float32, "1 voxel holds non-integer label values (e.g. 0.5)"),
        ([0, -1, 1], np.int16, "negative label values {-1}"),
    ],
)
def test_bad_label_values(
    tiny_dataset: Path, values: list[float], dtype: type, expected: str
) -> None:
    path = tiny_dataset / "labelsTr" / "case001.nii.gz"
    label = np.zeros((8, 12, 10), dtype)
    label.flat[: len(values)] = values
    write_volume(path, label, tiny_meta())
    [line] = run(tiny_dataset).errors
    assert line.startswith(f"{path}: ") and expected in line


def test_float_labels_with_integral_values_pass(tiny_dataset: Path) -> None:
    path = tiny_dataset / "labelsTr" / "case001.nii.gz"
    label = np.zeros((8, 12, 10), np.float32)
    label[1:3, 1:3, 1:3] = 1.0
    write_volume(path, label, tiny_meta())
    assert run(tiny_dataset).ok


def test_empty_label_is_a_warning(tiny_dataset: Path) -> None:
    path = tiny_dataset / "labelsTr" / "case002.nii.gz"
    write_volume(path, np.zeros((8, 12, 10), np.uint8), tiny_meta())
    report = run(tiny_dataset)
    assert report.ok
    assert report.warnings == [f"{path}: label has no foreground (all voxels 0)"]
    assert format_report(report).splitlines() == [
        f"warning: {path}: label has no foreground (all voxels 0)",
        "Tiny: 3 training cases, 0 test cases: 0 errors, 1 warning",
    ]


def test_test_images_are_checked(dataset_factory: Callable[..., Path]) -> None:
    root = dataset_factory(cases=1, channels=2)
    tests = root / "imagesTs"
    meta, small = tiny_meta(), tiny_meta(shape_zyx=(4, 12, 10))
    good = np.random.default_rng(0).normal(size=meta.shape).astype(np.float32)
    for channel in range(2):
        write_volume(tests / f"ok_{channel:04d}.nii.gz", good, meta)
    write_volume(tests / "bad_0000.nii.gz", np.full(meta.shape, np.inf, np.float32), meta)
    write_volume(tests / "bad_0001.nii.gz", good[:4], small)
    write_volume(tests / "lonely_0000.nii.gz", good, meta)
    report = run(root)
    assert report.num_test == 3
    assert [line.split(":")[0] for line in report.errors] == [
        str(tests / "lonely_0001.nii.gz"),
        str(tests / "bad_0000.nii.gz"),
        str(tests / "bad_0001.nii.gz"),
    ]
    assert "0 NaN and 960 Inf voxels" in report.errors[1]
    assert "not on the grid of bad_0000.nii.gz" in report.errors[2]


# --- many problems at once, order, errors, workers ---------------------------------------


def test_every_problem_listed_at_once_in_case_order(tiny_dataset: Path) -> None:
    images, labels = tiny_dataset / "imagesTr", tiny_dataset / "labelsTr"
    edit_json(tiny_dataset, numTraining=4)
    write_volume(labels / "case002.nii.gz", np.full((8, 12, 10), 255, np.uint8), tiny_meta())
    write_volume(images / "case000_0000.nii.gz", np.full((8, 12, 10), np.nan), tiny_meta())
    (labels / "case001.nii.gz").write_bytes(b"")
    (labels / "extra.nii.gz").write_bytes((labels / "case000.nii.gz").read_bytes())
    report = run(tiny_dataset)
    named = [line.split(": ")[0] for line in report.errors]
    assert named == [
        str(labels / "extra.nii.gz"),  # structure problems first
        str(tiny_dataset / "dataset.json"),
        str(images / "case000_0000.nii.gz"),  # then content, case by case
        str(labels / "case001.nii.gz"),
        str(labels / "case002.nii.gz"),
    ]
    with pytest.raises(InvalidInputError) as raised:
        require_valid(tiny_dataset, num_processes=2, progress=False)
    assert raised.value.problems == report.errors


def test_worker_crash_names_the_case(tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(verify_case, "read_volume", broken)
    with pytest.raises(CaseCheckError, match=r"case case000: verification failed \(KeyError"):
        run(tiny_dataset)
    if multiprocessing.get_start_method() == "fork":  # workers see the patch only when forked
        with pytest.raises(CaseCheckError, match=r"case case00\d: verification failed"):
            run(tiny_dataset, num_processes=2)


def test_default_num_processes_respects_cases_cpus_and_memory(
    tiny_dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoseg.core import resources
    from autoseg.data import verify

    jobs = [CaseJob("a", (tiny_dataset / "imagesTr" / "case000_0000.nii.gz",))]
    assert default_num_processes(jobs) == 1
    assert 1 <= default_num_processes(jobs * 64) <= (os.cpu_count() or 1)
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: verify.WORKER_BASE_BYTES)
    assert default_num_processes(jobs * 64) == 1
