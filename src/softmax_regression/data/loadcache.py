"""A per-user record of dataset files that already passed verification.

Verifying a split means decompressing and hashing it; for the Debian .gz files that is most of
the time a load takes, paid again by every process. A file whose (resolved path, size,
mtime_ns) matches a record made when it passed verification is trusted as is. A verified .gz
also leaves a decompressed copy here (named by the SHA-256 of its contents, so every copy of
the published file shares one), read instead of decompressing the .gz again; its header and
length are still checked on every read.

Everything here is best effort: an unreadable, unwritable or damaged cache costs only the time
it would have saved, never a wrong result. Only files matching the published checksums are
ever recorded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_write, atomic_write_json
from .idx import IdxArray
from .sources import cache_dir

INDEX = "index.json"
# Bumped when the layout changes, so an old index is ignored rather than misread.
VERSION = 1


def cache_root() -> Path:
    return cache_dir().parent / "verified"


@dataclass(frozen=True)
class Stamp:
    """What was recorded for a file: its decompressed SHA-256, and the copy if there is one."""

    sha256: str
    decoded: Path | None


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns]


def _load_index(root: Path) -> dict[str, dict]:
    try:
        data = json.loads((root / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def lookup(path: Path, st: os.stat_result) -> Stamp | None:
    """The record for ``path`` if it was verified and has not changed since, else None."""
    root = cache_root()
    entry = _load_index(root).get(str(path.resolve()))
    if not isinstance(entry, dict) or entry.get("stat") != _stat_key(st):
        return None
    sha = entry.get("sha256")
    if not isinstance(sha, str):
        return None
    name = entry.get("decoded")
    if name is None:
        return Stamp(sha, None)
    copy = root / str(name)
    try:
        intact = _stat_key(copy.stat()) == entry.get("decoded_stat")
    except OSError:
        intact = False
    # A copy gone or touched since: verify the source again, which also writes a new copy.
    return Stamp(sha, copy) if intact else None


def record(path: Path, st: os.stat_result, item: IdxArray) -> None:
    """Remember that ``path`` (as of ``st``) verified; keep a decompressed copy of a .gz."""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        entry: dict[str, object] = {"stat": _stat_key(st), "sha256": item.sha256}
        if _is_gzip(path):
            copy = root / f"{item.sha256}.idx"
            if not copy.is_file() or copy.stat().st_size != len(item.header) + item.array.nbytes:

                def write(f) -> None:
                    f.write(item.header)
                    f.write(memoryview(np.ascontiguousarray(item.array)).cast("B"))

                atomic_write(copy, write)
            entry["decoded"] = copy.name
            entry["decoded_stat"] = _stat_key(copy.stat())
        # Read-modify-write without a lock: a concurrent writer can only drop an entry,
        # which costs one more verification later.
        files = _load_index(root)
        files[str(path.resolve())] = entry
        atomic_write_json(root / INDEX, {"version": VERSION, "files": files})
    except OSError:
        pass


def _is_gzip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False
