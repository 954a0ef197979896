"""The device augmentation path (run here on the CPU device) against the CPU path: the same
parameter draws, the same intensity statistics, the closed-form geometry, exact identity."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.training.augmentation import (
    Deferred,
    SampleParameters,
    cut_size,
    resolve,
    sample_size,
)
from autoseg.training.cpu_augmentation import augment_sample, build_transforms, centre_crop
from autoseg.training.device_augmentation import augment, augment_on_device
from autoseg.training.loader import make_training_loader
from tests.training.cache_helpers import lesion_cache

DRAWS = 2000
PATCH = (16, 20, 18)
INTENSITY_ONLY = {"rotation_deg": None, "scale": None, "mirror_axes": []}


def cpu_batch(data: np.ndarray, seg: np.ndarray, drawn: Deferred) -> tuple:
    pairs = [augment_sample(d, s, p, drawn.patch_size, drawn.in_plane)
             for d, s, p in zip(data, seg, drawn.parameters, strict=True)]  # fmt: skip
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def device_batch(data: np.ndarray, seg: np.ndarray, drawn: Deferred) -> tuple:
    image, labels = augment(torch.from_numpy(data), torch.from_numpy(seg).long(), drawn)
    return image.numpy(), labels.numpy()


def summary(parameters: list[SampleParameters]) -> dict[str, float]:
    """Firing rates and the spread of the drawn values, as the parity test compares them."""
    angles = np.concatenate([p.angles for p in parameters if p.angles is not None])
    scales = np.array([p.scale for p in parameters if p.scale is not None])
    gammas = np.array([g for p in parameters if p.gamma is not None for g in p.gamma])
    out = {
        "angle_mean": angles.mean(), "angle_std": angles.std(),
        "angle_q90": np.quantile(angles, 0.9), "scale_median": np.median(scales),
        "scale_q10": np.quantile(scales, 0.1), "scale_q90": np.quantile(scales, 0.9),
        "gamma_median": np.median(gammas), "gamma_q90": np.quantile(gammas, 0.9),
        "mirror_rate": np.mean([0 in p.mirror for p in parameters]),
    }  # fmt: skip
    for name in ("angles", "scale", "noise", "blur", "brightness", "contrast",
                 "low_resolution", "gamma"):  # fmt: skip
        out[f"fires_{name}"] = np.mean([getattr(p, name) is not None for p in parameters])
    return out


# About 3 standard errors of the difference of two independent estimates from 2000 draws
# (medians and quantiles of the ~400 fired scales or ~600 fired gammas move the most).
TOLERANCES = {"angle_mean": 0.04, "angle_std": 0.03, "angle_q90": 0.06, "scale_median": 0.07,
              "scale_q10": 0.04, "scale_q90": 0.05, "gamma_median": 0.07, "gamma_q90": 0.06,
              "mirror_rate": 0.05}  # fmt: skip
RATE_TOLERANCE = 0.04  # ~3 standard errors of a difference of two rates near 0.2 from 2000


def disagreements(a: dict[str, float], b: dict[str, float]) -> list[str]:
    """The statistics of two summaries that differ by more than their tolerance."""
    return [k for k, v in a.items() if abs(v - b[k]) > TOLERANCES.get(k, RATE_TOLERANCE)]


def device_path_parameters(cache: tuple[Path, list[str]], count: int) -> list[SampleParameters]:
    """What the device path applies: the parameters deferred batches carry."""
    folder, ids = cache
    with make_training_loader(folder, ids, PATCH, 2, num_workers=0, seed=11,
                              augment_on_device=True) as loader:  # fmt: skip
        batches = itertools.islice(loader, count // 2)
        return [p for batch in batches for p in batch["augmentation"].parameters]


@pytest.fixture
def cache(tmp_path: Path) -> tuple[Path, list[str]]:
    return tmp_path, lesion_cache(tmp_path, cases=3, shape=(24, 28, 26), lesion=4, scale=10.0)


def test_both_paths_draw_from_the_same_distributions(cache: tuple[Path, list[str]]) -> None:
    """Two independent seeded streams: each statistic agrees within ~4 standard errors,
    close enough that a path drawing p=0.3 instead of 0.2, or scales uniformly over
    [0.7, 1.4] (median 1.05) instead of half below 1 (median 1.0), would fail."""
    cpu = build_transforms(None, PATCH, 3)
    rng = np.random.default_rng(123)
    cpu_params = [p for _ in range(DRAWS // 2) for p in cpu.draw(rng, 2, 1).parameters]
    device_params = device_path_parameters(cache, DRAWS)
    a, b = summary(cpu_params), summary(device_params)
    assert disagreements(a, b) == []
    # The tolerances are tight enough to catch a path that draws differently.
    drifted = build_transforms({"probabilities": {"rotation": 0.3}, "scale": [0.7, 1.3]}, PATCH, 3)
    other = [p for _ in range(DRAWS // 2) for p in drifted.draw(rng, 2, 1).parameters]
    assert {"fires_angles", "scale_q90"} <= set(disagreements(a, summary(other)))
    # Both also match the plans' distributions, not merely each other.
    assert abs(a["fires_angles"] - 0.2) < 0.03 and abs(a["fires_gamma"] - 0.3) < 0.035
    assert abs(a["angle_std"] - math.radians(60) / math.sqrt(12)) < 0.03
    assert abs(a["scale_median"] - 1.0) < 0.05


def test_the_cpu_batch_is_the_deferred_batch_augmented_as_drawn(
    cache: tuple[Path, list[str]],
) -> None:
    """Batch n of either loader mode draws identical parameters from the same stream."""
    folder, ids = cache
    settings = {"probability": 1.0}
    with make_training_loader(folder, ids, PATCH, 2, num_workers=0, seed=5,
                              augmentation=settings) as plain:  # fmt: skip
        done = next(plain)
    with make_training_loader(folder, ids, PATCH, 2, num_workers=0, seed=5,
                              augmentation=settings,
                              augment_on_device=True) as deferred:  # fmt: skip
        raw = next(deferred)
    assert raw["data"].shape[2:] == cut_size(raw["augmentation"].parameters, PATCH)
    assert raw["target"].dtype == torch.int8  # a quarter of the copy's bytes of int64
    image, labels = cpu_batch(raw["data"].numpy(), raw["target"].numpy(), raw["augmentation"])
    np.testing.assert_allclose(image, done["data"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(labels, done["target"].numpy())


@pytest.mark.parametrize(("patch", "dim", "extra"), [((10, 12, 14), 3, {}), ((16, 12), 2, {}),
                         ((6, 14, 12), 3, {"rotation_axes": "in_plane"})])  # fmt: skip
def test_the_per_batch_cut_hides_all_padding_and_stays_within_the_bound(
    patch: tuple, dim: int, extra: dict
) -> None:
    settings = {"probability": 0.6, "elastic": True, **extra}
    cpu = build_transforms(settings, patch, dim)
    bound = sample_size(patch, settings, dim)
    rng = np.random.default_rng(4)
    sizes = set()
    for _ in range(12):
        drawn = cpu.draw(rng, 2, 1)
        cut = cut_size(drawn.parameters, patch)
        sizes.add(cut)
        assert all(p <= c for p, c in zip(patch, cut, strict=True))
        if all(p.elastic is None for p in drawn.parameters):  # the bound ignores elastic shifts
            assert all(c <= b for c, b in zip(cut, bound, strict=True))
        ones, zeros = np.ones((2, 1, *cut), np.float32), np.zeros((2, 1, *cut), np.int64)
        for image, labels in (cpu_batch(ones, zeros, drawn), device_batch(ones, zeros, drawn)):
            assert (labels == 0).all()  # no -1 padding anywhere
            assert image.min() > 0.3  # intensity transforms move values, padding would be 0
    assert len(sizes) > 2 and min(math.prod(c) for c in sizes) < math.prod(bound)
    assert cut_size((SampleParameters(), SampleParameters()), patch) == tuple(patch)


def test_intensity_statistics_agree_between_the_paths() -> None:
    settings = resolve({**INTENSITY_ONLY, "probability": 1.0, "probabilities": {}}, 3)
    cpu = build_transforms(settings, PATCH, 3)
    rng = np.random.default_rng(0)
    data = rng.normal(1.0, 0.5, size=(2, 2, *PATCH)).astype(np.float32)
    seg = np.zeros((2, 1, *PATCH), np.int64)
    for _ in range(15):
        drawn = cpu.draw(rng, 2, 2)
        a, _ = cpu_batch(data, seg, drawn)
        b, labels = device_batch(data, seg, drawn)
        assert (labels == 0).all()
        np.testing.assert_allclose(a.mean(axis=(2, 3, 4)), b.mean(axis=(2, 3, 4)), atol=0.03)
        np.testing.assert_allclose(a.std(axis=(2, 3, 4)), b.std(axis=(2, 3, 4)), rtol=0.08)
        assert not np.allclose(b, data, atol=0.05)


def test_full_augmentation_statistics_agree_over_many_batches() -> None:
    cpu = build_transforms({"probability": 0.5}, PATCH, 3)
    cut = sample_size(PATCH, {"probability": 0.5}, 3)
    rng = np.random.default_rng(1)
    data = rng.normal(0.0, 1.0, size=(2, 1, *cut)).astype(np.float32)
    seg = (rng.random((2, 1, *cut)) > 0.7).astype(np.int64)
    results = {"cpu": [], "device": []}
    for _ in range(10):
        drawn = cpu.draw(rng, 2, 1)
        results["cpu"].append(cpu_batch(data, seg, drawn))
        results["device"].append(device_batch(data, seg, drawn))
    for index in (0, 1):
        a = np.stack([r[index] for r in results["cpu"]])
        b = np.stack([r[index] for r in results["device"]])
        assert abs(a.mean() - b.mean()) < 0.02 and abs(a.std() - b.std()) < 0.03


def blob(cut: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(cut).astype(float)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)))
    return (distance <= radius).astype(np.float32)


def centre_of_mass(mask: np.ndarray) -> np.ndarray:
    return np.array([float((np.indices(mask.shape)[a] * mask).sum() / mask.sum())
                     for a in range(mask.ndim)])  # fmt: skip


@pytest.mark.parametrize(
    ("angles", "scale"),
    [((math.pi / 2, 0.0, 0.0), None), ((0.0, 0.0, math.radians(30)), 1.15),
     (None, 0.8), ((0.0, math.radians(-40), 0.0), None)],
)  # fmt: skip
def test_a_marker_blob_moves_where_the_closed_form_says(angles: tuple | None, scale: float) -> None:
    cut, patch = (52, 52, 52), (32, 32, 32)  # no padding shows at these angles and scales
    offset = np.array([0.0, 4.0, 7.0])  # from the cut's centre
    centre_in = (np.array(cut) - 1) / 2
    marker = blob(cut, tuple(centre_in + offset), 3.0)
    params = SampleParameters(axes=3, angles=angles, scale=scale)
    drawn = Deferred(patch, False, (params,))
    image, labels = device_batch(
        marker[None, None] * 10, marker[None, None].astype(np.int64), drawn
    )
    # Output voxel u reads input M u (about the centres), so the blob lands at M^-1 offset.
    expected = (np.array(patch) - 1) / 2 + np.linalg.solve(params.matrix(), offset)
    assert (labels >= 0).all()  # the cut covers the moved patch: no padding shows
    np.testing.assert_allclose(centre_of_mass(labels[0, 0]), expected, atol=0.5)
    np.testing.assert_allclose(centre_of_mass(image[0, 0]), expected, atol=0.3)
    assert set(np.unique(labels)) <= {0, 1}
    bright, lesion = image[0, 0] > 5, labels[0, 0] == 1
    assert 2 * (bright & lesion).sum() / (bright.sum() + lesion.sum()) > 0.85  # a 250-voxel blob
    cpu_image, cpu_labels = cpu_batch(marker[None, None] * 10, marker[None, None], drawn)
    assert np.mean(cpu_labels == labels) > 0.995
    np.testing.assert_allclose(cpu_image, image, atol=1e-3)


@pytest.mark.parametrize(("patch", "axes"), [((20, 24, 22), 3), ((6, 24, 22), 2), ((24, 22), 2)])
def test_elastic_deformation_is_the_same_on_both_paths(patch: tuple, axes: int) -> None:
    """The coarse field is upsampled alike (linear, corners on corners) on both paths."""
    rng = np.random.default_rng(5)
    grid = (axes, *[4] * axes)
    params = SampleParameters(axes=axes, elastic=rng.normal(0.0, 1.5, size=grid))
    cut = tuple(p + 12 if i >= len(patch) - axes else p for i, p in enumerate(patch))
    image = rng.normal(size=(1, 1, *cut)).astype(np.float32)
    labels = (rng.random((1, 1, *cut)) > 0.5).astype(np.int64)
    drawn = Deferred(patch, len(patch) == 3 and axes == 2, (params,))
    cpu_image, cpu_labels = cpu_batch(image, labels, drawn)
    image_out, labels_out = device_batch(image, labels, drawn)
    np.testing.assert_allclose(cpu_image, image_out, atol=1e-4)
    assert np.mean(cpu_labels == labels_out) > 0.999
    assert not np.allclose(image_out, centre_crop(image, patch), atol=0.1)  # it moved


def test_in_plane_3d_and_slice_stacks_move_in_plane_only() -> None:
    cut, patch = (6, 36, 36), (6, 20, 20)  # covers the zoomed-out diagonal
    data = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None], cut)[None, None]
    params = SampleParameters(axes=2, angles=(0.6,), scale=1.2)
    image, _ = device_batch(np.ascontiguousarray(data), np.zeros((1, 1, *cut), np.int64),
                            Deferred(patch, True, (params,)))  # fmt: skip
    per_slice = image[0, 0].reshape(6, -1)
    np.testing.assert_allclose(
        per_slice, np.arange(6)[:, None] * np.ones_like(per_slice), atol=1e-4
    )
    stack = np.random.default_rng(0).normal(size=(1, 1, 36, 36)).astype(np.float32)
    stack = np.concatenate([stack * (s + 1) for s in range(3)], axis=1)  # (1, k=3, Y, X)
    out, _ = device_batch(stack, np.zeros((1, 1, 36, 36), np.int64),
                          Deferred((20, 20), False, (params,)))  # fmt: skip
    for s in range(3):
        np.testing.assert_allclose(out[0, s], out[0, 0] * (s + 1), atol=1e-4)


@pytest.mark.parametrize(("cut", "patch"), [((14, 18, 16), (10, 12, 12)), ((8, 9, 10), (8, 9, 10))])
def test_identity_parameters_reproduce_the_centre_crop(cut: tuple, patch: tuple) -> None:
    rng = np.random.default_rng(2)
    data = rng.normal(size=(2, 2, *cut)).astype(np.float32)
    seg = rng.integers(-1, 2, size=(2, 1, *cut))
    starts = [(c - p) // 2 for c, p in zip(cut, patch, strict=True)]
    crop = (..., *[slice(s, s + p) for s, p in zip(starts, patch, strict=True)])
    plain = Deferred(patch, False, (SampleParameters(), SampleParameters()))
    image, labels = device_batch(data, seg, plain)  # no spatial draw: a plain crop
    np.testing.assert_array_equal(image, data[crop])
    np.testing.assert_array_equal(labels, seg[crop])
    resampled = Deferred(
        patch, False, (SampleParameters(scale=1.0), SampleParameters(angles=(0.0,) * 3))
    )
    image, labels = device_batch(data, seg, resampled)  # grid_sample at the voxel centres
    np.testing.assert_allclose(image, data[crop], atol=1e-5)
    np.testing.assert_array_equal(labels, seg[crop])


def test_a_deferred_batch_trains_one_step_on_the_cpu_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoseg.cli import train_main
    from autoseg.training import device_augmentation
    from tests.pipeline.test_training_pipeline import write_plans

    preprocessed, results = tmp_path / "preprocessed", tmp_path / "results"
    folder = preprocessed / "TINY"
    (folder / "tiny").mkdir(parents=True)
    lesion_cache(folder / "tiny", cases=3, shape=(12, 24, 28), lesion=5)
    write_plans(folder)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["2.5d_unet"]["augmentation"] = {"probability": 1.0}
    plans["configurations"]["2.5d_unet"]["training"].update(epochs=1, iterations_per_epoch=1)
    (folder / "plans.json").write_text(json.dumps(plans))
    shapes = []

    def recording(batch: dict) -> dict:
        shapes.append((tuple(batch["data"].shape), "augmentation" in batch))
        out = augment_on_device(batch)
        shapes.append((tuple(out["data"].shape), "augmentation" in out))
        return out

    monkeypatch.setattr(device_augmentation, "augment_on_device", recording)
    code = train_main(["TINY", "2.5d_unet", "all", "--device", "cpu", "--augment-on", "device",
                       "-nw", "0", "--skip-validation", "--no-progress", "--preprocessed",
                       str(preprocessed), "--results", str(results),
                       "--raw", str(tmp_path)])  # fmt: skip
    assert code == 0
    (cut, deferred), (patch, after) = shapes
    assert deferred and not after and patch == (2, 3, 12, 20)
    assert cut[:2] == (2, 3) and cut[2] > 12 and cut[3] > 20  # rotation and scaling fired
    assert (results / "TINY" / "2.5d_unet" / "fold_all" / "checkpoint_final.pt").is_file()


def test_the_batch_transform_passes_plain_batches_unchanged() -> None:
    batch = {"data": torch.ones(1, 1, 4, 4, 4), "target": torch.zeros(1, 1, 4, 4, 4).long()}
    assert augment_on_device(batch) is batch
