"""Evaluate a model on a split: accuracy, confusion matrix, per-class precision/recall/F1."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from .data import Dataset
from .errors import ConfigError
from .model import SoftmaxRegression, class_scores
from .preprocessing import Preprocessing
from .train import EVAL_CHUNK, cpu_threads


@dataclass(frozen=True)
class ClassReport:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


# Classes up to which an evaluation holds the whole confusion matrix (K x K counts, 4M cells
# at most); past it only the confused cells, which number at most the examples.
DENSE_CONFUSION_CLASSES = 2000


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` measured; ``confusion[i][j]`` counts true class i predicted j
    (None past :data:`DENSE_CONFUSION_CLASSES` classes); ``confused`` lists every non-zero
    off-diagonal cell as (true, predicted, count), largest first."""

    accuracy: float
    correct: int
    total: int
    classes: tuple[str, ...]
    confusion: list[list[int]] | None
    per_class: list[ClassReport]
    confused: tuple[tuple[int, int, int], ...] = ()

    @property
    def macro_f1(self) -> float:
        return sum(c.f1 for c in self.per_class) / len(self.per_class)

    def most_confused(self, k: int = 5) -> list[tuple[str, str, int]]:
        """The ``k`` largest off-diagonal cells as (true, predicted, count), largest first."""
        return [(self.classes[i], self.classes[j], n) for i, j, n in self.confused[:k]]

    def to_dict(self, k: int = 5) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "correct": self.correct,
            "total": self.total,
            "macro_f1": self.macro_f1,
            "per_class": [c.__dict__ for c in self.per_class],
            "most_confused": [
                {"true": t, "predicted": p, "count": n} for t, p, n in self.most_confused(k)
            ],
            "confusion": self.confusion,
            "classes": list(self.classes),
        }


def _preprocessing(prep: bool | Preprocessing) -> Preprocessing:
    return prep if isinstance(prep, Preprocessing) else Preprocessing(scale=bool(prep))


@torch.no_grad()
def predict_classes(
    model: SoftmaxRegression,
    inputs: torch.Tensor,
    normalize: bool | Preprocessing = True,
) -> torch.Tensor:
    """Predicted class per input, on the model's device, in chunks.

    ``inputs`` are uint8 images ``(N, H, W)`` / ``(N, C, H, W)`` or float features ``(N, D)``;
    ``normalize`` is the book's flag (pixels ``/ 255``) or the model's whole
    :class:`~softmax_regression.preprocessing.Preprocessing`.
    """
    return _predict_chunks(model, inputs.reshape(inputs.shape[0], -1).split(EVAL_CHUNK), normalize)


def _predict_chunks(
    model: SoftmaxRegression, chunks: Iterable[torch.Tensor], normalize: bool | Preprocessing
) -> torch.Tensor:
    device = model.weight.device
    prep = _preprocessing(normalize).to(device)
    out = []
    with cpu_threads(1 if device.type == "cpu" else None):
        for chunk in chunks:
            x = prep(chunk.cpu() if device.type == "cpu" else chunk.to(device))
            if x.shape[1] != model.num_inputs:
                raise ConfigError(
                    f"the model takes {model.num_inputs} inputs per example, got {x.shape[1]}"
                )
            out.append(class_scores(model, x.to(device)).max(0).indices)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=device)


def evaluate(
    model: SoftmaxRegression,
    data: Dataset,
    *,
    normalize: bool | Preprocessing = True,
    classes: tuple[str, ...] | None = None,
) -> Evaluation:
    """Accuracy and per-class report of ``model`` on ``data`` (eval mode, no gradients).

    ``normalize``: the book's flag, or the model's :class:`Preprocessing` (as a saved model
    carries it). The split is read chunk by chunk, so a large feature set is never copied.
    """
    model.eval()
    pred = _predict_chunks(model, data.chunks(EVAL_CHUNK), normalize).cpu()
    labels = data.labels.cpu()
    return evaluation_from_predictions(pred, labels, classes or data.classes)


def evaluation_from_predictions(
    pred: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    *,
    dense_up_to: int = DENSE_CONFUSION_CLASSES,
) -> Evaluation:
    """The :class:`Evaluation` of predicted class indices against the true ones; the whole
    confusion matrix only up to ``dense_up_to`` classes."""
    c = len(classes)
    labels, pred = labels.long().cpu(), pred.long().cpu()
    right = pred == labels
    diag = torch.bincount(labels[right], minlength=c)
    predicted, actual = torch.bincount(pred, minlength=c), torch.bincount(labels, minlength=c)
    # The confused cells from the examples, never a K x K array: (true, predicted, count),
    # the largest count first, ties in (true, predicted) order.
    keys, counts = torch.unique(labels[~right] * c + pred[~right], return_counts=True)
    order = sorted(zip((-counts).tolist(), keys.tolist(), strict=True))
    confused = tuple((key // c, key % c, -minus) for minus, key in order)
    conf = None
    if c <= dense_up_to:
        conf = torch.bincount(labels * c + pred, minlength=c * c).reshape(c, c).tolist()
    per_class = []
    for k in range(c):
        tp, pp, ap = int(diag[k]), int(predicted[k]), int(actual[k])
        precision = tp / pp if pp else 0.0
        recall = tp / ap if ap else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append(ClassReport(classes[k], precision, recall, f1, ap))
    total = int(labels.numel())
    correct = int(diag.sum())
    return Evaluation(
        accuracy=correct / total if total else 0.0,
        correct=correct,
        total=total,
        classes=tuple(classes),
        confusion=conf,
        per_class=per_class,
        confused=confused,
    )


def format_report(ev: Evaluation, k: int = 5) -> str:
    """The evaluation as text: accuracy, the per-class table, the most confused pairs."""
    width = max(len(c) for c in ev.classes)
    lines = [
        f"test accuracy {ev.accuracy:.4f} ({ev.correct}/{ev.total})",
        "",
        f"{'class':<{width}}  precision  recall     f1  support",
    ]
    for c in ev.per_class:
        lines.append(
            f"{c.name:<{width}}  {c.precision:9.3f}  {c.recall:6.3f}  {c.f1:5.3f}  {c.support:7d}"
        )
    lines.append(f"{'macro avg':<{width}}  {'':9}  {'':6}  {ev.macro_f1:5.3f}  {ev.total:7d}")
    pairs = ev.most_confused(k)
    if pairs:
        lines += ["", "most confused (true -> predicted: count)"]
        lines += [f"  {t} -> {p}: {n}" for t, p, n in pairs]
    return "\n".join(lines)
