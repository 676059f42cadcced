"""Classify ordinary image files with a trained model.

An image is made to look like a Fashion-MNIST one, by the rule Fashion-MNIST's own images
were made with (a product photo on a light background, turned into a 28x28 negative):

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

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import ImageError
from .functional import softmax
from .model import class_scores
from .runs.artifacts import SavedModel
from .train import cpu_threads, images_to_float

SIZE = 28
TRIM_LEVELS = 13  # 5% of 255, as Fashion-MNIST's trimming step


@dataclass(frozen=True)
class Prediction:
    """The ``k`` most likely classes of one image, most likely first; for a file that could
    not be read, ``error`` says why (one line naming the file) and ``top`` is empty."""

    source: str
    top: list[tuple[str, float]]
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"image": self.source, "error": self.error}
        return {
            "image": self.source,
            "top": [{"class": c, "probability": p} for c, p in self.top],
        }


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image file and convert it by the module's rule: uint8 (28, 28)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft("RGB", (SIZE * 8, SIZE * 8))  # decode at a reduced scale
                im.load()
                img = ImageOps.exif_transpose(im)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: image too large to decode safely") from None
    except (OSError, ValueError, SyntaxError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{path}: cannot decode the image ({detail})") from None
    if img.width < 1 or img.height < 1:
        raise ImageError(f"{path}: image has no pixels")
    return prepare_image(img)


def prepare_image(img) -> torch.Tensor:  # img: PIL.Image.Image
    """Apply steps 1-5 of the module's rule to a PIL image; uint8 tensor (28, 28)."""
    import numpy as np
    from PIL import Image, ImageOps

    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit and float images: PIL's own conversion to "L" clips everything above 255.
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        else:
            lo, hi = min(float(a.min()), 0.0), max(float(a.max()), 255.0)
        a = np.clip(np.round((a - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        img = Image.fromarray(a)
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    gray = img.convert("L")
    a = np.asarray(gray)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 127.5:
        gray = ImageOps.invert(gray)
        a = np.asarray(gray)
        border = 255 - border
    background = int(np.median(border))
    if gray.size == (SIZE, SIZE):
        return torch.from_numpy(np.array(gray, dtype=np.uint8))  # already in the dataset's form
    rows, cols = np.nonzero(np.abs(a.astype(np.int16) - background) > TRIM_LEVELS)
    if rows.size:
        gray = gray.crop((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
    w, h = gray.size
    longer = max(w, h)
    # w * 28 / longer rounded half up, in integers (Python's round() rounds half to even).
    size = (
        max(1, (2 * w * SIZE + longer) // (2 * longer)),
        max(1, (2 * h * SIZE + longer) // (2 * longer)),
    )
    small = area_resize(np.asarray(gray), size[0], size[1])
    canvas = np.full((SIZE, SIZE), background, np.uint8)
    x0, y0 = (SIZE - size[0]) // 2, (SIZE - size[1]) // 2
    canvas[y0 : y0 + size[1], x0 : x0 + size[0]] = small
    return torch.from_numpy(canvas)


def _coverage(n: int, m: int):  # float64 (m, n): how much of source pixel i output pixel k covers
    """In units of 1/(n*m) of the axis: output k spans [k*n, (k+1)*n), source i [i*m, (i+1)*m)."""
    import numpy as np

    k = np.arange(m)[:, None]
    i = np.arange(n)[None, :]
    lo = np.maximum(k * n, i * m)
    hi = np.minimum((k + 1) * n, (i + 1) * m)
    return np.maximum(hi - lo, 0).astype(np.float64)


def area_resize(a, width: int, height: int):
    """Exact area averaging of a uint8 (h, w) array to (height, width), rounded half up.

    Every weight and partial sum is an integer below 2**53, so the float64 products are exact
    whatever order BLAS adds in, and the result is the same as an integer computation.
    """
    import numpy as np

    h, w = a.shape
    if (w, h) == (width, height):
        return np.array(a, dtype=np.uint8)
    total = _coverage(h, height) @ a.astype(np.float64) @ _coverage(w, width).T
    area = float(w * h)  # the area of one output pixel in these units
    return np.floor((2 * total + area) / (2 * area)).astype(np.uint8)


@torch.no_grad()
def probabilities(saved: SavedModel, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, 10) for uint8 images (N, 28, 28), preprocessed as in training."""
    model = saved.model
    with cpu_threads(1):
        x = images_to_float(images.reshape(images.shape[0], -1).cpu(), saved.normalize)
        scores = class_scores(model, x.to(model.weight.device))
        return softmax(scores, dim=0).t().cpu()


def predict_files(saved: SavedModel, paths: list[str | Path], k: int = 3) -> list[Prediction]:
    """Top-``k`` classes for each image file; every file is read before any is classified,
    and the first that cannot be read raises its :class:`ImageError`."""
    images = [load_image(p) for p in paths]
    return _ranked(saved, [str(p) for p in paths], images, k)


def predict_each(saved: SavedModel, paths: list[str | Path], k: int = 3) -> list[Prediction]:
    """Top-``k`` classes for each image file, in order; a file that cannot be read gets its
    error in its :class:`Prediction` instead of stopping the others."""
    read: dict[int, torch.Tensor] = {}
    failed: dict[int, Prediction] = {}
    for i, path in enumerate(paths):
        try:
            read[i] = load_image(path)
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
