"""Synthetic stroke data: layouts and names, determinism, lesion placement and contrast."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from autoseg.data.io import read_volume
from autoseg.synthetic.anatomy import BONE, CSF, GM, LESION, SCALP, WM
from autoseg.synthetic.generate import (
    KINDS,
    SynthOptions,
    atlas_case,
    atlas_grid,
    case_plan,
    ct_case,
    dwi_case,
    list_kinds,
    synthesize,
)
from autoseg.synthetic.lesions import CHRONIC_VOLUMES, MIDLINE_MARGIN_MM, PLACES
from autoseg.synthetic.render import PSEUDO_HU_OFFSET, site_look

TINY = SynthOptions(size="tiny")
STRIPPED = SynthOptions(size="tiny", skull_stripped=True)
SPACE = "space-MNI152NLin2009aSym"


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _lesion_indices(kind: str, seed: int, count: int) -> list[int]:
    return [i for i in range(50) if case_plan(kind, seed, i).lesion is not None][:count]


def test_unknown_kind_lists_known_kinds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="atlas, ct-png, dwi"):
        synthesize("mri", tmp_path, 1, seed=0, progress=False)
    with pytest.raises(ValueError, match="bids, flat"):
        synthesize("atlas", tmp_path, 1, seed=0, layout="png", progress=False)
    assert list_kinds() == list(KINDS) == ["atlas", "ct-png", "dwi"]


def test_atlas_bids_layout_exact_names(tmp_path: Path) -> None:
    written = synthesize("atlas", tmp_path, 2, seed=0, size="tiny", test_cases=1, progress=False)
    expected = set()
    for subject in ("sub-r001s001", "sub-r001s002"):
        folder = f"Training/R001/{subject}/ses-1/anat/{subject}_ses-1_{SPACE}"
        expected |= {f"{folder}_T1w.nii.gz", f"{folder}_label-L_desc-T1lesion_mask.nii.gz"}
    expected.add(f"Testing/R501/sub-r501s001/ses-1/anat/sub-r501s001_ses-1_{SPACE}_T1w.nii.gz")
    assert _files(tmp_path) == expected  # no temporary leftovers, no extra files
    assert {str(p.relative_to(tmp_path)) for p in written} == expected


def test_atlas_flat_layout_and_site_numbering(tmp_path: Path) -> None:
    synthesize("atlas", tmp_path, 9, seed=0, size="tiny", layout="flat", progress=False)
    images = sorted(p.name for p in (tmp_path / "Training" / "Images").iterdir())
    masks = sorted(p.name for p in (tmp_path / "Training" / "Masks").iterdir())
    assert len(images) == len(masks) == 9
    assert images[0] == f"sub-r001s001_ses-1_{SPACE}_T1w.nii.gz"
    assert images[-1] == f"sub-r003s001_ses-1_{SPACE}_T1w.nii.gz"  # 4 subjects per site
    assert masks[-1] == f"sub-r003s001_ses-1_{SPACE}_label-L_desc-T1lesion_mask.nii.gz"


def test_atlas_header_dtypes_and_mask_scale(tmp_path: Path) -> None:
    synthesize("atlas", tmp_path, 1, seed=1, size="tiny", layout="flat", mask_scale=255,
               progress=False)  # fmt: skip
    image = nib.load(next((tmp_path / "Training" / "Images").iterdir()))
    mask = nib.load(next((tmp_path / "Training" / "Masks").iterdir()))
    expected = np.array(
        [[4, 0, 0, -98], [0, 4, 0, -134], [0, 0, 4, -72], [0, 0, 0, 1]], dtype=float
    )
    for nifti in (image, mask):
        assert nifti.shape == (50, 59, 48)
        np.testing.assert_allclose(nifti.affine, expected)
        assert int(nifti.header["sform_code"]) == 4 and int(nifti.header["qform_code"]) == 4
    assert image.get_data_dtype() == np.float32 and mask.get_data_dtype() == np.uint8
    values = set(np.unique(np.asanyarray(mask.dataobj)).tolist())
    assert values <= {0, 255}
    assert (values == {0, 255}) == (case_plan("atlas", 1, 0).lesion is not None)


def test_atlas_grid_sizes_match_mni() -> None:
    assert atlas_grid("full").shape == (189, 233, 197)
    assert atlas_grid("small").shape == (95, 117, 99)
    np.testing.assert_allclose(atlas_grid("small").affine()[:3, 3], [-98, -134, -72])
    assert atlas_grid(spacing_mm=3.0).shape == (64, 79, 67)


def test_same_seed_same_case_other_seed_differs() -> None:
    first, again, other = atlas_case(3, 0, TINY), atlas_case(3, 0, TINY), atlas_case(4, 0, TINY)
    assert first.image.tobytes() == again.image.tobytes()
    assert first.mask.tobytes() == again.mask.tobytes()
    assert not np.array_equal(first.image, other.image)


def test_fewer_cases_are_a_prefix(tmp_path: Path) -> None:
    synthesize("dwi", tmp_path / "a", 1, seed=5, size="tiny", progress=False)
    synthesize("dwi", tmp_path / "b", 3, seed=5, size="tiny", progress=False)
    for name in ("case_0001_dwi.npy", "case_0001_msk.npy"):
        assert np.array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))


def test_anatomy_does_not_depend_on_resolution() -> None:
    small = atlas_case(2, 1, SynthOptions(size="small", skull_stripped=True))
    tiny = atlas_case(2, 1, STRIPPED)
    fraction_small = small.mask.sum() / (small.image > 0).sum()
    fraction_tiny = tiny.mask.sum() / (tiny.image > 0).sum()
    brain_ml = [(c.image > 0).sum() * c.grid.voxel_volume_mm3 / 1000 for c in (small, tiny)]
    assert abs(brain_ml[0] - brain_ml[1]) < 0.05 * brain_ml[0]
    assert fraction_small == pytest.approx(fraction_tiny, rel=0.1, abs=2e-4)


@pytest.mark.parametrize("index", _lesion_indices("atlas", 11, 3))
def test_lesions_lie_in_the_same_place_at_every_resolution(index: int) -> None:
    """The 4 mm voxel centres are every other 2 mm one: the same case's lesion masks must
    overlap there, not just have the same volume (centres used to be drawn per voxel, so
    a case rendered at 1 mm had its lesions elsewhere than at 2 mm)."""
    small = atlas_case(11, index, SynthOptions(size="small")).mask[::2, ::2, ::2] > 0
    tiny = atlas_case(11, index, TINY).mask > 0
    assert tiny.sum() > 0
    assert 2 * (small & tiny).sum() / (small.sum() + tiny.sum()) > 0.85


def _lesion_world_x(case) -> np.ndarray:
    _, _, x = np.nonzero(case.mask)
    return case.grid.origin_mm[0] + case.grid.spacing_mm[2] * x


@pytest.mark.parametrize("index", _lesion_indices("atlas", 11, 4))
def test_lesions_keep_off_the_midline_and_have_their_planned_volume(index: int) -> None:
    case = atlas_case(11, index, SynthOptions(size="small"))
    plan = case.plan.lesion
    world_x = _lesion_world_x(case)  # the midline plane is x = 0 (MNI)
    assert world_x.size > 0
    assert np.all(np.abs(world_x) > MIDLINE_MARGIN_MM - 1e-6)
    assert np.sum(world_x * plan.side > 0) >= 0.9 * plan.lesions[0].volume_ml / 0.008
    voxel_ml = case.grid.voxel_volume_mm3 / 1000
    rounding = len(plan.lesions) * voxel_ml  # each lesion rounds to whole voxels (>= 1)
    assert case.mask.sum() * voxel_ml == pytest.approx(plan.total_ml, abs=rounding)


def test_lesion_plans_follow_atlas_volumes_places_and_counts() -> None:
    plans = [case_plan("atlas", 0, i) for i in range(600)]
    empty = sum(p.lesion is None for p in plans) / len(plans)
    assert 0.025 <= empty <= 0.08
    lesions = [p.lesion for p in plans if p.lesion is not None]
    main = np.array([plan.lesions[0].volume_ml for plan in lesions])
    assert main.min() >= 0.05 and main.max() <= 150.0
    assert 3.5 < np.median(main) < 5.5  # ATLAS v2.0's median lesion is about 5 ml
    assert np.mean(main > 20.0) > 0.08 and np.mean(main < 1.5) > 0.15  # both tails present
    spread = np.log(np.percentile(main, 84) / np.median(main))
    assert spread == pytest.approx(CHRONIC_VOLUMES.sigma, abs=0.15)  # log-normal sigma
    assert {len(plan.lesions) for plan in lesions} == {1, 2, 3, 4}
    assert {plan.side for plan in lesions} == {-1, 1}
    assert {spec.place for plan in lesions for spec in plan.lesions} == set(PLACES)
    assert all(plan.lesions[0].place == "cortical" for plan in lesions
               if plan.lesions[0].volume_ml >= 20.0)  # fmt: skip
    satellites = [spec.volume_ml for plan in lesions for spec in plan.lesions[1:]]
    assert min(satellites) >= 0.05 and max(satellites) <= 1.5


def test_lesion_free_case_has_empty_mask() -> None:
    index = next(i for i in range(200) if case_plan("atlas", 0, i).lesion is None)
    case = atlas_case(0, index, TINY)
    assert case.mask.sum() == 0 and (case.tissue == LESION).sum() == 0
    none_empty = SynthOptions(size="tiny", empty_fraction=0.0)
    assert atlas_case(0, index, none_empty).mask.sum() > 0


def _severe_large_case(kind_case, kind: str, seed: int):
    """The first case whose main lesion is large (> 8 ml) and severe (> 0.7)."""
    for i in range(100):
        lesion = case_plan(kind, seed, i).lesion
        if lesion and lesion.lesions[0].volume_ml > 8 and lesion.lesions[0].severity > 0.7:
            return kind_case(seed, i, SynthOptions(size="small"))
    raise AssertionError("no such case")


def test_atlas_t1_graded_lesion_core_as_dark_as_csf_and_whole_head() -> None:
    case = _severe_large_case(atlas_case, "atlas", 7)
    means = {t: case.image[case.tissue == t].mean() for t in (CSF, GM, WM, LESION, SCALP, BONE)}
    assert means[WM] > means[GM] > means[LESION] > means[CSF]
    assert means[SCALP] > means[GM] and means[BONE] < means[GM]  # an unstripped T1 head
    inside = ndimage.distance_transform_edt(case.mask) >= 3  # at least 6 mm from the border
    border = (case.mask > 0) & ~ndimage.binary_erosion(case.mask)
    core, rim = case.image[inside].mean(), case.image[border].mean()
    assert core < means[CSF] + 0.35 * (means[GM] - means[CSF])  # nearly CSF-dark
    assert rim > core + 0.15 * (means[WM] - means[CSF])  # the rim fades into tissue
    background = case.image[case.tissue == 0]
    assert background.min() >= 0 and 0 < background.mean() < 0.2 * means[WM]  # noise floor
    assert case.image.dtype == np.float32 and np.isfinite(case.image).all()


def test_skull_stripped_t1_is_zero_outside_the_brain() -> None:
    case = atlas_case(7, _lesion_indices("atlas", 7, 1)[0], STRIPPED)
    assert np.all(case.image[np.isin(case.tissue, (0, BONE, SCALP))] == 0)
    assert np.all(case.image[case.tissue == WM] > 0)


def test_sites_differ_in_gain_noise_and_contrast() -> None:
    looks = [site_look(0, 1, site) for site in range(1, 13)]
    gains = [look.gain for look in looks]
    assert max(gains) / min(gains) > 2.0  # MR units are arbitrary per scanner
    assert len({round(look.noise, 4) for look in looks}) == 12
    assert min(look.contrast for look in looks) < 0.9 < 1.1 < max(look.contrast for look in looks)
    assert site_look(0, 1, 3) == site_look(0, 1, 3)


def test_ct_png_folders_numbering_and_contrast(tmp_path: Path) -> None:
    synthesize("ct-png", tmp_path, 2, seed=3, size="tiny", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["patient_001", "patient_002"]
    index = _lesion_indices("ct-png", 3, 1)[0]
    case, angle = ct_case(3, index, TINY)
    folder = tmp_path / f"patient_{index + 1:03d}"
    names = {p.name for p in (folder / "images").iterdir()}
    count = case.image.shape[0]
    assert count >= 10  # numeric and lexical order differ ("10.png" < "2.png")
    assert names == {f"{n}.png" for n in range(1, count + 1)}
    assert names == {p.name for p in (folder / "masks").iterdir()}
    middle = count // 2
    slice_ = Image.open(folder / "images" / f"{middle + 1}.png")
    assert slice_.mode == "L" and slice_.size == (48, 48)
    np.testing.assert_array_equal(np.asarray(slice_), case.image[middle][::-1, ::-1])
    masks = np.stack([np.asarray(Image.open(folder / "masks" / f"{n}.png")) for n in
                      range(1, count + 1)])  # fmt: skip
    assert set(np.unique(masks).tolist()) == {0, 255}
    assert 3.0 <= abs(angle) <= 9.0
    assert case.image.max() == 255  # bone saturates the brain window
    brain = np.isin(case.tissue, (GM, WM)) & (case.mask == 0)
    assert case.image[case.mask > 0].mean() < case.image[brain].mean() - 5  # hypodense


def test_ct_png_16_bit_pseudo_hu(tmp_path: Path) -> None:
    synthesize("ct-png", tmp_path, 1, seed=3, size="tiny", png_bits=16, progress=False)
    case, _ = ct_case(3, 0, SynthOptions(size="tiny", png_bits=16))
    folder = tmp_path / "patient_001" / "images"
    middle = case.image.shape[0] // 2
    pixels = np.asarray(Image.open(folder / f"{middle + 1}.png"))
    np.testing.assert_array_equal(pixels, case.image[middle][::-1, ::-1])
    assert case.image.dtype == np.uint16
    white = case.image[case.tissue == WM].astype(float) - PSEUDO_HU_OFFSET
    assert 20 < np.median(white) < 36  # white matter ~28 HU
    assert case.image[case.tissue == BONE].mean() - PSEUDO_HU_OFFSET > 500


def test_dwi_npy_sidecar_and_hyperintense_lesion(tmp_path: Path) -> None:
    synthesize("dwi", tmp_path, 2, seed=2, size="tiny", progress=False)
    suffixes = ("_dwi.npy", "_adc.npy", "_msk.npy", ".json")
    assert _files(tmp_path) == {f"case_000{n}{suffix}" for n in (1, 2) for suffix in suffixes}
    image, mask = np.load(tmp_path / "case_0001_dwi.npy"), np.load(tmp_path / "case_0001_msk.npy")
    spacing = json.loads((tmp_path / "case_0001.json").read_text())["spacing_mm"]
    assert spacing == [8.0, 4.0, 4.0]
    assert image.shape == mask.shape and image.dtype == np.float32 and mask.dtype == np.uint8
    assert np.load(tmp_path / "case_0001_adc.npy").shape == image.shape
    case = _severe_large_case(dwi_case, "dwi", 2)
    lesion, white = case.mask > 0, case.tissue == WM
    assert case.image[lesion].mean() > 1.5 * case.image[white].mean()  # bright on DWI
    adc = case.extra["adc"]
    assert adc[lesion].mean() < 0.8 * adc[white].mean()  # dark on ADC
    assert adc[case.tissue == CSF].mean() > 3 * adc[white].mean()


def test_dwi_mixed_folder_has_nifti_every_third_case(tmp_path: Path) -> None:
    synthesize("dwi", tmp_path, 3, seed=2, size="tiny", layout="mixed", progress=False)
    assert (tmp_path / "case_0001_dwi.npy").is_file() and (tmp_path / "case_0002_msk.npy").is_file()
    image, meta = read_volume(tmp_path / "case_0003_dwi.nii.gz")
    mask, _ = read_volume(tmp_path / "case_0003_msk.nii.gz")
    sidecar = json.loads((tmp_path / "case_0003.json").read_text())
    assert list(meta.spacing_mm) == sidecar["spacing_mm"] == [8.0, 4.0, 4.0]
    case = dwi_case(2, 2, TINY)
    np.testing.assert_array_equal(image, case.image)
    np.testing.assert_array_equal(mask, case.mask)
    assert not (tmp_path / "case_0003_dwi.npy").exists()


def test_atlas_background_options_change_only_the_air() -> None:
    from autoseg.synthetic.generate import SynthOptions, atlas_case

    cases = {
        bg: atlas_case(3, 0, SynthOptions(size="tiny", background=bg))
        for bg in ("rician", "zero", "gaussian")
    }
    head = cases["rician"].tissue > 0
    for case in cases.values():
        np.testing.assert_array_equal(case.image[head], cases["rician"].image[head])
    assert (cases["rician"].image[~head] > 0).all()  # magnitude noise, as before
    assert (cases["zero"].image[~head] == 0).all()
    air = cases["gaussian"].image[~head]
    assert (air < 0).mean() > 0.4 and abs(float(np.median(air))) < 0.1 * air.std()


def test_unknown_background_is_refused(tmp_path: Path) -> None:
    from autoseg.synthetic.generate import synthesize

    with pytest.raises(ValueError, match="unknown background 'fog'"):
        synthesize("atlas", tmp_path, 1, size="tiny", background="fog", progress=False)
