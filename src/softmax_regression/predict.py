"""Classify ordinary image files, or rows of features, with a trained model.

A model records how an image file becomes one of its inputs (its ``image_rule``). A model
trained on an image folder (or image arrays) uses the "resize" rule of
:mod:`softmax_regression.images`: the image's mode and size are changed to the model's, as
the folder reader changed every training image. A Fashion-MNIST model (and one trained on
IDX files of the MNIST family) uses the rule Fashion-MNIST's own images were made with (a
product photo on a light background, turned into a negative; 28x28 below, the model's own
size in general):

1. Orientation from EXIF is applied; transparent pixels are laid on white (a cut-out product
   photo counts as one on a white background).
2. Converted to 8-bit grayscale (ITU-R 601-2 luma, PIL's "L"; 16-bit images are scaled, not
   clipped).
3. If the background is light, the image is inverted, so the object is light on dark. The
   background is judged by the mean of the outermost row and column of pixels: above 127.5
   means light.
4. Trimmed to the box of pixels that differ from the background level (the border pixels'
   median) by more than 5% of the full range (13 levels).
5. Scaled so that its longer side is 28 pixels, keeping the aspect ratio (the other side
   rounded half up, at least 1), by exact area averaging: each output pixel is the mean of the
   source pixels it covers, weighted by the covered fraction of each, computed in integers and
   rounded half up. Then centred on a 28x28 canvas filled with the background level. This is
   one explicit algorithm, not a library's resampler, so that the report page's "Try it"
   (JavaScript, ``report/page.js``) computes the same pixels exactly.

An image that is already 28x28 goes through steps 1-3 (so a light one is inverted) and skips
steps 4 and 5: it is taken to be framed like the dataset's own images (whose borders are all
dark, so they round-trip through a PNG file unchanged).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError, DataError, ImageError
from .functional import softmax
from .images import area_resize, eight_bit, open_image, resize_rule
from .model import class_scores
from .runs.artifacts import SavedModel
from .train import cpu_threads

SIZE = 28
TRIM_LEVELS = 13  # 5% of 255, as Fashion-MNIST's trimming step


@dataclass(frozen=True)
class Prediction:
    """The ``k`` most likely classes of one image, most likely first; for a file that could
    not be read, ``error`` says why (one line naming the file) and ``top`` is empty."""

    source: str
    top: list[tuple[str, float]]
    error: str | None = None

    def to_dict(self, what: str = "image") -> dict:
        if self.error is not None:
            return {what: self.source, "error": self.error}
        return {
            what: self.source,
            "top": [{"class": c, "probability": p} for c, p in self.top],
        }


def load_image(path: str | Path, saved: SavedModel | None = None) -> torch.Tensor:
    """Read an image file and convert it by ``saved``'s rule (Fashion-MNIST's when None):
    uint8 (H, W) for that rule, (C, H, W) for the "resize" rule."""
    if saved is not None and not saved.is_image:
        raise ConfigError(
            f"{saved.path} takes {saved.input_shape[0]} features per example, not images; "
            "pass them with --features FILE"
        )
    if saved is None or saved.image_rule == "fashion-mnist":
        size = (SIZE, SIZE) if saved is None else saved.input_shape[1:]
        return prepare_image(open_image(path), size)
    c, h, w = saved.input_shape
    return torch.from_numpy(resize_rule(open_image(path, draft=max(h, w) * 8), c, h, w))


def prepare_image(img, size: tuple[int, int] = (SIZE, SIZE)) -> torch.Tensor:
    """Apply steps 1-5 of the module's rule to a PIL image; uint8 tensor ``size`` (H, W)."""
    import numpy as np
    from PIL import ImageOps

    gray = eight_bit(img).convert("L")
    a = np.asarray(gray)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 127.5:
        gray = ImageOps.invert(gray)
        a = np.asarray(gray)
        border = 255 - border
    background = int(np.median(border))
    height, width = (int(n) for n in size)
    if gray.size == (width, height):
        return torch.from_numpy(np.array(gray, dtype=np.uint8))  # already in the dataset's form
    rows, cols = np.nonzero(np.abs(a.astype(np.int16) - background) > TRIM_LEVELS)
    if rows.size:
        gray = gray.crop((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
    w, h = gray.size
    # The longer side (relative to the canvas) fills it, keeping the aspect ratio; each side
    # rounded half up, in integers (Python's round() rounds half to even). For a square
    # canvas of 28: w * 28 / max(w, h).
    num, den = (width, w) if w * height >= h * width else (height, h)
    fit = (
        max(1, min(width, (2 * w * num + den) // (2 * den))),
        max(1, min(height, (2 * h * num + den) // (2 * den))),
    )
    small = area_resize(np.asarray(gray), fit[0], fit[1])
    canvas = np.full((height, width), background, np.uint8)
    x0, y0 = (width - fit[0]) // 2, (height - fit[1]) // 2
    canvas[y0 : y0 + fit[1], x0 : x0 + fit[0]] = small
    return torch.from_numpy(canvas)


@torch.no_grad()
def probabilities(saved: SavedModel, inputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, classes) for inputs as the model takes them (uint8 images or
    float features, one row per example), preprocessed as in training."""
    model = saved.model
    flat = inputs.reshape(inputs.shape[0], -1).cpu()
    if flat.shape[1] != model.num_inputs:
        what = "features" if not saved.is_image else "inputs"
        raise ConfigError(
            f"{saved.path} takes {model.num_inputs} {what} per example, got {flat.shape[1]}"
        )
    with cpu_threads(1):
        x = saved.preprocessing(flat)
        scores = class_scores(model, x.to(model.weight.device))
        return softmax(scores, dim=0).t().cpu()


def read_features(path: str | Path) -> Any:  # -> numpy float32 (N, D)
    """Rows of features from a file: ``.npy`` (2-D, numeric; memory-mapped), or CSV/TSV of
    numbers, one row per example (a first line of column names is skipped). Never pickle."""
    import numpy as np

    from .data.arrays import check_finite

    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            a = np.load(path, mmap_mode="c", allow_pickle=False)
        else:
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            with open(path, encoding="utf-8") as f:
                first = f.readline()
            try:
                [float(v) for v in first.split(delimiter)]
                skip = 0
            except ValueError:
                skip = 1  # column names
            a = np.loadtxt(path, delimiter=delimiter, skiprows=skip, ndmin=2, dtype=np.float64)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, UnicodeDecodeError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a table of numbers ({detail})") from None
    if a.ndim != 2 or a.shape[0] == 0 or a.dtype.kind not in "fiub":
        raise DataError(f"{path}: expected a 2-D numeric array of rows, got {a.dtype} {a.shape}")
    check_finite(a, str(path))
    return a


def predict_features(saved: SavedModel, path: str | Path, k: int = 3) -> list[Prediction]:
    """Top-``k`` classes for each row of a feature file (:func:`read_features`)."""
    return list(iter_predict_features(saved, path, k))


def iter_predict_features(saved: SavedModel, path: str | Path, k: int = 3) -> Iterator[Prediction]:
    """:func:`predict_features` one block of rows at a time: a ``.npy`` file is read from
    disk block by block (data/stream.py), so a file of any size is classified in the
    memory of one block; a CSV/TSV is read whole."""
    import numpy as np

    from .data import stream

    if saved.is_image:
        c, h, w = saved.input_shape
        raise ConfigError(f"{saved.path} takes {c}x{h}x{w} images, not features; pass image files")
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        source = stream.open_features(path)
    else:
        rows = read_features(path)
        source = stream.RowSource.from_arrays(rows, np.zeros(len(rows)), where=str(path))
    if source.width != saved.model.num_inputs:
        raise ConfigError(
            f"{path}: {source.width} features per row, but {saved.path} takes "
            f"{saved.model.num_inputs}"
        )
    if len(source) == 0:
        raise DataError(f"{path}: expected a 2-D numeric array of rows, got no rows")
    for lo, x in source.blocks(reuse=True):  # _ranked copies the rows (torch.stack)
        names = [str(lo + i) for i in range(len(x))]
        yield from _ranked(saved, names, list(torch.from_numpy(x)), k)


def predict_files(saved: SavedModel, paths: list[str | Path], k: int = 3) -> list[Prediction]:
    """Top-``k`` classes for each image file; every file is read before any is classified,
    and the first that cannot be read raises its :class:`ImageError`."""
    images = [load_image(p, saved) for p in paths]
    return _ranked(saved, [str(p) for p in paths], images, k)


def predict_each(saved: SavedModel, paths: list[str | Path], k: int = 3) -> list[Prediction]:
    """Top-``k`` classes for each image file, in order; a file that cannot be read gets its
    error in its :class:`Prediction` instead of stopping the others."""
    read: dict[int, torch.Tensor] = {}
    failed: dict[int, Prediction] = {}
    for i, path in enumerate(paths):
        try:
            read[i] = load_image(path, saved)
        except ImageError as e:
            failed[i] = Prediction(str(path), [], str(e))
    ranked = iter(_ranked(saved, [str(paths[i]) for i in read], list(read.values()), k))
    return [failed[i] if i in failed else next(ranked) for i in range(len(paths))]


def _ranked(
    saved: SavedModel, sources: list[str], images: list[torch.Tensor], k: int
) -> list[Prediction]:
    if not images:
        return []
    probs = probabilities(saved, torch.stack(images))
    k = min(k, probs.shape[1])
    out = []
    for source, row in zip(sources, probs, strict=True):
        values, idx = row.topk(k)
        top = [
            (saved.classes[i], float(v)) for v, i in zip(values.tolist(), idx.tolist(), strict=True)
        ]
        out.append(Prediction(source, top))
    return out
