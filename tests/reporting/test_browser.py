"""The report in a real headless Chromium: renders, every image loads, no console errors.

A copy of the report gets a probe script (the report itself has none) that records
script errors, failed resource loads and ``console.error``/``console.warn`` calls, and on
``load`` writes a summary into ``document.title``; ``--dump-dom`` returns it. Network is
off (``--host-resolver-rules``), so a report that needed the network would show broken
images. A screenshot is kept under the test's tmp dir and copied to
``$AUTOSEG_SCREENSHOT_DIR`` when that is set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

WINDOW = (1280, 2000)
HEADER_RGB = (0x1F, 0x3A, 0x5F)
PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (event) {
    var source = event.target && (event.target.src || event.target.href);
    errors.push("error:" + (event.message || source || "unknown"));
  }, true);
  ["error", "warn"].forEach(function (level) {
    console[level] = function () {
      errors.push(level + ":" + Array.prototype.join.call(arguments, " "));
    };
  });
  window.addEventListener("load", function () {
    var images = document.images, broken = 0;
    for (var i = 0; i < images.length; i++) {
      if (!images[i].complete || images[i].naturalWidth === 0) { broken++; }
    }
    document.title = "PROBE images=" + images.length + " broken=" + broken +
      " errors=" + errors.length + " " + errors.join(" | ");
  });
})();
</script>"""
TITLE = re.compile(r"<title>PROBE images=(\d+) broken=(\d+) errors=(\d+)(.*?)</title>", re.S)


def chromium_binary() -> str | None:
    """Debian's ``chromium`` (CI installs it with .ci/install_chromium.sh), if present."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (run .ci/install_chromium.sh)")
    return binary


def run_chromium(binary: str, profile: Path, url: str, *extra: str) -> tuple[str, str]:
    """Headless Chromium with no network, no first-run work and a throwaway profile.

    Output goes to files, not pipes: Chromium's helper processes outlive the browser a
    while and would hold a pipe open. Returns ``(stdout, stderr)``.
    """
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        "--disable-default-apps", "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url,
    ]  # fmt: skip
    out, err = profile.parent / "chromium.out", profile.parent / "chromium.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        subprocess.run(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                       timeout=120, check=False)  # fmt: skip
    return out.read_text(errors="replace"), err.read_text(errors="replace")


def probe(binary: str, html: str, folder: Path) -> tuple[int, int, int, str, str]:
    """Load ``html`` with the probe; ``(images, broken, errors, messages, stderr)``."""
    folder.mkdir()
    page = folder / "probe.html"
    head = html.index("<head>") + len("<head>")
    page.write_text(html[:head] + PROBE + html[head:], encoding="utf-8")
    # the virtual time budget lets the load handler run before the DOM is dumped
    stdout, stderr = run_chromium(
        binary, folder / "profile", page.as_uri(), "--dump-dom", "--virtual-time-budget=10000"
    )
    match = TITLE.search(stdout)
    assert match, f"probe did not run; stderr:\n{stderr[-3000:]}"
    images, broken, errors = (int(match.group(i)) for i in (1, 2, 3))
    return images, broken, errors, match.group(4).strip(), stderr


def test_report_renders_with_all_images_and_no_console_errors(
    chromium: str, full_report: Path, tmp_path: Path
) -> None:
    html = full_report.read_text(encoding="utf-8")
    images, broken, errors, messages, stderr = probe(chromium, html, tmp_path / "probe")
    # histogram, training curves, lesion-volume scatter and three case overlays
    assert images == html.count("<img ") == 6
    assert broken == 0
    assert errors == 0, messages
    console = [line for line in stderr.splitlines() if "CONSOLE" in line]
    assert console == []


def test_probe_detects_a_broken_image(chromium: str, full_report: Path, tmp_path: Path) -> None:
    html = full_report.read_text(encoding="utf-8")
    broken_html = re.sub(
        r'<img src="[^"]*"', '<img src="data:image/png;base64,AAAA"', html, count=1
    )
    images, broken, errors, _, _ = probe(chromium, broken_html, tmp_path / "probe")
    assert (images, broken) == (6, 1)
    assert errors >= 1  # the failed load is reported as an error event


def test_screenshot_shows_the_rendered_page(
    chromium: str, full_report: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"
    _, stderr = run_chromium(
        chromium, tmp_path / "profile", full_report.as_uri(),
        f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
    )  # fmt: skip
    assert shot.is_file(), stderr[-3000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    assert tuple(int(v) for v in pixels[10, 10]) == HEADER_RGB  # the CSS was applied
    packed = pixels.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], np.int32)  # (H, W)
    assert len(np.unique(packed)) > 200  # text and figures drawn, not a blank page
    target = os.environ.get("AUTOSEG_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / "report_screenshot.png")
