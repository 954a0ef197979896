"""Fixtures of the report tests: a synthetic workspace and its report, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoseg.core.workspace import Workspace
from autoseg.reporting.report import write_report
from tests.reporting.helpers import NAME, write_full_workspace


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: needs chromium (headless browser tests)")


@pytest.fixture(scope="package")
def full_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace with every report input (see :mod:`tests.reporting.helpers`)."""
    return write_full_workspace(tmp_path_factory.mktemp("report_ws"))


@pytest.fixture(scope="package")
def full_report(full_workspace: Workspace) -> Path:
    """The report of :func:`full_workspace`, at its default path."""
    return write_report(full_workspace, NAME)
