"""Cache I/O and whole-dataset preprocessing: memmap loads, invalidation, resume, determinism."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import autoseg.preprocessing.dataset as dataset_module
from autoseg.core.atomic import read_json, write_json
from autoseg.core.errors import InvalidInputError
from autoseg.data.layout import RawDataset
from autoseg.plans.preprocessing import ChannelNormalization, PreprocessingSpec
from autoseg.preprocessing.cache import (
    SPEC_FILE,
    cached_case_ids,
    case_paths,
    load_arrays,
    load_case,
)
from autoseg.preprocessing.dataset import (
    CasePreprocessingError,
    cache_folder,
    preprocess_dataset,
)

SPEC = PreprocessingSpec(
    spacing_mm=(3.0, 2.0, 2.0), normalization=(ChannelNormalization("zscore"),)
)


def run(raw: Path, out: Path, spec: PreprocessingSpec = SPEC, **kwargs: object) -> list[str]:
    return preprocess_dataset(RawDataset.open(raw), out, spec, progress=False, **kwargs)


def count_calls(monkeypatch: pytest.MonkeyPatch, fail_on: int | None = None) -> list[str]:
    """Record which cases get preprocessed; optionally raise on the n-th call (a 'kill')."""
    calls: list[str] = []
    original = dataset_module.preprocess_case

    def wrapped(*args: object, **kwargs: object) -> object:
        calls.append(str(args[3]))
        if fail_on is not None and len(calls) == fail_on:
            raise RuntimeError("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(dataset_module, "preprocess_case", wrapped)
    return calls


def test_cache_layout_and_memmapped_load(tiny_dataset: Path, tmp_path: Path) -> None:
    ids = run(tiny_dataset, tmp_path / "pre")
    folder = cache_folder(tmp_path / "pre", SPEC)
    assert ids == ["case000", "case001", "case002"] == cached_case_ids(folder, SPEC.spec_hash)
    assert read_json(folder / SPEC_FILE)["spec_hash"] == SPEC.spec_hash
    case = load_case(folder, "case001", mmap=True)
    assert isinstance(case.data, np.memmap) and case.data.dtype == np.float32
    with np.load(case_paths(folder, "case001")[0]) as plain:
        np.testing.assert_array_equal(case.data, plain["data"])
        np.testing.assert_array_equal(case.seg, plain["seg"])
    assert case.seg.dtype == np.int8 and case.seg.shape == (1, *case.data.shape[1:])
    assert case.properties.spec_hash == SPEC.spec_hash
    assert case.properties.class_voxel_counts[1] == int((case.seg == 1).sum()) > 0


def test_compressed_npz_falls_back_to_a_full_load(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez_compressed(path, data=np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4))
    arrays = load_arrays(path, mmap=True)
    assert not isinstance(arrays["data"], np.memmap) and arrays["data"][0, 1, 2, 3] == 23


def test_changed_spec_gets_its_own_folder_and_stale_cases_are_redone(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pre"
    run(tiny_dataset, out)
    changed = dataclasses.replace(SPEC, spacing_mm=(3.0, 1.5, 1.5))
    calls = count_calls(monkeypatch)
    run(tiny_dataset, out, changed)
    assert len(calls) == 3 and cache_folder(out, changed) != cache_folder(out, SPEC)
    json_path = case_paths(cache_folder(out, SPEC), "case002")[1]
    write_json(json_path, {**read_json(json_path), "spec_hash": "stale"})
    calls.clear()
    run(tiny_dataset, out)
    assert calls == ["case002"]


def test_a_killed_run_resumes_with_only_the_missing_cases(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "pre"
    count_calls(monkeypatch, fail_on=2)
    with pytest.raises(CasePreprocessingError, match="case case001: RuntimeError: killed"):
        run(tiny_dataset, out)
    folder = cache_folder(out, SPEC)
    assert cached_case_ids(folder, SPEC.spec_hash) == ["case000"]
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # no partial files
    calls = count_calls(monkeypatch)
    run(tiny_dataset, out)
    assert calls == ["case001", "case002"]
    run(tiny_dataset, out, overwrite=True)
    assert len(calls) == 5


def test_runs_are_byte_identical_inline_and_in_parallel(
    dataset_factory: Callable[..., Path], tmp_path: Path
) -> None:
    raw = dataset_factory("Two", cases=2, channels=2)
    spec = dataclasses.replace(SPEC, normalization=(ChannelNormalization("zscore_brain"),) * 2)
    run(raw, tmp_path / "a", spec)
    run(raw, tmp_path / "b", spec, num_processes=2)
    for case_id in ("case000", "case001"):
        first = case_paths(cache_folder(tmp_path / "a", spec), case_id)
        second = case_paths(cache_folder(tmp_path / "b", spec), case_id)
        assert first[0].read_bytes() == second[0].read_bytes()
        assert first[1].read_bytes() == second[1].read_bytes()


@pytest.mark.parametrize("processes", [1, 2])
def test_a_bad_case_is_named_in_the_error(
    tiny_dataset: Path, tmp_path: Path, processes: int
) -> None:
    (tiny_dataset / "imagesTr" / "case001_0000.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InvalidInputError, match=r"case case001: .*case001_0000\.nii\.gz"):
        run(tiny_dataset, tmp_path / "pre", num_processes=processes)


def test_case_errors_survive_pickling_between_processes() -> None:
    error = pickle.loads(pickle.dumps(CasePreprocessingError("case007", "MemoryError: big")))
    assert str(error) == "case case007: MemoryError: big" and error.case_id == "case007"
