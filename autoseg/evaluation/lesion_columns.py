"""The columns of the lesion tables, with their descriptions and units, spelled once.

Each dict maps a column name to its BIDS-style dictionary entry (``Description``, and
``Units`` where the column has one); :mod:`autoseg.evaluation.lesion_files` writes the
rows in this order and the dict as the table's JSON sidecar.
"""

from __future__ import annotations


def _column(description: str, units: str | None = None) -> dict[str, str]:
    return {"Description": description, **({"Units": units} if units else {})}


IDENTITY = {
    "case": _column("Case id (the file name of the label map without its ending)"),
    "participant_id": _column("BIDS subject, sub-<label> (n/a when not known)"),
    "session_id": _column("BIDS session, ses-<label> (n/a when not known or not used)"),
}
LESION_COLUMNS = {
    **IDENTITY,
    "lesion": _column("Lesion number within the case, 1 = largest"),
    "label": _column("Label value of most of the lesion's voxels"),
    "voxels": _column("Voxel count", "voxel"),
    "volume_ml": _column("Lesion volume", "ml"),
    **{
        f"centroid_{a}": _column(
            f"Centroid, voxel index {a} (NIfTI order: i = fastest file axis; 0-based)", "voxel"
        )
        for a in "ijk"
    },
    **{
        f"centroid_{a}_mm": _column(
            f"Centroid, world {a} through the file's affine (RAS: "
            "+x right, +y anterior, +z superior)",
            "mm",
        )
        for a in "xyz"
    },
    "world_space": _column(
        "Space of the world coordinates: 'scanner', or the BIDS space (e.g. MNI152NLin2009aSym)"
    ),
    **{
        f"bbox_{a}_{end}": _column(f"Bounding box, {end}imum voxel index {a} (inclusive)", "voxel")
        for a in "ijk"
        for end in ("min", "max")
    },
    "hemisphere": _column(
        "Side of the centroid: left, right (or midline) of the mid-sagittal "
        "plane of hemisphere_method"
    ),
    "hemisphere_method": _column(
        "mni_x_sign: world x = 0 in MNI space; brain_midsagittal: plane normal to world x "
        "through the brain mask's centroid (image nonzero voxels); grid_midsagittal: through "
        "the grid centre (no image given)"
    ),
    "mean_probability": _column(
        "Mean calibrated foreground probability over the lesion (n/a without saved probabilities)"
    ),
    "max_probability": _column("Maximum calibrated foreground probability in the lesion"),
    "fold_agreement": _column(
        "Mean over the lesion of the fraction of ensemble members "
        "(folds) voting for its label (n/a without --save-uncertainty)"
    ),
    "region": _column("Atlas region holding most of the lesion (n/a without --atlas)"),
    "connectivity": _column(
        "Voxel connectivity defining a lesion: 26 (ISLES'22 rules) or 6 (ATLAS rules)"
    ),
}
CASE_COLUMNS = {
    **IDENTITY,
    "lesions": _column("Number of lesions (connected components)"),
    "voxels": _column("Lesion voxels in all", "voxel"),
    "volume_ml": _column("Total lesion volume", "ml"),
    "largest_lesion_ml": _column("Volume of the largest lesion", "ml"),
    "left_volume_ml": _column("Lesion volume left of the mid-sagittal plane, by voxel", "ml"),
    "right_volume_ml": _column("Lesion volume right of the mid-sagittal plane, by voxel", "ml"),
    "hemisphere_method": LESION_COLUMNS["hemisphere_method"],
    "mean_probability": _column("Mean calibrated foreground probability over all lesion voxels"),
    "max_probability": _column("Maximum calibrated foreground probability of any lesion voxel"),
    "voxel_volume_mm3": _column("Volume of one voxel", "mm^3"),
    "world_space": LESION_COLUMNS["world_space"],
    "connectivity": LESION_COLUMNS["connectivity"],
}
REGION_COLUMNS = {
    **IDENTITY,
    "region_index": _column("Label value of the region in the atlas"),
    "region": _column("Region name (from the atlas names table)"),
    "region_volume_ml": _column("Region volume on the case's grid", "ml"),
    "lesion_volume_ml": _column("Lesion volume inside the region", "ml"),
    "lesion_percent_of_region": _column("Lesion volume as a percentage of the region", "%"),
}
