"""A real text corpus built offline: the Python source files of the installed packages,
each labelled by its top-level package, as TF-IDF rows (scikit-learn's ``TfidfVectorizer``).

The packages with the most files are the classes (``--classes``, 30 by default), at most
``files_per_class`` files each, taken in sorted order, so the corpus is the same for the same
installed packages. It is what a text classifier sees: a large, sparse vocabulary, classes
of unequal size and rows of very unequal length.

    .venv/bin/python benchmarks/text_corpus.py   # prints its size
"""

from __future__ import annotations

import sysconfig
from collections import defaultdict
from pathlib import Path

import numpy as np


def source_files(classes: int = 30, files_per_class: int = 400) -> tuple[list[str], np.ndarray]:
    """(texts, labels): the installed packages' ``.py`` files, labelled by package."""
    root = Path(sysconfig.get_paths()["purelib"])
    by_package: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.glob("*/**/*.py")):
        package = path.relative_to(root).parts[0]
        if package.endswith((".dist-info", ".egg-info")) or package.startswith(("_", ".")):
            continue
        by_package[package].append(path)
    largest = sorted(by_package, key=lambda p: (-len(by_package[p]), p))[:classes]
    texts, labels = [], []
    for k, package in enumerate(sorted(largest)):
        for path in by_package[package][:files_per_class]:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
            labels.append(k)
    return texts, np.asarray(labels)


def tfidf(classes: int = 30, files_per_class: int = 400, max_features: int | None = None):
    """(X, y, vocabulary size): TF-IDF rows (CSR, float64) of :func:`source_files`."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts, y = source_files(classes, files_per_class)
    vectorizer = TfidfVectorizer(
        token_pattern=r"[A-Za-z_][A-Za-z0-9_]{1,30}", max_features=max_features, min_df=2
    )
    X = vectorizer.fit_transform(texts)
    return X, y, len(vectorizer.vocabulary_)


if __name__ == "__main__":
    X, y, vocabulary = tfidf()
    print(
        f"{X.shape[0]:,} files, {len(np.unique(y))} packages, {vocabulary:,} terms, "
        f"{X.nnz:,} non-zeros ({X.nnz / X.shape[0]:.0f} a row)"
    )
