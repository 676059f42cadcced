"""A split whose features stay on disk: :class:`StreamedDataset`, and when one is used.

It stands where a :class:`~.dataset.Dataset` stands (labels, classes, sizes, ``subset``,
``chunks``), but its rows are a :class:`~.stream.RowSource` read block by block, never
held whole. The trainer, the evaluation and the standardisation statistics read it through
:meth:`StreamedDataset.chunks` and :meth:`StreamedDataset.blocks`.

When: ``--stream always`` / ``never``, or ``auto`` (the default): a shard directory always
streams; a ``.npy``, ``.safetensors`` or Parquet source streams when its training features,
as float32, take more than half the memory this process may use
(:func:`memory_budget`); anything smaller is read as before, bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError, DataNotFoundError
from . import stream
from .spec import KINDS, STREAM_MODES, DataSpec, LoadedData
from .stream import RowSource

# Blocks per shuffling window of the book recipe (train.py's _epoch_streamed): its rows are
# permuted together, so each batch mixes rows from this many random places of the data.
WINDOW_BLOCKS = 4
# A source streams under "auto" when its features take more than this share of the budget.
AUTO_SHARE = 0.5


def memory_budget() -> int:
    """Bytes this process may use: the smallest of the memory available now and its cgroup's
    limit (v1 ``memory.limit_in_bytes`` or v2 ``memory.max``), whichever exist."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for path in _cgroup_limit_files():
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            limits.append(int(text))
    if not limits:
        return 1 << 62
    return min(limits)


def _cgroup_limit_files() -> list[str]:
    """This process's cgroup memory limit files (v1 and v2). In a container the mount is the
    container's own cgroup while /proc/self/cgroup names it from the host's root: the
    longest tail of the path that exists under the mount is the one."""
    out = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if "memory" in controllers.split(","):
            mount, name = "/sys/fs/cgroup/memory", "memory.limit_in_bytes"
        elif controllers == "":
            mount, name = "/sys/fs/cgroup", "memory.max"
        else:
            continue
        steps = [p for p in rel.split("/") if p]
        for i in range(len(steps) + 1):
            path = os.path.join(mount, *steps[i:], name)
            if os.path.exists(path):
                out.append(path)
                break
    return out


def should_stream(mode: str, nbytes: int) -> bool:
    if mode not in STREAM_MODES:
        raise ConfigError(f"--stream must be one of {', '.join(STREAM_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "always"
    return nbytes > AUTO_SHARE * memory_budget()


@dataclass(frozen=True)
class StreamedDataset:
    """One split of float features on disk (see the module docstring).

    ``source``: every row of the storage; ``index``: which of them are this split's, in
    increasing order (None: all), as a held-out or validation split records them.
    """

    source: RowSource
    labels: torch.Tensor
    split: str = "train"
    classes: tuple[str, ...] = ()
    sha256: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    index: torch.Tensor | None = field(default=None, compare=False, repr=False)
    name: str = ""
    feature_names: tuple[str, ...] | None = field(default=None, compare=False, repr=False)
    image_rule: str | None = None

    streamed = True
    is_image = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.source.width,)

    @property
    def num_inputs(self) -> int:
        return self.source.width

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def source_where(self) -> str:
        return self.source.where

    def to(self, device: Any) -> StreamedDataset:
        """Itself: the rows are moved to a device block by block by whoever reads them."""
        return self

    def subset(self, indices: torch.Tensor | Sequence[int], split: str | None = None):
        """The examples at ``indices`` (increasing), reading the same storage."""
        idx = torch.as_tensor(indices, dtype=torch.long).cpu()
        if idx.numel() > 1 and not bool((idx[1:] > idx[:-1]).all()):
            raise ConfigError("a subset of a streamed split takes its rows in increasing order")
        rows = idx if self.index is None else self.index.index_select(0, idx)
        return dataclasses.replace(
            self, labels=self.labels.index_select(0, idx), index=rows, split=split or self.split
        )

    def share(self, size: int, rank: int) -> StreamedDataset:
        """Rank ``rank``'s contiguous share of this split's examples (as
        :func:`softmax_regression.distributed.share` cuts them), over a source that reads only
        the storage rows from its first example to its last."""
        lo, hi = stream.share_of(len(self), size, rank)
        labels = self.labels[lo:hi]
        if self.index is None:
            return dataclasses.replace(self, source=self.source.rows(lo, hi), labels=labels)
        idx = self.index[lo:hi]
        a = int(idx[0]) if len(idx) else 0
        b = int(idx[-1]) + 1 if len(idx) else 0
        return dataclasses.replace(
            self, source=self.source.rows(a, b), labels=labels, index=idx - a
        )

    # ---- reading

    def _select(self, lo: int, hi: int) -> tuple[int, int, np.ndarray | None]:
        """This split's positions ``[a, b)`` among storage rows ``[lo, hi)`` and their local
        row numbers in that block (None: all of the block's rows)."""
        if self.index is None:
            return lo, hi, None
        idx = self.index.numpy()
        a, b = np.searchsorted(idx, [lo, hi])
        return int(a), int(b), idx[a:b] - lo

    def blocks(
        self, order: Sequence[int] | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(float32 rows, int64 labels)`` of this split's examples in each storage block of
        ``order`` (default: in order), the next block read ahead. The rows are valid until
        the block after next is asked for (:meth:`RowSource.blocks` with ``reuse``): every
        reader here is done with a block before it asks for the next one."""
        for lo, x in self.source.blocks(order, reuse=True):
            a, b, local = self._select(lo, lo + len(x))
            rows = torch.from_numpy(x if local is None else x[local])
            yield rows, self.labels[a:b]

    def rows(self, positions: torch.Tensor) -> torch.Tensor:
        """Rows of this split's examples at ``positions`` (a few: each is read from its block
        on disk, the blocks in order)."""
        pos = torch.as_tensor(positions, dtype=torch.long).cpu()
        storage = pos if self.index is None else self.index.index_select(0, pos)
        out = torch.empty((len(pos), self.num_inputs), dtype=torch.float32)
        if len(pos) == 0:
            return out
        src = self.source
        wanted = storage.numpy()
        for k in np.unique(wanted // src.block_rows).tolist():
            lo, hi = src.block_bounds(k)
            here = np.nonzero((wanted >= lo) & (wanted < hi))[0]
            src.check_unchanged()
            x = src.read(lo, hi)
            out[torch.from_numpy(here)] = torch.from_numpy(x[wanted[here] - lo])
        return out

    def chunks(self, size: int = 0) -> Iterator[torch.Tensor]:
        """This split's rows in order, a block at a time (``size`` is for the in-memory
        Dataset's signature; a block is :data:`~.stream.BLOCK_BYTES`)."""
        for rows, _ in self.blocks():
            if len(rows):
                yield rows

    @property
    def num_blocks(self) -> int:
        return self.source.num_blocks


def block_windows(num_blocks: int, window: int, gen: torch.Generator) -> list[list[int]]:
    """The epoch's blocks in shuffled order, cut into windows of ``window`` blocks. One block
    draws nothing from ``gen`` (its window's row permutation is then the in-memory one)."""
    if num_blocks <= 1:
        return [list(range(num_blocks))]
    order = torch.randperm(num_blocks, generator=gen).tolist()
    return [order[i : i + window] for i in range(0, num_blocks, window)]


# ---------------------------------------------------------------------------- loading


def load_streamed(spec: DataSpec) -> LoadedData | None:
    """``spec``'s splits as :class:`StreamedDataset` s when it streams (module docstring),
    else None: the caller reads it into memory as before."""
    path = Path(spec.path or "")
    if spec.kind == "table" and not _parquet(path):
        if spec.stream == "always":
            raise ConfigError(
                f"{path}: only Parquet tables are read block by block (row groups); convert "
                "the table to Parquet, or drop --stream always"
            )
        return None
    if spec.kind == "shards" and spec.stream == "never":
        raise ConfigError(f"{path}: a shard directory is always read block by block")
    if spec.kind != "shards" and not should_stream(spec.stream, _size(spec.kind, path)):
        return None
    train, test = _open(spec.kind, path, spec.label)
    if spec.test is not None:
        if test is not None:
            raise ConfigError(
                f"{spec.path} has its own test part; --test-data {spec.test.path} would replace "
                "it (pass only one of them)"
            )
        tpath = Path(spec.test.path or "")
        if spec.kind == "table" and not _parquet(tpath):
            raise ConfigError(f"--test-data {tpath}: a Parquet training table needs a Parquet test")
        label = spec.label if spec.kind == "table" else spec.test.label
        test, extra = _open(spec.kind, tpath, label, columns=train.columns)
        if extra is not None:
            raise ConfigError(
                f"--test-data {tpath} is itself split into a train and a test part; pass it "
                "as --data"
            )
    elif test is not None and spec.test_split is not None:
        raise ConfigError(
            f"{spec.path} has its own test part; --test-split applies to data without one"
        )
    from .parts import assemble
    from .spec import DEFAULT_TEST_SPLIT

    loaded = assemble(
        _part(train),
        None if test is None else _part(test),
        test_split=DEFAULT_TEST_SPLIT if spec.test_split is None else spec.test_split,
        max_classes=spec.max_classes,
    )
    note = (
        f"{KINDS[spec.kind]} {path} read block by block from disk ({train.nbytes / 2**30:.2f} "
        f"GiB of features, {train.num_blocks:,} block{'s' if train.num_blocks != 1 else ''} of "
        f"{train.block_rows:,} rows)"
    )
    return LoadedData(loaded.train, loaded.test, [note, *loaded.notes])


def _size(kind: str, path: Path) -> int:
    """About how many bytes the training features take as float32, from the files' sizes
    (a Parquet file's from its row and column counts), without opening the data."""
    if kind == "table":
        import pyarrow.parquet as pq

        total = 0
        for f in stream.parquet_files(path):
            meta = pq.ParquetFile(f).metadata
            total += meta.num_rows * max(0, meta.num_columns - 1) * 4
        return total
    if path.is_dir():
        names = {p.name.lower(): p for p in path.iterdir()}
        path = names.get("x_train.npy") or names.get("x.npy") or path
    try:
        if not path.is_file() or not _rows_of_features(kind, path):
            return 0  # images (N, H, W) and the like stay mapped in memory, as before
        return path.stat().st_size
    except (OSError, DataError):
        return 0  # the reader of the in-memory path says what is wrong, as before


def _rows_of_features(kind: str, path: Path) -> bool:
    """Whether the file's features are 2-D numbers (N, D), which is what streams."""
    if kind == "safetensors":
        from .arrays import open_safetensors

        tensors, _ = open_safetensors(path)
        lower = {k.lower(): v for k, v in tensors.items()}
        x = lower.get("x_train", lower.get("x"))
        return x is not None and x.ndim == 2 and x.dtype.kind in "biuf"
    shape, dtype, _, _ = stream._npy_header(path)
    return len(shape) == 2 and dtype.kind in "biuf"


def _parquet(path: Path) -> bool:
    return path.is_dir() or path.name.lower().endswith(stream.PARQUET_SUFFIXES)


def _open(
    kind: str, path: Path, label: str | None, columns: list[str] | None = None
) -> tuple[RowSource, RowSource | None]:
    """(train source, the source's own test part or None)."""
    if kind == "shards":
        splits = stream.shard_splits(path)
        test = stream.open_shards(path, "test") if "test" in splits else None
        return stream.open_shards(path, "train"), test
    if kind == "safetensors":
        try:
            test = stream.open_safetensors(path, "test")
        except DataNotFoundError:
            test = None
        return stream.open_safetensors(path, "train"), test
    if kind == "table":
        return stream.open_parquet(path, label=label, columns=columns), None
    if path.is_file():
        return stream.open_npy(path, Path(label or "")), None
    names = {p.name.lower(): p for p in path.iterdir() if p.suffix.lower() == ".npy"}
    classes = stream._classes(path)

    def pair(xn: str, yn: str) -> RowSource | None:
        if xn not in names:
            return None
        if yn not in names:
            raise DataNotFoundError(f"{names[xn]}: no {yn} beside it")
        src = stream.open_npy(names[xn], names[yn])
        src.classes, src.name = classes, path.name
        return src

    train = pair("x_train.npy", "y_train.npy") or pair("x.npy", "y.npy")
    if train is None:
        raise DataNotFoundError(f"{path}: no X.npy or x_train.npy")
    return train, pair("x_test.npy", "y_test.npy")


def _part(src: RowSource):
    """A reader's :class:`~.parts.Part` of a source: the source stands in for the inputs."""
    from .arrays import _index_into
    from .parts import Part

    y: Any = src.own_labels()
    names = None
    if src.classes is not None:
        y, names = _index_into(src.where, y, src.classes)
    return Part(
        inputs=src,
        labels=y,
        where=src.where,
        name=src.name,
        names=names,
        sha256={f"{src.name} (file sizes and times)": _stat_digest(src)},
        columns=src.columns,
    )


def _stat_digest(src: RowSource) -> str:
    """A digest of every file's name, size and modification time: a fingerprint that costs
    no pass over the data (which hashing would)."""
    import hashlib

    h = hashlib.sha256()
    for piece in src.pieces:
        st = piece.stamp
        if st is not None:
            h.update(f"{Path(st.path).name}\0{st.size}\0{st.mtime_ns}\0".encode())
    return h.hexdigest()
