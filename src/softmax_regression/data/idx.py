"""Reader for the IDX format of (Fashion-)MNIST, gzipped or raw, validated before it allocates.

Format: big-endian; two zero bytes, a dtype code, the number of dimensions; one uint32 per
dimension; then the payload, exactly prod(dims) items. Fashion-MNIST images are
``(N, 28, 28)`` uint8 (magic 2051), labels ``(N,)`` uint8 (magic 2049).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_write
from ..errors import CorruptDataError

# dtype code -> numpy dtype (big-endian where it matters), as the IDX format defines them.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Nothing in this family is anywhere near this; a header promising more is corrupt or hostile,
# and is refused before a byte of payload is read or allocated.
MAX_PAYLOAD_BYTES = 1 << 30
_CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class IdxArray:
    """An IDX file's contents and the SHA-256 of its decompressed bytes (header included)."""

    array: np.ndarray
    sha256: str
    path: Path
    header: bytes = b""


def _corrupt(path: Path, what: str) -> CorruptDataError:
    return CorruptDataError(f"{path}: {what}")


def _open(path: Path):
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except IsADirectoryError:
        raise _corrupt(path, "is a directory, not an IDX file") from None
    except FileNotFoundError:
        raise _corrupt(path, "file not found") from None
    except PermissionError:
        raise _corrupt(path, "permission denied") from None
    except OSError as e:
        raise _corrupt(path, f"cannot read ({e.strerror or e})") from None
    if head == GZIP_MAGIC:
        return gzip.open(path, "rb"), True
    return open(path, "rb"), False


def _read_exact(f, n: int, path: Path, gz: bool, what: str) -> bytes:
    try:
        data = f.read(n)
    except EOFError:
        raise _corrupt(path, f"truncated gzip stream while reading the {what}") from None
    except (zlib.error, gzip.BadGzipFile, OSError) as e:
        raise _corrupt(path, f"corrupt gzip data while reading the {what} ({e})") from None
    if not data and what == "header":
        raise _corrupt(path, "empty file")
    if len(data) != n:
        raise _corrupt(path, f"file ends early: the {what} needs {n} bytes, got {len(data)}")
    return data


def read_idx(
    path: str | os.PathLike[str],
    *,
    expect_magic: int | None = None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    checksum: bool = True,
) -> IdxArray:
    """Read and validate one IDX file (``.gz`` or raw, detected from its first bytes).

    Raises :class:`CorruptDataError` naming the file for an empty or truncated file, a bad
    gzip stream (truncated, CRC error), a wrong magic number or dtype code, a payload whose
    length differs from what the header declares, or a header that declares more than
    ``max_bytes`` of payload. Decompression never reads past what the header promises.
    With ``checksum=False`` the SHA-256 is not computed (``sha256`` is then empty).
    """
    p = Path(path)
    f, gz = _open(p)
    with f:
        sha = hashlib.sha256()
        head = _read_exact(f, 4, p, gz, "header")
        if head[0] != 0 or head[1] != 0:
            raise _corrupt(p, f"not an IDX file (magic bytes {head.hex()})")
        code, ndim = head[2], head[3]
        magic = struct.unpack(">I", head)[0]
        if code not in IDX_DTYPES:
            raise _corrupt(p, f"unknown IDX dtype code 0x{code:02x}")
        if ndim == 0:
            raise _corrupt(p, "IDX header declares zero dimensions")
        if expect_magic is not None and magic != expect_magic:
            raise _corrupt(p, f"wrong magic number {magic} (expected {expect_magic})")
        dims_raw = _read_exact(f, 4 * ndim, p, gz, "dimension sizes")
        dims = struct.unpack(f">{ndim}I", dims_raw)
        dtype = IDX_DTYPES[code]
        n_bytes = math.prod(dims) * dtype.itemsize
        if n_bytes > max_bytes:
            raise _corrupt(
                p, f"header declares {n_bytes:,} bytes of data {dims}, over the {max_bytes:,} limit"
            )
        if not gz:
            size = os.fstat(f.fileno()).st_size
            if size != 4 + 4 * ndim + n_bytes:
                raise _corrupt(
                    p,
                    f"payload is {size - 4 - 4 * ndim:,} bytes but the header {dims} "
                    f"declares {n_bytes:,}",
                )
        sha.update(head)
        sha.update(dims_raw)
        # np.empty, not bytearray: zero-filling 47 MB first would cost more than reading it.
        buf = np.empty(n_bytes, dtype=np.uint8)
        view = memoryview(buf)
        got = 0
        try:
            while got < n_bytes:
                k = f.readinto(view[got : got + _CHUNK])
                if not k:
                    break
                got += k
            extra = f.read(1)
        except EOFError:
            raise _corrupt(p, "truncated gzip stream (compressed file ended early)") from None
        except (zlib.error, gzip.BadGzipFile, OSError) as e:
            raise _corrupt(p, f"corrupt gzip data ({e})") from None
        if got < n_bytes:
            raise _corrupt(
                p, f"payload is {got:,} bytes but the header {dims} declares {n_bytes:,}"
            )
        if extra:
            raise _corrupt(p, f"payload is longer than the {n_bytes:,} bytes the header declares")
        if gz:
            # Drain the (empty) remainder so the gzip CRC and length trailer get checked.
            try:
                f.read()
            except EOFError:
                raise _corrupt(p, "truncated gzip stream (compressed file ended early)") from None
            except (zlib.error, gzip.BadGzipFile, OSError) as e:
                raise _corrupt(p, f"corrupt gzip data ({e})") from None
        if checksum:
            sha.update(view)
    array = buf.view(dtype).reshape(dims)
    return IdxArray(
        array=array, sha256=sha.hexdigest() if checksum else "", path=p, header=head + dims_raw
    )


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool = False) -> None:
    """Write ``array`` as an IDX file, atomically (gzipped when ``compress``)."""
    arr = np.asarray(array)
    code = next(
        (
            c
            for c, dt in IDX_DTYPES.items()
            if dt.kind == arr.dtype.kind and dt.itemsize == arr.dtype.itemsize
        ),
        None,
    )
    if code is None:
        raise ValueError(f"dtype {arr.dtype} has no IDX code")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = arr.astype(IDX_DTYPES[code], copy=False).tobytes()

    def write(f) -> None:
        if compress:
            # No name or mtime in the gzip header: the same array always gives the same bytes.
            with gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0) as gz:
                gz.write(header + payload)
        else:
            f.write(header + payload)

    atomic_write(path, write)
