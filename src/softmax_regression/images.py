"""Image files to pixel arrays: opened safely, flattened to 8 bits, converted, resized.

The pieces every image path of the package shares: ``predict`` (both of its rules), the image
folder reader (training on your own images) and, written again in JavaScript, the report
page's "Try it" (``report/page.js``), which must compute the same pixels. Nothing here needs
torch.

The "resize" rule, for models trained on an image folder, is what the folder reader applies
to every image and what ``predict`` applies to a new one: 16-bit and float images scaled to
8 bits, transparent pixels laid on white, converted to grayscale (ITU-R 601-2 luma, PIL's
"L") or RGB, then brought to the model's height and width by exact area averaging
(:func:`area_resize`), the aspect ratio not kept, as torchvision's ``Resize((h, w))``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageError

# Decoding a JPEG at a reduced scale (PIL's draft mode) needs a target size to aim at.
JPEG_DRAFT = 28 * 8


def open_image(path: str | Path, draft: int | None = JPEG_DRAFT) -> Any:  # -> PIL.Image.Image
    """Read an image file, orientation from EXIF applied; one-line :class:`ImageError` for a
    missing file, a directory, a file PIL cannot read, a decompression bomb or bad data."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.format == "JPEG" and draft is not None:
                    im.draft("RGB", (draft, draft))  # decode at a reduced scale
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
    return img


def eight_bit(img):  # img: PIL.Image.Image -> PIL.Image.Image
    """16-bit and float images scaled (not clipped) to 8 bits; transparency laid on white (a
    cut-out photo counts as one on a white background). Other images as they are."""
    from PIL import Image

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
    return img


def channels_of(img) -> int:  # img: PIL.Image.Image
    """1 for an image with no colour (grayscale, black and white, 16-bit), else 3."""
    return 1 if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") else 3


def to_array(img, channels: int) -> np.ndarray:  # img: PIL.Image.Image
    """uint8 (channels, H, W): 8 bits (:func:`eight_bit`), then PIL's "L" or "RGB"."""
    img = eight_bit(img).convert("L" if channels == 1 else "RGB")
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else np.ascontiguousarray(a.transpose(2, 0, 1))


def resize_rule(img, channels: int, height: int, width: int) -> np.ndarray:
    """The "resize" rule (module docstring): uint8 (channels, height, width)."""
    a = to_array(img, channels)
    if a.shape[1:] == (height, width):
        return a
    return np.stack([area_resize(c, width, height) for c in a])


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
