"""The HTML report from a fully synthetic workspace: sections, order, lesion lists, assets."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest

from autoseg.core.errors import InvalidInputError
from autoseg.core.workspace import Workspace
from autoseg.reporting import report as report_module
from autoseg.reporting.report import write_report
from tests.reporting.helpers import NAME, WORST_FIRST, write_minimal_workspace

SECTION_IDS = ("fingerprint", "plans", "training", "cv", "test", "lesions", "cases")


def case_block(html: str, case: str) -> str:
    """The HTML of one case's block in the cases section."""
    start = html.index(f"id='case-{case}'")
    end = html.find("<div class='case'", start)
    return html[start : end if end > 0 else len(html)]


def test_report_has_every_section_in_order(full_report: Path) -> None:
    html = full_report.read_text()
    assert full_report == full_report.parent / "report.html"
    positions = [html.index(f'<section id="{anchor}">') for anchor in SECTION_IDS]
    assert positions == sorted(positions)
    assert f"autoseg report: {NAME}" in html
    assert "not available yet" not in html


def test_cases_and_test_rows_are_sorted_worst_dice_first(full_report: Path) -> None:
    html = full_report.read_text()
    overlays = [html.index(f"id='case-{case}'") for case in WORST_FIRST]
    assert overlays == sorted(overlays)
    test_part = html[html.index('<section id="test">') : html.index('<section id="cases">')]
    rows = [test_part.index(f"<td>{case}</td>") for case in WORST_FIRST]
    assert rows == sorted(rows)
    assert test_part.index("<td>mean</td>") < rows[0]  # summary rows above the cases


def test_missed_lesion_and_false_positive_are_listed(full_report: Path) -> None:
    html = full_report.read_text()
    case_a = case_block(html, "caseA")
    # the 2 x 2 x 2 lesion at z 1..2, y 1..2, x 11..12: 8 voxels of 3 mm^3
    assert "Missed lesions: 1" in case_a
    assert "<td>0.024</td><td>8</td><td>(2, 2, 12)</td>" in case_a
    assert "False-positive components: none" in case_a
    case_b = case_block(html, "caseB")
    assert "Missed lesions: none" in case_b
    assert "False-positive components: 1" in case_b
    assert "<td>0.012</td><td>4</td><td>(0, 0, 0)</td>" in case_b


def test_uncertainty_panel_and_confidence_table_only_where_given(full_report: Path) -> None:
    html = full_report.read_text()
    row = "<td>1</td><td>83</td><td>0.249</td><td>(6, 7, 7)</td><td>0.910</td><td>0.550</td>"
    assert row + "<td>0.137</td><td>0.000</td>" in case_block(html, "caseA")
    assert "caseA_disagreement" not in html  # not mistaken for a case
    assert "confidence" not in case_block(html, "caseB")


def test_plans_cv_and_training_content(full_report: Path) -> None:
    html = full_report.read_text()
    assert '<tr class="recommended"><td>3d_hybrid (recommended)</td>' in html
    assert "<td>75%</td>" in html  # 6.0 GB of the 8.0 GB budget
    assert "<td>0.789</td>" in html  # best after postprocessing
    assert "<p class='note'>2.5d_unet: only folds 0, 1 of 5 validated</p>" in html
    training = html[html.index('<section id="training">') : html.index('<section id="cv">')]
    assert training.count("<td>fold_") == 2
    assert "<td>0.400</td>" in training  # best EMA Dice of 5 epochs (0.1 per epoch)


def test_every_image_is_an_inline_png_and_nothing_external(full_report: Path) -> None:
    html = full_report.read_text()
    sources = re.findall(r'<img src="([^"]*)"', html)
    # histogram + one training figure + the lesion volume scatter + one overlay per case
    assert len(sources) == 1 + 1 + 1 + len(WORST_FIRST)
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(src|href)=[\"'](?!data:|#)", html)
    assert "<script" not in html and "<link" not in html
    assert "http://" not in html and "https://" not in html and "file:" not in html


def test_missing_optional_inputs_show_not_available(tmp_path: Path) -> None:
    workspace = write_minimal_workspace(tmp_path)
    html = write_report(workspace, NAME).read_text()
    for what in ("Training logs", "find_best.json", "Test metrics", "Predictions"):
        assert f"{what}" in html
    assert html.count("not available yet") == 5
    assert '<section id="plans">' in html


def test_missing_plans_is_invalid_input_naming_the_file(tmp_path: Path) -> None:
    workspace = write_minimal_workspace(tmp_path)
    (workspace.preprocessed / NAME / "plans.json").unlink()
    with pytest.raises(InvalidInputError, match=r"plans\.json: not found \(run autoseg_plan"):
        write_report(workspace, NAME)


def test_failed_render_leaves_previous_report_untouched(
    full_workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "out" / "report.html"
    output.parent.mkdir()
    output.write_text("previous")

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(report_module, "render_report", broken)
    with pytest.raises(RuntimeError):
        write_report(full_workspace, NAME, output_path=output)
    assert output.read_text() == "previous"
    assert [p.name for p in output.parent.iterdir()] == ["report.html"]


def test_max_cases_and_explicit_paths(full_workspace: Workspace, tmp_path: Path) -> None:
    results = full_workspace.results / NAME
    output = write_report(
        full_workspace,
        NAME,
        output_path=tmp_path / "r.html",
        metrics_path=results / "test" / "metrics.json",
        predictions_dir=results / "test" / "predictions",
        max_cases=1,
    )
    html = output.read_text()
    assert "id='case-caseB'" in html and "id='case-caseA'" not in html
    assert "1 of 3 cases" in html


def test_without_metrics_cases_are_ordered_by_their_own_dice(
    full_workspace: Workspace, tmp_path: Path
) -> None:
    html = write_report(
        full_workspace, NAME, output_path=tmp_path / "r.html", metrics_path=tmp_path / "none.json"
    ).read_text()
    assert html.count("not available yet") == 1  # only the test metrics table
    overlays = [html.index(f"id='case-{case}'") for case in WORST_FIRST]
    assert overlays == sorted(overlays)
    assert "caseC: Dice 1.000" in html


def test_malformed_lesion_json_is_invalid_input(full_workspace: Workspace, tmp_path: Path) -> None:
    predictions = tmp_path / "predictions"
    shutil.copytree(full_workspace.results / NAME / "test" / "predictions", predictions)
    (predictions / "caseA_lesions.json").write_text('{"lesions": 3}')
    with pytest.raises(InvalidInputError, match=r"caseA_lesions\.json: expected a list"):
        write_report(full_workspace, NAME, output_path=tmp_path / "r.html",
                     predictions_dir=predictions)  # fmt: skip


def test_lesion_table_section_lists_cases_and_lesions(full_report: Path) -> None:
    html = full_report.read_text()
    part = html[html.index('<section id="lesions">') : html.index('<section id="cases">')]
    assert "measured for this report: 3 cases" in part
    assert 'alt="lesion volume scatter"' in part
    assert all(f"<td>{case}</td>" in part for case in WORST_FIRST)
    assert "<th>volume_ml</th>" in part and "<th>hemisphere</th>" in part
