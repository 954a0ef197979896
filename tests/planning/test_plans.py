"""Plans: golden files, monotone budgets, divisibility, determinism, overrides, schema."""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest
import torch

from autoseg.core.atomic import read_json
from autoseg.core.errors import InvalidInputError
from autoseg.inference.tiles import window_starts
from autoseg.networks import build_network
from autoseg.planning import rules
from autoseg.planning.configurations import ConfigurationKind, LadderInputs, configuration_kind
from autoseg.planning.device import Budget, resolve_budget
from autoseg.planning.ladders import tiling_patch_ladder_3d
from autoseg.planning.planner import plan_from_fingerprint
from autoseg.planning.rules import shape_at, target_spacing
from autoseg.planning.search import fit_ladder
from autoseg.planning.topology import divisors_of, pooling_3d
from autoseg.plans import apply_overrides, load_plans, write_plans

GOLDEN = Path(__file__).parent / "golden"
BUDGETS_GB = (4, 8, 16, 24, 40, 80)


def fingerprint(name: str) -> dict:
    return read_json(GOLDEN / f"fingerprint_{name}.json")


def gpu(memory_gb: float) -> Budget:
    return Budget("cuda", float(memory_gb), "flag", True)


@pytest.fixture(scope="module")
def atlas_plans() -> dict:
    """ATLAS-like plans at every test budget (planned once: the traces are cached)."""
    return {gb: plan_from_fingerprint(fingerprint("atlas_1mm"), gpu(gb)) for gb in BUDGETS_GB}


@pytest.mark.parametrize(
    ("name", "golden"), [("atlas_1mm", "plans_atlas_1mm_8gb"), ("ct_thick", "plans_ct_thick_8gb")]
)
def test_plans_match_golden_file_byte_for_byte(name: str, golden: str, tmp_path: Path) -> None:
    plans = plan_from_fingerprint(fingerprint(name), gpu(8))
    write_plans(tmp_path / "plans.json", plans)
    expected = (GOLDEN / f"{golden}.json").read_text()
    assert (tmp_path / "plans.json").read_text() == expected


def test_recommended_configuration_follows_the_data(atlas_plans: dict) -> None:
    ct = plan_from_fingerprint(fingerprint("ct_thick"), gpu(8))
    assert atlas_plans[8].payload["recommended_configuration"] == "3d_hybrid"
    assert ct.payload["recommended_configuration"] == "2d_lcnn"
    assert ct.configuration("2d_lcnn")["normalization"][0]["scheme"] == "ct"
    # the foreground's 0.5-99.5 percentiles (2, 55) widened by their width (53) each side
    assert ct.configuration("2d_lcnn")["normalization"][0]["clip_low"] == -51.0
    assert ct.configuration("2d_lcnn")["normalization"][0]["clip_high"] == 108.0
    assert atlas_plans[8].configuration("3d_hybrid")["normalization"][0]["scheme"] == "zscore_brain"


@pytest.mark.parametrize("config", ["3d_hybrid", "2.5d_unet", "2d_lcnn"])
def test_more_budget_never_gives_a_smaller_plan(atlas_plans: dict, config: str) -> None:
    entries = [atlas_plans[gb].configuration(config) for gb in BUDGETS_GB]
    for small, large in itertools.pairwise(entries):
        assert all(a <= b for a, b in zip(small["patch_size"], large["patch_size"], strict=True))
        assert small["parameters"] <= large["parameters"]
        assert small["batch_size"] <= large["batch_size"]
    assert entries[-1]["memory_estimate_gb"] > entries[0]["memory_estimate_gb"]


def test_every_plan_fits_its_budget(atlas_plans: dict) -> None:
    for gb, plans in atlas_plans.items():
        for entry in plans.configurations.values():
            assert entry["fits_budget"]
            assert entry["memory_estimate_gb"] <= gb
            assert entry["batch_size"] >= 2


def test_hybrid_spans_the_atlas_stage_table(atlas_plans: dict) -> None:
    small, large = (
        atlas_plans[4].configuration("3d_hybrid"),
        atlas_plans[80].configuration("3d_hybrid"),
    )
    assert large["parameters"] >= 22_000_000
    assert math.prod(large["patch_size"]) >= 128**3
    assert math.prod(small["patch_size"]) < math.prod(large["patch_size"])


@pytest.mark.parametrize("gb", [4, 24])
def test_patches_are_divisible_and_no_larger_than_the_image(atlas_plans: dict, gb: int) -> None:
    for entry in atlas_plans[gb].configurations.values():
        with torch.device("meta"):
            network = build_network(entry["network"])
        assert all(p % d == 0 for p, d in zip(entry["patch_size"], network.divisors, strict=True))
    hybrid = atlas_plans[gb].configuration("3d_hybrid")["patch_size"]
    assert all(p <= n for p, n in zip(hybrid, [145, 175, 140], strict=True))


def test_cpu_default_plan_is_capped_by_compute() -> None:
    plans = plan_from_fingerprint(fingerprint("atlas_1mm"), resolve_budget("cpu"))
    assert plans.payload["gpu_memory_source"] == "default"
    assert plans.payload["cpu_budget"]["gflops_per_iteration"] == 25.0
    for entry in plans.configurations.values():
        assert entry["gflops_per_iteration"] <= 25.0
    # bf16 where the CPU has AMX (autocast_dtype decides at training)
    amp = {name: entry["training"]["amp"] for name, entry in plans.configurations.items()}
    assert amp == {"3d_hybrid": True, "2.5d_unet": True, "2d_lcnn": True}
    # the per-lesion Dice term, except on single slices where lesion tips count as lesions
    loss = {name: entry["training"]["loss"] for name, entry in plans.configurations.items()}
    assert loss == {"3d_hybrid": "dice_ce_lesion", "2.5d_unet": "dice_ce_lesion",
                    "2d_lcnn": "dice_ce"}  # fmt: skip
    gpu = plan_from_fingerprint(fingerprint("atlas_1mm"), resolve_budget("cuda", 8.0))
    assert {entry["training"]["loss"] for entry in gpu.configurations.values()} == {"dice_ce"}
    # CPU plans stay slim: the 3d_hybrid stops at base width 12 (~1 M parameters).
    hybrid = plans.configuration("3d_hybrid")
    assert hybrid["network"]["kwargs"]["stage_features"][0] <= 12
    assert hybrid["parameters"] < 2_000_000


def ct_resliced(spacing: list[float]) -> dict:
    """The thick CT fingerprint as if its stacks were resampled to ``spacing`` (z, y, x)."""
    ct = fingerprint("ct_thick")
    median = ct["spacing_mm"]["median"]
    return rescaled(ct, [m / s for m, s in zip(median, spacing, strict=True)])


def test_cpu_2d_lcnn_climbs_only_widths_that_train_at_batch_8() -> None:
    """Under the compute cap 2d_lcnn's width costs batch: on 6 x 2 x 2 mm CT the CPU
    2d_lcnn keeps its first width at batch 8 instead of its second at batch 2."""
    fp, budget = ct_resliced([6.0, 2.0, 2.0]), resolve_budget("cpu")
    lcnn = plan_from_fingerprint(fp, budget).configuration("2d_lcnn")
    assert (lcnn["ladder_rung"], lcnn["batch_size"]) == (0, 8)
    assert lcnn["gflops_per_iteration"] <= 25.0
    with mock.patch.object(ConfigurationKind, "min_batch", return_value=2):
        wide = plan_from_fingerprint(fp, budget).configuration("2d_lcnn")
    assert (wide["ladder_rung"], wide["batch_size"]) == (1, 2)
    assert wide["parameters"] > 2 * lcnn["parameters"]


def test_a_first_rung_that_cannot_take_the_smallest_batch_gets_the_largest_it_takes() -> None:
    """Batch before width all the way down: under a cap the second width takes at batch 2,
    the first width trains at the largest batch under 8 it takes; the 5 % cap bounds the
    ask; where nothing fits, batch 2 at the first rung, unfit."""
    kind, budget = configuration_kind("2d_lcnn"), resolve_budget("cpu")
    fp = ct_resliced([6.0, 2.0, 2.0])
    spacing = fp["spacing_mm"]["median"]
    inputs = LadderInputs(spacing, shape_at(fp, spacing), 1, 2, 3, cpu=True)
    rungs = kind.rungs(inputs, kind.level_count(budget))

    def gflops(rung: int, batch: int) -> float:  # the ladder's estimate at a capped batch
        return fit_ladder(rungs[rung : rung + 1], budget, batch, False).estimate.gflops

    # a cap the second width takes at batch 2 and the first does not at batch 8
    wider_at_2, slim_at_8 = gflops(1, 2), gflops(0, 8)
    assert wider_at_2 < slim_at_8
    tight = replace(budget, gflops_per_iteration=(wider_at_2 + slim_at_8) / 2)
    assert fit_ladder(rungs, tight, 512, False).index == 1  # batch 2 alone would climb
    choice = fit_ladder(rungs, tight, 512, False, min_batch=8)
    assert (choice.index, choice.batch_size, choice.fits) == (0, 7, True)
    starved = replace(budget, gflops_per_iteration=0.5 * gflops(0, 2))
    choice = fit_ladder(rungs, starved, 512, False, min_batch=8)
    assert (choice.index, choice.batch_size, choice.fits) == (0, 2, False)
    roomy = fit_ladder(rungs, budget, 512, False, min_batch=8)
    assert (roomy.index, roomy.batch_size, roomy.fits) == (0, 8, True)
    assert fit_ladder(rungs, budget, 5, False, min_batch=8).batch_size == 5


def test_bf16_cpu_plans_widen_3d_hybrid_on_the_same_patch() -> None:
    """Where bf16 is faster the CPU 3d_hybrid is one width level wider on the float32
    plan's patch and batch; the 2D configurations, whose bf16 width was never measured,
    are unchanged."""
    slim = plan_from_fingerprint(at_2mm(fingerprint("atlas_1mm")), resolve_budget("cpu"))
    with mock.patch("autoseg.planning.device.cpu_bf16_faster", return_value=True):
        wide = plan_from_fingerprint(at_2mm(fingerprint("atlas_1mm")), resolve_budget("cpu"))
    assert wide.payload["cpu_budget"]["bf16"] and not slim.payload["cpu_budget"]["bf16"]
    hybrid, slim_hybrid = wide.configuration("3d_hybrid"), slim.configuration("3d_hybrid")
    assert hybrid["patch_size"] == slim_hybrid["patch_size"]
    assert hybrid["batch_size"] == slim_hybrid["batch_size"]
    assert slim_hybrid["network"]["kwargs"]["stage_features"] == [8, 16, 32, 64]
    assert hybrid["network"]["kwargs"]["stage_features"] == [12, 24, 48, 96]
    # 1.5x the width: 2.25x the FLOPs, over the float32 cap and within the memory budget
    assert hybrid["gflops_per_iteration"] == pytest.approx(
        2.25 * slim_hybrid["gflops_per_iteration"], rel=0.1
    )
    assert hybrid["fits_budget"] and hybrid["gflops_per_iteration"] > 25.0
    for name in ("2.5d_unet", "2d_lcnn"):
        assert wide.configuration(name) == slim.configuration(name)


def test_cpu_3d_plans_coarsen_until_the_patch_sees_enough_of_the_head() -> None:
    """1 mm heads on a CPU: the compute-capped 3D patch would cover 3 % of the median head;
    3d_hybrid is planned near 2 mm instead, the 2D configurations (whole slices) and a GPU
    plan keep 1 mm, and 2 mm heads (17 % already) keep 2 mm."""
    atlas = fingerprint("atlas_1mm")
    cpu = plan_from_fingerprint(atlas, resolve_budget("cpu"))
    hybrid = cpu.configuration("3d_hybrid")
    spacing = hybrid["spacing_mm"]
    assert len(set(spacing)) == 1 and 1.6 <= spacing[0] <= 2.2
    coverage = math.prod(hybrid["patch_size"]) / math.prod(shape_at(atlas, spacing))
    assert coverage >= rules.CPU_MIN_PATCH_COVERAGE_3D
    assert hybrid["data_id"] != cpu.configuration("2.5d_unet")["data_id"]
    for name in ("2.5d_unet", "2d_lcnn"):
        assert cpu.configuration(name)["spacing_mm"] == [1.0, 1.0, 1.0]
    gpu_plan = plan_from_fingerprint(atlas, gpu(8)).configuration("3d_hybrid")
    assert gpu_plan["spacing_mm"] == [1.0, 1.0, 1.0]
    at_2 = plan_from_fingerprint(at_2mm(atlas), resolve_budget("cpu")).configuration("3d_hybrid")
    assert at_2["spacing_mm"] == [2.0, 2.0, 2.0]


def test_field_of_view_rule_scales_isotropically_and_leaves_thick_slices_alone() -> None:
    def rule(spacing: list[float], shape: list[int], patch: list[int]) -> list[float] | None:
        return rules.cpu_field_of_view_spacing(spacing, shape, patch, [1.0, 1.0, 1.0])

    # 8 % covered: 15 / 8 = 1.875x the volume per voxel, 1.233x per axis
    assert rule([1.0, 1.0, 1.0], [100, 100, 100], [40, 50, 40]) == [1.23, 1.23, 1.23]
    assert rule([1.0, 1.0, 1.0], [100, 100, 100], [50, 60, 50]) is None  # 15 %
    assert rule([1.0, 1.0, 1.0], [1000, 1000, 1000], [8, 8, 8]) == [3.0, 3.0, 3.0]  # capped
    assert rule([2.9, 2.9, 2.9], [100, 100, 100], [8, 8, 8]) == [3.0, 3.0, 3.0]  # in all
    assert rule([3.0, 3.0, 3.0], [100, 100, 100], [8, 8, 8]) is None  # nothing left to give
    thick = [6.0, 1.0, 1.0]  # thick slices: left alone
    assert rules.cpu_field_of_view_spacing(thick, [30, 200, 200], [16, 32, 32], thick) is None
    assert rule([1.0, 1.0, 1.0], [100, 100, 100], [40, 40]) is None  # 2D: whole slices


def windows_per_axis(shape: list[int], patch: tuple[int, ...]) -> list[int]:
    return [len(window_starts(n, p, 0.5)) for n, p in zip(shape, patch, strict=True)]


@pytest.mark.parametrize(
    ("spacing", "shape"), [([2.0] * 3, [56, 84, 66]), ([1.0] * 3, [145, 175, 140])]
)
def test_cpu_tiling_patches_cover_the_median_image_without_waste(
    spacing: list[float], shape: list[int]
) -> None:
    ladder = tiling_patch_ladder_3d(spacing, shape, 0.5)
    counts = [windows_per_axis(shape, patch) for patch in ladder]
    # Largest patch first: 1, 2, 3... windows along every axis.
    assert [c[0] for c in reversed(counts)][:3] == [1, 2, 3]
    assert all(len(set(c)) == 1 for c in counts)
    for patch in ladder:
        divisors = divisors_of(pooling_3d(spacing, patch)[0])
        assert all(p % d == 0 for p, d in zip(patch, divisors, strict=True))
        # One divisor less on any axis would need one more window there: no slack.
        for axis, d in enumerate(divisors):
            smaller = list(patch)
            smaller[axis] -= d
            more = windows_per_axis(shape, tuple(smaller))[axis]
            assert smaller[axis] == 0 or more > windows_per_axis(shape, patch)[axis]


@pytest.mark.parametrize("config", ["2.5d_unet", "2d_lcnn"])
def test_2d_patch_covers_the_median_slice_in_one_window(atlas_plans: dict, config: str) -> None:
    """175x140 slices: 176x144 / 192x160, one window; rounded down (160x128) took four."""
    slice_yx = shape_at(fingerprint("atlas_1mm"), [1.0, 1.0, 1.0])[1:]
    for plans in atlas_plans.values():
        patch = tuple(plans.configuration(config)["patch_size"])
        assert windows_per_axis(slice_yx, patch) == [1, 1]
        assert all(p - n < 32 for p, n in zip(patch, slice_yx, strict=True))


def rescaled(fp: dict, factors: list[float]) -> dict:
    """A fingerprint as if its images were resampled by ``factors`` voxels per voxel (z, y, x)."""
    scaled = copy.deepcopy(fp)
    for key in scaled["spacing_mm"]:
        scaled["spacing_mm"][key] = [
            v / f for v, f in zip(scaled["spacing_mm"][key], factors, strict=True)
        ]
    for field in ("shape", "shape_after_crop"):
        for key in scaled[field]:
            scaled[field][key] = [v * f for v, f in zip(scaled[field][key], factors, strict=True)]
    scaled["voxels_after_crop_total"] *= math.prod(factors)
    return scaled


def at_2mm(fingerprint_1mm: dict, median_shape: list[float] | None = None) -> dict:
    """The 1 mm ATLAS fingerprint as if resampled to 2 mm (optionally another median)."""
    scaled = rescaled(fingerprint_1mm, [0.5, 0.5, 0.5])
    if median_shape is not None:
        scaled["shape_after_crop"]["median"] = median_shape
    return scaled


@pytest.mark.parametrize(("median", "windows"), [(None, 3), ([56, 84.5, 66.5], 2)])
def test_cpu_hybrid_patch_tiles_the_median_image(median: list | None, windows: int) -> None:
    """2 mm CPU plans: a tiling patch, dense width-8 network (the old ladder: a 32x48x40
    patch, 27 windows and 5.3x the image's voxels for the 56x84x66 median)."""
    scaled = at_2mm(fingerprint("atlas_1mm"), median)
    hybrid = plan_from_fingerprint(scaled, resolve_budget("cpu")).configuration("3d_hybrid")
    shape, patch = shape_at(scaled, hybrid["spacing_mm"]), tuple(hybrid["patch_size"])
    assert patch in tiling_patch_ladder_3d(hybrid["spacing_mm"], shape, 0.5)
    assert windows_per_axis(shape, patch) == [windows] * 3
    assert math.prod(patch) * windows**3 <= (4.7 if windows == 3 else 2.8) * math.prod(shape)
    assert hybrid["network"]["kwargs"]["stage_features"][0] == 8
    assert hybrid["network"]["kwargs"]["groups"] == 1


def test_planning_is_deterministic(atlas_plans: dict) -> None:
    again = plan_from_fingerprint(fingerprint("atlas_1mm"), gpu(8))
    assert again.text() == atlas_plans[8].text()
    assert again.plans_id == atlas_plans[8].plans_id


def test_overrides_are_recorded_and_change_the_id(atlas_plans: dict) -> None:
    plans = atlas_plans[8]
    changed = apply_overrides(plans, ["3d_hybrid.batch_size=4", "3d_hybrid.training.epochs=50"])
    assert changed.configuration("3d_hybrid")["batch_size"] == 4
    assert changed.configuration("3d_hybrid")["training"]["epochs"] == 50
    assert changed.payload["overrides"] == [
        "3d_hybrid.batch_size=4",
        "3d_hybrid.training.epochs=50",
    ]
    assert changed.plans_id != plans.plans_id
    assert plans.configuration("3d_hybrid")["batch_size"] == 2  # the original is untouched


def test_spacing_override_moves_the_cache(atlas_plans: dict) -> None:
    plans = atlas_plans[8]
    changed = apply_overrides(plans, ["3d_hybrid.spacing_mm=[2.0, 2.0, 2.0]"])
    assert (
        changed.configuration("3d_hybrid")["data_id"] != plans.configuration("3d_hybrid")["data_id"]
    )
    assert changed.configuration("2d_lcnn")["data_id"] == plans.configuration("2d_lcnn")["data_id"]


def test_overrides_reach_keys_the_planner_leaves_out(atlas_plans: dict) -> None:
    """The schema's optional keys and a transform's null range are set as a hand edit would."""
    changed = apply_overrides(
        atlas_plans[8],
        [
            '3d_hybrid.augmentation.probabilities={"blur": 0, "noise": 0.05}',
            "3d_hybrid.augmentation.low_resolution=null",
            '3d_hybrid.training.loss_kwargs={"lesion_weight": 2.0}',
        ],
    )
    hybrid = changed.configuration("3d_hybrid")
    assert hybrid.augmentation.probabilities == {"blur": 0, "noise": 0.05}
    assert hybrid.augmentation.low_resolution is None
    assert hybrid.augmentation.gaussian_blur_sigma == (0.5, 1.0)  # untouched
    assert hybrid.training.loss_kwargs == {"lesion_weight": 2.0}
    assert "probabilities" not in changed.configuration("2d_lcnn").to_json()["augmentation"]


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("3d_hybrid.batch_sise=4", "unknown key 'batch_sise'"),
        ("3d_hybrid.patch_size=null", "may not be null"),
        ("3d_hybrid.augmentation.probabilities=[0]", "expected dict"),
        ('3d_hybrid.augmentation.probabilities={"blurr": 0}', "unknown transform 'blurr'"),
        ("3d_unet.batch_size=4", "unknown key '3d_unet'"),
        ("3d_hybrid.batch_size=four", "expected int"),
        ("3d_hybrid.batch_size", "expected key=value"),
    ],
)
def test_bad_overrides_fail_clearly(atlas_plans: dict, assignment: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        apply_overrides(atlas_plans[8], [assignment])


def test_load_round_trip_and_schema_errors(atlas_plans: dict, tmp_path: Path) -> None:
    path = tmp_path / "plans.json"
    write_plans(path, atlas_plans[8])
    assert load_plans(path).plans_id == atlas_plans[8].plans_id
    payload = json.loads(path.read_text())
    payload["schema_version"] = 99
    del payload["configurations"]["3d_hybrid"]["patch_size"]
    path.write_text(json.dumps(payload))
    with pytest.raises(InvalidInputError) as error:
        load_plans(path)
    problems = error.value.problems
    assert len(problems) == 2  # every problem at once, each naming the file
    assert "schema_version 99 is not supported" in problems[0]
    assert problems[1].endswith("configurations.3d_hybrid: missing 'patch_size'")
    assert all(line.startswith(str(path)) for line in problems)


def test_hand_edit_gets_a_new_id(atlas_plans: dict, tmp_path: Path) -> None:
    path = tmp_path / "plans.json"
    payload = atlas_plans[8].to_json()
    payload["configurations"]["2d_lcnn"]["batch_size"] = 3
    path.write_text(json.dumps(payload))
    assert load_plans(path).plans_id != atlas_plans[8].plans_id


def test_thick_axis_rule_uses_a_finer_percentile() -> None:
    thick = fingerprint("ct_thick")
    thick["spacing_mm"]["percentile_10"][0] = 3.0
    assert target_spacing(thick) == [3.0, 0.49, 0.49]
    thick["shape_after_crop"]["median"][0] = 200  # enough slices: keep the median
    assert target_spacing(thick) == [5.0, 0.49, 0.49]


@pytest.mark.slow  # traces all three networks cold on the CPU budget (~10 s)
def test_plan_dataset_writes_fingerprint_and_plans(tiny_dataset: Path, tmp_path: Path) -> None:
    from autoseg.core.workspace import Workspace
    from autoseg.planning.planner import plan_dataset

    workspace = Workspace(tiny_dataset.parent, tmp_path / "pre", tmp_path / "results")
    plans = plan_dataset(
        workspace, "Tiny", device="cpu", overrides=["2d_lcnn.batch_size=3"], progress=False
    )
    written = load_plans(tmp_path / "pre" / "Tiny" / "plans.json")
    assert written.plans_id == plans.plans_id
    assert written.configuration("2d_lcnn")["batch_size"] == 3
    assert (tmp_path / "pre" / "Tiny" / "fingerprint.json").is_file()


@pytest.mark.parametrize(
    ("spacing", "modality", "expected"),
    [
        ([6.0, 2.0, 2.0], "CT", "3d_hybrid"),  # slice/pixel ratio exactly 3: still 3D
        ([6.5, 2.0, 2.0], "CT", "2d_lcnn"),
        ([6.0, 1.0, 1.0], "DWI", "2.5d_unet"),
        ([1.0, 1.0, 1.0], "CT", "3d_hybrid"),
    ],
)
def test_thick_slices_start_above_a_ratio_of_three(
    spacing: list[float], modality: str, expected: str
) -> None:
    fingerprint = {"spacing_mm": {"median": spacing}, "channels": [{"modality": modality}]}
    assert rules.recommended_configuration(fingerprint) == expected


def test_ct_window_keeps_csf_apart_from_the_darkest_lesion() -> None:
    """Acute infarcts span 14-24 HU; CSF (6 HU) and grey matter (38 HU) must stay outside
    the lesion range after clipping, or every sulcus reads as lesion core."""
    low, high = rules.ct_window({"percentile_00_5": 14.0, "percentile_99_5": 24.0})
    assert (low, high) == (4.0, 34.0)
    assert low < 6.0  # CSF keeps its own value instead of being clipped onto 14 HU


def test_the_default_size_rule_is_half_the_smallest_training_lesion(tmp_path: Path) -> None:
    """Traced masks with one-voxel lesions (the ATLAS-like golden: 0.001 ml at 1 mm) keep
    everything; a set whose smallest lesion is 0.056 ml drops predictions under 0.028 ml;
    a set without lesions gets no rule."""
    atlas = fingerprint("atlas_1mm")
    assert rules.default_postprocessing(atlas) == {"min_lesion_ml": 0.0005}
    drawn = copy.deepcopy(atlas)
    drawn["lesions"]["smallest_ml"] = 0.056
    assert rules.default_postprocessing(drawn) == {"min_lesion_ml": 0.028}
    drawn["lesions"]["smallest_ml"] = 0.0
    assert rules.default_postprocessing(drawn) == {}


@pytest.mark.parametrize(
    ("postprocessing", "message"),
    [
        (
            {"min_component_peak": 0.9},
            "postprocessing.min_component_peak is not a plans default (known: min_lesion_ml)",
        ),
        ({"min_lesion_ml": -1}, "postprocessing.min_lesion_ml must be a number >= 0"),
        ([0.1], "'postprocessing' must be a JSON object"),
    ],
)
def test_a_bad_default_postprocessing_is_refused_naming_the_file(
    atlas_plans: dict, postprocessing: object, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "plans.json"
    payload = atlas_plans[8].to_json()
    payload["postprocessing"] = postprocessing
    path.write_text(json.dumps(payload))
    with pytest.raises(InvalidInputError) as error:
        load_plans(path)
    assert error.value.problems == [f"{path}: {message}"]


def test_a_configuration_name_with_a_dot_can_be_overridden(atlas_plans: dict) -> None:
    changed = apply_overrides(atlas_plans[8], ["2.5d_unet.batch_size=3"])
    assert changed.configuration("2.5d_unet").batch_size == 3
    again = apply_overrides(atlas_plans[8], ["configurations.2.5d_unet.batch_size=3"])
    assert again.configuration("2.5d_unet") == changed.configuration("2.5d_unet")


def test_contralateral_channels_need_a_network_that_takes_them(atlas_plans: dict) -> None:
    """The copies double the cached channels (for a 2D stack, per slice): an override that
    turns them on must give the network those channels, and is told how many."""
    with pytest.raises(InvalidInputError, match=r"in_channels is 1, .* set it to 2"):
        apply_overrides(atlas_plans[8], ["3d_hybrid.preprocessing.contralateral=true"])
    stack = atlas_plans[8].configuration("2.5d_unet").network.in_channels
    with pytest.raises(InvalidInputError, match=f"set it to {2 * stack}"):
        apply_overrides(atlas_plans[8], ["2.5d_unet.preprocessing.contralateral=true"])
    both = ["3d_hybrid.preprocessing.contralateral=true", "3d_hybrid.network.kwargs.in_channels=2"]
    changed = apply_overrides(atlas_plans[8], both).configuration("3d_hybrid")
    assert changed.preprocessing_spec.network_channels == 2
    assert changed.data_id != atlas_plans[8].configuration("3d_hybrid").data_id
