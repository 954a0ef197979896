"""The loader: tensors and shapes, worker mode == in-process mode, errors name the case."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.core.errors import InvalidInputError
from autoseg.training.loader import (
    WORKER_BASE_BYTES,
    default_num_workers,
    make_training_loader,
    make_validation_batches,
    worker_memory_bytes,
)
from autoseg.training.sampling import CaseReadError
from tests.training.cache_helpers import lesion_cache

LIGHT = {"probability": 0.5, "rotation_deg": [-20.0, 20.0], "scale": [0.9, 1.1]}


@pytest.fixture
def cache(tmp_path: Path) -> tuple[Path, list[str]]:
    return tmp_path, lesion_cache(tmp_path, cases=3, shape=(16, 20, 18), lesion=3)


def take(loader: object, count: int) -> list[dict]:
    return list(itertools.islice(loader, count))


@pytest.mark.parametrize(
    ("patch", "slices", "shape"),
    [((8, 12, 10), 1, (2, 1, 8, 12, 10)), ((12, 10), 3, (2, 3, 12, 10))],
)
def test_worker_batches_equal_in_process_batches(
    cache: tuple[Path, list[str]], patch: tuple, slices: int, shape: tuple
) -> None:
    folder, ids = cache
    batches = {}
    for workers in (0, 2):
        with make_training_loader(
            folder, ids, patch, 2, slices=slices, augmentation=LIGHT, num_workers=workers, seed=7
        ) as loader:
            batches[workers] = take(loader, 4)
    for here, there in zip(batches[0], batches[2], strict=True):
        assert here["data"].shape == shape and here["data"].dtype == torch.float32
        assert here["target"].shape == (2, 1, *patch) and here["target"].dtype == torch.int64
        torch.testing.assert_close(here["data"], there["data"])
        assert torch.equal(here["target"], there["target"])
        assert here["case_ids"] == there["case_ids"]
        assert set(here["target"].unique().tolist()) <= {-1, 0, 1}


def test_the_seed_fixes_the_sequence_and_start_resumes_it(cache: tuple[Path, list[str]]) -> None:
    folder, ids = cache
    run = lambda seed, start=0: take(  # noqa: E731
        make_training_loader(folder, ids, (8, 8, 8), 2, num_workers=0, seed=seed, start=start), 3
    )
    first, again, other, resumed = run(1), run(1), run(2), run(1, start=2)
    assert all(torch.equal(a["data"], b["data"]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0]["data"], other[0]["data"])
    assert torch.equal(resumed[0]["data"], first[2]["data"])


def test_batches_keep_the_foreground_share(cache: tuple[Path, list[str]]) -> None:
    folder, ids = cache
    loader = make_training_loader(
        folder, ids, (8, 8, 8), 3, augmentation={"off": True}, num_workers=0, seed=0
    )
    hits = torch.stack([(b["target"] == 1).flatten(1).any(1) for b in take(loader, 30)])
    assert hits[:, -1].all() and hits.float().mean() >= 0.33


def corrupt(folder: Path, case_id: str) -> None:
    (folder / f"{case_id}.npz").write_bytes(b"this is not a zip file" * 10)


def test_a_worker_error_is_re_raised_with_its_type_and_case_id(
    cache: tuple[Path, list[str]],
) -> None:
    folder, ids = cache
    corrupt(folder, "case001")
    loader = make_training_loader(
        folder, ids, (8, 8, 8), 2, augmentation=LIGHT, num_workers=2, seed=0
    )
    with pytest.raises(CaseReadError, match="case case001") as caught:
        take(loader, 50)
    assert "BadZipFile" in str(caught.value)
    loader.close()


def test_an_in_process_error_names_the_case(cache: tuple[Path, list[str]]) -> None:
    folder, ids = cache
    corrupt(folder, "case002")
    with pytest.raises(CaseReadError, match="case case002"):
        take(make_training_loader(folder, ids, (8, 8, 8), 2, num_workers=0), 50)


def test_missing_cases_are_rejected_before_workers_start(cache: tuple[Path, list[str]]) -> None:
    folder, ids = cache
    with pytest.raises(InvalidInputError, match="ghost"):
        make_training_loader(folder, [*ids, "ghost"], (8, 8, 8), 2, num_workers=2)


def test_close_stops_the_workers(cache: tuple[Path, list[str]]) -> None:
    folder, ids = cache
    loader = make_training_loader(folder, ids, (8, 8, 8), 2, num_workers=2)
    next(loader)
    workers = list(loader._iterator._workers)
    loader.close()
    assert workers and not any(w.is_alive() for w in workers)
    loader.close()  # idempotent


def test_validation_batches_are_plain_and_identical_every_pass(
    cache: tuple[Path, list[str]],
) -> None:
    folder, ids = cache
    batches = make_validation_batches(folder, ids, (8, 12, 10), 3, num_batches=4, seed=3)
    first, second = list(batches), list(batches)
    assert len(first) == len(batches) == 4
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a["data"], b["data"]) and torch.equal(a["target"], b["target"])
        assert (a["target"][-1] == 1).any()  # the forced third
        values = a["data"].numpy() - 1  # coordinate-encoded voxels: whole numbers, no blur
        assert np.allclose(values, np.round(values))


def test_default_worker_count_respects_ram_and_cores() -> None:
    assert 1 <= default_num_workers(1) <= (os.cpu_count() or 1)
    assert default_num_workers(10**18) == 1
    batch_bytes = 4 * 2 * (1 + 1) * 64 * 80 * 64  # float32 image + labels, batch of 2
    assert worker_memory_bytes(2, 1, (64, 80, 64)) == WORKER_BASE_BYTES + 8 * batch_bytes
