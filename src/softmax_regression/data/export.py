"""Fashion-MNIST written out in the layouts other tools (and ``--data``) read.

* ``torchvision``: ``DIR/FashionMNIST/raw/`` with the four IDX files uncompressed (what
  torchvision's ``FashionMNIST._check_exists`` looks for, so it never downloads) and gzipped
  (what its download leaves), plus ``classes.txt`` (class names, read back by ``--data``);
* ``folder``: ``DIR/fashion-mnist/{train,test}/<class>/<n>.png``, torchvision's
  ``ImageFolder`` layout, ``n`` the zero-padded position in the split;
* ``npz``: ``DIR/fashion-mnist.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test``
  (uint8, as Keras's ``load_data`` returns them) and ``classes``.

The verified dataset is read (from wherever ``load_fashion_mnist`` finds it) and written
into a temporary name beside the target, renamed into place only when complete: a failure
leaves nothing behind, and a replaced target (``force``) is removed only after that.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._io import atomic_write
from ..errors import ConfigError, DataError

FORMATS = ("torchvision", "folder", "npz")
TARGETS = {"torchvision": "FashionMNIST", "folder": "fashion-mnist", "npz": "fashion-mnist.npz"}


def export_fashion_mnist(
    directory: str | os.PathLike[str],
    fmt: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    limit: int | None = None,
    progress: bool = False,
) -> Path:
    """Write Fashion-MNIST into ``directory`` as ``fmt`` (:data:`FORMATS`); returns the path
    written (``directory / TARGETS[fmt]``). ``limit``: only the first ``limit`` examples of
    each split (a smaller copy, for trying things out)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    root = Path(directory).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: not a directory")
    target = root / TARGETS[fmt]
    _check_target(target, force)

    from .dataset import CLASSES, load_fashion_mnist

    splits, gz = {}, {}
    for split in ("train", "test"):
        ds = load_fashion_mnist(split, data_dir)
        x, y = ds.inputs.numpy(), ds.labels.numpy().astype(np.uint8)
        splits[split] = (x[:limit], y[:limit])
        if limit is None:  # the verified .gz files themselves, where they are .gz
            gz.update({k: p for k, p in ds.source.files.items() if p.name.endswith(".gz")})
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{root}: cannot create the directory ({e.strerror or e})") from None
    if fmt == "npz":
        (xtr, ytr), (xte, yte) = splits["train"], splits["test"]

        def write(f) -> None:
            np.savez(f, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, classes=np.array(CLASSES))

        try:
            atomic_write(target, write)
        except OSError as e:
            raise DataError(f"{target}: cannot write ({e.strerror or e})") from None
        return target
    if fmt == "torchvision":
        _write_dir(target, lambda tmp: _torchvision(tmp, splits, CLASSES, gz), force)
    else:
        _write_dir(target, lambda tmp: _folder(tmp, splits, CLASSES, progress), force)
    return target


def _check_target(target: Path, force: bool) -> None:
    try:
        taken = _non_empty(target) if target.is_dir() else target.exists()
    except OSError as e:
        raise DataError(f"{target}: cannot read ({e.strerror or e})") from None
    if taken and not force:
        raise ConfigError(f"{target} already exists and is not empty; pass --force to replace it")


def _write_dir(target: Path, fill: Callable[[Path], None], force: bool) -> None:
    """``fill`` a temporary directory beside ``target``, then rename it to ``target``."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as e:
        raise DataError(f"{target.parent}: cannot write ({e.strerror or e})") from None
    old = None
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists() or target.is_symlink():
            if not force and (not target.is_dir() or _non_empty(target)):
                raise ConfigError(f"{target} already exists and is not empty; pass --force")
            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, old)
        os.replace(tmp, target)
    except OSError as e:
        raise DataError(f"{target}: cannot write ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def _non_empty(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        return any(True for _ in entries)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _torchvision(tmp: Path, splits: dict, classes: tuple[str, ...], gz: dict[str, Path]) -> None:
    """The four files raw and gzipped; a .gz that passed verification is copied as it is
    (gzipping 47 MB again would cost seconds)."""
    import gzip

    from .idx import write_idx
    from .sources import FILES

    raw = tmp / "raw"
    raw.mkdir()
    for split, (x, y) in splits.items():
        for stem, a in zip(FILES[split], (x, y), strict=True):
            write_idx(raw / stem, a)
            if stem in gz:
                shutil.copyfile(gz[stem], raw / f"{stem}.gz")
            else:
                with (
                    open(raw / stem, "rb") as src,
                    open(raw / f"{stem}.gz", "wb") as dst,
                    gzip.GzipFile(filename="", fileobj=dst, mode="wb", mtime=0) as out,
                ):
                    shutil.copyfileobj(src, out)
    (raw / "classes.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")


def _write_pngs(images: np.ndarray, paths: list[str]) -> None:
    from PIL import Image

    for a, path in zip(images, paths, strict=True):
        Image.fromarray(a, mode=None).save(path, format="PNG")


def _folder(tmp: Path, splits: dict, classes: tuple[str, ...], progress: bool) -> None:
    from .folder import CHUNK, in_order

    jobs = []
    for split, (x, y) in splits.items():
        width = len(str(max(len(y) - 1, 0)))
        for k in np.unique(y).tolist():
            (tmp / split / classes[k]).mkdir(parents=True)
        paths = [
            str(tmp / split / classes[k] / f"{i:0{width}d}.png") for i, k in enumerate(y.tolist())
        ]
        for lo in range(0, len(paths), CHUNK):
            jobs.append((x[lo : lo + CHUNK], paths[lo : lo + CHUNK]))
    total = sum(len(p) for _, p in jobs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="writing PNGs", unit="img", leave=False)
    try:
        for (_, p), _ in zip(jobs, in_order(_write_pngs, jobs, total), strict=True):
            if bar is not None:
                bar.update(len(p))
    finally:
        if bar is not None:
            bar.close()
