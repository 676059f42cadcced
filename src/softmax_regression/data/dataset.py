"""A split in memory (:class:`Dataset`, what every source reads into), batches by slicing a
seeded randperm, and Fashion-MNIST's own loader."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, CorruptDataError, DataNotFoundError, DeviceError
from . import loadcache
from .idx import IdxArray, read_idx
from .sources import FILES, SHA256, UPSTREAM_GZ_MD5, Found, is_explicit, locate

CLASSES: tuple[str, ...] = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


@dataclass(frozen=True)
class Dataset:
    """One split of a classification dataset, held in memory: inputs, labels, class names.

    Every source (Fashion-MNIST, image folders, IDX files, arrays, tables) reads into this,
    and nothing after loading asks which file format it came from:

    * ``inputs``: uint8 images, ``(M, H, W)`` (one channel, as Fashion-MNIST's) or
      ``(M, C, H, W)``; or float32 features ``(M, D)`` (a memory-mapped array stays mapped);
    * ``labels``: int64 ``(N,)``, indices into ``classes``;
    * ``index``: which rows of ``inputs`` this split holds, in order (None: all of them).
      A subset (a validation or test split carved out of one set) shares ``inputs`` and
      records its rows, so that splitting a large feature set copies nothing;
    * ``input_shape``: what the model sees, ``(C, H, W)`` for images, ``(D,)`` for features;
    * ``image_rule``: how an image file is made into one of these inputs at prediction time
      (:mod:`softmax_regression.predict`): ``"fashion-mnist"`` (light on dark 28x28, the
      dataset's own rule) or ``"resize"`` (mode and size only); None for features;
    * ``sha256``: fingerprints of what was read (file name or part -> SHA-256);
    * ``feature_names``: a table's feature columns, in order (None for other sources).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    split: str = "train"
    classes: tuple[str, ...] = CLASSES
    source: Any = field(default=None, compare=False, repr=False)
    sha256: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    index: torch.Tensor | None = field(default=None, compare=False, repr=False)
    input_shape: tuple[int, ...] = ()
    image_rule: str | None = "fashion-mnist"
    name: str = "Fashion-MNIST"
    feature_names: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.input_shape:  # derived from the storage: (1, H, W), (C, H, W) or (D,)
            shape = tuple(self.inputs.shape[1:])
            if self.inputs.dtype == torch.uint8 and len(shape) == 2:
                shape = (1, *shape)
            object.__setattr__(self, "input_shape", shape)
        if not self.is_image:
            object.__setattr__(self, "image_rule", None)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def images(self) -> torch.Tensor:
        """This split's inputs (the storage itself when the split is all of it)."""
        if self.index is None:
            return self.inputs
        return self.inputs.index_select(0, self.index)

    @property
    def is_image(self) -> bool:
        """uint8 images (C, H, W), as opposed to float features (D,)."""
        return self.inputs.dtype == torch.uint8 and len(self.input_shape) == 3

    @property
    def num_inputs(self) -> int:
        return math.prod(self.input_shape)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def flat_inputs(self) -> torch.Tensor:
        """The storage as ``(M, num_inputs)`` (a view): rows as the model's Flatten sees them."""
        return self.inputs.reshape(self.inputs.shape[0], -1)

    def rows(self, positions: torch.Tensor) -> torch.Tensor:
        """Flat inputs of this split's examples at ``positions`` (a gather, a new tensor)."""
        if self.index is not None:
            positions = self.index.index_select(0, positions)
        return self.flat_inputs().index_select(0, positions)

    def chunks(self, size: int) -> Iterator[torch.Tensor]:
        """This split's flat inputs in order, ``size`` rows at a time (views of the storage
        when the split is all of it, gathers otherwise)."""
        flat = self.flat_inputs()
        for lo in range(0, len(self), size):
            if self.index is None:
                yield flat[lo : lo + size]
            else:
                yield flat.index_select(0, self.index[lo : lo + size])

    def _replace(self, **changes: Any) -> Dataset:
        return dataclasses.replace(self, **changes)

    def to(self, device: str | torch.device | None) -> Dataset:
        if device is None or torch.device(device) == self.device:
            return self
        index = None if self.index is None else self.index.to(device)
        return self._replace(
            inputs=self.inputs.to(device), labels=self.labels.to(device), index=index
        )

    def subset(self, indices: torch.Tensor | Sequence[int], split: str | None = None) -> Dataset:
        """The examples at ``indices``, e.g. a validation split: the labels are gathered, the
        inputs shared (the subset records which rows are its own)."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        rows = idx if self.index is None else self.index.index_select(0, idx)
        return self._replace(
            labels=self.labels.index_select(0, idx), index=rows, split=split or self.split
        )

    def compact(self) -> Dataset:
        """The same split with its own storage (only its rows): a copy when it is a subset."""
        if self.index is None:
            return self
        return self._replace(inputs=self.images, index=None)

    def batches(
        self,
        batch_size: int = 256,
        *,
        shuffle: bool | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        resize: int | tuple[int, int] | None = None,
        drop_last: bool = False,
    ) -> Batches:
        """Re-iterable batches; ``shuffle`` defaults to True for the train split (as the book)."""
        if shuffle is None:
            shuffle = self.split == "train"
        return Batches(
            self,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            generator=generator,
            resize=resize,
            drop_last=drop_last,
        )


# The name the package has always had for a split in memory; every source gives a Dataset.
FashionMNIST = Dataset


def to_float(images: torch.Tensor, resize: int | tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 (B, H, W) -> float32 (B, 1, H', W') in [0, 1], as torchvision's ToTensor does;
    (B, C, H, W) keeps its channels. Float features (B, D) come back as a float32 copy.

    ``resize`` means what torchvision's ``Resize`` means on these PIL images before ToTensor:
    an int or (h, w), bilinear with antialiasing, rounded back to 8-bit levels.
    """
    if images.is_floating_point():
        if resize is not None:
            raise ConfigError("resize applies to images, not to feature vectors")
        return images.to(torch.float32, copy=True)
    size = None
    if resize is not None:
        size = (resize, resize) if isinstance(resize, int) else tuple(resize)
        if tuple(images.shape[-2:]) == size:
            size = None
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if size is None and images.device.type == "cpu":
        # One single-threaded numpy pass, same IEEE division as torch's. A torch op on a batch
        # this size is split across intra-op threads, and on a busy 2-core machine each such
        # op waited ~15 ms for the second thread (measured): 100x slower than this.
        out = torch.empty(images.shape, dtype=torch.float32)
        np.divide(images.numpy(), np.float32(255), out=out.numpy(), dtype=np.float32)
        return out
    x = images.float()
    if size is not None:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        x = x.round_().clamp_(0, 255)
    return x.div_(255)


def _check_resize(resize: int | tuple[int, int] | None) -> None:
    if resize is None:
        return
    sizes = (resize,) if isinstance(resize, int) else tuple(resize) if _seq(resize) else ()
    if len(sizes) not in (1, 2) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes
    ):
        raise ConfigError(f"resize must be a positive int or (height, width), got {resize!r}")


def _seq(x: object) -> bool:
    return isinstance(x, (tuple, list))


class Batches:
    """Batches of one split: a fresh seeded permutation per pass, index slicing, no workers.

    ``len()`` is the number of batches; the last partial batch is kept unless ``drop_last``.
    Yields ``(X, y)`` with X float32 (B, 1, H, W) in [0, 1] and y int64 (B,).
    """

    def __init__(
        self,
        data: FashionMNIST,
        batch_size: int = 256,
        *,
        shuffle: bool = True,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        resize: int | tuple[int, int] | None = None,
        drop_last: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
        _check_resize(resize)
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.resize = resize
        self.drop_last = drop_last
        if generator is None:
            generator = torch.Generator()
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(seed)
        self.generator = generator

    def __len__(self) -> int:
        n, b = len(self.data), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self) -> torch.Tensor | None:
        """The next pass's permutation (consumes the generator), or None when not shuffling."""
        if not self.shuffle:
            return None
        return torch.randperm(len(self.data), generator=self.generator).to(self.data.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = self.order()
        data = self.data
        images, labels = data.inputs, data.labels
        n, b = len(data), self.batch_size
        stop = n - n % b if self.drop_last else n
        # On the CPU the gather runs in numpy too (single-threaded; see to_float).
        host = images.numpy() if images.device.type == "cpu" else None
        for start in range(0, stop, b):
            if perm is None and data.index is None:
                # Labels copied: a caller editing a batch in place must not edit the dataset.
                xb, yb = images[start : start + b], labels[start : start + b].clone()
            else:
                pos = perm[start : start + b] if perm is not None else None
                if pos is None:
                    pos = torch.arange(start, min(start + b, n), device=labels.device)
                yb = labels.index_select(0, pos)
                idx = pos if data.index is None else data.index.index_select(0, pos)
                if host is not None:
                    xb = torch.from_numpy(np.take(host, idx.numpy(), axis=0))
                else:
                    xb = images.index_select(0, idx)
            yield to_float(xb, self.resize), yb


# Parsed, checked files by (path, size, mtime_ns, verify): repeated loads in one process only
# copy the arrays (a copy, so that a caller editing its tensors cannot change later loads).
_MEMO: dict[tuple[str, int, int, bool], IdxArray] = {}
_MEMO_LOCK = threading.Lock()


def _gz_md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_checksum(stem: str, item: IdxArray) -> None:
    """Raise unless the decompressed SHA-256 (or upstream's gz MD5) is the published one."""
    expected = SHA256.get(stem)
    if expected is None or item.sha256 == expected:
        return
    if _is_gz(item.path) and _gz_md5(item.path) == UPSTREAM_GZ_MD5.get(stem):
        return
    raise CorruptDataError(
        f"{item.path}: SHA-256 of the decompressed data is {item.sha256[:16]}..., not the "
        f"published Fashion-MNIST {expected[:16]}... (a corrupt or different file; files "
        f"of your own load with verify=False / --no-verify)"
    )


def _is_gz(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _read_stamped(path: Path, st: os.stat_result, stem: str, magic: int) -> IdxArray | None:
    """The file as recorded verified by an earlier process, without decompressing or hashing."""
    stamp = loadcache.lookup(path, st)
    if stamp is None or stamp.sha256 != SHA256.get(stem):
        return None
    try:
        item = read_idx(stamp.decoded or path, expect_magic=magic, checksum=False)
    except CorruptDataError:
        if stamp.decoded is None:
            raise
        return None  # a damaged copy in the cache: fall back to the file itself
    return IdxArray(array=item.array, sha256=stamp.sha256, path=path, header=item.header)


def read_file(
    path: Path, stem: str, magic: int, *, verify: bool = True, use_cache: bool = True
) -> IdxArray:
    """Read one dataset file, checked; with ``verify``, also against the published checksum.

    ``use_cache`` lets a verification recorded by an earlier process stand (see loadcache);
    the result is memoised in this process either way.
    """
    try:
        st = path.stat()
    except OSError as e:
        raise CorruptDataError(f"{path}: cannot read ({e.strerror or e})") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, verify)
    if use_cache:
        with _MEMO_LOCK:
            hit = _MEMO.get(key)
        if hit is not None:
            return hit
    item = _read_stamped(path, st, stem, magic) if verify and use_cache else None
    if item is None:
        item = read_idx(path, expect_magic=magic, checksum=verify)
        if verify:
            verify_checksum(stem, item)
            loadcache.record(path, st, item)
    with _MEMO_LOCK:
        _MEMO[key] = item
    return item


def read_split(
    found: Found, split: str, *, verify: bool = True, use_cache: bool = True
) -> FashionMNIST:
    """Parse and check one split's two files from a located dataset directory."""
    img_stem, lbl_stem = FILES[split]
    img = read_file(
        found.files[img_stem], img_stem, IMAGE_MAGIC, verify=verify, use_cache=use_cache
    )
    lbl = read_file(
        found.files[lbl_stem], lbl_stem, LABEL_MAGIC, verify=verify, use_cache=use_cache
    )
    if img.array.ndim != 3 or img.array.dtype != "uint8" or img.array.shape[1:] != (28, 28):
        raise CorruptDataError(
            f"{img.path}: expected uint8 images of shape (N, 28, 28), got "
            f"{img.array.dtype} {img.array.shape}"
        )
    if lbl.array.ndim != 1 or lbl.array.dtype != "uint8":
        raise CorruptDataError(
            f"{lbl.path}: expected uint8 labels of shape (N,), got "
            f"{lbl.array.dtype} {lbl.array.shape}"
        )
    if img.array.shape[0] != lbl.array.shape[0]:
        raise CorruptDataError(
            f"{lbl.path}: {lbl.array.shape[0]} labels but {img.path.name} has "
            f"{img.array.shape[0]} images"
        )
    top = len(CLASSES) - 1
    if lbl.array.size and int(lbl.array.max()) > top:
        bad = int(np.argmax(lbl.array > top))
        raise CorruptDataError(
            f"{lbl.path}: label {int(lbl.array[bad])} at index {bad} is outside 0..{top}"
        )
    # New arrays (astype, copy): a caller editing its tensors cannot change the memo's.
    labels = torch.from_numpy(lbl.array.astype(np.int64))
    return Dataset(
        inputs=torch.from_numpy(img.array.copy()),
        labels=labels,
        split=split,
        source=found,
        sha256={img_stem: img.sha256, lbl_stem: lbl.sha256},
    )


def load_fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    *,
    verify: bool = True,
    download: bool = True,
) -> FashionMNIST:
    """Load one split of Fashion-MNIST into memory (optionally onto ``device``).

    Looks in ``data_dir`` (or $SOFTMAX_REGRESSION_DATA), then ``../data/FashionMNIST/raw``,
    the user cache and Debian's ``/usr/share/datasets/fashion-mnist``; downloads into the
    cache as a last resort when ``download`` is true.
    """
    if split not in FILES:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    target = _device(device)
    try:
        found = locate(data_dir)
    except DataNotFoundError:
        if not download or is_explicit(data_dir):
            raise
        # Imported only now: urllib and tqdm cost more to import than a cached load takes.
        from .download import ensure_dataset

        found = ensure_dataset(data_dir, download=True)
    ds = read_split(found, split, verify=verify)
    try:
        return ds.to(target)
    except (RuntimeError, AssertionError) as e:  # e.g. "Torch not compiled with CUDA enabled"
        raise DeviceError(f"cannot move the data to {target}: {str(e).splitlines()[0]}") from None


def _device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DeviceError(f"not a torch device: {device!r} ({str(e).splitlines()[0]})") from None
