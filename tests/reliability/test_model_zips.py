"""Gap 6: model zips hold model files only, within a size cap; the contract stays inside."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from autoseg.cli import EXIT_INVALID, predict_main
from autoseg.core.errors import InvalidInputError
from autoseg.inference.model_zip import load_model_zip
from autoseg.pipeline import export as export_module
from autoseg.pipeline.export import export_model_zip
from tests.pipeline.model_helpers import hybrid_spec, make_plans, make_workspace, write_results
from tests.reliability.helpers import error_lines, run_cli

CONTRACT = "inference_contract.json"
CHECKPOINT = "3d_hybrid/fold_0/checkpoint_final.pt"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A workspace with a trained tiny 3d_hybrid and its exported zip (the honest model)."""
    workspace = make_workspace(tmp_path / "ws", cases=1)
    results = write_results(workspace, make_plans({"3d_hybrid": hybrid_spec()}))
    return export_model_zip(results, None, ["0"], tmp_path / "model.zip")


def _rewrite(source: Path, target: Path, extra: dict[str, bytes] | None = None,
             contract: object | None = None) -> Path:  # fmt: skip
    """A copy of ``source`` with members added and (optionally) another contract."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == CONTRACT and contract is not None:
                data = json.dumps(contract).encode()
            new.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            new.writestr(name, data)
    return target


def _predict(tmp_path: Path, model_zip: Path, capsys) -> tuple[int, list[str]]:
    images = tmp_path / "ws" / "raw" / "Tiny" / "imagesTr"
    argv = ["-i", str(images), "-o", str(tmp_path / "out"), "-m", str(model_zip), "--device",
            "cpu", "--no-progress"]  # fmt: skip
    code, err = run_cli(predict_main, argv, capsys)
    return code, error_lines(err)


def test_a_zip_bomb_is_refused_before_extraction(model: Path, tmp_path: Path, capsys) -> None:
    bomb = _rewrite(model, tmp_path / "bomb.zip",
                    {"3d_hybrid/fold_1/checkpoint_final.pt": bytes(32 * 1024**2)})  # fmt: skip
    code, lines = _predict(tmp_path, bomb, capsys)
    assert code == EXIT_INVALID
    (line,) = lines
    assert line.startswith(f"error: {bomb}: refused: member "
                           "'3d_hybrid/fold_1/checkpoint_final.pt' inflates ")  # fmt: skip
    assert line.endswith("a model file compresses 100x at most)")
    assert not (tmp_path / "out").exists()


def test_total_size_is_capped(model: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("autoseg.inference.model_zip.MAX_TOTAL_BYTES", 1024)
    code, lines = _predict(tmp_path, model, capsys)
    assert code == EXIT_INVALID
    (line,) = lines
    assert line.startswith(f"error: {model}: refused: ")
    assert line.endswith("uncompressed, over the 1.0 KiB a model zip may hold")


def _lie_about_size(path: Path, member: str) -> None:
    """Shrink a member's uncompressed size in the central directory (its data unchanged)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    end_record = data.rfind(b"PK\x05\x06")
    start = struct.unpack_from("<I", data, end_record + 16)[0]  # the central directory
    while True:
        name_length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46 : start + 46 + name_length].decode() == member:
            break
        extra, comment = struct.unpack_from("<HH", data, start + 30)
        start += 46 + name_length + extra + comment
    struct.pack_into("<I", data, start + 24, max(1, info.file_size // 4))
    path.write_bytes(bytes(data))


def test_a_member_larger_than_stated_stops_the_extraction(
    model: Path, tmp_path: Path, capsys
) -> None:
    liar = _rewrite(model, tmp_path / "liar.zip")
    _lie_about_size(liar, CHECKPOINT)
    code, lines = _predict(tmp_path, liar, capsys)
    assert code == EXIT_INVALID
    (line,) = lines
    assert line.startswith(f"error: {liar}: ")
    assert "corrupt member" in line or "inflates past its stated size" in line


@pytest.mark.parametrize("member", ["run.sh", "3d_hybrid/fold_0/train.py", "3d_hybrid/x.npy"])
def test_members_outside_the_model_layout_are_refused(
    model: Path, tmp_path: Path, member: str, capsys
) -> None:
    odd = _rewrite(model, tmp_path / "odd.zip", {member: b"#!/bin/sh\n"})
    code, lines = _predict(tmp_path, odd, capsys)
    assert code == EXIT_INVALID
    assert lines == [
        f"error: {odd}: refused: unexpected member '{member}' (a model zip holds {CONTRACT}, "
        "<CONFIG>/plans.json, <CONFIG>/dataset.json and "
        "<CONFIG>/fold_<k>/checkpoint_<final|best|latest>.pt only)"
    ]


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_the_contract_cannot_point_outside_the_archive(
    model: Path, tmp_path: Path, where: str, capsys
) -> None:
    """A results folder elsewhere on disk must not be loaded through a zip's contract."""
    elsewhere = tmp_path / "ws" / "results" / "Tiny" / "3d_hybrid"
    name = str(elsewhere) if where == "absolute" else "../" * 12 + str(elsewhere).lstrip("/")
    with zipfile.ZipFile(model) as archive:
        contract = json.loads(archive.read(CONTRACT))
    contract["configurations"] = [name]
    pointing = _rewrite(model, tmp_path / "pointing.zip", contract=contract)
    with pytest.raises(InvalidInputError) as caught:
        load_model_zip(pointing)
    assert caught.value.problems == [
        f"{pointing}: the contract names '{name}', not a configuration folder of the archive"
    ]


def test_the_honest_zip_still_loads(model: Path) -> None:
    models, _ = load_model_zip(model)
    assert [m.configuration for m in models] == ["3d_hybrid"]
    assert np.isfinite(next(models[0].networks[0].parameters()).detach().numpy()).all()
    assert export_module.CONTRACT_NAME == CONTRACT
