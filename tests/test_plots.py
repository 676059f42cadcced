"""The run figures' scales: what a reader sees must not be set by a handful of pixels."""

from __future__ import annotations

import numpy as np
import pytest

from softmax_regression import plots

CLASSES = [f"class {k}" for k in range(10)]


def _image(fig):
    ax = fig.axes[0]
    return ax.get_images()[0]


def test_weight_scale_ignores_a_few_huge_border_weights() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, size=(10, 784)).astype(np.float32)
    w[3, 0] = 200.0  # what standardisation folds onto an almost always black corner pixel
    w[7, 27] = -150.0
    fig = plots.weights(w, CLASSES)
    norm = _image(fig).norm
    spread = 1.4826 * float(np.median(np.abs(w - np.median(w))))
    assert norm.vmax == -norm.vmin == pytest.approx(5 * spread)
    assert 0.4 < norm.vmax < 0.6  # five standard deviations of the ordinary weights (0.1)
    assert _image(fig).colorbar.extend == "both"  # the bar says that colours saturate


def test_weight_scale_of_ordinary_weights_is_their_spread() -> None:
    w = np.linspace(-1.0, 1.0, 7840, dtype=np.float32).reshape(10, 784)
    # Evenly spread weights: five robust deviations exceed the largest, which sets the scale.
    image = _image(plots.weights(w, CLASSES))
    norm = image.norm
    assert norm.vmax == 1.0 and norm.vmin == -1.0
    assert image.colorbar.extend == "neither"
    zeros = _image(plots.weights(np.zeros((10, 784)), CLASSES)).norm
    assert zeros.vmax == 1.0  # an all-zero model still gets a usable scale
