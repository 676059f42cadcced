"""What the scikit-learn estimator tests share."""

from __future__ import annotations

import numpy as np

CV_ATTRIBUTES = ("coefs_paths_", "scores_", "n_iter_", "C_", "l1_ratio_", "l1_ratios_")


def assert_cv_attribute_shapes_equal(ours, ref) -> None:
    """``ours`` and ``ref`` (fitted LogisticRegressionCVs) hold their CV attributes in the
    same shapes: the same keys and per-key shapes for the legacy dicts, else the same shape."""
    for name in CV_ATTRIBUTES:
        a, b = getattr(ours, name), getattr(ref, name)
        if isinstance(b, dict):
            assert list(a) == list(b)
            assert [np.shape(v) for v in a.values()] == [np.shape(v) for v in b.values()]
        else:
            assert np.shape(a) == np.shape(b), name
