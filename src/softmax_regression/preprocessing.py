"""What happens to an input between the dataset and the linear layer, in one place.

An input row is either uint8 pixels or float features. Pixels are divided by 255 (what the
book's ``ToTensor`` does), unless ``scale`` is off (raw 0-255 values, ``--no-normalize``);
features are taken as they are. Then, optionally, every input is standardised,
``(x - mean) / std``, with the statistics of the training split (``--standardize``: features
far outside [0, 1] otherwise make the book's learning rate diverge). The trainer, evaluation,
prediction, the report page and the model file all use this one description, so a model
always sees its inputs the way it was trained on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# Below this standard deviation an input is only centred, not scaled (a constant pixel or
# feature would otherwise be divided by ~0).
MIN_STD = 1e-6
# Rows per pass when statistics are gathered: bounds the float64 temporaries.
STATS_CHUNK = 8192


def images_to_float(
    images: torch.Tensor, normalize: bool, out: torch.Tensor | None = None
) -> torch.Tensor:
    """uint8 -> float32 of the same shape: ``/ 255`` exactly as ToTensor when ``normalize``."""
    if out is None:
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    out.copy_(images)  # converting in place: torch.div(images, 255, out=) would allocate
    return out.div_(255) if normalize else out


@dataclass(frozen=True)
class Preprocessing:
    """uint8 pixels ``/ 255`` when ``scale`` (features are never scaled), then
    ``(x - mean) / std`` when the statistics are set (float32 ``(D,)`` each)."""

    scale: bool = True
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None

    @property
    def standardized(self) -> bool:
        return self.mean is not None

    def __call__(self, rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Flat rows (n, D), uint8 or float, -> float32 (n, D) as the linear layer takes them.

        Float32 rows that need nothing come back as they are (no copy); anything else is a
        new tensor, or ``out`` when given.
        """
        if rows.dtype == torch.uint8:
            x = images_to_float(rows, self.scale, out)
        elif out is not None:
            x = out.copy_(rows)
        elif rows.dtype != torch.float32 or self.mean is not None:
            x = rows.to(torch.float32, copy=True)
        else:
            return rows
        if self.mean is not None:
            assert self.std is not None
            x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))
        return x

    def to(self, device: torch.device | str) -> Preprocessing:
        if self.mean is None:
            return self
        assert self.std is not None
        return Preprocessing(self.scale, self.mean.to(device), self.std.to(device))

    def describe(self, is_image: bool) -> dict[str, Any]:
        """For model.json and the report page: what is done, in words."""
        if is_image:
            scale = "divide by 255" if self.scale else "none (raw 0-255 values)"
        else:
            scale = "none (features as they are)"
        out: dict[str, Any] = {"scale": scale}
        if self.standardized:
            out["standardize"] = "(x - mean) / std per input, statistics of the training split"
        return out


def standardizer(data: Any, scale: bool = True, min_std: float = MIN_STD) -> Preprocessing:
    """The :class:`Preprocessing` that standardises ``data``'s inputs (a Dataset: its split's
    rows, after ``scale``), with the population standard deviation (as scikit-learn's
    ``StandardScaler``); an input whose deviation is below ``min_std`` keeps scale 1.

    One pass in chunks, float64 statistics merged chunk by chunk (Chan et al.), so a large
    memory-mapped set is read once and never copied whole.
    """
    count = 0
    mean = torch.zeros(data.num_inputs, dtype=torch.float64)
    m2 = torch.zeros(data.num_inputs, dtype=torch.float64)
    plain = Preprocessing(scale)
    for chunk in data.chunks(STATS_CHUNK):
        x = plain(chunk.cpu()).double()
        k = x.shape[0]
        if k == 0:
            continue
        cmean = x.mean(0)
        cm2 = ((x - cmean) ** 2).sum(0)
        delta = cmean - mean
        total = count + k
        mean += delta * (k / total)
        m2 += cm2 + delta**2 * (count * k / total)
        count = total
    std = (m2 / max(count, 1)).sqrt()
    std = torch.where(std < min_std, torch.ones_like(std), std)
    return Preprocessing(scale, mean.float(), std.float())
