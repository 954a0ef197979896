"""case_sources.json: round trip in channel order, guesses for cases without a record."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.data.sources import (
    CASE_SOURCES_JSON,
    CaseSource,
    find_case_sources,
    guessed_source,
    read_case_sources,
    write_case_sources,
)


def test_round_trip_keeps_the_channel_order(tmp_path: Path) -> None:
    source = CaseSource("c1", {"sub": "01", "ses": "2"}, "imagesTs", "/bids",
                        {"DWI": "sub-01/dwi.nii.gz", "ADC": "sub-01/adc.nii.gz"})  # fmt: skip
    write_case_sources(tmp_path, [source])
    [back] = read_case_sources(tmp_path / CASE_SOURCES_JSON).values()
    assert back == source and list(back.files) == ["DWI", "ADC"]
    assert back.source_uris == ["bids:raw:sub-01/dwi.nii.gz", "bids:raw:sub-01/adc.nii.gz"]
    (tmp_path / "imagesTs").mkdir()
    assert find_case_sources(tmp_path / "imagesTs") == {"c1": source}
    write_case_sources(tmp_path, [])  # a source without BIDS names leaves no stale record
    assert not (tmp_path / CASE_SOURCES_JSON).exists()


def test_guesses_and_a_broken_record(tmp_path: Path) -> None:
    assert guessed_source("sub-01_ses-2").entities == {"sub": "01", "ses": "2"}
    assert guessed_source("case_001").entities == {"sub": "case001"}
    (tmp_path / CASE_SOURCES_JSON).write_text("[]")
    with pytest.raises(InvalidInputError, match="not a case sources file"):
        read_case_sources(tmp_path / CASE_SOURCES_JSON)
