"""The names of Dive into Deep Learning's chapters 2-4 (d2l 0.17.6), backed by this package.

Change ``from d2l import torch as d2l`` to ``from softmax_regression import d2l`` and the
chapter code runs unchanged: same signatures and semantics, data sliced from tensors in
memory instead of DataLoaders, and figures that work outside Jupyter too (one line per epoch
and a PNG), including those of the reader's own ``Animator`` (see ``_ipython.py``).
``train_ch3`` returns the per-epoch history.
"""

from __future__ import annotations

import sys

import torch

from ._arrays import evaluate_loss, linreg, load_array, squared_loss, synthetic_data
from ._data import get_dataloader_workers, get_fashion_mnist_labels, load_data_fashion_mnist
from ._hub import DATA_HUB, DATA_URL, download, download_all, download_extract
from ._ipython import intercept_display
from ._plotting import Animator, plot, set_axes, set_figsize, show_images, use_svg_display
from ._training import (
    Accumulator,
    FinalCheckError,
    History,
    Timer,
    accuracy,
    evaluate_accuracy,
    predict_ch3,
    sgd,
    train_ch3,
    train_epoch_ch3,
)

# The book's framework-neutral tensor aliases (d2l 0.17.6's list). Some shadow builtins, but
# only as attributes of this module, which is why no code lives here.
ones = torch.ones
zeros = torch.zeros
tensor = torch.tensor
arange = torch.arange
meshgrid = torch.meshgrid
sin = torch.sin
sinh = torch.sinh
cos = torch.cos
cosh = torch.cosh
tanh = torch.tanh
linspace = torch.linspace
exp = torch.exp
log = torch.log
normal = torch.normal
rand = torch.rand
matmul = torch.matmul
int32 = torch.int32
float32 = torch.float32
concat = torch.cat
stack = torch.stack
abs = torch.abs
eye = torch.eye


def numpy(x, *args, **kwargs):
    return x.detach().numpy(*args, **kwargs)


def size(x, *args, **kwargs):
    return x.numel(*args, **kwargs)


def reshape(x, *args, **kwargs):
    return x.reshape(*args, **kwargs)


def to(x, *args, **kwargs):
    return x.to(*args, **kwargs)


def reduce_sum(x, *args, **kwargs):
    return x.sum(*args, **kwargs)


def argmax(x, *args, **kwargs):
    return x.argmax(*args, **kwargs)


def astype(x, *args, **kwargs):
    return x.type(*args, **kwargs)


def transpose(x, *args, **kwargs):
    return x.t(*args, **kwargs)


def __getattr__(name: str):
    # pyplot only when the user's code asks for d2l.plt: importing it costs time, and the
    # figures of this module never need it. Outside Jupyter, the figures the reader draws
    # through it are saved when the process ends, and displaying them prints no repr.
    if name == "plt":
        from matplotlib import pyplot

        from ._plotting import watch_pyplot

        watch_pyplot()
        intercept_display()
        return pyplot
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Chapter code that imported IPython's display before this module (3.6 does) is covered now.
if "IPython.display" in sys.modules:
    intercept_display()


# Star imports get the helpers, not the tensor aliases (abs, size, numpy... would shadow names).
__all__ = [
    "DATA_HUB",
    "DATA_URL",
    "Accumulator",
    "Animator",
    "FinalCheckError",
    "History",
    "Timer",
    "accuracy",
    "download",
    "download_all",
    "download_extract",
    "evaluate_accuracy",
    "evaluate_loss",
    "get_dataloader_workers",
    "get_fashion_mnist_labels",
    "linreg",
    "load_array",
    "load_data_fashion_mnist",
    "plot",
    "plt",
    "predict_ch3",
    "set_axes",
    "set_figsize",
    "sgd",
    "show_images",
    "squared_loss",
    "synthetic_data",
    "train_ch3",
    "train_epoch_ch3",
    "use_svg_display",
]
