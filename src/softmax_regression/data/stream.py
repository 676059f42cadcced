"""Rows read from disk block by block: features bigger than memory.

A :class:`RowSource` is a set of float features ``(N, D)`` that is never held whole. It reads
*blocks*, contiguous runs of rows, in any order asked for, into fresh float32 arrays; the
labels (one int per row, small) are read once and held. Sources:

* one ``.npy`` file (its labels in another ``.npy``), or a ``.safetensors`` file holding
  ``x``/``X``/``x_train`` beside ``y``/``y_train``: read with plain file reads at the data's
  offset (no memory map, so a file cut short while it is read is an error, not a SIGBUS);
* a directory of shards, ``x_train-00000.npy``, ``x_train-00001.npy``, ... each beside its
  labels ``y_train-00000.npy``, ...; a test split the same way (``x_test-00000.npy``,
  ``y_test-00000.npy``), optional. Shards are taken in the order of their numbers, which
  must run 0, 1, 2, ... without a gap; every shard has the same width and dtype;
* a Parquet file or a directory of Parquet files, read by row groups through pyarrow (the
  ``[tables]`` extra): the label column (default ``label``) beside numeric feature columns;
* an array already in memory or memory-mapped (:meth:`RowSource.from_arrays`).

Block ``k`` is always rows ``[k * block_rows, (k + 1) * block_rows)`` of the whole source,
wherever its files begin and end, so a set split into shards and the same set in one file
give the same blocks, hence the same fits. :meth:`RowSource.share` is a rank's contiguous
share of the rows: it reads only the files its rows lie in.

:meth:`RowSource.blocks` reads ahead: while the caller computes on one block, a thread reads
the next (file reads and the conversion to float32 release the interpreter lock). Each pass
first checks that no file changed since the source was opened (size and modification time),
and checks again after its last block; a read that comes up short, a NaN or an inf each end
the pass with one :class:`~softmax_regression.errors.DataError` line naming the file and row.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, CorruptDataError, DataError, DataNotFoundError

# A block's size in bytes of float32 by default: large enough that a read is sequential and
# per-block overheads vanish, small enough that two (one computed on, one read ahead) and a
# window of them stay a small fraction of memory.
BLOCK_BYTES = 16 << 20
SHARD = re.compile(r"^(?P<what>[xy])_(?P<split>train|test)-(?P<num>\d+)\.npy$", re.IGNORECASE)
PARQUET_SUFFIXES = (".parquet", ".pq")


def block_rows_for(width: int, block_bytes: int | None = None) -> int:
    """Rows per block for ``width`` float32 features: ``block_bytes`` (default
    :data:`BLOCK_BYTES`) worth, at least 1."""
    return max(1, (BLOCK_BYTES if block_bytes is None else block_bytes) // max(1, 4 * width))


def share_of(n: int, size: int, rank: int) -> tuple[int, int]:
    """``[lo, hi)`` of ``n`` rows for rank ``rank`` of ``size``: the first ``n % size`` ranks
    take one more (:func:`softmax_regression.distributed.share`, without importing torch)."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class Stamp:
    """A file as it was when opened: what each pass checks it against."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | Path) -> Stamp:
        try:
            st = os.stat(path)
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
        return cls(str(path), st.st_size, st.st_mtime_ns)

    def check(self) -> None:
        try:
            st = os.stat(self.path)
            now = (st.st_size, st.st_mtime_ns)
        except OSError:
            now = None
        if now != (self.size, self.mtime_ns):
            what = "was removed" if now is None else _change(self, now)
            raise DataError(
                f"{self.path}: changed while being read ({what}); the pass was stopped. Write a "
                "data set to new files and read those, or read it again from the start"
            )


def _change(stamp: Stamp, now: tuple[int, int]) -> str:
    if now[0] != stamp.size:
        return f"{stamp.size:,} bytes when opened, now {now[0]:,}"
    return "its modification time moved"


# ---------------------------------------------------------------------------- pieces


class _Piece:
    """One file's rows (or an in-memory array's), readable as float32 row ranges."""

    rows: int
    width: int
    path: str
    stamp: Stamp | None = None

    def read(self, lo: int, hi: int, out: np.ndarray) -> None:  # pragma: no cover - abstract
        """Rows ``[lo, hi)`` of this piece into ``out``, float32 or float64
        ``(hi - lo, width)``."""
        raise NotImplementedError

    @property
    def stored(self) -> np.dtype:
        """The dtype the rows are stored in."""
        return np.dtype(np.float32)


class _RawPiece(_Piece):
    """A C-ordered array at a byte offset of a file (.npy data, a .safetensors tensor)."""

    def __init__(self, path: Path, offset: int, rows: int, width: int, dtype: np.dtype) -> None:
        self.path, self.offset, self.rows, self.width = str(path), offset, rows, width
        self.dtype = dtype
        self.row_bytes = width * dtype.itemsize
        self.stamp = Stamp.of(path)
        need = offset + rows * self.row_bytes
        if self.stamp.size < need:
            raise CorruptDataError(
                f"{path}: truncated: {rows:,} rows of {width:,} {dtype.name} need {need:,} bytes, "
                f"the file has {self.stamp.size:,}"
            )

    @property
    def stored(self) -> np.dtype:
        return self.dtype

    def read(self, lo: int, hi: int, out: np.ndarray) -> None:
        direct = self.dtype == out.dtype and self.dtype.isnative
        raw = out if direct else np.empty((hi - lo, self.width), self.dtype)
        view = memoryview(raw).cast("B")
        try:
            with open(self.path, "rb", buffering=0) as f:
                f.seek(self.offset + lo * self.row_bytes)
                got = 0
                while got < len(view):
                    n = f.readinto(view[got:])
                    if not n:
                        break
                    got += n
        except OSError as e:
            raise DataError(f"{self.path}: cannot read ({e.strerror or e})") from None
        if got < len(view):
            raise DataError(
                f"{self.path}: changed while being read (rows {lo + 1:,} to {hi:,} come up "
                f"{len(view) - got:,} bytes short); the pass was stopped"
            )
        if not direct:
            out[...] = raw


class _ArrayPiece(_Piece):
    """An array the caller holds (in memory or memory-mapped): rows copied out per block."""

    def __init__(self, x: np.ndarray, where: str) -> None:
        self.x, self.path, self.rows, self.width = x, where, x.shape[0], x.shape[1]
        if isinstance(x, np.memmap) and isinstance(x.filename, str):
            self.stamp = Stamp.of(x.filename)

    @property
    def stored(self) -> np.dtype:
        return self.x.dtype

    def read(self, lo: int, hi: int, out: np.ndarray) -> None:
        out[...] = self.x[lo:hi]


class _ParquetPiece(_Piece):
    """One Parquet file, its row groups read whole and sliced (the last one is kept)."""

    def __init__(self, path: Path, features: list[str]) -> None:
        import pyarrow.parquet as pq

        self.path, self.features, self.width = str(path), features, len(features)
        self.stamp = Stamp.of(path)
        self.file = pq.ParquetFile(path)
        meta = self.file.metadata
        self.rows = meta.num_rows
        self.starts = np.cumsum(
            [0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        )
        schema = self.file.schema_arrow
        types = [np.dtype(schema.field(name).type.to_pandas_dtype()) for name in features]
        self._stored = np.result_type(*types) if types else np.dtype(np.float32)
        self._cached: tuple[int, np.ndarray] | None = None

    @property
    def stored(self) -> np.dtype:
        """The feature columns' common type: float32 when all are float32, float64 when one
        is float64 (or, among integers, the widest integer type)."""
        return self._stored

    def _group(self, g: int) -> np.ndarray:
        if self._cached is not None and self._cached[0] == g:
            return self._cached[1]
        table = self.file.read_row_group(g, columns=self.features)
        # float64 columns kept unrounded (a fit in float64 reads them so), the rest float32
        kept = np.float64 if self._stored == np.float64 else np.float32
        x = np.empty((table.num_rows, self.width), kept)
        for j, name in enumerate(self.features):
            col = table.column(name)
            if col.null_count:
                raise DataError(f"{self.path}: column {name!r} has missing values in row group {g}")
            x[:, j] = col.to_numpy()
        self._cached = (g, x)
        return x

    def read(self, lo: int, hi: int, out: np.ndarray) -> None:
        g = int(np.searchsorted(self.starts, lo, side="right")) - 1
        at = lo
        while at < hi:
            start, stop = int(self.starts[g]), int(self.starts[g + 1])
            take = min(hi, stop)
            out[at - lo : take - lo] = self._group(g)[at - start : take - start]
            at, g = take, g + 1


# ---------------------------------------------------------------------------- the source


class RowSource:
    """Float features ``(N, D)`` on disk, read block by block (see the module docstring).

    ``labels`` are the raw label values, one per row (held in memory); ``block_rows`` the
    rows per block (default: :data:`BLOCK_BYTES` of float32). ``start``/``stop`` restrict
    the source to a contiguous range of rows (what :meth:`share` returns).
    """

    def __init__(
        self,
        pieces: Sequence[_Piece],
        labels: np.ndarray,
        *,
        where: str,
        name: str,
        block_rows: int | None = None,
        columns: list[str] | None = None,
        classes: list[str] | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> None:
        self.pieces = list(pieces)
        self.offsets = np.cumsum([0] + [p.rows for p in self.pieces])
        total = int(self.offsets[-1])
        self.start, self.stop = start, total if stop is None else stop
        self.labels = labels
        self.where, self.name, self.columns, self.classes = where, name, columns, classes
        self.width = self.pieces[0].width if self.pieces else 0
        self.block_rows = block_rows_for(self.width) if block_rows is None else int(block_rows)
        # Row ranges already found finite: the files cannot have changed since (each pass
        # checks), so later passes skip the check. Shared with the shares and copies.
        self._finite: set[tuple[int, int]] = set()
        if self.block_rows < 1:
            raise ConfigError(f"block rows must be at least 1, got {block_rows!r}")

    # ---- numpy-like description, so that the data layer's checks take it as an array

    @property
    def shape(self) -> tuple[int, int]:
        return (self.stop - self.start, self.width)

    dtype = np.dtype(np.float32)
    ndim = 2

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def nbytes(self) -> int:
        """Bytes of the rows as float32: what holding them in memory would take."""
        return len(self) * self.width * 4

    @property
    def stored_dtype(self) -> np.dtype:
        """float64 when some of the rows are stored in float64 (a fit in float64 then reads
        them unrounded), else float32 (what every other stored type is read as)."""
        wide = any(p.stored == np.float64 for p in self.pieces)
        return np.dtype(np.float64 if wide else np.float32)

    @property
    def files(self) -> list[str]:
        return [p.path for p in self._pieces_in(self.start, self.stop)]

    def with_block_rows(self, block_rows: int) -> RowSource:
        return self._copy(block_rows=block_rows)

    def share(self, size: int, rank: int) -> RowSource:
        """Rank ``rank``'s contiguous share of the rows out of ``size`` (as even as possible,
        as :func:`softmax_regression.distributed.share` cuts a batch); it reads only the files
        its rows lie in."""
        lo, hi = share_of(len(self), size, rank)
        return self._copy(start=self.start + lo, stop=self.start + hi)

    def rows(self, lo: int, hi: int) -> RowSource:
        """Rows ``[lo, hi)`` of this source, as a source."""
        if not 0 <= lo <= hi <= len(self):
            raise ConfigError(f"rows {lo}:{hi} outside 0:{len(self)}")
        return self._copy(start=self.start + lo, stop=self.start + hi)

    def _copy(self, **changes: Any) -> RowSource:
        args = dict(
            where=self.where,
            name=self.name,
            block_rows=self.block_rows,
            columns=self.columns,
            classes=self.classes,
            start=self.start,
            stop=self.stop,
        )
        args.update(changes)
        copy = RowSource(self.pieces, self.labels, **args)  # type: ignore[arg-type]
        copy._finite = self._finite
        return copy

    def own_labels(self) -> np.ndarray:
        """The labels of this source's rows."""
        return self.labels[self.start : self.stop]

    # ---- blocks

    @property
    def num_blocks(self) -> int:
        return -(-len(self) // self.block_rows)

    def block_bounds(self, k: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` of block ``k``, counted from this source's first row."""
        lo = k * self.block_rows
        return lo, min(lo + self.block_rows, len(self))

    def read(
        self, lo: int, hi: int, out: np.ndarray | None = None, dtype: Any = np.float32
    ) -> np.ndarray:
        """Rows ``[lo, hi)`` as float32 ``(hi - lo, D)`` (or ``dtype``, float64: a float64
        file's values as they are), checked finite: into ``out`` (a buffer of at least that
        many rows, whose first rows are returned; its dtype is the one read) or a new
        array."""
        a, b = self.start + lo, self.start + hi
        x = np.empty((b - a, self.width), dtype) if out is None else out[: b - a]
        i = int(np.searchsorted(self.offsets, a, side="right")) - 1
        at = a
        while at < b:
            p0, p1 = int(self.offsets[i]), int(self.offsets[i + 1])
            take = min(b, p1)
            if take > at:
                self.pieces[i].read(at - p0, take - p0, x[at - a : take - a])
            at, i = take, i + 1
        if x.size and (a, b) not in self._finite:
            self._check_finite(x, a)
            self._finite.add((a, b))
        return x

    def _check_finite(self, x: np.ndarray, a: int) -> None:
        """A float32 sum is finite when every value is; an overflow to inf is told apart by
        the exact check, which runs only then."""
        if not np.isfinite(x.sum()):
            bad = ~np.isfinite(x).all(axis=1)
            if bad.any():
                row = a + int(np.argmax(bad))
                raise DataError(
                    f"{self._where_row(row)}: NaN or inf in the features; drop or fill that row"
                )

    def _where_row(self, row: int) -> str:
        i = int(np.searchsorted(self.offsets, row, side="right")) - 1
        return f"{self.pieces[i].path}, row {row - int(self.offsets[i]) + 1:,}"

    def _pieces_in(self, a: int, b: int) -> list[_Piece]:
        return [
            p
            for p, lo, hi in zip(self.pieces, self.offsets[:-1], self.offsets[1:], strict=True)
            if lo < b and hi > a
        ]

    def check_unchanged(self) -> None:
        """Raise :class:`DataError` when a file of this source's rows changed since opening."""
        for p in self._pieces_in(self.start, self.stop):
            if p.stamp is not None:
                p.stamp.check()

    def blocks(
        self,
        order: Sequence[int] | None = None,
        *,
        read_ahead: int = 1,
        reuse: bool = False,
        dtype: Any = np.float32,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, float32 rows)`` of each block in ``order`` (default 0, 1, 2, ...),
        the next ``read_ahead`` blocks read by a thread while the caller works on this one
        (``dtype`` float64: the rows in float64, a float64 file's values unrounded).

        ``reuse``: the blocks are read into a ring of ``read_ahead + 3`` buffers allocated
        once, instead of fresh arrays (whose page faults cost as much as the copy out of the
        page cache); block ``j``'s array is then overwritten once block ``j + 2`` is asked
        for, so a caller must be done with it by then (and copy what it keeps).

        The files are checked before the first block and after the last one."""
        order = range(self.num_blocks) if order is None else [int(k) for k in order]
        self.check_unchanged()
        ring: list[np.ndarray] = []
        if reuse:
            rows = min(self.block_rows, len(self))
            ring = [np.empty((rows, self.width), dtype) for _ in range(read_ahead + 3)]

        def job(j: int, k: int) -> tuple[int, np.ndarray]:
            lo, hi = self.block_bounds(k)
            return lo, self.read(lo, hi, ring[j % len(ring)] if ring else None, dtype)

        if read_ahead < 1:
            for j, k in enumerate(order):
                yield job(j, k)
        else:
            yield from self._ahead(order, read_ahead, job)
        self.check_unchanged()

    def _ahead(
        self, order: Sequence[int], depth: int, job: Any
    ) -> Iterator[tuple[int, np.ndarray]]:

        pending: list[concurrent.futures.Future] = []
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        try:
            todo = enumerate(order)
            for j, k in todo:
                pending.append(pool.submit(job, j, k))
                if len(pending) > depth:
                    break
            while pending:
                done = pending.pop(0).result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(job, *nxt))
                yield done
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)

    def chunks(self, read_ahead: int = 1, reuse: bool = False) -> Iterator[np.ndarray]:
        """The rows in order, block by block (``reuse``: as :meth:`blocks` says)."""
        for _, x in self.blocks(read_ahead=read_ahead, reuse=reuse):
            yield x

    # ---- opening

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        y: Any,
        *,
        where: str = "array",
        block_rows: int | None = None,
    ) -> RowSource:
        """An array in memory or memory-mapped (``np.load(..., mmap_mode="r")``, ``np.memmap``):
        rows copied out block by block, never all at once. ``y`` None: rows without labels
        (to classify)."""
        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise DataError(f"{where}: features must be a 2-D array (N, D)")
        if x.dtype.kind not in "biuf":
            raise DataError(f"{where}: features of type {x.dtype} are not numbers")
        if y is None:
            y = np.zeros(0, np.int64)
        else:
            y = _labels_1d(np.asarray(y), where)
            _check_count(f"{where}'s labels", len(y), x.shape[0], where)
        piece = _mapped_piece(x) or _ArrayPiece(x, where)
        return cls([piece], y, where=where, name=where, block_rows=block_rows)


def _mapped_piece(x: np.ndarray) -> _RawPiece | None:
    """A memory-mapped array whose rows lie one after another in its file (``np.load(...,
    mmap_mode="r")``, an ``np.memmap``, or a run of their rows), read with plain file reads at
    its offset, as a ``.npy`` file is: sequential reads of a block at a time rather than a
    page fault per page of the map, and pages the kernel need not unmap to reclaim them.
    None for anything else."""
    import mmap

    root = x
    while root is not None and not (
        isinstance(root, np.memmap) and isinstance(root.base, mmap.mmap)
    ):
        root = getattr(root, "base", None)
    if root is None or not isinstance(root.filename, str) or not x.flags.c_contiguous:
        return None
    start = x.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    try:
        return _RawPiece(
            Path(root.filename), int(root.offset) + start, x.shape[0], x.shape[1], x.dtype
        )
    except DataError:
        return None


def _labels_1d(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be 1-D (one per row), got shape {y.shape}")
    return y


def _check_count(labels_where: str, n_labels: int, n_rows: int, rows_where: str) -> None:
    if n_labels != n_rows:
        short = "fewer" if n_labels < n_rows else "more"
        raise DataError(
            f"{labels_where}: {n_labels:,} labels but {rows_where} has {n_rows:,} rows "
            f"({short} labels than rows)"
        )


# ---------------------------------------------------------------------------- files


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran order, data offset) of a .npy file, from its header alone."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:  # 2.0 and 3.0 differ only in the header's length field and encoding
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            return shape, dtype, fortran, f.tell()
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise CorruptDataError(f"{path}: not a readable .npy file ({e})") from None


def _npy_piece(path: Path, width: int | None = None, dtype: np.dtype | None = None) -> _RawPiece:
    shape, dt, fortran, offset = _npy_header(path)
    if len(shape) != 2:
        raise DataError(
            f"{path}: features must be 2-D (N, D), got shape {shape}; reshape them with "
            "X.reshape(len(X), -1)"
        )
    if dt.kind not in "biuf" or dt.hasobject:
        raise DataError(f"{path}: features of type {dt} are not numbers")
    if fortran and shape[1] > 1:
        raise DataError(
            f"{path}: stored in Fortran (column) order, which cannot be read by rows; save it "
            "with np.save(path, np.ascontiguousarray(X))"
        )
    if width is not None and shape[1] != width:
        raise DataError(
            f"{path}: {shape[1]:,} features per row, the shards before it have {width:,}"
        )
    if dtype is not None and dt != dtype:
        raise DataError(f"{path}: features of type {dt}, the shards before it are {dtype}")
    return _RawPiece(path, offset, shape[0], shape[1], dt)


def open_features(path: Path, **kw: Any) -> RowSource:
    """One ``.npy`` file of features with no labels (rows to classify)."""
    piece = _npy_piece(path)
    return RowSource([piece], np.zeros(0, np.int64), where=str(path), name=path.stem, **kw)


def _npy_labels(path: Path) -> np.ndarray:
    try:
        y = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such labels file") from None
    except (OSError, ValueError, EOFError) as e:
        raise CorruptDataError(f"{path}: not a readable .npy file ({e})") from None
    return _labels_1d(np.asarray(y), str(path))


def shard_splits(directory: Path) -> dict[str, list[tuple[Path, Path | None]]]:
    """``{"train": [(x, y), ...], "test": [...]}``: a shard directory's files, in order.

    A shard number missing from the run 0, 1, 2, ... or a features shard without its labels
    is one :class:`DataError`."""
    found: dict[tuple[str, str], dict[int, Path]] = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise DataError(f"{directory}: cannot list the directory ({e.strerror or e})") from None
    for name in names:
        m = SHARD.match(name)
        if m:
            key = (m["what"].lower(), m["split"].lower())
            found.setdefault(key, {})[int(m["num"])] = directory / name
    out: dict[str, list[tuple[Path, Path | None]]] = {}
    for split in ("train", "test"):
        xs = found.get(("x", split), {})
        ys = found.get(("y", split), {})
        if not xs:
            continue
        nums = sorted(xs)
        if nums != list(range(len(nums))):
            gap = next(i for i, k in enumerate(nums) if k != i)
            raise DataError(
                f"{directory}: x_{split} shards must be numbered 0, 1, 2, ... without a gap; "
                f"shard {gap} is missing"
            )
        for k in nums:
            if k not in ys:
                want = "y" + xs[k].name[1:]
                raise DataError(f"{xs[k]}: no labels shard beside it (expected {want})")
        out[split] = [(xs[k], ys[k]) for k in nums]
    if "train" not in out:
        raise DataError(f"{directory}: no x_train-00000.npy shards")
    return out


def open_shards(directory: Path, split: str = "train", **kw: Any) -> RowSource:
    """A shard directory's ``split`` (see the module docstring) as one source."""
    files = shard_splits(directory).get(split)
    if files is None:
        raise DataNotFoundError(f"{directory}: no x_{split}-00000.npy shards")
    pieces: list[_Piece] = []
    labels = []
    for xp, yp in files:
        first = pieces[0] if pieces else None
        piece = _npy_piece(
            xp,
            None if first is None else first.width,
            None if first is None else first.dtype,  # type: ignore[attr-defined]
        )
        assert yp is not None
        y = _npy_labels(yp)
        _check_count(str(yp), len(y), piece.rows, xp.name)
        pieces.append(piece)
        labels.append(y)
    y_all = np.concatenate(labels) if len(labels) > 1 else labels[0]
    return RowSource(
        pieces, y_all, where=str(directory), name=directory.name, classes=_classes(directory), **kw
    )


def _classes(directory: Path) -> list[str] | None:
    from .arrays import _class_names, read_class_names

    txt, npy = directory / "classes.txt", directory / "classes.npy"
    if txt.is_file():
        return read_class_names(txt)
    if npy.is_file():
        return _class_names(npy, np.load(npy, allow_pickle=False))
    return None


def open_npy(path: Path, labels: Path, **kw: Any) -> RowSource:
    """One ``.npy`` features file and its ``.npy`` labels."""
    piece = _npy_piece(path)
    y = _npy_labels(labels)
    _check_count(str(labels), len(y), piece.rows, path.name)
    return RowSource([piece], y, where=str(path), name=path.stem, **kw)


def open_safetensors(path: Path, split: str = "train", **kw: Any) -> RowSource:
    """A ``.safetensors`` file's features (``x``, ``X`` or ``x_<split>``) and labels."""
    from .arrays import _meta_classes
    from .arrays import open_safetensors as tensors_of

    tensors, meta = tensors_of(path)
    lower = {k.lower(): k for k in tensors}
    xk = lower.get(f"x_{split}") or (lower.get("x") if split == "train" else None)
    yk = lower.get(f"y_{split}") or (lower.get("y") if split == "train" else None)
    if xk is None or yk is None:
        raise DataNotFoundError(f"{path}: no tensors x_{split} and y_{split} (or x and y)")
    x = tensors[xk]
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise DataError(f"{path}: tensor {xk!r} must be numeric features (N, D), got {x.shape}")
    offset = x.offset if isinstance(x, np.memmap) else 0
    piece = _RawPiece(path, offset, x.shape[0], x.shape[1], x.dtype)
    y = _labels_1d(np.array(tensors[yk]), f"{path} ({yk})")
    _check_count(f"{path} ({yk})", len(y), piece.rows, repr(xk))
    classes = _meta_classes(path, meta)
    return RowSource([piece], y, where=str(path), name=path.stem, classes=classes, **kw)


def parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.name.lower().endswith(PARQUET_SUFFIXES) and p.is_file()
        )
        if not files:
            raise DataError(f"{path}: no .parquet files in the directory")
        return files
    return [path]


def open_parquet(
    path: Path, *, label: str | None = None, columns: list[str] | None = None, **kw: Any
) -> RowSource:
    """A Parquet file or directory of them: ``label`` (default ``label``) and every other
    column a feature (numeric, no missing values), read by row groups."""
    from .tables import DEFAULT_LABEL, _pyarrow

    pa = _pyarrow()
    label = label or DEFAULT_LABEL
    pieces: list[_Piece] = []
    labels = []
    for f in parquet_files(path):
        try:
            schema = pa.parquet.read_schema(f)
        except (pa.ArrowException, OSError) as e:
            raise CorruptDataError(f"{f}: cannot read the table ({e})") from None
        names = list(schema.names)
        if label not in names:
            raise ConfigError(
                f"{f}: no column {label!r}; columns are {', '.join(names)}; pass --label COLUMN"
            )
        features = [n for n in names if n != label]
        if columns is None:
            columns = features
        elif features != columns:
            raise DataError(
                f"{f}: feature columns {', '.join(features)} differ from the first file's "
                f"{', '.join(columns)}"
            )
        for name in features:
            t = schema.field(name).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                raise DataError(f"{f}: column {name!r} is not numeric ({t}); drop or encode it")
        piece = _ParquetPiece(f, features)
        col = pa.parquet.read_table(f, columns=[label]).column(label)
        if col.null_count:
            raise DataError(f"{f}: column {label!r} has {col.null_count:,} missing labels")
        y = col.to_numpy(zero_copy_only=False)
        if y.dtype.kind == "O":
            y = np.asarray(col.to_pylist(), dtype=str)
        pieces.append(piece)
        labels.append(y)
    y_all = np.concatenate(labels) if len(labels) > 1 else labels[0]
    name = path.name.split(".")[0]
    return RowSource(pieces, y_all, where=str(path), name=name, columns=columns, **kw)
