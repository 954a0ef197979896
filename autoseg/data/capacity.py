"""A header is not a promise: check the bytes a volume file holds before allocating its voxels.

A reader allocates what the header claims before it finds out the data is short: a
110-byte NIfTI whose header says 800³ float32 would cost 2 GB of RAM in every worker of
``verify``, ``plan`` and ``predict`` only to end in "truncated". So the claim is compared
with what the file can hold first: its size when stored raw; for compressed data a bound
from deflate's largest ratio (instant), then, for claims large enough to hurt, a streaming
decompression that counts bytes without keeping them and stops as soon as it has enough.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from autoseg.core.errors import InvalidInputError
from autoseg.core.resources import available_memory_bytes

# Deflate emits at least 2 bits per 258-byte match, so no stream inflates by more than ~1032x.
DEFLATE_MAX_RATIO = 1032
# Claims below this are cheap to allocate, and the reader itself reports a short file; above
# it the compressed stream is counted through once (as fast as reading it, nothing kept).
STREAM_CHECK_BYTES = 64 * 1024**2
CHUNK_BYTES = 1 << 20
HEADER_SCAN_BYTES = 1 << 16
RAW, DEFLATE = "raw", "deflate"


@dataclass(frozen=True)
class DataClaim:
    """Where a header says the voxel data is, and how many bytes it must hold.

    Attributes:
        file: the file holding the data (the header itself, or a detached data file).
        start: byte offset of the data (or of the compressed stream) in ``file``.
        encoding: ``raw``, or ``deflate`` for a gzip/zlib stream starting at ``start``.
        needed_bytes: bytes the (decompressed) stream must hold from ``start`` on.
        what: the claim in words for the message, e.g. ``"800x800x800 float32"``.
    """

    file: Path
    start: int
    encoding: str
    needed_bytes: int
    what: str


def size_text(num_bytes: float) -> str:
    """``2048000000`` -> ``"1.9 GiB"``: sizes a person reads at a glance."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} GiB"


def check_claim(path: Path, claim: DataClaim) -> None:
    """Refuse a file whose data cannot be what its header claims, before any allocation.

    Args:
        path: the file being read (named in the message).
        claim: what its header says.

    Raises:
        InvalidInputError: the data is shorter than claimed, or the claim does not fit in
            this machine's available memory.
    """
    if not claim.file.is_file():
        raise InvalidInputError(f"{path}: header names data file {claim.file}, which is missing")
    held, exact = _held_bytes(claim)
    if held < claim.needed_bytes:
        holds = f"holds {size_text(held)}" if exact else f"can hold at most {size_text(held)}"
        raise InvalidInputError(
            f"{path}: header claims {claim.what} ({size_text(claim.needed_bytes)}) but the file "
            f"{holds} of data: truncated, or a corrupt header"
        )
    check_memory(path, claim.needed_bytes, claim.what)


def check_memory(path: Path, needed_bytes: int, what: str) -> None:
    """Refuse a read this machine cannot hold: a clear line instead of a bare MemoryError."""
    available = available_memory_bytes()
    if needed_bytes > available:
        raise InvalidInputError(
            f"{path}: reading {what} needs {size_text(needed_bytes)} of memory, "
            f"only {size_text(available)} available"
        )


def _held_bytes(claim: DataClaim) -> tuple[int, bool]:
    """Bytes the data holds (counted no further than the claim needs), and whether that
    count is exact (raw data, or a counted stream) or deflate's upper bound."""
    stored = max(0, claim.file.stat().st_size - claim.start)
    if claim.encoding == RAW:
        return stored, True
    bound = stored * DEFLATE_MAX_RATIO
    if bound < claim.needed_bytes or claim.needed_bytes <= STREAM_CHECK_BYTES:
        return min(bound, claim.needed_bytes), False
    return inflated_bytes(claim.file, claim.start, claim.needed_bytes), True


def inflated_bytes(file: Path, start: int, needed: int) -> int:
    """Decompressed size of the gzip/zlib stream(s) at ``start``, counting up to ``needed``.

    Output is dropped chunk by chunk, so memory stays at one chunk whatever the claim;
    concatenated gzip members (``cat a.gz b.gz``) count as one stream, as gzip reads them.
    A corrupt stream counts what inflated before the damage.
    """
    total, pending = 0, b""
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # 32: gzip or zlib header
    with open(file, "rb") as stream:
        stream.seek(start)
        while total < needed:
            data = pending or stream.read(CHUNK_BYTES)
            if not data:
                break
            try:
                total += len(inflater.decompress(data, CHUNK_BYTES))
            except zlib.error:
                break
            pending = inflater.unconsumed_tail
            if inflater.eof:
                pending = inflater.unused_data + pending
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
    return total


def header_fields(path: Path, pattern: re.Pattern, end: re.Pattern) -> tuple[dict[str, str], int]:
    """``key -> value`` of a text header and the byte offset where the data starts.

    Args:
        path: the header file.
        pattern: a line ``(key)(value)``, e.g. MetaImage's ``Key = Value``.
        end: the line after which data starts (MetaImage: ``ElementDataFile``; NRRD: blank).

    Returns:
        The fields (lower-cased keys) and the data offset; offset -1 when no end was found.
    """
    with open(path, "rb") as stream:
        head = stream.read(HEADER_SCAN_BYTES)
    fields: dict[str, str] = {}
    offset = 0
    for raw_line in head.splitlines(keepends=True):
        offset += len(raw_line)
        line = raw_line.decode("latin-1").rstrip("\r\n")
        match = pattern.match(line)
        if match:
            fields[match.group(1).strip().lower()] = match.group(2).strip()
        if end.match(line):
            return fields, offset
    return fields, -1


METAIMAGE_LINE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*(.*)$")
METAIMAGE_END = re.compile(r"^\s*ElementDataFile\s*=", re.IGNORECASE)
NRRD_LINE = re.compile(r"^([^#:][^:]*):=?\s*(.*)$")
NRRD_END = re.compile(r"^$")
NRRD_ENCODINGS = {"raw": RAW, "gzip": DEFLATE, "gz": DEFLATE}
METAIMAGE_TYPES = {f"MET_{name}" for name in (
    "CHAR", "UCHAR", "SHORT", "USHORT", "INT", "UINT", "LONG", "ULONG", "LONG_LONG",
    "ULONG_LONG", "FLOAT", "DOUBLE")}  # fmt: skip


def nifti_claim(path: Path, shape: tuple[int, ...], itemsize: int, offset: int) -> DataClaim:
    """A NIfTI file: header and data in one stream (gzipped as a whole for ``.nii.gz``)."""
    encoding = DEFLATE if path.name.lower().endswith(".gz") else RAW
    voxels = _product(shape)
    what = f"{'x'.join(map(str, shape))} voxels of {itemsize} bytes"
    return DataClaim(path, 0, encoding, offset + voxels * itemsize, what)


def sitk_claim(path: Path, shape: tuple[int, ...], bytes_per_voxel: int) -> DataClaim | None:
    """Where a MetaImage or NRRD header puts its data; None where it cannot be told simply
    (file lists, slice patterns, bzip2, ASCII): those are read as ITK reads them."""
    what = f"{'x'.join(map(str, shape))} voxels of {bytes_per_voxel} bytes"
    needed = _product(shape) * bytes_per_voxel
    name = path.name.lower()
    if name.endswith((".mha", ".mhd")):
        location = _metaimage_location(path)
    elif name.endswith((".nrrd", ".nhdr")):
        location = _nrrd_location(path)
    else:
        return None
    return None if location is None else DataClaim(*location, needed, what)


def _metaimage_location(path: Path) -> tuple[Path, int, str] | None:
    fields, offset = header_fields(path, METAIMAGE_LINE, METAIMAGE_END)
    data_file = fields.get("elementdatafile", "")
    encoding = DEFLATE if fields.get("compresseddata", "").lower() == "true" else RAW
    if data_file.upper() == "LOCAL":
        return (path, offset, encoding) if offset >= 0 else None
    if not data_file or data_file.upper() == "LIST" or "%" in data_file or " " in data_file:
        return None
    return path.parent / data_file, 0, encoding


def _nrrd_location(path: Path) -> tuple[Path, int, str] | None:
    fields, offset = header_fields(path, NRRD_LINE, NRRD_END)
    encoding = NRRD_ENCODINGS.get(fields.get("encoding", "").lower())
    data_file = fields.get("data file") or fields.get("datafile")
    if encoding is None:
        return None
    if data_file is None:
        return (path, offset, encoding) if offset >= 0 else None
    if data_file.upper().startswith("LIST") or " " in data_file:
        return None
    return path.parent / data_file, 0, encoding  # byte skip ignored: counts more, never less


def metaimage_header_problem(path: Path) -> str | None:
    """What is wrong with a MetaImage header ITK refused, in its own words ("DimSize ...").

    ITK prints the reason to stderr and raises "No such file or directory" (a stale errno);
    this names the field instead.
    """
    fields, offset = header_fields(path, METAIMAGE_LINE, METAIMAGE_END)
    if not fields:
        return "not a MetaImage file (no 'Key = Value' header lines)"
    ndims = fields.get("ndims", "")
    if not ndims.isdigit() or not 1 <= int(ndims) <= 4:
        return f"corrupt MetaImage header: NDims must be 1-4, got {ndims!r}"
    sizes = fields.get("dimsize", "").split()
    if len(sizes) != int(ndims) or not all(s.isdigit() and int(s) > 0 for s in sizes):
        return f"corrupt MetaImage header: DimSize must be {ndims} positive integers, got {sizes}"
    element = fields.get("elementtype", "")
    if element.upper() not in METAIMAGE_TYPES:
        return f"corrupt MetaImage header: unknown ElementType {element!r}"
    if offset < 0:
        return "corrupt MetaImage header: no ElementDataFile line"
    return None


def _product(values: tuple[int, ...]) -> int:
    total = 1
    for value in values:
        total *= int(value)
    return total
