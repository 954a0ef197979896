"""Shared pieces of the reliability suite: hostile files, CLI runs, process tables."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

CliMain = Callable[[Sequence[str]], int]


def run_cli(main: CliMain, argv: Sequence[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Exit code and stderr of one in-process CLI run (stdout is dropped)."""
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


def error_lines(stderr: str) -> list[str]:
    """The ``error: ...`` lines of a command's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def lying_nifti(path: Path, claimed_xyz: tuple[int, int, int] = (800, 800, 800)) -> Path:
    """A tiny NIfTI whose header claims a huge float32 volume (a few bytes of data follow)."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape(claimed_xyz)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + np.zeros(8, np.float32).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (read from /proc; psutil is not a dependency)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return children


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def repo_env() -> dict[str, str]:
    """The environment for a subprocess that imports this checkout of autoseg."""
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root, "PYTHONUNBUFFERED": "1"}


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder this process cannot write in: mode 555, or immutable where we are root."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if _writable(folder) and shutil.which("chattr"):  # root ignores mode bits
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
        immutable = done.returncode == 0
    if _writable(folder):
        folder.chmod(0o755)
        pytest.skip("cannot make a read-only folder here (root without chattr)")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    folder.chmod(0o755)
