"""The preprocessing spec: JSON round trip, content-keyed data_id, validation."""

from __future__ import annotations

import dataclasses

import pytest

from autoseg.plans.preprocessing import ChannelNormalization, PreprocessingSpec


def ct_spec(**changes: object) -> PreprocessingSpec:
    ct = ChannelNormalization("ct", clip_low=-20.0, clip_high=120.0, mean=40.0, std=25.0)
    spec = PreprocessingSpec(spacing_mm=(5.0, 0.5, 0.5), normalization=(ct,))
    return dataclasses.replace(spec, **changes)


def test_json_round_trip_keeps_hash_and_data_id() -> None:
    spec = ct_spec()
    again = PreprocessingSpec.from_json(spec.to_json())
    assert again == spec
    assert again.spec_hash == spec.spec_hash and again.data_id == spec.data_id
    assert spec.data_id.startswith("3d_5.00x0.50x0.50_")


def test_any_setting_that_changes_the_cache_changes_the_data_id() -> None:
    base = ct_spec()
    changed = [
        ct_spec(spacing_mm=(5.0, 0.5, 0.6)),
        ct_spec(crop_to_nonzero=False),
        ct_spec(n4=True),
        ct_spec(data_dtype="float16"),
        ct_spec(normalization=(ChannelNormalization("zscore"),)),
    ]
    ids = {spec.data_id for spec in changed}
    assert base.data_id not in ids and len(ids) == len(changed)


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="known: ct"):
        ChannelNormalization("minmax")
    with pytest.raises(ValueError, match="clip_low"):
        ChannelNormalization("ct", mean=0.0, std=1.0)
    with pytest.raises(ValueError, match="positive"):
        ct_spec(spacing_mm=(0.0, 1.0, 1.0))
