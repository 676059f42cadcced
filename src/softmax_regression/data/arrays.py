"""Arrays: .npz, .npy (memory-mapped) and .safetensors (memory-mapped), never unpickled.

Names, case-insensitive: ``X`` and ``y`` (one set: a test split is held out of it), or
``x_train``, ``y_train``, ``x_test``, ``y_test``; optionally ``classes`` (class names; integer
labels are then indices into it). A directory of .npy files uses the same names
(``X.npy``, ``y.npy``, ...; ``classes.npy`` or ``classes.txt``, one name per line); a single
.npy features file takes its labels file from ``label``. A .safetensors file holds the same
tensors, its class names in the header's ``__metadata__`` as ``"classes"`` (a JSON list).

Inputs: float features ``(N, D)`` become float32 (float32 stays as stored: a .npy or
.safetensors file is mapped, not read, so a large set is never copied); uint8 ``(N, H, W)``,
``(N, C, H, W)`` or ``(N, H, W, C)`` with C 1 or 3 are images. Every float feature set is
checked for NaN and inf in chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptDataError, DataError, DataNotFoundError
from .parts import Part

# Files up to this size get a SHA-256 in the dataset's fingerprints; hashing a larger one
# would cost a second pass over it (about 0.7 s per GB here).
HASH_MAX_BYTES = 256 << 20
# Rows checked for NaN/inf at a time: bounds the temporary.
FINITE_CHUNK_BYTES = 64 << 20
SETS = (("x", "y"), ("x_train", "y_train", "x_test", "y_test"))
SAFETENSORS_DTYPES = {
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "U16": np.uint16,
    "I16": np.int16,
    "U32": np.uint32,
    "I32": np.int32,
    "U64": np.uint64,
    "I64": np.int64,
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
}
MAX_HEADER = 100 << 20


def read(kind: str, path: Path, *, labels: str | None = None) -> tuple[Part, Part | None]:
    """(train part, test part or None) of a .npz, .npy or .safetensors source."""
    if kind == "npz":
        named, classes = _npz(path)
    elif kind == "safetensors":
        named, meta = open_safetensors(path)
        classes = _meta_classes(path, meta)
    elif path.is_dir():
        named, classes = _npy_dir(path)
    else:
        if labels is None:
            raise DataError(f"{path}: a .npy features file needs its labels file (label=...)")
        named = {"x": _npy(path), "y": _npy(Path(labels))}
        classes = None
        return _part(path, named["x"], named["y"], classes, path.stem, Path(labels)), None
    lower = {k.lower(): v for k, v in named.items()}
    name = path.stem if path.is_file() else path.name
    if all(k in lower for k in SETS[1]):
        train = _part(path, lower["x_train"], lower["y_train"], classes, name, key="x_train")
        test = _part(path, lower["x_test"], lower["y_test"], classes, name, key="x_test")
        return train, test
    if all(k in lower for k in SETS[0]):
        return _part(path, lower["x"], lower["y"], classes, name, key="X"), None
    if "x_train" in lower and "y_train" in lower:
        return _part(path, lower["x_train"], lower["y_train"], classes, name, key="x_train"), None
    raise DataError(
        f"{path}: no arrays named X and y (or x_train, y_train, x_test, y_test); found "
        f"{', '.join(sorted(named)) or 'none'}"
    )


# ---- files -------------------------------------------------------------------------------


def _pickled(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: {what} holds Python objects, which are never unpickled here; save strings "
        "as a fixed-width string array (np.array(values, dtype=str))"
    )


def _npz(path: Path) -> tuple[dict[str, np.ndarray], list[str] | None]:
    try:
        # Opened here, not by np.load, which leaves its file open when the zip is bad.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            named = {}
            for k in z.files:
                try:
                    named[k] = z[k]
                except ValueError as e:
                    if "allow_pickle" in str(e) or "Object arrays" in str(e):
                        raise _pickled(path, f"array {k!r}") from None
                    raise CorruptDataError(f"{path}: array {k!r} cannot be read ({e})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise CorruptDataError(f"{path}: not a readable .npz file ({e})") from None
    except ValueError as e:
        raise CorruptDataError(f"{path}: not a readable .npz file ({e})") from None
    classes = None
    for k in list(named):
        if k.lower() == "classes":
            classes = _class_names(path, named.pop(k))
    return named, classes


def _npy(path: Path) -> np.ndarray:
    """A .npy file memory-mapped copy-on-write (writable, so torch takes it without a copy
    and without a warning; nothing is ever written back)."""
    try:
        a = np.load(path, mmap_mode="c", allow_pickle=False)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such file") from None
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise _pickled(path, "the array") from None
        raise CorruptDataError(f"{path}: not a readable .npy file ({e})") from None
    except OSError as e:
        raise CorruptDataError(f"{path}: not a readable .npy file ({e})") from None
    if not isinstance(a, np.ndarray):
        raise CorruptDataError(f"{path}: not a .npy array")
    return a


def _npy_dir(path: Path) -> tuple[dict[str, np.ndarray], list[str] | None]:
    named: dict[str, np.ndarray] = {}
    classes = None
    for e in sorted(os.scandir(path), key=lambda e: e.name):
        low = e.name.lower()
        stem = low[: -len(".npy")] if low.endswith(".npy") else None
        if stem in ("x", "y", "x_train", "y_train", "x_test", "y_test"):
            named[stem] = _npy(Path(e.path))
        elif stem == "classes":
            classes = _class_names(Path(e.path), np.load(e.path, allow_pickle=False))
        elif low == "classes.txt":
            classes = read_class_names(Path(e.path))
    return named, classes


def read_class_names(path: Path) -> list[str]:
    """classes.txt: one class name per line (line k names label k); blank lines at the end
    ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the class names ({e})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise DataError(f"{path}: class names must be one per line, none blank, none repeated")
    return names


def _class_names(path: Path, a: Any) -> list[str]:
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "USiu":
        raise DataError(f"{path}: 'classes' must be a 1-D array of names, got {a.dtype} {a.shape}")
    names = [str(v) for v in a.tolist()]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: 'classes' repeats a name")
    return names


def open_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor of a .safetensors file, memory-mapped copy-on-write, and its metadata.

    The header is checked before anything is mapped: its length, its JSON, each tensor's
    dtype, shape and byte range inside the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CorruptDataError(f"{path}: not a .safetensors file (too short)")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER, size - 8):
                raise CorruptDataError(f"{path}: not a .safetensors file (bad header length)")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such file") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CorruptDataError(f"{path}: not a readable .safetensors file ({e})") from None
    if not isinstance(header, dict):
        raise CorruptDataError(f"{path}: not a .safetensors file (header is not a mapping)")
    meta = header.pop("__metadata__", None) or {}
    start = 8 + n
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        try:
            dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(int(s) for s in info["shape"])
            lo, hi = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CorruptDataError(
                f"{path}: tensor {name!r} has an unsupported dtype or a bad header entry"
            ) from None
        count = int(np.prod(shape, dtype=np.int64))
        if lo < 0 or hi < lo or start + hi > size or hi - lo != count * dtype.itemsize:
            raise CorruptDataError(f"{path}: tensor {name!r} lies outside the file or is truncated")
        if count == 0:
            tensors[name] = np.zeros(shape, dtype)
        else:
            tensors[name] = np.memmap(path, dtype=dtype, mode="c", offset=start + lo, shape=shape)
    return tensors, {str(k): str(v) for k, v in meta.items()}


def _meta_classes(path: Path, meta: dict[str, str]) -> list[str] | None:
    text = next((v for k, v in meta.items() if k.lower() == "classes"), None)
    if text is None:
        return None
    try:
        names = json.loads(text)
    except ValueError:
        names = None
    if not isinstance(names, list) or not names:
        raise DataError(f"{path}: metadata 'classes' must be a JSON list of names")
    return _class_names(path, np.array([str(n) for n in names]))


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file up to HASH_MAX_BYTES, else None."""
    try:
        if path.stat().st_size > HASH_MAX_BYTES:
            return None
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


# ---- arrays to a Part --------------------------------------------------------------------


def _part(
    path: Path,
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str] | None,
    name: str,
    labels_file: Path | None = None,
    key: str = "X",
) -> Part:
    where = str(path) if path.is_file() else str(path / f"{key}.npy")
    notes: list[str] = []
    inputs, rule = as_inputs(x, where, notes)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D (one per row), got shape {y.shape}")
    if len(y) != len(inputs):
        raise DataError(
            f"{labels_file or where}: {len(y):,} labels but {len(inputs):,} rows of inputs"
        )
    names = None
    if classes is not None:
        y, names = _index_into(where, y, classes)
    sha = {}
    for p in (path, labels_file):
        if p is not None and p.is_file():
            digest = file_sha256(p)
            if digest is not None:
                sha[p.name] = digest
    if rule is None:
        check_finite(inputs, where)
    return Part(inputs, np.array(y), where, name, rule, names, sha, notes)


def _index_into(where: str, y: np.ndarray, classes: list[str]) -> tuple[np.ndarray, dict]:
    """Labels as indices into ``classes``: integers are taken as indices, names looked up."""
    k = len(classes)
    if y.dtype.kind in "US":
        index = {c: i for i, c in enumerate(classes)}
        out = np.empty(len(y), np.int64)
        for i, v in enumerate(y.astype(str).tolist()):
            if v not in index:
                raise DataError(f"{where}: label {v!r} at row {i + 1} is not one of 'classes'")
            out[i] = index[v]
        return out, dict(enumerate(classes))
    if y.dtype.kind not in "iu":
        raise DataError(f"{where}: with 'classes', labels must be indices (integers) or names")
    bad = (y < 0) | (y >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{where}: label {int(y[i])} at row {i + 1} is outside 0..{k - 1} ('classes' has {k})"
        )
    return y.astype(np.int64), dict(enumerate(classes))


def as_inputs(x: np.ndarray, where: str, notes: list[str]) -> tuple[np.ndarray, str | None]:
    """(inputs, image rule): uint8 images as (N, H, W) / (N, 3, H, W), features as float32
    (N, D) in C order. A copy is made only when the stored form is not one of those; a note
    says so."""
    x = np.asarray(x) if not isinstance(x, np.ndarray) else x
    if x.dtype == np.uint8 and x.ndim in (3, 4):
        if x.ndim == 3:
            return x, "resize"
        if x.shape[1] in (1, 3):  # (N, C, H, W)
            return (x[:, 0] if x.shape[1] == 1 else x), "resize"
        if x.shape[3] in (1, 3):  # (N, H, W, C)
            if x.shape[3] == 1:
                return x[..., 0], "resize"
            notes.append(
                f"{where}: images stored (N, H, W, C), transposed to (N, C, H, W) (a copy)"
            )
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), "resize"
        raise DataError(
            f"{where}: uint8 array of shape {x.shape} is not images (N, C, H, W) or (N, H, W, C) "
            "with 1 or 3 channels"
        )
    if x.ndim != 2:
        raise DataError(
            f"{where}: inputs of {x.dtype} {x.shape}; expected features (N, D) or uint8 images "
            "(N, H, W) / (N, C, H, W); reshape them to (N, D) with X.reshape(len(X), -1)"
        )
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: features of type {x.dtype} are not numbers")
    if x.dtype == np.float32 and x.flags.c_contiguous:
        return x, None
    what = "float64" if x.dtype == np.float64 else str(x.dtype)
    notes.append(f"{where}: {what} features converted to float32 (a copy in memory)")
    return np.ascontiguousarray(x, dtype=np.float32), None


def check_finite(x: np.ndarray, where: str) -> None:
    """Refuse NaN or inf in float features (N, D), naming the first bad row; read in chunks.

    A float32 chunk's float64 sum is finite exactly when every value is (no sum of float32
    values of this many rows can overflow float64), which costs one read and no temporary."""
    if x.dtype.kind != "f" or x.size == 0:
        return
    rows = max(1, FINITE_CHUNK_BYTES // max(1, x.shape[1] * x.itemsize))
    for lo in range(0, x.shape[0], rows):
        chunk = x[lo : lo + rows]
        if np.isfinite(chunk.sum(dtype=np.float64)):
            continue
        bad = ~np.isfinite(chunk).all(axis=1)
        if not bad.any():  # a float64 sum overflowed: finite after all
            continue
        row = lo + int(np.argmax(bad))
        col = int(np.argmax(~np.isfinite(chunk[row - lo])))
        raise DataError(
            f"{where}: feature {col} of row {row + 1} is {x[row, col]} (NaN and inf are not "
            "inputs; fill or drop those rows)"
        )
