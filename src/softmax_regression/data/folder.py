"""Image folders: torchvision's ``ImageFolder`` layout, decoded once, then read from a cache.

Layout, as torchvision's ``datasets/folder.py`` reads it: one folder per class, the sorted
folder names are the classes (their indices in that order); images anywhere below a class
folder, walked in sorted order, with torchvision's image extensions; hidden files and
folders (a leading dot) ignored. Or ``train/`` and ``test/`` inside, each of that layout.

Every image goes through :mod:`softmax_regression.images` (safe open, EXIF orientation, the
"resize" rule), the same code ``predict`` runs on a new image, so training and prediction
see the same pixels. Storage: uint8 ``(N, H, W)`` for one channel (as Fashion-MNIST's), else
``(N, 3, H, W)``.

Decoding is spread over worker processes (on this 2-core machine threads gained nothing:
most of a small image's time is Python, which holds the GIL; see BENCHMARKS.md). The result
is cached under the user cache (``$XDG_CACHE_HOME/softmax-regression/folders``), one file
per folder and options: a .safetensors file (never a pickle) holding the images and labels,
stamped with the folder's listing (every file's relative path, size and mtime_ns) and the
SHA-256 of its arrays, both checked on every read; written atomically. A file changed,
added or removed changes the listing, and the folder is decoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path
from ..errors import ConfigError, CorruptDataError, DataError, ImageError
from .parts import Part
from .sources import cache_dir

# torchvision's IMG_EXTENSIONS.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Bumped when the cache layout or the decoding changes, so that old entries are decoded again.
CACHE_VERSION = 1
# Below this many images one process decodes them all (starting workers costs ~0.3 s).
PARALLEL_MIN = 2000
CHUNK = 500


def cache_root() -> Path:
    return cache_dir().parent / "folders"


def find_classes(directory: Path) -> list[str]:
    """Sorted names of the (non-hidden) class folders, at least two."""
    try:
        classes = sorted(
            e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")
        )
    except OSError as e:
        raise DataError(f"{directory}: cannot list the directory ({e.strerror or e})") from None
    if len(classes) < 2:
        which = f"only one ({classes[0]!r})" if classes else "none"
        raise DataError(
            f"{directory}: an image folder needs one folder per class and at least 2 classes; "
            f"found {which}"
        )
    return classes


def list_images(
    directory: Path, classes: list[str]
) -> tuple[list[tuple[str, int, int]], list[int], list[str]]:
    """(files as (relative path, size, mtime_ns), class index of each, ignored files), in
    torchvision's order: class by class, ``sorted(os.walk(...))``, sorted file names."""
    files: list[tuple[str, int, int]] = []
    labels: list[int] = []
    ignored: list[str] = []
    # One thread: stat() in threads was slower here (measured), the GIL taken back per file.
    listed = [_list_class(directory, name) for name in classes]
    for k, (name, (found, skipped)) in enumerate(zip(classes, listed, strict=True)):
        if not found:
            raise DataError(
                f"{directory / name}: class folder holds no images "
                f"({', '.join(IMG_EXTENSIONS)}); add some or remove the folder"
            )
        files += found
        ignored += skipped
        labels += [k] * len(found)
    return files, labels, ignored


def _list_class(directory: Path, name: str) -> tuple[list[tuple[str, int, int]], list[str]]:
    files: list[tuple[str, int, int]] = []
    ignored: list[str] = []
    for rel_root, entries in _walk(directory, name):
        for e in entries:
            rel = f"{rel_root}/{e.name}"
            if not e.name.lower().endswith(IMG_EXTENSIONS):
                ignored.append(rel)
                continue
            try:
                st = e.stat()
            except OSError as err:
                raise DataError(f"{e.path}: cannot read ({err.strerror or err})") from None
            files.append((rel, st.st_size, st.st_mtime_ns))
    return files, ignored


def _walk(directory: Path, top: str) -> list[tuple[str, list[os.DirEntry]]]:
    """(folder relative to ``directory``, its non-hidden files sorted by name) for ``top`` and
    every folder below it, in the order of ``sorted(os.walk(...))`` (symbolic links followed,
    as torchvision's ``followlinks=True``); hidden folders are not entered."""
    out: list[tuple[str, list[os.DirEntry]]] = []
    stack = [top]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(directory / rel))
        except OSError as e:
            raise DataError(f"{directory / rel}: cannot list ({e.strerror or e})") from None
        names = []
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir():
                stack.append(f"{rel}/{e.name}")
            else:
                names.append(e)
        names.sort(key=lambda e: e.name)
        out.append((rel, names))
    out.sort(key=lambda item: item[0])
    return out


def _decode(
    paths: list[str], channels: int | None, size: tuple[int, int] | None
) -> tuple[list, list]:
    """Decode ``paths`` (in a worker): arrays (c, h, w) in order, and (position, message) of
    each image that could not be read. With ``size``, every array is brought to it."""
    from ..images import channels_of, open_image, resize_rule, to_array

    out: list[np.ndarray] = []
    bad: list[tuple[int, str]] = []
    for i, path in enumerate(paths):
        try:
            img = open_image(path)
            c = channels or channels_of(img)
            a = to_array(img, c) if size is None else resize_rule(img, c, *size)
        except ImageError as e:
            bad.append((i, str(e)))
            continue
        except (OSError, ValueError) as e:  # a conversion PIL refuses
            bad.append((i, f"{path}: cannot convert the image ({e})"))
            continue
        out.append(a)
    return out, bad


def pool_for(n_items: int) -> Executor | None:
    """Worker processes for ``n_items`` images, or None: too few to be worth starting them."""
    if n_items < PARALLEL_MIN:
        return None
    try:
        workers = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        workers = os.cpu_count() or 1
    if workers < 2:
        return None
    import multiprocessing

    # spawn: the parent may have threads (torch's), and fork() beside threads can deadlock.
    return ProcessPoolExecutor(min(workers, 8), mp_context=multiprocessing.get_context("spawn"))


def in_order(fn: Callable[..., Any], jobs: list[tuple], n_items: int) -> Iterator[Any]:
    """``fn(*job)`` for every job, results in order: in worker processes when there are
    enough items (:func:`pool_for`), else here."""
    pool = pool_for(n_items)
    if pool is None:
        yield from (fn(*job) for job in jobs)
        return
    try:
        # A spawned worker normally re-imports the caller's __main__ first: a script without
        # an `if __name__ == "__main__":` guard would run again in every worker (and fail).
        # The workers need nothing from it (fn lives in this package), so they are started,
        # which all happens in map's submits, with a bare __main__ in its place.
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            results = pool.map(fn, *zip(*jobs, strict=True))
        finally:
            sys.modules["__main__"] = main
        yield from results
    finally:
        pool.shutdown(cancel_futures=True)


def decode_all(
    directory: Path,
    rel_paths: list[str],
    *,
    channels: int | None,
    size: tuple[int, int] | None,
    progress: bool = False,
) -> tuple[list[np.ndarray], list[tuple[int, str]]]:
    """Every image decoded, in order, in chunks spread over worker processes."""
    paths = [str(directory / r) for r in rel_paths]
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    arrays: list[np.ndarray] = []
    bad: list[tuple[int, str]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc=f"decoding {directory.name}", unit="img", leave=False)
    try:
        jobs = [(c, channels, size) for c in chunks]
        for k, (out, chunk_bad) in enumerate(in_order(_decode, jobs, len(paths))):
            arrays.extend(out)
            bad.extend((k * CHUNK + i, msg) for i, msg in chunk_bad)
            if bar is not None:
                bar.update(len(out) + len(chunk_bad))
    finally:
        if bar is not None:
            bar.close()
    return arrays, bad


def _size_text(sizes: set[tuple[int, int]]) -> str:
    small = min(sizes, key=lambda s: (s[0] * s[1], s))
    large = max(sizes, key=lambda s: (s[0] * s[1], s))
    return f"{small[0]}x{small[1]} to {large[0]}x{large[1]}"


def stack(
    directory: Path,
    arrays: list[np.ndarray],
    *,
    channels: int | None,
    size: tuple[int, int] | None,
) -> tuple[np.ndarray, int, tuple[int, int]]:
    """One uint8 array (N, H, W) or (N, 3, H, W); channels and size from the images unless
    given (all gray: 1, any colour: 3; all one size, else a one-line refusal)."""
    if channels is None:
        channels = 3 if any(a.shape[0] == 3 for a in arrays) else 1
    if size is None:
        sizes = {tuple(a.shape[1:]) for a in arrays}
        if len(sizes) > 1:
            raise ConfigError(
                f"{directory}: images are {_size_text(sizes)} (height x width); pass "
                "--image-size HxW to bring them to one size"
            )
        size = sizes.pop()  # type: ignore[assignment]
    h, w = size  # type: ignore[misc]
    out = np.empty((len(arrays), h, w) if channels == 1 else (len(arrays), 3, h, w), np.uint8)
    for i, a in enumerate(arrays):
        # A gray image in a colour set: its three channels are its one (PIL's L -> RGB).
        out[i] = a[0] if channels == 1 else a
    return out, channels, (h, w)


# ---- the cache ---------------------------------------------------------------------------


def _listing_digest(files: list[tuple[str, int, int]], classes: list[str]) -> str:
    text = "\n".join([json.dumps(classes), *(f"{r}\t{n}\t{t}" for r, n, t in files)])
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _cache_file(directory: Path, options: dict[str, Any]) -> Path:
    key = json.dumps([CACHE_VERSION, str(directory), options], sort_keys=True)
    return cache_root() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.safetensors"


def _arrays_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (images, labels):
        h.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    return h.hexdigest()


def _cache_read(path: Path, listing: str) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """The cached arrays if the file is there, of this listing, and intact; else None."""
    from .arrays import open_safetensors

    try:
        tensors, meta = open_safetensors(path)
        info = json.loads(meta.get("folder", "null"))
        if not isinstance(info, dict) or info.get("listing") != listing:
            return None
        images, labels = tensors["images"], tensors["labels"]
        if _arrays_sha256(images, labels) != info.get("sha256"):
            return None
        return images, labels, info
    except (OSError, KeyError, ValueError, TypeError, DataError):
        return None


def _cache_write(path: Path, images: np.ndarray, labels: np.ndarray, info: dict) -> None:
    """Best effort: a cache that cannot be written costs only the next decode."""
    from safetensors.numpy import save_file

    try:
        with atomic_path(path) as tmp:
            save_file({"images": images, "labels": labels}, str(tmp), {"folder": json.dumps(info)})
    except OSError:
        pass


# ---- reading -----------------------------------------------------------------------------


def read_split(
    directory: Path,
    *,
    classes: list[str] | None = None,
    image_size: tuple[int, int] | None,
    channels: int | None,
    skip_bad: bool,
    progress: bool = False,
    name: str | None = None,
) -> Part:
    """One folder of class folders. ``classes``: the training part's (for a test folder):
    its labels are indices into them, a class folder they lack is refused."""
    own = find_classes(directory) if classes is None else _test_classes(directory, classes)
    files, labels, ignored = list_images(directory, own)
    if classes is not None:
        index = {c: k for k, c in enumerate(classes)}
        labels = [index[own[k]] for k in labels]
        own = classes
    options = {"image_size": image_size, "channels": channels, "skip_bad": skip_bad}
    listing = _listing_digest(files, own)
    cache = _cache_file(directory, options)
    notes: list[str] = []
    if ignored:
        notes.append(
            f"{directory}: ignored {len(ignored):,} files that are not images (first: {ignored[0]})"
        )
    hit = _cache_read(cache, listing)
    if hit is not None:
        images, y, info = hit
        notes += info.get("notes", [])
        digest = info["sha256"]
    else:
        rel = [f[0] for f in files]
        arrays, bad = decode_all(
            directory, rel, channels=channels, size=image_size, progress=progress
        )
        found_notes: list[str] = []
        keep = np.ones(len(rel), dtype=bool)
        if bad:
            if not skip_bad:
                more = f" ({len(bad) - 1:,} more unreadable)" if len(bad) > 1 else ""
                raise CorruptDataError(
                    f"{bad[0][1]}{more}; fix or remove it, or pass --skip-bad to leave out "
                    "unreadable images"
                )
            keep[[i for i, _ in bad]] = False
            found_notes.append(
                f"skipped {len(bad):,} unreadable image{'s' if len(bad) > 1 else ''} "
                f"(first: {bad[0][1]})"
            )
        if not arrays:
            raise DataError(f"{directory}: no readable images")
        images, chans, size = stack(directory, arrays, channels=channels, size=image_size)
        y = np.asarray(labels, dtype=np.int64)[keep]
        info = {
            "listing": listing,
            "classes": own,
            "channels": chans,
            "image_size": list(size),
            "notes": found_notes,
        }
        digest = _arrays_sha256(images, y)
        _cache_write(cache, images, y, {**info, "sha256": digest})
        notes += found_notes
    return Part(
        inputs=images,
        labels=y,
        where=str(directory),
        name=name or directory.name,
        image_rule="resize",
        names=dict(enumerate(own)),
        sha256={"decoded": digest},
        notes=notes,
    )


def _test_classes(directory: Path, classes: list[str]) -> list[str]:
    try:
        own = sorted(
            e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")
        )
    except OSError as e:
        raise DataError(f"{directory}: cannot list the directory ({e.strerror or e})") from None
    if not own:
        raise DataError(f"{directory}: no class folders in the test part")
    missing = [c for c in own if c not in classes]
    if missing:
        raise DataError(
            f"{directory / missing[0]}: class {missing[0]!r} of the test part is not a class "
            f"of the training part ({len(classes)} classes); every class needs training images"
        )
    return own


def split_layout(directory: Path) -> bool:
    """``train/`` and ``test/`` inside, the train one holding class folders."""
    train, test = directory / "train", directory / "test"
    if not (train.is_dir() and test.is_dir()):
        return False
    try:
        with os.scandir(train) as entries:
            return any(e.is_dir() and not e.name.startswith(".") for e in entries)
    except OSError:
        return False


def read(
    directory: Path,
    *,
    image_size: tuple[int, int] | None,
    channels: int | None,
    skip_bad: bool,
    progress: bool = False,
) -> tuple[Part, Part | None]:
    """An image folder: (train part, test part or None)."""
    if not split_layout(directory):
        part = read_split(
            directory,
            image_size=image_size,
            channels=channels,
            skip_bad=skip_bad,
            progress=progress,
        )
        return part, None
    train = read_split(
        directory / "train",
        image_size=image_size,
        channels=channels,
        skip_bad=skip_bad,
        progress=progress,
        name=directory.name,
    )
    test = read_test(directory / "test", train, skip_bad=skip_bad, progress=progress)
    return train, test


def read_test(directory: Path, train: Part, *, skip_bad: bool, progress: bool = False) -> Part:
    """A test folder read as the training part was: its classes, size and channels (the
    rule ``predict`` applies to a new image)."""
    x = train.inputs
    channels = 1 if x.ndim == 3 else int(x.shape[1])
    size = (int(x.shape[-2]), int(x.shape[-1]))
    assert train.names is not None
    classes = [train.names[k] for k in sorted(train.names)]
    if split_layout(directory):
        raise ConfigError(f"--test-data {directory} holds train/ and test/; pass its test/ folder")
    return read_split(
        directory,
        classes=classes,
        image_size=size,
        channels=channels,
        skip_bad=skip_bad,
        progress=progress,
        name=train.name,
    )
