"""Cache I/O: ``preprocessed/<NAME>/<data_id>/<case>.npz`` plus ``<case>.json`` (DESIGN §6).

The npz is written uncompressed (``np.savez``): its members are then plain ``.npy`` bytes
at a fixed offset in the file, so :func:`load_case` can memory-map them and a training
loader reads only the patch it cuts instead of inflating the whole volume every time.
A case is finished iff its json exists and carries the current spec hash; the json is
written after the npz, so a killed run never leaves a case that looks finished.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from autoseg.core.atomic import atomic_path, read_json, write_json
from autoseg.preprocessing.properties import CaseProperties, PreprocessedCase

SPEC_FILE = "preprocessing_spec.json"
LOCAL_HEADER_SIZE = 30  # fixed part of a zip local file header
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def case_paths(folder: Path, case_id: str) -> tuple[Path, Path]:
    """``(<case>.npz, <case>.json)`` inside a cache folder."""
    return folder / f"{case_id}.npz", folder / f"{case_id}.json"


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed npz (what ``np.savez`` writes) with fixed zip timestamps, so the same
    arrays always give the same bytes (caches can be compared by checksum)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_ZIP_TIME)
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def save_case(folder: Path, case: PreprocessedCase, case_id: str | None = None) -> None:
    """Write one case atomically: the npz first, then the json that marks it finished."""
    case_id = case_id or case.properties.case_id
    npz_path, json_path = case_paths(Path(folder), case_id)
    arrays = {"data": case.data}
    if case.seg is not None:
        arrays["seg"] = case.seg.astype(np.int8, copy=False)
    with atomic_path(npz_path) as temp:
        write_npz(temp, arrays)
    write_json(json_path, case.properties.to_json())


def is_finished(folder: Path, case_id: str, spec_hash: str) -> bool:
    """True when the case's json and npz exist and the json was made by ``spec_hash``."""
    npz_path, json_path = case_paths(Path(folder), case_id)
    if not (json_path.is_file() and npz_path.is_file()):
        return False
    try:
        return read_json(json_path).get("spec_hash") == spec_hash
    except (ValueError, OSError, AttributeError):
        return False


def _member_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Byte offset of a stored zip member's data (the local header has its own extra field)."""
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(LOCAL_HEADER_SIZE)
        name_length = int.from_bytes(header[26:28], "little")
        extra_length = int.from_bytes(header[28:30], "little")
    return info.header_offset + LOCAL_HEADER_SIZE + name_length + extra_length


def _memmap_member(path: Path, archive: zipfile.ZipFile, name: str) -> np.ndarray | None:
    """Memory-map ``name.npy`` of an uncompressed npz, or None when it is compressed."""
    info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    start = _member_offset(path, info)
    with open(path, "rb") as handle:
        handle.seek(start)
        version = np.lib.format.read_magic(handle)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)


def load_arrays(npz_path: Path, mmap: bool = True) -> dict[str, np.ndarray]:
    """The arrays of a case npz; memory-mapped (read-only) when ``mmap`` and uncompressed."""
    npz_path = Path(npz_path)
    with zipfile.ZipFile(npz_path) as archive:
        names = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
        mapped = {n: _memmap_member(npz_path, archive, n) for n in names} if mmap else {}
    if mmap and all(v is not None for v in mapped.values()):
        return mapped
    with np.load(npz_path) as loaded:
        return {name: loaded[name] for name in names}


def load_properties(folder: Path, case_id: str) -> CaseProperties:
    """The properties (``<case>.json``) of a cached case."""
    return CaseProperties.from_json(read_json(case_paths(Path(folder), case_id)[1]))


def load_case(folder: Path, case_id: str, mmap: bool = True) -> PreprocessedCase:
    """Load a cached case; with ``mmap`` the arrays are read-only memory maps (fast patches).

    Args:
        folder: the cache folder ``preprocessed/<NAME>/<data_id>``.
        case_id: the case to load.
        mmap: map the arrays instead of reading them into memory.
    """
    npz_path, _ = case_paths(Path(folder), case_id)
    arrays = load_arrays(npz_path, mmap)
    return PreprocessedCase(arrays["data"], arrays.get("seg"), load_properties(folder, case_id))


def cached_case_ids(folder: Path, spec_hash: str | None = None) -> list[str]:
    """Case ids of a cache folder: every case whose npz was written (an interrupted write
    leaves only a hidden temporary file), or with ``spec_hash`` only the finished cases
    made by that spec (:func:`is_finished`). The one rule of which cached cases count."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    ids = sorted(p.name[: -len(".npz")] for p in folder.glob("*.npz") if not p.name.startswith("."))
    if spec_hash is None:
        return ids
    return [i for i in ids if is_finished(folder, i, spec_hash)]
